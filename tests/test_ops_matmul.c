/* Tests of lb_matmul and lb_bmm: forward against naive double loops,
 * gradients against finite differences for both transpose settings, shape
 * errors. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

/* --- lb_matmul ------------------------------------------------------------------ */

static void check_matmul_forward(int transpose_w) {
    enum { B = 2, T = 3, K = 5, N = 4 };
    int xs[3] = {B, T, K};
    int ws[2] = {transpose_w ? N : K, transpose_w ? K : N};
    lb_tensor *x = tu_param(3, xs, 1, -1.0f, 1.0f), *w = tu_param(2, ws, 2, -1.0f, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *y = lb_matmul(&g, x, w, transpose_w);
    assert_non_null(y);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[0], B);
    assert_int_equal(y->shape[1], T);
    assert_int_equal(y->shape[2], N);
    for (int m = 0; m < B * T; m++)
        for (int n = 0; n < N; n++) {
            double ref = 0.0;
            for (int k = 0; k < K; k++) {
                double wv = transpose_w ? w->data[n * K + k] : w->data[k * N + n];
                ref += (double)x->data[m * K + k] * wv;
            }
            assert_float_equal(y->data[m * N + n], ref, 1e-5);
        }
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(w);
}

static void test_matmul_forward(void **state) {
    (void)state;
    check_matmul_forward(1);
    check_matmul_forward(0);
}

typedef struct matmul_ctx {
    int transpose_w;
    int twice;   /* use x and w in two products, so the gradients must accumulate */
} matmul_ctx;

static lb_tensor *matmul_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    const matmul_ctx *c = ctx;
    lb_tensor *y = lb_matmul(g, p[0], p[1], c->transpose_w);
    if (c->twice) y = lb_add(g, y, lb_scale(g, lb_matmul(g, p[0], p[1], c->transpose_w), 0.5f));
    return tu_weighted_sum(g, y, 11);
}

static void check_matmul_grad(int transpose_w, int twice) {
    enum { B = 2, T = 3, K = 5, N = 4 };
    int xs[3] = {B, T, K};
    int ws[2] = {transpose_w ? N : K, transpose_w ? K : N};
    lb_tensor *p[2] = {tu_param(3, xs, 3, -1.0f, 1.0f), tu_param(2, ws, 4, -1.0f, 1.0f)};
    p[0]->name = "x";
    p[1]->name = "w";
    matmul_ctx c = {transpose_w, twice};
    tu_gradcheck(matmul_loss, p, 2, &c, 1e-2f, 1e-2, 1e-3);
    lb_tensor_free(p[0]);
    lb_tensor_free(p[1]);
}

static void test_matmul_grad(void **state) {
    (void)state;
    check_matmul_grad(1, 0);
    check_matmul_grad(0, 0);
    check_matmul_grad(1, 1);
    check_matmul_grad(0, 1);
}

static void test_matmul_errors(void **state) {
    (void)state;
    int xs[2] = {3, 5}, ws[2] = {4, 6};
    lb_tensor *x = tu_param(2, xs, 5, -1.0f, 1.0f), *w = tu_param(2, ws, 6, -1.0f, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_error_clear();
    assert_null(lb_matmul(&g, x, w, 1));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "matmul"));
    assert_non_null(strstr(lb_errmsg(), "[3,5]"));
    assert_non_null(strstr(lb_errmsg(), "[4,6]"));
    assert_null(lb_matmul(&g, x, w, 0));
    /* A NULL input (an earlier failure) passes straight through. */
    assert_null(lb_matmul(&g, NULL, w, 1));
    assert_null(lb_bmm(&g, x, NULL, 0, 0));
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(w);
}

/* --- lb_bmm ---------------------------------------------------------------------- */

enum { BB = 3, BM = 4, BK = 5, BN = 2 };

static void bmm_shapes(int ta, int tb, int as[3], int bs[3]) {
    as[0] = BB;
    as[1] = ta ? BK : BM;
    as[2] = ta ? BM : BK;
    bs[0] = BB;
    bs[1] = tb ? BN : BK;
    bs[2] = tb ? BK : BN;
}

static void test_bmm_forward(void **state) {
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int as[3], bs[3];
            bmm_shapes(ta, tb, as, bs);
            lb_tensor *a = tu_param(3, as, 7, -1.0f, 1.0f), *b = tu_param(3, bs, 8, -1.0f, 1.0f);
            lb_graph g;
            assert_int_equal(lb_graph_init(&g, 0), LB_OK);
            lb_tensor *c = lb_bmm(&g, a, b, ta, tb);
            assert_non_null(c);
            assert_int_equal(c->shape[0], BB);
            assert_int_equal(c->shape[1], BM);
            assert_int_equal(c->shape[2], BN);
            for (int i = 0; i < BB; i++)
                for (int m = 0; m < BM; m++)
                    for (int n = 0; n < BN; n++) {
                        double ref = 0.0;
                        for (int k = 0; k < BK; k++) {
                            double av = ta ? a->data[(i * BK + k) * BM + m] : a->data[(i * BM + m) * BK + k];
                            double bv = tb ? b->data[(i * BN + n) * BK + k] : b->data[(i * BK + k) * BN + n];
                            ref += av * bv;
                        }
                        assert_float_equal(c->data[(i * BM + m) * BN + n], ref, 1e-5);
                    }
            lb_graph_free(&g);
            lb_tensor_free(a);
            lb_tensor_free(b);
        }
}

static lb_tensor *bmm_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    const int *t = ctx;
    return tu_weighted_sum(g, lb_bmm(g, p[0], p[1], t[0], t[1]), 12);
}

static void test_bmm_grad(void **state) {
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int as[3], bs[3];
            bmm_shapes(ta, tb, as, bs);
            lb_tensor *p[2] = {tu_param(3, as, 9, -1.0f, 1.0f), tu_param(3, bs, 10, -1.0f, 1.0f)};
            p[0]->name = "a";
            p[1]->name = "b";
            int t[2] = {ta, tb};
            tu_gradcheck(bmm_loss, p, 2, t, 1e-2f, 1e-2, 1e-3);
            lb_tensor_free(p[0]);
            lb_tensor_free(p[1]);
        }
}

static void test_bmm_errors(void **state) {
    (void)state;
    int as[3] = {2, 3, 4}, bs[3] = {2, 5, 6}, cs[3] = {3, 4, 6};
    lb_tensor *a = tu_param(3, as, 1, -1.0f, 1.0f), *b = tu_param(3, bs, 2, -1.0f, 1.0f), *c = tu_param(3, cs, 3, -1.0f, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    assert_null(lb_bmm(&g, a, b, 0, 0)); /* K 4 vs 5 */
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "bmm"));
    assert_null(lb_bmm(&g, a, c, 0, 0)); /* batch 2 vs 3 */
    assert_null(lb_bmm(&g, a, b, 1, 1)); /* transposed: K 3 vs 6 */
    lb_graph_free(&g);
    lb_tensor_free(a);
    lb_tensor_free(b);
    lb_tensor_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_forward), cmocka_unit_test(test_matmul_grad),
        cmocka_unit_test(test_matmul_errors),  cmocka_unit_test(test_bmm_forward),
        cmocka_unit_test(test_bmm_grad),       cmocka_unit_test(test_bmm_errors),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

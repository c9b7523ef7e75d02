/* Tests of lb_embedding, lb_rmsnorm and lb_layernorm (autograd/ops_norm.c).
 *
 * Forward values: hand examples and a double-precision reference written out
 * here. Gradients: finite differences of sum(op(...) ⊙ R) with respect to
 * every differentiable input (x, gain, bias, embedding table). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

/* Reference norm of one row in double: (x − μ)/sqrt(var + eps)·w + b, μ = 0
 * and var = mean(x²) for RMSNorm. */
static void ref_norm_row(const float *x, const float *w, const float *b, int D, double eps, int center,
                         double *out) {
    double mu = 0.0, var = 0.0;
    if (center) {
        for (int d = 0; d < D; d++) mu += x[d];
        mu /= D;
    }
    for (int d = 0; d < D; d++) var += (x[d] - mu) * (x[d] - mu);
    var /= D;
    for (int d = 0; d < D; d++) {
        out[d] = (x[d] - mu) / sqrt(var + eps);
        if (w) out[d] *= w[d];
        if (b) out[d] += b[d];
    }
}

/* --- forward values --------------------------------------------------------------- */

static void test_rmsnorm_hand_example(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *x = lb_tensor_alloc(1, (int[]){2}, 0), *w = lb_tensor_alloc(1, (int[]){2}, 0);
    x->data[0] = 3.0f;
    x->data[1] = 4.0f;
    w->data[0] = 2.0f;
    w->data[1] = 0.5f;
    /* mean(x²) = 12.5, so y = [3, 4] / sqrt(12.5). */
    lb_tensor *y = lb_rmsnorm(&g, x, NULL, 0.0f);
    assert_float_equal(y->data[0], 3.0 / sqrt(12.5), 1e-6);
    assert_float_equal(y->data[1], 4.0 / sqrt(12.5), 1e-6);
    y = lb_rmsnorm(&g, x, w, 0.0f);
    assert_float_equal(y->data[0], 0.8485281f * 2.0f, 1e-6);
    assert_float_equal(y->data[1], 1.1313708f * 0.5f, 1e-6);
    /* eps enters under the root: mean(x²) + eps = 12.5 + 3.5 = 16. */
    y = lb_rmsnorm(&g, x, NULL, 3.5f);
    assert_float_equal(y->data[0], 0.75f, 1e-6);
    assert_float_equal(y->data[1], 1.0f, 1e-6);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_graph_free(&g);
}

static void test_layernorm_hand_example(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int sh[2] = {2, 3};
    lb_tensor *x = lb_tensor_alloc(2, sh, 0), *w = lb_tensor_alloc(1, &sh[1], 0), *b = lb_tensor_alloc(1, &sh[1], 0);
    /* Row 0: [1, 2, 3], mean 2, variance 2/3, so x̂ = [−1, 0, 1]·sqrt(3/2).
     * Row 1: [5, 5, 5] is constant: x̂ = 0 (eps keeps it finite), y = b. */
    const float xv[6] = {1, 2, 3, 5, 5, 5}, wv[3] = {1, 2, -1}, bv[3] = {0.5f, -0.5f, 0.25f};
    memcpy(x->data, xv, sizeof xv);
    memcpy(w->data, wv, sizeof wv);
    memcpy(b->data, bv, sizeof bv);
    const float k = 1.2247449f; /* sqrt(1.5) */
    lb_tensor *y = lb_layernorm(&g, x, NULL, NULL, 0.0f);
    assert_float_equal(y->data[0], -k, 1e-6);
    assert_float_equal(y->data[1], 0.0f, 1e-6);
    assert_float_equal(y->data[2], k, 1e-6);
    y = lb_layernorm(&g, x, w, b, 1e-5f);
    const float want[6] = {-k + 0.5f, -0.5f, -k + 0.25f, 0.5f, -0.5f, 0.25f};
    for (int i = 0; i < 6; i++) assert_float_equal(y->data[i], want[i], 2e-5);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_tensor_free(b);
    lb_graph_free(&g);
}

static void test_norms_match_reference(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int rows = 37, D = 45;
    lb_tensor *x = tu_const(3, (int[]){1, rows, D}, 1, -1.0f, 1.0f), *w = tu_const(1, &D, 2, -1.0f, 1.0f), *b = tu_const(1, &D, 3, -1.0f, 1.0f);
    for (size_t i = 0; i < x->n; i++) x->data[i] = 3.0f * x->data[i] + 10.0f; /* a large mean */
    double *ref = malloc((size_t)D * sizeof(double));
    for (int center = 0; center <= 1; center++) {
        lb_tensor *y = center ? lb_layernorm(&g, x, w, b, 1e-5f) : lb_rmsnorm(&g, x, w, 1e-5f);
        assert_non_null(y);
        assert_int_equal(y->ndim, 3);
        assert_int_equal(y->shape[2], D);
        for (int r = 0; r < rows; r++) {
            ref_norm_row(x->data + r * D, w->data, center ? b->data : NULL, D, 1e-5, center, ref);
            for (int d = 0; d < D; d++) assert_float_equal(y->data[r * D + d], ref[d], 1e-5);
        }
    }
    free(ref);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_tensor_free(b);
    lb_graph_free(&g);
}

static void test_norm_shape_errors(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *x = tu_param(2, (int[]){3, 4}, 1, -1, 1), *w5 = tu_param(1, (int[]){5}, 2, -1, 1);
    lb_tensor *w4 = tu_param(1, (int[]){4}, 3, -1, 1);
    assert_null(lb_rmsnorm(&g, x, w5, 1e-5f));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "rmsnorm"));
    assert_non_null(strstr(lb_errmsg(), "[5]"));
    assert_non_null(strstr(lb_errmsg(), "[3,4]"));
    assert_null(lb_layernorm(&g, x, w4, w5, 1e-5f));
    assert_non_null(strstr(lb_errmsg(), "layernorm: bias"));
    assert_null(lb_layernorm(&g, x, w4, NULL, -1.0f));
    assert_non_null(strstr(lb_errmsg(), "eps"));
    assert_int_equal(g.n_nodes, 0);
    lb_tensor_free(x);
    lb_tensor_free(w5);
    lb_tensor_free(w4);
    lb_graph_free(&g);
}

/* --- embedding -------------------------------------------------------------------- */

static void test_embedding_forward_and_bad_id(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int V = 5, D = 3;
    lb_tensor *table = tu_const(2, (int[]){V, D}, 4, -1.0f, 1.0f);
    const int ids[6] = {4, 0, 4, 2, 1, 3};
    lb_tensor *y = lb_embedding(&g, table, ids, 2, 3);
    assert_non_null(y);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[0], 2);
    assert_int_equal(y->shape[1], 3);
    assert_int_equal(y->shape[2], D);
    for (int p = 0; p < 6; p++)
        for (int d = 0; d < D; d++) assert_float_equal(y->data[p * D + d], table->data[ids[p] * D + d], 0.0f);

    const int bad[6] = {0, 1, 2, 3, 7, 0}; /* 7 at position 4 = batch 1, t 1 */
    lb_error_clear();
    assert_null(lb_embedding(&g, table, bad, 2, 3));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "id 7"));
    assert_non_null(strstr(lb_errmsg(), "position 4"));
    assert_non_null(strstr(lb_errmsg(), "[0, 5)"));
    const int negative[2] = {0, -1};
    assert_null(lb_embedding(&g, table, negative, 1, 2));
    assert_non_null(strstr(lb_errmsg(), "id -1"));
    lb_tensor_free(table);
    lb_graph_free(&g);
}

/* --- gradients -------------------------------------------------------------------- */

typedef struct {
    int kind;           /* 0 rmsnorm, 1 layernorm, 2 embedding */
    int use_w, use_b;   /* norms: gain and bias given (params[1], params[2] in order) */
    float eps;
    const int *ids;     /* embedding */
    int B, T;
    lb_tensor *R;
} norm_ctx;

static lb_tensor *norm_loss(lb_graph *g, lb_tensor **p, int n_params, void *ctx) {
    norm_ctx *c = ctx;
    lb_tensor *y;
    if (c->kind == 2) {
        y = lb_embedding(g, p[0], c->ids, c->B, c->T);
    } else {
        lb_tensor *w = c->use_w ? p[1] : NULL;
        lb_tensor *b = c->use_b ? p[c->use_w ? 2 : 1] : NULL;
        y = c->kind == 0 ? lb_rmsnorm(g, p[0], w, c->eps) : lb_layernorm(g, p[0], w, b, c->eps);
    }
    return lb_sum(g, lb_mul(g, y, c->R));
}

static void check_norm(int kind, int use_w, int use_b) {
    int sh[3] = {2, 3, 6};
    lb_tensor *p[3];
    int n = 0;
    p[n++] = tu_param(3, sh, 30 + (uint64_t)kind, -2.0f, 2.0f);
    if (use_w) p[n++] = tu_param(1, &sh[2], 31, 0.5f, 1.5f);
    if (use_b) p[n++] = tu_param(1, &sh[2], 32, -0.5f, 0.5f);
    norm_ctx c = {.kind = kind, .use_w = use_w, .use_b = use_b, .eps = 1e-5f, .R = tu_const(3, sh, 33, -1.0f, 1.0f)};
    tu_gradcheck(norm_loss, p, n, &c, 1e-2f, 1e-2, 1e-3);
    for (int k = 0; k < n; k++) lb_tensor_free(p[k]);
    lb_tensor_free(c.R);
}

static void test_grad_rmsnorm(void **state) { (void)state; check_norm(0, 1, 0); }
static void test_grad_rmsnorm_no_weight(void **state) { (void)state; check_norm(0, 0, 0); }
static void test_grad_layernorm(void **state) { (void)state; check_norm(1, 1, 1); }
static void test_grad_layernorm_no_affine(void **state) { (void)state; check_norm(1, 0, 0); }
static void test_grad_layernorm_bias_only(void **state) { (void)state; check_norm(1, 0, 1); }

static void test_grad_embedding_repeated_ids(void **state) {
    (void)state;
    int V = 6, D = 4;
    lb_tensor *table = tu_param(2, (int[]){V, D}, 40, -1, 1);
    /* Id 2 appears three times and id 5 twice, so their rows accumulate;
     * rows 0 and 4 are never used and must get no gradient. */
    const int ids[8] = {2, 5, 2, 1, 3, 2, 5, 1};
    norm_ctx c = {.kind = 2, .ids = ids, .B = 2, .T = 4, .R = tu_const(3, (int[]){2, 4, D}, 41, -1.0f, 1.0f)};
    tu_gradcheck(norm_loss, &table, 1, &c, 1e-2f, 1e-2, 1e-3);
    for (int d = 0; d < D; d++) {
        assert_float_equal(table->grad[0 * D + d], 0.0f, 0.0f);
        assert_float_equal(table->grad[4 * D + d], 0.0f, 0.0f);
        /* Row 2 collects R at positions 0, 2 and 5. */
        float want = c.R->data[0 * D + d] + c.R->data[2 * D + d] + c.R->data[5 * D + d];
        assert_float_equal(table->grad[2 * D + d], want, 1e-6);
    }
    lb_tensor_free(table);
    lb_tensor_free(c.R);
}

/* --- parallel paths: same bits with 1 and 2 threads, and right answers ------------ */

static void test_large_deterministic_across_threads(void **state) {
    (void)state;
    int rows = 512, D = 128, V = 50, B = 4, T = 128;
    lb_tensor *x = tu_param(2, (int[]){rows, D}, 50, -2, 2), *w = tu_param(1, &D, 51, 0.5f, 1.5f);
    lb_tensor *b = tu_param(1, &D, 52, -0.5f, 0.5f), *table = tu_param(2, (int[]){V, D}, 53, -1, 1);
    lb_tensor *R = tu_const(3, (int[]){B, T, D}, 54, -1.0f, 1.0f);
    int *ids = malloc((size_t)B * T * sizeof(int));
    for (int p = 0; p < B * T; p++) ids[p] = (int)(lb_rand_u32(55, 0, (uint64_t)p) % (uint32_t)V);
    lb_tensor *params[4] = {x, w, b, table};
    float *first[4];
    for (int k = 0; k < 4; k++) first[k] = malloc(params[k]->n * sizeof(float));

    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int k = 0; k < 4; k++) memset(params[k]->grad, 0, params[k]->n * sizeof(float));
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        /* loss = sum((layernorm(x) + rmsnorm(x) reshaped, + embedding) ⊙ R) */
        lb_tensor *ln = lb_layernorm(&g, x, w, b, 1e-5f);
        lb_tensor *rn = lb_rmsnorm(&g, x, w, 1e-5f);
        lb_tensor *h = lb_reshape(&g, lb_add(&g, ln, rn), 3, (int[]){B, T, D});
        lb_tensor *e = lb_embedding(&g, table, ids, B, T);
        lb_tensor *loss = lb_sum(&g, lb_mul(&g, lb_add(&g, h, e), R));
        if (lb_backward(&g, loss) != LB_OK) fail_msg("%s", lb_errmsg());
        for (int k = 0; k < 4; k++) {
            if (threads == 1) memcpy(first[k], params[k]->grad, params[k]->n * sizeof(float));
            else assert_memory_equal(first[k], params[k]->grad, params[k]->n * sizeof(float));
        }
        lb_graph_free(&g);
    }
    omp_set_num_threads(saved);

    /* Sums a plain serial loop computes: db = Σ_rows R, table grad = Σ_{p: id = v} R[p]. */
    for (int d = 0; d < D; d += 7) {
        double db = 0.0;
        for (int r = 0; r < rows; r++) db += R->data[(size_t)r * D + d]; /* only layernorm has a bias */
        assert_float_equal(b->grad[d], db, 1e-3);
    }
    for (int v = 0; v < V; v += 3) {
        for (int d = 0; d < D; d += 5) {
            double s = 0.0;
            for (int p = 0; p < B * T; p++)
                if (ids[p] == v) s += R->data[(size_t)p * D + d];
            assert_float_equal(table->grad[(size_t)v * D + d], s, 1e-4);
        }
    }
    for (int k = 0; k < 4; k++) {
        free(first[k]);
        lb_tensor_free(params[k]);
    }
    lb_tensor_free(R);
    free(ids);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_hand_example),
        cmocka_unit_test(test_layernorm_hand_example),
        cmocka_unit_test(test_norms_match_reference),
        cmocka_unit_test(test_norm_shape_errors),
        cmocka_unit_test(test_embedding_forward_and_bad_id),
        cmocka_unit_test(test_grad_rmsnorm),
        cmocka_unit_test(test_grad_rmsnorm_no_weight),
        cmocka_unit_test(test_grad_layernorm),
        cmocka_unit_test(test_grad_layernorm_no_affine),
        cmocka_unit_test(test_grad_layernorm_bias_only),
        cmocka_unit_test(test_grad_embedding_repeated_ids),
        cmocka_unit_test(test_large_deterministic_across_threads),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

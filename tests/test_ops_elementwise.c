/* Tests of the element-wise ops, reductions and reshape (autograd/ops_elementwise.c).
 *
 * Forward values are checked against hand examples and double-precision
 * formulas written out here; every gradient is checked against finite
 * differences of the scalar loss sum(op(...) ⊙ R), with R a fixed random
 * tensor so that every output element matters with its own weight. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

/* --- helpers ------------------------------------------------------------------ */

static void set_values(lb_tensor *t, const float *v) { memcpy(t->data, v, t->n * sizeof(float)); }

/* Moves values out of (-margin, margin), where relu2's derivative has its
 * kink and a central difference would straddle it. */
static void keep_away_from_zero(lb_tensor *t, float margin) {
    for (size_t i = 0; i < t->n; i++)
        if (fabsf(t->data[i]) < margin) t->data[i] += t->data[i] < 0 ? -2 * margin : 2 * margin;
}

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu_d(double x) { return x * sigmoid_d(x); }
static double silu_grad_d(double x) { return sigmoid_d(x) * (1.0 + x * (1.0 - sigmoid_d(x))); }
static double gelu_d(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

typedef enum { OP_ADD, OP_MUL, OP_SCALE, OP_SILU, OP_GELU, OP_RELU2, OP_SWIGLU, OP_SUM, OP_MEAN, OP_RESHAPE } op_id;

typedef struct {
    op_id op;
    lb_tensor *R; /* weights of the loss, shape of the op's output; unused for OP_SUM/OP_MEAN */
    int ndim;     /* OP_RESHAPE: the new shape */
    int shape[LB_MAX_DIMS];
} loss_ctx;

/* loss = sum(op(params) ⊙ R); for the reductions, loss = op(params[0] ⊙ R). */
static lb_tensor *op_loss(lb_graph *g, lb_tensor **p, int n_params, void *ctx) {
    loss_ctx *c = ctx;
    lb_tensor *y = NULL;
    switch (c->op) {
    case OP_ADD: y = lb_add(g, p[0], p[1]); break;
    case OP_MUL: y = lb_mul(g, p[0], p[1]); break;
    case OP_SCALE: y = lb_scale(g, p[0], -1.75f); break;
    case OP_SILU: y = lb_silu(g, p[0]); break;
    case OP_GELU: y = lb_gelu(g, p[0]); break;
    case OP_RELU2: y = lb_relu2(g, p[0]); break;
    case OP_SWIGLU: y = lb_swiglu(g, p[0], p[1]); break;
    case OP_RESHAPE: y = lb_reshape(g, p[0], c->ndim, c->shape); break;
    case OP_SUM: return lb_sum(g, lb_mul(g, p[0], c->R));
    case OP_MEAN: return lb_mean(g, lb_mul(g, p[0], c->R));
    }
    return lb_sum(g, lb_mul(g, y, c->R));
}

/* --- forward values --------------------------------------------------------------- */

static void test_forward_hand_examples(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int sh[1] = {4};
    lb_tensor *a = lb_tensor_alloc(1, sh, 0), *b = lb_tensor_alloc(1, sh, 0);
    set_values(a, (float[]){-2.0f, 0.0f, 0.5f, 3.0f});
    set_values(b, (float[]){1.0f, -1.0f, 4.0f, 0.25f});

    const float add[4] = {-1.0f, -1.0f, 4.5f, 3.25f}, mul[4] = {-2.0f, 0.0f, 2.0f, 0.75f};
    const float scale[4] = {3.0f, 0.0f, -0.75f, -4.5f}, relu2[4] = {0.0f, 0.0f, 0.25f, 9.0f};
    lb_tensor *y_add = lb_add(&g, a, b), *y_mul = lb_mul(&g, a, b), *y_scale = lb_scale(&g, a, -1.5f);
    lb_tensor *y_relu2 = lb_relu2(&g, a), *y_silu = lb_silu(&g, a), *y_gelu = lb_gelu(&g, a);
    lb_tensor *y_swiglu = lb_swiglu(&g, a, b);
    for (int i = 0; i < 4; i++) {
        assert_float_equal(y_add->data[i], add[i], 0.0f);
        assert_float_equal(y_mul->data[i], mul[i], 0.0f);
        assert_float_equal(y_scale->data[i], scale[i], 0.0f);
        assert_float_equal(y_relu2->data[i], relu2[i], 0.0f);
        assert_float_equal(y_silu->data[i], silu_d(a->data[i]), 1e-6);
        assert_float_equal(y_gelu->data[i], gelu_d(a->data[i]), 1e-6);
        assert_float_equal(y_swiglu->data[i], silu_d(a->data[i]) * b->data[i], 1e-6);
    }
    /* Published values: silu(−2) = −2/(1 + e²); GELU (tanh) at 3 ≈ 2.9963627. */
    assert_float_equal(y_silu->data[0], -0.23840584f, 1e-6);
    assert_float_equal(y_gelu->data[3], 2.9963627f, 1e-5);
    assert_float_equal(y_gelu->data[1], 0.0f, 0.0f);

    lb_tensor *s = lb_sum(&g, a), *m = lb_mean(&g, b);
    assert_int_equal(s->n, 1);
    assert_float_equal(s->data[0], 1.5f, 0.0f);
    assert_float_equal(m->data[0], 4.25f / 4.0f, 0.0f);

    /* No input required a gradient: nothing was recorded. */
    assert_int_equal(g.n_nodes, 0);
    assert_int_equal(y_add->requires_grad, 0);
    lb_tensor_free(a);
    lb_tensor_free(b);
    lb_graph_free(&g);
}

static void test_sum_large_exact_and_thread_independent(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int n = 1000003;
    lb_tensor *x = lb_tensor_alloc(1, &n, 0);
    for (int i = 0; i < n; i++) x->data[i] = 1.0f;
    /* A float running sum would stall at 2^24; the exact answer is n. */
    assert_float_equal(lb_sum(&g, x)->data[0], (float)n, 0.0f);
    assert_float_equal(lb_mean(&g, x)->data[0], 1.0f, 0.0f);

    tu_fill_uniform(x, 5, -1.0f, 1.0f);
    double ref = 0.0;
    for (int i = 0; i < n; i++) ref += x->data[i];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    float s1 = lb_sum(&g, x)->data[0];
    omp_set_num_threads(2);
    float s2 = lb_sum(&g, x)->data[0];
    omp_set_num_threads(saved);
    assert_memory_equal(&s1, &s2, sizeof s1);
    assert_float_equal(s1, ref, 1e-3);
    lb_tensor_free(x);
    lb_graph_free(&g);
}

static void test_shape_errors(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *a = lb_tensor_alloc(2, (int[]){2, 3}, 1), *b = lb_tensor_alloc(2, (int[]){3, 2}, 1);
    struct {
        const char *name;
        lb_tensor *(*fn)(lb_graph *, lb_tensor *, lb_tensor *);
    } binary[] = {{"add", lb_add}, {"mul", lb_mul}, {"swiglu", lb_swiglu}};
    for (int k = 0; k < 3; k++) {
        lb_error_clear();
        assert_null(binary[k].fn(&g, a, b));
        assert_int_equal(lb_errcode(), LB_EINVAL);
        assert_non_null(strstr(lb_errmsg(), binary[k].name));
        assert_non_null(strstr(lb_errmsg(), "[2,3]"));
        assert_non_null(strstr(lb_errmsg(), "[3,2]"));
    }
    lb_error_clear();
    assert_null(lb_reshape(&g, a, 2, (int[]){4, 2}));
    assert_non_null(strstr(lb_errmsg(), "reshape"));
    assert_non_null(strstr(lb_errmsg(), "[2,3]"));
    assert_non_null(strstr(lb_errmsg(), "[4,2]"));
    assert_null(lb_reshape(&g, a, 5, (int[]){1, 1, 2, 3, 1}));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_int_equal(g.n_nodes, 0);
    lb_tensor_free(a);
    lb_tensor_free(b);
    lb_graph_free(&g);
}

static void test_reshape_shares_data(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *x = tu_param(2, (int[]){2, 6}, 1, -1, 1);
    lb_tensor *y = lb_reshape(&g, x, 3, (int[]){3, 2, 2});
    assert_non_null(y);
    assert_ptr_equal(y->data, x->data);
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[0], 3);
    assert_int_equal(y->n, 12);
    /* loss = sum(reshape(x) · 2) sends 2 to every element of x. */
    lb_tensor *loss = lb_sum(&g, lb_scale(&g, y, 2.0f));
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    for (int i = 0; i < 12; i++) assert_float_equal(x->grad[i], 2.0f, 0.0f);
    lb_tensor_free(x);
    lb_graph_free(&g);
}

/* --- gradients -------------------------------------------------------------------- */

static void check_op(op_id op, int n_inputs, int relu_margin) {
    int shape[3] = {2, 3, 4};
    lb_tensor *p[2];
    for (int k = 0; k < n_inputs; k++) {
        p[k] = tu_param(3, shape, 10 + (uint64_t)op * 2 + (uint64_t)k, -2.0f, 2.0f);
        if (relu_margin) keep_away_from_zero(p[k], 0.05f);
    }
    loss_ctx c = {.op = op, .R = tu_const(3, shape, 99, -1.0f, 1.0f)};
    tu_gradcheck(op_loss, p, n_inputs, &c, 1e-2f, 1e-2, 1e-3);
    for (int k = 0; k < n_inputs; k++) lb_tensor_free(p[k]);
    lb_tensor_free(c.R);
}

static void test_grad_add(void **state) { (void)state; check_op(OP_ADD, 2, 0); }
static void test_grad_mul(void **state) { (void)state; check_op(OP_MUL, 2, 0); }
static void test_grad_scale(void **state) { (void)state; check_op(OP_SCALE, 1, 0); }
static void test_grad_silu(void **state) { (void)state; check_op(OP_SILU, 1, 0); }
static void test_grad_gelu(void **state) { (void)state; check_op(OP_GELU, 1, 0); }
static void test_grad_relu2(void **state) { (void)state; check_op(OP_RELU2, 1, 1); }
static void test_grad_swiglu(void **state) { (void)state; check_op(OP_SWIGLU, 2, 0); }
static void test_grad_sum(void **state) { (void)state; check_op(OP_SUM, 1, 0); }
static void test_grad_mean(void **state) { (void)state; check_op(OP_MEAN, 1, 0); }

static void test_grad_reshape(void **state) {
    (void)state;
    lb_tensor *x = tu_param(2, (int[]){4, 6}, 3, -1, 1);
    loss_ctx c = {.op = OP_RESHAPE, .ndim = 3, .shape = {2, 3, 4}};
    c.R = tu_const(3, c.shape, 98, -1.0f, 1.0f);
    tu_gradcheck(op_loss, &x, 1, &c, 1e-2f, 1e-2, 1e-3);
    lb_tensor_free(x);
    lb_tensor_free(c.R);
}

/* Large tensors take the parallel paths; compare with the derivative
 * written out in double, and 1 thread with 2. */
static void test_large_parallel_backward(void **state) {
    (void)state;
    int n = 200000;
    lb_tensor *x = tu_param(1, &n, 21, -4.0f, 4.0f), *u = tu_param(1, &n, 22, -1.0f, 1.0f);
    lb_tensor *R = tu_const(1, &n, 23, -1.0f, 1.0f);
    float *gx1 = malloc((size_t)n * sizeof(float));
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        memset(x->grad, 0, (size_t)n * sizeof(float));
        memset(u->grad, 0, (size_t)n * sizeof(float));
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        /* loss = mean(swiglu(x, u) ⊙ R) */
        lb_tensor *loss = lb_mean(&g, lb_mul(&g, lb_swiglu(&g, x, u), R));
        assert_int_equal(lb_backward(&g, loss), LB_OK);
        for (int i = 0; i < n; i += 997) {
            double dy = R->data[i] / (double)n;
            assert_float_equal(x->grad[i], dy * u->data[i] * silu_grad_d(x->data[i]), 1e-10);
            assert_float_equal(u->grad[i], dy * silu_d(x->data[i]), 1e-10);
        }
        if (threads == 1) memcpy(gx1, x->grad, (size_t)n * sizeof(float));
        else assert_memory_equal(gx1, x->grad, (size_t)n * sizeof(float));
        lb_graph_free(&g);
    }
    omp_set_num_threads(saved);
    free(gx1);
    lb_tensor_free(x);
    lb_tensor_free(u);
    lb_tensor_free(R);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_hand_examples),
        cmocka_unit_test(test_sum_large_exact_and_thread_independent),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_reshape_shares_data),
        cmocka_unit_test(test_grad_add),
        cmocka_unit_test(test_grad_mul),
        cmocka_unit_test(test_grad_scale),
        cmocka_unit_test(test_grad_silu),
        cmocka_unit_test(test_grad_gelu),
        cmocka_unit_test(test_grad_relu2),
        cmocka_unit_test(test_grad_swiglu),
        cmocka_unit_test(test_grad_sum),
        cmocka_unit_test(test_grad_mean),
        cmocka_unit_test(test_grad_reshape),
        cmocka_unit_test(test_large_parallel_backward),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

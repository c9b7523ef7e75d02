/* Tests of src/layers/linear.c: BitLinear forward against the BitNet formulas
 * computed here by hand, and its gradients through the straight-through
 * estimator. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "layers/linear.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------
 * Reference quantizers, written from the papers' formulas in double. */

/* b1.58 weights: γ = max(mean|W|, 1e-5), W̃ = clamp(round(W/γ), −1, 1). */
static double ref_ternary(const float *w, size_t n, double *wt) {
    double g = 0.0;
    for (size_t i = 0; i < n; i++) g += fabs(w[i]);
    g = fmax(g / (double)n, 1e-5);
    for (size_t i = 0; i < n; i++) wt[i] = fmin(1.0, fmax(-1.0, rint(w[i] / g)));
    return g;
}

/* b1 weights: α = mean W, β = mean|W|, W̃ = sign(W − α) with sign(0) = −1. */
static double ref_binary(const float *w, size_t n, double *wt) {
    double a = 0.0, b = 0.0;
    for (size_t i = 0; i < n; i++) a += w[i], b += fabs(w[i]);
    a /= (double)n;
    for (size_t i = 0; i < n; i++) wt[i] = (double)w[i] - a > 0.0 ? 1.0 : -1.0;
    return b / (double)n;
}

/* Per-token 8-bit absmax, γ = max(max|x|, 1e-5):
 *   b1.58: s = 127/γ,       x̃ = clamp(round(x·s), −128, 127)
 *   b1:    s = Qb/γ = 128/γ, x̃ = clip(round(x·s), −(Qb − 1), Qb − 1)  (x·Qb/γ clipped inside ±Qb) */
static double ref_int8_row(const float *x, int K, double *xt, int b1) {
    double mx = 0.0;
    for (int k = 0; k < K; k++) mx = fmax(mx, fabs(x[k]));
    double s = (b1 ? 128.0 : 127.0) / fmax(mx, 1e-5);
    for (int k = 0; k < K; k++) xt[k] = fmin(127.0, fmax(b1 ? -127.0 : -128.0, rint(x[k] * s)));
    return s;
}

/* y[m, n] = Σ_k W̃[n, k]·x̃[m, k] · β / s_m: the integer matmul, scaled once
 * (b1: β·γ/Qb; b1.58: γ_w·γ_x/127). */
static void ref_bitlinear(const float *x, const float *w, int M, int N, int K, int binary, double *y) {
    double *wt = malloc((size_t)N * K * sizeof *wt), *xt = malloc((size_t)K * sizeof *xt);
    double beta = binary ? ref_binary(w, (size_t)N * K, wt) : ref_ternary(w, (size_t)N * K, wt);
    for (int m = 0; m < M; m++) {
        double s = ref_int8_row(x + (size_t)m * K, K, xt, binary);
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) acc += wt[(size_t)n * K + k] * xt[k];
            y[(size_t)m * N + n] = acc * beta / s;
        }
    }
    free(wt);
    free(xt);
}

static lb_tensor *new_tensor2(int r, int c, int with_grad) {
    int shape[2] = {r, c};
    return lb_tensor_alloc(2, shape, with_grad);
}

static lb_linear_quant resolved(lb_linear_mode mode) {
    lb_linear_quant in, out;
    memset(&in, 0, sizeof in);
    in.mode = mode;
    assert_int_equal(lb_linear_quant_resolve(&in, &out, "test"), LB_OK);
    return out;
}

static void run_linear(lb_tensor *x, lb_tensor *w, const lb_linear_quant *q, float lambda, float *y_out) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    lb_tensor *y = lb_linear(&g, x, w, q, NULL, lambda);
    if (!y) fail_msg("lb_linear: %s", lb_errmsg());
    memcpy(y_out, y->data, y->n * sizeof(float));
    lb_graph_free(&g);
}

/* ---------------------------------------------------------------------------
 * Forward values */

/* A literal example worked out by hand:
 * W = [[1, −0.5, 0.2, 0], [−2, 0.1, 0.6, 1.2]], x = [0.5, −1.1, 0.25, 2].
 * b1.58: γ = 5.6/8 = 0.7; W/γ rounds to [[1, −1, 0, 0], [−1, 0, 1, 1]].
 *        s = 127/2 = 63.5; x·s = [31.75, −69.85, 15.875, 127] → [32, −70, 16, 127].
 *        y = [32 + 70, −32 + 16 + 127]·γ/s = [102, 111]·0.7/63.5.
 * b1:    α = 0.6/8 = 0.075, W − α = [[.925, −.575, .125, −.075], [−2.075, .025, .525, 1.125]]
 *        → W̃ = [[1, −1, 1, −1], [−1, 1, 1, 1]], β = 0.7;
 *        activations x·Qb/γ with Qb = 128, γ = 2: [32, −70.4, 16, 128] → [32, −70, 16, 127]
 *        (clipped inside ±Qb); y = [32 + 70 + 16 − 127, −32 − 70 + 16 + 127]·βγ/Qb = [−9, 41]·0.7/64. */
static void test_literal_example(void **state) {
    (void)state;
    lb_tensor *w = new_tensor2(2, 4, 0), *x = new_tensor2(1, 4, 0);
    const float wv[8] = {1, -0.5f, 0.2f, 0, -2, 0.1f, 0.6f, 1.2f}, xv[4] = {0.5f, -1.1f, 0.25f, 2};
    memcpy(w->data, wv, sizeof wv);
    memcpy(x->data, xv, sizeof xv);
    float y[2];

    lb_linear_quant q = resolved(LB_LINEAR_B158);
    run_linear(x, w, &q, 1.0f, y);
    assert_float_equal(y[0], 102 * 0.7 / 63.5, 1e-5);
    assert_float_equal(y[1], 111 * 0.7 / 63.5, 1e-5);

    q = resolved(LB_LINEAR_B1);
    run_linear(x, w, &q, 1.0f, y);
    assert_float_equal(y[0], -9 * 0.7 / 64, 1e-5);
    assert_float_equal(y[1], 41 * 0.7 / 64, 1e-5);

    q = resolved(LB_LINEAR_FP);
    run_linear(x, w, &q, 1.0f, y);
    assert_float_equal(y[0], 0.5 + 0.55 + 0.05, 1e-6);
    assert_float_equal(y[1], -1.0 - 0.11 + 0.15 + 2.4, 1e-6);
    lb_tensor_free(w);
    lb_tensor_free(x);
}

/* Random inputs with several tokens (each its own activation scale), x as
 * [B, T, K], against the reference formulas. */
static void check_random(int binary) {
    const int B = 2, T = 3, K = 16, N = 5, M = B * T;
    int xs[3] = {B, T, K};
    lb_tensor *x = lb_tensor_alloc(3, xs, 0), *w = new_tensor2(N, K, 0);
    tu_fill_uniform(x, 11 + binary, -2.0f, 2.0f);
    tu_fill_uniform(w, 21 + binary, -0.1f, 0.1f);
    for (int k = 0; k < K; k++) x->data[K + k] *= 0.01f; /* token 1: a much smaller scale */

    lb_linear_quant q = resolved(binary ? LB_LINEAR_B1 : LB_LINEAR_B158);
    float *y = malloc((size_t)M * N * sizeof *y);
    double *ref = malloc((size_t)M * N * sizeof *ref);
    run_linear(x, w, &q, 1.0f, y);
    ref_bitlinear(x->data, w->data, M, N, K, binary, ref);
    for (int i = 0; i < M * N; i++) {
        double tol = 1e-5 + 1e-4 * fabs(ref[i]);
        if (fabs(y[i] - ref[i]) > tol) fail_msg("%s: y[%d] = %.7g, formula %.7g", binary ? "b1" : "b1.58", i, y[i], ref[i]);
    }
    free(y);
    free(ref);
    lb_tensor_free(x);
    lb_tensor_free(w);
}

static void test_b158_random_matches_formula(void **state) {
    (void)state;
    check_random(0);
}

static void test_b1_random_matches_formula(void **state) {
    (void)state;
    check_random(1);
}

/* Gradual quantization: y = (x + λ(q(x) − x)) · (W + λ(q(W) − W))ᵀ; λ = 0 is
 * the fp32 layer exactly. */
static void test_lambda_blend(void **state) {
    (void)state;
    const int M = 3, N = 4, K = 8;
    lb_tensor *x = new_tensor2(M, K, 0), *w = new_tensor2(N, K, 0);
    tu_fill_uniform(x, 31, -1.0f, 1.0f);
    tu_fill_uniform(w, 32, -0.5f, 0.5f);
    lb_linear_quant q = resolved(LB_LINEAR_B158), fp = resolved(LB_LINEAR_FP);
    float y0[12], yfp[12], yh[12];
    run_linear(x, w, &q, 0.0f, y0);
    run_linear(x, w, &fp, 1.0f, yfp);
    for (int i = 0; i < M * N; i++) assert_float_equal(y0[i], yfp[i], 1e-6);

    const double lam = 0.5;
    double wt[32], xt[8];
    double gamma = ref_ternary(w->data, (size_t)N * K, wt);
    double wb[32];
    for (int i = 0; i < N * K; i++) wb[i] = w->data[i] + lam * (wt[i] * gamma - w->data[i]);
    run_linear(x, w, &q, (float)lam, yh);
    for (int m = 0; m < M; m++) {
        double s = ref_int8_row(x->data + m * K, K, xt, 0);
        for (int n = 0; n < N; n++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                double xv = x->data[m * K + k];
                acc += (xv + lam * (xt[k] / s - xv)) * wb[n * K + k];
            }
            assert_float_equal(yh[m * N + n], acc, 1e-5);
        }
    }
    lb_tensor_free(x);
    lb_tensor_free(w);
}

/* ---------------------------------------------------------------------------
 * Gradients
 *
 * The quantized layer is piecewise constant in W and x, so its true
 * derivative is 0 almost everywhere and finite differences of the layer
 * itself check nothing useful. What IS checkable is the definition of the
 * STE: the layer trains as the surrogate
 *     y = (x + λ·c_x) · (W + λ·c_w)ᵀ,   c_x = stopgrad(q(x) − x), c_w = stopgrad(q(W) − W),
 * whose derivative is the unquantized matmul's gradient evaluated at the
 * quantized inputs (dL/dW = (dL/dy)ᵀ·x_q, dL/dx = dL/dy·W_q). So the loss
 * function below runs the real BitLinear when the gradient checker asks for
 * the analytic gradient (grad enabled), and the surrogate with c_x, c_w
 * frozen at the base point (from the reference quantizers) for the
 * finite-difference evaluations (grad disabled). Loss: Σ (y + r)². */

typedef struct ste_ctx {
    lb_linear_quant q;
    float lambda;
    lb_tensor *cx, *cw; /* λ·(q(v) − v) at the base point */
    lb_tensor *r;       /* fixed offset, no gradient */
} ste_ctx;

static lb_tensor *ste_loss(lb_graph *g, lb_tensor **p, int n, void *vctx) {
    (void)n;
    ste_ctx *c = vctx;
    lb_tensor *x = p[0], *w = p[1], *y;
    if (g->grad_enabled)
        y = lb_linear(g, x, w, &c->q, NULL, c->lambda);
    else if (c->cx)
        y = lb_matmul(g, lb_add(g, x, c->cx), lb_add(g, w, c->cw), 1);
    else
        y = lb_matmul(g, x, w, 1);
    lb_tensor *e = lb_add(g, y, c->r);
    return lb_sum(g, lb_mul(g, e, e));
}

static void check_ste_grad(lb_linear_mode mode, float lambda) {
    const int M = 3, N = 4, K = 6;
    lb_tensor *x = new_tensor2(M, K, 1), *w = new_tensor2(N, K, 1);
    tu_fill_uniform(x, 41 + mode, -1.0f, 1.0f);
    tu_fill_uniform(w, 42 + mode, -0.5f, 0.5f);
    x->name = "x";
    w->name = "W";
    ste_ctx c = {.q = resolved(mode), .lambda = lambda};
    c.r = new_tensor2(M, N, 0);
    tu_fill_uniform(c.r, 43, -0.5f, 0.5f);
    if (mode != LB_LINEAR_FP) {
        c.cx = new_tensor2(M, K, 0);
        c.cw = new_tensor2(N, K, 0);
        double wt[24], xt[6];
        double beta = mode == LB_LINEAR_B1 ? ref_binary(w->data, (size_t)N * K, wt)
                                           : ref_ternary(w->data, (size_t)N * K, wt);
        for (int i = 0; i < N * K; i++) c.cw->data[i] = (float)(lambda * (wt[i] * beta - w->data[i]));
        for (int m = 0; m < M; m++) {
            double s = ref_int8_row(x->data + m * K, K, xt, mode == LB_LINEAR_B1);
            for (int k = 0; k < K; k++)
                c.cx->data[m * K + k] = (float)(lambda * (xt[k] / s - x->data[m * K + k]));
        }
    }
    lb_tensor *params[2] = {x, w};
    tu_gradcheck(ste_loss, params, 2, &c, 1e-2f, 1e-2, 1e-3);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_tensor_free(c.r);
    lb_tensor_free(c.cx);
    lb_tensor_free(c.cw);
}

static void test_fp_gradcheck(void **state) {
    (void)state;
    check_ste_grad(LB_LINEAR_FP, 1.0f);
}

static void test_b158_ste_gradient(void **state) {
    (void)state;
    check_ste_grad(LB_LINEAR_B158, 1.0f);
}

static void test_b1_ste_gradient(void **state) {
    (void)state;
    check_ste_grad(LB_LINEAR_B1, 1.0f);
}

static void test_gradual_ste_gradient(void **state) {
    (void)state;
    check_ste_grad(LB_LINEAR_B158, 0.3f);
}

/* CUSTOM mode uses the given specs; a none weight spec quantizes only x. */
static void test_custom_mode(void **state) {
    (void)state;
    lb_linear_quant in;
    memset(&in, 0, sizeof in);
    in.mode = LB_LINEAR_CUSTOM;
    assert_int_equal(lb_qspec_parse("ternary", &in.weight), LB_OK);
    assert_int_equal(lb_qspec_parse("int8:per_token", &in.activation), LB_OK);
    lb_linear_quant custom, b158 = resolved(LB_LINEAR_B158);
    assert_int_equal(lb_linear_quant_resolve(&in, &custom, "test"), LB_OK);

    lb_tensor *x = new_tensor2(2, 8, 0), *w = new_tensor2(3, 8, 0);
    tu_fill_uniform(x, 51, -1.0f, 1.0f);
    tu_fill_uniform(w, 52, -1.0f, 1.0f);
    float a[6], b[6];
    run_linear(x, w, &custom, 1.0f, a);
    run_linear(x, w, &b158, 1.0f, b);
    for (int i = 0; i < 6; i++) assert_float_equal(a[i], b[i], 0.0f);
    lb_tensor_free(x);
    lb_tensor_free(w);
}

static void test_errors(void **state) {
    (void)state;
    lb_linear_quant in, out;
    memset(&in, 0, sizeof in);
    in.mode = (lb_linear_mode)42;
    assert_int_equal(lb_linear_quant_resolve(&in, &out, "ffn"), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "ffn"));

    lb_tensor *x = new_tensor2(2, 8, 0), *w = new_tensor2(3, 7, 0);
    w->name = "blk.0.ffn_up.weight";
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_linear_quant fp = resolved(LB_LINEAR_FP);
    assert_null(lb_linear(&g, x, w, &fp, NULL, 1.0f));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "blk.0.ffn_up.weight"));

    /* A B1.58 setting whose specs were never filled in must not run as fp32. */
    lb_tensor *w8 = new_tensor2(3, 8, 0);
    memset(&in, 0, sizeof in);
    in.mode = LB_LINEAR_B158;
    assert_null(lb_linear(&g, x, w8, &in, NULL, 1.0f));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    lb_linear_quant q = resolved(LB_LINEAR_B158);
    assert_null(lb_linear(&g, x, w8, &q, NULL, 1.5f));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_null(lb_linear(&g, NULL, w8, &q, NULL, 1.0f));
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_tensor_free(w8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_example),
        cmocka_unit_test(test_b158_random_matches_formula),
        cmocka_unit_test(test_b1_random_matches_formula),
        cmocka_unit_test(test_lambda_blend),
        cmocka_unit_test(test_fp_gradcheck),
        cmocka_unit_test(test_b158_ste_gradient),
        cmocka_unit_test(test_b1_ste_gradient),
        cmocka_unit_test(test_gradual_ste_gradient),
        cmocka_unit_test(test_custom_mode),
        cmocka_unit_test(test_errors),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

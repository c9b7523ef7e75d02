/* Tests of the fake-quant autograd ops (src/autograd/ops_quant.c): BitNet
 * formulas on hand-computed examples, the straight-through estimators, the
 * λ-blend and LSQ's step-size gradient. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "quant/qspec.h"
#include "quant/quantize.h"
#include "testutil.h"

static lb_qspec spec(const char *text) {
    lb_qspec s;
    if (lb_qspec_parse(text, &s) != LB_OK) fail_msg("parse '%s': %s", text, lb_errmsg());
    return s;
}

static lb_tensor *tensor_2d(int rows, int cols, const float *v, int with_grad) {
    int shape[2] = {rows, cols};
    lb_tensor *t = lb_tensor_alloc(2, shape, with_grad);
    assert_non_null(t);
    memcpy(t->data, v, t->n * sizeof(float));
    return t;
}

/* Forward only: y = fake_quant(x) with gradients off. */
static void fq(const char *text, int rows, int cols, const float *x, float *y) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    lb_qspec s = spec(text);
    lb_tensor *xt = tensor_2d(rows, cols, x, 0);
    lb_tensor *yt = lb_fake_quant(&g, xt, &s, LB_STE_IDENTITY, 1.0f);
    if (!yt) fail_msg("fake_quant '%s': %s", text, lb_errmsg());
    memcpy(y, yt->data, (size_t)rows * (size_t)cols * sizeof(float));
    lb_tensor_free(xt);
    lb_graph_free(&g);
}

static void assert_close(const float *got, const double *want, int n, double rtol) {
    for (int i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > rtol * fabs(want[i]) + 1e-12)
            fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

/* BitNet b1.58: γ = mean|W|, clamp(round(W/γ), −1, 1)·γ. */
static void test_ternary_hand_example(void **state) {
    (void)state;
    const float w[6] = {0.5f, -1.0f, 0.25f, 0.0f, -2.0f, 1.0f};
    double gamma = (0.5 + 1.0 + 0.25 + 0.0 + 2.0 + 1.0) / 6.0; /* 0.7917 */
    /* W/γ = 0.63, −1.26, 0.32, 0, −2.53, 1.26 */
    const double want[6] = {gamma, -gamma, 0, 0, -gamma, gamma};
    float y[6];
    fq("ternary", 2, 3, w, y);
    assert_close(y, want, 6, 1e-6);

    /* Halves round to even as torch.round does: 0.5 → 0, −1.5 → −2 → −1. */
    const float t[4] = {0.5f, -1.5f, 1.0f, -1.0f}; /* γ = 1 */
    const double want_t[4] = {0, -1, 1, -1};
    fq("ternary", 1, 4, t, y);
    assert_close(y, want_t, 4, 0);

    /* Per channel: each row its own γ. */
    const float w2[4] = {1.0f, -3.0f, 0.25f, 0.75f};
    const double want2[4] = {0, -2.0, 0, 0.5}; /* γ0 = 2: 0.5→0, −1.5→−2→−1; γ1 = 0.5: 0.5→0, 1.5→2→1 */
    fq("ternary:per_channel", 2, 2, w2, y);
    assert_close(y, want2, 4, 1e-6);

    /* All zeros: γ clamps to 1e-5 and the result is exactly 0. */
    const float z[3] = {0, 0, 0};
    const double want_z[3] = {0, 0, 0};
    fq("ternary", 1, 3, z, y);
    assert_close(y, want_z, 3, 0);
}

/* BitNet b1: sign(W − mean W) with sign(0) = −1, scale mean|W|. */
static void test_binary_hand_example(void **state) {
    (void)state;
    const float w[4] = {0.75f, -0.25f, 0.5f, 0.0f}; /* α = 0.25, β = 0.375 */
    const double want[4] = {0.375, -0.375, 0.375, -0.375};
    float y[5];
    fq("binary", 2, 2, w, y);
    assert_close(y, want, 4, 1e-7);
    const float w0[5] = {1, -1, 0, 2, -2}; /* α = 0: the 0 maps to −β; β = 1.2 */
    const double want0[5] = {1.2, -1.2, -1.2, 1.2, -1.2};
    fq("binary", 1, 5, w0, y);
    assert_close(y, want0, 5, 1e-6);
}

/* s = 127 / max(max|x|, 1e-5) per token, clamp(round(x·s), −128, 127) / s. */
static void test_int8_per_token_hand_example(void **state) {
    (void)state;
    const float x[8] = {1, -2, 0.5f, 4, 0.1f, 0.2f, -0.3f, 0};
    double s0 = 127.0 / 4.0;  /* x·s0 = 31.75, −63.5 (tie → −64), 15.875, 127 */
    double s1 = 127.0 / 0.3;  /* 42.33, 84.67, −127, 0 */
    const double want[8] = {32 / s0, -64 / s0, 16 / s0, 127 / s0, 42 / s1, 85 / s1, -127 / s1, 0};
    float y[8];
    fq("int8:per_token", 2, 4, x, y);
    assert_close(y, want, 8, 2e-7);
    /* Per tensor instead: one scale from max|x| = 4. */
    const double want_t[8] = {32 / s0, -64 / s0, 16 / s0, 127 / s0, 3 / s0, 6 / s0, -10 / s0, 0};
    fq("int8", 2, 4, x, y);
    assert_close(y, want_t, 8, 2e-7);
}

/* Runs fake_quant forward with gradients, seeds dy and runs its backward. */
static void fq_backward(const lb_qspec *s, lb_ste ste, float lambda, lb_tensor *x, const float *dy, float *y_out) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    memset(x->grad, 0, x->n * sizeof(float));
    x->requires_grad = 1;
    lb_tensor *y = lb_fake_quant(&g, x, s, ste, lambda);
    if (!y) fail_msg("fake_quant: %s", lb_errmsg());
    assert_int_equal(g.n_nodes, 1);
    if (y_out) memcpy(y_out, y->data, x->n * sizeof(float));
    float *gy = lb_grad(&g, y);
    memcpy(gy, dy, x->n * sizeof(float));
    g.nodes[0].backward(&g.nodes[0]);
    lb_graph_free(&g);
}

static void test_ste_identity_and_clipped(void **state) {
    (void)state;
    /* Ternary clips: γ = 1, so |x| > 1.5 (rounds past the ±1 codes) is outside. */
    const float xv[4] = {0.5f, -2.5f, 1.0f, 0.0f};
    const float dy[4] = {1, 2, 3, 4};
    lb_tensor *x = tensor_2d(1, 4, xv, 1);
    lb_qspec s = spec("ternary");
    fq_backward(&s, LB_STE_IDENTITY, 1.0f, x, dy, NULL);
    for (int i = 0; i < 4; i++) assert_float_equal(x->grad[i], dy[i], 0);
    fq_backward(&s, LB_STE_CLIPPED, 1.0f, x, dy, NULL);
    const float want[4] = {1, 0, 3, 4};
    for (int i = 0; i < 4; i++) assert_float_equal(x->grad[i], want[i], 0);

    /* λ-blend: the value is x + λ(q − x); clipped gradient (1 − λ) outside. */
    float y[4];
    fq_backward(&s, LB_STE_CLIPPED, 0.25f, x, dy, y);
    const float q[4] = {0, -1, 1, 0};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], xv[i] + 0.25f * (q[i] - xv[i]), 1e-6);
    const float want_b[4] = {1, 2 * 0.75f, 3, 4};
    for (int i = 0; i < 4; i++) assert_float_equal(x->grad[i], want_b[i], 1e-7);
    lb_tensor_free(x);

    /* Absmax INT8 never clips: clipped == identity. Fixed-scale FP8 clips at 448. */
    const float xa[4] = {3, -7, 0.1f, 1000};
    lb_tensor *xt = tensor_2d(1, 4, xa, 1);
    lb_qspec i8 = spec("int8:per_token");
    fq_backward(&i8, LB_STE_CLIPPED, 1.0f, xt, dy, NULL);
    for (int i = 0; i < 4; i++) assert_float_equal(xt->grad[i], dy[i], 0);
    lb_qspec f8 = spec("fp8_e4m3:raw");
    fq_backward(&f8, LB_STE_CLIPPED, 1.0f, xt, dy, y);
    assert_float_equal(y[3], 448.0f, 0);
    const float want_f8[4] = {1, 2, 3, 0};
    for (int i = 0; i < 4; i++) assert_float_equal(xt->grad[i], want_f8[i], 0);
    lb_tensor_free(xt);
}

/* The clipped range is per block: each group of 4 has its own γ, and an
 * element is zeroed only when it lies beyond 1.5·γ of its own group. */
static void test_clipped_per_group_and_steady_state(void **state) {
    (void)state;
    const int rows = 3, cols = 12; /* groups of 4: 3 per row */
    int shape[2] = {rows, cols};
    lb_tensor *x = lb_tensor_alloc(2, shape, 1);
    tu_fill_uniform(x, 21, -1, 1);
    x->data[5] = 9.0f;   /* row 0, group 1: far outside */
    x->data[30] = -0.1f; /* row 2, group 1 */
    x->data[31] = 30.0f;
    float dy[36], want[36];
    for (int i = 0; i < 36; i++) dy[i] = 1.0f + (float)i;
    for (int b = 0; b < rows * 3; b++) {
        double sabs = 0;
        for (int j = 0; j < 4; j++) sabs += fabs(x->data[4 * b + j]);
        double gamma = sabs / 4;
        for (int j = 0; j < 4; j++) want[4 * b + j] = fabs(x->data[4 * b + j]) <= 1.5 * gamma ? dy[4 * b + j] : 0.0f;
    }
    assert_float_equal(want[5], 0, 0);
    assert_float_equal(want[31], 0, 0);
    lb_qspec s = spec("ternary:g4");
    fq_backward(&s, LB_STE_CLIPPED, 1.0f, x, dy, NULL);
    for (int i = 0; i < 36; i++) assert_float_equal(x->grad[i], want[i], 0);

    /* MX: 32-element blocks; X = floor(log2 amax) − 2, so elements above 6·2^X clip:
     * 7 in a block with amax 7 (X = 0) does, 5 does not. */
    int shape2[2] = {2, 64};
    lb_tensor *m = lb_tensor_alloc(2, shape2, 1);
    float dy2[128];
    for (int i = 0; i < 128; i++) {
        m->data[i] = 0.25f * (float)(i % 5 - 2); /* amax 0.5: X = −3, 0.5·2^3 = 4 ≤ 6 */
        dy2[i] = 1.0f;
    }
    m->data[100] = 7.0f; /* row 1, block 1 */
    m->data[101] = 5.0f; /* same block, inside */
    lb_qspec mx = spec("mxfp4");
    fq_backward(&mx, LB_STE_CLIPPED, 1.0f, m, dy2, NULL);
    for (int i = 0; i < 128; i++)
        if (m->grad[i] != (i == 100 ? 0.0f : 1.0f)) fail_msg("mxfp4 element %d: gradient %g", i, m->grad[i]);

    /* A training step of the same shape takes nothing more from the system. */
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    size_t allocs = 0;
    for (int step = 0; step < 3; step++) {
        lb_tensor *y = lb_fake_quant(&g, x, &s, LB_STE_CLIPPED, 0.5f);
        assert_non_null(y);
        assert_int_equal(lb_backward(&g, lb_sum(&g, y)), LB_OK);
        lb_graph_reset(&g);
        if (step == 0) allocs = g.arena.n_system_allocs;
    }
    assert_int_equal(g.arena.n_system_allocs, allocs);
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(m);
}

/* With λ = 0 the op is the identity, so its gradient must match finite
 * differences exactly like any smooth op. */
static lb_tensor *loss_blend0(lb_graph *g, lb_tensor **p, int np, void *ctx) {
    (void)np;
    const lb_qspec *s = ctx;
    lb_tensor *y = lb_fake_quant(g, p[0], s, LB_STE_CLIPPED, 0.0f);
    return lb_sum(g, lb_mul(g, y, y));
}

static void test_blend_zero_gradcheck(void **state) {
    (void)state;
    int shape[2] = {3, 5};
    lb_tensor *x = lb_tensor_alloc(2, shape, 1);
    tu_fill_uniform(x, 11, -2, 2);
    lb_qspec s = spec("int4:g4");
    tu_gradcheck(loss_blend0, &x, 1, &s, 1e-2f, 1e-2, 1e-3);
    lb_tensor_free(x);
}

/* LSQ: y = round(clamp(x/s, −Qn, Qp))·s. The step-size gradient equals the
 * derivative of the PyTorch formulation s·(clamp(x/s) + stopgrad(round(v) − v)),
 * which the test differentiates numerically, times 1/√(N·Qp), N the size of
 * the step's block. Per tensor, per row and in groups, and blended (λ < 1):
 * y = x + λ(q − x), dx = dy·((1 − λ) + λ·inside), ds = λ·(the above). */
static void check_lsq(const char *text, int rows, int cols, float lambda) {
    const lb_qspec q = spec(text);
    const double Qn = 4, Qp = 3; /* int3 */
    const int N = rows * cols;
    int shape[2] = {rows, cols};
    lb_tensor *x = lb_tensor_alloc(rows > 1 ? 2 : 1, rows > 1 ? shape : &shape[1], 1);
    int nb = (int)lb_quant_n_blocks(&q, (size_t)rows, (size_t)cols);
    lb_tensor *s = lb_tensor_alloc(1, &nb, 1);
    for (int b = 0; b < nb; b++) s->data[b] = 0.37f + 0.05f * (float)b;
    tu_fill_uniform(x, 5, -2.0f, 2.0f); /* v = x/s in about [−5.4, 5.4]: both sides clip */
    double *w = malloc((size_t)N * sizeof *w), *fd = calloc((size_t)nb, sizeof *fd);
    int *blk = malloc((size_t)N * sizeof *blk), *count = calloc((size_t)nb, sizeof *count);
    for (int i = 0; i < N; i++) {
        w[i] = lb_rand_uniform(9, 1, (uint64_t)i) - 0.5;
        blk[i] = (int)lb_quant_block_of(&q, (size_t)rows, (size_t)cols, (size_t)(i / cols), (size_t)(i % cols));
        count[blk[i]]++;
    }

    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *y = lb_fake_quant_lsq(&g, x, s, &q, lambda);
    if (!y) fail_msg("%s: %s", text, lb_errmsg());
    float *gy = lb_grad(&g, y);
    for (int i = 0; i < N; i++) gy[i] = (float)w[i];
    memset(x->grad, 0, (size_t)N * sizeof(float));
    memset(s->grad, 0, (size_t)nb * sizeof(float));
    g.nodes[0].backward(&g.nodes[0]);

    const double h = 1e-4;
    int n_in = 0, n_out = 0;
    for (int i = 0; i < N; i++) {
        double sd = s->data[blk[i]];
        double v = x->data[i] / sd;
        double c = nearbyint(v) - v; /* frozen, as stopgrad */
        double vp = fmin(fmax(x->data[i] / (sd + h), -Qn), Qp), vm = fmin(fmax(x->data[i] / (sd - h), -Qn), Qp);
        int inside = v >= -Qn && v <= Qp;
        double yp = (sd + h) * (vp + (inside ? c : 0)), ym = (sd - h) * (vm + (inside ? c : 0));
        fd[blk[i]] += w[i] * (yp - ym) / (2 * h);
        /* value */
        double qv = nearbyint(fmin(fmax(v, -Qn), Qp)) * sd;
        assert_float_equal(y->data[i], x->data[i] + lambda * (qv - x->data[i]), 1e-6);
        /* x gradient: clipped STE, blended */
        assert_float_equal(x->grad[i], w[i] * ((1 - lambda) + lambda * inside), 1e-7);
        inside ? n_in++ : n_out++;
    }
    assert_true(n_in > N / 6 && n_out > N / 12);
    for (int b = 0; b < nb; b++) {
        double want_ds = lambda * fd[b] / sqrt((double)count[b] * Qp);
        if (fabs(s->grad[b] - want_ds) > 1e-4 * fabs(want_ds) + 1e-6)
            fail_msg("%s: step %d: gradient %g, want %g", text, b, (double)s->grad[b], want_ds);
    }
    lb_graph_free(&g);

    /* A non-positive step is an error, not a crash. */
    s->data[nb - 1] = 0.0f;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    assert_null(lb_fake_quant_lsq(&g, x, s, &q, lambda));
    assert_int_equal(lb_errcode(), LB_ENUMERIC);
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(s);
    free(w);
    free(fd);
    free(blk);
    free(count);
}

static void test_lsq(void **state) {
    (void)state;
    check_lsq("int3:lsq", 1, 64, 1.0f);             /* one step for the tensor */
    check_lsq("int3:per_channel:lsq", 4, 16, 1.0f); /* one per row */
    check_lsq("int3:g8:lsq", 4, 20, 1.0f);          /* one per group of 8, the last of each row 4 long */
    check_lsq("int3:g8:lsq", 4, 16, 0.5f);          /* gradual quantization */
}

/* The op refuses what it cannot do, naming the step. */
static void test_lsq_errors(void **state) {
    (void)state;
    int shape[2] = {4, 16}, three = 3;
    lb_tensor *x = lb_tensor_alloc(2, shape, 1), *s = lb_tensor_alloc(1, &three, 1);
    s->name = "blk.0.attn_q.weight_step";
    for (int i = 0; i < 3; i++) s->data[i] = 0.1f;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_qspec q = spec("int4:per_channel:lsq");
    assert_null(lb_fake_quant_lsq(&g, x, s, &q, 1.0f)); /* 4 rows, 3 steps */
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "blk.0.attn_q.weight_step"));
    assert_non_null(strstr(lb_errmsg(), "expected 4"));
    q = spec("int4:per_channel"); /* no lsq */
    assert_null(lb_fake_quant_lsq(&g, x, s, &q, 1.0f));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    q = spec("int4:g16:lsq");
    assert_null(lb_fake_quant_lsq(&g, x, s, &q, 1.5f)); /* λ out of range */
    assert_int_equal(lb_errcode(), LB_EINVAL);
    /* The absmax kernels refuse an lsq spec instead of ignoring its steps. */
    assert_null(lb_fake_quant(&g, x, &q, LB_STE_IDENTITY, 1.0f));
    assert_non_null(strstr(lb_errmsg(), "lsq"));
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(s);
}

static void test_errors(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int shape[2] = {2, 3};
    lb_tensor *x = lb_tensor_alloc(2, shape, 0);
    lb_qspec s = spec("int8");
    assert_null(lb_fake_quant(&g, x, &s, LB_STE_IDENTITY, 1.5f));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    s.bits = 9;
    assert_null(lb_fake_quant(&g, x, &s, LB_STE_IDENTITY, 1.0f));
    assert_non_null(strstr(lb_errmsg(), "[2,3]"));
    assert_null(lb_fake_quant(&g, NULL, &s, LB_STE_IDENTITY, 1.0f));
    lb_tensor_free(x);
    lb_graph_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ternary_hand_example),
        cmocka_unit_test(test_binary_hand_example),
        cmocka_unit_test(test_int8_per_token_hand_example),
        cmocka_unit_test(test_ste_identity_and_clipped),
        cmocka_unit_test(test_clipped_per_group_and_steady_state),
        cmocka_unit_test(test_blend_zero_gradcheck),
        cmocka_unit_test(test_lsq),
        cmocka_unit_test(test_lsq_errors),
        cmocka_unit_test(test_errors),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Tests of the GEMM engine (autograd/gemm.h) on both backends, and of the
 * BitLinear integer product (autograd/ops_qmatmul.c):
 *   - every operand type, transpose setting, odd size, scale and beta against
 *     double loops (s8: exactly);
 *   - the s8 product is the same bits on oneDNN and on the fallback;
 *   - products run one per thread inside an OpenMP region equal the same
 *     products run alone;
 *   - bf16 rounding (ties to even, NaN, inf) against the quantizer's;
 *   - lb_qmatmul's int8 forward against the fp32 fake-quant product within
 *     the stated bound, and its backward at both precisions;
 *   - lb_matmul, lb_bmm and lb_attention at bf16 precision against fp32;
 *   - the OpenBLAS warning, in a child process run with OPENBLAS_CORETYPE
 *     set for that process alone. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "core/minifloat.h"
#include "quant/quantize.h"
#include "testutil.h"

extern char **environ;

/* The backends this run tests: both, unless LOWBIT_GEMM names one.
 * scripts/valgrind.sh names openblas: memcheck cannot follow oneDNN's JIT
 * kernels, which read whole vectors past the ends of oneDNN's own buffers
 * (reported as invalid reads from code at "???", nothing lowbit can
 * suppress by name); ASan and the ordinary runs cover the oneDNN backend. */
static int backend_tested(lb_gemm_backend b) {
    const char *v = getenv("LOWBIT_GEMM");
    return !v || !*v || strcmp(v, b == LB_GEMM_ONEDNN ? "onednn" : "openblas") == 0;
}

/* The backend every test leaves behind: the one the environment names. */
static lb_gemm_backend default_backend(void) {
    return backend_tested(LB_GEMM_ONEDNN) ? LB_GEMM_ONEDNN : LB_GEMM_OPENBLAS;
}

static const double U = 5.9604644775390625e-08; /* 2^-24, the unit roundoff of fp32 */

static float uniform(uint64_t seed, uint64_t i) { return 2.0f * lb_rand_uniform(seed, 0, i) - 1.0f; }

static float bf16_value(uint16_t h) { return lb_bf16_to_f32(h); }

/* A stored operand [rows, cols] with leading dimension cols + pad, of `type`,
 * random; `val` receives each element's value as a double (read as
 * op(X)[i, j] through at()). */
typedef struct operand {
    void *data;
    double *val;
    int rows, cols, ld;
} operand;

static operand make_operand(lb_gemm_type type, int rows, int cols, int pad, uint64_t seed) {
    operand o = {.rows = rows, .cols = cols, .ld = cols + pad};
    const size_t n = (size_t)rows * o.ld;
    o.data = calloc(n, type == LB_GEMM_F32 ? 4 : type == LB_GEMM_BF16 ? 2 : 1);
    o.val = calloc(n, sizeof(double));
    assert_non_null(o.data);
    assert_non_null(o.val);
    for (size_t i = 0; i < n; i++) {
        float f = uniform(seed, i);
        if (type == LB_GEMM_F32) {
            ((float *)o.data)[i] = f;
            o.val[i] = f;
        } else if (type == LB_GEMM_BF16) {
            uint16_t h = lb_bf16_from_f32(f);
            ((uint16_t *)o.data)[i] = h;
            o.val[i] = bf16_value(h);
        } else { /* the whole int8 range, -128 included */
            int8_t c = (int8_t)(int)floorf((f + 1.0f) * 128.0f - 128.0f);
            ((int8_t *)o.data)[i] = c;
            o.val[i] = c;
        }
    }
    return o;
}

static void free_operand(operand *o) {
    free(o->data);
    free(o->val);
}

/* op(X)[i, j] with X stored transposed when t. */
static double at(const operand *o, int t, int i, int j) { return t ? o->val[(size_t)j * o->ld + i] : o->val[(size_t)i * o->ld + j]; }

/* One product against double loops. f32/bf16: within the fp32 summation
 * bound 2·(K + 2)·u·Σ|a·b| (scaled) plus the rounding of beta·C; s8: the
 * exact sum, rounded once and scaled (the documented formula), bit for bit. */
static void check_product(lb_gemm_type type, int ta, int tb, int M, int N, int K, int use_rows, float alpha,
                          float beta, uint64_t seed) {
    operand A = make_operand(type, ta ? K : M, ta ? M : K, 3, seed);
    operand B = make_operand(type, tb ? N : K, tb ? K : N, 1, seed + 1);
    const int ldc = N + 2;
    float *C = malloc((size_t)M * ldc * sizeof(float)), *C0 = malloc((size_t)M * ldc * sizeof(float));
    float *rows = malloc((size_t)M * sizeof(float));
    assert_non_null(C);
    assert_non_null(C0);
    assert_non_null(rows);
    for (int i = 0; i < M * ldc; i++) C[i] = C0[i] = uniform(seed + 2, (uint64_t)i);
    for (int m = 0; m < M; m++) rows[m] = 0.25f + 0.01f * (float)m;
    assert_int_equal(lb_gemm(type, ta, tb, M, N, K, use_rows ? 1.0f : alpha, A.data, A.ld, B.data, B.ld,
                             use_rows ? rows : NULL, beta, C, ldc),
                     LB_OK);
    for (int m = 0; m < M; m++) {
        const float s = use_rows ? rows[m] : alpha;
        for (int n = 0; n < N; n++) {
            double sum = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double p = at(&A, ta, m, k) * at(&B, tb, k, n);
                sum += p;
                mag += fabs(p);
            }
            const float got = C[(size_t)m * ldc + n], old = C0[(size_t)m * ldc + n];
            if (type == LB_GEMM_S8) {
                float v = (float)sum * s;
                float want = beta == 0.0f ? v : v + beta * old;
                if (got != want)
                    fail_msg("s8 %c%c M=%d N=%d K=%d [%d,%d]: %.9g, expected %.9g (exact sum %.0f)", ta ? 'T' : 'N',
                             tb ? 'T' : 'N', M, N, K, m, n, (double)got, (double)want, sum);
            } else {
                double want = s * sum + beta * old;
                double tol = 2.0 * (K + 2) * U * fabs(s) * mag + 4.0 * U * (fabs(s * sum) + fabs(beta * old)) + 1e-30;
                if (fabs(got - want) > tol)
                    fail_msg("%s %c%c M=%d N=%d K=%d [%d,%d]: %.9g, expected %.9g (tolerance %.3g)",
                             lb_gemm_type_name(type), ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, m, n, (double)got, want,
                             tol);
            }
        }
    }
    free(C);
    free(C0);
    free(rows);
    free_operand(&A);
    free_operand(&B);
}

static void check_all_products(lb_gemm_backend backend) {
    lb_gemm_set_backend(backend);
    static const int sizes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 3, 100}, {130, 67, 257}};
    uint64_t seed = 100;
    for (int t = 0; t < LB_GEMM_N_TYPES; t++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    const int M = sizes[i][0], N = sizes[i][1], K = sizes[i][2];
                    check_product((lb_gemm_type)t, ta, tb, M, N, K, 0, 1.0f, 0.0f, seed++);
                    check_product((lb_gemm_type)t, ta, tb, M, N, K, 0, 0.375f, 1.0f, seed++);
                    check_product((lb_gemm_type)t, ta, tb, M, N, K, 1, 1.0f, 0.0f, seed++);
                    check_product((lb_gemm_type)t, ta, tb, M, N, K, 1, 1.0f, 1.0f, seed++);
                }
    lb_gemm_set_backend(default_backend());
}

static void test_products_onednn(void **state) {
    (void)state;
    if (!backend_tested(LB_GEMM_ONEDNN)) skip();
    check_all_products(LB_GEMM_ONEDNN);
}

static void test_products_openblas(void **state) {
    (void)state;
    if (!backend_tested(LB_GEMM_OPENBLAS)) skip();
    check_all_products(LB_GEMM_OPENBLAS);
}

/* The BitLinear layout in int8 gives the same bits on both backends. */
static void test_s8_same_on_both_backends(void **state) {
    (void)state;
    enum { M = 37, N = 51, K = 300 };
    if (!backend_tested(LB_GEMM_ONEDNN) || !backend_tested(LB_GEMM_OPENBLAS)) skip();
    operand A = make_operand(LB_GEMM_S8, M, K, 0, 7), B = make_operand(LB_GEMM_S8, N, K, 0, 8);
    float rows[M], C[2][M * N];
    for (int m = 0; m < M; m++) rows[m] = 1.0f / (float)(m + 3);
    for (int b = 0; b < 2; b++) {
        lb_gemm_set_backend(b ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN);
        assert_int_equal(lb_gemm(LB_GEMM_S8, 0, 1, M, N, K, 1.0f, A.data, K, B.data, K, rows, 0.0f, C[b], N), LB_OK);
    }
    lb_gemm_set_backend(default_backend());
    assert_memory_equal(C[0], C[1], sizeof C[0]);
    free_operand(&A);
    free_operand(&B);
}

/* One product per thread inside a region (as attention runs its heads)
 * equals the same product run alone, on both backends and every type. */
static void test_products_inside_a_region(void **state) {
    (void)state;
    enum { M = 48, N = 40, K = 72, REPS = 8 };
    for (int b = 0; b < 2; b++) {
        if (!backend_tested(b ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN)) continue;
        lb_gemm_set_backend(b ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN);
        for (int t = 0; t < LB_GEMM_N_TYPES; t++) {
            operand A = make_operand((lb_gemm_type)t, M, K, 0, 20), B = make_operand((lb_gemm_type)t, K, N, 0, 21);
            float alone[M * N], *each = calloc((size_t)REPS * M * N, sizeof(float));
            assert_non_null(each);
            assert_int_equal(lb_gemm((lb_gemm_type)t, 0, 0, M, N, K, 0.5f, A.data, K, B.data, N, NULL, 0.0f, alone, N),
                             LB_OK);
            int failures = 0;
#pragma omp parallel for schedule(static) num_threads(2) reduction(+ : failures)
            for (int r = 0; r < REPS; r++)
                failures += lb_gemm((lb_gemm_type)t, 0, 0, M, N, K, 0.5f, A.data, K, B.data, N, NULL, 0.0f,
                                    each + (size_t)r * M * N, N) != LB_OK;
            assert_int_equal(failures, 0);
            for (int r = 0; r < REPS; r++) assert_memory_equal(alone, each + (size_t)r * M * N, sizeof alone);
            free(each);
            free_operand(&A);
            free_operand(&B);
        }
    }
    lb_gemm_set_backend(default_backend());
}

static void test_bad_arguments(void **state) {
    (void)state;
    float a[4] = {0}, c[4] = {0}, rows[2] = {1, 1};
    assert_int_equal(lb_gemm(LB_GEMM_F32, 0, 0, 0, 2, 2, 1.0f, a, 2, a, 2, NULL, 0.0f, c, 2), LB_EINVAL);
    assert_int_equal(lb_gemm(LB_GEMM_F32, 0, 0, 2, 2, 2, 1.0f, a, 1, a, 2, NULL, 0.0f, c, 2), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "lda=1"));
    assert_int_equal(lb_gemm(LB_GEMM_F32, 0, 0, 2, 2, 2, 2.0f, a, 2, a, 2, rows, 0.0f, c, 2), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "alpha must be 1"));
    assert_int_equal(lb_gemm_f32(LB_PRECISION_N, 0, 0, 2, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2), LB_EINVAL);
}

/* Round to nearest even, NaN and inf kept, the same as the bf16 quantizer. */
static void test_bf16_rounding(void **state) {
    (void)state;
    const float special[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -1.0f - 0x1p-8f, 0x1.fffffep127f, INFINITY,
                             -INFINITY,      NAN,                0.0f,            -0.0f,          0x1p-149f};
    const uint16_t want[] = {0x3f80, 0x3f82, 0xbf80, 0x7f80, 0x7f80, 0xff80, 0, 0x0000, 0x8000, 0x0000};
    enum { NS = sizeof special / sizeof special[0], NR = 4096 };
    float x[NS + NR];
    uint16_t got[NS + NR];
    const float rs[1] = {1.0f};
    memcpy(x, special, sizeof special);
    for (int i = 0; i < NR; i++) x[NS + i] = uniform(3, (uint64_t)i) * ldexpf(1.0f, i % 60 - 30);
    lb_gemm_to_bf16(1, NS + NR, x, NS + NR, rs, got, NS + NR);
    for (int i = 0; i < NS + NR; i++) {
        if (isnan(x[i])) {
            assert_true(isnan(bf16_value(got[i])));
            continue;
        }
        assert_int_equal(got[i], i < NS ? want[i] : lb_bf16_from_f32(x[i]));
    }
    int8_t codes[256];
    uint16_t h[256];
    for (int i = 0; i < 256; i++) codes[i] = (int8_t)(i - 128);
    lb_gemm_s8_to_bf16(16, 16, codes, 16, h, 16);
    for (int i = 0; i < 256; i++) assert_true(bf16_value(h[i]) == (float)(i - 128));
}

/* --- lb_qmatmul's integer product ------------------------------------------------- */

static void qspecs(int b1, lb_qspec *xs, lb_qspec *ws) {
    assert_int_equal(lb_qspec_parse(b1 ? "int8:per_token:b1" : "int8:per_token", xs), LB_OK);
    assert_int_equal(lb_qspec_parse(b1 ? "binary" : "ternary", ws), LB_OK);
}

/* The int8 forward against lb_matmul of the fake-quantized operands (what
 * lowbit computed before), on odd shapes: within (K + 5)·u·d_m·d_w·Σ|a·b|
 * of each other, and the integer result within 3u·d_m·d_w·|S| of the exact
 * value (ops_qmatmul.c derives both). */
static void check_qmatmul_forward(int b1, int M, int K, int N, uint64_t seed) {
    int xs[2] = {M, K}, wsh[2] = {N, K};
    lb_tensor *x = tu_const(2, xs, seed, -2.0f, 2.0f), *w = tu_const(2, wsh, seed + 1, -0.1f, 0.1f);
    lb_qspec xspec, wspec;
    qspecs(b1, &xspec, &wspec);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *y = lb_qmatmul(&g, x, w, &xspec, &wspec, 1.0f);
    lb_tensor *xf = lb_fake_quant(&g, x, &xspec, LB_STE_IDENTITY, 1.0f);
    lb_tensor *wf = lb_fake_quant(&g, w, &wspec, LB_STE_IDENTITY, 1.0f);
    lb_tensor *yf = lb_matmul(&g, xf, wf, 1);
    assert_non_null(y);
    assert_non_null(yf);
    int8_t *a = malloc((size_t)M * K), *b = malloc((size_t)N * K);
    float *dm = malloc((size_t)M * sizeof(float)), dw;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(dm);
    assert_int_equal(lb_quantize(&xspec, x->data, (size_t)M, (size_t)K, a, dm, NULL), LB_OK);
    assert_int_equal(lb_quantize(&wspec, w->data, (size_t)N, (size_t)K, b, &dw, NULL), LB_OK);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            long S = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                S += (long)a[(size_t)m * K + k] * b[(size_t)n * K + k];
                mag += labs((long)a[(size_t)m * K + k] * b[(size_t)n * K + k]);
            }
            const double D = (double)dm[m] * dw, exact = D * (double)S;
            const double yi = y->data[(size_t)m * N + n], yq = yf->data[(size_t)m * N + n];
            if (fabs(yi - exact) > 3.0 * U * D * fabs((double)S) + 1e-38)
                fail_msg("b%s M=%d K=%d N=%d [%d,%d]: integer product %.9g, exact %.9g", b1 ? "1" : "1.58", M, K, N,
                         m, n, yi, exact);
            if (fabs(yi - yq) > (K + 5) * U * D * (double)mag + 1e-38)
                fail_msg("b%s M=%d K=%d N=%d [%d,%d]: integer %.9g, fake-quant %.9g: beyond (K+5)u·D·Σ|ab| = %.3g",
                         b1 ? "1" : "1.58", M, K, N, m, n, yi, yq, (K + 5) * U * D * (double)mag);
        }
    free(a);
    free(b);
    free(dm);
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(w);
}

static void test_qmatmul_integer_forward(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 100, 3}, {130, 257, 67}, {96, 512, 64}};
    for (int backend = 0; backend < 2; backend++) {
        if (!backend_tested(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN)) continue;
        lb_gemm_set_backend(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN);
        for (int b1 = 0; b1 < 2; b1++)
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
                check_qmatmul_forward(b1, shapes[i][0], shapes[i][1], shapes[i][2], 40 + i);
    }
    lb_gemm_set_backend(default_backend());
}

/* Gradients of the integer path: at fp32 precision they are the fake-quant
 * path's products (same operands, fp32), at bf16 precision within the
 * rounding of dy (and dy·d_m) to bf16: 2^-8 of Σ|terms|, with fp32 sums. */
static void check_qmatmul_backward(int b1, int M, int K, int N, uint64_t seed) {
    int xs[2] = {M, K}, wsh[2] = {N, K};
    lb_tensor *x = tu_param(2, xs, seed, -2.0f, 2.0f), *w = tu_param(2, wsh, seed + 1, -0.1f, 0.1f);
    lb_qspec xspec, wspec;
    qspecs(b1, &xspec, &wspec);
    float *gx[3], *gw[3];
    for (int v = 0; v < 3; v++) { /* 0: fake-quant fp32, 1: integer fp32, 2: integer bf16 */
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        g.precision = v == 2 ? LB_PRECISION_BF16 : LB_PRECISION_FP32;
        memset(x->grad, 0, x->n * sizeof(float));
        memset(w->grad, 0, w->n * sizeof(float));
        lb_tensor *y = v == 0 ? lb_matmul(&g, lb_fake_quant(&g, x, &xspec, LB_STE_IDENTITY, 1.0f),
                                          lb_fake_quant(&g, w, &wspec, LB_STE_IDENTITY, 1.0f), 1)
                              : lb_qmatmul(&g, x, w, &xspec, &wspec, 1.0f);
        assert_int_equal(lb_backward(&g, tu_weighted_sum(&g, y, 9)), LB_OK);
        gx[v] = malloc(x->n * sizeof(float));
        gw[v] = malloc(w->n * sizeof(float));
        memcpy(gx[v], x->grad, x->n * sizeof(float));
        memcpy(gw[v], w->grad, w->n * sizeof(float));
        lb_graph_free(&g);
    }
    /* Magnitudes of the terms: |dy| ≤ 1 (weights of tu_weighted_sum), |x̃| ≤ max|x|, |w̃| = d_w or 0. */
    float amax = 0.0f, wabs = 0.0f;
    for (size_t i = 0; i < x->n; i++) amax = fmaxf(amax, fabsf(x->data[i]));
    for (size_t i = 0; i < w->n; i++) wabs += fabsf(w->data[i]);
    const double tol_x_fp32 = 2.0 * (N + 2) * U * (wabs / (double)w->n) * 2.0 * N;
    const double tol_w_fp32 = 2.0 * (M + 2) * U * amax * M;
    for (size_t i = 0; i < x->n; i++) {
        assert_true(fabs(gx[1][i] - gx[0][i]) <= tol_x_fp32 + 1e-30);
        assert_true(fabs(gx[2][i] - gx[0][i]) <= 0x1p-7 * (wabs / (double)w->n) * 2.0 * N + tol_x_fp32);
    }
    for (size_t i = 0; i < w->n; i++) {
        assert_true(fabs(gw[1][i] - gw[0][i]) <= tol_w_fp32 + 1e-30);
        assert_true(fabs(gw[2][i] - gw[0][i]) <= 0x1p-7 * amax * M + tol_w_fp32);
    }
    for (int v = 0; v < 3; v++) {
        free(gx[v]);
        free(gw[v]);
    }
    lb_tensor_free(x);
    lb_tensor_free(w);
}

static void test_qmatmul_integer_backward(void **state) {
    (void)state;
    for (int backend = 0; backend < 2; backend++) {
        if (!backend_tested(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN)) continue;
        lb_gemm_set_backend(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN);
        for (int b1 = 0; b1 < 2; b1++) {
            check_qmatmul_backward(b1, 5, 7, 3, 60);
            check_qmatmul_backward(b1, 33, 65, 17, 61);
            check_qmatmul_backward(b1, 3, 9, 20, 62); /* N > 4·M: the weight quantized again, not kept */
        }
    }
    lb_gemm_set_backend(default_backend());
}

/* --- the float ops at bf16 precision ------------------------------------------------ */

typedef enum { OP_MATMUL, OP_BMM, OP_ATTENTION } float_op;

/* The op's output and every input gradient at bf16 precision against fp32:
 * bf16 operands carry 2^-9 relative rounding each, so with O(1) inputs the
 * results agree to about 1% of their largest magnitude, not to fp32's 1e-6. */
static void check_bf16_op(float_op which) {
    lb_tensor *in[3];
    int n_in = which == OP_ATTENTION ? 3 : 2;
    if (which == OP_MATMUL) {
        int xs[3] = {3, 17, 40}, ws[2] = {33, 40};
        in[0] = tu_param(3, xs, 70, -1.0f, 1.0f);
        in[1] = tu_param(2, ws, 71, -1.0f, 1.0f);
    } else if (which == OP_BMM) {
        int as[3] = {5, 9, 20}, bs[3] = {5, 30, 20};
        in[0] = tu_param(3, as, 72, -1.0f, 1.0f);
        in[1] = tu_param(3, bs, 73, -1.0f, 1.0f);
    } else {
        int qs[4] = {2, 40, 4, 16}, ks[4] = {2, 40, 2, 16};
        in[0] = tu_param(4, qs, 74, -1.0f, 1.0f);
        in[1] = tu_param(4, ks, 75, -1.0f, 1.0f);
        in[2] = tu_param(4, ks, 76, -1.0f, 1.0f);
    }
    float *out[2], *grad[2][3];
    size_t n_out = 0;
    for (int v = 0; v < 2; v++) {
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        g.precision = g.attn_precision = v ? LB_PRECISION_BF16 : LB_PRECISION_FP32;
        for (int i = 0; i < n_in; i++) memset(in[i]->grad, 0, in[i]->n * sizeof(float));
        lb_tensor *y = which == OP_MATMUL ? lb_matmul(&g, in[0], in[1], 1)
                     : which == OP_BMM    ? lb_bmm(&g, in[0], in[1], 0, 1)
                                          : lb_attention(&g, in[0], in[1], in[2]);
        assert_non_null(y);
        n_out = y->n;
        out[v] = malloc(n_out * sizeof(float));
        memcpy(out[v], y->data, n_out * sizeof(float));
        assert_int_equal(lb_backward(&g, tu_weighted_sum(&g, y, 77)), LB_OK);
        for (int i = 0; i < n_in; i++) {
            grad[v][i] = malloc(in[i]->n * sizeof(float));
            memcpy(grad[v][i], in[i]->grad, in[i]->n * sizeof(float));
        }
        lb_graph_free(&g);
    }
    for (int i = -1; i < n_in; i++) {
        const float *a = i < 0 ? out[0] : grad[0][i], *b = i < 0 ? out[1] : grad[1][i];
        const size_t n = i < 0 ? n_out : in[i]->n;
        double amax = 0.0, dmax = 0.0;
        for (size_t j = 0; j < n; j++) {
            amax = fmax(amax, fabs(a[j]));
            dmax = fmax(dmax, fabs((double)a[j] - b[j]));
        }
        if (!(dmax <= 1e-2 * amax) || !(dmax > 0.0))
            fail_msg("op %d, %s %d: bf16 vs fp32 differ by %.3g of %.3g (expected a bf16-sized difference, > 0 "
                     "and at most 1%%)", (int)which, i < 0 ? "output" : "gradient of input", i, dmax, amax);
    }
    for (int v = 0; v < 2; v++) {
        free(out[v]);
        for (int i = 0; i < n_in; i++) free(grad[v][i]);
    }
    for (int i = 0; i < n_in; i++) lb_tensor_free(in[i]);
}

static void test_ops_at_bf16_precision(void **state) {
    (void)state;
    for (int backend = 0; backend < 2; backend++) {
        if (!backend_tested(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN)) continue;
        lb_gemm_set_backend(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN);
        check_bf16_op(OP_MATMUL);
        check_bf16_op(OP_BMM);
        check_bf16_op(OP_ATTENTION);
    }
    lb_gemm_set_backend(default_backend());
}

/* Attention's products run at the graph's attn_precision whatever the other
 * products' precision: with the rest in bf16 and attention in fp32, the
 * attention op's output and its three input gradients are the bits of an
 * all-fp32 graph, and with attention alone in bf16 those of an all-bf16 one.
 * The outputs of attention over q, k, v [2, 40, 4 | 2, 16] and the gradients
 * of a weighted sum of them; cases: {graph precision, attention precision}. */
static void check_attention_precision_is_its_own(void) {
    int qs[4] = {2, 40, 4, 16}, ks[4] = {2, 40, 2, 16};
    lb_tensor *in[3] = {tu_param(4, qs, 80, -1.0f, 1.0f), tu_param(4, ks, 81, -1.0f, 1.0f),
                        tu_param(4, ks, 82, -1.0f, 1.0f)};
    static const lb_gemm_precision cases[4][2] = {{LB_PRECISION_FP32, LB_PRECISION_FP32},
                                                  {LB_PRECISION_BF16, LB_PRECISION_FP32},
                                                  {LB_PRECISION_BF16, LB_PRECISION_BF16},
                                                  {LB_PRECISION_FP32, LB_PRECISION_BF16}};
    float *res[4][4]; /* per case: the output, then the gradients of q, k, v */
    size_t n[4];
    for (int v = 0; v < 4; v++) {
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        g.precision = cases[v][0];
        g.attn_precision = cases[v][1];
        for (int i = 0; i < 3; i++) memset(in[i]->grad, 0, in[i]->n * sizeof(float));
        lb_tensor *y = lb_attention(&g, in[0], in[1], in[2]);
        assert_non_null(y);
        n[0] = y->n;
        res[v][0] = malloc(y->n * sizeof(float));
        memcpy(res[v][0], y->data, y->n * sizeof(float));
        assert_int_equal(lb_backward(&g, tu_weighted_sum(&g, y, 83)), LB_OK);
        for (int i = 0; i < 3; i++) {
            n[i + 1] = in[i]->n;
            res[v][i + 1] = malloc(in[i]->n * sizeof(float));
            memcpy(res[v][i + 1], in[i]->grad, in[i]->n * sizeof(float));
        }
        lb_graph_free(&g);
    }
    static const char *const what[4] = {"output", "gradient of q", "gradient of k", "gradient of v"};
    for (int j = 0; j < 4; j++) {
        if (memcmp(res[1][j], res[0][j], n[j] * sizeof(float)))
            fail_msg("attention's %s with the graph at bf16 and attention at fp32 is not the all-fp32 one", what[j]);
        if (memcmp(res[3][j], res[2][j], n[j] * sizeof(float)))
            fail_msg("attention's %s with the graph at fp32 and attention at bf16 is not the all-bf16 one", what[j]);
        /* the two precisions differ, so the comparisons above can fail */
        if (!memcmp(res[2][j], res[0][j], n[j] * sizeof(float)))
            fail_msg("attention's %s is the same at bf16 and at fp32", what[j]);
    }
    for (int v = 0; v < 4; v++)
        for (int j = 0; j < 4; j++) free(res[v][j]);
    for (int i = 0; i < 3; i++) lb_tensor_free(in[i]);
}

static void test_attention_at_its_own_precision(void **state) {
    (void)state;
    for (int backend = 0; backend < 2; backend++) {
        if (!backend_tested(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN)) continue;
        lb_gemm_set_backend(backend ? LB_GEMM_OPENBLAS : LB_GEMM_ONEDNN);
        check_attention_precision_is_its_own();
    }
    lb_gemm_set_backend(default_backend());
}

/* --- what runs, and the OpenBLAS warning ------------------------------------------- */

/* auto: bf16 where oneDNN multiplies bf16 with the CPU's own instructions,
 * fp32 where bf16 would be emulated or widened (OpenBLAS); attention's auto
 * follows the other products, an explicit one stays. */
static void test_precision_auto(void **state) {
    (void)state;
    lb_gemm_set_backend(LB_GEMM_ONEDNN);
    const int native = lb_gemm_bf16_native();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16")) assert_true(native);
    if (!__builtin_cpu_supports("avx512f")) assert_false(native);
#endif
    assert_int_equal(lb_gemm_precision_resolve(LB_PRECISION_AUTO), native ? LB_PRECISION_BF16 : LB_PRECISION_FP32);
    assert_int_equal(lb_gemm_precision_resolve(LB_PRECISION_FP32), LB_PRECISION_FP32);
    assert_int_equal(lb_gemm_precision_resolve(LB_PRECISION_BF16), LB_PRECISION_BF16);
    for (int g = 0; g < 2; g++) {
        const lb_gemm_precision gemm = g ? LB_PRECISION_BF16 : LB_PRECISION_FP32;
        assert_int_equal(lb_attention_precision_resolve(LB_PRECISION_AUTO, gemm), gemm);
        assert_int_equal(lb_attention_precision_resolve(LB_PRECISION_FP32, gemm), LB_PRECISION_FP32);
        assert_int_equal(lb_attention_precision_resolve(LB_PRECISION_BF16, gemm), LB_PRECISION_BF16);
    }
    lb_gemm_set_backend(LB_GEMM_OPENBLAS);
    assert_false(lb_gemm_bf16_native());
    assert_int_equal(lb_gemm_precision_resolve(LB_PRECISION_AUTO), LB_PRECISION_FP32);
    lb_gemm_set_backend(default_backend());
    float a[4] = {1, 2, 3, 4}, c[4];
    assert_int_equal(lb_gemm_f32(LB_PRECISION_AUTO, 0, 0, 2, 2, 2, 1.0f, a, 2, a, 2, 0.0f, c, 2), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "auto"));
    lb_error_clear();
}

static void test_describe(void **state) {
    (void)state;
    lb_gemm_set_backend(LB_GEMM_ONEDNN); /* describes the kernels; runs none */
    const char *d = lb_gemm_describe(LB_PRECISION_BF16);
    assert_non_null(strstr(d, "gemm onednn"));
    assert_non_null(strstr(d, "fp32 products in bf16"));
    for (int t = 0; t < LB_GEMM_N_TYPES; t++) assert_true(strlen(lb_gemm_impl((lb_gemm_type)t)) > 0);
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* On an AVX-512 CPU with VNNI oneDNN must not fall back to its reference
     * or gemm-based kernels for the layer products. */
    if (__builtin_cpu_supports("avx512vnni")) assert_non_null(strstr(lb_gemm_impl(LB_GEMM_S8), "vnni"));
    if (__builtin_cpu_supports("avx512f")) assert_non_null(strstr(lb_gemm_impl(LB_GEMM_F32), "brg"));
#endif
    lb_gemm_set_backend(LB_GEMM_OPENBLAS);
    assert_non_null(strstr(lb_gemm_describe(LB_PRECISION_FP32), "gemm openblas"));
    assert_non_null(strstr(lb_gemm_impl(LB_GEMM_F32), openblas_get_corename()));
    lb_gemm_set_backend(default_backend());
}

/* Runs this program with OPENBLAS_CORETYPE=core in the child's environment
 * only; the child starts the engine as every lowbit program does (which
 * logs the warning on stderr) and prints "started". Returns what it wrote
 * on stdout and stderr. */
static void child_warning(const char *self, const char *core, char *out, size_t size) {
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    char **envp = calloc(n_env + 2, sizeof *envp);
    assert_non_null(envp);
    char var[64];
    snprintf(var, sizeof var, "OPENBLAS_CORETYPE=%s", core);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "OPENBLAS_CORETYPE=", 18) != 0) envp[k++] = environ[i];
    envp[k++] = var;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    char *argv[] = {(char *)self, "--print-openblas-warning", NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, self, &fa, NULL, argv, envp), 0);
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    assert_non_null(f);
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
}

static const char *self_path;

static void test_openblas_warning(void **state) {
    (void)state;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2");
    char out[2048];
    child_warning(self_path, "Prescott", out, sizeof out);
    assert_non_null(strstr(out, "started"));
    if (avx2) assert_non_null(strstr(out, "lowbit: warning: OpenBLAS runs its 'Prescott' kernels on a CPU with AVX"));
    else assert_null(strstr(out, "OpenBLAS runs"));
    if (avx2) { /* Haswell kernels need AVX2 */
        child_warning(self_path, "Haswell", out, sizeof out);
        assert_non_null(strstr(out, "started"));
        assert_null(strstr(out, "OpenBLAS runs"));
    }
#else
    skip();
#endif
}

int main(int argc, char **argv) {
    self_path = argv[0];
    if (argc > 1 && !strcmp(argv[1], "--print-openblas-warning")) {
        if (lb_gemm_init() != LB_OK) return 1;
        printf("started\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products_onednn),
        cmocka_unit_test(test_products_openblas),
        cmocka_unit_test(test_s8_same_on_both_backends),
        cmocka_unit_test(test_products_inside_a_region),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_qmatmul_integer_forward),
        cmocka_unit_test(test_qmatmul_integer_backward),
        cmocka_unit_test(test_ops_at_bf16_precision),
        cmocka_unit_test(test_attention_at_its_own_precision),
        cmocka_unit_test(test_precision_auto),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_openblas_warning),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Tests of the array quantizers (src/quant/quantize.c): hand-computed
 * examples, properties on random data, stochastic rounding, MX blocks and
 * thread-count independence. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/minifloat.h"
#include "quant/quantize.h"
#include "testutil.h"

static lb_qspec spec(const char *text) {
    lb_qspec s;
    if (lb_qspec_parse(text, &s) != LB_OK) fail_msg("parse '%s': %s", text, lb_errmsg());
    return s;
}

static void fake(const char *text, const float *x, float *y, size_t rows, size_t cols) {
    lb_qspec s = spec(text);
    if (lb_fake_quantize(&s, x, y, rows, cols, NULL) != LB_OK) fail_msg("'%s': %s", text, lb_errmsg());
}

/* Random data with a few outliers, as real weights and activations have. */
static float *random_matrix(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof(float));
    lb_rng r;
    lb_rng_init(&r, seed, 1);
    for (size_t i = 0; i < n; i++) x[i] = lb_rng_normal(&r) * (i % 97 == 0 ? 8.0f : 1.0f);
    return x;
}

static const char *all_specs[] = {
    "binary",          "binary:per_channel", "ternary",          "ternary:per_channel", "ternary:g16",
    "int8",            "int8:per_token",     "int4:g32",          "int4:g24",            "int2:per_channel",
    "int3:g8:asym",    "int8:per_channel:asym", "int8:per_token:b1", "int8:per_token:asym:b1", "int4:per_token:b1",
    "fp8_e4m3",        "fp8_e4m3:per_channel", "fp8_e5m2:g16",   "fp8_e4m3:raw",        "fp8_e5m2:raw:nosat",
    "fp4_e2m1:g16",    "fp4_e2m1:raw",       "mxfp8",            "mxfp4",               "bf16",
    "fp16",            "int8:sr",            "int4:g16:sr",      "fp8_e4m3:sr",         "fp8_e5m2:g16:sr",
};
#define N_SPECS (sizeof all_specs / sizeof all_specs[0])

/* dequantize(quantize(x)) is bit-identical to the fused fake-quant. */
static void test_quantize_dequantize_equals_fake(void **state) {
    (void)state;
    const size_t rows = 6, cols = 80; /* 80 is not a multiple of 24 or 32: short last groups */
    float *x = random_matrix(rows * cols, 3);
    float *y1 = malloc(rows * cols * sizeof(float)), *y2 = malloc(rows * cols * sizeof(float));
    uint8_t *codes = malloc(rows * cols * 2);
    float scales[1024], zeros[1024];
    for (size_t k = 0; k < N_SPECS; k++) {
        lb_qspec s = spec(all_specs[k]);
        size_t nb = lb_quant_n_blocks(&s, rows, cols);
        assert_true(nb <= 1024);
        assert_int_equal(lb_fake_quantize(&s, x, y1, rows, cols, NULL), LB_OK);
        assert_int_equal(lb_quantize(&s, x, rows, cols, codes, scales, zeros), LB_OK);
        assert_int_equal(lb_dequantize(&s, codes, scales, zeros, rows, cols, y2), LB_OK);
        for (size_t i = 0; i < rows * cols; i++)
            if (memcmp(&y1[i], &y2[i], 4) != 0)
                fail_msg("%s: element %zu: fake %.9g, dequantize(quantize) %.9g", all_specs[k], i, y1[i], y2[i]);
        /* In place gives the same. */
        memcpy(y2, x, rows * cols * sizeof(float));
        assert_int_equal(lb_fake_quantize(&s, y2, y2, rows, cols, NULL), LB_OK);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
    }
    free(x);
    free(y1);
    free(y2);
    free(codes);
}

/* The fused float-domain path follows the encoders on special inputs too. */
static void test_fake_matches_codes_on_specials(void **state) {
    (void)state;
    const float x[12] = {INFINITY, -INFINITY, NAN, -NAN, 1e30f, -1e30f, 500.0f, 464.0f, 61440.0f, 1e-40f, -0.0f, 65520.0f};
    const char *specs[] = {"fp8_e4m3:raw", "fp8_e4m3:raw:nosat", "fp8_e5m2:raw", "fp8_e5m2:raw:nosat",
                           "fp4_e2m1:raw", "bf16",         "fp16"};
    for (int k = 0; k < 7; k++) {
        lb_qspec s = spec(specs[k]);
        float y[12], want[12], sc[1];
        uint8_t codes[24]; /* 2 bytes per code for bf16/fp16 */
        assert_int_equal(lb_fake_quantize(&s, x, y, 1, 12, NULL), LB_OK);
        assert_int_equal(lb_quantize(&s, x, 1, 12, codes, sc, NULL), LB_OK);
        assert_int_equal(lb_dequantize(&s, codes, sc, NULL, 1, 12, want), LB_OK);
        for (int i = 0; i < 12; i++) {
            int same = isnan(want[i]) ? isnan(y[i]) : memcmp(&y[i], &want[i], 4) == 0;
            if (!same) fail_msg("%s: input %g: fake %g, via codes %g", specs[k], x[i], y[i], want[i]);
        }
    }
}

/* The array encoder gives the scalar encoders' codes on arbitrary fp32 bit
 * patterns (all exponents, subnormals, inf, NaN). */
static void test_codes_match_scalar_encoders(void **state) {
    (void)state;
    const size_t n = 1 << 18;
    float *x = malloc(n * sizeof(float));
    uint8_t *codes = malloc(n);
    uint16_t *c16 = malloc(n * 2);
    float *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint32_t u = lb_rand_u32(3, 9, i);
        if (i % 4 == 1) u = (u & 0x807fffffu) | ((uint32_t)(110 + (u >> 23) % 40) << 23); /* near the formats' range */
        memcpy(&x[i], &u, 4);
    }
    const char *specs[] = {"fp8_e4m3:raw", "fp8_e4m3:raw:nosat", "fp8_e5m2:raw", "fp8_e5m2:raw:nosat", "fp4_e2m1:raw",
                           "bf16", "fp16"};
    for (int k = 0; k < 7; k++) {
        lb_qspec s = spec(specs[k]);
        float sc[1];
        int half = k >= 5;
        assert_int_equal(lb_quantize(&s, x, 1, n, half ? (void *)c16 : (void *)codes, sc, NULL), LB_OK);
        for (size_t i = 0; i < n; i++) {
            unsigned want = k < 2   ? lb_fp8_e4m3_from_f32(x[i], s.saturate)
                            : k < 4 ? lb_fp8_e5m2_from_f32(x[i], s.saturate)
                            : k == 4 ? lb_fp4_e2m1_from_f32(x[i])
                            : k == 5 ? lb_bf16_from_f32(x[i])
                                     : lb_fp16_from_f32(x[i]);
            unsigned got = half ? c16[i] : codes[i];
            if (got != want) fail_msg("%s: input %a: code 0x%x, scalar encoder 0x%x", specs[k], x[i], got, want);
        }
        /* The fused path gives the decoded scalar codes. */
        assert_int_equal(lb_fake_quantize(&s, x, y, 1, n, NULL), LB_OK);
        for (size_t i = 0; i < n; i++) {
            float want = k < 2   ? lb_fp8_e4m3_to_f32(lb_fp8_e4m3_from_f32(x[i], s.saturate))
                         : k < 4 ? lb_fp8_e5m2_to_f32(lb_fp8_e5m2_from_f32(x[i], s.saturate))
                         : k == 4 ? lb_fp4_e2m1_to_f32(lb_fp4_e2m1_from_f32(x[i]))
                         : k == 5 ? lb_bf16_to_f32(lb_bf16_from_f32(x[i]))
                                  : lb_fp16_to_f32(lb_fp16_from_f32(x[i]));
            int same = isnan(want) ? isnan(y[i]) : memcmp(&y[i], &want, 4) == 0;
            if (!same) fail_msg("%s: input %a: fake %a, scalar %a", specs[k], x[i], y[i], want);
        }
    }
    free(y);
    free(x);
    free(codes);
    free(c16);
}

/* Symmetric formats are odd functions: q(−x) = −q(x). */
static void test_symmetric_formats_are_odd(void **state) {
    (void)state;
    const size_t rows = 4, cols = 64, n = rows * cols;
    float *x = random_matrix(n, 4), *nx = malloc(n * sizeof(float));
    float *y = malloc(n * sizeof(float)), *ny = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) nx[i] = -x[i];
    for (size_t k = 0; k < N_SPECS; k++) {
        lb_qspec s = spec(all_specs[k]);
        if (s.asymmetric || s.stochastic) continue;
        fake(all_specs[k], x, y, rows, cols);
        fake(all_specs[k], nx, ny, rows, cols);
        for (size_t i = 0; i < n; i++)
            if (ny[i] != -y[i]) fail_msg("%s: q(-x) = %g but -q(x) = %g at %zu", all_specs[k], ny[i], -y[i], i);
    }
    free(x);
    free(nx);
    free(y);
    free(ny);
}

/* Inside a block's range the error is at most half a step. Scales are
 * computed per group: checked against max|x| of each group, found here. */
static void test_error_bounds_and_group_scales(void **state) {
    (void)state;
    const size_t rows = 5, cols = 40, g = 16, G = 3; /* groups of 16, 16, 8 */
    float *x = random_matrix(rows * cols, 5);
    float y[200], scales[64], zeros[64];
    uint8_t codes[200];
    const char *specs[] = {"int4:g16", "int8:g16", "int2:g16", "int3:g16:asym", "int8:g16:asym"};
    for (int k = 0; k < 5; k++) {
        lb_qspec s = spec(specs[k]);
        assert_int_equal(lb_quant_n_blocks(&s, rows, cols), rows * G);
        assert_int_equal(lb_quantize(&s, x, rows, cols, codes, scales, zeros), LB_OK);
        assert_int_equal(lb_dequantize(&s, codes, scales, zeros, rows, cols, y), LB_OK);
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < G; j++) {
                size_t b = r * G + j, c0 = j * g, c1 = c0 + g < cols ? c0 + g : cols;
                double amax = 0, mn = 0, mx = 0;
                for (size_t c = c0; c < c1; c++) {
                    double v = x[r * cols + c];
                    amax = fmax(amax, fabs(v));
                    mn = fmin(mn, v);
                    mx = fmax(mx, v);
                }
                double want_d = s.asymmetric ? (mx - mn) / ((1 << s.bits) - 1) : amax / ((1 << (s.bits - 1)) - 1);
                assert_float_equal(scales[b], want_d, 1e-6 * want_d);
                for (size_t c = c0; c < c1; c++) {
                    size_t i = r * cols + c;
                    if (fabs(y[i] - x[i]) > 0.5 * scales[b] * (1 + 1e-5))
                        fail_msg("%s: element %zu: |%g - %g| > d/2 = %g", specs[k], i, y[i], x[i], 0.5 * scales[b]);
                }
            }
    }
    /* Ternary: inside [−1.5γ, 1.5γ] the error is at most γ/2, per group mean|x|. */
    lb_qspec t = spec("ternary:g16");
    float range[128];
    assert_int_equal(lb_quantize(&t, x, rows, cols, codes, scales, NULL), LB_OK);
    assert_int_equal(lb_fake_quantize(&t, x, y, rows, cols, range), LB_OK);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < G; j++) {
            size_t b = r * G + j, c0 = j * g, c1 = c0 + g < cols ? c0 + g : cols;
            double sabs = 0;
            for (size_t c = c0; c < c1; c++) sabs += fabs(x[r * cols + c]);
            double gamma = sabs / (double)(c1 - c0);
            assert_float_equal(scales[b], gamma, 1e-6 * gamma);
            assert_float_equal(range[2 * b + 1], 1.5 * gamma, 1e-6 * gamma);
            for (size_t c = c0; c < c1; c++) {
                size_t i = r * cols + c;
                if (fabs(x[i]) <= 1.5 * gamma) assert_true(fabs(y[i] - x[i]) <= 0.5 * gamma * (1 + 1e-5));
                int8_t code = (int8_t)codes[i];
                assert_true(code >= -1 && code <= 1);
            }
        }
    /* FP8 scaled per tensor: relative error ≤ 2^-4 (E4M3, 3 mantissa bits) for normals. */
    fake("fp8_e4m3", x, y, rows, cols);
    for (size_t i = 0; i < rows * cols; i++)
        if (fabsf(x[i]) > 1e-2f) assert_true(fabs(y[i] - x[i]) <= ldexp(fabs(x[i]), -4));
    free(x);
}

static void assert_close(const float *got, const double *want, int n, double rtol) {
    for (int i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > rtol * fabs(want[i]) + 1e-12)
            fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

static void test_int_hand_examples(void **state) {
    (void)state;
    float y[8];
    /* int2 asym: lo −1, hi 2 → d = 1, z = 1; codes rint(x) + 1 (0.5 ties to 0). */
    const float a[4] = {-1, 0, 0.5f, 2};
    const double want_a[4] = {-1, 0, 0, 2};
    fake("int2:asym", a, y, 1, 4);
    assert_close(y, want_a, 4, 0);
    float zeros[1], scales[1];
    uint8_t codes[8];
    lb_qspec s = spec("int2:asym");
    assert_int_equal(lb_quantize(&s, a, 1, 4, codes, scales, zeros), LB_OK);
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[3], 3);
    assert_float_equal(zeros[0], -1.0f, 0);

    /* int4 sym per tensor: Qp = 7, s = 7/3.5 = 2: 1.25·2 = 2.5 → 2, −0.75·2 = −1.5 → −2. */
    const float b[4] = {3.5f, 1.25f, -0.75f, -3.5f};
    const double want_b[4] = {3.5, 1.0, -1.0, -3.5};
    fake("int4", b, y, 2, 2);
    assert_close(y, want_b, 4, 1e-7);

    /* BitNet b1 activations: s = Qb/γ = 128/4 = 32: 4 → 128 clipped to 127. */
    const float c[4] = {4, -2, 1, 0};
    const double want_c[4] = {127.0 / 32, -2, 1, 0};
    fake("int8:per_token:b1", c, y, 1, 4);
    assert_close(y, want_c, 4, 1e-7);
    /* with the zero-point shift for non-negative inputs: η = 1, s = 128/5 */
    const float d[4] = {1, 3, 5, 2};
    double sd = 128.0 / 5.0;
    const double want_d[4] = {1, 51 / sd + 1, 102 / sd + 1, 26 / sd + 1};
    fake("int8:per_token:asym:b1", d, y, 1, 4);
    assert_close(y, want_d, 4, 1e-6);

    /* int4 activations per token: Qp = 7, s = 7/0.7 = 10. */
    const float e[3] = {0.7f, 0.04f, -0.36f};
    const double want_e[3] = {0.7, 0.0, -0.4};
    fake("int4:per_token", e, y, 1, 3);
    assert_close(y, want_e, 3, 1e-6);
}

static void test_mx_blocks(void **state) {
    (void)state;
    float x[64] = {0}, y[64], scales[2];
    uint8_t codes[64];
    /* Block 0, MXFP4: amax 7 → X = floor(log2 7) − 2 = 0; 7 saturates to 6, −5 ties
     * to even (4), 0.3 → 0.5, 2.4 → 2. Block 1: amax 0.75 → X = −1 − 2 = −3. */
    x[0] = 7;
    x[1] = -5;
    x[2] = 0.3f;
    x[3] = 2.4f;
    x[32] = 0.75f;
    x[33] = 0.1f; /* 0.1·8 = 0.8 → 1 → 0.125 */
    lb_qspec s = spec("mxfp4");
    assert_int_equal(lb_quantize(&s, x, 1, 64, codes, scales, NULL), LB_OK);
    assert_float_equal(scales[0], 1.0f, 0);
    assert_float_equal(scales[1], 0.125f, 0);
    assert_int_equal(lb_e8m0_from_exp(ilogbf(scales[0])), 127);
    assert_int_equal(codes[0], 0x7);
    fake("mxfp4", x, y, 1, 64);
    const double want[6] = {6, -4, 0.5, 2};
    assert_close(y, want, 4, 0);
    assert_float_equal(y[32], 0.75f, 0);
    assert_float_equal(y[33], 0.125f, 0);

    /* MXFP8: amax 1000 → X = 9 − 8 = 1; 1000/2 = 500 saturates to 448 → 896. */
    memset(x, 0, sizeof x);
    x[0] = 1000;
    x[1] = 1.0f;
    x[2] = -3.0f;
    fake("mxfp8", x, y, 1, 64);
    assert_float_equal(y[0], 896.0f, 0);
    assert_float_equal(y[1], 1.0f, 0);
    assert_float_equal(y[2], -3.0f, 0);
    /* A NaN or inf makes its whole block NaN (scale NaN), not the other block. */
    x[5] = INFINITY;
    x[40] = 2.0f;
    fake("mxfp8", x, y, 1, 64);
    for (int i = 0; i < 32; i++) assert_true(isnan(y[i]));
    assert_float_equal(y[40], 2.0f, 0);
}

static void test_fp8_scale_helper(void **state) {
    (void)state;
    assert_float_equal(lb_pow2_scale(1.0f, 448.0f, 0, 7.0f), 256.0f, 0);
    assert_float_equal(lb_pow2_scale(1.0f, 448.0f, 1, 7.0f), 128.0f, 0);
    assert_float_equal(lb_pow2_scale(448.0f, 448.0f, 0, 7.0f), 1.0f, 0);
    assert_float_equal(lb_pow2_scale(449.0f, 448.0f, 0, 7.0f), 0.5f, 0);
    assert_float_equal(lb_pow2_scale(0.0f, 448.0f, 0, 7.0f), 7.0f, 0);
    assert_float_equal(lb_pow2_scale(INFINITY, 448.0f, 0, 7.0f), 7.0f, 0);
    assert_float_equal(lb_pow2_scale(NAN, 57344.0f, 0, 3.0f), 3.0f, 0);
    /* Per tensor FP8 uses it: x·256 is cast, then divided back. */
    float x[3] = {1.0f, 0.3f, -0.01f}, y[3];
    fake("fp8_e4m3", x, y, 1, 3);
    for (int i = 0; i < 3; i++) assert_float_equal(y[i], lb_fp8_e4m3_to_f32(lb_fp8_e4m3_from_f32(x[i] * 256, 1)) / 256, 0);
    /* raw: no scale; saturating or not. */
    float big[2] = {1000.0f, -0.3f};
    fake("fp8_e4m3:raw", big, y, 1, 2);
    assert_float_equal(y[0], 448.0f, 0);
    fake("fp8_e4m3:raw:nosat", big, y, 1, 2);
    assert_true(isnan(y[0]));
    fake("fp8_e5m2:raw:nosat", big, y, 1, 2);
    assert_float_equal(y[0], 1024.0f, 0);
    big[0] = 1e6f;
    fake("fp8_e5m2:raw:nosat", big, y, 1, 2);
    assert_true(isinf(y[0]));
}

/* The mean of many stochastic roundings of a value converges to it; a seed
 * reproduces the roundings. */
static void test_stochastic_rounding(void **state) {
    (void)state;
    const size_t n = 200000;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
    const char *specs[] = {"int8:sr", "fp8_e4m3:raw:sr", "fp8_e5m2:raw:sr", "int4:sr"};
    const float vals[] = {0.3f, -0.3f, 0.3f, 0.55f};
    for (int k = 0; k < 4; k++) {
        x[0] = 1.0f; /* fixes the absmax scale of the INT formats at 1 */
        for (size_t i = 1; i < n; i++) x[i] = vals[k];
        lb_qspec s = spec(specs[k]);
        s.seed = 42;
        s.stream = 7;
        assert_int_equal(lb_fake_quantize(&s, x, y, 1, n, NULL), LB_OK);
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        for (size_t i = 1; i < n; i++) {
            sum += y[i];
            lo = fmin(lo, y[i]);
            hi = fmax(hi, y[i]);
        }
        double mean = sum / (double)(n - 1), step = hi - lo;
        assert_true(step > 0);                              /* both neighbours occur */
        assert_true(lo <= vals[k] && vals[k] <= hi);
        /* Each rounding has standard deviation at most step/2. */
        double tol = 5.0 * (step / 2) / sqrt((double)(n - 1));
        if (fabs(mean - vals[k]) > tol) fail_msg("%s: mean %.8g of roundings of %g (tol %g)", specs[k], mean, vals[k], tol);
        /* Round to nearest would be biased by far more than the tolerance. */
        assert_int_equal(lb_fake_quantize(&s, x, y2, 1, n, NULL), LB_OK);
        assert_memory_equal(y, y2, n * sizeof(float));
        s.stream = 8;
        assert_int_equal(lb_fake_quantize(&s, x, y2, 1, n, NULL), LB_OK);
        assert_true(memcmp(y, y2, n * sizeof(float)) != 0);
    }
    free(x);
    free(y);
    free(y2);
}

/* Stochastic rounding of element i uses lb_rand_uniform(seed,
 * LB_STREAM_STOCHASTIC + stream, i), as qspec.h documents. */
static void test_stochastic_rounding_stream(void **state) {
    (void)state;
    const size_t rows = 3, cols = 333, n = rows * cols;
    float *x = random_matrix(n, 12), *y = malloc(n * sizeof(float));
    lb_qspec s = spec("int8:per_token:sr");
    s.seed = 1234;
    s.stream = 99;
    assert_int_equal(lb_fake_quantize(&s, x, y, rows, cols, NULL), LB_OK);
    for (size_t r = 0; r < rows; r++) {
        float amax = 0;
        for (size_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(x[r * cols + c]));
        float sc = 127.0f / amax, d = 1.0f / sc;
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            float u = lb_rand_uniform(1234, LB_STREAM_STOCHASTIC + 99, i);
            float q = fminf(fmaxf(floorf(x[i] * sc + u), -128), 127);
            if (y[i] != q * d) fail_msg("element %zu: %g, want %g", i, y[i], q * d);
        }
    }
    free(x);
    free(y);
}

/* Results, sums of per-tensor scales included, do not depend on the thread count. */
static void test_thread_count_independent(void **state) {
    (void)state;
    const size_t rows = 256, cols = 1024, n = rows * cols;
    float *x = random_matrix(n, 8), *y1 = malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
    const char *specs[] = {"ternary", "binary", "int8:per_token", "int4:g128:sr", "fp8_e4m3", "mxfp4"};
    int saved = omp_get_max_threads();
    for (int k = 0; k < 6; k++) {
        lb_qspec s = spec(specs[k]);
        omp_set_num_threads(1);
        assert_int_equal(lb_fake_quantize(&s, x, y1, rows, cols, NULL), LB_OK);
        omp_set_num_threads(3);
        assert_int_equal(lb_fake_quantize(&s, x, y2, rows, cols, NULL), LB_OK);
        if (memcmp(y1, y2, n * sizeof(float)) != 0) fail_msg("%s differs between 1 and 3 threads", specs[k]);
    }
    omp_set_num_threads(saved);
    free(x);
    free(y1);
    free(y2);
}

static void test_errors(void **state) {
    (void)state;
    float x[4] = {1, 2, 3, 4}, y[4], sc[4];
    uint8_t codes[4];
    lb_qspec s = spec("int8");
    s.bits = 9;
    assert_int_equal(lb_fake_quantize(&s, x, y, 1, 4, NULL), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "int9"));
    s = spec("mxfp4");
    s.group = 16;
    assert_int_equal(lb_fake_quantize(&s, x, y, 1, 4, NULL), LB_EINVAL);
    s = spec("int4:asym");
    assert_int_equal(lb_quantize(&s, x, 1, 4, codes, sc, NULL), LB_EINVAL);
    s = spec("none");
    assert_int_equal(lb_quantize(&s, x, 1, 4, codes, sc, NULL), LB_EINVAL);
    assert_int_equal(lb_fake_quantize(&s, x, y, 1, 4, NULL), LB_OK);
    assert_memory_equal(x, y, sizeof x);
    assert_int_equal(lb_fake_quantize(&s, x, y, 0, 4, NULL), LB_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_dequantize_equals_fake),
        cmocka_unit_test(test_fake_matches_codes_on_specials),
        cmocka_unit_test(test_codes_match_scalar_encoders),
        cmocka_unit_test(test_symmetric_formats_are_odd),
        cmocka_unit_test(test_error_bounds_and_group_scales),
        cmocka_unit_test(test_int_hand_examples),
        cmocka_unit_test(test_mx_blocks),
        cmocka_unit_test(test_fp8_scale_helper),
        cmocka_unit_test(test_stochastic_rounding),
        cmocka_unit_test(test_stochastic_rounding_stream),
        cmocka_unit_test(test_thread_count_independent),
        cmocka_unit_test(test_errors),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

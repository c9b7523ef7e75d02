/* Tests of the optimizer-state codecs, low-bit gradients, the loss scale and
 * the schedules (src/optim/codec.h, quant/grad_round.h, optim/loss_scale.h, schedule.h). Bounds come
 * from the formats' definitions, not from the implementation. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "optim/codec.h"
#include "optim/loss_scale.h"
#include "quant/grad_round.h"
#include "optim/schedule.h"
#include "core/minifloat.h"
#include "quant/quantize.h"
#include "testutil.h"

/* Values over many orders of magnitude, with exact zeros, tiny and huge ones. */
static void fill_wide(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        float u = lb_rand_uniform(seed, 90, i), e = lb_rand_uniform(seed, 91, i);
        float sign = lb_rand_uniform(seed, 92, i) < 0.5f ? -1.0f : 1.0f;
        x[i] = sign * (0.5f + u) * powf(10.0f, -8.0f + 10.0f * e); /* 5e-9 .. 1.5e2 */
        if (i % 17 == 0) x[i] = 0.0f;
        if (i % 29 == 0) x[i] = sign * 1e-30f;
        if (i % 31 == 0) x[i] = sign * 3e30f;
    }
}

/* ---- dynamic maps ---------------------------------------------------------------- */

static void test_dynamic_maps_shape_and_endpoints(void **state) {
    (void)state;
    float s[LB_DYNMAP_SIZE], u[LB_DYNMAP_SIZE];
    lb_dynmap_build(s, 1);
    lb_dynmap_build(u, 0);
    for (int i = 1; i < LB_DYNMAP_SIZE; i++) {
        assert_true(s[i - 1] < s[i]);
        assert_true(u[i - 1] < u[i]);
    }
    assert_float_equal(s[0], -1.0f, 0.0f);
    assert_float_equal(s[255], 1.0f, 0.0f);
    assert_float_equal(u[0], 0.0f, 0.0f);
    assert_float_equal(u[255], 1.0f, 0.0f);
    int zeros = 0, pos = 0, neg = 0;
    for (int i = 0; i < LB_DYNMAP_SIZE; i++) {
        zeros += s[i] == 0.0f;
        pos += s[i] > 0.0f;
        neg += s[i] < 0.0f;
    }
    assert_int_equal(zeros, 1);
    assert_int_equal(pos, 128);
    assert_int_equal(neg, 127);
    /* Dynamic tree quantization with 7 exponent levels: the unsigned map holds
     * 2^(i+1) fractions in the decade [10^(i-7), 10^(i-6)), i = 0..6; the
     * signed map 2^i per sign (the negative side lacks its smallest entry). */
    for (int i = 0; i < 7; i++) {
        double lo = pow(10.0, i - 7), hi = pow(10.0, i - 6);
        int cu = 0, cp = 0, cn = 0;
        for (int k = 0; k < LB_DYNMAP_SIZE; k++) {
            cu += u[k] >= lo && u[k] < hi;
            cp += s[k] >= lo && s[k] < hi;
            cn += -s[k] >= lo && -s[k] < hi;
        }
        assert_int_equal(cu, 1 << (i + 1));
        assert_int_equal(cp, 1 << i);
        assert_int_equal(cn, (1 << i) - (i == 0));
    }
}

static void test_dynamic_map_encode_is_nearest(void **state) {
    (void)state;
    float s[LB_DYNMAP_SIZE], u[LB_DYNMAP_SIZE];
    lb_dynmap_build(s, 1);
    lb_dynmap_build(u, 0);
    for (int t = 0; t < 20000; t++) {
        float x = 2.4f * lb_rand_uniform(3, 5, (uint64_t)t) - 1.2f; /* past both ends too */
        if (t % 3 == 0) x *= 1e-4f;
        for (int sg = 0; sg < 2; sg++) {
            const float *map = sg ? s : u;
            float best = INFINITY;
            for (int k = 0; k < LB_DYNMAP_SIZE; k++) best = fminf(best, fabsf(map[k] - x));
            uint8_t c = lb_dynmap_encode(map, x);
            assert_true(fabsf(map[c] - x) <= best);
        }
    }
    assert_float_equal(s[lb_dynmap_encode(s, NAN)], 0.0f, 0.0f);
}

/* ---- block-wise int8 ------------------------------------------------------------------ */

static void test_int8_blockwise_round_trip(void **state) {
    (void)state;
    enum { N = 10 * LB_INT8_BLOCK + 77 }; /* a partial last block */
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *codes = malloc(N);
    float absmax[11], s[LB_DYNMAP_SIZE], u[LB_DYNMAP_SIZE];
    lb_dynmap_build(s, 1);
    lb_dynmap_build(u, 0);
    /* largest gap between neighbouring entries bounds the error relative to absmax */
    float gap_s = 0, gap_u = 0;
    for (int k = 1; k < LB_DYNMAP_SIZE; k++) {
        gap_s = fmaxf(gap_s, s[k] - s[k - 1]);
        gap_u = fmaxf(gap_u, u[k] - u[k - 1]);
    }
    assert_true(gap_s < 0.02f && gap_u < 0.02f);
    for (int sg = 0; sg < 2; sg++) {
        const float *map = sg ? s : u;
        fill_wide(x, N, 11 + (uint64_t)sg);
        /* blocks of very different size, and one block of zeros */
        for (size_t i = 0; i < N; i++) {
            x[i] *= powf(10.0f, (float)(i / LB_INT8_BLOCK) - 5.0f) * 1e-25f;
            if (!sg) x[i] = fabsf(x[i]);
            if (i / LB_INT8_BLOCK == 3) x[i] = 0.0f;
        }
        for (size_t b = 0; b < lb_int8_nblocks(N); b++) { /* the tensor block by block, as the optimizer does */
            size_t lo = b * LB_INT8_BLOCK, len = N - lo < LB_INT8_BLOCK ? N - lo : LB_INT8_BLOCK;
            absmax[b] = lb_int8_block_encode(x + lo, len, map, codes + lo);
            lb_int8_block_decode(codes + lo, len, absmax[b], map, y + lo);
        }
        for (size_t b = 0; b < 11; b++) {
            size_t lo = b * LB_INT8_BLOCK, hi = lo + LB_INT8_BLOCK < N ? lo + LB_INT8_BLOCK : N;
            float amax = 0;
            for (size_t i = lo; i < hi; i++) amax = fmaxf(amax, fabsf(x[i]));
            assert_float_equal(absmax[b], amax, 0.0f);
            for (size_t i = lo; i < hi; i++) {
                /* nearest entry: the error is at most half the gap around x/absmax */
                float r = amax > 0 ? x[i] / amax : 0.0f, best = INFINITY;
                for (int k = 0; k < LB_DYNMAP_SIZE; k++) best = fminf(best, fabsf(map[k] - r));
                assert_true(fabsf(y[i] - x[i]) <= (best * 1.0001f + 1e-6f) * amax);
                assert_true(fabsf(y[i] - x[i]) <= 0.5f * (sg ? gap_s : gap_u) * amax * 1.0001f);
                if (fabsf(x[i]) == amax) assert_float_equal(y[i], x[i], 0.0f); /* ±1 are entries */
            }
        }
    }
    free(x);
    free(y);
    free(codes);
}

/* ---- scaled fp8 / fp16 ------------------------------------------------------------------ */

static void test_fp8_scale_rule(void **state) {
    (void)state;
    /* 2^floor(log2(max / amax)) - margin */
    assert_float_equal(lb_pow2_scale(1.0f, 448.0f, 0, 7.0f), 256.0f, 0.0f);
    assert_float_equal(lb_pow2_scale(3.0f, 448.0f, 0, 7.0f), 128.0f, 0.0f);
    assert_float_equal(lb_pow2_scale(448.0f, 448.0f, 0, 7.0f), 1.0f, 0.0f);
    assert_float_equal(lb_pow2_scale(449.0f, 448.0f, 0, 7.0f), 0.5f, 0.0f);
    assert_float_equal(lb_pow2_scale(1.0f, 448.0f, 2, 7.0f), 64.0f, 0.0f);
    assert_float_equal(lb_pow2_scale(1e-3f, 65504.0f, 0, 7.0f), 33554432.0f, 0.0f); /* 6.55e7 -> 2^25 */
    /* amax 0 or not finite: the old scale stays */
    assert_float_equal(lb_pow2_scale(0.0f, 448.0f, 0, 7.0f), 7.0f, 0.0f);
    assert_float_equal(lb_pow2_scale(NAN, 448.0f, 0, 7.0f), 7.0f, 0.0f);
    assert_float_equal(lb_pow2_scale(INFINITY, 448.0f, 0, 7.0f), 7.0f, 0.0f);
    /* extreme amax: the scale stays a normal float */
    assert_true(isnormal(lb_pow2_scale(1e-44f, 448.0f, 0, 1.0f)));
    assert_true(isnormal(lb_pow2_scale(3e38f, 448.0f, 0, 1.0f)));
}

static void test_fp8_store_round_trip(void **state) {
    (void)state;
    enum { N = 5000 };
    float x[N];
    fill_wide(x, N, 21);
    for (size_t i = 0; i < N; i++) /* keep the huge ones out of this tensor's range */
        if (fabsf(x[i]) > 1e3f) x[i] = copysignf(150.0f, x[i]);
    uint16_t codes[N];
    /* per format: max, smallest normal, mantissa bits, smallest subnormal */
    const struct { lb_dtype f; float max, min_normal; int mbits; float min_sub; } fm[3] = {
        {LB_DT_F8_E4M3, 448.0f, 0x1p-6f, 3, 0x1p-9f},
        {LB_DT_F8_E5M2, 57344.0f, 0x1p-14f, 2, 0x1p-16f},
        {LB_DT_F16, 65504.0f, 0x1p-14f, 10, 0x1p-24f},
    };
    for (int k = 0; k < 3; k++) {
        assert_float_equal(lb_dtype_info(fm[k].f)->max, fm[k].max, 0.0f);
        float amax = 0;
        for (int i = 0; i < N; i++) amax = fmaxf(amax, fabsf(x[i]));
        float sc = lb_pow2_scale(amax, fm[k].max, 0, 1.0f);
        assert_true(amax * sc <= fm[k].max && amax * sc > fm[k].max / 2);
        float ys[N];
        lb_scaled_encode(fm[k].f, x, N, sc, codes);
        lb_scaled_decode(fm[k].f, codes, N, 1.0f / sc, ys);
        for (int i = 0; i < N; i++) {
            float y = ys[i];
            float a = fabsf(x[i] * sc);
            if (a >= fm[k].min_normal) /* half an ulp: 2^-(mbits+1) relative */
                assert_true(fabsf(y - x[i]) <= ldexpf(fabsf(x[i]), -(fm[k].mbits + 1)));
            else /* subnormal range: half the subnormal spacing, absolute */
                assert_true(fabsf(y - x[i]) * sc <= fm[k].min_sub / 2);
        }
    }
}

/* ---- bf16 ------------------------------------------------------------------------------ */

static void test_bf16_nearest_and_stochastic(void **state) {
    (void)state;
    enum { N = 4000 };
    float x[N];
    fill_wide(x, N, 31);
    for (int i = 0; i < N; i++) {
        if (!isnormal(x[i])) continue;
        float rne = lb_bf16_to_f32(lb_bf16_from_f32(x[i]));
        float sr = lb_bf16_to_f32(lb_bf16_from_f32_stochastic(x[i], lb_rand_u32(1, 9, (uint64_t)i)));
        assert_true(fabsf(rne - x[i]) <= ldexpf(fabsf(x[i]), -8));
        assert_true(fabsf(sr - x[i]) < ldexpf(fabsf(x[i]), -7)); /* one of the two neighbours */
    }
    /* unbiased: x = 1 + 2^-7/3 lies a third of the way from 1 to the next bf16 */
    float v = 1.0f + 0x1p-7f / 3.0f;
    enum { D = 40000 };
    double sum = 0;
    for (int i = 0; i < D; i++) sum += lb_bf16_to_f32(lb_bf16_from_f32_stochastic(v, lb_rand_u32(2, 9, (uint64_t)i)));
    double sd = 0x1p-7 * sqrt((1.0 / 3) * (2.0 / 3) / D);
    assert_true(fabs(sum / D - v) < 5 * sd);
    /* non-finite values and the top of the range fall back to nearest-even */
    assert_true(isinf(lb_bf16_to_f32(lb_bf16_from_f32_stochastic(INFINITY, 0xFFFF))));
    assert_true(isnan(lb_bf16_to_f32(lb_bf16_from_f32_stochastic(NAN, 0))));
    assert_true(isfinite(lb_bf16_to_f32(lb_bf16_from_f32_stochastic(3.3e38f, 0xFFFF))));
}

/* ---- low-bit gradients -------------------------------------------------------------------- */

static void test_grad_int8_stochastic_rounding_is_unbiased(void **state) {
    (void)state;
    enum { COLS = 64, DRAWS = 3000 };
    float g[COLS], q[COLS];
    double mean[COLS] = {0};
    for (int j = 0; j < COLS; j++) g[j] = lb_rand_uniform(5, 1, (uint64_t)j) * 2.0f - 1.0f;
    g[7] = 1.5f; /* the row's absmax */
    float step = 1.5f / 127.0f;
    for (int d = 0; d < DRAWS; d++) {
        memcpy(q, g, sizeof g);
        assert_int_equal(lb_quantize_grad_inplace(q, 1, COLS, LB_GRAD_INT8, 42, LB_SR_COUNTER(d, 3)), LB_OK);
        for (int j = 0; j < COLS; j++) {
            /* always one of the two neighbouring multiples of absmax/127 */
            double k = floor(g[j] / step);
            assert_true(fabs(q[j] - k * step) < 1e-5 || fabs(q[j] - (k + 1) * step) < 1e-5);
            mean[j] += q[j];
        }
    }
    /* a draw deviates by at most one step: sd of the mean <= step / (2 sqrt(DRAWS)) */
    double bound = 5 * step / (2 * sqrt((double)DRAWS));
    for (int j = 0; j < COLS; j++) assert_true(fabs(mean[j] / DRAWS - g[j]) < bound);
    assert_float_equal(q[7], 1.5f, 1e-6f);
}

static void test_grad_int8_rows_threads_and_nonfinite(void **state) {
    (void)state;
    enum { ROWS = 300, COLS = 256, N = ROWS * COLS };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float)), *orig = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) orig[i] = (lb_rand_uniform(8, 1, (uint64_t)i) - 0.5f) * (float)(1 + i / COLS);
    orig[5 * COLS + 9] = NAN;
    int saved = omp_get_max_threads();
    memcpy(a, orig, N * sizeof(float));
    memcpy(b, orig, N * sizeof(float));
    omp_set_num_threads(1);
    assert_int_equal(lb_quantize_grad_inplace(a, ROWS, COLS, LB_GRAD_INT8, 9, 123), LB_OK);
    omp_set_num_threads(2);
    assert_int_equal(lb_quantize_grad_inplace(b, ROWS, COLS, LB_GRAD_INT8, 9, 123), LB_OK);
    omp_set_num_threads(saved);
    assert_memory_equal(a, b, N * sizeof(float));
    /* the row holding NaN is left as it was; every other row is rounded */
    assert_memory_equal(a + 5 * COLS, orig + 5 * COLS, COLS * sizeof(float));
    int changed = 0;
    for (int i = 6 * COLS; i < N; i++) changed += a[i] != orig[i];
    assert_true(changed > N / 2);
    /* another counter gives other draws */
    memcpy(b, orig, N * sizeof(float));
    lb_quantize_grad_inplace(b, ROWS, COLS, LB_GRAD_INT8, 9, 124);
    assert_true(memcmp(a + 6 * COLS, b + 6 * COLS, COLS * sizeof(float)) != 0);
    assert_int_equal(lb_quantize_grad_inplace(a, ROWS, COLS, (lb_grad_precision)9, 0, 0), LB_EINVAL);
    free(a);
    free(b);
    free(orig);
}

static void test_grad_fp8_per_tensor(void **state) {
    (void)state;
    enum { N = 3000 };
    float g[N], q[N];
    fill_wide(g, N, 41);
    for (int i = 0; i < N; i++) g[i] *= 1e-6f; /* gradients far below E5M2's range without a scale */
    memcpy(q, g, sizeof g);
    assert_int_equal(lb_quantize_grad_inplace(q, 30, 100, LB_GRAD_FP8, 0, 0), LB_OK);
    float amax = 0;
    for (int i = 0; i < N; i++) amax = fmaxf(amax, fabsf(g[i]));
    float sc = lb_pow2_scale(amax, 57344.0f, 0, 1.0f); /* the rule in quant/grad_round.h */
    for (int i = 0; i < N; i++) {
        float a = fabsf(g[i]) * sc;
        if (a >= 0x1p-14f) assert_true(fabsf(q[i] - g[i]) <= ldexpf(fabsf(g[i]), -3)); /* E5M2 half ulp */
        else assert_true(fabsf(q[i] - g[i]) * sc <= 0x1p-17f);
    }
    /* a non-finite tensor is left for the overflow check */
    memcpy(q, g, sizeof g);
    q[10] = INFINITY;
    lb_quantize_grad_inplace(q, 1, N, LB_GRAD_FP8, 0, 0);
    assert_memory_equal(q + 11, g + 11, (N - 11) * sizeof(float));
    lb_grad_precision p;
    assert_int_equal(lb_grad_precision_parse("int8", &p), LB_OK);
    assert_int_equal(p, LB_GRAD_INT8);
    assert_int_equal(lb_grad_precision_parse("int4", &p), LB_ECONFIG);
}

/* ---- loss scale ----------------------------------------------------------------------------- */

static void test_loss_scaler_backoff_and_growth(void **state) {
    (void)state;
    lb_loss_scaler s;
    lb_loss_scaler_init(&s, 1024.0f, 1);
    s.growth_interval = 3;
    assert_int_equal(lb_loss_scaler_update(&s, 1), 0);
    assert_int_equal(lb_loss_scaler_update(&s, 0), 1); /* overflow: skip and halve */
    assert_float_equal(s.scale, 512.0f, 0.0f);
    assert_int_equal(s.good_steps, 0);
    for (int i = 0; i < 2; i++) assert_int_equal(lb_loss_scaler_update(&s, 1), 0);
    assert_float_equal(s.scale, 512.0f, 0.0f);
    assert_int_equal(lb_loss_scaler_update(&s, 1), 0); /* third good step in a row */
    assert_float_equal(s.scale, 1024.0f, 0.0f);
    for (int i = 0; i < 40; i++) lb_loss_scaler_update(&s, 0);
    assert_float_equal(s.scale, 1.0f, 0.0f); /* floor */
    lb_loss_scaler fixed;
    lb_loss_scaler_init(&fixed, 8.0f, 0);
    assert_int_equal(lb_loss_scaler_update(&fixed, 0), 1); /* still skipped */
    assert_float_equal(fixed.scale, 8.0f, 0.0f);
}

/* ---- schedules ------------------------------------------------------------------------------- */

static void test_schedules(void **state) {
    (void)state;
    lb_schedule s = {.kind = LB_SCHED_COSINE, .peak_lr = 1e-3f, .min_lr = 1e-4f, .warmup_steps = 10,
                     .total_steps = 110, .weight_decay = 0.1f};
    assert_int_equal(lb_schedule_check(&s), LB_OK);
    assert_float_equal(lb_schedule_lr(&s, 0), 0.0f, 0.0f);
    assert_float_equal(lb_schedule_lr(&s, 1), 1e-4f, 1e-10f);
    assert_float_equal(lb_schedule_lr(&s, 10), 1e-3f, 1e-10f);
    assert_float_equal(lb_schedule_lr(&s, 60), 5.5e-4f, 1e-9f);  /* half way: the mean */
    assert_float_equal(lb_schedule_lr(&s, 35), 1e-4f + 9e-4f * 0.5f * (1.0f + cosf((float)M_PI / 4)), 1e-9f);
    assert_float_equal(lb_schedule_lr(&s, 110), 1e-4f, 1e-10f);
    assert_float_equal(lb_schedule_lr(&s, 500), 1e-4f, 1e-10f);
    assert_float_equal(lb_schedule_wd(&s, 100), 0.1f, 0.0f);
    s.kind = LB_SCHED_LINEAR;
    assert_float_equal(lb_schedule_lr(&s, 60), 5.5e-4f, 1e-9f);
    assert_float_equal(lb_schedule_lr(&s, 35), 1e-3f - 9e-4f * 0.25f, 1e-9f);
    s.kind = LB_SCHED_CONSTANT;
    assert_float_equal(lb_schedule_lr(&s, 5), 5e-4f, 1e-10f);
    assert_float_equal(lb_schedule_lr(&s, 100), 1e-3f, 0.0f);

    /* BitNet b1.58: peak 1.5e-3, at the midpoint down to 1e-3 decaying to 1e-4; wd 0.1 -> 0 */
    lb_schedule b = {.kind = LB_SCHED_TWO_STAGE, .peak_lr = 1.5e-3f, .min_lr = 1e-4f, .warmup_steps = 20,
                     .total_steps = 200, .stage2_at = 0.5f, .stage2_lr = 1e-3f, .weight_decay = 0.1f,
                     .weight_decay_stage2 = 0.0f};
    assert_int_equal(lb_schedule_check(&b), LB_OK);
    assert_int_equal(lb_schedule_stage2_step(&b), 100);
    assert_float_equal(lb_schedule_lr(&b, 10), 0.75e-3f, 1e-10f);
    assert_float_equal(lb_schedule_lr(&b, 50), 1.5e-3f, 0.0f);
    assert_float_equal(lb_schedule_lr(&b, 100), 1.5e-3f, 0.0f);
    assert_float_equal(lb_schedule_lr(&b, 101), 1e-3f - 9e-4f / 100, 1e-9f);
    assert_float_equal(lb_schedule_lr(&b, 150), 5.5e-4f, 1e-9f);
    assert_float_equal(lb_schedule_lr(&b, 200), 1e-4f, 1e-10f);
    assert_float_equal(lb_schedule_wd(&b, 100), 0.1f, 0.0f);
    assert_float_equal(lb_schedule_wd(&b, 101), 0.0f, 0.0f);

    lb_sched_kind k;
    assert_int_equal(lb_sched_kind_parse("two_stage", &k), LB_OK);
    assert_int_equal(k, LB_SCHED_TWO_STAGE);
    assert_int_equal(lb_sched_kind_parse("step", &k), LB_ECONFIG);
    b.stage2_at = 1.0f;
    assert_int_equal(lb_schedule_check(&b), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "stage2_at"));
    s.warmup_steps = 1000;
    assert_int_equal(lb_schedule_check(&s), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "warmup_steps"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dynamic_maps_shape_and_endpoints),
        cmocka_unit_test(test_dynamic_map_encode_is_nearest),
        cmocka_unit_test(test_int8_blockwise_round_trip),
        cmocka_unit_test(test_fp8_scale_rule),
        cmocka_unit_test(test_fp8_store_round_trip),
        cmocka_unit_test(test_bf16_nearest_and_stochastic),
        cmocka_unit_test(test_grad_int8_stochastic_rounding_is_unbiased),
        cmocka_unit_test(test_grad_int8_rows_threads_and_nonfinite),
        cmocka_unit_test(test_grad_fp8_per_tensor),
        cmocka_unit_test(test_loss_scaler_backoff_and_growth),
        cmocka_unit_test(test_schedules),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

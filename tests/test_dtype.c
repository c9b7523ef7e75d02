/* Tests of src/core/dtype.c: every row of the traits table against the facts
 * written out here from the formats' specifications (ggml.h's ggml_type ids,
 * safetensors' dtype names, OCP OFP8, IEEE 754), every row codec's round
 * trips and rounding, and the look-ups by name, GGUF id and safetensors name. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/minifloat.h"
#include "core/rng.h"
#include "testutil.h"

/* ---- the table, row by row -------------------------------------------------- */

static const struct {
    lb_dtype t;
    const char *name;
    lb_dtype_class cls;
    int bytes;
    double max;
    int gguf;
    const char *safetensors;
    int block;
} want[] = {
    {LB_DT_F32, "f32", LB_DC_FLOAT, 4, 3.4028234663852886e38, 0, "F32", 1},
    {LB_DT_F16, "f16", LB_DC_FLOAT, 2, 65504.0, 1, "F16", 1},
    {LB_DT_BF16, "bf16", LB_DC_FLOAT, 2, 3.3895313892515355e38, 30, "BF16", 1},
    {LB_DT_F64, "f64", LB_DC_FLOAT, 8, 1.7976931348623157e308, 28, "F64", 1},
    {LB_DT_F8_E4M3, "f8_e4m3", LB_DC_FLOAT, 1, 448.0, -1, "F8_E4M3", 1},
    {LB_DT_F8_E5M2, "f8_e5m2", LB_DC_FLOAT, 1, 57344.0, -1, "F8_E5M2", 1},
    {LB_DT_I8, "i8", LB_DC_SINT, 1, 127.0, 24, "I8", 1},
    {LB_DT_U8, "u8", LB_DC_UINT, 1, 255.0, -1, "U8", 1},
    {LB_DT_I16, "i16", LB_DC_SINT, 2, 32767.0, 25, "I16", 1},
    {LB_DT_U16, "u16", LB_DC_UINT, 2, 65535.0, -1, "U16", 1},
    {LB_DT_I32, "i32", LB_DC_SINT, 4, 2147483647.0, 26, "I32", 1},
    {LB_DT_U32, "u32", LB_DC_UINT, 4, 4294967295.0, -1, "U32", 1},
    {LB_DT_I64, "i64", LB_DC_SINT, 8, 9223372036854775807.0, 27, "I64", 1},
    /* GGML blocks (ggml-common.h): bytes per block; max = largest code times fp16's max */
    {LB_DT_Q8_0, "q8_0", LB_DC_BLOCK, 34, 127.0 * 65504.0, 8, NULL, 32},
    {LB_DT_Q4_0, "q4_0", LB_DC_BLOCK, 18, 8.0 * 65504.0, 2, NULL, 32},
    {LB_DT_TQ1_0, "tq1_0", LB_DC_BLOCK, 54, 65504.0, 34, NULL, 256},
    {LB_DT_TQ2_0, "tq2_0", LB_DC_BLOCK, 66, 2.0 * 65504.0, 35, NULL, 256},
};
/* A dtype added to the enum must be added here (and so checked) too. */
_Static_assert(sizeof want / sizeof want[0] == LB_DT_COUNT, "test_dtype: one expected row per lb_dtype");

static void test_every_row(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const lb_dtype_traits *d = lb_dtype_info(want[i].t);
        assert_non_null(d);
        assert_int_equal(want[i].t, (lb_dtype)i); /* the enum order */
        assert_non_null(d->name);
        assert_string_equal(d->name, want[i].name);
        assert_int_equal(d->cls, want[i].cls);
        const int block = want[i].block;
        assert_int_equal(d->block, block);
        assert_int_equal(d->block_bytes, want[i].bytes);
        if (d->max != want[i].max) fail_msg("%s: max %.17g, want %.17g", d->name, d->max, want[i].max);
        assert_int_equal(d->gguf_type, want[i].gguf);
        if (want[i].safetensors) assert_string_equal(d->safetensors, want[i].safetensors);
        else assert_null(d->safetensors);
        assert_non_null(d->to_f32);
        assert_non_null(d->from_f32);
        assert_int_equal(lb_dtype_row_bytes(want[i].t, 10u * (size_t)block), 10u * (size_t)want[i].bytes);
        for (size_t j = 0; j < i; j++) assert_true(strcmp(d->name, lb_dtype_info(want[j].t)->name) != 0);
    }
    assert_null(lb_dtype_info(LB_DT_COUNT));
    assert_null(lb_dtype_info((lb_dtype)-1));
}

/* The max of each float format is the value of its largest finite code. */
static void test_float_max_is_the_largest_code(void **state) {
    (void)state;
    assert_true(lb_dtype_info(LB_DT_F8_E4M3)->max == lb_fp8_e4m3_to_f32(0x7e));
    assert_true(lb_dtype_info(LB_DT_F8_E5M2)->max == lb_fp8_e5m2_to_f32(0x7b));
    assert_true(lb_dtype_info(LB_DT_F16)->max == lb_fp16_to_f32(0x7bff));
    assert_true(lb_dtype_info(LB_DT_BF16)->max == lb_bf16_to_f32(0x7f7f));
    assert_true(lb_dtype_info(LB_DT_F32)->max == FLT_MAX);
    assert_true(lb_dtype_info(LB_DT_F64)->max == DBL_MAX);
}

/* ---- round trips ------------------------------------------------------------------ */

/* Every code of a 1- or 2-byte format decodes to a value that encodes back to
 * the same code (NaN codes excepted: their payload is not kept). */
static void round_trip_all_codes(lb_dtype t) {
    const lb_dtype_traits *d = lb_dtype_info(t);
    size_t n = d->block_bytes == 1 ? 256 : 65536;
    uint8_t *codes = malloc(n * (size_t)d->block_bytes), *back = malloc(n * (size_t)d->block_bytes);
    float *v = malloc(n * sizeof *v);
    assert_non_null(codes);
    assert_non_null(back);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        if (d->block_bytes == 1) codes[i] = (uint8_t)i;
        else memcpy(codes + 2 * i, &(uint16_t){(uint16_t)i}, 2);
    }
    d->to_f32(codes, v, n);
    d->from_f32(v, back, n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i])) continue;
        size_t b = (size_t)d->block_bytes;
        if (memcmp(codes + b * i, back + b * i, b) != 0)
            fail_msg("%s: code %zu decodes to %.9g, which encodes to another code", d->name, i, (double)v[i]);
    }
    free(codes);
    free(back);
    free(v);
}

static void test_round_trip_small_formats(void **state) {
    (void)state;
    const lb_dtype small[] = {LB_DT_F16, LB_DT_BF16, LB_DT_F8_E4M3, LB_DT_F8_E5M2,
                              LB_DT_I8,  LB_DT_U8,   LB_DT_I16,     LB_DT_U16};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) round_trip_all_codes(small[i]);
}

/* Values a wide format holds exactly come back unchanged: every float for f32
 * and f64, integers within range for i32/u32/i64 (and with 24-bit
 * significands, so that the f32 side holds them exactly too). */
static void test_round_trip_wide_formats(void **state) {
    (void)state;
    enum { N = 4096 };
    float x[N], y[N];
    uint8_t buf[8 * N];
    lb_rng r;
    lb_rng_init(&r, 7, 1);
    for (int i = 0; i < N; i++) {
        uint32_t u = lb_rng_u32(&r);
        x[i] = lb_f32_from_bits((u & 0x7f800000u) == 0x7f800000u ? u & 0xbfffffffu : u); /* finite */
    }
    const lb_dtype floats[] = {LB_DT_F32, LB_DT_F64};
    for (int k = 0; k < 2; k++) {
        const lb_dtype_traits *d = lb_dtype_info(floats[k]);
        d->from_f32(x, buf, N);
        d->to_f32(buf, y, N);
        assert_memory_equal(x, y, sizeof x);
    }
    const lb_dtype ints[] = {LB_DT_I32, LB_DT_U32, LB_DT_I64};
    for (int k = 0; k < 3; k++) {
        const lb_dtype_traits *d = lb_dtype_info(ints[k]);
        for (int i = 0; i < N; i++) {
            float v = ldexpf((float)(lb_rng_u32(&r) >> 8), (int)(lb_rng_u32(&r) % 8)); /* 24-bit significand */
            x[i] = d->cls == LB_DC_SINT && (i & 1) ? -v : v;
        }
        d->from_f32(x, buf, N);
        d->to_f32(buf, y, N);
        assert_memory_equal(x, y, sizeof x);
    }
}

/* ---- rounding and saturation --------------------------------------------------------- */

static void test_integer_rounding_and_saturation(void **state) {
    (void)state;
    const float in[] = {2.5f, -2.5f, 3.5f, 0.49999997f, -0.5f, 1e10f, -1e10f, NAN, INFINITY, -INFINITY, 200.7f};
    enum { N = sizeof in / sizeof in[0] };
    int8_t i8[N];
    lb_dtype_info(LB_DT_I8)->from_f32(in, i8, N);
    const int8_t w8[N] = {2, -2, 4, 0, 0, 127, -128, 0, 127, -128, 127};
    assert_memory_equal(i8, w8, sizeof w8);
    uint8_t u8[N];
    lb_dtype_info(LB_DT_U8)->from_f32(in, u8, N);
    const uint8_t wu8[N] = {2, 0, 4, 0, 0, 255, 0, 0, 255, 0, 201};
    assert_memory_equal(u8, wu8, sizeof wu8);
    int32_t i32[N];
    lb_dtype_info(LB_DT_I32)->from_f32(in, i32, N);
    const int32_t w32[N] = {2, -2, 4, 0, 0, INT32_MAX, INT32_MIN, 0, INT32_MAX, INT32_MIN, 201};
    assert_memory_equal(i32, w32, sizeof w32);
    uint32_t u32[N];
    lb_dtype_info(LB_DT_U32)->from_f32(in, u32, N);
    const uint32_t wu32[N] = {2, 0, 4, 0, 0, UINT32_MAX, 0, 0, UINT32_MAX, 0, 201};
    assert_memory_equal(u32, wu32, sizeof wu32);
    int64_t i64[3];
    const float big[3] = {1e30f, -1e30f, 9223372036854775808.0f /* 2^63 */};
    lb_dtype_info(LB_DT_I64)->from_f32(big, i64, 3);
    assert_true(i64[0] == INT64_MAX && i64[1] == INT64_MIN && i64[2] == INT64_MAX);
    int16_t i16[2];
    lb_dtype_info(LB_DT_I16)->from_f32((const float[]){40000.0f, -32768.4f}, i16, 2);
    assert_true(i16[0] == 32767 && i16[1] == -32768);
}

static void test_float_rounding_and_overflow(void **state) {
    (void)state;
    /* bf16 keeps 7 fraction bits: 1 + 2^-8 is a tie that goes to the even 1.0,
     * 1 + 3·2^-8 a tie that goes up to the even 1 + 2^-6. */
    float x[4] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, FLT_MAX, -FLT_MAX};
    uint16_t h[4];
    lb_dtype_info(LB_DT_BF16)->from_f32(x, h, 4);
    assert_int_equal(h[0], 0x3f80);
    assert_int_equal(h[1], 0x3f82);
    assert_int_equal(h[2], 0x7f80); /* FLT_MAX rounds past the largest bf16: inf */
    assert_int_equal(h[3], 0xff80);
    /* f16 overflows to inf; e4m3 has no inf and saturates; e5m2 overflows to inf. */
    const float big[2] = {1e6f, -1e6f};
    lb_dtype_info(LB_DT_F16)->from_f32(big, h, 2);
    assert_int_equal(h[0], 0x7c00);
    assert_int_equal(h[1], 0xfc00);
    uint8_t c[2];
    lb_dtype_info(LB_DT_F8_E4M3)->from_f32(big, c, 2);
    assert_int_equal(c[0], 0x7e);
    assert_int_equal(c[1], 0xfe);
    lb_dtype_info(LB_DT_F8_E5M2)->from_f32(big, c, 2);
    assert_int_equal(c[0], 0x7c);
    assert_int_equal(c[1], 0xfc);
    /* f64 → f32 rounds to nearest and overflows to inf. */
    const double d[3] = {1.0 + 0x1p-24, 1.0 + 3 * 0x1p-24, 1e300};
    float f[3];
    lb_dtype_info(LB_DT_F64)->to_f32(d, f, 3);
    assert_true(f[0] == 1.0f && f[1] == 1.0f + 0x1p-22f && isinf(f[2]));
}

/* The f16 codec against the compiler's own binary16 conversion (libgcc's
 * round-to-nearest-even), an implementation independent of core/minifloat.h. */
static void test_f16_against_the_compiler(void **state) {
    (void)state;
#ifdef __FLT16_MAX__
    enum { N = 1 << 16 };
    static float x[N];
    static uint16_t got[N];
    lb_rng r;
    lb_rng_init(&r, 11, 2);
    for (int i = 0; i < N; i++) {
        uint32_t u = lb_rng_u32(&r);
        /* exponents around binary16's range, subnormals and overflow included */
        u = (u & 0x807fffffu) | ((uint32_t)(95 + (u >> 23) % 50) << 23);
        x[i] = lb_f32_from_bits(u);
    }
    lb_dtype_info(LB_DT_F16)->from_f32(x, got, N);
    for (int i = 0; i < N; i++) {
        _Float16 h = (_Float16)x[i];
        uint16_t ref;
        memcpy(&ref, &h, 2);
        if (ref != got[i]) fail_msg("f16 of %.9g: 0x%04x, the compiler gives 0x%04x", (double)x[i], got[i], ref);
        float back;
        lb_dtype_info(LB_DT_F16)->to_f32(&got[i], &back, 1);
        if (!(back == (float)h)) fail_msg("f16 0x%04x decodes to %.9g, the compiler to %.9g", got[i], (double)back,
                                          (double)(float)h);
    }
#endif
}

/* Codes need no alignment: a row written at an odd address reads back. */
static void test_unaligned_rows(void **state) {
    (void)state;
    const float x[3] = {1.5f, -70000.0f, 123456.0f};
    uint8_t buf[1 + 3 * 8];
    float y[3];
    for (int t = 0; t < LB_DT_COUNT; t++) {
        const lb_dtype_traits *d = lb_dtype_info((lb_dtype)t);
        float ref[3];
        uint8_t aligned[3 * 8];
        d->from_f32(x, aligned, 3);
        d->to_f32(aligned, ref, 3);
        d->from_f32(x, buf + 1, 3);
        d->to_f32(buf + 1, y, 3);
        assert_memory_equal(buf + 1, aligned, lb_dtype_row_bytes((lb_dtype)t, 3));
        assert_memory_equal(y, ref, sizeof y);
    }
}

/* ---- look-ups -------------------------------------------------------------------------- */

static void test_lookups(void **state) {
    (void)state;
    for (int t = 0; t < LB_DT_COUNT; t++) {
        const lb_dtype_traits *d = lb_dtype_info((lb_dtype)t);
        lb_dtype got = LB_DT_COUNT;
        assert_int_equal(lb_dtype_by_name(d->name, &got), LB_OK);
        assert_int_equal(got, t);
        if (d->safetensors) { /* the GGML blocks have no safetensors name */
            got = LB_DT_COUNT;
            assert_int_equal(lb_dtype_by_safetensors(d->safetensors, &got), 1);
            assert_int_equal(got, t);
        }
        if (d->gguf_type >= 0) {
            got = LB_DT_COUNT;
            assert_int_equal(lb_dtype_by_gguf(d->gguf_type, &got), 1);
            assert_int_equal(got, t);
        }
    }
    lb_dtype got = LB_DT_F32;
    assert_int_equal(lb_dtype_by_name("float32", &got), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "'float32'"));
    assert_non_null(strstr(lb_errmsg(), "f8_e4m3"));
    assert_non_null(strstr(lb_errmsg(), "i64"));
    assert_int_equal(lb_dtype_by_name(NULL, &got), LB_EINVAL);
    assert_int_equal(got, LB_DT_F32); /* untouched on failure */
    assert_int_equal(lb_dtype_by_gguf(30, &got), 1);
    assert_int_equal(got, LB_DT_BF16);
    assert_int_equal(lb_dtype_by_gguf(-1, &got), 0);
    assert_int_equal(lb_dtype_by_gguf(29, &got), 0); /* IQ1_M: not a lowbit dtype */
    assert_int_equal(lb_dtype_by_safetensors("BF16", &got), 1);
    assert_int_equal(got, LB_DT_BF16);
    assert_int_equal(lb_dtype_by_safetensors("bf16", &got), 0); /* names are case-sensitive */
    assert_int_equal(lb_dtype_by_safetensors("U64", &got), 0);
    assert_int_equal(lb_dtype_by_safetensors(NULL, &got), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row),
        cmocka_unit_test(test_float_max_is_the_largest_code),
        cmocka_unit_test(test_round_trip_small_formats),
        cmocka_unit_test(test_round_trip_wide_formats),
        cmocka_unit_test(test_integer_rounding_and_saturation),
        cmocka_unit_test(test_float_rounding_and_overflow),
        cmocka_unit_test(test_f16_against_the_compiler),
        cmocka_unit_test(test_unaligned_rows),
        cmocka_unit_test(test_lookups),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

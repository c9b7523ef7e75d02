/* Tests of src/core/minifloat.h: the scalar float formats against values
 * derived here from the specifications' sign/exponent/mantissa rules. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/minifloat.h"
#include "testutil.h"

/* The value a minifloat code stands for, from its fields (OCP OFP8 v1.0,
 * IEEE 754): subnormal when the exponent field is 0. Special codes are
 * handled by the callers. */
static double field_value(unsigned code, int ebits, int mbits, int bias) {
    unsigned sign = (code >> (ebits + mbits)) & 1u;
    unsigned e = (code >> mbits) & ((1u << ebits) - 1);
    unsigned m = code & ((1u << mbits) - 1);
    double frac = (double)m / (double)(1u << mbits);
    double v = e == 0 ? ldexp(frac, 1 - bias) : ldexp(1.0 + frac, (int)e - bias);
    return sign ? -v : v;
}

static int same_float(float a, double b) {
    if (isnan(b)) return isnan(a);
    return (double)a == b && !signbit(a) == !signbit(b);
}

static void test_e4m3_all_codes(void **state) {
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        double want = ((c & 0x7f) == 0x7f) ? NAN : field_value(c, 4, 3, 7);
        float got = lb_fp8_e4m3_to_f32((uint8_t)c);
        if (!same_float(got, want)) fail_msg("E4M3 code 0x%02x: got %g, want %g", c, got, want);
        if (!isnan(want)) {
            assert_int_equal(lb_fp8_e4m3_from_f32(got, 1), c);
            assert_int_equal(lb_fp8_e4m3_from_f32(got, 0), c);
        }
    }
    /* Landmarks quoted by the spec. */
    assert_true(lb_fp8_e4m3_to_f32(0x7e) == 448.0f);
    assert_true(lb_fp8_e4m3_to_f32(0x08) == ldexpf(1, -6));
    assert_true(lb_fp8_e4m3_to_f32(0x01) == ldexpf(1, -9));
}

static void test_e5m2_all_codes(void **state) {
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        unsigned mag = c & 0x7f;
        double want = mag == 0x7c ? ((c & 0x80) ? -INFINITY : INFINITY)
                      : mag > 0x7c ? NAN
                                   : field_value(c, 5, 2, 15);
        float got = lb_fp8_e5m2_to_f32((uint8_t)c);
        if (!same_float(got, want)) fail_msg("E5M2 code 0x%02x: got %g, want %g", c, got, want);
        if (!isnan(want)) {
            assert_int_equal(lb_fp8_e5m2_from_f32(got, 0), c);
            if (!isinf(want)) assert_int_equal(lb_fp8_e5m2_from_f32(got, 1), c);
        }
    }
    assert_true(lb_fp8_e5m2_to_f32(0x7b) == 57344.0f);
    assert_true(lb_fp8_e5m2_to_f32(0x04) == ldexpf(1, -14));
    assert_true(lb_fp8_e5m2_to_f32(0x01) == ldexpf(1, -16));
}

/* Between two neighbouring finite positive codes: the midpoint goes to the
 * even code, anything off the midpoint to the nearer one. */
typedef uint8_t (*enc_fn)(float x, int saturate);
static void check_ties(enc_fn enc, float (*dec)(uint8_t), unsigned max_code) {
    for (unsigned c = 0; c < max_code; c++) {
        double lo = dec((uint8_t)c), hi = dec((uint8_t)(c + 1));
        float mid = (float)((lo + hi) / 2); /* exact: one bit more than the format */
        unsigned even = (c % 2 == 0) ? c : c + 1;
        assert_int_equal(enc(mid, 1), even);
        assert_int_equal(enc(-mid, 1), even | 0x80);
        assert_int_equal(enc(nextafterf(mid, 0), 1), c);
        assert_int_equal(enc(nextafterf(mid, INFINITY), 1), c + 1);
    }
}

static void test_fp8_ties_to_even(void **state) {
    (void)state;
    check_ties(lb_fp8_e4m3_from_f32, lb_fp8_e4m3_to_f32, 0x7e);
    check_ties(lb_fp8_e5m2_from_f32, lb_fp8_e5m2_to_f32, 0x7b);
}

static void test_fp8_overflow_and_specials(void **state) {
    (void)state;
    /* E4M3: 464 is halfway between 448 and the (missing) 480: ties to even 448. */
    assert_int_equal(lb_fp8_e4m3_from_f32(464.0f, 0), 0x7e);
    assert_int_equal(lb_fp8_e4m3_from_f32(465.0f, 0), 0x7f);
    assert_int_equal(lb_fp8_e4m3_from_f32(465.0f, 1), 0x7e);
    assert_int_equal(lb_fp8_e4m3_from_f32(-1e30f, 1), 0xfe);
    assert_int_equal(lb_fp8_e4m3_from_f32(-1e30f, 0) & 0x7f, 0x7f);
    assert_int_equal(lb_fp8_e4m3_from_f32(INFINITY, 1), 0x7e);
    assert_int_equal(lb_fp8_e4m3_from_f32(-INFINITY, 1), 0xfe);
    assert_true(isnan(lb_fp8_e4m3_to_f32(lb_fp8_e4m3_from_f32(INFINITY, 0))));
    assert_true(isnan(lb_fp8_e4m3_to_f32(lb_fp8_e4m3_from_f32(NAN, 1))));
    assert_int_equal(lb_fp8_e4m3_from_f32(0.0f, 1), 0x00);
    assert_int_equal(lb_fp8_e4m3_from_f32(-0.0f, 1), 0x80);
    /* Subnormals: the smallest is 2^-9; half of it ties to even (zero). */
    assert_int_equal(lb_fp8_e4m3_from_f32(ldexpf(1, -10), 1), 0x00);
    assert_int_equal(lb_fp8_e4m3_from_f32(ldexpf(1.5f, -10), 1), 0x01);
    assert_int_equal(lb_fp8_e4m3_from_f32(ldexpf(3, -10), 1), 0x02); /* 1.5 · 2^-9 ties to 2 */
    assert_int_equal(lb_fp8_e4m3_from_f32(1e-30f, 1), 0x00);
    assert_int_equal(lb_fp8_e4m3_from_f32(1e-40f, 1), 0x00); /* an fp32 subnormal */

    /* E5M2: 61440 is halfway between 57344 and 65536 (inf): ties to even = inf. */
    assert_int_equal(lb_fp8_e5m2_from_f32(61440.0f, 0), 0x7c);
    assert_int_equal(lb_fp8_e5m2_from_f32(61440.0f, 1), 0x7b);
    assert_int_equal(lb_fp8_e5m2_from_f32(61439.0f, 0), 0x7b);
    assert_int_equal(lb_fp8_e5m2_from_f32(-1e9f, 0), 0xfc);
    assert_int_equal(lb_fp8_e5m2_from_f32(-1e9f, 1), 0xfb);
    assert_int_equal(lb_fp8_e5m2_from_f32(INFINITY, 1), 0x7c);
    assert_int_equal(lb_fp8_e5m2_from_f32(-INFINITY, 0), 0xfc);
    uint8_t n = lb_fp8_e5m2_from_f32(NAN, 0);
    assert_true((n & 0x7f) > 0x7c);
    assert_int_equal(lb_fp8_e5m2_from_f32(ldexpf(1, -17), 0), 0x00);
    assert_int_equal(lb_fp8_e5m2_from_f32(ldexpf(1, -16), 0), 0x01);
    assert_int_equal(lb_fp8_e5m2_from_f32(-0.0f, 0), 0x80);
}

static void test_fp4_e2m1(void **state) {
    (void)state;
    const float table[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6}; /* OCP MX v1.0, table 5 */
    for (unsigned c = 0; c < 16; c++) {
        double want = field_value(c, 2, 1, 1);
        float got = lb_fp4_e2m1_to_f32((uint8_t)c);
        assert_true(same_float(got, want));
        assert_true(fabsf(got) == table[c & 7]);
        assert_int_equal(lb_fp4_e2m1_from_f32(got), c);
    }
    /* Ties to even: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4. */
    const float in[7] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    const float out[7] = {0, 1, 1, 2, 2, 4, 4};
    for (int i = 0; i < 7; i++) {
        assert_true(lb_fp4_e2m1_to_f32(lb_fp4_e2m1_from_f32(in[i])) == out[i]);
        assert_true(lb_fp4_e2m1_to_f32(lb_fp4_e2m1_from_f32(-in[i])) == -out[i]);
    }
    assert_int_equal(lb_fp4_e2m1_from_f32(7.0f), 0x7);
    assert_int_equal(lb_fp4_e2m1_from_f32(-1e20f), 0xf);
    assert_int_equal(lb_fp4_e2m1_from_f32(INFINITY), 0x7);
    assert_int_equal(lb_fp4_e2m1_from_f32(NAN), 0x0);
    assert_int_equal(lb_fp4_e2m1_from_f32(-0.0f), 0x8);
}

static void test_e8m0(void **state) {
    (void)state;
    for (int c = 0; c < 255; c++) assert_true(lb_e8m0_to_f32((uint8_t)c) == ldexpf(1.0f, c - 127));
    assert_true(isnan(lb_e8m0_to_f32(255)));
    assert_int_equal(lb_e8m0_from_exp(0), 127);
    assert_int_equal(lb_e8m0_from_exp(-300), 0);
    assert_int_equal(lb_e8m0_from_exp(300), 254);
}

static void test_fp16_all_codes_and_edges(void **state) {
    (void)state;
    for (unsigned c = 0; c < 65536; c++) {
        unsigned mag = c & 0x7fff;
        double want = mag == 0x7c00 ? ((c & 0x8000) ? -INFINITY : INFINITY)
                      : mag > 0x7c00 ? NAN
                                     : field_value(c, 5, 10, 15);
        float got = lb_fp16_to_f32((uint16_t)c);
        if (!same_float(got, want)) fail_msg("fp16 code 0x%04x: got %g, want %g", c, got, want);
        if (!isnan(want)) assert_int_equal(lb_fp16_from_f32(got), c);
    }
    assert_int_equal(lb_fp16_from_f32(65504.0f), 0x7bff);
    assert_int_equal(lb_fp16_from_f32(65519.0f), 0x7bff);
    assert_int_equal(lb_fp16_from_f32(65520.0f), 0x7c00); /* tie with the next binade: even = inf */
    assert_int_equal(lb_fp16_from_f32(-1e10f), 0xfc00);
    assert_int_equal(lb_fp16_from_f32(ldexpf(1, -24)), 0x0001);
    assert_int_equal(lb_fp16_from_f32(ldexpf(1, -25)), 0x0000);
    assert_int_equal(lb_fp16_from_f32(ldexpf(3, -25)), 0x0002);
    assert_int_equal(lb_fp16_from_f32(1.0f + ldexpf(1, -11)), 0x3c00);     /* tie, even below */
    assert_int_equal(lb_fp16_from_f32(1.0f + ldexpf(3, -11)), 0x3c02);     /* tie, even above */
    assert_int_equal(lb_fp16_from_f32(-0.0f), 0x8000);
    assert_true(isnan(lb_fp16_to_f32(lb_fp16_from_f32(NAN))));
    assert_int_equal(lb_fp16_from_f32(INFINITY), 0x7c00);
}

static void test_bf16_edges(void **state) {
    (void)state;
    assert_int_equal(lb_bf16_from_f32(1.0f), 0x3f80);
    assert_int_equal(lb_bf16_from_f32(1.0f + ldexpf(1, -8)), 0x3f80);     /* tie, even below */
    assert_int_equal(lb_bf16_from_f32(1.0f + ldexpf(3, -8)), 0x3f82);     /* tie, even above */
    assert_int_equal(lb_bf16_from_f32(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3f81);
    assert_int_equal(lb_bf16_from_f32(-2.0f), 0xc000);
    assert_int_equal(lb_bf16_from_f32(3.4028235e38f), 0x7f80);           /* FLT_MAX rounds to inf */
    assert_int_equal(lb_bf16_from_f32(INFINITY), 0x7f80);
    assert_int_equal(lb_bf16_from_f32(-0.0f), 0x8000);
    assert_true(isnan(lb_bf16_to_f32(lb_bf16_from_f32(NAN))));
    /* Every bf16 value is an fp32 value: decode is a shift, encode inverts it. */
    for (unsigned c = 0; c < 65536; c++) {
        float v = lb_bf16_to_f32((uint16_t)c);
        uint32_t u;
        memcpy(&u, &v, 4);
        assert_int_equal(u, (uint32_t)c << 16);
        if (!isnan(v)) assert_int_equal(lb_bf16_from_f32(v), c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e4m3_all_codes),
        cmocka_unit_test(test_e5m2_all_codes),
        cmocka_unit_test(test_fp8_ties_to_even),
        cmocka_unit_test(test_fp8_overflow_and_specials),
        cmocka_unit_test(test_fp4_e2m1),
        cmocka_unit_test(test_e8m0),
        cmocka_unit_test(test_fp16_all_codes_and_edges),
        cmocka_unit_test(test_bf16_edges),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

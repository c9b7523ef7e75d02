/* Small float formats <-> fp32.
 *
 * All the minifloats here (FP8 E4M3/E5M2, FP4 E2M1, FP16) share one encoder:
 * for |x| with binary exponent e (clamped below to the format's smallest
 * normal exponent emin), the spacing of representable values is
 * 2^(e - mbits). Scaling |x| by the inverse spacing is exact (a power of two),
 * so rintf() -- round-to-nearest-even in the default rounding mode -- gives
 * the rounded significand q as an integer, and the code is
 *   ((e - emin) << mbits) + q.
 * Subnormals fall out naturally (e = emin, q < 2^mbits), and a significand
 * that rounds up to 2^(mbits+1) carries into the exponent field by itself.
 * What differs between formats is only what happens beyond the largest
 * finite code, which each wrapper decides. */
#include "quant/formats.h"

#include <math.h>
#include <string.h>
#include "quant/minifloat.h"

/* --- FP8 E4M3 ------------------------------------------------------------ */

uint8_t lb_fp8_e4m3_from_f32(float x, int saturate) {
    return mf_e4m3_from_f32(x, saturate);
}

uint8_t lb_fp8_e4m3_from_f32_sr(float x, float u, int saturate) {
    if (!isfinite(x)) return lb_fp8_e4m3_from_f32(x, saturate);
    uint8_t sign = (uint8_t)((f32_bits(x) >> 31) << 7);
    uint32_t c = mini_encode_mag_sr(fabsf(x), 3, 7, u);
    if (c > 0x7e) c = saturate ? 0x7e : 0x7f;
    return sign | (uint8_t)c;
}

float lb_fp8_e4m3_to_f32(uint8_t code) {
    uint32_t c = code & 0x7f;
    if (c == 0x7f) return (code & 0x80) ? -NAN : NAN;
    float v = mini_decode_mag(c, 3, 7);
    return (code & 0x80) ? -v : v;
}

/* --- FP8 E5M2 ------------------------------------------------------------ */

uint8_t lb_fp8_e5m2_from_f32(float x, int saturate) {
    return mf_e5m2_from_f32(x, saturate);
}

uint8_t lb_fp8_e5m2_from_f32_sr(float x, float u, int saturate) {
    if (!isfinite(x)) return lb_fp8_e5m2_from_f32(x, saturate);
    uint8_t sign = (uint8_t)((f32_bits(x) >> 31) << 7);
    uint32_t c = mini_encode_mag_sr(fabsf(x), 2, 15, u);
    if (c > 0x7b) c = saturate ? 0x7b : 0x7c;
    return sign | (uint8_t)c;
}

float lb_fp8_e5m2_to_f32(uint8_t code) {
    uint32_t c = code & 0x7f;
    float v;
    if (c == 0x7c) v = INFINITY;
    else if (c > 0x7c) v = NAN;
    else v = mini_decode_mag(c, 2, 15);
    return (code & 0x80) ? -v : v;
}

/* --- FP4 E2M1 (OCP MX): no inf or NaN; conversion saturates at ±6 --------- */

uint8_t lb_fp4_e2m1_from_f32(float x) {
    return mf_e2m1_from_f32(x);
}

float lb_fp4_e2m1_to_f32(uint8_t code) {
    float v = mini_decode_mag(code & 7u, 1, 1);
    return (code & 8) ? -v : v;
}

/* --- E8M0 ------------------------------------------------------------------ */

float lb_e8m0_to_f32(uint8_t code) {
    if (code == 0xff) return NAN;
    if (code == 0) return f32_from_bits(0x00400000u); /* 2^-127, an fp32 subnormal */
    return f32_from_bits((uint32_t)code << 23);
}

uint8_t lb_e8m0_from_exp(int e) {
    if (e < -127) e = -127;
    if (e > 127) e = 127;
    return (uint8_t)(e + 127);
}

/* --- BF16: the top half of an fp32, rounded to nearest even ------------------ */

uint16_t lb_bf16_from_f32(float x) {
    return mf_bf16_from_f32(x);
}

float lb_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* --- FP16 (IEEE binary16): overflow gives inf, as IEEE rounding does --------- */

uint16_t lb_fp16_from_f32(float x) {
    return mf_fp16_from_f32(x);
}

float lb_fp16_to_f32(uint16_t h) {
    uint32_t c = h & 0x7fffu;
    float v;
    if (c == 0x7c00) v = INFINITY;
    else if (c > 0x7c00) v = NAN;
    else v = mini_decode_mag(c, 10, 15);
    return (h & 0x8000) ? -v : v;
}

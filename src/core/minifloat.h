/* Scalar conversions between fp32 and the small float formats, exactly as
 * their specifications define them (OCP 8-bit floating point (OFP8) v1.0,
 * OCP Microscaling (MX) v1.0, IEEE 754 binary16, bfloat16), with
 * round-to-nearest-even. core/dtype.h applies them to rows; the array
 * quantizers of quant/quantize.h use the same encoder in their loops, so
 * everything here is inline.
 *
 * All the minifloats (FP8 E4M3/E5M2, FP4 E2M1, FP16) share one encoder: for
 * |x| with binary exponent e (clamped below to the format's smallest normal
 * exponent emin), the spacing of representable values is 2^(e − mbits).
 * Scaling |x| by the inverse spacing is exact (a power of two), so rintf() --
 * round-to-nearest-even in the default rounding mode -- gives the rounded
 * significand q as an integer, and the code is ((e − emin) << mbits) + q.
 * Subnormals fall out naturally (e = emin, q < 2^mbits), and a significand
 * that rounds up to 2^(mbits+1) carries into the exponent field by itself.
 * What differs between formats is only what happens beyond the largest
 * finite code, which each encoder decides. */
#ifndef LOWBIT_CORE_MINIFLOAT_H
#define LOWBIT_CORE_MINIFLOAT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Field layouts: mantissa bits and exponent bias of each minifloat. */
enum {
    LB_E4M3_MBITS = 3, LB_E4M3_BIAS = 7,
    LB_E5M2_MBITS = 2, LB_E5M2_BIAS = 15,
    LB_E2M1_MBITS = 1, LB_E2M1_BIAS = 1,
    LB_F16_MBITS = 10, LB_F16_BIAS = 15
};

/* FP4 E2M1 is an element format of MX blocks, never a stored dtype, so its
 * largest value lives here rather than in core/dtype.c's table. */
#define LB_FP4_E2M1_MAX 6.0f

/* ---- bits of an fp32 ------------------------------------------------------ */

static inline uint32_t lb_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float lb_f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* 2^e for -126 <= e <= 127. */
static inline float lb_pow2f(int e) { return lb_f32_from_bits((uint32_t)(e + 127) << 23); }

/* ---- the shared encoder and decoder --------------------------------------- */

/* Exponent e of the spacing 2^(e − mbits) around finite a >= 0, for a format
 * with smallest normal exponent 1 − bias (fp32 subnormals give −127, below
 * every emin here). */
static inline int lb_mini_exp(float a, int bias) {
    int e = (int)((lb_f32_bits(a) >> 23) & 0xff) - 127;
    return e < 1 - bias ? 1 - bias : e;
}

/* Code magnitude of finite a >= 0 for a format with `mbits` mantissa bits and
 * exponent bias `bias`, round-to-nearest-even. May exceed the largest finite
 * code: callers clamp. */
static inline uint32_t lb_mini_encode_mag(float a, int mbits, int bias) {
    int e = lb_mini_exp(a, bias);
    uint32_t q = (uint32_t)rintf(a * lb_pow2f(mbits - e)); /* exact scaling, then RNE */
    return ((uint32_t)(e - (1 - bias)) << mbits) + q;
}

/* Same with stochastic rounding by a uniform u in [0, 1). */
static inline uint32_t lb_mini_encode_mag_sr(float a, int mbits, int bias, float u) {
    int e = lb_mini_exp(a, bias);
    uint32_t q = (uint32_t)floorf(a * lb_pow2f(mbits - e) + u);
    return ((uint32_t)(e - (1 - bias)) << mbits) + q;
}

/* Value of a finite code magnitude. */
static inline float lb_mini_decode_mag(uint32_t c, int mbits, int bias) {
    uint32_t ef = c >> mbits, m = c & ((1u << mbits) - 1);
    if (ef == 0) return (float)m * lb_pow2f(1 - bias - mbits); /* subnormal */
    return lb_f32_from_bits(((ef - (uint32_t)bias + 127) << 23) | (m << (23 - mbits)));
}

/* ---- FP8 E4M3: bias 7, max 448, no infinities, NaN = S.1111.111 -----------
 * saturate: finite values beyond ±448 (and ±inf) become ±448; otherwise NaN. */

static inline uint8_t lb_fp8_e4m3_from_f32(float x, int saturate) {
    uint8_t sign = (uint8_t)((lb_f32_bits(x) >> 31) << 7);
    if (isnan(x)) return sign | 0x7f;
    if (isinf(x)) return saturate ? (sign | 0x7e) : (sign | 0x7f);
    uint32_t c = lb_mini_encode_mag(fabsf(x), LB_E4M3_MBITS, LB_E4M3_BIAS);
    if (c > 0x7e) c = saturate ? 0x7e : 0x7f; /* beyond 448 (464 and up round past it) */
    return sign | (uint8_t)c;
}

static inline float lb_fp8_e4m3_to_f32(uint8_t code) {
    uint32_t c = code & 0x7f;
    if (c == 0x7f) return (code & 0x80) ? -NAN : NAN;
    float v = lb_mini_decode_mag(c, LB_E4M3_MBITS, LB_E4M3_BIAS);
    return (code & 0x80) ? -v : v;
}

/* ---- FP8 E5M2: bias 15, max 57344, inf = S.11111.00, NaN = S.11111.{01,10,11}
 * saturate: finite overflow becomes ±57344 (inf stays inf); otherwise ±inf. */

static inline uint8_t lb_fp8_e5m2_from_f32(float x, int saturate) {
    uint8_t sign = (uint8_t)((lb_f32_bits(x) >> 31) << 7);
    if (isnan(x)) return sign | 0x7f;
    if (isinf(x)) return sign | 0x7c; /* inf stays inf, also when saturating */
    uint32_t c = lb_mini_encode_mag(fabsf(x), LB_E5M2_MBITS, LB_E5M2_BIAS);
    if (c > 0x7b) c = saturate ? 0x7b : 0x7c;
    return sign | (uint8_t)c;
}

static inline float lb_fp8_e5m2_to_f32(uint8_t code) {
    uint32_t c = code & 0x7f;
    float v;
    if (c == 0x7c) v = INFINITY;
    else if (c > 0x7c) v = NAN;
    else v = lb_mini_decode_mag(c, LB_E5M2_MBITS, LB_E5M2_BIAS);
    return (code & 0x80) ? -v : v;
}

/* Stochastic rounding: x goes to the neighbour above with probability equal
 * to its distance from the neighbour below, in units of the spacing, given a
 * uniform u in [0, 1) (round down iff frac < 1 − u). Unbiased below the
 * overflow threshold. */
static inline uint8_t lb_fp8_e4m3_from_f32_sr(float x, float u, int saturate) {
    if (!isfinite(x)) return lb_fp8_e4m3_from_f32(x, saturate);
    uint8_t sign = (uint8_t)((lb_f32_bits(x) >> 31) << 7);
    uint32_t c = lb_mini_encode_mag_sr(fabsf(x), LB_E4M3_MBITS, LB_E4M3_BIAS, u);
    if (c > 0x7e) c = saturate ? 0x7e : 0x7f;
    return sign | (uint8_t)c;
}

static inline uint8_t lb_fp8_e5m2_from_f32_sr(float x, float u, int saturate) {
    if (!isfinite(x)) return lb_fp8_e5m2_from_f32(x, saturate);
    uint8_t sign = (uint8_t)((lb_f32_bits(x) >> 31) << 7);
    uint32_t c = lb_mini_encode_mag_sr(fabsf(x), LB_E5M2_MBITS, LB_E5M2_BIAS, u);
    if (c > 0x7b) c = saturate ? 0x7b : 0x7c;
    return sign | (uint8_t)c;
}

/* ---- FP4 E2M1 (4 low bits): ±{0, 0.5, 1, 1.5, 2, 3, 4, 6} ------------------
 * No inf or NaN: conversion saturates at ±6 (±inf too) and NaN becomes +0
 * (MX blocks flag NaN through their E8M0 scale instead, see quant/quantize.h). */

static inline uint8_t lb_fp4_e2m1_from_f32(float x) {
    if (isnan(x)) return 0;
    uint8_t sign = (uint8_t)((lb_f32_bits(x) >> 31) << 3);
    uint32_t c = isinf(x) ? 7 : lb_mini_encode_mag(fabsf(x), LB_E2M1_MBITS, LB_E2M1_BIAS);
    if (c > 7) c = 7;
    return sign | (uint8_t)c;
}

static inline float lb_fp4_e2m1_to_f32(uint8_t code) {
    float v = lb_mini_decode_mag(code & 7u, LB_E2M1_MBITS, LB_E2M1_BIAS);
    return (code & 8) ? -v : v;
}

/* ---- E8M0, the shared scale of MX blocks: 2^(code − 127); 255 is NaN ------- */

static inline float lb_e8m0_to_f32(uint8_t code) {
    if (code == 0xff) return NAN;
    if (code == 0) return lb_f32_from_bits(0x00400000u); /* 2^-127, an fp32 subnormal */
    return lb_f32_from_bits((uint32_t)code << 23);
}

/* E8M0 code of 2^e, e clamped to [-127, 127]. */
static inline uint8_t lb_e8m0_from_exp(int e) {
    if (e < -127) e = -127;
    if (e > 127) e = 127;
    return (uint8_t)(e + 127);
}

/* ---- BF16: the top half of an fp32, rounded to nearest even ----------------- */

static inline uint16_t lb_bf16_from_f32(float x) {
    uint32_t u = lb_f32_bits(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40); /* keep it a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                    /* carries into the exponent: overflow gives inf */
    return (uint16_t)(u >> 16);
}

static inline float lb_bf16_to_f32(uint16_t h) { return lb_f32_from_bits((uint32_t)h << 16); }

/* ---- FP16 (IEEE binary16): overflow gives inf, as IEEE rounding does -------- */

static inline uint16_t lb_fp16_from_f32(float x) {
    uint16_t sign = (uint16_t)((lb_f32_bits(x) >> 31) << 15);
    if (isnan(x)) return sign | 0x7e00;
    if (isinf(x)) return sign | 0x7c00;
    uint32_t c = lb_mini_encode_mag(fabsf(x), LB_F16_MBITS, LB_F16_BIAS);
    if (c > 0x7c00) c = 0x7c00;
    return sign | (uint16_t)c;
}

static inline float lb_fp16_to_f32(uint16_t h) {
    uint32_t c = h & 0x7fffu;
    float v;
    if (c == 0x7c00) v = INFINITY;
    else if (c > 0x7c00) v = NAN;
    else v = lb_mini_decode_mag(c, LB_F16_MBITS, LB_F16_BIAS);
    return (h & 0x8000) ? -v : v;
}

#endif

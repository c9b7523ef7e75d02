/* Internal to src/quant: the shared minifloat encoder and decoder (see the
 * comment at the top of formats.c), inline so array kernels can use them in
 * their loops. */
#ifndef LOWBIT_QUANT_MINIFLOAT_H
#define LOWBIT_QUANT_MINIFLOAT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* 2^e for -126 <= e <= 127. */
static inline float pow2f(int e) { return f32_from_bits((uint32_t)(e + 127) << 23); }

/* Exponent e of the spacing 2^(e - mbits) around finite a >= 0, for a format
 * with smallest normal exponent 1 - bias (fp32 subnormals give -127, below
 * every emin here). */
static inline int mini_exp(float a, int bias) {
    int e = (int)((f32_bits(a) >> 23) & 0xff) - 127;
    return e < 1 - bias ? 1 - bias : e;
}

/* Code magnitude of finite a >= 0 for a format with `mbits` mantissa bits and
 * exponent bias `bias`, round-to-nearest-even. May exceed the largest finite
 * code: callers clamp. */
static inline uint32_t mini_encode_mag(float a, int mbits, int bias) {
    int e = mini_exp(a, bias);
    uint32_t q = (uint32_t)rintf(a * pow2f(mbits - e)); /* exact scaling, then RNE */
    return ((uint32_t)(e - (1 - bias)) << mbits) + q;
}

/* Same with stochastic rounding by a uniform u in [0, 1). */
static inline uint32_t mini_encode_mag_sr(float a, int mbits, int bias, float u) {
    int e = mini_exp(a, bias);
    uint32_t q = (uint32_t)floorf(a * pow2f(mbits - e) + u);
    return ((uint32_t)(e - (1 - bias)) << mbits) + q;
}

/* Value of a finite code magnitude. */
static inline float mini_decode_mag(uint32_t c, int mbits, int bias) {
    uint32_t ef = c >> mbits, m = c & ((1u << mbits) - 1);
    if (ef == 0) return (float)m * pow2f(1 - bias - mbits); /* subnormal */
    return f32_from_bits(((ef - (uint32_t)bias + 127) << 23) | (m << (23 - mbits)));
}

/* The format encoders (documented in quant/formats.h), inline for the array
 * kernels; formats.c exports them. */
static inline uint8_t mf_e4m3_from_f32(float x, int saturate) {
    uint32_t u = f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 31) << 7);
    if (isnan(x)) return sign | 0x7f;
    if (isinf(x)) return saturate ? (sign | 0x7e) : (sign | 0x7f);
    uint32_t c = mini_encode_mag(fabsf(x), 3, 7);
    if (c > 0x7e) c = saturate ? 0x7e : 0x7f; /* beyond 448 (464 and up round past it) */
    return sign | (uint8_t)c;
}

static inline uint8_t mf_e5m2_from_f32(float x, int saturate) {
    uint32_t u = f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 31) << 7);
    if (isnan(x)) return sign | 0x7f;
    if (isinf(x)) return sign | 0x7c; /* inf stays inf, also when saturating */
    uint32_t c = mini_encode_mag(fabsf(x), 2, 15);
    if (c > 0x7b) c = saturate ? 0x7b : 0x7c;
    return sign | (uint8_t)c;
}

static inline uint8_t mf_e2m1_from_f32(float x) {
    if (isnan(x)) return 0; /* no NaN code; MX blocks carry NaN in their scale */
    uint8_t sign = (uint8_t)((f32_bits(x) >> 31) << 3);
    uint32_t c = isinf(x) ? 7 : mini_encode_mag(fabsf(x), 1, 1);
    if (c > 7) c = 7;
    return sign | (uint8_t)c;
}

static inline uint16_t mf_bf16_from_f32(float x) {
    uint32_t u = f32_bits(x);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40); /* keep it a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                    /* carries into the exponent: overflow gives inf */
    return (uint16_t)(u >> 16);
}

static inline uint16_t mf_fp16_from_f32(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 31) << 15);
    if (isnan(x)) return sign | 0x7e00;
    if (isinf(x)) return sign | 0x7c00;
    uint32_t c = mini_encode_mag(fabsf(x), 10, 15);
    if (c > 0x7c00) c = 0x7c00;
    return sign | (uint16_t)c;
}

#endif

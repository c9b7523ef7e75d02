/* GGML block formats: the row codecs of ggml-quants.c, written out for lowbit (see
 * core/dtype_ggml.h for the layouts). The arithmetic follows ggml's reference code
 * step by step, in the same float operations and integer widths, because the point
 * is identical bytes: a scale computed as amax/127 must not become amax·(1/127).
 *
 * Where ggml's C has behaviour the language leaves open (a float outside the range
 * of the integer it is converted to, lroundf of NaN), x86-64 gives a fixed answer
 * and so does the helper here, explicitly: the codecs stay free of undefined
 * behaviour on hostile input and still match the reference bit for bit. */
#include "core/dtype_ggml.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/minifloat.h" /* fp16 <-> fp32, round to nearest even */

/* The largest |x| of a block as ggml's reference quantizers find it: with its MAX(a, b)
 * macro, ((a) > (b) ? (a) : (b)), so a NaN on the right wins over what came before. */
static inline float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    return amax;
}

/* A float converted to a narrow integer type the way x86-64 code does it: cvttss2si
 * truncates to a 32-bit integer (0x80000000 for NaN and out-of-range values), and
 * the narrow type keeps the low bits. */
static inline int32_t trunc_i32_x86(float v) {
    if (v > -2147483648.0f && v < 2147483648.0f) return (int32_t)v;
    return INT32_MIN;
}

/* lroundf(v) + 1 as ggml's ternary quantizers compute it into an int: glibc on
 * x86-64 returns LONG_MIN when the result does not fit (NaN included), and the
 * sum is narrowed to int by keeping the low 32 bits. */
static inline int lround_plus1_x86(float v) {
    if (v > -9.2233715e18f && v < 9.2233715e18f) return (int)(lroundf(v) + 1);
    return 1; /* low 32 bits of LONG_MIN + 1 */
}

static inline void put_f16(uint8_t *p, float v) {
    uint16_t h = lb_fp16_from_f32(v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static inline float get_f16(const uint8_t *p) { return lb_fp16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* --- Q8_0 -------------------------------------------------------------------- */

void lb_ggml_q8_0_from_f32(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    for (size_t b = 0; b < n / LB_GGML_QK8_0; b++, x += LB_GGML_QK8_0, y += LB_GGML_Q8_0_BYTES) {
        const float d = block_amax(x, LB_GGML_QK8_0) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < LB_GGML_QK8_0; j++) {
            const float x0 = x[j] * id;
            y[2 + j] = (uint8_t)trunc_i32_x86(roundf(x0)); /* int8_t q = roundf(x0) */
        }
    }
}

void lb_ggml_q8_0_to_f32(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    for (size_t b = 0; b < n / LB_GGML_QK8_0; b++, x += LB_GGML_Q8_0_BYTES, y += LB_GGML_QK8_0) {
        const float d = get_f16(x);
        for (int j = 0; j < LB_GGML_QK8_0; j++) y[j] = (int8_t)x[2 + j] * d;
    }
}

/* --- Q4_0 -------------------------------------------------------------------- */

void lb_ggml_q4_0_from_f32(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    const int half = LB_GGML_QK4_0 / 2;
    for (size_t b = 0; b < n / LB_GGML_QK4_0; b++, x += LB_GGML_QK4_0, y += LB_GGML_Q4_0_BYTES) {
        float amax = 0.0f, max = 0.0f; /* the signed value of largest magnitude */
        for (int j = 0; j < LB_GGML_QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < half; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[half + j] * id;
            /* uint8_t xi = MIN(15, (int8_t)(x0 + 8.5f)) */
            const int8_t t0 = (int8_t)trunc_i32_x86(x0 + 8.5f);
            const int8_t t1 = (int8_t)trunc_i32_x86(x1 + 8.5f);
            const uint8_t xi0 = (uint8_t)(t0 < 15 ? t0 : 15);
            const uint8_t xi1 = (uint8_t)(t1 < 15 ? t1 : 15);
            y[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

void lb_ggml_q4_0_to_f32(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    const int half = LB_GGML_QK4_0 / 2;
    for (size_t b = 0; b < n / LB_GGML_QK4_0; b++, x += LB_GGML_Q4_0_BYTES, y += LB_GGML_QK4_0) {
        const float d = get_f16(x);
        for (int j = 0; j < half; j++) {
            const int x0 = (x[2 + j] & 0x0f) - 8;
            const int x1 = (x[2 + j] >> 4) - 8;
            y[j] = x0 * d;
            y[half + j] = x1 * d;
        }
    }
}

/* --- TQ1_0 ------------------------------------------------------------------- */

enum { TQ1_QS = 48, TQ1_QH = 4 }; /* bytes of 5 trits, bytes of 4 trits */

/* The byte holding `count` trits taken from x[0], x[stride], ... (first most
 * significant), scaled by 256/243 and rounded up. `shift` multiplies by 3 once more
 * so a 4-trit byte keeps its first trit in the most significant place. */
static uint8_t tq1_pack(const float *x, size_t stride, int count, float id, int shift) {
    uint8_t q = 0;
    for (int k = 0; k < count; k++) {
        const int xi = lround_plus1_x86(x[k * stride] * id); /* -1, 0, 1 -> 0, 1, 2 */
        q = (uint8_t)(q * 3);
        q = (uint8_t)(q + xi);
    }
    if (shift) q = (uint8_t)(q * 3);
    return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243);
}

void lb_ggml_tq1_0_from_f32(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    for (size_t b = 0; b < n / LB_GGML_QK_K; b++, y += LB_GGML_TQ1_0_BYTES) {
        const float d = block_amax(x, LB_GGML_QK_K);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y + TQ1_QS + TQ1_QH, d);
        /* bytes 0..31: five trits each, weights m + 32k */
        for (int m = 0; m < 32; m++) y[m] = tq1_pack(x + m, 32, 5, id, 0);
        x += 5 * 32;
        /* bytes 32..47: five trits each, weights m + 16k */
        for (int m = 0; m < 16; m++) y[32 + m] = tq1_pack(x + m, 16, 5, id, 0);
        x += 5 * 16;
        /* the last 4 bytes: four trits each, weights m + 4k */
        for (int m = 0; m < TQ1_QH; m++) y[TQ1_QS + m] = tq1_pack(x + m, TQ1_QH, 4, id, 1);
        x += 4 * TQ1_QH;
    }
}

/* Trit k (0 = most significant) of a packed byte, minus one, times d. */
static inline float tq1_trit(uint8_t byte, int k, float d) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(byte * pow3[k]);
    const int16_t xi = (int16_t)(((uint16_t)q * 3) >> 8);
    return (float)(xi - 1) * d;
}

void lb_ggml_tq1_0_to_f32(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    for (size_t b = 0; b < n / LB_GGML_QK_K; b++, x += LB_GGML_TQ1_0_BYTES) {
        const float d = get_f16(x + TQ1_QS + TQ1_QH);
        for (int k = 0; k < 5; k++)
            for (int m = 0; m < 32; m++) *y++ = tq1_trit(x[m], k, d);
        for (int k = 0; k < 5; k++)
            for (int m = 0; m < 16; m++) *y++ = tq1_trit(x[32 + m], k, d);
        for (int k = 0; k < 4; k++)
            for (int m = 0; m < TQ1_QH; m++) *y++ = tq1_trit(x[TQ1_QS + m], k, d);
    }
}

/* --- TQ2_0 ------------------------------------------------------------------- */

enum { TQ2_QS = 64 };

void lb_ggml_tq2_0_from_f32(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    for (size_t b = 0; b < n / LB_GGML_QK_K; b++, y += LB_GGML_TQ2_0_BYTES) {
        const float d = block_amax(x, LB_GGML_QK_K);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y + TQ2_QS, d);
        for (int c = 0; c < TQ2_QS; c += 32) { /* two chunks of 128 weights */
            for (int m = 0; m < 32; m++) {
                uint8_t q = 0;
                for (int k = 0; k < 4; k++) {
                    const int xi = lround_plus1_x86(x[m + 32 * k] * id);
                    q = (uint8_t)(q + ((xi & 3) << (2 * k)));
                }
                y[c + m] = q;
            }
            x += 4 * 32;
        }
    }
}

void lb_ggml_tq2_0_to_f32(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    for (size_t b = 0; b < n / LB_GGML_QK_K; b++, x += LB_GGML_TQ2_0_BYTES) {
        const float d = get_f16(x + TQ2_QS);
        for (int c = 0; c < TQ2_QS; c += 32)
            for (int k = 0; k < 4; k++)
                for (int m = 0; m < 32; m++) {
                    const int8_t q = (int8_t)((x[c + m] >> (2 * k)) & 3);
                    *y++ = (float)(q - 1) * d;
                }
    }
}

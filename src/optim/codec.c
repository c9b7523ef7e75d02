/* Compact optimizer-state formats: dynamic maps, block-wise int8, scaled fp8,
 * stochastic bf16. See codec.h for the contracts. */
#include "optim/codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/minifloat.h"

/* --- the dynamic maps ---------------------------------------------------------
 *
 * Dynamic tree quantization (Dettmers 2016; the 8-bit optimizers paper, 2022)
 * spends the bits of a code on a sign, a run of zero bits whose length is a
 * decimal exponent e, an indicator bit, and a linear fraction: the value is
 * ±10^-e · f with f in (0.1, 1). Fewer exponent bits leave more fraction bits,
 * so large values get fine steps and tiny values still get a code.
 *
 * As in bitsandbytes' create_dynamic_map(), with 7 exponent levels the
 * magnitudes are, for i = 0..6, the midpoints of linspace(0.1, 1, k + 1)
 * scaled by 10^(i - 6), where
 *   unsigned: k = 2^(i+1)  (2 + 4 + ... + 128 = 254 values)
 *   signed:   k = 2^i      (1 + 2 + ... + 64  = 127 magnitudes per sign)
 * Both maps then get the entries 0 and +1.
 *   unsigned: 254 + {0, 1} = 256 entries in [0, 1].
 *   signed:   the positive side P is the 127 magnitudes and 1 (128 entries);
 *             the negative side is -P without its smallest magnitude (127), so
 *             -1 is an entry too: 128 + 127 + {0} = 256 entries in [-1, 1].
 * Having ±1 exactly means the element that set a block's absmax is always
 * reconstructed exactly, whatever its sign (bitsandbytes' signed map stops at
 * -0.993). The dropped entry, about -5.5e-7, is below anything that matters. */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void lb_dynmap_build(float map[LB_DYNMAP_SIZE], int is_signed) {
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int k = is_signed ? (1 << i) : (1 << (i + 1));
        double decade = pow(10.0, i - 6);
        for (int j = 0; j < k; j++) {
            /* midpoint of [b_j, b_j+1] with b_j = 0.1 + 0.9 j / k */
            double mid = 0.1 + 0.9 * (j + 0.5) / k;
            float v = (float)(decade * mid);
            map[n++] = v;
            /* i == 0, j == 0 is the smallest magnitude: no negative twin */
            if (is_signed && !(i == 0 && j == 0)) map[n++] = -v;
        }
    }
    map[n++] = 0.0f;
    map[n++] = 1.0f;
    if (is_signed) map[n++] = -1.0f;
    /* n == 256 by construction (checked by the tests) */
    qsort(map, (size_t)n, sizeof(float), cmp_float);
}

uint8_t lb_dynmap_encode(const float map[LB_DYNMAP_SIZE], float x) {
    if (isnan(x)) x = 0.0f;
    if (x <= map[0]) return 0;
    if (x >= map[LB_DYNMAP_SIZE - 1]) return LB_DYNMAP_SIZE - 1;
    /* Branch-free binary search for the last entry <= x. */
    int lo = 0;
    for (int step = LB_DYNMAP_SIZE / 2; step > 0; step >>= 1)
        if (map[lo + step] <= x) lo += step;
    int hi = lo + 1; /* exists: x < map[255] */
    return (uint8_t)(x - map[lo] <= map[hi] - x ? lo : hi);
}

float lb_int8_block_encode(const float *x, size_t n, const float map[LB_DYNMAP_SIZE], uint8_t *codes) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    if (amax > 0.0f && amax < 0x1p-126f) { /* 1/amax would overflow: divide */
        for (size_t i = 0; i < n; i++) codes[i] = lb_dynmap_encode(map, x[i] / amax);
        return amax;
    }
    float inv = amax > 0.0f ? 1.0f / amax : 0.0f;
    for (size_t i = 0; i < n; i++) codes[i] = lb_dynmap_encode(map, x[i] * inv);
    return amax;
}

void lb_int8_block_decode(const uint8_t *codes, size_t n, float absmax, const float map[LB_DYNMAP_SIZE], float *x) {
    for (size_t i = 0; i < n; i++) x[i] = map[codes[i]] * absmax;
}

/* --- per-tensor scaled fp8 / fp16 ------------------------------------------- */

void lb_scaled_encode(lb_dtype t, const float *x, size_t n, float scale, void *codes) {
    const lb_dtype_traits *d = lb_dtype_info(t);
    const float max = (float)d->max;
    float y[256];
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        size_t len = n - i0 < 256 ? n - i0 : 256;
        for (size_t i = 0; i < len; i++) {
            float v = x[i0 + i] * scale;
            y[i] = v > max ? max : v < -max ? -max : v; /* NaN stays NaN */
        }
        d->from_f32(y, (char *)codes + lb_dtype_row_bytes(t, i0), len);
    }
}

void lb_scaled_decode(lb_dtype t, const void *codes, size_t n, float inv_scale, float *x) {
    lb_dtype_info(t)->to_f32(codes, x, n);
    for (size_t i = 0; i < n; i++) x[i] *= inv_scale;
}

/* --- bf16 with stochastic rounding ------------------------------------------ */

uint16_t lb_bf16_from_f32_stochastic(float x, uint32_t r) {
    if (!isfinite(x)) return lb_bf16_from_f32(x);
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    /* Adding a uniform 16-bit number to the bits that truncation drops
     * carries into the kept part with probability (dropped bits) / 2^16. */
    uint32_t v = u + (r & 0xFFFFu);
    if (((v >> 23) & 0xFF) == 0xFF) return lb_bf16_from_f32(x); /* would pass the largest bf16 */
    return (uint16_t)(v >> 16);
}

/* Compact number formats for optimizer state (see docs/optim.md).
 *
 *  - int8 block-wise (bitsandbytes, Dettmers et al. 2022, "8-bit Optimizers via
 *    Block-wise Quantization"): a tensor is cut into blocks of LB_INT8_BLOCK
 *    elements; each block stores one fp32 absmax and one byte per element,
 *    the index of the entry of a 256-entry "dynamic" map nearest to x/absmax.
 *  - fp8 per-tensor: values are multiplied by a power-of-two scale chosen
 *    from the tensor's amax (FP8-LM / MS-AMP), then stored as E4M3, E5M2 or
 *    FP16 through core/dtype.h's codecs.
 *  - bf16 with optional stochastic rounding.
 *
 * These are the building blocks; optim/optim.h applies them fused inside the
 * update. They are public so tests and tools can use them directly. */
#ifndef LOWBIT_OPTIM_CODEC_H
#define LOWBIT_OPTIM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

#define LB_INT8_BLOCK 256          /* elements per absmax block */
#define LB_DYNMAP_SIZE 256

/* Builds the 256-entry dynamic map, sorted ascending.
 *   unsigned (is_signed = 0): entries in [0, 1], map[0] = 0, map[255] = 1.
 *   signed   (is_signed = 1): entries in [-1, 1], map[0] = -1, map[255] = 1,
 *                             and 0 is an entry.
 * The construction (dynamic tree quantization) is spelled out in codec.c and
 * docs/optim.md. */
void lb_dynmap_build(float map[LB_DYNMAP_SIZE], int is_signed);

/* Index of the entry of the sorted `map` nearest to x (x is clamped to the
 * map's range; NaN gives the code of 0 in a signed map, 0 in an unsigned one). */
uint8_t lb_dynmap_encode(const float map[LB_DYNMAP_SIZE], float x);

/* Block-wise int8: n elements, ceil(n / LB_INT8_BLOCK) absmax values.
 * A block whose absmax is 0 stores absmax 0 and the code of 0.
 * Non-finite inputs are the caller's business (the optimizer never stores them). */
static inline size_t lb_int8_nblocks(size_t n) { return (n + LB_INT8_BLOCK - 1) / LB_INT8_BLOCK; }
void lb_int8_block_quantize(const float *x, size_t n, const float map[LB_DYNMAP_SIZE], uint8_t *codes,
                            float *absmax);
void lb_int8_block_dequantize(const uint8_t *codes, const float *absmax, size_t n,
                              const float map[LB_DYNMAP_SIZE], float *x);

/* The power-of-two scale for a tensor of absolute maximum `amax`:
 *   2^(floor(log2(fmt_max / amax)) - margin),
 * so amax·scale lies in (fmt_max/2^(margin+1), fmt_max/2^margin].
 * When amax is 0 or not finite, `old_scale` is returned unchanged. The result
 * is clamped to [2^-126, 2^126] so it and its inverse stay normal floats. */
float lb_fp8_scale_for(float amax, float fmt_max, int margin, float old_scale);

/* A per-tensor-scaled state stores x·scale in a float dtype of
 * core/dtype.h: LB_DT_F8_E4M3 (the first moment), LB_DT_F8_E5M2 or LB_DT_F16
 * (the second moment, FP8-LM's choice). Encoding clamps x·scale to ± the
 * dtype's max (infinities too, so a rounding of amax never overflows) and
 * rounds to nearest even with the dtype's codec; `codes` is where the row's
 * first code goes. Decoding gives code · inv_scale. */
void lb_scaled_encode(lb_dtype t, const float *x, size_t n, float scale, void *codes);
void lb_scaled_decode(lb_dtype t, const void *codes, size_t n, float inv_scale, float *x);

/* bf16 with stochastic rounding: rounds x up or down to a neighbouring bf16
 * with probabilities proportional to closeness, driven by the random word r
 * (its low 16 bits are used). Unbiased: E[value] = x. Non-finite x and values
 * that would round past the largest bf16 use round-to-nearest-even. */
uint16_t lb_bf16_from_f32_stochastic(float x, uint32_t r);

#endif

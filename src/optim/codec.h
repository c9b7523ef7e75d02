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

/* Block-wise int8: a tensor of n elements is ceil(n / LB_INT8_BLOCK) blocks
 * of LB_INT8_BLOCK (the last one shorter), each with its fp32 absmax.
 * lb_int8_block_encode writes the codes of one block of n <= LB_INT8_BLOCK
 * elements, each the index of the map entry nearest to x / absmax, and
 * returns the absmax; a block of zeros has absmax 0 and the code of 0.
 * Non-finite inputs are the caller's business (the optimizer never stores
 * them). lb_int8_block_decode gives map[code] · absmax. */
static inline size_t lb_int8_nblocks(size_t n) { return (n + LB_INT8_BLOCK - 1) / LB_INT8_BLOCK; }
float lb_int8_block_encode(const float *x, size_t n, const float map[LB_DYNMAP_SIZE], uint8_t *codes);
void lb_int8_block_decode(const uint8_t *codes, size_t n, float absmax, const float map[LB_DYNMAP_SIZE], float *x);

/* A per-tensor-scaled state stores x·scale (scale from lb_pow2_scale,
 * quant/quantize.h) in a float dtype of
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

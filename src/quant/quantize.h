/* Array quantizers over a row-major [rows, cols] matrix.
 *
 * A spec (quant/qspec.h) splits the matrix into blocks that share a scale.
 * Every block is a contiguous run of the flat array:
 *   LB_QG_TENSOR  one block, the whole matrix
 *   LB_QG_ROW     block r = row r (a weight's output channel, an activation's token)
 *   LB_QG_GROUP   block r·G + k = elements [k·g, min((k+1)·g, cols)) of row r,
 *                 G = ceil(cols / g) groups per row. When g does not divide
 *                 cols the last group of each row is shorter and its scale is
 *                 computed from the elements it has (for absmax formats this
 *                 is exactly zero padding).
 *
 * Codes are one byte per element (two for bf16/fp16):
 *   binary             int8 ±1                      x ≈ code · d
 *   ternary, INT sym   int8 in [−Qn, Qp]            x ≈ code · d
 *   INT asym, b1 asym  uint8 in [0, Qmax]           x ≈ code · d + m
 *   FP8 / MX-FP8       the fp8 byte                 x ≈ fp8(code) · d
 *   FP4 / MXFP4        the E2M1 nibble (low 4 bits) x ≈ fp4(code) · d
 *   bf16 / fp16        the 16-bit word              x ≈ value (no scale)
 * with one step d per block in `scales` and, for asymmetric INT, one offset m
 * per block in `zeros` (m = −z·d for an integer zero point z, so 0 is exact).
 * MX block scales d are powers of two (their E8M0 code is
 * lb_e8m0_from_exp(ilogbf(d)); NaN when the block held inf or NaN).
 *
 * The formulas per format are in docs/quantization.md. None of these functions
 * allocates; all are parallel across blocks or elements with OpenMP and give
 * the same results for any thread count. */
#ifndef LOWBIT_QUANT_QUANTIZE_H
#define LOWBIT_QUANT_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include <math.h>

#include "quant/qspec.h"

/* Number of scale blocks (1 for none/bf16/fp16/raw casts). */
size_t lb_quant_n_blocks(const lb_qspec *s, size_t rows, size_t cols);
/* Block b as the contiguous run [*start, *start + *len) of the flat array. */
void lb_quant_block_span(const lb_qspec *s, size_t rows, size_t cols, size_t b, size_t *start, size_t *len);
/* Block of element (r, c). */
size_t lb_quant_block_of(const lb_qspec *s, size_t rows, size_t cols, size_t r, size_t c);
/* LB_EINVAL with a message when the spec cannot apply to [rows, cols]
 * (a bad bit width or group, an empty matrix). Every kernel checks this. */
lb_status lb_quant_check(const lb_qspec *s, size_t rows, size_t cols);

/* codes: rows·cols·code_size bytes; scales: n_blocks floats; zeros: n_blocks
 * floats or NULL (written only for asymmetric INT, which requires it). */
lb_status lb_quantize(const lb_qspec *s, const float *x, size_t rows, size_t cols, void *codes, float *scales,
                      float *zeros);
lb_status lb_dequantize(const lb_qspec *s, const void *codes, const float *scales, const float *zeros, size_t rows,
                        size_t cols, float *y);

/* y = dequantize(quantize(x)) in one pass, bit-identical to the two calls
 * above. y may equal x. `range`, when not NULL, receives 2 floats per block,
 * the clipping range of the clipped straight-through estimator: the inputs
 * the block's clamp leaves alone. Integer formats: within half a step of the
 * extreme codes, [(qmin − ½)·d + m, (qmax + ½)·d + m] (binary: [−2β, 2β]);
 * float formats: [−fmax·d, fmax·d]. Absmax-scaled blocks never clip. */
lb_status lb_fake_quantize(const lb_qspec *s, const float *x, float *y, size_t rows, size_t cols, float *range);

/* One scale block's parameters as the kernels fit them to the block's values
 * x[0..n), for code that fits a scale once and rounds other values to it
 * later (GPTQ, src/ptq): element v gets code
 *   q = clamp(rint(v·s) + z, qmin, qmax)   and value   q·d + m,
 * the same operations, in the same order, as lb_fake_quantize. Ternary and
 * INT (not b1, not lsq, not stochastic) only: LB_EINVAL otherwise. */
typedef struct lb_qblock_params {
    float s, d;        /* multiply before rounding; step after (d = 1/s) */
    float z, m;        /* zero point and offset (asymmetric INT; else 0) */
    float qmin, qmax;  /* code range */
} lb_qblock_params;
lb_status lb_quant_fit_block(const lb_qspec *s, const float *x, size_t n, lb_qblock_params *p);
static inline float lb_qblock_code(const lb_qblock_params *p, float v) {
    float q = rintf(v * p->s) + p->z;
    q = q < p->qmin ? p->qmin : q;
    return q > p->qmax ? p->qmax : q;
}

/* The power-of-two scale for casting a tensor of absolute maximum `amax`
 * to a float format with largest finite value fmax (448 for E4M3):
 *   2^(floor(log2(fmax / amax)) − margin),
 * so amax·scale lies in (fmax / 2^(margin+1), fmax / 2^margin] and never
 * overflows (FP8-LM / MS-AMP). When amax is 0 or not finite, old_scale is
 * returned unchanged. The result is clamped to [2^-126, 2^126] so it and its
 * inverse stay normal floats. The quantizers use it for FP8/FP4 blocks, the
 * optimizer for fp8 states and gradients. */
float lb_pow2_scale(float amax, float fmax, int margin, float old_scale);

/* LSQ (Esser et al., 2020) over the scale blocks of an INT spec with `lsq`
 * (symmetric, 2..8 bits; one block per tensor, row or group, laid out as
 * lb_quant_block_span says), with one learned step step[b] > 0 per block:
 *   y = x + λ·(q − x),   q = round(clamp(x / s_b, −Qn, Qp))·s_b,
 *   Qn = 2^(bits−1), Qp = Qn − 1, round half to even (λ = 1: plain LSQ).
 * Backward adds dy·((1 − λ) + λ·[−Qn ≤ x/s_b ≤ Qp]) into dx (clipped STE;
 * dx may be NULL) and
 *   λ·g_b·Σ_{i in b} dy_i·(v inside ? round(v) − v : v < −Qn ? −Qn : Qp),  v = x_i / s_b,
 * into dstep[b], with LSQ's gradient scale g_b = 1/√(N_b·Qp), N_b the
 * block's element count (dx and dstep may be NULL). Sums are in double over fixed chunks, so results do
 * not depend on the number of threads. The spec must pass lb_quant_check. */
void lb_lsq_forward(const lb_qspec *s, const float *x, float *y, size_t rows, size_t cols, const float *step,
                    float lambda);
void lb_lsq_backward(const lb_qspec *s, const float *x, const float *dy, float *dx, size_t rows, size_t cols,
                     const float *step, float lambda, float *dstep);

#endif

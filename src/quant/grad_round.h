/* Low-bit gradients: a quantizer for gradients.
 *
 * lb_quantize_grad_inplace() rounds a gradient to what a low-precision
 * representation would keep and writes the values back as fp32 (the buffers
 * stay fp32; the precision is what is simulated):
 *   LB_GRAD_FP8   FP8 E5M2 with one dynamic power-of-two scale for the whole
 *                 tensor, chosen from its amax (round-to-nearest-even);
 *   LB_GRAD_INT8  one absmax scale per row, 127 / max|row|, and stochastic
 *                 rounding to an integer in [-127, 127], so E[result] = g.
 * The layers call it on activation gradients in their backward pass; the
 * optimizer calls it on weight gradients before the update.
 *
 * Stochastic rounding draws come from the counter-based RNG (core/rng.h):
 * element i of the tensor uses lb_rand_u32(seed, LB_STREAM_STOCHASTIC + counter, i),
 * so a seed reproduces a run and the result does not depend on the number of
 * threads. Make `counter` unique per (step, tensor) with LB_SR_COUNTER(step, id)
 * (core/rng.h shares the ids out among the layers and the optimizer). */
#ifndef LOWBIT_QUANT_GRAD_ROUND_H
#define LOWBIT_QUANT_GRAD_ROUND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

typedef enum lb_grad_precision {
    LB_GRAD_FP32 = 0,   /* no rounding */
    LB_GRAD_FP8,        /* E5M2, dynamic per-tensor scale */
    LB_GRAD_INT8,       /* per-row absmax, stochastic rounding */
    LB_GRAD_COUNT
} lb_grad_precision;

/* "fp32", "fp8", "int8": the names of optim.grad and optim.act_grad. */
extern const char *const lb_grad_precision_names[LB_GRAD_COUNT];
/* Parses those names; LB_ECONFIG (message lists the choices) otherwise. */
lb_status lb_grad_precision_parse(const char *text, lb_grad_precision *out);

/* Rounds g[rows·cols] (row-major) in place to precision p. Gradients that are
 * not finite are left as they are, so the overflow check downstream still
 * sees them: FP8 skips the whole tensor, INT8 the offending row. Parallel
 * over rows, allocation-free. LB_EINVAL for an unknown precision. */
lb_status lb_quantize_grad_inplace(float *g, size_t rows, size_t cols, lb_grad_precision p, uint64_t seed,
                                   uint64_t counter);

#endif

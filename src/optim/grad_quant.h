/* Low-bit gradients and the dynamic loss scale.
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
 * threads. Make `counter` unique per (step, tensor) with LB_SR_COUNTER(step, id):
 * ids below LB_SR_ID_OPTIM are free for the layers; the optimizer uses ids
 * from LB_SR_ID_OPTIM up. */
#ifndef LOWBIT_OPTIM_GRAD_QUANT_H
#define LOWBIT_OPTIM_GRAD_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum lb_grad_precision {
    LB_GRAD_FP32 = 0,   /* no rounding */
    LB_GRAD_FP8,        /* E5M2, dynamic per-tensor scale */
    LB_GRAD_INT8,       /* per-row absmax, stochastic rounding */
    LB_GRAD_COUNT
} lb_grad_precision;

#define LB_SR_COUNTER(step, id) (((uint64_t)(step) << 20) + (uint64_t)(id))
#define LB_SR_ID_OPTIM (1u << 19)

/* "fp32", "fp8", "int8": the names of optim.grad and optim.act_grad. */
extern const char *const lb_grad_precision_names[LB_GRAD_COUNT];
const char *lb_grad_precision_name(lb_grad_precision p);
/* Parses those names; LB_ECONFIG (message lists the choices) otherwise. */
lb_status lb_grad_precision_parse(const char *text, lb_grad_precision *out);

/* Rounds g[rows·cols] (row-major) in place to precision p. Gradients that are
 * not finite are left as they are, so the overflow check downstream still
 * sees them: FP8 skips the whole tensor, INT8 the offending row. Parallel
 * over rows, allocation-free. LB_EINVAL for an unknown precision. */
lb_status lb_quantize_grad_inplace(float *g, size_t rows, size_t cols, lb_grad_precision p, uint64_t seed,
                                   uint64_t counter);

/* Dynamic loss scaling (as in mixed-precision training): the loss is
 * multiplied by `scale` before backward so small gradients survive a narrow
 * format, and the gradients are divided by it before the update. When a step's
 * gradients are not finite the step is skipped and the scale backs off; after
 * `growth_interval` finite steps in a row it grows again. */
typedef struct lb_loss_scaler {
    float scale;          /* current multiplier of the loss */
    float growth;         /* factor on growth (2) */
    float backoff;        /* factor on overflow (0.5) */
    int growth_interval;  /* finite steps in a row before growing (2000) */
    int good_steps;       /* finite steps since the last change */
    float min_scale;      /* floor of scale (1) */
    float max_scale;      /* ceiling of scale (2^24) */
    int dynamic;          /* 0: scale stays fixed (non-finite steps are still skipped) */
} lb_loss_scaler;

/* dynamic = 0 keeps `initial` forever; dynamic = 1 uses the defaults above. */
void lb_loss_scaler_init(lb_loss_scaler *s, float initial, int dynamic);

/* Records one step's outcome. Returns 1 when the step must be skipped
 * (gradients not finite), 0 when it may proceed. */
int lb_loss_scaler_update(lb_loss_scaler *s, int grads_finite);

#endif

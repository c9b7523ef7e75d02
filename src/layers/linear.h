/* Linear and BitLinear layers (no bias).
 *
 *   y[..., N] = q_a(x)[..., K] · q_w(W)ᵀ,   W [N, K]
 *
 * where q_w and q_a are fake quantizers (autograd/ops.h lb_fake_quant) with the
 * identity straight-through estimator, blended by λ for gradual quantization:
 * q(v) = v + λ·stopgrad(Q(v) − v). The modes of lb_linear_quant:
 *
 *   FP, B1, B158  the presets of quant/recipe.h: plain fp32, BitNet b1
 *                 (binary weights, int8:per_token:b1 activations), BitNet
 *                 b1.58 (ternary weights, int8:per_token activations)
 *   CUSTOM        the weight and activation specs as given (either may be none)
 *
 * The norm that BitNet puts before the activation quantizer is the RMSNorm /
 * SubLN already in the transformer block (llama.cpp's bitnet graph), so
 * BitLinear adds none of its own. */
#ifndef LOWBIT_LAYERS_LINEAR_H
#define LOWBIT_LAYERS_LINEAR_H

#include "autograd/ops.h"
#include "layers/model_config.h"
#include "quant/grad_round.h"

/* Fills the weight and activation specs that `in->mode` implies (for FP, B1
 * and B158 the preset's recipe of quant/recipe.h, whatever the specs in `in`
 * say; for CUSTOM a copy). `what` names the layer kind in error messages
 * ("attn", "ffn", ...). LB_EINVAL for an unknown mode. */
lb_status lb_linear_quant_resolve(const lb_linear_quant *in, lb_linear_quant *out, const char *what);

/* The learned step sizes of a layer whose specs have `lsq` (quant/qspec.h):
 * `weight` with one element per scale block of the weight spec, `activation`
 * with one. NULL where the spec has no lsq. */
typedef struct lb_linear_steps {
    lb_tensor *weight, *activation;
} lb_linear_steps;

/* y = q_a(x) · q_w(w)ᵀ for x [..., K] and w [N, K]; returns [..., N].
 * `q` must be resolved (lb_linear_quant_resolve); its specs are read during
 * the forward pass only. A spec with `lsq` quantizes with its learned steps
 * (lb_fake_quant_lsq), which `steps` must then hold; `steps` may be NULL
 * when neither spec has lsq. `lambda` in [0, 1]: 1 is full quantization, 0
 * the fp32 layer. NULL on error. */
lb_tensor *lb_linear(lb_graph *g, lb_tensor *x, lb_tensor *w, const lb_linear_quant *q, const lb_linear_steps *steps,
                     float lambda);

/* Low-bit activation gradients: returns x unchanged (a view) and, in the
 * backward pass, rounds the gradient flowing back through it to precision `p`
 * with lb_quantize_grad_inplace(dx, rows, cols, p, seed, counter) before it
 * reaches x. Put in front of a layer's input, it makes the layer's dx low-bit.
 * `counter` keys stochastic rounding (unique per step and tensor, see
 * LB_SR_COUNTER). For LB_GRAD_FP32 it returns x itself and records nothing.
 * NULL on error (unknown precision). */
lb_tensor *lb_grad_round(lb_graph *g, lb_tensor *x, lb_grad_precision p, uint64_t seed, uint64_t counter);

#endif

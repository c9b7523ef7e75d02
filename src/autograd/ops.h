/* The ops of the autograd engine: forward computes, backward (static, in the
 * op's .c file) adds gradients into its inputs. All take the graph first,
 * return a new activation (or NULL on error, see autograd/graph.h), and are
 * parallel with OpenMP; results for a given thread count are deterministic.
 *
 * Shapes: "[..., K]" means any leading dimensions, flattened to rows. */
#ifndef LOWBIT_AUTOGRAD_OPS_H
#define LOWBIT_AUTOGRAD_OPS_H

#include "autograd/graph.h"
#include "quant/qspec.h"

/* --- linear algebra (ops_matmul.c) ------------------------------------------ */

/* y[..., N] = x[..., K] · wᵀ with w [N, K] (the layout of a Linear layer's
 * weight, as in PyTorch) when transpose_w, else x · w with w [K, N]. */
lb_tensor *lb_matmul(lb_graph *g, lb_tensor *x, lb_tensor *w, int transpose_w);

/* Batched: c[B, M, N] = op(a)[B, M, K] · op(b)[B, K, N], where op transposes
 * the last two dimensions of a (stored [B, K, M]) or b (stored [B, N, K]). */
lb_tensor *lb_bmm(lb_graph *g, lb_tensor *a, lb_tensor *b, int transpose_a, int transpose_b);

/* --- element-wise (ops_elementwise.c) ----------------------------------------- */

lb_tensor *lb_add(lb_graph *g, lb_tensor *a, lb_tensor *b);      /* same shapes */
lb_tensor *lb_mul(lb_graph *g, lb_tensor *a, lb_tensor *b);      /* same shapes */
lb_tensor *lb_scale(lb_graph *g, lb_tensor *a, float s);
lb_tensor *lb_silu(lb_graph *g, lb_tensor *x);
lb_tensor *lb_gelu(lb_graph *g, lb_tensor *x);                   /* tanh approximation */
lb_tensor *lb_relu2(lb_graph *g, lb_tensor *x);                  /* max(x, 0)² */
lb_tensor *lb_swiglu(lb_graph *g, lb_tensor *gate, lb_tensor *up); /* silu(gate) · up */

/* --- reductions and views (ops_elementwise.c) --------------------------------- */

lb_tensor *lb_sum(lb_graph *g, lb_tensor *x);    /* scalar [1] */
lb_tensor *lb_mean(lb_graph *g, lb_tensor *x);   /* scalar [1] */
/* Same data, new shape with the same element count. */
lb_tensor *lb_reshape(lb_graph *g, lb_tensor *x, int ndim, const int *shape);

/* --- lookups and norms (ops_norm.c) ------------------------------------------- */

/* out[B, T, D] = table[ids[b*T + t], :]; table [V, D]; ids checked in [0, V).
 * Backward scatter-adds into table's gradient. `ids` must stay valid until
 * the backward pass. */
lb_tensor *lb_embedding(lb_graph *g, lb_tensor *table, const int *ids, int B, int T);

/* RMSNorm over the last dim: x / sqrt(mean(x²) + eps) · w; w [D] or NULL
 * (no gain). */
lb_tensor *lb_rmsnorm(lb_graph *g, lb_tensor *x, lb_tensor *w, float eps);
/* LayerNorm over the last dim: (x − mean) / sqrt(var + eps) · w + b; w, b [D]
 * or NULL. */
lb_tensor *lb_layernorm(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, float eps);

/* --- attention (ops_attention.c) ----------------------------------------------- */

/* Rotary position embedding, "rotate half" convention (GPT-NeoX, Hugging Face
 * Llama): for x [B, T, H, Dh] and pair j < Dh/2 at position p = pos0 + t,
 * angle a = p · theta^(−2j/Dh),
 *   y[j]        = x[j] cos a − x[j + Dh/2] sin a
 *   y[j + Dh/2] = x[j + Dh/2] cos a + x[j] sin a. */
lb_tensor *lb_rope(lb_graph *g, lb_tensor *x, float theta, int pos0);

/* Causal multi-head attention with grouped KV heads: q [B, T, H, Dh],
 * k and v [B, T, Hkv, Dh] with Hkv dividing H (query head h reads KV head
 * h / (H / Hkv)); softmax(q·kᵀ / sqrt(Dh)) over positions ≤ t. Returns
 * [B, T, H, Dh]. */
lb_tensor *lb_attention(lb_graph *g, lb_tensor *q, lb_tensor *k, lb_tensor *v);
/* The scratch lb_attention takes per thread while it runs (forward and
 * backward), in floats, for sequence length T, head dim Dh, H query and Hkv
 * KV heads (for memory estimates). */
size_t lb_attention_scratch_floats(int T, int Dh, int H, int Hkv);

/* --- losses (ops_loss.c) ------------------------------------------------------- */

/* Mean softmax cross-entropy of logits [..., V] against targets (one per row);
 * rows whose target equals ignore_index are left out of the mean. Returns a
 * scalar. `targets` must stay valid until the backward pass. */
lb_tensor *lb_cross_entropy(lb_graph *g, lb_tensor *logits, const int *targets, int ignore_index);

/* Knowledge distillation (Hinton et al., 2015): the mean over rows of
 *   T² · KL(p_t ‖ p_s) = T² · Σ_c p_t[c] · (log p_t[c] − log p_s[c]),
 * p_s = softmax(student[r] / T), p_t = softmax(teacher[r] / T), for student
 * logits [..., V] and `teacher` the same number of floats (a constant: no
 * gradient; borrowed, valid until the backward pass). The direction is
 * BitDistill's (teacher ‖ student); T² keeps the gradient's size independent
 * of T: dL/dstudent[r] = T · (p_s − p_t) / rows. Returns a scalar. */
lb_tensor *lb_kl_div(lb_graph *g, lb_tensor *student, const float *teacher, float temperature);

/* MiniLM-style self-attention relation loss (Wang et al., 2020/2021), causal:
 * x [B, T, D] (a projection's output, e.g. the queries of one layer) is split
 * into R relation heads of D/R channels; head r's relation of position i to
 * j ≤ i is softmax_j(<x_i, x_j> / sqrt(D/R)). `teacher` [B, T, Dt] (a
 * constant, borrowed until the backward pass; Dt divisible by R, so the
 * teacher may be wider) gives p_t the same way. Returns the mean over
 * (b, r, i) of KL(p_t ‖ p_s), a scalar. */
lb_tensor *lb_relation_kl(lb_graph *g, lb_tensor *x, const float *teacher, int teacher_dim, int heads);

/* --- quantization (ops_quant.c) --------------------------------------------------
 * Fake quantization q(x) = dequantize(quantize(x)) in fp32, with a
 * straight-through estimator for the backward pass. */

typedef enum lb_ste {
    LB_STE_IDENTITY = 0,   /* dL/dx = dL/dy everywhere */
    LB_STE_CLIPPED = 1     /* dL/dx = dL/dy inside the representable range, 0 outside */
} lb_ste;

/* y = x + lambda · (q(x) − x), gradient per `ste` (scaled as the blend says:
 * (1 − lambda) + lambda · ste'). lambda = 1 is plain fake quantization;
 * 0 < lambda < 1 is the gradual quantization used for fine-tuning. */
lb_tensor *lb_fake_quant(lb_graph *g, lb_tensor *x, const lb_qspec *spec, lb_ste ste, float lambda);

/* y = q_x(x) · q_w(w)ᵀ for x [..., K], w [N, K] (ops_qmatmul.c): the same as
 * lb_matmul(lb_fake_quant(x, xspec, IDENTITY, λ), lb_fake_quant(w, wspec,
 * IDENTITY, λ), 1) in one node, whose backward writes dx and dw directly
 * (no gradient buffers for the quantized copies). A NULL or `none` spec
 * leaves that operand unquantized. The specs are read in the forward pass only. */
lb_tensor *lb_qmatmul(lb_graph *g, lb_tensor *x, lb_tensor *w, const lb_qspec *xspec, const lb_qspec *wspec,
                      float lambda);
/* 1 when lb_qmatmul multiplies in integers (the BitNet recipes at λ = 1:
 * int8 row codes times ternary or binary weight codes): it then keeps the
 * input as int8 codes and row scales, not as fp32. */
int lb_qmatmul_integer(const lb_qspec *xspec, const lb_qspec *wspec, float lambda);
/* 1 when the integer path keeps the weight's int8 codes [N, K] from the
 * forward to the backward pass for an input of M rows (else it quantizes the
 * weight again there): while N ≤ 4·M, so the codes take no more memory than
 * the layer's fp32 input. */
int lb_qmatmul_keeps_weight_codes(size_t M, size_t N);

/* LSQ (Esser et al., 2020) for an intN spec with `lsq` (quant/quantize.h,
 * lb_lsq_forward): y = x + λ·(round(clip(x / s_b, −Qn, Qp))·s_b − x) with one
 * trainable step s_b per scale block of the spec (per tensor, per row or in
 * groups); `step` has exactly that many elements, all finite and > 0. x gets
 * the clipped STE, each s_b the LSQ gradient scaled by 1/√(N_b·Qp) (N_b the
 * block's size), both times the blend as for lb_fake_quant. */
lb_tensor *lb_fake_quant_lsq(lb_graph *g, lb_tensor *x, lb_tensor *step, const lb_qspec *spec, float lambda);

#endif

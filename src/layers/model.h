/* The decoder-only transformer (llama.cpp's `bitnet` graph, see
 * layers/model_config.h), written in the style of llm.c: every parameter is
 * carved out of ONE allocation and every gradient out of another, so the
 * optimizer, the checkpoint writer and the exporter can walk one flat array
 * or the list of named tensors, as they prefer.
 *
 * Parameter names are llama.cpp's GGUF names (export is a rename-free walk),
 * in this order:
 *   token_embd.weight              [V, d]
 *   for each block N:
 *     blk.N.attn_norm.weight       [d]
 *     blk.N.attn_q.weight          [H·Dh, d]
 *     blk.N.attn_k.weight          [Hkv·Dh, d]
 *     blk.N.attn_v.weight          [Hkv·Dh, d]
 *     blk.N.attn_sub_norm.weight   [d]         (sub_norm only)
 *     blk.N.attn_output.weight     [d, H·Dh]
 *     blk.N.ffn_norm.weight        [d]
 *     blk.N.ffn_gate.weight        [F, d]
 *     blk.N.ffn_up.weight          [F, d]
 *     blk.N.ffn_sub_norm.weight    [F]         (sub_norm only)
 *     blk.N.ffn_down.weight        [d, F]
 *   output_norm.weight             [d]
 *   output.weight                  [V, d]      (untied head only)
 * then, for every linear layer whose specs have `lsq` (learned step sizes,
 * quant/qspec.h), in the order of those layers:
 *   <layer>.weight_step            [1], [N] (per_channel) or [N, K/g] (gN)
 *   <layer>.act_step               [1]
 * e.g. blk.0.attn_q.weight_step. Adding :lsq appends parameters and leaves
 * the others' names, order and initialisation as they were.
 * with Dh = d / H. Norms have a gain and no bias (LayerNorm too). */
#ifndef LOWBIT_LAYERS_MODEL_H
#define LOWBIT_LAYERS_MODEL_H

#include <stdint.h>

#include "autograd/graph.h"
#include "layers/linear.h"
#include "quant/grad_round.h"
#include "layers/model_config.h"

#define LB_PARAM_NAME_MAX 48

typedef enum lb_param_kind {
    LB_PARAM_LINEAR = 0,  /* a projection weight [out, in] */
    LB_PARAM_NORM,        /* a norm gain [width] */
    LB_PARAM_EMBEDDING,   /* the token embedding (also the head when tied) */
    LB_PARAM_QSTEP        /* a learned quantizer step size (LSQ) */
} lb_param_kind;

/* What a parameter is. The name is the GGUF / lowbit name fragment: a
 * per-layer role's parameter is "blk.N.<name>.weight", another's
 * "<name>.weight"; step sizes are named after the parameter they quantize,
 * "<owner without .weight>.<name>" (blk.0.attn_q.weight_step). */
typedef enum lb_param_role {
    LB_ROLE_TOKEN_EMBD = 0, LB_ROLE_ATTN_NORM, LB_ROLE_ATTN_Q, LB_ROLE_ATTN_K, LB_ROLE_ATTN_V,
    LB_ROLE_ATTN_SUB_NORM, LB_ROLE_ATTN_OUTPUT, LB_ROLE_FFN_NORM, LB_ROLE_FFN_GATE, LB_ROLE_FFN_UP,
    LB_ROLE_FFN_SUB_NORM, LB_ROLE_FFN_DOWN, LB_ROLE_OUTPUT_NORM, LB_ROLE_OUTPUT,
    /* learned quantizer step sizes (LSQ, spec option :lsq) */
    LB_ROLE_WEIGHT_STEP, LB_ROLE_ACT_STEP,
    LB_ROLE_COUNT
} lb_param_role;

typedef struct lb_param_role_info {
    const char *name;       /* "attn_q": the GGUF / lowbit name fragment, "blk.N.<name>.weight" */
    lb_param_kind kind;     /* LINEAR, NORM, EMBEDDING, QSTEP */
    int per_layer;          /* 1: one per block */
} lb_param_role_info;
/* The role table (layers/model.c, static_assert'ed); NULL outside the enum. */
const lb_param_role_info *lb_param_role_of(lb_param_role r);

typedef struct lb_param {
    lb_tensor *t;           /* name ("blk.3.attn_q.weight"), shape, data, grad */
    lb_param_role role;
    int layer;              /* block index, -1 outside the blocks (a step: its owner's) */
    lb_qspec weight;        /* how the forward pass quantizes this tensor (none for norms) */
    lb_qspec activation;    /* how it quantizes this layer's input (none if not) */
    int no_decay;           /* norms, embeddings, step sizes: no weight decay */
    int owner;              /* step sizes: index of the parameter they quantize; else -1 */
} lb_param;

/* One transformer block's parameters (pointers into lb_model.params).
 * The sub-norms are NULL unless cfg.sub_norm. */
typedef struct lb_block {
    lb_tensor *attn_norm, *attn_q, *attn_k, *attn_v, *attn_sub_norm, *attn_output;
    lb_tensor *ffn_norm, *ffn_gate, *ffn_up, *ffn_sub_norm, *ffn_down;
} lb_block;

/* Activations a forward pass hands out when lb_model.taps is set
 * (distillation, SubLN insertion: trainer/distill.h). Each array is NULL or
 * [n_layers] and receives tensors of the forward's graph. */
typedef struct lb_model_taps {
    lb_tensor **hidden;     /* the residual stream after block l, [B, T, d] */
    lb_tensor **qkv;        /* [3·n_layers]: block l's q, k, v projections (before RoPE), [B, T, H·Dh] and [B, T, Hkv·Dh] */
} lb_model_taps;

typedef struct lb_model {
    lb_model_config cfg;
    int head_dim;                      /* Dh = dim / n_heads */
    /* Quantization, resolved from cfg (they must outlive every graph). */
    lb_linear_quant q_attn, q_ffn, q_head;
    lb_qspec q_embd;
    float quant_lambda;                /* gradual quantization λ, 1 by default */
    int sample_vocab;                  /* ids lb_generate draws from: [0, sample_vocab), the tokenizer's
                                          vocabulary when the embedding has padding rows; 0: all */
    uint64_t seed;                     /* the init seed; also keys stochastic rounding */
    uint64_t step;                     /* training step, for stochastic-rounding streams */
    lb_grad_precision act_grad;        /* gradients into each linear layer's input (fp32: as computed) */
    /* Calibration (src/ptq): when set, the forward pass hands every linear
       layer's input x [..., K] to it, with the index of the layer's weight in
       the parameter table, before the layer's product. NULL: nothing. */
    void (*linear_input)(void *ctx, int param, const lb_tensor *x);
    void *linear_input_ctx;
    lb_model_taps *taps;               /* NULL, or where lb_model_forward hands out activations */

    lb_tensor *token_embd, *output_norm;
    lb_tensor *output;                 /* the LM head: token_embd when tied */
    lb_block *blocks;                  /* [n_layers] */

    int n_params;                      /* number of parameter tensors */
    lb_param *params;                  /* [n_params] the parameter table, in the order above */
    lb_tensor *tensors;                /* [n_params] the tensors params[i].t points at */
    lb_tensor **param_list;            /* [n_params] pointers to tensors[i], for lb_optim_create */
    char (*param_names)[LB_PARAM_NAME_MAX];
    int *weight_step, *act_step;       /* [n_params]: index of the parameter's LSQ steps, or -1 */

    size_t n_elements;                 /* total floats over all parameters */
    float *params_memory;              /* the one allocation of parameter data */
    float *grads_memory;               /* the one allocation of gradients (zeroed) */
} lb_model;

/* Fills `c` with the defaults of a small BitNet-style model: RMSNorm, SwiGLU,
 * tied head, rope_theta 10000, norm_eps 1e-5, init_std 0.02, fp32 linears.
 * Sizes (vocab, dim, layers, heads, ffn, max_seq_len) are set to 0 and must
 * be filled in. */
void lb_model_config_defaults(lb_model_config *c);

/* Checks a config: LB_EINVAL with a message naming the field and what was
 * expected (positive sizes, n_kv_heads divides n_heads, n_heads divides dim,
 * an even head dim for RoPE, known enums, valid quant settings). */
lb_status lb_model_config_validate(const lb_model_config *c);

/* Parameter count of a (valid) config, by formula. */
size_t lb_model_config_num_elements(const lb_model_config *c);

/* Validates `cfg`, allocates parameters and gradients (gradients zeroed) and
 * initialises the parameters from `seed` (lb_model_init_params). NULL on
 * error with the message recorded. */
lb_model *lb_model_create(const lb_model_config *cfg, uint64_t seed);
void lb_model_free(lb_model *m);

/* normal(0, init_std) for projections and the embedding, drawn from stream
 * LB_STREAM_INIT + parameter index (independent of thread count and order);
 * attn_output and ffn_down scaled by 1/sqrt(2·n_layers) (GPT-2); norms 1;
 * then the step sizes (lb_model_init_steps). */
void lb_model_init_params(lb_model *m, uint64_t seed);

/* LSQ's initial step sizes, from the current weights: 2·mean|w|/√Qp over
 * each scale block of a weight (at least LB_LSQ_MIN_STEP), and 2/√Qp for an
 * input (LSQ's 2·mean|x|/√Qp with mean|x| = 1, the size of the
 * RMS-normalised inputs most layers see; the step learns from there).
 * Call it again after loading weights that came without steps. */
void lb_model_init_steps(lb_model *m);

/* The smallest step size. An optimizer step can carry a step size past zero
 * (Adam moves every parameter by about lr, whatever its size), so the forward
 * pass first puts any step below this back onto it: projected gradient
 * descent on s >= LB_LSQ_MIN_STEP, as LSQ implementations clamp the step. */
#define LB_LSQ_MIN_STEP 1e-5f

/* Where learned step sizes (`lsq`) cannot go: the embedding (it is looked up,
 * not multiplied), inputs unless per tensor (one step for the whole input),
 * and a head tied to the embedding. LB_EINVAL with a message saying why
 * ("'int8:per_channel:lsq': an input learns one step ..."); *part (may be
 * NULL) receives the config key under model.quant that is wrong, e.g.
 * "attn.activation". lb_model_config_validate runs it. */
lb_status lb_model_config_check_lsq(const lb_model_config *c, const char **part);

/* The table, in checkpoint order (token_embd, blocks in order, output_norm,
 * [output], steps). Checkpoints, import, export, PTQ, the runtime and the
 * optimizer walk this table and nothing else. */
const lb_param *lb_model_params(const lb_model *m, int *n_params);

/* Parameter iteration. */
static inline int lb_model_num_params(const lb_model *m) { return m->n_params; }
static inline lb_tensor **lb_model_param_list(lb_model *m) { return m->param_list; }
/* The parameter named `name`, or NULL (no error recorded: absence is an answer). */
lb_tensor *lb_model_param(lb_model *m, const char *name);
/* Index of the parameter named `name`, or -1. */
int lb_model_param_index(const lb_model *m, const char *name);

/* Sets every gradient to zero. */
void lb_model_zero_grad(lb_model *m);

/* λ of gradual quantization (x + λ·stopgrad(q(x) − x)), in [0, 1]. */
lb_status lb_model_set_quant_lambda(lb_model *m, float lambda);

/* The training step the next forward belongs to. Quant specs with stochastic
 * rounding (`:sr`) draw their uniforms from stream (step << 20) + 2·i (weight
 * of parameter i) or + 2·i + 1 (its input), keyed by the model's seed, so
 * every step and tensor rounds with fresh, reproducible noise. */
static inline void lb_model_set_step(lb_model *m, uint64_t step) { m->step = step; }

/* Low-bit activation gradients (optim.act_grad): with fp8 or int8, the
 * gradient flowing back into every linear layer's input (its dx) is rounded
 * with lb_quantize_grad_inplace (see lb_grad_round), keyed by the model's seed
 * and counter LB_SR_COUNTER(step, LB_SR_ID_ACT_GRAD + i) for the layer whose
 * weight is parameter i. fp32 (the default) records nothing. */
static inline void lb_model_set_act_grad(lb_model *m, lb_grad_precision p) { m->act_grad = p; }

/* Forward pass over ids [B, T] (T ≤ max_seq_len), positions 0..T−1.
 * With `targets` ([B, T], entries −1 left out of the mean) returns the mean cross-entropy
 * (a scalar); without, returns the logits. *logits_out (if not NULL)
 * receives the logits [B, T, V]. Everything lives in g's arena; `ids` and
 * `targets` must stay valid until the backward pass. NULL on error. */
lb_tensor *lb_model_forward(lb_model *m, lb_graph *g, const int *ids, int B, int T, const int *targets,
                            lb_tensor **logits_out);

/* The peak of g's arena (lb_arena.peak) over one lb_model_forward of [B, T]
 * with targets, and with `train` its lb_backward, when `n_threads` OpenMP
 * threads run it at `precision`, attention at `attn_precision` (lb_graph's
 * two fields): the same tensors the forward pass
 * allocates, op by op, at full quantization (λ = 1), plus what the
 * backward pass adds before it can reuse what it frees (the logits'
 * gradient, the largest layer's input gradient and recomputed operands).
 * An estimate: tests/test_memory.c holds it to the measured peak. */
size_t lb_model_forward_bytes(const lb_model *m, int B, int T, int train, int n_threads, lb_gemm_precision precision,
                              lb_gemm_precision attn_precision);

/* The parameter table of `cfg` (names, shapes, specs, n_elements) without
 * data: params_memory and grads_memory are NULL. For sizing a model before
 * allocating it; free it with lb_model_free. NULL on error. */
lb_model *lb_model_shape(const lb_model_config *cfg);

#endif

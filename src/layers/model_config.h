/* The shape and quantization of a decoder-only transformer. Filled by the
 * YAML config (io/config.c), stored in checkpoints, read by layers/model.c.
 *
 * The default graph is llama.cpp's `bitnet` architecture:
 *   x → attn_norm → q, k, v → RoPE → attention → [attn_sub_norm] → attn_output → + x
 *     → ffn_norm → gate, up → silu(gate)·up (or relu²(gate)·up) → [ffn_sub_norm] → ffn_down → + ;
 *   final output_norm; LM head tied to the token embedding. */
#ifndef LOWBIT_LAYERS_MODEL_CONFIG_H
#define LOWBIT_LAYERS_MODEL_CONFIG_H

#include "quant/qspec.h"
#include "quant/recipe.h"

typedef enum lb_ffn_act { LB_FFN_SWIGLU = 0, LB_FFN_RELU2 = 1, LB_FFN_COUNT } lb_ffn_act;
typedef enum lb_norm_kind { LB_NORM_RMS = 0, LB_NORM_LAYER = 1, LB_NORM_COUNT } lb_norm_kind;

/* "swiglu", "relu2"; "rmsnorm", "layernorm": the names of model.ffn_act and
 * model.norm (layers/model.c). */
extern const char *const lb_ffn_act_names[LB_FFN_COUNT];
extern const char *const lb_norm_kind_names[LB_NORM_COUNT];

/* How a BitLinear layer quantizes: FP, B1 and B158 are the presets of
 * quant/recipe.h (fp32, BitNet b1, BitNet b1.58), numbered as they are;
 * `custom` uses the weight and activation specs as given (INT4/FP8/... QAT). */
typedef enum lb_linear_mode {
    LB_LINEAR_FP = LB_PRESET_FP32,
    LB_LINEAR_B1 = LB_PRESET_B1,
    LB_LINEAR_B158 = LB_PRESET_B158,
    LB_LINEAR_CUSTOM = LB_PRESET_COUNT
} lb_linear_mode;

typedef struct lb_linear_quant {
    lb_linear_mode mode;
    lb_qspec weight;       /* e.g. ternary (b1.58), binary (b1), int4:g128 */
    lb_qspec activation;   /* e.g. int8:per_token */
} lb_linear_quant;

typedef struct lb_model_config {
    int vocab_size;
    int dim;               /* model width d */
    int n_layers;
    int n_heads;
    int n_kv_heads;        /* divides n_heads */
    int ffn_dim;           /* hidden width of the FFN */
    int max_seq_len;       /* longest context (RoPE positions) */
    float rope_theta;      /* 10000 */
    float norm_eps;        /* 1e-5 */
    lb_norm_kind norm;
    lb_ffn_act ffn_act;
    int sub_norm;          /* 1: attn_sub_norm and ffn_sub_norm (BitNet b1.58 2B4T) */
    int tie_embeddings;    /* 1: the LM head is the token embedding */
    float init_std;        /* std of the normal init of weights (0.02) */
    /* Quantization by layer kind. */
    lb_linear_quant attn;      /* q, k, v, output projections */
    lb_linear_quant ffn;       /* gate, up, down */
    lb_linear_quant head;      /* LM head (fp by default) */
    lb_qspec embedding;        /* token embedding (none by default) */
} lb_model_config;

#endif

/* config.json of a Hugging Face causal LM, as transformers reads it, for the two
 * architectures lowbit runs: LlamaForCausalLM and BitNetForCausalLM.
 *
 *   lb_hf_config h;
 *   LB_TRY(lb_hf_config_read("llama/config.json", &h));
 *   lb_model_config m;
 *   lb_hf_config_to_model(&h, &m);          // the model section of a lowbit config
 *
 * Both dialects are read: transformers 4.x (`rope_theta` at the top level,
 * `rope_scaling`) and 5.x (`rope_parameters: {rope_type, rope_theta}`), with
 * `torch_dtype` or `dtype`. A key left out takes the default of the
 * architecture's config class (LlamaConfig, BitNetConfig), as transformers
 * does. Anything that changes the model in a way lowbit does not compute —
 * another architecture, biases, a RoPE scaling type, a head_dim other than
 * hidden_size / num_attention_heads, an activation other than silu or relu2,
 * a quantization method other than bitnet — is LB_EFORMAT naming the file,
 * the key and the value. docs/interop.md lists every key. Writing
 * (lb_hf_config_to_json) uses the 4.x dialect. */
#ifndef LOWBIT_INTEROP_HF_CONFIG_H
#define LOWBIT_INTEROP_HF_CONFIG_H

#include <stddef.h>

#include "core/dtype.h"
#include "core/error.h"
#include "layers/model_config.h"

typedef enum lb_hf_arch { LB_HF_LLAMA = 0, LB_HF_BITNET, LB_HF_ARCH_COUNT } lb_hf_arch;

/* How the attention and MLP projections are stored and computed: the
 * quantization_config of transformers' bitnet integration
 * (integrations/bitnet.py). The LM head is never quantized there. */
typedef enum lb_hf_quant {
    LB_HF_QUANT_NONE = 0,   /* no quantization_config: plain nn.Linear weights */
    LB_HF_QUANT_ONLINE,     /* autobitlinear, online: float master weights, ternarized and their inputs
                               rounded to int8 in every forward (bitnet-b1.58-2B-4T-bf16) */
    LB_HF_QUANT_PACKED,     /* autobitlinear, offline: packed ternary uint8 codes and a weight_scale the
                               product is multiplied by (bitnet-b1.58-2B-4T) */
    LB_HF_QUANT_PACKED_INV, /* bitlinear (the default linear_class): packed codes, the product is divided
                               by weight_scale */
    LB_HF_QUANT_COUNT
} lb_hf_quant;

/* "LlamaForCausalLM", "BitNetForCausalLM"; "llama", "bitnet" (model_type). */
extern const char *const lb_hf_arch_names[LB_HF_ARCH_COUNT];
extern const char *const lb_hf_model_types[LB_HF_ARCH_COUNT];
/* "none", "online", "packed", "packed (weight_scale divides)": for messages and docs. */
extern const char *const lb_hf_quant_names[LB_HF_QUANT_COUNT];

typedef struct lb_hf_config {
    lb_hf_arch arch;
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    double initializer_range;
    int tie_word_embeddings;
    lb_ffn_act act;          /* hidden_act: silu (or swish) → SwiGLU, relu2 → ReLU² gating */
    int dtype;               /* torch_dtype / dtype as an lb_dtype (F32, F16, BF16); -1 when not given */
    lb_hf_quant quant;
} lb_hf_config;

/* Reads and checks `path` (a config.json). */
lb_status lb_hf_config_read(const char *path, lb_hf_config *c);
/* The same from text; `name` stands for the file in messages. */
lb_status lb_hf_config_parse(const char *json, size_t len, const char *name, lb_hf_config *c);

/* The model section lowbit computes the same function with: sizes, RMSNorm,
 * SubLN for BitNet, the activation, the tied head; attention and FFN
 * projections fp32 (no quantization_config) or the b1.58 recipe (bitnet),
 * the head and embedding unquantized. Defaults of lb_model_config_defaults
 * otherwise. */
void lb_hf_config_to_model(const lb_hf_config *h, lb_model_config *m);

/* The config.json of a lowbit model for export: LlamaForCausalLM without
 * SubLN, BitNetForCausalLM with it; `dtype` F32 or BF16 (torch_dtype);
 * `packed` chooses the packed BitNet layout for b1.58 models. Models lowbit
 * cannot express in either (LayerNorm, quantizers other than b1.58, a
 * quantized head or embedding) are LB_EINVAL naming the model key. */
lb_status lb_hf_config_from_model(const lb_model_config *m, lb_dtype dtype, int packed, lb_hf_config *h);

/* config.json text (transformers 4.x dialect), malloc'd, ending in a newline. */
lb_status lb_hf_config_to_json(const lb_hf_config *h, char **out);

#endif

/* lowbit model → GGUF v3 that llama.cpp loads (docs/export.md).
 *
 * Architecture: `bitnet` for models with SubLN (attn_sub_norm, ffn_sub_norm),
 * RMSNorm, SwiGLU and a tied head (llama.cpp's bitnet graph, NEOX RoPE, the
 * rotate-half pairing lowbit uses); `llama` for the others without sub-norms
 * (RMSNorm, SwiGLU; llama.cpp rotates interleaved pairs there, so Q and K rows
 * are permuted as convert_hf_to_gguf.py's permute does). Anything else
 * (LayerNorm, ReLU², an untied bitnet head) is an error saying why.
 *
 * Weights are written as the forward pass sees them (quantized with λ = 1),
 * so llama.cpp computes the same function: for absmean ternary weights every
 * TQ1_0/TQ2_0 block's d is the tensor's γ and export is lossless up to
 * fp16(γ). Norms are f32; the token embedding (the tied head) is f16 for the
 * TQ types and q8_0 for q4_0, as llama.cpp's converter and quantizer keep
 * them wider; every other matrix gets the chosen type.
 *
 * The tokenizer goes in as llama.cpp reads it: byte → `gpt2` with GPT-2's 256
 * byte characters and no merges (a SentencePiece vocabulary of <0xNN> tokens
 * would tokenize ' ' as the bytes of ▁); char is refused (llama.cpp has no
 * character tokenizer); bpe and hf → `gpt2` with merges and the
 * pre-tokenizer name llama.cpp needs, plus the tokenizer.json itself
 * (tokenizer.huggingface.json). The run's config is stored as lowbit.config
 * (YAML) so that `lowbit eval model.gguf` can rebuild the data pipeline. */
#ifndef LOWBIT_INTEROP_GGUF_EXPORT_H
#define LOWBIT_INTEROP_GGUF_EXPORT_H

#include "core/dtype.h"
#include "core/error.h"
#include "data/tokenizer.h"
#include "layers/model.h"

typedef enum lb_gguf_arch { LB_GGUF_ARCH_BITNET = 0, LB_GGUF_ARCH_LLAMA, LB_GGUF_ARCH_COUNT } lb_gguf_arch;
extern const char *const lb_gguf_arch_names[LB_GGUF_ARCH_COUNT]; /* "bitnet", "llama" */

/* The export types, in the order `--type` lists them. */
#define LB_GGUF_EXPORT_TYPES "tq2_0|tq1_0|q8_0|q4_0|f16|f32"
/* LB_ECONFIG naming the accepted types for anything else. */
lb_status lb_gguf_export_type(const char *name, lb_dtype *out);

/* The llama.cpp architecture a model config maps to, or LB_EINVAL saying why
 * none does. */
lb_status lb_gguf_arch_of(const lb_model_config *c, lb_gguf_arch *out);

/* The ggml type parameter `p` is written with when the file's type is `type`. */
lb_dtype lb_gguf_export_param_type(const lb_param *p, lb_dtype type);

/* The weights of parameter `p` as the forward pass uses them (λ = 1): the
 * quantized values of a linear layer's weight (LSQ with its learned steps),
 * the embedding through its spec, norms as they are. dst has p->t's size. */
lb_status lb_export_effective_weights(const lb_model *m, int param, float *dst);

/* llama.cpp's `llama` pairs dims (2i, 2i+1) where lowbit pairs (i, i + Dh/2):
 * rows of a Q or K weight [n_heads·Dh, cols] reordered as convert_hf_to_gguf.py's
 * permute (inverse: 0 forward, 1 back). */
void lb_rope_permute_rows(const float *src, float *dst, int n_heads, int head_dim, int cols, int inverse);

/* Writes `m` with tokenizer `tok` as a GGUF of `type` to `path` (atomically).
 * config_yaml (may be NULL) is stored as lowbit.config. Errors name the tensor
 * (a row width that is not a multiple of the block suggests a type that fits)
 * or the tokenizer feature llama.cpp has no counterpart for. */
lb_status lb_gguf_export(const lb_model *m, const lb_tokenizer *tok, const char *config_yaml, lb_dtype type,
                         const char *path);

#endif

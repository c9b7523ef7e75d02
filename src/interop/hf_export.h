/* lowbit models out as Hugging Face model directories (lowbit export
 * --format safetensors): config.json (transformers 4.x dialect),
 * model.safetensors, tokenizer.json. The tensor names are hf_names.h's, the
 * same map import reads.
 *
 *   models without SubLN, fp32 projections   LlamaForCausalLM, F32 or BF16
 *   b1.58 models with SubLN                  BitNetForCausalLM: float master weights with
 *                                            quantization_config autobitlinear / online
 *                                            (as bitnet-b1.58-2B-4T-bf16), or with `packed`
 *                                            the ternary codes four to a uint8 and a
 *                                            weight_scale, autobitlinear / offline (as
 *                                            bitnet-b1.58-2B-4T)
 * Other models (LayerNorm, other quantizers, a quantized head or embedding,
 * SubLN without b1.58) are LB_EINVAL naming the model key.
 *
 * tokenizer.json: bpe and hf tokenizers as they are; the byte tokenizer as a
 * byte-level BPE without merges whose token b is byte b (identical ids on
 * valid UTF-8 text, the only text the Hugging Face library takes); the char
 * tokenizer as a BPE without merges over its characters with the Fuse decoder
 * (identical ids on text within its vocabulary; the library skips other
 * characters where lowbit stops with an error), refused when its vocabulary
 * holds the escape code points of invalid UTF-8, which JSON cannot carry.
 *
 * The directory is written whole into a temporary directory next to it, then
 * renamed into place; an existing `dir` is an error, never overwritten. */
#ifndef LOWBIT_INTEROP_HF_EXPORT_H
#define LOWBIT_INTEROP_HF_EXPORT_H

#include "core/dtype.h"
#include "data/tokenizer.h"
#include "layers/model.h"

typedef struct lb_hf_export_options {
    lb_dtype dtype;   /* LB_DT_F32 or LB_DT_BF16: float tensors and torch_dtype */
    int packed;       /* b1.58 models: the packed BitNet layout */
} lb_hf_export_options;

lb_status lb_hf_export(const lb_model *m, const lb_tokenizer *tok, const char *dir, const lb_hf_export_options *o);

/* The tokenizer.json of `tok` (see above), malloc'd. */
lb_status lb_hf_tokenizer_json(const lb_tokenizer *tok, char **json, size_t *len);

#endif

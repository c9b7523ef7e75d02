/* Hugging Face model directories into lowbit: config.json (hf_config.h),
 * model.safetensors or its shards (model.safetensors.index.json), and
 * tokenizer.json.
 *
 *   lb_model *m; lb_tokenizer *tok; lb_hf_config h;
 *   LB_TRY(lb_hf_import("llama-dir", &h, &m, &tok));
 *
 * Every tensor of the files must be one the model has (names: hf_names.h), of
 * the shape the config gives and of the config's torch_dtype (F32, F16 or BF16,
 * converted to fp32 exactly); every tensor the model has must be in the files.
 * A disagreement is LB_EFORMAT naming the file, the tensor and what was
 * expected. Packed BitNet projections (uint8 codes, four ternary weights a
 * byte, and a weight_scale: transformers' integrations/bitnet.py) become fp32
 * master weights that lowbit's b1.58 quantizer maps back onto exactly those
 * ternary codes and that scale: W = T·s/f, with s the scale the product is
 * multiplied by and f the share of non-zero codes, so mean|W| = s and
 * clamp(round(W / mean|W|), −1, 1) = T. docs/interop.md has the details. */
#ifndef LOWBIT_INTEROP_HF_IMPORT_H
#define LOWBIT_INTEROP_HF_IMPORT_H

#include "data/tokenizer.h"
#include "interop/hf_config.h"
#include "layers/model.h"

/* 1 when `path` is a directory holding a config.json, else 0. */
int lb_hf_is_model_dir(const char *path);

/* DIR/config.json, read and checked. */
lb_status lb_hf_read_config(const char *dir, lb_hf_config *h);

/* The weights of DIR into `m`, a model built from a config whose shape is
 * h's (lb_hf_config_to_model; its quantization may differ). Learned step
 * sizes, which Hugging Face files do not hold, are initialised from the
 * loaded weights (lb_model_init_steps). */
lb_status lb_hf_load_weights(const char *dir, const lb_hf_config *h, lb_model *m);

/* DIR/tokenizer.json (kind hf), checked to fit a vocabulary of vocab_size. */
lb_status lb_hf_load_tokenizer(const char *dir, int vocab_size, lb_tokenizer **tok);

/* All of DIR: its config, a model built with lb_hf_config_to_model, its
 * weights and its tokenizer. */
lb_status lb_hf_import(const char *dir, lb_hf_config *h, lb_model **model, lb_tokenizer **tok);

#endif

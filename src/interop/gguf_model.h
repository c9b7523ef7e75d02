/* GGUF → lowbit model, for `lowbit eval model.gguf` and the export tests.
 *
 * Reads files of llama.cpp's `bitnet` and `llama` architectures laid out as
 * lowbit exports them (gguf_export.h): the shape from the hyperparameters,
 * the weights decoded to f32 (Q and K of `llama` permuted back to lowbit's
 * rotate-half pairing), the tokenizer from tokenizer.huggingface.json or from
 * the SentencePiece byte / character vocabulary, and the run's config from
 * lowbit.config when the file has it (defaults otherwise).
 *
 * The weights in the file are the ones the forward pass used (already
 * quantized), so the model built here quantizes no weight again: every linear
 * layer keeps the input (activation) quantizer of the stored config and its
 * weight spec becomes none; the embedding spec becomes none. Evaluating it is
 * evaluating the exported checkpoint, up to the rounding of the file's type.
 *
 * Every count, shape and offset is checked against the file before anything
 * is allocated from it; errors (LB_EFORMAT) name the file and the key or
 * tensor. */
#ifndef LOWBIT_INTEROP_GGUF_MODEL_H
#define LOWBIT_INTEROP_GGUF_MODEL_H

#include "core/error.h"
#include "data/tokenizer.h"
#include "io/config.h"
#include "layers/model.h"

/* *cfg: the stored config (or defaults) with model.* set from the file as
 * described above; *has_config (may be NULL): 1 when lowbit.config was there.
 * On error nothing is returned (all outputs NULL). */
lb_status lb_gguf_model_load(const char *path, lb_config *cfg, int *has_config, lb_tokenizer **tok, lb_model **model);

#endif

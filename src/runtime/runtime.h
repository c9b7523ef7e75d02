/* The packed inference runtime: a lowbit model rebuilt for generation, with
 * its BitNet layers as packed integer weights, a KV cache, and integer
 * kernels chosen at run time for the CPU. See docs/runtime.md.
 *
 *   lb_rt_model    built once from a model's parameter table (the lb_model
 *                  may be freed afterwards): b1.58 layers as 2-bit ternary
 *                  codes, b1 layers as 1-bit signs, each with its tensor
 *                  scale; every other linear layer (fp32, custom specs, the
 *                  LM head) as fp32 weights, fake-quantized as training
 *                  quantizes them; norms and the embedding in fp32.
 *   lb_rt_session  one sequence: the KV cache and scratch; tokens are
 *                  appended with lb_rt_forward (a prompt, then one at a time).
 *
 * The forward pass is the training-time forward (layers/model.c) computed
 * another way: a packed layer quantizes its input per token exactly as
 * training does (the same codes and scales), multiplies the codes in int32
 * (exact) and scales the sum once, as the training forward's integer path
 * does; the float parts (norms, RoPE, attention, activations, fp32 layers)
 * are the same formulas summed in another order. docs/runtime.md derives the
 * bound this gives on the logits; tests/test_runtime.c checks it.
 *
 * Results do not depend on the instruction set or the number of threads,
 * nor on how tokens are split between calls: a token decoded with the cache
 * gets the same bits as in one pass over the whole sequence. */
#ifndef LOWBIT_RUNTIME_RUNTIME_H
#define LOWBIT_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "layers/model.h"

/* ---- instruction sets ------------------------------------------------------------ */

typedef enum lb_rt_isa {
    LB_RT_ISA_PORTABLE = 0,  /* plain C */
    LB_RT_ISA_AVX2,          /* vpmaddubsw on 256 bits */
    LB_RT_ISA_AVX512BW,      /* vpmaddubsw on 512 bits */
    LB_RT_ISA_AVX512VNNI,    /* vpdpbusd on 512 bits */
    LB_RT_ISA_COUNT
} lb_rt_isa;
#define LB_RT_ISA_AUTO (-1)

/* "portable", "avx2", "avx512bw", "avx512vnni"; "?" outside the enum. */
const char *lb_rt_isa_name(lb_rt_isa isa);
/* LB_EINVAL listing the names. */
lb_status lb_rt_isa_parse(const char *name, lb_rt_isa *out);
/* The best set this CPU and OS run (CPUID and XGETBV). */
lb_rt_isa lb_rt_isa_best(void);
/* The set to use for `requested`: LB_RT_ISA_AUTO takes LOWBIT_RUNTIME_ISA
 * from the environment when set, else the best. LB_EINVAL for an unknown
 * name or a set above the best (the variable forces a lower path). */
lb_status lb_rt_isa_choose(int requested, lb_rt_isa *out);

/* ---- the packed model ----------------------------------------------------------- */

typedef struct lb_rt_model lb_rt_model;

typedef struct lb_rt_options {
    int isa;      /* an lb_rt_isa, or LB_RT_ISA_AUTO */
    int dense;    /* 1: every linear layer as fp32 weights (the fake-quantized ones) and
                     fake-quantized inputs, for comparisons (bench/bench_runtime.c) */
} lb_rt_options;

/* {LB_RT_ISA_AUTO, 0} */
lb_rt_options lb_rt_options_default(void);

/* Builds the runtime's model from `m` (its parameter table, config and
 * quantization). NULL with the message recorded when it cannot: a spec the
 * runtime cannot reproduce (stochastic rounding, an activation scale shared
 * across tokens, learned step sizes), a non-finite parameter (named), or an
 * instruction set this CPU lacks. */
lb_rt_model *lb_rt_model_pack(const lb_model *m, const lb_rt_options *opt);
void lb_rt_model_free(lb_rt_model *rm);

typedef struct lb_rt_info {
    lb_rt_isa isa;
    int n_ternary, n_binary, n_fp32;  /* linear layers of each kind (the head included) */
    size_t weight_bytes;              /* bytes of weights a decoded token reads: every linear
                                         layer, the norms, one embedding row */
    size_t packed_bytes;              /* of which packed ternary/binary layers */
    size_t model_bytes;               /* everything the model holds */
} lb_rt_info;
void lb_rt_model_info(const lb_rt_model *rm, lb_rt_info *info);
const lb_model_config *lb_rt_model_config(const lb_rt_model *rm);
/* The ids generation draws new tokens from: [0, n), the tokenizer's ids (lb_model.sample_vocab). */
int lb_rt_model_sample_vocab(const lb_rt_model *rm);

/* ---- sessions ------------------------------------------------------------------- */

typedef struct lb_rt_session lb_rt_session;

/* A session for sequences up to the model's max_seq_len, on n_threads
 * OpenMP threads (<= 0: omp_get_max_threads()). NULL on error. */
lb_rt_session *lb_rt_session_create(const lb_rt_model *rm, int n_threads);
void lb_rt_session_free(lb_rt_session *s);
/* Empties the KV cache: the next token is at position 0. */
void lb_rt_session_reset(lb_rt_session *s);
/* Tokens in the cache (the position of the next one). */
int lb_rt_session_length(const lb_rt_session *s);
const lb_rt_model *lb_rt_session_model(const lb_rt_session *s);

/* Appends ids[0..n) at positions len .. len + n − 1 and writes their logits:
 * [n, V] when all_logits, else [V] for the last token (logits NULL: none).
 * LB_EINVAL for an id outside the vocabulary or len + n > max_seq_len (the
 * cache is left as it was); LB_ENUMERIC when the logits are not finite. */
lb_status lb_rt_forward(lb_rt_session *s, const int *ids, int n, float *logits, int all_logits);

/* ---- probes: see and replace what the forward pass computes --------------------- */

/* The values a forward pass produces, in order. Q and K are after RoPE. */
typedef enum lb_rt_site {
    LB_RT_ATTN_NORM = 0, LB_RT_Q, LB_RT_K, LB_RT_V, LB_RT_ATTN, LB_RT_ATTN_SUB_NORM, LB_RT_ATTN_OUTPUT,
    LB_RT_ATTN_RESIDUAL, LB_RT_FFN_NORM, LB_RT_FFN_GATE, LB_RT_FFN_UP, LB_RT_FFN_ACT, LB_RT_FFN_SUB_NORM,
    LB_RT_FFN_DOWN, LB_RT_FFN_RESIDUAL, LB_RT_OUTPUT_NORM, LB_RT_LOGITS,
    LB_RT_SITE_COUNT
} lb_rt_site;
/* "attn_norm", "q", ...; "?" outside the enum. */
const char *lb_rt_site_name(lb_rt_site site);

/* Called once a site's values are complete for the tokens of a call: rows
 * x[i·ld .. i·ld + width) for positions pos0 + i, i < n (layer −1 for
 * output_norm and logits). The probe may overwrite them: the forward pass
 * goes on with what it finds (tests replace each value with the training
 * forward's to check every step on its own). The sub-norm sites are skipped
 * when the model has none; logits come only for the rows asked for. While a
 * probe is set, the session runs on one thread. */
typedef void (*lb_rt_probe_fn)(void *ctx, lb_rt_site site, int layer, int pos0, int n, float *x, int width,
                               size_t ld);
void lb_rt_session_set_probe(lb_rt_session *s, lb_rt_probe_fn fn, void *ctx);

/* ---- generation ----------------------------------------------------------------- */

typedef struct lb_rt_gen_stats {
    int prompt_tokens;       /* tokens of the first forward pass */
    double prompt_seconds;
    int decode_tokens;       /* tokens generated after the first */
    double decode_seconds;   /* their forward passes and sampling */
    int reprocessed_tokens;  /* tokens run again after the context window moved */
} lb_rt_gen_stats;

/* lb_generate (layers/sample.h) on the runtime: the same context window (the
 * last max_seq_len tokens at positions 0..), the same sampler
 * (lb_sample_logits) and the same use of `rng`, so the same seed gives the
 * same tokens whenever the logits pick the same ones. Tokens go to
 * out[0..n_new). Once prompt plus output outgrow max_seq_len the window
 * moves by one token a step and the cache is rebuilt from the window
 * (counted in reprocessed_tokens). stats may be NULL. */
lb_status lb_rt_generate(lb_rt_session *s, const int *prompt, int n_prompt, int n_new, float temperature,
                         int top_k, lb_rng *rng, int *out, lb_rt_gen_stats *stats);

#endif

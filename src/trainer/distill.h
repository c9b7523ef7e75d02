/* Knowledge distillation in QAT (BitDistill, Hinton et al.) and SubLN
 * insertion: the two ways a quantized student learns from the full-precision
 * model it started from.
 *
 * Distillation (train.distill, docs/qat-vs-ptq.md): a frozen teacher, by
 * default the train.init_from model, runs forward without gradients on the
 * student's micro-batch, and the student's loss becomes
 *   w_ce · CE(student, data) + w_kl · T² · KL(p_teacher ‖ p_student)
 *   [+ w_hidden · mean((h_student − h_teacher)²) at one block's output]
 *   [+ w_relation · (R_QQ + R_KK + R_VV) at one block: MiniLM relation KLs],
 * KL as lb_kl_div (autograd/ops.h): softened by T, averaged over tokens;
 * R as lb_relation_kl with the student's n_heads relation heads.
 * The teacher is loaded from its path whenever the trainer is built, so a
 * resumed run sees the same teacher; its fingerprint (a hash of its weights)
 * is stored in the checkpoint and checked on resume.
 *
 * SubLN insertion (lb_insert_sub_norms): a model without sub-norms (a Llama,
 * an fp32 lowbit model with model.sub_norm false) turned into BitNet b1.58's
 * graph, with a norm before attn_output and ffn_down. A gain of 1 is not the
 * identity: RMSNorm divides every token by its own RMS r_t. A per-channel
 * gain cannot undo a per-token factor, so every channel's gain is set to the
 * one number g that makes g·x_t/r_t closest to x_t over calibration tokens
 * of the source model, in least squares: with m_t = mean x_t² and
 * r_t = sqrt(m_t + eps), Σ_t D·m_t·(g/r_t − 1)² is least at
 *   g = Σ_t (m_t / r_t) / Σ_t (m_t / r_t²)     (≈ the mean RMS when eps ≪ m_t),
 * one g per norm. This is what "identity-initialised" means here: a token
 * whose RMS is g passes unchanged, the others are rescaled by g/r_t before
 * the projection. With b1.58's per-token absmax activation quantization the
 * projection's input scale does not matter to the rounding, only to the
 * output's size, so the step-0 loss moves by the spread of r_t across
 * tokens (measured in docs/qat-vs-ptq.md and tests/test_distill.c). */
#ifndef LOWBIT_TRAINER_DISTILL_H
#define LOWBIT_TRAINER_DISTILL_H

#include <limits.h>
#include <stdint.h>

#include "autograd/graph.h"
#include "data/batch.h"
#include "io/config.h"
#include "layers/model.h"

typedef struct lb_distill {
    lb_distill_config cfg;
    char path[PATH_MAX];       /* the teacher as configured (train.distill.teacher or train.init_from) */
    lb_model *teacher;
    lb_graph graph;            /* the teacher's forward passes, no gradients */
    int s_layer, t_layer;      /* the blocks the hidden-state loss compares (student, teacher) */
    lb_tensor **s_hidden, **t_hidden; /* [n_layers] taps (layers/model.h) */
    int s_rel, t_rel, rel_heads; /* the blocks and the heads of the relation loss */
    lb_tensor **s_qkv, **t_qkv; /* [3·n_layers] taps */
    uint64_t fingerprint;      /* FNV-1a of the teacher's parameters */
    size_t param_bytes;        /* the teacher's parameter and gradient memory */
    double seconds;            /* teacher forward time not yet reported (the trainer takes it each step) */
} lb_distill;

/* The parts of the last micro-batch's loss, unweighted. */
typedef struct lb_distill_parts {
    float ce, kl, hidden, relation;
} lb_distill_parts;

/* 1 when train.distill asks for distillation (a positive weight_kl, weight_hidden or weight_relation). */
int lb_distill_enabled(const lb_config *c);

/* Loads the teacher named by c (train.distill.teacher, else
 * train.init_from: a lowbit checkpoint, run directory or Hugging Face
 * directory) and checks that it fits `student` (vocabulary; the hidden
 * layer and width when weight_hidden > 0). */
lb_status lb_distill_open(const lb_config *c, const lb_model *student, lb_distill **out);
void lb_distill_free(lb_distill *d);

/* The student's loss on one micro-batch as above, on g (with gradients when g
 * records them); the teacher's forward runs first, on its own graph, and its
 * activations stay there until the next call. `parts` may be NULL. */
lb_tensor *lb_distill_loss(lb_distill *d, lb_model *student, lb_graph *g, const int *ids, int B, int T,
                           const int *targets, lb_distill_parts *parts);

/* The teacher's bytes: its parameters (and gradient buffers) plus its
 * activation arena's peak. */
size_t lb_distill_memory(const lb_distill *d);

/* Any model's parameters, hashed (FNV-1a over the bytes of params_memory). */
uint64_t lb_model_fingerprint(const lb_model *m);

/* A model and its tokenizer from `path`: a lowbit checkpoint (file or run
 * directory) or a Hugging Face model directory. `tok` may be NULL. */
lb_status lb_model_load_any(const char *path, lb_model **model, lb_tokenizer **tok);

/* Copies every parameter of `src` into the parameter of `dst` of the same
 * name and shape (dst has sub-norms, src has none, everything else equal),
 * then sets each sub-norm's gain as described at the top, from src's
 * activations on n_batches windows of `tokens` (B × T each, spread evenly as
 * validation batches are). */
lb_status lb_insert_sub_norms(lb_model *dst, const lb_model *src, const lb_tokens *tokens, int B, int T,
                              int n_batches);

#endif

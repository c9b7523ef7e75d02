/* The trainer: everything a training run holds (config, data, model,
 * optimizer, schedule, counters) and what is done with it one piece at a time:
 * build from a config, take a step, evaluate, save and resume. The run loop
 * around these (cadence, stop, metrics) is run.h; the checkpoint layout is
 * state.h (save and resume are implemented in state.c); run directories are
 * rundir.h.
 *
 * Saving and resuming keep the whole state (model, optimizer, schedule
 * position, data RNG, tokenizer, config) in one HDF5 checkpoint, so training
 * N steps equals training N/2, saving, resuming and training N/2 more, bit for
 * bit (with the same thread count). */
#ifndef LOWBIT_TRAINER_TRAINER_H
#define LOWBIT_TRAINER_TRAINER_H

#include <stdint.h>

#include "autograd/graph.h"
#include "data/batch.h"
#include "data/corpus.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "dist/dist.h"
#include "io/config.h"
#include "layers/model.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "trainer/memory.h"

typedef struct lb_trainer {
    lb_config cfg;            /* resolved (vocab size filled in) */
    char *config_yaml;        /* cfg as YAML, stored in checkpoints */
    lb_tokenizer *tok;
    /* The data: a corpus tokenized in memory (corpus, data), or token
     * shards mapped from disk (data.shards). Either way batches come from
     * train_tokens and val_tokens. */
    lb_corpus corpus;
    lb_dataset data;
    lb_shard_data shards;
    lb_tokens train_tokens, val_tokens;
    lb_batcher batcher;
    lb_model *model;
    lb_graph graph;
    lb_optim *opt;
    lb_schedule sched;
    int64_t step;             /* optimizer steps completed */
    int64_t tokens_seen;      /* training tokens consumed */
    int *inputs, *targets;    /* one micro-batch [B*T] */
    const lb_dist *dist;      /* the ranks training together (one without MPI) */
    lb_grad_sync *sync;       /* the gradient reduction across them; NULL for one rank */
    int *owner;               /* optim.zero on several ranks: each parameter's owner rank (opt holds only ours) */
    float *comm_residuals;    /* rank 0 while saving, compressed gradients: every rank's residuals (dist.h) */
    struct lb_distill *distill; /* train.distill: the teacher (trainer/distill.h); NULL when off */
    int inserted_sub_norms;   /* the init_from model had no sub-norms: they were inserted (distill.h) */
    lb_memory_need memory;    /* what the run needs, estimated before the model was allocated (memory.h) */
    int precision_auto;       /* train.gemm_precision was auto: a resumed run keeps its checkpoint's */
    int attn_precision_auto;  /* train.attention_precision was auto: the same */
} lb_trainer;

typedef struct lb_step_result {
    float loss;        /* mean over the micro-batches (and ranks) of the step */
    float lr, wd;      /* scheduled values used */
    float lambda;      /* gradual-quantization λ used */
    float grad_norm;
    int skipped;       /* gradients were not finite: nothing was updated */
    double seconds;    /* wall time of the step */
    double comm_seconds; /* several ranks: time spent waiting for the gradient reduction after the backward pass */
    size_t comm_bytes;   /* several ranks: gradient bytes this rank sent (ring volume, dist.h) */
    /* train.distill: the parts of the loss (mean over the micro-batches, unweighted) and the teacher's time */
    float ce, kl, hidden, relation;
    double teacher_seconds;
} lb_step_result;

/* Builds everything from `cfg` (a validated config): corpus and tokenizer
 * (or the shards data.shards names, with their tokenizer),
 * model (random init, or train.init_from for QAT fine-tuning), optimizer.
 * train.init_from names a lowbit checkpoint (a file or a run directory) or a
 * Hugging Face model directory (interop/hf_import.h); the model's shape
 * (sizes, norms, activation, SubLN, tied head, RoPE θ) and its tokenizer come
 * from there, its quantization (model.quant) from `cfg`, so a checkpoint of
 * any shape can be fine-tuned into b1.58. On failure the trainer is left freed. */
lb_status lb_trainer_init(lb_trainer *t, const lb_config *cfg);
void lb_trainer_free(lb_trainer *t);

/* What a run of `cfg` (model.vocab_size resolved) needs, by part
 * (trainer/memory.h), without allocating the model: `data` is what its data
 * already holds. lb_trainer_init computes it into t->memory and stops with
 * LB_ENOMEM, naming the parts and the limit, when it does not fit. */
lb_status lb_trainer_memory_need(const lb_config *cfg, size_t data, lb_memory_need *need);

/* Continues from a checkpoint file, or from the newest step_*.h5 of a
 * directory. The model shape must match the config's. */
lb_status lb_trainer_resume(lb_trainer *t, const char *path);

/* One optimizer step over train.grad_accum micro-batches. */
lb_status lb_trainer_step(lb_trainer *t, lb_step_result *r);

/* Mean validation loss over the fixed set of n_batches validation batches
 * (lb_val_batch; no gradients). The run loop passes eval.batches. */
lb_status lb_trainer_evaluate(lb_trainer *t, int n_batches, float *loss);

/* ZeRO-1 (t->owner): every rank's share of the optimizer state into *full,
 * an optimizer over all parameters, on rank 0 (NULL elsewhere, and without
 * sharding); all ranks call it. The run loop saves with *full in place of
 * t->opt, then frees it. */
lb_status lb_trainer_gather_optim(lb_trainer *t, lb_optim **full);
/* Compressed gradients (optim.comm) on several ranks: every rank calls it
 * before a save; rank 0 then holds all ranks' error-feedback residuals in
 * t->comm_residuals (the caller frees it) for the checkpoint. */
lb_status lb_trainer_gather_residuals(lb_trainer *t);

/* Writes checkpoint.dir/step_NNNNNNNN.h5 atomically and keeps the newest
 * checkpoint.keep_last; `path_out` (may be NULL) receives its path. */
lb_status lb_trainer_save(lb_trainer *t, char *path_out, size_t size);

/* The resolved config stored in a checkpoint (file or run directory). */
lb_status lb_load_checkpoint_config(const char *path, lb_config *cfg);

/* The optimizer steps a checkpoint had taken: train/step, 0 for a weights checkpoint. */
lb_status lb_load_checkpoint_step(const char *path, int64_t *step);

/* For `lowbit eval` and `lowbit sample`: the config, tokenizer and model
 * stored in a checkpoint (file or run directory). */
lb_status lb_load_checkpoint_model(const char *path, lb_config *cfg, lb_tokenizer **tok, lb_model **model);

#endif

/* The training loop as a library: everything `lowbit train` does, minus the
 * terminal. A trainer is built from a resolved config, steps, evaluates, and
 * saves/restores its whole state (model, optimizer, schedule position, data
 * RNG, tokenizer, config) in one HDF5 checkpoint, so that training N steps
 * equals training N/2, saving, resuming and training N/2 more, bit for bit
 * (with the same thread count).
 *
 * The checkpoint layout is state.h (save and resume are implemented in
 * state.c); run directories are rundir.h. */
#ifndef LOWBIT_TRAINER_TRAINER_H
#define LOWBIT_TRAINER_TRAINER_H

#include <stdint.h>
#include <stdio.h>

#include "autograd/graph.h"
#include "data/batch.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "layers/model.h"
#include "optim/optim.h"
#include "optim/schedule.h"

typedef struct lb_trainer {
    lb_config cfg;            /* resolved (vocab size filled in) */
    char *config_yaml;        /* cfg as YAML, stored in checkpoints */
    lb_tokenizer *tok;
    lb_corpus corpus;
    lb_dataset data;
    lb_batcher batcher;
    lb_model *model;
    lb_graph graph;
    lb_optim *opt;
    lb_schedule sched;
    int64_t step;             /* optimizer steps completed */
    int64_t tokens_seen;      /* training tokens consumed */
    int *inputs, *targets;    /* one micro-batch [B*T] */
    FILE *metrics;            /* JSON lines, or NULL */
} lb_trainer;

typedef struct lb_step_result {
    float loss;        /* mean over the micro-batches of the step */
    float lr, wd;      /* scheduled values used */
    float lambda;      /* gradual-quantization λ used */
    float grad_norm;
    int skipped;       /* gradients were not finite: nothing was updated */
    double seconds;    /* wall time of the step */
} lb_step_result;

/* Builds everything from `cfg` (a validated config): corpus, tokenizer,
 * model (random init, or train.init_from for QAT fine-tuning), optimizer.
 * On failure the trainer is left freed. */
lb_status lb_trainer_init(lb_trainer *t, const lb_config *cfg);
void lb_trainer_free(lb_trainer *t);

/* Continues from a checkpoint file, or from the newest step_*.h5 of a
 * directory. The model shape must match the config's. */
lb_status lb_trainer_resume(lb_trainer *t, const char *path);

/* One optimizer step over train.grad_accum micro-batches. */
lb_status lb_trainer_step(lb_trainer *t, lb_step_result *r);

/* Mean validation loss over eval.batches fixed batches (no gradients). */
lb_status lb_trainer_evaluate(lb_trainer *t, int n_batches, float *loss);

/* Writes checkpoint.dir/step_NNNNNNNN.h5 atomically and keeps the newest
 * checkpoint.keep_last; `path_out` (may be NULL) receives its path. */
lb_status lb_trainer_save(lb_trainer *t, char *path_out, size_t size);

/* Opens log.jsonl (creating its directory): truncated for a new run,
 * appended to for a resumed one. Nothing to do when log.jsonl is "". */
lb_status lb_trainer_open_metrics(lb_trainer *t);

/* Appends a JSON object (built from key/value pairs, see trainer.c) to the
 * metrics file when there is one. */
lb_status lb_trainer_log_step(lb_trainer *t, const lb_step_result *r, double tokens_per_s);
lb_status lb_trainer_log_eval(lb_trainer *t, float val_loss);

/* The resolved config stored in a checkpoint (file or run directory). */
lb_status lb_load_checkpoint_config(const char *path, lb_config *cfg);

/* For `lowbit eval` and `lowbit sample`: the config, tokenizer and model
 * stored in a checkpoint (file or run directory). */
lb_status lb_load_checkpoint_model(const char *path, lb_config *cfg, lb_tokenizer **tok, lb_model **model);

#endif

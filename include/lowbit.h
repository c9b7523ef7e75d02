/* lowbit.h: the public interface for programs that embed lowbit.
 *
 * lowbit trains transformer language models with quantization-aware and
 * BitNet (binary / ternary) weights on CPUs. A run is described by a YAML
 * config, the same one the `lowbit` command-line program reads (every key:
 * docs/config.md). This header is all an embedding program needs; nothing
 * else of lowbit's sources is installed.
 *
 *     lowbit_config *cfg = NULL;
 *     lowbit_trainer *t = NULL;
 *     if (lowbit_config_load_file("configs/bitnet-b158-tiny.yaml", &cfg) != LOWBIT_OK ||
 *         lowbit_config_set(cfg, "train.steps=50") != LOWBIT_OK ||
 *         lowbit_trainer_new(cfg, &t) != LOWBIT_OK) {
 *         fprintf(stderr, "%s\n", lowbit_errmsg());
 *         ...
 *     }
 *     for (int i = 0; i < 50; i++) {
 *         lowbit_step_result r;
 *         if (lowbit_trainer_step(t, &r) != LOWBIT_OK) ...;
 *         printf("step %lld: loss %.3f\n", (long long)r.step, r.loss);
 *     }
 *     lowbit_trainer_free(t);
 *     lowbit_config_free(cfg);
 *
 * A complete program: examples/embed_train.c.
 *
 * Conventions
 *   - A function that can fail returns a lowbit_status; LOWBIT_OK is 0. On
 *     failure it records a message for the calling thread (lowbit_errmsg())
 *     that names the file, key or tensor and what was expected, and leaves
 *     its output parameters unchanged. lowbit never exits or aborts on bad
 *     input.
 *   - Handles are opaque. Each one is created by a *_new or *_load function
 *     and released by its *_free function, which accepts NULL.
 *   - Memory lowbit returns through a char ** is released with lowbit_free().
 *   - A handle is used by one thread at a time; different handles may be
 *     used from different threads. Inside a call lowbit computes on all
 *     OpenMP threads (OMP_NUM_THREADS, or the config's train.threads, which
 *     sets the process-wide OpenMP thread count when a trainer is built).
 *   - Results are deterministic: a seed and a thread count fix every number.
 *   - Relative paths in a config (data.path, checkpoint.dir, log.jsonl) are
 *     relative to the working directory.
 *
 * The header is C99 and C++ compatible. Version macros: lowbit_version.h. */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "lowbit_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version and errors ---------------------------------------------------- */

/* The library's version, "MAJOR.MINOR.PATCH"; equal to LOWBIT_VERSION_STRING
 * when header and library come from the same build. */
const char *lowbit_version(void);

typedef enum lowbit_status {
    LOWBIT_OK = 0,
    LOWBIT_EINVAL = 1,      /* bad argument, wrong shape, unknown name */
    LOWBIT_ENOMEM = 2,      /* allocation failed */
    LOWBIT_EIO = 3,         /* the file system refused (open, read, write, rename) */
    LOWBIT_EFORMAT = 4,     /* a file is truncated, corrupt, foreign or of another version */
    LOWBIT_ECONFIG = 5,     /* a configuration is malformed or inconsistent */
    LOWBIT_ENUMERIC = 6,    /* NaN or infinity where finite numbers were required */
    LOWBIT_EINTERRUPTED = 7 /* stopped on request before finishing */
} lowbit_status;

/* The message of the last failure on the calling thread ("" when none). The
 * pointer stays valid until the thread's next lowbit call. */
const char *lowbit_errmsg(void);
/* The status of the last failure on the calling thread (LOWBIT_OK when none). */
lowbit_status lowbit_errcode(void);
/* A short description of a status: "configuration error", "i/o error", ... */
const char *lowbit_status_name(lowbit_status status);

/* Releases memory returned by lowbit (text, YAML). NULL is ignored. */
void lowbit_free(void *p);

/* ---- configs ------------------------------------------------------------- */

/* A training configuration: the documented defaults, then a YAML document,
 * then any number of "key=value" overrides. */
typedef struct lowbit_config lowbit_config;

/* Reads a YAML config file. LOWBIT_EIO when it cannot be read, LOWBIT_ECONFIG
 * when it is malformed (the message gives file:line:column and the key). The
 * run is named after the file (checkpoint.dir defaults to runs/<name>). */
lowbit_status lowbit_config_load_file(const char *path, lowbit_config **out);

/* The same from YAML text. `name` stands for the file in messages and names
 * the run (checkpoint.dir defaults to runs/<name without extension>). */
lowbit_status lowbit_config_load_string(const char *yaml, const char *name, lowbit_config **out);

/* The config stored in a checkpoint (a file, or the newest step_*.h5 of a run
 * directory), to build a trainer that continues, evaluates or samples it
 * (then lowbit_trainer_load_checkpoint). train.init_from is cleared: the
 * weights come from the checkpoint itself. */
lowbit_status lowbit_config_load_checkpoint(const char *path, lowbit_config **out);

/* Applies one override, written as on the command line after --set:
 * "train.steps=100", "model.quant.preset=b1", "data.paths=[a.txt, b.txt]".
 * On failure (LOWBIT_ECONFIG: unknown key, bad value) the config is unchanged. */
lowbit_status lowbit_config_set(lowbit_config *cfg, const char *assignment);

/* Checks the config as a whole (shapes, schedule); lowbit_trainer_new does it
 * too. Useful to report every problem before any data is read. */
lowbit_status lowbit_config_validate(const lowbit_config *cfg);

/* The resolved config (every key, defaults filled in) as YAML; loading that
 * text gives the same config. Release *yaml with lowbit_free(). */
lowbit_status lowbit_config_to_yaml(const lowbit_config *cfg, char **yaml);

void lowbit_config_free(lowbit_config *cfg);

/* ---- training ------------------------------------------------------------ */

/* A model with its data, optimizer and schedule, ready to train. */
typedef struct lowbit_trainer lowbit_trainer;

/* Validates `cfg`, then reads and tokenizes the corpus, builds the model
 * (random weights, or train.init_from's), the optimizer and the schedule.
 * The trainer keeps its own copy of the config: `cfg` may be freed. Nothing
 * is written to disk yet. */
lowbit_status lowbit_trainer_new(const lowbit_config *cfg, lowbit_trainer **out);

void lowbit_trainer_free(lowbit_trainer *t);

/* What one optimizer step did. */
typedef struct lowbit_step_result {
    int64_t step;         /* optimizer steps completed, this one included */
    float loss;           /* mean training loss over the step's micro-batches */
    float lr;             /* learning rate used */
    float weight_decay;   /* weight decay used */
    float quant_lambda;   /* gradual-quantization blend used (1: fully quantized) */
    float grad_norm;      /* global gradient norm before clipping */
    int skipped;          /* 1: gradients were not finite, nothing was updated */
    double seconds;       /* wall time of the step */
} lowbit_step_result;

/* One optimizer step over train.grad_accum micro-batches. `result` may be NULL.
 * It steps even past train.steps (which only the schedule and lowbit's run
 * loop look at; past it the learning rate stays at its final value). */
lowbit_status lowbit_trainer_step(lowbit_trainer *t, lowbit_step_result *result);

/* Mean loss over `n_batches` fixed validation batches (0: the config's
 * eval.batches), without gradients. The same trainer state gives the same
 * loss, bit for bit. */
lowbit_status lowbit_trainer_evaluate(lowbit_trainer *t, int n_batches, float *loss);

/* Where a trainer stands. */
typedef struct lowbit_trainer_info {
    int64_t step;         /* optimizer steps completed */
    int64_t steps;        /* the config's train.steps */
    int64_t tokens_seen;  /* training tokens consumed */
    size_t n_parameters;  /* trainable numbers (weights, norms, embeddings) */
    int vocab_size;       /* of the model */
} lowbit_trainer_info;

lowbit_status lowbit_trainer_get_info(const lowbit_trainer *t, lowbit_trainer_info *info);

/* Room for any path lowbit writes into a caller's buffer. */
#define LOWBIT_PATH_MAX 1024

/* ---- the run loop ---------------------------------------------------------- */

/* What lowbit_trainer_run reports to the caller's on_event, in this order:
 * START once; then per step STEP, EVAL when an evaluation ran, and
 * CHECKPOINT when one was written; STOP, then CHECKPOINT, when it stops. */
typedef enum lowbit_event_kind {
    LOWBIT_EVENT_START = 0,     /* before the first step */
    LOWBIT_EVENT_STEP = 1,      /* a step was taken: result */
    LOWBIT_EVENT_EVAL = 2,      /* an evaluation finished: val_loss */
    LOWBIT_EVENT_STOP = 3,      /* the stop flag was seen: stop; the checkpoint follows */
    LOWBIT_EVENT_CHECKPOINT = 4 /* a checkpoint was written: path, why */
} lowbit_event_kind;

typedef struct lowbit_event {
    lowbit_event_kind kind;
    int64_t step;                     /* optimizer steps completed */
    int64_t steps;                    /* the config's train.steps */
    int64_t tokens_seen;              /* training tokens consumed */
    const lowbit_step_result *result; /* STEP; NULL otherwise */
    float val_loss;                   /* EVAL */
    int stop;                         /* STOP: the flag's value */
    const char *path;                 /* CHECKPOINT: the file written */
    const char *why;                  /* CHECKPOINT: "periodic", "final" or "interrupted" */
} lowbit_event;

/* All zero (or NULL) is a plain run: no stop flag, no events. */
typedef struct lowbit_run_options {
    /* Nonzero: stop after the current step, with a checkpoint. Set it from a
     * signal handler (lowbit installs none) to make Ctrl-C save and stop. */
    const volatile sig_atomic_t *stop;
    /* Called on each event, on the calling thread; may be NULL. The event and
     * its pointers are valid during the call only. */
    void (*on_event)(const lowbit_event *event, void *ctx);
    void *ctx;
} lowbit_run_options;

typedef struct lowbit_run_report {
    int64_t start_step;               /* where the run began */
    int64_t steps;                    /* steps taken by this call */
    int64_t tokens;                   /* training tokens consumed by this call */
    double seconds;                   /* wall time from the first step to the end */
    float val_loss;                   /* the last evaluation's loss; NaN when none ran */
    int stop;                         /* the stop flag's value when the run stopped on it, else 0 */
    char checkpoint[LOWBIT_PATH_MAX]; /* the last checkpoint written ("" when none) */
} lowbit_run_report;

/* Trains from where the trainer stands to train.steps, as `lowbit train`
 * does: first checks that checkpoint.dir and log.jsonl can be written
 * (LOWBIT_ECONFIG naming the key and the path otherwise, before any step);
 * after each step a metrics line (log.jsonl); an evaluation every
 * eval.interval steps and at the last; a checkpoint every checkpoint.interval
 * steps and at the last. To continue a run, lowbit_trainer_load_checkpoint
 * first (metrics are then appended to). Returns LOWBIT_OK when train.steps is
 * reached (also when there was nothing to do), LOWBIT_EINTERRUPTED after the
 * checkpoint of a stop, another status on failure (checkpoints already written
 * stay). `options` and `report` may be NULL; `report` is filled in every case. */
lowbit_status lowbit_trainer_run(lowbit_trainer *t, const lowbit_run_options *options, lowbit_run_report *report);

/* ---- checkpoints --------------------------------------------------------- */

/* Writes the whole trainer state (config, model, optimizer state, step, data
 * position, tokenizer) to checkpoint.dir/step_NNNNNNNN.h5, creating the
 * directory. The file appears complete or not at all; then only the newest
 * checkpoint.keep_last are kept. `path` (may be NULL) receives the file's
 * path; `size` bytes, LOWBIT_PATH_MAX always suffice (LOWBIT_EINVAL before
 * anything is written when the buffer is too small). Format: docs/checkpoint.md. */
lowbit_status lowbit_trainer_save_checkpoint(lowbit_trainer *t, char *path, size_t size);

/* Restores a trainer's whole state from a checkpoint file, or from the newest
 * step_*.h5 of a run directory. The trainer must have been built from a
 * config of the same model, optimizer and data (lowbit_config_load_checkpoint
 * gives the stored one); training then continues bit for bit as if it had
 * never stopped (for the same thread count). A checkpoint that does not fit
 * the trainer (LOWBIT_EINVAL: a tensor of another shape) or is damaged
 * (LOWBIT_EFORMAT) is named with the tensor; the trainer may then hold part
 * of it and should be freed. */
lowbit_status lowbit_trainer_load_checkpoint(lowbit_trainer *t, const char *path);

/* ---- text generation ----------------------------------------------------- */

typedef struct lowbit_sample_params {
    int n_tokens;         /* tokens to generate, ≥ 1 */
    float temperature;    /* 0: greedy; otherwise softmax(logits / temperature) */
    int top_k;            /* only the k most likely tokens compete; 0: all */
    uint64_t seed;        /* the same seed gives the same text */
} lowbit_sample_params;

/* The defaults of `lowbit sample`: 200 tokens, temperature 0.8, top-k 40, seed 1. */
lowbit_sample_params lowbit_sample_default_params(void);

/* Generates params->n_tokens tokens after `prompt` (not empty; every character
 * must be in the tokenizer's vocabulary) with the trainer's current model.
 * `params` NULL means the defaults. *text receives only the generated text,
 * NUL-terminated; `len` (may be NULL) its length in bytes, which counts any
 * NUL bytes the model generated. Release *text with lowbit_free(). */
lowbit_status lowbit_trainer_generate(lowbit_trainer *t, const char *prompt, const lowbit_sample_params *params,
                                      char **text, size_t *len);

/* A trained model without its data and optimizer, for generation only. */
typedef struct lowbit_model lowbit_model;

/* The model and tokenizer of a checkpoint (a file, or the newest in a run
 * directory). Reads no corpus. */
lowbit_status lowbit_model_load(const char *checkpoint, lowbit_model **out);

/* As lowbit_trainer_generate; the same weights, prompt and params give the
 * same text from either. */
lowbit_status lowbit_model_generate(lowbit_model *m, const char *prompt, const lowbit_sample_params *params,
                                    char **text, size_t *len);

void lowbit_model_free(lowbit_model *m);

#ifdef __cplusplus
}
#endif

#endif

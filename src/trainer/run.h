/* The run loop: a built trainer trained to train.steps, with evaluation and
 * checkpoints at their intervals, metrics, resume, and a clean stop.
 *
 *   static volatile sig_atomic_t stop;              // the caller's handler sets it
 *   lb_run_options o = {.resume = dir, .stop = &stop, .on_event = show, .ctx = &ui};
 *   lb_run_report r;
 *   lb_status s = lb_run(&t, &o, &r);               // LB_EINTERRUPTED: stopped, saved
 *
 * In order, lb_run:
 *  1. checks that checkpoint.dir and log.jsonl can be written (lb_run_preflight),
 *  2. resumes from o->resume when given,
 *  3. opens the metrics file (appending when resumed) and reports LB_RUN_START,
 *  4. steps until train.steps; after each step: a metrics line and
 *     LB_RUN_STEP; an evaluation every eval.interval steps and at the last
 *     (a metrics line, LB_RUN_EVAL); then, if *o->stop is set, LB_RUN_STOP,
 *     a checkpoint ("interrupted") and a return with LB_EINTERRUPTED;
 *     otherwise a checkpoint every checkpoint.interval steps ("periodic") and
 *     at the last ("final"), each followed by LB_RUN_CHECKPOINT.
 * A failure returns at once with the message prefixed by what failed
 * ("training step", "evaluation", "saving a checkpoint"); checkpoints already
 * written stay. A metrics line that cannot be written is a warning.
 *
 * The library installs no signal handlers: the caller's handler sets the flag
 * and lb_run looks at it after every step, so a stop always leaves a
 * checkpoint of a whole step.
 *
 * Data parallelism (src/dist, docs/distributed.md): every rank calls lb_run;
 * ranks other than 0 set o->read_only and write nothing, and their caller
 * shows nothing; the stop flag is agreed on by all ranks (the largest value)
 * after every step, and a checkpoint's success is shared, so all ranks stop
 * at the same step; batches and the gradient reduction are the trainer's
 * (trainer.c). */
#ifndef LOWBIT_TRAINER_RUN_H
#define LOWBIT_TRAINER_RUN_H

#include <limits.h>
#include <signal.h>
#include <stdint.h>

#include "trainer/trainer.h"

typedef enum lb_run_event_kind {
    LB_RUN_START,      /* ready (resumed when asked), before the first step */
    LB_RUN_STEP,       /* a step was taken: result */
    LB_RUN_EVAL,       /* an evaluation finished: val_loss */
    LB_RUN_STOP,       /* the stop flag was seen: stop (its value); the checkpoint follows */
    LB_RUN_CHECKPOINT  /* a checkpoint was written: path, why */
} lb_run_event_kind;

typedef struct lb_run_event {
    lb_run_event_kind kind;
    const lb_trainer *trainer;    /* step, tokens_seen, cfg, ... as they are now */
    const lb_step_result *result; /* LB_RUN_STEP */
    float val_loss;               /* LB_RUN_EVAL */
    int stop;                     /* LB_RUN_STOP */
    const char *path;             /* LB_RUN_CHECKPOINT */
    const char *why;              /* LB_RUN_CHECKPOINT: "periodic", "final" or "interrupted" */
} lb_run_event;

typedef void (*lb_run_hook)(const lb_run_event *e, void *ctx);

/* All zero is a plain run: fresh start, no stop flag, no hook. */
typedef struct lb_run_options {
    const char *resume;                /* checkpoint file or run directory to continue from; NULL: fresh */
    const volatile sig_atomic_t *stop; /* nonzero: stop after the current step (NULL: never) */
    int read_only;                     /* 1: take every step and evaluation, write no checkpoint or metrics */
    lb_run_hook on_event;              /* progress display and the like; may be NULL */
    void *ctx;                         /* passed to on_event */
} lb_run_options;

typedef struct lb_run_report {
    int64_t start_step;        /* where this run began (after resuming) */
    int64_t steps;             /* steps taken by this call */
    int64_t tokens;            /* training tokens consumed by this call */
    double seconds;            /* wall time from the first step to the end */
    float val_loss;            /* the last evaluation's loss; NaN when none ran */
    int stop;                  /* the stop flag's value when the run stopped on it, else 0 */
    char checkpoint[PATH_MAX]; /* the last checkpoint written ("" when none) */
} lb_run_report;

/* Trains `t` as described above; `o` may be NULL. LB_OK when train.steps is
 * reached (also when there was nothing to do), LB_EINTERRUPTED after the
 * stop checkpoint, another status on failure. `r` is filled in every case. */
lb_status lb_run(lb_trainer *t, const lb_run_options *o, lb_run_report *r);

/* checkpoint.dir is created and writable, and so is log.jsonl (when not "")
 * without being changed; else LB_ECONFIG naming the key, the path and the
 * reason. lb_run calls it first; a caller may call it earlier, before
 * building the trainer, to fail faster. */
lb_status lb_run_preflight(const lb_config *c);

#endif

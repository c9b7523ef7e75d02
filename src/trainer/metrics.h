/* The metrics file: one JSON object per line (JSONL), appended as a run goes.
 *
 *   {"event":"step","step":12,"tokens":24576,"loss":3.91,"lr":0.0012,"wd":0.1,
 *    "grad_norm":1.7,"lambda":1.0,"skipped":false,"tokens_per_s":8123.4}
 *   {"event":"eval","step":100,"tokens":204800,"val_loss":2.53,"val_ppl":12.6}
 *
 * Every line is flushed as it is written, so the file can be followed while
 * the run goes on, and a stopped run leaves whole lines. */
#ifndef LOWBIT_TRAINER_METRICS_H
#define LOWBIT_TRAINER_METRICS_H

#include <stdio.h>

#include "trainer/trainer.h"

typedef struct lb_metrics {
    FILE *f;                          /* NULL: no metrics file */
    char path[LB_CONFIG_PATH_MAX];
} lb_metrics;

/* Opens PATH (its directory must exist): truncated for a new run, appended to
 * when `append` (a resumed run continues its history). */
lb_status lb_metrics_open(lb_metrics *m, const char *path, int append);
void lb_metrics_close(lb_metrics *m);

/* One line for a step (tokens_per_s: this session's training rate) or an
 * evaluation of `t` as it is now. Nothing happens without a file. */
lb_status lb_metrics_step(lb_metrics *m, const lb_trainer *t, const lb_step_result *r, double tokens_per_s);
lb_status lb_metrics_eval(lb_metrics *m, const lb_trainer *t, float val_loss);

#endif

/* Learning-rate and weight-decay schedules: pure functions of the step.
 *
 * Steps count optimizer updates from 1 (the same `step` lb_optim_step takes).
 * All kinds start with a linear warm-up, lr = peak_lr · step / warmup_steps
 * for step <= warmup_steps; after it, with progress
 *   p = (step - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1]:
 *   constant   lr = peak_lr
 *   linear     lr = peak_lr + (min_lr - peak_lr) · p
 *   cosine     lr = min_lr + (peak_lr - min_lr) · (1 + cos(π p)) / 2
 *   two_stage  BitNet b1.58's recipe: stage 1 holds peak_lr up to step
 *              T1 = floor(stage2_at · total_steps); stage 2 drops to stage2_lr
 *              and decays linearly to min_lr at total_steps:
 *                lr = stage2_lr + (min_lr - stage2_lr) · (step - T1) / (total_steps - T1)
 * Weight decay is `weight_decay` throughout, except for two_stage, where it
 * switches to `weight_decay_stage2` (0 in the recipe) after T1 as well. */
#ifndef LOWBIT_OPTIM_SCHEDULE_H
#define LOWBIT_OPTIM_SCHEDULE_H

#include <stdint.h>

#include "core/error.h"

typedef enum lb_sched_kind {
    LB_SCHED_CONSTANT = 0,
    LB_SCHED_LINEAR,
    LB_SCHED_COSINE,
    LB_SCHED_TWO_STAGE,
    LB_SCHED_COUNT
} lb_sched_kind;

typedef struct lb_schedule {
    lb_sched_kind kind;
    float peak_lr;
    float min_lr;               /* lr at total_steps (linear, cosine, two_stage) */
    int64_t warmup_steps;       /* 0: no warm-up */
    int64_t total_steps;
    float stage2_at;            /* two_stage: fraction of total_steps where stage 2 starts (0.5) */
    float stage2_lr;            /* two_stage: lr at the start of stage 2 */
    float weight_decay;         /* whole run, or stage 1 of two_stage (0.1) */
    float weight_decay_stage2;  /* two_stage: after T1 (0) */
} lb_schedule;

/* "constant", "linear", "cosine", "two_stage": the names of train.schedule. */
extern const char *const lb_sched_kind_names[LB_SCHED_COUNT];
lb_status lb_sched_kind_parse(const char *text, lb_sched_kind *out);

/* LB_ECONFIG with a message naming the field when the schedule is
 * inconsistent (negative rates, warm-up past the end, stage2_at outside (0, 1), ...). */
lb_status lb_schedule_check(const lb_schedule *s);

/* The step where stage 2 begins (two_stage); total_steps for other kinds. */
int64_t lb_schedule_stage2_step(const lb_schedule *s);

float lb_schedule_lr(const lb_schedule *s, int64_t step);
float lb_schedule_wd(const lb_schedule *s, int64_t step);

#endif

/* Learning-rate and weight-decay schedules (formulas in schedule.h). */
#include "optim/schedule.h"

#include <math.h>
#include <string.h>

const char *const lb_sched_kind_names[] = {
    [LB_SCHED_CONSTANT] = "constant", [LB_SCHED_LINEAR] = "linear", [LB_SCHED_COSINE] = "cosine",
    [LB_SCHED_TWO_STAGE] = "two_stage",
};
_Static_assert(sizeof lb_sched_kind_names / sizeof lb_sched_kind_names[0] == LB_SCHED_COUNT,
               "optim/schedule.c: one name per lb_sched_kind");

lb_status lb_sched_kind_parse(const char *text, lb_sched_kind *out) {
    for (int k = 0; k < LB_SCHED_COUNT; k++)
        if (text && strcmp(text, lb_sched_kind_names[k]) == 0) {
            *out = (lb_sched_kind)k;
            return LB_OK;
        }
    return lb_error(LB_ECONFIG, "schedule '%s': expected constant, linear, cosine or two_stage",
                    text ? text : "(null)");
}

lb_status lb_schedule_check(const lb_schedule *s) {
    if ((unsigned)s->kind >= LB_SCHED_COUNT) return lb_error(LB_ECONFIG, "schedule: unknown kind %d", (int)s->kind);
    if (!(s->peak_lr >= 0.0f) || !isfinite(s->peak_lr))
        return lb_error(LB_ECONFIG, "schedule: peak_lr must be a finite number >= 0, got %g", (double)s->peak_lr);
    if (!(s->min_lr >= 0.0f) || !isfinite(s->min_lr))
        return lb_error(LB_ECONFIG, "schedule: min_lr must be a finite number >= 0, got %g", (double)s->min_lr);
    if (s->total_steps < 1) return lb_error(LB_ECONFIG, "schedule: total_steps must be >= 1, got %lld", (long long)s->total_steps);
    if (s->warmup_steps < 0 || s->warmup_steps > s->total_steps)
        return lb_error(LB_ECONFIG, "schedule: warmup_steps must be in [0, total_steps = %lld], got %lld",
                        (long long)s->total_steps, (long long)s->warmup_steps);
    if (!(s->weight_decay >= 0.0f) || !(s->weight_decay_stage2 >= 0.0f))
        return lb_error(LB_ECONFIG, "schedule: weight decay must be >= 0");
    if (s->kind == LB_SCHED_TWO_STAGE) {
        if (!(s->stage2_at > 0.0f && s->stage2_at < 1.0f))
            return lb_error(LB_ECONFIG, "schedule: stage2_at must be in (0, 1), got %g", (double)s->stage2_at);
        if (!(s->stage2_lr >= 0.0f) || !isfinite(s->stage2_lr))
            return lb_error(LB_ECONFIG, "schedule: stage2_lr must be a finite number >= 0, got %g", (double)s->stage2_lr);
        if (lb_schedule_stage2_step(s) < s->warmup_steps)
            return lb_error(LB_ECONFIG, "schedule: stage 2 (step %lld) starts before warm-up ends (step %lld)",
                            (long long)lb_schedule_stage2_step(s), (long long)s->warmup_steps);
    }
    return LB_OK;
}

int64_t lb_schedule_stage2_step(const lb_schedule *s) {
    if (s->kind != LB_SCHED_TWO_STAGE) return s->total_steps;
    return (int64_t)floor((double)s->stage2_at * (double)s->total_steps);
}

float lb_schedule_lr(const lb_schedule *s, int64_t step) {
    double peak = s->peak_lr, lo = s->min_lr;
    if (step <= s->warmup_steps) /* also covers step <= 0 */
        return step <= 0 ? 0.0f : (float)(peak * (double)step / (double)s->warmup_steps);
    if (s->kind == LB_SCHED_TWO_STAGE) {
        int64_t t1 = lb_schedule_stage2_step(s);
        if (step <= t1) return (float)peak;
        double q = s->total_steps > t1 ? (double)(step - t1) / (double)(s->total_steps - t1) : 1.0;
        if (q > 1.0) q = 1.0;
        return (float)(s->stage2_lr + (lo - s->stage2_lr) * q);
    }
    int64_t span = s->total_steps - s->warmup_steps;
    double p = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (p > 1.0) p = 1.0;
    switch (s->kind) {
    case LB_SCHED_LINEAR: return (float)(peak + (lo - peak) * p);
    case LB_SCHED_COSINE: return (float)(lo + (peak - lo) * 0.5 * (1.0 + cos(M_PI * p)));
    default: return (float)peak;
    }
}

float lb_schedule_wd(const lb_schedule *s, int64_t step) {
    if (s->kind == LB_SCHED_TWO_STAGE && step > lb_schedule_stage2_step(s)) return s->weight_decay_stage2;
    return s->weight_decay;
}

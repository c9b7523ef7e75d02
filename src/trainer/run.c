/* The run loop (run.h). */
#include "trainer/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "trainer/metrics.h"
#include "trainer/rundir.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The current error again, as LB_ECONFIG under the key that named the path:
 * a place the run cannot write is a configuration error. */
static lb_status config_error(const char *key, const char *what, const char *path) {
    char reason[LB_ERRMSG_MAX];
    snprintf(reason, sizeof reason, "%s", lb_errmsg());
    return lb_error(LB_ECONFIG, "key '%s': cannot write %s to '%s': %s", key, what, path, reason);
}

lb_status lb_run_preflight(const lb_config *c) {
    if (lb_rundir_prepare(c->checkpoint.dir) != LB_OK)
        return config_error("checkpoint.dir", "checkpoints", c->checkpoint.dir);
    if (c->log.jsonl[0] && lb_rundir_check_file(c->log.jsonl) != LB_OK)
        return config_error("log.jsonl", "metrics", c->log.jsonl);
    return LB_OK;
}

static void emit(const lb_run_options *o, lb_run_event *e) {
    if (o->on_event) o->on_event(e, o->ctx);
}

/* Every rank reaches this point at the same step. With a sharded optimizer
 * state they gather it on rank 0; rank 0 writes (the others run read_only)
 * and all of them learn whether it succeeded, so a failed save stops every
 * rank. */
static lb_status save(lb_trainer *t, const lb_run_options *o, const char *why, lb_run_report *r) {
    lb_optim *shard = t->opt, *full;
    lb_status s = lb_trainer_gather_optim(t, &full); /* ZeRO-1: the whole state, on rank 0 */
    if (s == LB_OK) s = lb_trainer_gather_residuals(t); /* compressed gradients: every rank's residuals, on rank 0 */
    if (full) t->opt = full;
    if (s == LB_OK && !o->read_only) s = lb_trainer_save(t, r->checkpoint, sizeof r->checkpoint);
    t->opt = shard;
    if (full) lb_optim_free(full);
    free(t->comm_residuals);
    t->comm_residuals = NULL;
    int failed = s != LB_OK;
    lb_status shared = lb_dist_max_int(t->dist, &failed);
    if (s == LB_OK) s = shared;
    if (s == LB_OK && failed) s = lb_error(LB_EIO, "rank 0 could not write the checkpoint");
    if (s != LB_OK) {
        lb_error_prefix("saving a checkpoint");
        return lb_errcode();
    }
    if (o->read_only) return LB_OK;
    lb_run_event e = {.kind = LB_RUN_CHECKPOINT, .trainer = t, .path = r->checkpoint, .why = why};
    emit(o, &e);
    return LB_OK;
}

static int due(int64_t step, int interval) { return interval > 0 && step % interval == 0; }

/* The steps, from t->step to train.steps or a stop. */
static lb_status loop(lb_trainer *t, const lb_run_options *o, lb_metrics *metrics, lb_run_report *r) {
    const lb_config *c = &t->cfg;
    double t0 = now_seconds();
    int64_t tokens0 = t->tokens_seen;
    while (t->step < c->train.steps) {
        lb_step_result res;
        if (lb_trainer_step(t, &res) != LB_OK) {
            lb_error_prefix("training step");
            return lb_errcode();
        }
        r->steps++;
        r->tokens = t->tokens_seen - tokens0;
        r->seconds = now_seconds() - t0;
        if (lb_metrics_step(metrics, t, &res, (double)r->tokens / r->seconds) != LB_OK) lb_warn("%s", lb_errmsg());
        lb_run_event e = {.kind = LB_RUN_STEP, .trainer = t, .result = &res};
        emit(o, &e);

        int last = t->step == c->train.steps;
        if (last || due(t->step, c->eval.interval)) {
            if (lb_trainer_evaluate(t, c->eval.batches, &r->val_loss) != LB_OK) {
                lb_error_prefix("evaluation");
                return lb_errcode();
            }
            if (lb_metrics_eval(metrics, t, r->val_loss) != LB_OK) lb_warn("%s", lb_errmsg());
            lb_run_event ev = {.kind = LB_RUN_EVAL, .trainer = t, .val_loss = r->val_loss};
            emit(o, &ev);
        }
        /* A signal may reach the ranks at different steps: they agree on the
         * flag here, so all of them stop after the same step. */
        int stop = o->stop ? *o->stop : 0;
        if (lb_dist_max_int(t->dist, &stop) != LB_OK) {
            lb_error_prefix("training step %lld", (long long)t->step);
            return lb_errcode();
        }
        if (stop) {
            r->stop = stop;
            lb_run_event es = {.kind = LB_RUN_STOP, .trainer = t, .stop = r->stop};
            emit(o, &es);
            LB_TRY(save(t, o, "interrupted", r));
            r->seconds = now_seconds() - t0;
            return lb_error(LB_EINTERRUPTED, "stopped at step %lld", (long long)t->step);
        }
        if (last || due(t->step, c->checkpoint.interval)) LB_TRY(save(t, o, last ? "final" : "periodic", r));
        r->seconds = now_seconds() - t0;
    }
    return LB_OK;
}

lb_status lb_run(lb_trainer *t, const lb_run_options *o, lb_run_report *r) {
    static const lb_run_options plain;
    if (!o) o = &plain;
    memset(r, 0, sizeof *r);
    r->val_loss = NAN;
    r->start_step = t->step;
    const lb_config *c = &t->cfg;
    if (!o->read_only) LB_TRY(lb_run_preflight(c));
    if (o->resume) LB_TRY(lb_trainer_resume(t, o->resume));
    r->start_step = t->step;

    lb_metrics metrics = {0};
    if (!o->read_only && c->log.jsonl[0]) LB_TRY(lb_metrics_open(&metrics, c->log.jsonl, t->step > 0));
    lb_run_event e = {.kind = LB_RUN_START, .trainer = t};
    emit(o, &e);
    lb_status s = loop(t, o, &metrics, r);
    lb_metrics_close(&metrics);
    return s;
}

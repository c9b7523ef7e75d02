/* The JSONL metrics file (metrics.h). */
#include "trainer/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "trainer/distill.h"

lb_status lb_metrics_open(lb_metrics *m, const char *path, int append) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    m->f = fopen(path, append ? "a" : "w");
    if (!m->f) return lb_error(LB_EIO, "cannot open the metrics file '%s': %s", path, strerror(errno));
    return LB_OK;
}

void lb_metrics_close(lb_metrics *m) {
    if (m->f) fclose(m->f);
    m->f = NULL;
}

static lb_status write_line(lb_metrics *m, json_t *obj) {
    if (!obj) return lb_error(LB_ENOMEM, "metrics record");
    int rc = json_dumpf(obj, m->f, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(obj);
    if (rc != 0 || fputc('\n', m->f) == EOF || fflush(m->f) != 0)
        return lb_error(LB_EIO, "cannot write the metrics file '%s'", m->path);
    return LB_OK;
}

lb_status lb_metrics_step(lb_metrics *m, const lb_trainer *t, const lb_step_result *r, double tokens_per_s) {
    if (!m->f) return LB_OK;
    json_t *o = json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:b, s:f}", "event", "step", "step",
                          (json_int_t)t->step, "tokens", (json_int_t)t->tokens_seen, "loss", (double)r->loss, "lr",
                          (double)r->lr, "wd", (double)r->wd, "grad_norm", (double)r->grad_norm, "lambda",
                          (double)r->lambda, "skipped", r->skipped, "tokens_per_s", tokens_per_s);
    if (o && t->distill) { /* train.distill: the loss's parts and the teacher's forward time */
        json_object_set_new(o, "ce", json_real(r->ce));
        json_object_set_new(o, "kl", json_real(r->kl));
        if (t->cfg.train.distill.weight_hidden > 0.0f) json_object_set_new(o, "hidden", json_real(r->hidden));
        if (t->cfg.train.distill.weight_relation > 0.0f) json_object_set_new(o, "relation", json_real(r->relation));
        json_object_set_new(o, "step_s", json_real(r->seconds));
        json_object_set_new(o, "teacher_s", json_real(r->teacher_seconds));
        json_object_set_new(o, "teacher_bytes", json_integer((json_int_t)lb_distill_memory(t->distill)));
    }
    if (o && t->dist->size > 1) { /* data parallelism: the step's time and its exposed communication */
        json_object_set_new(o, "step_s", json_real(r->seconds));
        json_object_set_new(o, "comm_s", json_real(r->comm_seconds));
        json_object_set_new(o, "comm_bytes", json_integer((json_int_t)r->comm_bytes));
    }
    return write_line(m, o);
}

lb_status lb_metrics_eval(lb_metrics *m, const lb_trainer *t, float val_loss) {
    if (!m->f) return LB_OK;
    return write_line(m, json_pack("{s:s, s:I, s:I, s:f, s:f}", "event", "eval", "step", (json_int_t)t->step,
                                   "tokens", (json_int_t)t->tokens_seen, "val_loss", (double)val_loss, "val_ppl",
                                   exp(val_loss)));
}

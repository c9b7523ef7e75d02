/* The public interface (include/lowbit.h) over the internal modules.
 *
 * Each handle wraps the internal struct it stands for; each function checks
 * its arguments, calls the module that does the work and passes its status
 * and message through unchanged (the codes are the same numbers, asserted
 * below). Nothing here trains, reads or writes by itself. */
#include "lowbit.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/config.h"
#include "layers/sample.h"
#include "trainer/rundir.h"
#include "trainer/run.h"
#include "trainer/trainer.h"

static_assert(LOWBIT_OK == (int)LB_OK && LOWBIT_EINVAL == (int)LB_EINVAL && LOWBIT_ENOMEM == (int)LB_ENOMEM &&
                  LOWBIT_EIO == (int)LB_EIO && LOWBIT_EFORMAT == (int)LB_EFORMAT &&
                  LOWBIT_ECONFIG == (int)LB_ECONFIG && LOWBIT_ENUMERIC == (int)LB_ENUMERIC &&
                  LOWBIT_EINTERRUPTED == (int)LB_EINTERRUPTED,
              "lowbit_status and lb_status must give every code the same number");
static_assert(LOWBIT_PATH_MAX >= LB_CONFIG_PATH_MAX + 32, "LOWBIT_PATH_MAX must hold checkpoint.dir/step_N.h5");
static_assert(LOWBIT_EVENT_START == (int)LB_RUN_START && LOWBIT_EVENT_STEP == (int)LB_RUN_STEP &&
                  LOWBIT_EVENT_EVAL == (int)LB_RUN_EVAL && LOWBIT_EVENT_STOP == (int)LB_RUN_STOP &&
                  LOWBIT_EVENT_CHECKPOINT == (int)LB_RUN_CHECKPOINT,
              "lowbit_event_kind and lb_run_event_kind must give every event the same number");

struct lowbit_config {
    lb_config c;
};

struct lowbit_trainer {
    lb_trainer t;
};

struct lowbit_model {
    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *model;
    lb_graph graph; /* generation's scratch */
};

/* Every public entry point checks its pointers first; a NULL is the
 * caller's bug, reported like any other bad argument. */
#define REQUIRE(arg)                                                                              \
    do {                                                                                          \
        if (!(arg)) return (lowbit_status)lb_error(LB_EINVAL, "%s: '%s' is NULL", __func__, #arg); \
    } while (0)

/* LB_TRY for functions returning lowbit_status. */
#define TRY(expr)                                               \
    do {                                                        \
        lb_status try_s_ = (expr);                              \
        if (try_s_ != LB_OK) return (lowbit_status)try_s_;      \
    } while (0)

/* ---- version and errors ---------------------------------------------------- */

const char *lowbit_version(void) { return LOWBIT_VERSION_STRING; }
const char *lowbit_errmsg(void) { return lb_errmsg(); }
lowbit_status lowbit_errcode(void) { return (lowbit_status)lb_errcode(); }
const char *lowbit_status_name(lowbit_status status) { return lb_status_name((lb_status)status); }
void lowbit_free(void *p) { free(p); }

/* ---- configs ------------------------------------------------------------- */

static lowbit_config *alloc_config(void) {
    lowbit_config *cfg = malloc(sizeof *cfg);
    if (!cfg) lb_error(LB_ENOMEM, "a config");
    return cfg;
}

/* Hands out a config its loader filled, or frees it when the loader failed. */
static lowbit_status hand_out_config(lb_status s, lowbit_config *cfg, lowbit_config **out) {
    if (s != LB_OK) {
        free(cfg);
        return (lowbit_status)s;
    }
    *out = cfg;
    return LOWBIT_OK;
}

lowbit_status lowbit_config_load_file(const char *path, lowbit_config **out) {
    REQUIRE(path);
    REQUIRE(out);
    lowbit_config *cfg = alloc_config();
    if (!cfg) return LOWBIT_ENOMEM;
    return hand_out_config(lb_config_load_file(path, &cfg->c), cfg, out);
}

lowbit_status lowbit_config_load_string(const char *yaml, const char *name, lowbit_config **out) {
    REQUIRE(yaml);
    REQUIRE(name);
    REQUIRE(out);
    lowbit_config *cfg = alloc_config();
    if (!cfg) return LOWBIT_ENOMEM;
    return hand_out_config(lb_config_load_string(yaml, name, &cfg->c), cfg, out);
}

lowbit_status lowbit_config_load_checkpoint(const char *path, lowbit_config **out) {
    REQUIRE(path);
    REQUIRE(out);
    lowbit_config *cfg = alloc_config();
    if (!cfg) return LOWBIT_ENOMEM;
    lb_status s = lb_load_checkpoint_config(path, &cfg->c);
    if (s == LB_OK) cfg->c.train.init_from[0] = '\0';
    return hand_out_config(s, cfg, out);
}

lowbit_status lowbit_config_set(lowbit_config *cfg, const char *assignment) {
    REQUIRE(cfg);
    REQUIRE(assignment);
    return (lowbit_status)lb_config_set(&cfg->c, assignment);
}

lowbit_status lowbit_config_validate(const lowbit_config *cfg) {
    REQUIRE(cfg);
    return (lowbit_status)lb_config_validate(&cfg->c);
}

lowbit_status lowbit_config_to_yaml(const lowbit_config *cfg, char **yaml) {
    REQUIRE(cfg);
    REQUIRE(yaml);
    return (lowbit_status)lb_config_to_yaml(&cfg->c, yaml);
}

void lowbit_config_free(lowbit_config *cfg) { free(cfg); }

/* ---- training ------------------------------------------------------------ */

lowbit_status lowbit_trainer_new(const lowbit_config *cfg, lowbit_trainer **out) {
    REQUIRE(cfg);
    REQUIRE(out);
    TRY(lb_config_validate(&cfg->c));
    lowbit_trainer *t = malloc(sizeof *t);
    if (!t) return (lowbit_status)lb_error(LB_ENOMEM, "a trainer");
    lb_status s = lb_trainer_init(&t->t, &cfg->c); /* frees what it built on failure */
    if (s != LB_OK) {
        free(t);
        return (lowbit_status)s;
    }
    *out = t;
    return LOWBIT_OK;
}

void lowbit_trainer_free(lowbit_trainer *t) {
    if (!t) return;
    lb_trainer_free(&t->t);
    free(t);
}

static lowbit_step_result public_step_result(const lb_step_result *r, int64_t step) {
    lowbit_step_result p;
    p.step = step;
    p.loss = r->loss;
    p.lr = r->lr;
    p.weight_decay = r->wd;
    p.quant_lambda = r->lambda;
    p.grad_norm = r->grad_norm;
    p.skipped = r->skipped;
    p.seconds = r->seconds;
    return p;
}

lowbit_status lowbit_trainer_step(lowbit_trainer *t, lowbit_step_result *result) {
    REQUIRE(t);
    lb_step_result r;
    TRY(lb_trainer_step(&t->t, &r));
    if (result) *result = public_step_result(&r, t->t.step);
    return LOWBIT_OK;
}

/* lb_run's events, handed on as lowbit_events. */
static void forward_event(const lb_run_event *e, void *ctx) {
    const lowbit_run_options *o = ctx;
    lowbit_event pe;
    memset(&pe, 0, sizeof pe);
    pe.kind = (lowbit_event_kind)e->kind;
    pe.step = e->trainer->step;
    pe.steps = e->trainer->cfg.train.steps;
    pe.tokens_seen = e->trainer->tokens_seen;
    lowbit_step_result result;
    if (e->result) {
        result = public_step_result(e->result, e->trainer->step);
        pe.result = &result;
    }
    pe.val_loss = e->val_loss;
    pe.stop = e->stop;
    pe.path = e->path;
    pe.why = e->why;
    o->on_event(&pe, o->ctx);
}

lowbit_status lowbit_trainer_run(lowbit_trainer *t, const lowbit_run_options *options, lowbit_run_report *report) {
    REQUIRE(t);
    lb_run_options o;
    memset(&o, 0, sizeof o);
    if (options) {
        o.stop = options->stop;
        if (options->on_event) {
            o.on_event = forward_event;
            o.ctx = (void *)options;
        }
    }
    lb_run_report r;
    lb_status s = lb_run(&t->t, &o, &r);
    if (report) {
        report->start_step = r.start_step;
        report->steps = r.steps;
        report->tokens = r.tokens;
        report->seconds = r.seconds;
        report->val_loss = r.val_loss;
        report->stop = r.stop;
        /* Fits: a checkpoint path has at most LB_CONFIG_PATH_MAX + 32 bytes (asserted above). */
        size_t n = strnlen(r.checkpoint, sizeof report->checkpoint - 1);
        memcpy(report->checkpoint, r.checkpoint, n);
        report->checkpoint[n] = '\0';
    }
    return (lowbit_status)s;
}

lowbit_status lowbit_trainer_evaluate(lowbit_trainer *t, int n_batches, float *loss) {
    REQUIRE(t);
    REQUIRE(loss);
    if (n_batches < 0)
        return (lowbit_status)lb_error(LB_EINVAL, "%s: n_batches must be >= 0, got %d", __func__,
                                       n_batches);
    return (lowbit_status)lb_trainer_evaluate(&t->t, n_batches ? n_batches : t->t.cfg.eval.batches, loss);
}

lowbit_status lowbit_trainer_get_info(const lowbit_trainer *t, lowbit_trainer_info *info) {
    REQUIRE(t);
    REQUIRE(info);
    info->step = t->t.step;
    info->steps = t->t.cfg.train.steps;
    info->tokens_seen = t->t.tokens_seen;
    info->n_parameters = t->t.model->n_elements;
    info->vocab_size = t->t.cfg.model.vocab_size;
    return LOWBIT_OK;
}

/* ---- checkpoints --------------------------------------------------------- */

lowbit_status lowbit_trainer_save_checkpoint(lowbit_trainer *t, char *path, size_t size) {
    REQUIRE(t);
    char where[LOWBIT_PATH_MAX];
    if (path) {
        /* Refuse a short buffer before writing, not after. */
        TRY(lb_rundir_step_path(t->t.cfg.checkpoint.dir, t->t.step, where, sizeof where));
        if (strlen(where) >= size)
            return (lowbit_status)lb_error(LB_EINVAL,
                                           "%s: the path '%s' needs %zu bytes, the buffer has %zu",
                                           __func__, where, strlen(where) + 1, size);
    }
    TRY(lb_trainer_save(&t->t, where, sizeof where));
    if (path) memcpy(path, where, strlen(where) + 1);
    return LOWBIT_OK;
}

lowbit_status lowbit_trainer_load_checkpoint(lowbit_trainer *t, const char *path) {
    REQUIRE(t);
    REQUIRE(path);
    return (lowbit_status)lb_trainer_resume(&t->t, path);
}

/* ---- text generation ----------------------------------------------------- */

lowbit_sample_params lowbit_sample_default_params(void) {
    lowbit_sample_params p = {200, 0.8f, 40, 1};
    return p;
}

/* Encodes the prompt, samples after it and decodes only the new tokens. */
static lowbit_status generate(const char *fn, lb_model *m, lb_graph *g, const lb_tokenizer *tok, const char *prompt,
                              const lowbit_sample_params *params, char **text, size_t *len) {
    lowbit_sample_params p = params ? *params : lowbit_sample_default_params();
    if (p.n_tokens < 1)
        return (lowbit_status)lb_error(LB_EINVAL, "%s: n_tokens must be >= 1, got %d", fn, p.n_tokens);
    if (!(p.temperature >= 0.0f) || p.top_k < 0)
        return (lowbit_status)lb_error(LB_EINVAL, "%s: expected temperature >= 0 and top_k >= 0, got %g and %d",
                                       fn, (double)p.temperature, p.top_k);
    size_t n_prompt = 0, prompt_len = strlen(prompt);
    if (prompt_len == 0) return (lowbit_status)lb_error(LB_EINVAL, "%s: the prompt is empty", fn);
    int *ids = malloc((prompt_len + (size_t)p.n_tokens) * sizeof *ids);
    if (!ids) return (lowbit_status)lb_error(LB_ENOMEM, "%s: %d tokens", fn, p.n_tokens);
    lb_status s = lb_tokenizer_encode(tok, prompt, prompt_len, ids, &n_prompt);
    if (s != LB_OK) {
        lb_error_prefix("%s: the prompt", fn);
    } else {
        lb_rng rng;
        lb_rng_init(&rng, p.seed, LB_STREAM_SAMPLE);
        s = lb_generate(m, g, ids, (int)n_prompt, p.n_tokens, p.temperature, p.top_k, &rng, ids + n_prompt);
    }
    char *out = NULL;
    size_t out_len = 0;
    if (s == LB_OK && !(out = lb_tokenizer_decode(tok, ids + n_prompt, (size_t)p.n_tokens, &out_len)))
        s = lb_errcode();
    free(ids);
    if (s != LB_OK) return (lowbit_status)s;
    *text = out;
    if (len) *len = out_len;
    return LOWBIT_OK;
}

lowbit_status lowbit_trainer_generate(lowbit_trainer *t, const char *prompt, const lowbit_sample_params *params,
                                      char **text, size_t *len) {
    REQUIRE(t);
    REQUIRE(prompt);
    REQUIRE(text);
    return generate(__func__, t->t.model, &t->t.graph, t->t.tok, prompt, params, text, len);
}

lowbit_status lowbit_model_load(const char *checkpoint, lowbit_model **out) {
    REQUIRE(checkpoint);
    REQUIRE(out);
    lowbit_model *m = calloc(1, sizeof *m);
    if (!m) return (lowbit_status)lb_error(LB_ENOMEM, "a model");
    lb_status s = lb_load_checkpoint_model(checkpoint, &m->cfg, &m->tok, &m->model);
    if (s == LB_OK && (s = lb_graph_init(&m->graph, 0)) != LB_OK) {
        lb_model_free(m->model);
        lb_tokenizer_free(m->tok);
    }
    if (s != LB_OK) {
        free(m);
        return (lowbit_status)s;
    }
    *out = m;
    return LOWBIT_OK;
}

lowbit_status lowbit_model_generate(lowbit_model *m, const char *prompt, const lowbit_sample_params *params,
                                    char **text, size_t *len) {
    REQUIRE(m);
    REQUIRE(prompt);
    REQUIRE(text);
    return generate(__func__, m->model, &m->graph, m->tok, prompt, params, text, len);
}

void lowbit_model_free(lowbit_model *m) {
    if (!m) return;
    lb_graph_free(&m->graph);
    lb_model_free(m->model);
    lb_tokenizer_free(m->tok);
    free(m);
}

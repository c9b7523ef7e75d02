/* The trainer's checkpoint layout (state.h), and the trainer's functions on
 * checkpoint files (trainer.h): save, resume, and loading for eval/sample. */
#include "trainer/state.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "quant/qspec.h"
#include "trainer/distill.h"
#include "trainer/rundir.h"

/* The names of the layout, each written and read in one place below. */
static const char CONFIG[] = "config";
static const char MODEL[] = "model/";        /* + parameter name */
static const char OPTIM[] = "optim/";        /* + optimizer buffer name */
static const char STEP[] = "train/step";
static const char TOKENS_SEEN[] = "train/tokens_seen";
static const char DATA_RNG[] = "data/rng";
static const char TEACHER_FINGERPRINT[] = "distill/teacher_fingerprint"; /* train.distill only */
static const char VOCAB[] = "tokenizer/vocab";
static const char VOCAB_KIND[] = "kind";        /* attribute of tokenizer/vocab */
static const char QUANT[] = "quant";            /* attributes of model/<param> */
static const char ACT_QUANT[] = "act_quant";
static const char COMM_RESIDUAL[] = "dist/comm_residual/"; /* + optim.comm: [ranks × floats per rank] */

/* ---- model/ ------------------------------------------------------------------- */

/* The model part walks the parameter table (lb_model_params) and nothing else. */
lb_status lb_state_write_model(const lb_model *m, lb_ckpt *c) {
    char name[256], spec[64];
    int n;
    const lb_param *params = lb_model_params(m, &n);
    for (int i = 0; i < n; i++) {
        const lb_tensor *p = params[i].t;
        snprintf(name, sizeof name, "%s%s", MODEL, p->name);
        LB_TRY(lb_ckpt_put_f32(c, name, p->ndim, p->shape, p->data));
        lb_qspec_format(&params[i].weight, spec, sizeof spec);
        LB_TRY(lb_ckpt_set_attr_str(c, name, QUANT, spec));
        lb_qspec_format(&params[i].activation, spec, sizeof spec);
        LB_TRY(lb_ckpt_set_attr_str(c, name, ACT_QUANT, spec));
    }
    return LB_OK;
}

lb_status lb_state_read_model(lb_model *m, lb_ckpt *c) {
    char name[256];
    int n;
    const lb_param *params = lb_model_params(m, &n);
    for (int i = 0; i < n; i++) {
        lb_tensor *p = params[i].t;
        snprintf(name, sizeof name, "%s%s", MODEL, p->name);
        LB_TRY(lb_ckpt_get_f32(c, name, p->ndim, p->shape, p->data));
        size_t bad = lb_find_nonfinite(p->data, p->n);
        if (bad)
            return lb_error(LB_EFORMAT, "%s: tensor '%s' holds a non-finite value at element %zu", lb_ckpt_path(c),
                            name, bad - 1);
    }
    return LB_OK;
}

/* ---- optim/ ------------------------------------------------------------------- */

static lb_status write_optim(const lb_optim *o, lb_ckpt *c) {
    char name[256];
    int n_buf;
    const lb_state_buffer *bufs = lb_optim_buffers(o, &n_buf);
    for (int i = 0; i < n_buf; i++) {
        snprintf(name, sizeof name, "%s%s", OPTIM, bufs[i].name);
        LB_TRY(lb_ckpt_put(c, name, bufs[i].dtype, bufs[i].ndim, bufs[i].shape, bufs[i].data));
    }
    return LB_OK;
}

static lb_status read_optim(lb_optim *o, lb_ckpt *c) {
    char name[256];
    int n_buf;
    /* The buffers are the optimizer's own: reading into them is what they are for. */
    lb_state_buffer *bufs = (lb_state_buffer *)lb_optim_buffers(o, &n_buf);
    for (int i = 0; i < n_buf; i++) {
        snprintf(name, sizeof name, "%s%s", OPTIM, bufs[i].name);
        if (!lb_ckpt_has(c, name))
            return lb_error(LB_EFORMAT,
                            "no optimizer state '%s' (was the checkpoint written with another optim.type or "
                            "optim.state than the config's?)",
                            name);
        LB_TRY(lb_ckpt_get(c, name, bufs[i].dtype, bufs[i].ndim, bufs[i].shape, bufs[i].data));
        /* A NaN in a moment would turn every weight it touches into NaN at the next update. */
        size_t bad = bufs[i].dtype == LB_DT_F32 ? lb_find_nonfinite(bufs[i].data, bufs[i].n) : 0;
        if (bad)
            return lb_error(LB_EFORMAT, "%s: optimizer state '%s' holds a non-finite value at element %zu",
                            lb_ckpt_path(c), name, bad - 1);
    }
    return lb_optim_state_loaded(o);
}

/* ---- train/, data/ ------------------------------------------------------------- */

static lb_status write_counters(const lb_trainer *t, lb_ckpt *c) {
    int one = 1, three = 3;
    int64_t step = t->step, tokens = t->tokens_seen;
    lb_rng r = lb_batcher_state(&t->batcher);
    int64_t rng[3] = {(int64_t)r.seed, (int64_t)r.stream, (int64_t)r.pos};
    LB_TRY(lb_ckpt_put_i64(c, STEP, 1, &one, &step));
    LB_TRY(lb_ckpt_put_i64(c, TOKENS_SEEN, 1, &one, &tokens));
    return lb_ckpt_put_i64(c, DATA_RNG, 1, &three, rng);
}

static lb_status read_counters(lb_trainer *t, lb_ckpt *c) {
    int one = 1, three = 3;
    int64_t step, tokens, rng[3];
    LB_TRY(lb_ckpt_get_i64(c, STEP, 1, &one, &step));
    LB_TRY(lb_ckpt_get_i64(c, TOKENS_SEEN, 1, &one, &tokens));
    LB_TRY(lb_ckpt_get_i64(c, DATA_RNG, 1, &three, rng));
    if (step < 0 || tokens < 0) return lb_error(LB_EFORMAT, "%s or %s is negative", STEP, TOKENS_SEEN);
    lb_rng r = {(uint64_t)rng[0], (uint64_t)rng[1], (uint64_t)rng[2]};
    LB_TRY(lb_batcher_restore(&t->batcher, r));
    t->step = step;
    t->tokens_seen = tokens;
    return LB_OK;
}

/* ---- tokenizer/ ----------------------------------------------------------------- */

lb_status lb_state_write_tokenizer(const lb_tokenizer *tok, lb_ckpt *c) {
    size_t n;
    uint8_t *blob = lb_tokenizer_to_bytes(tok, &n);
    if (!blob) return lb_errcode();
    int shape = (int)n;
    lb_status s = lb_ckpt_put_u8(c, VOCAB, 1, &shape, blob);
    free(blob);
    LB_TRY(s);
    return lb_ckpt_set_attr_str(c, VOCAB, VOCAB_KIND, lb_tokenizer_kind_name(tok->kind));
}

/* The stored tokenizer's bytes, malloc'd. */
static lb_status read_vocab_bytes(lb_ckpt *c, uint8_t **out, size_t *n) {
    *out = NULL;
    int nd, shape[LB_CKPT_MAX_DIMS];
    LB_TRY(lb_ckpt_shape(c, VOCAB, &nd, shape));
    if (nd != 1) return lb_error(LB_EFORMAT, "tensor '%s': expected 1 dimension, found %d", VOCAB, nd);
    uint8_t *bytes = malloc((size_t)shape[0] + 1);
    if (!bytes) return lb_error(LB_ENOMEM, "tokenizer");
    lb_status s = lb_ckpt_get_u8(c, VOCAB, 1, shape, bytes);
    if (s != LB_OK) {
        free(bytes);
        return s;
    }
    *out = bytes;
    *n = (size_t)shape[0];
    return LB_OK;
}

lb_status lb_state_read_tokenizer(lb_ckpt *c, lb_tokenizer **tok) {
    uint8_t *bytes;
    size_t n = 0;
    *tok = NULL;
    LB_TRY(read_vocab_bytes(c, &bytes, &n));
    *tok = lb_tokenizer_from_bytes(bytes, n);
    free(bytes);
    return *tok ? LB_OK : lb_errcode();
}

/* The data must tokenize as it did: a changed corpus changes a char vocabulary. */
static lb_status check_tokenizer(const lb_tokenizer *tok, lb_ckpt *c) {
    size_t n_mine = 0, n_theirs = 0;
    uint8_t *theirs;
    LB_TRY(read_vocab_bytes(c, &theirs, &n_theirs));
    uint8_t *mine = lb_tokenizer_to_bytes(tok, &n_mine);
    lb_status s = LB_OK;
    if (!mine) s = lb_errcode();
    else if (n_mine != n_theirs || memcmp(mine, theirs, n_mine) != 0)
        s = lb_error(LB_EFORMAT, "the tokenizer in the checkpoint differs from the one built from data.path "
                                 "(has the corpus changed?)");
    free(mine);
    free(theirs);
    return s;
}

/* ---- config ------------------------------------------------------------------------ */

lb_status lb_state_read_config(lb_ckpt *c, lb_config *cfg) {
    char *yaml = NULL;
    lb_status s = lb_ckpt_get_string(c, CONFIG, &yaml);
    if (s == LB_OK) s = lb_config_load_string(yaml, lb_ckpt_path(c), cfg);
    free(yaml);
    return s;
}

/* ---- dist/ ---------------------------------------------------------------------------- */

/* Error feedback's residuals (compressed gradients on several ranks): each
 * rank's row, written by rank 0 after lb_trainer_gather_residuals. */
static lb_status write_residuals(const lb_trainer *t, lb_ckpt *c) {
    size_t len = lb_grad_sync_residual_len(t->sync);
    if (!t->comm_residuals || len == 0) return LB_OK;
    if (len > INT_MAX) return lb_error(LB_EINVAL, "error feedback: %zu residuals per rank, too many for one dataset", len);
    char name[64];
    snprintf(name, sizeof name, "%s%s", COMM_RESIDUAL, lb_comm_format_names[t->cfg.optim.comm]);
    int shape[2] = {t->dist->size, (int)len};
    return lb_ckpt_put_f32(c, name, 2, shape, t->comm_residuals);
}

/* Each rank takes its row back when the checkpoint was written by as many
 * ranks with the same format; otherwise the residuals start at zero. */
static lb_status read_residuals(lb_trainer *t, lb_ckpt *c) {
    size_t len = lb_grad_sync_residual_len(t->sync);
    if (len == 0) return LB_OK;
    const char *format = lb_comm_format_names[t->cfg.optim.comm];
    char name[64];
    snprintf(name, sizeof name, "%s%s", COMM_RESIDUAL, format);
    int ndim = 0, shape[LB_CKPT_MAX_DIMS];
    if (!lb_ckpt_has(c, name) || lb_ckpt_shape(c, name, &ndim, shape) != LB_OK || ndim != 2 ||
        shape[0] != t->dist->size || (size_t)shape[1] != len) {
        if (t->dist->rank == 0)
            lb_warn("%s: no error-feedback residuals of %d ranks with %s gradients: they start at zero",
                    lb_ckpt_path(c), t->dist->size, format);
        return LB_OK;
    }
    float *all = malloc((size_t)shape[0] * len * sizeof *all);
    if (!all) return lb_error(LB_ENOMEM, "%s: reading '%s'", lb_ckpt_path(c), name);
    lb_status s = lb_ckpt_get_f32(c, name, 2, shape, all);
    if (s == LB_OK) lb_grad_sync_set_residuals(t->sync, all + (size_t)t->dist->rank * len);
    free(all);
    return s;
}

/* ---- distill/ ------------------------------------------------------------------------ */

/* The teacher is reloaded from its path when a run resumes: its fingerprint
 * tells whether it is still the one the run was distilling from. */
static lb_status write_teacher(const lb_trainer *t, lb_ckpt *c) {
    if (!t->distill) return LB_OK;
    int one = 1;
    int64_t fp = (int64_t)t->distill->fingerprint;
    return lb_ckpt_put_i64(c, TEACHER_FINGERPRINT, 1, &one, &fp);
}

static lb_status check_teacher(const lb_trainer *t, lb_ckpt *c) {
    if (!t->distill || !lb_ckpt_has(c, TEACHER_FINGERPRINT)) return LB_OK; /* a run that did not distill before */
    int one = 1;
    int64_t fp;
    LB_TRY(lb_ckpt_get_i64(c, TEACHER_FINGERPRINT, 1, &one, &fp));
    if ((uint64_t)fp != t->distill->fingerprint)
        return lb_error(LB_EFORMAT, "the teacher '%s' is not the one this run was distilling from (its weights "
                        "changed since the checkpoint was written)", t->distill->path);
    return LB_OK;
}

/* ---- the whole state ----------------------------------------------------------------- */

lb_status lb_state_write(const lb_trainer *t, lb_ckpt *c) {
    LB_TRY(lb_ckpt_put_string(c, CONFIG, t->config_yaml));
    LB_TRY(lb_state_write_model(t->model, c));
    LB_TRY(write_optim(t->opt, c));
    LB_TRY(write_counters(t, c));
    LB_TRY(write_residuals(t, c));
    LB_TRY(write_teacher(t, c));
    return lb_state_write_tokenizer(t->tok, c);
}

lb_status lb_state_write_weights(const char *config_yaml, const lb_model *m, const lb_tokenizer *tok, lb_ckpt *c) {
    LB_TRY(lb_ckpt_put_string(c, CONFIG, config_yaml));
    LB_TRY(lb_state_write_model(m, c));
    return lb_state_write_tokenizer(tok, c);
}

lb_status lb_state_read(lb_trainer *t, lb_ckpt *c) {
    LB_TRY(lb_state_read_model(t->model, c));
    LB_TRY(read_optim(t->opt, c));
    LB_TRY(check_tokenizer(t->tok, c));
    LB_TRY(check_teacher(t, c));
    LB_TRY(read_counters(t, c));
    return read_residuals(t, c);
}

/* ---- files (trainer.h) ------------------------------------------------------------------ */

/* An upper bound of the bytes lb_state_write puts in a file: the data, and per
 * dataset its HDF5 object header, chunk index and checksums (~0.5 KiB measured on a 2-layer model). */
static uint64_t state_bytes(const lb_trainer *t) {
    enum { PER_DATASET = 2048, PER_FILE = 32768 };
    int n_params, n_buffers;
    const lb_param *params = lb_model_params(t->model, &n_params);
    const lb_state_buffer *bufs = lb_optim_buffers(t->opt, &n_buffers);
    size_t tok_bytes = 0;
    free(lb_tokenizer_to_bytes(t->tok, &tok_bytes));
    uint64_t bytes = PER_FILE + strlen(t->config_yaml) + tok_bytes + 4 * (uint64_t)PER_DATASET;
    for (int i = 0; i < n_params; i++) bytes += params[i].t->n * sizeof(float) + PER_DATASET;
    for (int i = 0; i < n_buffers; i++) bytes += lb_dtype_row_bytes(bufs[i].dtype, bufs[i].n) + PER_DATASET;
    if (t->comm_residuals) /* write_residuals: every rank's row */
        bytes += (uint64_t)t->dist->size * lb_grad_sync_residual_len(t->sync) * sizeof(float) + PER_DATASET;
    return bytes;
}

lb_status lb_trainer_save(lb_trainer *t, char *path_out, size_t size) {
    const lb_ckpt_config *k = &t->cfg.checkpoint;
    char path[PATH_MAX];
    LB_TRY(lb_rundir_prepare(k->dir));
    LB_TRY(lb_rundir_step_path(k->dir, t->step, path, sizeof path));
    if (lb_rundir_reserve(k->dir, state_bytes(t)) != LB_OK) {
        lb_error_prefix("writing checkpoint '%s'", path);
        return lb_errcode();
    }
    lb_ckpt *c;
    LB_TRY(lb_ckpt_create(path, &c));
    lb_status s = lb_state_write(t, c);
    if (s != LB_OK) {
        lb_ckpt_abort(c);
        lb_error_prefix("writing checkpoint '%s'", path);
        return s;
    }
    LB_TRY(lb_ckpt_commit(c));
    LB_TRY(lb_rundir_prune(k->dir, k->keep_last));
    if (path_out) snprintf(path_out, size, "%s", path);
    return LB_OK;
}

/* Opens the checkpoint a user named: a file, or a run directory's newest. */
static lb_status open_named(const char *path, char file[PATH_MAX], lb_ckpt **c) {
    LB_TRY(lb_rundir_resolve(path, file, PATH_MAX));
    return lb_ckpt_open(file, c);
}

/* train.gemm_precision and train.attention_precision auto continue a run at
 * the precisions it ran at: its checkpoint's config names them (fp32 or
 * bf16). A config stored before a key existed reads back as its default,
 * auto: before train.gemm_precision, the run was at fp32; before
 * train.attention_precision, attention was at the other products' precision. */
static lb_status continue_precision(lb_trainer *t, lb_ckpt *c) {
    lb_config stored;
    LB_TRY(lb_state_read_config(c, &stored));
    const lb_gemm_precision sp = stored.train.gemm_precision, sa = stored.train.attention_precision;
    const lb_gemm_precision gemm = sp == LB_PRECISION_AUTO ? LB_PRECISION_FP32 : sp;
    const lb_gemm_precision attn = sa == LB_PRECISION_AUTO ? gemm : sa;
    lb_train_config *tc = &t->cfg.train;
    const lb_gemm_precision was_gemm = tc->gemm_precision, was_attn = tc->attention_precision;
    if (t->precision_auto) tc->gemm_precision = gemm;
    if (t->attn_precision_auto) tc->attention_precision = attn;
    if (tc->gemm_precision == was_gemm && tc->attention_precision == was_attn) return LB_OK;
    t->graph.precision = tc->gemm_precision;
    t->graph.attn_precision = tc->attention_precision;
    char *yaml = NULL;
    LB_TRY(lb_config_to_yaml(&t->cfg, &yaml));
    free(t->config_yaml);
    t->config_yaml = yaml;
    return LB_OK;
}

lb_status lb_trainer_resume(lb_trainer *t, const char *path) {
    char file[PATH_MAX];
    lb_ckpt *c;
    LB_TRY(open_named(path, file, &c));
    lb_status s = lb_state_read(t, c);
    if (s == LB_OK && (t->precision_auto || t->attn_precision_auto)) s = continue_precision(t, c);
    lb_ckpt_close(c);
    if (s != LB_OK) lb_error_prefix("resuming from '%s'", file);
    return s;
}

lb_status lb_load_checkpoint_config(const char *path, lb_config *cfg) {
    char file[PATH_MAX];
    lb_ckpt *c;
    LB_TRY(open_named(path, file, &c));
    lb_status s = lb_state_read_config(c, cfg);
    lb_ckpt_close(c);
    if (s != LB_OK) lb_error_prefix("checkpoint '%s'", file);
    return s;
}

lb_status lb_load_checkpoint_step(const char *path, int64_t *step) {
    char file[PATH_MAX];
    lb_ckpt *c;
    *step = 0;
    LB_TRY(open_named(path, file, &c));
    int one = 1;
    lb_status s = lb_ckpt_has(c, STEP) ? lb_ckpt_get_i64(c, STEP, 1, &one, step) : LB_OK;
    lb_ckpt_close(c);
    if (s != LB_OK) lb_error_prefix("checkpoint '%s'", file);
    return s;
}

/* The model of `mc` could not be allocated: the message gains what it
 * needs in all (lb_model_create makes weights and gradients). */
static lb_status model_need(const lb_model_config *mc) {
    lb_status s = lb_errcode();
    lb_model *shape = s == LB_ENOMEM ? lb_model_shape(mc) : NULL;
    if (!shape) return s;
    lb_memory_need need = {.parameters = shape->n_elements * sizeof(float),
                           .gradients = shape->n_elements * sizeof(float)};
    lb_model_free(shape);
    lb_memory_need_sum(&need);
    char msg[1024], total[32], limit[96] = "";
    snprintf(msg, sizeof msg, "%s", lb_errmsg());
    lb_memory_size_str(need.total, total, sizeof total);
    lb_memory_limit l = lb_memory_limit_now();
    if (l.known) {
        char lim[32];
        lb_memory_size_str(l.limit, lim, sizeof lim);
        snprintf(limit, sizeof limit, "; %s allows %s", l.what, lim);
    }
    return lb_error(s, "%s: loading the model needs about %s, weights and gradients, before any activation%s", msg,
                    total, limit);
}

lb_status lb_load_checkpoint_model(const char *path, lb_config *cfg, lb_tokenizer **tok, lb_model **model) {
    char file[PATH_MAX];
    *tok = NULL;
    *model = NULL;
    lb_ckpt *c;
    LB_TRY(open_named(path, file, &c));
    lb_status s = lb_state_read_config(c, cfg);
    if (s == LB_OK) s = lb_state_read_tokenizer(c, tok);
    if (s == LB_OK && !(*model = lb_model_create(&cfg->model, cfg->train.seed))) s = model_need(&cfg->model);
    if (s == LB_OK) s = lb_state_read_model(*model, c);
    if (s == LB_OK) (*model)->sample_vocab = (*tok)->vocab_size;
    lb_ckpt_close(c);
    if (s != LB_OK) {
        if (*model) lb_model_free(*model);
        if (*tok) lb_tokenizer_free(*tok);
        *model = NULL;
        *tok = NULL;
        lb_error_prefix("checkpoint '%s'", file);
    }
    return s;
}

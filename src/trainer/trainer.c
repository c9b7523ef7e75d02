#include "trainer/trainer.h"

#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "interop/hf_import.h"
#include "trainer/distill.h"
#include "trainer/rundir.h"
#include "trainer/state.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- building ------------------------------------------------------------ */

static lb_status load_corpus(lb_trainer *t) {
    const lb_data_config *d = &t->cfg.data;
    if (d->n_paths > 0) {
        const char *paths[LB_CONFIG_MAX_PATHS];
        for (int i = 0; i < d->n_paths; i++) paths[i] = d->paths[i];
        return lb_corpus_load(&t->corpus, paths, d->n_paths);
    }
    return lb_corpus_load_path(&t->corpus, d->path);
}

/* The data of data.shards: mapped shards and their tokenizer, which the
 * trainer takes over. */
static lb_status open_shards(lb_trainer *t) {
    const lb_data_config *d = &t->cfg.data;
    lb_tokenizer_options o = {.kind = d->tokenizer, .vocab_size = d->vocab_size, .path = d->tokenizer_path};
    LB_TRY(lb_shard_data_open(&t->shards, d->shards, d->format, &o));
    t->tok = t->shards.tok;
    t->shards.tok = NULL;
    t->train_tokens = t->shards.train.tokens;
    t->val_tokens = t->shards.val.tokens;
    return LB_OK;
}

/* data.tokenizer: byte, char (built from the corpus), bpe (trained on it) or
 * hf (a tokenizer.json), as the data module builds them. */
static lb_status make_tokenizer(lb_trainer *t) {
    const lb_data_config *d = &t->cfg.data;
    lb_tokenizer_options o = {.kind = d->tokenizer, .vocab_size = d->vocab_size, .path = d->tokenizer_path};
    t->tok = lb_tokenizer_for_corpus(&o, &t->corpus);
    return t->tok ? LB_OK : lb_errcode();
}

static lb_optim_config optim_config_from(const lb_config *c) {
    lb_optim_config o = lb_optim_config_default(c->optim.type);
    o.beta1 = c->optim.beta1;
    o.beta2 = c->optim.beta2;
    o.eps = c->optim.eps;
    o.momentum = c->optim.momentum;
    o.clip_norm = c->train.grad_clip;
    o.accum_steps = c->train.grad_accum;
    o.grad_precision = c->optim.grad;
    o.loss_scale_dynamic = c->optim.grad == LB_GRAD_FP8;
    o.seed = c->train.seed;
    /* groups 0 "decay" and 1 "no_decay", as in lb_optim_config_default */
    o.groups[0].state = c->optim.decay.state;
    o.groups[0].lr_scale = c->optim.decay.lr_scale;
    o.groups[1].state = c->optim.no_decay.state;
    o.groups[1].lr_scale = c->optim.no_decay.lr_scale;
    return o;
}

static lb_schedule schedule_from(const lb_config *c) {
    const lb_train_config *tr = &c->train;
    lb_schedule s = {0};
    s.kind = tr->schedule;
    s.peak_lr = tr->lr;
    s.min_lr = tr->min_lr;
    s.warmup_steps = tr->warmup_steps;
    s.total_steps = tr->steps;
    s.stage2_at = tr->decay_at;
    s.stage2_lr = tr->lr * tr->lr_after;
    s.weight_decay = tr->weight_decay;
    s.weight_decay_stage2 = tr->schedule == LB_SCHED_TWO_STAGE ? tr->weight_decay_stage2 : tr->weight_decay;
    return s;
}

/* Optimizer group of a parameter: 1 "no_decay", 0 "decay". */
static int param_group(const lb_config *c, const lb_param *p) {
    return c->optim.no_decay_on_norms_and_embeddings && p->no_decay ? 1 : 0;
}

/* An optimizer over the parameters `rank` owns (all of them when owner is
 * NULL), each keeping its index in the whole list for stochastic rounding. */
static lb_optim *optimizer_over(const lb_trainer *t, const int *owner, int rank) {
    lb_optim_config oc = optim_config_from(&t->cfg);
    lb_model *m = t->model;
    int *groups = malloc((size_t)m->n_params * sizeof *groups);
    int *ids = malloc((size_t)m->n_params * sizeof *ids);
    lb_tensor **params = malloc((size_t)m->n_params * sizeof *params);
    lb_optim *o = NULL;
    if (!groups || !ids || !params) {
        lb_error(LB_ENOMEM, "optimizer groups");
        goto done;
    }
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (owner && owner[i] != rank) continue;
        groups[n] = param_group(&t->cfg, &m->params[i]);
        params[n] = m->param_list[i];
        ids[n++] = i;
    }
    if (n == 0) {
        lb_error(LB_ECONFIG, "key 'optim.zero': rank %d owns no parameter tensor (%d tensors for %d ranks)", rank,
                 m->n_params, t->dist->size);
        goto done;
    }
    if ((o = lb_optim_create(&oc, params, groups, n))) lb_optim_set_param_ids(o, ids);
done:
    free(groups);
    free(ids);
    free(params);
    return o;
}

/* The optimizer, and with several ranks the gradient reduction: over all
 * parameters, or with optim.zero (ZeRO-1) over this rank's share of them. */
static lb_status make_optimizer(lb_trainer *t) {
    lb_model *m = t->model;
    t->dist = lb_dist_world();
    if (t->dist->size > 1 && t->cfg.optim.zero) {
        if (!(t->owner = malloc((size_t)m->n_params * sizeof *t->owner))) return lb_error(LB_ENOMEM, "ZeRO owners");
        lb_zero_owners(t->dist, m->param_list, m->n_params, t->owner);
    }
    if (!(t->opt = optimizer_over(t, t->owner, t->dist->rank))) return lb_errcode();
    if (t->owner) lb_optim_set_sumsq_reduce(t->opt, lb_dist_sumsq, (void *)t->dist);
    if (t->owner && t->cfg.optim.comm != LB_COMM_FP32)
        return lb_error(LB_ECONFIG, "key 'optim.comm': %s gradients are not available with optim.zero (only fp32)",
                        lb_comm_format_names[t->cfg.optim.comm]);
    if (t->dist->size > 1 &&
        !(t->sync = lb_grad_sync_create(t->dist, m->param_list, m->n_params, 0, t->owner, t->cfg.optim.comm)))
        return lb_errcode();
    return LB_OK;
}

lb_status lb_trainer_gather_optim(lb_trainer *t, lb_optim **full) {
    *full = NULL;
    if (!t->owner) return LB_OK;
    if (t->dist->rank == 0 && !(*full = optimizer_over(t, NULL, 0))) return lb_errcode();
    lb_status s = lb_zero_gather_state(t->dist, t->opt, *full, t->owner);
    if (s != LB_OK && *full) {
        lb_optim_free(*full);
        *full = NULL;
    }
    return s;
}

lb_status lb_trainer_gather_residuals(lb_trainer *t) {
    size_t len = lb_grad_sync_residual_len(t->sync);
    if (len == 0) return LB_OK;
    if (t->dist->rank == 0 && !(t->comm_residuals = malloc((size_t)t->dist->size * len * sizeof(float))))
        return lb_error(LB_ENOMEM, "error-feedback residuals of %d ranks for the checkpoint", t->dist->size);
    return lb_grad_sync_gather_residuals(t->sync, t->comm_residuals);
}

/* ---- train.init_from ------------------------------------------------------- */

/* What train.init_from gives a run: a model shape, a tokenizer and weights. */
typedef struct init_source {
    const char *path;         /* as configured */
    char file[PATH_MAX];      /* the checkpoint file (a run directory's newest), or the HF directory */
    int hf;                   /* 1: a Hugging Face model directory */
    lb_hf_config h;
    lb_model_config shape;    /* the source's model section */
    lb_tokenizer *tok;
} init_source;

static lb_status open_source(const char *path, init_source *src) {
    memset(src, 0, sizeof *src);
    src->path = path;
    if (lb_hf_is_model_dir(path)) {
        src->hf = 1;
        snprintf(src->file, sizeof src->file, "%s", path);
        LB_TRY(lb_hf_read_config(path, &src->h));
        lb_hf_config_to_model(&src->h, &src->shape);
        return lb_hf_load_tokenizer(path, src->h.vocab_size, &src->tok);
    }
    LB_TRY(lb_rundir_resolve(path, src->file, sizeof src->file));
    lb_ckpt *c;
    LB_TRY(lb_ckpt_open(src->file, &c));
    lb_config stored;
    lb_status s = lb_state_read_config(c, &stored);
    if (s == LB_OK) s = lb_state_read_tokenizer(c, &src->tok);
    lb_ckpt_close(c);
    src->shape = stored.model;
    return s;
}

static lb_status same_tokenizer(const lb_tokenizer *a, const lb_tokenizer *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = lb_tokenizer_to_bytes(a, &na), *y = lb_tokenizer_to_bytes(b, &nb);
    lb_status s = LB_OK;
    if (!x || !y) s = lb_error(LB_ENOMEM, "tokenizers");
    else if (na != nb || memcmp(x, y, na) != 0)
        s = lb_error(LB_ECONFIG, "data.shards were tokenized with another tokenizer than the model's");
    free(x);
    free(y);
    return s;
}

/* The source's shape with the config's quantization and init. */
static void take_shape(lb_model_config *m, const lb_model_config *from) {
    lb_model_config keep = *m;
    *m = *from;
    m->init_std = keep.init_std;
    m->attn = keep.attn;
    m->ffn = keep.ffn;
    m->head = keep.head;
    m->embedding = keep.embedding;
}

/* Calibration windows of the training data for SubLN insertion (distill.h). */
#define SUB_NORM_CALIB_BATCHES 4

static lb_status load_source_weights(lb_trainer *t, const init_source *src) {
    if (t->inserted_sub_norms) { /* the source's own shape, then copied over with the new norms */
        lb_model *m;
        LB_TRY(lb_model_load_any(src->file, &m, NULL));
        lb_status s = lb_insert_sub_norms(t->model, m, &t->train_tokens, t->cfg.train.batch_size,
                                          t->cfg.train.seq_len, SUB_NORM_CALIB_BATCHES);
        lb_model_free(m);
        return s;
    }
    if (src->hf) return lb_hf_load_weights(src->file, &src->h, t->model);
    lb_ckpt *c;
    LB_TRY(lb_ckpt_open(src->file, &c));
    lb_status s = lb_state_read_model(t->model, c);
    lb_ckpt_close(c);
    return s;
}

/* ---- memory ---------------------------------------------------------------- */

/* The model section of train.distill's teacher (a checkpoint or a Hugging Face directory). */
static lb_status teacher_shape(const char *path, lb_model_config *mc) {
    if (lb_hf_is_model_dir(path)) {
        lb_hf_config h;
        LB_TRY(lb_hf_read_config(path, &h));
        lb_hf_config_to_model(&h, mc);
        return LB_OK;
    }
    lb_config tc;
    LB_TRY(lb_load_checkpoint_config(path, &tc));
    *mc = tc.model;
    return LB_OK;
}

lb_status lb_trainer_memory_need(const lb_config *c, size_t data, lb_memory_need *need) {
    memset(need, 0, sizeof *need);
    lb_model *m = lb_model_shape(&c->model);
    if (!m) return lb_errcode();
    lb_model_set_act_grad(m, c->optim.act_grad);
    need->parameters = m->n_elements * sizeof(float);
    need->gradients = m->n_elements * sizeof(float);
    lb_optim_config oc = optim_config_from(c);
    /* Several ranks: with optim.zero this rank keeps the state of its share
     * (make_optimizer), and the gradient reduction has its buffers. */
    const lb_dist *dist = lb_dist_world();
    int *owner = NULL;
    if (dist->size > 1 && c->optim.zero) {
        if (!(owner = malloc((size_t)m->n_params * sizeof *owner))) {
            lb_model_free(m);
            return lb_error(LB_ENOMEM, "ZeRO owners");
        }
        lb_zero_owners(dist, m->param_list, m->n_params, owner);
    }
    size_t full_state = 0;
    for (int i = 0; i < m->n_params; i++) {
        size_t bytes = lb_optim_param_state_bytes(&oc, param_group(c, &m->params[i]), m->tensors[i].n);
        full_state += bytes;
        if (!owner || owner[i] == dist->rank) need->optimizer += bytes;
    }
    need->dist = lb_grad_sync_bytes(dist, m->param_list, m->n_params, owner, c->optim.comm);
    if (dist->size > 1 && dist->rank == 0) { /* what rank 0 gathers at a save */
        if (owner) need->dist += full_state; /* lb_trainer_gather_optim: the whole state */
        else if (c->optim.comm != LB_COMM_FP32) need->dist += (size_t)dist->size * m->n_elements * sizeof(float);
    }
    free(owner);
    int threads = omp_get_max_threads();
    size_t peak = lb_model_forward_bytes(m, c->train.batch_size, c->train.seq_len, 1, threads, c->train.gemm_precision,
                                         c->train.attention_precision);
    need->activations = peak + peak / LB_ARENA_MARGIN;
    lb_model_free(m);
    if (lb_distill_enabled(c)) { /* weights and gradients (lb_model_create makes both), a forward arena */
        const char *path = c->train.distill.teacher[0] ? c->train.distill.teacher : c->train.init_from;
        lb_model_config tc;
        lb_model *tm = teacher_shape(path, &tc) == LB_OK ? lb_model_shape(&tc) : NULL;
        if (!tm) { /* an unreadable teacher: lb_distill_open says what is wrong with it */
            lb_error_clear();
            goto done;
        }
        /* the teacher's graph runs at fp32 (lb_distill_open) */
        need->teacher = 2 * tm->n_elements * sizeof(float) +
                        lb_model_forward_bytes(tm, c->train.batch_size, c->train.seq_len, 0, threads,
                                               LB_PRECISION_FP32, LB_PRECISION_FP32);
        lb_model_free(tm);
    }
done:
    need->data = data;
    lb_memory_need_sum(need);
    return LB_OK;
}

/* An allocation failed anyway: its message gains what the whole run needs. */
static lb_status with_memory_need(const lb_trainer *t, lb_status s) {
    if (s != LB_ENOMEM || t->memory.total == 0) return s;
    char msg[1024], parts[256];
    snprintf(msg, sizeof msg, "%s", lb_errmsg());
    lb_memory_format(&t->memory, parts, sizeof parts);
    return lb_error(s, "%s (the run needs about %s)", msg, parts + 1);
}

/* What the data holds in memory: the corpus text and its token ids, or the
 * shards' tokens. */
static size_t data_bytes(const lb_trainer *t) {
    if (t->cfg.data.shards[0]) return (t->train_tokens.n + t->val_tokens.n) * sizeof(int);
    return t->corpus.len + (t->data.n_train + t->data.n_val) * sizeof(int);
}

lb_status lb_trainer_init(lb_trainer *t, const lb_config *cfg) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    lb_config *c = &t->cfg;
    lb_status s;
    if (c->train.threads > 0) omp_set_num_threads(c->train.threads);
    /* auto becomes what suits this model on this CPU; the resolved config (and so a checkpoint) names them */
    t->precision_auto = c->train.gemm_precision == LB_PRECISION_AUTO;
    t->attn_precision_auto = c->train.attention_precision == LB_PRECISION_AUTO;
    c->train.gemm_precision = lb_gemm_precision_resolve(c->train.gemm_precision);
    c->train.attention_precision =
        lb_attention_precision_resolve(c->train.attention_precision, c->train.gemm_precision);

    init_source src = {0};
    if (c->train.init_from[0]) {
        if ((s = open_source(c->train.init_from, &src)) != LB_OK) goto fail_source;
        /* model.sub_norm: true given for a source without sub-norms: insert them (distill.h). */
        t->inserted_sub_norms = lb_config_given(c, "model.sub_norm") && c->model.sub_norm && !src.shape.sub_norm;
        take_shape(&c->model, &src.shape);
        if (t->inserted_sub_norms) c->model.sub_norm = 1;
        if ((s = lb_config_validate(c)) != LB_OK) goto fail_source;
    }
    if (c->data.shards[0]) {
        /* Shards were tokenized when they were prepared: their tokenizer must be the source's. */
        if ((s = open_shards(t)) != LB_OK) goto fail_source_tok;
        if (src.tok && (s = same_tokenizer(src.tok, t->tok)) != LB_OK) goto fail_source_tok;
        if (src.tok) lb_tokenizer_free(src.tok);
        src.tok = NULL;
    } else {
        t->tok = src.tok; /* the model's own tokenizer: the embedding's rows are its ids */
        src.tok = NULL;
        if ((s = load_corpus(t)) != LB_OK) goto fail;
        if (!t->tok && (s = make_tokenizer(t)) != LB_OK) goto fail;
        if ((s = lb_dataset_build(&t->data, &t->corpus, t->tok, c->data.val_fraction)) != LB_OK) goto fail;
        t->train_tokens = lb_tokens_of_ints(t->data.train, t->data.n_train);
        t->val_tokens = lb_tokens_of_ints(t->data.val, t->data.n_val);
    }
    if (c->model.vocab_size == 0) c->model.vocab_size = t->tok->vocab_size;
    if (c->model.vocab_size < t->tok->vocab_size) {
        s = lb_error(LB_ECONFIG, "key 'model.vocab_size': expected at least %d (the %s tokenizer's vocabulary), got %d",
                     t->tok->vocab_size, lb_tokenizer_kind_name(t->tok->kind), c->model.vocab_size);
        goto fail;
    }
    /* Everything large is still to come: stop now when it cannot fit. */
    if ((s = lb_trainer_memory_need(c, data_bytes(t), &t->memory)) != LB_OK) goto fail;
    char what[sizeof c->source + 16] = "the run";
    if (c->source[0]) snprintf(what, sizeof what, "config '%s'", c->source);
    if ((s = lb_memory_check(what, &t->memory)) != LB_OK) goto fail_keep;
    if (!(t->model = lb_model_create(&c->model, c->train.seed))) {
        s = lb_errcode();
        goto fail;
    }
    lb_model_set_act_grad(t->model, c->optim.act_grad);
    t->model->sample_vocab = t->tok->vocab_size;
    if (c->train.init_from[0] && (s = load_source_weights(t, &src)) != LB_OK) goto fail_source;
    if (lb_distill_enabled(c) && (s = lb_distill_open(c, t->model, &t->distill)) != LB_OK) goto fail;
    /* The arena in one piece of the estimated size: grown on demand in
     * doubling chunks, the first step would hold up to twice its peak, and
     * the fold at the first reset the peak once more (core/arena.h). */
    size_t arena = t->memory.activations > ((size_t)1 << 20) ? t->memory.activations : 0;
    if ((s = lb_graph_init(&t->graph, arena)) != LB_OK) goto fail;
    t->graph.precision = c->train.gemm_precision;
    t->graph.attn_precision = c->train.attention_precision;
    if ((s = make_optimizer(t)) != LB_OK) goto fail;
    t->sched = schedule_from(c);
    if ((s = lb_schedule_check(&t->sched)) != LB_OK) goto fail;
    if ((s = lb_batcher_init_tokens(&t->batcher, &t->train_tokens, c->train.batch_size, c->train.seq_len,
                                    c->train.seed)) != LB_OK)
        goto fail;
    size_t bt = (size_t)c->train.batch_size * (size_t)c->train.seq_len;
    t->inputs = malloc(bt * sizeof(int));
    t->targets = malloc(bt * sizeof(int));
    if (!t->inputs || !t->targets) {
        s = lb_error(LB_ENOMEM, "batch buffers");
        goto fail;
    }
    if ((s = lb_config_to_yaml(c, &t->config_yaml)) != LB_OK) goto fail;
    return LB_OK;
fail:
    s = with_memory_need(t, s);
fail_keep:
    lb_trainer_free(t);
    return s;
fail_source_tok:
    if (src.tok) lb_tokenizer_free(src.tok);
    src.tok = NULL;
    lb_trainer_free(t);
    return s;
fail_source:
    if (src.tok) lb_tokenizer_free(src.tok);
    lb_error_prefix("train.init_from '%s'", c->train.init_from);
    lb_trainer_free(t);
    return s;
}

void lb_trainer_free(lb_trainer *t) {
    free(t->inputs);
    free(t->targets);
    free(t->config_yaml);
    if (t->opt) lb_optim_free(t->opt);
    lb_distill_free(t->distill);
    lb_grad_sync_free(t->sync);
    free(t->owner);
    lb_graph_free(&t->graph);
    if (t->model) lb_model_free(t->model);
    lb_dataset_free(&t->data);
    lb_corpus_free(&t->corpus);
    lb_shard_data_free(&t->shards);
    if (t->tok) lb_tokenizer_free(t->tok);
    memset(t, 0, sizeof *t);
}

/* ---- stepping ------------------------------------------------------------ */

static float quant_lambda(const lb_trainer *t, int64_t step) {
    int n = t->cfg.train.quant_warmup_steps;
    if (n <= 0) return 1.0f;
    return step >= n ? 1.0f : (float)step / (float)n;
}

/* The next training micro-batch into t->inputs / t->targets: this rank's
 * share of the global micro-batch of ranks × batch_size rows (data/batch.h). */
static void next_batch(lb_trainer *t) {
    lb_batcher_next_share(&t->batcher, t->dist->rank, t->dist->size, t->inputs, t->targets);
}

/* Forward and backward over train.grad_accum micro-batches: the gradients of
 * the step accumulate in the parameters' .grad; r->loss is their mean loss.
 * With several ranks, the backward pass of the last micro-batch sends each
 * bucket of gradients as it becomes final (dist.h), and at the end every
 * .grad holds the mean over the ranks and r->loss the mean of their losses. */
static lb_status forward_backward(lb_trainer *t, lb_step_result *r) {
    const lb_config *c = &t->cfg;
    float loss_scale = lb_optim_loss_scale(t->opt);
    double loss_sum = 0.0, parts_sum[4] = {0.0, 0.0, 0.0, 0.0};
    for (int micro = 0; micro < c->train.grad_accum; micro++) {
        next_batch(t);
        lb_graph_reset(&t->graph);
        lb_tensor *l;
        if (t->distill) {
            lb_distill_parts p = {0};
            l = lb_distill_loss(t->distill, t->model, &t->graph, t->inputs, c->train.batch_size, c->train.seq_len,
                                t->targets, &p);
            parts_sum[0] += p.ce;
            parts_sum[1] += p.kl;
            parts_sum[2] += p.hidden;
            parts_sum[3] += p.relation;
        } else {
            l = lb_model_forward(t->model, &t->graph, t->inputs, c->train.batch_size, c->train.seq_len, t->targets,
                                 NULL);
        }
        if (!l) return lb_errcode();
        loss_sum += l->data[0];
        if (loss_scale != 1.0f) l = lb_scale(&t->graph, l, loss_scale);
        int reduce = t->sync && micro == c->train.grad_accum - 1;
        if (reduce) LB_TRY(lb_grad_sync_begin(t->sync, &t->graph));
        lb_status s = lb_backward(&t->graph, l);
        if (reduce) {
            lb_status s_sync = lb_grad_sync_end(t->sync, &t->graph);
            if (s == LB_OK) s = s_sync;
            lb_grad_sync_stats st = lb_grad_sync_last(t->sync);
            r->comm_seconds = st.wait_seconds;
            r->comm_bytes = st.bytes_sent;
        }
        LB_TRY(s);
    }
    double mean = loss_sum / c->train.grad_accum;
    if (t->dist->size > 1) {
        LB_TRY(lb_dist_sum_ranks(t->dist, mean, &mean));
        mean /= t->dist->size;
    }
    r->loss = (float)mean;
    if (t->distill) { /* this rank's parts (the loss above is the ranks' mean) */
        r->ce = (float)(parts_sum[0] / c->train.grad_accum);
        r->kl = (float)(parts_sum[1] / c->train.grad_accum);
        r->hidden = (float)(parts_sum[2] / c->train.grad_accum);
        r->relation = (float)(parts_sum[3] / c->train.grad_accum);
        r->teacher_seconds = t->distill->seconds;
        t->distill->seconds = 0.0;
    }
    return LB_OK;
}

lb_status lb_trainer_step(lb_trainer *t, lb_step_result *r) {
    double t0 = now_seconds();
    const lb_config *c = &t->cfg;
    int64_t step = t->step + 1; /* the step being taken, counted from 1 */
    memset(r, 0, sizeof *r);
    r->lambda = quant_lambda(t, step);
    LB_TRY(lb_model_set_quant_lambda(t->model, r->lambda));
    lb_model_set_step(t->model, (uint64_t)step); /* keys stochastic rounding in the layers */
    /* The gradients come back averaged over the ranks, identical on every
     * rank: clipping, the skip on non-finite values and the update below
     * are global without further communication, and the replicas stay equal. */
    LB_TRY(with_memory_need(t, forward_backward(t, r)));
    r->lr = lb_schedule_lr(&t->sched, step);
    r->wd = lb_schedule_wd(&t->sched, step);
    lb_optim_step_info info;
    LB_TRY(lb_optim_step(t->opt, r->lr, r->wd, step, &info));
    if (t->owner) LB_TRY(lb_zero_broadcast(t->dist, t->model->param_list, t->model->n_params, t->owner));
    lb_optim_zero_grad(t->opt);
    r->grad_norm = info.grad_norm;
    r->skipped = info.skipped;
    if (info.skipped) lb_warn("step %lld skipped: gradients are not finite", (long long)step);
    t->step = step;
    t->tokens_seen += (int64_t)t->dist->size * c->train.grad_accum * c->train.batch_size * c->train.seq_len;
    r->seconds = now_seconds() - t0;
    return LB_OK;
}

lb_status lb_trainer_evaluate(lb_trainer *t, int n_batches, float *loss) {
    const lb_config *c = &t->cfg;
    int B = c->train.batch_size, T = c->train.seq_len;
    if (n_batches < 1) return lb_error(LB_EINVAL, "evaluation needs at least one batch");
    /* The validation set is n_batches global batches of ranks × B windows,
     * the same windows as one process with batch ranks × B evaluates: as
     * n_batches·ranks batches of B, rank r taking batches r, r + ranks, ...
     * Each batch's loss comes from one rank, so the sum is exact. */
    int n = n_batches * t->dist->size;
    double *losses = calloc((size_t)n, sizeof *losses);
    if (!losses) return lb_error(LB_ENOMEM, "evaluation: %d batch losses", n);
    int was = lb_graph_set_grad(&t->graph, 0);
    lb_status s = LB_OK;
    for (int i = t->dist->rank; i < n && s == LB_OK; i += t->dist->size) {
        s = lb_val_batch_tokens(&t->val_tokens, B, T, i, n, t->inputs, t->targets);
        if (s != LB_OK) break;
        lb_graph_reset(&t->graph);
        lb_tensor *l = lb_model_forward(t->model, &t->graph, t->inputs, B, T, t->targets, NULL);
        if (!l) s = lb_errcode();
        else losses[i] = l->data[0];
    }
    lb_graph_reset(&t->graph);
    lb_graph_set_grad(&t->graph, was);
    if (s == LB_OK) s = lb_dist_sum_disjoint(t->dist, losses, n);
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += losses[i];
    free(losses);
    if (s != LB_OK) return s;
    *loss = (float)(sum / n);
    return LB_OK;
}

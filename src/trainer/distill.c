/* Distillation and SubLN insertion (distill.h). */
#include "trainer/distill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ops.h"
#include "interop/hf_import.h"
#include "trainer/trainer.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lb_distill_enabled(const lb_config *c) {
    const lb_distill_config *d = &c->train.distill;
    return d->weight_kl > 0.0f || d->weight_hidden > 0.0f || d->weight_relation > 0.0f;
}

lb_status lb_model_load_any(const char *path, lb_model **model, lb_tokenizer **tok) {
    lb_tokenizer *t = NULL;
    lb_status s;
    if (lb_hf_is_model_dir(path)) {
        lb_hf_config h;
        s = lb_hf_import(path, &h, model, &t);
    } else {
        lb_config cfg;
        s = lb_load_checkpoint_model(path, &cfg, &t, model);
    }
    if (s != LB_OK) return s;
    if (tok) *tok = t;
    else lb_tokenizer_free(t);
    return LB_OK;
}

uint64_t lb_model_fingerprint(const lb_model *m) {
    const unsigned char *p = (const unsigned char *)m->params_memory;
    size_t n = m->n_elements * sizeof(float);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* -1 means the last block. */
static int resolve_layer(int layer, int n_layers) { return layer < 0 ? n_layers - 1 : layer; }

lb_status lb_distill_open(const lb_config *c, const lb_model *student, lb_distill **out) {
    *out = NULL;
    lb_distill *d = calloc(1, sizeof *d);
    if (!d) return lb_error(LB_ENOMEM, "distillation");
    d->cfg = c->train.distill;
    snprintf(d->path, sizeof d->path, "%s", d->cfg.teacher[0] ? d->cfg.teacher : c->train.init_from);
    const char *key = d->cfg.teacher[0] ? "train.distill.teacher" : "train.init_from";
    lb_status s = lb_model_load_any(d->path, &d->teacher, NULL);
    if (s != LB_OK) goto fail;
    const lb_model_config *tc = &d->teacher->cfg, *sc = &student->cfg;
    if (tc->vocab_size != sc->vocab_size) {
        s = lb_error(LB_ECONFIG, "the teacher has a vocabulary of %d, the student %d: they must be equal",
                     tc->vocab_size, sc->vocab_size);
        goto fail;
    }
    if (d->cfg.weight_hidden > 0.0f) {
        d->s_layer = resolve_layer(d->cfg.hidden_layer, sc->n_layers);
        d->t_layer = resolve_layer(d->cfg.hidden_layer, tc->n_layers);
        if (d->s_layer >= sc->n_layers || d->t_layer >= tc->n_layers) {
            s = lb_error(LB_ECONFIG, "key 'train.distill.hidden_layer': block %d, but the student has %d and the "
                         "teacher %d blocks", d->cfg.hidden_layer, sc->n_layers, tc->n_layers);
            goto fail;
        }
        if (tc->dim != sc->dim) {
            s = lb_error(LB_ECONFIG, "key 'train.distill.weight_hidden': the teacher's width is %d, the student's %d: "
                         "a hidden-state loss needs them equal", tc->dim, sc->dim);
            goto fail;
        }
        d->s_hidden = calloc((size_t)sc->n_layers, sizeof *d->s_hidden);
        d->t_hidden = calloc((size_t)tc->n_layers, sizeof *d->t_hidden);
        if (!d->s_hidden || !d->t_hidden) {
            s = lb_error(LB_ENOMEM, "distillation taps");
            goto fail;
        }
    }
    if (d->cfg.weight_relation > 0.0f) {
        d->s_rel = resolve_layer(d->cfg.relation_layer, sc->n_layers);
        d->t_rel = resolve_layer(d->cfg.relation_layer, tc->n_layers);
        d->rel_heads = sc->n_heads;
        int dh_s = sc->dim / sc->n_heads, dh_t = tc->dim / tc->n_heads, R = d->rel_heads;
        if (d->s_rel >= sc->n_layers || d->t_rel >= tc->n_layers) {
            s = lb_error(LB_ECONFIG, "key 'train.distill.relation_layer': block %d, but the student has %d and the "
                         "teacher %d blocks", d->cfg.relation_layer, sc->n_layers, tc->n_layers);
            goto fail;
        }
        if ((sc->n_kv_heads * dh_s) % R || (tc->n_heads * dh_t) % R || (tc->n_kv_heads * dh_t) % R) {
            s = lb_error(LB_ECONFIG, "key 'train.distill.weight_relation': the q, k and v widths of student and "
                         "teacher must divide into the student's %d heads", R);
            goto fail;
        }
        d->s_qkv = calloc((size_t)3 * sc->n_layers, sizeof *d->s_qkv);
        d->t_qkv = calloc((size_t)3 * tc->n_layers, sizeof *d->t_qkv);
        if (!d->s_qkv || !d->t_qkv) {
            s = lb_error(LB_ENOMEM, "distillation taps");
            goto fail;
        }
    }
    if ((s = lb_graph_init(&d->graph, 0)) != LB_OK) goto fail;
    lb_graph_set_grad(&d->graph, 0);
    d->fingerprint = lb_model_fingerprint(d->teacher);
    d->param_bytes = 2 * d->teacher->n_elements * sizeof(float);
    *out = d;
    return LB_OK;
fail:
    lb_error_prefix("key '%s': teacher '%s'", key, d->path);
    lb_distill_free(d);
    return s;
}

void lb_distill_free(lb_distill *d) {
    if (!d) return;
    if (d->teacher) lb_model_free(d->teacher);
    lb_graph_free(&d->graph);
    free(d->s_hidden);
    free(d->t_hidden);
    free(d->s_qkv);
    free(d->t_qkv);
    free(d);
}

size_t lb_distill_memory(const lb_distill *d) { return d->param_bytes + d->graph.arena.peak; }

/* mean((a − b)²) with b a constant. */
static lb_tensor *mse(lb_graph *g, lb_tensor *a, lb_tensor *b) {
    lb_tensor *diff = lb_add(g, a, lb_scale(g, b, -1.0f));
    return lb_mean(g, lb_mul(g, diff, diff));
}

lb_tensor *lb_distill_loss(lb_distill *d, lb_model *student, lb_graph *g, const int *ids, int B, int T,
                           const int *targets, lb_distill_parts *parts) {
    double t0 = now_seconds();
    lb_model_taps t_taps = {.hidden = d->t_hidden, .qkv = d->t_qkv}, s_taps = {.hidden = d->s_hidden, .qkv = d->s_qkv};
    int tapped = d->s_hidden || d->s_qkv;
    lb_graph_reset(&d->graph);
    d->teacher->taps = tapped ? &t_taps : NULL;
    lb_tensor *t_logits = lb_model_forward(d->teacher, &d->graph, ids, B, T, NULL, NULL);
    d->teacher->taps = NULL;
    d->seconds += now_seconds() - t0;
    if (!t_logits) {
        lb_error_prefix("teacher '%s'", d->path);
        return NULL;
    }

    lb_tensor *s_logits = NULL;
    student->taps = tapped ? &s_taps : NULL;
    lb_tensor *ce = lb_model_forward(student, g, ids, B, T, targets, &s_logits);
    student->taps = NULL;
    if (!ce) return NULL;
    lb_tensor *kl = lb_kl_div(g, s_logits, t_logits->data, d->cfg.temperature);
    lb_tensor *hid = d->s_hidden ? mse(g, d->s_hidden[d->s_layer], d->t_hidden[d->t_layer]) : NULL;
    lb_tensor *rel = NULL;
    for (int i = 0; d->s_qkv && i < 3; i++) {
        lb_tensor *xt = d->t_qkv[3 * d->t_rel + i];
        lb_tensor *r = lb_relation_kl(g, d->s_qkv[3 * d->s_rel + i], xt->data, lb_tensor_cols(xt), d->rel_heads);
        rel = rel ? lb_add(g, rel, r) : r;
    }
    if (!kl || (d->s_hidden && !hid) || (d->s_qkv && !rel)) return NULL;
    if (parts)
        *parts = (lb_distill_parts){ce->data[0], kl->data[0], hid ? hid->data[0] : 0.0f, rel ? rel->data[0] : 0.0f};

    lb_tensor *loss = lb_add(g, lb_scale(g, ce, d->cfg.weight_ce), lb_scale(g, kl, d->cfg.weight_kl));
    if (hid) loss = lb_add(g, loss, lb_scale(g, hid, d->cfg.weight_hidden));
    if (rel) loss = lb_add(g, loss, lb_scale(g, rel, d->cfg.weight_relation));
    return loss;
}

/* ---- SubLN insertion ------------------------------------------------------------------ */

/* Σ_t m_t / r_t and Σ_t m_t / r_t² over the rows of x (distill.h), in double. */
static void accumulate_gain(const lb_tensor *x, float eps, double *num, double *den) {
    const int rows = (int)lb_tensor_rows(x), D = lb_tensor_cols(x);
    for (int r = 0; r < rows; r++) {
        const float *row = x->data + (size_t)r * D;
        double ss = 0.0;
        for (int j = 0; j < D; j++) ss += (double)row[j] * row[j];
        double m = ss / D, rms = sqrt(m + eps);
        *num += m / rms;
        *den += m / (rms * rms);
    }
}

/* The source's forward hands every linear layer's input to this (lb_model's
 * linear_input): the inputs of attn_output and ffn_down are what the new
 * sub-norms will see. */
typedef struct gain_sums {
    const lb_model *src;
    float eps;
    double *num, *den; /* [2·n_layers]: attn_sub_norm, ffn_sub_norm of each block */
} gain_sums;

static void sub_norm_input(void *ctx, int param, const lb_tensor *x) {
    gain_sums *g = ctx;
    const lb_param *p = &g->src->params[param];
    if (p->role == LB_ROLE_ATTN_OUTPUT) accumulate_gain(x, g->eps, &g->num[2 * p->layer], &g->den[2 * p->layer]);
    if (p->role == LB_ROLE_FFN_DOWN) accumulate_gain(x, g->eps, &g->num[2 * p->layer + 1], &g->den[2 * p->layer + 1]);
}

lb_status lb_insert_sub_norms(lb_model *dst, const lb_model *src, const lb_tokens *tokens, int B, int T,
                              int n_batches) {
    const lb_model_config *dc = &dst->cfg;
    if (!dc->sub_norm || src->cfg.sub_norm)
        return lb_error(LB_EINVAL, "SubLN insertion: expected a target with sub-norms and a source without");
    if (n_batches < 1) return lb_error(LB_EINVAL, "SubLN insertion: no calibration batch");
    /* Every source parameter into the target's of the same name. */
    for (int i = 0; i < src->n_params; i++) {
        const lb_tensor *p = &src->tensors[i];
        lb_tensor *q = lb_model_param(dst, p->name);
        if (!q || q->n != p->n)
            return lb_error(LB_EINVAL, "SubLN insertion: the target has no parameter '%s' of %zu elements", p->name,
                            p->n);
        memcpy(q->data, p->data, p->n * sizeof(float));
    }

    const int L = dc->n_layers;
    double *num = calloc((size_t)2 * L, sizeof *num), *den = calloc((size_t)2 * L, sizeof *den);
    int *inputs = malloc((size_t)B * T * sizeof *inputs), *targets = malloc((size_t)B * T * sizeof *targets);
    lb_graph g = {0};
    lb_status s = LB_OK;
    if (!num || !den || !inputs || !targets) s = lb_error(LB_ENOMEM, "SubLN insertion");
    if (s == LB_OK) s = lb_graph_init(&g, 0);
    if (s == LB_OK) lb_graph_set_grad(&g, 0);
    /* The source's forward is read-only; the hook is the only field set here. */
    lb_model *source = (lb_model *)src;
    gain_sums sums = {src, dc->norm_eps, num, den};
    for (int b = 0; b < n_batches && s == LB_OK; b++) {
        if ((s = lb_val_batch_tokens(tokens, B, T, b, n_batches, inputs, targets)) != LB_OK) break;
        lb_graph_reset(&g);
        source->linear_input = sub_norm_input;
        source->linear_input_ctx = &sums;
        lb_tensor *logits = lb_model_forward(source, &g, inputs, B, T, NULL, NULL);
        source->linear_input = NULL;
        source->linear_input_ctx = NULL;
        if (!logits) s = lb_errcode();
    }
    for (int l = 0; l < L && s == LB_OK; l++) {
        lb_tensor *norms[2] = {dst->blocks[l].attn_sub_norm, dst->blocks[l].ffn_sub_norm};
        for (int k = 0; k < 2; k++) {
            double gain = den[2 * l + k] > 0.0 ? num[2 * l + k] / den[2 * l + k] : 1.0;
            for (size_t j = 0; j < norms[k]->n; j++) norms[k]->data[j] = (float)gain;
        }
    }
    if (s != LB_OK) lb_error_prefix("SubLN insertion: calibration forward");
    lb_graph_free(&g);
    free(num);
    free(den);
    free(inputs);
    free(targets);
    return s;
}

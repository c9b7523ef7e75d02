/* Post-training quantization, layer by layer (ptq.h): calibration Hessians
 * from the forward pass, then RTN or GPTQ of each chosen linear layer. */
#include "ptq/ptq.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ptq/gptq.h"
#include "quant/quantize.h"

const char *const lb_ptq_method_names[LB_PTQ_METHOD_COUNT] = {"rtn", "gptq"};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lb_ptq_options lb_ptq_options_default(void) {
    lb_ptq_options o = {0};
    o.method = LB_PTQ_RTN;
    o.spec = lb_qspec_none();
    o.kinds = LB_PTQ_ATTN | LB_PTQ_FFN;
    o.calib_batches = 8;
    o.damp = 0.01;
    o.block = 128;
    return o;
}

void lb_ptq_result_free(lb_ptq_result *r, int n_params) {
    if (r->steps)
        for (int i = 0; i < n_params; i++) free(r->steps[i]);
    free(r->steps);
    free(r->layers);
    memset(r, 0, sizeof *r);
}

/* ---- which layers ------------------------------------------------------------ */

/* The kind (LB_PTQ_*) a parameter's role belongs to; 0 for the rest. */
static int kind_of(lb_param_role role) {
    switch (role) {
    case LB_ROLE_ATTN_Q: case LB_ROLE_ATTN_K: case LB_ROLE_ATTN_V: case LB_ROLE_ATTN_OUTPUT: return LB_PTQ_ATTN;
    case LB_ROLE_FFN_GATE: case LB_ROLE_FFN_UP: case LB_ROLE_FFN_DOWN: return LB_PTQ_FFN;
    case LB_ROLE_OUTPUT: return LB_PTQ_HEAD;
    default: return 0;
    }
}

/* Linear layers that read the same input share one Hessian: q, k and v read
 * the attention norm's output, gate and up the FFN norm's. */
enum { SLOT_ATTN_IN, SLOT_ATTN_OUT, SLOT_FFN_IN, SLOT_FFN_OUT, N_SLOTS };
static int slot_of(lb_param_role role) {
    switch (role) {
    case LB_ROLE_ATTN_Q: case LB_ROLE_ATTN_K: case LB_ROLE_ATTN_V: case LB_ROLE_OUTPUT: return SLOT_ATTN_IN;
    case LB_ROLE_ATTN_OUTPUT: return SLOT_ATTN_OUT;
    case LB_ROLE_FFN_GATE: case LB_ROLE_FFN_UP: return SLOT_FFN_IN;
    default: return SLOT_FFN_OUT;
    }
}
/* The first layer of a slot records its input; the others see the same tensor. */
static int records(lb_param_role role) {
    return role == LB_ROLE_ATTN_Q || role == LB_ROLE_ATTN_OUTPUT || role == LB_ROLE_FFN_GATE ||
           role == LB_ROLE_FFN_DOWN || role == LB_ROLE_OUTPUT;
}

static const lb_linear_quant *kind_quant(const lb_model *m, int kind) {
    return kind == LB_PTQ_ATTN ? &m->q_attn : kind == LB_PTQ_FFN ? &m->q_ffn : &m->q_head;
}
static const char *kind_name(int kind) { return kind == LB_PTQ_ATTN ? "attn" : kind == LB_PTQ_FFN ? "ffn" : "head"; }

lb_status lb_ptq_check(const lb_model *m, const lb_ptq_options *o) {
    char spec[64];
    lb_qspec_format(&o->spec, spec, sizeof spec);
    const lb_qspec *s = &o->spec;
    if (o->method < 0 || o->method >= LB_PTQ_METHOD_COUNT)
        return lb_error(LB_ECONFIG, "quantize: unknown method %d (expected rtn or gptq)", (int)o->method);
    if (lb_qspec_is_none(s)) return lb_error(LB_ECONFIG, "quantize: the spec 'none' quantizes nothing");
    if (s->lsq || s->stochastic)
        return lb_error(LB_ECONFIG, "quantize: spec '%s': %s", spec,
                        s->lsq ? "'lsq' steps are learned in training; PTQ fits its own scales"
                               : "stochastic rounding is not round to nearest");
    if (o->method == LB_PTQ_GPTQ) {
        if (!(s->format == LB_QF_TERNARY || (s->format == LB_QF_INT && !s->asymmetric && !s->b1)))
            return lb_error(LB_ECONFIG,
                            "quantize: GPTQ takes ternary and symmetric INTn specs, not '%s' (use --method rtn)", spec);
        if (o->calib_batches < 1)
            return lb_error(LB_ECONFIG, "quantize: GPTQ needs calibration batches (--calib N with N >= 1)");
        if (!(o->damp >= 0.0) || !(o->block >= 1))
            return lb_error(LB_ECONFIG, "quantize: --damp must be >= 0 and --block >= 1");
    }
    if (o->calib_batches < 0) return lb_error(LB_ECONFIG, "quantize: --calib must be >= 0");
    if (!(o->kinds & (LB_PTQ_ATTN | LB_PTQ_FFN | LB_PTQ_HEAD)))
        return lb_error(LB_ECONFIG, "quantize: no layers chosen (--layers attn,ffn,head)");
    if ((o->kinds & LB_PTQ_HEAD) && m->cfg.tie_embeddings)
        return lb_error(LB_ECONFIG, "quantize: the head is the token embedding (model.tie_embeddings): quantizing "
                                    "it would change the embedding lookup too; leave 'head' out of --layers");
    for (int kind = LB_PTQ_ATTN; kind <= LB_PTQ_HEAD; kind <<= 1) {
        if (!(o->kinds & kind) || lb_qspec_is_none(&kind_quant(m, kind)->weight)) continue;
        char have[64];
        lb_qspec_format(&kind_quant(m, kind)->weight, have, sizeof have);
        return lb_error(LB_ECONFIG,
                        "quantize: the '%s' layers already quantize their weights ('%s'); PTQ starts from "
                        "full-precision weights",
                        kind_name(kind), have);
    }
    for (int i = 0; i < m->n_params; i++) {
        const lb_param *p = &m->params[i];
        if (!(kind_of(p->role) & o->kinds)) continue;
        /* Packed exports and step tensors [N, K/g] take whole groups only. */
        if (s->gran == LB_QG_GROUP && p->t->shape[1] % s->group != 0)
            return lb_error(LB_ECONFIG, "quantize: spec '%s': groups of %d do not divide the %d columns of tensor '%s'",
                            spec, s->group, p->t->shape[1], p->t->name);
        if (lb_quant_check(s, (size_t)p->t->shape[0], (size_t)p->t->shape[1]) != LB_OK)
            return lb_error(LB_ECONFIG, "quantize: spec '%s' does not fit tensor '%s' [%d, %d]: %s", spec, p->t->name,
                            p->t->shape[0], p->t->shape[1], lb_errmsg());
    }
    return LB_OK;
}

/* ---- calibration ----------------------------------------------------------------- */

/* H = 2·XᵀX/n of the inputs of one block's linear layers (or the head's),
 * X the inputs as the layer multiplies them (after its activation quantizer). */
typedef struct calib {
    const lb_model *m;
    int layer;                 /* block whose inputs are recorded; -1: the head */
    double *H[N_SLOTS];        /* [K, K], NULL for slots not wanted */
    int K[N_SLOTS];
    double rows[N_SLOTS];
    float *xq, *xtx;           /* scratch: quantized inputs, one batch's XᵀX */
    size_t xq_cap, xtx_cap;
    lb_status status;
} calib;

static int grow(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return 1;
    float *p = realloc(*buf, n * sizeof *p);
    if (!p) return 0;
    *buf = p;
    *cap = n;
    return 1;
}

static void record_input(void *ctx, int param, const lb_tensor *x) {
    calib *c = ctx;
    const lb_param *p = &c->m->params[param];
    if (c->status != LB_OK || p->layer != c->layer || !records(p->role)) return;
    if ((c->layer < 0) != (p->role == LB_ROLE_OUTPUT)) return;
    int slot = slot_of(p->role), K = (int)lb_tensor_cols(x);
    if (!c->H[slot]) return;
    size_t rows = x->n / (size_t)K;
    const float *X = x->data;
    if (!lb_qspec_is_none(&p->activation)) {
        if (!grow(&c->xq, &c->xq_cap, x->n)) goto oom;
        int as = c->m->act_step[param];
        if (p->activation.lsq) lb_lsq_forward(&p->activation, X, c->xq, rows, (size_t)K, c->m->tensors[as].data, 1.0f);
        else if ((c->status = lb_fake_quantize(&p->activation, X, c->xq, rows, (size_t)K, NULL)) != LB_OK) return;
        X = c->xq;
    }
    if (!grow(&c->xtx, &c->xtx_cap, (size_t)K * K)) goto oom;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, K, (int)rows, 1.0f, X, K, 0.0f, c->xtx, K);
    double *H = c->H[slot];
    for (size_t i = 0; i < (size_t)K; i++)
        for (size_t j = i; j < (size_t)K; j++) H[i * K + j] += c->xtx[i * K + j];
    c->rows[slot] += (double)rows;
    return;
oom:
    c->status = lb_error(LB_ENOMEM, "calibration: inputs of '%s'", p->t->name);
}

/* Runs the calibration batches through the model, recording the inputs of
 * `layer`'s chosen linear layers into c->H, then scales and mirrors them. */
static lb_status calibrate(lb_model *m, calib *c, lb_graph *g, const int *ids, int n_batches, int B, int T) {
    c->status = LB_OK;
    for (int s = 0; s < N_SLOTS; s++) {
        c->rows[s] = 0;
        if (c->H[s]) memset(c->H[s], 0, (size_t)c->K[s] * c->K[s] * sizeof(double));
    }
    m->linear_input = record_input;
    m->linear_input_ctx = c;
    lb_status st = LB_OK;
    for (int b = 0; b < n_batches && st == LB_OK; b++) {
        lb_graph_reset(g);
        if (!lb_model_forward(m, g, ids + (size_t)b * B * T, B, T, NULL, NULL)) st = lb_errcode();
        if (st == LB_OK) st = c->status;
    }
    lb_graph_reset(g);
    m->linear_input = NULL;
    m->linear_input_ctx = NULL;
    LB_TRY(st);
    for (int s = 0; s < N_SLOTS; s++) {
        if (!c->H[s]) continue;
        size_t K = (size_t)c->K[s];
        double scale = c->rows[s] > 0 ? 2.0 / c->rows[s] : 0.0;
        for (size_t i = 0; i < K; i++)
            for (size_t j = i; j < K; j++) c->H[s][j * K + i] = c->H[s][i * K + j] *= scale;
    }
    return LB_OK;
}

/* ‖WX − ŴX‖²/n = ½ Σ_r δ_r H δ_rᵀ, δ = W − Ŵ, H = 2XᵀX/n. */
static double recon_error(const float *w, const float *q, size_t rows, size_t K, const double *H, double *delta,
                          double *e) {
    for (size_t i = 0; i < rows * K; i++) delta[i] = (double)w[i] - (double)q[i];
    cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)K, 1.0, H, (int)K, delta, (int)K, 0.0, e,
                (int)K);
    double sum = 0.0;
    for (size_t i = 0; i < rows * K; i++) sum += delta[i] * e[i];
    return 0.5 * sum;
}

/* ---- the run -------------------------------------------------------------------- */

/* One layer: RTN, and GPTQ when asked; `quantized` receives what the forward
 * pass will compute, `stored` what the checkpoint holds, `steps` (GPTQ INT)
 * the per-block steps. */
static lb_status quantize_layer(const lb_ptq_options *o, const lb_tensor *t, const double *H, float *stored,
                                float *quantized, float *steps, lb_ptq_layer *rep, double *delta, double *e) {
    size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
    double t0 = now_seconds();
    LB_TRY(lb_ptq_rtn(&o->spec, t->data, rows, cols, stored, quantized));
    double t1 = now_seconds();
    rep->err_rtn = H ? recon_error(t->data, quantized, rows, cols, H, delta, e) : NAN;
    rep->err = rep->err_rtn;
    rep->seconds = rep->seconds_rtn = t1 - t0;
    if (o->method != LB_PTQ_GPTQ) return LB_OK;

    lb_gptq_options go = {o->damp, o->block, o->act_order};
    size_t n = rows * cols;
    int8_t *codes = malloc(n);
    double *Hw = malloc(cols * cols * sizeof *Hw);
    lb_status s = codes && Hw ? LB_OK : lb_error(LB_ENOMEM, "gptq");
    if (s == LB_OK) {
        memcpy(Hw, H, cols * cols * sizeof *Hw);
        t0 = now_seconds();
        s = lb_gptq(&o->spec, t->data, rows, cols, Hw, &go, codes, steps, quantized);
        rep->seconds = now_seconds() - t0;
    }
    if (s == LB_OK) s = lb_gptq_stored_form(&o->spec, codes, steps, rows, cols, quantized, stored);
    if (s == LB_OK) rep->err = recon_error(t->data, quantized, rows, cols, H, delta, e);
    free(codes);
    free(Hw);
    return s;
}

lb_status lb_ptq_run(lb_model *m, const lb_ptq_options *o, const lb_tokens *train, int B, int T, uint64_t seed,
                     void (*progress)(void *ctx, const lb_model *m, const lb_ptq_layer *l), void *ctx,
                     lb_ptq_result *r) {
    memset(r, 0, sizeof *r);
    LB_TRY(lb_ptq_check(m, o));
    r->out_spec = o->spec;
    if (o->method == LB_PTQ_GPTQ && o->spec.format == LB_QF_INT) r->out_spec.lsq = 1;
    const int np = m->n_params, L = m->cfg.n_layers;
    int n_sel = 0;
    for (int i = 0; i < np; i++) n_sel += (kind_of(m->params[i].role) & o->kinds) != 0;

    calib c = {.m = m};
    lb_graph g;
    int graph_ok = 0;
    int *ids = NULL, *targets = NULL;
    const size_t n_params = np > 0 ? (size_t)np : 1; /* (np > 0: a model has parameters) */
    float **stored = calloc(n_params, sizeof *stored);
    float *quantized = NULL;
    double *delta = NULL, *e = NULL;
    size_t max_n = 0;
    for (int i = 0; i < np; i++)
        if (kind_of(m->params[i].role) & o->kinds && m->params[i].t->n > max_n) max_n = m->params[i].t->n;
    r->layers = calloc((size_t)(n_sel ? n_sel : 1), sizeof *r->layers);
    r->steps = calloc(n_params, sizeof *r->steps);
    quantized = malloc(max_n * sizeof *quantized);
    lb_status s = stored && r->layers && r->steps && quantized ? LB_OK : lb_error(LB_ENOMEM, "quantize");

    /* Calibration batches: the first o->calib_batches training batches of `seed`. */
    int nb = o->calib_batches;
    if (s == LB_OK && nb > 0) {
        size_t bt = (size_t)B * T;
        lb_batcher bat;
        ids = malloc((size_t)nb * bt * sizeof *ids);
        targets = malloc(bt * sizeof *targets);
        delta = malloc(max_n * sizeof *delta);
        e = malloc(max_n * sizeof *e);
        if (!ids || !targets || !delta || !e) s = lb_error(LB_ENOMEM, "calibration batches");
        if (s == LB_OK && (s = lb_batcher_init_tokens(&bat, train, B, T, seed)) != LB_OK)
            lb_error_prefix("calibration data");
        for (int b = 0; s == LB_OK && b < nb; b++) lb_batcher_next(&bat, ids + (size_t)b * bt, targets);
        if (s == LB_OK && (s = lb_graph_init(&g, 0)) == LB_OK) {
            graph_ok = 1;
            lb_graph_set_grad(&g, 0);
        }
    }

    /* Block by block (then the head): calibrate on the model as quantized so
     * far, then quantize the block's chosen layers in table order. */
    for (int target = 0; target <= L && s == LB_OK; target++) {
        int layer = target < L ? target : -1, any = 0;
        for (int i = 0; i < np; i++)
            any |= m->params[i].layer == layer && (kind_of(m->params[i].role) & o->kinds);
        if (!any) continue;
        if (nb > 0) {
            c.layer = layer;
            for (int i = 0; i < np && s == LB_OK; i++) {
                const lb_param *p = &m->params[i];
                int sl = slot_of(p->role);
                if (p->layer != layer || !(kind_of(p->role) & o->kinds) || c.H[sl]) continue;
                c.K[sl] = p->t->shape[1];
                if (!(c.H[sl] = malloc((size_t)c.K[sl] * c.K[sl] * sizeof(double))))
                    s = lb_error(LB_ENOMEM, "Hessian of '%s'", p->t->name);
            }
            double t0 = now_seconds();
            if (s == LB_OK) s = calibrate(m, &c, &g, ids, nb, B, T);
            r->calib_seconds += now_seconds() - t0;
        }
        for (int i = 0; i < np && s == LB_OK; i++) {
            lb_param *p = &m->params[i];
            if (p->layer != layer || !(kind_of(p->role) & o->kinds)) continue;
            lb_ptq_layer *rep = &r->layers[r->n_layers++];
            rep->param = i;
            size_t n = p->t->n, n_steps = lb_quant_n_blocks(&o->spec, (size_t)p->t->shape[0], (size_t)p->t->shape[1]);
            stored[i] = malloc(n * sizeof(float));
            if (o->method == LB_PTQ_GPTQ) r->steps[i] = malloc(n_steps * sizeof(float));
            if (!stored[i] || (o->method == LB_PTQ_GPTQ && !r->steps[i])) {
                s = lb_error(LB_ENOMEM, "quantize '%s'", p->t->name);
                break;
            }
            const double *H = nb > 0 ? c.H[slot_of(p->role)] : NULL;
            s = quantize_layer(o, p->t, H, stored[i], quantized, r->steps[i], rep, delta, e);
            if (s != LB_OK) {
                lb_error_prefix("tensor '%s'", p->t->name);
                break;
            }
            r->method_seconds += rep->seconds;
            r->rtn_seconds += rep->seconds_rtn;
            /* The layers after this one calibrate on what the forward pass
             * will compute from the checkpoint. */
            memcpy(p->t->data, quantized, n * sizeof(float));
            if (r->out_spec.lsq == 0) {
                free(r->steps[i]);
                r->steps[i] = NULL;
            }
            if (progress) progress(ctx, m, rep);
        }
        for (int sl = 0; sl < N_SLOTS; sl++) {
            free(c.H[sl]);
            c.H[sl] = NULL;
        }
    }
    /* The stored form last: calibration ran on the quantized values. */
    for (int i = 0; i < np && s == LB_OK; i++)
        if (stored[i]) memcpy(m->params[i].t->data, stored[i], m->params[i].t->n * sizeof(float));

    for (int i = 0; i < np; i++) free(stored[i]);
    free(stored);
    free(quantized);
    free(delta);
    free(e);
    free(ids);
    free(targets);
    free(c.xq);
    free(c.xtx);
    if (graph_ok) lb_graph_free(&g);
    if (s != LB_OK) lb_ptq_result_free(r, np);
    return s;
}

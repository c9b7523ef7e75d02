/* The transformer: parameters in one allocation, a forward pass written
 * straight through with autograd ops (each returns NULL once something
 * failed, so the pass is checked once at the end). */
#include "layers/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "quant/quantize.h"

/* ---------------------------------------------------------------------------
 * Configuration */

const char *const lb_ffn_act_names[] = {[LB_FFN_SWIGLU] = "swiglu", [LB_FFN_RELU2] = "relu2"};
_Static_assert(sizeof lb_ffn_act_names / sizeof lb_ffn_act_names[0] == LB_FFN_COUNT, "one name per lb_ffn_act");
const char *const lb_norm_kind_names[] = {[LB_NORM_RMS] = "rmsnorm", [LB_NORM_LAYER] = "layernorm"};
_Static_assert(sizeof lb_norm_kind_names / sizeof lb_norm_kind_names[0] == LB_NORM_COUNT, "one name per lb_norm_kind");

void lb_model_config_defaults(lb_model_config *c) {
    memset(c, 0, sizeof *c); /* zero is LB_QF_NONE / LB_LINEAR_FP / RMS / SwiGLU */
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->norm = LB_NORM_RMS;
    c->ffn_act = LB_FFN_SWIGLU;
    c->tie_embeddings = 1;
    c->init_std = 0.02f;
}

lb_status lb_model_config_validate(const lb_model_config *c) {
    struct { const char *name; int value; } sizes[] = {
        {"vocab_size", c->vocab_size}, {"dim", c->dim},         {"n_layers", c->n_layers},
        {"n_heads", c->n_heads},       {"n_kv_heads", c->n_kv_heads}, {"ffn_dim", c->ffn_dim},
        {"max_seq_len", c->max_seq_len},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value <= 0)
            return lb_error(LB_EINVAL, "model: %s must be positive, got %d", sizes[i].name, sizes[i].value);
    if (c->n_heads % c->n_kv_heads != 0)
        return lb_error(LB_EINVAL, "model: n_kv_heads (%d) must divide n_heads (%d)", c->n_kv_heads, c->n_heads);
    if (c->dim % c->n_heads != 0)
        return lb_error(LB_EINVAL, "model: n_heads (%d) must divide dim (%d)", c->n_heads, c->dim);
    if ((c->dim / c->n_heads) % 2 != 0)
        return lb_error(LB_EINVAL, "model: head dim dim/n_heads = %d must be even (RoPE rotates pairs)",
                        c->dim / c->n_heads);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return lb_error(LB_EINVAL, "model: rope_theta must be positive, got %g", (double)c->rope_theta);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return lb_error(LB_EINVAL, "model: norm_eps must be positive, got %g", (double)c->norm_eps);
    if (!(c->init_std >= 0.0f) || !isfinite(c->init_std))
        return lb_error(LB_EINVAL, "model: init_std must be >= 0, got %g", (double)c->init_std);
    if (c->norm != LB_NORM_RMS && c->norm != LB_NORM_LAYER)
        return lb_error(LB_EINVAL, "model: unknown norm kind %d (expected rmsnorm or layernorm)", (int)c->norm);
    if (c->ffn_act != LB_FFN_SWIGLU && c->ffn_act != LB_FFN_RELU2)
        return lb_error(LB_EINVAL, "model: unknown ffn activation %d (expected swiglu or relu2)", (int)c->ffn_act);
    lb_linear_quant tmp;
    LB_TRY(lb_linear_quant_resolve(&c->attn, &tmp, "model: attn quantization"));
    LB_TRY(lb_linear_quant_resolve(&c->ffn, &tmp, "model: ffn quantization"));
    LB_TRY(lb_linear_quant_resolve(&c->head, &tmp, "model: head quantization"));
    const char *part = NULL;
    if (lb_model_config_check_lsq(c, &part) != LB_OK) {
        lb_error_prefix("model: quant.%s", part);
        return LB_EINVAL;
    }
    return LB_OK;
}

lb_status lb_model_config_check_lsq(const lb_model_config *c, const char **part) {
    const char *where = NULL, *why = NULL;
    char spec[64] = "";
    struct { const char *name; const lb_linear_quant *q; } layers[] = {
        {"attn", &c->attn}, {"ffn", &c->ffn}, {"head", &c->head}};
    if (c->embedding.lsq) {
        where = "embedding";
        why = "learned step sizes apply to linear layers; the embedding is looked up, not multiplied";
        lb_qspec_format(&c->embedding, spec, sizeof spec);
    }
    for (int k = 0; k < 3 && !where; k++) {
        lb_linear_quant r;
        if (lb_linear_quant_resolve(layers[k].q, &r, layers[k].name) != LB_OK) continue; /* reported elsewhere */
        static const char *const act_keys[] = {"attn.activation", "ffn.activation", "head.activation"};
        if (r.activation.lsq && r.activation.gran != LB_QG_TENSOR) {
            where = act_keys[k];
            why = "an input learns one step for the whole tensor (its rows are tokens): use per_tensor";
            lb_qspec_format(&r.activation, spec, sizeof spec);
        } else if (k == 2 && c->tie_embeddings && (r.weight.lsq || r.activation.lsq)) {
            where = r.weight.lsq ? "head.weight" : "head.activation";
            why = "the head is the token embedding (model.tie_embeddings): untie it to learn its steps";
            lb_qspec_format(r.weight.lsq ? &r.weight : &r.activation, spec, sizeof spec);
        }
    }
    if (part) *part = where;
    if (!where) return LB_OK;
    return lb_error(LB_EINVAL, "'%s': %s", spec, why);
}

size_t lb_model_config_num_elements(const lb_model_config *c) {
    size_t V = (size_t)c->vocab_size, d = (size_t)c->dim, F = (size_t)c->ffn_dim;
    size_t hd = (size_t)(c->dim / c->n_heads);
    size_t q = (size_t)c->n_heads * hd, kv = (size_t)c->n_kv_heads * hd;
    size_t block = d + q * d + 2 * kv * d + d * q + d + 2 * F * d + d * F;
    if (c->sub_norm) block += d + F;
    return V * d + (size_t)c->n_layers * block + d + (c->tie_embeddings ? 0 : V * d);
}

/* ---------------------------------------------------------------------------
 * The parameter table */

static const lb_param_role_info roles[] = {
    [LB_ROLE_TOKEN_EMBD] = {"token_embd", LB_PARAM_EMBEDDING, 0},
    [LB_ROLE_ATTN_NORM] = {"attn_norm", LB_PARAM_NORM, 1},
    [LB_ROLE_ATTN_Q] = {"attn_q", LB_PARAM_LINEAR, 1},
    [LB_ROLE_ATTN_K] = {"attn_k", LB_PARAM_LINEAR, 1},
    [LB_ROLE_ATTN_V] = {"attn_v", LB_PARAM_LINEAR, 1},
    [LB_ROLE_ATTN_SUB_NORM] = {"attn_sub_norm", LB_PARAM_NORM, 1},
    [LB_ROLE_ATTN_OUTPUT] = {"attn_output", LB_PARAM_LINEAR, 1},
    [LB_ROLE_FFN_NORM] = {"ffn_norm", LB_PARAM_NORM, 1},
    [LB_ROLE_FFN_GATE] = {"ffn_gate", LB_PARAM_LINEAR, 1},
    [LB_ROLE_FFN_UP] = {"ffn_up", LB_PARAM_LINEAR, 1},
    [LB_ROLE_FFN_SUB_NORM] = {"ffn_sub_norm", LB_PARAM_NORM, 1},
    [LB_ROLE_FFN_DOWN] = {"ffn_down", LB_PARAM_LINEAR, 1},
    [LB_ROLE_OUTPUT_NORM] = {"output_norm", LB_PARAM_NORM, 0},
    [LB_ROLE_OUTPUT] = {"output", LB_PARAM_LINEAR, 0},
    [LB_ROLE_WEIGHT_STEP] = {"weight_step", LB_PARAM_QSTEP, 0},
    [LB_ROLE_ACT_STEP] = {"act_step", LB_PARAM_QSTEP, 0},
};
_Static_assert(sizeof roles / sizeof roles[0] == LB_ROLE_COUNT, "layers/model.c: one row per lb_param_role");

const lb_param_role_info *lb_param_role_of(lb_param_role r) { return (unsigned)r < LB_ROLE_COUNT ? &roles[r] : NULL; }

const lb_param *lb_model_params(const lb_model *m, int *n_params) {
    if (n_params) *n_params = m->n_params;
    return m->params;
}

/* ---------------------------------------------------------------------------
 * Creation: lay out every parameter, then carve them from one allocation. */

/* Appends parameter i: `role` in block `layer` (or -1), shape [rows] or
 * [rows, cols] (cols > 0), quant specs (NULL: none). Its name is already in
 * m->param_names[i]. The data pointers are set once the total size is known. */
static lb_tensor *new_param(lb_model *m, lb_param_role role, int layer, int rows, int cols, const lb_qspec *wspec,
                            const lb_qspec *aspec) {
    int i = m->n_params++;
    lb_tensor *t = &m->tensors[i];
    int shape[2] = {rows, cols};
    lb_tensor_set_shape(t, cols > 0 ? 2 : 1, shape);
    t->name = m->param_names[i];
    t->requires_grad = 1;
    lb_param *p = &m->params[i];
    p->t = t;
    p->role = role;
    p->layer = layer;
    p->weight = wspec ? *wspec : lb_qspec_none();
    p->activation = aspec ? *aspec : lb_qspec_none();
    p->no_decay = roles[role].kind != LB_PARAM_LINEAR;
    p->owner = -1;
    m->param_list[i] = t;
    m->weight_step[i] = m->act_step[i] = -1;
    return t;
}

/* A weight, a norm gain or the embedding, named after its role. */
static lb_tensor *add_param(lb_model *m, lb_param_role role, int layer, int rows, int cols, const lb_qspec *wspec,
                            const lb_qspec *aspec) {
    const lb_param_role_info *r = &roles[role];
    char *name = m->param_names[m->n_params];
    if (r->per_layer) snprintf(name, LB_PARAM_NAME_MAX, "blk.%d.%s.weight", layer, r->name);
    else snprintf(name, LB_PARAM_NAME_MAX, "%s.weight", r->name);
    return new_param(m, role, layer, rows, cols, wspec, aspec);
}

/* The learned step sizes of parameter `owner` (role WEIGHT_STEP or
 * ACT_STEP), named after it: blk.0.attn_q.weight -> blk.0.attn_q.weight_step. */
static void add_step(lb_model *m, int owner, lb_param_role role) {
    const lb_param *o = &m->params[owner];
    const char *oname = o->t->name;
    size_t base = strlen(oname) - strlen(".weight"); /* every owner's name ends in .weight */
    snprintf(m->param_names[m->n_params], LB_PARAM_NAME_MAX, "%.*s.%s", (int)base, oname, roles[role].name);
    int rows = 1, cols = 0;
    if (role == LB_ROLE_WEIGHT_STEP && o->weight.gran != LB_QG_TENSOR) {
        rows = o->t->shape[0];
        if (o->weight.gran == LB_QG_GROUP) cols = (o->t->shape[1] + o->weight.group - 1) / o->weight.group;
    }
    int i = m->n_params;
    new_param(m, role, o->layer, rows, cols, NULL, NULL);
    m->params[i].owner = owner;
    if (role == LB_ROLE_WEIGHT_STEP) m->weight_step[owner] = i;
    else m->act_step[owner] = i;
}

/* Every table entry but the steps, plus up to two steps per linear layer. */
static int max_params(const lb_model_config *c) {
    int linears = 7 * c->n_layers + 1;
    return 1 + 11 * c->n_layers + 2 + 2 * linears;
}

/* The parameter table of `cfg` (names, shapes, specs, n_elements), without
 * the parameters' data; NULL (and *m_out NULL or partly built) on failure. */
static lb_status build_table(const lb_model_config *cfg, uint64_t seed, lb_model **m_out) {
    lb_model *m = *m_out = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = *cfg;
    m->head_dim = cfg->dim / cfg->n_heads;
    m->quant_lambda = 1.0f;
    m->seed = seed;
    lb_linear_quant_resolve(&cfg->attn, &m->q_attn, "attn");
    lb_linear_quant_resolve(&cfg->ffn, &m->q_ffn, "ffn");
    lb_linear_quant_resolve(&cfg->head, &m->q_head, "head");
    m->q_embd = cfg->embedding;

    int cap = max_params(cfg);
    m->params = calloc((size_t)cap, sizeof *m->params);
    m->tensors = calloc((size_t)cap, sizeof *m->tensors);
    m->param_list = calloc((size_t)cap, sizeof *m->param_list);
    m->param_names = calloc((size_t)cap, sizeof *m->param_names);
    m->weight_step = calloc((size_t)cap, sizeof *m->weight_step);
    m->act_step = calloc((size_t)cap, sizeof *m->act_step);
    m->blocks = calloc((size_t)cfg->n_layers, sizeof *m->blocks);
    if (!m->params || !m->tensors || !m->param_list || !m->param_names || !m->weight_step || !m->act_step ||
        !m->blocks)
        goto oom;

    int V = cfg->vocab_size, d = cfg->dim, F = cfg->ffn_dim;
    int nq = cfg->n_heads * m->head_dim, nkv = cfg->n_kv_heads * m->head_dim;
    const lb_qspec *aw = &m->q_attn.weight, *aa = &m->q_attn.activation;
    const lb_qspec *fw = &m->q_ffn.weight, *fa = &m->q_ffn.activation;

    m->token_embd = add_param(m, LB_ROLE_TOKEN_EMBD, -1, V, d, &m->q_embd, NULL);
    for (int l = 0; l < cfg->n_layers; l++) {
        lb_block *b = &m->blocks[l];
        b->attn_norm = add_param(m, LB_ROLE_ATTN_NORM, l, d, 0, NULL, NULL);
        b->attn_q = add_param(m, LB_ROLE_ATTN_Q, l, nq, d, aw, aa);
        b->attn_k = add_param(m, LB_ROLE_ATTN_K, l, nkv, d, aw, aa);
        b->attn_v = add_param(m, LB_ROLE_ATTN_V, l, nkv, d, aw, aa);
        if (cfg->sub_norm) b->attn_sub_norm = add_param(m, LB_ROLE_ATTN_SUB_NORM, l, nq, 0, NULL, NULL);
        b->attn_output = add_param(m, LB_ROLE_ATTN_OUTPUT, l, d, nq, aw, aa);
        b->ffn_norm = add_param(m, LB_ROLE_FFN_NORM, l, d, 0, NULL, NULL);
        b->ffn_gate = add_param(m, LB_ROLE_FFN_GATE, l, F, d, fw, fa);
        b->ffn_up = add_param(m, LB_ROLE_FFN_UP, l, F, d, fw, fa);
        if (cfg->sub_norm) b->ffn_sub_norm = add_param(m, LB_ROLE_FFN_SUB_NORM, l, F, 0, NULL, NULL);
        b->ffn_down = add_param(m, LB_ROLE_FFN_DOWN, l, d, F, fw, fa);
    }
    m->output_norm = add_param(m, LB_ROLE_OUTPUT_NORM, -1, d, 0, NULL, NULL);
    m->output = cfg->tie_embeddings
                    ? m->token_embd
                    : add_param(m, LB_ROLE_OUTPUT, -1, V, d, &m->q_head.weight, &m->q_head.activation);
    /* Learned step sizes last, so that :lsq leaves the other parameters as they were. */
    for (int i = 0, n = m->n_params; i < n; i++) {
        if (m->params[i].weight.lsq) add_step(m, i, LB_ROLE_WEIGHT_STEP);
        if (m->params[i].activation.lsq) add_step(m, i, LB_ROLE_ACT_STEP);
    }

    for (int i = 0; i < m->n_params; i++) m->n_elements += m->tensors[i].n;
    return LB_OK;
oom:
    return LB_ENOMEM;
}

lb_model *lb_model_shape(const lb_model_config *cfg) {
    if (lb_model_config_validate(cfg) != LB_OK) return NULL;
    lb_model *m = NULL;
    if (build_table(cfg, 0, &m) == LB_OK) return m;
    lb_error(LB_ENOMEM, "model: cannot allocate the parameter table");
    lb_model_free(m);
    return NULL;
}

lb_model *lb_model_create(const lb_model_config *cfg, uint64_t seed) {
    if (lb_model_config_validate(cfg) != LB_OK) return NULL;
    lb_model *m = NULL;
    if (build_table(cfg, seed, &m) != LB_OK) goto oom;
    /* One allocation for all data, one for all gradients; each tensor points
     * at its slice, in order, without padding. */
    m->params_memory = malloc(m->n_elements * sizeof(float));
    m->grads_memory = calloc(m->n_elements, sizeof(float));
    if (!m->params_memory || !m->grads_memory) goto oom;
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        m->tensors[i].data = m->params_memory + off;
        m->tensors[i].grad = m->grads_memory + off;
        off += m->tensors[i].n;
    }
    lb_model_init_params(m, seed);
    return m;

oom:
    lb_error(LB_ENOMEM, "model: cannot allocate %zu parameters: %zu bytes (%.1f MiB) of weights and as many of "
             "gradients", m ? m->n_elements : (size_t)0, m ? m->n_elements * sizeof(float) : (size_t)0,
             m ? m->n_elements * sizeof(float) / 1048576.0 : 0.0);
    lb_model_free(m);
    return NULL;
}

void lb_model_free(lb_model *m) {
    if (!m) return;
    free(m->params_memory);
    free(m->grads_memory);
    free(m->params);
    free(m->tensors);
    free(m->param_list);
    free(m->param_names);
    free(m->weight_step);
    free(m->act_step);
    free(m->blocks);
    free(m);
}

void lb_model_init_params(lb_model *m, uint64_t seed) {
    const lb_model_config *c = &m->cfg;
    float out_std = c->init_std / sqrtf(2.0f * (float)c->n_layers);
    /* Each parameter draws from its own stream, so the result does not depend
     * on how the loop is split across threads. */
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m->n_params; i++) {
        const lb_param *p = &m->params[i];
        lb_tensor *t = p->t;
        if (roles[p->role].kind == LB_PARAM_QSTEP) continue; /* below, from the weights */
        if (roles[p->role].kind == LB_PARAM_NORM) {
            for (size_t j = 0; j < t->n; j++) t->data[j] = 1.0f;
            continue;
        }
        /* GPT-2: projections back into the residual stream get a smaller init,
         * so the stream's variance does not grow with depth. */
        int to_residual = p->role == LB_ROLE_ATTN_OUTPUT || p->role == LB_ROLE_FFN_DOWN;
        float std = to_residual ? out_std : c->init_std;
        lb_rng r;
        lb_rng_init(&r, seed, (uint64_t)LB_STREAM_INIT + (uint64_t)i);
        for (size_t j = 0; j < t->n; j++) t->data[j] = std * lb_rng_normal(&r);
    }
    lb_model_init_steps(m);
}

void lb_model_init_steps(lb_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        const lb_param *p = &m->params[i];
        if (roles[p->role].kind != LB_PARAM_QSTEP) continue;
        const lb_param *o = &m->params[p->owner];
        const lb_qspec *spec = p->role == LB_ROLE_WEIGHT_STEP ? &o->weight : &o->activation;
        double sqrt_qp = sqrt((double)((1 << (spec->bits - 1)) - 1));
        if (p->role == LB_ROLE_ACT_STEP) {
            p->t->data[0] = (float)(2.0 / sqrt_qp);
            continue;
        }
        const lb_tensor *w = o->t;
        size_t rows = lb_tensor_rows(w), cols = (size_t)lb_tensor_cols(w);
        for (size_t b = 0; b < p->t->n; b++) {
            size_t start, len;
            lb_quant_block_span(spec, rows, cols, b, &start, &len);
            double sabs = 0.0;
            for (size_t j = start; j < start + len; j++) sabs += fabs((double)w->data[j]);
            p->t->data[b] = fmaxf((float)(2.0 * sabs / (double)len / sqrt_qp), LB_LSQ_MIN_STEP);
        }
    }
}

int lb_model_param_index(const lb_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

lb_tensor *lb_model_param(lb_model *m, const char *name) {
    int i = lb_model_param_index(m, name);
    return i < 0 ? NULL : &m->tensors[i];
}

void lb_model_zero_grad(lb_model *m) { memset(m->grads_memory, 0, m->n_elements * sizeof(float)); }

lb_status lb_model_set_quant_lambda(lb_model *m, float lambda) {
    if (!(lambda >= 0.0f && lambda <= 1.0f))
        return lb_error(LB_EINVAL, "model: quantization lambda must be in [0, 1], got %g", (double)lambda);
    m->quant_lambda = lambda;
    return LB_OK;
}

/* ---------------------------------------------------------------------------
 * Forward */

static lb_tensor *norm(lb_graph *g, const lb_model *m, lb_tensor *x, lb_tensor *w) {
    if (m->cfg.norm == LB_NORM_LAYER) return lb_layernorm(g, x, w, NULL, m->cfg.norm_eps);
    return lb_rmsnorm(g, x, w, m->cfg.norm_eps);
}

static lb_tensor *reshape4(lb_graph *g, lb_tensor *x, int B, int T, int H, int D) {
    int shape[4] = {B, T, H, D};
    return lb_reshape(g, x, 4, shape);
}

static lb_tensor *reshape3(lb_graph *g, lb_tensor *x, int B, int T, int D) {
    int shape[3] = {B, T, D};
    return lb_reshape(g, x, 3, shape);
}

/* A linear layer of the model. Specs with stochastic rounding get a copy in
 * the arena with this step's and this tensor's stream (see lb_model_set_step);
 * with low-bit activation gradients the input passes through lb_grad_round. */
static lb_tensor *linear(lb_graph *g, const lb_model *m, lb_tensor *x, lb_tensor *w, const lb_linear_quant *q) {
    if (m->act_grad != LB_GRAD_FP32)
        x = lb_grad_round(g, x, m->act_grad, m->seed,
                          LB_SR_COUNTER(m->step, LB_SR_ID_ACT_GRAD + (uint64_t)(w - m->tensors)));
    if (q->weight.stochastic || q->activation.stochastic) {
        lb_linear_quant *c = lb_graph_alloc(g, sizeof *c);
        if (!c) return NULL;
        *c = *q;
        uint64_t base = LB_SR_COUNTER(m->step, 2 * (uint64_t)(w - m->tensors));
        c->weight.seed = c->activation.seed = m->seed;
        c->weight.stream = base;
        c->activation.stream = base + 1;
        q = c;
    }
    int i = (int)(w - m->tensors), ws = m->weight_step[i], as = m->act_step[i];
    if (m->linear_input && x) m->linear_input(m->linear_input_ctx, i, x);
    lb_linear_steps steps = {ws >= 0 ? &m->tensors[ws] : NULL, as >= 0 ? &m->tensors[as] : NULL};
    lb_tensor *learned[2] = {steps.weight, steps.activation};
    for (int k = 0; k < 2; k++) /* back onto s >= LB_LSQ_MIN_STEP (see model.h) */
        for (size_t b = 0; learned[k] && b < learned[k]->n; b++)
            if (!(learned[k]->data[b] >= LB_LSQ_MIN_STEP) && isfinite(learned[k]->data[b]))
                learned[k]->data[b] = LB_LSQ_MIN_STEP;
    return lb_linear(g, x, w, q, &steps, m->quant_lambda);
}

lb_tensor *lb_model_forward(lb_model *m, lb_graph *g, const int *ids, int B, int T, const int *targets,
                            lb_tensor **logits_out) {
    const lb_model_config *c = &m->cfg;
    if (logits_out) *logits_out = NULL;
    if (B < 1 || T < 1 || T > c->max_seq_len) {
        lb_error(LB_EINVAL, "model forward: batch %dx%d, expected B >= 1 and 1 <= T <= max_seq_len (%d)", B, T,
                 c->max_seq_len);
        return NULL;
    }
    const int H = c->n_heads, Hkv = c->n_kv_heads, Dh = m->head_dim;
    const float lambda = m->quant_lambda;

    /* Token embedding, fake-quantized first when the config asks for it. */
    lb_tensor *table = m->token_embd;
    if (!lb_qspec_is_none(&m->q_embd) && lambda > 0.0f) {
        const lb_qspec *spec = &m->q_embd;
        lb_qspec *sr = m->q_embd.stochastic ? lb_graph_alloc(g, sizeof *sr) : NULL;
        if (sr) { /* stream as for the weight of parameter 0, see linear() */
            *sr = m->q_embd;
            sr->seed = m->seed;
            sr->stream = LB_SR_COUNTER(m->step, 0);
            spec = sr;
        }
        table = m->q_embd.stochastic && !sr ? NULL : lb_fake_quant(g, table, spec, LB_STE_IDENTITY, lambda);
    }
    lb_tensor *x = table ? lb_embedding(g, table, ids, B, T) : NULL; /* [B, T, d] */

    for (int l = 0; l < c->n_layers; l++) {
        const lb_block *b = &m->blocks[l];

        /* Attention: pre-norm, q/k/v projections, RoPE, causal attention,
         * optional SubLN, output projection, residual. */
        lb_tensor *h = norm(g, m, x, b->attn_norm);
        lb_tensor *qkv[3] = {linear(g, m, h, b->attn_q, &m->q_attn), linear(g, m, h, b->attn_k, &m->q_attn),
                             linear(g, m, h, b->attn_v, &m->q_attn)};
        if (m->taps && m->taps->qkv)
            for (int i = 0; i < 3; i++) m->taps->qkv[3 * l + i] = qkv[i];
        lb_tensor *q = reshape4(g, qkv[0], B, T, H, Dh);
        lb_tensor *k = reshape4(g, qkv[1], B, T, Hkv, Dh);
        lb_tensor *v = reshape4(g, qkv[2], B, T, Hkv, Dh);
        q = lb_rope(g, q, c->rope_theta, 0);
        k = lb_rope(g, k, c->rope_theta, 0);
        lb_tensor *a = reshape3(g, lb_attention(g, q, k, v), B, T, H * Dh);
        if (b->attn_sub_norm) a = norm(g, m, a, b->attn_sub_norm);
        x = lb_add(g, x, linear(g, m, a, b->attn_output, &m->q_attn));

        /* Feed-forward: pre-norm, gated activation, optional SubLN, down
         * projection, residual. */
        h = norm(g, m, x, b->ffn_norm);
        lb_tensor *gate = linear(g, m, h, b->ffn_gate, &m->q_ffn);
        lb_tensor *up = linear(g, m, h, b->ffn_up, &m->q_ffn);
        lb_tensor *f = c->ffn_act == LB_FFN_RELU2 ? lb_mul(g, lb_relu2(g, gate), up) : lb_swiglu(g, gate, up);
        if (b->ffn_sub_norm) f = norm(g, m, f, b->ffn_sub_norm);
        x = lb_add(g, x, linear(g, m, f, b->ffn_down, &m->q_ffn));
        if (m->taps && m->taps->hidden) m->taps->hidden[l] = x;
    }

    x = norm(g, m, x, m->output_norm);
    lb_tensor *logits = linear(g, m, x, m->output, &m->q_head); /* [B, T, V] */
    if (!logits) {
        lb_error_prefix("model forward");
        return NULL;
    }
    if (logits_out) *logits_out = logits;
    if (!targets) return logits;
    lb_tensor *loss = lb_cross_entropy(g, logits, targets, -1);
    if (!loss) lb_error_prefix("model forward: loss");
    return loss;
}

/* ---------------------------------------------------------------------------
 * Activation memory: lb_model_forward's allocations, op by op */

/* The arena as the forward pass fills it: `used` bytes held now, `peak` the
 * most held at once (with what an op holds only while it runs). */
typedef struct arena_tally {
    size_t used, peak;
} arena_tally;

static size_t aligned(size_t bytes) { return (bytes + LB_ARENA_ALIGN - 1) & ~(size_t)(LB_ARENA_ALIGN - 1); }

static void hold(arena_tally *a, size_t bytes) {
    a->used += aligned(bytes);
    if (a->used > a->peak) a->peak = a->used;
}
/* Memory an op needs while it runs and hands back before it returns. */
static void transient(arena_tally *a, size_t bytes) {
    if (a->used + aligned(bytes) > a->peak) a->peak = a->used + aligned(bytes);
}
/* An activation tensor: its header and its data (lb_graph_tensor). */
static void tensor(arena_tally *a, size_t n) {
    hold(a, sizeof(lb_tensor));
    hold(a, n * sizeof(float));
}

/* A norm over rows × D (ops_norm.c: output, and for training the
 * statistics and per-chunk gain gradients). */
static void tally_norm(arena_tally *a, const lb_model_config *c, size_t rows, size_t D, int train) {
    tensor(a, rows * D);
    if (!train) return;
    hold(a, 64); /* the saved struct */
    hold(a, rows * sizeof(float));
    if (c->norm == LB_NORM_LAYER) hold(a, rows * sizeof(float));
    hold(a, (rows < 64 ? rows : 64) * D * sizeof(float)); /* NORM_CHUNKS partial gain gradients */
}

/* A linear layer x [M, K] · w [N, K]ᵀ (layers/linear.c, lb_qmatmul);
 * `*xq_cached` says the previous layer quantized the same input. *backward
 * becomes the most that one layer's backward pass needs at once (its
 * input's gradient and the operands it makes again, ops_qmatmul.c), if more. */
static void tally_linear(arena_tally *a, size_t *backward, const lb_model *m, const lb_linear_quant *q,
                         size_t M, size_t K, size_t N, int train, lb_gemm_precision p, int *xq_cached) {
    const lb_qspec *xs = lb_qspec_is_none(&q->activation) ? NULL : &q->activation;
    const lb_qspec *ws = lb_qspec_is_none(&q->weight) ? NULL : &q->weight;
    if (m->act_grad != LB_GRAD_FP32 && train) { /* grad_round's view and its saved struct */
        hold(a, sizeof(lb_tensor));
        hold(a, 64);
    }
    if (q->weight.stochastic || q->activation.stochastic) hold(a, sizeof(lb_linear_quant));
    size_t need = M * K * sizeof(float); /* the input's gradient */
    if (q->mode != LB_LINEAR_FP && (q->weight.lsq || q->activation.lsq)) {
        /* learned steps: each operand fake-quantized on its own node, then a product */
        if (xs) tensor(a, M * K);
        if (ws) tensor(a, N * K);
        tensor(a, M * N);
        if (ws) need += N * K * sizeof(float);
        *xq_cached = 0;
    } else if (q->mode == LB_LINEAR_FP || (!xs && !ws)) {
        tensor(a, M * N); /* lb_matmul */
        *xq_cached = 0;
    } else {
        tensor(a, M * N);
        if (lb_qmatmul_integer(xs, ws, 1.0f)) {
            if (!*xq_cached) {
                hold(a, M * K); /* int8 codes of the input */
                hold(a, M * sizeof(float));
            }
            const int keep = train && lb_qmatmul_keeps_weight_codes(M, N);
            if (keep) { /* the weight's codes, kept for the backward pass; the row scales */
                hold(a, N * K);
                transient(a, M * sizeof(float));
            } else {
                transient(a, aligned(N * K) + aligned(M * sizeof(float)));
            }
            if (p == LB_PRECISION_BF16) {
                size_t dx = (keep ? 0 : aligned(N * K)) + aligned(N * K * 2) + aligned(M * N * 2);
                size_t dw = aligned(M * K * 2) + aligned(M * N * 2);
                need += dx > dw ? dx : dw;
            } else { /* the weight's values; the input's, kept for the next node that shares them */
                need += aligned(N * K * sizeof(float)) + aligned(M * K * sizeof(float));
            }
        } else {
            if (xs && !*xq_cached) hold(a, M * K * sizeof(float)); /* the quantized input */
            if (ws) {
                transient(a, N * K * sizeof(float));
                need += N * K * sizeof(float);
            }
        }
        *xq_cached = xs != NULL;
        if (train) hold(a, 256); /* the saved struct */
    }
    if (need > *backward) *backward = need;
}

size_t lb_model_forward_bytes(const lb_model *m, int B, int T, int train, int n_threads, lb_gemm_precision p,
                              lb_gemm_precision attn_p) {
    const lb_model_config *c = &m->cfg;
    const size_t BT = (size_t)B * T, d = (size_t)c->dim, F = (size_t)c->ffn_dim, V = (size_t)c->vocab_size;
    const size_t Dh = (size_t)m->head_dim, nq = (size_t)c->n_heads * Dh, nkv = (size_t)c->n_kv_heads * Dh;
    const size_t esize = attn_p == LB_PRECISION_BF16 ? 2 : 4; /* attention's head-major copies */
    arena_tally a = {0, 0};
    size_t bw = 0;
    int cached = 0;
    if (!lb_qspec_is_none(&m->q_embd)) {
        if (m->q_embd.stochastic) hold(&a, sizeof(lb_qspec));
        tensor(&a, V * d); /* the fake-quantized table */
        if (train) hold(&a, 64);
    }
    tensor(&a, BT * d); /* embedding */
    for (int l = 0; l < c->n_layers; l++) {
        tally_norm(&a, c, BT, d, train);
        cached = 0;
        tally_linear(&a, &bw, m, &m->q_attn, BT, d, nq, train, p, &cached);
        tally_linear(&a, &bw, m, &m->q_attn, BT, d, nkv, train, p, &cached);
        tally_linear(&a, &bw, m, &m->q_attn, BT, d, nkv, train, p, &cached);
        for (int i = 0; i < 3; i++) hold(&a, sizeof(lb_tensor)); /* reshape views */
        for (int i = 0; i < 2; i++) { /* RoPE of q and k: output, cos and sin tables */
            tensor(&a, BT * (i == 0 ? nq : nkv));
            hold(&a, (size_t)T * (Dh / 2) * sizeof(float));
            hold(&a, (size_t)T * (Dh / 2) * sizeof(float));
            if (train) hold(&a, 64);
        }
        /* attention: its output; per-thread probabilities and head-major copies while it runs */
        tensor(&a, BT * nq);
        size_t scratch =
            (size_t)n_threads * lb_attention_scratch_floats(T, (int)Dh, c->n_heads, c->n_kv_heads) * sizeof(float);
        transient(&a, aligned(scratch) + aligned((nq + 2 * nkv) * BT * esize));
        if (train) hold(&a, 64);
        hold(&a, sizeof(lb_tensor)); /* reshape view */
        if (c->sub_norm) tally_norm(&a, c, BT, nq, train);
        cached = 0;
        tally_linear(&a, &bw, m, &m->q_attn, BT, nq, d, train, p, &cached);
        tensor(&a, BT * d); /* residual */
        tally_norm(&a, c, BT, d, train);
        cached = 0;
        tally_linear(&a, &bw, m, &m->q_ffn, BT, d, F, train, p, &cached);
        tally_linear(&a, &bw, m, &m->q_ffn, BT, d, F, train, p, &cached);
        tensor(&a, BT * F); /* SwiGLU, or relu² ... */
        if (c->ffn_act == LB_FFN_RELU2) tensor(&a, BT * F); /* ... times up */
        if (c->sub_norm) tally_norm(&a, c, BT, F, train);
        cached = 0;
        tally_linear(&a, &bw, m, &m->q_ffn, BT, F, d, train, p, &cached);
        tensor(&a, BT * d); /* residual */
    }
    tally_norm(&a, c, BT, d, train);
    cached = 0;
    size_t head = 0;
    tally_linear(&a, &head, m, &m->q_head, BT, d, V, train, p, &cached);
    tensor(&a, 1); /* the loss */
    hold(&a, 64);
    hold(&a, BT * sizeof(float)); /* row log-sum-exps */
    if (!train) return a.peak;
    /* The backward pass frees as it goes, but first it holds the logits'
     * gradient and the head's needs; later layers mostly reuse what it freed,
     * except for recomputed operands larger than anything freed so far. */
    size_t logits_grad = aligned(BT * V * sizeof(float));
    size_t first = a.used + logits_grad + aligned(head);
    size_t later = a.used + logits_grad + aligned(bw);
    size_t back = first > later ? first : later;
    return back > a.peak ? back : a.peak;
}

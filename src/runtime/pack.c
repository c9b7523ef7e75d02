/* Building the runtime's model from a model's parameter table.
 *
 * A linear layer is packed when the training forward takes its integer path
 * for it: λ = 1, a ternary or binary weight with one scale for the tensor,
 * and a symmetric INT input spec (8 bits or fewer) per token without
 * stochastic rounding — the BitNet b1.58 and b1 recipes. Its codes and scale
 * come from lb_quantize with the layer's own spec, so they are the training
 * forward's. Every other linear layer keeps fp32 weights, fake-quantized as
 * lb_qmatmul does (the documented fallback; the fp32 LM head is one). What
 * training draws anew every step (stochastic rounding), an activation scale
 * shared by all tokens of a batch, and learned step sizes have no
 * token-by-token equivalent: such models are refused with the reason. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quantize.h"
#include "runtime/packed.h"

lb_rt_options lb_rt_options_default(void) { return (lb_rt_options){LB_RT_ISA_AUTO, 0}; }

/* 64-byte aligned memory the model owns (freed with it); NULL on failure. */
static void *model_alloc(lb_rt_model *rm, size_t bytes) {
    if (rm->n_allocs == rm->cap_allocs) {
        int cap = rm->cap_allocs ? 2 * rm->cap_allocs : 64;
        void **a = realloc(rm->allocs, (size_t)cap * sizeof *a);
        if (!a) return NULL;
        rm->allocs = a;
        rm->cap_allocs = cap;
    }
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) {
        rm->allocs[rm->n_allocs++] = p;
        rm->info.model_bytes += bytes;
    }
    return p;
}

static const float *model_copy(lb_rt_model *rm, const float *src, size_t n) {
    float *p = model_alloc(rm, n * sizeof *p);
    if (p) memcpy(p, src, n * sizeof *p);
    return p;
}

static int is_packable(const lb_qspec *w, const lb_qspec *a, float lambda) {
    return lambda == 1.0f && (w->format == LB_QF_TERNARY || w->format == LB_QF_BINARY) && w->gran == LB_QG_TENSOR &&
           a->format == LB_QF_INT && a->bits <= 8 && a->gran == LB_QG_ROW && !a->asymmetric && !a->stochastic;
}

/* An activation spec is reproduced token by token unless it scales a whole
 * batch with one number: its scale blocks are per row or per group of a
 * row, or it has none (bf16, fp16, raw casts). */
static int shares_scale_across_tokens(const lb_qspec *a) {
    int unscaled = a->format == LB_QF_NONE || a->format == LB_QF_BF16 || a->format == LB_QF_FP16 || a->raw;
    return !unscaled && lb_quant_n_blocks(a, 2, 64) == 1;
}

static lb_status spec_error(const char *what, const char *name, const lb_qspec *s, const char *why) {
    char text[96];
    lb_qspec_format(s, text, sizeof text);
    return lb_error(LB_EINVAL, "runtime: the %s spec '%s' of '%s' %s", what, text, name, why);
}

/* Fills `L` for weight w [n, k] with specs ws (weight) and as (input). */
static lb_status make_linear(lb_rt_model *rm, lb_rt_linear *L, const char *name, const float *w, int n, int k,
                             const lb_qspec *ws, const lb_qspec *as, float lambda, int dense) {
    memset(L, 0, sizeof *L);
    L->name = name;
    L->n = n;
    L->k = k;
    const int quant = lambda > 0.0f; /* λ = 0: lb_linear multiplies plainly */
    if (!dense && is_packable(ws, as, lambda)) {
        L->format = ws->format == LB_QF_TERNARY ? LB_RT_W_TERNARY : LB_RT_W_BINARY;
        L->kp = lb_rt_padded(k);
        L->row_bytes = L->format == LB_RT_W_TERNARY ? lb_rt_ternary_row_bytes(L->kp) : lb_rt_binary_row_bytes(L->kp);
        int8_t *codes = malloc((size_t)n * (size_t)k);
        uint8_t *packed = model_alloc(rm, (size_t)n * L->row_bytes);
        if (!codes || !packed) {
            free(codes);
            return lb_error(LB_ENOMEM, "runtime: packing '%s' [%d, %d]", name, n, k);
        }
        lb_status st = lb_quantize(ws, w, (size_t)n, (size_t)k, codes, &L->scale, NULL);
        for (int r = 0; st == LB_OK && r < n; r++) {
            const int8_t *cr = codes + (size_t)r * k;
            uint8_t *pr = packed + (size_t)r * L->row_bytes;
            if (L->format == LB_RT_W_TERNARY) lb_rt_pack_ternary_row(cr, k, pr);
            else lb_rt_pack_binary_row(cr, k, pr);
        }
        free(codes);
        if (st != LB_OK) {
            lb_error_prefix("runtime: '%s'", name);
            return st;
        }
        L->packed = packed;
        L->input = LB_RT_IN_CODES;
        L->act = *as;
        const float Qb = (float)(1 << (as->bits - 1));
        L->act_num = as->b1 ? Qb : Qb - 1.0f;
        L->act_min = as->b1 ? -(Qb - 1.0f) : -Qb;
        L->act_max = Qb - 1.0f;
        rm->info.packed_bytes += (size_t)n * L->row_bytes;
        rm->info.weight_bytes += (size_t)n * L->row_bytes + sizeof(float);
        if (L->format == LB_RT_W_TERNARY) rm->info.n_ternary++;
        else rm->info.n_binary++;
        return LB_OK;
    }

    /* fp32: the weight as lb_qmatmul multiplies it, q(w) = w + λ·(Q(w) − w). */
    if (quant && ws->stochastic)
        return spec_error("weight", name, ws, "rounds stochastically, with noise training draws anew every step");
    if (quant && as->stochastic)
        return spec_error("input", name, as, "rounds stochastically, with noise training draws anew every step");
    if (quant && shares_scale_across_tokens(as))
        return spec_error("input", name, as,
                          "shares one scale among all tokens of a batch; a token-by-token decoder cannot (use a "
                          "per_token spec)");
    L->format = LB_RT_W_F32;
    L->kp = k;
    if (quant && !lb_qspec_is_none(ws)) {
        float *q = model_alloc(rm, (size_t)n * k * sizeof *q);
        if (!q) return lb_error(LB_ENOMEM, "runtime: '%s' [%d, %d]", name, n, k);
        lb_status st = lb_fake_quantize(ws, w, q, (size_t)n, (size_t)k, NULL);
        if (st != LB_OK) {
            lb_error_prefix("runtime: '%s'", name);
            return st;
        }
        if (lambda < 1.0f)
            for (size_t i = 0; i < (size_t)n * k; i++) q[i] = w[i] + lambda * (q[i] - w[i]);
        L->w = q;
    } else {
        L->w = model_copy(rm, w, (size_t)n * k);
        if (!L->w) return lb_error(LB_ENOMEM, "runtime: '%s' [%d, %d]", name, n, k);
    }
    if (quant && !lb_qspec_is_none(as)) {
        L->input = LB_RT_IN_FAKE_QUANT;
        L->act = *as;
        L->lambda = lambda;
    }
    rm->info.weight_bytes += (size_t)n * k * sizeof(float);
    rm->info.n_fp32++;
    return LB_OK;
}

void lb_rt_model_free(lb_rt_model *rm) {
    if (!rm) return;
    for (int i = 0; i < rm->n_allocs; i++) free(rm->allocs[i]);
    free(rm->allocs);
    free(rm->blocks);
    free(rm);
}

void lb_rt_model_info(const lb_rt_model *rm, lb_rt_info *info) { *info = rm->info; }
const lb_model_config *lb_rt_model_config(const lb_rt_model *rm) { return &rm->cfg; }
int lb_rt_model_sample_vocab(const lb_rt_model *rm) { return rm->n_draw; }

/* The linear layer of block b that parameter role r fills (NULL for others). */
static lb_rt_linear *block_linear(lb_rt_block *b, lb_param_role r) {
    switch (r) {
    case LB_ROLE_ATTN_Q: return &b->q;
    case LB_ROLE_ATTN_K: return &b->k;
    case LB_ROLE_ATTN_V: return &b->v;
    case LB_ROLE_ATTN_OUTPUT: return &b->o;
    case LB_ROLE_FFN_GATE: return &b->gate;
    case LB_ROLE_FFN_UP: return &b->up;
    case LB_ROLE_FFN_DOWN: return &b->down;
    default: return NULL;
    }
}

static const float **block_norm(lb_rt_block *b, lb_param_role r) {
    switch (r) {
    case LB_ROLE_ATTN_NORM: return &b->attn_norm;
    case LB_ROLE_ATTN_SUB_NORM: return &b->attn_sub_norm;
    case LB_ROLE_FFN_NORM: return &b->ffn_norm;
    case LB_ROLE_FFN_SUB_NORM: return &b->ffn_sub_norm;
    default: return NULL;
    }
}

/* Layers that read one input must prepare it one way. */
static lb_status check_shared_input(const lb_rt_linear *a, const lb_rt_linear *b) {
    if (a->input == b->input && memcmp(&a->act, &b->act, sizeof a->act) == 0 && a->lambda == b->lambda &&
        (a->format == LB_RT_W_F32) == (b->format == LB_RT_W_F32))
        return LB_OK;
    return lb_error(LB_EINVAL, "runtime: '%s' and '%s' read the same input but quantize it differently", a->name,
                    b->name);
}

static lb_status build(lb_rt_model *rm, const lb_model *m, int dense) {
    const lb_model_config *c = &m->cfg;
    LB_TRY(lb_model_config_validate(c));
    rm->cfg = *c;
    rm->L = c->n_layers;
    rm->d = c->dim;
    rm->H = c->n_heads;
    rm->Hkv = c->n_kv_heads;
    rm->Dh = c->dim / c->n_heads;
    rm->q_dim = rm->H * rm->Dh;
    rm->kv_dim = rm->Hkv * rm->Dh;
    rm->F = c->ffn_dim;
    rm->V = c->vocab_size;
    rm->n_draw = m->sample_vocab > 0 && m->sample_vocab < rm->V ? m->sample_vocab : rm->V;
    rm->max_seq = c->max_seq_len;
    rm->attn_scale = 1.0f / sqrtf((float)rm->Dh);
    const float lambda = m->quant_lambda;
    if (!(lambda >= 0.0f && lambda <= 1.0f))
        return lb_error(LB_EINVAL, "runtime: quantization lambda %g outside [0, 1]", (double)lambda);
    rm->blocks = calloc((size_t)rm->L, sizeof *rm->blocks);
    if (!rm->blocks) return lb_error(LB_ENOMEM, "runtime: %d blocks", rm->L);

    int n_params;
    const lb_param *params = lb_model_params(m, &n_params);
    const lb_param *embd = NULL, *out_norm = NULL, *output = NULL;
    for (int i = 0; i < n_params; i++) {
        const lb_param *p = &params[i];
        const lb_tensor *t = p->t;
        const lb_param_role_info *ri = lb_param_role_of(p->role);
        if (!ri) return lb_error(LB_EINVAL, "runtime: parameter '%s' has an unknown role %d", t->name, (int)p->role);
        if (ri->kind == LB_PARAM_QSTEP)
            return lb_error(LB_EINVAL, "runtime: '%s' is a learned quantizer step size (LSQ), which the runtime "
                                       "does not implement", t->name);
        size_t bad = lb_find_nonfinite(t->data, t->n);
        if (bad) return lb_error(LB_ENUMERIC, "runtime: parameter '%s' holds a non-finite value at index %zu",
                                 t->name, bad - 1);
        if (ri->per_layer && (p->layer < 0 || p->layer >= rm->L))
            return lb_error(LB_EINVAL, "runtime: '%s' belongs to block %d of %d", t->name, p->layer, rm->L);
        lb_rt_block *b = ri->per_layer ? &rm->blocks[p->layer] : NULL;
        lb_rt_linear *lin = b ? block_linear(b, p->role) : NULL;
        const float **norm = b ? block_norm(b, p->role) : NULL;
        if (lin) {
            LB_TRY(make_linear(rm, lin, t->name, t->data, t->shape[0], t->shape[1], &p->weight, &p->activation,
                               lambda, dense));
        } else if (norm) {
            if (!(*norm = model_copy(rm, t->data, t->n))) return lb_error(LB_ENOMEM, "runtime: '%s'", t->name);
            rm->info.weight_bytes += t->n * sizeof(float);
        } else if (p->role == LB_ROLE_TOKEN_EMBD) {
            embd = p;
        } else if (p->role == LB_ROLE_OUTPUT_NORM) {
            out_norm = p;
        } else if (p->role == LB_ROLE_OUTPUT) {
            output = p;
        }
    }
    if (!embd || !out_norm || (!c->tie_embeddings && !output))
        return lb_error(LB_EINVAL, "runtime: the parameter table lacks %s", !embd ? "token_embd.weight"
                                                                            : !out_norm ? "output_norm.weight"
                                                                                        : "output.weight");
    for (int l = 0; l < rm->L; l++) {
        lb_rt_block *b = &rm->blocks[l];
        if (!b->attn_norm || !b->ffn_norm || !b->q.name || !b->k.name || !b->v.name || !b->o.name || !b->gate.name ||
            !b->up.name || !b->down.name || (c->sub_norm && (!b->attn_sub_norm || !b->ffn_sub_norm)))
            return lb_error(LB_EINVAL, "runtime: the parameter table lacks a parameter of block %d", l);
        LB_TRY(check_shared_input(&b->q, &b->k));
        LB_TRY(check_shared_input(&b->q, &b->v));
        LB_TRY(check_shared_input(&b->gate, &b->up));
    }

    /* The embedding: the lookup table the forward pass reads, fake-quantized
     * first when model.quant.embedding says so; the tied head multiplies the
     * table as it is. */
    const lb_qspec *es = &embd->weight;
    const lb_tensor *E = embd->t;
    if (!lb_qspec_is_none(es) && lambda > 0.0f) {
        if (es->stochastic)
            return spec_error("embedding", E->name, es, "rounds stochastically, with noise training draws anew every step");
        float *q = model_alloc(rm, E->n * sizeof *q);
        if (!q) return lb_error(LB_ENOMEM, "runtime: '%s'", E->name);
        LB_TRY(lb_fake_quantize(es, E->data, q, lb_tensor_rows(E), (size_t)lb_tensor_cols(E), NULL));
        if (lambda < 1.0f)
            for (size_t i = 0; i < E->n; i++) q[i] = E->data[i] + lambda * (q[i] - E->data[i]);
        rm->embd = q;
    } else {
        rm->embd = model_copy(rm, E->data, E->n);
    }
    rm->output_norm = model_copy(rm, out_norm->t->data, out_norm->t->n);
    if (!rm->embd || !rm->output_norm) return lb_error(LB_ENOMEM, "runtime: the embedding");
    rm->info.weight_bytes += ((size_t)rm->d + out_norm->t->n) * sizeof(float); /* one embedding row, the norm */

    const lb_tensor *W = c->tie_embeddings ? E : output->t;
    LB_TRY(make_linear(rm, &rm->head, W->name, W->data, rm->V, rm->d, &m->q_head.weight, &m->q_head.activation,
                       lambda, dense));

    /* RoPE's table, computed as lb_rope computes its own. */
    const int half = rm->Dh / 2;
    float *cs = model_alloc(rm, (size_t)rm->max_seq * half * sizeof *cs);
    float *sn = model_alloc(rm, (size_t)rm->max_seq * half * sizeof *sn);
    if (!cs || !sn) return lb_error(LB_ENOMEM, "runtime: RoPE table");
    for (int j = 0; j < half; j++) {
        double inv_freq = pow((double)c->rope_theta, -2.0 * j / rm->Dh);
        for (int t = 0; t < rm->max_seq; t++) {
            double a = (double)t * inv_freq;
            cs[(size_t)t * half + j] = (float)cos(a);
            sn[(size_t)t * half + j] = (float)sin(a);
        }
    }
    rm->rope_cos = cs;
    rm->rope_sin = sn;

    rm->width_max = rm->head.kp;
    for (int l = 0; l < rm->L; l++) {
        const lb_rt_block *b = &rm->blocks[l];
        const lb_rt_linear *ls[] = {&b->q, &b->o, &b->gate, &b->down};
        for (int i = 0; i < 4; i++)
            if (ls[i]->kp > rm->width_max) rm->width_max = ls[i]->kp;
    }
    return LB_OK;
}

lb_rt_model *lb_rt_model_pack(const lb_model *m, const lb_rt_options *opt) {
    lb_rt_options o = opt ? *opt : lb_rt_options_default();
    lb_rt_isa isa;
    if (lb_rt_isa_choose(o.isa, &isa) != LB_OK) return NULL;
    lb_rt_model *rm = calloc(1, sizeof *rm);
    if (!rm) {
        lb_error(LB_ENOMEM, "runtime: model");
        return NULL;
    }
    rm->isa = isa;
    rm->kern = lb_rt_isa_kernels(isa);
    rm->prefetchw = lb_rt_cpu_prefetchw();
    rm->info.isa = isa;
    if (build(rm, m, o.dense) != LB_OK) {
        lb_rt_model_free(rm);
        return NULL;
    }
    return rm;
}

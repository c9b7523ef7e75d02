/* The packed runtime (src/runtime) against the training-time forward
 * (lb_model_forward), on every instruction-set path this CPU runs.
 *
 * The reference is lb_model_forward with the tape on: its nodes hold every
 * intermediate value (the norms' outputs, q, k, v after RoPE, attention,
 * each projection, the residuals, the logits). Three comparisons:
 *
 * 1. Step by step ("forced"). A probe sees each value the runtime computes,
 *    checks it against the reference's within the fp32 rounding bound of
 *    that step (derived in docs/runtime.md and computed here in double from
 *    the reference's inputs), then replaces it with the reference's, so the
 *    next step starts from the same inputs. Prompt processing and decoding
 *    with the KV cache, position by position.
 * 2. End to end ("free"). No replacement. Where every activation quantizer
 *    got the same codes and step as in training (counted at each quantizer
 *    input), the logits are within the end-to-end bound: the residual
 *    stream's rounding carried through output_norm and the head. A code can
 *    differ only where training's input lies within rounding of a rounding
 *    tie; the count is printed.
 * 3. Bits: the same logits for every instruction set, 1 or 2 threads, one
 *    pass or token by token with the cache, any split into calls.
 * Then generation against lb_generate, and the models the runtime refuses.
 * First, each instruction set's kernels against the exact integer sum, on
 * random and on extreme codes (every weight +1 or −1 against activations of
 * −128 or 127: the largest products the kernels' narrow sums see). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/model.h"
#include "layers/sample.h"
#include "quant/quantize.h"
#include "runtime/packed.h"
#include "runtime/runtime.h"
#include "testutil.h"

#define U 0x1p-24 /* unit roundoff of fp32 */
#define MAX_L 4
#define SAFETY 1.01 /* the bounds are first order in U; second-order terms are far below 1% here */

static double gam(int n) { return n * U / (1.0 - n * U); }

/* ---- kernels --------------------------------------------------------------------- */

static void test_kernels_exact(void **state) {
    (void)state;
    enum { ROWS = 19, TOK = 6, K = 3 * LB_RT_GROUP - 5 };
    const int kp = lb_rt_padded(K);
    int8_t *w = malloc((size_t)ROWS * K), *wb = malloc((size_t)ROWS * K), *a = calloc((size_t)TOK * kp, 1);
    uint8_t *tp = malloc((size_t)ROWS * lb_rt_ternary_row_bytes(kp)), *bp = malloc((size_t)ROWS * lb_rt_binary_row_bytes(kp));
    int32_t asum[TOK], want_t[TOK * ROWS], want_b[TOK * ROWS], got[TOK * ROWS];
    assert_true(w && wb && a && tp && bp);
    for (int kind = 0; kind < 4; kind++) { /* random; all +1 against 127; all +1 against −128; all −1 against −128 */
        for (int r = 0; r < ROWS; r++)
            for (int k = 0; k < K; k++) {
                const size_t i = (size_t)r * K + k;
                w[i] = kind == 0 ? (int8_t)(lb_rand_u32(9, r, k) % 3) - 1 : kind == 3 ? -1 : 1;
                wb[i] = kind == 0 ? (lb_rand_u32(11, r, k) & 1 ? 1 : -1) : w[i]; /* binary: signs */
            }
        for (int t = 0; t < TOK; t++) {
            asum[t] = 0;
            for (int k = 0; k < K; k++) {
                int8_t v = kind == 0 ? (int8_t)(lb_rand_u32(10, t, k) % 256 - 128) : kind == 1 ? 127 : -128;
                a[(size_t)t * kp + k] = v;
                asum[t] += v;
            }
        }
        for (int r = 0; r < ROWS; r++) {
            lb_rt_pack_ternary_row(w + (size_t)r * K, K, tp + (size_t)r * lb_rt_ternary_row_bytes(kp));
            lb_rt_pack_binary_row(wb + (size_t)r * K, K, bp + (size_t)r * lb_rt_binary_row_bytes(kp));
        }
        for (int t = 0; t < TOK; t++)
            for (int r = 0; r < ROWS; r++) {
                int32_t st = 0, sb = 0;
                for (int k = 0; k < K; k++) {
                    const int32_t x = a[(size_t)t * kp + k];
                    st += w[(size_t)r * K + k] * x;
                    sb += wb[(size_t)r * K + k] * x;
                }
                want_t[t * ROWS + r] = st;
                want_b[t * ROWS + r] = sb;
            }
        for (int isa = 0; isa <= (int)lb_rt_isa_best(); isa++) {
            const lb_rt_kernels *kern = lb_rt_isa_kernels((lb_rt_isa)isa);
            assert_non_null(kern);
            for (int n_tok = 1; n_tok <= TOK; n_tok++) {
                memset(got, 0, sizeof got);
                kern->ternary(tp, lb_rt_ternary_row_bytes(kp), ROWS, a, (size_t)kp, asum, n_tok, kp, got, ROWS);
                if (memcmp(got, want_t, (size_t)n_tok * ROWS * sizeof *got))
                    fail_msg("%s ternary kernel, codes %d, %d tokens: not the exact sums", lb_rt_isa_name((lb_rt_isa)isa),
                             kind, n_tok);
                memset(got, 0, sizeof got);
                kern->binary(bp, lb_rt_binary_row_bytes(kp), ROWS, a, (size_t)kp, asum, n_tok, kp, got, ROWS);
                if (memcmp(got, want_b, (size_t)n_tok * ROWS * sizeof *got))
                    fail_msg("%s binary kernel, codes %d, %d tokens: not the exact sums", lb_rt_isa_name((lb_rt_isa)isa),
                             kind, n_tok);
            }
        }
    }
    free(w), free(wb), free(a), free(tp), free(bp);
}

/* ---- models ---------------------------------------------------------------------- */

typedef struct model_case {
    const char *name;
    int V, d, L, H, Hkv, F, max_seq, T;
    lb_norm_kind norm;
    lb_ffn_act act;
    int sub_norm, tied;
    const char *linear;  /* "b1.58", "b1", "fp32", or "WEIGHT_SPEC|INPUT_SPEC" */
    const char *head;    /* NULL: fp32 */
    const char *embd;    /* NULL: none */
    int n_ternary, n_binary, n_fp32; /* linear layers the runtime should make */
} model_case;

static const model_case cases[] = {
    {"b1.58 GQA swiglu sub_norm", 37, 64, 2, 4, 2, 96, 32, 29, LB_NORM_RMS, LB_FFN_SWIGLU, 1, 1, "b1.58", NULL,
     NULL, 14, 0, 1},
    {"b1 MHA relu2 layernorm untied", 29, 48, 2, 3, 3, 80, 24, 24, LB_NORM_LAYER, LB_FFN_RELU2, 0, 0, "b1", NULL,
     NULL, 0, 14, 1},
    {"b1.58 MQA odd widths, b1.58 head", 31, 40, 2, 5, 1, 72, 20, 20, LB_NORM_RMS, LB_FFN_SWIGLU, 1, 1, "b1.58",
     "b1.58", NULL, 15, 0, 0},
    {"b1.58 two passes of 64", 23, 32, 1, 2, 1, 40, 80, 75, LB_NORM_RMS, LB_FFN_RELU2, 1, 1, "b1.58", NULL, NULL,
     7, 0, 1},
    {"fp32 (fallback)", 19, 32, 2, 2, 2, 48, 16, 16, LB_NORM_RMS, LB_FFN_SWIGLU, 0, 1, "fp32", NULL, NULL, 0, 0,
     15},
    {"int4:g16 weights, int8 inputs, int8 embedding (fallback)", 21, 32, 1, 4, 2, 64, 16, 14, LB_NORM_LAYER,
     LB_FFN_SWIGLU, 1, 0, "int4:g16|int8:per_token", NULL, "int8:per_channel", 0, 0, 8},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void set_quant(lb_linear_quant *q, const char *what) {
    memset(q, 0, sizeof *q);
    if (!what || !strcmp(what, "fp32")) q->mode = LB_LINEAR_FP;
    else if (!strcmp(what, "b1.58")) q->mode = LB_LINEAR_B158;
    else if (!strcmp(what, "b1")) q->mode = LB_LINEAR_B1;
    else {
        char w[64], a[64];
        const char *bar = strchr(what, '|');
        assert_non_null(bar);
        snprintf(w, sizeof w, "%.*s", (int)(bar - what), what);
        snprintf(a, sizeof a, "%s", bar + 1);
        q->mode = LB_LINEAR_CUSTOM;
        assert_int_equal(lb_qspec_parse(w, &q->weight), LB_OK);
        assert_int_equal(lb_qspec_parse(a, &q->activation), LB_OK);
    }
}

/* A model of the case with weights large enough that attention is far from
 * uniform and norm gains away from 1. */
static lb_model *make_model(const model_case *mc, uint64_t seed) {
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = mc->V, c.dim = mc->d, c.n_layers = mc->L, c.n_heads = mc->H, c.n_kv_heads = mc->Hkv;
    c.ffn_dim = mc->F, c.max_seq_len = mc->max_seq, c.norm = mc->norm, c.ffn_act = mc->act;
    c.sub_norm = mc->sub_norm, c.tie_embeddings = mc->tied, c.init_std = 0.25f;
    set_quant(&c.attn, mc->linear);
    set_quant(&c.ffn, mc->linear);
    set_quant(&c.head, mc->head);
    if (mc->embd) assert_int_equal(lb_qspec_parse(mc->embd, &c.embedding), LB_OK);
    lb_model *m = lb_model_create(&c, seed);
    assert_non_null(m);
    int n;
    const lb_param *p = lb_model_params(m, &n);
    for (int i = 0; i < n; i++)
        if (lb_param_role_of(p[i].role)->kind == LB_PARAM_NORM) tu_fill_uniform(p[i].t, seed + 1000 + i, 0.5f, 1.5f);
    return m;
}

static void make_ids(int *ids, int T, int V, uint64_t seed) {
    for (int t = 0; t < T; t++) ids[t] = (int)(lb_rand_u32(seed, 3, (uint64_t)t) % (uint32_t)V);
}

/* ---- the reference: lb_model_forward's tape ------------------------------------------ */

typedef struct reference {
    lb_graph g;
    const lb_model *m;
    int T;
    const float *logits;                            /* [T, V] */
    const float *site[LB_RT_SITE_COUNT][MAX_L];     /* [T, width]; global sites in [0] */
    const float *resid_in[MAX_L];                   /* the residual stream into block l */
    const float *q_lin[MAX_L], *k_lin[MAX_L];       /* q, k before RoPE */
} reference;

static int param_index(const lb_model *m, const lb_tensor *t) {
    return t && t >= m->tensors && t < m->tensors + m->n_params ? (int)(t - m->tensors) : -1;
}

static void reference_run(reference *r, lb_model *m, const int *ids, int T) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->T = T;
    assert_int_equal(lb_graph_init(&r->g, 0), LB_OK);
    lb_graph_set_grad(&r->g, 1);
    lb_tensor *logits = lb_model_forward(m, &r->g, ids, 1, T, NULL, NULL);
    assert_non_null(logits);
    r->logits = logits->data;

    /* The training-time forward without the tape gives the same bits. */
    lb_graph g2;
    assert_int_equal(lb_graph_init(&g2, 0), LB_OK);
    lb_graph_set_grad(&g2, 0);
    lb_tensor *l2 = lb_model_forward(m, &g2, ids, 1, T, NULL, NULL);
    assert_non_null(l2);
    assert_memory_equal(l2->data, r->logits, logits->n * sizeof(float));
    lb_graph_free(&g2);

    int n_params, n_attn = 0;
    const lb_param *params = lb_model_params(m, &n_params);
    for (int i = 0; i < r->g.n_nodes; i++) {
        const lb_node *nd = &r->g.nodes[i];
        const float *out = nd->out->data;
        if (!strcmp(nd->op, "attention")) {
            int l = n_attn++;
            r->site[LB_RT_Q][l] = nd->in[0]->data;
            r->site[LB_RT_K][l] = nd->in[1]->data;
            r->site[LB_RT_V][l] = nd->in[2]->data;
            r->site[LB_RT_ATTN][l] = out;
            continue;
        }
        for (int l = 0; l < m->cfg.n_layers; l++) { /* consumers of a projection's output */
            const float *in1 = nd->in[1] ? nd->in[1]->data : NULL;
            if (!in1) break;
            if (!strcmp(nd->op, "add") && in1 == r->site[LB_RT_ATTN_OUTPUT][l]) r->site[LB_RT_ATTN_RESIDUAL][l] = out;
            if (!strcmp(nd->op, "add") && in1 == r->site[LB_RT_FFN_DOWN][l]) r->site[LB_RT_FFN_RESIDUAL][l] = out;
            if ((!strcmp(nd->op, "swiglu") || !strcmp(nd->op, "mul")) && in1 == r->site[LB_RT_FFN_UP][l])
                r->site[LB_RT_FFN_ACT][l] = out;
        }
        int pi = param_index(m, nd->in[1]);
        if (pi < 0 || !strcmp(nd->op, "add")) continue;
        const lb_param *p = &params[pi];
        const int l = p->layer < 0 ? 0 : p->layer;
        switch (p->role) {
        case LB_ROLE_ATTN_NORM: r->site[LB_RT_ATTN_NORM][l] = out, r->resid_in[l] = nd->in[0]->data; break;
        case LB_ROLE_ATTN_Q: r->q_lin[l] = out; break;
        case LB_ROLE_ATTN_K: r->k_lin[l] = out; break;
        case LB_ROLE_ATTN_SUB_NORM: r->site[LB_RT_ATTN_SUB_NORM][l] = out; break;
        case LB_ROLE_ATTN_OUTPUT: r->site[LB_RT_ATTN_OUTPUT][l] = out; break;
        case LB_ROLE_FFN_NORM: r->site[LB_RT_FFN_NORM][l] = out; break;
        case LB_ROLE_FFN_GATE: r->site[LB_RT_FFN_GATE][l] = out; break;
        case LB_ROLE_FFN_UP: r->site[LB_RT_FFN_UP][l] = out; break;
        case LB_ROLE_FFN_SUB_NORM: r->site[LB_RT_FFN_SUB_NORM][l] = out; break;
        case LB_ROLE_FFN_DOWN: r->site[LB_RT_FFN_DOWN][l] = out; break;
        case LB_ROLE_OUTPUT_NORM: r->site[LB_RT_OUTPUT_NORM][0] = out; break;
        case LB_ROLE_TOKEN_EMBD: case LB_ROLE_OUTPUT: r->site[LB_RT_LOGITS][0] = out; break;
        default: break;
        }
    }
    assert_int_equal(n_attn, m->cfg.n_layers);
    assert_ptr_equal(r->site[LB_RT_LOGITS][0], r->logits);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int s = 0; s < LB_RT_OUTPUT_NORM; s++) {
            int sub = s == LB_RT_ATTN_SUB_NORM || s == LB_RT_FFN_SUB_NORM;
            if (!sub || m->cfg.sub_norm)
                if (!r->site[s][l]) fail_msg("reference: no %s of block %d on the tape", lb_rt_site_name(s), l);
        }
}

/* ---- what each step may differ by --------------------------------------------------- */

static int site_width(const lb_model *m, lb_rt_site s) {
    const int qd = m->cfg.n_heads * m->head_dim, kvd = m->cfg.n_kv_heads * m->head_dim;
    switch (s) {
    case LB_RT_Q: case LB_RT_ATTN: case LB_RT_ATTN_SUB_NORM: return qd;
    case LB_RT_K: case LB_RT_V: return kvd;
    case LB_RT_FFN_GATE: case LB_RT_FFN_UP: case LB_RT_FFN_ACT: case LB_RT_FFN_SUB_NORM: return m->cfg.ffn_dim;
    case LB_RT_LOGITS: return m->cfg.vocab_size;
    default: return m->cfg.dim;
    }
}

static const float *ref_row(const reference *r, lb_rt_site s, int layer, int t) {
    return r->site[s][layer < 0 ? 0 : layer] + (size_t)t * site_width(r->m, s);
}

/* A norm's output. Per side, for c = x − μ, |Δc_i| ≤ e_μ + u|c_i|, the
 * relative error of r = 1/√(S/D + ε) is at most ½·e_S/(S + Dε) + 3u, and
 * y_i = c_i·r·g_i adds 2u; both sides round. An input difference in_err
 * moves c by in_err (+ its mean for LayerNorm) and r by ½·dS/(S + Dε). */
static void norm_bound(const lb_model *m, const float *x, const float *g, int D, const double *in_err,
                       double *b) {
    const int center = m->cfg.norm == LB_NORM_LAYER;
    double sum = 0, sabs = 0, mean_err = 0;
    for (int i = 0; i < D; i++) sum += x[i], sabs += fabs(x[i]);
    const double mu = center ? sum / D : 0.0, e_mu = center ? gam(D) * sabs / D + U * fabs(mu) : 0.0;
    if (in_err && center)
        for (int i = 0; i < D; i++) mean_err += in_err[i] / D;
    double S = 0, e_S = 0, dS = 0;
    for (int i = 0; i < D; i++) {
        double c = x[i] - mu, ec = e_mu + U * (fabs(c) + e_mu);
        S += c * c;
        e_S += 2 * fabs(c) * ec + ec * ec + gam(D) * (fabs(c) + ec) * (fabs(c) + ec);
        if (in_err) dS += 2 * fabs(c) * (in_err[i] + mean_err);
    }
    const double denom = S / D + m->cfg.norm_eps, r = 1.0 / sqrt(denom);
    const double eps_r = 0.5 * (e_S / D + U * S / D) / denom + 3 * U;
    const double dr = in_err ? 0.5 * (dS / D) / denom : 0.0;
    for (int i = 0; i < D; i++) {
        double c = x[i] - mu, ec = e_mu + U * (fabs(c) + e_mu);
        double side = fabs(g[i]) * r * (ec + fabs(c) * (eps_r + 2 * U));
        double moved = in_err ? fabs(g[i]) * r * ((in_err[i] + mean_err) + fabs(c) * dr) : 0.0;
        b[i] = SAFETY * (2 * side + moved) + 1e-30;
    }
}

/* How the runtime multiplies a layer (the rule of runtime/pack.c, stated
 * again here from the recipes): the BitNet specs are packed. */
static int packed_layer(const lb_qspec *w, const lb_qspec *a) {
    return (w->format == LB_QF_TERNARY || w->format == LB_QF_BINARY) && w->gran == LB_QG_TENSOR &&
           a->format == LB_QF_INT && a->gran == LB_QG_ROW && !a->asymmetric;
}

/* A linear layer's output [N] for input x [K].
 * Packed: the runtime gives fl(fl(S)·fl(d_m·d_w)), within 3u of the exact
 * d_m·d_w·S; training's integer path gives the same, its fp32 path sums
 * fl(a·d_m)·fl(b·d_w) in some order, within (K + 2)u·d_m·d_w·Σ|a·b|: they
 * agree within (K + 5)u·d_m·d_w·Σ|a·b|. With the same codes, an input
 * difference moves only the step d_m = max|x|/Q, by at most max(in_err)/max|x|.
 * fp32: two dot products of the same (fake-quantized) operands in different
 * orders, within 2γ_K·Σ|x̃·w̃|; an input difference adds Σ in_err·|w̃|
 * (the inputs of fp32 layers checked this way are not quantized). */
static void linear_bound(const lb_tensor *W, const lb_qspec *ws, const lb_qspec *as, const float *x,
                         const double *in_err, double *b) {
    const int N = W->shape[0], K = W->shape[1];
    if (packed_layer(ws, as)) {
        int8_t *wc = malloc((size_t)N * K), *xc = malloc((size_t)K);
        float dw, dx;
        assert_true(wc && xc);
        assert_int_equal(lb_quantize(ws, W->data, (size_t)N, (size_t)K, wc, &dw, NULL), LB_OK);
        assert_int_equal(lb_quantize(as, x, 1, (size_t)K, xc, &dx, NULL), LB_OK);
        double amax = 0, emax = 0;
        for (int k = 0; k < K; k++) {
            amax = fabs(x[k]) > amax ? fabs(x[k]) : amax;
            if (in_err) emax = in_err[k] > emax ? in_err[k] : emax;
        }
        const double step_moves = amax > 1e-5 ? emax / amax : 0.0;
        for (int n = 0; n < N; n++) {
            double mag = 0, S = 0;
            for (int k = 0; k < K; k++) {
                int p = wc[(size_t)n * K + k] * xc[k];
                mag += abs(p), S += p;
            }
            b[n] = SAFETY * ((K + 5) * U * (double)dx * dw * mag + step_moves * (double)dx * dw * fabs(S)) + 1e-30;
        }
        free(wc), free(xc);
        return;
    }
    float *wq = malloc((size_t)N * K * sizeof *wq), *xq = malloc((size_t)K * sizeof *xq);
    assert_true(wq && xq);
    if (lb_qspec_is_none(ws)) memcpy(wq, W->data, (size_t)N * K * sizeof *wq);
    else assert_int_equal(lb_fake_quantize(ws, W->data, wq, (size_t)N, (size_t)K, NULL), LB_OK);
    if (lb_qspec_is_none(as)) memcpy(xq, x, (size_t)K * sizeof *xq);
    else assert_int_equal(lb_fake_quantize(as, x, xq, 1, (size_t)K, NULL), LB_OK);
    for (int n = 0; n < N; n++) {
        double s = 0, moved = 0;
        for (int k = 0; k < K; k++) {
            s += fabs((double)wq[(size_t)n * K + k] * xq[k]);
            if (in_err) moved += in_err[k] * fabs(wq[(size_t)n * K + k]);
        }
        b[n] = SAFETY * (2 * gam(K) * s + moved) + 1e-30;
    }
    free(wq), free(xq);
}

static const lb_param *param_of(const lb_model *m, lb_param_role role, int layer) {
    int n;
    const lb_param *p = lb_model_params(m, &n);
    for (int i = 0; i < n; i++)
        if (p[i].role == role && p[i].layer == layer) return &p[i];
    return NULL;
}

/* The weight and specs of a projection (the head: the embedding when tied). */
static void layer_of(const lb_model *m, lb_param_role role, int layer, const lb_tensor **W, const lb_qspec **ws,
                     const lb_qspec **as) {
    if (role == LB_ROLE_OUTPUT) {
        *W = m->output;
        *ws = &m->q_head.weight, *as = &m->q_head.activation;
        return;
    }
    const lb_param *p = param_of(m, role, layer);
    assert_non_null(p);
    *W = p->t, *ws = &p->weight, *as = &p->activation;
}

static void proj_bound(const reference *r, lb_param_role role, int layer, lb_rt_site in_site, int t, double *b) {
    const lb_tensor *W;
    const lb_qspec *ws, *as;
    layer_of(r->m, role, layer, &W, &ws, &as);
    linear_bound(W, ws, as, ref_row(r, in_site, layer, t), NULL, b);
}

/* softmax(q·Kᵀ/√Dh)·V for position t and every head, from the same q, k,
 * v. The scores of the two sides differ by Δ_j ≤ 2γ_{Dh+1}·Σ|q·k_j|/√Dh;
 * each side's exp(s − max), sum and division add
 * κ = 2·max_j(8u + u|s_j − max|) + γ_T + 2u relative, so
 * |Δp_j| ≤ p_j·(2κ + 2·max Δ), and o = Σ p·v differs by (2γ_T + that)·Σ p|v|. */
static void attn_bound(const reference *r, int layer, int t, double *b) {
    const lb_model *m = r->m;
    const int H = m->cfg.n_heads, Hkv = m->cfg.n_kv_heads, Dh = m->head_dim, qd = H * Dh, kvd = Hkv * Dh;
    const double scale = 1.0 / sqrt((double)Dh);
    double *s = malloc((size_t)(t + 1) * sizeof *s), *p = malloc((size_t)(t + 1) * sizeof *p);
    assert_true(s && p);
    for (int h = 0; h < H; h++) {
        const int kh = h / (H / Hkv);
        const float *q = r->site[LB_RT_Q][layer] + (size_t)t * qd + (size_t)h * Dh;
        double mx = -INFINITY, d_max = 0, sum = 0, tau = 0;
        for (int j = 0; j <= t; j++) {
            const float *k = r->site[LB_RT_K][layer] + (size_t)j * kvd + (size_t)kh * Dh;
            double dot = 0, mag = 0;
            for (int i = 0; i < Dh; i++) dot += (double)q[i] * k[i], mag += fabs((double)q[i] * k[i]);
            s[j] = dot * scale;
            double delta = 2 * gam(Dh + 1) * mag * scale;
            mx = s[j] > mx ? s[j] : mx;
            d_max = delta > d_max ? delta : d_max;
        }
        for (int j = 0; j <= t; j++) {
            double tj = 8 * U + U * fabs(s[j] - mx);
            tau = tj > tau ? tj : tau;
            sum += p[j] = exp(s[j] - mx);
        }
        const double kappa = 2 * tau + gam(t + 1) + 2 * U, eps_p = 2 * kappa + 2 * d_max;
        for (int i = 0; i < Dh; i++) {
            double pv = 0;
            for (int j = 0; j <= t; j++)
                pv += p[j] / sum * fabs(r->site[LB_RT_V][layer][(size_t)j * kvd + (size_t)kh * Dh + i]);
            b[h * Dh + i] = SAFETY * (2 * gam(t + 1) + eps_p) * pv + 1e-30;
        }
    }
    free(s), free(p);
}

/* q or k after RoPE: the projection's bound rotated (cos and sin are the
 * same floats on both sides), and the rotation's two roundings per output
 * on each side. */
static void rope_bound(const reference *r, lb_param_role role, int layer, int t, double *b) {
    const lb_model *m = r->m;
    const int Dh = m->head_dim, half = Dh / 2, width = site_width(m, role == LB_ROLE_ATTN_Q ? LB_RT_Q : LB_RT_K);
    double *lin = malloc((size_t)width * sizeof *lin);
    assert_non_null(lin);
    proj_bound(r, role, layer, LB_RT_ATTN_NORM, t, lin);
    const float *x = (role == LB_ROLE_ATTN_Q ? r->q_lin[layer] : r->k_lin[layer]) + (size_t)t * width;
    for (int h = 0; h < width / Dh; h++)
        for (int j = 0; j < half; j++) {
            double a = (double)t * pow((double)m->cfg.rope_theta, -2.0 * j / Dh);
            double c = fabs((double)(float)cos(a)), sn = fabs((double)(float)sin(a));
            int i0 = h * Dh + j, i1 = i0 + half;
            double round = 4 * U * (fabs(x[i0]) * c + fabs(x[i1]) * sn + fabs(x[i1]) * c + fabs(x[i0]) * sn);
            b[i0] = SAFETY * (c * lin[i0] + sn * lin[i1] + round) + 1e-30;
            b[i1] = SAFETY * (c * lin[i1] + sn * lin[i0] + round) + 1e-30;
        }
    free(lin);
}

/* silu(g)·u from the same g and u: per side the exp within 8u, then four
 * roundings; relu²(g)·u: two roundings. */
static void act_bound(const reference *r, int l, int t, double *b) {
    const lb_model *m = r->m;
    const float *y = ref_row(r, LB_RT_FFN_ACT, l, t);
    const double c = m->cfg.ffn_act == LB_FFN_RELU2 ? 2 * 2 * U : 2 * 12 * U;
    for (int i = 0; i < m->cfg.ffn_dim; i++) b[i] = SAFETY * c * fabs(y[i]) + 1e-30;
}

/* The bound of every value of a site at position t when its inputs are
 * training's. */
static void site_bound(const reference *r, lb_rt_site s, int l, int t, double *b) {
    const lb_model *m = r->m;
    const int width = site_width(m, s), sub = m->cfg.sub_norm;
    const lb_block *blk = l >= 0 ? &m->blocks[l] : NULL;
    switch (s) {
    case LB_RT_ATTN_NORM:
        norm_bound(m, r->resid_in[l] + (size_t)t * m->cfg.dim, blk->attn_norm->data, width, NULL, b);
        return;
    case LB_RT_FFN_NORM:
        norm_bound(m, ref_row(r, LB_RT_ATTN_RESIDUAL, l, t), blk->ffn_norm->data, width, NULL, b);
        return;
    case LB_RT_ATTN_SUB_NORM:
        norm_bound(m, ref_row(r, LB_RT_ATTN, l, t), blk->attn_sub_norm->data, width, NULL, b);
        return;
    case LB_RT_FFN_SUB_NORM:
        norm_bound(m, ref_row(r, LB_RT_FFN_ACT, l, t), blk->ffn_sub_norm->data, width, NULL, b);
        return;
    case LB_RT_OUTPUT_NORM:
        norm_bound(m, ref_row(r, LB_RT_FFN_RESIDUAL, m->cfg.n_layers - 1, t), m->output_norm->data, width, NULL, b);
        return;
    case LB_RT_Q: rope_bound(r, LB_ROLE_ATTN_Q, l, t, b); return;
    case LB_RT_K: rope_bound(r, LB_ROLE_ATTN_K, l, t, b); return;
    case LB_RT_V: proj_bound(r, LB_ROLE_ATTN_V, l, LB_RT_ATTN_NORM, t, b); return;
    case LB_RT_ATTN: attn_bound(r, l, t, b); return;
    case LB_RT_ATTN_OUTPUT:
        proj_bound(r, LB_ROLE_ATTN_OUTPUT, l, sub ? LB_RT_ATTN_SUB_NORM : LB_RT_ATTN, t, b);
        return;
    case LB_RT_FFN_GATE: proj_bound(r, LB_ROLE_FFN_GATE, l, LB_RT_FFN_NORM, t, b); return;
    case LB_RT_FFN_UP: proj_bound(r, LB_ROLE_FFN_UP, l, LB_RT_FFN_NORM, t, b); return;
    case LB_RT_FFN_DOWN: proj_bound(r, LB_ROLE_FFN_DOWN, l, sub ? LB_RT_FFN_SUB_NORM : LB_RT_FFN_ACT, t, b); return;
    case LB_RT_LOGITS: proj_bound(r, LB_ROLE_OUTPUT, -1, LB_RT_OUTPUT_NORM, t, b); return;
    case LB_RT_FFN_ACT: act_bound(r, l, t, b); return;
    case LB_RT_ATTN_RESIDUAL: case LB_RT_FFN_RESIDUAL: { /* one addition of the same operands */
        const float *y = ref_row(r, s, l, t);
        for (int i = 0; i < width; i++) b[i] = 2 * U * fabs(y[i]) + 1e-30;
        return;
    }
    case LB_RT_SITE_COUNT: break;
    }
    fail_msg("no bound for site %d", (int)s);
}

/* The end-to-end bound of the logits of position t when every linear layer
 * reads training's input (the head's, only when the head quantizes it):
 * then the projections differ only by their own rounding (none for packed
 * layers on training's integer path), the residual stream by those and its
 * additions, and the logits by that carried through output_norm (first
 * order in the residual's difference) and the head's rounding. */
static void end_to_end_bound(const reference *r, int t, double *b) {
    const lb_model *m = r->m;
    const int d = m->cfg.dim, sub = m->cfg.sub_norm;
    double *E = calloc((size_t)d, sizeof *E), *lin = malloc((size_t)d * sizeof *lin), *h = malloc((size_t)d * sizeof *h);
    assert_true(E && lin && h);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        proj_bound(r, LB_ROLE_ATTN_OUTPUT, l, sub ? LB_RT_ATTN_SUB_NORM : LB_RT_ATTN, t, lin);
        const float *y = ref_row(r, LB_RT_ATTN_RESIDUAL, l, t);
        for (int i = 0; i < d; i++) E[i] = (E[i] + lin[i]) * (1 + U) + 2 * U * fabs(y[i]);
        proj_bound(r, LB_ROLE_FFN_DOWN, l, sub ? LB_RT_FFN_SUB_NORM : LB_RT_FFN_ACT, t, lin);
        y = ref_row(r, LB_RT_FFN_RESIDUAL, l, t);
        for (int i = 0; i < d; i++) E[i] = (E[i] + lin[i]) * (1 + U) + 2 * U * fabs(y[i]);
    }
    const lb_tensor *W;
    const lb_qspec *ws, *as;
    layer_of(m, LB_ROLE_OUTPUT, -1, &W, &ws, &as);
    const int head_reads_as_is = lb_qspec_is_none(as);
    norm_bound(m, ref_row(r, LB_RT_FFN_RESIDUAL, m->cfg.n_layers - 1, t), m->output_norm->data, d, E, h);
    linear_bound(W, ws, as, ref_row(r, LB_RT_OUTPUT_NORM, 0, t), head_reads_as_is ? h : NULL, b);
    free(E), free(lin), free(h);
}

/* ---- probes ---------------------------------------------------------------------- */

/* What a probe does at each site. */
typedef enum probe_mode {
    PROBE_STEPS = 0,  /* check every site against its bound, then put training's values in */
    PROBE_INPUTS,     /* put training's values in where a linear layer reads them */
    PROBE_FREE        /* only look */
} probe_mode;

typedef struct probe_ctx {
    const reference *r;
    probe_mode mode;
    double worst[LB_RT_SITE_COUNT];        /* largest |runtime − reference| / bound */
    double max_abs[LB_RT_SITE_COUNT];      /* largest |runtime − reference| */
    long flips;                            /* codes that differ at a quantizer's input */
    long rows;                             /* token rows quantized */
} probe_ctx;

/* The linear layer that reads a site's values, if any (LB_ROLE_COUNT: none). */
static lb_param_role reader_of(const lb_model *m, lb_rt_site s) {
    const int sub = m->cfg.sub_norm;
    switch (s) {
    case LB_RT_ATTN_NORM: return LB_ROLE_ATTN_Q;
    case LB_RT_ATTN_SUB_NORM: return LB_ROLE_ATTN_OUTPUT;
    case LB_RT_ATTN: return sub ? LB_ROLE_COUNT : LB_ROLE_ATTN_OUTPUT;
    case LB_RT_FFN_NORM: return LB_ROLE_FFN_GATE;
    case LB_RT_FFN_SUB_NORM: return LB_ROLE_FFN_DOWN;
    case LB_RT_FFN_ACT: return sub ? LB_ROLE_COUNT : LB_ROLE_FFN_DOWN;
    case LB_RT_OUTPUT_NORM: return LB_ROLE_OUTPUT;
    default: return LB_ROLE_COUNT;
    }
}

/* The spec of the packed layer's quantizer that reads a site, if any. */
static const lb_qspec *quantizer_at(const lb_model *m, lb_rt_site s, int l) {
    lb_param_role role = reader_of(m, s);
    if (role == LB_ROLE_COUNT) return NULL;
    const lb_tensor *W;
    const lb_qspec *ws, *as;
    layer_of(m, role, l, &W, &ws, &as);
    return packed_layer(ws, as) ? as : NULL;
}

/* Whether PROBE_INPUTS puts training's values in at a site: every input
 * of a block's linear layer, and the head's when the head quantizes it. */
static int forced_input(const lb_model *m, lb_rt_site s, int l) {
    lb_param_role role = reader_of(m, s);
    if (role == LB_ROLE_COUNT) return 0;
    if (role != LB_ROLE_OUTPUT) return 1;
    const lb_tensor *W;
    const lb_qspec *ws, *as;
    layer_of(m, role, l, &W, &ws, &as);
    return !lb_qspec_is_none(as);
}

static void probe_fn(void *vctx, lb_rt_site s, int layer, int pos0, int n, float *x, int width, size_t ld) {
    probe_ctx *c = vctx;
    const reference *r = c->r;
    assert_int_equal(width, site_width(r->m, s));
    double *b = malloc((size_t)width * sizeof *b);
    int8_t *qa = malloc((size_t)width), *qb = malloc((size_t)width);
    assert_true(b && qa && qb);
    const lb_qspec *q = quantizer_at(r->m, s, layer);
    const int check = c->mode == PROBE_STEPS;
    const int replace = check || (c->mode == PROBE_INPUTS && forced_input(r->m, s, layer));
    for (int i = 0; i < n; i++) {
        const int t = pos0 + i;
        float *xr = x + (size_t)i * ld;
        const float *want = ref_row(r, s, layer, t);
        if (check) site_bound(r, s, layer, t, b);
        for (int k = 0; k < width; k++) {
            double d = fabs((double)xr[k] - want[k]);
            if (d > c->max_abs[s]) c->max_abs[s] = d;
            if (!check) continue;
            if (!(d <= b[k]))
                fail_msg("%s of block %d, position %d, element %d: runtime %.9g, training %.9g: |difference| %.3g "
                         "exceeds the bound %.3g", lb_rt_site_name(s), layer, t, k, (double)xr[k], (double)want[k],
                         d, b[k]);
            if (d / b[k] > c->worst[s]) c->worst[s] = d / b[k];
        }
        if (q && c->mode == PROBE_FREE) { /* the codes the quantizer makes of the runtime's values and of training's */
            float sa, sb;
            assert_int_equal(lb_quantize(q, xr, 1, (size_t)width, qa, &sa, NULL), LB_OK);
            assert_int_equal(lb_quantize(q, want, 1, (size_t)width, qb, &sb, NULL), LB_OK);
            c->rows++;
            for (int k = 0; k < width; k++) c->flips += qa[k] != qb[k];
        }
        if (replace) memcpy(xr, want, (size_t)width * sizeof *xr);
    }
    free(b), free(qa), free(qb);
}

/* ---- the comparisons --------------------------------------------------------------- */

typedef struct summary {
    double worst_step;          /* the largest difference of a step over its bound */
    double max_e2e, worst_e2e;  /* logits with training's inputs to every linear layer: largest difference, ratio */
    double max_bound;           /* the largest end-to-end bound */
    double max_free;            /* logits of the free run: largest difference */
    long flips, rows;           /* free run: codes that differ from training's, token rows quantized */
} summary;

/* Prompt processing (decode = 0) or decoding with the cache position by
 * position (decode = 1), forced or free; returns the logits [T, V]. */
static float *run_probed(const lb_rt_model *rm, const reference *r, const int *ids, probe_mode mode, int decode,
                         probe_ctx *pc) {
    const int T = r->T, V = r->m->cfg.vocab_size;
    memset(pc, 0, sizeof *pc);
    pc->r = r;
    pc->mode = mode;
    lb_rt_session *s = lb_rt_session_create(rm, 2);
    assert_non_null(s);
    lb_rt_session_set_probe(s, probe_fn, pc);
    float *logits = malloc((size_t)T * V * sizeof *logits);
    assert_non_null(logits);
    if (!decode) {
        assert_int_equal(lb_rt_forward(s, ids, T, logits, 1), LB_OK);
    } else {
        const int P = T > 5 ? 5 : 1; /* a short prompt, then one token at a time */
        assert_int_equal(lb_rt_forward(s, ids, P, logits, 1), LB_OK);
        for (int t = P; t < T; t++) assert_int_equal(lb_rt_forward(s, ids + t, 1, logits + (size_t)t * V, 0), LB_OK);
    }
    assert_int_equal(lb_rt_session_length(s), T);
    lb_rt_session_free(s);
    return logits;
}

static void compare_to_training(const lb_rt_model *rm, const reference *r, const int *ids, summary *sum,
                                const char *what) {
    const int T = r->T, V = r->m->cfg.vocab_size;
    double *b = malloc((size_t)T * V * sizeof *b);
    assert_non_null(b);
    for (int t = 0; t < T; t++) end_to_end_bound(r, t, b + (size_t)t * V);
    for (int decode = 0; decode < 2; decode++) {
        const char *how = decode ? "decoding with the cache" : "prompt processing";
        probe_ctx pc;
        float *lg = run_probed(rm, r, ids, PROBE_STEPS, decode, &pc);
        for (int s = 0; s < LB_RT_SITE_COUNT; s++)
            if (pc.worst[s] > sum->worst_step) sum->worst_step = pc.worst[s];
        free(lg);

        lg = run_probed(rm, r, ids, PROBE_INPUTS, decode, &pc);
        for (size_t at = 0; at < (size_t)T * V; at++) {
            double d = fabs((double)lg[at] - r->logits[at]);
            if (!(d <= b[at]))
                fail_msg("%s, %s: logit %zu of position %zu: runtime %.9g, training %.9g, |difference| %.3g exceeds "
                         "the end-to-end bound %.3g", what, how, at % V, at / V, (double)lg[at], (double)r->logits[at],
                         d, b[at]);
            if (d > sum->max_e2e) sum->max_e2e = d;
            if (d / b[at] > sum->worst_e2e) sum->worst_e2e = d / b[at];
            if (b[at] > sum->max_bound) sum->max_bound = b[at];
        }
        free(lg);

        lg = run_probed(rm, r, ids, PROBE_FREE, decode, &pc);
        sum->flips += pc.flips;
        sum->rows += pc.rows;
        for (size_t at = 0; at < (size_t)T * V; at++) {
            double d = fabs((double)lg[at] - r->logits[at]);
            if (d > sum->max_free) sum->max_free = d;
        }
        free(lg);
    }
    free(b);
}

/* The logits of every position with no probe, on n_threads, fed in calls
 * of `step` tokens (T: one call; 1: decoding token by token). */
static float *run_plain(const lb_rt_model *rm, const int *ids, int T, int V, int n_threads, int step) {
    lb_rt_session *s = lb_rt_session_create(rm, n_threads);
    assert_non_null(s);
    float *lg = malloc((size_t)T * V * sizeof *lg);
    assert_non_null(lg);
    for (int t = 0; t < T; t += step) {
        int n = T - t < step ? T - t : step;
        assert_int_equal(lb_rt_forward(s, ids + t, n, lg + (size_t)t * V, 1), LB_OK);
    }
    lb_rt_session_free(s);
    return lg;
}

static void test_against_training(void **state) {
    (void)state;
    for (int ci = 0; ci < N_CASES; ci++) {
        const model_case *mc = &cases[ci];
        lb_model *m = make_model(mc, 11 + ci);
        int ids[128];
        make_ids(ids, mc->T, mc->V, 5 + ci);
        reference ref;
        reference_run(&ref, m, ids, mc->T);
        float *first = NULL;
        for (int isa = 0; isa <= (int)lb_rt_isa_best(); isa++) {
            lb_rt_options o = lb_rt_options_default();
            o.isa = isa;
            lb_rt_model *rm = lb_rt_model_pack(m, &o);
            if (!rm) fail_msg("%s: %s", mc->name, lb_errmsg());
            lb_rt_info info;
            lb_rt_model_info(rm, &info);
            assert_int_equal(info.isa, isa);
            assert_int_equal(info.n_ternary, mc->n_ternary);
            assert_int_equal(info.n_binary, mc->n_binary);
            assert_int_equal(info.n_fp32, mc->n_fp32);

            char what[160];
            snprintf(what, sizeof what, "%s [%s]", mc->name, lb_rt_isa_name((lb_rt_isa)isa));
            summary sum = {0};
            compare_to_training(rm, &ref, ids, &sum, what);
            print_message("%s\n  steps: worst %.3f of the bound | same inputs: logits within %.2e, %.3f of the "
                          "bound (largest %.2e) | free: logits within %.2e, %ld of the codes of %ld token rows "
                          "differ\n",
                          what, sum.worst_step, sum.max_e2e, sum.worst_e2e, sum.max_bound, sum.max_free, sum.flips,
                          sum.rows);

            /* The same bits: threads, decoding with the cache, splits, instruction sets. */
            const int T = mc->T, V = mc->V;
            float *one = run_plain(rm, ids, T, V, 1, T), *two = run_plain(rm, ids, T, V, 2, T);
            float *dec = run_plain(rm, ids, T, V, 2, 1), *split = run_plain(rm, ids, T, V, 2, 7);
            /* Decoding on more threads than this machine has cores: threads wait
             * descheduled and the others take their items; shares of unequal sizes. */
            float *crowd = run_plain(rm, ids, T, V, 5, 1), *pairs = run_plain(rm, ids, T, V, 3, 2);
            const size_t bytes = (size_t)T * V * sizeof(float);
            assert_memory_equal(one, two, bytes);
            assert_memory_equal(one, dec, bytes);
            assert_memory_equal(one, split, bytes);
            assert_memory_equal(one, crowd, bytes);
            assert_memory_equal(one, pairs, bytes);
            if (!first) first = one;
            else assert_memory_equal(first, one, bytes), free(one);
            free(two), free(dec), free(split), free(crowd), free(pairs);
            lb_rt_model_free(rm);
        }
        free(first);
        lb_graph_free(&ref.g);
        lb_model_free(m);
    }
}

/* ---- generation -------------------------------------------------------------------- */

static void test_generate_like_training(void **state) {
    (void)state;
    const model_case *mc = &cases[0];
    lb_model *m = make_model(mc, 77);
    lb_rt_model *rm = lb_rt_model_pack(m, NULL);
    assert_non_null(rm);
    lb_rt_session *s = lb_rt_session_create(rm, 2);
    assert_non_null(s);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    const int n_prompt = 6, n_new = 40; /* past max_seq_len (32): the window moves */
    int prompt[6], a[40], b[40];
    make_ids(prompt, n_prompt, mc->V, 9);
    const struct { float temperature; int top_k; } modes[] = {{0.0f, 0}, {0.8f, 5}, {1.3f, 0}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        lb_rng r1, r2;
        lb_rng_init(&r1, 1234, LB_STREAM_SAMPLE);
        lb_rng_init(&r2, 1234, LB_STREAM_SAMPLE);
        assert_int_equal(lb_generate(m, &g, prompt, n_prompt, n_new, modes[i].temperature, modes[i].top_k, &r1, a),
                         LB_OK);
        lb_rt_gen_stats st;
        assert_int_equal(
            lb_rt_generate(s, prompt, n_prompt, n_new, modes[i].temperature, modes[i].top_k, &r2, b, &st), LB_OK);
        assert_memory_equal(a, b, sizeof a);
        assert_int_equal(r1.pos, r2.pos); /* the same numbers drawn */
        assert_int_equal(st.prompt_tokens, n_prompt);
        assert_int_equal(st.decode_tokens, n_new - 1);
        /* Steps whose window starts past 0 rebuild the cache from the window. */
        const int moved = n_prompt + n_new - 1 - mc->max_seq;
        assert_int_equal(st.reprocessed_tokens, moved * (mc->max_seq - 1));
    }
    lb_rng r;
    lb_rng_init(&r, 1, LB_STREAM_SAMPLE);
    assert_int_equal(lb_rt_generate(s, prompt, 0, 3, 0.0f, 0, &r, b, NULL), LB_EINVAL);
    int bad[2] = {1, mc->V};
    assert_int_equal(lb_rt_generate(s, bad, 2, 3, 0.0f, 0, &r, b, NULL), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "prompt token 1"));
    lb_graph_free(&g);
    lb_rt_session_free(s);
    lb_rt_model_free(rm);
    lb_model_free(m);
}

/* ---- what the runtime refuses ------------------------------------------------------ */

static lb_model *custom_model(const char *linear, const char *embd) {
    model_case mc = cases[4];
    mc.linear = linear;
    mc.embd = embd;
    return make_model(&mc, 3);
}

static void expect_refusal(lb_model *m, const char *needle1, const char *needle2) {
    lb_rt_model *rm = lb_rt_model_pack(m, NULL);
    if (rm) fail_msg("packed a model it should refuse (%s)", needle1);
    if (!strstr(lb_errmsg(), needle1) || (needle2 && !strstr(lb_errmsg(), needle2)))
        fail_msg("message '%s' lacks '%s'%s%s", lb_errmsg(), needle1, needle2 ? " or " : "", needle2 ? needle2 : "");
    lb_model_free(m);
}

static void test_refusals(void **state) {
    (void)state;
    expect_refusal(custom_model("int8:sr|int8:per_token", NULL), "blk.0.attn_q.weight", "stochastically");
    expect_refusal(custom_model("ternary|int8:sr", NULL), "blk.0.attn_q.weight", "stochastically");
    expect_refusal(custom_model("ternary|int8", NULL), "per_token", "all tokens");
    expect_refusal(custom_model("fp32", "int8:sr"), "token_embd.weight", "stochastically");

    lb_model *m = custom_model("b1.58", NULL);
    m->blocks[1].ffn_up->data[7] = NAN;
    expect_refusal(m, "blk.1.ffn_up.weight", "non-finite");

    /* What runs: a per-token spec of another format takes the fp32 path. */
    m = custom_model("ternary:per_channel|fp8_e4m3:per_token", NULL);
    lb_rt_model *rm = lb_rt_model_pack(m, NULL);
    assert_non_null(rm);
    lb_rt_info info;
    lb_rt_model_info(rm, &info);
    assert_int_equal(info.n_fp32, 15);
    lb_rt_model_free(rm);
    lb_model_free(m);
}

static void test_forward_errors(void **state) {
    (void)state;
    const model_case *mc = &cases[4];
    lb_model *m = make_model(mc, 1);
    lb_rt_model *rm = lb_rt_model_pack(m, NULL);
    assert_non_null(rm);
    lb_rt_session *s = lb_rt_session_create(rm, 2);
    assert_non_null(s);
    float *lg = malloc((size_t)mc->V * sizeof *lg);
    int ids[20] = {0};
    ids[3] = mc->V;
    assert_int_equal(lb_rt_forward(s, ids, 5, lg, 0), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "token 3"));
    ids[3] = -1;
    assert_int_equal(lb_rt_forward(s, ids, 5, lg, 0), LB_EINVAL);
    assert_int_equal(lb_rt_session_length(s), 0); /* nothing was added */
    ids[3] = 1;
    assert_int_equal(lb_rt_forward(s, ids, 0, lg, 0), LB_EINVAL);
    assert_int_equal(lb_rt_forward(s, ids, mc->max_seq + 1, lg, 0), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "max_seq_len"));
    assert_int_equal(lb_rt_forward(s, ids, mc->max_seq - 2, lg, 0), LB_OK);
    assert_int_equal(lb_rt_forward(s, ids, 3, lg, 0), LB_EINVAL);
    assert_int_equal(lb_rt_session_length(s), mc->max_seq - 2);
    assert_int_equal(lb_rt_forward(s, ids, 2, NULL, 0), LB_OK);
    lb_rt_session_reset(s);
    assert_int_equal(lb_rt_session_length(s), 0);
    free(lg);
    lb_rt_session_free(s);
    lb_rt_model_free(rm);
    lb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_exact),
        cmocka_unit_test(test_against_training),
        cmocka_unit_test(test_generate_like_training),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_forward_errors),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

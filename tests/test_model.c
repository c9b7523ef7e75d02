/* Tests of src/layers/model.c and sample.c: parameter layout, init, the
 * forward pass, training a tiny model, and sampling. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/model.h"
#include "layers/sample.h"
#include "optim/optim.h"
#include "quant/quantize.h"
#include "testutil.h"

/* A byte-level model small enough to train in a second. */
static lb_model_config tiny_config(void) {
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = 256;
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 64;
    c.max_seq_len = 32;
    return c;
}

static lb_model *create(const lb_model_config *c, uint64_t seed) {
    lb_model *m = lb_model_create(c, seed);
    if (!m) fail_msg("lb_model_create: %s", lb_errmsg());
    return m;
}

/* ---------------------------------------------------------------------------
 * Layout */

static void test_param_count_names_shapes(void **state) {
    (void)state;
    lb_model_config c = tiny_config();
    c.sub_norm = 1;
    c.tie_embeddings = 0;
    c.attn.mode = LB_LINEAR_B158;
    lb_model *m = create(&c, 1);

    /* V·d + L·(4 norms-or-subnorms + q, k, v, o + gate, up, down) + d + V·d, with
     * d = 32, Dh = 8, H·Dh = 32, Hkv·Dh = 16, F = 64. */
    size_t d = 32, F = 64, V = 256, kv = 16;
    size_t block = d /*attn_norm*/ + d * d /*q*/ + 2 * kv * d /*k,v*/ + d /*attn_sub_norm*/ + d * d /*o*/ +
                   d /*ffn_norm*/ + 2 * F * d /*gate,up*/ + F /*ffn_sub_norm*/ + d * F /*down*/;
    size_t expected = V * d + 2 * block + d + V * d;
    assert_int_equal(m->n_elements, expected);
    assert_int_equal(lb_model_config_num_elements(&c), expected);
    assert_int_equal(lb_model_num_params(m), 1 + 2 * 11 + 2);

    struct { const char *name; int ndim, r, k; } want[] = {
        {"token_embd.weight", 2, 256, 32},       {"blk.0.attn_norm.weight", 1, 32, 0},
        {"blk.0.attn_q.weight", 2, 32, 32},      {"blk.0.attn_k.weight", 2, 16, 32},
        {"blk.0.attn_v.weight", 2, 16, 32},      {"blk.0.attn_sub_norm.weight", 1, 32, 0},
        {"blk.0.attn_output.weight", 2, 32, 32}, {"blk.0.ffn_norm.weight", 1, 32, 0},
        {"blk.0.ffn_gate.weight", 2, 64, 32},    {"blk.0.ffn_up.weight", 2, 64, 32},
        {"blk.0.ffn_sub_norm.weight", 1, 64, 0}, {"blk.0.ffn_down.weight", 2, 32, 64},
        {"blk.1.attn_norm.weight", 1, 32, 0},    {"output_norm.weight", 1, 32, 0},
        {"output.weight", 2, 256, 32},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        lb_tensor *t = lb_model_param(m, want[i].name);
        if (!t) fail_msg("missing parameter %s", want[i].name);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->ndim, want[i].ndim);
        assert_int_equal(t->shape[0], want[i].r);
        if (want[i].ndim == 2) assert_int_equal(t->shape[1], want[i].k);
    }
    assert_string_equal(m->params[0].t->name, "token_embd.weight");
    assert_string_equal(m->params[m->n_params - 1].t->name, "output.weight");
    assert_null(lb_model_param(m, "blk.2.attn_q.weight"));
    assert_int_equal(lb_model_param_index(m, "blk.0.attn_norm.weight"), 1);

    /* One allocation each for data and gradients, carved in order. */
    lb_tensor **list = lb_model_param_list(m);
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        assert_ptr_equal(list[i], m->params[i].t);
        assert_ptr_equal(list[i]->data, m->params_memory + off);
        assert_ptr_equal(list[i]->grad, m->grads_memory + off);
        assert_true(list[i]->requires_grad);
        off += list[i]->n;
    }
    assert_int_equal(off, expected);

    /* Per-parameter info: decay groups and quant specs. */
    const lb_param *pi = &m->params[lb_model_param_index(m, "blk.1.attn_v.weight")];
    char qspec[64], act_qspec[64];
    lb_qspec_format(&pi->weight, qspec, sizeof qspec);
    lb_qspec_format(&pi->activation, act_qspec, sizeof act_qspec);
    assert_int_equal(lb_param_role_of(pi->role)->kind, LB_PARAM_LINEAR);
    assert_false(pi->no_decay);
    assert_non_null(strstr(qspec, "ternary"));
    assert_non_null(strstr(act_qspec, "int8"));
    pi = &m->params[lb_model_param_index(m, "blk.1.ffn_up.weight")];
    lb_qspec_format(&pi->weight, qspec, sizeof qspec);
    assert_string_equal(qspec, "none");
    pi = &m->params[lb_model_param_index(m, "blk.0.ffn_sub_norm.weight")];
    assert_int_equal(lb_param_role_of(pi->role)->kind, LB_PARAM_NORM);
    assert_true(pi->no_decay);
    pi = &m->params[0];
    assert_int_equal(lb_param_role_of(pi->role)->kind, LB_PARAM_EMBEDDING);
    assert_true(pi->no_decay);
    lb_model_free(m);

    /* Tied head, no sub-norms: V·d and the sub-norms fewer. */
    c = tiny_config();
    m = create(&c, 1);
    assert_int_equal(m->n_elements, expected - V * d - 2 * (d + F));
    assert_int_equal(lb_model_num_params(m), 1 + 2 * 9 + 1);
    assert_null(lb_model_param(m, "output.weight"));
    assert_null(lb_model_param(m, "blk.0.attn_sub_norm.weight"));
    assert_ptr_equal(m->output, m->token_embd);
    lb_model_free(m);
}

/* ---------------------------------------------------------------------------
 * Init */

static double std_of(const lb_tensor *t) {
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < t->n; i++) s += t->data[i], s2 += (double)t->data[i] * t->data[i];
    double mean = s / (double)t->n;
    return sqrt(s2 / (double)t->n - mean * mean);
}

/* The typed table: every entry's role, layer and name agree, in checkpoint
 * order, with the tensors carved in that order. */
static void test_parameter_table(void **state) {
    (void)state;
    /* The role table: unique names, kinds as the names say. */
    for (int r = 0; r < LB_ROLE_COUNT; r++) {
        const lb_param_role_info *ri = lb_param_role_of((lb_param_role)r);
        assert_non_null(ri);
        assert_non_null(ri->name);
        for (int q = 0; q < r; q++) assert_true(strcmp(ri->name, lb_param_role_of((lb_param_role)q)->name) != 0);
        int norm = strstr(ri->name, "norm") != NULL, step = strstr(ri->name, "step") != NULL;
        assert_int_equal(ri->kind == LB_PARAM_NORM, norm);
        assert_int_equal(ri->kind == LB_PARAM_QSTEP, step);
        assert_int_equal(ri->per_layer, strncmp(ri->name, "attn_", 5) == 0 || strncmp(ri->name, "ffn_", 4) == 0);
    }
    assert_null(lb_param_role_of(LB_ROLE_COUNT));

    lb_model_config c = tiny_config();
    c.sub_norm = 1;
    c.tie_embeddings = 0;
    c.attn.mode = LB_LINEAR_B158;
    lb_model *m = create(&c, 1);
    int n;
    const lb_param *p = lb_model_params(m, &n);
    assert_ptr_equal(p, m->params);
    assert_int_equal(n, 1 + 2 * 11 + 2);
    const lb_param_role order[] = {LB_ROLE_ATTN_NORM,   LB_ROLE_ATTN_Q,   LB_ROLE_ATTN_K,     LB_ROLE_ATTN_V,
                                   LB_ROLE_ATTN_SUB_NORM, LB_ROLE_ATTN_OUTPUT, LB_ROLE_FFN_NORM, LB_ROLE_FFN_GATE,
                                   LB_ROLE_FFN_UP,      LB_ROLE_FFN_SUB_NORM, LB_ROLE_FFN_DOWN};
    assert_int_equal(p[0].role, LB_ROLE_TOKEN_EMBD);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 11; k++) {
            const lb_param *q = &p[1 + 11 * l + k];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lb_param_role_of(order[k])->name);
            assert_int_equal(q->role, order[k]);
            assert_int_equal(q->layer, l);
            assert_string_equal(q->t->name, name);
        }
    assert_int_equal(p[n - 2].role, LB_ROLE_OUTPUT_NORM);
    assert_int_equal(p[n - 1].role, LB_ROLE_OUTPUT);
    char spec[64];
    for (int i = 0; i < n; i++) {
        const lb_param_role_info *ri = lb_param_role_of(p[i].role);
        assert_ptr_equal(p[i].t, m->param_list[i]);
        assert_int_equal(p[i].owner, -1);
        assert_int_equal(p[i].no_decay, ri->kind != LB_PARAM_LINEAR);
        if (!ri->per_layer && ri->kind != LB_PARAM_QSTEP) assert_int_equal(p[i].layer, -1);
        lb_qspec_format(&p[i].weight, spec, sizeof spec);
        int attn = p[i].role >= LB_ROLE_ATTN_Q && p[i].role <= LB_ROLE_ATTN_OUTPUT && ri->kind == LB_PARAM_LINEAR;
        assert_string_equal(spec, attn ? "ternary" : "none");
        lb_qspec_format(&p[i].activation, spec, sizeof spec);
        assert_string_equal(spec, attn ? "int8:per_token" : "none");
    }
    lb_model_free(m);
}

static void test_init(void **state) {
    (void)state;
    lb_model_config c = tiny_config();
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    lb_model *a = create(&c, 7);
    omp_set_num_threads(2);
    lb_model *b = create(&c, 7);
    lb_model *other = create(&c, 8);
    omp_set_num_threads(threads);

    size_t bytes = a->n_elements * sizeof(float);
    assert_memory_equal(a->params_memory, b->params_memory, bytes);
    assert_memory_not_equal(a->params_memory, other->params_memory, bytes);
    for (size_t i = 0; i < a->n_elements; i++) assert_float_equal(a->grads_memory[i], 0.0f, 0.0f);

    /* Norms start at 1; weights at normal(0, 0.02), residual outputs at
     * 0.02/sqrt(2·n_layers) = 0.01. */
    for (int l = 0; l < 2; l++) {
        const lb_block *blk = &a->blocks[l];
        for (size_t i = 0; i < blk->ffn_norm->n; i++) assert_float_equal(blk->ffn_norm->data[i], 1.0f, 0.0f);
        assert_float_equal(std_of(blk->ffn_gate), 0.02, 0.02 * 0.06);
        assert_float_equal(std_of(blk->ffn_down), 0.01, 0.01 * 0.06);
        assert_float_equal(std_of(blk->attn_output), 0.01, 0.01 * 0.1);
    }
    assert_float_equal(std_of(a->token_embd), 0.02, 0.02 * 0.05);
    /* Each parameter has its own stream: same-shaped tensors differ. */
    assert_memory_not_equal(a->blocks[0].attn_q->data, a->blocks[1].attn_q->data, a->blocks[0].attn_q->n * 4);
    lb_model_free(a);
    lb_model_free(b);
    lb_model_free(other);
}

static void test_config_validation(void **state) {
    (void)state;
    struct { const char *field; lb_model_config c; } bad[8];
    for (int i = 0; i < 8; i++) bad[i].c = tiny_config();
    bad[0].field = "vocab_size", bad[0].c.vocab_size = 0;
    bad[1].field = "n_kv_heads", bad[1].c.n_kv_heads = 3;
    bad[2].field = "dim", bad[2].c.dim = 30;         /* 4 heads do not divide 30 */
    bad[3].field = "even", bad[3].c.dim = 12;        /* head dim 3 */
    bad[4].field = "norm_eps", bad[4].c.norm_eps = 0;
    bad[5].field = "ffn", bad[5].c.ffn.mode = (lb_linear_mode)9;
    bad[6].field = "n_layers", bad[6].c.n_layers = -1;
    bad[7].field = "max_seq_len", bad[7].c.max_seq_len = 0;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(lb_model_config_validate(&bad[i].c), LB_EINVAL);
        if (!strstr(lb_errmsg(), bad[i].field)) fail_msg("case %d: message '%s' lacks '%s'", i, lb_errmsg(), bad[i].field);
        assert_null(lb_model_create(&bad[i].c, 1));
        assert_int_equal(lb_errcode(), LB_EINVAL);
    }
    lb_model_config ok = tiny_config();
    ok.dim = 24; /* head dim 6 */
    assert_int_equal(lb_model_config_validate(&ok), LB_OK);
}

/* ---------------------------------------------------------------------------
 * Forward */

static float eval_loss(lb_model *m, const int *ids, const int *tg, int B, int T) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    lb_tensor *logits = NULL;
    lb_tensor *loss = lb_model_forward(m, &g, ids, B, T, tg, &logits);
    if (!loss) fail_msg("forward: %s", lb_errmsg());
    assert_non_null(logits);
    assert_int_equal(logits->ndim, 3);
    assert_int_equal(logits->shape[2], m->cfg.vocab_size);
    float v = loss->data[0];
    lb_graph_free(&g);
    return v;
}

static void random_ids(int *ids, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) ids[i] = (int)(lb_rand_u32(seed, 99, (uint64_t)i) % 256);
}

/* With weights of std 0.02 the logits are nearly equal, so the loss starts at
 * about ln V = ln 256 (plus half the logits' variance, ~0.01 here). */
static void test_initial_loss_is_ln_v(void **state) {
    (void)state;
    int ids[2 * 17];
    random_ids(ids, 2 * 17, 5);
    for (int tied = 0; tied <= 1; tied++) {
        lb_model_config c = tiny_config();
        c.tie_embeddings = tied;
        lb_model *m = create(&c, 3);
        int x[32], y[32];
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 16; t++) x[b * 16 + t] = ids[b * 17 + t], y[b * 16 + t] = ids[b * 17 + t + 1];
        float loss = eval_loss(m, x, y, 2, 16);
        assert_float_equal(loss, logf(256.0f), 0.1);
        lb_model_free(m);
    }
}

static void test_forward_errors(void **state) {
    (void)state;
    lb_model_config c = tiny_config();
    lb_model *m = create(&c, 3);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int ids[40] = {0};
    assert_null(lb_model_forward(m, &g, ids, 1, 33, NULL, NULL)); /* T > max_seq_len */
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "max_seq_len"));
    lb_graph_reset(&g);
    ids[3] = 256; /* out of vocabulary */
    assert_null(lb_model_forward(m, &g, ids, 1, 8, NULL, NULL));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_int_equal(lb_model_set_quant_lambda(m, 1.5f), LB_EINVAL);
    lb_graph_free(&g);
    lb_model_free(m);
}

/* The tied head feeds gradient into every embedding row (through the
 * logits); an untied embedding only gets gradient in rows of input tokens. */
static void test_tied_head_gradient(void **state) {
    (void)state;
    int ids[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tg[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    for (int tied = 0; tied <= 1; tied++) {
        lb_model_config c = tiny_config();
        c.tie_embeddings = tied;
        lb_model *m = create(&c, 4);
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        lb_tensor *loss = lb_model_forward(m, &g, ids, 1, 8, tg, NULL);
        assert_int_equal(lb_backward(&g, loss), LB_OK);
        const float *row200 = m->token_embd->grad + 200 * 32; /* token 200 is not in the input */
        double s = 0.0;
        for (int k = 0; k < 32; k++) s += fabs(row200[k]);
        if (tied) assert_true(s > 0.0);
        else {
            assert_float_equal(s, 0.0, 0.0);
            lb_tensor *out = lb_model_param(m, "output.weight");
            double so = 0.0;
            for (size_t i = 0; i < out->n; i++) so += fabs(out->grad[i]);
            assert_true(so > 0.0);
        }
        lb_graph_free(&g);
        lb_model_free(m);
    }
}

/* The whole forward's wiring (every parameter of a tiny fp32 model) against
 * finite differences, for the default graph and for the variant with
 * LayerNorm, ReLU², SubLN and an untied head. */
typedef struct model_ctx {
    lb_model *m;
    int ids[6], tg[6];
} model_ctx;

static lb_tensor *model_loss(lb_graph *g, lb_tensor **p, int n, void *vctx) {
    (void)p, (void)n;
    model_ctx *c = vctx;
    return lb_model_forward(c->m, g, c->ids, 2, 3, c->tg, NULL);
}

static void test_model_gradcheck(void **state) {
    (void)state;
    for (int variant = 0; variant <= 1; variant++) {
        lb_model_config c;
        lb_model_config_defaults(&c);
        c.vocab_size = 11;
        c.dim = 8;
        c.n_layers = 1;
        c.n_heads = 2;
        c.n_kv_heads = 1;
        c.ffn_dim = 12;
        c.max_seq_len = 4;
        c.init_std = 0.3f; /* larger than usual, so every path carries signal */
        if (variant) c.norm = LB_NORM_LAYER, c.ffn_act = LB_FFN_RELU2, c.sub_norm = 1, c.tie_embeddings = 0;
        model_ctx ctx = {.m = create(&c, 17), .ids = {1, 5, 9, 2, 2, 10}, .tg = {5, 9, 0, 2, -1, 7}};
        /* Norm gains away from 1 so their gradients are not special. */
        for (int i = 0; i < ctx.m->n_params; i++)
            if (lb_param_role_of(ctx.m->params[i].role)->kind == LB_PARAM_NORM) tu_fill_uniform(ctx.m->params[i].t, 30 + i, 0.5f, 1.5f);
        /* h small: LayerNorm over 8 features (no bias) is strongly curved where a
         * row is nearly constant; h = 1e-2 misses by several percent there. */
        tu_gradcheck(model_loss, lb_model_param_list(ctx.m), lb_model_num_params(ctx.m), &ctx, 5e-4f, 2e-2, 2e-3);
        lb_model_free(ctx.m);
    }
}

/* ---------------------------------------------------------------------------
 * Training: Adam written out here, over the flat parameter array. */

static float train(lb_model *m, const int *ids, const int *tg, int B, int T, int steps, float lr, float *first) {
    float *mom = calloc(m->n_elements, sizeof(float)), *var = calloc(m->n_elements, sizeof(float));
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    float loss_v = 0.0f;
    for (int step = 1; step <= steps; step++) {
        lb_graph_reset(&g);
        lb_model_zero_grad(m);
        lb_tensor *loss = lb_model_forward(m, &g, ids, B, T, tg, NULL);
        if (!loss) fail_msg("forward: %s", lb_errmsg());
        loss_v = loss->data[0];
        assert_true(isfinite(loss_v));
        if (step == 1 && first) *first = loss_v;
        assert_int_equal(lb_backward(&g, loss), LB_OK);
        const float b1 = 0.9f, b2 = 0.99f;
        float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
        for (size_t i = 0; i < m->n_elements; i++) {
            float gr = m->grads_memory[i];
            mom[i] = b1 * mom[i] + (1 - b1) * gr;
            var[i] = b2 * var[i] + (1 - b2) * gr * gr;
            m->params_memory[i] -= lr * (mom[i] / c1) / (sqrtf(var[i] / c2) + 1e-8f);
        }
    }
    lb_graph_free(&g);
    free(mom);
    free(var);
    return loss_v;
}

static const char *TEXT = "the cat sat on the mat. the cat sat on the mat. the cat sat";

static void text_ids(int *ids, int *tg, int T) {
    for (int t = 0; t < T; t++) ids[t] = (unsigned char)TEXT[t], tg[t] = (unsigned char)TEXT[t + 1];
}

/* A fixed sequence is memorised: the loss falls far below ln 256 ≈ 5.55, and
 * greedy generation from its first tokens then reproduces it (the causal
 * model's prediction at t depends only on the prefix, which is the training
 * prefix). */
static void test_train_and_greedy_generate(void **state) {
    (void)state;
    enum { T = 24 };
    int ids[T], tg[T];
    text_ids(ids, tg, T);
    lb_model_config c = tiny_config();
    lb_model *m = create(&c, 11);
    float first = 0.0f;
    float last = train(m, ids, tg, 1, T, 150, 1e-2f, &first);
    assert_float_equal(first, logf(256.0f), 0.1);
    if (!(last < 0.5f)) fail_msg("loss %g after training (started at %g)", last, first);

    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_rng rng;
    lb_rng_init(&rng, 1, LB_STREAM_SAMPLE);
    int out[T];
    assert_int_equal(lb_generate(m, &g, ids, 4, T - 4, 0.0f, 0, &rng, out), LB_OK);
    int match = 0;
    for (int i = 0; i < T - 4; i++) match += out[i] == (unsigned char)TEXT[4 + i];
    if (match < T - 6) fail_msg("greedy generation reproduced %d of %d tokens", match, T - 4);
    assert_true(g.grad_enabled); /* restored */
    lb_graph_free(&g);
    lb_model_free(m);
}

/* The other graph variants: ReLU², LayerNorm, SubLN, untied head, BitNet
 * b1.58 and b1 linears, gradual λ. Each must run forward and backward and
 * learn something. */
/* ---------------------------------------------------------------------------
 * Learned step sizes (LSQ) */

static lb_model_config lsq_config(void) {
    lb_model_config c = tiny_config();
    c.tie_embeddings = 0;
    c.attn.mode = c.ffn.mode = c.head.mode = LB_LINEAR_CUSTOM;
    assert_int_equal(lb_qspec_parse("int4:g16:lsq", &c.attn.weight), LB_OK);
    assert_int_equal(lb_qspec_parse("int8:lsq", &c.attn.activation), LB_OK);
    assert_int_equal(lb_qspec_parse("int4:per_channel:lsq", &c.ffn.weight), LB_OK);
    assert_int_equal(lb_qspec_parse("int8:per_token", &c.ffn.activation), LB_OK);
    assert_int_equal(lb_qspec_parse("int8:lsq", &c.head.weight), LB_OK);
    return c;
}

/* :lsq appends one step tensor per scale block after the other parameters,
 * named after the layer, owned by it, without weight decay, initialised as
 * LSQ says; the other parameters keep their names, order and values. */
static void test_lsq_steps_in_the_table(void **state) {
    (void)state;
    lb_model_config plain = tiny_config(), c = lsq_config();
    plain.tie_embeddings = 0;
    lb_model *a = create(&plain, 5), *m = create(&c, 5);
    int na, n;
    const lb_param *pa = lb_model_params(a, &na), *p = lb_model_params(m, &n);
    /* 2 layers × (4 attn weights + 4 attn inputs + 3 ffn weights) + the head's weight */
    assert_int_equal(n, na + 2 * (4 + 4 + 3) + 1);
    for (int i = 0; i < na; i++) {
        assert_string_equal(p[i].t->name, pa[i].t->name);
        assert_memory_equal(p[i].t->data, pa[i].t->data, p[i].t->n * sizeof(float));
    }
    int seen = 0;
    for (int i = na; i < n; i++) {
        const lb_param *s = &p[i], *o = &p[s->owner];
        assert_int_equal(lb_param_role_of(s->role)->kind, LB_PARAM_QSTEP);
        assert_true(s->owner >= 0 && s->owner < na);
        assert_true(s->no_decay);
        assert_int_equal(s->layer, o->layer);
        char want[64];
        snprintf(want, sizeof want, "%.*s.%s", (int)(strlen(o->t->name) - 7), o->t->name,
                 s->role == LB_ROLE_WEIGHT_STEP ? "weight_step" : "act_step");
        assert_string_equal(s->t->name, want);
        const lb_qspec *spec = s->role == LB_ROLE_WEIGHT_STEP ? &o->weight : &o->activation;
        assert_true(spec->lsq);
        size_t rows = lb_tensor_rows(o->t), cols = (size_t)lb_tensor_cols(o->t);
        assert_int_equal(s->t->n, s->role == LB_ROLE_WEIGHT_STEP ? lb_quant_n_blocks(spec, rows, cols) : 1);
        double sqrt_qp = sqrt((double)((1 << (spec->bits - 1)) - 1));
        for (size_t b = 0; b < s->t->n; b++) {
            double want_s = 2.0 / sqrt_qp;
            if (s->role == LB_ROLE_WEIGHT_STEP) {
                double sabs = 0;
                size_t len = 0;
                for (size_t r = 0; r < rows; r++)
                    for (size_t k = 0; k < cols; k++)
                        if (lb_quant_block_of(spec, rows, cols, r, k) == b) sabs += fabs(o->t->data[r * cols + k]), len++;
                want_s = 2.0 * sabs / (double)len / sqrt_qp;
            }
            assert_float_equal(s->t->data[b], want_s, 1e-6 * want_s);
        }
        seen++;
    }
    assert_int_equal(seen, n - na);
    /* The steps are where the names say. */
    lb_tensor *qs = lb_model_param(m, "blk.1.attn_q.weight_step");
    assert_non_null(qs);
    assert_int_equal(qs->ndim, 2);
    assert_int_equal(qs->shape[0], 32);
    assert_int_equal(qs->shape[1], 2);
    lb_tensor *ds = lb_model_param(m, "blk.0.ffn_down.weight_step");
    assert_non_null(ds);
    assert_int_equal(ds->ndim, 1);
    assert_int_equal(ds->shape[0], 32);
    assert_non_null(lb_model_param(m, "blk.0.attn_output.act_step"));
    assert_null(lb_model_param(m, "blk.0.ffn_up.act_step")); /* ffn inputs: absmax per token */
    assert_non_null(lb_model_param(m, "output.weight_step"));
    /* A step an update carried past zero is put back onto the floor by the next forward pass. */
    qs->data[3] = -0.25f;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int ids[4] = {1, 2, 3, 4};
    assert_non_null(lb_model_forward(m, &g, ids, 1, 4, NULL, NULL));
    assert_true(qs->data[3] == LB_LSQ_MIN_STEP);
    lb_graph_free(&g);
    lb_model_free(a);
    lb_model_free(m);

    /* Where a step cannot go, the config is refused with the reason. */
    lb_model_config bad = tiny_config(); /* tied head */
    bad.head.mode = LB_LINEAR_CUSTOM;
    assert_int_equal(lb_qspec_parse("int8:lsq", &bad.head.weight), LB_OK);
    assert_null(lb_model_create(&bad, 1));
    assert_non_null(strstr(lb_errmsg(), "quant.head.weight"));
    bad = tiny_config();
    bad.attn.mode = LB_LINEAR_CUSTOM;
    assert_int_equal(lb_qspec_parse("int8:per_channel:lsq", &bad.attn.activation), LB_OK);
    assert_null(lb_model_create(&bad, 1));
    assert_non_null(strstr(lb_errmsg(), "per_tensor"));
}

/* The step sizes learn: a few dozen AdamW steps on a short text through
 * lb_model_forward and lb_optim_step move every step tensor, and the loss falls. */
static void test_lsq_step_learns(void **state) {
    (void)state;
    enum { T = 24, STEPS = 40 };
    int ids[T], tg[T];
    text_ids(ids, tg, T);
    lb_model_config c = lsq_config();
    lb_model *m = create(&c, 3);
    int n;
    const lb_param *p = lb_model_params(m, &n);
    int *groups = malloc((size_t)n * sizeof *groups);
    for (int i = 0; i < n; i++) groups[i] = p[i].no_decay;
    lb_optim_config oc = lb_optim_config_default(LB_OPTIM_ADAMW);
    lb_optim *opt = lb_optim_create(&oc, m->param_list, groups, n);
    assert_non_null(opt);
    int k0 = 0; /* the first step: they come last in the table and in memory */
    while (lb_param_role_of(p[k0].role)->kind != LB_PARAM_QSTEP) k0++;
    size_t first_step = (size_t)(p[k0].t->data - m->params_memory);
    size_t n_steps = m->n_elements - first_step;
    float *s0 = malloc(n_steps * sizeof *s0);
    memcpy(s0, m->params_memory + first_step, n_steps * sizeof *s0);

    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    float first = 0, last = 0;
    for (int step = 1; step <= STEPS; step++) {
        lb_graph_reset(&g);
        lb_tensor *loss = lb_model_forward(m, &g, ids, 1, T, tg, NULL);
        if (!loss) fail_msg("forward: %s", lb_errmsg());
        last = loss->data[0];
        if (step == 1) first = last;
        assert_true(isfinite(last));
        assert_int_equal(lb_backward(&g, loss), LB_OK);
        assert_int_equal(lb_optim_step(opt, 3e-3f, 0.1f, step, NULL), LB_OK);
        lb_optim_zero_grad(opt);
    }
    if (!(last < 0.7f * first)) fail_msg("loss %g after %d steps (started at %g)", last, STEPS, first);
    /* One more forward pass puts any step an update carried below the floor back onto it. */
    lb_graph_reset(&g);
    assert_non_null(lb_model_forward(m, &g, ids, 1, T, tg, NULL));
    for (int i = 0; i < n; i++) {
        if (lb_param_role_of(p[i].role)->kind != LB_PARAM_QSTEP) continue;
        const lb_tensor *t = p[i].t;
        const float *before = s0 + (t->data - (m->params_memory + first_step));
        double moved = 0;
        for (size_t b = 0; b < t->n; b++) {
            assert_true(t->data[b] >= LB_LSQ_MIN_STEP && isfinite(t->data[b]));
            moved = fmax(moved, fabs(t->data[b] - before[b]) / before[b]);
        }
        if (!(moved > 1e-3)) fail_msg("step '%s' moved by at most %g of its size", t->name, moved);
    }
    lb_graph_free(&g);
    lb_optim_free(opt);
    free(groups);
    free(s0);
    lb_model_free(m);
}

static void test_variants_train(void **state) {
    (void)state;
    enum { T = 24 };
    int ids[T], tg[T];
    text_ids(ids, tg, T);
    for (int v = 0; v < 4; v++) {
        lb_model_config c = tiny_config();
        if (v == 0) c.ffn_act = LB_FFN_RELU2;
        if (v == 1) c.norm = LB_NORM_LAYER, c.tie_embeddings = 0;
        if (v == 2) c.sub_norm = 1, c.ffn_act = LB_FFN_RELU2, c.attn.mode = LB_LINEAR_B158, c.ffn.mode = LB_LINEAR_B158;
        if (v == 3) c.attn.mode = LB_LINEAR_B1, c.ffn.mode = LB_LINEAR_B1;
        lb_model *m = create(&c, 21);
        if (v == 3) assert_int_equal(lb_model_set_quant_lambda(m, 0.5f), LB_OK);
        float first = 0.0f;
        float last = train(m, ids, tg, 1, T, 60, 1e-2f, &first);
        if (!(last < first - 1.5f)) fail_msg("variant %d: loss %g -> %g", v, first, last);
        lb_model_free(m);
    }
}

/* λ = 0 turns every BitLinear into the fp32 Linear: same loss as an fp32
 * model with the same seed (init does not depend on the quant settings). */
static void test_lambda_zero_matches_fp(void **state) {
    (void)state;
    int ids[16], tg[16];
    random_ids(ids, 16, 9);
    random_ids(tg, 16, 10);
    lb_model_config c = tiny_config();
    lb_model *fp = create(&c, 5);
    c.attn.mode = LB_LINEAR_B158;
    c.ffn.mode = LB_LINEAR_B158;
    lb_model *q = create(&c, 5);
    float lq = eval_loss(q, ids, tg, 2, 8);
    assert_int_equal(lb_model_set_quant_lambda(q, 0.0f), LB_OK);
    float l0 = eval_loss(q, ids, tg, 2, 8);
    float lf = eval_loss(fp, ids, tg, 2, 8);
    assert_float_equal(l0, lf, 1e-6);
    assert_true(lq != lf);
    lb_model_free(fp);
    lb_model_free(q);
}

/* CUSTOM specs with stochastic rounding: the noise is a function of (seed,
 * step, tensor), so a step repeats exactly and the next step rounds anew. */
static void test_stochastic_rounding_streams(void **state) {
    (void)state;
    int ids[16], tg[16];
    random_ids(ids, 16, 19);
    random_ids(tg, 16, 20);
    lb_model_config c = tiny_config();
    c.attn.mode = c.ffn.mode = LB_LINEAR_CUSTOM;
    assert_int_equal(lb_qspec_parse("int4:per_channel", &c.attn.weight), LB_OK);
    assert_int_equal(lb_qspec_parse("int8:per_token:sr", &c.attn.activation), LB_OK);
    c.ffn = c.attn;
    assert_int_equal(lb_qspec_parse("int8:per_channel:sr", &c.embedding), LB_OK);
    c.init_std = 0.2f; /* activations spread enough that rounding noise shows in the loss */
    lb_model *m = create(&c, 23);
    lb_model_set_step(m, 5);
    float a = eval_loss(m, ids, tg, 2, 8), b = eval_loss(m, ids, tg, 2, 8);
    lb_model_set_step(m, 6);
    float d = eval_loss(m, ids, tg, 2, 8);
    assert_float_equal(a, b, 0.0f);
    assert_true(a != d);
    assert_true(isfinite(d));
    lb_model_free(m);
}

/* ---------------------------------------------------------------------------
 * Sampling */

static void test_sample_logits_distribution(void **state) {
    (void)state;
    /* logits ln 1, ln 2, ln 4, −inf-ish: softmax = 1/7, 2/7, 4/7, 0. */
    const float logits[4] = {0.0f, logf(2.0f), logf(4.0f), -30.0f};
    float scratch[4];
    lb_rng rng;
    lb_rng_init(&rng, 3, LB_STREAM_SAMPLE);
    enum { N = 14000 };
    int count[4] = {0}, count_k2[4] = {0}, count_t[4] = {0};
    for (int i = 0; i < N; i++) count[lb_sample_logits(logits, 4, 1.0f, 0, &rng, scratch)]++;
    for (int i = 0; i < N; i++) count_k2[lb_sample_logits(logits, 4, 1.0f, 2, &rng, scratch)]++;
    for (int i = 0; i < N; i++) count_t[lb_sample_logits(logits, 4, 0.5f, 0, &rng, scratch)]++;
    /* Expected counts with a 5σ band (σ = sqrt(N p (1 − p))). */
    const double p[3] = {1 / 7.0, 2 / 7.0, 4 / 7.0};
    const double pk[3] = {0.0, 1 / 3.0, 2 / 3.0};         /* top-2: ids 1 and 2 */
    const double pt[3] = {1 / 21.0, 4 / 21.0, 16 / 21.0}; /* T = 0.5 squares the ratios */
    for (int i = 0; i < 3; i++) {
        assert_float_equal(count[i], N * p[i], 5 * sqrt(N * p[i] * (1 - p[i])) + 1);
        assert_float_equal(count_k2[i], N * pk[i], 5 * sqrt(N * pk[i] * (1 - pk[i])) + 1);
        assert_float_equal(count_t[i], N * pt[i], 5 * sqrt(N * pt[i] * (1 - pt[i])) + 1);
    }
    assert_int_equal(count_k2[0], 0);
    assert_int_equal(count_k2[3], 0);
    assert_int_equal(lb_sample_logits(logits, 4, 0.0f, 0, &rng, scratch), 2);
    assert_int_equal(lb_sample_logits(logits, 4, 5.0f, 1, &rng, scratch), 2);
    const float tie[3] = {1.0f, 3.0f, 3.0f};
    assert_int_equal(lb_sample_logits(tie, 3, 0.0f, 0, &rng, scratch), 1); /* lowest id on ties */
}

static void test_generate_deterministic(void **state) {
    (void)state;
    lb_model_config c = tiny_config();
    lb_model *m = create(&c, 13);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    /* A prompt of 30 tokens plus 12 new runs past max_seq_len = 32: the
     * window slides. */
    int prompt[30];
    random_ids(prompt, 30, 17);
    int greedy1[12], greedy2[12], topk1[12], s1[12], s2[12], s3[12];
    lb_rng r;
    lb_rng_init(&r, 1, LB_STREAM_SAMPLE);
    assert_int_equal(lb_generate(m, &g, prompt, 30, 12, 0.0f, 0, &r, greedy1), LB_OK);
    lb_rng_init(&r, 2, LB_STREAM_SAMPLE);
    assert_int_equal(lb_generate(m, &g, prompt, 30, 12, 0.0f, 0, &r, greedy2), LB_OK);
    lb_rng_init(&r, 3, LB_STREAM_SAMPLE);
    assert_int_equal(lb_generate(m, &g, prompt, 30, 12, 1.0f, 1, &r, topk1), LB_OK);
    assert_memory_equal(greedy1, greedy2, sizeof greedy1);
    assert_memory_equal(greedy1, topk1, sizeof greedy1);

    /* Temperature sampling: reproducible from the seed; another seed gives
     * another sequence (near-uniform logits over 256 ids at init). */
    lb_rng_init(&r, 4, LB_STREAM_SAMPLE);
    assert_int_equal(lb_generate(m, &g, prompt, 30, 12, 1.0f, 0, &r, s1), LB_OK);
    assert_int_equal(r.pos, 12);
    lb_rng_init(&r, 4, LB_STREAM_SAMPLE);
    assert_int_equal(lb_generate(m, &g, prompt, 30, 12, 1.0f, 0, &r, s2), LB_OK);
    lb_rng_init(&r, 5, LB_STREAM_SAMPLE);
    assert_int_equal(lb_generate(m, &g, prompt, 30, 12, 1.0f, 0, &r, s3), LB_OK);
    assert_memory_equal(s1, s2, sizeof s1);
    assert_memory_not_equal(s1, s3, sizeof s1);

    int badp[2] = {3, 300};
    assert_int_equal(lb_generate(m, &g, badp, 2, 1, 0.0f, 0, &r, s1), LB_EINVAL);
    assert_int_equal(lb_generate(m, &g, badp, 0, 1, 0.0f, 0, &r, s1), LB_EINVAL);
    lb_graph_free(&g);
    lb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_count_names_shapes),
        cmocka_unit_test(test_parameter_table),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_initial_loss_is_ln_v),
        cmocka_unit_test(test_forward_errors),
        cmocka_unit_test(test_tied_head_gradient),
        cmocka_unit_test(test_model_gradcheck),
        cmocka_unit_test(test_train_and_greedy_generate),
        cmocka_unit_test(test_lsq_steps_in_the_table),
        cmocka_unit_test(test_lsq_step_learns),
        cmocka_unit_test(test_variants_train),
        cmocka_unit_test(test_lambda_zero_matches_fp),
        cmocka_unit_test(test_stochastic_rounding_streams),
        cmocka_unit_test(test_sample_logits_distribution),
        cmocka_unit_test(test_generate_deterministic),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

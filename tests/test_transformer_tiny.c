/* A 2-layer Llama-style transformer assembled from the autograd ops:
 *   embedding → [rmsnorm → q,k,v → rope → attention → out proj → residual
 *               → rmsnorm → SwiGLU MLP → residual] × 2
 *   → rmsnorm → tied head (embedding table) → cross-entropy.
 * (1) Every parameter's gradient matches finite differences through the whole
 *     stack; (2) plain SGD on one fixed batch halves the loss, and after the
 *     first step the graph's arena asks the system for no more memory. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

enum { V = 11, D = 8, T = 5, B = 2, H = 2, HKV = 1, DH = D / H, F = 16, LAYERS = 2 };
#define EPS 1e-5f
#define ROPE_THETA 10000.0f
#define IGNORE (-1)

/* Parameter slots: two globals, then one block per layer. */
enum { P_EMB, P_FINAL_NORM, P_GLOBALS };
enum { L_ATTN_NORM, L_WQ, L_WK, L_WV, L_WO, L_MLP_NORM, L_GATE, L_UP, L_DOWN, L_PARAMS };
enum { N_PARAMS = P_GLOBALS + LAYERS * L_PARAMS };

typedef struct batch {
    int ids[B * T];
    int targets[B * T];
} batch;

typedef struct model {
    lb_tensor *p[N_PARAMS];
    char names[N_PARAMS][32];
} model;

static lb_tensor *param(model *m, int slot, int rows, int cols, uint64_t seed, float lo, float hi,
                        const char *name) {
    int shape[2] = {rows, cols};
    lb_tensor *t = lb_tensor_alloc(cols ? 2 : 1, cols ? shape : &rows, 1);
    assert_non_null(t);
    tu_fill_uniform(t, seed, lo, hi);
    snprintf(m->names[slot], sizeof m->names[slot], "%s", name);
    t->name = m->names[slot];
    m->p[slot] = t;
    return t;
}

static void model_init(model *m) {
    memset(m, 0, sizeof *m);
    param(m, P_EMB, V, D, 1, -0.3f, 0.3f, "token_embd"); /* small: tied head logits start near 0 */
    param(m, P_FINAL_NORM, D, 0, 2, 0.8f, 1.2f, "output_norm");
    for (int l = 0; l < LAYERS; l++) {
        int base = P_GLOBALS + l * L_PARAMS;
        uint64_t s = 100 + 20 * (uint64_t)l;
        char name[32];
        /* Weights ~ U(±1/sqrt(fan_in)) keep activations O(1). */
        const float a = 1.0f / sqrtf((float)D), af = 1.0f / sqrtf((float)F);
#define P(slot, r, c, seed, lo, hi, nm)                           \
    snprintf(name, sizeof name, "blk.%d.%s", l, nm);             \
    param(m, base + (slot), r, c, s + (seed), lo, hi, name)
        P(L_ATTN_NORM, D, 0, 0, 0.8f, 1.2f, "attn_norm");
        P(L_WQ, H * DH, D, 1, -a, a, "attn_q");
        P(L_WK, HKV * DH, D, 2, -a, a, "attn_k");
        P(L_WV, HKV * DH, D, 3, -a, a, "attn_v");
        P(L_WO, D, H * DH, 4, -a, a, "attn_output");
        P(L_MLP_NORM, D, 0, 5, 0.8f, 1.2f, "ffn_norm");
        P(L_GATE, F, D, 6, -a, a, "ffn_gate");
        P(L_UP, F, D, 7, -a, a, "ffn_up");
        P(L_DOWN, D, F, 8, -af, af, "ffn_down");
#undef P
    }
}

static void model_free(model *m) {
    for (int i = 0; i < N_PARAMS; i++) lb_tensor_free(m->p[i]);
}

/* Next-token targets of a fixed pseudo-random sequence; the last position of
 * the second sequence is ignored. */
static void batch_init(batch *bt) {
    for (int i = 0; i < B * (T + 1); i++) {
        int b = i / (T + 1), t = i % (T + 1);
        int tok = (int)(lb_rand_u32(9, 0, (uint64_t)i) % V);
        if (t < T) bt->ids[b * T + t] = tok;
        if (t > 0) bt->targets[b * T + t - 1] = tok;
    }
    bt->targets[B * T - 1] = IGNORE;
}

static lb_tensor *heads(lb_graph *g, lb_tensor *x, int n_heads) {
    int shape[4] = {B, T, n_heads, DH};
    return lb_reshape(g, x, 4, shape);
}

static lb_tensor *forward(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    const batch *bt = ctx;
    lb_tensor *x = lb_embedding(g, p[P_EMB], bt->ids, B, T); /* [B, T, D] */
    for (int l = 0; l < LAYERS; l++) {
        lb_tensor **w = p + P_GLOBALS + l * L_PARAMS;
        lb_tensor *h = lb_rmsnorm(g, x, w[L_ATTN_NORM], EPS);
        lb_tensor *q = lb_rope(g, heads(g, lb_matmul(g, h, w[L_WQ], 1), H), ROPE_THETA, 0);
        lb_tensor *k = lb_rope(g, heads(g, lb_matmul(g, h, w[L_WK], 1), HKV), ROPE_THETA, 0);
        lb_tensor *v = heads(g, lb_matmul(g, h, w[L_WV], 1), HKV);
        int flat[3] = {B, T, H * DH};
        lb_tensor *a = lb_reshape(g, lb_attention(g, q, k, v), 3, flat);
        x = lb_add(g, x, lb_matmul(g, a, w[L_WO], 1));
        h = lb_rmsnorm(g, x, w[L_MLP_NORM], EPS);
        lb_tensor *m = lb_swiglu(g, lb_matmul(g, h, w[L_GATE], 1), lb_matmul(g, h, w[L_UP], 1));
        x = lb_add(g, x, lb_matmul(g, m, w[L_DOWN], 1));
    }
    x = lb_rmsnorm(g, x, p[P_FINAL_NORM], EPS);
    lb_tensor *logits = lb_matmul(g, x, p[P_EMB], 1); /* tied head: [B, T, V] */
    return lb_cross_entropy(g, logits, bt->targets, IGNORE);
}

static void test_gradients_through_the_stack(void **state) {
    (void)state;
    model m;
    batch bt;
    model_init(&m);
    batch_init(&bt);
    double worst = tu_gradcheck(forward, m.p, N_PARAMS, &bt, 1e-2f, 2e-2, 2e-4);
    print_message("largest relative gradient error: %.3g\n", worst);
    model_free(&m);
}

static void test_sgd_halves_the_loss(void **state) {
    (void)state;
    model m;
    batch bt;
    model_init(&m);
    batch_init(&bt);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    const float lr = 0.5f;
    const int steps = 100;
    float first = 0.0f, last = 0.0f;
    size_t allocs_after_first = 0;
    for (int step = 0; step < steps; step++) {
        lb_graph_reset(&g);
        for (int i = 0; i < N_PARAMS; i++) memset(m.p[i]->grad, 0, m.p[i]->n * sizeof(float));
        lb_tensor *loss = forward(&g, m.p, N_PARAMS, &bt);
        if (!loss) fail_msg("forward failed: %s", lb_errmsg());
        assert_int_equal(lb_backward(&g, loss), LB_OK);
        last = loss->data[0];
        assert_true(isfinite(last));
        if (step == 0) first = last;
        if (step == 1) allocs_after_first = g.arena.n_system_allocs;
        for (int i = 0; i < N_PARAMS; i++)
            for (size_t j = 0; j < m.p[i]->n; j++) m.p[i]->data[j] -= lr * m.p[i]->grad[j];
    }
    print_message("loss %.4f -> %.4f after %d SGD steps\n", first, last, steps);
    /* The starting loss is near log V: the model starts close to uniform. */
    assert_true(fabs(first - log((double)V)) < 1.0);
    assert_true(last < 0.5f * first);
    /* Same-shaped steps reuse the arena. */
    assert_int_equal(g.arena.n_system_allocs, allocs_after_first);
    lb_graph_free(&g);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_through_the_stack),
        cmocka_unit_test(test_sgd_halves_the_loss),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

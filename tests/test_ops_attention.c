/* Tests of lb_rope and lb_attention: forward against reference computations
 * in double written from the formulas, causality, RoPE invariants, gradients
 * against finite differences, determinism across thread counts. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd/ops.h"
#include "testutil.h"

static size_t idx4(int b, int t, int h, int d, int T, int H, int D) {
    return (((size_t)b * T + t) * H + h) * D + d;
}

/* --- lb_rope --------------------------------------------------------------------- */

enum { RB = 2, RT = 6, RH = 3, RD = 8 };

static void test_rope_forward_reference(void **state) {
    (void)state;
    int shape[4] = {RB, RT, RH, RD};
    lb_tensor *x = tu_param(4, shape, 1, -1.0f, 1.0f);
    const double theta = 10000.0;
    const int pos0 = 5;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *y = lb_rope(&g, x, (float)theta, pos0);
    assert_non_null(y);
    const int half = RD / 2;
    for (int b = 0; b < RB; b++)
        for (int t = 0; t < RT; t++)
            for (int h = 0; h < RH; h++)
                for (int j = 0; j < half; j++) {
                    double a = (pos0 + t) * pow(theta, -2.0 * j / RD);
                    double x0 = x->data[idx4(b, t, h, j, RT, RH, RD)];
                    double x1 = x->data[idx4(b, t, h, j + half, RT, RH, RD)];
                    assert_float_equal(y->data[idx4(b, t, h, j, RT, RH, RD)], x0 * cos(a) - x1 * sin(a), 1e-5);
                    assert_float_equal(y->data[idx4(b, t, h, j + half, RT, RH, RD)], x1 * cos(a) + x0 * sin(a),
                                       1e-5);
                }
    lb_graph_free(&g);
    lb_tensor_free(x);
}

static void test_rope_identity_at_zero_and_norms(void **state) {
    (void)state;
    int shape[4] = {RB, RT, RH, RD};
    lb_tensor *x = tu_param(4, shape, 2, -2.0f, 2.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *y = lb_rope(&g, x, 500000.0f, 0);
    assert_non_null(y);
    const int half = RD / 2;
    for (int b = 0; b < RB; b++)
        for (int t = 0; t < RT; t++)
            for (int h = 0; h < RH; h++)
                for (int j = 0; j < half; j++) {
                    size_t i0 = idx4(b, t, h, j, RT, RH, RD), i1 = idx4(b, t, h, j + half, RT, RH, RD);
                    if (t == 0) { /* position 0: angle 0, nothing moves */
                        assert_float_equal(y->data[i0], x->data[i0], 0.0f);
                        assert_float_equal(y->data[i1], x->data[i1], 0.0f);
                    }
                    /* A rotation keeps the length of every pair. */
                    double nx = hypot(x->data[i0], x->data[i1]), ny = hypot(y->data[i0], y->data[i1]);
                    assert_float_equal(ny, nx, 1e-5 * (1.0 + nx));
                }
    /* Row t = 3 of a sequence starting at 0 equals the same row as a
     * one-token sequence starting at pos0 = 3 (decoding with a cache). */
    int one_shape[4] = {RB, 1, RH, RD};
    lb_tensor *x3 = lb_tensor_alloc(4, one_shape, 0);
    assert_non_null(x3);
    for (int b = 0; b < RB; b++)
        memcpy(x3->data + idx4(b, 0, 0, 0, 1, RH, RD), x->data + idx4(b, 3, 0, 0, RT, RH, RD),
               RH * RD * sizeof(float));
    lb_tensor *z = lb_rope(&g, x3, 500000.0f, 3);
    assert_non_null(z);
    for (int b = 0; b < RB; b++)
        for (int h = 0; h < RH; h++)
            for (int d = 0; d < RD; d++)
                assert_float_equal(z->data[idx4(b, 0, h, d, 1, RH, RD)], y->data[idx4(b, 3, h, d, RT, RH, RD)],
                                   0.0f);
    lb_graph_free(&g);
    lb_tensor_free(x3);
    lb_tensor_free(x);
}

static lb_tensor *rope_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    return tu_weighted_sum(g, lb_rope(g, p[0], 100.0f, 7), 21);
}

static void test_rope_grad(void **state) {
    (void)state;
    int shape[4] = {RB, RT, RH, RD};
    lb_tensor *x = tu_param(4, shape, 3, -1.0f, 1.0f);
    x->name = "x";
    tu_gradcheck(rope_loss, &x, 1, NULL, 1e-2f, 1e-2, 1e-3);
    lb_tensor_free(x);
}

static void test_rope_errors(void **state) {
    (void)state;
    int odd[4] = {1, 2, 2, 5}, three[3] = {2, 2, 4};
    lb_tensor *a = tu_param(4, odd, 4, -1.0f, 1.0f), *b = tu_param(3, three, 5, -1.0f, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    assert_null(lb_rope(&g, a, 10000.0f, 0));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "rope"));
    assert_non_null(strstr(lb_errmsg(), "[1,2,2,5]"));
    assert_null(lb_rope(&g, b, 10000.0f, 0));
    assert_null(lb_rope(&g, NULL, 10000.0f, 0));
    lb_graph_free(&g);
    lb_tensor_free(a);
    lb_tensor_free(b);
}

/* --- lb_attention --------------------------------------------------------------- */

typedef struct attn_dims {
    int B, T, H, Hkv, Dh;
} attn_dims;

/* Naive causal attention in double, straight from the definition. */
static void attention_reference(const attn_dims *d, const float *q, const float *k, const float *v, double *out) {
    const int group = d->H / d->Hkv;
    double s[64];
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int t = 0; t < d->T; t++) {
                int kh = h / group;
                double mx = -INFINITY;
                for (int u = 0; u <= t; u++) {
                    double dot = 0.0;
                    for (int i = 0; i < d->Dh; i++)
                        dot += (double)q[idx4(b, t, h, i, d->T, d->H, d->Dh)] *
                               k[idx4(b, u, kh, i, d->T, d->Hkv, d->Dh)];
                    s[u] = dot / sqrt((double)d->Dh);
                    mx = fmax(mx, s[u]);
                }
                double z = 0.0;
                for (int u = 0; u <= t; u++) z += exp(s[u] - mx);
                for (int i = 0; i < d->Dh; i++) {
                    double acc = 0.0;
                    for (int u = 0; u <= t; u++)
                        acc += exp(s[u] - mx) / z * v[idx4(b, u, kh, i, d->T, d->Hkv, d->Dh)];
                    out[idx4(b, t, h, i, d->T, d->H, d->Dh)] = acc;
                }
            }
}

typedef struct attn_case {
    attn_dims d;
    lb_tensor *q, *k, *v;
} attn_case;

static void attn_case_init(attn_case *c, attn_dims d, uint64_t seed, float range) {
    c->d = d;
    int qs[4] = {d.B, d.T, d.H, d.Dh}, ks[4] = {d.B, d.T, d.Hkv, d.Dh};
    c->q = tu_param(4, qs, seed, -range, range);
    c->k = tu_param(4, ks, seed + 1, -range, range);
    c->v = tu_param(4, ks, seed + 2, -1.0f, 1.0f);
    c->q->name = "q";
    c->k->name = "k";
    c->v->name = "v";
}

static void attn_case_free(attn_case *c) {
    lb_tensor_free(c->q);
    lb_tensor_free(c->k);
    lb_tensor_free(c->v);
}

static void check_attention_forward(attn_dims d, float range, double tol) {
    attn_case c;
    attn_case_init(&c, d, 100, range);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *o = lb_attention(&g, c.q, c.k, c.v);
    assert_non_null(o);
    assert_true(lb_tensor_same_shape(o, c.q));
    double ref[4096];
    assert_true(o->n <= 4096);
    attention_reference(&d, c.q->data, c.k->data, c.v->data, ref);
    for (size_t i = 0; i < o->n; i++) assert_float_equal(o->data[i], ref[i], tol);
    /* Without gradients (evaluation) the probabilities are not kept, and the
     * result is the same. */
    lb_graph_set_grad(&g, 0);
    lb_tensor *o_eval = lb_attention(&g, c.q, c.k, c.v);
    assert_non_null(o_eval);
    assert_memory_equal(o_eval->data, o->data, o->n * sizeof(float));
    lb_graph_free(&g);
    attn_case_free(&c);
}

static void test_attention_forward(void **state) {
    (void)state;
    check_attention_forward((attn_dims){2, 5, 4, 4, 8}, 1.0f, 1e-5);
    check_attention_forward((attn_dims){2, 7, 4, 2, 4}, 1.0f, 1e-5);
    check_attention_forward((attn_dims){1, 6, 6, 1, 16}, 1.0f, 1e-5);
    /* Scores in the hundreds: without the max subtraction exp() overflows. */
    check_attention_forward((attn_dims){1, 5, 2, 1, 4}, 30.0f, 1e-4);
}

static void test_attention_causal(void **state) {
    (void)state;
    attn_dims d = {2, 6, 4, 2, 4};
    attn_case c;
    attn_case_init(&c, d, 200, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *before = lb_attention(&g, c.q, c.k, c.v);
    assert_non_null(before);
    const int tp = 3; /* change k and v at position tp only */
    for (int b = 0; b < d.B; b++)
        for (int h = 0; h < d.Hkv; h++)
            for (int i = 0; i < d.Dh; i++) {
                c.k->data[idx4(b, tp, h, i, d.T, d.Hkv, d.Dh)] += 5.0f;
                c.v->data[idx4(b, tp, h, i, d.T, d.Hkv, d.Dh)] -= 3.0f;
            }
    lb_tensor *after = lb_attention(&g, c.q, c.k, c.v);
    assert_non_null(after);
    for (int b = 0; b < d.B; b++)
        for (int t = 0; t < d.T; t++)
            for (int h = 0; h < d.H; h++) {
                double diff = 0.0;
                for (int i = 0; i < d.Dh; i++) {
                    size_t j = idx4(b, t, h, i, d.T, d.H, d.Dh);
                    diff += fabs((double)after->data[j] - before->data[j]);
                }
                if (t < tp) /* masked positions have exactly zero weight */
                    assert_float_equal(diff, 0.0, 0.0);
                else
                    assert_true(diff > 1e-3);
            }
    lb_graph_free(&g);
    attn_case_free(&c);
}

static lb_tensor *attention_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    return tu_weighted_sum(g, lb_attention(g, p[0], p[1], p[2]), 31);
}

static void check_attention_grad(attn_dims d) {
    attn_case c;
    attn_case_init(&c, d, 300, 1.0f);
    lb_tensor *p[3] = {c.q, c.k, c.v};
    tu_gradcheck(attention_loss, p, 3, NULL, 1e-2f, 1e-2, 1e-3);
    attn_case_free(&c);
}

static void test_attention_grad(void **state) {
    (void)state;
    check_attention_grad((attn_dims){2, 5, 2, 2, 4}); /* Hkv = H */
    check_attention_grad((attn_dims){2, 5, 4, 2, 4}); /* grouped */
    check_attention_grad((attn_dims){1, 4, 3, 1, 6}); /* one KV head for all */
    check_attention_grad((attn_dims){1, 32, 2, 1, 32}); /* big enough to run the heads in parallel */
}

/* The same inputs give bit-identical outputs and gradients with 1 and 2
 * threads, and the same outputs as the reference. */
static void run_attention(attn_case *c, int threads, float *out, float *grads) {
    omp_set_num_threads(threads);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_tensor *p[3] = {c->q, c->k, c->v};
    for (int i = 0; i < 3; i++) memset(p[i]->grad, 0, p[i]->n * sizeof(float));
    lb_tensor *o = lb_attention(&g, c->q, c->k, c->v);
    lb_tensor *loss = tu_weighted_sum(&g, o, 41);
    assert_non_null(loss);
    memcpy(out, o->data, o->n * sizeof(float)); /* backward frees the activations */
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    for (int i = 0; i < 3; i++) {
        memcpy(grads, p[i]->grad, p[i]->n * sizeof(float));
        grads += p[i]->n;
    }
    lb_graph_free(&g);
}

static void test_attention_deterministic(void **state) {
    (void)state;
    attn_case c;
    /* Large enough (B·H·T²·Dh > 65536) for the heads to run in parallel. */
    attn_case_init(&c, (attn_dims){3, 24, 4, 2, 16}, 400, 1.0f);
    enum { MAXN = 3 * 24 * 4 * 16 };
    static float o1[MAXN], o2[MAXN], g1[3 * MAXN], g2[3 * MAXN];
    int saved = omp_get_max_threads();
    run_attention(&c, 1, o1, g1);
    run_attention(&c, 2, o2, g2);
    omp_set_num_threads(saved);
    assert_memory_equal(o1, o2, c.q->n * sizeof(float));
    static double ref[MAXN];
    attention_reference(&c.d, c.q->data, c.k->data, c.v->data, ref);
    for (size_t i = 0; i < c.q->n; i++) assert_float_equal(o1[i], ref[i], 1e-5);
    assert_memory_equal(g1, g2, (c.q->n + c.k->n + c.v->n) * sizeof(float));
    attn_case_free(&c);
}

/* With only one input requiring a gradient, that input gets the same
 * gradient as when all three do, and the others are left alone. */
static void test_attention_partial_grad(void **state) {
    (void)state;
    attn_case c;
    attn_case_init(&c, (attn_dims){2, 5, 4, 2, 4}, 500, 1.0f);
    enum { N = 2 * 5 * 4 * 4 };
    static float o[N], all[3 * N], one[3 * N];
    run_attention(&c, 2, o, all);
    lb_tensor *p[3] = {c.q, c.k, c.v};
    size_t off = 0;
    for (int only = 0; only < 3; only++) {
        for (int i = 0; i < 3; i++) p[i]->requires_grad = (i == only);
        run_attention(&c, 2, o, one);
        size_t o2 = 0;
        for (int i = 0; i < 3; i++) {
            if (i == only)
                assert_memory_equal(one + o2, all + off, p[i]->n * sizeof(float));
            else
                for (size_t j = 0; j < p[i]->n; j++) assert_float_equal(one[o2 + j], 0.0f, 0.0f);
            o2 += p[i]->n;
        }
        off += p[only]->n;
    }
    attn_case_free(&c);
}

static void test_attention_errors(void **state) {
    (void)state;
    int qs[4] = {1, 4, 3, 8}, ks[4] = {1, 4, 2, 8}, kt[4] = {1, 5, 3, 8};
    lb_tensor *q = tu_param(4, qs, 1, -1.0f, 1.0f), *k = tu_param(4, ks, 2, -1.0f, 1.0f), *k5 = tu_param(4, kt, 3, -1.0f, 1.0f);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    assert_null(lb_attention(&g, q, k, k)); /* Hkv 2 does not divide H 3 */
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "attention"));
    assert_non_null(strstr(lb_errmsg(), "[1,4,3,8]"));
    assert_null(lb_attention(&g, q, k5, k5)); /* T differs */
    assert_null(lb_attention(&g, q, q, k));   /* k and v differ */
    assert_null(lb_attention(&g, q, NULL, k));
    lb_graph_free(&g);
    lb_tensor_free(q);
    lb_tensor_free(k);
    lb_tensor_free(k5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_forward_reference),
        cmocka_unit_test(test_rope_identity_at_zero_and_norms),
        cmocka_unit_test(test_rope_grad),
        cmocka_unit_test(test_rope_errors),
        cmocka_unit_test(test_attention_forward),
        cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_attention_grad),
        cmocka_unit_test(test_attention_deterministic),
        cmocka_unit_test(test_attention_partial_grad),
        cmocka_unit_test(test_attention_errors),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

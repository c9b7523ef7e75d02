/* lb_qmatmul: the BitLinear product y = q_x(x) · q_w(w)ᵀ as ONE tape node.
 *
 * Written as lb_fake_quant(x), lb_fake_quant(w), lb_matmul the same product
 * costs two more nodes, and their backward passes each allocate a zeroed
 * gradient buffer for the quantized copy (x-sized and w-sized) and then add
 * it into the input's gradient. With the identity STE the gradient of the
 * quantized copy IS the gradient of the input, so the backward products
 * here write straight into x->grad and w->grad:
 *
 *   dx += dy · q_w(w),   dw += dyᵀ · q_x(x)
 *
 * q(v) = v + λ·(Q(v) − v) as in lb_fake_quant.
 *
 * The integer path. For the BitNet recipes at λ = 1 (ternary or binary
 * weights with one scale d_w, int8 activations with one scale d_m per
 * token) q_x(x)[m, k] = a[m, k]·d_m and q_w(w)[n, k] = b[n, k]·d_w with int8
 * codes a, b, so the forward product is exact in integers:
 *
 *   y[m, n] = fl(fl(S[m, n]) · fl(d_m·d_w)),   S = Σ_k a[m, k]·b[n, k] (int32)
 *
 * two roundings of the exact value: |y − exact| ≤ 3u·|exact| (u = 2^-24,
 * S is exact in fp32 while |S| < 2^24, i.e. K < 2^17 for ternary and
 * binary weights). The fake-quant fp32 product rounds each q·d and then
 * sums K products in fp32: it is within (K + 2)·u·d_m·d_w·Σ_k |a·b| (to
 * first order) of the exact value, so the two agree within
 * (K + 5)·u·d_m·d_w·Σ_k |a[m, k]·b[n, k]|; tests/test_gemm.c checks that
 * bound on every element. The input is kept for the backward pass as its
 * int8 codes and row scales (a quarter of the fp32 copy). The backward
 * products:
 *   fp32 precision: dx += dy · (b·d_w), dw += dyᵀ · (a·d), the operands
 *       made again in fp32 exactly as the fake-quant path has them;
 *   bf16 precision: the codes are exact in bf16, so the scales move out of
 *       the operands: dx += d_w · (bf16(dy) · b), dw += bf16(dy·d_m)ᵀ · a.
 *
 * The weight gradients of projections that share an input (q/k/v, gate/up)
 * dequantize its codes once: the nodes run one after the other in the
 * backward pass, and the first of them in the forward pass (the last to
 * run) hands the fp32 copy back.
 *
 * The integer path keeps the weight's int8 codes and scale from the forward
 * pass to the backward pass (a byte per weight, until this node's backward
 * has run), so the backward pass does not quantize the weight again, when
 * the weight has at most four times as many rows as the input
 * (lb_qmatmul_keeps_weight_codes): a large model on short batches would
 * otherwise hold a quarter of its fp32 weights again in codes.
 *
 * Every other case (λ < 1, other formats, a per-channel weight scale) takes
 * the float path: fp32 fake-quantized operands multiplied at the graph's
 * precision. There the quantized weight is not kept across the step (four
 * bytes per weight): it is made again in the backward pass (deterministic,
 * so the same values), which costs far less than the products. */
#include <string.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "quant/quantize.h"

typedef struct qmm_saved {
    const float *xq;          /* float path: the input the forward product used */
    const int8_t *xcodes;     /* integer path: its codes [M, K] */
    const float *xscales;     /* and one scale per row */
    int xreused;              /* integer path: the codes came from an earlier node (same input) */
    const int8_t *wcodes;     /* integer path: the weight's codes [N, K] */
    float wscale;             /* and its scale d_w */
    lb_qspec xspec, wspec;    /* how x and w were quantized */
    int w_quantized;          /* 0: the weight went in as it is */
    float lambda;
    lb_gemm_precision p;
} qmm_saved;

/* The BitNet recipes at λ = 1: int8 (or narrower) symmetric activation
 * codes per row and ternary or binary weight codes with one scale. */
int lb_qmatmul_integer(const lb_qspec *x, const lb_qspec *w, float lambda) {
    return lambda == 1.0f && x && w && x->format == LB_QF_INT && x->bits <= 8 && x->gran == LB_QG_ROW &&
           !x->asymmetric && !x->stochastic && (w->format == LB_QF_TERNARY || w->format == LB_QF_BINARY) &&
           w->gran == LB_QG_TENSOR;
}

int lb_qmatmul_keeps_weight_codes(size_t M, size_t N) { return N <= 4 * M; }

/* q(v) of a [rows, cols] array into `q` (n floats). */
static lb_status quantize_into(float *q, const lb_tensor *v, const lb_qspec *spec, float lambda) {
    const size_t rows = lb_tensor_rows(v), cols = (size_t)lb_tensor_cols(v), n = v->n;
    LB_TRY(lb_fake_quantize(spec, v->data, q, rows, cols, NULL));
    if (lambda < 1.0f) { /* gradual quantization: v + λ·(Q(v) − v) */
        const float *vd = v->data;
        if (n >= 32768) {
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) q[i] = vd[i] + lambda * (q[i] - vd[i]);
        } else {
            for (size_t i = 0; i < n; i++) q[i] = vd[i] + lambda * (q[i] - vd[i]);
        }
    }
    return LB_OK;
}

/* --- backward ------------------------------------------------------------------ */

/* dx[M,K] += dy[M,N] · q_w(w)[N,K]; dx = ... when dx is unwritten (the
 * first of the nodes sharing x to run backward). */
static lb_status backward_dx(lb_node *node, const qmm_saved *s, int M, int N, int K) {
    lb_tensor *w = node->in[1], *x = node->in[0];
    const float *dy = node->out->grad;
    const size_t nk = (size_t)N * K, mn = (size_t)M * N;
    const float beta = lb_grad_unwritten(x) ? 0.0f : 1.0f;
    if (s->xcodes && s->p == LB_PRECISION_BF16) {
        int8_t *wc = s->wcodes ? NULL : lb_node_scratch(node, nk);
        uint16_t *wb = lb_node_scratch(node, nk * sizeof(uint16_t));
        uint16_t *db = lb_node_scratch(node, mn * sizeof(uint16_t));
        if ((!s->wcodes && !wc) || !wb || !db) return LB_ENOMEM;
        float dw = s->wscale;
        /* Not kept: the forward pass quantized this weight with this spec, so this cannot fail. */
        lb_status st = wc ? lb_quantize(&s->wspec, w->data, (size_t)N, (size_t)K, wc, &dw, NULL) : LB_OK;
        if (st == LB_OK) {
            lb_gemm_s8_to_bf16(N, K, wc ? wc : s->wcodes, K, wb, K);
            lb_gemm_to_bf16(M, N, dy, N, NULL, db, N);
            st = lb_gemm(LB_GEMM_BF16, 0, 0, M, K, N, dw, db, N, wb, K, NULL, beta, x->grad, K);
        }
        lb_node_release(node, db, mn * sizeof(uint16_t));
        lb_node_release(node, wb, nk * sizeof(uint16_t));
        if (wc) lb_node_release(node, wc, nk);
        return st;
    }
    float *wq = s->w_quantized ? lb_node_scratch(node, w->n * sizeof(float)) : w->data;
    if (!wq) return LB_ENOMEM;
    lb_status st = LB_OK;
    /* The codes times d_w are the fake-quantized weight to the bit (the
     * pass computes code·d_w as well). */
    if (s->wcodes) st = lb_dequantize(&s->wspec, s->wcodes, &s->wscale, NULL, (size_t)N, (size_t)K, wq);
    else if (s->w_quantized) st = quantize_into(wq, w, &s->wspec, s->lambda);
    if (st == LB_OK) st = lb_gemm_f32(s->p, 0, 0, M, K, N, 1.0f, dy, N, wq, K, beta, x->grad, K);
    if (s->w_quantized) lb_node_release(node, wq, w->n * sizeof(float));
    return st;
}

/* The saved input codes as fp32 values a·d_m [M, K], made once for the
 * nodes that share them (lb_graph's dqcache). */
static lb_status dequantized_input(lb_node *node, const qmm_saved *s, int M, int K, const float **xq) {
    lb_graph *g = node->graph;
    if (g->dqcache.codes != s->xcodes) {
        lb_node_release(node, g->dqcache.x, g->dqcache.bytes);
        memset(&g->dqcache, 0, sizeof g->dqcache);
        const size_t bytes = (size_t)M * K * sizeof(float);
        float *x = lb_node_scratch(node, bytes);
        if (!x) return LB_ENOMEM;
        /* The codes and scales the forward pass made: cannot fail. */
        lb_status st = lb_dequantize(&s->xspec, s->xcodes, s->xscales, NULL, (size_t)M, (size_t)K, x);
        if (st != LB_OK) {
            lb_node_release(node, x, bytes);
            return st;
        }
        g->dqcache.codes = s->xcodes;
        g->dqcache.x = x;
        g->dqcache.bytes = bytes;
    }
    *xq = g->dqcache.x;
    return LB_OK;
}

/* dw[N,K] += dyᵀ[N,M] · q_x(x)[M,K] */
static lb_status backward_dw(lb_node *node, const qmm_saved *s, int M, int N, int K) {
    lb_tensor *w = node->in[1];
    const float *dy = node->out->grad;
    if (!s->xcodes) return lb_gemm_f32(s->p, 1, 0, N, K, M, 1.0f, dy, N, s->xq, K, 1.0f, w->grad, K);
    const size_t mk = (size_t)M * K, mn = (size_t)M * N;
    if (s->p == LB_PRECISION_BF16) {
        uint16_t *xb = lb_node_scratch(node, mk * sizeof(uint16_t));
        uint16_t *db = lb_node_scratch(node, mn * sizeof(uint16_t));
        if (!xb || !db) return LB_ENOMEM;
        lb_gemm_s8_to_bf16(M, K, s->xcodes, K, xb, K);
        lb_gemm_to_bf16(M, N, dy, N, s->xscales, db, N); /* dy[m, :]·d_m: the row scale moves to dy */
        lb_status st = lb_gemm(LB_GEMM_BF16, 1, 0, N, K, M, 1.0f, db, N, xb, K, NULL, 1.0f, w->grad, K);
        lb_node_release(node, db, mn * sizeof(uint16_t));
        lb_node_release(node, xb, mk * sizeof(uint16_t));
        return st;
    }
    const float *xq;
    LB_TRY(dequantized_input(node, s, M, K, &xq));
    lb_status st = lb_gemm_f32(s->p, 1, 0, N, K, M, 1.0f, dy, N, xq, K, 1.0f, w->grad, K);
    /* The node that made the codes runs last of those sharing them. */
    if (!s->xreused) {
        lb_node_release(node, node->graph->dqcache.x, node->graph->dqcache.bytes);
        memset(&node->graph->dqcache, 0, sizeof node->graph->dqcache);
    }
    return st;
}

static void qmatmul_backward(lb_node *node) {
    lb_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const qmm_saved *s = node->saved;
    const int M = (int)lb_tensor_rows(x), K = lb_tensor_cols(x), N = lb_tensor_cols(y);
    lb_status st = LB_OK;
    if (x->requires_grad) st = backward_dx(node, s, M, N, K);
    if (st == LB_OK && w->requires_grad) st = backward_dw(node, s, M, N, K);
    if (s->wcodes) lb_node_release(node, (void *)s->wcodes, (size_t)N * K);
    if (st != LB_OK) lb_node_fail(node, st);
}

/* --- forward ---------------------------------------------------------------------- */

static int check_spec(const lb_tensor *v, const lb_qspec *spec) {
    if (lb_quant_check(spec, lb_tensor_rows(v), (size_t)lb_tensor_cols(v)) == LB_OK) return 1;
    char buf[64];
    lb_error_prefix("qmatmul: quantizing %s %s", v->name ? v->name : "tensor", lb_shape_str(v, buf, sizeof buf));
    return 0;
}

/* q(v) of a [rows, cols] array into the arena; v itself when spec is NULL. */
static const float *quantized(lb_graph *g, const lb_tensor *v, const lb_qspec *spec, float lambda) {
    if (!spec) return v->data;
    if (!check_spec(v, spec)) return NULL;
    float *q = lb_graph_alloc(g, v->n * sizeof(float));
    if (!q) return NULL;
    return quantize_into(q, v, spec, lambda) == LB_OK ? q : NULL;
}

/* Whether the previous call quantized the same data the same way (q, k and
 * v read one normed input; so do gate and up). Activations are never
 * written after their op returns, so equal pointers within one step mean
 * equal contents. */
static int cached(const lb_graph *g, const lb_tensor *x, const lb_qspec *spec, float lambda) {
    return g->qcache.src == x->data && g->qcache.n == x->n && g->qcache.lambda == lambda &&
           memcmp(&g->qcache.spec, spec, sizeof *spec) == 0;
}

static void remember(lb_graph *g, const lb_tensor *x, const lb_qspec *spec, float lambda) {
    g->qcache.src = x->data;
    g->qcache.n = x->n;
    g->qcache.spec = *spec;
    g->qcache.lambda = lambda;
}

/* q_x(x) for an activation in fp32, reused from the previous call when it can be. */
static const float *quantized_input(lb_graph *g, const lb_tensor *x, const lb_qspec *spec, float lambda) {
    if (!spec) return x->data;
    if (cached(g, x, spec, lambda) && g->qcache.q) return g->qcache.q;
    const float *q = quantized(g, x, spec, lambda);
    if (q) {
        remember(g, x, spec, lambda);
        g->qcache.q = q;
        g->qcache.codes = NULL;
        g->qcache.scales = NULL;
    }
    return q;
}

/* The int8 codes [M, K] and row scales [M] of x, reused likewise. */
static lb_status input_codes(lb_graph *g, const lb_tensor *x, const lb_qspec *spec, const int8_t **codes,
                             const float **scales, int *reused) {
    *reused = cached(g, x, spec, 1.0f) && g->qcache.codes;
    if (*reused) {
        *codes = g->qcache.codes;
        *scales = g->qcache.scales;
        return LB_OK;
    }
    const size_t M = lb_tensor_rows(x), K = (size_t)lb_tensor_cols(x);
    if (!check_spec(x, spec)) return lb_errcode();
    int8_t *c = lb_graph_alloc(g, M * K);
    float *s = lb_graph_alloc(g, M * sizeof(float));
    if (!c || !s) return LB_ENOMEM;
    LB_TRY(lb_quantize(spec, x->data, M, K, c, s, NULL));
    remember(g, x, spec, 1.0f);
    g->qcache.q = NULL;
    g->qcache.codes = *codes = c;
    g->qcache.scales = *scales = s;
    return LB_OK;
}

/* y = (a·d_m)(b·d_w)ᵀ in integers (see the top of the file). */
static lb_status integer_forward(lb_graph *g, const lb_tensor *x, const lb_tensor *w, const lb_qspec *xspec,
                                 const lb_qspec *wspec, lb_tensor *y, qmm_saved *s) {
    const int M = (int)lb_tensor_rows(x), K = lb_tensor_cols(x), N = w->shape[0];
    LB_TRY(input_codes(g, x, xspec, &s->xcodes, &s->xscales, &s->xreused));
    if (!check_spec(w, wspec)) return lb_errcode();
    int8_t *wc = lb_graph_alloc(g, (size_t)N * K);
    float *rs = lb_graph_alloc(g, (size_t)M * sizeof(float));
    if (!wc || !rs) return LB_ENOMEM;
    float dw = 0.0f;
    lb_status st = lb_quantize(wspec, w->data, (size_t)N, (size_t)K, wc, &dw, NULL);
    for (int m = 0; m < M; m++) rs[m] = s->xscales[m] * dw;
    if (st == LB_OK) st = lb_gemm(LB_GEMM_S8, 0, 1, M, N, K, 1.0f, s->xcodes, K, wc, K, rs, 0.0f, y->data, N);
    lb_arena_release(&g->arena, rs, (size_t)M * sizeof(float));
    if (lb_qmatmul_keeps_weight_codes((size_t)M, (size_t)N)) {
        s->wcodes = wc; /* for the backward pass; lb_qmatmul releases them when no node is recorded */
        s->wscale = dw;
    } else {
        lb_arena_release(&g->arena, wc, (size_t)N * K);
    }
    return st;
}

lb_tensor *lb_qmatmul(lb_graph *g, lb_tensor *x, lb_tensor *w, const lb_qspec *xspec, const lb_qspec *wspec,
                      float lambda) {
    if (!x || !w) return NULL;
    char xs[64], ws[64];
    if (w->ndim != 2 || lb_tensor_cols(x) != w->shape[1]) {
        lb_error(LB_EINVAL, "qmatmul: x %s and weight %s %s: expected x [..., K] and w [N, K]",
                 lb_shape_str(x, xs, sizeof xs), w->name ? w->name : "", lb_shape_str(w, ws, sizeof ws));
        return NULL;
    }
    if (!(lambda >= 0.0f && lambda <= 1.0f)) {
        lb_error(LB_EINVAL, "qmatmul: lambda %g: expected a value in [0, 1]", (double)lambda);
        return NULL;
    }
    /* λ = 0 or a `none` spec leaves that operand as it is. */
    if (xspec && (lb_qspec_is_none(xspec) || lambda == 0.0f)) xspec = NULL;
    if (wspec && (lb_qspec_is_none(wspec) || lambda == 0.0f)) wspec = NULL;

    const int M = (int)lb_tensor_rows(x), K = lb_tensor_cols(x), N = w->shape[0];
    int shape[LB_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = N;
    lb_tensor *y = lb_graph_tensor(g, x->ndim, shape);
    if (!y) return NULL;
    qmm_saved s = {.w_quantized = wspec != NULL, .lambda = lambda, .p = g->precision};
    if (xspec) s.xspec = *xspec;
    if (wspec) s.wspec = *wspec;

    if (lb_qmatmul_integer(xspec, wspec, lambda)) {
        if (integer_forward(g, x, w, xspec, wspec, y, &s) != LB_OK) {
            lb_error_prefix("qmatmul: x %s, weight %s", lb_shape_str(x, xs, sizeof xs), w->name ? w->name : "");
            return NULL;
        }
    } else {
        const float *xq = quantized_input(g, x, xspec, lambda);
        const float *wq = xq ? quantized(g, w, wspec, lambda) : NULL;
        if (!wq) return NULL;
        lb_status st = lb_gemm_f32(g->precision, 0, 1, M, N, K, 1.0f, xq, K, wq, K, 0.0f, y->data, N);
        if (wspec) lb_arena_release(&g->arena, (float *)wq, w->n * sizeof(float));
        if (st != LB_OK) {
            lb_error_prefix("qmatmul: x %s, weight %s", lb_shape_str(x, xs, sizeof xs), w->name ? w->name : "");
            return NULL;
        }
        s.xq = xq;
    }

    lb_tensor *ins[2] = {x, w};
    if (!lb_graph_needs_grad(g, ins, 2)) {
        if (s.wcodes) lb_arena_release(&g->arena, (void *)s.wcodes, (size_t)N * K);
        return y;
    }
    qmm_saved *saved = lb_graph_alloc(g, sizeof *saved);
    if (!saved) return NULL;
    *saved = s;
    lb_node *node = lb_graph_record(g, "qmatmul", qmatmul_backward, y, x, w, NULL, NULL);
    if (!node) return NULL;
    node->saved = saved;
    node->stores_grad = 1; /* dx */
    return y;
}

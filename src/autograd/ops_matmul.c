/* Matrix products: lb_matmul (activations times a weight) and lb_bmm
 * (batched products). Both are thin over the GEMM engine (autograd/gemm.h)
 * at the graph's precision (fp32, or bf16 operands with fp32 accumulation);
 * the backward passes use beta = 1 so that the gradients ADD into whatever
 * the tape has accumulated already. */
#include "autograd/gemm.h"
#include "autograd/ops.h"

/* --- lb_matmul ---------------------------------------------------------------
 * x is seen as a matrix [M, K] (leading dimensions flattened to rows),
 * w is [N, K] when transpose_w (PyTorch's Linear layout), else [K, N]. */

static void matmul_backward(lb_node *node) {
    lb_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const lb_gemm_precision p = node->graph->precision;
    int transpose_w = node->i[0];
    int M = (int)lb_tensor_rows(x), K = lb_tensor_cols(x), N = lb_tensor_cols(y);
    const float *dy = y->grad;
    lb_status s = LB_OK;

    if (x->requires_grad) /* dx[M,K] += dy[M,N] · op(w)ᵀ; op(w)ᵀ is w itself when w is [N,K]. */
        s = lb_gemm_f32(p, 0, !transpose_w, M, K, N, 1.0f, dy, N, w->data, transpose_w ? K : N, 1.0f, x->grad, K);
    if (s == LB_OK && w->requires_grad) {
        if (transpose_w) /* dw[N,K] += dyᵀ[N,M] · x[M,K] */
            s = lb_gemm_f32(p, 1, 0, N, K, M, 1.0f, dy, N, x->data, K, 1.0f, w->grad, K);
        else /* dw[K,N] += xᵀ[K,M] · dy[M,N] */
            s = lb_gemm_f32(p, 1, 0, K, N, M, 1.0f, x->data, K, dy, N, 1.0f, w->grad, N);
    }
    if (s != LB_OK) lb_node_fail(node, s);
}

lb_tensor *lb_matmul(lb_graph *g, lb_tensor *x, lb_tensor *w, int transpose_w) {
    if (!x || !w) return NULL;
    char xs[64], ws[64];
    if (w->ndim != 2) {
        lb_error(LB_EINVAL, "matmul: weight %s %s must have 2 dimensions", w->name ? w->name : "",
                 lb_shape_str(w, ws, sizeof ws));
        return NULL;
    }
    int K = lb_tensor_cols(x);
    int wK = transpose_w ? w->shape[1] : w->shape[0];
    int N = transpose_w ? w->shape[0] : w->shape[1];
    if (wK != K) {
        lb_error(LB_EINVAL, "matmul: x %s and weight %s %s (%s): inner dimensions differ (%d vs %d)",
                 lb_shape_str(x, xs, sizeof xs), w->name ? w->name : "", lb_shape_str(w, ws, sizeof ws),
                 transpose_w ? "[N,K], transposed" : "[K,N]", K, wK);
        return NULL;
    }
    int shape[LB_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = N;
    lb_tensor *y = lb_graph_tensor(g, x->ndim, shape);
    if (!y) return NULL;

    int M = (int)lb_tensor_rows(x);
    if (lb_gemm_f32(g->precision, 0, transpose_w, M, N, K, 1.0f, x->data, K, w->data, transpose_w ? K : N, 0.0f,
                    y->data, N) != LB_OK) {
        lb_error_prefix("matmul: x %s, weight %s", lb_shape_str(x, xs, sizeof xs), w->name ? w->name : "");
        return NULL;
    }

    lb_tensor *ins[2] = {x, w};
    if (lb_graph_needs_grad(g, ins, 2)) {
        lb_node *node = lb_graph_record(g, "matmul", matmul_backward, y, x, w, NULL, NULL);
        if (!node) return NULL;
        node->i[0] = transpose_w;
    }
    return y;
}

/* --- lb_bmm ------------------------------------------------------------------
 * c[b] = op(a[b]) · op(b[b]) for each batch b. Stored layouts:
 *   a: [B, M, K] (lda = K), or [B, K, M] (lda = M) when transpose_a;
 *   b: [B, K, N] (ldb = N), or [B, N, K] (ldb = K) when transpose_b. */

typedef struct bmm_dims {
    int B, M, K, N, ta, tb;
    lb_gemm_precision p;
} bmm_dims;

/* Small products run one per thread (a product called inside a parallel
 * region runs on its thread alone); large ones, or a single one, run in
 * order and use the threads themselves. The serial path avoids the OpenMP
 * region altogether: entering one costs about half a microsecond even with
 * a false `if` clause. */
static int bmm_parallel_over_batch(const bmm_dims *d) {
    return d->B > 1 && (double)d->M * d->N * d->K < 64.0 * 64.0 * 64.0;
}

/* C = op(A) · op(B) for one batch. */
static lb_status bmm_forward_one(const bmm_dims *d, const float *A, const float *Bm, float *C) {
    const int lda = d->ta ? d->M : d->K, ldb = d->tb ? d->K : d->N;
    return lb_gemm_f32(d->p, d->ta, d->tb, d->M, d->N, d->K, 1.0f, A, lda, Bm, ldb, 0.0f, C, d->N);
}

/* Gradients of one batch: A, B, dC are that batch's matrices; dA/dB NULL when
 * not wanted. */
static lb_status bmm_backward_one(const bmm_dims *d, const float *A, const float *Bm, const float *dC, float *dA,
                                  float *dB) {
    const int M = d->M, K = d->K, N = d->N, ta = d->ta, tb = d->tb;
    const int lda = ta ? M : K, ldb = tb ? K : N;
    lb_status s = LB_OK;
    if (dA) {
        if (!ta) /* dA[M,K] += dC[M,N] · op(B)ᵀ[N,K] */
            s = lb_gemm_f32(d->p, 0, !tb, M, K, N, 1.0f, dC, N, Bm, ldb, 1.0f, dA, K);
        else /* dA[K,M] += op(B)[K,N] · dCᵀ[N,M] */
            s = lb_gemm_f32(d->p, tb, 1, K, M, N, 1.0f, Bm, ldb, dC, N, 1.0f, dA, M);
    }
    if (dB && s == LB_OK) {
        if (!tb) /* dB[K,N] += op(A)ᵀ[K,M] · dC[M,N] */
            s = lb_gemm_f32(d->p, !ta, 0, K, N, M, 1.0f, A, lda, dC, N, 1.0f, dB, N);
        else /* dB[N,K] += dCᵀ[N,M] · op(A)[M,K] */
            s = lb_gemm_f32(d->p, 1, ta, N, K, M, 1.0f, dC, N, A, lda, 1.0f, dB, K);
    }
    return s;
}

static void bmm_backward(lb_node *node) {
    lb_tensor *a = node->in[0], *b = node->in[1], *c = node->out;
    const bmm_dims *d = node->saved;
    const size_t sa = (size_t)d->M * d->K, sb = (size_t)d->K * d->N, sc = (size_t)d->M * d->N;
    float *dA = a->requires_grad ? a->grad : NULL, *dB = b->requires_grad ? b->grad : NULL;
    lb_status s = LB_OK;
    if (bmm_parallel_over_batch(d)) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < d->B; i++) {
            lb_status si = bmm_backward_one(d, a->data + i * sa, b->data + i * sb, c->grad + i * sc,
                                            dA ? dA + i * sa : NULL, dB ? dB + i * sb : NULL);
            if (si != LB_OK) {
#pragma omp critical(lb_bmm_status)
                s = si;
            }
        }
    } else {
        for (int i = 0; i < d->B && s == LB_OK; i++)
            s = bmm_backward_one(d, a->data + i * sa, b->data + i * sb, c->grad + i * sc, dA ? dA + i * sa : NULL,
                                 dB ? dB + i * sb : NULL);
    }
    if (s != LB_OK) lb_node_fail(node, s);
}

lb_tensor *lb_bmm(lb_graph *g, lb_tensor *a, lb_tensor *b, int transpose_a, int transpose_b) {
    if (!a || !b) return NULL;
    char as[64], bs[64];
    if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0]) {
        lb_error(LB_EINVAL, "bmm: a %s and b %s must both be [B, rows, cols] with the same B",
                 lb_shape_str(a, as, sizeof as), lb_shape_str(b, bs, sizeof bs));
        return NULL;
    }
    bmm_dims d = {.B = a->shape[0], .ta = transpose_a != 0, .tb = transpose_b != 0, .p = g->precision};
    d.M = transpose_a ? a->shape[2] : a->shape[1];
    d.K = transpose_a ? a->shape[1] : a->shape[2];
    d.N = transpose_b ? b->shape[1] : b->shape[2];
    int bK = transpose_b ? b->shape[2] : b->shape[1];
    if (bK != d.K) {
        lb_error(LB_EINVAL, "bmm: a %s%s and b %s%s: inner dimensions differ (%d vs %d)",
                 lb_shape_str(a, as, sizeof as), transpose_a ? " (transposed)" : "", lb_shape_str(b, bs, sizeof bs),
                 transpose_b ? " (transposed)" : "", d.K, bK);
        return NULL;
    }
    int shape[3] = {d.B, d.M, d.N};
    lb_tensor *c = lb_graph_tensor(g, 3, shape);
    if (!c) return NULL;

    const size_t sa = (size_t)d.M * d.K, sb = (size_t)d.K * d.N, sc = (size_t)d.M * d.N;
    lb_status s = LB_OK;
    if (bmm_parallel_over_batch(&d)) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < d.B; i++) {
            lb_status si = bmm_forward_one(&d, a->data + i * sa, b->data + i * sb, c->data + i * sc);
            if (si != LB_OK) {
#pragma omp critical(lb_bmm_status)
                s = si;
            }
        }
    } else {
        for (int i = 0; i < d.B && s == LB_OK; i++)
            s = bmm_forward_one(&d, a->data + i * sa, b->data + i * sb, c->data + i * sc);
    }
    if (s != LB_OK) {
        lb_error_prefix("bmm: a %s, b %s", lb_shape_str(a, as, sizeof as), lb_shape_str(b, bs, sizeof bs));
        return NULL;
    }

    lb_tensor *ins[2] = {a, b};
    if (lb_graph_needs_grad(g, ins, 2)) {
        bmm_dims *saved = lb_graph_alloc(g, sizeof *saved);
        if (!saved) return NULL;
        *saved = d;
        lb_node *node = lb_graph_record(g, "bmm", bmm_backward, c, a, b, NULL, NULL);
        if (!node) return NULL;
        node->saved = saved;
    }
    return c;
}

/* lb_qmatmul: the BitLinear product y = q_x(x) · q_w(w)ᵀ as ONE tape node.
 *
 * Written as lb_fake_quant(x), lb_fake_quant(w), lb_matmul the same product
 * costs two more nodes, and their backward passes each allocate a zeroed
 * gradient buffer for the quantized copy (x-sized and w-sized) and then add
 * it into the input's gradient: two extra sweeps over memory and two extra
 * OpenMP regions per layer and step. With the identity STE the gradient of
 * the quantized copy IS the gradient of the input, so the backward sgemms
 * here write straight into x->grad and w->grad:
 *
 *   dx += dy · q_w(w),   dw += dyᵀ · q_x(x)
 *
 * q(v) = v + λ·(Q(v) − v) as in lb_fake_quant. The quantized input is kept
 * for the backward pass (dw needs it); the quantized weight is handed back
 * to the arena right after the forward product and quantized again in the
 * backward pass (deterministic, so the same values): a pass over the weight
 * costs far less than the sgemms, and the step no longer holds a copy of
 * every weight matrix at its peak. */
#include <cblas.h>
#include <string.h>

#include "autograd/ops.h"
#include "quant/quantize.h"

typedef struct qmm_saved {
    const float *xq;        /* the input the forward sgemm used */
    lb_qspec wspec;         /* how the weight was quantized, to do it again */
    int w_quantized;        /* 0: the weight went in as it is */
    float lambda;
} qmm_saved;

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

static void qmatmul_backward(lb_node *node) {
    lb_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const qmm_saved *s = node->saved;
    const int M = (int)lb_tensor_rows(x), K = lb_tensor_cols(x), N = lb_tensor_cols(y);
    if (x->requires_grad) { /* dx[M,K] += dy[M,N] · wq[N,K] */
        float *wq = s->w_quantized ? lb_node_scratch(node, w->n * sizeof(float)) : w->data;
        if (!wq) return;
        /* The forward pass quantized this weight with this spec: cannot fail. */
        if (s->w_quantized) (void)quantize_into(wq, w, &s->wspec, s->lambda);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, y->grad, N, wq, K, 1.0f, x->grad, K);
        if (s->w_quantized) lb_node_release(node, wq, w->n * sizeof(float));
    }
    if (w->requires_grad) /* dw[N,K] += dyᵀ[N,M] · xq[M,K] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, y->grad, N, s->xq, K, 1.0f, w->grad,
                    K);
}

/* q(v) of a [rows, cols] array into the arena; v itself when spec is NULL. */
static const float *quantized(lb_graph *g, const lb_tensor *v, const lb_qspec *spec, float lambda) {
    if (!spec) return v->data;
    const size_t rows = lb_tensor_rows(v), cols = (size_t)lb_tensor_cols(v);
    if (lb_quant_check(spec, rows, cols) != LB_OK) {
        char buf[64];
        lb_error_prefix("qmatmul: quantizing %s %s", v->name ? v->name : "tensor", lb_shape_str(v, buf, sizeof buf));
        return NULL;
    }
    float *q = lb_graph_alloc(g, v->n * sizeof(float));
    if (!q) return NULL;
    return quantize_into(q, v, spec, lambda) == LB_OK ? q : NULL;
}

/* q_x(x) for an activation: reused when the previous call quantized the same
 * data the same way (q, k and v read one normed input; so do gate and up).
 * Activations are never written after their op returns, so equal pointers
 * within one step mean equal contents. */
static const float *quantized_input(lb_graph *g, const lb_tensor *x, const lb_qspec *spec, float lambda) {
    if (!spec) return x->data;
    if (g->qcache.src == x->data && g->qcache.n == x->n && g->qcache.lambda == lambda &&
        memcmp(&g->qcache.spec, spec, sizeof *spec) == 0)
        return g->qcache.q;
    const float *q = quantized(g, x, spec, lambda);
    if (q) {
        g->qcache.src = x->data;
        g->qcache.q = q;
        g->qcache.n = x->n;
        g->qcache.spec = *spec;
        g->qcache.lambda = lambda;
    }
    return q;
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
    const float *xq = y ? quantized_input(g, x, xspec, lambda) : NULL;
    const float *wq = xq ? quantized(g, w, wspec, lambda) : NULL;
    if (!wq) return NULL;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, xq, K, wq, K, 0.0f, y->data, N);
    if (wspec) lb_arena_release(&g->arena, (float *)wq, w->n * sizeof(float));

    lb_tensor *ins[2] = {x, w};
    if (lb_graph_needs_grad(g, ins, 2)) {
        qmm_saved *s = lb_graph_alloc(g, sizeof *s);
        if (!s) return NULL;
        *s = (qmm_saved){.xq = xq, .w_quantized = wspec != NULL, .lambda = lambda};
        if (wspec) s->wspec = *wspec;
        lb_node *node = lb_graph_record(g, "qmatmul", qmatmul_backward, y, x, w, NULL, NULL);
        if (!node) return NULL;
        node->saved = s;
    }
    return y;
}

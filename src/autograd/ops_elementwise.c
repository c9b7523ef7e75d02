/* Element-wise ops, reductions to a scalar, and reshape.
 *
 * Every op follows the same outline:
 *   1. return NULL if an input is NULL (the first error message stays);
 *   2. check shapes, naming the op and both shapes on a mismatch;
 *   3. allocate the output in the graph's arena and compute it;
 *   4. record a node only when some input needs a gradient.
 * Backward functions ADD into the .grad of each input that requires one, so
 * an input used twice (lb_mul(g, x, x)) receives both contributions.
 *
 * Element-wise loops are split across OpenMP threads when the tensor is large
 * enough to pay for waking them. Reductions sum fixed chunks (independent of
 * the thread count) and then add the chunk sums in order, so results are the
 * same with any number of threads. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/exp_vec.h"
#include "autograd/ops.h"

/* Below this many elements a loop runs on one thread: waking the team costs
 * more than the work. */
#define PAR_MIN 32768

/* Reductions add SUM_CHUNKS partial sums in a fixed order. */
#define SUM_CHUNKS 64

/* --- helpers ------------------------------------------------------------------ */

/* 1 when a and b have the same shape; else records "<op>: shapes differ ..." */
static int check_same_shape(const char *op, const lb_tensor *a, const lb_tensor *b) {
    if (lb_tensor_same_shape(a, b)) return 1;
    char sa[64], sb[64];
    lb_error(LB_EINVAL, "%s: shapes differ: %s vs %s", op, lb_shape_str(a, sa, sizeof sa),
             lb_shape_str(b, sb, sizeof sb));
    return 0;
}

/* A new output with the shape of `like`. */
static lb_tensor *new_like(lb_graph *g, const lb_tensor *like) {
    return lb_graph_tensor(g, like->ndim, like->shape);
}

/* Sum of v[0..n) in double: SUM_CHUNKS fixed chunks, added in order. */
static double sum_chunked(const float *v, size_t n) {
    double part[SUM_CHUNKS];
    size_t chunk = (n + SUM_CHUNKS - 1) / SUM_CHUNKS;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int c = 0; c < SUM_CHUNKS; c++) {
        size_t lo = (size_t)c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += v[i];
        part[c] = s;
    }
    double total = 0.0;
    for (int c = 0; c < SUM_CHUNKS; c++) total += part[c];
    return total;
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + lb_exp_vec(-x)); }

/* --- add ------------------------------------------------------------------------ */

static void add_backward(lb_node *node) {
    const float *dy = node->out->grad;
    size_t n = node->out->n;
    for (int k = 0; k < 2; k++) {
        lb_tensor *in = node->in[k];
        if (!in->requires_grad) continue;
        float *dx = in->grad;
        if (lb_grad_unwritten(in)) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
            for (size_t i = 0; i < n; i++) dx[i] = dy[i];
            continue;
        }
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i];
    }
}

lb_tensor *lb_add(lb_graph *g, lb_tensor *a, lb_tensor *b) {
    if (!a || !b) return NULL;
    if (!check_same_shape("add", a, b)) return NULL;
    lb_tensor *y = new_like(g, a);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = a->data[i] + b->data[i];
    lb_tensor *ins[2] = {a, b};
    if (lb_graph_needs_grad(g, ins, 2)) {
        lb_node *node = lb_graph_record(g, "add", add_backward, y, a, b, NULL, NULL);
        if (!node) return NULL;
        node->stores_grad = 3;
    }
    return y;
}

/* --- mul ------------------------------------------------------------------------ */

static void mul_backward(lb_node *node) {
    lb_tensor *a = node->in[0], *b = node->in[1];
    const float *dy = node->out->grad;
    size_t n = node->out->n;
    /* Two separate loops: when a and b are the same tensor both terms land
     * in the same buffer, one after the other. */
    if (a->requires_grad) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) a->grad[i] += dy[i] * b->data[i];
    }
    if (b->requires_grad) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) b->grad[i] += dy[i] * a->data[i];
    }
}

lb_tensor *lb_mul(lb_graph *g, lb_tensor *a, lb_tensor *b) {
    if (!a || !b) return NULL;
    if (!check_same_shape("mul", a, b)) return NULL;
    lb_tensor *y = new_like(g, a);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = a->data[i] * b->data[i];
    lb_tensor *ins[2] = {a, b};
    if (lb_graph_needs_grad(g, ins, 2) && !lb_graph_record(g, "mul", mul_backward, y, a, b, NULL, NULL))
        return NULL;
    return y;
}

/* --- scale ---------------------------------------------------------------------- */

static void scale_backward(lb_node *node) {
    lb_tensor *a = node->in[0];
    const float *dy = node->out->grad;
    float s = node->f[0];
    size_t n = a->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) a->grad[i] += s * dy[i];
}

lb_tensor *lb_scale(lb_graph *g, lb_tensor *a, float s) {
    if (!a) return NULL;
    lb_tensor *y = new_like(g, a);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = s * a->data[i];
    if (lb_graph_needs_grad(g, &a, 1)) {
        lb_node *node = lb_graph_record(g, "scale", scale_backward, y, a, NULL, NULL, NULL);
        if (!node) return NULL;
        node->f[0] = s;
    }
    return y;
}

/* --- activations -----------------------------------------------------------------
 * Each backward recomputes the derivative from the saved input x, which costs
 * an exp or tanh per element but no extra memory. */

/* silu(x) = x·σ(x);  silu'(x) = σ(x)·(1 + x·(1 − σ(x))) */
static inline float silu_grad(float x) {
    float s = sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

static void silu_backward(lb_node *node) {
    lb_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    size_t n = x->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x->grad[i] += dy[i] * silu_grad(x->data[i]);
}

lb_tensor *lb_silu(lb_graph *g, lb_tensor *x) {
    if (!x) return NULL;
    lb_tensor *y = new_like(g, x);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = x->data[i] * sigmoidf(x->data[i]);
    if (lb_graph_needs_grad(g, &x, 1) && !lb_graph_record(g, "silu", silu_backward, y, x, NULL, NULL, NULL))
        return NULL;
    return y;
}

/* gelu(x) = ½·x·(1 + tanh(u)),  u = √(2/π)·(x + 0.044715·x³)  (tanh approximation)
 * gelu'(x) = ½·(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²),  t = tanh(u) */
#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

static void gelu_backward(lb_node *node) {
    lb_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    size_t n = x->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x->data[i];
        float t = tanhf(GELU_C * (v + GELU_A * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * v * v);
        x->grad[i] += dy[i] * d;
    }
}

lb_tensor *lb_gelu(lb_graph *g, lb_tensor *x) {
    if (!x) return NULL;
    lb_tensor *y = new_like(g, x);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x->data[i];
        y->data[i] = 0.5f * v * (1.0f + tanhf(GELU_C * (v + GELU_A * v * v * v)));
    }
    if (lb_graph_needs_grad(g, &x, 1) && !lb_graph_record(g, "gelu", gelu_backward, y, x, NULL, NULL, NULL))
        return NULL;
    return y;
}

/* relu2(x) = max(x, 0)²;  relu2'(x) = 2·max(x, 0) */
static void relu2_backward(lb_node *node) {
    lb_tensor *x = node->in[0];
    const float *dy = node->out->grad;
    size_t n = x->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float r = x->data[i] > 0.0f ? x->data[i] : 0.0f;
        x->grad[i] += dy[i] * 2.0f * r;
    }
}

lb_tensor *lb_relu2(lb_graph *g, lb_tensor *x) {
    if (!x) return NULL;
    lb_tensor *y = new_like(g, x);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float r = x->data[i] > 0.0f ? x->data[i] : 0.0f;
        y->data[i] = r * r;
    }
    if (lb_graph_needs_grad(g, &x, 1) && !lb_graph_record(g, "relu2", relu2_backward, y, x, NULL, NULL, NULL))
        return NULL;
    return y;
}

/* swiglu(gate, up) = silu(gate)·up
 * d gate = dy·up·silu'(gate),  d up = dy·silu(gate) */
static void swiglu_backward(lb_node *node) {
    lb_tensor *gate = node->in[0], *up = node->in[1];
    const float *dy = node->out->grad;
    size_t n = gate->n;
    if (gate->requires_grad && up->requires_grad) {
        /* Both at once: one sigmoid (one expf) per element instead of two. */
        float *dg = gate->grad, *du = up->grad;
        const float *gd = gate->data, *ud = up->data;
        const int store_g = lb_grad_unwritten(gate), store_u = lb_grad_unwritten(up);
        if (store_g && store_u) { /* the usual case: this node is their only reader */
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
            for (size_t i = 0; i < n; i++) {
                float v = gd[i], sg = sigmoidf(v);
                dg[i] = dy[i] * ud[i] * (sg * (1.0f + v * (1.0f - sg)));
                du[i] = dy[i] * v * sg;
            }
            return;
        }
        if (store_g) memset(dg, 0, n * sizeof(float));
        if (store_u) memset(du, 0, n * sizeof(float));
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float v = gd[i], sg = sigmoidf(v);
            dg[i] += dy[i] * ud[i] * (sg * (1.0f + v * (1.0f - sg)));
            du[i] += dy[i] * v * sg;
        }
        return;
    }
    lb_grad_settle(gate);
    lb_grad_settle(up);
    if (gate->requires_grad) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) gate->grad[i] += dy[i] * up->data[i] * silu_grad(gate->data[i]);
    }
    if (up->requires_grad) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float v = gate->data[i];
            up->grad[i] += dy[i] * v * sigmoidf(v);
        }
    }
}

lb_tensor *lb_swiglu(lb_graph *g, lb_tensor *gate, lb_tensor *up) {
    if (!gate || !up) return NULL;
    if (!check_same_shape("swiglu", gate, up)) return NULL;
    lb_tensor *y = new_like(g, gate);
    if (!y) return NULL;
    size_t n = y->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = gate->data[i];
        y->data[i] = v * sigmoidf(v) * up->data[i];
    }
    lb_tensor *ins[2] = {gate, up};
    if (lb_graph_needs_grad(g, ins, 2)) {
        lb_node *node = lb_graph_record(g, "swiglu", swiglu_backward, y, gate, up, NULL, NULL);
        if (!node) return NULL;
        node->stores_grad = 3;
    }
    return y;
}

/* --- reductions ------------------------------------------------------------------ */

/* sum and mean share a backward: dx += dy · f[0] (1 for sum, 1/n for mean). */
static void reduce_backward(lb_node *node) {
    lb_tensor *x = node->in[0];
    float d = node->out->grad[0] * node->f[0];
    size_t n = x->n;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x->grad[i] += d;
}

static lb_tensor *reduce(lb_graph *g, lb_tensor *x, const char *op, int mean) {
    if (!x) return NULL;
    int one = 1;
    lb_tensor *y = lb_graph_tensor(g, 1, &one);
    if (!y) return NULL;
    double s = sum_chunked(x->data, x->n);
    float factor = mean ? (float)(1.0 / (double)x->n) : 1.0f;
    y->data[0] = (float)(mean ? s / (double)x->n : s);
    if (lb_graph_needs_grad(g, &x, 1)) {
        lb_node *node = lb_graph_record(g, op, reduce_backward, y, x, NULL, NULL, NULL);
        if (!node) return NULL;
        node->f[0] = factor;
    }
    return y;
}

lb_tensor *lb_sum(lb_graph *g, lb_tensor *x) { return reduce(g, x, "sum", 0); }
lb_tensor *lb_mean(lb_graph *g, lb_tensor *x) { return reduce(g, x, "mean", 1); }

/* --- reshape --------------------------------------------------------------------- */

/* Nothing to do: a reshape's output shares its input's gradient buffer (see
 * lb_reshape), so its consumers have added into x->grad already. */
static void reshape_backward(lb_node *node) { (void)node; }

lb_tensor *lb_reshape(lb_graph *g, lb_tensor *x, int ndim, const int *shape) {
    if (!x) return NULL;
    if (!shape || ndim < 1 || ndim > LB_MAX_DIMS) {
        lb_error(LB_EINVAL, "reshape: ndim %d is outside 1..%d", ndim, LB_MAX_DIMS);
        return NULL;
    }
    lb_tensor want = {0};
    want.ndim = ndim;
    for (int i = 0; i < ndim; i++) want.shape[i] = shape[i];
    if (lb_shape_numel(ndim, shape) != x->n) {
        char sx[64], sw[64];
        lb_error(LB_EINVAL, "reshape: cannot view %s (%zu elements) as %s", lb_shape_str(x, sx, sizeof sx),
                 x->n, lb_shape_str(&want, sw, sizeof sw));
        return NULL;
    }
    lb_tensor *y = lb_graph_alloc(g, sizeof *y);
    if (!y) return NULL;
    *y = (lb_tensor){0};
    lb_tensor_set_shape(y, ndim, shape);
    y->data = x->data;
    if (lb_graph_needs_grad(g, &x, 1)) {
        /* A view shares the gradient too (lb_grad gives y x's buffer): y's
         * consumers add straight into x->grad, which saves a buffer and a
         * copy per reshape. */
        y->view_of = x;
        if (!lb_graph_record(g, "reshape", reshape_backward, y, x, NULL, NULL, NULL)) return NULL;
    }
    return y;
}

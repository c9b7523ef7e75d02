#include "autograd/graph.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

lb_status lb_graph_init(lb_graph *g, size_t arena_bytes) {
    memset(g, 0, sizeof *g);
    g->grad_enabled = 1;
    return lb_arena_init(&g->arena, arena_bytes);
}

void lb_graph_free(lb_graph *g) {
    lb_arena_free(&g->arena);
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

void lb_graph_reset(lb_graph *g) {
    g->n_nodes = 0;
    g->tape_spent = 0;
    g->backward_status = LB_OK;
    memset(&g->qcache, 0, sizeof g->qcache);
    memset(&g->dqcache, 0, sizeof g->dqcache);
    lb_arena_reset(&g->arena);
}

int lb_graph_set_grad(lb_graph *g, int enabled) {
    int old = g->grad_enabled;
    g->grad_enabled = enabled;
    return old;
}

lb_tensor *lb_graph_tensor(lb_graph *g, int ndim, const int *shape) {
    size_t n = lb_shape_numel(ndim, shape);
    if (n == 0) {
        lb_error(LB_EINVAL, "bad activation shape (ndim %d)", ndim);
        return NULL;
    }
    lb_tensor *t = lb_arena_alloc(&g->arena, sizeof *t);
    float *data = t ? lb_arena_alloc(&g->arena, n * sizeof(float)) : NULL;
    if (!data) return NULL;
    memset(t, 0, sizeof *t);
    lb_tensor_set_shape(t, ndim, shape);
    t->data = data;
    t->arena_owned = LB_OWNS_DATA;
    return t;
}

void *lb_graph_alloc(lb_graph *g, size_t bytes) { return lb_arena_alloc(&g->arena, bytes); }

int lb_graph_needs_grad(const lb_graph *g, lb_tensor *const *ins, int n_ins) {
    if (!g->grad_enabled) return 0;
    for (int i = 0; i < n_ins; i++)
        if (ins[i] && ins[i]->requires_grad) return 1;
    return 0;
}

lb_node *lb_graph_record(lb_graph *g, const char *op, lb_backward_fn backward, lb_tensor *out,
                         lb_tensor *in0, lb_tensor *in1, lb_tensor *in2, lb_tensor *in3) {
    if (g->n_nodes == g->cap_nodes) {
        /* Grows during the first step only; later steps reuse the array. */
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        lb_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            lb_error(LB_ENOMEM, "cannot grow the tape to %d nodes", cap);
            return NULL;
        }
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    lb_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->graph = g;
    n->backward = backward;
    n->out = out;
    n->in[0] = in0;
    n->in[1] = in1;
    n->in[2] = in2;
    n->in[3] = in3;
    out->requires_grad = 1;
    return n;
}

/* Gradients at least this large are zeroed by the threads together: one
 * core's memset does not reach the memory bandwidth two have (model (b) of
 * docs/performance.md zeroes activation gradients of 2–6 MB each). */
#define ZERO_PAR_MIN ((size_t)1 << 17)
#define ZERO_CHUNK ((size_t)1 << 16)

static void zero_bytes(void *p, size_t bytes) {
    if (bytes < ZERO_PAR_MIN || omp_in_parallel()) {
        memset(p, 0, bytes);
        return;
    }
    const long nc = (long)((bytes + ZERO_CHUNK - 1) / ZERO_CHUNK);
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nc; c++) {
        const size_t lo = (size_t)c * ZERO_CHUNK;
        memset((char *)p + lo, 0, bytes - lo < ZERO_CHUNK ? bytes - lo : ZERO_CHUNK);
    }
}

float *lb_grad(lb_graph *g, lb_tensor *t) {
    if (t->grad) return t->grad;
    if (t->view_of) return t->grad = lb_grad(g, t->view_of);
    const size_t bytes = t->n * sizeof(float);
    if (!(t->grad = lb_arena_alloc(&g->arena, bytes))) return NULL;
    zero_bytes(t->grad, bytes);
    t->arena_owned |= LB_OWNS_GRAD;
    return t->grad;
}

int lb_grad_unwritten(lb_tensor *t) {
    const int unwritten = (t->arena_owned & LB_GRAD_UNWRITTEN) != 0;
    t->arena_owned &= ~LB_GRAD_UNWRITTEN;
    return unwritten;
}

void lb_grad_settle(lb_tensor *t) {
    if (lb_grad_unwritten(t)) zero_bytes(t->grad, t->n * sizeof(float));
}

void *lb_node_scratch(lb_node *node, size_t bytes) {
    void *p = lb_arena_alloc(&node->graph->arena, bytes);
    if (!p) node->graph->backward_status = LB_ENOMEM;
    return p;
}

void lb_node_release(lb_node *node, void *p, size_t bytes) { lb_arena_release(&node->graph->arena, p, bytes); }

void lb_node_fail(lb_node *node, lb_status s) {
    if (node->graph->backward_status == LB_OK) node->graph->backward_status = s != LB_OK ? s : LB_EINVAL;
}

/* Hands an activation's own buffers back to the arena (a view's belong to
 * the tensor viewed, whose producer runs later) and forgets the pointers, so
 * a stray read after backward fails loudly instead of seeing reused memory. */
static void release_activation(lb_graph *g, lb_tensor *t) {
    if (t->arena_owned & LB_OWNS_DATA) lb_arena_release(&g->arena, t->data, t->n * sizeof(float));
    if (t->arena_owned & LB_OWNS_GRAD) lb_arena_release(&g->arena, t->grad, t->n * sizeof(float));
    t->data = t->grad = NULL;
    t->arena_owned = 0;
}

lb_status lb_backward(lb_graph *g, lb_tensor *loss) {
    if (!loss) return lb_errcode() != LB_OK ? lb_errcode() : lb_error(LB_EINVAL, "backward: no loss tensor");
    if (loss->n != 1) return lb_error(LB_EINVAL, "backward: loss must be a scalar, has %zu elements", loss->n);
    if (!loss->requires_grad) return lb_error(LB_EINVAL, "backward: the loss does not depend on any parameter");
    if (g->tape_spent)
        return lb_error(LB_EINVAL, "backward: this tape was already run and its activations freed; "
                                   "reset the graph and run the forward pass again");
    g->tape_spent = 1;
    /* Freed blocks will be reused: a cached quantized input must not match a
     * new tensor that happens to land at a freed tensor's address. */
    memset(&g->qcache, 0, sizeof g->qcache);
    memset(&g->dqcache, 0, sizeof g->dqcache);
    float *seed = lb_grad(g, loss);
    if (!seed) return LB_ENOMEM;
    seed[0] += 1.0f;
    /* The loss keeps its value, also when it is a view of another tensor. */
    const lb_tensor *keep = loss;
    while (keep->view_of) keep = keep->view_of;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        lb_node *n = &g->nodes[i];
        if (!n->out->grad) continue; /* nothing downstream used this output */
        for (int k = 0; k < LB_NODE_MAX_IN; k++) {
            lb_tensor *in = n->in[k];
            if (!in || !in->requires_grad) continue;
            if ((n->stores_grad >> k & 1) && !in->grad && !in->view_of) { /* the first write stores: no zeros */
                if (!(in->grad = lb_arena_alloc(&g->arena, in->n * sizeof(float)))) return LB_ENOMEM;
                in->arena_owned |= LB_OWNS_GRAD | LB_GRAD_UNWRITTEN;
            } else if (!lb_grad(g, in)) {
                return LB_ENOMEM;
            }
        }
        n->backward(n);
        if (g->backward_status != LB_OK) {
            lb_error_prefix("backward of %s", n->op);
            return g->backward_status;
        }
        if (n->out != loss && n->out != keep) release_activation(g, n->out);
        if (g->after_node) g->after_node(g->after_node_ctx, i);
    }
    lb_arena_release(&g->arena, g->dqcache.x, g->dqcache.bytes);
    memset(&g->dqcache, 0, sizeof g->dqcache);
    return LB_OK;
}

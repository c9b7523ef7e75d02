/* The tape: reverse-mode automatic differentiation over coarse, fused ops.
 *
 * Each op (autograd/ops.h) computes its forward result into the graph's arena
 * and, when gradients are enabled and an input requires one, appends a node
 * holding its backward function. lb_backward() walks the nodes in reverse;
 * each backward function ADDS into the .grad of its inputs, so a tensor used
 * twice receives both contributions.
 *
 * Gradient buffers of activations are allocated (zeroed) lazily during the
 * backward pass. Parameters own persistent .grad buffers that the optimizer
 * zeroes. Once a node's backward has run, nothing needs its output any more
 * (every consumer came later on the tape and ran before it), so lb_backward
 * hands the output's data and gradient back to the arena, and the gradients
 * still to come reuse that memory: a step's peak is about its forward
 * activations, not twice that. Read any activation you want (logits) before
 * lb_backward; only the loss survives it.
 *
 * Ops return NULL on error (with the message recorded, see core/error.h) and
 * return NULL at once when an input is NULL, so a forward pass can be
 * written straight through and checked once at the end. */
#ifndef LOWBIT_AUTOGRAD_GRAPH_H
#define LOWBIT_AUTOGRAD_GRAPH_H

#include "autograd/gemm.h"
#include "core/arena.h"
#include "core/tensor.h"
#include "quant/qspec.h"

#define LB_NODE_MAX_IN 4

typedef struct lb_node lb_node;
typedef struct lb_graph lb_graph;
typedef void (*lb_backward_fn)(lb_node *node);

struct lb_node {
    const char *op;                 /* op name, for debugging and profiles */
    lb_graph *graph;                /* the tape it is on (for lb_node_scratch) */
    lb_backward_fn backward;
    lb_tensor *out;
    lb_tensor *in[LB_NODE_MAX_IN];  /* unused slots NULL */
    void *saved;                    /* op-specific data saved in the arena */
    float f[4];                     /* small float attributes (eps, scale, ...) */
    int i[4];                       /* small int attributes (flags, sizes) */
    const void *p;                  /* a borrowed pointer (token ids, quant spec) */
    /* Bit k set: when in[k]'s gradient does not exist yet, the backward
     * function stores into every element instead of adding: lb_backward
     * then skips zeroing it and marks it LB_GRAD_UNWRITTEN (a gradient is
     * made by the first node to run that reads the tensor, and the last
     * node of the forward pass to read it runs first). The function asks
     * lb_grad_unwritten, or lb_grad_settle to have zeros after all. */
    int stores_grad;
};

struct lb_graph {
    lb_arena arena;       /* activations, gradients and saved data of one step */
    lb_node *nodes;
    int n_nodes, cap_nodes;
    int grad_enabled;     /* 0: no nodes are recorded (evaluation, sampling) */
    int tape_spent;       /* lb_backward ran: the activations are gone until the reset */
    /* The precision of products of fp32 operands (autograd/gemm.h): the
     * backward products, fp32 layers. LB_PRECISION_FP32 after
     * lb_graph_init; the trainer sets train.gemm_precision. */
    lb_gemm_precision precision;
    /* The same for attention's products (lb_attention: Q·Kᵀ, P·V and their
     * gradients), which read this field, not `precision`. LB_PRECISION_FP32
     * after lb_graph_init; the trainer sets train.attention_precision. */
    lb_gemm_precision attn_precision;
    /* The last input lb_qmatmul quantized (source data, spec, λ, result: fp32
     * values q, or int8 codes with one scale per row), so projections that
     * share an input (q/k/v, gate/up) quantize it once. Cleared by
     * lb_graph_reset. */
    struct {
        const float *src, *q;
        const int8_t *codes;
        const float *scales;
        size_t n;
        lb_qspec spec;
        float lambda;
    } qcache;
    /* In the backward pass, the fp32 operand lb_qmatmul last made from saved
     * int8 codes (their dequantized values, `bytes` long in the arena), so
     * the weight gradients of projections that share an input (q/k/v,
     * gate/up; their nodes run one after the other) dequantize it once.
     * Handed back when other codes come, and by lb_backward at its end. */
    struct {
        const int8_t *codes;
        float *x;
        size_t bytes;
    } dqcache;
    lb_status backward_status; /* set by lb_node_scratch (or a failing product) in the backward pass */
    /* Called by lb_backward after node `i` ran (nodes run from the last to
     * the first), when set: a parameter's gradient is final once the first
     * node that uses it has run, so data parallelism (src/dist) starts its
     * reduction there while the rest of the backward pass goes on. */
    void (*after_node)(void *ctx, int i);
    void *after_node_ctx;
};

lb_status lb_graph_init(lb_graph *g, size_t arena_bytes);
void lb_graph_free(lb_graph *g);
/* Drops the tape and every activation; parameters are untouched. */
void lb_graph_reset(lb_graph *g);
/* Returns the previous value, so callers can restore it. */
int lb_graph_set_grad(lb_graph *g, int enabled);

/* A new activation tensor [shape] in the arena (data uninitialised). */
lb_tensor *lb_graph_tensor(lb_graph *g, int ndim, const int *shape);
/* Arena memory for op-saved data; NULL on failure. */
void *lb_graph_alloc(lb_graph *g, size_t bytes);

/* True when an op with these inputs must record a node. */
int lb_graph_needs_grad(const lb_graph *g, lb_tensor *const *ins, int n_ins);

/* Appends a node for `out` (and marks out->requires_grad). Returns NULL (with
 * an error recorded) only when memory runs out. Ops call this only when
 * lb_graph_needs_grad() is true. */
lb_node *lb_graph_record(lb_graph *g, const char *op, lb_backward_fn backward, lb_tensor *out,
                         lb_tensor *in0, lb_tensor *in1, lb_tensor *in2, lb_tensor *in3);

/* Gradient buffer of `t`, allocated zeroed in the arena on first use (a
 * view's is the viewed tensor's); NULL when memory runs out. lb_backward()
 * calls it for every input that requires a gradient before running a node,
 * so a backward function simply adds into in[k]->grad for each input with
 * requires_grad set. */
float *lb_grad(lb_graph *g, lb_tensor *t);

/* Memory a backward function needs for a while (recomputed operands,
 * scratch), from the arena and usually from what the backward pass freed;
 * hand it back with lb_node_release. On NULL the backward function returns
 * at once: lb_backward then stops with LB_ENOMEM. */
void *lb_node_scratch(lb_node *node, size_t bytes);
/* For backward functions of nodes with stores_grad: 1 when t's gradient is
 * LB_GRAD_UNWRITTEN (the caller then stores every element), clearing the mark;
 * 0 when the caller adds into it as usual. */
int lb_grad_unwritten(lb_tensor *t);
/* Zeroes t's gradient if it is LB_GRAD_UNWRITTEN (and clears the mark). */
void lb_grad_settle(lb_tensor *t);
void lb_node_release(lb_node *node, void *p, size_t bytes);
/* Records the failure `s` of a backward function (the first one counts;
 * the message is the thread's lb_errmsg): lb_backward then stops with it. */
void lb_node_fail(lb_node *node, lb_status s);

/* Backpropagates from a scalar `loss` (n == 1), seeding d loss = 1, freeing
 * activations as it goes (see the top of this file). Once per tape: a second
 * call before lb_graph_reset is an error. */
lb_status lb_backward(lb_graph *g, lb_tensor *loss);

#endif

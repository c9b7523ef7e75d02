/* fp32 tensors: contiguous, row-major, up to 4 dimensions.
 *
 * A tensor does not own its memory. Parameters point into one allocation made
 * by the model (see layers/model.c); activations point into the per-step arena
 * (see core/arena.h). `grad` has the same shape as `data` and is NULL while no
 * gradient is tracked for the tensor. */
#ifndef LOWBIT_CORE_TENSOR_H
#define LOWBIT_CORE_TENSOR_H

#include <stddef.h>

#include "core/error.h"

#define LB_MAX_DIMS 4
#define LB_OWNS_DATA 1
#define LB_OWNS_GRAD 2
/* With LB_OWNS_GRAD: the gradient was handed to a backward function that
 * stores into it (lb_node.stores_grad) without being zeroed first. */
#define LB_GRAD_UNWRITTEN 4

typedef struct lb_tensor {
    float *data;
    float *grad;            /* NULL until a backward pass needs it */
    size_t n;               /* number of elements: product of shape */
    int ndim;
    int shape[LB_MAX_DIMS];
    int requires_grad;      /* parameters: set by the model; activations: set by ops */
    int arena_owned;        /* LB_OWNS_DATA | LB_OWNS_GRAD: buffers the graph's arena made for
                             * this tensor (not views of another's), which lb_backward hands
                             * back once no node needs them */
    struct lb_tensor *view_of; /* a reshape's output: data and gradient are this tensor's */
    const char *name;       /* parameters: checkpoint/GGUF-independent name; activations: NULL */
} lb_tensor;

/* Product of a shape; 0 for a bad shape (ndim out of 1..4 or a dimension < 1). */
size_t lb_shape_numel(int ndim, const int *shape);

/* Fills in shape and n for `t` (data/grad untouched). LB_EINVAL on a bad shape. */
lb_status lb_tensor_set_shape(lb_tensor *t, int ndim, const int *shape);

/* Number of rows when the tensor is seen as a matrix [rows, last dim]. */
static inline size_t lb_tensor_rows(const lb_tensor *t) { return t->n / (size_t)t->shape[t->ndim - 1]; }
static inline int lb_tensor_cols(const lb_tensor *t) { return t->shape[t->ndim - 1]; }

/* 1 if both tensors have identical shapes. */
int lb_tensor_same_shape(const lb_tensor *a, const lb_tensor *b);

/* Writes "[2,3,4]" into buf (for error messages); returns buf. */
char *lb_shape_str(const lb_tensor *t, char *buf, size_t size);

/* Heap tensors, for tests, tools and buffers outside the training loop.
 * `with_grad` allocates a zeroed gradient too. Free with lb_tensor_free. */
lb_tensor *lb_tensor_alloc(int ndim, const int *shape, int with_grad);
void lb_tensor_free(lb_tensor *t);

/* 0 when every element of data[0..n) is finite, else the index of the first
 * offending element plus 1. */
size_t lb_find_nonfinite(const float *data, size_t n);

#endif

#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t lb_shape_numel(int ndim, const int *shape) {
    if (ndim < 1 || ndim > LB_MAX_DIMS) return 0;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) return 0;
        n *= (size_t)shape[i];
    }
    return n;
}

lb_status lb_tensor_set_shape(lb_tensor *t, int ndim, const int *shape) {
    size_t n = lb_shape_numel(ndim, shape);
    if (n == 0) return lb_error(LB_EINVAL, "bad tensor shape (ndim %d)", ndim);
    t->ndim = ndim;
    for (int i = 0; i < LB_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->n = n;
    return LB_OK;
}

int lb_tensor_same_shape(const lb_tensor *a, const lb_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *lb_shape_str(const lb_tensor *t, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && used < size; i++) {
        int k = snprintf(buf + used, size - used, "%s%d", i ? "," : "[", t->shape[i]);
        if (k < 0) break;
        used += (size_t)k;
    }
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

lb_tensor *lb_tensor_alloc(int ndim, const int *shape, int with_grad) {
    size_t n = lb_shape_numel(ndim, shape);
    if (n == 0) {
        lb_error(LB_EINVAL, "bad tensor shape (ndim %d)", ndim);
        return NULL;
    }
    lb_tensor *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    lb_tensor_set_shape(t, ndim, shape);
    t->data = calloc(n, sizeof(float));
    if (!t->data) goto oom;
    if (with_grad) {
        t->grad = calloc(n, sizeof(float));
        if (!t->grad) goto oom;
        t->requires_grad = 1;
    }
    return t;
oom:
    lb_tensor_free(t);
    lb_error(LB_ENOMEM, "cannot allocate a tensor of %zu floats", n);
    return NULL;
}

void lb_tensor_free(lb_tensor *t) {
    if (!t) return;
    free(t->data);
    free(t->grad);
    free(t);
}

size_t lb_find_nonfinite(const float *data, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(data[i])) return i + 1;
    return 0;
}

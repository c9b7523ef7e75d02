/* Fake quantization ops: the forward pass runs a quant/quantize.h kernel, the
 * backward pass is a straight-through estimator (STE). */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "quant/quantize.h"

/* What the backward pass of lb_fake_quant needs, saved in the arena. */
typedef struct fq_saved {
    lb_qspec spec;
    float *range;      /* 2 floats per scale block (clipped STE only) */
    size_t rows, cols;
} fq_saved;

/* dL/dx += dL/dy · ((1 − λ) + λ · ste'(x)), ste' = 1 (identity) or the
 * indicator of x inside its block's representable range (clipped). */
static void fake_quant_backward(lb_node *node) {
    lb_tensor *x = node->in[0], *y = node->out;
    const fq_saved *sv = node->saved;
    const float lambda = node->f[0];
    const float *dy = y->grad;
    float *dx = x->grad;
    const size_t n = x->n;
    if (node->i[0] != LB_STE_CLIPPED || !sv->range) {
        /* identity: (1 − λ) + λ = 1 */
#pragma omp parallel for schedule(static) if (n > 32768)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i];
        return;
    }
    const size_t rows = sv->rows, cols = sv->cols;
    const long nb = (long)lb_quant_n_blocks(&sv->spec, rows, cols);
    const float outside = 1.0f - lambda;
    const float *xd = x->data;
    if (nb == 1) { /* one range for the whole tensor */
        const float lo = sv->range[0], hi = sv->range[1];
#pragma omp parallel for schedule(static) if (n > 32768)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (xd[i] >= lo && xd[i] <= hi ? 1.0f : outside);
        return;
    }
    /* Each block is a contiguous run with its own range. */
#pragma omp parallel for schedule(static) if (n > 32768)
    for (long b = 0; b < nb; b++) {
        size_t start, len;
        lb_quant_block_span(&sv->spec, rows, cols, (size_t)b, &start, &len);
        const float lo = sv->range[2 * b], hi = sv->range[2 * b + 1];
        for (size_t i = start; i < start + len; i++)
            dx[i] += dy[i] * (xd[i] >= lo && xd[i] <= hi ? 1.0f : outside);
    }
}

lb_tensor *lb_fake_quant(lb_graph *g, lb_tensor *x, const lb_qspec *spec, lb_ste ste, float lambda) {
    if (!x) return NULL;
    if (!spec) {
        lb_error(LB_EINVAL, "fake_quant: no quant spec");
        return NULL;
    }
    if (!(lambda >= 0.0f && lambda <= 1.0f)) {
        lb_error(LB_EINVAL, "fake_quant: lambda %g: expected a value in [0, 1]", (double)lambda);
        return NULL;
    }
    if (ste != LB_STE_IDENTITY && ste != LB_STE_CLIPPED) {
        lb_error(LB_EINVAL, "fake_quant: unknown STE %d", (int)ste);
        return NULL;
    }
    size_t rows = lb_tensor_rows(x), cols = (size_t)lb_tensor_cols(x);
    if (lb_quant_check(spec, rows, cols) != LB_OK) {
        char buf[64];
        lb_error_prefix("fake_quant of a %s tensor", lb_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    lb_tensor *y = lb_graph_tensor(g, x->ndim, x->shape);
    if (!y) return NULL;

    lb_tensor *ins[1] = {x};
    int record = lb_graph_needs_grad(g, ins, 1);
    fq_saved *sv = NULL;
    if (record) {
        sv = lb_graph_alloc(g, sizeof *sv);
        if (!sv) return NULL;
        sv->spec = *spec;
        sv->rows = rows;
        sv->cols = cols;
        sv->range = NULL;
        if (ste == LB_STE_CLIPPED && lambda > 0.0f) {
            sv->range = lb_graph_alloc(g, 2 * lb_quant_n_blocks(spec, rows, cols) * sizeof(float));
            if (!sv->range) return NULL;
        }
    }

    if (lb_fake_quantize(spec, x->data, y->data, rows, cols, sv ? sv->range : NULL) != LB_OK) return NULL;
    if (lambda < 1.0f) {
        /* Gradual quantization: y = x + λ·(q(x) − x). */
        const size_t n = x->n;
        const float *xd = x->data;
        float *yd = y->data;
#pragma omp parallel for schedule(static) if (n > 32768)
        for (size_t i = 0; i < n; i++) yd[i] = xd[i] + lambda * (yd[i] - xd[i]);
    }

    if (record) {
        lb_node *node = lb_graph_record(g, "fake_quant", fake_quant_backward, y, x, NULL, NULL, NULL);
        if (!node) return NULL;
        node->saved = sv;
        node->f[0] = lambda;
        node->i[0] = (int)ste;
    }
    return y;
}

/* --- LSQ ------------------------------------------------------------------------ */

typedef struct lsq_saved {
    lb_qspec spec;
    size_t rows, cols;
} lsq_saved;

static void lsq_backward(lb_node *node) {
    lb_tensor *x = node->in[0], *step = node->in[1], *y = node->out;
    const lsq_saved *sv = node->saved;
    lb_lsq_backward(&sv->spec, x->data, y->grad, x->requires_grad ? x->grad : NULL, sv->rows, sv->cols, step->data,
                    node->f[0], step->requires_grad ? step->grad : NULL);
}

lb_tensor *lb_fake_quant_lsq(lb_graph *g, lb_tensor *x, lb_tensor *step, const lb_qspec *spec, float lambda) {
    if (!x || !step) return NULL;
    const char *sname = step->name ? step->name : "step";
    if (!spec || spec->format != LB_QF_INT || !spec->lsq) {
        lb_error(LB_EINVAL, "fake_quant_lsq: step '%s': expected an intN spec with 'lsq'", sname);
        return NULL;
    }
    if (!(lambda >= 0.0f && lambda <= 1.0f)) {
        lb_error(LB_EINVAL, "fake_quant_lsq: lambda %g: expected a value in [0, 1]", (double)lambda);
        return NULL;
    }
    size_t rows = lb_tensor_rows(x), cols = (size_t)lb_tensor_cols(x);
    if (lb_quant_check(spec, rows, cols) != LB_OK) {
        char buf[64];
        lb_error_prefix("fake_quant_lsq of a %s tensor", lb_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    size_t nb = lb_quant_n_blocks(spec, rows, cols);
    if (step->n != nb) {
        char buf[64];
        lb_error(LB_EINVAL, "fake_quant_lsq: step '%s' has %zu elements, expected %zu (one per scale block of the %s input)",
                 sname, step->n, nb, lb_shape_str(x, buf, sizeof buf));
        return NULL;
    }
    for (size_t b = 0; b < nb; b++)
        if (!(step->data[b] > 0.0f) || !isfinite(step->data[b])) {
            lb_error(LB_ENUMERIC, "fake_quant_lsq: step '%s'[%zu] is %g, expected a finite value > 0", sname, b,
                     (double)step->data[b]);
            return NULL;
        }
    lb_tensor *y = lb_graph_tensor(g, x->ndim, x->shape);
    if (!y) return NULL;
    lb_lsq_forward(spec, x->data, y->data, rows, cols, step->data, lambda);
    lb_tensor *ins[2] = {x, step};
    if (lb_graph_needs_grad(g, ins, 2)) {
        lsq_saved *sv = lb_graph_alloc(g, sizeof *sv);
        if (!sv) return NULL;
        sv->spec = *spec;
        sv->rows = rows;
        sv->cols = cols;
        lb_node *node = lb_graph_record(g, "fake_quant_lsq", lsq_backward, y, x, step, NULL, NULL);
        if (!node) return NULL;
        node->saved = sv;
        node->f[0] = lambda;
    }
    return y;
}

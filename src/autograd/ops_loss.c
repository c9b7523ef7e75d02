/* Losses. lb_cross_entropy fuses log-softmax and the negative log-likelihood,
 * so the [rows, V] probabilities never need to be stored: the forward pass
 * keeps one log-sum-exp per row and the backward pass recomputes
 *   dlogits[r, c] = dL · (softmax(logits[r])[c] − [c == target[r]]) / n_counted. */
#include <math.h>

#include "autograd/ops.h"

typedef struct ce_saved {
    float *lse;       /* [rows] log Σ exp(logits[r, :]) */
    int n_counted;    /* rows whose target is not ignore_index */
} ce_saved;

/* Below this many logits the loops stay on one thread: entering an OpenMP
 * parallel region costs about half a microsecond even when its `if` clause
 * is false, so small inputs skip the region altogether. */
#define PAR_MIN 16384

/* Stable log-sum-exp of one row: the maximum is taken out before exp(). */
static float row_logsumexp(const float *x, int V) {
    float mx = x[0];
    for (int c = 1; c < V; c++) mx = x[c] > mx ? x[c] : mx;
    float sum = 0.0f;
    for (int c = 0; c < V; c++) sum += expf(x[c] - mx);
    return mx + logf(sum);
}

/* dx += dscale · (softmax(x) − one_hot(target)) for one row. */
static void row_grad(const float *x, float *dx, int V, float lse, int target, float dscale) {
    for (int c = 0; c < V; c++) dx[c] += dscale * expf(x[c] - lse);
    dx[target] -= dscale;
}

static void cross_entropy_backward(lb_node *node) {
    lb_tensor *logits = node->in[0];
    if (!logits->requires_grad) return;
    const ce_saved *cs = node->saved;
    if (cs->n_counted == 0) return; /* the loss is the constant 0 */
    const int *targets = node->p;
    const int ignore_index = node->i[0];
    const int rows = (int)lb_tensor_rows(logits), V = lb_tensor_cols(logits);
    const float dscale = node->out->grad[0] / (float)cs->n_counted;
    const float *x = logits->data;
    float *dx = logits->grad;
    if (logits->n >= PAR_MIN) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++)
            if (targets[r] != ignore_index)
                row_grad(x + (size_t)r * V, dx + (size_t)r * V, V, cs->lse[r], targets[r], dscale);
    } else {
        for (int r = 0; r < rows; r++)
            if (targets[r] != ignore_index)
                row_grad(x + (size_t)r * V, dx + (size_t)r * V, V, cs->lse[r], targets[r], dscale);
    }
}

lb_tensor *lb_cross_entropy(lb_graph *g, lb_tensor *logits, const int *targets, int ignore_index) {
    if (!logits) return NULL;
    char ls[64];
    if (!targets) {
        lb_error(LB_EINVAL, "cross_entropy: logits %s: no targets given", lb_shape_str(logits, ls, sizeof ls));
        return NULL;
    }
    const int rows = (int)lb_tensor_rows(logits), V = lb_tensor_cols(logits);
    /* Check every target before computing anything, so the message names the
     * first bad row. */
    int n_counted = 0;
    for (int r = 0; r < rows; r++) {
        if (targets[r] == ignore_index) continue;
        if (targets[r] < 0 || targets[r] >= V) {
            lb_error(LB_EINVAL, "cross_entropy: logits %s: target of row %d is %d, expected 0..%d or %d (ignored)",
                     lb_shape_str(logits, ls, sizeof ls), r, targets[r], V - 1, ignore_index);
            return NULL;
        }
        n_counted++;
    }

    int one = 1;
    lb_tensor *loss = lb_graph_tensor(g, 1, &one);
    ce_saved *cs = lb_graph_alloc(g, sizeof *cs);
    float *lse = lb_graph_alloc(g, (size_t)rows * sizeof(float));
    if (!loss || !cs || !lse) return NULL;

    const float *x = logits->data;
    if (logits->n >= PAR_MIN) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) lse[r] = row_logsumexp(x + (size_t)r * V, V);
    } else {
        for (int r = 0; r < rows; r++) lse[r] = row_logsumexp(x + (size_t)r * V, V);
    }
    /* Summed in row order (in double), so the result does not depend on the
     * number of threads. */
    double total = 0.0;
    for (int r = 0; r < rows; r++)
        if (targets[r] != ignore_index) total += (double)lse[r] - x[(size_t)r * V + targets[r]];
    loss->data[0] = n_counted ? (float)(total / n_counted) : 0.0f;

    if (lb_graph_needs_grad(g, &logits, 1)) {
        cs->lse = lse;
        cs->n_counted = n_counted;
        lb_node *node = lb_graph_record(g, "cross_entropy", cross_entropy_backward, loss, logits, NULL, NULL, NULL);
        if (!node) return NULL;
        node->saved = cs;
        node->p = targets;
        node->i[0] = ignore_index;
    }
    return loss;
}

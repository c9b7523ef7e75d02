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

/* ---- distillation: T² · KL(softmax(teacher / T) ‖ softmax(student / T)) ---- */

typedef struct kl_saved {
    float *lse_s, *lse_t; /* [rows] log Σ exp(x / T) of the student's and the teacher's row */
} kl_saved;

/* log Σ exp(x[c] · inv_t), the maximum taken out first. */
static float row_logsumexp_scaled(const float *x, int V, float inv_t) {
    float mx = x[0] * inv_t;
    for (int c = 1; c < V; c++) mx = x[c] * inv_t > mx ? x[c] * inv_t : mx;
    float sum = 0.0f;
    for (int c = 0; c < V; c++) sum += expf(x[c] * inv_t - mx);
    return mx + logf(sum);
}

/* Σ_c p_t[c] · (log p_t[c] − log p_s[c]) of one row, in double. */
static double row_kl(const float *s, const float *t, int V, float inv_t, float lse_s, float lse_t) {
    double kl = 0.0;
    for (int c = 0; c < V; c++) {
        double log_pt = (double)(t[c] * inv_t) - lse_t, log_ps = (double)(s[c] * inv_t) - lse_s;
        kl += exp(log_pt) * (log_pt - log_ps);
    }
    return kl;
}

static void kl_div_backward(lb_node *node) {
    lb_tensor *student = node->in[0];
    if (!student->requires_grad) return;
    const kl_saved *ks = node->saved;
    const float *teacher = node->p;
    const float temp = node->f[0], inv_t = 1.0f / temp;
    const int rows = (int)lb_tensor_rows(student), V = lb_tensor_cols(student);
    const float dscale = node->out->grad[0] * temp / (float)rows;
    const float *x = student->data;
    float *dx = student->grad;
#pragma omp parallel for schedule(static) if (student->n >= PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *s = x + (size_t)r * V, *t = teacher + (size_t)r * V;
        float *d = dx + (size_t)r * V;
        for (int c = 0; c < V; c++)
            d[c] += dscale * (expf(s[c] * inv_t - ks->lse_s[r]) - expf(t[c] * inv_t - ks->lse_t[r]));
    }
}

lb_tensor *lb_kl_div(lb_graph *g, lb_tensor *student, const float *teacher, float temperature) {
    if (!student) return NULL;
    char ss[64];
    if (!teacher) {
        lb_error(LB_EINVAL, "kl_div: student logits %s: no teacher logits given", lb_shape_str(student, ss, sizeof ss));
        return NULL;
    }
    if (!(temperature > 0.0f) || !isfinite(temperature)) {
        lb_error(LB_EINVAL, "kl_div: temperature %g, expected a positive number", (double)temperature);
        return NULL;
    }
    const int rows = (int)lb_tensor_rows(student), V = lb_tensor_cols(student);
    const float inv_t = 1.0f / temperature;
    int one = 1;
    lb_tensor *loss = lb_graph_tensor(g, 1, &one);
    kl_saved *ks = lb_graph_alloc(g, sizeof *ks);
    float *lse_s = lb_graph_alloc(g, (size_t)rows * sizeof(float));
    float *lse_t = lb_graph_alloc(g, (size_t)rows * sizeof(float));
    double *kl = lb_graph_alloc(g, (size_t)rows * sizeof(double));
    if (!loss || !ks || !lse_s || !lse_t || !kl) return NULL;
    const float *x = student->data;
#pragma omp parallel for schedule(static) if (student->n >= PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *s = x + (size_t)r * V, *t = teacher + (size_t)r * V;
        lse_s[r] = row_logsumexp_scaled(s, V, inv_t);
        lse_t[r] = row_logsumexp_scaled(t, V, inv_t);
        kl[r] = row_kl(s, t, V, inv_t, lse_s[r], lse_t[r]);
    }
    /* Summed in row order, so the result does not depend on the number of threads. */
    double total = 0.0;
    for (int r = 0; r < rows; r++) total += kl[r];
    loss->data[0] = (float)((double)temperature * temperature * total / rows);
    if (lb_graph_needs_grad(g, &student, 1)) {
        ks->lse_s = lse_s;
        ks->lse_t = lse_t;
        lb_node *node = lb_graph_record(g, "kl_div", kl_div_backward, loss, student, NULL, NULL, NULL);
        if (!node) return NULL;
        node->saved = ks;
        node->p = teacher;
        node->f[0] = temperature;
    }
    return loss;
}

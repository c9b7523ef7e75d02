/* Losses. lb_cross_entropy fuses log-softmax and the negative log-likelihood,
 * so the [rows, V] probabilities never need to be stored: the forward pass
 * keeps one log-sum-exp per row and the backward pass recomputes
 *   dlogits[r, c] = dL · (softmax(logits[r])[c] − [c == target[r]]) / n_counted. */
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"

typedef struct ce_saved {
    float *lse;       /* [rows] log Σ exp(logits[r, :]) */
    int n_counted;    /* rows whose target is not ignore_index */
} ce_saved;

/* Below this many logits the loops stay on one thread: entering an OpenMP
 * parallel region costs about half a microsecond even when its `if` clause
 * is false, so small inputs skip the region altogether. */
#define PAR_MIN 16384

/* Stable log-sum-exp of one row of x · inv_t (inv_t = 1: the logits; 1/T:
 * softened, for distillation): the maximum is taken out before exp(). */
static float row_logsumexp_scaled(const float *x, int V, float inv_t) {
    float mx = x[0] * inv_t;
    for (int c = 1; c < V; c++) mx = x[c] * inv_t > mx ? x[c] * inv_t : mx;
    float sum = 0.0f;
    for (int c = 0; c < V; c++) sum += expf(x[c] * inv_t - mx);
    return mx + logf(sum);
}

static float row_logsumexp(const float *x, int V) { return row_logsumexp_scaled(x, V, 1.0f); }

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

/* ---- MiniLM relation loss: KL between causal self-relation distributions ---- */

/* The relation distribution of position i in head r of sequence b into p[0..i]
 * (log-probabilities): softmax over j ≤ i of <x_i, x_j> · scale, the head's
 * channels [r·dr, (r+1)·dr) of rows with stride D. */
static void relation_row(const float *x, int D, int dr, int r, int i, float scale, double *logp) {
    const float *xi = x + (size_t)i * D + (size_t)r * dr;
    double mx = -INFINITY;
    for (int j = 0; j <= i; j++) {
        const float *xj = x + (size_t)j * D + (size_t)r * dr;
        double dot = 0.0;
        for (int c = 0; c < dr; c++) dot += (double)xi[c] * xj[c];
        logp[j] = dot * scale;
        mx = logp[j] > mx ? logp[j] : mx;
    }
    double z = 0.0;
    for (int j = 0; j <= i; j++) z += exp(logp[j] - mx);
    double lz = mx + log(z);
    for (int j = 0; j <= i; j++) logp[j] -= lz;
}

typedef struct relation_dims {
    int B, T, D, Dt, R;
} relation_dims;

static void relation_backward(lb_node *node) {
    lb_tensor *x = node->in[0];
    if (!x->requires_grad) return;
    const relation_dims *d = node->saved;
    const float *teacher = node->p;
    const int B = d->B, T = d->T, D = d->D, Dt = d->Dt, R = d->R, dr = D / R, drt = Dt / R;
    const float scale = 1.0f / sqrtf((float)dr), scale_t = 1.0f / sqrtf((float)drt);
    const double up = node->out->grad[0] / ((double)B * R * T);
    lb_status s = LB_OK;
    /* One (b, r) per iteration: its rows of dx are written by it alone. */
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int r = 0; r < R; r++) {
            double *ls = malloc((size_t)T * sizeof *ls), *lt = malloc((size_t)T * sizeof *lt);
            if (!ls || !lt) {
#pragma omp critical
                s = LB_ENOMEM;
                free(ls);
                free(lt);
                continue;
            }
            const float *xs = x->data + (size_t)b * T * D, *xt = teacher + (size_t)b * T * Dt;
            float *dx = x->grad + (size_t)b * T * D;
            for (int i = 0; i < T; i++) {
                relation_row(xs, D, dr, r, i, scale, ls);
                relation_row(xt, Dt, drt, r, i, scale_t, lt);
                const float *xi = xs + (size_t)i * D + (size_t)r * dr;
                float *dxi = dx + (size_t)i * D + (size_t)r * dr;
                for (int j = 0; j <= i; j++) {
                    /* d KL / d score_ij = p_s − p_t; score_ij = <x_i, x_j> · scale */
                    float gij = (float)(up * (exp(ls[j]) - exp(lt[j])) * scale);
                    const float *xj = xs + (size_t)j * D + (size_t)r * dr;
                    float *dxj = dx + (size_t)j * D + (size_t)r * dr;
                    for (int c = 0; c < dr; c++) {
                        dxi[c] += gij * xj[c];
                        dxj[c] += gij * xi[c];
                    }
                }
            }
            free(ls);
            free(lt);
        }
    if (s != LB_OK) lb_node_fail(node, lb_error(s, "relation_kl backward: scratch rows"));
}

lb_tensor *lb_relation_kl(lb_graph *g, lb_tensor *x, const float *teacher, int teacher_dim, int heads) {
    if (!x) return NULL;
    char xs[64];
    const int D = lb_tensor_cols(x), rows = (int)lb_tensor_rows(x);
    if (x->ndim != 3 || !teacher || heads < 1 || D % heads != 0 || teacher_dim < heads || teacher_dim % heads != 0) {
        lb_error(LB_EINVAL, "relation_kl: x %s, teacher width %d, %d relation heads: expected x [B, T, D] with D "
                 "and the teacher width divisible by the heads, and teacher values", lb_shape_str(x, xs, sizeof xs),
                 teacher_dim, heads);
        return NULL;
    }
    relation_dims *d = lb_graph_alloc(g, sizeof *d);
    int one = 1;
    lb_tensor *loss = lb_graph_tensor(g, 1, &one);
    if (!d || !loss) return NULL;
    *d = (relation_dims){x->shape[0], x->shape[1], D, teacher_dim, heads};
    const int B = d->B, T = d->T, R = heads, dr = D / R, drt = teacher_dim / R;
    const float scale = 1.0f / sqrtf((float)dr), scale_t = 1.0f / sqrtf((float)drt);
    double *kl = lb_graph_alloc(g, (size_t)B * R * sizeof(double));
    double *scratch = lb_graph_alloc(g, (size_t)2 * B * R * T * sizeof(double));
    if (!kl || !scratch) return NULL;
    (void)rows;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int r = 0; r < R; r++) {
            double *ls = scratch + ((size_t)b * R + r) * 2 * T, *lt = ls + T, sum = 0.0;
            const float *xsb = x->data + (size_t)b * T * D, *xtb = teacher + (size_t)b * T * teacher_dim;
            for (int i = 0; i < T; i++) {
                relation_row(xsb, D, dr, r, i, scale, ls);
                relation_row(xtb, teacher_dim, drt, r, i, scale_t, lt);
                for (int j = 0; j <= i; j++) sum += exp(lt[j]) * (lt[j] - ls[j]);
            }
            kl[(size_t)b * R + r] = sum;
        }
    double total = 0.0; /* in a fixed order: the same for every thread count */
    for (int k = 0; k < B * R; k++) total += kl[k];
    loss->data[0] = (float)(total / ((double)B * R * T));
    if (lb_graph_needs_grad(g, &x, 1)) {
        lb_node *node = lb_graph_record(g, "relation_kl", relation_backward, loss, x, NULL, NULL, NULL);
        if (!node) return NULL;
        node->saved = d;
        node->p = teacher;
    }
    return loss;
}

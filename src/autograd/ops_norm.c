/* Token embedding lookup, RMSNorm and LayerNorm.
 *
 * The norms work on rows: x [..., D] is seen as [rows, D] and each row is
 * normalised on its own, in one sweep that stays in cache (statistics, then
 * the output). The forward pass saves each row's 1/std (and mean, for
 * LayerNorm) in the arena so the backward pass does not recompute them.
 *
 * Gradients of the shared parameters (the embedding table, the norm gain and
 * bias) add contributions from many rows. To stay deterministic without
 * atomics, they are reduced in a fixed order that does not depend on the
 * number of threads:
 *   - embedding: each thread owns a block of columns and walks all positions
 *     in order, so every table element sums its contributions in order;
 *   - norms: rows are split into at most NORM_CHUNKS fixed chunks, each chunk
 *     sums into its own partial buffer, and the partials are added in chunk
 *     order. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd/ops.h"

/* Below this many elements a loop runs on one thread. */
#define PAR_MIN 32768

/* Row chunks for the weight/bias gradient of the norms (see above). */
#define NORM_CHUNKS 64

/* --- embedding ------------------------------------------------------------------ */

static void embedding_backward(lb_node *node) {
    lb_tensor *table = node->in[0];
    if (!table->requires_grad) return;
    const int *ids = node->p;
    int n_pos = node->i[0];
    int D = table->shape[1];
    const float *dy = node->out->grad;
    float *dt = table->grad;
#pragma omp parallel if (node->out->n >= PAR_MIN)
    {
        /* This thread's columns [c0, c1) of every table row are its own. */
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int c0 = (int)((long)D * t / nt), c1 = (int)((long)D * (t + 1) / nt);
        for (int p = 0; p < n_pos; p++) {
            const float *src = dy + (size_t)p * D;
            float *dst = dt + (size_t)ids[p] * D;
            for (int d = c0; d < c1; d++) dst[d] += src[d];
        }
    }
}

lb_tensor *lb_embedding(lb_graph *g, lb_tensor *table, const int *ids, int B, int T) {
    if (!table) return NULL;
    char st[64];
    if (table->ndim != 2) {
        lb_error(LB_EINVAL, "embedding: table must be [V, D], has shape %s", lb_shape_str(table, st, sizeof st));
        return NULL;
    }
    if (!ids || B < 1 || T < 1) {
        lb_error(LB_EINVAL, "embedding: need token ids for B = %d, T = %d (both >= 1)%s", B, T,
                 ids ? "" : ", got none");
        return NULL;
    }
    int V = table->shape[0], D = table->shape[1];
    int n_pos = B * T;
    for (int p = 0; p < n_pos; p++) {
        if (ids[p] < 0 || ids[p] >= V) {
            lb_error(LB_EINVAL, "embedding: token id %d at position %d (batch %d, t %d) is outside [0, %d)",
                     ids[p], p, p / T, p % T, V);
            return NULL;
        }
    }
    lb_tensor *y = lb_graph_tensor(g, 3, (int[]){B, T, D});
    if (!y) return NULL;
#pragma omp parallel for schedule(static) if (y->n >= PAR_MIN)
    for (int p = 0; p < n_pos; p++)
        memcpy(y->data + (size_t)p * D, table->data + (size_t)ids[p] * D, (size_t)D * sizeof(float));
    if (lb_graph_needs_grad(g, &table, 1)) {
        lb_node *node = lb_graph_record(g, "embedding", embedding_backward, y, table, NULL, NULL, NULL);
        if (!node) return NULL;
        node->p = ids;
        node->i[0] = n_pos;
    }
    return y;
}

/* --- RMSNorm and LayerNorm --------------------------------------------------------
 * Both are y = x̂·w + b with x̂ = (x − μ)·rstd, rstd = 1/sqrt(mean((x − μ)²) + eps),
 * where RMSNorm takes μ = 0 and has no bias. With g = dy·w (dy where w is NULL),
 * the input gradient of one row is
 *   dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))     (LayerNorm)
 *   dx = rstd · (g − x̂ · mean(g · x̂))              (RMSNorm)
 * and dw += dy · x̂, db += dy summed over rows. */

typedef struct norm_saved {
    float *mean;    /* [rows]; NULL for RMSNorm */
    float *rstd;    /* [rows] */
    float *dw_part; /* [n_chunks, D] partial gain gradients; NULL unless w needs one */
    float *db_part; /* [n_chunks, D] partial bias gradients; NULL unless b needs one */
    int n_chunks;
} norm_saved;

static void norm_backward(lb_node *node) {
    lb_tensor *x = node->in[0], *w = node->in[1], *b = node->in[2];
    const norm_saved *s = node->saved;
    int center = node->i[0];
    size_t rows = lb_tensor_rows(x);
    int D = lb_tensor_cols(x), n_chunks = s->n_chunks;
    const float *dy_all = node->out->grad;
    float *dx_all = x->requires_grad ? x->grad : NULL;
    const float *wd = w ? w->data : NULL;

#pragma omp parallel for schedule(static) if (x->n >= PAR_MIN)
    for (int c = 0; c < n_chunks; c++) {
        float *dw = s->dw_part ? s->dw_part + (size_t)c * D : NULL;
        float *db = s->db_part ? s->db_part + (size_t)c * D : NULL;
        if (dw) memset(dw, 0, (size_t)D * sizeof(float));
        if (db) memset(db, 0, (size_t)D * sizeof(float));
        size_t r0 = rows * (size_t)c / (size_t)n_chunks, r1 = rows * (size_t)(c + 1) / (size_t)n_chunks;
        for (size_t r = r0; r < r1; r++) {
            const float *xr = x->data + r * D, *dy = dy_all + r * D;
            float mu = center ? s->mean[r] : 0.0f, rs = s->rstd[r];
            if (dw || db) {
                for (int d = 0; d < D; d++) {
                    if (dw) dw[d] += dy[d] * (xr[d] - mu) * rs;
                    if (db) db[d] += dy[d];
                }
            }
            if (!dx_all) continue;
            float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
            for (int d = 0; d < D; d++) {
                float gd = wd ? dy[d] * wd[d] : dy[d];
                sum_g += gd;
                sum_gx += gd * (xr[d] - mu) * rs;
            }
            float mean_g = center ? sum_g / (float)D : 0.0f, mean_gx = sum_gx / (float)D;
            float *dx = dx_all + r * D;
            for (int d = 0; d < D; d++) {
                float gd = wd ? dy[d] * wd[d] : dy[d];
                float xhat = (xr[d] - mu) * rs;
                dx[d] += rs * (gd - mean_g - xhat * mean_gx);
            }
        }
    }

    /* Add the partials in chunk order. */
    if (s->dw_part || s->db_part) {
#pragma omp parallel for schedule(static) if ((size_t)D * n_chunks >= PAR_MIN)
        for (int d = 0; d < D; d++) {
            for (int c = 0; c < n_chunks; c++) {
                if (s->dw_part) w->grad[d] += s->dw_part[(size_t)c * D + d];
                if (s->db_part) b->grad[d] += s->db_part[(size_t)c * D + d];
            }
        }
    }
}

/* 1 when v is NULL or a vector [D]; else records why not. */
static int check_param(const char *op, const char *what, const lb_tensor *v, const lb_tensor *x) {
    if (!v || (v->ndim == 1 && v->shape[0] == lb_tensor_cols(x))) return 1;
    char sv[64], sx[64];
    lb_error(LB_EINVAL, "%s: %s has shape %s, expected [%d] (the last dim of x %s)", op, what,
             lb_shape_str(v, sv, sizeof sv), lb_tensor_cols(x), lb_shape_str(x, sx, sizeof sx));
    return 0;
}

static lb_tensor *norm_forward(lb_graph *g, const char *op, lb_tensor *x, lb_tensor *w, lb_tensor *b,
                               float eps, int center) {
    if (!x) return NULL;
    if (!check_param(op, "weight", w, x) || !check_param(op, "bias", b, x)) return NULL;
    if (!(eps >= 0.0f) || !isfinite(eps)) {
        lb_error(LB_EINVAL, "%s: eps must be finite and >= 0, got %g", op, (double)eps);
        return NULL;
    }
    size_t rows = lb_tensor_rows(x);
    int D = lb_tensor_cols(x);
    lb_tensor *y = lb_graph_tensor(g, x->ndim, x->shape);
    if (!y) return NULL;

    /* Statistics are kept only when a backward pass will need them. */
    norm_saved *s = NULL;
    lb_tensor *ins[3] = {x, w, b};
    if (lb_graph_needs_grad(g, ins, 3)) {
        s = lb_graph_alloc(g, sizeof *s);
        if (!s) return NULL;
        memset(s, 0, sizeof *s);
        s->n_chunks = rows < NORM_CHUNKS ? (int)rows : NORM_CHUNKS;
        s->rstd = lb_graph_alloc(g, rows * sizeof(float));
        if (!s->rstd) return NULL;
        if (center && !(s->mean = lb_graph_alloc(g, rows * sizeof(float)))) return NULL;
        size_t part = (size_t)s->n_chunks * D * sizeof(float);
        if (w && w->requires_grad && !(s->dw_part = lb_graph_alloc(g, part))) return NULL;
        if (b && b->requires_grad && !(s->db_part = lb_graph_alloc(g, part))) return NULL;
        lb_node *node = lb_graph_record(g, op, norm_backward, y, x, w, b, NULL);
        if (!node) return NULL;
        node->saved = s;
        node->f[0] = eps;
        node->i[0] = center;
    }

    const float *wd = w ? w->data : NULL, *bd = b ? b->data : NULL;
#pragma omp parallel for schedule(static) if (x->n >= PAR_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * D;
        float *yr = y->data + r * D;
        float mu = 0.0f;
        if (center) {
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int d = 0; d < D; d++) sum += xr[d];
            mu = sum / (float)D;
        }
        /* Centered second moment (the row is in cache; no cancellation). */
        float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int d = 0; d < D; d++) sq += (xr[d] - mu) * (xr[d] - mu);
        float rs = 1.0f / sqrtf(sq / (float)D + eps);
        for (int d = 0; d < D; d++) {
            float v = (xr[d] - mu) * rs;
            if (wd) v *= wd[d];
            if (bd) v += bd[d];
            yr[d] = v;
        }
        if (s) {
            s->rstd[r] = rs;
            if (center) s->mean[r] = mu;
        }
    }
    return y;
}

lb_tensor *lb_rmsnorm(lb_graph *g, lb_tensor *x, lb_tensor *w, float eps) {
    return norm_forward(g, "rmsnorm", x, w, NULL, eps, 0);
}

lb_tensor *lb_layernorm(lb_graph *g, lb_tensor *x, lb_tensor *w, lb_tensor *b, float eps) {
    return norm_forward(g, "layernorm", x, w, b, eps, 1);
}

/* GPTQ of one weight matrix (gptq.h). */
#include "ptq/gptq.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "layers/model.h"
#include "ptq/ptq.h"
#include "quant/quantize.h"

/* LAPACK's Cholesky factorization and inverse, from OpenBLAS (which ships
 * LAPACK; Debian's OpenMP build installs no lapack.h). Fortran passes the
 * length of a character argument after the others. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

/* The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU), row-major in `u` with
 * zeros below the diagonal. H (symmetric, row-major: the same array in
 * column-major) is overwritten. */
static lb_status inverse_factor(double *H, size_t K, double *u) {
    int n = (int)K, info = 0;
    dpotrf_("U", &n, H, &n, &info, 1);
    if (info > 0)
        return lb_error(LB_EINVAL, "gptq: the damped Hessian is not positive definite (column %d); raise --damp", info);
    dpotri_("U", &n, H, &n, &info, 1);
    if (info == 0) dpotrf_("U", &n, H, &n, &info, 1);
    if (info != 0) return lb_error(LB_EINVAL, "gptq: the Hessian's inverse is not positive definite (column %d)", info);
    /* column-major upper triangle: U(i, j) = H[i + j·K] for i <= j */
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) u[i * K + j] = j >= i ? H[i + j * K] : 0.0;
    return LB_OK;
}

static const double *sort_key;
/* Decreasing diag(H), ties by index: a stable order. */
static int by_diag_desc(const void *a, const void *b) {
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] > sort_key[j] ? -1 : 1;
    return (i > j) - (i < j);
}

lb_status lb_gptq(const lb_qspec *spec, const float *W, size_t rows, size_t cols, double *H,
                  const lb_gptq_options *o, int8_t *codes, float *steps, float *q) {
    if (!(spec->format == LB_QF_TERNARY || (spec->format == LB_QF_INT && !spec->asymmetric && !spec->b1)) ||
        spec->lsq || spec->stochastic)
        return lb_error(LB_EINVAL, "gptq: takes ternary and symmetric INTn specs");
    LB_TRY(lb_quant_check(spec, rows, cols));
    const size_t K = cols, g = spec->gran == LB_QG_GROUP ? (size_t)spec->group : K, G = K / g;
    if (spec->gran == LB_QG_GROUP && K % g != 0)
        return lb_error(LB_EINVAL, "gptq: groups of %zu do not divide %zu columns", g, K);
    const size_t bs = o->block > 0 ? (size_t)o->block : 128;
    const int grouped = spec->gran == LB_QG_GROUP, static_groups = grouped && o->act_order;

    double *Wp = malloc(rows * K * sizeof *Wp), *Hp = malloc(K * K * sizeof *Hp), *U = malloc(K * K * sizeof *U);
    double *W1 = malloc(rows * bs * sizeof *W1), *E1 = malloc(rows * bs * sizeof *E1);
    size_t *perm = malloc(K * sizeof *perm);
    float *tmp = malloc((grouped && rows * g > K ? rows * g : K) * sizeof *tmp); /* a group per row */
    lb_qblock_params *rowp = malloc(rows * sizeof *rowp);
    lb_qblock_params *gp = static_groups ? malloc(rows * G * sizeof *gp) : NULL;
    int8_t *qc = malloc(rows * K);
    float *qv = malloc(rows * K * sizeof *qv);
    double *diag = malloc(K * sizeof *diag);
    lb_status s = LB_OK;
    if (!Wp || !Hp || !U || !W1 || !E1 || !perm || !tmp || !rowp || (static_groups && !gp) || !qc || !qv || !diag) {
        s = lb_error(LB_ENOMEM, "gptq: %zu x %zu", rows, cols);
        goto done;
    }

    /* 1. Per-tensor and per-row scales, on W as given. */
    lb_qblock_params p0 = {0};
    if (spec->gran == LB_QG_TENSOR) {
        if ((s = lb_quant_fit_block(spec, W, rows * K, &p0)) != LB_OK) goto done;
        steps[0] = p0.d;
    } else if (spec->gran == LB_QG_ROW) {
        for (size_t r = 0; r < rows && s == LB_OK; r++) {
            s = lb_quant_fit_block(spec, W + r * K, K, &rowp[r]);
            steps[r] = rowp[r].d;
        }
        if (s != LB_OK) goto done;
    }
    /* 2. Dead inputs. */
    for (size_t i = 0; i < rows * K; i++) Wp[i] = W[i];
    for (size_t j = 0; j < K; j++) {
        if (H[j * K + j] != 0.0) continue;
        H[j * K + j] = 1.0;
        for (size_t r = 0; r < rows; r++) Wp[r * K + j] = 0.0;
    }
    /* 3. Static groups, and the column order. */
    if (static_groups)
        for (size_t r = 0; r < rows && s == LB_OK; r++)
            for (size_t k = 0; k < G && s == LB_OK; k++) {
                for (size_t c = 0; c < g; c++) tmp[c] = (float)Wp[r * K + k * g + c];
                s = lb_quant_fit_block(spec, tmp, g, &gp[r * G + k]);
                steps[r * G + k] = gp[r * G + k].d;
            }
    if (s != LB_OK) goto done;
    for (size_t j = 0; j < K; j++) perm[j] = j, diag[j] = H[j * K + j];
    if (o->act_order) {
        sort_key = diag;
        qsort(perm, K, sizeof *perm, by_diag_desc);
    }
    for (size_t i = 0; i < K; i++)
        for (size_t j = 0; j < K; j++) Hp[i * K + j] = H[perm[i] * K + perm[j]];
    /* W's columns in that order (a row at a time through U, free until step 4) */
    for (size_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < K; j++) U[j] = Wp[r * K + perm[j]];
        memcpy(Wp + r * K, U, K * sizeof *U);
    }
    /* 4. Damping, and the factor of the inverse. */
    double mean = 0.0;
    for (size_t j = 0; j < K; j++) mean += Hp[j * K + j];
    mean /= (double)K;
    for (size_t j = 0; j < K; j++) Hp[j * K + j] += o->damp * mean;
    if ((s = inverse_factor(Hp, K, U)) != LB_OK) goto done;

    /* 5. Columns left to right, in lazy blocks. Within a block the rows are
     * independent (each row's errors move only its own weights): one
     * parallel region per block. */
    for (size_t i1 = 0; i1 < K; i1 += bs) {
        size_t i2 = i1 + bs < K ? i1 + bs : K, cnt = i2 - i1;
#pragma omp parallel for schedule(static) if (rows * cnt * cnt > 262144)
        for (size_t r = 0; r < rows; r++) {
            double *w1 = W1 + r * cnt, *e1 = E1 + r * cnt;
            float *gtmp = tmp + r * g;
            memcpy(w1, Wp + r * K + i1, cnt * sizeof *w1);
            for (size_t i = 0; i < cnt; i++) {
                size_t j = i1 + i;
                if (grouped && !static_groups && j % g == 0) {
                    /* the group's scale, on W as the lazy updates left it (the spec was checked above) */
                    for (size_t c = 0; c < g; c++) gtmp[c] = (float)Wp[r * K + j + c];
                    lb_quant_fit_block(spec, gtmp, g, &rowp[r]);
                    steps[r * G + j / g] = rowp[r].d;
                }
                const lb_qblock_params *p = spec->gran == LB_QG_TENSOR ? &p0
                                            : static_groups            ? &gp[r * G + perm[j] / g]
                                                                       : &rowp[r];
                float code = lb_qblock_code(p, (float)w1[i]);
                float v = code * p->d + p->m;
                qc[r * K + j] = (int8_t)code;
                qv[r * K + j] = v;
                double err = (w1[i] - (double)v) / U[j * K + j];
                e1[i] = err;
                const double *urow = U + j * K + i1;
                for (size_t c = i + 1; c < cnt; c++) w1[c] -= err * urow[c];
            }
        }
        if (i2 < K)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(K - i2), (int)cnt, -1.0, E1,
                        (int)cnt, U + i1 * K + i2, (int)K, 1.0, Wp + i2, (int)K);
    }
    /* 6. Back to the original column order. */
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < K; j++) {
            codes[r * K + perm[j]] = qc[r * K + j];
            q[r * K + perm[j]] = qv[r * K + j];
        }
done:
    free(Wp);
    free(Hp);
    free(U);
    free(W1);
    free(E1);
    free(perm);
    free(tmp);
    free(rowp);
    free(gp);
    free(qc);
    free(qv);
    free(diag);
    return s;
}

lb_status lb_gptq_stored_form(const lb_qspec *spec, const int8_t *codes, const float *steps, size_t rows,
                              size_t cols, float *quantized, float *stored) {
    size_t n = rows * cols, nb = lb_quant_n_blocks(spec, rows, cols);
    if (spec->format == LB_QF_TERNARY) {
        lb_ptq_ternary_preimage(spec, codes, steps, rows, cols, stored);
        LB_TRY(lb_fake_quantize(spec, stored, quantized, rows, cols, NULL));
        for (size_t i = 0; i < n; i++)
            if ((quantized[i] > 0) - (quantized[i] < 0) != codes[i])
                return lb_error(LB_EINVAL, "gptq: the stored weights do not give code %d back at element %zu",
                                codes[i], i);
        return LB_OK;
    }
    /* INT: the values, with the steps as the layer's LSQ steps. The model
     * puts steps below LB_LSQ_MIN_STEP back onto it. */
    for (size_t b = 0; b < nb; b++)
        if (!(steps[b] >= LB_LSQ_MIN_STEP))
            return lb_error(LB_EINVAL,
                            "gptq: scale block %zu has step %g, below the smallest LSQ step %g (weights too small "
                            "for int%d; use --method rtn)",
                            b, (double)steps[b], (double)LB_LSQ_MIN_STEP, spec->bits);
    lb_qspec lsq = *spec;
    lsq.lsq = 1;
    for (size_t i = 0; i < n; i++) {
        size_t b = lb_quant_block_of(spec, rows, cols, i / cols, i % cols);
        stored[i] = (float)codes[i] * steps[b];
    }
    lb_lsq_forward(&lsq, stored, quantized, rows, cols, steps, 1.0f);
    if (memcmp(stored, quantized, n * sizeof *stored) != 0)
        return lb_error(LB_EINVAL, "gptq: LSQ does not give the quantized weights back");
    return LB_OK;
}

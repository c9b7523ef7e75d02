/* Round to nearest, and the form a checkpoint stores (ptq.h). */
#include <stdlib.h>
#include <string.h>

#include "ptq/ptq.h"
#include "quant/quantize.h"

void lb_ptq_ternary_preimage(const lb_qspec *spec, const int8_t *codes, const float *d, size_t rows, size_t cols,
                             float *stored) {
    size_t nb = lb_quant_n_blocks(spec, rows, cols);
    for (size_t b = 0; b < nb; b++) {
        size_t start, len, nnz = 0;
        lb_quant_block_span(spec, rows, cols, b, &start, &len);
        for (size_t i = start; i < start + len; i++) nnz += codes[i] != 0;
        /* mean|stored| = nnz·t/len = d: the block's γ comes back, and every
         * code ±1 becomes ±len/nnz ≥ 1 before the clamp, so it stays ±1. */
        float t = nnz ? (float)((double)d[b] * (double)len / (double)nnz) : 0.0f;
        for (size_t i = start; i < start + len; i++) stored[i] = (float)codes[i] * t;
    }
}

/* The codes of ternary values: their signs. */
static int same_signs(const float *a, const int8_t *codes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((a[i] > 0) - (a[i] < 0) != codes[i]) return 0;
    return 1;
}

lb_status lb_ptq_rtn(const lb_qspec *spec, const float *w, size_t rows, size_t cols, float *stored, float *quantized) {
    size_t n = rows * cols;
    char name[64];
    lb_qspec_format(spec, name, sizeof name);
    if (spec->format == LB_QF_TERNARY) {
        size_t nb = lb_quant_n_blocks(spec, rows, cols);
        int8_t *codes = malloc(n);
        float *d = malloc(nb * sizeof *d);
        lb_status s = codes && d ? lb_quantize(spec, w, rows, cols, codes, d, NULL) : lb_error(LB_ENOMEM, "rtn");
        if (s == LB_OK) {
            lb_ptq_ternary_preimage(spec, codes, d, rows, cols, stored);
            s = lb_fake_quantize(spec, stored, quantized, rows, cols, NULL);
        }
        if (s == LB_OK && !same_signs(quantized, codes, n))
            s = lb_error(LB_EINVAL, "rtn '%s': the stored weights do not give the rounded codes back", name);
        free(codes);
        free(d);
        return s;
    }
    /* Other specs: the dequantized weights. Where quantizing them again
     * would fit another scale (absmax INT: Qp·d need not give back the same
     * d), the weights at the block's extreme codes keep their values, so the
     * block's smallest and largest values, hence its scale, are the original
     * ones, and every weight keeps the code RTN chose. */
    LB_TRY(lb_fake_quantize(spec, w, quantized, rows, cols, NULL));
    memcpy(stored, quantized, n * sizeof *stored);
    float *again = malloc(n * sizeof *again);
    if (!again) return lb_error(LB_ENOMEM, "rtn");
    lb_status s = lb_fake_quantize(spec, stored, again, rows, cols, NULL);
    size_t nb = lb_quant_n_blocks(spec, rows, cols);
    for (size_t b = 0; b < nb && s == LB_OK; b++) {
        size_t start, len, lo, hi;
        lb_quant_block_span(spec, rows, cols, b, &start, &len);
        if (memcmp(again + start, quantized + start, len * sizeof *again) == 0) continue;
        lo = hi = start;
        for (size_t i = start; i < start + len; i++) {
            if (w[i] < w[lo]) lo = i;
            if (w[i] > w[hi]) hi = i;
        }
        /* and so do the weights that share their (extreme) codes: Qp·d can
         * exceed the max |w| it came from by an ulp */
        for (size_t i = start; i < start + len; i++)
            if (quantized[i] == quantized[lo] || quantized[i] == quantized[hi]) stored[i] = w[i];
    }
    if (s == LB_OK) s = lb_fake_quantize(spec, stored, again, rows, cols, NULL);
    if (s == LB_OK && memcmp(again, quantized, n * sizeof *again) != 0)
        s = lb_error(LB_EINVAL, "rtn '%s': no stored form gives the rounded weights back", name);
    free(again);
    return s;
}

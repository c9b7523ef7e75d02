/* GPTQ (Frantar et al. 2022, IST-DASLab/gptq's fasterquant) of one weight
 * matrix W [rows, cols] against the Hessian H = 2·XᵀX/n of its inputs:
 *
 *   1. per-tensor and per-row scales are fitted on W as given;
 *   2. dead inputs (H_jj = 0): H_jj = 1 and column j of W = 0;
 *   3. act-order: columns by decreasing H_jj (a stable sort), H permuted alike;
 *      group scales are then fitted on W before the updates, for the
 *      spec's contiguous groups of the original columns (AutoGPTQ's
 *      static_groups: the groups a checkpoint's spec can express);
 *   4. H_jj += damp·mean(diag H); U = the upper Cholesky factor of H⁻¹
 *      (LAPACK dpotrf, dpotri, dpotrf);
 *   5. columns left to right in lazy blocks of `block`: column j is
 *      quantized (a group's scales fitted when the group starts, on W as
 *      the lazy updates left it at the start of the current block), its
 *      error e = (w − q)/U_jj pushed into the block's later columns with
 *      U's row j, and at the end of a block all later columns get the
 *      block's errors times U's rows at once;
 *   6. codes and values go back to the original column order.
 *
 * All updates run in double; each value is rounded to float before the
 * quantizer sees it, whose element operation is the kernels'
 * (lb_quant_fit_block / lb_qblock_code). Specs: ternary and symmetric INTn,
 * per tensor, per row or per group (the group dividing cols). */
#ifndef LOWBIT_PTQ_GPTQ_H
#define LOWBIT_PTQ_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "quant/qspec.h"

typedef struct lb_gptq_options {
    double damp;     /* fraction of the mean diagonal added to it (0.01) */
    int block;       /* columns per lazy block (128) */
    int act_order;   /* 1: columns by decreasing diag(H) */
} lb_gptq_options;

/* W row-major float [rows, cols]; H double [cols, cols], symmetric, used as
 * scratch (overwritten). Out: codes [rows·cols], steps [n_blocks] (one per
 * scale block, laid out as lb_quant_block_span says), q [rows·cols] the
 * quantized values code·step. LB_EINVAL for an unsupported spec or a
 * Hessian that is not positive definite after damping (naming the column). */
lb_status lb_gptq(const lb_qspec *spec, const float *W, size_t rows, size_t cols, double *H,
                  const lb_gptq_options *o, int8_t *codes, float *steps, float *q);

/* The stored form of GPTQ's result (ptq.h): INT → q itself, read with the
 * steps as LSQ step sizes (the caller's spec gets lsq); ternary → the
 * preimage lb_ptq_ternary_preimage. `quantized` then receives what the
 * forward pass computes from `stored`; LB_EINVAL if the codes do not come
 * back. */
lb_status lb_gptq_stored_form(const lb_qspec *spec, const int8_t *codes, const float *steps, size_t rows,
                              size_t cols, float *quantized, float *stored);

#endif

/* Post-training quantization of a model's linear layers (lowbit quantize,
 * docs/ptq.md): round to nearest (RTN) or GPTQ, layer by layer, on
 * calibration batches of the model's own data.
 *
 * The result is a model whose weights are what a checkpoint stores so that
 * the forward pass, running the new weight spec on them, computes exactly the
 * quantized weights PTQ chose (lb_ptq_stored_form):
 *   - RTN of most specs: the dequantized weights; in scale blocks where
 *     re-quantizing them would fit another scale (absmax INT: Qp·d is not
 *     always the old max), the weights at the block's extreme codes keep
 *     their values, so the block keeps its scale and every code;
 *   - ternary (RTN and GPTQ): absmean's γ shrinks when a weight rounds to 0,
 *     so the stored weights are the codes times γ·len/nnz per scale block,
 *     whose absmean is γ again and whose codes are the chosen ones;
 *   - GPTQ INTn: its scales are fitted before the error feedback moves the
 *     weights, so they are not the absmax of the result; the spec gets `lsq`
 *     and the scales are stored as the layer's step sizes (weight_step), with
 *     the dequantized weights. */
#ifndef LOWBIT_PTQ_PTQ_H
#define LOWBIT_PTQ_PTQ_H

#include <stdint.h>

#include "data/batch.h"
#include "layers/model.h"
#include "quant/qspec.h"

typedef enum lb_ptq_method { LB_PTQ_RTN = 0, LB_PTQ_GPTQ, LB_PTQ_METHOD_COUNT } lb_ptq_method;
/* "rtn", "gptq" */
extern const char *const lb_ptq_method_names[LB_PTQ_METHOD_COUNT];

/* Which linear layers: bits of lb_ptq_options.kinds, named as model.quant's keys. */
enum { LB_PTQ_ATTN = 1, LB_PTQ_FFN = 2, LB_PTQ_HEAD = 4 };

typedef struct lb_ptq_options {
    lb_ptq_method method;
    lb_qspec spec;       /* the weight spec */
    int kinds;           /* LB_PTQ_ATTN | LB_PTQ_FFN | LB_PTQ_HEAD */
    int calib_batches;   /* calibration batches (B × T tokens each); 0: none (RTN only, no errors) */
    double damp;         /* GPTQ: damping as a fraction of the mean diagonal of H (0.01) */
    int block;           /* GPTQ: columns per lazy block (128) */
    int act_order;       /* GPTQ: columns by decreasing diag(H) */
} lb_ptq_options;

/* The defaults: RTN, attention and FFN, 8 calibration batches, damp 0.01, blocks of 128. */
lb_ptq_options lb_ptq_options_default(void);

/* One quantized layer. */
typedef struct lb_ptq_layer {
    int param;           /* index in the parameter table */
    double err_rtn;      /* ‖WX − ŴX‖² / n over the calibration tokens, Ŵ by RTN (NAN without calibration) */
    double err;          /* the same for the method's Ŵ (equal to err_rtn for RTN) */
    double seconds_rtn;  /* time of RTN on this layer */
    double seconds;      /* time of the method on this layer (without calibration) */
} lb_ptq_layer;

typedef struct lb_ptq_result {
    lb_qspec out_spec;   /* the spec the checkpoint records (spec, or spec with lsq for GPTQ INTn) */
    int n_layers;
    lb_ptq_layer *layers;      /* [n_layers], in table order */
    float **steps;             /* [n_params]: the weight_step values for out_spec with lsq, else NULL */
    double calib_seconds;      /* forward passes and Hessians */
    double method_seconds;     /* RTN or GPTQ over all layers */
    double rtn_seconds;        /* RTN over all layers (GPTQ also rounds every layer, for its report) */
} lb_ptq_result;
void lb_ptq_result_free(lb_ptq_result *r, int n_params);

/* Checks that `o` applies to `m`: a spec the method supports, shapes the
 * spec can take (naming the tensor), a head that is not the embedding.
 * LB_ECONFIG with a message otherwise. */
lb_status lb_ptq_check(const lb_model *m, const lb_ptq_options *o);

/* Quantizes the chosen layers of `m` in place, in table order, each block on
 * the calibration activations recomputed through the blocks already
 * quantized. Calibration batches are o->calib_batches batches of B rows of T
 * tokens drawn from `train` with the batcher's RNG under `seed` (the first
 * training batches of that seed). On return the layers hold their stored form
 * (see the top of this file) and *r says what was done. `progress` (may be
 * NULL) is called after each layer. */
lb_status lb_ptq_run(lb_model *m, const lb_ptq_options *o, const lb_tokens *train, int B, int T, uint64_t seed,
                     void (*progress)(void *ctx, const lb_model *m, const lb_ptq_layer *l), void *ctx,
                     lb_ptq_result *r);

/* The form a checkpoint stores for quantized weights q (rows × cols) whose
 * codes and per-block steps d are given, under `spec` (ternary or INT):
 * ternary → codes·d·len/nnz per block; INT → q itself (to be read with lsq
 * steps d). Writes `stored`. */
void lb_ptq_ternary_preimage(const lb_qspec *spec, const int8_t *codes, const float *d, size_t rows, size_t cols,
                             float *stored);

/* RTN of w (rows × cols) under `spec`: `quantized` receives the rounded
 * weights (lb_fake_quantize of w), `stored` what the checkpoint holds so that
 * the forward pass's quantizer gives `quantized` back: for ternary the
 * preimage above (same codes, the scale up to rounding, which `quantized`
 * then carries); for the others the rounded weights themselves, except that
 * in a block whose scale re-quantizing would change, the weights at its
 * extreme codes keep their original values. LB_EINVAL if that fails. */
lb_status lb_ptq_rtn(const lb_qspec *spec, const float *w, size_t rows, size_t cols, float *stored, float *quantized);

#endif

/* Optimizers over a plain list of fp32 parameters: AdamW, SGD with momentum,
 * Lion, with optimizer state kept in fp32, bf16, fp8 or block-wise int8.
 *
 *   lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
 *   cfg.groups[0].state = LB_STATE_INT8;                 // "decay" group
 *   int groups[n];  // per parameter: 0 = "decay", 1 = "no_decay" (norms, embeddings)
 *   lb_optim *opt = lb_optim_create(&cfg, model->param_list, groups, n);
 *   for (step = 1; ...; step++) {
 *       ... forward, backward (accum_steps times) into the parameters' .grad ...
 *       lb_optim_step_info info;
 *       LB_TRY(lb_optim_step(opt, lb_schedule_lr(&s, step), lb_schedule_wd(&s, step), step, &info));
 *       if (info.skipped) lb_warn("step %ld skipped: gradients not finite", step);
 *       lb_optim_zero_grad(opt);
 *   }
 *
 * A step, in order:
 *   1. weight gradients are rounded to cfg.grad_precision (quant/grad_round.h);
 *   2. the global gradient norm is computed (in double); when it is not
 *      finite the step is skipped: weights and state are untouched, the loss
 *      scale backs off, info.skipped = 1;
 *   3. gradients are divided by loss_scale · accum_steps and clipped to
 *      clip_norm by global norm;
 *   4. each parameter is updated with its group's lr_scale · lr and
 *      wd_scale · wd, its state decoded, updated in fp32 and re-encoded block
 *      by block (fused, in place, OpenMP-parallel, no allocation).
 * The fp32 parameters are the master weights: no second copy is kept.
 *
 * Weight decay is decoupled for all three optimizers: w ← w·(1 − lr·wd)
 * before the gradient update (AdamW, Loshchilov & Hutter; Lion, Chen et al.).
 * Formulas, state formats and the checkpoint layout: docs/optim.md. */
#ifndef LOWBIT_OPTIM_OPTIM_H
#define LOWBIT_OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "optim/codec.h"
#include "optim/loss_scale.h"
#include "quant/grad_round.h"

typedef enum lb_optim_type { LB_OPTIM_ADAMW = 0, LB_OPTIM_SGD, LB_OPTIM_LION, LB_OPTIM_COUNT } lb_optim_type;

/* Precision of optimizer state, chosen per parameter group. */
typedef enum lb_state_codec {
    LB_STATE_FP32 = 0,
    LB_STATE_BF16,   /* round-to-nearest-even, or stochastic with cfg.bf16_stochastic */
    LB_STATE_FP8,    /* first moment E4M3, second FP16 (or E5M2); per-tensor power-of-two scales */
    LB_STATE_INT8,   /* blocks of 256 with an fp32 absmax, codes into the dynamic maps */
    LB_STATE_COUNT
} lb_state_codec;

#define LB_OPTIM_MAX_GROUPS 8
#define LB_OPTIM_GROUP_NAME_MAX 32

typedef struct lb_optim_group {
    char name[LB_OPTIM_GROUP_NAME_MAX]; /* "decay", "no_decay", ... */
    float lr_scale;        /* multiplies the lr given to lb_optim_step (1) */
    float wd_scale;        /* multiplies the wd given to lb_optim_step (decay 1, no_decay 0) */
    lb_state_codec state;  /* state precision of this group's parameters */
} lb_optim_group;

typedef struct lb_optim_config {
    lb_optim_type type;
    float beta1, beta2;     /* AdamW (0.9, 0.95); Lion (0.9, 0.99) */
    float eps;              /* AdamW (1e-8) */
    float momentum;         /* SGD; 0 = plain SGD without state (0.9) */
    int nesterov;           /* SGD: Nesterov momentum */
    float clip_norm;        /* clip the global gradient norm to this; 0 = no clipping (1.0) */
    int accum_steps;        /* micro-batches summed into .grad per step; gradients are divided by it (1) */
    lb_grad_precision grad_precision; /* weight gradients before the update (fp32) */
    int bf16_stochastic;    /* bf16 state: stochastic instead of nearest-even rounding (0) */
    int fp8_v_e5m2;         /* fp8 state: second moment in E5M2 instead of FP16 (0) */
    int fp8_margin;         /* fp8 state: scale headroom in powers of two (0) */
    int int8_min_numel;     /* int8 state: smaller tensors keep fp32 state (4096) */
    float loss_scale;       /* initial loss scale (1) */
    int loss_scale_dynamic; /* 1: back off on overflow, grow after 2000 good steps (0) */
    uint64_t seed;          /* stochastic rounding (gradients, bf16 state) */
    int n_groups;
    lb_optim_group groups[LB_OPTIM_MAX_GROUPS];
} lb_optim_config;

/* Defaults for `type` (values in parentheses above) with two groups:
 * 0 "decay" (lr_scale 1, wd_scale 1, fp32 state) and
 * 1 "no_decay" (lr_scale 1, wd_scale 0, fp32 state). */
lb_optim_config lb_optim_config_default(lb_optim_type type);
/* LB_ECONFIG with a message naming the field when something is out of range. */
lb_status lb_optim_config_check(const lb_optim_config *cfg);
/* Index of the group called `name`, or -1. */
int lb_optim_group_find(const lb_optim_config *cfg, const char *name);

/* Names used in configs: "adamw" "sgd" "lion"; "fp32" "bf16" "fp8" "int8". */
extern const char *const lb_optim_type_names[LB_OPTIM_COUNT];
extern const char *const lb_state_codec_names[LB_STATE_COUNT];
const char *lb_optim_type_name(lb_optim_type t);
lb_status lb_optim_type_parse(const char *text, lb_optim_type *out);
lb_status lb_state_codec_parse(const char *text, lb_state_codec *out);

typedef struct lb_optim lb_optim;

/* An optimizer for `n_params` parameter tensors. The tensors are borrowed and
 * must outlive the optimizer; t->grad is read at each step (a parameter whose
 * grad is NULL is left alone). groups[i] is the group of params[i] (NULL: all
 * in group 0). All state is allocated here, zeroed. NULL on error. */
lb_optim *lb_optim_create(const lb_optim_config *cfg, lb_tensor *const *params, const int *groups,
                          int n_params);
void lb_optim_free(lb_optim *o);

typedef struct lb_optim_step_info {
    int skipped;        /* 1: gradients were not finite; nothing was updated */
    float grad_norm;    /* global norm after unscaling and accumulation division, before clipping */
    float clip_coef;    /* factor applied by clipping (1 when not clipped) */
    float loss_scale;   /* the loss scale for the next step */
} lb_optim_step_info;

/* One update. `step` counts updates from 1 (Adam's bias correction and the
 * stochastic-rounding counter use it); `lr` and `wd` are the scheduled values
 * before the group scales. `info` may be NULL. A skipped step returns LB_OK
 * with info->skipped set; errors are only for bad arguments. */
lb_status lb_optim_step(lb_optim *o, float lr, float wd, int64_t step, lb_optim_step_info *info);

/* Sets every parameter's gradient to zero (parallel). */
void lb_optim_zero_grad(lb_optim *o);

/* Sharded state (ZeRO-1, src/dist): an optimizer over this rank's share of
 * the parameters computes the sum of squares of ITS gradients; `fn` turns it
 * into the sum over all shards (the same value on every rank), so the norm,
 * clipping and the non-finite skip are global. NULL: the sum is the
 * optimizer's own. */
typedef lb_status (*lb_optim_sumsq_fn)(void *ctx, double *sumsq);
void lb_optim_set_sumsq_reduce(lb_optim *o, lb_optim_sumsq_fn fn, void *ctx);
/* The same shard: parameter i is parameter ids[i] of the whole list, which
 * keys its stochastic rounding (gradients, bf16 state), so the draws do not
 * depend on how the parameters are split. By default ids[i] = i. */
void lb_optim_set_param_ids(lb_optim *o, const int *ids);

/* The current loss scale: multiply the loss (or the gradient seed) by it. */
float lb_optim_loss_scale(const lb_optim *o);

/* The state precision a parameter actually uses (int8 groups keep fp32 for
 * tensors under int8_min_numel elements). */
lb_state_codec lb_optim_param_codec(const lb_optim *o, int param);

/* ---- state as named buffers, for checkpoints --------------------------------
 *
 * The optimizer's whole state is a list of buffers in their compact form,
 * named "<param name>/<what>":
 *   fp32   m, v                 f32 [param shape]
 *   bf16   m_bf16, v_bf16       u16 [param shape]   (bf16 bit patterns)
 *   fp8    m_codes              u8  [param shape]   (E4M3 bit patterns)
 *          v_codes              u16 (FP16) or u8 (E5M2) [param shape]
 *          m_scale, v_scale     f32 [1]
 *   int8   m_codes, v_codes     u8  [param shape]   (indices into the dynamic maps)
 *          m_absmax, v_absmax   f32 [ceil(n / 256)]
 * with "m"/"v" for AdamW, "m" for Lion and "momentum" for SGD, plus
 *   optim/loss_scale            f32 [1]
 *   optim/loss_scale_good_steps i32 [1]
 * A parameter without a name is called "param<i>". To save, write each
 * buffer's `data`; to restore, create an optimizer with the same config and
 * parameters, read each buffer into its `data` (the list, names, types and
 * shapes are identical), then call lb_optim_state_loaded(). The step count is
 * the caller's (it is passed to every lb_optim_step). */
#define LB_STATE_NAME_MAX 96

typedef struct lb_state_buffer {
    char name[LB_STATE_NAME_MAX];
    lb_dtype dtype;      /* LB_DT_F32, LB_DT_U8, LB_DT_U16 or LB_DT_I32 (core/dtype.h) */
    int ndim;
    int shape[LB_MAX_DIMS];
    size_t n;            /* elements (product of shape) */
    void *data;          /* owned by the optimizer */
} lb_state_buffer;

/* The buffers (owned by the optimizer, valid until lb_optim_free). */
const lb_state_buffer *lb_optim_buffers(const lb_optim *o, int *n_buffers);
/* The parameter (its index at creation) buffer `b` belongs to; -1 for the
 * optimizer's own scalars (optim/...). Buffers come in parameter order. */
int lb_optim_buffer_param(const lb_optim *o, int b);

/* Checks state read into the buffers: scales and absmax values finite and
 * non-negative (scales > 0), the loss scale > 0. LB_EFORMAT naming the
 * buffer otherwise. */
lb_status lb_optim_state_loaded(lb_optim *o);

/* ---- memory accounting --------------------------------------------------- */

typedef struct lb_optim_memory {
    size_t n_elements;   /* parameters (scalars) */
    size_t weight_bytes; /* fp32 weights */
    size_t master_bytes; /* separate master copy: 0, the fp32 weights are the master */
    size_t grad_bytes;   /* fp32 gradient buffers */
    size_t state_bytes;  /* the state buffers exactly as checkpointed */
    double weights, master, grads, state, total; /* bytes per parameter */
} lb_optim_memory;

lb_optim_memory lb_optim_bytes_per_param(const lb_optim *o);
/* The optimizer state lb_optim_create allocates for one parameter of n
 * elements in `group` under `cfg` (its slots' codes and scales), before
 * creating it: for sizing a run (trainer/memory.h). */
size_t lb_optim_param_state_bytes(const lb_optim_config *cfg, int group, size_t n);

/* One line for the start of training, e.g.
 * "memory per parameter: weights 4.00 B, master 0.00 B, gradients 4.00 B,
 *  optimizer state 2.03 B (int8), total 10.03 B; 1.2M parameters, 23.4 MiB".
 * Returns the length written, as snprintf does. */
int lb_optim_memory_format(const lb_optim *o, char *buf, size_t size);

#endif

/* AdamW, SGD with momentum and Lion over fp32 parameters, with state in
 * fp32 / bf16 / fp8 / block-wise int8 (see optim.h and docs/optim.md).
 *
 * Every update walks a tensor in chunks of LB_INT8_BLOCK elements: decode the
 * chunk's state into two small stack arrays, update weights and state in
 * fp32, encode the state back. Chunks are independent, so the loop over them
 * is the parallel loop; for int8 a chunk is exactly one absmax block. The fp8
 * per-tensor scale needs the amax of the NEW state before anything can be
 * encoded, so fp8 tensors take two passes: the first computes the new state
 * only to find its amax, the second recomputes it (cheaper than storing it)
 * and encodes with the new scale.
 *
 * The update, the gradient norm and the zeroing of gradients each run as ONE
 * parallel region over all parameters: their elements are laid end to end and
 * cut into one even share per thread, and a thread takes the units (update
 * chunks, batches of norm parts) whose first element lies in its share. Most tensors of
 * a small model are too small to be worth a region of their own; updated one
 * after another, each on one thread, they left the other threads idle. The
 * units and their arithmetic are those of a loop over one tensor, so every
 * result is the same bit for bit with any number of threads. */
#include "optim/optim.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/minifloat.h"
#include "quant/quantize.h"

#define CHUNK LB_INT8_BLOCK
#define PAR_MIN 32768 /* elements (of all parameters) below which a region runs on one thread */
#define NORM_PART 16384 /* elements per partial sum of the gradient norm */

/* One moment buffer of one parameter, in its compact form. */
typedef struct slot {
    lb_state_codec codec;
    int is_signed;        /* first moments are signed, second moments are not */
    lb_dtype store;       /* fp8: LB_DT_F8_E4M3, LB_DT_F8_E5M2 or LB_DT_F16 */
    void *data;           /* fp32: float[n]; bf16: uint16_t[n]; fp8/int8: codes[n] */
    float *aux;           /* fp8: the scale (1 float); int8: absmax[nblocks]; else NULL */
    float new_scale;      /* fp8: scale chosen in pass 1 of the current step */
    float amax;           /* fp8: the new state's amax, gathered from the threads in the first pass */
    uint64_t sr_id;       /* stochastic-rounding tensor id (bf16) */
} slot;

typedef struct pstate {
    lb_tensor *t;
    uint64_t id;          /* keys stochastic rounding (set_id) */
    int group;
    lb_state_codec codec; /* effective (int8 -> fp32 for small tensors) */
    int n_slots;          /* AdamW 2; Lion 1; SGD 1 with momentum, else 0 */
    slot s[2];
} pstate;

struct lb_optim {
    lb_optim_config cfg;
    int n_params;
    pstate *ps;
    lb_loss_scaler scaler;
    float map_signed[LB_DYNMAP_SIZE], map_unsigned[LB_DYNMAP_SIZE];
    int n_buffers;
    lb_state_buffer *buffers;
    int *buffer_param;    /* per buffer: its parameter, -1 for the loss scale's two */
    lb_optim_sumsq_fn sumsq_reduce;
    void *sumsq_ctx;
    double *partial;      /* per-part sums of squares of all gradients */
    size_t *part_off;     /* per parameter: its first part in `partial` */
    size_t n_parts;
    struct norm_part *parts; /* all parts, longest first (grad_sumsq's lanes) */
    size_t *parts_elem;   /* per entry of `parts`: the elements before it; [n_parts]: all */
    size_t *elem_off;     /* per parameter: its first element in the layout (layout()) */
    struct hyper *hyp;    /* per parameter: this step's hyper-parameters */
};

/* One part of the gradient norm: NORM_PART elements of a parameter (fewer at its end). */
typedef struct norm_part {
    int param;
    uint32_t index; /* the part's index within the parameter */
    uint32_t len;
} norm_part;

/* Hyper-parameters of one parameter's update at one step. */
typedef struct hyper {
    float lr, decay;      /* decay = 1 - lr·wd */
    float gmul;           /* unscale · 1/accum · clip */
    float b1, b2, eps;
    float step_size;      /* AdamW: lr / (1 - b1^t) */
    float inv_sqrt_bc2;   /* AdamW: 1 / sqrt(1 - b2^t) */
    uint64_t seed, step;
} hyper;

/* ---- names and config ------------------------------------------------------- */

const char *const lb_optim_type_names[] = {[LB_OPTIM_ADAMW] = "adamw", [LB_OPTIM_SGD] = "sgd", [LB_OPTIM_LION] = "lion"};
_Static_assert(sizeof lb_optim_type_names / sizeof lb_optim_type_names[0] == LB_OPTIM_COUNT,
               "optim/optim.c: one name per lb_optim_type");
const char *const lb_state_codec_names[] = {
    [LB_STATE_FP32] = "fp32", [LB_STATE_BF16] = "bf16", [LB_STATE_FP8] = "fp8", [LB_STATE_INT8] = "int8"};
_Static_assert(sizeof lb_state_codec_names / sizeof lb_state_codec_names[0] == LB_STATE_COUNT,
               "optim/optim.c: one name per lb_state_codec");

const char *lb_optim_type_name(lb_optim_type t) { return (unsigned)t < LB_OPTIM_COUNT ? lb_optim_type_names[t] : "?"; }

lb_status lb_optim_type_parse(const char *text, lb_optim_type *out) {
    for (int i = 0; i < LB_OPTIM_COUNT; i++)
        if (text && strcmp(text, lb_optim_type_names[i]) == 0) {
            *out = (lb_optim_type)i;
            return LB_OK;
        }
    return lb_error(LB_ECONFIG, "optimizer '%s': expected adamw, sgd or lion", text ? text : "(null)");
}

lb_status lb_state_codec_parse(const char *text, lb_state_codec *out) {
    for (int i = 0; i < LB_STATE_COUNT; i++)
        if (text && strcmp(text, lb_state_codec_names[i]) == 0) {
            *out = (lb_state_codec)i;
            return LB_OK;
        }
    return lb_error(LB_ECONFIG, "optimizer state '%s': expected fp32, bf16, fp8 or int8", text ? text : "(null)");
}

lb_optim_config lb_optim_config_default(lb_optim_type type) {
    lb_optim_config c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.beta1 = 0.9f;
    c.beta2 = type == LB_OPTIM_LION ? 0.99f : 0.95f;
    c.eps = 1e-8f;
    c.momentum = 0.9f;
    c.clip_norm = 1.0f;
    c.accum_steps = 1;
    c.grad_precision = LB_GRAD_FP32;
    c.int8_min_numel = 4096;
    c.loss_scale = 1.0f;
    c.n_groups = 2;
    snprintf(c.groups[0].name, sizeof c.groups[0].name, "decay");
    c.groups[0].lr_scale = 1.0f;
    c.groups[0].wd_scale = 1.0f;
    snprintf(c.groups[1].name, sizeof c.groups[1].name, "no_decay");
    c.groups[1].lr_scale = 1.0f;
    c.groups[1].wd_scale = 0.0f;
    return c;
}

int lb_optim_group_find(const lb_optim_config *cfg, const char *name) {
    for (int i = 0; i < cfg->n_groups; i++)
        if (strcmp(cfg->groups[i].name, name) == 0) return i;
    return -1;
}

static int in01(float x) { return x >= 0.0f && x < 1.0f; }

lb_status lb_optim_config_check(const lb_optim_config *c) {
    if ((unsigned)c->type >= LB_OPTIM_COUNT) return lb_error(LB_ECONFIG, "optimizer: unknown type %d", (int)c->type);
    if (c->type != LB_OPTIM_SGD && (!in01(c->beta1) || !in01(c->beta2)))
        return lb_error(LB_ECONFIG, "optimizer %s: betas must be in [0, 1), got (%g, %g)", lb_optim_type_name(c->type),
                        (double)c->beta1, (double)c->beta2);
    if (c->type == LB_OPTIM_ADAMW && !(c->eps > 0.0f))
        return lb_error(LB_ECONFIG, "optimizer adamw: eps must be > 0, got %g", (double)c->eps);
    if (c->type == LB_OPTIM_SGD && !in01(c->momentum))
        return lb_error(LB_ECONFIG, "optimizer sgd: momentum must be in [0, 1), got %g", (double)c->momentum);
    if (!(c->clip_norm >= 0.0f) || !isfinite(c->clip_norm))
        return lb_error(LB_ECONFIG, "optimizer: clip_norm must be >= 0 (0 = off), got %g", (double)c->clip_norm);
    if (c->accum_steps < 1) return lb_error(LB_ECONFIG, "optimizer: accum_steps must be >= 1, got %d", c->accum_steps);
    if ((unsigned)c->grad_precision > LB_GRAD_INT8)
        return lb_error(LB_ECONFIG, "optimizer: unknown gradient precision %d", (int)c->grad_precision);
    if (c->fp8_margin < 0 || c->fp8_margin > 16)
        return lb_error(LB_ECONFIG, "optimizer: fp8_margin must be in [0, 16], got %d", c->fp8_margin);
    if (c->int8_min_numel < 0) return lb_error(LB_ECONFIG, "optimizer: int8_min_numel must be >= 0");
    if (!(c->loss_scale > 0.0f) || !isfinite(c->loss_scale))
        return lb_error(LB_ECONFIG, "optimizer: loss_scale must be > 0, got %g", (double)c->loss_scale);
    if (c->n_groups < 1 || c->n_groups > LB_OPTIM_MAX_GROUPS)
        return lb_error(LB_ECONFIG, "optimizer: n_groups must be in [1, %d], got %d", LB_OPTIM_MAX_GROUPS, c->n_groups);
    for (int i = 0; i < c->n_groups; i++) {
        const lb_optim_group *g = &c->groups[i];
        if (!(g->lr_scale >= 0.0f) || !isfinite(g->lr_scale) || !(g->wd_scale >= 0.0f) || !isfinite(g->wd_scale))
            return lb_error(LB_ECONFIG, "optimizer group '%s': lr_scale and wd_scale must be finite and >= 0",
                            g->name);
        if ((unsigned)g->state >= LB_STATE_COUNT)
            return lb_error(LB_ECONFIG, "optimizer group '%s': unknown state precision %d", g->name, (int)g->state);
    }
    return LB_OK;
}

/* ---- creation ------------------------------------------------------------- */

static lb_status add_buffer(lb_optim *o, const char *pname, const char *what, lb_dtype dt, int ndim,
                            const int *shape, void *data) {
    o->buffer_param[o->n_buffers] = -1;
    lb_state_buffer *b = &o->buffers[o->n_buffers++];
    int k = snprintf(b->name, sizeof b->name, "%s/%s", pname, what);
    if (k < 0 || (size_t)k >= sizeof b->name)
        return lb_error(LB_EINVAL, "optimizer: state name '%s/%s' longer than %d characters", pname, what,
                        LB_STATE_NAME_MAX - 1);
    b->dtype = dt;
    b->ndim = ndim;
    b->n = 1;
    for (int i = 0; i < LB_MAX_DIMS; i++) {
        b->shape[i] = i < ndim ? shape[i] : 1;
        if (i < ndim) b->n *= (size_t)shape[i];
    }
    b->data = data;
    return LB_OK;
}

/* The state precision a parameter of n elements in `group` keeps: int8
 * falls back to fp32 below int8_min_numel. */
static lb_state_codec param_codec(const lb_optim_config *cfg, int group, size_t n) {
    lb_state_codec c = cfg->groups[group].state;
    return c == LB_STATE_INT8 && n < (size_t)cfg->int8_min_numel ? LB_STATE_FP32 : c;
}

/* Slots per parameter: AdamW m and v, Lion m, SGD its momentum (if any). */
static int param_slots(const lb_optim_config *cfg) {
    return cfg->type == LB_OPTIM_ADAMW ? 2 : cfg->type == LB_OPTIM_LION ? 1 : cfg->momentum > 0.0f;
}

/* What an fp8 slot stores its codes as: E4M3 for a signed slot, E5M2 or
 * FP16 for v. */
static lb_dtype fp8_store(const lb_optim_config *cfg, int is_signed) {
    return is_signed ? LB_DT_F8_E4M3 : (cfg->fp8_v_e5m2 ? LB_DT_F8_E5M2 : LB_DT_F16);
}

/* Bytes one slot of n elements allocates: its codes and its scales. */
static size_t slot_bytes(const lb_optim_config *cfg, lb_state_codec codec, int is_signed, size_t n) {
    switch (codec) {
    case LB_STATE_FP32: return n * sizeof(float);
    case LB_STATE_BF16: return n * sizeof(uint16_t);
    case LB_STATE_FP8: return n * (size_t)lb_dtype_info(fp8_store(cfg, is_signed))->block_bytes + sizeof(float);
    case LB_STATE_INT8: return n + lb_int8_nblocks(n) * sizeof(float);
    case LB_STATE_COUNT: break;
    }
    return 0;
}

size_t lb_optim_param_state_bytes(const lb_optim_config *cfg, int group, size_t n) {
    lb_state_codec codec = param_codec(cfg, group, n);
    int slots = param_slots(cfg);
    size_t bytes = 0;
    for (int k = 0; k < slots; k++) bytes += slot_bytes(cfg, codec, k == 0, n);
    return bytes;
}

static lb_status slot_oom(const char *pname, const char *what, size_t bytes) {
    return lb_error(LB_ENOMEM, "optimizer: cannot allocate %zu bytes (%.1f MiB) for the state '%s' of '%s'", bytes,
                    bytes / 1048576.0, what, pname);
}

/* Allocates one slot's buffers and registers them; `what` is "m", "v" or "momentum". */
static lb_status slot_init(lb_optim *o, pstate *p, slot *s, const char *pname, const char *what, int is_signed) {
    const lb_tensor *t = p->t;
    size_t n = t->n;
    char nm[48];
    s->codec = p->codec;
    s->is_signed = is_signed;
    int one = 1;
    switch (s->codec) {
    case LB_STATE_FP32:
        s->data = calloc(n, sizeof(float));
        if (!s->data) return slot_oom(pname, what, n * sizeof(float));
        return add_buffer(o, pname, what, LB_DT_F32, t->ndim, t->shape, s->data);
    case LB_STATE_BF16:
        s->data = calloc(n, sizeof(uint16_t)); /* 0x0000 is +0 */
        if (!s->data) return slot_oom(pname, what, n * sizeof(uint16_t));
        snprintf(nm, sizeof nm, "%s_bf16", what);
        return add_buffer(o, pname, nm, LB_DT_U16, t->ndim, t->shape, s->data);
    case LB_STATE_FP8: {
        s->store = fp8_store(&o->cfg, is_signed);
        int bytes = lb_dtype_info(s->store)->block_bytes;
        s->data = calloc(n, (size_t)bytes); /* code 0 is +0 in all three formats */
        s->aux = malloc(sizeof(float));
        if (!s->data || !s->aux) return slot_oom(pname, what, n * (size_t)bytes);
        s->aux[0] = 1.0f;
        s->new_scale = 1.0f;
        snprintf(nm, sizeof nm, "%s_codes", what);
        LB_TRY(add_buffer(o, pname, nm, bytes == 2 ? LB_DT_U16 : LB_DT_U8, t->ndim, t->shape, s->data));
        snprintf(nm, sizeof nm, "%s_scale", what);
        return add_buffer(o, pname, nm, LB_DT_F32, 1, &one, s->aux);
    }
    case LB_STATE_INT8: {
        size_t nb = lb_int8_nblocks(n);
        s->data = malloc(n);
        s->aux = calloc(nb, sizeof(float)); /* absmax 0: every element decodes to 0 */
        if (!s->data || !s->aux) return slot_oom(pname, what, n + nb * sizeof(float));
        memset(s->data, lb_dynmap_encode(is_signed ? o->map_signed : o->map_unsigned, 0.0f), n);
        int nbi = (int)nb;
        snprintf(nm, sizeof nm, "%s_codes", what);
        LB_TRY(add_buffer(o, pname, nm, LB_DT_U8, t->ndim, t->shape, s->data));
        snprintf(nm, sizeof nm, "%s_absmax", what);
        return add_buffer(o, pname, nm, LB_DT_F32, 1, &nbi, s->aux);
    }
    case LB_STATE_COUNT: break;
    }
    return lb_error(LB_EINVAL, "optimizer: bad state precision");
}

/* Stochastic-rounding ids: 3·id for the gradient, 3·id + 1 and + 2 for the slots. */
static void set_id(pstate *p, uint64_t id) {
    p->id = id;
    p->s[0].sr_id = LB_SR_ID_OPTIM + 3 * id + 1;
    p->s[1].sr_id = LB_SR_ID_OPTIM + 3 * id + 2;
}

static void norm_parts_order(lb_optim *o, lb_tensor *const *params);

lb_optim *lb_optim_create(const lb_optim_config *cfg, lb_tensor *const *params, const int *groups,
                          int n_params) {
    if (lb_optim_config_check(cfg) != LB_OK) return NULL;
    if (n_params < 1 || !params) {
        lb_error(LB_EINVAL, "optimizer: needs at least one parameter, got %d", n_params);
        return NULL;
    }
    for (int i = 0; i < n_params; i++) {
        const char *nm = params[i] && params[i]->name ? params[i]->name : "(unnamed)";
        if (!params[i] || !params[i]->data || params[i]->n == 0) {
            lb_error(LB_EINVAL, "optimizer: parameter %d '%s' has no data", i, nm);
            return NULL;
        }
        if (params[i]->n > (size_t)INT32_MAX) {
            lb_error(LB_EINVAL, "optimizer: parameter '%s' has more than 2^31 elements", nm);
            return NULL;
        }
        if (groups && (groups[i] < 0 || groups[i] >= cfg->n_groups)) {
            lb_error(LB_EINVAL, "optimizer: parameter '%s' in group %d, but there are %d groups", nm, groups[i],
                     cfg->n_groups);
            return NULL;
        }
    }
    lb_optim *o = calloc(1, sizeof *o);
    if (!o) {
        lb_error(LB_ENOMEM, "optimizer: out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    o->n_params = n_params;
    lb_dynmap_build(o->map_signed, 1);
    lb_dynmap_build(o->map_unsigned, 0);
    lb_loss_scaler_init(&o->scaler, cfg->loss_scale, cfg->loss_scale_dynamic);
    o->ps = calloc((size_t)n_params, sizeof *o->ps);
    o->part_off = malloc(((size_t)n_params + 1) * sizeof *o->part_off);
    o->elem_off = malloc(((size_t)n_params + 1) * sizeof *o->elem_off);
    o->hyp = malloc((size_t)n_params * sizeof *o->hyp);
    size_t nparts = 0;
    for (int i = 0; o->part_off && i < n_params; i++) {
        o->part_off[i] = nparts;
        nparts += (params[i]->n + NORM_PART - 1) / NORM_PART;
    }
    o->partial = malloc(nparts * sizeof(double));
    o->n_parts = nparts;
    o->parts = malloc(nparts * sizeof *o->parts);
    o->parts_elem = malloc((nparts + 1) * sizeof *o->parts_elem);
    /* at most 2 slots × 2 buffers per parameter, plus the loss scale's two */
    o->buffers = calloc((size_t)n_params * 4 + 2, sizeof *o->buffers);
    o->buffer_param = calloc((size_t)n_params * 4 + 2, sizeof *o->buffer_param);
    if (!o->ps || !o->buffers || !o->buffer_param || !o->partial || !o->part_off || !o->elem_off || !o->hyp ||
        !o->parts || !o->parts_elem) {
        lb_error(LB_ENOMEM, "optimizer: out of memory");
        lb_optim_free(o);
        return NULL;
    }
    norm_parts_order(o, params);
    for (int i = 0; i < n_params; i++) {
        pstate *p = &o->ps[i];
        p->t = params[i];
        p->group = groups ? groups[i] : 0;
        p->codec = param_codec(cfg, p->group, p->t->n);
        p->n_slots = param_slots(cfg);
        char pname[64];
        if (params[i]->name) snprintf(pname, sizeof pname, "%s", params[i]->name);
        else snprintf(pname, sizeof pname, "param%d", i);
        const char *what0 = cfg->type == LB_OPTIM_SGD ? "momentum" : "m";
        lb_status st = LB_OK;
        int first_buffer = o->n_buffers;
        if (p->n_slots >= 1) st = slot_init(o, p, &p->s[0], pname, what0, 1);
        if (st == LB_OK && p->n_slots == 2) st = slot_init(o, p, &p->s[1], pname, "v", 0);
        for (int b = first_buffer; b < o->n_buffers; b++) o->buffer_param[b] = i;
        set_id(p, (uint64_t)i);
        if (st != LB_OK) {
            lb_optim_free(o);
            return NULL;
        }
    }
    int one = 1;
    _Static_assert(sizeof(int) == 4, "good_steps is stored as i32");
    if (add_buffer(o, "optim", "loss_scale", LB_DT_F32, 1, &one, &o->scaler.scale) != LB_OK ||
        add_buffer(o, "optim", "loss_scale_good_steps", LB_DT_I32, 1, &one, &o->scaler.good_steps) != LB_OK) {
        lb_optim_free(o);
        return NULL;
    }
    return o;
}

void lb_optim_free(lb_optim *o) {
    if (!o) return;
    if (o->ps)
        for (int i = 0; i < o->n_params; i++)
            for (int k = 0; k < 2; k++) {
                free(o->ps[i].s[k].data);
                free(o->ps[i].s[k].aux);
            }
    free(o->ps);
    free(o->buffers);
    free(o->buffer_param);
    free(o->partial);
    free(o->part_off);
    free(o->parts);
    free(o->parts_elem);
    free(o->elem_off);
    free(o->hyp);
    free(o);
}

/* ---- state decode / encode of one chunk ------------------------------------------ */

static void slot_load(const lb_optim *o, const slot *s, size_t lo, size_t len, float *x) {
    switch (s->codec) {
    case LB_STATE_FP32: memcpy(x, (const float *)s->data + lo, len * sizeof(float)); break;
    case LB_STATE_BF16: {
        const uint16_t *h = (const uint16_t *)s->data + lo;
        for (size_t i = 0; i < len; i++) x[i] = lb_bf16_to_f32(h[i]);
        break;
    }
    case LB_STATE_FP8: {
        lb_scaled_decode(s->store, (const char *)s->data + lb_dtype_row_bytes(s->store, lo), len, 1.0f / s->aux[0], x);
        break;
    }
    case LB_STATE_INT8:
        lb_int8_block_decode((const uint8_t *)s->data + lo, len, s->aux[lo / CHUNK],
                             s->is_signed ? o->map_signed : o->map_unsigned, x);
        break;
    case LB_STATE_COUNT: break; /* refused by lb_optim_config_check */
    }
}

static void slot_store(const lb_optim *o, slot *s, size_t lo, size_t len, const float *x, const hyper *h) {
    switch (s->codec) {
    case LB_STATE_FP32: memcpy((float *)s->data + lo, x, len * sizeof(float)); break;
    case LB_STATE_BF16: {
        uint16_t *d = (uint16_t *)s->data + lo;
        if (o->cfg.bf16_stochastic) {
            uint32_t r[CHUNK];
            lb_rand_u32_fill(h->seed, LB_STREAM_STOCHASTIC + LB_SR_COUNTER(h->step, s->sr_id), lo, len, r);
            for (size_t i = 0; i < len; i++) d[i] = lb_bf16_from_f32_stochastic(x[i], r[i]);
        } else {
            for (size_t i = 0; i < len; i++) d[i] = lb_bf16_from_f32(x[i]);
        }
        break;
    }
    case LB_STATE_FP8:
        lb_scaled_encode(s->store, x, len, s->new_scale, (char *)s->data + lb_dtype_row_bytes(s->store, lo));
        break;
    case LB_STATE_INT8:
        s->aux[lo / CHUNK] = lb_int8_block_encode(x, len, s->is_signed ? o->map_signed : o->map_unsigned,
                                                  (uint8_t *)s->data + lo);
        break;
    case LB_STATE_COUNT: break; /* refused by lb_optim_config_check */
    }
}

/* ---- the update of one chunk ------------------------------------------------------
 * g: gradient (to be multiplied by h->gmul); w: weights (written when `apply`);
 * m, v: decoded state, updated in place. */
static void update_chunk(lb_optim_type type, int n_slots, int nesterov, const hyper *h, const float *restrict g,
                         float *restrict w, float *restrict m, float *restrict v, size_t len, int apply) {
    switch (type) {
    case LB_OPTIM_ADAMW:
        for (size_t i = 0; i < len; i++) {
            float gi = g[i] * h->gmul;
            m[i] = h->b1 * m[i] + (1.0f - h->b1) * gi;
            v[i] = h->b2 * v[i] + (1.0f - h->b2) * gi * gi;
            if (apply) {
                float denom = sqrtf(v[i]) * h->inv_sqrt_bc2 + h->eps;
                w[i] = w[i] * h->decay - h->step_size * m[i] / denom;
            }
        }
        break;
    case LB_OPTIM_SGD:
        for (size_t i = 0; i < len; i++) {
            float gi = g[i] * h->gmul, d = gi;
            if (n_slots) {
                m[i] = h->b1 * m[i] + gi; /* b1 holds the momentum */
                d = nesterov ? gi + h->b1 * m[i] : m[i];
            }
            if (apply) w[i] = w[i] * h->decay - h->lr * d;
        }
        break;
    case LB_OPTIM_LION:
        for (size_t i = 0; i < len; i++) {
            float gi = g[i] * h->gmul;
            float c = h->b1 * m[i] + (1.0f - h->b1) * gi;
            float sgn = (float)((c > 0.0f) - (c < 0.0f));
            if (apply) w[i] = w[i] * h->decay - h->lr * sgn;
            m[i] = h->b2 * m[i] + (1.0f - h->b2) * gi;
        }
        break;
    case LB_OPTIM_COUNT: break; /* refused by lb_optim_config_check */
    }
}

/* ---- one region over all parameters ---------------------------------------------- */

/* Lays the parameters that have gradients end to end (o->elem_off); returns
 * the number of elements. */
static size_t layout(lb_optim *o) {
    size_t total = 0;
    for (int i = 0; i < o->n_params; i++) {
        o->elem_off[i] = total;
        if (o->ps[i].t->grad) total += o->ps[i].t->n;
    }
    return total;
}

/* Inside a region: the calling thread's share [*a, *b) of `total` elements. */
static void thread_share(size_t total, size_t *a, size_t *b) {
    size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    *a = total * t / nt;
    *b = total * (t + 1) / nt;
}

/* The units [*u0, *u1) of `unit` elements of parameter i whose first element
 * lies in the share [a, b) of the layout. */
static void units_in(const lb_optim *o, int i, size_t unit, size_t a, size_t b, size_t *u0, size_t *u1) {
    size_t off = o->elem_off[i], nunits = (o->ps[i].t->n + unit - 1) / unit;
    size_t lo = a > off ? (a - off + unit - 1) / unit : 0, hi = b > off ? (b - off + unit - 1) / unit : 0;
    *u0 = lo < nunits ? lo : nunits;
    *u1 = hi < nunits ? hi : nunits;
}

/* ---- the update of one parameter's chunks ------------------------------------------ */

/* Updates chunks [c0, c1) of parameter p. For fp8 state, pass 0 only
 * measures the amax of the new state into am[0..1] (to choose the scales)
 * and pass 1 writes. */
static void update_chunks(const lb_optim *o, pstate *p, const hyper *h, size_t c0, size_t c1, int pass, float am[2]) {
    lb_tensor *t = p->t;
    size_t n = t->n;
    lb_optim_type type = o->cfg.type;
    int ns = p->n_slots, nesterov = o->cfg.nesterov, apply = pass == 1;
    /* fp32 state is updated where it lies; other codecs through a decoded copy */
    const int in_place = p->codec == LB_STATE_FP32 && apply;
    for (size_t c = c0; c < c1; c++) {
        size_t lo = c * CHUNK, len = lo + CHUNK <= n ? CHUNK : n - lo;
        float mbuf[CHUNK], vbuf[CHUNK];
        float *m = in_place && ns >= 1 ? (float *)p->s[0].data + lo : mbuf;
        float *v = in_place && ns >= 2 ? (float *)p->s[1].data + lo : vbuf;
        if (!in_place && ns >= 1) slot_load(o, &p->s[0], lo, len, m);
        if (!in_place && ns >= 2) slot_load(o, &p->s[1], lo, len, v);
        update_chunk(type, ns, nesterov, h, t->grad + lo, t->data + lo, m, v, len, apply);
        if (!apply) {
            for (size_t i = 0; i < len; i++) am[0] = fmaxf(am[0], fabsf(m[i]));
            if (ns >= 2)
                for (size_t i = 0; i < len; i++) am[1] = fmaxf(am[1], v[i]);
            continue;
        }
        if (in_place) continue;
        if (ns >= 1) slot_store(o, &p->s[0], lo, len, m, h);
        if (ns >= 2) slot_store(o, &p->s[1], lo, len, v, h);
    }
}

/* Whether parameter p's update takes the fp8 state's two passes: a gradient,
 * and moments kept in fp8 (which need the new amax before any encoding). */
static int two_passes(const pstate *p) { return p->t->grad && p->codec == LB_STATE_FP8 && p->n_slots > 0; }

/* Updates every parameter with a gradient, with o->hyp's hyper-parameters, in
 * one region. fp8 state: pass 0 over the fp8 parameters gathers each one's
 * amax from all threads (a maximum: the same in any order), one thread
 * chooses the scales, then pass 1 updates everything. */
static void update_all(lb_optim *o) {
    size_t total = layout(o);
    int any_fp8 = 0;
    for (int i = 0; i < o->n_params; i++) {
        pstate *p = &o->ps[i];
        if (!two_passes(p)) continue;
        any_fp8 = 1;
        p->s[0].amax = p->s[1].amax = 0.0f;
    }
#pragma omp parallel if (total >= PAR_MIN)
    {
        size_t a, b, c0, c1;
        thread_share(total, &a, &b);
        if (any_fp8) {
            for (int i = 0; i < o->n_params; i++) {
                pstate *p = &o->ps[i];
                if (!two_passes(p)) continue;
                float am[2] = {0.0f, 0.0f};
                units_in(o, i, CHUNK, a, b, &c0, &c1);
                update_chunks(o, p, &o->hyp[i], c0, c1, 0, am);
#pragma omp critical(lb_optim_amax)
                for (int k = 0; k < p->n_slots; k++) p->s[k].amax = fmaxf(p->s[k].amax, am[k]);
            }
#pragma omp barrier
#pragma omp single
            for (int i = 0; i < o->n_params; i++) { /* choose this step's scales from the new amax */
                pstate *p = &o->ps[i];
                if (!two_passes(p)) continue;
                for (int k = 0; k < p->n_slots; k++) {
                    slot *s = &p->s[k];
                    s->new_scale = lb_pow2_scale(s->amax, (float)lb_dtype_info(s->store)->max, o->cfg.fp8_margin,
                                                 s->aux[0]);
                }
            }
        }
        for (int i = 0; i < o->n_params; i++) {
            if (!o->ps[i].t->grad) continue;
            units_in(o, i, CHUNK, a, b, &c0, &c1);
            update_chunks(o, &o->ps[i], &o->hyp[i], c0, c1, 1, NULL);
        }
    }
    for (int i = 0; i < o->n_params; i++) {
        pstate *p = &o->ps[i];
        if (two_passes(p))
            for (int k = 0; k < p->n_slots; k++) p->s[k].aux[0] = p->s[k].new_scale;
    }
}

/* ---- the step ------------------------------------------------------------------- */

/* Sum of squares in double. Fixed parts of NORM_PART elements are each
 * summed as one chain of additions in element order, and the part sums added
 * in a fixed order, so the norm (and hence clipping) is the same bit for bit
 * with any number of threads. A chain waits for its previous addition, so
 * NORM_LANES parts are summed side by side (the same chains, interleaved)
 * and their additions overlap. Which parts share a batch does not change a
 * bit, so the parts of all parameters are batched longest first
 * (norm_parts_order): a batch's chains have (nearly) the same length, and
 * small tensors (a norm's 128 elements) are summed together. */
#define NORM_LANES 8

static int norm_part_longer(const void *pa, const void *pb) {
    const norm_part *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    if (a->param != b->param) return a->param < b->param ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Fills o->parts (longest first) and o->parts_elem. */
static void norm_parts_order(lb_optim *o, lb_tensor *const *params) {
    size_t k = 0;
    for (int i = 0; i < o->n_params; i++)
        for (size_t lo = 0, q = 0; lo < params[i]->n; lo += NORM_PART, q++) {
            size_t len = params[i]->n - lo < NORM_PART ? params[i]->n - lo : NORM_PART;
            o->parts[k++] = (norm_part){.param = i, .index = (uint32_t)q, .len = (uint32_t)len};
        }
    qsort(o->parts, o->n_parts, sizeof *o->parts, norm_part_longer);
    o->parts_elem[0] = 0;
    for (size_t j = 0; j < o->n_parts; j++) o->parts_elem[j + 1] = o->parts_elem[j] + o->parts[j].len;
}

/* The part sums of o->parts[j0 .. j0 + NORM_LANES) (fewer at the end), side by side. */
static void sumsq_batch(lb_optim *o, size_t j0) {
    const float *x[NORM_LANES];
    size_t len[NORM_LANES], m = NORM_PART;
    double *out[NORM_LANES];
    int k = 0; /* lanes in use */
    for (size_t j = j0; j < j0 + NORM_LANES && j < o->n_parts; j++) {
        const norm_part *pt = &o->parts[j];
        const lb_tensor *t = o->ps[pt->param].t;
        if (!t->grad) continue;
        x[k] = t->grad + (size_t)pt->index * NORM_PART;
        len[k] = pt->len;
        out[k] = o->partial + o->part_off[pt->param] + pt->index;
        m = len[k] < m ? len[k] : m;
        k++;
    }
    if (k == 0) return;
    for (int j = k; j < NORM_LANES; j++) x[j] = x[0]; /* idle lanes re-read lane 0 */
    double s[NORM_LANES] = {0};
    for (size_t i = 0; i < m; i++)
        for (int j = 0; j < NORM_LANES; j++) {
            double v = (double)x[j][i];
            s[j] += v * v;
        }
    for (int j = 0; j < k; j++) { /* each chain goes on alone past the shortest */
        double sj = s[j];
        for (size_t i = m; i < len[j]; i++) sj += (double)x[j][i] * (double)x[j][i];
        *out[j] = sj;
    }
}

/* The sum of squares of all gradients: the part sums in one region, then,
 * per parameter in order, its parts in order. */
static double grad_sumsq(lb_optim *o) {
    size_t total = o->parts_elem[o->n_parts], nbatches = (o->n_parts + NORM_LANES - 1) / NORM_LANES;
#pragma omp parallel if (total >= PAR_MIN)
    {
        size_t a, b;
        thread_share(total, &a, &b);
        for (size_t q = 0; q < nbatches; q++) {
            size_t e = o->parts_elem[q * NORM_LANES];
            if (e >= a && e < b) sumsq_batch(o, q * NORM_LANES);
        }
    }
    double sumsq = 0.0;
    for (int i = 0; i < o->n_params; i++) {
        const lb_tensor *t = o->ps[i].t;
        if (!t->grad) continue;
        const double *partial = o->partial + o->part_off[i];
        double s = 0.0;
        for (size_t p = 0; p < (t->n + NORM_PART - 1) / NORM_PART; p++) s += partial[p];
        sumsq += s;
    }
    return sumsq;
}

lb_status lb_optim_step(lb_optim *o, float lr, float wd, int64_t step, lb_optim_step_info *info) {
    if (step < 1) return lb_error(LB_EINVAL, "optimizer step: step counts from 1, got %lld", (long long)step);
    if (!(lr >= 0.0f) || !isfinite(lr) || !(wd >= 0.0f) || !isfinite(wd))
        return lb_error(LB_EINVAL, "optimizer step %lld: lr and wd must be finite and >= 0, got %g and %g",
                        (long long)step, (double)lr, (double)wd);
    const lb_optim_config *cfg = &o->cfg;

    /* 1. low-bit weight gradients */
    if (cfg->grad_precision != LB_GRAD_FP32)
        for (int i = 0; i < o->n_params; i++) {
            lb_tensor *t = o->ps[i].t;
            if (!t->grad) continue;
            LB_TRY(lb_quantize_grad_inplace(t->grad, lb_tensor_rows(t), (size_t)lb_tensor_cols(t), cfg->grad_precision,
                                            cfg->seed, LB_SR_COUNTER(step, LB_SR_ID_OPTIM + 3 * o->ps[i].id)));
        }

    /* 2. global norm; a non-finite element makes the double sum non-finite */
    double sumsq = grad_sumsq(o);
    if (o->sumsq_reduce) LB_TRY(o->sumsq_reduce(o->sumsq_ctx, &sumsq));
    float scale = o->scaler.scale; /* the scale these gradients were made with */
    int skipped = lb_loss_scaler_update(&o->scaler, isfinite(sumsq));
    double unscale = 1.0 / ((double)scale * cfg->accum_steps);
    double norm = sqrt(sumsq) * unscale;
    if (info) {
        info->skipped = skipped;
        info->grad_norm = (float)norm;
        info->clip_coef = 1.0f;
        info->loss_scale = o->scaler.scale;
    }
    if (skipped) return LB_OK;

    /* 3. clipping by global norm */
    double coef = 1.0;
    if (cfg->clip_norm > 0.0f && norm > cfg->clip_norm) coef = cfg->clip_norm / (norm + 1e-6);
    if (info) info->clip_coef = (float)coef;

    /* 4. the updates */
    double bc1 = 1.0 - pow(cfg->beta1, (double)step), bc2 = 1.0 - pow(cfg->beta2, (double)step);
    for (int i = 0; i < o->n_params; i++) {
        pstate *p = &o->ps[i];
        if (!p->t->grad) continue;
        const lb_optim_group *gr = &cfg->groups[p->group];
        hyper h;
        h.lr = lr * gr->lr_scale;
        h.decay = 1.0f - h.lr * (wd * gr->wd_scale);
        h.gmul = (float)(unscale * coef);
        h.b1 = cfg->type == LB_OPTIM_SGD ? cfg->momentum : cfg->beta1;
        h.b2 = cfg->beta2;
        h.eps = cfg->eps;
        h.step_size = (float)(h.lr / bc1);
        h.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
        h.seed = cfg->seed;
        h.step = (uint64_t)step;
        o->hyp[i] = h;
    }
    update_all(o);
    return LB_OK;
}

void lb_optim_zero_grad(lb_optim *o) {
    size_t total = layout(o);
#pragma omp parallel if (total >= PAR_MIN)
    {
        size_t a, b;
        thread_share(total, &a, &b);
        for (int i = 0; i < o->n_params; i++) {
            lb_tensor *t = o->ps[i].t;
            size_t lo = o->elem_off[i], hi = lo + t->n;
            if (!t->grad || hi <= a || lo >= b) continue;
            size_t j0 = a > lo ? a - lo : 0, j1 = (b < hi ? b : hi) - lo;
            memset(t->grad + j0, 0, (j1 - j0) * sizeof(float));
        }
    }
}

float lb_optim_loss_scale(const lb_optim *o) { return o->scaler.scale; }

void lb_optim_set_param_ids(lb_optim *o, const int *ids) {
    for (int i = 0; i < o->n_params; i++) set_id(&o->ps[i], (uint64_t)ids[i]);
}

void lb_optim_set_sumsq_reduce(lb_optim *o, lb_optim_sumsq_fn fn, void *ctx) {
    o->sumsq_reduce = fn;
    o->sumsq_ctx = ctx;
}

lb_state_codec lb_optim_param_codec(const lb_optim *o, int param) {
    return param >= 0 && param < o->n_params ? o->ps[param].codec : LB_STATE_FP32;
}

/* ---- checkpoint buffers -------------------------------------------------------------- */

const lb_state_buffer *lb_optim_buffers(const lb_optim *o, int *n_buffers) {
    *n_buffers = o->n_buffers;
    return o->buffers;
}

int lb_optim_buffer_param(const lb_optim *o, int b) { return b >= 0 && b < o->n_buffers ? o->buffer_param[b] : -1; }

lb_status lb_optim_state_loaded(lb_optim *o) {
    for (int i = 0; i < o->n_params; i++) {
        pstate *p = &o->ps[i];
        for (int k = 0; k < p->n_slots; k++) {
            slot *s = &p->s[k];
            if (s->codec == LB_STATE_FP8) {
                if (!(s->aux[0] > 0.0f) || !isfinite(s->aux[0]))
                    return lb_error(LB_EFORMAT, "optimizer state of '%s': slot %d scale %g is not a positive number",
                                    p->t->name ? p->t->name : "?", k, (double)s->aux[0]);
                s->new_scale = s->aux[0];
            } else if (s->codec == LB_STATE_INT8) {
                size_t nb = lb_int8_nblocks(p->t->n);
                for (size_t b = 0; b < nb; b++)
                    if (!(s->aux[b] >= 0.0f) || !isfinite(s->aux[b]))
                        return lb_error(LB_EFORMAT, "optimizer state of '%s': slot %d absmax[%zu] = %g is not >= 0",
                                        p->t->name ? p->t->name : "?", k, b, (double)s->aux[b]);
            }
        }
    }
    if (!(o->scaler.scale > 0.0f) || !isfinite(o->scaler.scale))
        return lb_error(LB_EFORMAT, "optimizer state: optim/loss_scale %g is not a positive number",
                        (double)o->scaler.scale);
    if (o->scaler.good_steps < 0)
        return lb_error(LB_EFORMAT, "optimizer state: optim/loss_scale_good_steps %d is negative", o->scaler.good_steps);
    return LB_OK;
}

/* ---- memory accounting ----------------------------------------------------------------- */

lb_optim_memory lb_optim_bytes_per_param(const lb_optim *o) {
    lb_optim_memory m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < o->n_params; i++) m.n_elements += o->ps[i].t->n;
    m.weight_bytes = m.n_elements * sizeof(float);
    m.master_bytes = 0;
    m.grad_bytes = m.n_elements * sizeof(float);
    /* every buffer but the two loss-scale scalars belongs to a parameter */
    for (int b = 0; b < o->n_buffers - 2; b++) m.state_bytes += lb_dtype_row_bytes(o->buffers[b].dtype, o->buffers[b].n);
    double n = (double)m.n_elements;
    m.weights = (double)m.weight_bytes / n;
    m.master = (double)m.master_bytes / n;
    m.grads = (double)m.grad_bytes / n;
    m.state = (double)m.state_bytes / n;
    m.total = m.weights + m.master + m.grads + m.state;
    return m;
}

int lb_optim_memory_format(const lb_optim *o, char *buf, size_t size) {
    lb_optim_memory m = lb_optim_bytes_per_param(o);
    /* the codecs in use, e.g. "int8+fp32" when small tensors fell back */
    char codecs[40] = "";
    int seen[LB_STATE_COUNT] = {0};
    for (int i = 0; i < o->n_params; i++) seen[o->ps[i].codec] = 1;
    for (int c = 0; c < LB_STATE_COUNT; c++)
        if (seen[c]) {
            size_t l = strlen(codecs);
            snprintf(codecs + l, sizeof codecs - l, "%s%s", l ? "+" : "", lb_state_codec_names[c]);
        }
    double total_bytes = (double)(m.weight_bytes + m.master_bytes + m.grad_bytes + m.state_bytes);
    return snprintf(buf, size,
                    "memory per parameter: weights %.2f B, master %.2f B, gradients %.2f B, "
                    "optimizer state %.2f B (%s %s), total %.2f B; %.2fM parameters, %.1f MiB",
                    m.weights, m.master, m.grads, m.state, lb_optim_type_name(o->cfg.type), codecs, m.total,
                    (double)m.n_elements / 1e6, total_bytes / (1024.0 * 1024.0));
}

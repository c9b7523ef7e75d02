/* Tests of the optimizers (src/optim/optim.h): single steps against a
 * double-precision reference written here, low-precision states on a
 * least-squares problem, bit-exact resume through the state buffers, skipped
 * steps on non-finite gradients, thread independence and memory accounting. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"
#include "optim/schedule.h"
#include "testutil.h"

static lb_tensor *param(const char *name, int ndim, const int *shape, uint64_t seed) {
    lb_tensor *t = lb_tensor_alloc(ndim, shape, 1);
    assert_non_null(t);
    t->name = name;
    tu_fill_uniform(t, seed, -1.0f, 1.0f);
    return t;
}

static lb_tensor *clone(const lb_tensor *a) {
    lb_tensor *t = lb_tensor_alloc(a->ndim, a->shape, 1);
    assert_non_null(t);
    t->name = a->name;
    memcpy(t->data, a->data, a->n * sizeof(float));
    return t;
}

/* ---- single steps against double-precision references --------------------------------- */

typedef struct ref_state {
    double *w, *m, *v;
} ref_state;

static void ref_init(ref_state *r, const lb_tensor *t) {
    r->w = calloc(t->n, sizeof(double));
    r->m = calloc(t->n, sizeof(double));
    r->v = calloc(t->n, sizeof(double));
    for (size_t i = 0; i < t->n; i++) r->w[i] = t->data[i];
}

static void ref_free(ref_state *r) {
    free(r->w);
    free(r->m);
    free(r->v);
}

/* The textbook updates (Loshchilov & Hutter; PyTorch SGD; Chen et al. 2023),
 * all with decoupled weight decay w <- w (1 - lr wd). */
static void ref_step(lb_optim_type type, ref_state *r, const double *g, size_t n, double lr, double wd, double b1,
                     double b2, double eps, double mu, int nesterov, int t) {
    for (size_t i = 0; i < n; i++) {
        double w = r->w[i] * (1.0 - lr * wd);
        if (type == LB_OPTIM_ADAMW) {
            r->m[i] = b1 * r->m[i] + (1 - b1) * g[i];
            r->v[i] = b2 * r->v[i] + (1 - b2) * g[i] * g[i];
            double mhat = r->m[i] / (1 - pow(b1, t)), vhat = r->v[i] / (1 - pow(b2, t));
            w -= lr * mhat / (sqrt(vhat) + eps);
        } else if (type == LB_OPTIM_SGD) {
            r->m[i] = mu * r->m[i] + g[i];
            w -= lr * (nesterov ? g[i] + mu * r->m[i] : r->m[i]);
        } else {
            double c = b1 * r->m[i] + (1 - b1) * g[i];
            w -= lr * (double)((c > 0) - (c < 0));
            r->m[i] = b2 * r->m[i] + (1 - b2) * g[i];
        }
        r->w[i] = w;
    }
}

static void check_against_reference(lb_optim_type type, int nesterov) {
    int sa[2] = {8, 16}, sb[1] = {16};
    lb_tensor *a = param("a", 2, sa, 1), *b = param("b", 1, sb, 2);
    lb_tensor *ps[2] = {a, b};
    int groups[2] = {0, 1};
    lb_optim_config cfg = lb_optim_config_default(type);
    cfg.nesterov = nesterov;
    cfg.clip_norm = 0.0f;
    cfg.accum_steps = 2;       /* gradients arrive as the sum of 2 micro-batches */
    cfg.loss_scale = 4.0f;     /* ... of a loss scaled by 4 */
    cfg.eps = 1e-6f;
    cfg.groups[1].lr_scale = 0.5f;
    cfg.groups[1].wd_scale = 0.0f;
    lb_optim *o = lb_optim_create(&cfg, ps, groups, 2);
    assert_non_null(o);
    ref_state ra, rb;
    ref_init(&ra, a);
    ref_init(&rb, b);
    double ga[128], gb[16];
    for (int t = 1; t <= 4; t++) {
        double lr = 0.01 * t, wd = 0.1;
        for (int i = 0; i < 128; i++) ga[i] = lb_rand_uniform(7, (uint64_t)t, (uint64_t)i) - 0.5;
        for (int i = 0; i < 16; i++) gb[i] = 3.0 * (lb_rand_uniform(8, (uint64_t)t, (uint64_t)i) - 0.5);
        for (int i = 0; i < 128; i++) a->grad[i] = (float)(ga[i] * 8.0);
        for (int i = 0; i < 16; i++) b->grad[i] = (float)(gb[i] * 8.0);
        lb_optim_step_info info;
        assert_int_equal(lb_optim_step(o, (float)lr, (float)wd, t, &info), LB_OK);
        assert_int_equal(info.skipped, 0);
        ref_step(type, &ra, ga, 128, lr, wd, cfg.beta1, cfg.beta2, cfg.eps, cfg.momentum, nesterov, t);
        ref_step(type, &rb, gb, 16, lr * 0.5, 0.0, cfg.beta1, cfg.beta2, cfg.eps, cfg.momentum, nesterov, t);
        for (int i = 0; i < 128; i++) assert_float_equal(a->data[i], ra.w[i], 2e-6);
        for (int i = 0; i < 16; i++) assert_float_equal(b->data[i], rb.w[i], 2e-6);
        lb_optim_zero_grad(o);
        assert_float_equal(a->grad[5], 0.0f, 0.0f);
    }
    ref_free(&ra);
    ref_free(&rb);
    lb_optim_free(o);
    lb_tensor_free(a);
    lb_tensor_free(b);
}

static void test_adamw_matches_reference(void **state) {
    (void)state;
    check_against_reference(LB_OPTIM_ADAMW, 0);
}

static void test_sgd_matches_reference(void **state) {
    (void)state;
    check_against_reference(LB_OPTIM_SGD, 0);
    check_against_reference(LB_OPTIM_SGD, 1);
}

static void test_lion_matches_reference(void **state) {
    (void)state;
    check_against_reference(LB_OPTIM_LION, 0);
}

static void test_clipping_by_global_norm(void **state) {
    (void)state;
    int s3[1] = {3}, s1[1] = {1};
    lb_tensor *a = param("a", 1, s3, 3), *b = param("b", 1, s1, 4);
    lb_tensor *ps[2] = {a, b};
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_SGD);
    cfg.momentum = 0.0f; /* plain SGD: w -= lr g */
    cfg.clip_norm = 1.0f;
    lb_optim *o = lb_optim_create(&cfg, ps, NULL, 2);
    assert_non_null(o);
    float wa0 = a->data[0], wb0 = b->data[0], wa1 = a->data[1];
    a->grad[0] = 3.0f; a->grad[1] = 0.0f; a->grad[2] = 0.0f;
    b->grad[0] = 4.0f; /* global norm 5, over both tensors */
    lb_optim_step_info info;
    assert_int_equal(lb_optim_step(o, 0.1f, 0.0f, 1, &info), LB_OK);
    assert_float_equal(info.grad_norm, 5.0f, 1e-6f);
    assert_float_equal(info.clip_coef, 0.2f, 1e-6f);
    assert_float_equal(a->data[0], wa0 - 0.1f * 0.6f, 1e-6f);
    assert_float_equal(b->data[0], wb0 - 0.1f * 0.8f, 1e-6f);
    assert_float_equal(a->data[1], wa1, 0.0f);
    int n;
    lb_optim_buffers(o, &n);
    assert_int_equal(n, 2); /* no momentum: only the loss-scale scalars */
    lb_optim_free(o);
    lb_tensor_free(a);
    lb_tensor_free(b);
}

/* The global norm of tensors that span many of the norm's parts (16384
 * elements each, summed eight side by side in src/optim/optim.c, longest
 * first across tensors): whole parts, partial last parts of several lengths,
 * small tensors; against the sum written plainly in the same order, on 1, 2
 * and 3 threads. An element counted twice or missed would show. */
static void test_gradient_norm_of_large_tensors(void **state) {
    (void)state;
    enum { N = 8 };
    const int part = 16384, sizes[N] = {8 * 16384, 17 * 16384 + 5, 100, 16384, 8192, 3 * 16384, 128, 8192 + 3};
    lb_tensor *ps[N];
    for (int k = 0; k < N; k++) {
        ps[k] = param("p", 1, &sizes[k], 10 + (uint64_t)k);
        for (int i = 0; i < sizes[k]; i++) ps[k]->grad[i] = lb_rand_uniform(20, (uint64_t)k, (uint64_t)i) - 0.5f;
    }
    double total = 0.0;
    for (int k = 0; k < N; k++)
        for (int lo = 0; lo < sizes[k]; lo += part) {
            double s = 0.0;
            for (int i = lo; i < sizes[k] && i < lo + part; i++) s += (double)ps[k]->grad[i] * (double)ps[k]->grad[i];
            total += s;
        }
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_SGD);
        lb_optim *o = lb_optim_create(&cfg, ps, NULL, N);
        assert_non_null(o);
        lb_optim_step_info info;
        assert_int_equal(lb_optim_step(o, 0.0f, 0.0f, 1, &info), LB_OK);
        assert_true(info.grad_norm == (float)sqrt(total));
        lb_optim_free(o);
    }
    omp_set_num_threads(saved);
    for (int k = 0; k < N; k++) lb_tensor_free(ps[k]);
}

/* ---- least squares with low-precision states ---------------------------------------------- */

enum { LS_N = 256, LS_IN = 64, LS_OUT = 128, LS_STEPS = 120 };

typedef struct lsq {
    float *x, *y, *r; /* inputs [N, IN], targets [N, OUT], residual [N, OUT] */
} lsq;

static void lsq_init(lsq *p) {
    p->x = malloc(LS_N * LS_IN * sizeof(float));
    p->y = malloc(LS_N * LS_OUT * sizeof(float));
    p->r = malloc(LS_N * LS_OUT * sizeof(float));
    float *wstar = malloc(LS_IN * LS_OUT * sizeof(float));
    /* columns of very different scale: an ill-conditioned problem, where
     * the per-coordinate scaling of Adam (and errors in its state) matter */
    for (int i = 0; i < LS_N * LS_IN; i++)
        p->x[i] = (lb_rand_uniform(11, 1, (uint64_t)i) * 2 - 1) * powf(10.0f, -1.5f * (float)(i % LS_IN) / LS_IN);
    for (int i = 0; i < LS_IN * LS_OUT; i++) wstar[i] = lb_rand_uniform(11, 2, (uint64_t)i) * 2 - 1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, LS_N, LS_OUT, LS_IN, 1.0f, p->x, LS_IN, wstar, LS_OUT,
                0.0f, p->y, LS_OUT);
    free(wstar);
}

static void lsq_free(lsq *p) {
    free(p->x);
    free(p->y);
    free(p->r);
}

/* L = ||X W - Y||² / 2N; grad = Xᵀ (X W - Y) / N. Returns L. */
static double lsq_loss_grad(lsq *p, const float *w, float *grad) {
    memcpy(p->r, p->y, LS_N * LS_OUT * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, LS_N, LS_OUT, LS_IN, 1.0f, p->x, LS_IN, w, LS_OUT, -1.0f,
                p->r, LS_OUT);
    double l = 0;
    for (int i = 0; i < LS_N * LS_OUT; i++) l += (double)p->r[i] * p->r[i];
    if (grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, LS_IN, LS_OUT, LS_N, 1.0f / LS_N, p->x, LS_IN, p->r,
                    LS_OUT, 0.0f, grad, LS_OUT);
    return l / (2.0 * LS_N);
}

static double lsq_train(lsq *p, lb_state_codec codec, int v_e5m2, lb_grad_precision gp, double *loss0) {
    int shape[2] = {LS_IN, LS_OUT};
    lb_tensor *w = lb_tensor_alloc(2, shape, 1);
    w->name = "w";
    lb_tensor *ps[1] = {w};
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    cfg.groups[0].state = codec;
    cfg.fp8_v_e5m2 = v_e5m2;
    cfg.grad_precision = gp;
    cfg.clip_norm = 0.0f;
    lb_optim *o = lb_optim_create(&cfg, ps, NULL, 1);
    assert_non_null(o);
    assert_int_equal(lb_optim_param_codec(o, 0), codec); /* 8192 elements: no fp32 fallback */
    lb_schedule s = {.kind = LB_SCHED_COSINE, .peak_lr = 0.05f, .min_lr = 0.0005f, .warmup_steps = 10,
                     .total_steps = LS_STEPS};
    *loss0 = lsq_loss_grad(p, w->data, NULL);
    for (int t = 1; t <= s.total_steps; t++) {
        lsq_loss_grad(p, w->data, w->grad);
        assert_int_equal(lb_optim_step(o, lb_schedule_lr(&s, t), 0.0f, t, NULL), LB_OK);
    }
    double l = lsq_loss_grad(p, w->data, NULL);
    lb_optim_free(o);
    lb_tensor_free(w);
    return l;
}

static void test_low_precision_states_minimise_least_squares(void **state) {
    (void)state;
    lsq p;
    lsq_init(&p);
    double l0, lf = lsq_train(&p, LB_STATE_FP32, 0, LB_GRAD_FP32, &l0);
    /* fp32 AdamW makes real progress in LS_STEPS steps (but does not reach
     * the float floor, so differences between the states show) */
    assert_true(lf < 1e-3 * l0 && lf > 1e-8 * l0);
    /* Stated tolerances: bf16, fp8 (E4M3 + FP16) and int8 states, also with
     * low-bit gradients, end within 25% of fp32 AdamW's final loss; every
     * variant, including the coarse E5M2 second moment, ends within 0.1% of
     * the initial loss of where fp32 ends. */
    struct { lb_state_codec c; int e5m2; lb_grad_precision g; const char *what; double rel; } v[] = {
        {LB_STATE_BF16, 0, LB_GRAD_FP32, "bf16", 1.25},
        {LB_STATE_FP8, 0, LB_GRAD_FP32, "fp8 (E4M3 + FP16)", 1.25},
        {LB_STATE_FP8, 1, LB_GRAD_FP32, "fp8 (E4M3 + E5M2)", 0.0},
        {LB_STATE_INT8, 0, LB_GRAD_FP32, "int8", 1.25},
        {LB_STATE_INT8, 0, LB_GRAD_INT8, "int8 + int8 gradients", 1.25},
        {LB_STATE_FP8, 0, LB_GRAD_FP8, "fp8 + fp8 gradients", 1.25},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        double l0k, l = lsq_train(&p, v[k].c, v[k].e5m2, v[k].g, &l0k);
        print_message("least squares, %-24s final/initial loss %.3e (fp32 %.3e)\n", v[k].what, l / l0, lf / l0);
        assert_true(l < lf + 1e-3 * l0);
        if (v[k].rel > 0) assert_true(l < v[k].rel * lf);
    }
    lsq_free(&p);
}

/* ---- resume through the state buffers ------------------------------------------------------ */

/* Gradients that depend on the weights (so a difference anywhere spreads) and
 * on the step, multiplied by the current loss scale. */
static void make_grads(lb_optim *o, lb_tensor **ps, int n, int64_t t) {
    float s = lb_optim_loss_scale(o);
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < ps[k]->n; i++)
            ps[k]->grad[i] = s * (0.5f * ps[k]->data[i] + lb_rand_uniform(99, (uint64_t)(t * 8 + k), i) - 0.5f);
}

static void run(lb_optim *o, lb_tensor **ps, int n, int64_t from, int64_t to) {
    for (int64_t t = from; t <= to; t++) {
        make_grads(o, ps, n, t);
        lb_optim_step_info info;
        assert_int_equal(lb_optim_step(o, 0.01f, 0.1f, t, &info), LB_OK);
        assert_int_equal(info.skipped, 0);
        lb_optim_zero_grad(o);
    }
}

static void assert_same_state(const lb_optim *a, const lb_optim *b) {
    int na, nb;
    const lb_state_buffer *ba = lb_optim_buffers(a, &na), *bb = lb_optim_buffers(b, &nb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        assert_string_equal(ba[i].name, bb[i].name);
        assert_memory_equal(ba[i].data, bb[i].data, lb_dtype_row_bytes(ba[i].dtype, ba[i].n));
    }
}

typedef struct resume_case {
    lb_optim_type type;
    lb_state_codec codec;
    lb_grad_precision grads;
    int bf16_sr, v_e5m2, dynamic_scale, nesterov;
} resume_case;

static void check_resume(const resume_case *rc) {
    enum { NP = 3 };
    int s0[2] = {64, 128}, s1[1] = {40}, s2[2] = {50, 100};
    lb_tensor *p1[NP] = {param("blk.0.w", 2, s0, 21), param("blk.0.norm", 1, s1, 22), param("emb", 2, s2, 23)};
    int groups[NP] = {0, 1, 1};
    lb_optim_config cfg = lb_optim_config_default(rc->type);
    cfg.groups[0].state = rc->codec;
    cfg.groups[1].state = rc->codec;
    cfg.grad_precision = rc->grads;
    cfg.bf16_stochastic = rc->bf16_sr;
    cfg.fp8_v_e5m2 = rc->v_e5m2;
    cfg.nesterov = rc->nesterov;
    cfg.seed = 1234;
    if (rc->dynamic_scale) {
        cfg.loss_scale = 256.0f;
        cfg.loss_scale_dynamic = 1;
    }
    lb_optim *o1 = lb_optim_create(&cfg, p1, groups, NP);
    assert_non_null(o1);
    run(o1, p1, NP, 1, 3);

    /* "checkpoint": copy the weights and every state buffer out ... */
    lb_tensor *p2[NP], *p3[NP];
    for (int k = 0; k < NP; k++) {
        p2[k] = clone(p1[k]);
        p3[k] = clone(p1[k]);
    }
    int nb;
    const lb_state_buffer *b1 = lb_optim_buffers(o1, &nb);
    void **saved = calloc((size_t)nb, sizeof(void *));
    for (int i = 0; i < nb; i++) {
        size_t bytes = lb_dtype_row_bytes(b1[i].dtype, b1[i].n);
        saved[i] = malloc(bytes);
        memcpy(saved[i], b1[i].data, bytes);
    }
    /* ... and into a fresh optimizer with the same config */
    lb_optim *o2 = lb_optim_create(&cfg, p2, groups, NP);
    assert_non_null(o2);
    int nb2;
    const lb_state_buffer *b2 = lb_optim_buffers(o2, &nb2);
    assert_int_equal(nb2, nb);
    for (int i = 0; i < nb; i++) {
        assert_string_equal(b2[i].name, b1[i].name);
        assert_int_equal(b2[i].dtype, b1[i].dtype);
        assert_int_equal(b2[i].ndim, b1[i].ndim);
        assert_memory_equal(b2[i].shape, b1[i].shape, sizeof b1[i].shape);
        memcpy(b2[i].data, saved[i], lb_dtype_row_bytes(b2[i].dtype, b2[i].n));
    }
    assert_int_equal(lb_optim_state_loaded(o2), LB_OK);
    lb_optim *o3 = lb_optim_create(&cfg, p3, groups, NP); /* same weights, state not restored */
    assert_non_null(o3);

    run(o1, p1, NP, 4, 6);
    run(o2, p2, NP, 4, 6);
    run(o3, p3, NP, 4, 6);
    for (int k = 0; k < NP; k++) assert_memory_equal(p1[k]->data, p2[k]->data, p1[k]->n * sizeof(float));
    assert_same_state(o1, o2);
    /* the restored state mattered: without it the weights come out different */
    assert_true(memcmp(p1[0]->data, p3[0]->data, p1[0]->n * sizeof(float)) != 0);

    for (int i = 0; i < nb; i++) free(saved[i]);
    free(saved);
    lb_optim_free(o1);
    lb_optim_free(o2);
    lb_optim_free(o3);
    for (int k = 0; k < NP; k++) {
        lb_tensor_free(p1[k]);
        lb_tensor_free(p2[k]);
        lb_tensor_free(p3[k]);
    }
}

static void test_resume_is_bit_exact(void **state) {
    (void)state;
    const resume_case cases[] = {
        {LB_OPTIM_ADAMW, LB_STATE_INT8, LB_GRAD_FP32, 0, 0, 0, 0},
        {LB_OPTIM_ADAMW, LB_STATE_INT8, LB_GRAD_INT8, 0, 0, 1, 0},
        {LB_OPTIM_ADAMW, LB_STATE_FP8, LB_GRAD_FP32, 0, 0, 0, 0},
        {LB_OPTIM_ADAMW, LB_STATE_FP8, LB_GRAD_FP8, 0, 1, 1, 0},
        {LB_OPTIM_ADAMW, LB_STATE_BF16, LB_GRAD_INT8, 1, 0, 0, 0},
        {LB_OPTIM_ADAMW, LB_STATE_FP32, LB_GRAD_FP32, 0, 0, 0, 0},
        {LB_OPTIM_LION, LB_STATE_INT8, LB_GRAD_FP32, 0, 0, 0, 0},
        {LB_OPTIM_SGD, LB_STATE_FP8, LB_GRAD_FP32, 0, 0, 0, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) check_resume(&cases[k]);
}

static void test_corrupt_state_is_refused(void **state) {
    (void)state;
    int s0[1] = {5000};
    lb_tensor *w = param("w", 1, s0, 5);
    lb_tensor *ps[1] = {w};
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    cfg.groups[0].state = LB_STATE_FP8;
    lb_optim *o = lb_optim_create(&cfg, ps, NULL, 1);
    assert_non_null(o);
    int nb;
    const lb_state_buffer *b = lb_optim_buffers(o, &nb);
    assert_string_equal(b[1].name, "w/m_scale");
    ((float *)b[1].data)[0] = -2.0f;
    assert_int_equal(lb_optim_state_loaded(o), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "'w'"));
    lb_optim_free(o);
    lb_tensor_free(w);
}

/* ---- non-finite gradients ------------------------------------------------------------------- */

static void test_nonfinite_gradient_skips_the_step(void **state) {
    (void)state;
    int s0[2] = {64, 100}, s1[1] = {300};
    lb_tensor *ps[2] = {param("w", 2, s0, 31), param("g", 1, s1, 32)};
    int groups[2] = {0, 1};
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    cfg.groups[0].state = LB_STATE_INT8;
    cfg.groups[1].state = LB_STATE_FP8;
    cfg.grad_precision = LB_GRAD_INT8;
    cfg.loss_scale = 1024.0f;
    cfg.loss_scale_dynamic = 1;
    lb_optim *o = lb_optim_create(&cfg, ps, groups, 2);
    assert_non_null(o);
    run(o, ps, 2, 1, 2);

    /* snapshot everything but the loss-scale scalars */
    float *w0 = malloc(ps[0]->n * sizeof(float));
    memcpy(w0, ps[0]->data, ps[0]->n * sizeof(float));
    int nb;
    const lb_state_buffer *b = lb_optim_buffers(o, &nb);
    size_t bytes = 0;
    for (int i = 0; i < nb - 2; i++) bytes += lb_dtype_row_bytes(b[i].dtype, b[i].n);
    unsigned char *snap = malloc(bytes), *p = snap;
    for (int i = 0; i < nb - 2; i++) {
        size_t k = lb_dtype_row_bytes(b[i].dtype, b[i].n);
        memcpy(p, b[i].data, k);
        p += k;
    }

    const float bad[2] = {NAN, INFINITY};
    for (int k = 0; k < 2; k++) {
        make_grads(o, ps, 2, 3);
        ps[k]->grad[17] = bad[k];
        float scale = lb_optim_loss_scale(o);
        lb_optim_step_info info;
        assert_int_equal(lb_optim_step(o, 0.01f, 0.1f, 3, &info), LB_OK);
        assert_int_equal(info.skipped, 1);
        assert_float_equal(info.loss_scale, scale / 2, 0.0f); /* backed off */
        assert_memory_equal(ps[0]->data, w0, ps[0]->n * sizeof(float));
        p = snap;
        for (int i = 0; i < nb - 2; i++) {
            size_t n = lb_dtype_row_bytes(b[i].dtype, b[i].n);
            assert_memory_equal(b[i].data, p, n);
            p += n;
        }
        lb_optim_zero_grad(o);
    }
    /* training continues */
    run(o, ps, 2, 3, 5);
    assert_true(memcmp(ps[0]->data, w0, ps[0]->n * sizeof(float)) != 0);
    for (int k = 0; k < 2; k++) assert_int_equal(lb_find_nonfinite(ps[k]->data, ps[k]->n), 0);
    assert_float_equal(lb_optim_loss_scale(o), 256.0f, 0.0f);
    free(w0);
    free(snap);
    lb_optim_free(o);
    lb_tensor_free(ps[0]);
    lb_tensor_free(ps[1]);
}

/* ---- threads ------------------------------------------------------------------------------------ */

static void run_threads(int threads, float *w_out, unsigned char *state_out, size_t *state_bytes) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    int s0[2] = {256, 300}, s1[2] = {300, 200};
    lb_tensor *ps[2] = {param("a", 2, s0, 41), param("b", 2, s1, 42)};
    int groups[2] = {0, 1};
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    cfg.groups[0].state = LB_STATE_INT8;
    cfg.groups[1].state = LB_STATE_BF16;
    cfg.bf16_stochastic = 1;
    cfg.grad_precision = LB_GRAD_INT8;
    cfg.clip_norm = 0.5f; /* the clipped norm must not depend on threads either */
    lb_optim *o = lb_optim_create(&cfg, ps, groups, 2);
    assert_non_null(o);
    run(o, ps, 2, 1, 3);
    memcpy(w_out, ps[1]->data, ps[1]->n * sizeof(float));
    int nb;
    const lb_state_buffer *b = lb_optim_buffers(o, &nb);
    size_t off = 0;
    for (int i = 0; i < nb; i++) {
        size_t k = lb_dtype_row_bytes(b[i].dtype, b[i].n);
        memcpy(state_out + off, b[i].data, k);
        off += k;
    }
    *state_bytes = off;
    lb_optim_free(o);
    lb_tensor_free(ps[0]);
    lb_tensor_free(ps[1]);
    omp_set_num_threads(saved);
}

static void test_same_result_with_1_and_2_threads(void **state) {
    (void)state;
    size_t nw = 300 * 200, cap = 2 * (256 * 300 * 4 + 300 * 200 * 4);
    float *w1 = malloc(nw * sizeof(float)), *w2 = malloc(nw * sizeof(float));
    unsigned char *s1 = malloc(cap), *s2 = malloc(cap);
    size_t n1, n2;
    run_threads(1, w1, s1, &n1);
    run_threads(2, w2, s2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(w1, w2, nw * sizeof(float));
    assert_memory_equal(s1, s2, n1);
    free(w1);
    free(w2);
    free(s1);
    free(s2);
}

/* The update, the norm and the zeroing run as one region over all parameters,
 * each thread taking an even share of all their elements (src/optim/optim.c).
 * Tensors of odd sizes, small and large, so the shares end inside tensors and
 * inside the fp8 per-tensor scales' reach; every codec, on 2 and 3 threads,
 * against each tensor updated by an optimizer of its own on one thread (the
 * same stochastic-rounding id through lb_optim_set_param_ids). */
enum { ONE_N = 7 };
static const int one_sizes[ONE_N] = {100, 4099, 76800, 5, 40000, 1000, 33001};

static void one_grads(lb_tensor *const *ps, const int *which, int n, int step) {
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < ps[k]->n; i++)
            /* growing along the tensor: one thread's share has a smaller amax than the whole */
            ps[k]->grad[i] = (lb_rand_uniform(30 + (uint64_t)which[k], (uint64_t)step, i) - 0.5f) *
                             exp2f(6.0f * (float)i / (float)ps[k]->n);
}

static void check_one_region(lb_optim_type type, lb_state_codec codec, int threads) {
    lb_optim_config cfg = lb_optim_config_default(type);
    cfg.groups[0].state = codec;
    cfg.bf16_stochastic = 1;
    cfg.clip_norm = 0.0f; /* per-tensor optimizers would clip by their own norms */
    lb_tensor *all[ONE_N], *own[ONE_N];
    int which[ONE_N];
    for (int k = 0; k < ONE_N; k++) {
        all[k] = param("p", 1, &one_sizes[k], 50 + (uint64_t)k);
        own[k] = clone(all[k]);
        which[k] = k;
    }
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    lb_optim *o = lb_optim_create(&cfg, all, NULL, ONE_N);
    assert_non_null(o);
    for (int step = 1; step <= 3; step++) {
        one_grads(all, which, ONE_N, step);
        assert_int_equal(lb_optim_step(o, 1e-2f, 0.1f, step, NULL), LB_OK);
        lb_optim_zero_grad(o);
        for (int k = 0; k < ONE_N; k++)
            for (size_t i = 0; i < all[k]->n; i++) assert_true(all[k]->grad[i] == 0.0f);
    }
    omp_set_num_threads(1);
    int nb;
    const lb_state_buffer *b = lb_optim_buffers(o, &nb);
    int next = 0; /* the next of o's buffers: each parameter's, in order */
    for (int k = 0; k < ONE_N; k++) {
        lb_optim *ok = lb_optim_create(&cfg, &own[k], NULL, 1);
        assert_non_null(ok);
        lb_optim_set_param_ids(ok, &which[k]);
        for (int step = 1; step <= 3; step++) {
            one_grads(&own[k], &which[k], 1, step);
            assert_int_equal(lb_optim_step(ok, 1e-2f, 0.1f, step, NULL), LB_OK);
        }
        assert_memory_equal(all[k]->data, own[k]->data, all[k]->n * sizeof(float));
        int nbk;
        const lb_state_buffer *bk = lb_optim_buffers(ok, &nbk);
        for (int j = 0; j < nbk - 2; j++, next++) { /* the last two: the loss scale's */
            assert_true(next < nb);
            assert_int_equal(bk[j].n, b[next].n);
            assert_memory_equal(bk[j].data, b[next].data, lb_dtype_row_bytes(bk[j].dtype, bk[j].n));
        }
        lb_optim_free(ok);
    }
    assert_int_equal(next, nb - 2);
    omp_set_num_threads(saved);
    lb_optim_free(o);
    for (int k = 0; k < ONE_N; k++) {
        lb_tensor_free(all[k]);
        lb_tensor_free(own[k]);
    }
}

static void test_one_region_equals_tensor_by_tensor(void **state) {
    (void)state;
    for (int threads = 2; threads <= 3; threads++) {
        for (int c = 0; c < LB_STATE_COUNT; c++) check_one_region(LB_OPTIM_ADAMW, (lb_state_codec)c, threads);
        check_one_region(LB_OPTIM_LION, LB_STATE_FP8, threads);
        check_one_region(LB_OPTIM_SGD, LB_STATE_INT8, threads);
    }
}

/* ---- memory accounting ------------------------------------------------------------------------- */

static double state_bpp(lb_optim_type type, lb_state_codec codec, int n, int v_e5m2) {
    int shape[1] = {n};
    lb_tensor *w = lb_tensor_alloc(1, shape, 1);
    w->name = "w";
    lb_optim_config cfg = lb_optim_config_default(type);
    cfg.groups[0].state = codec;
    cfg.fp8_v_e5m2 = v_e5m2;
    lb_optim *o = lb_optim_create(&cfg, &w, NULL, 1);
    assert_non_null(o);
    lb_optim_memory m = lb_optim_bytes_per_param(o);
    assert_float_equal(m.weights, 4.0, 0.0);
    assert_float_equal(m.master, 0.0, 0.0);
    assert_float_equal(m.grads, 4.0, 0.0);
    assert_float_equal(m.total, m.weights + m.master + m.grads + m.state, 1e-12);
    char line[256];
    assert_true(lb_optim_memory_format(o, line, sizeof line) > 0);
    assert_non_null(strstr(line, "optimizer state"));
    lb_optim_free(o);
    lb_tensor_free(w);
    return m.state;
}

static void test_memory_per_parameter(void **state) {
    (void)state;
    int n = 65536; /* 256 blocks */
    /* fp32 Adam: two floats; bf16: two halves; fp8: E4M3 + FP16 plus two scales;
     * int8: two codes plus one float per 256-element block per moment */
    assert_float_equal(state_bpp(LB_OPTIM_ADAMW, LB_STATE_FP32, n, 0), 8.0, 0.0);
    assert_float_equal(state_bpp(LB_OPTIM_ADAMW, LB_STATE_BF16, n, 0), 4.0, 0.0);
    assert_float_equal(state_bpp(LB_OPTIM_ADAMW, LB_STATE_FP8, n, 0), 3.0 + 8.0 / n, 1e-12);
    assert_float_equal(state_bpp(LB_OPTIM_ADAMW, LB_STATE_FP8, n, 1), 2.0 + 8.0 / n, 1e-12);
    double int8 = state_bpp(LB_OPTIM_ADAMW, LB_STATE_INT8, n, 0);
    assert_float_equal(int8, 2.0 + 2 * 4.0 / 256, 1e-12);
    assert_true(int8 <= 2.1);
    assert_true(int8 / 8.0 < 0.26); /* about a quarter of fp32 state */
    assert_float_equal(state_bpp(LB_OPTIM_LION, LB_STATE_INT8, n, 0), 1.0 + 4.0 / 256, 1e-12);
    /* under 4096 elements int8 keeps fp32 state */
    assert_float_equal(state_bpp(LB_OPTIM_ADAMW, LB_STATE_INT8, 4095, 0), 8.0, 0.0);

    /* the buffer list of an int8 tensor */
    int shape[2] = {64, 100};
    lb_tensor *w = lb_tensor_alloc(2, shape, 1);
    w->name = "blk.0.ffn_up.weight";
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    cfg.groups[0].state = LB_STATE_INT8;
    lb_optim *o = lb_optim_create(&cfg, &w, NULL, 1);
    int nb;
    const lb_state_buffer *b = lb_optim_buffers(o, &nb);
    assert_int_equal(nb, 6);
    assert_string_equal(b[0].name, "blk.0.ffn_up.weight/m_codes");
    assert_int_equal(b[0].dtype, LB_DT_U8);
    assert_int_equal(b[0].ndim, 2);
    assert_int_equal(b[0].shape[1], 100);
    assert_string_equal(b[1].name, "blk.0.ffn_up.weight/m_absmax");
    assert_int_equal(b[1].n, 25); /* ceil(6400 / 256) */
    assert_string_equal(b[3].name, "blk.0.ffn_up.weight/v_absmax");
    assert_string_equal(b[4].name, "optim/loss_scale");
    assert_int_equal(b[5].dtype, LB_DT_I32);
    lb_optim_free(o);
    lb_tensor_free(w);
}

/* ---- errors --------------------------------------------------------------------------------------- */

static void test_bad_arguments(void **state) {
    (void)state;
    int shape[1] = {10};
    lb_tensor *w = param("w", 1, shape, 1);
    lb_optim_config cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    cfg.beta2 = 1.0f;
    assert_null(lb_optim_create(&cfg, &w, NULL, 1));
    assert_int_equal(lb_errcode(), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "betas"));
    cfg = lb_optim_config_default(LB_OPTIM_ADAMW);
    int group = 5;
    assert_null(lb_optim_create(&cfg, &w, &group, 1));
    assert_non_null(strstr(lb_errmsg(), "'w'"));
    lb_optim *o = lb_optim_create(&cfg, &w, NULL, 1);
    assert_non_null(o);
    assert_int_equal(lb_optim_step(o, 0.1f, 0.0f, 0, NULL), LB_EINVAL);
    assert_int_equal(lb_optim_step(o, NAN, 0.0f, 1, NULL), LB_EINVAL);
    lb_optim_free(o);
    lb_state_codec c;
    lb_optim_type t;
    assert_int_equal(lb_state_codec_parse("int8", &c), LB_OK);
    assert_int_equal(c, LB_STATE_INT8);
    assert_int_equal(lb_state_codec_parse("int4", &c), LB_ECONFIG);
    assert_int_equal(lb_optim_type_parse("lion", &t), LB_OK);
    assert_int_equal(t, LB_OPTIM_LION);
    assert_int_equal(lb_optim_group_find(&cfg, "no_decay"), 1);
    lb_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_reference),
        cmocka_unit_test(test_sgd_matches_reference),
        cmocka_unit_test(test_lion_matches_reference),
        cmocka_unit_test(test_clipping_by_global_norm),
        cmocka_unit_test(test_gradient_norm_of_large_tensors),
        cmocka_unit_test(test_low_precision_states_minimise_least_squares),
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_corrupt_state_is_refused),
        cmocka_unit_test(test_nonfinite_gradient_skips_the_step),
        cmocka_unit_test(test_same_result_with_1_and_2_threads),
        cmocka_unit_test(test_one_region_equals_tensor_by_tensor),
        cmocka_unit_test(test_memory_per_parameter),
        cmocka_unit_test(test_bad_arguments),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

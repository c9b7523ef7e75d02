/* The optimizer inside real training runs: low-bit activation gradients
 * (optim.act_grad) reach the linear layers, the loss scale the trainer
 * multiplies the loss by is divided out again by the optimizer, and a
 * non-finite gradient in the middle of a run skips that step with a warning
 * while training carries on. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/ops.h"
#include "core/minifloat.h"
#include "testutil.h"
#include "trainer/trainer.h"

/* ---- lb_grad_round on a single layer ------------------------------------------ */

enum { ROWS = 24, K = 64, N = 32 };

/* x [ROWS, K] through (optionally) lb_grad_round, then a b1.58 BitLinear to
 * [ROWS, N], loss = sum(y · r) for a fixed r; returns x's gradient in dx. */
static void linear_dx(lb_grad_precision p, uint64_t counter, float *dx) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int xs[2] = {ROWS, K}, ws[2] = {N, K}, ys[2] = {ROWS, N};
    lb_tensor *x = lb_tensor_alloc(2, xs, 1), *w = lb_tensor_alloc(2, ws, 1), *r = lb_tensor_alloc(2, ys, 0);
    assert_non_null(x);
    assert_non_null(w);
    assert_non_null(r);
    tu_fill_uniform(x, 1, -2.0f, 2.0f);
    tu_fill_uniform(w, 2, -0.1f, 0.1f);
    tu_fill_uniform(r, 3, -1.0f, 1.0f);
    /* Rows of very different magnitude, so per-row int8 scales differ. */
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < N; j++) r->data[i * N + j] *= powf(4.0f, (float)(i % 5) - 2.0f);
    x->requires_grad = 1;
    w->requires_grad = 1;
    lb_linear_quant q = {0}, qr;
    q.mode = LB_LINEAR_B158;
    assert_int_equal(lb_linear_quant_resolve(&q, &qr, "test"), LB_OK);

    lb_tensor *xin = lb_grad_round(&g, x, p, 42, counter);
    assert_non_null(xin);
    if (p == LB_GRAD_FP32) assert_ptr_equal(xin, x); /* nothing recorded */
    else {
        assert_ptr_not_equal(xin, x);
        assert_memory_equal(xin->data, x->data, sizeof(float) * x->n); /* identity forward */
    }
    lb_tensor *loss = lb_sum(&g, lb_mul(&g, lb_linear(&g, xin, w, &qr, NULL, 1.0f), r));
    assert_non_null(loss);
    assert_int_equal(lb_backward(&g, loss), LB_OK);
    memcpy(dx, x->grad, sizeof(float) * x->n);
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(w);
    lb_tensor_free(r);
}

/* fp8: x's gradient is the fp32 one rounded to E5M2 under one power-of-two
 * scale 2^floor(log2(57344 / amax)), computed here from the fp32 gradient. */
static void test_grad_round_fp8(void **state) {
    (void)state;
    float ref[ROWS * K], got[ROWS * K];
    linear_dx(LB_GRAD_FP32, 0, ref);
    linear_dx(LB_GRAD_FP8, 0, got);
    float amax = 0.0f;
    for (int i = 0; i < ROWS * K; i++) amax = fmaxf(amax, fabsf(ref[i]));
    assert_true(amax > 0.0f);
    float scale = exp2f(floorf(log2f(57344.0f / amax)));
    int changed = 0;
    for (int i = 0; i < ROWS * K; i++) {
        float want = lb_fp8_e5m2_to_f32(lb_fp8_e5m2_from_f32(ref[i] * scale, 1)) / scale;
        if (got[i] != want) fail_msg("dx[%d] = %g, expected %g (fp32 %g)", i, (double)got[i], (double)want, (double)ref[i]);
        /* E5M2 keeps 2 mantissa bits: relative error at most 2^-3 for normals */
        assert_true(fabsf(got[i] - ref[i]) <= 0.125f * fabsf(ref[i]) + 1e-30f + ldexpf(1.0f, -17) / scale);
        changed += got[i] != ref[i];
    }
    assert_true(changed > ROWS * K / 2); /* the rounding really happened */
}

/* int8: each row is a multiple of max|row| / 127 next to the fp32 value
 * (stochastic rounding picks one of the two neighbours), a counter
 * reproduces it, and over many counters the mean is the fp32 gradient. */
static void test_grad_round_int8(void **state) {
    (void)state;
    enum { DRAWS = 400 };
    static float ref[ROWS * K], got[ROWS * K], again[ROWS * K], other[ROWS * K];
    static double mean[ROWS * K];
    linear_dx(LB_GRAD_FP32, 0, ref);
    linear_dx(LB_GRAD_INT8, LB_SR_COUNTER(7, 3), got);
    linear_dx(LB_GRAD_INT8, LB_SR_COUNTER(7, 3), again);
    linear_dx(LB_GRAD_INT8, LB_SR_COUNTER(8, 3), other);
    assert_memory_equal(got, again, sizeof got);
    assert_memory_not_equal(got, other, sizeof got);
    for (int i = 0; i < ROWS; i++) {
        float amax = 0.0f;
        for (int j = 0; j < K; j++) amax = fmaxf(amax, fabsf(ref[i * K + j]));
        float step = amax / 127.0f;
        for (int j = 0; j < K; j++) {
            float q = got[i * K + j] / step;
            assert_true(fabsf(q - rintf(q)) < 1e-3f);                   /* on the grid */
            assert_true(fabsf(got[i * K + j] - ref[i * K + j]) <= step * 1.001f); /* a neighbour */
        }
    }
    for (int d = 0; d < DRAWS; d++) {
        linear_dx(LB_GRAD_INT8, LB_SR_COUNTER(100 + d, 5), got);
        for (int i = 0; i < ROWS * K; i++) mean[i] += got[i] / (double)DRAWS;
    }
    /* Per element the draw is Bernoulli times the grid step, so the mean of
     * DRAWS draws has std <= step / (2 sqrt(DRAWS)); allow 5 of those. */
    for (int i = 0; i < ROWS; i++) {
        float amax = 0.0f;
        for (int j = 0; j < K; j++) amax = fmaxf(amax, fabsf(ref[i * K + j]));
        double tol = 5.0 * (amax / 127.0) / (2.0 * sqrt((double)DRAWS));
        for (int j = 0; j < K; j++) assert_true(fabs(mean[i * K + j] - ref[i * K + j]) <= tol);
    }
}

static void test_grad_round_errors(void **state) {
    (void)state;
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    int s[2] = {2, 3};
    lb_tensor *x = lb_tensor_alloc(2, s, 1);
    x->requires_grad = 1;
    assert_null(lb_grad_round(&g, x, (lb_grad_precision)7, 0, 0));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_null(lb_grad_round(&g, NULL, LB_GRAD_FP8, 0, 0));
    /* Without gradients (evaluation) nothing is recorded. */
    lb_graph_set_grad(&g, 0);
    assert_ptr_equal(lb_grad_round(&g, x, LB_GRAD_FP8, 0, 0), x);
    assert_int_equal(g.n_nodes, 0);
    lb_graph_free(&g);
    lb_tensor_free(x);
}

/* ---- training runs -------------------------------------------------------------- */

typedef tu_run_dir fixture; /* the run directory and its generated corpus */

static int setup(void **state) {
    *state = tu_run_dir_new("trainer_optim", 100000, 7);
    return 0;
}

static int teardown(void **state) {
    tu_run_dir_free(*state);
    return 0;
}

/* A b1.58 model small enough for millisecond steps; 64x64 weights are 4096
 * elements, so int8 state applies to them. */
static void small_config(lb_config *c, const fixture *fx, int steps) {
    lb_config_defaults(c);
    tu_config_small_model(c);
    tu_config_set(c, "model.n_kv_heads=1");
    tu_config_set(c, "model.sub_norm=true");
    tu_config_set(c, "model.quant.preset=b1.58");
    tu_config_set(c, "data.path=%s", fx->corpus);
    tu_config_set(c, "train.steps=%d", steps);
    tu_config_set(c, "train.batch_size=4");
    tu_config_set(c, "train.seq_len=32");
    tu_config_set(c, "train.grad_accum=2");
    tu_config_set(c, "train.warmup_steps=2");
    tu_config_set(c, "train.lr=3e-3");
    tu_config_set(c, "checkpoint.dir=%s/run", fx->dir);
    tu_config_set(c, "log.jsonl=");
}

static void init_trainer(lb_trainer *t, lb_config *c) {
    if (lb_config_validate(c) != LB_OK) fail_msg("validate: %s", lb_errmsg());
    if (lb_trainer_init(t, c) != LB_OK) fail_msg("lb_trainer_init: %s", lb_errmsg());
}

static lb_step_result step(lb_trainer *t) {
    lb_step_result r;
    if (lb_trainer_step(t, &r) != LB_OK) fail_msg("step: %s", lb_errmsg());
    return r;
}

static float val_loss(lb_trainer *t) {
    float v;
    if (lb_trainer_evaluate(t, 4, &v) != LB_OK) fail_msg("evaluate: %s", lb_errmsg());
    return v;
}

/* The optimizer state buffer called `name` (e.g. "optim/loss_scale"). */
static const lb_state_buffer *buffer(lb_trainer *t, const char *name) {
    int n;
    const lb_state_buffer *b = lb_optim_buffers(t->opt, &n);
    for (int i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0) return &b[i];
    fail_msg("no optimizer buffer %s", name);
    return NULL;
}

/* optim.act_grad reaches the model; fp8 and int8 activation gradients change
 * the run (so they are applied), reproduce with the seed, and still learn. */
static void test_act_grad_runs(void **state) {
    fixture *fx = *state;
    enum { STEPS = 20 };
    static const char *precs[] = {"fp32", "fp8", "int8"};
    float final[3], first_loss = 0.0f;
    float w_ref[64];
    for (int k = 0; k < 3; k++) {
        float wa[64];
        for (int rep = 0; rep < (k == 2 ? 2 : 1); rep++) { /* int8 rounds stochastically: run it twice */
            lb_config c;
            small_config(&c, fx, STEPS);
            tu_config_set(&c, "optim.act_grad=%s", precs[k]);
            lb_trainer t;
            init_trainer(&t, &c);
            assert_int_equal((int)t.model->act_grad, k); /* LB_GRAD_FP32, FP8, INT8 */
            float v0 = val_loss(&t);
            if (k == 0) first_loss = v0;
            for (int i = 0; i < STEPS; i++) assert_int_equal(step(&t).skipped, 0);
            final[k] = val_loss(&t);
            const lb_tensor *wq = t.model->blocks[0].attn_q;
            if (k == 0) memcpy(w_ref, wq->data, sizeof w_ref);
            else if (rep == 0) {
                memcpy(wa, wq->data, sizeof wa);
                assert_memory_not_equal(wa, w_ref, sizeof wa);
            } else
                assert_memory_equal(wa, wq->data, sizeof wa); /* same seed, same run */
            lb_trainer_free(&t);
        }
    }
    for (int k = 0; k < 3; k++) {
        if (!(final[k] < first_loss - 0.4f))
            fail_msg("act_grad %s: validation loss %g after %d steps, started at %g", precs[k], (double)final[k],
                     STEPS, (double)first_loss);
        /* low-bit gradients cost little: within 5% of the fp32 run */
        assert_true(fabsf(final[k] - final[0]) <= 0.05f * final[0]);
    }
}

/* optim.decay / optim.no_decay reach the optimizer's groups: state
 * precision per group, and lr_scale 0 freezes the norms and the embedding
 * (AdamW with lr 0 and no weight decay leaves a weight exactly as it was). */
static void test_group_settings(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, 4);
    tu_config_set(&c, "optim.state=int8");
    tu_config_set(&c, "optim.no_decay={state: bf16, lr_scale: 0}");
    lb_trainer t;
    init_trainer(&t, &c);
    lb_model *m = t.model;
    int qi = lb_model_param_index(m, "blk.0.attn_q.weight"), ni = lb_model_param_index(m, "blk.0.attn_norm.weight");
    int ei = lb_model_param_index(m, "token_embd.weight");
    assert_true(qi >= 0 && ni >= 0 && ei >= 0);
    assert_int_equal(lb_optim_param_codec(t.opt, qi), LB_STATE_INT8);
    assert_int_equal(lb_optim_param_codec(t.opt, ni), LB_STATE_BF16);
    assert_int_equal(lb_optim_param_codec(t.opt, ei), LB_STATE_BF16);
    float q0 = m->param_list[qi]->data[5];
    size_t en = m->param_list[ei]->n;
    float *e0 = malloc(en * sizeof *e0);
    memcpy(e0, m->param_list[ei]->data, en * sizeof *e0);
    for (int i = 0; i < 4; i++) assert_int_equal(step(&t).skipped, 0);
    assert_memory_equal(e0, m->param_list[ei]->data, en * sizeof *e0);
    for (size_t i = 0; i < m->param_list[ni]->n; i++) assert_true(m->param_list[ni]->data[i] == 1.0f);
    assert_true(m->param_list[qi]->data[5] != q0); /* the decay group trains */
    free(e0);
    lb_trainer_free(&t);
}

/* The trainer multiplies the loss by lb_optim_loss_scale() and the optimizer
 * divides the gradients by it: with a power-of-two scale every gradient is
 * scaled exactly, so a run at scale 1024 is bit-identical to one at scale 1.
 * With fp8 weight gradients too: the per-tensor fp8 scale absorbs the 1024. */
static void check_loss_scale_unscaled(const fixture *fx, const char *grad) {
    enum { STEPS = 5 };
    lb_trainer a, b;
    lb_config ca, cb;
    small_config(&ca, fx, STEPS);
    tu_config_set(&ca, "optim.grad=%s", grad);
    cb = ca;
    init_trainer(&a, &ca);
    init_trainer(&b, &cb);
    *(float *)buffer(&b, "optim/loss_scale")->data = 1024.0f;
    assert_true(lb_optim_loss_scale(b.opt) == 1024.0f);
    for (int i = 0; i < STEPS; i++) {
        lb_step_result ra = step(&a), rb = step(&b);
        assert_true(ra.loss == rb.loss);
        assert_true(ra.grad_norm == rb.grad_norm); /* reported unscaled */
        assert_int_equal(rb.skipped, 0);
    }
    assert_true(lb_optim_loss_scale(b.opt) == 1024.0f); /* no overflow, no change */
    assert_memory_equal(a.model->params_memory, b.model->params_memory, sizeof(float) * a.model->n_elements);
    lb_trainer_free(&a);
    lb_trainer_free(&b);
}

static void test_loss_scale_fp32_grads(void **state) { check_loss_scale_unscaled(*state, "fp32"); }
static void test_loss_scale_fp8_grads(void **state) { check_loss_scale_unscaled(*state, "fp8"); }

/* Runs one trainer step with stderr sent to a file; returns what was written. */
static lb_step_result step_capturing_stderr(lb_trainer *t, const fixture *fx, char *text, size_t size) {
    char path[400];
    snprintf(path, sizeof path, "%s/stderr.txt", fx->dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    lb_step_result r;
    lb_status s = lb_trainer_step(t, &r);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (s != LB_OK) fail_msg("step: %s", lb_errmsg());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, size - 1, f);
    text[n] = '\0';
    fclose(f);
    return r;
}

/* Puts `bad` into one gradient element before a step and checks that the
 * step is skipped with a warning, changes no weight and no optimizer state,
 * halves the loss scale and clears the gradient. Backward adds into .grad, so
 * a value put there before the step is part of that step's gradient (the
 * optimizer zeroes .grad after every step). */
static void inject(lb_trainer *t, const fixture *fx, lb_tensor *p, size_t at, float bad) {
    lb_model *m = t->model;
    size_t wbytes = sizeof(float) * m->n_elements;
    float *w = malloc(wbytes);
    memcpy(w, m->params_memory, wbytes);
    int nb;
    const lb_state_buffer *bufs = lb_optim_buffers(t->opt, &nb);
    void **copies = calloc((size_t)nb, sizeof *copies);
    for (int i = 0; i < nb; i++) {
        size_t bytes = lb_dtype_row_bytes(bufs[i].dtype, bufs[i].n);
        copies[i] = malloc(bytes);
        memcpy(copies[i], bufs[i].data, bytes);
    }
    float scale = lb_optim_loss_scale(t->opt);

    p->grad[at] = bad;
    char text[2048];
    int64_t step_no = t->step + 1;
    lb_step_result r = step_capturing_stderr(t, fx, text, sizeof text);
    assert_int_equal(r.skipped, 1);
    assert_false(isfinite(r.grad_norm));
    char want[64];
    snprintf(want, sizeof want, "step %lld skipped", (long long)step_no);
    if (!strstr(text, want)) fail_msg("expected a warning containing '%s', stderr was '%s'", want, text);
    assert_memory_equal(w, m->params_memory, wbytes);
    for (int i = 0; i < nb; i++) {
        if (strcmp(bufs[i].name, "optim/loss_scale") == 0 || strcmp(bufs[i].name, "optim/loss_scale_good_steps") == 0)
            continue;
        if (memcmp(copies[i], bufs[i].data, lb_dtype_row_bytes(bufs[i].dtype, bufs[i].n)) != 0)
            fail_msg("optimizer buffer %s changed in a skipped step", bufs[i].name);
    }
    assert_true(lb_optim_loss_scale(t->opt) == scale / 2.0f); /* backed off */
    for (size_t i = 0; i < p->n; i++) assert_true(p->grad[i] == 0.0f); /* cleared for the next step */
    assert_int_equal(t->step, step_no);                                  /* the run moves on */
    for (int i = 0; i < nb; i++) free(copies[i]);
    free(copies);
    free(w);
}

/* A NaN and later an inf in a gradient in the middle of a run with fp8
 * weight and activation gradients and int8 state (a low-precision run as a
 * config would ask for it): each of those steps is skipped, and the steps
 * around them train as usual. */
static void test_injected_nonfinite(void **state) {
    fixture *fx = *state;
    enum { BEFORE = 5, BETWEEN = 4, AFTER = 12 };
    lb_config c;
    small_config(&c, fx, BEFORE + BETWEEN + AFTER + 2);
    tu_config_set(&c, "optim.grad=fp8");
    tu_config_set(&c, "optim.act_grad=fp8");
    tu_config_set(&c, "optim.state=int8");
    lb_trainer t;
    init_trainer(&t, &c);
    *(float *)buffer(&t, "optim/loss_scale")->data = 256.0f; /* room to back off */
    float v0 = val_loss(&t);
    for (int i = 0; i < BEFORE; i++) assert_int_equal(step(&t).skipped, 0);

    inject(&t, fx, t.model->blocks[1].ffn_up, 17, NAN);
    assert_true(lb_optim_loss_scale(t.opt) == 128.0f);
    for (int i = 0; i < BETWEEN; i++) assert_int_equal(step(&t).skipped, 0);
    float v_mid = val_loss(&t);
    assert_true(v_mid < v0);

    inject(&t, fx, t.model->token_embd, 3, -INFINITY);
    assert_true(lb_optim_loss_scale(t.opt) == 64.0f);
    for (int i = 0; i < AFTER; i++) {
        lb_step_result r = step(&t);
        assert_int_equal(r.skipped, 0);
        assert_true(isfinite(r.loss) && isfinite(r.grad_norm));
    }
    for (size_t i = 0; i < t.model->n_elements; i++) assert_true(isfinite(t.model->params_memory[i]));
    float v_end = val_loss(&t);
    if (!(v_end < v_mid - 0.1f))
        fail_msg("training did not continue: validation loss %g between the skipped steps, %g after %d more",
                 (double)v_mid, (double)v_end, AFTER);
    lb_trainer_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_round_fp8),
        cmocka_unit_test(test_grad_round_int8),
        cmocka_unit_test(test_grad_round_errors),
        cmocka_unit_test_setup_teardown(test_act_grad_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss_scale_fp32_grads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loss_scale_fp8_grads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_injected_nonfinite, setup, teardown),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Tests of distillation in QAT and SubLN insertion (src/trainer/distill.c):
 * lb_kl_div and lb_relation_kl against references in double, finite
 * differences and PyTorch;
 * a student equal to its teacher has zero KL; a distilled run resumes bit for
 * bit and refuses a teacher that changed; the config names a missing teacher;
 * sub-norms inserted into a model without them keep its weights and its loss
 * close, closer than gains of 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "io/checkpoint.h"
#include "testutil.h"
#include "trainer/distill.h"
#include "trainer/state.h"

enum { ROWS = 6, V = 9 };
/* The relation loss's inputs: B, T, the student's and the teacher's width, relation heads. */
enum { RB = 2, RT = 5, RD = 8, RDT = 12, RH = 2 };
static lb_tensor *relation_inputs(uint64_t seed, int dim, int grad);

static lb_tensor *new_logits(uint64_t seed, float range, int grad) {
    int shape[2] = {ROWS, V};
    lb_tensor *t = grad ? tu_param(2, shape, seed, -range, range) : tu_const(2, shape, seed, -range, range);
    t->name = grad ? "student" : "teacher";
    return t;
}

/* T² · mean over rows of KL(softmax(t/T) ‖ softmax(s/T)), in double. */
static double reference_kl(const float *s, const float *t, int rows, double temp) {
    double total = 0.0;
    for (int r = 0; r < rows; r++) {
        double ls[V], lt[V], ms = -INFINITY, mt = -INFINITY, zs = 0.0, zt = 0.0;
        for (int c = 0; c < V; c++) {
            ls[c] = s[r * V + c] / temp;
            lt[c] = t[r * V + c] / temp;
            ms = fmax(ms, ls[c]);
            mt = fmax(mt, lt[c]);
        }
        for (int c = 0; c < V; c++) {
            zs += exp(ls[c] - ms);
            zt += exp(lt[c] - mt);
        }
        for (int c = 0; c < V; c++) {
            double log_pt = lt[c] - mt - log(zt), log_ps = ls[c] - ms - log(zs);
            total += exp(log_pt) * (log_pt - log_ps);
        }
    }
    return temp * temp * total / rows;
}

static void test_kl_value(void **state) {
    (void)state;
    lb_tensor *s = new_logits(1, 3.0f, 1), *t = new_logits(2, 3.0f, 0);
    const float temps[3] = {1.0f, 2.0f, 5.0f};
    for (int k = 0; k < 3; k++) {
        lb_graph g;
        assert_int_equal(lb_graph_init(&g, 0), LB_OK);
        lb_tensor *kl = lb_kl_div(&g, s, t->data, temps[k]);
        assert_non_null(kl);
        double ref = reference_kl(s->data, t->data, ROWS, temps[k]);
        assert_true(ref > 0.0);
        assert_float_equal(kl->data[0], ref, 1e-5 * fmax(1.0, ref)); /* fp32 rows against double */
        /* The same distribution: zero, also when the logits differ by a constant per row. */
        lb_graph_reset(&g);
        float shifted[ROWS * V];
        for (int i = 0; i < ROWS * V; i++) shifted[i] = s->data[i] + (float)(i / V);
        kl = lb_kl_div(&g, s, shifted, temps[k]);
        assert_non_null(kl);
        assert_float_equal(kl->data[0], 0.0, 1e-6);
        lb_graph_free(&g);
    }
    lb_tensor_free(s);
    lb_tensor_free(t);
}

static void test_kl_errors(void **state) {
    (void)state;
    lb_tensor *s = new_logits(3, 1.0f, 1);
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    assert_null(lb_kl_div(&g, s, NULL, 1.0f));
    assert_non_null(strstr(lb_errmsg(), "no teacher logits"));
    assert_null(lb_kl_div(&g, s, s->data, 0.0f));
    assert_non_null(strstr(lb_errmsg(), "temperature"));
    assert_null(lb_kl_div(&g, NULL, s->data, 1.0f)); /* an earlier op failed */
    lb_graph_free(&g);
    lb_tensor_free(s);
}

typedef struct kl_ctx {
    const float *teacher;
    float temperature;
} kl_ctx;

static lb_tensor *kl_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    (void)n;
    const kl_ctx *c = ctx;
    return lb_kl_div(g, p[0], c->teacher, c->temperature);
}

static void test_grad_kl_div(void **state) {
    (void)state;
    lb_tensor *s = new_logits(4, 2.0f, 1), *t = new_logits(5, 2.0f, 0);
    kl_ctx c1 = {t->data, 1.0f}, c2 = {t->data, 2.5f};
    tu_gradcheck(kl_loss, &s, 1, &c1, 1e-2f, 1e-2, 1e-4);
    tu_gradcheck(kl_loss, &s, 1, &c2, 1e-2f, 1e-2, 1e-4);
    lb_tensor_free(s);
    lb_tensor_free(t);
}

static void must(lb_status s) {
    if (s != LB_OK) fail_msg("%s", lb_errmsg());
}

/* lowbit's loss and gradient into an HDF5 file that scripts/reference/distill_ref.py checks with PyTorch. */
static void test_kl_torch(void **state) {
    (void)state;
    lb_tensor *s = new_logits(6, 4.0f, 1), *t = new_logits(7, 4.0f, 0);
    char dir[512], path[600];
    tu_tmpdir(dir, sizeof dir, "distill_torch");
    const float temps[2] = {1.0f, 3.0f};
    for (int k = 0; k < 2; k++) {
        lb_graph g;
        must(lb_graph_init(&g, 0));
        memset(s->grad, 0, s->n * sizeof(float));
        lb_tensor *kl = lb_kl_div(&g, s, t->data, temps[k]);
        assert_non_null(kl);
        float loss = kl->data[0];
        must(lb_backward(&g, lb_scale(&g, kl, 2.5f)));
        snprintf(path, sizeof path, "%s/kl%d.h5", dir, k);
        lb_ckpt *c;
        int shape[2] = {ROWS, V}, one = 1;
        must(lb_ckpt_create(path, &c));
        must(lb_ckpt_put_f32(c, "kl/student", 2, shape, s->data));
        must(lb_ckpt_put_f32(c, "kl/teacher", 2, shape, t->data));
        must(lb_ckpt_put_f32(c, "kl/temperature", 1, &one, &temps[k]));
        must(lb_ckpt_put_f32(c, "kl/loss", 1, &one, &loss));
        must(lb_ckpt_put_f32(c, "kl/grad", 2, shape, s->grad));
        must(lb_ckpt_commit(c));
        lb_graph_free(&g);
        char args[700];
        snprintf(args, sizeof args, "'%s'", path);
        int rc = tu_run_torch_script("distill_ref.py", args);
        if (rc != 0) fail_msg("lb_kl_div and PyTorch disagree at T = %g (exit %d, see above)", (double)temps[k], rc);
    }
    /* The relation loss, the same way. */
    lb_tensor *x = relation_inputs(15, RD, 1), *xt = relation_inputs(16, RDT, 0);
    lb_graph g;
    must(lb_graph_init(&g, 0));
    lb_tensor *rel = lb_relation_kl(&g, x, xt->data, RDT, RH);
    assert_non_null(rel);
    float loss = rel->data[0], heads = RH;
    must(lb_backward(&g, lb_scale(&g, rel, 2.5f)));
    snprintf(path, sizeof path, "%s/relation.h5", dir);
    lb_ckpt *c;
    int one = 1;
    must(lb_ckpt_create(path, &c));
    must(lb_ckpt_put_f32(c, "relation/x", 3, x->shape, x->data));
    must(lb_ckpt_put_f32(c, "relation/teacher", 3, xt->shape, xt->data));
    must(lb_ckpt_put_f32(c, "relation/heads", 1, &one, &heads));
    must(lb_ckpt_put_f32(c, "relation/loss", 1, &one, &loss));
    must(lb_ckpt_put_f32(c, "relation/grad", 3, x->shape, x->grad));
    must(lb_ckpt_commit(c));
    lb_graph_free(&g);
    char args[700];
    snprintf(args, sizeof args, "'%s'", path);
    int rc = tu_run_torch_script("distill_ref.py", args);
    if (rc != 0) fail_msg("lb_relation_kl and PyTorch disagree (exit %d, see above)", rc);
    lb_tensor_free(x);
    lb_tensor_free(xt);
    lb_tensor_free(s);
    lb_tensor_free(t);
}

/* ---- the relation loss ---------------------------------------------------------------- */

/* Mean over (b, head, i) of KL(p_t ‖ p_s) of causal relation rows, in double. */
static double reference_relation(const float *x, const float *t) {
    double total = 0.0;
    const int dr = RD / RH, drt = RDT / RH;
    for (int b = 0; b < RB; b++)
        for (int r = 0; r < RH; r++)
            for (int i = 0; i < RT; i++) {
                double ss[RT], st[RT], ms = -INFINITY, mt = -INFINITY, zs = 0, zt = 0;
                for (int j = 0; j <= i; j++) {
                    double a = 0, c = 0;
                    for (int k = 0; k < dr; k++)
                        a += (double)x[(b * RT + i) * RD + r * dr + k] * x[(b * RT + j) * RD + r * dr + k];
                    for (int k = 0; k < drt; k++)
                        c += (double)t[(b * RT + i) * RDT + r * drt + k] * t[(b * RT + j) * RDT + r * drt + k];
                    ss[j] = a / sqrt(dr);
                    st[j] = c / sqrt(drt);
                    ms = fmax(ms, ss[j]);
                    mt = fmax(mt, st[j]);
                }
                for (int j = 0; j <= i; j++) {
                    zs += exp(ss[j] - ms);
                    zt += exp(st[j] - mt);
                }
                for (int j = 0; j <= i; j++) {
                    double lt = st[j] - mt - log(zt), ls = ss[j] - ms - log(zs);
                    total += exp(lt) * (lt - ls);
                }
            }
    return total / (RB * RH * RT);
}

static lb_tensor *relation_inputs(uint64_t seed, int dim, int grad) {
    int shape[3] = {RB, RT, dim};
    lb_tensor *t = grad ? tu_param(3, shape, seed, -1.5f, 1.5f) : tu_const(3, shape, seed, -1.5f, 1.5f);
    t->name = grad ? "x" : "teacher";
    return t;
}

static void test_relation_value(void **state) {
    (void)state;
    lb_tensor *x = relation_inputs(11, RD, 1), *t = relation_inputs(12, RDT, 0);
    lb_graph g;
    must(lb_graph_init(&g, 0));
    lb_tensor *l = lb_relation_kl(&g, x, t->data, RDT, RH);
    assert_non_null(l);
    double ref = reference_relation(x->data, t->data);
    assert_true(ref > 0.0);
    assert_float_equal(l->data[0], ref, 1e-5 * fmax(1.0, ref));
    /* Against itself: zero. */
    lb_graph_reset(&g);
    l = lb_relation_kl(&g, x, x->data, RD, RH);
    assert_non_null(l);
    assert_float_equal(l->data[0], 0.0, 1e-7);
    /* Widths that do not split into the heads. */
    assert_null(lb_relation_kl(&g, x, t->data, RDT, 3));
    assert_non_null(strstr(lb_errmsg(), "relation_kl"));
    lb_graph_free(&g);
    lb_tensor_free(x);
    lb_tensor_free(t);
}

typedef struct rel_ctx {
    const float *teacher;
} rel_ctx;

static lb_tensor *rel_loss(lb_graph *g, lb_tensor **p, int n, void *ctx) {
    (void)n;
    return lb_relation_kl(g, p[0], ((const rel_ctx *)ctx)->teacher, RDT, RH);
}

static void test_grad_relation_kl(void **state) {
    (void)state;
    lb_tensor *x = relation_inputs(13, RD, 1), *t = relation_inputs(14, RDT, 0);
    rel_ctx c = {t->data};
    tu_gradcheck(rel_loss, &x, 1, &c, 1e-2f, 1e-2, 1e-4);
    lb_tensor_free(x);
    lb_tensor_free(t);
}

/* ---- training ----------------------------------------------------------------------- */

typedef tu_run_dir fixture;

static int setup(void **state) {
    *state = tu_run_dir_new("distill", 200000, 7);
    return 0;
}

static int teardown(void **state) {
    tu_run_dir_free(*state);
    return 0;
}

static void small_config(lb_config *c, const fixture *fx, const char *run) {
    lb_config_defaults(c);
    tu_config_small_model(c);
    tu_config_set(c, "data.path=%s", fx->corpus);
    tu_config_set(c, "train.steps=4");
    tu_config_set(c, "train.batch_size=4");
    tu_config_set(c, "train.seq_len=32");
    tu_config_set(c, "train.warmup_steps=1");
    tu_config_set(c, "train.lr=3e-3");
    tu_config_set(c, "checkpoint.dir=%s/%s", fx->dir, run);
    tu_config_set(c, "log.jsonl=");
}

static void init_trainer(lb_trainer *t, const lb_config *c) {
    if (lb_config_validate(c) != LB_OK) fail_msg("validate: %s", lb_errmsg());
    if (lb_trainer_init(t, c) != LB_OK) fail_msg("lb_trainer_init: %s", lb_errmsg());
}

static void run_steps(lb_trainer *t, int n, lb_step_result *last) {
    for (int i = 0; i < n; i++)
        if (lb_trainer_step(t, last) != LB_OK) fail_msg("step: %s", lb_errmsg());
}

/* An fp32 model without sub-norms trained for `steps` steps: the teacher. Its checkpoint path into `path`. */
static void make_teacher(const fixture *fx, const char *run, int steps, char *path, size_t size) {
    lb_config c;
    small_config(&c, fx, run);
    tu_config_set(&c, "model.sub_norm=false");
    tu_config_set(&c, "model.quant.preset=fp32");
    tu_config_set(&c, "train.steps=%d", steps);
    lb_trainer t;
    init_trainer(&t, &c);
    lb_step_result r;
    run_steps(&t, steps, &r);
    must(lb_trainer_save(&t, path, size));
    lb_trainer_free(&t);
}

/* A student of the teacher's shape, b1.58, distilled. */
static void student_config(lb_config *c, const fixture *fx, const char *run, const char *teacher) {
    small_config(c, fx, run);
    tu_config_set(c, "model.quant.preset=b1.58");
    tu_config_set(c, "train.init_from=%s", teacher);
    tu_config_set(c, "train.distill.weight_kl=1");
    tu_config_set(c, "train.distill.weight_ce=0.5");
    tu_config_set(c, "train.distill.temperature=2");
    tu_config_set(c, "train.distill.weight_hidden=0.1");
    tu_config_set(c, "train.distill.weight_relation=0.2");
    tu_config_set(c, "train.distill.relation_layer=0");
}

/* A student equal to its teacher (fp32, same weights) has KL 0 and the teacher's cross-entropy. */
static void test_identical_student(void **state) {
    fixture *fx = *state;
    char teacher[1024];
    make_teacher(fx, "teacher_id", 3, teacher, sizeof teacher);
    lb_config c;
    student_config(&c, fx, "identical", teacher);
    tu_config_set(&c, "model.quant.preset=fp32");
    tu_config_set(&c, "train.gemm_precision=fp32"); /* the teacher's forward is fp32 */
    lb_trainer t;
    init_trainer(&t, &c);
    assert_non_null(t.distill);
    assert_int_equal(t.inserted_sub_norms, 0);
    assert_int_equal(t.model->cfg.sub_norm, 0); /* the source's shape: sub_norm not given */
    lb_step_result r;
    run_steps(&t, 1, &r);
    assert_float_equal(r.kl, 0.0, 1e-6);
    assert_float_equal(r.hidden, 0.0, 1e-9);
    assert_float_equal(r.relation, 0.0, 1e-7);
    assert_true(r.ce > 0.0f);
    assert_float_equal(r.loss, 0.5 * r.ce, 1e-5);
    assert_true(r.teacher_seconds > 0.0);
    assert_true(lb_distill_memory(t.distill) > 2 * t.distill->teacher->n_elements * sizeof(float));
    lb_trainer_free(&t);
}

static void params_equal(const lb_model *a, const lb_model *b) {
    assert_int_equal(a->n_elements, b->n_elements);
    assert_memory_equal(a->params_memory, b->params_memory, a->n_elements * sizeof(float));
}

/* 4 steps at once equal 2 steps, a checkpoint, a new trainer resuming, 2 steps; a changed teacher is refused. */
static void test_resume_bit_exact(void **state) {
    fixture *fx = *state;
    char teacher[1024], mid[1024];
    make_teacher(fx, "teacher_resume", 3, teacher, sizeof teacher);
    lb_config c;
    student_config(&c, fx, "straight", teacher);
    lb_trainer a;
    init_trainer(&a, &c);
    lb_step_result r;
    run_steps(&a, 4, &r);
    assert_true(r.kl > 0.0f && r.hidden > 0.0f && r.relation > 0.0f);
    float expect = 0.5f * r.ce + r.kl + 0.1f * r.hidden + 0.2f * r.relation;
    assert_float_equal(r.loss, expect, 1e-5 * fabs(expect));

    student_config(&c, fx, "halves", teacher);
    lb_trainer b;
    init_trainer(&b, &c);
    run_steps(&b, 2, &r);
    must(lb_trainer_save(&b, mid, sizeof mid));
    lb_trainer_free(&b);
    init_trainer(&b, &c);
    must(lb_trainer_resume(&b, mid));
    run_steps(&b, 2, &r);
    params_equal(a.model, b.model);
    lb_trainer_free(&a);
    lb_trainer_free(&b);

    /* The teacher's file replaced by another model: resuming names it. */
    char other[1024], cmd[2400];
    make_teacher(fx, "teacher_other", 4, other, sizeof other);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", other, teacher);
    tu_run_ok(cmd);
    init_trainer(&b, &c);
    assert_int_not_equal(lb_trainer_resume(&b, mid), LB_OK);
    assert_non_null(strstr(lb_errmsg(), "is not the one this run was distilling from"));
    lb_trainer_free(&b);
}

static void test_config_needs_teacher(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "noteacher");
    tu_config_set(&c, "train.distill.weight_kl=1");
    assert_int_equal(lb_config_validate(&c), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "train.distill.weight_kl"));
    assert_non_null(strstr(lb_errmsg(), "needs a teacher"));
    assert_int_not_equal(lb_config_set(&c, "train.distill.temperature=0"), LB_OK);
    /* A teacher that is not there: the key and the path in the message. */
    tu_config_set(&c, "train.distill.teacher=%s/none.h5", fx->dir);
    must(lb_config_validate(&c));
    lb_trainer t;
    assert_int_not_equal(lb_trainer_init(&t, &c), LB_OK);
    assert_non_null(strstr(lb_errmsg(), "train.distill.teacher"));
    assert_non_null(strstr(lb_errmsg(), "none.h5"));
}

/* The validation loss of the trainer's model, fp32. */
static float val_loss(lb_trainer *t) {
    float l;
    must(lb_trainer_evaluate(t, 4, &l));
    return l;
}

/* model.sub_norm given true with a source without sub-norms: every source
 * weight is kept, each sub-norm's gain is one number per norm, and the loss
 * at step 0 stays near the source's, nearer than with gains of 1. */
static void test_sub_norm_insertion(void **state) {
    fixture *fx = *state;
    char teacher[1024];
    make_teacher(fx, "teacher_subln", 6, teacher, sizeof teacher);
    lb_config c;
    small_config(&c, fx, "subln");
    tu_config_set(&c, "model.quant.preset=fp32");
    tu_config_set(&c, "train.init_from=%s", teacher);
    lb_trainer src;
    init_trainer(&src, &c);
    assert_int_equal(src.model->cfg.sub_norm, 0);
    float l_src = val_loss(&src);

    tu_config_set(&c, "model.sub_norm=true");
    lb_trainer dst;
    init_trainer(&dst, &c);
    assert_int_equal(dst.inserted_sub_norms, 1);
    assert_int_equal(dst.model->cfg.sub_norm, 1);
    for (int i = 0; i < src.model->n_params; i++) {
        const lb_tensor *p = &src.model->tensors[i];
        const lb_tensor *q = lb_model_param(dst.model, p->name);
        assert_non_null(q);
        assert_memory_equal(p->data, q->data, p->n * sizeof(float));
    }
    for (int l = 0; l < dst.model->cfg.n_layers; l++) {
        const lb_tensor *norms[2] = {dst.model->blocks[l].attn_sub_norm, dst.model->blocks[l].ffn_sub_norm};
        for (int k = 0; k < 2; k++) {
            assert_true(norms[k]->data[0] > 0.0f && norms[k]->data[0] != 1.0f);
            for (size_t j = 1; j < norms[k]->n; j++) assert_true(norms[k]->data[j] == norms[k]->data[0]);
        }
    }
    float l_ins = val_loss(&dst);
    for (int l = 0; l < dst.model->cfg.n_layers; l++) {
        lb_tensor *norms[2] = {dst.model->blocks[l].attn_sub_norm, dst.model->blocks[l].ffn_sub_norm};
        for (int k = 0; k < 2; k++)
            for (size_t j = 0; j < norms[k]->n; j++) norms[k]->data[j] = 1.0f;
    }
    float l_ones = val_loss(&dst);
    printf("SubLN insertion, validation loss at step 0: source %.5f, inserted %.5f (gains of 1: %.5f)\n", l_src,
           l_ins, l_ones);
    assert_true(fabsf(l_ins - l_src) < fabsf(l_ones - l_src));
    assert_true(fabsf(l_ins - l_src) < 0.05f);
    lb_trainer_free(&src);
    lb_trainer_free(&dst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kl_value),
        cmocka_unit_test(test_kl_errors),
        cmocka_unit_test(test_grad_kl_div),
        cmocka_unit_test(test_kl_torch),
        cmocka_unit_test(test_relation_value),
        cmocka_unit_test(test_grad_relation_kl),
        cmocka_unit_test(test_identical_student),
        cmocka_unit_test(test_resume_bit_exact),
        cmocka_unit_test(test_config_needs_teacher),
        cmocka_unit_test(test_sub_norm_insertion),
    };
    return tu_run_group_tests(tests, setup, teardown);
}

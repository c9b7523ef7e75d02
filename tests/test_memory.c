/* Tests of the memory estimate (src/trainer/memory.h, lb_trainer_memory_need)
 * against what real runs allocate.
 *
 * This program is linked with -Wl,--wrap for malloc, calloc, aligned_alloc
 * and realloc (tests/CMakeLists.txt): while `recording` is set, every
 * allocation the library asks for is noted with its size, so the test
 * compares the estimate with the bytes the allocations really asked for:
 * parameters, gradients and optimizer state exactly, the activation arena
 * (and the teacher's) within a stated tolerance of its measured peak. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "testutil.h"
#include "trainer/distill.h"
#include "trainer/memory.h"
#include "trainer/trainer.h"

/* ---- counting allocator ---------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_aligned_alloc(size_t align, size_t n);
void *__real_realloc(void *p, size_t n);

typedef struct noted {
    const void *p;
    size_t bytes;
} noted;
static noted *notes;
static size_t n_notes, cap_notes;
static int recording;

static void note(const void *p, size_t bytes) {
    if (!recording || !p) return;
    if (n_notes == cap_notes) {
        cap_notes = cap_notes ? 2 * cap_notes : 4096;
        notes = __real_realloc(notes, cap_notes * sizeof *notes);
        if (!notes) abort();
    }
    notes[n_notes++] = (noted){p, bytes};
}

void *__wrap_malloc(size_t n) {
    void *p = __real_malloc(n);
    note(p, n);
    return p;
}
void *__wrap_calloc(size_t n, size_t size) {
    void *p = __real_calloc(n, size);
    note(p, n * size);
    return p;
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
    void *p = __real_aligned_alloc(align, n);
    note(p, n);
    return p;
}
void *__wrap_realloc(void *q, size_t n) {
    void *p = __real_realloc(q, n);
    note(p, n);
    return p;
}

/* The size the allocation at p asked for (the newest note of p); fails the test when p was never noted. */
static size_t asked(const void *p, const char *what) {
    for (size_t i = n_notes; i-- > 0;)
        if (notes[i].p == p) return notes[i].bytes;
    fail_msg("%s: no allocation was noted at %p", what, p);
    return 0;
}

/* ---- fixture --------------------------------------------------------------- */

typedef struct fixture {
    tu_run_dir *run;
    char teacher[512];
} fixture;

static void small_config(lb_config *c, const fixture *fx, const char *run) {
    lb_config_defaults(c);
    tu_config_small_model(c);
    tu_config_set(c, "data.path=%s", fx->run->corpus);
    tu_config_set(c, "train.steps=2");
    tu_config_set(c, "train.batch_size=4");
    tu_config_set(c, "train.seq_len=32");
    tu_config_set(c, "train.warmup_steps=1");
    tu_config_set(c, "checkpoint.dir=%s/%s", fx->run->dir, run);
    tu_config_set(c, "log.jsonl=");
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    fx->run = tu_run_dir_new("memory", 20000, 7);
    /* the teacher of the distillation case: an fp32 model after one step */
    lb_config c;
    small_config(&c, fx, "teacher");
    tu_config_set(&c, "model.quant.preset=fp32");
    lb_trainer t;
    if (lb_config_validate(&c) != LB_OK || lb_trainer_init(&t, &c) != LB_OK) {
        fprintf(stderr, "teacher: %s\n", lb_errmsg());
        return -1;
    }
    lb_step_result r;
    lb_status s = lb_trainer_step(&t, &r);
    if (s == LB_OK) s = lb_trainer_save(&t, fx->teacher, sizeof fx->teacher);
    lb_trainer_free(&t);
    *state = fx;
    return s == LB_OK ? 0 : -1;
}

static int teardown(void **state) {
    fixture *fx = *state;
    tu_run_dir_free(fx->run);
    free(fx);
    free(notes);
    notes = NULL;
    n_notes = cap_notes = 0;
    return 0;
}

/* ---- the comparison ------------------------------------------------------ */

/* How far the activation estimate may be from the arena's measured peak, as
 * a fraction of the peak (docs/reliability.md gives the measured figures). */
#define ACTIVATION_TOLERANCE 0.10

static void near_peak(const char *what, size_t estimate, const lb_arena *arena) {
    size_t peak = arena->peak;
    double rel = ((double)estimate - (double)peak) / (double)peak;
    printf("# %s: estimate %zu bytes, measured peak %zu bytes (%+.1f%%); chunks after the first step %zu bytes\n",
           what, estimate, peak, 100.0 * rel, arena->capacity);
    if (rel > ACTIVATION_TOLERANCE || rel < -ACTIVATION_TOLERANCE)
        fail_msg("%s: estimate %zu bytes is %+.1f%% off the measured peak %zu (tolerance %.0f%%)", what, estimate,
                 100.0 * rel, peak, 100.0 * ACTIVATION_TOLERANCE);
}

/* Builds a trainer of `c` while noting allocations, takes one step, and
 * holds the estimate to what was allocated. */
static void check_run(lb_config *c, const char *name) {
    if (lb_config_validate(c) != LB_OK) fail_msg("%s: %s", name, lb_errmsg());
    n_notes = 0;
    recording = 1;
    lb_trainer t;
    lb_status s = lb_trainer_init(&t, c);
    recording = 0;
    if (s != LB_OK) fail_msg("%s: lb_trainer_init: %s", name, lb_errmsg());

    /* The estimate from the resolved config alone, as a run computes it. */
    lb_memory_need need;
    size_t data = t.memory.data;
    if (lb_trainer_memory_need(&t.cfg, data, &need) != LB_OK) fail_msg("%s: %s", name, lb_errmsg());
    assert_memory_equal(&need, &t.memory, sizeof need);

    /* parameters and gradients: the model's two allocations */
    assert_int_equal(need.parameters, asked(t.model->params_memory, "parameters"));
    assert_int_equal(need.gradients, asked(t.model->grads_memory, "gradients"));
    /* optimizer state: every state buffer but the loss scale's two scalars */
    int nb = 0;
    const lb_state_buffer *b = lb_optim_buffers(t.opt, &nb);
    size_t state = 0;
    for (int i = 0; i < nb; i++)
        if (lb_optim_buffer_param(t.opt, i) >= 0) state += asked(b[i].data, b[i].name);
    assert_true(state > 0);
    assert_int_equal(need.optimizer, state);

    lb_step_result r;
    if (lb_trainer_step(&t, &r) != LB_OK) fail_msg("%s: step: %s", name, lb_errmsg());
    size_t peak = lb_model_forward_bytes(t.model, c->train.batch_size, c->train.seq_len, 1, omp_get_max_threads(),
                                         t.cfg.train.gemm_precision, t.cfg.train.attention_precision);
    assert_int_equal(need.activations, peak + peak / LB_ARENA_MARGIN);
    near_peak(name, peak, &t.graph.arena);
    /* the arena, reserved at the estimate, held the step without growing */
    if (need.activations > ((size_t)1 << 20)) {
        assert_int_equal(t.graph.arena.n_system_allocs, 1);
        assert_true(t.graph.arena.capacity >= need.activations);
    }
    if (t.distill) {
        const lb_model *tm = t.distill->teacher;
        size_t weights = asked(tm->params_memory, "teacher parameters") + asked(tm->grads_memory, "teacher gradients");
        assert_true(need.teacher > weights);
        char what[64];
        snprintf(what, sizeof what, "%s, teacher", name);
        near_peak(what, need.teacher - weights, &t.distill->graph.arena);
    } else {
        assert_int_equal(need.teacher, 0);
    }
    lb_memory_need_sum(&need);
    assert_int_equal(need.total, need.parameters + need.gradients + need.optimizer + need.activations +
                                     need.teacher + need.data + need.dist);
    assert_int_equal(need.dist, 0); /* one rank; test_grad_sync_bytes holds the data-parallel part */
    lb_trainer_free(&t);
}

static void test_fp32_adamw(void **state) {
    lb_config c;
    small_config(&c, *state, "fp32");
    tu_config_set(&c, "model.quant.preset=fp32");
    check_run(&c, "fp32, AdamW fp32 states");
}

static void test_b158_int8_states(void **state) {
    lb_config c;
    small_config(&c, *state, "b158");
    tu_config_set(&c, "model.quant.preset=b1.58");
    tu_config_set(&c, "model.sub_norm=true");
    tu_config_set(&c, "optim.state=int8");
    check_run(&c, "b1.58, AdamW int8 states");
}

static void test_distillation(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "distill");
    tu_config_set(&c, "model.quant.preset=b1.58");
    tu_config_set(&c, "train.distill.teacher=%s", fx->teacher);
    tu_config_set(&c, "train.distill.weight_kl=1");
    tu_config_set(&c, "train.distill.temperature=2");
    check_run(&c, "b1.58 distilled from fp32");
}

/* Shapes and settings where other parts of the arena dominate: each case
 * is a list of settings over small_config. */
static void test_sweep(void **state) {
    static const char *const cases[][8] = {
        {"long windows: attention and logits", "model.max_seq_len=128", "train.seq_len=128", "train.batch_size=8"},
        {"vocabulary 4096: the logits", "model.vocab_size=4096", "model.quant.preset=b1.58"},
        {"wide FFN, one block: recomputed weights", "model.n_layers=1", "model.ffn_dim=1024", "model.quant.preset=b1.58"},
        {"bf16 products, int8 activation gradients", "model.quant.preset=b1.58", "train.gemm_precision=bf16",
         "optim.act_grad=int8"},
        {"bf16 products, attention in fp32: long windows", "model.max_seq_len=128", "train.seq_len=128",
         "train.batch_size=8", "train.gemm_precision=bf16", "train.attention_precision=fp32"},
        {"fp32 products, attention in bf16: long windows", "model.max_seq_len=128", "train.seq_len=128",
         "train.batch_size=8", "train.gemm_precision=fp32", "train.attention_precision=bf16"},
        {"layernorm, relu2, untied head, bf16 states, Lion", "model.norm=layernorm", "model.ffn_act=relu2",
         "model.tie_embeddings=false", "optim.state=bf16", "optim.type=lion"},
        {"LSQ int4 weights, grouped queries, fp8 states", "model.n_heads=4", "model.n_kv_heads=1",
         "model.quant.attn={weight: int4:lsq, activation: int8:lsq}", "model.quant.ffn.weight=int4:g32:lsq",
         "optim.state=fp8"},
        {"fp8 embedding, SGD", "model.quant.embedding=fp8_e4m3", "optim.type=sgd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lb_config c;
        char run[32];
        snprintf(run, sizeof run, "sweep%zu", i);
        small_config(&c, *state, run);
        for (int k = 1; k < 8 && cases[i][k]; k++) tu_config_set(&c, "%s", cases[i][k]);
        check_run(&c, cases[i][0]);
    }
}

/* The gradient reduction's buffers for two ranks (rank 0), each format,
 * with and without ZeRO-1 owners: lb_grad_sync_bytes against what
 * lb_grad_sync_create asks for, which adds only its per-tensor bookkeeping
 * (five arrays of pointers and indices, residual pointers: under 128 bytes a
 * tensor). Creating it touches no MPI call, so one process tests it. */
static void test_grad_sync_bytes(void **state) {
    (void)state;
    if (!lb_dist_compiled()) {
        printf("# built without MPI: the reduction has no buffers to count\n");
        return;
    }
    lb_config c;
    lb_config_defaults(&c);
    tu_config_set(&c, "model.vocab_size=300");
    tu_config_small_model(&c);
    lb_model *m = lb_model_create(&c.model, 1);
    assert_non_null(m);
    lb_dist two = {.rank = 0, .size = 2, .timeout = 0.0, .mpi = 0};
    int *owner = malloc((size_t)m->n_params * sizeof *owner);
    assert_non_null(owner);
    lb_zero_owners(&two, m->param_list, m->n_params, owner);
    for (int f = 0; f < LB_COMM_COUNT; f++)
        for (int zero = 0; zero < 2; zero++) {
            const int *own = zero ? owner : NULL;
            if (zero && f != LB_COMM_FP32) continue; /* optim.zero takes fp32 only */
            n_notes = 0;
            recording = 1;
            lb_grad_sync *g = lb_grad_sync_create(&two, m->param_list, m->n_params, 0, own, (lb_comm_format)f);
            recording = 0;
            if (!g) fail_msg("lb_grad_sync_create: %s", lb_errmsg());
            size_t all = 0;
            for (size_t i = 0; i < n_notes; i++) all += notes[i].bytes;
            size_t est = lb_grad_sync_bytes(&two, m->param_list, m->n_params, own, (lb_comm_format)f);
            printf("# reduction %s%s: %zu bytes estimated, %zu allocated\n", lb_comm_format_names[f],
                   zero ? " (ZeRO-1)" : "", est, all);
            assert_true(est > m->n_elements * sizeof(float));
            assert_true(all >= est);
            assert_true(all - est <= 1024 + 128 * (size_t)m->n_params);
            lb_grad_sync_free(g);
        }
    lb_dist one = {.rank = 0, .size = 1};
    assert_int_equal(lb_grad_sync_bytes(&one, m->param_list, m->n_params, NULL, LB_COMM_INT8), 0);
    free(owner);
    lb_model_free(m);
}

/* The limit the check compares with, and its message. */
static void test_check_message(void **state) {
    (void)state;
    lb_memory_need need = {.parameters = (size_t)3 << 40, .gradients = (size_t)3 << 40};
    lb_memory_need_sum(&need);
    assert_int_equal(lb_memory_check("config 'huge.yaml'", &need), LB_ENOMEM);
    const char *m = lb_errmsg();
    assert_non_null(strstr(m, "config 'huge.yaml': needs about 6144.00 GiB"));
    assert_non_null(strstr(m, "parameters 3072.00 GiB"));
    lb_memory_limit l = lb_memory_limit_now();
    assert_true(l.known);
    assert_non_null(strstr(m, l.what));
    need = (lb_memory_need){.parameters = 4096};
    lb_memory_need_sum(&need);
    assert_int_equal(lb_memory_check("config 'tiny.yaml'", &need), LB_OK);
    char line[256];
    lb_memory_format(&need, line, sizeof line);
    assert_string_equal(line, "~4.0 KiB: parameters 4.0 KiB, gradients 0.0 KiB, optimizer 0.0 KiB, activations 0.0 KiB");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32_adamw),
        cmocka_unit_test(test_b158_int8_states),
        cmocka_unit_test(test_distillation),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_grad_sync_bytes),
        cmocka_unit_test(test_check_message),
    };
    return tu_run_group_tests(tests, setup, teardown);
}

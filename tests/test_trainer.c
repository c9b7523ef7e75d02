/* End-to-end tests of src/trainer: training from a config lowers the
 * validation loss, resuming from a checkpoint continues bit for bit (also
 * after a stop), a checkpoint written by an earlier lowbit reads and writes
 * back unchanged, the run loop keeps its cadence and checks its directories
 * before the first step, and a damaged checkpoint is an error rather than a
 * crash. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "trainer/rundir.h"
#include "trainer/run.h"
#include "trainer/state.h"

typedef tu_run_dir fixture; /* the run directory and its generated corpus */

static int setup(void **state) {
    *state = tu_run_dir_new("trainer", 200000, 99);
    return 0;
}

static int teardown(void **state) {
    tu_run_dir_free(*state);
    return 0;
}

/* A model small enough that a step takes milliseconds, with weights big enough
 * (64x64 = 4096 elements) for the int8 optimizer state to apply. */
static void small_config(lb_config *c, const fixture *fx, const char *run, const char *state_codec) {
    lb_config_defaults(c);
    tu_config_small_model(c);
    tu_config_set(c, "model.n_kv_heads=1");
    tu_config_set(c, "model.sub_norm=true");
    tu_config_set(c, "model.quant.preset=b1.58");
    tu_config_set(c, "data.path=%s", fx->corpus);
    tu_config_set(c, "train.steps=6");
    tu_config_set(c, "train.batch_size=4");
    tu_config_set(c, "train.seq_len=32");
    tu_config_set(c, "train.grad_accum=2");
    tu_config_set(c, "train.warmup_steps=2");
    tu_config_set(c, "train.lr=3e-3");
    tu_config_set(c, "train.schedule=two_stage");
    tu_config_set(c, "optim.state=%s", state_codec);
    tu_config_set(c, "checkpoint.dir=%s/%s", fx->dir, run);
    tu_config_set(c, "log.jsonl=");
    if (lb_config_validate(c) != LB_OK) fail_msg("validate: %s", lb_errmsg());
}

static void init_trainer(lb_trainer *t, const lb_config *c) {
    if (lb_trainer_init(t, c) != LB_OK) fail_msg("lb_trainer_init: %s", lb_errmsg());
}

static void steps(lb_trainer *t, int n, float *losses) {
    for (int i = 0; i < n; i++) {
        lb_step_result r;
        if (lb_trainer_step(t, &r) != LB_OK) fail_msg("step: %s", lb_errmsg());
        losses[i] = r.loss;
    }
}

static void test_seed_fixes_the_run(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "seed", "fp32");
    float l1[3], l2[3], l3[3];
    lb_trainer t;
    init_trainer(&t, &c);
    steps(&t, 3, l1);
    lb_trainer_free(&t);
    init_trainer(&t, &c);
    steps(&t, 3, l2);
    lb_trainer_free(&t);
    assert_memory_equal(l1, l2, sizeof l1);
    tu_config_set(&c, "train.seed=12345");
    init_trainer(&t, &c);
    steps(&t, 3, l3);
    lb_trainer_free(&t);
    assert_memory_not_equal(l1, l3, sizeof l1);
}

static void corrupt_copy(const char *src, const char *dst, long truncate_to, long flip_at) {
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    if (flip_at >= 0) buf[flip_at % size] ^= 0x5A;
    FILE *out = fopen(dst, "wb");
    fwrite(buf, 1, (size_t)(truncate_to >= 0 ? truncate_to : size), out);
    fclose(out);
    free(buf);
}

static void test_damaged_checkpoints_are_errors(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "damaged", "int8");
    lb_trainer t;
    init_trainer(&t, &c);
    float l[2];
    steps(&t, 2, l);
    char good[512];
    assert_int_equal(lb_trainer_save(&t, good, sizeof good), LB_OK);
    struct stat st;
    assert_int_equal(stat(good, &st), 0);

    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.h5", fx->dir);
    /* Truncations at several points, and flipped bytes all over the file. */
    long cuts[] = {0, 100, st.st_size / 3, st.st_size / 2, st.st_size - 100};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        corrupt_copy(good, bad, cuts[i], -1);
        lb_trainer u;
        init_trainer(&u, &c);
        lb_status s = lb_trainer_resume(&u, bad);
        if (s == LB_OK) fail_msg("a checkpoint truncated to %ld of %ld bytes was accepted", cuts[i], (long)st.st_size);
        assert_non_null(strstr(lb_errmsg(), "bad.h5"));
        lb_trainer_free(&u);
    }
    int rejected = 0, tries = 0;
    for (long at = 4096; at < st.st_size; at += st.st_size / 23, tries++) {
        corrupt_copy(good, bad, -1, at);
        lb_trainer u;
        init_trainer(&u, &c);
        if (lb_trainer_resume(&u, bad) != LB_OK) rejected++;
        lb_trainer_free(&u);
    }
    /* Data bytes are covered by checksums; a flip in unused padding may be
     * harmless, so most, not all, flips must be caught. */
    assert_true(rejected * 10 >= tries * 8);

    /* The good checkpoint is untouched by all of this and still loads. */
    lb_trainer u;
    init_trainer(&u, &c);
    if (lb_trainer_resume(&u, good) != LB_OK) fail_msg("resume: %s", lb_errmsg());
    assert_int_equal(u.step, 2);
    lb_trainer_free(&u);
    lb_trainer_free(&t);
}

static void test_resume_with_another_architecture_is_an_error(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "arch", "fp32");
    lb_trainer t;
    init_trainer(&t, &c);
    char path[512];
    assert_int_equal(lb_trainer_save(&t, path, sizeof path), LB_OK);
    lb_trainer_free(&t);
    tu_config_set(&c, "model.ffn_dim=192");
    init_trainer(&t, &c);
    assert_int_not_equal(lb_trainer_resume(&t, path), LB_OK);
    assert_non_null(strstr(lb_errmsg(), "ffn_gate"));
    lb_trainer_free(&t);
}

/* data.tokenizer reaches the trainer: bpe trains a vocabulary of
 * data.vocab_size on the corpus, the model's vocabulary follows it, and the
 * run saves and resumes with that tokenizer. */
static void test_trainer_uses_the_configured_tokenizer(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "bpe", "fp32");
    tu_config_set(&c, "data.tokenizer=bpe");
    tu_config_set(&c, "data.vocab_size=300");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    lb_trainer t;
    init_trainer(&t, &c);
    assert_int_equal(t.tok->kind, LB_TOKENIZER_BPE);
    assert_int_equal(t.tok->vocab_size, 300);
    assert_int_equal(t.cfg.model.vocab_size, 300);
    float l[2];
    steps(&t, 2, l);
    char path[700];
    assert_int_equal(lb_trainer_save(&t, path, sizeof path), LB_OK);
    lb_trainer_free(&t);
    init_trainer(&t, &c);
    if (lb_trainer_resume(&t, path) != LB_OK) fail_msg("resume: %s", lb_errmsg());
    assert_int_equal(t.step, 2);
    lb_trainer_free(&t);
}

/* The tiny example configs (their architecture as shipped; fewer, smaller
 * batches so the test stays short) lower the validation loss well below
 * ln(256), the loss of a byte model that knows nothing. */
static void check_config_learns(const fixture *fx, const char *config, float lr) {
    char path[512];
    snprintf(path, sizeof path, "%s/configs/%s", tu_source_dir(), config);
    lb_config c;
    if (lb_config_load_file(path, &c) != LB_OK) fail_msg("%s", lb_errmsg());
    tu_config_set(&c, "data.path=%s", fx->corpus);
    tu_config_set(&c, "train.steps=40");
    tu_config_set(&c, "train.warmup_steps=5");
    tu_config_set(&c, "train.batch_size=4");
    tu_config_set(&c, "train.seq_len=64");
    tu_config_set(&c, "train.lr=%g", lr);
    tu_config_set(&c, "checkpoint.dir=%s/learn-%s", fx->dir, config);
    tu_config_set(&c, "log.jsonl=");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    lb_trainer t;
    init_trainer(&t, &c);
    float before, after, losses[40];
    assert_int_equal(lb_trainer_evaluate(&t, 4, &before), LB_OK);
    steps(&t, 40, losses);
    assert_int_equal(lb_trainer_evaluate(&t, 4, &after), LB_OK);
    print_message("%s: validation loss %.3f -> %.3f after 40 steps (ln 256 = %.3f)\n", config, before, after,
                  log(256.0));
    assert_true(fabsf(before - (float)log(256.0)) < 0.5f);
    assert_true(after < 0.6f * (float)log(256.0));
    lb_trainer_free(&t);
}

static void test_b158_tiny_learns(void **state) { check_config_learns(*state, "bitnet-b158-tiny.yaml", 3e-3f); }
static void test_b1_tiny_learns(void **state) { check_config_learns(*state, "bitnet-b1-tiny.yaml", 3e-3f); }
static void test_fp32_tiny_learns(void **state) { check_config_learns(*state, "fp32-tiny.yaml", 2e-3f); }

/* ---- run directories ------------------------------------------------------------- */

static void write_byte_file(const char *dir, const char *name) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    fputc('x', f);
    fclose(f);
}

static int count_entries(const char *dir) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (!p || fscanf(p, "%d", &n) != 1) fail_msg("cannot list %s", dir);
    pclose(p);
    return n;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void test_rundir_step_files_latest_and_prune(void **state) {
    fixture *fx = *state;
    char dir[400], buf[700], want[700];
    snprintf(dir, sizeof dir, "%s/rundir", fx->dir);
    assert_int_equal(lb_rundir_prepare(dir), LB_OK);
    assert_int_equal(count_entries(dir), 0); /* the probe is gone */

    assert_int_equal(lb_rundir_step_path(dir, 100, buf, sizeof buf), LB_OK);
    snprintf(want, sizeof want, "%s/step_00000100.h5", dir);
    assert_string_equal(buf, want);
    assert_int_equal(lb_rundir_step_path("run", 123456789, buf, sizeof buf), LB_OK);
    assert_string_equal(buf, "run/step_123456789.h5");
    assert_int_equal(lb_rundir_step_path(dir, -1, buf, sizeof buf), LB_EINVAL);
    assert_int_equal(lb_rundir_step_path(dir, 1, buf, 10), LB_EINVAL);

    assert_int_equal(lb_rundir_latest(dir, buf, sizeof buf), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "holds no checkpoint"));
    snprintf(want, sizeof want, "%s/absent", dir);
    assert_int_equal(lb_rundir_latest(want, buf, sizeof buf), LB_EIO);
    assert_int_equal(lb_rundir_resolve(want, buf, sizeof buf), LB_EIO);

    const char *steps[] = {"step_00000005.h5", "step_00000100.h5", "step_00000020.h5", "step_00000007.h5",
                           "step_1000000000.h5"};
    for (int i = 0; i < 5; i++) write_byte_file(dir, steps[i]);
    /* Names that are not step files: never taken, never deleted. */
    const char *others[] = {"step_2000000000.h5.tmp-1-0", "step_abc.h5", "step_.h5", "notes.txt"};
    for (int i = 0; i < 4; i++) write_byte_file(dir, others[i]);

    snprintf(want, sizeof want, "%s/step_1000000000.h5", dir);
    assert_int_equal(lb_rundir_latest(dir, buf, sizeof buf), LB_OK);
    assert_string_equal(buf, want);
    assert_int_equal(lb_rundir_resolve(dir, buf, sizeof buf), LB_OK); /* a directory: its newest */
    assert_string_equal(buf, want);
    snprintf(want, sizeof want, "%s/step_00000005.h5", dir);
    assert_int_equal(lb_rundir_resolve(want, buf, sizeof buf), LB_OK); /* a file: itself */
    assert_string_equal(buf, want);

    assert_int_equal(lb_rundir_prune(dir, 0), LB_OK); /* 0: keep all */
    assert_int_equal(count_entries(dir), 5 + 4);
    assert_int_equal(lb_rundir_prune(dir, 3), LB_OK);
    assert_int_equal(count_entries(dir), 3 + 4);
    const char *kept[] = {"step_1000000000.h5", "step_00000100.h5", "step_00000020.h5"};
    for (int i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "%s/%s", dir, kept[i]);
        assert_true(exists(buf));
    }
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%s/%s", dir, others[i]);
        assert_true(exists(buf));
    }
    assert_int_equal(lb_rundir_prune(dir, 1), LB_OK);
    assert_int_equal(count_entries(dir), 1 + 4);
    assert_int_equal(lb_rundir_prune(dir, 5), LB_OK); /* fewer than 5: nothing to do */
    assert_int_equal(count_entries(dir), 1 + 4);
}

/* ---- the run loop ------------------------------------------------------------------- */

/* Records the events of a run as "kind@step" words, and raises the stop flag
 * (as a signal handler would) once step `stop_at` is reported. */
typedef struct recorder {
    char log[2048];
    size_t n;
    int64_t stop_at;
    volatile sig_atomic_t stop;
    float loss[64]; /* by step */
} recorder;

static void record(const lb_run_event *e, void *ctx) {
    recorder *r = ctx;
    const char *what = e->kind == LB_RUN_START ? "start"
                       : e->kind == LB_RUN_STEP ? "step"
                       : e->kind == LB_RUN_EVAL ? "eval"
                       : e->kind == LB_RUN_STOP ? "stop"
                                                : e->why;
    r->n += (size_t)snprintf(r->log + r->n, sizeof r->log - r->n, "%s%s@%lld", r->n ? " " : "", what,
                             (long long)e->trainer->step);
    if (e->kind == LB_RUN_STEP && e->trainer->step == r->stop_at) r->stop = SIGINT;
    if (e->kind == LB_RUN_STEP && e->trainer->step < 64) r->loss[e->trainer->step] = e->result->loss;
    if (e->kind == LB_RUN_EVAL) assert_true(isfinite(e->val_loss));
    if (e->kind == LB_RUN_CHECKPOINT) assert_true(exists(e->path));
}

/* lb_run from `resume` (NULL: fresh) with `rec` as its hook and its stop flag. */
static lb_status run_recorded(lb_trainer *t, recorder *rec, const char *resume, lb_run_report *r) {
    lb_run_options o = {.resume = resume, .stop = &rec->stop, .on_event = record, .ctx = rec};
    return lb_run(t, &o, r);
}

/* small_config with a metrics file in the run directory. */
static void run_config(lb_config *c, const fixture *fx, const char *run, const char *state_codec) {
    small_config(c, fx, run, state_codec);
    tu_config_set(c, "log.jsonl=%s/%s/metrics.jsonl", fx->dir, run);
}

/* The file's text with the wall-clock field (tokens_per_s) taken out. */
static char *metrics_without_rates(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("no metrics file %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *out = malloc(n + 1), *o = out;
    for (const char *p = buf; *p;) {
        if (!strncmp(p, ",\"tokens_per_s\":", 16)) {
            p += 16;
            while (*p && *p != '}' && *p != ',') p++;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static int count_lines(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static void test_run_keeps_its_cadence(void **state) {
    fixture *fx = *state;
    lb_config c;
    run_config(&c, fx, "cadence", "fp32");
    tu_config_set(&c, "train.steps=7");
    tu_config_set(&c, "eval.interval=3");
    tu_config_set(&c, "eval.batches=2");
    tu_config_set(&c, "checkpoint.interval=2");
    tu_config_set(&c, "checkpoint.keep_last=2");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    lb_trainer t;
    init_trainer(&t, &c);
    recorder rec = {.stop_at = -1};
    lb_run_report r;
    if (run_recorded(&t, &rec, NULL, &r) != LB_OK) fail_msg("lb_run: %s", lb_errmsg());
    assert_string_equal(rec.log, "start@0 step@1 step@2 periodic@2 step@3 eval@3 step@4 periodic@4 step@5 step@6 "
                                 "eval@6 periodic@6 step@7 eval@7 final@7");
    assert_int_equal(r.start_step, 0);
    assert_int_equal(r.steps, 7);
    assert_int_equal(r.tokens, 7 * 2 * 4 * 32);
    assert_int_equal(r.stop, 0);
    assert_true(isfinite(r.val_loss) && r.seconds > 0);
    char want[700];
    snprintf(want, sizeof want, "%s/cadence/step_00000007.h5", fx->dir);
    assert_string_equal(r.checkpoint, want);
    /* keep_last 2: steps 6 and 7, and the metrics file */
    snprintf(want, sizeof want, "%s/cadence", fx->dir);
    assert_int_equal(count_entries(want), 3);
    snprintf(want, sizeof want, "%s/cadence/step_00000006.h5", fx->dir);
    assert_true(exists(want));
    char *m = metrics_without_rates(c.log.jsonl);
    assert_int_equal(count_lines(m, "{\"event\":\"step\""), 7);
    assert_int_equal(count_lines(m, "{\"event\":\"eval\""), 3);
    assert_non_null(strstr(m, "{\"event\":\"eval\",\"step\":7,\"tokens\":1792,\"val_loss\":"));
    free(m);

    /* At train.steps already: nothing to do, nothing written. */
    rec.n = 0;
    if (run_recorded(&t, &rec, NULL, &r) != LB_OK) fail_msg("lb_run: %s", lb_errmsg());
    assert_string_equal(rec.log, "start@7");
    assert_int_equal(r.steps, 0);
    assert_string_equal(r.checkpoint, "");
    assert_true(isnan(r.val_loss));
    lb_trainer_free(&t);
}

/* N steps straight == a stop after step N/2 (the flag a signal handler sets:
 * LB_EINTERRUPTED and a checkpoint of that step), a fresh process-like
 * restart, a resume from the run directory and the rest: the same loss at
 * every step bit for bit, the same weights and the same metrics file. */
static void check_resume_exact(const fixture *fx, const char *codec) {
    enum { N = 6 };
    char run_a[32], run_b[32], dir[400], want[700];
    snprintf(run_a, sizeof run_a, "straight-%s", codec);
    snprintf(run_b, sizeof run_b, "resumed-%s", codec);
    lb_config ca, cb;
    run_config(&ca, fx, run_a, codec);
    run_config(&cb, fx, run_b, codec);
    tu_config_set(&ca, "eval.interval=2");
    tu_config_set(&cb, "eval.interval=2");

    lb_trainer a;
    init_trainer(&a, &ca);
    recorder ra = {.stop_at = -1};
    lb_run_report rep_a;
    if (run_recorded(&a, &ra, NULL, &rep_a) != LB_OK) fail_msg("lb_run: %s", lb_errmsg());

    lb_trainer b;
    init_trainer(&b, &cb);
    recorder rb = {.stop_at = N / 2};
    lb_run_report rep_b;
    assert_int_equal(run_recorded(&b, &rb, NULL, &rep_b), LB_EINTERRUPTED);
    assert_non_null(strstr(lb_errmsg(), "stopped at step 3"));
    assert_string_equal(rb.log, "start@0 step@1 step@2 eval@2 step@3 stop@3 interrupted@3");
    assert_int_equal(rep_b.stop, SIGINT);
    assert_int_equal(rep_b.steps, N / 2);
    snprintf(want, sizeof want, "%s/%s/step_00000003.h5", fx->dir, run_b);
    assert_string_equal(rep_b.checkpoint, want);
    lb_trainer_free(&b);

    init_trainer(&b, &cb);
    snprintf(dir, sizeof dir, "%s/%s", fx->dir, run_b);
    rb.n = 0;
    rb.stop = 0;
    rb.stop_at = -1;
    if (run_recorded(&b, &rb, dir, &rep_b) != LB_OK) fail_msg("resumed lb_run: %s", lb_errmsg());
    assert_string_equal(rb.log, "start@3 step@4 eval@4 step@5 step@6 eval@6 final@6");
    assert_int_equal(rep_b.start_step, N / 2);
    assert_int_equal(rep_b.steps, N - N / 2);

    for (int i = 1; i <= N; i++)
        if (memcmp(&ra.loss[i], &rb.loss[i], sizeof(float)) != 0)
            fail_msg("%s state: loss of step %d differs: straight %.9g, resumed %.9g", codec, i, ra.loss[i],
                     rb.loss[i]);
    assert_int_equal(a.model->n_elements, b.model->n_elements);
    assert_memory_equal(a.model->params_memory, b.model->params_memory, a.model->n_elements * sizeof(float));
    assert_int_equal(a.tokens_seen, b.tokens_seen);
    assert_true(memcmp(&rep_a.val_loss, &rep_b.val_loss, sizeof(float)) == 0);
    char *ma = metrics_without_rates(ca.log.jsonl), *mb = metrics_without_rates(cb.log.jsonl);
    assert_string_equal(ma, mb);
    free(ma);
    free(mb);
    lb_trainer_free(&a);
    lb_trainer_free(&b);
}

static void test_resume_is_bit_exact_fp32_state(void **state) { check_resume_exact(*state, "fp32"); }
static void test_resume_is_bit_exact_int8_state(void **state) { check_resume_exact(*state, "int8"); }
static void test_resume_is_bit_exact_fp8_state(void **state) { check_resume_exact(*state, "fp8"); }

/* train.<key>'s precision (key gemm_precision or attention_precision) in the
 * trainer's config, which its graph runs at. */
static lb_gemm_precision precision_in(const lb_trainer *t, const char *key) {
    const int attn = !strcmp(key, "attention_precision");
    const lb_gemm_precision p = attn ? t->cfg.train.attention_precision : t->cfg.train.gemm_precision;
    assert_int_equal(attn ? t->graph.attn_precision : t->graph.precision, p);
    return p;
}

/* train.<key> auto resumes at the precision the checkpoint ran at: a run at
 * `other` is saved and resumed with auto, which starts at `here`; a
 * precision the config names is kept. */
static void check_resume_keeps(lb_config *c, const char *key, lb_gemm_precision here, lb_gemm_precision other) {
    tu_config_set(c, "train.%s=%s", key, lb_gemm_precision_name(other));
    lb_trainer t;
    init_trainer(&t, c);
    float losses[2];
    steps(&t, 2, losses);
    char path[700], want[64];
    if (lb_trainer_save(&t, path, sizeof path) != LB_OK) fail_msg("save: %s", lb_errmsg());
    lb_trainer_free(&t);

    tu_config_set(c, "train.%s=auto", key);
    init_trainer(&t, c);
    assert_int_equal(precision_in(&t, key), here);
    if (lb_trainer_resume(&t, path) != LB_OK) fail_msg("resume: %s", lb_errmsg());
    assert_int_equal(precision_in(&t, key), other);
    snprintf(want, sizeof want, "\n  %s: %s\n", key, lb_gemm_precision_name(other));
    assert_non_null(strstr(t.config_yaml, want));
    steps(&t, 1, losses);
    lb_trainer_free(&t);

    tu_config_set(c, "train.%s=%s", key, lb_gemm_precision_name(here));
    init_trainer(&t, c);
    if (lb_trainer_resume(&t, path) != LB_OK) fail_msg("resume: %s", lb_errmsg());
    assert_int_equal(precision_in(&t, key), here);
    lb_trainer_free(&t);
}

static lb_gemm_precision the_other(lb_gemm_precision p) {
    return p == LB_PRECISION_BF16 ? LB_PRECISION_FP32 : LB_PRECISION_BF16;
}

static void test_resume_keeps_the_checkpoints_precision(void **state) {
    lb_config c;
    small_config(&c, *state, "precision", "fp32");
    tu_config_set(&c, "model.quant.preset=fp32");
    const lb_gemm_precision here = lb_gemm_precision_resolve(LB_PRECISION_AUTO);
    check_resume_keeps(&c, "gemm_precision", here, the_other(here));
}

/* Removes the line `key: value` from the config a trainer will store, as
 * checkpoints written before the key existed have it. */
static void forget_stored_key(lb_trainer *t, const char *key) {
    char *at = strstr(t->config_yaml, key), *end = at ? strchr(at, '\n') : NULL;
    assert_non_null(end);
    while (at > t->config_yaml && at[-1] == ' ') at--;
    memmove(at, end + 1, strlen(end + 1) + 1);
}

/* The same for train.attention_precision, whatever the other products'
 * precision; and a checkpoint from before the key ran attention at its
 * train.gemm_precision. */
static void test_resume_keeps_the_checkpoints_attention_precision(void **state) {
    fixture *fx = *state;
    lb_config c;
    small_config(&c, fx, "attn_precision", "fp32");
    tu_config_set(&c, "model.quant.preset=fp32");
    const lb_gemm_precision gemm = lb_gemm_precision_resolve(LB_PRECISION_AUTO);
    const lb_gemm_precision here = lb_attention_precision_resolve(LB_PRECISION_AUTO, gemm);
    check_resume_keeps(&c, "attention_precision", here, the_other(here));

    /* Before the key: products in bf16 (attention with them), the key not stored.
     * Resumed with products in fp32 and attention auto, attention stays bf16. */
    tu_config_set(&c, "checkpoint.dir=%s/attn_precision_old", fx->dir);
    tu_config_set(&c, "train.gemm_precision=bf16");
    tu_config_set(&c, "train.attention_precision=bf16");
    lb_trainer t;
    init_trainer(&t, &c);
    float loss;
    steps(&t, 1, &loss);
    forget_stored_key(&t, "attention_precision:");
    char old[700];
    if (lb_trainer_save(&t, old, sizeof old) != LB_OK) fail_msg("save: %s", lb_errmsg());
    lb_trainer_free(&t);
    lb_config stored;
    if (lb_load_checkpoint_config(old, &stored) != LB_OK) fail_msg("%s", lb_errmsg());
    assert_int_equal(stored.train.attention_precision, LB_PRECISION_AUTO);

    tu_config_set(&c, "train.gemm_precision=fp32");
    tu_config_set(&c, "train.attention_precision=auto");
    init_trainer(&t, &c);
    assert_int_equal(precision_in(&t, "attention_precision"), LB_PRECISION_FP32);
    if (lb_trainer_resume(&t, old) != LB_OK) fail_msg("resume: %s", lb_errmsg());
    assert_int_equal(precision_in(&t, "gemm_precision"), LB_PRECISION_FP32);
    assert_int_equal(precision_in(&t, "attention_precision"), LB_PRECISION_BF16);
    assert_non_null(strstr(t.config_yaml, "\n  attention_precision: bf16\n"));
    steps(&t, 1, &loss);
    lb_trainer_free(&t);
}

/* A directory that cannot be written is found before the first step. */
static void check_preflight_fails(lb_config *c, const char *key, const char *reason) {
    assert_int_equal(lb_config_validate(c), LB_OK);
    assert_int_equal(lb_run_preflight(c), LB_ECONFIG);
    const char *msg = lb_errmsg();
    if (!strstr(msg, key) || !strstr(msg, reason))
        fail_msg("expected '%s' and '%s' in: %s", key, reason, msg);
}

static void test_run_checks_its_directories_first(void **state) {
    fixture *fx = *state;
    char file[400], dir[1000];
    snprintf(file, sizeof file, "%s/a-file", fx->dir);
    write_byte_file(fx->dir, "a-file");
    lb_config c;
    run_config(&c, fx, "preflight", "fp32");

    /* checkpoint.dir under a file: lb_run fails before anything happens. */
    tu_config_set(&c, "checkpoint.dir=%s/run", file);
    tu_config_set(&c, "log.jsonl=");
    lb_trainer t;
    init_trainer(&t, &c);
    recorder rec = {.stop_at = -1};
    lb_run_report r;
    assert_int_equal(run_recorded(&t, &rec, NULL, &r), LB_ECONFIG);
    snprintf(dir, sizeof dir, "key 'checkpoint.dir': cannot write checkpoints to '%s/run': '%s' is a file, not a "
                              "directory", file, file);
    assert_string_equal(lb_errmsg(), dir);
    assert_string_equal(rec.log, "");
    assert_int_equal(t.step, 0);
    assert_int_equal(r.steps, 0);
    lb_trainer_free(&t);

    /* a name longer than the file system takes */
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    tu_config_set(&c, "checkpoint.dir=%s/%s", fx->dir, name);
    check_preflight_fails(&c, "checkpoint.dir", strerror(ENAMETOOLONG));

    /* the metrics file is a directory, or lies under a file */
    tu_config_set(&c, "checkpoint.dir=%s/preflight", fx->dir);
    tu_config_set(&c, "log.jsonl=%s", fx->dir);
    check_preflight_fails(&c, "log.jsonl", "is a directory");
    tu_config_set(&c, "log.jsonl=%s/metrics.jsonl", file);
    check_preflight_fails(&c, "log.jsonl", "is a file, not a directory");

    /* a read-only directory (root writes anyway: test_cli.sh covers root by
     * dropping the capability) */
    if (geteuid() != 0) {
        snprintf(dir, sizeof dir, "%s/read-only", fx->dir);
        assert_int_equal(mkdir(dir, 0555), 0);
        tu_config_set(&c, "log.jsonl=");
        tu_config_set(&c, "checkpoint.dir=%s", dir);
        check_preflight_fails(&c, "checkpoint.dir", strerror(EACCES));
        chmod(dir, 0755);
    }

    /* Writable: made, left empty; an existing metrics file is not touched. */
    tu_config_set(&c, "checkpoint.dir=%s/fresh/run", fx->dir);
    tu_config_set(&c, "log.jsonl=%s", file);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    if (lb_run_preflight(&c) != LB_OK) fail_msg("preflight: %s", lb_errmsg());
    snprintf(dir, sizeof dir, "%s/fresh/run", fx->dir);
    assert_int_equal(count_entries(dir), 0);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 1);
}

/* read_only (the ranks other than 0 of a data-parallel run): every step,
 * no file. */
static void test_run_read_only_writes_nothing(void **state) {
    fixture *fx = *state;
    lb_config c;
    run_config(&c, fx, "read-only-run", "fp32");
    tu_config_set(&c, "train.steps=4");
    lb_trainer t;
    init_trainer(&t, &c);
    lb_run_options o = {.read_only = 1};
    lb_run_report r;
    if (lb_run(&t, &o, &r) != LB_OK) fail_msg("lb_run: %s", lb_errmsg());
    assert_int_equal(t.step, 4);
    assert_true(isfinite(r.val_loss));
    assert_string_equal(r.checkpoint, "");
    assert_false(exists(c.checkpoint.dir));
    lb_trainer_free(&t);
}

/* ---- a checkpoint written by main at commit 2e30d6e ----------------------------------- */

/* tests/data/checkpoint-main/step_00000003.h5 was written by `lowbit train
 * fixture.yaml` before the layout moved to state.c (see fixture.yaml): char
 * tokenizer, b1.58, AdamW with bf16 and fp32 states, fp8 gradients (so a loss
 * scale), every dataset type the layout uses. It must resume, and writing the
 * resumed state again must give the same file: the same datasets with the same
 * types, shapes, chunking, filters, attributes and values, and a config that
 * loads to the same settings. */
static void h5dump_groups(const char *file, const char *out) {
    char cmd[1600];
    snprintf(cmd, sizeof cmd,
             "h5dump -p -g /model -g /optim -g /train -g /data -g /tokenizer -a /format -a /format_version '%s' "
             "> '%s.full' && tail -n +2 '%s.full' > '%s'", /* without the first line, which names the file */
             file, out, out, out);
    if (system(cmd) != 0) fail_msg("h5dump failed (hdf5-tools is installed by scripts/setup.sh): %s", cmd);
    snprintf(cmd, sizeof cmd, "grep -q 'DATASET \"blk.1.ffn_down.weight\"' '%s'", out);
    if (system(cmd) != 0) fail_msg("h5dump of %s lists no blk.1.ffn_down.weight", file);
}

typedef struct name_list {
    char names[256][128];
    int n;
} name_list;

static lb_status add_name(const char *name, void *ctx) {
    name_list *l = ctx;
    if (l->n == 256) return lb_error(LB_EINVAL, "too many datasets");
    snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
    return LB_OK;
}

static void list_datasets(const char *file, name_list *l) {
    lb_ckpt *c;
    if (lb_ckpt_open(file, &c) != LB_OK) fail_msg("%s", lb_errmsg());
    l->n = 0;
    if (lb_ckpt_list(c, "/", add_name, l) != LB_OK) fail_msg("%s", lb_errmsg());
    assert_true(lb_ckpt_is_string(c, "config"));
    lb_ckpt_close(c);
}

/* The stored config as the YAML lowbit prints for it, paths set alike. */
static char *stored_config(const char *file) {
    lb_config c;
    if (lb_load_checkpoint_config(file, &c) != LB_OK) fail_msg("%s", lb_errmsg());
    snprintf(c.source, sizeof c.source, "stored");
    tu_config_set(&c, "data.path=corpus.txt");
    tu_config_set(&c, "checkpoint.dir=run");
    char *yaml;
    assert_int_equal(lb_config_to_yaml(&c, &yaml), LB_OK);
    return yaml;
}

static void test_checkpoint_of_main_round_trips(void **state) {
    fixture *fx = *state;
    char data[400], path[600], old[600], fresh[700], dump_old[600], dump_new[600];
    snprintf(data, sizeof data, "%s/tests/data/checkpoint-main", tu_source_dir());
    snprintf(old, sizeof old, "%s/step_00000003.h5", data);
    snprintf(path, sizeof path, "%s/fixture.yaml", data);
    lb_config c;
    if (lb_config_load_file(path, &c) != LB_OK) fail_msg("%s", lb_errmsg());
    tu_config_set(&c, "data.path=%s/corpus.txt", data);
    tu_config_set(&c, "checkpoint.dir=%s/from-main", fx->dir);
    assert_int_equal(lb_config_validate(&c), LB_OK);

    int threads = omp_get_max_threads(); /* the fixture's config sets train.threads: 1 */
    lb_trainer t;
    init_trainer(&t, &c);
    omp_set_num_threads(threads);
    if (lb_trainer_resume(&t, old) != LB_OK) fail_msg("resuming from main's checkpoint: %s", lb_errmsg());
    assert_int_equal(t.step, 3);
    assert_int_equal(t.tokens_seen, 3 * 2 * 16);
    if (lb_trainer_save(&t, fresh, sizeof fresh) != LB_OK) fail_msg("save: %s", lb_errmsg());

    name_list *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    list_datasets(old, a);
    list_datasets(fresh, b);
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) assert_string_equal(a->names[i], b->names[i]);
    /* config, model (24 parameters), optim (m and v of each, the loss scale), train, data, tokenizer */
    assert_int_equal(a->n, 1 + 24 + 2 * 24 + 2 + 2 + 1 + 1);
    free(a);
    free(b);

    snprintf(dump_old, sizeof dump_old, "%s/main.dump", fx->dir);
    snprintf(dump_new, sizeof dump_new, "%s/now.dump", fx->dir);
    h5dump_groups(old, dump_old);
    h5dump_groups(fresh, dump_new);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "diff '%s' '%s' | head -40", dump_old, dump_new);
    FILE *p = popen(cmd, "r");
    char diff[4096];
    size_t n = p ? fread(diff, 1, sizeof diff - 1, p) : 0;
    diff[n] = '\0';
    if (p) pclose(p);
    if (n) fail_msg("the checkpoint written now differs from main's (h5dump of main's < > now's):\n%s", diff);

    /* the same config, with the precisions it ran at named: main's config has no
     * train.gemm_precision and no train.attention_precision, so they read back
     * as the default, auto, and it ran at fp32, attention with the rest */
    char *ya = stored_config(old), *yb = stored_config(fresh);
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "attention_precision: " : "gemm_precision: ";
        char line[64], *at;
        snprintf(line, sizeof line, "\n  %sauto\n", key);
        assert_non_null(at = strstr(ya, line));
        memcpy(at + strlen(line) - strlen("auto\n"), "fp32", 4);
    }
    assert_string_equal(ya, yb);
    free(ya);
    free(yb);

    /* and training goes on from it */
    lb_step_result r;
    if (lb_trainer_step(&t, &r) != LB_OK) fail_msg("step: %s", lb_errmsg());
    assert_true(isfinite(r.loss));
    lb_trainer_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_bit_exact_fp32_state),
        cmocka_unit_test(test_resume_is_bit_exact_int8_state),
        cmocka_unit_test(test_resume_is_bit_exact_fp8_state),
        cmocka_unit_test(test_seed_fixes_the_run),
        cmocka_unit_test(test_damaged_checkpoints_are_errors),
        cmocka_unit_test(test_resume_with_another_architecture_is_an_error),
        cmocka_unit_test(test_rundir_step_files_latest_and_prune),
        cmocka_unit_test(test_run_keeps_its_cadence),
        cmocka_unit_test(test_run_checks_its_directories_first),
        cmocka_unit_test(test_run_read_only_writes_nothing),
        cmocka_unit_test(test_checkpoint_of_main_round_trips),
        cmocka_unit_test(test_resume_keeps_the_checkpoints_precision),
        cmocka_unit_test(test_resume_keeps_the_checkpoints_attention_precision),
        cmocka_unit_test(test_trainer_uses_the_configured_tokenizer),
        cmocka_unit_test(test_b158_tiny_learns),
        cmocka_unit_test(test_b1_tiny_learns),
        cmocka_unit_test(test_fp32_tiny_learns),
    };
    return tu_run_group_tests(tests, setup, teardown);
}

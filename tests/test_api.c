/* The public interface (include/lowbit.h) as an embedding program uses it:
 * its promises on errors (a status, a message naming what was wrong, output
 * parameters untouched), on configs (overrides, YAML round trip), on
 * checkpoints (a short path buffer refused before writing, a foreign file
 * refused), on the run loop (events in order, a stop that saves, preflight
 * before the first step) and on generation (arguments checked, the same seed
 * the same text, a trainer and its checkpoint's model agree). The whole tour of the
 * happy path is examples/embed_train.c, which test_install builds against
 * the installed package. Only lowbit.h is used, apart from testutil's corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lowbit.h"
#include "testutil.h"

static int contains(const char *s, const char *part) { return s && strstr(s, part) != NULL; }

/* The message of the last failure must mention `part`. */
static void expect_error(lowbit_status got, lowbit_status want, const char *part) {
    if (got != want)
        fail_msg("expected status %d (%s), got %d (%s): %s", want, lowbit_status_name(want), got,
                 lowbit_status_name(got), lowbit_errmsg());
    if (lowbit_errcode() != want) fail_msg("lowbit_errcode() is %d, expected %d", lowbit_errcode(), want);
    if (!contains(lowbit_errmsg(), part)) fail_msg("the message '%s' does not mention '%s'", lowbit_errmsg(), part);
}

static void must(lowbit_status s) {
    if (s != LOWBIT_OK) fail_msg("%s", lowbit_errmsg());
}

/* A tiny char-tokenizer model over the generated corpus of `fx`. */
static const char TINY[] = "model: {dim: 32, n_layers: 1, n_heads: 2, ffn_dim: 64, max_seq_len: 16}\n"
                           "data: {tokenizer: char}\n"
                           "train: {steps: 4, batch_size: 2, seq_len: 16, warmup_steps: 1}\n"
                           "eval: {batches: 2}\n"
                           "log: {jsonl: \"\"}\n";

static lowbit_config *tiny_config(const tu_run_dir *fx) {
    lowbit_config *cfg = NULL;
    char set[600];
    must(lowbit_config_load_string(TINY, "tiny.yaml", &cfg));
    snprintf(set, sizeof set, "data.path=%s", fx->corpus);
    must(lowbit_config_set(cfg, set));
    snprintf(set, sizeof set, "checkpoint.dir=%s/run", fx->dir);
    must(lowbit_config_set(cfg, set));
    return cfg;
}

static lowbit_trainer *tiny_trainer(const tu_run_dir *fx) {
    lowbit_config *cfg = tiny_config(fx);
    lowbit_trainer *t = NULL;
    must(lowbit_trainer_new(cfg, &t));
    lowbit_config_free(cfg);
    return t;
}

static char *yaml_of(const lowbit_config *cfg) {
    char *yaml = NULL;
    must(lowbit_config_to_yaml(cfg, &yaml));
    return yaml;
}

/* ---- version and errors ---------------------------------------------------- */

static void test_version(void **state) {
    (void)state;
    assert_string_equal(lowbit_version(), LOWBIT_VERSION_STRING);
    assert_string_equal(lowbit_version(), LOWBIT_VERSION); /* the project's version */
    char parts[32];
    snprintf(parts, sizeof parts, "%d.%d.%d", LOWBIT_VERSION_MAJOR, LOWBIT_VERSION_MINOR, LOWBIT_VERSION_PATCH);
    assert_string_equal(parts, LOWBIT_VERSION_STRING);
    assert_int_equal(LOWBIT_VERSION_NUMBER,
                     LOWBIT_VERSION_MAJOR * 10000 + LOWBIT_VERSION_MINOR * 100 + LOWBIT_VERSION_PATCH);
}

static void test_status_names(void **state) {
    (void)state;
    assert_string_equal(lowbit_status_name(LOWBIT_OK), "ok");
    assert_string_equal(lowbit_status_name(LOWBIT_ECONFIG), "configuration error");
    for (int s = LOWBIT_EINVAL; s <= LOWBIT_EINTERRUPTED; s++)
        for (int other = LOWBIT_OK; other < s; other++)
            assert_string_not_equal(lowbit_status_name((lowbit_status)s), lowbit_status_name((lowbit_status)other));
    assert_string_equal(lowbit_status_name((lowbit_status)99), "unknown error");
}

/* Every function refuses NULL where it needs a pointer, naming itself. */
static void test_null_arguments(void **state) {
    (void)state;
    lowbit_config *cfg = NULL;
    char *text = NULL;
    float loss;
    expect_error(lowbit_config_load_file(NULL, &cfg), LOWBIT_EINVAL, "lowbit_config_load_file");
    expect_error(lowbit_config_load_file("x.yaml", NULL), LOWBIT_EINVAL, "'out' is NULL");
    expect_error(lowbit_config_load_string(NULL, "x", &cfg), LOWBIT_EINVAL, "lowbit_config_load_string");
    expect_error(lowbit_config_load_checkpoint(NULL, &cfg), LOWBIT_EINVAL, "lowbit_config_load_checkpoint");
    expect_error(lowbit_config_set(NULL, "train.steps=1"), LOWBIT_EINVAL, "lowbit_config_set");
    expect_error(lowbit_config_validate(NULL), LOWBIT_EINVAL, "lowbit_config_validate");
    expect_error(lowbit_config_to_yaml(NULL, &text), LOWBIT_EINVAL, "lowbit_config_to_yaml");
    expect_error(lowbit_trainer_new(NULL, NULL), LOWBIT_EINVAL, "lowbit_trainer_new");
    expect_error(lowbit_trainer_step(NULL, NULL), LOWBIT_EINVAL, "lowbit_trainer_step");
    expect_error(lowbit_trainer_evaluate(NULL, 0, &loss), LOWBIT_EINVAL, "lowbit_trainer_evaluate");
    expect_error(lowbit_trainer_get_info(NULL, NULL), LOWBIT_EINVAL, "lowbit_trainer_get_info");
    expect_error(lowbit_trainer_run(NULL, NULL, NULL), LOWBIT_EINVAL, "lowbit_trainer_run");
    expect_error(lowbit_trainer_save_checkpoint(NULL, NULL, 0), LOWBIT_EINVAL, "lowbit_trainer_save_checkpoint");
    expect_error(lowbit_trainer_load_checkpoint(NULL, "x"), LOWBIT_EINVAL, "lowbit_trainer_load_checkpoint");
    expect_error(lowbit_trainer_generate(NULL, "a", NULL, &text, NULL), LOWBIT_EINVAL, "lowbit_trainer_generate");
    expect_error(lowbit_model_load(NULL, NULL), LOWBIT_EINVAL, "lowbit_model_load");
    expect_error(lowbit_model_generate(NULL, "a", NULL, &text, NULL), LOWBIT_EINVAL, "lowbit_model_generate");
    assert_null(cfg);
    assert_null(text);
    /* Releasing nothing is allowed. */
    lowbit_config_free(NULL);
    lowbit_trainer_free(NULL);
    lowbit_model_free(NULL);
    lowbit_free(NULL);
}

/* ---- configs ------------------------------------------------------------- */

static void test_config_errors(void **state) {
    (void)state;
    lowbit_config *untouched = (lowbit_config *)&untouched, *cfg = untouched;
    /* Malformed YAML names the document and the position. */
    expect_error(lowbit_config_load_string("model: [1, 2\n", "broken.yaml", &cfg), LOWBIT_ECONFIG, "broken.yaml");
    assert_ptr_equal(cfg, untouched);
    /* A bad value names the key and what was expected. */
    expect_error(lowbit_config_load_string("train:\n  steps: -3\n", "neg.yaml", &cfg), LOWBIT_ECONFIG, "train.steps");
    assert_ptr_equal(cfg, untouched);
    /* A file that is not there: an i/o error naming it. */
    expect_error(lowbit_config_load_file("/nonexistent/lowbit.yaml", &cfg), LOWBIT_EIO, "/nonexistent/lowbit.yaml");
    assert_ptr_equal(cfg, untouched);
    /* Nor is a checkpoint. */
    expect_error(lowbit_config_load_checkpoint("/nonexistent/run", &cfg), LOWBIT_EIO, "/nonexistent/run");
    assert_ptr_equal(cfg, untouched);

    /* A rejected override leaves the config as it was. */
    must(lowbit_config_load_string("train: {steps: 5}\n", "ok.yaml", &cfg));
    char *before = yaml_of(cfg);
    expect_error(lowbit_config_set(cfg, "train.no_such_key=1"), LOWBIT_ECONFIG, "train.no_such_key");
    expect_error(lowbit_config_set(cfg, "train.steps=many"), LOWBIT_ECONFIG, "train.steps");
    expect_error(lowbit_config_set(cfg, "train.steps"), LOWBIT_ECONFIG, "train.steps");
    char *after = yaml_of(cfg);
    assert_string_equal(before, after);
    lowbit_free(before);
    lowbit_free(after);

    /* Cross-field checks: in validate, and again in lowbit_trainer_new, before any data is read. */
    must(lowbit_config_set(cfg, "model.n_heads=3"));
    expect_error(lowbit_config_validate(cfg), LOWBIT_ECONFIG, "model.n_heads");
    lowbit_trainer *t = (lowbit_trainer *)&t, *t0 = t;
    expect_error(lowbit_trainer_new(cfg, &t), LOWBIT_ECONFIG, "model.n_heads");
    assert_ptr_equal(t, t0);
    lowbit_config_free(cfg);
}

/* Overrides apply, and the resolved YAML loads back to the same config. */
static void test_config_overrides_and_yaml(void **state) {
    (void)state;
    lowbit_config *cfg = NULL, *again = NULL;
    must(lowbit_config_load_string("train: {steps: 500}\n", "runs_name.yaml", &cfg));
    must(lowbit_config_set(cfg, "train.steps=170"));
    must(lowbit_config_set(cfg, "model.quant.preset=b1"));
    must(lowbit_config_set(cfg, "data.paths=[a.txt, b.txt]"));
    must(lowbit_config_validate(cfg));
    char *yaml = yaml_of(cfg);
    assert_true(contains(yaml, "steps: 170"));
    assert_true(contains(yaml, "a.txt"));
    assert_true(contains(yaml, "runs/runs_name")); /* the run is named after the document */
    must(lowbit_config_load_string(yaml, "runs_name.yaml", &again));
    char *yaml_again = yaml_of(again);
    assert_string_equal(yaml, yaml_again);
    lowbit_free(yaml);
    lowbit_free(yaml_again);
    lowbit_config_free(cfg);
    lowbit_config_free(again);
}

/* ---- training and checkpoints ---------------------------------------------- */

static void test_trainer_missing_corpus(void **state) {
    (void)state;
    lowbit_config *cfg = NULL;
    lowbit_trainer *t = NULL;
    must(lowbit_config_load_string(TINY, "tiny.yaml", &cfg));
    must(lowbit_config_set(cfg, "data.path=/nonexistent/corpus.txt"));
    expect_error(lowbit_trainer_new(cfg, &t), LOWBIT_EIO, "/nonexistent/corpus.txt");
    assert_null(t);
    lowbit_config_free(cfg);
}

static void test_step_info_and_evaluate(void **state) {
    tu_run_dir *fx = *state;
    lowbit_trainer *t = tiny_trainer(fx);
    lowbit_trainer_info info;
    must(lowbit_trainer_get_info(t, &info));
    assert_int_equal(info.step, 0);
    assert_int_equal(info.steps, 4);
    assert_int_equal(info.tokens_seen, 0);
    assert_true(info.vocab_size > 10 && info.vocab_size < 64); /* the corpus's characters */
    assert_true(info.n_parameters > 1000);

    float a, b;
    must(lowbit_trainer_evaluate(t, 0, &a));
    must(lowbit_trainer_evaluate(t, 2, &b));
    assert_true(a == b); /* 0 means eval.batches (2); evaluation changes nothing */
    expect_error(lowbit_trainer_evaluate(t, -1, &a), LOWBIT_EINVAL, "n_batches");

    lowbit_step_result r;
    for (int i = 1; i <= 5; i++) { /* one past train.steps is allowed */
        must(lowbit_trainer_step(t, &r));
        assert_int_equal(r.step, i);
        assert_true(r.loss > 0.0f && r.grad_norm > 0.0f && r.seconds >= 0.0);
        assert_int_equal(r.skipped, 0);
    }
    assert_true(r.quant_lambda == 1.0f);
    must(lowbit_trainer_step(t, NULL));
    must(lowbit_trainer_get_info(t, &info));
    assert_int_equal(info.step, 6);
    assert_int_equal(info.tokens_seen, 6 * 2 * 16);
    lowbit_trainer_free(t);
}

static void test_checkpoint_errors(void **state) {
    tu_run_dir *fx = *state;
    lowbit_trainer *t = tiny_trainer(fx);
    must(lowbit_trainer_step(t, NULL));

    /* A buffer too small for the path: refused, and nothing written. */
    char small[8] = "keep";
    char run[600];
    struct stat st;
    expect_error(lowbit_trainer_save_checkpoint(t, small, sizeof small), LOWBIT_EINVAL, "step_00000001.h5");
    assert_string_equal(small, "keep");
    snprintf(run, sizeof run, "%s/run", fx->dir);
    assert_int_not_equal(stat(run, &st), 0);

    /* No checkpoint there; a file that is not one. */
    expect_error(lowbit_trainer_load_checkpoint(t, run), LOWBIT_EIO, run);
    char foreign[600];
    snprintf(foreign, sizeof foreign, "%s/foreign.h5", fx->dir);
    FILE *f = fopen(foreign, "w");
    assert_non_null(f);
    fputs("not a checkpoint\n", f);
    fclose(f);
    lowbit_model *m = (lowbit_model *)&m, *m0 = m;
    expect_error(lowbit_model_load(foreign, &m), LOWBIT_EFORMAT, "foreign.h5");
    assert_ptr_equal(m, m0);

    /* A checkpoint of another model shape: the tensor is named. */
    char path[LOWBIT_PATH_MAX];
    must(lowbit_trainer_save_checkpoint(t, path, sizeof path));
    assert_true(contains(path, "/run/step_00000001.h5"));
    lowbit_config *cfg = tiny_config(fx);
    must(lowbit_config_set(cfg, "model.dim=64"));
    lowbit_trainer *other = NULL;
    must(lowbit_trainer_new(cfg, &other));
    expect_error(lowbit_trainer_load_checkpoint(other, path), LOWBIT_EINVAL, "token_embd.weight");
    lowbit_trainer_free(other);
    lowbit_config_free(cfg);
    lowbit_trainer_free(t);
}

/* ---- the run loop ---------------------------------------------------------- */

typedef struct run_log {
    char kinds[64];                /* one letter per event: S(tart) s(tep) e(val) x (stop) c(heckpoint) */
    int n;
    char why[16];                  /* first letter of each checkpoint's reason */
    int stop_at;                   /* set *flag after this step (0: never) */
    volatile sig_atomic_t *flag;
} run_log;

static void on_event(const lowbit_event *e, void *ctx) {
    run_log *log = ctx;
    static const char letter[] = {'S', 's', 'e', 'x', 'c'};
    if (log->n < 63) log->kinds[log->n++] = letter[e->kind];
    if (e->kind == LOWBIT_EVENT_STEP) {
        assert_non_null(e->result);
        assert_int_equal(e->result->step, e->step);
        if (log->stop_at && e->step == log->stop_at) *log->flag = 1;
    } else {
        assert_null(e->result);
    }
    if (e->kind == LOWBIT_EVENT_CHECKPOINT) {
        assert_true(contains(e->path, "/run/step_"));
        size_t n = strlen(log->why);
        if (n < 15) log->why[n] = e->why[0];
    }
    assert_int_equal(e->steps, 4);
}

static void test_run(void **state) {
    tu_run_dir *fx = *state;
    lowbit_trainer *t = tiny_trainer(fx);
    run_log log;
    memset(&log, 0, sizeof log);
    lowbit_run_options o = {NULL, on_event, &log};
    lowbit_run_report r;
    must(lowbit_trainer_run(t, &o, &r));
    /* train.steps 4, eval.interval 100, checkpoint.interval 0: evaluation and a checkpoint at the end only */
    assert_string_equal(log.kinds, "Sssssec");
    assert_string_equal(log.why, "f");
    assert_int_equal(r.start_step, 0);
    assert_int_equal(r.steps, 4);
    assert_int_equal(r.tokens, 4 * 2 * 16);
    assert_int_equal(r.stop, 0);
    assert_true(contains(r.checkpoint, "/run/step_00000004.h5"));
    float loss;
    must(lowbit_trainer_evaluate(t, 0, &loss));
    assert_true(loss == r.val_loss); /* the run's last evaluation is of the state it left */

    /* Nothing left to do: no step, no checkpoint. */
    memset(&log, 0, sizeof log);
    must(lowbit_trainer_run(t, &o, &r));
    assert_string_equal(log.kinds, "S");
    assert_int_equal(r.steps, 0);
    lowbit_trainer_free(t);
}

static void test_run_stop_and_continue(void **state) {
    tu_run_dir *fx = *state;
    volatile sig_atomic_t stop = 0;
    lowbit_trainer *t = tiny_trainer(fx);
    run_log log;
    memset(&log, 0, sizeof log);
    log.stop_at = 2;
    log.flag = &stop;
    lowbit_run_options o = {&stop, on_event, &log};
    lowbit_run_report r;
    expect_error(lowbit_trainer_run(t, &o, &r), LOWBIT_EINTERRUPTED, "step 2");
    assert_string_equal(log.kinds, "Sssxc");
    assert_string_equal(log.why, "i");
    assert_int_equal(r.stop, 1);
    assert_true(contains(r.checkpoint, "/run/step_00000002.h5"));
    lowbit_trainer_free(t);

    /* A new trainer continues from the run directory to train.steps. */
    char run[600];
    snprintf(run, sizeof run, "%s/run", fx->dir);
    stop = 0;
    memset(&log, 0, sizeof log);
    t = tiny_trainer(fx);
    must(lowbit_trainer_load_checkpoint(t, run));
    must(lowbit_trainer_run(t, &o, &r));
    assert_int_equal(r.start_step, 2);
    assert_int_equal(r.steps, 2);
    assert_string_equal(log.kinds, "Sssec");
    lowbit_trainer_free(t);
}

/* A checkpoint.dir that cannot be made: a config error before any step. */
static void test_run_preflight(void **state) {
    tu_run_dir *fx = *state;
    lowbit_config *cfg = tiny_config(fx);
    char set[600];
    snprintf(set, sizeof set, "checkpoint.dir=%s/sub", fx->corpus); /* under a file */
    must(lowbit_config_set(cfg, set));
    lowbit_trainer *t = NULL;
    must(lowbit_trainer_new(cfg, &t));
    run_log log;
    memset(&log, 0, sizeof log);
    lowbit_run_options o = {NULL, on_event, &log};
    expect_error(lowbit_trainer_run(t, &o, NULL), LOWBIT_ECONFIG, "checkpoint.dir");
    assert_string_equal(log.kinds, "");
    lowbit_trainer_info info;
    must(lowbit_trainer_get_info(t, &info));
    assert_int_equal(info.step, 0);
    lowbit_trainer_free(t);
    lowbit_config_free(cfg);
}

/* ---- generation ---------------------------------------------------------- */

static char *generate(lowbit_trainer *t, const char *prompt, const lowbit_sample_params *p) {
    char *text = NULL;
    size_t len = 0;
    must(lowbit_trainer_generate(t, prompt, p, &text, &len));
    assert_int_equal(strlen(text), len); /* a char tokenizer over text has no NUL token */
    return text;
}

static void test_generate(void **state) {
    tu_run_dir *fx = *state;
    lowbit_trainer *t = tiny_trainer(fx);
    for (int i = 0; i < 4; i++) must(lowbit_trainer_step(t, NULL));

    lowbit_sample_params p = lowbit_sample_default_params();
    assert_int_equal(p.n_tokens, 200);
    assert_true(p.temperature == 0.8f);
    assert_int_equal(p.top_k, 40);
    p.n_tokens = 24;

    /* The same seed gives the same text; the defaults give 200 characters. */
    char *a = generate(t, "the cat ", &p), *b = generate(t, "the cat ", &p);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 24);
    char *d = generate(t, "the cat ", NULL);
    assert_int_equal(strlen(d), 200);

    /* Bad arguments, each named; *text untouched. */
    char *text = (char *)&text, *text0 = text;
    expect_error(lowbit_trainer_generate(t, "", &p, &text, NULL), LOWBIT_EINVAL, "prompt is empty");
    expect_error(lowbit_trainer_generate(t, "the \xe2\x82\xac", &p, &text, NULL), LOWBIT_EINVAL, "U+20AC");
    lowbit_sample_params bad = p;
    bad.n_tokens = 0;
    expect_error(lowbit_trainer_generate(t, "the", &bad, &text, NULL), LOWBIT_EINVAL, "n_tokens");
    bad = p;
    bad.temperature = -1.0f;
    expect_error(lowbit_trainer_generate(t, "the", &bad, &text, NULL), LOWBIT_EINVAL, "temperature");
    assert_ptr_equal(text, text0);

    /* The checkpoint's model generates what the trainer generated. */
    char path[LOWBIT_PATH_MAX];
    must(lowbit_trainer_save_checkpoint(t, path, sizeof path));
    lowbit_model *m = NULL;
    must(lowbit_model_load(path, &m));
    char *c = NULL;
    must(lowbit_model_generate(m, "the cat ", &p, &c, NULL));
    assert_string_equal(a, c);
    lowbit_free(a);
    lowbit_free(b);
    lowbit_free(c);
    lowbit_free(d);
    lowbit_model_free(m);
    lowbit_trainer_free(t);
}

static int setup(void **state) {
    *state = tu_run_dir_new("api", 20000, 5);
    return 0;
}

static int teardown(void **state) {
    tu_run_dir_free(*state);
    return 0;
}

/* Each test that writes gets a fresh run directory. */
#define with_run_dir(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_overrides_and_yaml),
        cmocka_unit_test(test_trainer_missing_corpus),
        with_run_dir(test_step_info_and_evaluate),
        with_run_dir(test_checkpoint_errors),
        with_run_dir(test_run),
        with_run_dir(test_run_stop_and_continue),
        with_run_dir(test_run_preflight),
        with_run_dir(test_generate),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

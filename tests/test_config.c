/* Tests of src/io/config: defaults, the example configs, the YAML round trip,
 * --set, and one test per class of error with its message.
 *
 * Expected values come from the schema in docs/config.md and the assignment
 * of configs/; line and column numbers are counted in the test's own YAML. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------------- */

/* Fails the test unless the last error message contains every string of the
 * NULL-terminated list. */
static void assert_msg_has(const char *first, ...) {
    const char *msg = lb_errmsg();
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        if (!strstr(msg, s)) {
            va_end(ap);
            fail_msg("message \"%s\" lacks \"%s\"", msg, s);
        }
    }
    va_end(ap);
}

/* Loads `yaml` as "bad.yaml" and expects LB_ECONFIG from the load itself. */
static void load_fails(const char *yaml) {
    lb_config c;
    lb_error_clear();
    lb_status st = lb_config_load_string(yaml, "bad.yaml", &c);
    if (st != LB_ECONFIG) fail_msg("expected LB_ECONFIG, got %d for:\n%s", (int)st, yaml);
}

/* Loads `yaml` (which must load) and expects validation to fail. */
static void validate_fails(const char *yaml) {
    lb_config c;
    lb_status st = lb_config_load_string(yaml, "bad.yaml", &c);
    if (st != LB_OK) fail_msg("load failed: %s", lb_errmsg());
    lb_error_clear();
    assert_int_equal(lb_config_validate(&c), LB_ECONFIG);
}

/* The configurations themselves, field by field (sections compared bytewise;
 * defaults zero all padding). */
static void assert_same_config(const lb_config *a, const lb_config *b) {
    assert_memory_equal(&a->model, &b->model, sizeof a->model);
    assert_memory_equal(&a->data, &b->data, sizeof a->data);
    assert_memory_equal(&a->train, &b->train, sizeof a->train);
    assert_memory_equal(&a->optim, &b->optim, sizeof a->optim);
    assert_memory_equal(&a->eval, &b->eval, sizeof a->eval);
    assert_memory_equal(&a->checkpoint, &b->checkpoint, sizeof a->checkpoint);
    assert_memory_equal(&a->log, &b->log, sizeof a->log);
}

/* to_yaml → load_string → the same config, and the same text again. */
static void assert_round_trip(const lb_config *c) {
    char *text = NULL, *again = NULL;
    assert_int_equal(lb_config_to_yaml(c, &text), LB_OK);
    lb_config back;
    if (lb_config_load_string(text, "resolved.yaml", &back) != LB_OK) fail_msg("%s\n%s", lb_errmsg(), text);
    assert_int_equal(lb_config_validate(&back), LB_OK);
    assert_same_config(c, &back);
    assert_int_equal(lb_config_to_yaml(&back, &again), LB_OK);
    /* The first line names the source; the rest must match exactly. */
    assert_string_equal(strchr(text, '\n'), strchr(again, '\n'));
    free(text);
    free(again);
}

static void set_ok(lb_config *c, const char *assignment) {
    if (lb_config_set(c, assignment) != LB_OK) fail_msg("--set %s: %s", assignment, lb_errmsg());
}

static void set_fails(lb_config *c, const char *assignment) {
    lb_error_clear();
    if (lb_config_set(c, assignment) != LB_ECONFIG) fail_msg("--set %s: expected LB_ECONFIG", assignment);
}

/* ---- defaults and example configs ------------------------------------------------- */

static void test_defaults_validate(void **state) {
    (void)state;
    lb_config c;
    lb_config_defaults(&c);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    /* Documented defaults (docs/config.md). */
    assert_int_equal(c.model.vocab_size, 0);
    assert_int_equal(c.model.n_kv_heads, c.model.n_heads);
    assert_int_equal(c.model.attn.mode, LB_LINEAR_B158);
    assert_int_equal(c.model.attn.weight.format, LB_QF_TERNARY);
    assert_int_equal(c.model.attn.activation.format, LB_QF_INT);
    assert_int_equal(c.model.attn.activation.bits, 8);
    assert_int_equal(c.model.attn.activation.gran, LB_QG_ROW);
    assert_int_equal(c.model.head.mode, LB_LINEAR_FP);
    assert_true(lb_qspec_is_none(&c.model.embedding));
    assert_int_equal(c.data.tokenizer, LB_TOKENIZER_BYTE);
    assert_string_equal(c.data.path, "/usr/share/games/fortunes");
    assert_float_equal(c.data.val_fraction, 0.05f, 0.0f);
    assert_float_equal(c.train.decay_at, 0.5f, 0.0f);
    assert_float_equal(c.train.weight_decay_stage2, 0.0f, 0.0f);
    assert_int_equal(c.train.threads, 0);
    assert_int_equal(c.train.gemm_precision, LB_PRECISION_AUTO);
    assert_int_equal(c.train.attention_precision, LB_PRECISION_AUTO);
    assert_string_equal(c.train.init_from, "");
    assert_true(c.optim.no_decay_on_norms_and_embeddings);
    assert_string_equal(c.checkpoint.dir, "runs/default");
    assert_string_equal(c.log.jsonl, "runs/default/metrics.jsonl");
    assert_round_trip(&c);
}

static int is_yaml(const char *name) {
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".yaml") == 0;
}

/* Parameters of the model: embedding (tied head) plus per layer the four
 * attention projections and the three FFN matrices. */
static double n_params(const lb_model_config *m) {
    int vocab = m->vocab_size ? m->vocab_size : 256;
    double kv = (double)m->dim / m->n_heads * m->n_kv_heads;
    double attn = 2.0 * m->dim * m->dim + 2.0 * m->dim * kv;
    double ffn = 3.0 * m->dim * m->ffn_dim;
    return (double)vocab * m->dim + m->n_layers * (attn + ffn);
}

static void test_example_configs_load(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/configs", tu_source_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_yaml(e->d_name)) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        lb_config c;
        if (lb_config_load_file(path, &c) != LB_OK) fail_msg("%s", lb_errmsg());
        if (lb_config_validate(&c) != LB_OK) fail_msg("%s", lb_errmsg());
        /* Rules every shipped config follows. */
        assert_int_equal(c.model.dim % 256, 0);
        assert_int_equal(c.model.ffn_dim % 256, 0);
        assert_int_equal(c.data.tokenizer, LB_TOKENIZER_BYTE);
        assert_int_equal(c.data.n_paths, 0);
        assert_string_equal(c.data.path, "/usr/share/games/fortunes");
        /* checkpoint.dir follows the file name. */
        char want[600];
        snprintf(want, sizeof want, "runs/%.*s", (int)strlen(e->d_name) - 5, e->d_name);
        assert_string_equal(c.checkpoint.dir, want);
        assert_round_trip(&c);
        n++;
    }
    closedir(d);
    assert_true(n >= 4);
}

static void load_example(const char *name, lb_config *c) {
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/%s", tu_source_dir(), name);
    if (lb_config_load_file(path, c) != LB_OK) fail_msg("%s", lb_errmsg());
}

static void test_example_configs_content(void **state) {
    (void)state;
    lb_config c;
    load_example("bitnet-b158-tiny.yaml", &c);
    assert_int_equal(c.model.dim, 256);
    assert_int_equal(c.model.n_layers, 4);
    assert_int_equal(c.model.n_heads, 4);
    assert_int_equal(c.model.n_kv_heads, 2);
    assert_int_equal(c.model.ffn_dim, 768);
    assert_int_equal(c.model.max_seq_len, 128);
    assert_int_equal(c.model.attn.mode, LB_LINEAR_B158);
    assert_int_equal(c.model.ffn.mode, LB_LINEAR_B158);
    assert_true(c.model.sub_norm);
    assert_int_equal(c.model.ffn_act, LB_FFN_SWIGLU);
    assert_true(c.model.tie_embeddings);
    assert_int_equal(c.train.steps, 800);
    assert_int_equal(c.train.batch_size, 16);
    assert_float_equal(c.train.lr, 1.5e-3f, 0.0f);
    assert_int_equal(c.train.schedule, LB_SCHED_TWO_STAGE);
    assert_float_equal(c.train.weight_decay, 0.1f, 0.0f);

    lb_config b1;
    load_example("bitnet-b1-tiny.yaml", &b1);
    assert_int_equal(b1.model.attn.mode, LB_LINEAR_B1);
    assert_int_equal(b1.model.ffn.weight.format, LB_QF_BINARY);
    /* "otherwise the same": equal to the b1.58 config once the preset matches. */
    lb_config same = c;
    same.model.attn = b1.model.attn;
    same.model.ffn = b1.model.ffn;
    assert_memory_equal(&same.model, &b1.model, sizeof same.model);
    assert_memory_equal(&same.train, &b1.train, sizeof same.train);

    lb_config fp;
    load_example("fp32-tiny.yaml", &fp);
    assert_int_equal(fp.model.attn.mode, LB_LINEAR_FP);
    assert_true(lb_qspec_is_none(&fp.model.ffn.weight));
    assert_int_equal(fp.model.dim, c.model.dim);
    assert_int_equal(fp.model.n_layers, c.model.n_layers);
    assert_float_equal(fp.train.lr, 1e-3f, 0.0f);
    assert_int_equal(fp.train.schedule, LB_SCHED_COSINE);

    lb_config small;
    load_example("bitnet-b158-small.yaml", &small);
    double p = n_params(&small.model);
    assert_true(p >= 10e6 && p <= 30e6);
}

/* ---- round trip and --set --------------------------------------------------------- */

static void test_round_trip_custom(void **state) {
    (void)state;
    lb_config c;
    lb_config_defaults(&c);
    set_ok(&c, "model.quant.attn={weight: int4:g128, activation: fp8_e4m3}");
    set_ok(&c, "model.quant.head.weight=int8:per_channel");
    set_ok(&c, "model.quant.embedding=int8:per_channel");
    set_ok(&c, "model.norm=layernorm");
    set_ok(&c, "model.ffn_act=relu2");
    set_ok(&c, "data.paths=[/tmp/a.txt, \"/tmp/b c.txt\"]");
    set_ok(&c, "train.seed=18446744073709551615");
    set_ok(&c, "train.lr=3e-4");
    set_ok(&c, "train.min_lr=0.1e-4");
    set_ok(&c, "train.schedule=cosine");
    set_ok(&c, "optim.type=lion");
    set_ok(&c, "optim.state=int8");
    set_ok(&c, "optim.grad=fp8");
    set_ok(&c, "train.gemm_precision=bf16");
    set_ok(&c, "train.attention_precision=fp32");
    assert_int_equal(c.train.gemm_precision, LB_PRECISION_BF16);
    assert_int_equal(c.train.attention_precision, LB_PRECISION_FP32);
    set_ok(&c, "log.sample_prompt=\"He said \\\"hi\\\"\\n\\tand left: #1\"");
    set_ok(&c, "log.jsonl=");
    assert_string_equal(c.log.sample_prompt, "He said \"hi\"\n\tand left: #1");
    assert_string_equal(c.log.jsonl, "");
    assert_int_equal(c.train.seed, UINT64_MAX);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    assert_round_trip(&c);

    /* An attn that is custom while ffn keeps the preset, and the b1 preset. */
    lb_config d;
    lb_config_defaults(&d);
    set_ok(&d, "model.quant.preset=b1");
    set_ok(&d, "model.quant.ffn.activation=none");
    assert_int_equal(d.model.attn.mode, LB_LINEAR_B1);
    assert_int_equal(d.model.ffn.mode, LB_LINEAR_CUSTOM);
    assert_round_trip(&d);
}

static void test_set_nested_and_quant(void **state) {
    (void)state;
    lb_config c;
    lb_config_defaults(&c);
    set_ok(&c, "train.two_stage.decay_at=0.25");
    assert_float_equal(c.train.decay_at, 0.25f, 0.0f);
    set_ok(&c, " model.sub_norm = false ");
    assert_false(c.model.sub_norm);

    /* n_kv_heads follows n_heads until given. */
    set_ok(&c, "model.n_heads=8");
    assert_int_equal(c.model.n_kv_heads, 8);
    set_ok(&c, "model.n_kv_heads=2");
    set_ok(&c, "model.n_heads=4");
    assert_int_equal(c.model.n_kv_heads, 2);

    /* An explicit spec overrides the preset for that layer kind only. */
    set_ok(&c, "model.quant.attn.weight=int4:g128");
    assert_int_equal(c.model.attn.mode, LB_LINEAR_CUSTOM);
    assert_int_equal(c.model.attn.weight.format, LB_QF_INT);
    assert_int_equal(c.model.attn.weight.bits, 4);
    assert_int_equal(c.model.attn.weight.gran, LB_QG_GROUP);
    assert_int_equal(c.model.attn.weight.group, 128);
    assert_int_equal(c.model.attn.activation.format, LB_QF_INT); /* kept from b1.58 */
    assert_int_equal(c.model.ffn.mode, LB_LINEAR_B158);
    /* A preset given later sets both again. */
    set_ok(&c, "model.quant.preset=fp32");
    assert_int_equal(c.model.attn.mode, LB_LINEAR_FP);
    assert_int_equal(c.model.ffn.mode, LB_LINEAR_FP);
    assert_true(lb_qspec_is_none(&c.model.attn.weight));

    /* path and paths replace each other; log.jsonl follows checkpoint.dir. */
    set_ok(&c, "data.paths=[x.txt, y.txt]");
    assert_int_equal(c.data.n_paths, 2);
    assert_string_equal(c.data.paths[1], "y.txt");
    assert_string_equal(c.data.path, "");
    set_ok(&c, "data.path=corpus/");
    assert_int_equal(c.data.n_paths, 0);
    set_ok(&c, "checkpoint.dir=out/run1");
    assert_string_equal(c.log.jsonl, "out/run1/metrics.jsonl");
    assert_int_equal(lb_config_validate(&c), LB_OK);

    /* In a file, the preset applies first wherever it is written. */
    const char *yaml = "model:\n"
                       "  quant:\n"
                       "    ffn: {weight: int8:per_channel}\n"
                       "    preset: b1\n";
    assert_int_equal(lb_config_load_string(yaml, "order.yaml", &c), LB_OK);
    assert_int_equal(c.model.attn.mode, LB_LINEAR_B1);
    assert_int_equal(c.model.ffn.mode, LB_LINEAR_CUSTOM);
    assert_int_equal(c.model.ffn.weight.gran, LB_QG_ROW);
    assert_true(c.model.ffn.activation.b1);
    assert_string_equal(c.checkpoint.dir, "runs/order");
}

/* optim.decay / optim.no_decay: the state follows optim.state until given,
 * lr_scale defaults to 1 (docs/config.md), both read from a file and --set,
 * printed and read back, range-checked with the key in the message. */
static void test_optim_groups(void **state) {
    (void)state;
    lb_config c;
    lb_config_defaults(&c);
    assert_int_equal(c.optim.decay.state, LB_STATE_FP32);
    assert_int_equal(c.optim.no_decay.state, LB_STATE_FP32);
    assert_float_equal(c.optim.decay.lr_scale, 1.0f, 0.0f);
    assert_float_equal(c.optim.no_decay.lr_scale, 1.0f, 0.0f);
    set_ok(&c, "optim.state=int8");
    assert_int_equal(c.optim.decay.state, LB_STATE_INT8);
    assert_int_equal(c.optim.no_decay.state, LB_STATE_INT8);
    set_ok(&c, "optim.no_decay.state=fp32");
    set_ok(&c, "optim.state=fp8"); /* decay still follows, no_decay was given */
    assert_int_equal(c.optim.decay.state, LB_STATE_FP8);
    assert_int_equal(c.optim.no_decay.state, LB_STATE_FP32);
    set_ok(&c, "optim.decay={state: bf16, lr_scale: 0.5}");
    assert_int_equal(c.optim.decay.state, LB_STATE_BF16);
    assert_float_equal(c.optim.decay.lr_scale, 0.5f, 0.0f);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    assert_round_trip(&c);

    const char *yaml = "optim:\n"
                       "  no_decay:\n"
                       "    lr_scale: 2\n"
                       "    state: bf16\n"
                       "  state: int8\n";
    assert_int_equal(lb_config_load_string(yaml, "groups.yaml", &c), LB_OK);
    assert_int_equal(c.optim.decay.state, LB_STATE_INT8); /* follows, whatever the order in the file */
    assert_int_equal(c.optim.no_decay.state, LB_STATE_BF16);
    assert_float_equal(c.optim.no_decay.lr_scale, 2.0f, 0.0f);
    assert_float_equal(c.optim.decay.lr_scale, 1.0f, 0.0f);

    set_fails(&c, "optim.decay.lr_scale=-1");
    assert_msg_has("optim.decay.lr_scale", "[0, 100]", "-1", NULL);
    set_fails(&c, "optim.no_decay.state=fp16");
    assert_msg_has("optim.no_decay.state", "int8", "fp16", NULL);
    load_fails("optim:\n  decay:\n    lr_scal: 1\n");
    assert_msg_has("bad.yaml:3:5", "lr_scal", NULL);
}

static void test_set_bad_forms(void **state) {
    (void)state;
    lb_config c;
    lb_config_defaults(&c);
    set_fails(&c, "a.b");
    assert_msg_has("--set 'a.b'", "KEY=VALUE", NULL);
    set_fails(&c, "=3");
    assert_msg_has("--set '=3'", "expected a key", NULL);
    set_fails(&c, "model.n_kv_head=2");
    assert_msg_has("--set 'model.n_kv_head=2'", "unknown key 'model.n_kv_head'", "did you mean 'n_kv_heads'", NULL);
    set_fails(&c, "modle.dim=2");
    assert_msg_has("unknown key 'modle'", "did you mean 'model'", NULL);
    set_fails(&c, "model.dim.x=2");
    assert_msg_has("'model.dim' has no sub-keys", NULL);
    set_fails(&c, "model.dim=abc");
    assert_msg_has("--set 'model.dim=abc'", "key 'model.dim'", "expected a positive integer", "got 'abc'", NULL);
    set_fails(&c, "model.quant.attn.weight=int9");
    assert_msg_has("--set 'model.quant.attn.weight=int9'", "key 'model.quant.attn.weight'", "int9", NULL);
    set_fails(&c, "model.quant=b1.58");
    assert_msg_has("key 'model.quant'", "expected a mapping", NULL);
    set_fails(&c, "train.lr=[1, 2]");
    assert_msg_has("key 'train.lr'", "got a list", NULL);
    set_fails(&c, "model.quant.ffn={weight: int4:g128, activation: int9}");
    assert_msg_has("key 'model.quant.ffn.activation'", "int9", NULL);
    /* A failed --set changes nothing, not even the half of a mapping that was fine. */
    lb_config fresh;
    lb_config_defaults(&fresh);
    assert_same_config(&c, &fresh);
    assert_int_equal(lb_config_validate(&c), LB_OK);

    /* Cross-field errors name the --set that caused them. */
    set_ok(&c, "model.n_heads=3");
    assert_int_equal(lb_config_validate(&c), LB_ECONFIG);
    assert_msg_has("--set 'model.n_heads=3'", "key 'model.n_heads'", "dividing model.dim (256)", "got 3", NULL);
}

/* ---- errors, one test per class ------------------------------------------------- */

/* data.tokenizer spells the tokenizer's own names, in its order. */
static void test_tokenizer_names_are_the_tokenizers(void **state) {
    (void)state;
    const lb_tokenizer_kind kinds[] = {LB_TOKENIZER_BYTE, LB_TOKENIZER_CHAR, LB_TOKENIZER_BPE, LB_TOKENIZER_HF};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        lb_config c;
        lb_config_defaults(&c);
        char set[64];
        snprintf(set, sizeof set, "data.tokenizer=%s", lb_tokenizer_kind_name(kinds[i]));
        set_ok(&c, set);
        assert_int_equal(c.data.tokenizer, kinds[i]);
    }
}

static void test_error_unknown_key(void **state) {
    (void)state;
    load_fails("model:\n"
               "  dim: 256\n"
               "  n_kv_head: 2\n");
    assert_string_equal(lb_errmsg(), "bad.yaml:3:3: unknown key 'model.n_kv_head' (did you mean 'n_kv_heads'?)");
    /* Nothing close: the section's keys are listed. */
    load_fails("eval:\n  zzzzzz: 1\n");
    assert_msg_has("bad.yaml:2:3", "unknown key 'eval.zzzzzz'", "interval, batches", NULL);
    /* A key of another section is pointed to. */
    load_fails("model:\n  lr: 0.1\n");
    assert_msg_has("bad.yaml:2:3", "'model.lr'", "did you mean 'train.lr'", NULL);
}

static void test_error_wrong_type(void **state) {
    (void)state;
    load_fails("model:\n"
               "  dim: abc\n");
    assert_string_equal(lb_errmsg(), "bad.yaml:2:8: key 'model.dim': expected a positive integer, got 'abc'");
    load_fails("train:\n  steps: \"600\"\n");
    assert_msg_has("bad.yaml:2:10", "key 'train.steps'", "expected a positive integer", "the string '600'", NULL);
    load_fails("model: [1, 2]\n");
    assert_msg_has("bad.yaml:1:8", "key 'model'", "expected a mapping", "got a list", NULL);
    load_fails("train:\n  lr: {a: 1}\n");
    assert_msg_has("bad.yaml:2:7", "key 'train.lr'", "expected a number in (0, 10]", "got a mapping", NULL);
    load_fails("model:\n  sub_norm: maybe\n");
    assert_msg_has("bad.yaml:2:13", "key 'model.sub_norm'", "expected true or false", NULL);
    load_fails("model:\n  norm: rms\n");
    assert_msg_has("bad.yaml:2:9", "key 'model.norm'", "expected one of rmsnorm, layernorm", "did you mean 'rmsnorm'",
                   NULL);
    load_fails("optim:\n  grad: bf16\n");
    assert_msg_has("bad.yaml:2:9", "key 'optim.grad'", "one of fp32, fp8, int8", NULL);
    load_fails("train:\n  attention_precision: fp16\n");
    assert_msg_has("bad.yaml:2:24", "key 'train.attention_precision'", "expected one of fp32, bf16, auto", NULL);
    load_fails("- model\n");
    assert_msg_has("bad.yaml:1:1", "expected a mapping of sections", NULL);
}

static void test_error_out_of_range(void **state) {
    (void)state;
    load_fails("data:\n"
               "  tokenizer: byte\n"
               "  val_fraction: 0.7\n");
    assert_string_equal(lb_errmsg(), "bad.yaml:3:17: key 'data.val_fraction': expected a number in [0, 0.5], got 0.7");
    load_fails("model:\n  n_layers: 0\n");
    assert_msg_has("bad.yaml:2:13", "key 'model.n_layers'", "expected a positive integer", "got 0", NULL);
    load_fails("optim:\n  beta2: 1.0\n");
    assert_msg_has("bad.yaml:2:10", "key 'optim.beta2'", "[0, 1)", NULL);
    load_fails("train:\n  lr: .nan\n");
    assert_msg_has("bad.yaml:2:7", "key 'train.lr'", NULL);
    load_fails("data:\n  paths: []\n");
    assert_msg_has("bad.yaml:2:10", "key 'data.paths'", "non-empty list", NULL);
}

static void test_error_bad_quant_spec(void **state) {
    (void)state;
    load_fails("model:\n"
               "  quant:\n"
               "    attn:\n"
               "      weight: int9\n");
    assert_msg_has("bad.yaml:4:15", "key 'model.quant.attn.weight'", "bad quantization spec 'int9'", "expected", NULL);
    load_fails("model:\n  quant:\n    preset: b2\n");
    assert_msg_has("bad.yaml:3:13", "key 'model.quant.preset'", "expected one of fp32, b1, b1.58", NULL);
    load_fails("model:\n  quant:\n    embedding: int4:g0\n");
    assert_msg_has("bad.yaml:3:16", "key 'model.quant.embedding'", "g0", NULL);
    /* Learned step sizes: per token is refused by the spec itself; where a
     * step cannot go is refused by the validation, naming the key. */
    load_fails("model:\n  quant:\n    ffn:\n      activation: int8:per_token:lsq\n");
    assert_msg_has("bad.yaml:4:19", "key 'model.quant.ffn.activation'", "per_tensor", NULL);
    validate_fails("model:\n  quant:\n    attn:\n      activation: int8:per_channel:lsq\n");
    assert_msg_has("bad.yaml:4:7", "key 'model.quant.attn.activation'", "'int8:per_channel:lsq'", "per_tensor", NULL);
    validate_fails("model:\n  quant:\n    embedding: int8:lsq\n");
    assert_msg_has("key 'model.quant.embedding'", "linear layers", NULL);
    validate_fails("model:\n  quant:\n    head:\n      weight: int4:lsq\n");
    assert_msg_has("key 'model.quant.head.weight'", "tie_embeddings", NULL);
    lb_config ok;
    lb_config_defaults(&ok);
    set_ok(&ok, "model.tie_embeddings=false");
    set_ok(&ok, "model.quant.head.weight=int4:lsq");
    set_ok(&ok, "model.quant.attn={weight: int4:g128:lsq, activation: int8:lsq}");
    assert_int_equal(lb_config_validate(&ok), LB_OK);
    assert_round_trip(&ok);
}

static void test_error_yaml_syntax(void **state) {
    (void)state;
    /* A tab cannot indent YAML: the scanner stops at line 2, column 1. */
    load_fails("model:\n"
               "\tdim: 256\n");
    assert_msg_has("bad.yaml:2:1:", "YAML syntax error", NULL);
    load_fails("model:\n  dim: [256\n");
    assert_msg_has("bad.yaml:", "YAML syntax error", NULL);
    load_fails("model:\n  dim: 256\n  dim: 512\n");
    assert_string_equal(lb_errmsg(), "bad.yaml:3:3: key 'model.dim' given twice (first on line 2)");
    load_fails("model: {}\n---\ntrain: {}\n");
    assert_msg_has("bad.yaml:3:1", "second", NULL);
}

static void test_error_inconsistent_shapes(void **state) {
    (void)state;
    validate_fails("model:\n"
                   "  dim: 256\n"
                   "  n_heads: 3\n");
    assert_string_equal(lb_errmsg(),
                        "bad.yaml:3:3: key 'model.n_heads': expected a positive integer dividing model.dim (256), got 3");
    validate_fails("model:\n  n_heads: 4\n  n_kv_heads: 3\n");
    assert_msg_has("bad.yaml:3:3", "key 'model.n_kv_heads'", "dividing model.n_heads (4)", "got 3", NULL);
    /* 36 / 4 = 9: RoPE needs an even head dim. */
    validate_fails("model:\n  dim: 36\n  n_heads: 4\n");
    assert_msg_has("bad.yaml:3:3", "key 'model.n_heads'", "even", "RoPE", "36 / 4 = 9", NULL);
    validate_fails("model:\n  max_seq_len: 64\ntrain:\n  seq_len: 128\n");
    assert_msg_has("bad.yaml:4:3", "key 'train.seq_len'", "at most model.max_seq_len (64)", "got 128", NULL);
    /* The key at fault kept its default: the position is the other key's. */
    validate_fails("model:\n  max_seq_len: 64\n");
    assert_msg_has("bad.yaml:2:3", "key 'train.seq_len'", "at most model.max_seq_len (64)", NULL);
    validate_fails("model:\n  ffn_dim: 700\n  quant:\n    ffn: {weight: int4:g128}\n");
    assert_msg_has("bad.yaml:4:11", "key 'model.quant.ffn.weight'", "groups of 128", "model.ffn_dim (700)", NULL);
    validate_fails("train:\n  lr: 1e-3\n  min_lr: 1e-2\n");
    assert_msg_has("bad.yaml:3:3", "key 'train.min_lr'", "at most train.lr", NULL);
}

static void test_load_file_errors_name_the_file(void **state) {
    (void)state;
    char dir[512], path[600];
    tu_tmpdir(dir, sizeof dir, "config");
    snprintf(path, sizeof path, "%s/run.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("# a comment\ntrain:\n  steps: -5\n", f);
    fclose(f);
    lb_config c;
    assert_int_equal(lb_config_load_file(path, &c), LB_ECONFIG);
    char want[700];
    snprintf(want, sizeof want, "%s:3:10: key 'train.steps'", path);
    assert_msg_has(want, "expected a positive integer", "got -5", NULL);
    assert_string_equal(c.source, path);

    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    assert_int_equal(lb_config_load_file(path, &c), LB_EIO);
    assert_msg_has(path, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_validate),
        cmocka_unit_test(test_example_configs_load),
        cmocka_unit_test(test_example_configs_content),
        cmocka_unit_test(test_round_trip_custom),
        cmocka_unit_test(test_set_nested_and_quant),
        cmocka_unit_test(test_optim_groups),
        cmocka_unit_test(test_set_bad_forms),
        cmocka_unit_test(test_tokenizer_names_are_the_tokenizers),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_wrong_type),
        cmocka_unit_test(test_error_out_of_range),
        cmocka_unit_test(test_error_bad_quant_spec),
        cmocka_unit_test(test_error_yaml_syntax),
        cmocka_unit_test(test_error_inconsistent_shapes),
        cmocka_unit_test(test_load_file_errors_name_the_file),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Hugging Face import against the reference written from transformers'
 * modeling code (scripts/reference/hf_reference.py).
 *
 * For each case the script writes a random model directory (config.json in
 * the 4.x or 5.x dialect, model.safetensors or shards, F32/F16/BF16, BitNet
 * online, packed or packed-with-divided-scale, tokenizer.json); lowbit imports
 * it, computes the logits of a fixed batch and writes them next to it; the
 * script computes the reference logits and compares (1e-4 of max|ref|, plus
 * the near-tie allowance of the quantized models; see the script). The
 * script exits 77 without torch: tu_require_dependency. Then bad input: every
 * disagreement between the files and config.json is an error naming the file
 * and the tensor or key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "interop/hf_import.h"
#include "testutil.h"

#define B 2
#define T 12

static void must(lb_status s) {
    if (s != LB_OK) fail_msg("%s", lb_errmsg());
}

static int run_script(const char *args) { return tu_run_torch_script("hf_reference.py", args); }

static void remove_dir(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fail_msg("%s", cmd);
}

/* lowbit_logits.bin as the script reads it. */
static void write_logits(const char *dir, const int *ids, const lb_tensor *logits, int V) {
    char path[4352];
    snprintf(path, sizeof path, "%s/lowbit_logits.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int hdr[3] = {B, T, V};
    assert_int_equal(fwrite(hdr, sizeof hdr, 1, f), 1);
    assert_int_equal(fwrite(ids, sizeof(int), B * T, f), B * T);
    assert_int_equal(fwrite(logits->data, sizeof(float), (size_t)B * T * V, f), (size_t)B * T * V);
    fclose(f);
}

/* The logits of the fixed batch for the model in `dir`, written for the script. */
static void import_and_run(const char *dir) {
    lb_hf_config h;
    lb_model *m;
    lb_tokenizer *tok;
    must(lb_hf_import(dir, &h, &m, &tok));
    int ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 11) % h.vocab_size;
    lb_graph g;
    must(lb_graph_init(&g, 0));
    lb_tensor *logits = lb_model_forward(m, &g, ids, B, T, NULL, NULL);
    if (!logits) fail_msg("%s", lb_errmsg());
    write_logits(dir, ids, logits, h.vocab_size);
    lb_graph_free(&g);
    lb_model_free(m);
    lb_tokenizer_free(tok);
}

/* The models: tag and options of hf_reference.py make. */
static const struct {
    const char *tag, *opts;
} CASES[] = {
    {"llama_untied_gqa_f32", "arch=llama kv=2 tied=0"},
    {"llama_tied_mha_bf16", "arch=llama kv=4 tied=1 dtype=bf16 seed=2"},
    {"llama_v5_mqa_3_shards_f16", "arch=llama kv=1 dialect=5 shards=3 dtype=f16 seed=3"},
    {"bitnet_unquantized", "arch=bitnet kv=2 seed=4"},
    {"bitnet_online_bf16", "arch=bitnet quant=online dtype=bf16 kv=2 seed=5"},
    {"bitnet_packed_bf16_2_shards", "arch=bitnet quant=packed dtype=bf16 kv=1 shards=2 seed=6"},
    {"bitnet_bitlinear_tied_v5", "arch=bitnet quant=packed_inv tied=1 dialect=5 seed=7"},
};
enum { N_CASES = sizeof CASES / sizeof *CASES };

/* All models are made by one run of the script and checked by another
 * (Python and torch start slowly on a busy machine). */
static void test_logits_match_reference(void **s) {
    (void)s;
    char base[512], list[600], dirs[N_CASES][600];
    tu_tmpdir(base, sizeof base, "hf_models");
    snprintf(list, sizeof list, "%s/models.txt", base);
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    for (int i = 0; i < N_CASES; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", base, CASES[i].tag);
        fprintf(f, "%s %s\n", dirs[i], CASES[i].opts);
    }
    fclose(f);
    char args[8192];
    snprintf(args, sizeof args, "make-list '%s'", list);
    if (run_script(args) != 0) fail_msg("hf_reference.py make-list failed");
    size_t n = (size_t)snprintf(args, sizeof args, "check");
    for (int i = 0; i < N_CASES; i++) {
        import_and_run(dirs[i]);
        n += (size_t)snprintf(args + n, sizeof args - n, " '%s'", dirs[i]);
    }
    if (run_script(args) != 0) fail_msg("lowbit and the transformers reference disagree (see above)");
    remove_dir(base);
}

/* ---- bad input ---------------------------------------------------------------------------- */

/* Rewrites config.json of `dir` with `from` replaced by `to` (must occur). */
static void edit_config(const char *dir, const char *from, const char *to) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16], out[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *at = strstr(buf, from);
    if (!at) fail_msg("'%s' not in %s", from, path);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs(out, f);
    fclose(f);
}

static void expect_import_error(const char *dir, const char *what1, const char *what2) {
    lb_hf_config h;
    lb_model *m;
    lb_tokenizer *tok;
    lb_status s = lb_hf_import(dir, &h, &m, &tok);
    if (s == LB_OK) fail_msg("import of %s succeeded; expected an error naming '%s'", dir, what1);
    const char *msg = lb_errmsg();
    if (!strstr(msg, what1) || (what2 && !strstr(msg, what2)))
        fail_msg("error '%s' does not name '%s'%s%s", msg, what1, what2 ? " and " : "", what2 ? what2 : "");
    assert_null(m);
    assert_null(tok);
    remove_dir(dir);
}

/* The bad-input tests edit copies of one model directory each (python starts once). */
static char base_llama[512], base_sharded[512];

static void fresh(char *dir, size_t size, const char *tag, const char *base) {
    char cmd[1200];
    tu_tmpdir(dir, size, tag);
    snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'/", base, dir);
    if (system(cmd) != 0) fail_msg("%s", cmd);
}

static int make_bases(void **state) {
    (void)state;
    char list[600], args[700];
    tu_tmpdir(base_llama, sizeof base_llama, "hf_base");
    tu_tmpdir(base_sharded, sizeof base_sharded, "hf_base_sharded");
    snprintf(list, sizeof list, "%s.models.txt", base_sharded);
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    fprintf(f, "%s arch=llama kv=2\n%s arch=llama kv=2 dialect=5 shards=2\n", base_llama, base_sharded);
    fclose(f);
    snprintf(args, sizeof args, "make-list '%s'", list);
    int rc = run_script(args);
    remove(list);
    if (rc != 0) fail_msg("hf_reference.py make-list failed");
    return 0;
}

static int remove_bases(void **state) {
    (void)state;
    remove_dir(base_llama);
    remove_dir(base_sharded);
    return 0;
}

static void test_config_errors(void **s) {
    (void)s;
    char dir[512];
    struct {
        const char *from, *to, *names1, *names2;
    } cases[] = {
        {"\"LlamaForCausalLM\"", "\"MistralForCausalLM\"", "architectures", "MistralForCausalLM"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "rope_scaling",
         "llama3"},
        {"\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", "rope_scaling",
         "linear"},
        {"\"attention_bias\": false", "\"attention_bias\": true", "attention_bias", NULL},
        {"\"mlp_bias\": false", "\"mlp_bias\": true", "mlp_bias", NULL},
        {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act", "gelu"},
        {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "num_key_value_heads", NULL},
        {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 2, \"head_dim\": 32", "head_dim", NULL},
        {"\"torch_dtype\": \"float32\"", "\"torch_dtype\": \"float64\"", "torch_dtype", "float64"},
        {"\"hidden_size\": 64", "\"hidden_size\": \"64\"", "hidden_size", NULL},
        {"\"vocab_size\": 300", "\"vocab_size\": 200", "model.embed_tokens.weight", "[200, 64]"},
        {"\"intermediate_size\": 96", "\"intermediate_size\": 128", "mlp.gate_proj.weight", "[128, 64]"},
        {"\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", "lm_head.weight", NULL},
        {"\"torch_dtype\": \"float32\"", "\"torch_dtype\": \"bfloat16\"", "model.embed_tokens.weight", "BF16"},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", "model.layers.2.input_layernorm.weight", "missing"},
        {"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1", "model.layers.1.", "not part of"},
        {"{", "{\"quantization_config\": {\"quant_method\": \"gptq\"},", "quant_method", "gptq"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fresh(dir, sizeof dir, "hf_bad_config", base_llama);
        edit_config(dir, cases[i].from, cases[i].to);
        expect_import_error(dir, cases[i].names1, cases[i].names2);
    }
    /* The 5.x dialect's rope_parameters with another type. */
    fresh(dir, sizeof dir, "hf_bad_rope5", base_sharded);
    edit_config(dir, "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"");
    expect_import_error(dir, "rope_parameters", "yarn");
}

/* Truncates or overwrites bytes of a file of `dir`. */
static void damage(const char *dir, const char *file, long offset, const char *bytes, long truncate_to) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (truncate_to >= 0) assert_int_equal(truncate(path, truncate_to), 0);
    if (bytes) {
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        fseek(f, offset, SEEK_SET);
        fwrite(bytes, 1, strlen(bytes), f);
        fclose(f);
    }
}

static void test_file_errors(void **s) {
    (void)s;
    char dir[512];
    fresh(dir, sizeof dir, "hf_truncated", base_llama);
    damage(dir, "model.safetensors", 0, NULL, 20000);
    expect_import_error(dir, "model.safetensors", NULL);

    fresh(dir, sizeof dir, "hf_lying_header", base_llama);
    damage(dir, "model.safetensors", 0, "\xff\xff\xff\x7f", -1); /* a header length past the end */
    expect_import_error(dir, "model.safetensors", NULL);

    fresh(dir, sizeof dir, "hf_no_tokenizer", base_llama);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    fputs("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", f);
    fclose(f);
    expect_import_error(dir, "tokenizer.json", "Unigram");

    fresh(dir, sizeof dir, "hf_bad_normalizer", base_llama);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    f = fopen(path, "wb");
    fputs("{\"normalizer\": {\"type\": \"Precompiled\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", f);
    fclose(f);
    expect_import_error(dir, "tokenizer.json", "Precompiled");

    fresh(dir, sizeof dir, "hf_sharded_missing", base_sharded);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(remove(path), 0);
    expect_import_error(dir, "model-00002-of-00002.safetensors", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_match_reference),
        cmocka_unit_test_setup_teardown(test_config_errors, make_bases, remove_bases),
        cmocka_unit_test_setup_teardown(test_file_errors, make_bases, remove_bases),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

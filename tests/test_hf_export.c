/* Hugging Face export (interop/hf_export.h): export then import gives the
 * same logits; the exported directory computes, by the reference written
 * from transformers' modeling code (scripts/reference/hf_reference.py), the
 * logits lowbit computes; the byte and char tokenizers come back as
 * tokenizer.json files that encode and decode as they do; models Hugging
 * Face cannot express are errors naming the key; nothing is overwritten. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/dtype.h"
#include "interop/hf_export.h"
#include "interop/hf_import.h"
#include "layers/linear.h"
#include "testutil.h"

#define B 2
#define T 10

static const char TEXT[] = "the cat sees the moon. a dog likes the river, naïve café 3.14!";

static void must(lb_status s) {
    if (s != LB_OK) fail_msg("%s", lb_errmsg());
}

static void preset(lb_quant_preset p, lb_linear_quant *q) {
    memset(q, 0, sizeof *q);
    q->mode = (lb_linear_mode)p;
    must(lb_linear_quant_resolve(q, q, "test"));
}

/* A small model: Llama-like (fp32, SwiGLU, no SubLN, untied) or BitNet-like (b1.58, ReLU², SubLN, tied). */
static lb_model *make_model(int bitnet, int vocab) {
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = vocab;
    c.dim = 64;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.ffn_dim = 96;
    c.max_seq_len = 32;
    c.rope_theta = bitnet ? 500000.0f : 10000.0f;
    c.norm_eps = 1e-5f;
    c.ffn_act = bitnet ? LB_FFN_RELU2 : LB_FFN_SWIGLU;
    c.sub_norm = bitnet;
    c.tie_embeddings = bitnet;
    c.init_std = 0.15f;
    preset(bitnet ? LB_PRESET_B158 : LB_PRESET_FP32, &c.attn);
    c.ffn = c.attn;
    preset(LB_PRESET_FP32, &c.head);
    lb_model *m = lb_model_create(&c, 7);
    if (!m) fail_msg("%s", lb_errmsg());
    /* norm gains other than 1, so that a mixed-up norm shows */
    int n;
    const lb_param *p = lb_model_params(m, &n);
    for (int i = 0; i < n; i++)
        if (p[i].role == LB_ROLE_ATTN_NORM || p[i].role == LB_ROLE_FFN_NORM || p[i].role == LB_ROLE_OUTPUT_NORM ||
            p[i].role == LB_ROLE_ATTN_SUB_NORM || p[i].role == LB_ROLE_FFN_SUB_NORM)
            for (size_t k = 0; k < p[i].t->n; k++) p[i].t->data[k] = 1.0f + 0.3f * sinf((float)(k * 7 + i));
    return m;
}

static float *logits_of(lb_model *m, const int *ids) {
    lb_graph g;
    must(lb_graph_init(&g, 0));
    lb_tensor *l = lb_model_forward(m, &g, ids, B, T, NULL, NULL);
    if (!l) fail_msg("%s", lb_errmsg());
    float *out = malloc(l->n * sizeof *out);
    memcpy(out, l->data, l->n * sizeof *out);
    lb_graph_free(&g);
    return out;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / s;
}

static int run_script(const char *args) { return tu_run_torch_script("hf_reference.py", args); }

/* lowbit's logits of the original model against the reference run on the exported directory. */
static void check_with_reference(const char *dir, const int *ids, const float *logits, int V) {
    char path[700], args[800];
    snprintf(path, sizeof path, "%s/lowbit_logits.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int hdr[3] = {B, T, V};
    fwrite(hdr, sizeof hdr, 1, f);
    fwrite(ids, sizeof(int), B * T, f);
    fwrite(logits, sizeof(float), (size_t)B * T * V, f);
    fclose(f);
    snprintf(args, sizeof args, "check '%s'", dir);
    if (run_script(args) != 0) fail_msg("%s: the exported model computes other logits (see above)", dir);
}

/* Exports m, imports the directory and compares logits: `rtol` 0 asks for
 * identical bits, a negative `rtol` compares only the imported model with the
 * reference (bf16 packed: the codes come from the f32 weights, γ is rounded). */
static void round_trip(const char *tag, lb_model *m, const lb_tokenizer *tok, lb_dtype dt, int packed, double rtol) {
    char base[512], dir[600];
    tu_tmpdir(base, sizeof base, tag);
    snprintf(dir, sizeof dir, "%s/hf", base);
    int ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 13 + 5) % tok->vocab_size;
    float *before = logits_of(m, ids);
    lb_hf_export_options o = {.dtype = dt, .packed = packed};
    must(lb_hf_export(m, tok, dir, &o));
    /* What the file holds, rounded to bf16, is what the import must give back. */
    if (dt == LB_DT_BF16 && !packed) {
        uint16_t *tmp = malloc(m->n_elements * sizeof *tmp);
        lb_dtype_info(LB_DT_BF16)->from_f32(m->params_memory, tmp, m->n_elements);
        lb_dtype_info(LB_DT_BF16)->to_f32(tmp, m->params_memory, m->n_elements);
        free(tmp);
        free(before);
        before = logits_of(m, ids);
    }
    lb_hf_config h;
    lb_model *back;
    lb_tokenizer *tok2;
    must(lb_hf_import(dir, &h, &back, &tok2));
    assert_int_equal(tok2->vocab_size, tok->vocab_size);
    float *after = logits_of(back, ids);
    size_t n = (size_t)B * T * (size_t)m->cfg.vocab_size;
    double rel = max_rel_diff(after, before, n);
    printf("[%s] export (%s%s) then import: max |diff| / max |logit| = %.2e\n", tag, lb_dtype_info(dt)->name,
           packed ? ", packed" : "", rel);
    if (rtol == 0) assert_memory_equal(after, before, n * sizeof *after);
    else if (rtol > 0 && rel > rtol) fail_msg("%s: logits differ by %.2e relative (allowed %.1e)", tag, rel, rtol);
    check_with_reference(dir, ids, rtol < 0 ? after : before, m->cfg.vocab_size);
    free(before);
    free(after);
    lb_model_free(back);
    lb_tokenizer_free(tok2);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

static void test_llama_f32(void **s) {
    (void)s;
    lb_tokenizer *tok = lb_tokenizer_byte();
    lb_model *m = make_model(0, 260);
    round_trip("hf_export_llama", m, tok, LB_DT_F32, 0, 0);
    lb_model_free(m);
    lb_tokenizer_free(tok);
}

static void test_llama_bf16(void **s) {
    (void)s;
    lb_tokenizer *tok = lb_tokenizer_byte();
    lb_model *m = make_model(0, 256);
    round_trip("hf_export_llama_bf16", m, tok, LB_DT_BF16, 0, 0);
    lb_model_free(m);
    lb_tokenizer_free(tok);
}

static void test_bitnet_master_weights(void **s) {
    (void)s;
    lb_tokenizer *tok = lb_tokenizer_build_char(TEXT, strlen(TEXT));
    lb_model *m = make_model(1, tok->vocab_size + 3);
    round_trip("hf_export_bitnet", m, tok, LB_DT_F32, 0, 0);
    lb_model_free(m);
    lb_tokenizer_free(tok);
}

/* Packed: the codes and γ come back exactly; the master weights become T·γ/f,
 * whose mean |W| is γ up to float rounding. */
static void test_bitnet_packed(void **s) {
    (void)s;
    lb_tokenizer *tok = lb_tokenizer_build_char(TEXT, strlen(TEXT));
    lb_model *m = make_model(1, tok->vocab_size);
    round_trip("hf_export_packed", m, tok, LB_DT_F32, 1, 1e-5);
    lb_model_free(m);
    lb_tokenizer_free(tok);
}

static void test_bitnet_packed_bf16(void **s) {
    (void)s;
    lb_tokenizer *tok = lb_tokenizer_byte();
    lb_model *m = make_model(1, 256);
    /* bf16 rounds γ: the imported model against the reference on the file. */
    round_trip("hf_export_packed_bf16", m, tok, LB_DT_BF16, 1, -1);
    lb_model_free(m);
    lb_tokenizer_free(tok);
}

/* The exported tokenizer.json encodes and decodes as the tokenizer did. */
static void check_tokenizer(const lb_tokenizer *tok, const char *text) {
    char *json;
    size_t len;
    must(lb_hf_tokenizer_json(tok, &json, &len));
    lb_tokenizer *back = lb_tokenizer_from_json(json, len, "exported tokenizer.json", LB_TOKENIZER_HF);
    if (!back) fail_msg("%s", lb_errmsg());
    size_t n = strlen(text), n1, n2;
    int *a = malloc(n * sizeof *a), *b = malloc((n + 8) * sizeof *b);
    must(lb_tokenizer_encode(tok, text, n, a, &n1));
    must(lb_tokenizer_encode(back, text, n, b, &n2));
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof *a);
    char *d = lb_tokenizer_decode(back, b, n2, NULL);
    assert_string_equal(d, text);
    free(d);
    free(a);
    free(b);
    free(json);
    lb_tokenizer_free(back);
}

static void test_tokenizers(void **s) {
    (void)s;
    static const char *const texts[] = {TEXT, "  two  spaces\n\nand\ttabs ", "émoji 🙂 ünïcode 日本語", "'s 're 123"};
    lb_tokenizer *byte = lb_tokenizer_byte();
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) check_tokenizer(byte, texts[i]);
    lb_tokenizer_free(byte);
    lb_tokenizer *ch = lb_tokenizer_build_char(TEXT, strlen(TEXT));
    check_tokenizer(ch, TEXT);
    check_tokenizer(ch, "the moon sees a cat");
    lb_tokenizer_free(ch);
    /* A char vocabulary holding an invalid byte's escape has no tokenizer.json. */
    lb_tokenizer *bad = lb_tokenizer_build_char("ab\xff", 3);
    char *json;
    size_t len;
    assert_int_equal(lb_hf_tokenizer_json(bad, &json, &len), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "0xFF"));
    lb_tokenizer_free(bad);
}

static void test_errors(void **s) {
    (void)s;
    char base[512], dir[600];
    tu_tmpdir(base, sizeof base, "hf_export_errors");
    snprintf(dir, sizeof dir, "%s/hf", base);
    lb_tokenizer *tok = lb_tokenizer_byte();
    lb_hf_export_options o = {.dtype = LB_DT_F32};

    lb_model *m = make_model(0, 256);
    m->cfg.norm = LB_NORM_LAYER;
    assert_int_equal(lb_hf_export(m, tok, dir, &o), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "model.norm"));
    m->cfg.norm = LB_NORM_RMS;
    o.packed = 1;
    assert_int_equal(lb_hf_export(m, tok, dir, &o), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "--bitnet-packed"));
    o.packed = 0;
    m->cfg.sub_norm = 1;
    assert_int_equal(lb_hf_export(m, tok, dir, &o), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "model.sub_norm"));
    m->cfg.sub_norm = 0;
    preset(LB_PRESET_B1, &m->cfg.attn);
    assert_int_equal(lb_hf_export(m, tok, dir, &o), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "model.quant"));
    preset(LB_PRESET_FP32, &m->cfg.attn);

    /* An existing directory is never replaced. */
    assert_int_equal(mkdir(dir, 0755), 0);
    char keep[700];
    snprintf(keep, sizeof keep, "%s/mine.txt", dir);
    FILE *f = fopen(keep, "w");
    fputs("user data", f);
    fclose(f);
    assert_int_equal(lb_hf_export(m, tok, dir, &o), LB_EIO);
    assert_non_null(strstr(lb_errmsg(), "exists"));
    struct stat sb;
    assert_int_equal(stat(keep, &sb), 0);
    lb_model_free(m);
    lb_tokenizer_free(tok);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

/* A packed code 3 (bits 11) is not a ternary weight: the import names the tensor and the place. */
static void test_packed_code_3_is_an_error(void **s) {
    (void)s;
    char base[512], dir[600], path[700];
    tu_tmpdir(base, sizeof base, "hf_export_code3");
    snprintf(dir, sizeof dir, "%s/hf", base);
    lb_tokenizer *tok = lb_tokenizer_byte();
    lb_model *m = make_model(1, 256);
    lb_hf_export_options o = {.dtype = LB_DT_F32, .packed = 1};
    must(lb_hf_export(m, tok, dir, &o));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    uint64_t n;
    assert_int_equal(fread(&n, 8, 1, f), 1);
    char *header = calloc(1, n + 1);
    assert_int_equal(fread(header, 1, n, f), n);
    const char *key = "\"model.layers.1.mlp.up_proj.weight\":";
    char *at = strstr(header, key);
    assert_non_null(at);
    at = strstr(at, "\"data_offsets\":[");
    assert_non_null(at);
    long begin = strtol(at + strlen("\"data_offsets\":["), NULL, 10);
    fseek(f, (long)(8 + n) + begin + 5, SEEK_SET);
    fputc(0xFF, f);
    fclose(f);
    free(header);
    lb_hf_config h;
    lb_model *back;
    lb_tokenizer *tok2;
    assert_int_equal(lb_hf_import(dir, &h, &back, &tok2), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "model.layers.1.mlp.up_proj.weight"));
    assert_non_null(strstr(lb_errmsg(), "code 3"));
    lb_model_free(m);
    lb_tokenizer_free(tok);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_f32),         cmocka_unit_test(test_llama_bf16),
        cmocka_unit_test(test_bitnet_master_weights), cmocka_unit_test(test_bitnet_packed),
        cmocka_unit_test(test_bitnet_packed_bf16), cmocka_unit_test(test_tokenizers),
        cmocka_unit_test(test_errors),           cmocka_unit_test(test_packed_code_3_is_an_error),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* GGUF export (interop/gguf_export.h) and the GGUF → lowbit model path
 * (interop/gguf_model.h): the ternary codes and scales of TQ1_0/TQ2_0, read-back of
 * every type, evaluation of the file against the checkpoint, the `llama` Q/K
 * permutation, the tokenizers, clean errors for broken files, and llama.cpp itself
 * (node-llama-cpp's build, scripts/llama) running every export of a tiny trained model.
 *
 *   test_gguf_export                    trains the tiny model (a few seconds)
 *   LOWBIT_GGUF_CHECKPOINT=ckpt.h5 test_gguf_export
 *                                       the same checks on a given checkpoint
 *                                       (scripts/llama_check.sh) */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "data/batch.h"
#include "interop/gguf_export.h"
#include "interop/gguf_model.h"
#include "io/gguf.h"
#include "quant/quantize.h"
#include "trainer/trainer.h"
#include "testutil.h"
#include "testutil_io.h"

typedef struct fixture {
    tu_run_dir *run;      /* NULL with LOWBIT_GGUF_CHECKPOINT */
    lb_trainer t;         /* model, tokenizer, config, validation tokens */
    char dir[256];        /* exports go here */
    char ckpt[512];
} fixture;

static const lb_dtype TYPES[] = {LB_DT_TQ2_0, LB_DT_TQ1_0, LB_DT_Q8_0, LB_DT_Q4_0, LB_DT_F16, LB_DT_F32};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };

static void export_path(const fixture *fx, lb_dtype type, char *buf, size_t size) {
    snprintf(buf, size, "%s/model_%s.gguf", fx->dir, lb_dtype_info(type)->name);
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    tu_tmpdir(fx->dir, sizeof fx->dir, "gguf_export");
    lb_config c;
    const char *given = getenv("LOWBIT_GGUF_CHECKPOINT");
    if (given && *given) {
        snprintf(fx->ckpt, sizeof fx->ckpt, "%s", given);
        if (lb_load_checkpoint_config(given, &c) != LB_OK) fail_msg("%s", lb_errmsg());
        c.train.init_from[0] = '\0';
        if (lb_trainer_init(&fx->t, &c) != LB_OK || lb_trainer_resume(&fx->t, given) != LB_OK)
            fail_msg("%s", lb_errmsg());
    } else {
        /* BitNet b1.58 with SubLN, widths of 256 (TQ blocks), byte tokenizer: llama.cpp's bitnet */
        fx->run = tu_run_dir_new("gguf_export", 60000, 3);
        lb_config_defaults(&c);
        tu_config_set(&c, "model.dim=256");
        tu_config_set(&c, "model.n_layers=1");
        tu_config_set(&c, "model.n_heads=4");
        tu_config_set(&c, "model.n_kv_heads=2");
        tu_config_set(&c, "model.ffn_dim=256");
        tu_config_set(&c, "model.max_seq_len=32");
        tu_config_set(&c, "data.path=%s", fx->run->corpus);
        tu_config_set(&c, "train.steps=30");
        tu_config_set(&c, "train.batch_size=4");
        tu_config_set(&c, "train.seq_len=32");
        tu_config_set(&c, "train.warmup_steps=3");
        tu_config_set(&c, "train.lr=4e-3");
        tu_config_set(&c, "train.schedule=cosine");
        tu_config_set(&c, "eval.batches=4");
        tu_config_set(&c, "checkpoint.dir=%s/run", fx->run->dir);
        tu_config_set(&c, "log.jsonl=");
        if (lb_config_validate(&c) != LB_OK || lb_trainer_init(&fx->t, &c) != LB_OK) fail_msg("%s", lb_errmsg());
        for (int i = 0; i < 30; i++) {
            lb_step_result r;
            if (lb_trainer_step(&fx->t, &r) != LB_OK) fail_msg("step: %s", lb_errmsg());
        }
        if (lb_trainer_save(&fx->t, fx->ckpt, sizeof fx->ckpt) != LB_OK) fail_msg("save: %s", lb_errmsg());
    }
    for (int i = 0; i < N_TYPES; i++) {
        char path[400];
        export_path(fx, TYPES[i], path, sizeof path);
        if (lb_gguf_export(fx->t.model, fx->t.tok, fx->t.config_yaml, TYPES[i], path) != LB_OK)
            fail_msg("export %s: %s", lb_dtype_info(TYPES[i])->name, lb_errmsg());
    }
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    lb_trainer_free(&fx->t);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", fx->dir);
    if (fx->run) tu_run_dir_free(fx->run);
    free(fx);
    return 0;
}

static float fp16_round(float x) {
    uint16_t h;
    float y;
    lb_dtype_info(LB_DT_F16)->from_f32(&x, &h, 1);
    lb_dtype_info(LB_DT_F16)->to_f32(&h, &y, 1);
    return y;
}

static int is_linear(const lb_param *p) { return lb_param_role_of(p->role)->kind == LB_PARAM_LINEAR; }

/* --- codes and scales ------------------------------------------------------------ */

/* TQ1_0 and TQ2_0 of absmean ternary weights: every value in the file is fp16(γ)·code with the
   codes the forward pass uses, so export is lossless up to fp16(γ). */
static void test_ternary_codes_are_exact(void **state) {
    fixture *fx = *state;
    const lb_model *m = fx->t.model;
    for (int k = 0; k < 2; k++) {
        lb_dtype type = k ? LB_DT_TQ1_0 : LB_DT_TQ2_0;
        char path[400];
        export_path(fx, type, path, sizeof path);
        lb_gguf *g;
        assert_int_equal(lb_gguf_open(path, &g), LB_OK);
        double worst = 0.0;
        int n_linear = 0;
        for (int i = 0; i < m->n_params; i++) {
            const lb_param *p = &m->params[i];
            if (!is_linear(p)) continue;
            assert_int_equal(p->weight.format, LB_QF_TERNARY);
            n_linear++;
            const lb_gguf_tensor *gt = lb_gguf_find_tensor(g, p->t->name);
            assert_non_null(gt);
            assert_int_equal(gt->ggml_type, lb_dtype_info(type)->gguf_type);
            size_t n = p->t->n, cols = (size_t)p->t->shape[1];
            float *eff = malloc(n * sizeof *eff), *file = malloc(n * sizeof *file), gamma;
            int8_t *codes = malloc(n);
            assert_int_equal(lb_quantize(&p->weight, p->t->data, n / cols, cols, codes, &gamma, NULL), LB_OK);
            free(codes);
            assert_int_equal(lb_export_effective_weights(m, i, eff), LB_OK);
            assert_int_equal(lb_gguf_tensor_to_f32(g, gt, file, n), LB_OK);
            float d = fp16_round(gamma);
            for (size_t j = 0; j < n; j++) {
                float code = rintf(eff[j] / gamma);
                assert_true(code == -1.0f || code == 0.0f || code == 1.0f);
                if (file[j] != d * code) fail_msg("%s[%zu]: %g in the file, fp16(γ)·code = %g", p->t->name, j, file[j], d * code);
            }
            worst = fmax(worst, fabs((double)d - gamma) / gamma);
            free(eff);
            free(file);
        }
        assert_true(n_linear > 0);
        print_message("%s: every ternary code exact, scales fp16(γ): largest relative error of a scale %.2e\n",
                      lb_dtype_info(type)->name, worst);
        assert_true(worst <= 1.0 / 2048);
        lb_gguf_close(g);
    }
}

/* --- read back ----------------------------------------------------------------- */

static lb_model *load(const fixture *fx, lb_dtype type, lb_tokenizer **tok, lb_config *cfg) {
    char path[400];
    export_path(fx, type, path, sizeof path);
    lb_model *m;
    int has = 0;
    if (lb_gguf_model_load(path, cfg, &has, tok, &m) != LB_OK) fail_msg("load %s: %s", path, lb_errmsg());
    assert_true(has);
    return m;
}

/* The read model holds the exported weights as the forward pass used them, rounded only by the type. */
static void test_read_back(void **state) {
    fixture *fx = *state;
    const lb_model *m = fx->t.model;
    for (int k = 0; k < N_TYPES; k++) {
        lb_tokenizer *tok;
        lb_config cfg;
        lb_model *r = load(fx, TYPES[k], &tok, &cfg);
        assert_int_equal(tok->kind, fx->t.tok->kind);
        assert_int_equal(tok->vocab_size, fx->t.tok->vocab_size);
        assert_int_equal(r->cfg.dim, m->cfg.dim);
        assert_int_equal(r->cfg.n_kv_heads, m->cfg.n_kv_heads);
        assert_int_equal(r->cfg.sub_norm, m->cfg.sub_norm);
        assert_true(lb_qspec_is_none(&r->q_attn.weight));
        assert_memory_equal(&r->q_attn.activation, &m->q_attn.activation, sizeof(lb_qspec));
        assert_int_equal(r->n_params, m->n_params);
        double worst = 0.0;
        for (int i = 0; i < m->n_params; i++) {
            const lb_tensor *a = m->params[i].t, *b = r->params[i].t;
            assert_string_equal(a->name, b->name);
            float *eff = malloc(a->n * sizeof *eff);
            assert_int_equal(lb_export_effective_weights(m, i, eff), LB_OK);
            float amax = 0.0f;
            for (size_t j = 0; j < a->n; j++) amax = fmaxf(amax, fabsf(eff[j]));
            for (size_t j = 0; j < a->n; j++) {
                double e = fabs((double)b->data[j] - eff[j]) / (amax > 0 ? amax : 1);
                worst = fmax(worst, e);
                if (TYPES[k] == LB_DT_F32 && b->data[j] != eff[j]) fail_msg("f32 %s[%zu] changed", a->name, j);
            }
            free(eff);
        }
        /* relative to each tensor's largest value: fp16 rounding, or half a quantization step */
        static const double bound[] = {[LB_DT_TQ2_0] = 1.0 / 2048, [LB_DT_TQ1_0] = 1.0 / 2048, [LB_DT_Q8_0] = 1.0 / 127,
                                       [LB_DT_Q4_0] = 1.0 / 7, [LB_DT_F16] = 1.0 / 2048, [LB_DT_F32] = 0.0};
        print_message("%s: read back, largest difference %.2e of a tensor's largest value\n",
                      lb_dtype_info(TYPES[k])->name, worst);
        assert_true(worst <= bound[TYPES[k]]);
        lb_model_free(r);
        lb_tokenizer_free(tok);
    }
}

/* --- evaluation ------------------------------------------------------------------ */

static double val_loss(lb_model *m, const lb_dataset *data, int B, int T, int batches) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    int *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    double sum = 0.0;
    for (int i = 0; i < batches; i++) {
        assert_int_equal(lb_val_batch(data, B, T, i, batches, in, tg), LB_OK);
        lb_graph_reset(&g);
        lb_tensor *l = lb_model_forward(m, &g, in, B, T, tg, NULL);
        if (!l) fail_msg("forward: %s", lb_errmsg());
        sum += l->data[0];
    }
    free(in);
    free(tg);
    lb_graph_free(&g);
    return sum / batches;
}

/* Evaluating the file is evaluating the checkpoint, within the rounding of the type. */
static void test_eval_matches_checkpoint(void **state) {
    fixture *fx = *state;
    int B = 4, T = fx->t.model->cfg.max_seq_len < 32 ? fx->t.model->cfg.max_seq_len : 32, batches = 4;
    double ref = val_loss(fx->t.model, &fx->t.data, B, T, batches);
    print_message("checkpoint: validation loss %.6f\n", ref);
    for (int k = 0; k < N_TYPES; k++) {
        lb_tokenizer *tok;
        lb_config cfg;
        lb_model *r = load(fx, TYPES[k], &tok, &cfg);
        double loss = val_loss(r, &fx->t.data, B, T, batches);
        print_message("%-6s validation loss %.6f, difference %+.2e\n", lb_dtype_info(TYPES[k])->name, loss, loss - ref);
        static const double tol[] = {[LB_DT_TQ2_0] = 2e-3, [LB_DT_TQ1_0] = 2e-3, [LB_DT_Q8_0] = 2e-2,
                                     [LB_DT_Q4_0] = 0.2, [LB_DT_F16] = 2e-3, [LB_DT_F32] = 1e-4};
        assert_true(fabs(loss - ref) <= tol[TYPES[k]]);
        lb_model_free(r);
        lb_tokenizer_free(tok);
    }
}

/* --- the llama architecture ------------------------------------------------------- */

/* An fp32 model without SubLN is `llama`: Q and K rows go to llama.cpp's interleaved pairing
   (convert_hf_to_gguf.py: reshape(n_head, 2, Dh/2, cols).swapaxes(1, 2)) and back. */
static void test_llama_arch_permutes_q_and_k(void **state) {
    fixture *fx = *state;
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = 256, c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.ffn_dim = 96;
    c.max_seq_len = 16, c.tie_embeddings = 0;
    lb_model *m = lb_model_create(&c, 7);
    assert_non_null(m);
    lb_gguf_arch arch;
    assert_int_equal(lb_gguf_arch_of(&m->cfg, &arch), LB_OK);
    assert_int_equal(arch, LB_GGUF_ARCH_LLAMA);
    char path[400];
    snprintf(path, sizeof path, "%s/llama.gguf", fx->dir);
    lb_tokenizer *bt = lb_tokenizer_byte();
    assert_int_equal(lb_gguf_export(m, bt, NULL, LB_DT_F32, path), LB_OK);

    lb_gguf *g;
    assert_int_equal(lb_gguf_open(path, &g), LB_OK);
    lb_gguf_str s;
    assert_int_equal(lb_gguf_get_str(g, "general.architecture", &s), LB_OK);
    assert_memory_equal(s.s, "llama", 5);
    assert_non_null(lb_gguf_find_tensor(g, "output.weight"));
    int Dh = 16;
    const char *names[] = {"blk.1.attn_q.weight", "blk.1.attn_k.weight"};
    for (int q = 0; q < 2; q++) {
        const lb_gguf_tensor *gt = lb_gguf_find_tensor(g, names[q]);
        const lb_tensor *t = lb_model_param(m, names[q]);
        const float *file = gt->data;
        int heads = q ? 2 : 4;
        for (int h = 0; h < heads; h++)
            for (int r = 0; r < Dh; r++) /* file row h·Dh + r holds lowbit row h·Dh + (r % 2)·Dh/2 + r/2 */
                assert_memory_equal(file + (size_t)(h * Dh + r) * 64, t->data + (size_t)(h * Dh + (r % 2) * (Dh / 2) + r / 2) * 64,
                                    64 * sizeof(float));
    }
    lb_gguf_close(g);

    lb_config cfg;
    lb_tokenizer *tok;
    lb_model *r;
    assert_int_equal(lb_gguf_model_load(path, &cfg, NULL, &tok, &r), LB_OK);
    assert_int_equal(tok->kind, LB_TOKENIZER_BYTE);
    assert_int_equal(r->cfg.tie_embeddings, 0);
    for (int i = 0; i < m->n_params; i++) assert_memory_equal(r->params[i].t->data, m->params[i].t->data, m->params[i].t->n * sizeof(float));
    lb_model_free(r);
    lb_tokenizer_free(tok);
    lb_tokenizer_free(bt);
    lb_model_free(m);
}

/* --- what cannot be exported ----------------------------------------------------- */

static void expect_export_error(lb_model *m, lb_dtype type, const char *path, const char *a, const char *b) {
    lb_tokenizer *bt = lb_tokenizer_byte();
    assert_int_not_equal(lb_gguf_export(m, bt, NULL, type, path), LB_OK);
    if (!strstr(lb_errmsg(), a) || (b && !strstr(lb_errmsg(), b))) fail_msg("unexpected message: %s", lb_errmsg());
    print_message("refused: %s\n", lb_errmsg());
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
    lb_tokenizer_free(bt);
}

static void test_refusals(void **state) {
    fixture *fx = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/refused.gguf", fx->dir);
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = 256, c.dim = 64, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2, c.ffn_dim = 64, c.max_seq_len = 8;
    c.sub_norm = 1;
    lb_model *m = lb_model_create(&c, 1);
    expect_export_error(m, LB_DT_TQ2_0, path, "blk.0.attn_q.weight", "q8_0");
    lb_model_free(m);
    c.ffn_act = LB_FFN_RELU2;
    m = lb_model_create(&c, 1);
    expect_export_error(m, LB_DT_F32, path, "SwiGLU", "relu2");
    lb_model_free(m);
    c.ffn_act = LB_FFN_SWIGLU, c.norm = LB_NORM_LAYER;
    m = lb_model_create(&c, 1);
    expect_export_error(m, LB_DT_F32, path, "RMSNorm", NULL);
    lb_model_free(m);
    c.norm = LB_NORM_RMS, c.tie_embeddings = 0;
    m = lb_model_create(&c, 1);
    expect_export_error(m, LB_DT_F32, path, "ties", NULL);
    lb_model_free(m);
    c.tie_embeddings = 1, c.vocab_size = 300; /* a vocabulary of 300 rows, a tokenizer of 256 */
    m = lb_model_create(&c, 1);
    expect_export_error(m, LB_DT_F32, path, "300", "256");
    lb_model_free(m);
}

/* --- tokenizers ---------------------------------------------------------------- */

static lb_model *model_for(const lb_tokenizer *tok) {
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = tok->vocab_size, c.dim = 32, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2, c.ffn_dim = 32;
    c.max_seq_len = 8;
    lb_model *m = lb_model_create(&c, 2);
    assert_non_null(m);
    return m;
}

static void round_trip_tokenizer(const fixture *fx, const lb_tokenizer *tok, const char *name, const char *model,
                                 const char *pre, const char *text) {
    char path[400];
    snprintf(path, sizeof path, "%s/tok_%s.gguf", fx->dir, name);
    lb_model *m = model_for(tok);
    if (lb_gguf_export(m, tok, NULL, LB_DT_F32, path) != LB_OK) fail_msg("%s: %s", name, lb_errmsg());
    lb_gguf *g;
    assert_int_equal(lb_gguf_open(path, &g), LB_OK);
    lb_gguf_str s;
    assert_int_equal(lb_gguf_get_str(g, "tokenizer.ggml.model", &s), LB_OK);
    assert_true(s.len == strlen(model) && !memcmp(s.s, model, s.len));
    if (pre) {
        assert_int_equal(lb_gguf_get_str(g, "tokenizer.ggml.pre", &s), LB_OK);
        assert_true(s.len == strlen(pre) && !memcmp(s.s, pre, s.len));
    }
    lb_gguf_close(g);
    lb_config cfg;
    lb_tokenizer *back;
    lb_model *r;
    if (lb_gguf_model_load(path, &cfg, NULL, &back, &r) != LB_OK) fail_msg("%s: %s", name, lb_errmsg());
    lb_ids a = {0}, b = {0};
    assert_int_equal(lb_tokenizer_encode_append(tok, text, strlen(text), 0, &a), LB_OK);
    assert_int_equal(lb_tokenizer_encode_append(back, text, strlen(text), 0, &b), LB_OK);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
    lb_ids_free(&a);
    lb_ids_free(&b);
    lb_tokenizer_free(back);
    lb_model_free(r);
    lb_model_free(m);
}

static void test_tokenizers(void **state) {
    fixture *fx = *state;
    static const char text[] = "the cat sat on the mat; the dog ate the hat. über \xff caf\xc3\xa9";
    lb_tokenizer *t = lb_tokenizer_byte();
    round_trip_tokenizer(fx, t, "byte", "gpt2", "gpt-2", text);
    lb_tokenizer_free(t);
    t = lb_tokenizer_build_char(text, strlen(text));
    lb_model *cm = model_for(t);
    char path[400];
    snprintf(path, sizeof path, "%s/tok_char.gguf", fx->dir);
    assert_int_not_equal(lb_gguf_export(cm, t, NULL, LB_DT_F32, path), LB_OK);
    if (!strstr(lb_errmsg(), "char tokenizer")) fail_msg("%s", lb_errmsg());
    print_message("refused: %s\n", lb_errmsg());
    lb_model_free(cm);
    lb_tokenizer_free(t);
    lb_corpus corpus = {0};
    assert_int_equal(lb_corpus_load_path(&corpus, fx->run ? fx->run->corpus : fx->t.cfg.data.path), LB_OK);
    t = lb_tokenizer_train_bpe(&corpus, 320);
    assert_non_null(t);
    round_trip_tokenizer(fx, t, "bpe", "gpt2", "gpt-2", text);
    /* its merges, in rank order, as "left right" */
    snprintf(path, sizeof path, "%s/tok_bpe.gguf", fx->dir);
    lb_gguf *g;
    assert_int_equal(lb_gguf_open(path, &g), LB_OK);
    const lb_gguf_value *merges;
    assert_int_equal(lb_gguf_get_array(g, "tokenizer.ggml.merges", LB_GGUF_STRING, &merges), LB_OK);
    assert_int_equal(merges->n, 320 - 257);
    assert_non_null(memchr(merges->strs[0].s, ' ', merges->strs[0].len));
    lb_gguf_close(g);
    lb_tokenizer_free(t);
    lb_corpus_free(&corpus);

    /* a pipeline llama.cpp would need another pre-tokenizer name for */
    static const char metaspace[] =
        "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
        "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"always\",\"split\":true},"
        "\"post_processor\":null,\"decoder\":null,"
        "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
        "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
        "\"vocab\":{\"a\":0,\"b\":1,\"\\u2581\":2,\"ab\":3},\"merges\":[\"a b\"]}}";
    t = lb_tokenizer_from_json(metaspace, strlen(metaspace), "metaspace.json", LB_TOKENIZER_HF);
    if (!t) fail_msg("%s", lb_errmsg());
    lb_model *m = model_for(t);
    snprintf(path, sizeof path, "%s/tok_metaspace.gguf", fx->dir);
    assert_int_not_equal(lb_gguf_export(m, t, NULL, LB_DT_F32, path), LB_OK);
    if (!strstr(lb_errmsg(), "tokenizer.ggml.pre") || !strstr(lb_errmsg(), "Metaspace")) fail_msg("%s", lb_errmsg());
    print_message("refused: %s\n", lb_errmsg());
    lb_model_free(m);
    lb_tokenizer_free(t);
}

/* --- broken files ---------------------------------------------------------------- */

/* Unaligned little-endian fields of a file's bytes. */
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void set_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void set_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Offset of the value of metadata key `key` (after its type id) in a GGUF file's bytes. */
static size_t value_offset(const uint8_t *p, size_t n, const char *key) {
    size_t len = strlen(key);
    for (size_t i = 8; i + len + 4 <= n; i++)
        if (!memcmp(p + i, key, len) && get_u64(p + i - 8) == len) return i + len + 4;
    fail_msg("key %s not found", key);
    return 0;
}

static void expect_load_error(const fixture *fx, const uint8_t *p, size_t n, const char *what, const char *needle) {
    char path[400];
    snprintf(path, sizeof path, "%s/broken.gguf", fx->dir);
    tu_write_file(path, p, n);
    lb_config cfg;
    lb_tokenizer *tok = (lb_tokenizer *)1;
    lb_model *m = (lb_model *)1;
    lb_status s = lb_gguf_model_load(path, &cfg, NULL, &tok, &m);
    if (s == LB_OK) fail_msg("%s: loaded", what);
    assert_null(tok);
    assert_null(m);
    if (!strstr(lb_errmsg(), "broken.gguf") || (needle && !strstr(lb_errmsg(), needle)))
        fail_msg("%s: unexpected message: %s", what, lb_errmsg());
    print_message("%s: %s\n", what, lb_errmsg());
}

static void test_broken_files(void **state) {
    fixture *fx = *state;
    char path[400];
    export_path(fx, LB_DT_TQ2_0, path, sizeof path);
    size_t n;
    uint8_t *orig = tu_read_file(path, &n);
    uint8_t *p = malloc(n);

    expect_load_error(fx, orig, n / 2, "truncated", NULL);
    expect_load_error(fx, orig, 20, "header only", NULL);

    memcpy(p, orig, n);
    set_u64(p + 8, UINT64_C(1) << 60); /* tensor count */
    expect_load_error(fx, p, n, "absurd tensor count", NULL);

    memcpy(p, orig, n);
    set_u64(p + 16, UINT64_C(1) << 40); /* key-value count */
    expect_load_error(fx, p, n, "absurd key count", NULL);

    memcpy(p, orig, n);
    set_u32(p + value_offset(p, n, "bitnet.block_count"), 1000);
    expect_load_error(fx, p, n, "lying block_count", "block_count");

    memcpy(p, orig, n);
    set_u32(p + value_offset(p, n, "bitnet.block_count"), 0xFFFFFFFFu);
    expect_load_error(fx, p, n, "absurd block_count", "block_count");

    memcpy(p, orig, n);
    set_u32(p + value_offset(p, n, "bitnet.embedding_length"), 1u << 30);
    expect_load_error(fx, p, n, "absurd embedding_length", "embedding_length");

    memcpy(p, orig, n);
    set_u32(p + value_offset(p, n, "bitnet.feed_forward_length"), 512);
    expect_load_error(fx, p, n, "lying feed_forward_length", "shape");

    memcpy(p, orig, n);
    set_u32(p + value_offset(p, n, "bitnet.attention.head_count"), 3);
    expect_load_error(fx, p, n, "head count not dividing the width", "head_count");

    /* a tensor's data offset past the end: the last tensor info's offset field */
    memcpy(p, orig, n);
    const char *last = "output_norm.weight";
    size_t len = strlen(last), off = 0;
    for (size_t i = 8; i + len <= n; i++)
        if (!memcmp(p + i, last, len) && get_u64(p + i - 8) == len) off = i + len;
    assert_true(off > 0);
    uint32_t nd;
    memcpy(&nd, p + off, 4);
    set_u64(p + off + 4 + 8 * nd + 4, (uint64_t)n * 4); /* after n_dims, dims, type */
    expect_load_error(fx, p, n, "offset past the end", NULL);

    memcpy(p, orig, n);
    uint8_t *cfgval = p + value_offset(p, n, "lowbit.config") + 8;
    memcpy(cfgval, "model: [", 8);
    expect_load_error(fx, p, n, "broken lowbit.config", "lowbit.config");
    free(p);
    free(orig);
}

/* --- the command line ---------------------------------------------------------- */

static double cli_loss(const char *cmd) {
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512];
    double loss = NAN;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "validation loss ");
        if (s) loss = atof(s + 16);
    }
    assert_int_equal(pclose(f), 0);
    return loss;
}

/* lowbit export then lowbit eval model.gguf: the loss of the checkpoint. */
static void test_cli(void **state) {
    fixture *fx = *state;
    const char *bin = getenv("LOWBIT_BINARY_DIR");
    if (!bin) skip();
    char cmd[2048], out[400];
    snprintf(out, sizeof out, "%s/cli.gguf", fx->dir);
    snprintf(cmd, sizeof cmd, "'%s/lowbit' export '%s' -o '%s' --type tq1_0 >/dev/null", bin, fx->ckpt, out);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "'%s/lowbit' eval '%s' --batches 2", bin, fx->ckpt);
    double a = cli_loss(cmd);
    snprintf(cmd, sizeof cmd, "'%s/lowbit' eval '%s' --batches 2", bin, out);
    double b = cli_loss(cmd);
    print_message("lowbit eval: checkpoint %.4f, tq1_0 export %.4f\n", a, b);
    assert_true(fabs(a - b) <= 2e-3);
    snprintf(cmd, sizeof cmd, "'%s/lowbit' export '%s' -o '%s/x.gguf' --type q5_k 2>&1 | grep -q 'tq2_0|tq1_0'", bin,
             fx->ckpt, fx->dir);
    assert_int_equal(system(cmd), 0);
    /* --zstd: a standard zstd frame of the file */
    snprintf(cmd, sizeof cmd,
             "'%s/lowbit' export '%s' -o '%s/z.gguf' --type tq2_0 --zstd 3 >/dev/null && zstd -q -d -c '%s/z.gguf.zst' | "
             "cmp - '%s/z.gguf'", bin, fx->ckpt, fx->dir, fx->dir, fx->dir);
    assert_int_equal(system(cmd), 0);
    /* --report: every type of every tensor, and the totals */
    snprintf(cmd, sizeof cmd, "'%s/lowbit' export --report '%s'", bin, fx->ckpt);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[512];
    int rows = 0, totals = 0;
    double h_tq2 = 0, bpw_tq2 = 0, z_tq2 = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64], type[16];
        double n, bpw, h, z3, z19;
        if (sscanf(line, "%63s %15s %lf %lf %lf %lf %lf", name, type, &n, &bpw, &h, &z3, &z19) == 7) {
            rows++;
            if (!strcmp(name, "tq2_0")) { /* the totals row: type, bytes, bpw, H, zstd-3 bytes, its bpw, ... */
                totals++;
                bpw_tq2 = n, h_tq2 = bpw, z_tq2 = z3;
                assert_true(h_tq2 < bpw_tq2 && z_tq2 < bpw_tq2);
            }
            if (!strcmp(name, "blk.0.attn_q.weight") && !strcmp(type, "tq2_0")) {
                assert_true(fabs(bpw - 66.0 * 8 / 256) < 1e-3);   /* 2.0625 */
                assert_true(h > 1.0 && h <= log2(3.0) + 1e-9); /* ternary codes */
                assert_true(z19 < bpw);
            }
        }
    }
    assert_int_equal(pclose(f), 0);
    assert_int_equal(totals, 1);
    assert_true(rows > 6 * 3);
    print_message("report: tq2_0 in total %.3f bpw, entropy of its codes %.3f bits, after zstd-3 %.3f bpw\n", bpw_tq2,
                  h_tq2, z_tq2);
}

/* --- llama.cpp ---------------------------------------------------------------- */

static int have_llama(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/scripts/llama/node_modules/node-llama-cpp/package.json", tu_source_dir());
    return access(p, R_OK) == 0 && system("node --version >/dev/null 2>&1") == 0;
}

/* lowbit's log-probabilities [T, V] of one window from the checkpoint's forward pass. */
static void lowbit_logp(lb_model *m, const int *ids, int T, float *logp) {
    lb_graph g;
    assert_int_equal(lb_graph_init(&g, 0), LB_OK);
    lb_graph_set_grad(&g, 0);
    lb_tensor *logits = lb_model_forward(m, &g, ids, 1, T, NULL, NULL);
    if (!logits) fail_msg("%s", lb_errmsg());
    int V = m->cfg.vocab_size;
    for (int t = 0; t < T; t++) {
        const float *z = logits->data + (size_t)t * V;
        double mx = z[0], s = 0.0;
        for (int v = 1; v < V; v++) mx = fmax(mx, z[v]);
        for (int v = 0; v < V; v++) s += exp(z[v] - mx);
        for (int v = 0; v < V; v++) logp[(size_t)t * V + v] = (float)(z[v] - mx - log(s));
    }
    lb_graph_free(&g);
}

/* Every export of the model, run by llama.cpp (node-llama-cpp's prebuilt build) on windows of
   validation text: next-token log-probabilities, greedy tokens and perplexity against lowbit's
   forward pass of the checkpoint. */
static void test_llama_cpp_runs_the_exports(void **state) {
    fixture *fx = *state;
    tu_require_dependency("node-llama-cpp (scripts/llama)", have_llama(),
                          "cd scripts/llama && npm ci");
    lb_model *m = fx->t.model;
    int V = m->cfg.vocab_size, T = m->cfg.max_seq_len < 32 ? m->cfg.max_seq_len : 32, W = 4;
    if ((size_t)W * T > fx->t.data.n_val) fail_msg("validation split too short");
    char req[400];
    snprintf(req, sizeof req, "%s/request.json", fx->dir);
    json_t *windows = json_array();
    float *ref = malloc((size_t)W * T * V * sizeof *ref);
    for (int w = 0; w < W; w++) {
        const int *ids = fx->t.data.val + (size_t)w * T;
        json_t *a = json_array();
        for (int t = 0; t < T; t++) json_array_append_new(a, json_integer(ids[t]));
        json_array_append_new(windows, a);
        lowbit_logp(m, ids, T, ref + (size_t)w * T * V);
    }
    json_t *r = json_pack("{s:o, s:b, s:i, s:[s]}", "windows", windows, "full", 1, "context", T, "texts",
                          "Hello world, a test.");
    assert_int_equal(json_dump_file(r, req, 0), 0);
    json_decref(r);
    /* the text's tokens: llama.cpp's tokenizer against lowbit's */
    lb_ids want = {0};
    assert_int_equal(lb_tokenizer_encode_append(fx->t.tok, "Hello world, a test.", 20, 0, &want), LB_OK);

    /* all exports in one llama.cpp process */
    char cmd[4096], outp[420];
    snprintf(outp, sizeof outp, "%s/llama.json", fx->dir);
    int at = snprintf(cmd, sizeof cmd, "node '%s/scripts/llama/llama_eval.mjs' '%s'", tu_source_dir(), req);
    for (int k = 0; k < N_TYPES; k++) {
        char path[400];
        export_path(fx, TYPES[k], path, sizeof path);
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, " '%s'", path);
    }
    snprintf(cmd + at, sizeof cmd - (size_t)at, " > '%s'", outp);
    if (system(cmd) != 0) fail_msg("llama.cpp did not run the exports (%s)", cmd);
    json_error_t err;
    json_t *all = json_load_file(outp, 0, &err);
    if (!all) fail_msg("%s: %s", outp, err.text);
    assert_int_equal(json_array_size(all), N_TYPES);
    print_message("type    arch    max|Δlogp| (p>1e-4)  mean|Δlogp_next|  greedy agree  ppl llama.cpp  ppl lowbit\n");
    for (int k = 0; k < N_TYPES; k++) {
        json_t *res = json_array_get(all, (size_t)k);
        if (k == 0)
            print_message("llama.cpp %s (%s)\n", json_string_value(json_object_get(json_object_get(res, "llama_cpp"), "release")),
                          json_string_value(json_object_get(json_object_get(res, "llama_cpp"), "repo")));
        assert_int_equal(json_integer_value(json_object_get(res, "n_vocab")), V);
        json_t *toks = json_array_get(json_object_get(res, "tokens"), 0);
        assert_int_equal(json_array_size(toks), want.n);
        for (size_t i = 0; i < want.n; i++) assert_int_equal(json_integer_value(json_array_get(toks, i)), want.v[i]);
        double max_d = 0.0, sum_d = 0.0, nll_l = 0.0, nll_r = 0.0;
        int agree = 0, n_next = 0;
        for (int w = 0; w < W; w++) {
            json_t *win = json_array_get(json_object_get(res, "windows"), (size_t)w);
            json_t *full = json_object_get(win, "logp"), *argmax = json_object_get(win, "argmax");
            const int *ids = fx->t.data.val + (size_t)w * T;
            for (int t = 0; t < T; t++) {
                const float *lp = ref + ((size_t)w * T + t) * V;
                json_t *row = json_array_get(full, (size_t)t);
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (lp[v] > lp[best]) best = v;
                agree += json_integer_value(json_array_get(argmax, (size_t)t)) == best;
                for (int v = 0; v < V; v++) {
                    json_t *x = json_array_get(row, (size_t)v);
                    if (json_is_number(x) && lp[v] > -9.2f) /* p > 1e-4 */
                        max_d = fmax(max_d, fabs(json_number_value(x) - lp[v]));
                }
                if (t + 1 < T) {
                    json_t *x = json_array_get(row, (size_t)ids[t + 1]);
                    double l = json_is_number(x) ? json_number_value(x) : -1e9;
                    sum_d += fabs(l - lp[ids[t + 1]]);
                    nll_l -= l;
                    nll_r -= lp[ids[t + 1]];
                    n_next++;
                }
            }
        }
        double ppl_l = exp(nll_l / n_next), ppl_r = exp(nll_r / n_next);
        print_message("%-7s %-7s %19.2e  %16.2e  %6d/%-5d  %13.4f  %10.4f\n", lb_dtype_info(TYPES[k])->name,
                      json_string_value(json_object_get(res, "arch")), max_d, sum_d / n_next, agree, W * T, ppl_l, ppl_r);
        /* what the types allow: llama.cpp quantizes its inputs per block of 256 (TQ: Q8_K) or 32
           (q8_0, q4_0: Q8_0) and f16/f32 not at all, where lowbit quantizes per token */
        static const double tol_ppl[] = {[LB_DT_TQ2_0] = 0.01, [LB_DT_TQ1_0] = 0.01, [LB_DT_Q8_0] = 0.03,
                                         [LB_DT_Q4_0] = 0.25, [LB_DT_F16] = 0.03, [LB_DT_F32] = 0.03};
        assert_true(fabs(ppl_l / ppl_r - 1.0) <= tol_ppl[TYPES[k]]);
        assert_true(agree >= (TYPES[k] == LB_DT_Q4_0 ? 0.8 : 0.9) * W * T);
    }
    json_decref(all);
    lb_ids_free(&want);
    free(ref);
}

/* llama.cpp tokenizes text with the byte and bpe vocabularies of lowbit's exports (gpt2,
   pre-tokenizer gpt-2) as lowbit does. */
static void test_llama_cpp_tokenizes_like_lowbit(void **state) {
    fixture *fx = *state;
    tu_require_dependency("node-llama-cpp (scripts/llama)", have_llama(), "cd scripts/llama && npm ci");
    static const char *const texts[] = {"the cat sat on the mat; the dog ate the hat.",
                                        "  two  spaces, tabs\tand\nnew lines: \xc3\xbc ber caf\xc3\xa9!",
                                        "dog's 123 cats' 4567"};
    enum { N_TEXTS = 3 };
    lb_corpus corpus = {0};
    assert_int_equal(lb_corpus_load_path(&corpus, fx->run ? fx->run->corpus : fx->t.cfg.data.path), LB_OK);
    lb_tokenizer *toks[2] = {lb_tokenizer_byte(), lb_tokenizer_train_bpe(&corpus, 400)};
    lb_corpus_free(&corpus);
    char req[400], out[400], cmd[2048];
    snprintf(req, sizeof req, "%s/texts.json", fx->dir);
    snprintf(out, sizeof out, "%s/texts_out.json", fx->dir);
    json_t *r = json_pack("{s:[sss]}", "texts", texts[0], texts[1], texts[2]);
    assert_int_equal(json_dump_file(r, req, 0), 0);
    json_decref(r);
    int at = snprintf(cmd, sizeof cmd, "node '%s/scripts/llama/llama_eval.mjs' '%s'", tu_source_dir(), req);
    for (int k = 0; k < 2; k++) {
        assert_non_null(toks[k]);
        char path[400];
        snprintf(path, sizeof path, "%s/llama_tok%d.gguf", fx->dir, k);
        lb_model *m = model_for(toks[k]);
        if (lb_gguf_export(m, toks[k], NULL, LB_DT_F32, path) != LB_OK) fail_msg("%s", lb_errmsg());
        lb_model_free(m);
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, " '%s'", path);
    }
    snprintf(cmd + at, sizeof cmd - (size_t)at, " > '%s'", out);
    if (system(cmd) != 0) fail_msg("llama.cpp did not run (%s)", cmd);
    json_error_t err;
    json_t *res = json_load_file(out, 0, &err);
    if (!res) fail_msg("%s: %s", out, err.text);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N_TEXTS; i++) {
            lb_ids want = {0};
            assert_int_equal(lb_tokenizer_encode_append(toks[k], texts[i], strlen(texts[i]), 0, &want), LB_OK);
            json_t *got = json_array_get(json_object_get(json_array_get(res, (size_t)k), "tokens"), (size_t)i);
            int same = json_array_size(got) == want.n;
            for (size_t j = 0; same && j < want.n; j++) same = json_integer_value(json_array_get(got, j)) == want.v[j];
            if (!same) fail_msg("%s tokenizer, text %d: llama.cpp gives %zu tokens, lowbit %zu",
                                lb_tokenizer_kind_name(toks[k]->kind), i, json_array_size(got), want.n);
            lb_ids_free(&want);
        }
    print_message("llama.cpp tokenizes %d texts as lowbit does with the byte (%s) and bpe (%s) exports\n", N_TEXTS,
                  json_string_value(json_object_get(json_array_get(res, 0), "vocabulary")),
                  json_string_value(json_object_get(json_array_get(res, 1), "vocabulary")));
    json_decref(res);
    lb_tokenizer_free(toks[0]);
    lb_tokenizer_free(toks[1]);
}

/* The `llama` architecture in llama.cpp: an fp32 model without SubLN whose attention is made
   sharp (Q and K scaled up), so that a wrong RoPE pairing would show in every logit. f32 has
   nothing to round and no input quantizer: llama.cpp's distribution must match closely. */
static void test_llama_cpp_runs_the_llama_arch(void **state) {
    fixture *fx = *state;
    tu_require_dependency("node-llama-cpp (scripts/llama)", have_llama(), "cd scripts/llama && npm ci");
    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = 256, c.dim = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.ffn_dim = 128;
    c.max_seq_len = 16, c.tie_embeddings = 0, c.init_std = 0.1f;
    lb_model *m = lb_model_create(&c, 11);
    assert_non_null(m);
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].role == LB_ROLE_ATTN_Q || m->params[i].role == LB_ROLE_ATTN_K)
            for (size_t j = 0; j < m->params[i].t->n; j++) m->params[i].t->data[j] *= 4.0f;
    char path[400], req[400], out[400], cmd[2048];
    snprintf(path, sizeof path, "%s/llama_arch.gguf", fx->dir);
    snprintf(req, sizeof req, "%s/llama_arch.json", fx->dir);
    snprintf(out, sizeof out, "%s/llama_arch_out.json", fx->dir);
    lb_tokenizer *bt = lb_tokenizer_byte();
    assert_int_equal(lb_gguf_export(m, bt, NULL, LB_DT_F32, path), LB_OK);
    lb_tokenizer_free(bt);
    int T = 16, ids[16];
    json_t *win = json_array();
    for (int t = 0; t < T; t++) json_array_append_new(win, json_integer(ids[t] = (t * 37 + 11) % 256));
    json_t *r = json_pack("{s:[o], s:b}", "windows", win, "full", 1);
    assert_int_equal(json_dump_file(r, req, 0), 0);
    json_decref(r);
    snprintf(cmd, sizeof cmd, "node '%s/scripts/llama/llama_eval.mjs' '%s' '%s' > '%s'", tu_source_dir(), req, path, out);
    if (system(cmd) != 0) fail_msg("llama.cpp did not run (%s)", cmd);
    json_error_t err;
    json_t *res = json_load_file(out, 0, &err);
    if (!res) fail_msg("%s: %s", out, err.text);
    json_t *one = json_array_get(res, 0);
    assert_string_equal(json_string_value(json_object_get(one, "arch")), "llama");
    float *lp = malloc((size_t)T * 256 * sizeof *lp);
    lowbit_logp(m, ids, T, lp);
    json_t *full = json_object_get(json_array_get(json_object_get(one, "windows"), 0), "logp");
    double max_d = 0.0, spread = 0.0;
    for (int t = 0; t < T; t++)
        for (int v = 0; v < 256; v++) {
            json_t *x = json_array_get(json_array_get(full, (size_t)t), (size_t)v);
            if (!json_is_number(x)) fail_msg("position %d, id %d: no probability", t, v);
            max_d = fmax(max_d, fabs(json_number_value(x) - lp[(size_t)t * 256 + v]));
            spread = fmax(spread, fabs(lp[(size_t)t * 256 + v] - lp[v]));
        }
    print_message("llama arch, f32: max |Δlogp| %.2e between llama.cpp and lowbit (logp varies by %.2f across "
                  "positions)\n", max_d, spread);
    assert_true(spread > 0.5); /* the positions matter, so the pairing is tested */
    assert_true(max_d < 1e-3);
    free(lp);
    json_decref(res);
    lb_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ternary_codes_are_exact),
        cmocka_unit_test(test_read_back),
        cmocka_unit_test(test_eval_matches_checkpoint),
        cmocka_unit_test(test_llama_arch_permutes_q_and_k),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_tokenizers),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_llama_cpp_runs_the_exports),
        cmocka_unit_test(test_llama_cpp_tokenizes_like_lowbit),
        cmocka_unit_test(test_llama_cpp_runs_the_llama_arch),
    };
    return tu_run_group_tests(tests, setup, teardown);
}

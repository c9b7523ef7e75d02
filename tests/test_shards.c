/* Tests of token shards (src/data/shards.h, prepare.h): the llm.c and
 * nanoGPT layouts as written and as checked on opening, lb_data_prepare's
 * output against lb_dataset_build's ids and across thread counts, batches
 * over several pieces, and training from shards against training from the
 * same corpus in memory (bit-identical losses, bit-exact resume). */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/batch.h"
#include "data/corpus.h"
#include "data/prepare.h"
#include "data/shards.h"
#include "testutil.h"
#include "testutil_io.h"
#include "trainer/trainer.h"

/* ---- helpers --------------------------------------------------------------- */

/* An llm.c header with the given fields, then `n` tokens of `width` bytes. */
static void write_llmc(const char *path, int32_t magic, int32_t version, int32_t count, const void *tokens, size_t n,
                       size_t width) {
    size_t size = LB_SHARD_HEADER_BYTES + n * width;
    uint8_t *buf = calloc(1, size);
    int32_t h[3] = {magic, version, count};
    memcpy(buf, h, sizeof h);
    if (n) memcpy(buf + LB_SHARD_HEADER_BYTES, tokens, n * width);
    tu_write_file(path, buf, size);
    free(buf);
}

static lb_status open_one(const char *path, lb_shard_layout layout, int vocab) {
    lb_shard s;
    lb_status st = lb_shard_open(&s, path, layout, vocab);
    lb_shard_close(&s);
    return st;
}

/* Opening fails with LB_EFORMAT and a message naming the shard and `what`. */
static void expect_bad(const char *path, lb_shard_layout layout, int vocab, const char *what) {
    assert_int_equal(open_one(path, layout, vocab), LB_EFORMAT);
    const char *msg = lb_errmsg();
    if (!strstr(msg, path) || !strstr(msg, what)) fail_msg("message '%s' should name '%s' and '%s'", msg, path, what);
}

/* A small corpus directory: generated sentences in three files, one of them
 * long enough to be cut into many chunks, and a binary file to be skipped. */
static void make_corpus(const char *dir, const tu_run_dir *gen) {
    size_t n;
    uint8_t *text = tu_read_file(gen->corpus, &n);
    char path[512];
    snprintf(path, sizeof path, "%s/a.txt", dir);
    tu_write_file(path, text, n);
    snprintf(path, sizeof path, "%s/b.txt", dir);
    tu_write_file(path, "short file\nwith two lines\n", 26);
    snprintf(path, sizeof path, "%s/c.txt", dir);
    tu_write_file(path, text + n / 3, n / 2); /* starts mid-line, ends mid-line */
    snprintf(path, sizeof path, "%s/d.bin", dir);
    tu_write_file(path, "bin\0ary", 7);
    free(text);
}

/* ---- layouts ------------------------------------------------------------------ */

static void test_writer_layout_and_round_trip(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "shards_layout");
    int ids[1000];
    for (int i = 0; i < 1000; i++) ids[i] = (i * 7919) % 65536;

    /* uint16: llm.c's "gpt-2" header */
    snprintf(path, sizeof path, "%s/u16.bin", dir);
    lb_shard_writer *w = malloc(sizeof *w);
    assert_int_equal(lb_shard_writer_open(w, path, LB_SHARDS_LLMC, LB_TOKENS_U16), LB_OK);
    assert_int_equal(lb_shard_writer_append(w, ids, 600), LB_OK);
    assert_int_equal(lb_shard_writer_append(w, ids + 600, 400), LB_OK);
    assert_int_equal(lb_shard_writer_close(w), LB_OK);
    size_t n;
    uint8_t *bytes = tu_read_file(path, &n);
    assert_int_equal(n, 1024 + 2 * 1000);
    int32_t h[256];
    memcpy(h, bytes, sizeof h);
    assert_int_equal(h[0], 20240520);
    assert_int_equal(h[1], 1);
    assert_int_equal(h[2], 1000);
    for (int i = 3; i < 256; i++) assert_int_equal(h[i], 0);
    for (int i = 0; i < 1000; i++) assert_int_equal(bytes[1024 + 2 * i] | bytes[1024 + 2 * i + 1] << 8, ids[i]);
    free(bytes);
    lb_shard s;
    assert_int_equal(lb_shard_open(&s, path, LB_SHARDS_LLMC, 65536), LB_OK);
    int back[1000];
    lb_tokens t = {.pieces = NULL, .n_pieces = 1, .one = s.piece, .n = s.piece.n};
    lb_tokens_read(&t, 0, 1000, back);
    assert_memory_equal(back, ids, sizeof ids);
    lb_shard_close(&s);

    /* uint32 for a vocabulary over 65536: llm.c's "llama-3" header */
    assert_int_equal(lb_shard_width_for(65536), LB_TOKENS_U16);
    assert_int_equal(lb_shard_width_for(65537), LB_TOKENS_U32);
    int big[5] = {0, 65535, 65536, 70000, 123};
    snprintf(path, sizeof path, "%s/u32.bin", dir);
    assert_int_equal(lb_shard_writer_open(w, path, LB_SHARDS_LLMC, LB_TOKENS_U32), LB_OK);
    assert_int_equal(lb_shard_writer_append(w, big, 5), LB_OK);
    assert_int_equal(lb_shard_writer_close(w), LB_OK);
    bytes = tu_read_file(path, &n);
    assert_int_equal(n, 1024 + 4 * 5);
    memcpy(h, bytes, 12);
    assert_int_equal(h[0], 20240801);
    assert_int_equal(h[1], 7);
    assert_int_equal(h[2], 5);
    free(bytes);
    assert_int_equal(lb_shard_open(&s, path, LB_SHARDS_LLMC, 70001), LB_OK);
    t.one = s.piece;
    t.n = s.piece.n;
    lb_tokens_read(&t, 0, 5, back);
    assert_memory_equal(back, big, sizeof big);
    lb_shard_close(&s);
    expect_bad(path, LB_SHARDS_LLMC, 70000, "id 70000");

    /* ids that do not fit */
    snprintf(path, sizeof path, "%s/x.bin", dir);
    assert_int_equal(lb_shard_writer_open(w, path, LB_SHARDS_LLMC, LB_TOKENS_U16), LB_OK);
    assert_int_equal(lb_shard_writer_append(w, big, 3), LB_EINVAL);
    lb_shard_writer_abort(w);
    assert_int_equal(access(path, F_OK), -1); /* nothing left behind */
    assert_int_equal(lb_shard_writer_open(w, path, LB_SHARDS_NANOGPT, LB_TOKENS_U32), LB_EINVAL);
    lb_shard_writer_abort(w);
    free(w);
    tu_rmdir(dir);
}

static void test_bad_headers_are_named_errors(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "shards_bad");
    uint16_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    snprintf(path, sizeof path, "%s/s.bin", dir);

    write_llmc(path, 20240520, 1, 8, tok, 8, 2);
    assert_int_equal(open_one(path, LB_SHARDS_LLMC, 256), LB_OK);
    write_llmc(path, 20240521, 1, 8, tok, 8, 2);
    expect_bad(path, LB_SHARDS_LLMC, 256, "magic 20240521 at offset 0");
    write_llmc(path, 20240520, 2, 8, tok, 8, 2);
    expect_bad(path, LB_SHARDS_LLMC, 256, "version 2 at offset 4");
    write_llmc(path, 20240801, 1, 8, tok, 4, 4); /* the uint32 magic needs version 7 */
    expect_bad(path, LB_SHARDS_LLMC, 256, "version 1 at offset 4");
    write_llmc(path, 20240520, 1, 9, tok, 8, 2); /* a count larger than the file */
    expect_bad(path, LB_SHARDS_LLMC, 256, "truncated");
    write_llmc(path, 20240520, 1, 7, tok, 8, 2); /* a count smaller than the file */
    expect_bad(path, LB_SHARDS_LLMC, 256, "after the 7 uint16 tokens");
    write_llmc(path, 20240520, 1, -1, tok, 8, 2);
    expect_bad(path, LB_SHARDS_LLMC, 256, "token count -1 at offset 8");
    tu_write_file(path, tok, 16); /* shorter than a header */
    expect_bad(path, LB_SHARDS_LLMC, 256, "shorter than the 1024-byte");
    write_llmc(path, 20240520, 1, 8, tok, 8, 2);
    expect_bad(path, LB_SHARDS_LLMC, 5, "token 4 (byte offset 1032) is id 5"); /* ids ≥ vocab */

    /* nanoGPT: raw uint16 */
    tu_write_file(path, tok, 16);
    assert_int_equal(open_one(path, LB_SHARDS_NANOGPT, 256), LB_OK);
    expect_bad(path, LB_SHARDS_NANOGPT, 8, "token 7 (byte offset 14) is id 8");
    tu_write_file(path, tok, 15);
    expect_bad(path, LB_SHARDS_NANOGPT, 256, "even size");

    /* a missing file */
    snprintf(path, sizeof path, "%s/none.bin", dir);
    assert_int_equal(open_one(path, LB_SHARDS_LLMC, 256), LB_EIO);
    assert_non_null(strstr(lb_errmsg(), "none.bin"));
    tu_rmdir(dir);
}

/* ---- batches over pieces ----------------------------------------------------- */

static void test_batches_over_pieces_equal_one_array(void **state) {
    (void)state;
    enum { N = 500, B = 3, T = 16 };
    int all[N];
    uint16_t u16[N];
    uint32_t u32[N];
    for (int i = 0; i < N; i++) all[i] = u16[i] = u32[i] = (uint32_t)((i * 31) % 1000);
    /* pieces of several widths and sizes, one empty, one shorter than a window */
    lb_token_piece pieces[5] = {{u16, 100, LB_TOKENS_U16},
                                {u32 + 100, 5, LB_TOKENS_U32},
                                {all + 105, 0, LB_TOKENS_INT},
                                {all + 105, 200, LB_TOKENS_INT},
                                {u16 + 305, 195, LB_TOKENS_U16}};
    size_t starts[6] = {0, 100, 105, 105, 305, 500};
    lb_tokens many = {.pieces = pieces, .starts = starts, .n_pieces = 5, .n = N};
    lb_tokens one = lb_tokens_of_ints(all, N);
    int a[T + 1], b[T + 1];
    for (size_t off = 0; off + T + 1 <= N; off++) {
        lb_tokens_read(&many, off, T + 1, a);
        lb_tokens_read(&one, off, T + 1, b);
        assert_memory_equal(a, b, sizeof a);
    }
    lb_batcher x, y;
    assert_int_equal(lb_batcher_init_tokens(&x, &many, B, T, 42), LB_OK);
    assert_int_equal(lb_batcher_init_tokens(&y, &one, B, T, 42), LB_OK);
    int in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    for (int k = 0; k < 50; k++) {
        lb_batcher_next(&x, in1, tg1);
        lb_batcher_next(&y, in2, tg2);
        assert_memory_equal(in1, in2, sizeof in1);
        assert_memory_equal(tg1, tg2, sizeof tg1);
    }
    for (int k = 0; k < 4; k++) {
        assert_int_equal(lb_val_batch_tokens(&many, B, T, k, 4, in1, tg1), LB_OK);
        assert_int_equal(lb_val_batch_tokens(&one, B, T, k, 4, in2, tg2), LB_OK);
        assert_memory_equal(in1, in2, sizeof in1);
        assert_memory_equal(tg1, tg2, sizeof tg1);
    }
}

/* ---- prepare --------------------------------------------------------------------- */

static lb_status prepare(const char *in, const char *out, lb_tokenizer_options tok, int threads,
                         lb_shard_layout layout, uint64_t shard_tokens, size_t chunk_bytes, lb_prepare_result *r) {
    const char *inputs[1] = {in};
    lb_prepare_options o = {.inputs = inputs, .n_inputs = 1, .out_dir = out, .tok = tok, .val_fraction = 0.1,
                            .threads = threads, .layout = layout, .shard_tokens = shard_tokens,
                            .chunk_bytes = chunk_bytes};
    return lb_data_prepare(&o, r);
}

/* The shards of `dir` read back as train and validation ids equal the
 * in-memory dataset of the same corpus and tokenizer. */
static void expect_same_as_dataset(const char *dir, const char *corpus_dir, int expect_multi) {
    lb_shard_data d;
    lb_tokenizer_options none = {LB_TOKENIZER_BYTE, 0, NULL};
    if (lb_shard_data_open(&d, dir, LB_SHARDS_LLMC, &none) != LB_OK) fail_msg("open: %s", lb_errmsg());
    if (expect_multi) assert_true(d.train.n > 1);
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, corpus_dir), LB_OK);
    lb_dataset ds;
    assert_int_equal(lb_dataset_build(&ds, &c, d.tok, 0.1), LB_OK);
    assert_int_equal(d.train.tokens.n, ds.n_train);
    assert_int_equal(d.val.tokens.n, ds.n_val);
    int *ids = malloc((ds.n_train + 1) * sizeof *ids);
    lb_tokens_read(&d.train.tokens, 0, ds.n_train, ids);
    assert_memory_equal(ids, ds.train, ds.n_train * sizeof *ids);
    lb_tokens_read(&d.val.tokens, 0, ds.n_val, ids);
    assert_memory_equal(ids, ds.val, ds.n_val * sizeof *ids);
    free(ids);
    lb_dataset_free(&ds);
    lb_corpus_free(&c);
    lb_shard_data_free(&d);
}

/* File `name` has the same bytes in directories a and b. */
static void expect_same_file(const char *a, const char *b, const char *name) {
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    size_t na, nb;
    uint8_t *x = tu_read_file(pa, &na), *y = tu_read_file(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

static void test_prepare_matches_dataset_and_ignores_threads(void **state) {
    (void)state;
    tu_run_dir *gen = tu_run_dir_new("shards_gen", 60000, 7);
    char corpus[300], out[3][300];
    snprintf(corpus, sizeof corpus, "%s/corpus", gen->dir);
    mkdir(corpus, 0777);
    make_corpus(corpus, gen);
    lb_tokenizer_options kinds[3] = {{LB_TOKENIZER_BYTE, 0, NULL}, {LB_TOKENIZER_CHAR, 0, NULL},
                                     {LB_TOKENIZER_BPE, 300, NULL}};
    for (int k = 0; k < 3; k++) {
        int threads[3] = {1, 2, 3};
        for (int i = 0; i < 3; i++) {
            snprintf(out[i], sizeof out[i], "%s/out_%d_%d", gen->dir, k, i);
            lb_prepare_result r;
            /* chunks of 2000 bytes, shards of 9000 tokens: many of both */
            if (prepare(corpus, out[i], kinds[k], threads[i], LB_SHARDS_LLMC, 9000, 2000, &r) != LB_OK)
                fail_msg("prepare: %s", lb_errmsg());
            assert_int_equal(r.n_docs, 3);
            assert_int_equal(r.n_skipped, 1);
            assert_true(r.n_train_shards > 1);
            if (i > 0) {
                /* byte for byte the same, whatever the thread count */
                DIR *d = opendir(out[0]);
                for (struct dirent *e; (e = readdir(d)) != NULL;) {
                    if (e->d_name[0] != '.') expect_same_file(out[0], out[i], e->d_name);
                }
                closedir(d);
            }
        }
        expect_same_as_dataset(out[0], corpus, 1);
    }
    /* the output directory must be new or empty */
    lb_prepare_result r;
    assert_int_equal(prepare(corpus, out[0], kinds[0], 1, LB_SHARDS_LLMC, 0, 0, &r), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "not empty"));
    tu_run_dir_free(gen);
}

static void test_manifest_and_layouts_when_opening(void **state) {
    (void)state;
    tu_run_dir *gen = tu_run_dir_new("shards_open", 20000, 9);
    char out[300], path[400], raw[300];
    lb_tokenizer_options byte = {LB_TOKENIZER_BYTE, 0, NULL}, chr = {LB_TOKENIZER_CHAR, 0, NULL};
    lb_prepare_result r;
    lb_shard_data d;

    /* nanoGPT layout: train.bin and val.bin, raw uint16 */
    snprintf(out, sizeof out, "%s/nano", gen->dir);
    assert_int_equal(prepare(gen->corpus, out, byte, 2, LB_SHARDS_NANOGPT, 0, 4096, &r), LB_OK);
    snprintf(path, sizeof path, "%s/train.bin", out);
    size_t n;
    uint8_t *bytes = tu_read_file(path, &n);
    assert_int_equal(n, 2 * r.n_train);
    free(bytes);
    assert_int_equal(lb_shard_data_open(&d, out, LB_SHARDS_LLMC, &chr), LB_OK); /* the manifest decides */
    assert_int_equal(d.layout, LB_SHARDS_NANOGPT);
    assert_int_equal(d.tok->kind, LB_TOKENIZER_BYTE);
    assert_int_equal(d.train.tokens.n, r.n_train);
    lb_shard_data_free(&d);

    /* without a manifest: the config's layout and tokenizer; "val" in a name is validation */
    snprintf(raw, sizeof raw, "%s/raw", gen->dir);
    mkdir(raw, 0777);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp '%s/train.bin' '%s/val.bin' '%s/'", out, out, raw);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(lb_shard_data_open(&d, raw, LB_SHARDS_NANOGPT, &byte), LB_OK);
    assert_int_equal(d.train.n, 1);
    assert_int_equal(d.val.n, 1);
    assert_int_equal(d.train.tokens.n, r.n_train);
    assert_int_equal(d.val.tokens.n, r.n_val);
    lb_shard_data_free(&d);
    assert_int_equal(lb_shard_data_open(&d, raw, LB_SHARDS_NANOGPT, &chr), LB_ECONFIG); /* char needs a corpus */
    lb_shard_data_free(&d);
    assert_int_equal(lb_shard_data_open(&d, raw, LB_SHARDS_LLMC, &byte), LB_EFORMAT); /* not llm.c files */
    lb_shard_data_free(&d);

    /* llm.c layout by glob */
    snprintf(out, sizeof out, "%s/llmc", gen->dir);
    assert_int_equal(prepare(gen->corpus, out, byte, 1, LB_SHARDS_LLMC, 5000, 0, &r), LB_OK);
    snprintf(path, sizeof path, "%s/*.bin", out);
    assert_int_equal(lb_shard_data_open(&d, path, LB_SHARDS_LLMC, &byte), LB_OK);
    assert_int_equal(d.train.n, r.n_train_shards);
    assert_int_equal(d.val.n, r.n_val_shards);
    assert_int_equal(d.train.tokens.n, r.n_train);
    lb_shard_data_free(&d);
    snprintf(path, sizeof path, "%s/nothing*.bin", out);
    assert_int_equal(lb_shard_data_open(&d, path, LB_SHARDS_LLMC, &byte), LB_EIO);
    lb_shard_data_free(&d);

    /* a manifest whose count disagrees with a shard */
    snprintf(path, sizeof path, "%s/manifest.json", out);
    bytes = tu_read_file(path, &n);
    char *text = (char *)bytes; /* NUL-terminated by tu_read_file */
    char *at = strstr(text, "\"tokens\": 5000");
    assert_non_null(at);
    at[13] = '1'; /* 5000 → 5001 */
    tu_write_file(path, text, n);
    free(bytes);
    assert_int_equal(lb_shard_data_open(&d, out, LB_SHARDS_LLMC, &byte), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "train_000000.bin"));
    assert_non_null(strstr(lb_errmsg(), "5001"));
    lb_shard_data_free(&d);
    tu_run_dir_free(gen);
}

/* ---- training ------------------------------------------------------------------ */

static void tiny_config(lb_config *c, const char *dir, const char *run) {
    lb_config_defaults(c);
    tu_config_set(c, "model.dim=32");
    tu_config_set(c, "model.n_layers=1");
    tu_config_set(c, "model.n_heads=2");
    tu_config_set(c, "model.n_kv_heads=1");
    tu_config_set(c, "model.ffn_dim=64");
    tu_config_set(c, "model.max_seq_len=16");
    tu_config_set(c, "model.quant.preset=b1.58");
    tu_config_set(c, "data.val_fraction=0.1");
    tu_config_set(c, "train.steps=6");
    tu_config_set(c, "train.batch_size=3");
    tu_config_set(c, "train.seq_len=16");
    tu_config_set(c, "train.warmup_steps=1");
    tu_config_set(c, "train.threads=1");
    tu_config_set(c, "checkpoint.dir=%s/%s", dir, run);
    tu_config_set(c, "log.jsonl=");
}

/* Losses of `n` steps and the validation loss after them. */
static void train_losses(const lb_config *c, int n, float *losses, float *val) {
    lb_trainer t;
    if (lb_trainer_init(&t, c) != LB_OK) fail_msg("init: %s", lb_errmsg());
    for (int i = 0; i < n; i++) {
        lb_step_result r;
        if (lb_trainer_step(&t, &r) != LB_OK) fail_msg("step: %s", lb_errmsg());
        losses[i] = r.loss;
    }
    assert_int_equal(lb_trainer_evaluate(&t, 3, val), LB_OK);
    lb_trainer_free(&t);
}

static void test_training_from_shards_equals_training_in_memory(void **state) {
    (void)state;
    tu_run_dir *gen = tu_run_dir_new("shards_train", 30000, 11);
    char out[300], nano[300], cmd[1024];
    lb_tokenizer_options bpe = {LB_TOKENIZER_BPE, 280, NULL};
    lb_prepare_result r;
    snprintf(out, sizeof out, "%s/shards", gen->dir);
    /* several shards and chunks: the batches still read one sequence */
    assert_int_equal(prepare(gen->corpus, out, bpe, 2, LB_SHARDS_LLMC, 3000, 4096, &r), LB_OK);
    assert_true(r.n_train_shards > 1);

    enum { N = 6 };
    float mem[N], shard[N], mem_val, shard_val;
    lb_config c;
    tiny_config(&c, gen->dir, "mem");
    tu_config_set(&c, "data.path=%s", gen->corpus);
    tu_config_set(&c, "data.tokenizer=bpe");
    tu_config_set(&c, "data.vocab_size=280");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    train_losses(&c, N, mem, &mem_val);
    tiny_config(&c, gen->dir, "shard");
    tu_config_set(&c, "data.shards=%s", out);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    train_losses(&c, N, shard, &shard_val);
    assert_memory_equal(mem, shard, sizeof mem);
    assert_memory_equal(&mem_val, &shard_val, sizeof mem_val);

    /* resume from shards: N/2 steps, save, resume, N/2 more equals N */
    lb_trainer t;
    if (lb_trainer_init(&t, &c) != LB_OK) fail_msg("init: %s", lb_errmsg());
    lb_step_result sr;
    for (int i = 0; i < N / 2; i++) assert_int_equal(lb_trainer_step(&t, &sr), LB_OK);
    char ckpt[1024];
    assert_int_equal(lb_trainer_save(&t, ckpt, sizeof ckpt), LB_OK);
    lb_trainer_free(&t);
    if (lb_trainer_init(&t, &c) != LB_OK) fail_msg("init: %s", lb_errmsg());
    if (lb_trainer_resume(&t, ckpt) != LB_OK) fail_msg("resume: %s", lb_errmsg());
    for (int i = N / 2; i < N; i++) {
        assert_int_equal(lb_trainer_step(&t, &sr), LB_OK);
        assert_memory_equal(&sr.loss, &shard[i], sizeof sr.loss);
    }
    lb_trainer_free(&t);

    /* nanoGPT files without a manifest, byte tokenizer from the config */
    snprintf(nano, sizeof nano, "%s/nano", gen->dir);
    lb_tokenizer_options byte = {LB_TOKENIZER_BYTE, 0, NULL};
    assert_int_equal(prepare(gen->corpus, nano, byte, 1, LB_SHARDS_NANOGPT, 0, 0, &r), LB_OK);
    snprintf(cmd, sizeof cmd, "rm '%s/manifest.json' '%s/tokenizer.lbtk'", nano, nano);
    assert_int_equal(system(cmd), 0);
    tiny_config(&c, gen->dir, "mem_byte");
    tu_config_set(&c, "data.path=%s", gen->corpus);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    train_losses(&c, N, mem, &mem_val);
    tiny_config(&c, gen->dir, "nano");
    tu_config_set(&c, "data.shards=%s", nano);
    tu_config_set(&c, "data.format=nanogpt");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    train_losses(&c, N, shard, &shard_val);
    assert_memory_equal(mem, shard, sizeof mem);
    assert_memory_equal(&mem_val, &shard_val, sizeof mem_val);
    tu_run_dir_free(gen);
}

/* A tokenizer.json whose ids all lie above 65535: the bpe tokenizer.json at
 * `src` with `shift` added to every id (the ids below are gaps, which the
 * format allows), written to `dst`. */
static void shift_ids(const char *src, const char *dst, int shift) {
    json_error_t err;
    json_t *root = json_load_file(src, 0, &err);
    if (!root) fail_msg("%s: %s", src, err.text);
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab"), *v, *tok;
    const char *key;
    json_object_foreach(vocab, key, v) json_integer_set(v, json_integer_value(v) + shift);
    size_t i;
    json_array_foreach(json_object_get(root, "added_tokens"), i, tok) {
        json_t *id = json_object_get(tok, "id");
        json_integer_set(id, json_integer_value(id) + shift);
    }
    assert_int_equal(json_dump_file(root, dst, 0), 0);
    json_decref(root);
}

static void test_uint32_shards_for_a_vocabulary_over_65536(void **state) {
    (void)state;
    tu_run_dir *gen = tu_run_dir_new("shards_u32", 12000, 13);
    char bpe_dir[300], json[400], big[400], out[300];
    lb_prepare_result r;
    snprintf(bpe_dir, sizeof bpe_dir, "%s/bpe", gen->dir);
    assert_int_equal(prepare(gen->corpus, bpe_dir, (lb_tokenizer_options){LB_TOKENIZER_BPE, 290, NULL}, 1,
                             LB_SHARDS_LLMC, 0, 0, &r), LB_OK);
    snprintf(json, sizeof json, "%s/tokenizer.json", bpe_dir);
    snprintf(big, sizeof big, "%s/big.json", gen->dir);
    shift_ids(json, big, 70000);
    snprintf(out, sizeof out, "%s/u32", gen->dir);
    assert_int_equal(prepare(gen->corpus, out, (lb_tokenizer_options){LB_TOKENIZER_HF, 0, big}, 2, LB_SHARDS_LLMC,
                             0, 1000, &r), LB_OK);
    assert_int_equal(r.width, LB_TOKENS_U32);
    assert_true(r.vocab_size > 70000);
    char path[400];
    snprintf(path, sizeof path, "%s/train_000000.bin", out);
    size_t n;
    uint8_t *bytes = tu_read_file(path, &n);
    int32_t h[3];
    memcpy(h, bytes, sizeof h);
    assert_int_equal(h[0], 20240801);
    assert_int_equal(h[1], 7);
    assert_int_equal(n, 1024 + 4 * (size_t)h[2]);
    uint32_t first;
    memcpy(&first, bytes + 1024, 4);
    assert_true(first >= 70000);
    free(bytes);
    /* nanoGPT's uint16 cannot hold them */
    snprintf(out, sizeof out, "%s/u16", gen->dir);
    assert_int_equal(prepare(gen->corpus, out, (lb_tokenizer_options){LB_TOKENIZER_HF, 0, big}, 1,
                             LB_SHARDS_NANOGPT, 0, 0, &r), LB_EINVAL);

    /* training from them equals training on the text with the same tokenizer */
    enum { N = 3 };
    float mem[N], shard[N], mem_val, shard_val;
    lb_config c;
    tiny_config(&c, gen->dir, "mem");
    tu_config_set(&c, "data.path=%s", gen->corpus);
    tu_config_set(&c, "data.tokenizer=hf");
    tu_config_set(&c, "data.tokenizer_path=%s", big);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    train_losses(&c, N, mem, &mem_val);
    tiny_config(&c, gen->dir, "shard");
    tu_config_set(&c, "data.shards=%s/u32", gen->dir);
    assert_int_equal(lb_config_validate(&c), LB_OK);
    train_losses(&c, N, shard, &shard_val);
    assert_memory_equal(mem, shard, sizeof mem);
    assert_memory_equal(&mem_val, &shard_val, sizeof mem_val);
    tu_run_dir_free(gen);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_layout_and_round_trip),
        cmocka_unit_test(test_bad_headers_are_named_errors),
        cmocka_unit_test(test_batches_over_pieces_equal_one_array),
        cmocka_unit_test(test_prepare_matches_dataset_and_ignores_threads),
        cmocka_unit_test(test_manifest_and_layouts_when_opening),
        cmocka_unit_test(test_training_from_shards_equals_training_in_memory),
        cmocka_unit_test(test_uint32_shards_for_a_vocabulary_over_65536),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

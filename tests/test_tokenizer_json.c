/* Tests of the tokenizer.json pipeline that need no reference library: what
 * lowbit refuses to load (and that the message names file, path and value),
 * checkpoint storage of bpe and hf tokenizers, the length contract of
 * lb_tokenizer_encode, thread safety, streaming, training's limits and
 * lb_tokenizer_for_corpus. Equality with the Hugging Face library itself is
 * tests/test_tokenizer_reference.c. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "io/config.h"
#include "testutil.h"

/* A small SentencePiece-style tokenizer: Prepend and Replace, byte fallback,
 * <s> added by the template. %s slots: normalizer, pre_tokenizer, model extra. */
#define TINY_JSON_FMT                                                                                                  \
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"                                                       \
    "\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"         \
    "\"normalized\":false,\"special\":true}],"                                                                         \
    "\"normalizer\":%s,\"pre_tokenizer\":%s,"                                                                          \
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"  \
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"    \
    "\"tokens\":[\"<s>\"]}}},"                                                                                         \
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},"   \
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","        \
    "\"start\":1,\"stop\":0}]},"                                                                                       \
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true%s,"  \
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"<0x0A>\":2,\"<0xC3>\":3,\"<0xA9>\":4,\"\xe2\x96\x81\":5,\"a\":6,\"b\":7,"      \
    "\"ab\":8,\"\xe2\x96\x81" "ab\":9},\"merges\":[\"a b\",\"\xe2\x96\x81 ab\"]}}"

#define SP_NORMALIZER                                                                                                  \
    "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},{\"type\":\"Replace\"," \
    "\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]}"

static char *tiny_json(const char *normalizer, const char *pre, const char *model_extra) {
    size_t size = strlen(TINY_JSON_FMT) + strlen(normalizer) + strlen(pre) + strlen(model_extra) + 1;
    char *s = malloc(size);
    snprintf(s, size, TINY_JSON_FMT, normalizer, pre, model_extra);
    return s;
}

static lb_tokenizer *tiny(void) {
    char *json = tiny_json(SP_NORMALIZER, "null", "");
    lb_tokenizer *t = lb_tokenizer_from_json(json, strlen(json), "tiny.json", LB_TOKENIZER_HF);
    if (!t) fail_msg("tiny.json: %s", lb_errmsg());
    free(json);
    return t;
}

static void assert_ids(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, const int *want, size_t n) {
    lb_ids ids = {0};
    if (lb_tokenizer_encode_append(t, text, len, flags, &ids) != LB_OK) fail_msg("encode: %s", lb_errmsg());
    if (ids.n != n) fail_msg("\"%s\": %zu ids, expected %zu", text, ids.n, n);
    assert_memory_equal(ids.v, want, n * sizeof *want);
    lb_ids_free(&ids);
}

/* ---- encoding by hand -------------------------------------------------------------- */

static void test_sentencepiece_by_hand(void **state) {
    (void)state;
    lb_tokenizer *t = tiny();
    assert_int_equal(t->kind, LB_TOKENIZER_HF);
    assert_int_equal(t->vocab_size, 10);
    /* "ab ab" → "▁ab▁ab": ▁ab ▁ab; with the template, <s> first */
    assert_ids(t, "ab ab", 5, 0, (int[]){9, 9}, 2);
    assert_ids(t, "ab ab", 5, LB_ENCODE_ADD_SPECIAL, (int[]){1, 9, 9}, 3);
    /* é through byte fallback, "\n" too; "x" and "yz" are unknown: one <unk> for the run (fuse_unk) */
    assert_ids(t, "\xc3\xa9\nxyz", 6, 0, (int[]){5, 3, 4, 2, 0}, 5);
    /* invalid UTF-8 is U+FFFD first: its bytes EF BF BD have no <0xNN> tokens here → <unk> */
    assert_ids(t, "\xff", 1, 0, (int[]){5, 0}, 2);
    /* "<s>" in the text is the special token, and the text after it is normalized on its own */
    assert_ids(t, "a<s>b", 5, 0, (int[]){5, 6, 1, 5, 7}, 5);
    assert_ids(t, "", 0, LB_ENCODE_ADD_SPECIAL, (int[]){1}, 1);

    size_t n;
    char *text = lb_tokenizer_decode(t, (int[]){1, 9, 5, 3, 4, 2}, 6, &n);
    assert_string_equal(text, "<s> ab \xc3\xa9\n");
    free(text);
    text = lb_tokenizer_decode_opts(t, (int[]){1, 9, 5, 3, 4, 2}, 6, LB_DECODE_SKIP_SPECIAL, &n);
    assert_string_equal(text, "ab \xc3\xa9\n");
    free(text);
    assert_null(lb_tokenizer_decode(t, (int[]){1, 10}, 2, NULL));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "position 1"));

    /* lb_tokenizer_encode keeps its room-for-len-ids contract: "\n" → ▁ <0x0A> is two ids */
    int ids[8] = {0};
    size_t n_ids = 99;
    assert_int_equal(lb_tokenizer_encode(t, "\n", 1, ids, &n_ids), LB_EINVAL);
    assert_int_equal(n_ids, 0);
    assert_non_null(strstr(lb_errmsg(), "lb_tokenizer_encode_append"));
    assert_int_equal(lb_tokenizer_encode(t, "ab ab", 5, ids, &n_ids), LB_OK);
    assert_int_equal(n_ids, 2);
    lb_tokenizer_free(t);
}

/* The streaming decoder holds back a character split over byte tokens. */
static void test_decode_stream(void **state) {
    (void)state;
    lb_tokenizer *t = tiny();
    lb_decode_stream s;
    lb_decode_stream_init(&s, t, LB_DECODE_SKIP_SPECIAL);
    const int ids[] = {1, 9, 5, 3, 4, 9};
    /* the library's DecodeStream: <0xC3> alone gives nothing, and "▁" <0xC3> <0xA9> decodes
     * to "é" without the space (Strip) once " " has been given on its own */
    const char *want[] = {"", "ab", " ", "", "\xc3\xa9", " ab"};
    for (int i = 0; i < 6; i++) {
        const char *p;
        size_t n;
        assert_int_equal(lb_decode_stream_step(&s, ids[i], &p, &n), LB_OK);
        if (n != strlen(want[i]) || memcmp(p, want[i], n) != 0)
            fail_msg("step %d: \"%.*s\", expected \"%s\"", i, (int)n, p, want[i]);
    }
    lb_decode_stream_free(&s);
    lb_tokenizer_free(t);
}

/* ---- what is refused ------------------------------------------------------------------- */

static void refused(const char *json, const char *needle1, const char *needle2) {
    lb_error_clear();
    lb_tokenizer *t = lb_tokenizer_from_json(json, strlen(json), "bad.json", LB_TOKENIZER_HF);
    if (t) fail_msg("accepted: %s", json);
    assert_int_equal(lb_errcode(), LB_EFORMAT);
    const char *msg = lb_errmsg();
    if (!strstr(msg, "bad.json") || !strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
        fail_msg("message \"%s\" lacks bad.json, \"%s\" or \"%s\"", msg, needle1, needle2 ? needle2 : "");
}

static void refused_parts(const char *normalizer, const char *pre, const char *model_extra, const char *n1,
                          const char *n2) {
    char *json = tiny_json(normalizer, pre, model_extra);
    refused(json, n1, n2);
    free(json);
}

static char *replace_once(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) fail_msg("no \"%s\" to replace", from);
    size_t size = strlen(s) + strlen(to) + 1;
    char *out = malloc(size);
    snprintf(out, size, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

static void refused_edit(const char *from, const char *to, const char *n1, const char *n2) {
    char *base = tiny_json(SP_NORMALIZER, "null", "");
    char *json = replace_once(base, from, to);
    refused(json, n1, n2);
    free(base);
    free(json);
}

static void test_unsupported_is_an_error(void **state) {
    (void)state;
    refused_parts("{\"type\":\"Lowercase\"}", "null", "", "normalizer", "\"Lowercase\"");
    refused_parts("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}]}",
                  "null", "", "normalizer.normalizers[1]", "\"Precompiled\"");
    refused_parts("null", "{\"type\":\"Whitespace\"}", "", "pre_tokenizer", "\"Whitespace\"");
    refused_parts("null", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\bx\"},\"behavior\":\"Isolated\",\"invert\":false}",
                  "", "pre_tokenizer.pattern.Regex", "word boundary");
    refused_parts("null", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(x\"},\"behavior\":\"Isolated\",\"invert\":false}",
                  "", "pre_tokenizer.pattern.Regex", "does not compile");
    refused_parts("null", "{\"type\":\"Split\",\"pattern\":{\"String\":\"x\"},\"behavior\":\"Sideways\",\"invert\":false}",
                  "", "pre_tokenizer", "\"Sideways\"");
    refused_parts("null", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true,"
                  "\"flavour\":1}", "", "pre_tokenizer.flavour", "not supported");
    refused_parts(SP_NORMALIZER, "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\","
                  "\"split\":false}", "", "pre_tokenizer", "prepend_scheme \"first\"");
    refused_parts("null", "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"add_prefix_space\":false}", "",
                  "pre_tokenizer", "add_prefix_space");
    refused_parts("null", "null", ",\"continuing_subword_prefix\":\"##\"", "model.continuing_subword_prefix", "##");
    refused_parts("null", "null", ",\"end_of_word_suffix\":\"</w>\"", "model.end_of_word_suffix", "</w>");
    refused_parts("null", "null", ",\"cache_capacity\":3", "model.cache_capacity", "not supported");
    refused_edit("\"type\":\"BPE\"", "\"type\":\"Unigram\"", "model.type", "Unigram");
    refused_edit("\"dropout\":null", "\"dropout\":0.1", "model.dropout", "0.1");
    refused_edit("\"truncation\":null", "\"truncation\":{\"max_length\":8}", "truncation", "max_length");
    refused_edit("\"padding\":null", "\"padding\":{}", "padding", "not supported");
    refused_edit("\"version\":\"1.0\"", "\"version\":\"2.0\"", "version", "2.0");
    refused_edit("{\"type\":\"ByteFallback\"}", "{\"type\":\"WordPiece\",\"prefix\":\"##\"}", "decoder.decoders[1]",
                 "\"WordPiece\"");
    refused_edit("\"merges\":[\"a b\",", "\"merges\":[\"a b c\",", "model.merges[0]", "a b c");
    refused_edit("\"merges\":[\"a b\",", "\"merges\":[[\"a\",\"b\"],", "model.merges[1]", "mixes");
    refused_edit("\"merges\":[\"a b\",", "\"merges\":[\"a q\",", "model.merges[0]", "\"q\"");
    refused_edit("\"merges\":[\"a b\",", "\"merges\":[\"b a\",", "model.merges[0]", "not in the vocabulary");
    refused_edit("\"b\":7,", "\"b\":-7,", "model.vocab", "-7");
    refused_edit("\"b\":7,", "\"b\":6,", "model.vocab", "id 6");
    refused_edit("\"b\":7,", "\"b\":7,\"b\":8,", "duplicate", NULL);
    refused_edit("{\"Sequence\":{\"id\":\"A\"", "{\"Sequence\":{\"id\":\"B\"", "post_processor.single[1]", "sequence A");
    refused_edit("{\"SpecialToken\":{\"id\":\"<s>\"", "{\"SpecialToken\":{\"id\":\"<t>\"", "post_processor.single[0]",
                 "<t>");
    refused_edit("\"type\":\"TemplateProcessing\"", "\"type\":\"RobertaProcessing\"", "post_processor", "Roberta");
    refused_edit("\"content\":\"<s>\"", "\"content\":\"\"", "added_tokens[0]", "non-empty");
    refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [", "line 1", NULL);
    refused("[1, 2]", "(root)", "object");
    refused("{\"version\":\"1.0\"}", "model", "missing");

    /* an unk_token missing from the vocabulary fails when it is needed, as in the library */
    char *base = tiny_json("null", "null", "");
    char *json = replace_once(base, "\"unk_token\":\"<unk>\"", "\"unk_token\":\"<nope>\"");
    lb_tokenizer *t = lb_tokenizer_from_json(json, strlen(json), "unk.json", LB_TOKENIZER_HF);
    assert_non_null(t);
    lb_ids ids = {0};
    assert_int_equal(lb_tokenizer_encode_append(t, "ab", 2, 0, &ids), LB_OK);
    assert_int_equal(lb_tokenizer_encode_append(t, "x", 1, 0, &ids), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "<nope>"));
    lb_ids_free(&ids);
    lb_tokenizer_free(t);
    free(base);
    free(json);

    /* a file that is not there */
    assert_null(lb_tokenizer_load_json("/nonexistent/tokenizer.json"));
    assert_int_equal(lb_errcode(), LB_EIO);
    assert_non_null(strstr(lb_errmsg(), "/nonexistent/tokenizer.json"));
}

/* ---- storage ---------------------------------------------------------------------------- */

static void test_checkpoint_storage(void **state) {
    (void)state;
    lb_tokenizer *t = tiny();
    size_t size;
    uint8_t *b = lb_tokenizer_to_bytes(t, &size);
    assert_non_null(b);
    assert_int_equal(size, 16 + t->json_len);
    lb_tokenizer *back = lb_tokenizer_from_bytes(b, size);
    assert_non_null(back);
    assert_int_equal(back->kind, LB_TOKENIZER_HF);
    assert_int_equal(back->vocab_size, t->vocab_size);
    assert_ids(back, "ab ab", 5, LB_ENCODE_ADD_SPECIAL, (int[]){1, 9, 9}, 3);
    size_t size2;
    uint8_t *b2 = lb_tokenizer_to_bytes(back, &size2);
    assert_int_equal(size2, size);
    assert_memory_equal(b, b2, size); /* the same bytes again: resuming compares them */
    free(b2);
    lb_tokenizer_free(back);

    /* truncated JSON, a header vocabulary that disagrees, an unknown kind */
    lb_error_clear();
    assert_null(lb_tokenizer_from_bytes(b, size - 5));
    assert_int_equal(lb_errcode(), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "serialised tokenizer.json"));
    b[12] = 11;
    assert_null(lb_tokenizer_from_bytes(b, size));
    assert_int_equal(lb_errcode(), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "header says 11"));
    b[12] = 10, b[8] = 7;
    assert_null(lb_tokenizer_from_bytes(b, size));
    assert_non_null(strstr(lb_errmsg(), "kind 7"));
    free(b);

    /* tokenizer.json written through a temporary file, and loaded back */
    char dir[512], path[600];
    tu_tmpdir(dir, sizeof dir, "tokjson");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(lb_tokenizer_save_json(t, path), LB_OK);
    lb_tokenizer *loaded = lb_tokenizer_load_json(path);
    assert_non_null(loaded);
    assert_int_equal(loaded->json_len, t->json_len);
    assert_memory_equal(loaded->json, t->json, t->json_len);
    lb_tokenizer_free(loaded);
    lb_tokenizer *byte = lb_tokenizer_byte();
    assert_int_equal(lb_tokenizer_save_json(byte, path), LB_EINVAL);
    lb_tokenizer_free(byte);
    lb_tokenizer_free(t);
}

/* ---- threads --------------------------------------------------------------------------- */

typedef struct job {
    const lb_tokenizer *t;
    const char *text;
    size_t len;
    lb_ids ids;
    lb_status st;
} job;

static void *encode_job(void *arg) {
    job *j = arg;
    j->st = lb_tokenizer_encode_append(j->t, j->text, j->len, LB_ENCODE_ADD_SPECIAL, &j->ids);
    return NULL;
}

/* One const tokenizer shared by threads gives each what it gives alone (the
 * word cache fills from all threads at once). */
static void test_threads_share_a_tokenizer(void **state) {
    (void)state;
    tu_run_dir *r = tu_run_dir_new("tokthreads", 400000, 5);
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, r->corpus), LB_OK);
    lb_tokenizer *t = lb_tokenizer_train_bpe(&c, 600);
    assert_non_null(t);
    enum { N = 4 };
    job jobs[N];
    pthread_t th[N];
    size_t part = c.len / N;
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){t, c.text + (size_t)i * part / 2, part, {0}, LB_OK}; /* overlapping parts */
        assert_int_equal(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    lb_tokenizer *fresh = lb_tokenizer_from_json(t->json, t->json_len, "fresh", LB_TOKENIZER_BPE); /* empty cache */
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].st, LB_OK);
        lb_ids alone = {0};
        assert_int_equal(lb_tokenizer_encode_append(fresh, jobs[i].text, jobs[i].len, LB_ENCODE_ADD_SPECIAL, &alone), LB_OK);
        assert_int_equal(alone.n, jobs[i].ids.n);
        assert_memory_equal(alone.v, jobs[i].ids.v, alone.n * sizeof(int));
        lb_ids_free(&alone);
        lb_ids_free(&jobs[i].ids);
    }
    lb_tokenizer_free(fresh);
    lb_tokenizer_free(t);
    lb_corpus_free(&c);
    tu_run_dir_free(r);
}

/* ---- training and the trainer's entry point ------------------------------------------------ */

static void test_training_limits_and_for_corpus(void **state) {
    (void)state;
    char dir[512], file[600];
    tu_tmpdir(dir, sizeof dir, "tokfor");
    snprintf(file, sizeof file, "%s/tiny.txt", dir);
    FILE *f = fopen(file, "w");
    fputs("aaa aaa\nab\n", f);
    fclose(f);
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, file), LB_OK);

    assert_null(lb_tokenizer_train_bpe(&c, 256));
    assert_int_equal(lb_errcode(), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "data.vocab_size"));

    /* a tiny corpus runs out of pairs before the vocabulary is full */
    lb_tokenizer *t = lb_tokenizer_train_bpe(&c, 1000);
    assert_non_null(t);
    assert_true(t->vocab_size > 257 && t->vocab_size < 270);
    lb_ids ids = {0};
    assert_int_equal(lb_tokenizer_encode_append(t, "aaa aaa\nab\n", 11, 0, &ids), LB_OK);
    assert_true(ids.n <= 5);
    char *back = lb_tokenizer_decode(t, ids.v, ids.n, NULL);
    assert_string_equal(back, "aaa aaa\nab\n");
    free(back);
    lb_ids_free(&ids);
    /* <|endoftext|> is id 0 and special */
    assert_int_equal(lb_tokenizer_encode_append(t, "a<|endoftext|>", 14, 0, &ids), LB_OK);
    assert_int_equal(ids.n, 2);
    assert_int_equal(ids.v[1], 0);
    lb_ids_free(&ids);

    lb_tokenizer_options o = {LB_TOKENIZER_BPE, 300, NULL};
    lb_tokenizer *b = lb_tokenizer_for_corpus(&o, &c);
    assert_non_null(b);
    assert_int_equal(b->kind, LB_TOKENIZER_BPE);
    assert_int_equal(b->json_len, t->json_len); /* stops at the same point */
    lb_tokenizer_free(b);
    o = (lb_tokenizer_options){LB_TOKENIZER_CHAR, 0, NULL};
    b = lb_tokenizer_for_corpus(&o, &c);
    assert_int_equal(b->kind, LB_TOKENIZER_CHAR);
    assert_int_equal(b->vocab_size, 4); /* \n, space, a, b */
    lb_tokenizer_free(b);
    o = (lb_tokenizer_options){LB_TOKENIZER_BYTE, 0, NULL};
    b = lb_tokenizer_for_corpus(&o, &c);
    assert_int_equal(b->vocab_size, 256);
    lb_tokenizer_free(b);
    o = (lb_tokenizer_options){LB_TOKENIZER_HF, 0, ""};
    assert_null(lb_tokenizer_for_corpus(&o, &c));
    assert_int_equal(lb_errcode(), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "data.tokenizer_path"));
    char path[700];
    snprintf(path, sizeof path, "%s/t.json", dir);
    assert_int_equal(lb_tokenizer_save_json(t, path), LB_OK);
    o = (lb_tokenizer_options){LB_TOKENIZER_HF, 0, path};
    b = lb_tokenizer_for_corpus(&o, &c);
    assert_non_null(b);
    assert_int_equal(b->kind, LB_TOKENIZER_HF);
    assert_int_equal(b->vocab_size, t->vocab_size);
    lb_tokenizer_free(b);

    /* the dataset of a bpe tokenizer */
    lb_dataset ds;
    assert_int_equal(lb_dataset_build(&ds, &c, t, 0.0), LB_OK);
    assert_true(ds.n_train > 0 && ds.n_train <= 5);
    lb_dataset_free(&ds);
    lb_tokenizer_free(t);
    lb_corpus_free(&c);
}

/* The config keys of the bpe and hf kinds and their cross-checks. */
static void test_config_keys(void **state) {
    (void)state;
    lb_config c;
    lb_config_defaults(&c);
    tu_config_set(&c, "data.tokenizer=bpe");
    assert_int_equal(lb_config_validate(&c), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "data.vocab_size"));
    tu_config_set(&c, "data.vocab_size=4096");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    tu_config_set(&c, "model.vocab_size=300");
    assert_int_equal(lb_config_validate(&c), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "model.vocab_size"));
    lb_config_defaults(&c);
    tu_config_set(&c, "data.tokenizer=hf");
    assert_int_equal(lb_config_validate(&c), LB_ECONFIG);
    assert_non_null(strstr(lb_errmsg(), "data.tokenizer_path"));
    tu_config_set(&c, "data.tokenizer_path=/models/llama/tokenizer.json");
    assert_int_equal(lb_config_validate(&c), LB_OK);
    char *yaml = NULL;
    assert_int_equal(lb_config_to_yaml(&c, &yaml), LB_OK);
    assert_non_null(strstr(yaml, "tokenizer: hf"));
    assert_non_null(strstr(yaml, "/models/llama/tokenizer.json"));
    free(yaml);
    assert_int_equal(lb_config_set(&c, "data.tokenizer=wordpiece"), LB_ECONFIG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentencepiece_by_hand),     cmocka_unit_test(test_decode_stream),
        cmocka_unit_test(test_unsupported_is_an_error),   cmocka_unit_test(test_checkpoint_storage),
        cmocka_unit_test(test_threads_share_a_tokenizer), cmocka_unit_test(test_training_limits_and_for_corpus),
        cmocka_unit_test(test_config_keys),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Tests of src/data: tokenizers, corpora, the train/validation split and
 * batches. Expected values are worked out by hand from the rules documented
 * in the headers (and docs/data.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/batch.h"
#include "data/corpus.h"
#include "data/tokenizer.h"
#include "testutil.h"

/* --- helpers ------------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text) {
    write_file(dir, name, text, strlen(text));
}

static void join(char *buf, size_t size, const char *dir, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
}

/* Asserts that the last error has `code` and its message contains `needle`. */
static void assert_error(lb_status code, const char *needle) {
    assert_int_equal(lb_errcode(), code);
    if (!strstr(lb_errmsg(), needle)) fail_msg("error message '%s' lacks '%s'", lb_errmsg(), needle);
}

/* Encodes then decodes `len` bytes and checks both the ids' count and the
 * exact bytes coming back. Returns the number of ids. */
static size_t round_trip(const lb_tokenizer *t, const char *text, size_t len) {
    int *ids = malloc((len ? len : 1) * sizeof *ids);
    size_t n = 0, out_len = 0;
    assert_int_equal(lb_tokenizer_encode(t, text, len, ids, &n), LB_OK);
    assert_true(n <= len);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < t->vocab_size);
    char *back = lb_tokenizer_decode(t, ids, n, &out_len);
    assert_non_null(back);
    assert_int_equal(out_len, len);
    assert_memory_equal(back, text, len);
    assert_int_equal(back[len], '\0');
    free(back);
    free(ids);
    return n;
}

/* --- tokenizers --------------------------------------------------------------- */

static void test_byte_tokenizer_round_trip(void **state) {
    (void)state;
    lb_tokenizer *t = lb_tokenizer_byte();
    assert_non_null(t);
    assert_int_equal(t->vocab_size, 256);

    /* Every byte value, including 0x00 and 0xFF, then some UTF-8. */
    char text[256 + 32];
    for (int i = 0; i < 256; i++) text[i] = (char)i;
    const char *utf8 = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
    size_t len = 256 + strlen(utf8);
    memcpy(text + 256, utf8, strlen(utf8));
    assert_int_equal(round_trip(t, text, len), len);

    int ids[4];
    size_t n;
    assert_int_equal(lb_tokenizer_encode(t, "\x00\xff\xc3\xa9", 4, ids, &n), LB_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 255);
    assert_int_equal(ids[2], 0xC3);
    assert_int_equal(ids[3], 0xA9);

    /* One token at a time: each byte as it comes. */
    lb_decode_stream ds;
    lb_decode_stream_init(&ds, t, 0);
    const char *piece;
    size_t plen;
    assert_int_equal(lb_decode_stream_step(&ds, 0xFF, &piece, &plen), LB_OK);
    assert_int_equal(plen, 1);
    assert_int_equal((unsigned char)piece[0], 0xFF);
    assert_int_equal(lb_decode_stream_step(&ds, 256, &piece, &plen), LB_EINVAL);
    lb_decode_stream_free(&ds);
    int bad[3] = {65, 256, 66};
    assert_null(lb_tokenizer_decode(t, bad, 3, NULL));
    assert_error(LB_EINVAL, "position 1");
    lb_tokenizer_free(t);
}

static void test_char_tokenizer_vocabulary_and_round_trip(void **state) {
    (void)state;
    /* Distinct code points, sorted: a b c e g é(E9) €(20AC) 😀(1F600). */
    const char *text = "cabbage\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "a\xc3\xa9";
    lb_tokenizer *t = lb_tokenizer_build_char(text, strlen(text));
    assert_non_null(t);
    assert_int_equal(t->vocab_size, 8);
    const uint32_t expect_cps[8] = {'a', 'b', 'c', 'e', 'g', 0xE9, 0x20AC, 0x1F600};
    for (int i = 0; i < 8; i++) assert_int_equal(t->codepoints[i], expect_cps[i]);

    const char *word = "cab\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9";
    int ids[16];
    size_t n;
    assert_int_equal(lb_tokenizer_encode(t, word, strlen(word), ids, &n), LB_OK);
    const int expect_ids[6] = {2, 0, 1, 6, 7, 5};
    assert_int_equal(n, 6);
    assert_memory_equal(ids, expect_ids, sizeof expect_ids);
    assert_int_equal(round_trip(t, text, strlen(text)), 12); /* 7 + é € 😀 a é */

    /* A character outside the vocabulary: an error naming it, or unk_id. */
    assert_int_equal(lb_tokenizer_encode(t, "abz", 3, ids, &n), LB_EINVAL);
    assert_error(LB_EINVAL, "U+007A at byte offset 2");
    t->unk_id = 4;
    assert_int_equal(lb_tokenizer_encode(t, "abz", 3, ids, &n), LB_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 4);
    t->unk_id = 8;
    assert_int_equal(lb_tokenizer_encode(t, "a", 1, ids, &n), LB_EINVAL);
    lb_tokenizer_free(t);

    /* Invalid UTF-8 becomes one token per byte and still round-trips:
     * a lone 0xFF, an overlong '/', an encoded surrogate, a truncated '€'. */
    const char raw[] = "x\xff" "\xc0\xaf" "\xed\xa0\x80" "y\xe2\x82";
    size_t rlen = sizeof raw - 1;
    t = lb_tokenizer_build_char(raw, rlen);
    assert_non_null(t);
    /* x, y and the nine bytes FF C0 AF ED A0 80 E2 82 — 80 twice... counted
     * distinct: 80 82 A0 AF C0 E2 ED FF = 8 escapes, plus x and y. */
    assert_int_equal(t->vocab_size, 10);
    assert_int_equal(t->codepoints[0], 'x');
    assert_int_equal(t->codepoints[2], 0xDC80);
    assert_int_equal(t->codepoints[9], 0xDCFF);
    assert_int_equal(round_trip(t, raw, rlen), rlen);
    lb_tokenizer_free(t);

    assert_null(lb_tokenizer_build_char("", 0));
    assert_int_equal(lb_errcode(), LB_EINVAL);

    lb_tokenizer_kind kind;
    assert_int_equal(lb_tokenizer_kind_from_name("char", &kind), LB_OK);
    assert_int_equal(kind, LB_TOKENIZER_CHAR);
    assert_int_equal(lb_tokenizer_kind_from_name("bpe", &kind), LB_OK);
    assert_int_equal(kind, LB_TOKENIZER_BPE);
    assert_int_equal(lb_tokenizer_kind_from_name("wordpiece", &kind), LB_ECONFIG);
    assert_error(LB_ECONFIG, "'wordpiece'");
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* from_bytes on a corrupted copy must fail with LB_EFORMAT. */
static void assert_rejected(const uint8_t *good, size_t size, size_t at, uint32_t value, size_t new_size) {
    uint8_t *b = malloc(size + 8);
    memcpy(b, good, size);
    if (at != (size_t)-1) put_le32(b + at, value);
    lb_error_clear();
    lb_tokenizer *t = lb_tokenizer_from_bytes(b, new_size);
    if (t) fail_msg("corrupted tokenizer (offset %zu := 0x%X, size %zu) was accepted", at, value, new_size);
    assert_int_equal(lb_errcode(), LB_EFORMAT);
    assert_true(strstr(lb_errmsg(), "tokenizer") != NULL);
    free(b);
}

static void test_tokenizer_serialization(void **state) {
    (void)state;
    const char *text = "hello, w\xc3\xb6rld \xe2\x82\xac\xff";
    lb_tokenizer *t = lb_tokenizer_build_char(text, strlen(text));
    size_t size;
    uint8_t *bytes = lb_tokenizer_to_bytes(t, &size);
    assert_non_null(bytes);
    /* Layout from the header comment: 16-byte header then 4 bytes a code point. */
    assert_int_equal(size, 16 + 4 * (size_t)t->vocab_size);
    assert_memory_equal(bytes, "LBTK", 4);

    lb_tokenizer *u = lb_tokenizer_from_bytes(bytes, size);
    assert_non_null(u);
    assert_int_equal(u->kind, LB_TOKENIZER_CHAR);
    assert_int_equal(u->vocab_size, t->vocab_size);
    assert_memory_equal(u->codepoints, t->codepoints, (size_t)t->vocab_size * sizeof(uint32_t));
    round_trip(u, text, strlen(text));

    /* Malformed inputs, one defect each. */
    assert_rejected(bytes, size, (size_t)-1, 0, size - 1);       /* truncated */
    assert_rejected(bytes, size, (size_t)-1, 0, 7);              /* shorter than a header */
    assert_rejected(bytes, size, 0, 0x4b54424d, size);           /* magic "MBTK" */
    assert_rejected(bytes, size, 4, 2, size);                    /* version 2 */
    assert_rejected(bytes, size, 8, 7, size);                    /* unknown kind */
    assert_rejected(bytes, size, 12, (uint32_t)t->vocab_size + 1, size); /* count ≠ size */
    assert_rejected(bytes, size, 12, 0, 16);                     /* empty vocabulary */
    assert_rejected(bytes, size, 16 + 4, ' ', size);             /* entry 1 repeats entry 0 (' ') */
    assert_rejected(bytes, size, size - 4, 0xD800, size);        /* a real surrogate */
    assert_rejected(bytes, size, size - 4, 0x110000, size);      /* beyond Unicode */
    assert_null(lb_tokenizer_from_bytes(NULL, 0));

    lb_tokenizer *byte = lb_tokenizer_byte();
    size_t bsize;
    uint8_t *bb = lb_tokenizer_to_bytes(byte, &bsize);
    assert_int_equal(bsize, 16);
    lb_tokenizer *byte2 = lb_tokenizer_from_bytes(bb, bsize);
    assert_non_null(byte2);
    assert_int_equal(byte2->kind, LB_TOKENIZER_BYTE);
    assert_int_equal(byte2->vocab_size, 256);
    assert_rejected(bb, bsize, 12, 255, bsize);                  /* byte vocabulary must be 256 */
    assert_rejected(bb, bsize, (size_t)-1, 0, bsize + 4);        /* trailing bytes */

    free(bb);
    free(bytes);
    lb_tokenizer_free(byte);
    lb_tokenizer_free(byte2);
    lb_tokenizer_free(t);
    lb_tokenizer_free(u);
}

/* --- corpora ------------------------------------------------------------------ */

static void test_corpus_directory_rules(void **state) {
    (void)state;
    char dir[512], path[1024], target[1024];
    tu_tmpdir(dir, sizeof dir, "corpus");
    write_text(dir, "b.txt", "second\n");
    write_text(dir, "a", "first file\n");
    const unsigned char index[8] = {0, 0, 0, 2, 0, 0, 0, 9};
    /* *.dat is skipped by name, even when (unlike fortune's indexes) it has no NUL. */
    write_text(dir, "a.dat", "named like an index\n");
    write_file(dir, "bin", "abc\0def", 7);                  /* NUL byte: skipped */
    write_text(dir, ".hidden", "editor swap\n");            /* hidden: skipped */
    join(target, sizeof target, dir, "a");
    join(path, sizeof path, dir, "a.u8");
    assert_int_equal(symlink(target, path), 0);             /* symlink: skipped */
    join(path, sizeof path, dir, "sub");
    assert_int_equal(mkdir(path, 0700), 0);                 /* subdirectory: skipped */
    write_text(path, "deep", "not read\n");

    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, dir), LB_OK);
    assert_int_equal(c.n_docs, 2);
    assert_int_equal(c.n_skipped, 4); /* a.dat, a.u8, bin, sub */
    assert_string_equal(c.text, "first file\nsecond\n");
    assert_int_equal(c.len, strlen("first file\nsecond\n"));
    join(path, sizeof path, dir, "a");
    assert_string_equal(c.docs[0].path, path);
    assert_int_equal(c.docs[1].offset, 11);
    assert_int_equal(c.docs[1].len, 7);
    lb_corpus_free(&c);

    /* Files named explicitly: in the order given, symlinks followed. */
    char p1[1024], p2[1024];
    join(p1, sizeof p1, dir, "b.txt");
    join(p2, sizeof p2, dir, "a.u8");
    const char *list[2] = {p1, p2};
    assert_int_equal(lb_corpus_load(&c, list, 2), LB_OK);
    assert_string_equal(c.text, "second\nfirst file\n");
    lb_corpus_free(&c);

    /* A binary file named explicitly is an error naming it. */
    join(path, sizeof path, dir, "bin");
    assert_int_equal(lb_corpus_load_path(&c, path), LB_EFORMAT);
    assert_error(LB_EFORMAT, path);
    lb_corpus_free(&c);

    /* Only skipped files: an empty corpus, and the message names the directory. */
    char empty[512];
    tu_tmpdir(empty, sizeof empty, "corpus-empty");
    write_file(empty, "x.dat", index, sizeof index);
    assert_int_equal(lb_corpus_load_path(&c, empty), LB_EINVAL);
    assert_error(LB_EINVAL, empty);
    lb_corpus_free(&c);
}

static void test_missing_path_names_it(void **state) {
    (void)state;
    char dir[512], path[1024];
    tu_tmpdir(dir, sizeof dir, "missing");
    join(path, sizeof path, dir, "no-such-corpus.txt");
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, path), LB_EIO);
    assert_error(LB_EIO, path);
    lb_corpus_free(&c);

    write_text(dir, "ok", "text\n");
    char ok[1024];
    join(ok, sizeof ok, dir, "ok");
    const char *list[2] = {ok, path};
    assert_int_equal(lb_corpus_load(&c, list, 2), LB_EIO);
    assert_error(LB_EIO, "no-such-corpus.txt");
    lb_corpus_free(&c);
}

/* --- split -------------------------------------------------------------------- */

/* Three documents of four 10-byte lines. With val_fraction 0.25 the cut is
 * byte floor(0.75·40) = 30, a line start: line 4 of each is validation. With
 * 0.3 the cut, byte 28, is mid-line and moves to the next line start, 30. */
static void make_split_corpus(char *dir, size_t size) {
    tu_tmpdir(dir, size, "split");
    write_text(dir, "1", "A1aaaaaaa\nA2aaaaaaa\nA3aaaaaaa\nA4aaaaaaa\n");
    write_text(dir, "2", "B1bbbbbbb\nB2bbbbbbb\nB3bbbbbbb\nB4bbbbbbb\n");
    write_text(dir, "3", "C1ccccccc\nC2ccccccc\nC3ccccccc\nC4ccccccc\n");
}

static char *decode_all(const lb_tokenizer *t, const int *ids, size_t n) {
    char *s = lb_tokenizer_decode(t, ids, n, NULL);
    assert_non_null(s);
    return s;
}

static void test_split_disjoint_and_deterministic(void **state) {
    (void)state;
    char dir[512];
    make_split_corpus(dir, sizeof dir);
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, dir), LB_OK);
    lb_tokenizer *t = lb_tokenizer_byte();

    const char *train_expect = "A1aaaaaaa\nA2aaaaaaa\nA3aaaaaaa\n"
                               "B1bbbbbbb\nB2bbbbbbb\nB3bbbbbbb\n"
                               "C1ccccccc\nC2ccccccc\nC3ccccccc\n";
    const char *val_expect = "A4aaaaaaa\nB4bbbbbbb\nC4ccccccc\n";
    const double fractions[2] = {0.25, 0.3};
    lb_dataset first = {0};
    for (int k = 0; k < 2; k++) {
        lb_dataset ds;
        assert_int_equal(lb_dataset_build(&ds, &c, t, fractions[k]), LB_OK);
        assert_int_equal(ds.vocab_size, 256);
        assert_int_equal(ds.n_train + ds.n_val, c.len);
        char *tr = decode_all(t, ds.train, ds.n_train), *va = decode_all(t, ds.val, ds.n_val);
        assert_string_equal(tr, train_expect);
        assert_string_equal(va, val_expect);
        /* No validation line appears in training text. */
        assert_null(strstr(tr, "A4"));
        assert_null(strstr(tr, "B4"));
        assert_null(strstr(tr, "C4"));
        free(tr);
        free(va);
        if (k == 0) first = ds;
        else lb_dataset_free(&ds);
    }
    /* Building again gives identical arrays. */
    lb_dataset again;
    assert_int_equal(lb_dataset_build(&again, &c, t, 0.25), LB_OK);
    assert_int_equal(again.n_train, first.n_train);
    assert_int_equal(again.n_val, first.n_val);
    assert_memory_equal(again.train, first.train, first.n_train * sizeof(int));
    assert_memory_equal(again.val, first.val, first.n_val * sizeof(int));
    lb_dataset_free(&again);
    lb_dataset_free(&first);

    /* No validation at 0; out-of-range fractions rejected. */
    lb_dataset ds;
    assert_int_equal(lb_dataset_build(&ds, &c, t, 0.0), LB_OK);
    assert_int_equal(ds.n_train, c.len);
    assert_int_equal(ds.n_val, 0);
    lb_dataset_free(&ds);
    assert_int_equal(lb_dataset_build(&ds, &c, t, 1.0), LB_EINVAL);
    assert_error(LB_EINVAL, "val_fraction");
    assert_int_equal(lb_dataset_build(&ds, &c, t, -0.1), LB_EINVAL);
    lb_corpus_free(&c);
    lb_tokenizer_free(t);
}

static void test_split_without_newlines_keeps_characters_whole(void **state) {
    (void)state;
    char dir[512];
    tu_tmpdir(dir, sizeof dir, "split-utf8");
    /* One line of five 'é' (10 bytes): the cut, byte floor(0.75·10) = 7, falls
     * inside the fourth é, so validation starts at byte 8: the last é. */
    write_text(dir, "e", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, dir), LB_OK);
    lb_tokenizer *t = lb_tokenizer_build_char(c.text, c.len);
    assert_int_equal(t->vocab_size, 1);
    lb_dataset ds;
    assert_int_equal(lb_dataset_build(&ds, &c, t, 0.25), LB_OK);
    assert_int_equal(ds.n_train, 4);
    assert_int_equal(ds.n_val, 1);
    lb_dataset_free(&ds);

    /* A tokenizer from other text: the error names the file. */
    lb_tokenizer *other = lb_tokenizer_build_char("abc", 3);
    assert_int_equal(lb_dataset_build(&ds, &c, other, 0.25), LB_EINVAL);
    assert_error(LB_EINVAL, "/e'");
    assert_error(LB_EINVAL, "U+00E9");
    lb_dataset_free(&ds);
    lb_tokenizer_free(other);
    lb_tokenizer_free(t);
    lb_corpus_free(&c);
}

/* --- batches ------------------------------------------------------------------ */

/* A dataset whose token i is i, so every window shows where it came from. */
static lb_dataset counting_dataset(size_t n_train, size_t n_val) {
    lb_dataset ds = {0};
    ds.train = malloc(n_train * sizeof(int));
    ds.val = malloc((n_val ? n_val : 1) * sizeof(int));
    for (size_t i = 0; i < n_train; i++) ds.train[i] = (int)i;
    for (size_t i = 0; i < n_val; i++) ds.val[i] = (int)i;
    ds.n_train = n_train;
    ds.n_val = n_val;
    ds.vocab_size = (int)(n_train > n_val ? n_train : n_val);
    return ds;
}

/* Checks the rows of a batch from a counting split of n tokens: consecutive
 * runs, inside the split, targets one ahead of inputs. */
static void check_counting_batch(const int *in, const int *tg, int B, int T, size_t n) {
    for (int b = 0; b < B; b++) {
        const int *x = in + (size_t)b * T, *y = tg + (size_t)b * T;
        assert_true(x[0] >= 0);
        assert_true((size_t)x[0] + (size_t)T <= n - 1); /* last target inside */
        for (int t = 0; t < T; t++) {
            assert_int_equal(x[t], x[0] + t);
            assert_int_equal(y[t], x[t] + 1);
            if (t + 1 < T) assert_int_equal(y[t], x[t + 1]);
        }
    }
}

static void test_batches_seeded_resumable_and_in_range(void **state) {
    (void)state;
    enum { B = 4, T = 8, N = 1000 };
    lb_dataset ds = counting_dataset(N, 0);
    lb_batcher a, b;
    int ia[B * T], ta[B * T], ib[B * T], tb[B * T];
    assert_int_equal(lb_batcher_init(&a, &ds, B, T, 1234), LB_OK);
    assert_int_equal(lb_batcher_init(&b, &ds, B, T, 1234), LB_OK);
    for (int k = 0; k < 20; k++) {
        lb_batcher_next(&a, ia, ta);
        lb_batcher_next(&b, ib, tb);
        check_counting_batch(ia, ta, B, T, N);
        assert_memory_equal(ia, ib, sizeof ia);
        assert_memory_equal(ta, tb, sizeof ta);
    }

    /* A different seed gives different batches. */
    lb_batcher c;
    assert_int_equal(lb_batcher_init(&c, &ds, B, T, 1235), LB_OK);
    assert_int_equal(lb_batcher_init(&a, &ds, B, T, 1234), LB_OK);
    int differ = 0;
    for (int k = 0; k < 5; k++) {
        lb_batcher_next(&a, ia, ta);
        lb_batcher_next(&c, ib, tb);
        differ |= memcmp(ia, ib, sizeof ia) != 0;
    }
    assert_true(differ);

    /* Save after k batches; a fresh batcher restored from the three integers
     * continues with exactly the same batches. */
    lb_rng saved = lb_batcher_state(&a);
    uint64_t seed = saved.seed, stream = saved.stream, pos = saved.pos;
    enum { K = 10 };
    static int expect_in[K][B * T], expect_tg[K][B * T];
    for (int k = 0; k < K; k++) lb_batcher_next(&a, expect_in[k], expect_tg[k]);
    lb_batcher r;
    assert_int_equal(lb_batcher_init(&r, &ds, B, T, 999), LB_OK);
    assert_int_equal(lb_batcher_restore(&r, (lb_rng){.seed = seed, .stream = stream, .pos = pos}), LB_OK);
    for (int k = 0; k < K; k++) {
        lb_batcher_next(&r, ib, tb);
        assert_memory_equal(ib, expect_in[k], sizeof ib);
        assert_memory_equal(tb, expect_tg[k], sizeof tb);
    }
    assert_int_equal(lb_batcher_restore(&r, (lb_rng){.seed = 1, .stream = LB_STREAM_INIT, .pos = 0}), LB_EFORMAT);

    /* A split too short for one window. */
    lb_dataset tiny = counting_dataset(T, 0);
    assert_int_equal(lb_batcher_init(&r, &tiny, B, T, 1), LB_EINVAL);
    assert_error(LB_EINVAL, "at least context + 1");
    lb_dataset_free(&tiny);
    lb_dataset_free(&ds);
}

static void test_batch_offsets_cover_split_uniformly(void **state) {
    (void)state;
    /* 20 tokens, T = 4: window starts 0..15, each with probability 1/16. */
    enum { N = 20, T = 4, STARTS = N - T, DRAWS = 32000 };
    lb_dataset ds = counting_dataset(N, 0);
    lb_batcher b;
    assert_int_equal(lb_batcher_init(&b, &ds, 1, T, 77), LB_OK);
    int counts[N] = {0}, in[T], tg[T];
    for (int k = 0; k < DRAWS; k++) {
        lb_batcher_next(&b, in, tg);
        check_counting_batch(in, tg, 1, T, N);
        counts[in[0]]++;
    }
    /* Expected 2000 each; sd ≈ 43, so ±250 fails only for a real bias. */
    for (int s = 0; s < STARTS; s++) assert_true(abs(counts[s] - DRAWS / STARTS) < 250);
    for (int s = STARTS; s < N; s++) assert_int_equal(counts[s], 0);
    lb_dataset_free(&ds);
}

static void test_batches_never_see_validation_text(void **state) {
    (void)state;
    char dir[512];
    tu_tmpdir(dir, sizeof dir, "batch-val");
    /* Validation (the last of four equal lines) is the only text with 'Z'. */
    write_text(dir, "d1", "abcabcab\nbcabcabc\ncabcabca\nZZZZZZZZ\n");
    write_text(dir, "d2", "cccbbbaa\naabbccab\nbacbacba\nZZZZZZZZ\n");
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, dir), LB_OK);
    lb_tokenizer *t = lb_tokenizer_build_char(c.text, c.len);
    assert_int_equal(t->vocab_size, 5); /* \n Z a b c, in code point order */
    const int z = 1;
    lb_dataset ds;
    assert_int_equal(lb_dataset_build(&ds, &c, t, 0.25), LB_OK);
    assert_int_equal(ds.n_val, 18);
    enum { B = 3, T = 6 };
    int in[B * T], tg[B * T];
    lb_batcher b;
    assert_int_equal(lb_batcher_init(&b, &ds, B, T, 5), LB_OK);
    for (int k = 0; k < 200; k++) {
        lb_batcher_next(&b, in, tg);
        for (int i = 0; i < B * T; i++) {
            assert_int_not_equal(in[i], z);
            assert_int_not_equal(tg[i], z);
        }
    }
    int nb = lb_val_batches_to_cover(&ds, B, T);
    assert_true(nb >= 1);
    for (int k = 0; k < nb; k++) {
        assert_int_equal(lb_val_batch(&ds, B, T, k, nb, in, tg), LB_OK);
        for (int i = 0; i < B * T; i++) assert_true(in[i] == z || in[i] == 0 /* '\n' */);
    }
    lb_dataset_free(&ds);
    lb_tokenizer_free(t);
    lb_corpus_free(&c);
}

static void test_validation_batches_fixed_and_covering(void **state) {
    (void)state;
    /* 103 validation tokens, T = 8: starts 0..94. Spacing ≤ 8 needs
     * N − 1 ≥ 94/8, so N = 13 windows, i.e. ceil(13/4) = 4 batches of 4. */
    enum { B = 4, T = 8, NV = 103 };
    lb_dataset ds = counting_dataset(50, NV);
    int nb = lb_val_batches_to_cover(&ds, B, T);
    assert_int_equal(nb, 4);

    int in[B * T], tg[B * T], in2[B * T], tg2[B * T];
    for (int n_batches = nb; n_batches >= nb - 1; n_batches--) {
        int is_target[NV] = {0}, prev_start = -1;
        for (int k = 0; k < n_batches; k++) {
            assert_int_equal(lb_val_batch(&ds, B, T, k, n_batches, in, tg), LB_OK);
            assert_int_equal(lb_val_batch(&ds, B, T, k, n_batches, in2, tg2), LB_OK);
            assert_memory_equal(in, in2, sizeof in); /* the same every time */
            assert_memory_equal(tg, tg2, sizeof tg);
            check_counting_batch(in, tg, B, T, NV);
            for (int b = 0; b < B; b++) {
                assert_true(in[b * T] >= prev_start); /* evenly spaced, in order */
                prev_start = in[b * T];
                if (k == 0 && b == 0) assert_int_equal(in[0], 0);
                for (int t = 0; t < T; t++) is_target[tg[b * T + t]] = 1;
            }
        }
        assert_int_equal(prev_start, NV - T - 1); /* the last window ends the split */
        int missed = 0;
        for (int i = 1; i < NV; i++) missed += !is_target[i];
        if (n_batches == nb) assert_int_equal(missed, 0);
        else assert_true(missed > 0); /* one batch fewer leaves a gap */
    }

    assert_int_equal(lb_val_batch(&ds, B, T, 4, 4, in, tg), LB_EINVAL);
    assert_int_equal(lb_val_batch(&ds, B, T, -1, 4, in, tg), LB_EINVAL);
    lb_dataset_free(&ds);

    lb_dataset short_val = counting_dataset(50, T);
    assert_int_equal(lb_val_batches_to_cover(&short_val, B, T), 0);
    assert_int_equal(lb_val_batch(&short_val, B, T, 0, 1, in, tg), LB_EINVAL);
    assert_error(LB_EINVAL, "validation split");
    lb_dataset_free(&short_val);
}

/* --- the real default corpus ---------------------------------------------------- */

static void test_fortunes_corpus(void **state) {
    (void)state;
    struct stat st;
    tu_require_dependency("fortunes", stat(LB_DEFAULT_CORPUS, &st) == 0 && S_ISDIR(st.st_mode),
                          "apt-get install fortunes: the corpus " LB_DEFAULT_CORPUS);
    lb_corpus c;
    assert_int_equal(lb_corpus_load_path(&c, LB_DEFAULT_CORPUS), LB_OK);
    /* Debian's fortunes: a few dozen files, ~2.5 MB of text, each with a .dat
     * index and a .u8 symlink that must be left out. */
    assert_true(c.n_docs >= 10);
    assert_true(c.len > 500 * 1000 && c.len < 50 * 1000 * 1000);
    assert_true(c.n_skipped >= 2 * c.n_docs);
    for (int i = 0; i < c.n_docs; i++) {
        const char *p = c.docs[i].path;
        size_t n = strlen(p);
        assert_false(n > 4 && strcmp(p + n - 4, ".dat") == 0);
        assert_false(n > 3 && strcmp(p + n - 3, ".u8") == 0);
        if (i > 0) assert_true(strcmp(c.docs[i - 1].path, p) < 0); /* sorted */
    }
    assert_null(memchr(c.text, '\0', c.len));
    assert_non_null(strstr(c.text, "\n%\n")); /* fortune separators */

    /* Char vocabulary: English text, well under a few hundred characters. */
    lb_tokenizer *t = lb_tokenizer_build_char(c.text, c.len);
    assert_non_null(t);
    assert_true(t->vocab_size >= 60 && t->vocab_size <= 400);
    assert_int_equal(round_trip(t, c.text, c.len) <= c.len, 1);

    lb_dataset ds;
    assert_int_equal(lb_dataset_build(&ds, &c, t, 0.05), LB_OK);
    double frac = (double)ds.n_val / (double)(ds.n_train + ds.n_val);
    assert_true(frac > 0.04 && frac < 0.07);
    char *head = decode_all(t, ds.train, 64);
    assert_memory_equal(head, c.text, 64); /* the first document's start, unchanged */
    free(head);

    lb_batcher b;
    enum { B = 8, T = 128 };
    static int in[B * T], tg[B * T];
    assert_int_equal(lb_batcher_init(&b, &ds, B, T, 1), LB_OK);
    lb_batcher_next(&b, in, tg);
    for (int i = 0; i < B * T; i++) assert_true(in[i] >= 0 && in[i] < t->vocab_size);
    lb_dataset_free(&ds);
    lb_tokenizer_free(t);
    lb_corpus_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_tokenizer_round_trip),
        cmocka_unit_test(test_char_tokenizer_vocabulary_and_round_trip),
        cmocka_unit_test(test_tokenizer_serialization),
        cmocka_unit_test(test_corpus_directory_rules),
        cmocka_unit_test(test_missing_path_names_it),
        cmocka_unit_test(test_split_disjoint_and_deterministic),
        cmocka_unit_test(test_split_without_newlines_keeps_characters_whole),
        cmocka_unit_test(test_batches_seeded_resumable_and_in_range),
        cmocka_unit_test(test_batch_offsets_cover_split_uniformly),
        cmocka_unit_test(test_batches_never_see_validation_text),
        cmocka_unit_test(test_validation_batches_fixed_and_covering),
        cmocka_unit_test(test_fortunes_corpus),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

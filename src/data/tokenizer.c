#include "data/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/bpe.h"
#include "data/corpus.h"
#include "data/hf_tokenizer.h"
#include "data/utf8.h"

#define LB_MAX_CODEPOINT 0x10FFFFu
#define LB_ESCAPE_BASE 0xDC00u   /* invalid byte b ↦ U+DC00 + b (b ≥ 0x80) */

/* --- UTF-8 with escapes (char tokenizer) -------------------------------------- */

/* Reads one character at s[0..n) (n ≥ 1) into *cp and returns its length in
 * bytes. A byte that does not begin a valid, shortest-form, non-surrogate
 * sequence is returned alone as an escape code point. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t k = lb_utf8_decode(s, n, cp, NULL);
    if (k) return k;
    *cp = LB_ESCAPE_BASE + s[0];
    return 1;
}

static int is_escape(uint32_t cp) { return cp >= LB_ESCAPE_BASE + 0x80 && cp <= LB_ESCAPE_BASE + 0xFF; }

/* Code points a char vocabulary may hold: Unicode scalar values and escapes. */
static int valid_vocab_codepoint(uint32_t cp) {
    if (cp > LB_MAX_CODEPOINT) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return is_escape(cp);
    return 1;
}

/* Writes the bytes of `cp` (an escape gives back its raw byte). */
static int utf8_put(uint32_t cp, char *out) {
    if (is_escape(cp)) {
        out[0] = (char)(unsigned char)(cp - LB_ESCAPE_BASE);
        return 1;
    }
    return lb_utf8_encode(cp, out);
}

/* --- construction ------------------------------------------------------------ */

const char *const lb_tokenizer_kind_names[] = {"byte", "char", "bpe", "hf"};
_Static_assert(sizeof lb_tokenizer_kind_names / sizeof lb_tokenizer_kind_names[0] == LB_TOKENIZER_COUNT &&
                   LB_TOKENIZER_BYTE == 0 && LB_TOKENIZER_CHAR == 1 && LB_TOKENIZER_BPE == 2 && LB_TOKENIZER_HF == 3,
               "lb_tokenizer_kind_names follows lb_tokenizer_kind");

const char *lb_tokenizer_kind_name(lb_tokenizer_kind kind) {
    return (unsigned)kind < LB_TOKENIZER_COUNT ? lb_tokenizer_kind_names[kind] : "unknown";
}

lb_status lb_tokenizer_kind_from_name(const char *name, lb_tokenizer_kind *kind) {
    for (int k = 0; name && k < LB_TOKENIZER_COUNT; k++)
        if (strcmp(name, lb_tokenizer_kind_names[k]) == 0) {
            *kind = (lb_tokenizer_kind)k;
            return LB_OK;
        }
    return lb_error(LB_ECONFIG, "tokenizer '%s': expected 'byte', 'char', 'bpe' or 'hf'", name ? name : "(null)");
}

lb_tokenizer *lb_tokenizer_byte(void) {
    lb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        lb_error(LB_ENOMEM, "byte tokenizer: out of memory");
        return NULL;
    }
    t->kind = LB_TOKENIZER_BYTE;
    t->vocab_size = 256;
    t->unk_id = -1;
    return t;
}

/* A char tokenizer owning `codepoints` (n entries, already validated). */
static lb_tokenizer *char_tokenizer(uint32_t *codepoints, int n) {
    lb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(codepoints);
        lb_error(LB_ENOMEM, "char tokenizer: out of memory");
        return NULL;
    }
    t->kind = LB_TOKENIZER_CHAR;
    t->vocab_size = n;
    t->codepoints = codepoints;
    t->unk_id = -1;
    return t;
}

lb_tokenizer *lb_tokenizer_build_char(const char *text, size_t len) {
    if (!text || len == 0) {
        lb_error(LB_EINVAL, "char tokenizer: cannot build a vocabulary from empty text");
        return NULL;
    }
    /* One bit per code point (136 KiB): marking then scanning in order gives
     * the sorted set without a sort. */
    size_t n_words = (LB_MAX_CODEPOINT + 1) / 64;
    uint64_t *seen = calloc(n_words, sizeof *seen);
    if (!seen) {
        lb_error(LB_ENOMEM, "char tokenizer: out of memory");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_next(s + i, len - i, &cp);
        seen[cp >> 6] |= 1ull << (cp & 63);
    }
    int n = 0;
    for (size_t w = 0; w < n_words; w++) n += __builtin_popcountll(seen[w]);
    uint32_t *cps = malloc((size_t)n * sizeof *cps);
    if (!cps) {
        free(seen);
        lb_error(LB_ENOMEM, "char tokenizer: out of memory");
        return NULL;
    }
    int k = 0;
    for (size_t w = 0; w < n_words; w++)
        for (uint64_t bits = seen[w]; bits; bits &= bits - 1)
            cps[k++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(bits));
    free(seen);
    return char_tokenizer(cps, n);
}

lb_tokenizer *lb_tokenizer_from_json(const char *json, size_t len, const char *name, lb_tokenizer_kind kind) {
    lb_tokenizer *t = calloc(1, sizeof *t);
    char *copy = malloc(len + 1);
    if (!t || !copy) {
        free(t);
        free(copy);
        lb_error(LB_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    t->kind = kind;
    t->unk_id = -1;
    t->json = copy;
    t->json_len = len;
    if (!(t->hf = lb_hf_from_json(copy, len, name))) {
        lb_tokenizer_free(t);
        return NULL;
    }
    t->vocab_size = t->hf->vocab_size;
    return t;
}

lb_tokenizer *lb_tokenizer_load_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lb_error(LB_EIO, "tokenizer '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 1 << 20;
            char *p = realloc(text, cap);
            if (!p) {
                free(text);
                fclose(f);
                lb_error(LB_ENOMEM, "tokenizer '%s': out of memory", path);
                return NULL;
            }
            text = p;
        }
        size_t k = fread(text + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        lb_error(LB_EIO, "tokenizer '%s': read error", path);
        return NULL;
    }
    lb_tokenizer *t = lb_tokenizer_from_json(text, len, path, LB_TOKENIZER_HF);
    free(text);
    return t;
}

lb_status lb_tokenizer_save_json(const lb_tokenizer *t, const char *path) {
    if (!t->json) return lb_error(LB_EINVAL, "%s tokenizer: has no tokenizer.json", lb_tokenizer_kind_name(t->kind));
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return lb_error(LB_EINVAL, "tokenizer.json path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return lb_error(LB_EIO, "cannot create '%s': %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < t->json_len) {
        ssize_t k = write(fd, t->json + done, t->json_len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    int ok = done == t->json_len && fsync(fd) == 0;
    int err = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        err = ok ? errno : err;
        unlink(tmp);
        return lb_error(LB_EIO, "cannot write '%s': %s", path, strerror(err));
    }
    return LB_OK;
}

lb_tokenizer *lb_tokenizer_for_corpus(const lb_tokenizer_options *o, const struct lb_corpus *c) {
    switch (o->kind) {
    case LB_TOKENIZER_BYTE: return lb_tokenizer_byte();
    case LB_TOKENIZER_CHAR: return lb_tokenizer_build_char(c->text, c->len);
    case LB_TOKENIZER_BPE: return lb_tokenizer_train_bpe(c, o->vocab_size);
    case LB_TOKENIZER_HF:
        if (!o->path || !o->path[0]) {
            lb_error(LB_ECONFIG, "key 'data.tokenizer_path': the hf tokenizer needs a tokenizer.json");
            return NULL;
        }
        return lb_tokenizer_load_json(o->path);
    }
    lb_error(LB_EINVAL, "tokenizer kind %d is unknown", (int)o->kind);
    return NULL;
}

void lb_tokenizer_free(lb_tokenizer *t) {
    if (!t) return;
    free(t->codepoints);
    lb_hf_free(t->hf);
    free(t->json);
    free(t);
}

/* --- encode / decode --------------------------------------------------------- */

/* Index of cp in the sorted vocabulary, or -1. */
static int char_id(const lb_tokenizer *t, uint32_t cp) {
    int lo = 0, hi = t->vocab_size - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        uint32_t v = t->codepoints[mid];
        if (v == cp) return mid;
        if (v < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static lb_status reserve_ids(lb_ids *out, size_t extra) {
    if (out->n + extra <= out->cap) return LB_OK;
    size_t cap = out->n + extra > 2 * out->cap ? out->n + extra : 2 * out->cap;
    int *v = realloc(out->v, cap * sizeof *v);
    if (!v) return lb_error(LB_ENOMEM, "tokenizer: out of memory for %zu ids", cap);
    out->v = v, out->cap = cap;
    return LB_OK;
}

static lb_status encode_char(const lb_tokenizer *t, const char *text, size_t len, lb_ids *out) {
    const unsigned char *s = (const unsigned char *)text;
    if (t->unk_id < -1 || t->unk_id >= t->vocab_size)
        return lb_error(LB_EINVAL, "char tokenizer: unk_id %d outside -1..%d", t->unk_id, t->vocab_size - 1);
    LB_TRY(reserve_ids(out, len));
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t step = utf8_next(s + i, len - i, &cp);
        int id = char_id(t, cp);
        if (id < 0) {
            if (t->unk_id < 0) {
                if (is_escape(cp))
                    return lb_error(LB_EINVAL, "char tokenizer: byte 0x%02X (not valid UTF-8) at byte offset %zu "
                                    "is not in the vocabulary of %d characters",
                                    (unsigned)(cp - LB_ESCAPE_BASE), i, t->vocab_size);
                return lb_error(LB_EINVAL, "char tokenizer: character U+%04X at byte offset %zu is not in the "
                                "vocabulary of %d characters", (unsigned)cp, i, t->vocab_size);
            }
            id = t->unk_id;
        }
        out->v[out->n++] = id;
        i += step;
    }
    return LB_OK;
}

lb_status lb_tokenizer_encode_append(const lb_tokenizer *t, const char *text, size_t len, unsigned flags, lb_ids *out) {
    switch (t->kind) {
    case LB_TOKENIZER_BYTE:
        LB_TRY(reserve_ids(out, len));
        for (size_t i = 0; i < len; i++) out->v[out->n++] = (unsigned char)text[i];
        return LB_OK;
    case LB_TOKENIZER_CHAR:
        return encode_char(t, text, len, out);
    case LB_TOKENIZER_BPE:
    case LB_TOKENIZER_HF:
        return lb_hf_encode(t->hf, text, len, (flags & LB_ENCODE_ADD_SPECIAL) != 0, out);
    }
    return lb_error(LB_EINVAL, "tokenizer kind %d is unknown", (int)t->kind);
}

lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, int *ids, size_t *n_ids) {
    *n_ids = 0;
    lb_ids out = {0};
    lb_status s = lb_tokenizer_encode_append(t, text, len, 0, &out);
    if (s == LB_OK && out.n > len)
        s = lb_error(LB_EINVAL, "%s tokenizer: %zu bytes encode to %zu ids, more than the %zu the caller has room "
                     "for (use lb_tokenizer_encode_append)", lb_tokenizer_kind_name(t->kind), len, out.n, len);
    if (s == LB_OK) {
        if (out.n) memcpy(ids, out.v, out.n * sizeof *ids);
        *n_ids = out.n;
    }
    lb_ids_free(&out);
    return s;
}

char *lb_tokenizer_decode_opts(const lb_tokenizer *t, const int *ids, size_t n, unsigned flags, size_t *out_len) {
    if (t->hf) return lb_hf_decode(t->hf, ids, n, (flags & LB_DECODE_SKIP_SPECIAL) != 0, out_len);
    /* Each token is at most 4 bytes; the exact size is found first so a long
     * decode does not hold four times its memory. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) {
            lb_error(LB_EINVAL, "%s tokenizer: id %d at position %zu is outside the vocabulary 0..%d",
                     lb_tokenizer_kind_name(t->kind), ids[i], i, t->vocab_size - 1);
            return NULL;
        }
        char tmp[4];
        total += t->kind == LB_TOKENIZER_BYTE ? 1 : (size_t)utf8_put(t->codepoints[ids[i]], tmp);
    }
    char *out = malloc(total + 1);
    if (!out) {
        lb_error(LB_ENOMEM, "tokenizer: out of memory decoding %zu tokens", n);
        return NULL;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->kind == LB_TOKENIZER_BYTE) out[pos++] = (char)(unsigned char)ids[i];
        else pos += (size_t)utf8_put(t->codepoints[ids[i]], out + pos);
    }
    out[pos] = '\0';
    if (out_len) *out_len = pos;
    return out;
}

char *lb_tokenizer_decode(const lb_tokenizer *t, const int *ids, size_t n, size_t *out_len) {
    return lb_tokenizer_decode_opts(t, ids, n, 0, out_len);
}

/* --- streaming (tokenizer/mod.rs step_decode_stream) ------------------------------ */

void lb_decode_stream_init(lb_decode_stream *s, const lb_tokenizer *t, unsigned flags) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->flags = flags;
}

void lb_decode_stream_free(lb_decode_stream *s) {
    lb_ids_free(&s->ids);
    free(s->prefix);
    free(s->text);
    memset(s, 0, sizeof *s);
}

static int ends_with_replacement(const char *s, size_t n) {
    return n >= 3 && memcmp(s + n - 3, LB_UTF8_REPLACEMENT, 3) == 0;
}

lb_status lb_decode_stream_step(lb_decode_stream *s, int id, const char **text, size_t *len) {
    *text = "", *len = 0;
    if (s->prefix_len == 0 && s->ids.n > 0) {
        size_t n;
        char *p = lb_tokenizer_decode_opts(s->t, s->ids.v, s->ids.n, s->flags, &n);
        if (!p) return lb_errcode();
        if (!ends_with_replacement(p, n)) {
            free(s->prefix);
            s->prefix = p, s->prefix_len = n, s->prefix_index = s->ids.n;
        } else {
            free(p);
        }
    }
    LB_TRY(lb_ids_push(&s->ids, id));
    size_t n;
    char *all = lb_tokenizer_decode_opts(s->t, s->ids.v, s->ids.n, s->flags, &n);
    if (!all) return lb_errcode();
    if (n <= s->prefix_len || ends_with_replacement(all, n)) {
        free(all);
        return LB_OK;
    }
    if (s->prefix_len && memcmp(all, s->prefix, s->prefix_len) != 0) {
        free(all);
        return lb_error(LB_EINVAL, "decode stream: the decoding of the ids so far no longer starts with the text "
                        "already given (token id %d)", id);
    }
    /* Keep the ids after the previous prefix: they decode to what follows. */
    size_t old_len = s->prefix_len, keep_from = s->prefix_index, new_index = s->ids.n - s->prefix_index;
    memmove(s->ids.v, s->ids.v + keep_from, (s->ids.n - keep_from) * sizeof *s->ids.v);
    s->ids.n -= keep_from;
    free(s->text);
    s->text = all;
    char *p = lb_tokenizer_decode_opts(s->t, s->ids.v, s->ids.n, s->flags, &s->prefix_len);
    if (!p) {
        s->prefix_len = 0;
        return lb_errcode();
    }
    free(s->prefix);
    s->prefix = p;
    s->prefix_index = new_index;
    *text = s->text + old_len;
    *len = n - old_len;
    return LB_OK;
}

void lb_ids_free(lb_ids *ids) {
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

/* --- serialisation ----------------------------------------------------------- */

enum { LB_TOKENIZER_FORMAT_VERSION = 1, LB_TOKENIZER_HEADER = 16 };

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint8_t *lb_tokenizer_to_bytes(const lb_tokenizer *t, size_t *size) {
    size_t body = t->kind == LB_TOKENIZER_CHAR ? 4 * (size_t)t->vocab_size : t->json ? t->json_len : 0;
    uint8_t *b = malloc(LB_TOKENIZER_HEADER + body);
    if (!b) {
        lb_error(LB_ENOMEM, "tokenizer: out of memory serialising");
        return NULL;
    }
    memcpy(b, "LBTK", 4);
    put_u32(b + 4, LB_TOKENIZER_FORMAT_VERSION);
    put_u32(b + 8, (uint32_t)t->kind);
    put_u32(b + 12, (uint32_t)t->vocab_size);
    if (t->kind == LB_TOKENIZER_CHAR)
        for (int i = 0; i < t->vocab_size; i++) put_u32(b + LB_TOKENIZER_HEADER + 4 * (size_t)i, t->codepoints[i]);
    else if (body)
        memcpy(b + LB_TOKENIZER_HEADER, t->json, body);
    *size = LB_TOKENIZER_HEADER + body;
    return b;
}

static lb_tokenizer *char_from_bytes(const uint8_t *b, size_t size, uint32_t vocab) {
    /* A vocabulary can hold at most every scalar value plus 128 escapes. */
    if (vocab == 0 || vocab > LB_MAX_CODEPOINT + 1 || size != LB_TOKENIZER_HEADER + 4 * (size_t)vocab) {
        lb_error(LB_EFORMAT, "serialised char tokenizer: vocab %u in %zu bytes, expected 1..%u code points "
                 "in %d + 4·vocab bytes", vocab, size, LB_MAX_CODEPOINT + 1, LB_TOKENIZER_HEADER);
        return NULL;
    }
    uint32_t *cps = malloc((size_t)vocab * sizeof *cps);
    if (!cps) {
        lb_error(LB_ENOMEM, "serialised char tokenizer: out of memory");
        return NULL;
    }
    for (uint32_t i = 0; i < vocab; i++) {
        uint32_t cp = get_u32(b + LB_TOKENIZER_HEADER + 4 * (size_t)i);
        if (!valid_vocab_codepoint(cp) || (i > 0 && cp <= cps[i - 1])) {
            lb_error(LB_EFORMAT, "serialised char tokenizer: entry %u is 0x%X, expected a code point above the "
                     "previous one, not a surrogate", i, cp);
            free(cps);
            return NULL;
        }
        cps[i] = cp;
    }
    return char_tokenizer(cps, (int)vocab);
}

lb_tokenizer *lb_tokenizer_from_bytes(const uint8_t *b, size_t size) {
    if (!b || size < LB_TOKENIZER_HEADER) {
        lb_error(LB_EFORMAT, "serialised tokenizer: %zu bytes, expected at least a %d-byte header", b ? size : 0,
                 LB_TOKENIZER_HEADER);
        return NULL;
    }
    if (memcmp(b, "LBTK", 4) != 0) {
        lb_error(LB_EFORMAT, "serialised tokenizer: expected magic 'LBTK'");
        return NULL;
    }
    uint32_t version = get_u32(b + 4), kind = get_u32(b + 8), vocab = get_u32(b + 12);
    if (version != LB_TOKENIZER_FORMAT_VERSION) {
        lb_error(LB_EFORMAT, "serialised tokenizer: version %u, expected %d", version, LB_TOKENIZER_FORMAT_VERSION);
        return NULL;
    }
    switch (kind) {
    case LB_TOKENIZER_BYTE:
        if (vocab != 256 || size != LB_TOKENIZER_HEADER) {
            lb_error(LB_EFORMAT, "serialised byte tokenizer: vocab %u in %zu bytes, expected 256 in %d", vocab, size,
                     LB_TOKENIZER_HEADER);
            return NULL;
        }
        return lb_tokenizer_byte();
    case LB_TOKENIZER_CHAR:
        return char_from_bytes(b, size, vocab);
    case LB_TOKENIZER_BPE:
    case LB_TOKENIZER_HF: {
        lb_tokenizer *t = lb_tokenizer_from_json((const char *)b + LB_TOKENIZER_HEADER, size - LB_TOKENIZER_HEADER,
                                                 "serialised tokenizer.json", (lb_tokenizer_kind)kind);
        if (t && (uint32_t)t->vocab_size != vocab) {
            lb_error(LB_EFORMAT, "serialised %s tokenizer: its tokenizer.json has %d ids, the header says %u",
                     lb_tokenizer_kind_name(t->kind), t->vocab_size, vocab);
            lb_tokenizer_free(t);
            return NULL;
        }
        return t;
    }
    }
    lb_error(LB_EFORMAT, "serialised tokenizer: kind %u, expected 0 (byte), 1 (char), 2 (bpe) or 3 (hf)", kind);
    return NULL;
}

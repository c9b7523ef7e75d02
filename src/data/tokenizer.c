#include "data/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#define LB_MAX_CODEPOINT 0x10FFFFu
#define LB_ESCAPE_BASE 0xDC00u   /* invalid byte b ↦ U+DC00 + b (b ≥ 0x80) */

/* --- UTF-8 ------------------------------------------------------------------ */

/* Reads one character at s[0..n) (n ≥ 1) into *cp and returns its length in
 * bytes. A byte that does not begin a valid, shortest-form, non-surrogate
 * sequence is returned alone as an escape code point. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2, c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;      /* no overlong forms */
        if (b == 0xED) hi = 0x9F;      /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;      /* nothing above U+10FFFF */
    } else {
        *cp = LB_ESCAPE_BASE + b;
        return 1;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        *cp = LB_ESCAPE_BASE + b;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = LB_ESCAPE_BASE + b;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
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
    unsigned char *o = (unsigned char *)out;
    if (is_escape(cp)) {
        o[0] = (unsigned char)(cp - LB_ESCAPE_BASE);
        return 1;
    }
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* --- construction ------------------------------------------------------------ */

const char *lb_tokenizer_kind_name(lb_tokenizer_kind kind) {
    switch (kind) {
    case LB_TOKENIZER_BYTE: return "byte";
    case LB_TOKENIZER_CHAR: return "char";
    }
    return "unknown";
}

lb_status lb_tokenizer_kind_from_name(const char *name, lb_tokenizer_kind *kind) {
    if (name && strcmp(name, "byte") == 0) {
        *kind = LB_TOKENIZER_BYTE;
        return LB_OK;
    }
    if (name && strcmp(name, "char") == 0) {
        *kind = LB_TOKENIZER_CHAR;
        return LB_OK;
    }
    return lb_error(LB_ECONFIG, "tokenizer '%s': expected 'byte' or 'char'", name ? name : "(null)");
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

void lb_tokenizer_free(lb_tokenizer *t) {
    if (!t) return;
    free(t->codepoints);
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

lb_status lb_tokenizer_encode(const lb_tokenizer *t, const char *text, size_t len, int *ids, size_t *n_ids) {
    const unsigned char *s = (const unsigned char *)text;
    *n_ids = 0;
    if (t->kind == LB_TOKENIZER_BYTE) {
        for (size_t i = 0; i < len; i++) ids[i] = s[i];
        *n_ids = len;
        return LB_OK;
    }
    if (t->unk_id < -1 || t->unk_id >= t->vocab_size)
        return lb_error(LB_EINVAL, "char tokenizer: unk_id %d outside -1..%d", t->unk_id, t->vocab_size - 1);
    size_t n = 0;
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
        ids[n++] = id;
        i += step;
    }
    *n_ids = n;
    return LB_OK;
}

int lb_tokenizer_token_bytes(const lb_tokenizer *t, int id, char out[4]) {
    if (id < 0 || id >= t->vocab_size) return 0;
    if (t->kind == LB_TOKENIZER_BYTE) {
        out[0] = (char)(unsigned char)id;
        return 1;
    }
    return utf8_put(t->codepoints[id], out);
}

char *lb_tokenizer_decode(const lb_tokenizer *t, const int *ids, size_t n, size_t *out_len) {
    /* Each token is at most 4 bytes; the exact size is found first so a long
     * decode does not hold four times its memory. */
    size_t total = 0;
    char tmp[4];
    for (size_t i = 0; i < n; i++) {
        int k = lb_tokenizer_token_bytes(t, ids[i], tmp);
        if (k == 0) {
            lb_error(LB_EINVAL, "%s tokenizer: id %d at position %zu is outside the vocabulary 0..%d",
                     lb_tokenizer_kind_name(t->kind), ids[i], i, t->vocab_size - 1);
            return NULL;
        }
        total += (size_t)k;
    }
    char *out = malloc(total + 1);
    if (!out) {
        lb_error(LB_ENOMEM, "tokenizer: out of memory decoding %zu tokens", n);
        return NULL;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) pos += (size_t)lb_tokenizer_token_bytes(t, ids[i], out + pos);
    out[pos] = '\0';
    if (out_len) *out_len = pos;
    return out;
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
    size_t n_cps = t->kind == LB_TOKENIZER_CHAR ? (size_t)t->vocab_size : 0;
    size_t total = LB_TOKENIZER_HEADER + 4 * n_cps;
    uint8_t *b = malloc(total);
    if (!b) {
        lb_error(LB_ENOMEM, "tokenizer: out of memory serialising");
        return NULL;
    }
    memcpy(b, "LBTK", 4);
    put_u32(b + 4, LB_TOKENIZER_FORMAT_VERSION);
    put_u32(b + 8, (uint32_t)t->kind);
    put_u32(b + 12, (uint32_t)t->vocab_size);
    for (size_t i = 0; i < n_cps; i++) put_u32(b + LB_TOKENIZER_HEADER + 4 * i, t->codepoints[i]);
    *size = total;
    return b;
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
    if (kind == LB_TOKENIZER_BYTE) {
        if (vocab != 256 || size != LB_TOKENIZER_HEADER) {
            lb_error(LB_EFORMAT, "serialised byte tokenizer: vocab %u in %zu bytes, expected 256 in %d", vocab, size,
                     LB_TOKENIZER_HEADER);
            return NULL;
        }
        return lb_tokenizer_byte();
    }
    if (kind != LB_TOKENIZER_CHAR) {
        lb_error(LB_EFORMAT, "serialised tokenizer: kind %u, expected 0 (byte) or 1 (char)", kind);
        return NULL;
    }
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

#define _GNU_SOURCE /* memmem */
#include "data/pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/utf8.h"

struct lb_pattern {
    pcre2_code *code;  /* a regex, or NULL for a literal */
    char *literal;
    size_t literal_len;
};

/* ---- pieces ------------------------------------------------------------------- */

lb_status lb_pieces_push(lb_pieces *ps, size_t start, size_t end, int match) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 64;
        lb_piece *v = realloc(ps->v, cap * sizeof *v);
        if (!v) return lb_error(LB_ENOMEM, "pattern: out of memory");
        ps->v = v, ps->cap = cap;
    }
    ps->v[ps->n++] = (lb_piece){start, end, match};
    return LB_OK;
}

void lb_pieces_free(lb_pieces *ps) {
    free(ps->v);
    memset(ps, 0, sizeof *ps);
}

void lb_match_scratch_free(lb_match_scratch *ms) {
    if (ms->match_data) pcre2_match_data_free(ms->match_data);
    if (ms->match_context) pcre2_match_context_free(ms->match_context);
    if (ms->jit_stack) pcre2_jit_stack_free(ms->jit_stack);
    memset(ms, 0, sizeof *ms);
}

/* ---- Ruby syntax → PCRE2 ---------------------------------------------------------- */

/* Onig's Unicode \s is the White_Space property; PCRE2's adds U+180E. */
#define WS_SET "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
/* Onig's Unicode \w: Letter, Mark, Decimal_Number, Connector_Punctuation. */
#define WORD_SET "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"
#define HEX_SET "0-9a-fA-F" /* Ruby's \h */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static lb_pattern *untranslatable(sbuf *b, const char *where, const char *src, size_t at, const char *what) {
    free(b->p);
    lb_error(LB_EFORMAT, "%s: regex \"%s\": %s at offset %zu is not supported (its meaning differs between the "
             "Oniguruma syntax of tokenizer.json and PCRE2)", where, src, what, at);
    return NULL;
}

lb_pattern *lb_pattern_regex(const char *src, size_t len, const char *where) {
    sbuf b = {0};
    int in_class = 0;
    sb_add(&b, "", 0);
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < len) {
            char e = src[++i];
            const char *set = e == 's' || e == 'S' ? WS_SET : e == 'w' || e == 'W' ? WORD_SET
                            : e == 'h' || e == 'H' ? HEX_SET : NULL;
            int negated = e == 'S' || e == 'W' || e == 'H';
            if (set && in_class) {
                if (negated) return untranslatable(&b, where, src, i - 1, "a negated class escape inside [...]");
                sb_str(&b, set);
            } else if (set) {
                sb_str(&b, negated ? "[^" : "[");
                sb_str(&b, set);
                sb_str(&b, "]");
            } else if ((e == 'b' || e == 'B') && !in_class) {
                return untranslatable(&b, where, src, i - 1, "a word boundary (\\b, \\B)");
            } else if (e == 'u' && i + 4 < len) {
                sb_str(&b, "\\x{");
                sb_add(&b, src + i + 1, 4);
                sb_str(&b, "}");
                i += 4;
            } else {
                sb_add(&b, src + i - 1, 2);
            }
        } else if (c == '[' && in_class) {
            return untranslatable(&b, where, src, i, "a nested class or POSIX bracket");
        } else if (c == '[') {
            in_class = 1;
            sb_add(&b, "[", 1);
            if (i + 1 < len && src[i + 1] == '^') sb_add(&b, &src[++i], 1);
            if (i + 1 < len && src[i + 1] == ']') sb_add(&b, &src[++i], 1); /* a leading ] is literal */
        } else if (c == ']' && in_class) {
            in_class = 0;
            sb_add(&b, "]", 1);
        } else if (c == '&' && in_class && i + 1 < len && src[i + 1] == '&') {
            return untranslatable(&b, where, src, i, "class intersection (&&)");
        } else if (c == '(' && !in_class && i + 2 < len && src[i + 1] == '?' &&
                   strchr("imx-", src[i + 2]) != NULL) {
            /* Inline options: Ruby's m is PCRE2's s (dot matches newline). */
            sb_add(&b, "(?", 2);
            for (i += 2; i < len && strchr("imx-", src[i]); i++) sb_add(&b, src[i] == 'm' ? "s" : &src[i], 1);
            i--;
        } else {
            sb_add(&b, &c, 1);
        }
    }
    if (b.oom) {
        free(b.p);
        lb_error(LB_ENOMEM, "%s: out of memory", where);
        return NULL;
    }
    int err;
    PCRE2_SIZE at;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)b.p, b.n, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &at, NULL);
    free(b.p);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        lb_error(LB_EFORMAT, "%s: regex \"%.*s\" does not compile: %s", where, (int)len, src, (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* when JIT is unavailable, matching interprets */
    lb_pattern *p = calloc(1, sizeof *p);
    if (!p) {
        pcre2_code_free(code);
        lb_error(LB_ENOMEM, "%s: out of memory", where);
        return NULL;
    }
    p->code = code;
    return p;
}

lb_pattern *lb_pattern_literal(const char *s, size_t len, const char *where) {
    if (len == 0) {
        lb_error(LB_EFORMAT, "%s: an empty pattern is not supported", where);
        return NULL;
    }
    lb_pattern *p = calloc(1, sizeof *p);
    char *lit = malloc(len);
    if (!p || !lit) {
        free(p);
        free(lit);
        lb_error(LB_ENOMEM, "%s: out of memory", where);
        return NULL;
    }
    memcpy(lit, s, len);
    p->literal = lit;
    p->literal_len = len;
    return p;
}

void lb_pattern_free(lb_pattern *p) {
    if (!p) return;
    if (p->code) pcre2_code_free(p->code);
    free(p->literal);
    free(p);
}

/* ---- matching ----------------------------------------------------------------- */

/* The next match of the regex in s at or after `from`: 1 with [*ms_, *me), 0
 * when there is none. */
static int regex_next(const lb_pattern *p, lb_match_scratch *ms, const char *s, size_t n, size_t from, size_t *ms_,
                      size_t *me, lb_status *st) {
    for (;;) {
        int rc = pcre2_match(p->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, ms->match_data, ms->match_context);
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ms->match_data);
            *ms_ = ov[0], *me = ov[1];
            return 1;
        }
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !ms->jit_stack) {
            /* The default JIT stack (32 KiB on the machine stack) is too small
             * for this text: retry with one on the heap. */
            ms->jit_stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, NULL);
            ms->match_context = pcre2_match_context_create(NULL);
            if (ms->jit_stack && ms->match_context) {
                pcre2_jit_stack_assign(ms->match_context, NULL, ms->jit_stack);
                continue;
            }
        }
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        *st = lb_error(LB_EINVAL, "regex matching failed at byte %zu of a %zu-byte text: %s", from, n, (const char *)msg);
        return -1;
    }
}

void lb_pattern_iter_init(lb_pattern_iter *it, const lb_pattern *p, lb_match_scratch *ms, const char *s, size_t n) {
    memset(it, 0, sizeof *it);
    it->p = p, it->ms = ms, it->s = s, it->n = n;
}

/* The next match [*a, *e): 1, or 0 when there is none, -1 on error. */
static int next_match(lb_pattern_iter *it, size_t *a, size_t *e) {
    const lb_pattern *p = it->p;
    if (p->literal) {
        /* Leftmost non-overlapping occurrences, as the escaped literal regex finds them. */
        if (it->last_end > it->n || it->n - it->last_end < p->literal_len) return 0;
        const char *hit = memmem(it->s + it->last_end, it->n - it->last_end, p->literal, p->literal_len);
        if (!hit) return 0;
        *a = (size_t)(hit - it->s), *e = *a + p->literal_len;
        it->last_end = *e;
        return 1;
    }
    lb_match_scratch *ms = it->ms;
    if (!ms->match_data && !(ms->match_data = pcre2_match_data_create(1, NULL))) {
        lb_error(LB_ENOMEM, "pattern: out of memory");
        return -1;
    }
    while (it->last_end <= it->n) {
        lb_status st = LB_OK;
        int found = regex_next(p, ms, it->s, it->n, it->last_end, a, e, &st);
        if (found <= 0) return found;
        it->last_end = *e;
        if (*a != *e) {
            it->skip_next_empty = 1;
            return 1;
        }
        /* An empty match: step over one character; the first empty match
         * after a non-empty one is dropped (the onig crate's find_iter). */
        it->last_end += *e < it->n ? lb_utf8_char_len((unsigned char)it->s[*e]) : 1;
        if (!it->skip_next_empty) return 1;
        it->skip_next_empty = 0;
    }
    return 0;
}

int lb_pattern_next(lb_pattern_iter *it, lb_piece *out) {
    if (it->has_queued) {
        *out = it->queued;
        it->has_queued = 0;
        return 1;
    }
    if (it->done) return 0;
    if (it->n == 0) {
        it->done = 1;
        *out = (lb_piece){0, 0, 0};
        return 1;
    }
    size_t a, e;
    int r = next_match(it, &a, &e);
    if (r < 0) return -1;
    if (r == 0) {
        it->done = 1;
        if (it->prev == it->n) return 0;
        *out = (lb_piece){it->prev, it->n, 0};
        it->prev = it->n;
        return 1;
    }
    lb_piece m = {a, e, 1};
    if (it->prev != a) {
        *out = (lb_piece){it->prev, a, 0};
        it->queued = m;
        it->has_queued = 1;
    } else {
        *out = m;
    }
    it->prev = e;
    return 1;
}

lb_status lb_pattern_find(const lb_pattern *p, lb_match_scratch *ms, const char *s, size_t n, lb_pieces *out) {
    out->n = 0;
    lb_pattern_iter it;
    lb_pattern_iter_init(&it, p, ms, s, n);
    lb_piece piece;
    int r;
    while ((r = lb_pattern_next(&it, &piece)) > 0) LB_TRY(lb_pieces_push(out, piece.start, piece.end, piece.match));
    return r < 0 ? lb_errcode() : LB_OK;
}

/* Patterns of tokenizer.json (Split and Replace): a regular expression or a
 * literal string, matched as the Hugging Face tokenizers library matches them.
 *
 * The library compiles its regexes with Oniguruma (Ruby syntax); lowbit uses
 * PCRE2 with UTF and UCP. lb_pattern_regex translates the Ruby-syntax classes
 * whose meaning differs — \s (Unicode White_Space, which PCRE2 widens by
 * U+180E), \w (letters, marks, decimal digits, connector punctuation), \h (a
 * hex digit in Ruby) — and fails, naming the construct, on what it cannot
 * translate (\b, \B, nested classes, class intersection, \S or \W inside a
 * class). ^ and $ match at line boundaries, as in Ruby.
 *
 * lb_pattern_find splits text into pieces covering it, each a match or not,
 * with the iteration rules of the onig crate's find_iter: after a non-empty
 * match, one empty match is skipped. */
#ifndef LOWBIT_DATA_PATTERN_H
#define LOWBIT_DATA_PATTERN_H

#include <stddef.h>

#include "core/error.h"

typedef struct lb_pattern lb_pattern;

/* A piece of text: bytes [start, end) and whether the pattern matched it. */
typedef struct lb_piece {
    size_t start, end;
    int match;
} lb_piece;

typedef struct lb_pieces {
    lb_piece *v;
    size_t n, cap;
} lb_pieces;

/* Per-thread matching state (PCRE2 match data, a JIT stack when needed);
 * zero-initialise, release with lb_match_scratch_free. */
typedef struct lb_match_scratch {
    void *match_data;
    void *match_context;
    void *jit_stack;
} lb_match_scratch;

/* NULL with LB_EFORMAT naming `where` (e.g. "tokenizer.json: pre_tokenizer.pattern.Regex")
 * when the pattern does not compile or uses what cannot be translated. */
lb_pattern *lb_pattern_regex(const char *src, size_t len, const char *where);
/* A literal (the "String" patterns); NULL with LB_EFORMAT when empty. */
lb_pattern *lb_pattern_literal(const char *s, size_t len, const char *where);
void lb_pattern_free(lb_pattern *p);

/* The pieces of s[0..n) (valid UTF-8) one at a time, in order, covering the
 * text; empty text gives one empty non-matching piece, as the library does:
 *     lb_pattern_iter it;
 *     lb_pattern_iter_init(&it, p, ms, s, n);
 *     while ((r = lb_pattern_next(&it, &piece)) > 0) ...
 * lb_pattern_next returns 1 with a piece, 0 at the end, -1 with the error
 * recorded when the regex engine gives up (match or JIT-stack limit). */
typedef struct lb_pattern_iter {
    const lb_pattern *p;
    lb_match_scratch *ms;
    const char *s;
    size_t n;
    size_t prev;          /* end of the last piece given */
    size_t last_end;      /* where the next search starts */
    int skip_next_empty;
    int done;
    lb_piece queued;      /* a match waiting behind the gap before it */
    int has_queued;
} lb_pattern_iter;

void lb_pattern_iter_init(lb_pattern_iter *it, const lb_pattern *p, lb_match_scratch *ms, const char *s, size_t n);
int lb_pattern_next(lb_pattern_iter *it, lb_piece *out);

/* All pieces at once, into *out (cleared first). */
lb_status lb_pattern_find(const lb_pattern *p, lb_match_scratch *ms, const char *s, size_t n, lb_pieces *out);

/* Appends one piece, growing the array. */
lb_status lb_pieces_push(lb_pieces *ps, size_t start, size_t end, int match);
void lb_pieces_free(lb_pieces *ps);
void lb_match_scratch_free(lb_match_scratch *ms);

#endif

/* Encoding and decoding with a loaded tokenizer.json pipeline (see
 * hf_tokenizer.h; loading is in tokenizer_json.c). */
#include "data/hf_tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/utf8.h"

/* ---- GPT-2's byte ↔ character table ---------------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the others, in byte order,
 * for U+0100 upwards. */
uint32_t lb_byte_level_char(unsigned char b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    uint32_t n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) n++;
    return 256 + n;
}

typedef struct byte_level_table {
    char utf8[256][2];  /* each byte's character, 1 or 2 bytes of UTF-8 */
    unsigned char len[256];
    int16_t byte_of[324]; /* character (below U+0144) → byte, or -1 */
} byte_level_table;

static byte_level_table byte_level;

static void byte_level_init_once(void) {
    for (int c = 0; c < 324; c++) byte_level.byte_of[c] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t c = lb_byte_level_char((unsigned char)b);
        byte_level.len[b] = (unsigned char)lb_utf8_encode(c, byte_level.utf8[b]);
        byte_level.byte_of[c] = (int16_t)b;
    }
}

#include <pthread.h>
static pthread_once_t byte_level_once = PTHREAD_ONCE_INIT;
static const byte_level_table *byte_level_get(void) {
    pthread_once(&byte_level_once, byte_level_init_once);
    return &byte_level;
}

/* ---- growable buffers -------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static lb_status buf_reserve(buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return LB_OK;
    size_t cap = 2 * (b->n + extra) + 64;
    char *p = realloc(b->p, cap);
    if (!p) return lb_error(LB_ENOMEM, "tokenizer: out of memory for %zu bytes", cap);
    b->p = p, b->cap = cap;
    return LB_OK;
}

static lb_status buf_add(buf *b, const char *s, size_t n) {
    if (n == 0) return LB_OK;
    LB_TRY(buf_reserve(b, n));
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return LB_OK;
}

/* ---- the added-token trie ------------------------------------------------------------ */

lb_status lb_hf_trie_add(hf_trie *trie, const char *s, size_t n, int index) {
    if (trie->n_nodes == 0) {
        trie->token = malloc(64 * sizeof *trie->token);
        if (!trie->token) return lb_error(LB_ENOMEM, "added tokens: out of memory");
        trie->cap = 64;
        trie->token[0] = -1;
        trie->n_nodes = 1;
    }
    uint64_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = node << 8 | (unsigned char)s[i];
        uint64_t *child = lb_u64map_find(&trie->edges, key);
        if (child) {
            node = *child;
            continue;
        }
        if (trie->n_nodes == trie->cap) {
            int *t = realloc(trie->token, 2 * (size_t)trie->cap * sizeof *t);
            if (!t) return lb_error(LB_ENOMEM, "added tokens: out of memory");
            trie->token = t, trie->cap *= 2;
        }
        trie->token[trie->n_nodes] = -1;
        LB_TRY(lb_u64map_set(&trie->edges, key, (uint64_t)trie->n_nodes));
        node = (uint64_t)trie->n_nodes++;
    }
    trie->token[node] = index;
    trie->first[(unsigned char)s[0] >> 3] |= (uint8_t)(1u << ((unsigned char)s[0] & 7));
    trie->n_tokens++;
    return LB_OK;
}

void lb_hf_trie_free(hf_trie *trie) {
    lb_u64map_free(&trie->edges);
    free(trie->token);
    memset(trie, 0, sizeof *trie);
}

/* The leftmost-longest token at or after `from`: its index, with [*a, *e). -1 when none. */
static int trie_find(const hf_trie *trie, const char *s, size_t n, size_t from, size_t *a, size_t *e) {
    for (size_t i = from; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(trie->first[c >> 3] & (1u << (c & 7)))) continue;
        uint64_t node = 0;
        int best = -1;
        for (size_t j = i; j < n; j++) {
            const uint64_t *child = lb_u64map_find(&trie->edges, node << 8 | (unsigned char)s[j]);
            if (!child) break;
            node = *child;
            if (trie->token[node] >= 0) best = trie->token[node], *e = j + 1;
        }
        if (best >= 0) {
            *a = i;
            return best;
        }
    }
    return -1;
}

/* ---- encoding -------------------------------------------------------------------------- */

typedef struct level {
    buf text;   /* the stage's transformed input */
    buf piece;  /* one transformed piece handed on */
} level;

typedef struct work {
    const lb_hf *t;
    lb_ids *out;
    lb_match_scratch ms;
    lb_bpe_scratch bs;
    buf norm[2];
    level *lv;
    /* pre-tokenizer tests: the final splits go here instead of the model */
    void (*emit)(void *arg, const char *s, size_t n);
    void *emit_arg;
} work;

static void work_free(work *w) {
    lb_match_scratch_free(&w->ms);
    lb_bpe_scratch_free(&w->bs);
    free(w->norm[0].p);
    free(w->norm[1].p);
    if (w->lv)
        for (int i = 0; i < w->t->n_pre; i++) {
            free(w->lv[i].text.p);
            free(w->lv[i].piece.p);
        }
    free(w->lv);
}

static lb_status pre_stage(work *w, int L, const char *s, size_t n, size_t orig);

/* A source of pieces: a pattern, or a character predicate (pattern.rs's
 * impl Pattern for Fn(char) -> bool: each matching character is a piece). */
typedef struct piece_src {
    lb_pattern_iter pat;
    int use_pattern;
    int (*pred)(uint32_t cp, uint32_t arg);
    uint32_t pred_arg;
    const char *s;
    size_t n, pos, last_offset;
    lb_piece queued;
    int has_queued, done, invert;
} piece_src;

static int pred_next(piece_src *ps, lb_piece *out) {
    if (ps->has_queued) {
        *out = ps->queued;
        ps->has_queued = 0;
        return 1;
    }
    if (ps->done) return 0;
    if (ps->n == 0) {
        ps->done = 1;
        *out = (lb_piece){0, 0, 0};
        return 1;
    }
    while (ps->pos < ps->n) {
        size_t b = ps->pos, k = lb_utf8_char_len((unsigned char)ps->s[b]);
        uint32_t cp;
        lb_utf8_decode((const unsigned char *)ps->s + b, k, &cp, NULL);
        ps->pos += k;
        if (!ps->pred(cp, ps->pred_arg)) continue;
        lb_piece m = {b, b + k, 1};
        size_t last = ps->last_offset;
        ps->last_offset = b + k;
        if (last < b) {
            *out = (lb_piece){last, b, 0};
            ps->queued = m, ps->has_queued = 1;
        } else {
            *out = m;
        }
        return 1;
    }
    ps->done = 1;
    if (ps->n > ps->last_offset) {
        *out = (lb_piece){ps->last_offset, ps->n, 0};
        return 1;
    }
    return 0;
}

static int src_next(piece_src *ps, lb_piece *out) {
    int r = ps->use_pattern ? lb_pattern_next(&ps->pat, out) : pred_next(ps, out);
    if (r > 0 && ps->invert) out->match = !out->match;
    return r;
}

/* Hands one output split on, dropping empty ones (pre_tokenizer.rs split). */
static lb_status emit_piece(work *w, int L, const char *s, lb_piece p, size_t orig) {
    if (p.end == p.start) return LB_OK;
    return pre_stage(w, L + 1, s + p.start, p.end - p.start, orig + p.start);
}

/* NormalizedString::split: the pieces grouped by the delimiter behaviour,
 * streamed with one piece held back where a behaviour must see the next. */
static lb_status split_with(work *w, int L, piece_src *src, hf_behavior b, const char *s, size_t orig) {
    lb_piece p, pending = {0, 0, 0};
    int has_pending = 0, prev_match = 0, r;
    while ((r = src_next(src, &p)) > 0) {
        switch (b) {
        case HF_ISOLATED:
            LB_TRY(emit_piece(w, L, s, p, orig));
            break;
        case HF_REMOVED:
            if (!p.match) LB_TRY(emit_piece(w, L, s, p, orig));
            break;
        case HF_CONTIGUOUS:
        case HF_MERGED_WITH_PREVIOUS:
            if (has_pending && (b == HF_CONTIGUOUS ? p.match == prev_match : p.match && !prev_match)) {
                pending.end = p.end;
            } else {
                if (has_pending) LB_TRY(emit_piece(w, L, s, pending, orig));
                pending = p, has_pending = 1;
            }
            prev_match = p.match;
            break;
        case HF_MERGED_WITH_NEXT:
            /* a delimiter joins the piece after it when that piece is not one */
            if (has_pending && !p.match) {
                pending.end = p.end;
                LB_TRY(emit_piece(w, L, s, pending, orig));
                has_pending = 0;
                break;
            }
            if (has_pending) {
                LB_TRY(emit_piece(w, L, s, pending, orig));
                has_pending = 0;
            }
            if (p.match) pending = p, has_pending = 1;
            else LB_TRY(emit_piece(w, L, s, p, orig));
            break;
        }
    }
    if (r < 0) return lb_errcode();
    if (has_pending) LB_TRY(emit_piece(w, L, s, pending, orig));
    return LB_OK;
}

static int is_char(uint32_t cp, uint32_t c) { return cp == c; }

/* char::is_numeric: the general categories Nd, Nl, No. */
static int is_numeric(uint32_t cp, uint32_t unused) {
    (void)unused;
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* Each byte as its GPT-2 character, into dst. */
static lb_status byte_level_map(const char *s, size_t n, buf *dst) {
    const byte_level_table *bl = byte_level_get();
    dst->n = 0;
    LB_TRY(buf_reserve(dst, 2 * n));
    char *o = dst->p;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        o[0] = bl->utf8[b][0];
        if (bl->len[b] == 2) o[1] = bl->utf8[b][1];
        o += bl->len[b];
    }
    dst->n = (size_t)(o - dst->p);
    return LB_OK;
}

static lb_status pre_stage(work *w, int L, const char *s, size_t n, size_t orig) {
    const lb_hf *t = w->t;
    if (n == 0) return LB_OK;
    if (L == t->n_pre) {
        if (w->emit) {
            w->emit(w->emit_arg, s, n);
            return LB_OK;
        }
        return lb_bpe_tokenize(&t->model, &w->bs, s, n, w->out);
    }
    const hf_pretok *p = &t->pre[L];
    level *lv = &w->lv[L];
    piece_src src = {0};
    switch (p->kind) {
    case HF_PRE_SPLIT:
        src.use_pattern = 1, src.invert = p->invert;
        lb_pattern_iter_init(&src.pat, p->pattern, &w->ms, s, n);
        return split_with(w, L, &src, p->behavior, s, orig);

    case HF_PRE_DIGITS:
        src.pred = is_numeric, src.s = s, src.n = n;
        return split_with(w, L, &src, p->individual_digits ? HF_ISOLATED : HF_CONTIGUOUS, s, orig);

    case HF_PRE_BYTE_LEVEL: {
        if (p->add_prefix_space && s[0] != ' ') {
            lv->text.n = 0;
            LB_TRY(buf_add(&lv->text, " ", 1));
            LB_TRY(buf_add(&lv->text, s, n));
            s = lv->text.p, n = lv->text.n;
        }
        if (!p->pattern) {
            LB_TRY(byte_level_map(s, n, &lv->piece));
            return pre_stage(w, L + 1, lv->piece.p, lv->piece.n, orig);
        }
        lb_pattern_iter it;
        lb_pattern_iter_init(&it, p->pattern, &w->ms, s, n);
        lb_piece piece;
        int r;
        while ((r = lb_pattern_next(&it, &piece)) > 0) {
            if (piece.end == piece.start) continue;
            LB_TRY(byte_level_map(s + piece.start, piece.end - piece.start, &lv->piece));
            LB_TRY(pre_stage(w, L + 1, lv->piece.p, lv->piece.n, orig + piece.start));
        }
        return r < 0 ? lb_errcode() : LB_OK;
    }

    case HF_PRE_METASPACE: {
        char rep[4];
        size_t rep_len = (size_t)lb_utf8_encode(p->replacement, rep);
        /* spaces become the replacement first, so a leading space counts as one */
        int starts_with_rep = s[0] == ' ' || (n >= rep_len && memcmp(s, rep, rep_len) == 0);
        lv->text.n = 0;
        if (!starts_with_rep && (p->prepend == HF_PREPEND_ALWAYS || (p->prepend == HF_PREPEND_FIRST && orig == 0)))
            LB_TRY(buf_add(&lv->text, rep, rep_len));
        LB_TRY(buf_reserve(&lv->text, n * rep_len));
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') LB_TRY(buf_add(&lv->text, rep, rep_len));
            else LB_TRY(buf_add(&lv->text, s + i, 1));
        }
        if (!p->split) return pre_stage(w, L + 1, lv->text.p, lv->text.n, orig);
        src.pred = is_char, src.pred_arg = p->replacement, src.s = lv->text.p, src.n = lv->text.n;
        return split_with(w, L, &src, HF_MERGED_WITH_NEXT, lv->text.p, orig);
    }
    }
    return lb_error(LB_EINVAL, "tokenizer: unknown pre-tokenizer %d", (int)p->kind);
}

/* ---- normalizers -------------------------------------------------------------------- */

static lb_status normalize_one(work *w, const hf_normalizer *nz, const char *s, size_t n, buf *dst) {
    dst->n = 0;
    switch (nz->kind) {
    case HF_NORM_PREPEND:
        if (n == 0) return LB_OK;
        LB_TRY(buf_add(dst, nz->text, nz->text_len));
        return buf_add(dst, s, n);
    case HF_NORM_REPLACE: {
        lb_pattern_iter it;
        lb_pattern_iter_init(&it, nz->pattern, &w->ms, s, n);
        lb_piece p;
        int r;
        while ((r = lb_pattern_next(&it, &p)) > 0) {
            if (p.match) LB_TRY(buf_add(dst, nz->text, nz->text_len));
            else LB_TRY(buf_add(dst, s + p.start, p.end - p.start));
        }
        return r < 0 ? lb_errcode() : LB_OK;
    }
    case HF_NORM_STRIP: {
        size_t a = 0, e = n;
        uint32_t cp;
        while (nz->left && a < e) {
            size_t k = lb_utf8_decode((const unsigned char *)s + a, e - a, &cp, NULL);
            if (!lb_unicode_is_space(cp)) break;
            a += k;
        }
        while (nz->right && e > a) {
            size_t b = e - 1;
            while (b > a && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
            lb_utf8_decode((const unsigned char *)s + b, e - b, &cp, NULL);
            if (!lb_unicode_is_space(cp)) break;
            e = b;
        }
        return buf_add(dst, s + a, e - a);
    }
    default: {
        int opts = UTF8PROC_STABLE;
        if (nz->kind == HF_NORM_NFC || nz->kind == HF_NORM_NFKC) opts |= UTF8PROC_COMPOSE;
        else opts |= UTF8PROC_DECOMPOSE;
        if (nz->kind == HF_NORM_NFKC || nz->kind == HF_NORM_NFKD) opts |= UTF8PROC_COMPAT;
        /* ASCII is left as it is by all four forms, and no normalization reaches
         * across an ASCII character (it has no decomposition, combining class 0,
         * and never ends a composition). So only each run of non-ASCII bytes,
         * with the character before it (a combining mark may compose with it),
         * goes through utf8proc. */
        LB_TRY(buf_reserve(dst, n));
        size_t i = 0;
        while (i < n) {
            size_t a = i;
            while (i < n && (unsigned char)s[i] < 0x80) i++;
            if (i == n) return buf_add(dst, s + a, n - a);
            size_t start = i > a ? i - 1 : i; /* i > a: the ASCII character before the run */
            LB_TRY(buf_add(dst, s + a, start - a));
            while (i < n && (unsigned char)s[i] >= 0x80) i++;
            utf8proc_uint8_t *out = NULL;
            utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s + start, (utf8proc_ssize_t)(i - start), &out, opts);
            if (k < 0) return lb_error(LB_EINVAL, "Unicode normalization failed: %s", utf8proc_errmsg(k));
            lb_status st = buf_add(dst, (const char *)out, (size_t)k);
            free(out);
            LB_TRY(st);
        }
        return LB_OK;
    }
    }
}

/* The text after every normalizer: a pointer into one of w->norm, or s itself. */
static lb_status normalize(work *w, const char *s, size_t n, const char **out, size_t *out_n) {
    const lb_hf *t = w->t;
    for (int i = 0; i < t->n_norm; i++) {
        buf *dst = &w->norm[i & 1];
        LB_TRY(normalize_one(w, &t->norm[i], s, n, dst));
        s = dst->p ? dst->p : "", n = dst->n;
    }
    *out = s, *out_n = n;
    return LB_OK;
}

/* ---- added tokens (added_vocabulary.rs find_matches) ----------------------------------------- */

static int is_word_char(const lb_hf *t, lb_match_scratch *ms, const char *s, size_t k) {
    lb_pieces ps = {0};
    int word = lb_pattern_find(t->word_char, ms, s, k, &ps) == LB_OK && ps.n == 1 && ps.v[0].match;
    lb_pieces_free(&ps);
    return word;
}

static size_t prev_char(const char *s, size_t at) {
    size_t b = at - 1;
    while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
    return b;
}

typedef lb_status (*split_fn)(work *w, const char *s, size_t n, size_t orig);

/* Splits s on the tokens of `trie`: an added token's id goes to the output,
 * the text between to `next`. */
static lb_status split_added(work *w, const hf_trie *trie, const char *s, size_t n, size_t orig, split_fn next) {
    const lb_hf *t = w->t;
    size_t start_offset = 0, pos = 0, a = 0, e = 0;
    int idx;
    while (trie->n_tokens && pos < n && (idx = trie_find(trie, s, n, pos, &a, &e)) >= 0) {
        pos = e;
        const hf_added_token *tok = &t->added[idx];
        if (tok->single_word) {
            int start_space = a == 0, stop_space = e == n;
            if (!start_space) {
                size_t b = prev_char(s, a);
                start_space = !is_word_char(t, &w->ms, s + b, a - b);
            }
            if (!stop_space) stop_space = !is_word_char(t, &w->ms, s + e, lb_utf8_char_len((unsigned char)s[e]));
            if (!start_space || !stop_space) continue;
        }
        if (tok->lstrip) {
            size_t b = a;
            while (b > 0) {
                size_t c = prev_char(s, b);
                uint32_t cp;
                lb_utf8_decode((const unsigned char *)s + c, b - c, &cp, NULL);
                if (!lb_unicode_is_space(cp)) break;
                b = c;
            }
            a = b > start_offset ? b : start_offset;
        }
        if (tok->rstrip) {
            uint32_t cp;
            while (e < n) {
                size_t k = lb_utf8_decode((const unsigned char *)s + e, n - e, &cp, NULL);
                if (!lb_unicode_is_space(cp)) break;
                e += k;
            }
        }
        if (start_offset < a) LB_TRY(next(w, s + start_offset, a - start_offset, orig + start_offset));
        if (w->emit) w->emit(w->emit_arg, s + a, e - a);
        else LB_TRY(lb_ids_push(w->out, tok->id));
        start_offset = e;
    }
    if (start_offset < n) LB_TRY(next(w, s + start_offset, n - start_offset, orig + start_offset));
    return LB_OK;
}

static lb_status to_pre_tokenizers(work *w, const char *s, size_t n, size_t orig) {
    return pre_stage(w, 0, s, n, orig);
}

static lb_status normalized_stage(work *w, const char *s, size_t n, size_t orig) {
    const char *ns;
    size_t nn;
    LB_TRY(normalize(w, s, n, &ns, &nn));
    if (nn == 0) return LB_OK;
    return split_added(w, &w->t->normalized, ns, nn, orig, to_pre_tokenizers);
}

static lb_status run(const lb_hf *t, const char *text, size_t len, lb_ids *out,
                     void (*emit)(void *, const char *, size_t), void *arg) {
    work w = {0};
    w.t = t, w.out = out, w.emit = emit, w.emit_arg = arg;
    char *fixed = NULL;
    if (lb_utf8_valid_prefix(text, len) < len) {
        /* as String::from_utf8_lossy (and Node's decoding of a Buffer) make it */
        if (!(fixed = malloc(3 * len))) return lb_error(LB_ENOMEM, "tokenizer: out of memory for %zu bytes", 3 * len);
        len = lb_utf8_lossy(text, len, fixed);
        text = fixed;
    }
    lb_status st = LB_OK;
    if (t->n_pre > 0 && !(w.lv = calloc((size_t)t->n_pre, sizeof *w.lv)))
        st = lb_error(LB_ENOMEM, "tokenizer: out of memory");
    if (st == LB_OK && len > 0) st = split_added(&w, &t->raw, text, len, 0, normalized_stage);
    work_free(&w);
    free(fixed);
    return st;
}

lb_status lb_hf_encode(const lb_hf *t, const char *text, size_t len, int add_special, lb_ids *out) {
    if (add_special)
        for (int i = 0; i < t->n_prefix; i++) LB_TRY(lb_ids_push(out, t->prefix[i]));
    LB_TRY(run(t, text, len, out, NULL, NULL));
    if (add_special)
        for (int i = 0; i < t->n_suffix; i++) LB_TRY(lb_ids_push(out, t->suffix[i]));
    return LB_OK;
}

lb_status lb_hf_pre_tokenize(const lb_hf *t, const char *text, size_t len,
                             void (*emit)(void *arg, const char *s, size_t n), void *arg) {
    lb_ids none = {0};
    lb_status st = run(t, text, len, &none, emit, arg);
    lb_ids_free(&none);
    return st;
}

char *lb_hf_normalize_text(const lb_hf *t, const char *s, size_t n, size_t *out_len) {
    work w = {0};
    w.t = t;
    const char *ns;
    size_t nn;
    char *res = NULL;
    if (normalize(&w, s, n, &ns, &nn) == LB_OK && (res = malloc(nn + 1))) {
        memcpy(res, ns, nn);
        res[nn] = '\0';
        *out_len = nn;
    } else if (!res && lb_errcode() == LB_OK) {
        lb_error(LB_ENOMEM, "tokenizer: out of memory");
    }
    work_free(&w);
    return res;
}

char *lb_hf_normalize(const lb_hf *t, const char *text, size_t len, size_t *out_len) {
    return lb_hf_normalize_text(t, text, len, out_len);
}

/* ---- decoding -------------------------------------------------------------------------- */

/* A list of token strings, back to back in one buffer. */
typedef struct toks {
    buf text;
    size_t *off, *len;
    size_t n, cap;
} toks;

static lb_status toks_add(toks *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        size_t *off = realloc(l->off, cap * sizeof *off);
        if (off) l->off = off;
        size_t *len = off ? realloc(l->len, cap * sizeof *len) : NULL;
        if (!off || !len) return lb_error(LB_ENOMEM, "decode: out of memory");
        l->len = len, l->cap = cap;
    }
    l->off[l->n] = l->text.n;
    l->len[l->n] = n;
    l->n++;
    return buf_add(&l->text, s, n);
}

/* Extends the last token by s[0..n). */
static lb_status toks_extend(toks *l, const char *s, size_t n) {
    l->len[l->n - 1] += n;
    return buf_add(&l->text, s, n);
}

static void toks_free(toks *l) {
    free(l->text.p);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

/* Token i of l; "" while every token so far is empty (no text buffer yet: NULL + 0 is undefined). */
#define TOK(l, i) ((l)->text.p ? (l)->text.p + (l)->off[i] : "")

/* ByteLevel: every token's characters back to bytes (a token with a character
 * outside the table stays as it is), joined, then made valid UTF-8. */
static lb_status dec_byte_level(const toks *in, toks *out) {
    const byte_level_table *bl = byte_level_get();
    buf bytes = {0};
    lb_status st = LB_OK;
    for (size_t i = 0; i < in->n && st == LB_OK; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], mark = bytes.n, j = 0;
        int all = 1;
        while (j < n && all) {
            uint32_t cp;
            size_t k = lb_utf8_decode((const unsigned char *)s + j, n - j, &cp, NULL);
            if (k == 0 || cp >= 324 || bl->byte_of[cp] < 0) all = 0;
            else {
                char b = (char)bl->byte_of[cp];
                st = buf_add(&bytes, &b, 1);
                j += k;
            }
        }
        if (!all && st == LB_OK) {
            bytes.n = mark;
            st = buf_add(&bytes, s, n);
        }
    }
    char *fixed = st == LB_OK ? malloc(3 * bytes.n + 1) : NULL;
    if (st == LB_OK && !fixed) st = lb_error(LB_ENOMEM, "decode: out of memory");
    if (st == LB_OK) st = toks_add(out, fixed, lb_utf8_lossy(bytes.p ? bytes.p : "", bytes.n, fixed));
    free(fixed);
    free(bytes.p);
    return st;
}

/* u8::from_str_radix(&token[3..5], 16) of "<0xNN>" tokens: -1 when not one. */
static int byte_fallback_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) {
            if (i == 3 && c == '+') continue; /* Rust accepts a leading '+' */
            return -1;
        }
        v = v * 16 + d, digits++;
    }
    return digits ? v : -1;
}

static lb_status flush_bytes(buf *bytes, toks *out) {
    if (bytes->n == 0) return LB_OK;
    lb_status st;
    if (lb_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n) {
        st = toks_add(out, bytes->p, bytes->n);
    } else {
        st = LB_OK;
        for (size_t i = 0; i < bytes->n && st == LB_OK; i++) st = toks_add(out, LB_UTF8_REPLACEMENT, 3);
    }
    bytes->n = 0;
    return st;
}

static lb_status dec_byte_fallback(const toks *in, toks *out) {
    buf bytes = {0};
    lb_status st = LB_OK;
    for (size_t i = 0; i < in->n && st == LB_OK; i++) {
        int v = byte_fallback_value(TOK(in, i), in->len[i]);
        if (v >= 0) {
            char b = (char)v;
            st = buf_add(&bytes, &b, 1);
        } else {
            st = flush_bytes(&bytes, out);
            if (st == LB_OK) st = toks_add(out, TOK(in, i), in->len[i]);
        }
    }
    if (st == LB_OK) st = flush_bytes(&bytes, out);
    free(bytes.p);
    return st;
}

/* Strip: up to `start` leading and `stop` trailing characters equal to ch. */
static lb_status dec_strip(const hf_decoder *d, const toks *in, toks *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i], a = 0, e = n;
        for (size_t k = 0; k < d->start && a < n; k++) {
            uint32_t cp;
            size_t len = lb_utf8_decode((const unsigned char *)s + a, n - a, &cp, NULL);
            if (len == 0 || cp != d->ch) break;
            a += len;
        }
        for (size_t k = 0; k < d->stop && e > 0; k++) {
            size_t b = prev_char(s, e);
            uint32_t cp;
            if (lb_utf8_decode((const unsigned char *)s + b, e - b, &cp, NULL) == 0 || cp != d->ch) break;
            e = b;
        }
        LB_TRY(toks_add(out, s + a, e > a ? e - a : 0));
    }
    return LB_OK;
}

static lb_status dec_metaspace(const hf_decoder *d, const toks *in, toks *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = in->len[i];
        LB_TRY(toks_add(out, "", 0));
        for (size_t j = 0; j < n;) {
            uint32_t cp;
            size_t k = lb_utf8_decode((const unsigned char *)s + j, n - j, &cp, NULL);
            if (k == 0) k = 1, cp = (unsigned char)s[j];
            if (cp == d->ch) {
                if (!(i == 0 && !d->prepend_never)) LB_TRY(toks_extend(out, " ", 1));
            } else {
                LB_TRY(toks_extend(out, s + j, k));
            }
            j += k;
        }
    }
    return LB_OK;
}

static lb_status dec_replace(const hf_decoder *d, lb_match_scratch *ms, const toks *in, toks *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        LB_TRY(toks_add(out, "", 0));
        lb_pattern_iter it;
        lb_pattern_iter_init(&it, d->pattern, ms, s, in->len[i]);
        lb_piece p;
        int r;
        while ((r = lb_pattern_next(&it, &p)) > 0) {
            if (p.match) LB_TRY(toks_extend(out, d->content, d->content_len));
            else LB_TRY(toks_extend(out, s + p.start, p.end - p.start));
        }
        if (r < 0) return lb_errcode();
    }
    return LB_OK;
}

const char *lb_hf_token(const lb_hf *t, int id, size_t *len) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    int a = t->added_of_id[id];
    if (a >= 0) {
        *len = t->added[a].len;
        return t->added[a].content;
    }
    if (id < t->model.n_ids && t->model.tokens[id]) {
        *len = t->model.token_len[id];
        return t->model.tokens[id];
    }
    return NULL;
}

char *lb_hf_decode(const lb_hf *t, const int *ids, size_t n, int skip_special, size_t *out_len) {
    toks cur = {0}, next = {0};
    lb_match_scratch ms = {0};
    lb_status st = LB_OK;
    for (size_t i = 0; i < n && st == LB_OK; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) {
            st = lb_error(LB_EINVAL, "tokenizer: id %d at position %zu is outside the vocabulary 0..%d", ids[i], i,
                          t->vocab_size - 1);
            break;
        }
        size_t len;
        const char *tok = lb_hf_token(t, ids[i], &len);
        if (!tok) continue;
        if (skip_special && lb_strmap_find(&t->special, tok, len)) continue;
        st = toks_add(&cur, tok, len);
    }
    for (int d = 0; d < t->n_dec && st == LB_OK; d++) {
        const hf_decoder *dec = &t->dec[d];
        next.n = 0, next.text.n = 0;
        switch (dec->kind) {
        case HF_DEC_BYTE_LEVEL: st = dec_byte_level(&cur, &next); break;
        case HF_DEC_BYTE_FALLBACK: st = dec_byte_fallback(&cur, &next); break;
        case HF_DEC_REPLACE: st = dec_replace(dec, &ms, &cur, &next); break;
        case HF_DEC_STRIP: st = dec_strip(dec, &cur, &next); break;
        case HF_DEC_METASPACE: st = dec_metaspace(dec, &cur, &next); break;
        case HF_DEC_FUSE:
            st = toks_add(&next, "", 0);
            for (size_t i = 0; i < cur.n && st == LB_OK; i++) st = toks_extend(&next, TOK(&cur, i), cur.len[i]);
            break;
        }
        toks tmp = cur;
        cur = next, next = tmp;
    }
    /* The tokens joined: with nothing between after a decoder, with spaces without one. */
    buf res = {0};
    for (size_t i = 0; i < cur.n && st == LB_OK; i++) {
        if (i > 0 && !t->has_decoder) st = buf_add(&res, " ", 1);
        if (st == LB_OK) st = buf_add(&res, TOK(&cur, i), cur.len[i]);
    }
    if (st == LB_OK) st = buf_add(&res, "", 1);
    toks_free(&cur);
    toks_free(&next);
    lb_match_scratch_free(&ms);
    if (st != LB_OK) {
        free(res.p);
        return NULL;
    }
    if (out_len) *out_len = res.n - 1;
    return res.p;
}

#include "data/bpe.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/utf8.h"

lb_status lb_ids_push(lb_ids *ids, int id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? 2 * ids->cap : 256;
        int *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return lb_error(LB_ENOMEM, "tokenizer: out of memory for %zu ids", cap);
        ids->v = v, ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return LB_OK;
}

/* ---- the word cache ----------------------------------------------------------------
 * Insert-only and lock-free: a slot goes from NULL to an immutable entry once,
 * by compare-and-swap, so readers never see a half-written entry and nothing
 * is freed before the model. */

typedef struct cache_entry {
    uint64_t hash;
    uint32_t len, n_ids;
    int ids[];  /* n_ids ids, then the len bytes of the word */
} cache_entry;

struct lb_bpe_cache {
    _Atomic(cache_entry *) *slots;
    size_t mask;
    atomic_size_t count;
};

static const char *entry_word(const cache_entry *e) { return (const char *)(e->ids + e->n_ids); }

static const cache_entry *cache_get(const lb_bpe_cache *c, uint64_t h, const char *w, size_t n) {
    for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
        cache_entry *e = atomic_load_explicit(&c->slots[i], memory_order_acquire);
        if (!e) return NULL;
        if (e->hash == h && e->len == n && memcmp(entry_word(e), w, n) == 0) return e;
    }
}

static void cache_put(lb_bpe_cache *c, uint64_t h, const char *w, size_t n, const int *ids, size_t n_ids) {
    if (atomic_load_explicit(&c->count, memory_order_relaxed) >= LB_BPE_CACHE_WORDS) return;
    cache_entry *e = malloc(sizeof *e + n_ids * sizeof(int) + n);
    if (!e) return; /* the cache is an optimisation only */
    e->hash = h, e->len = (uint32_t)n, e->n_ids = (uint32_t)n_ids;
    if (n_ids) memcpy(e->ids, ids, n_ids * sizeof(int));
    memcpy((char *)(e->ids + n_ids), w, n);
    for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
        cache_entry *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&c->slots[i], &expected, e, memory_order_release,
                                                    memory_order_acquire)) {
            atomic_fetch_add_explicit(&c->count, 1, memory_order_relaxed);
            return;
        }
        if (expected->hash == h && expected->len == n && memcmp(entry_word(expected), w, n) == 0) {
            free(e); /* another thread cached the same word */
            return;
        }
    }
}

static lb_bpe_cache *cache_new(void) {
    lb_bpe_cache *c = calloc(1, sizeof *c);
    size_t n_slots = 2 * LB_BPE_CACHE_WORDS; /* at most half full: probes stay short */
    if (c) c->slots = calloc(n_slots, sizeof *c->slots);
    if (!c || !c->slots) {
        free(c);
        return NULL;
    }
    c->mask = n_slots - 1;
    atomic_init(&c->count, 0);
    return c;
}

static void cache_free(lb_bpe_cache *c) {
    if (!c) return;
    for (size_t i = 0; i <= c->mask; i++) free(atomic_load_explicit(&c->slots[i], memory_order_relaxed));
    free(c->slots);
    free(c);
}

/* ---- building ---------------------------------------------------------------------- */

lb_status lb_bpe_init(lb_bpe *m) {
    memset(m, 0, sizeof *m);
    m->unk_id = -1;
    for (int b = 0; b < 256; b++) m->byte_ids[b] = -1;
    return LB_OK;
}

lb_status lb_bpe_add_token(lb_bpe *m, const char *s, size_t n, int64_t id, const char *where) {
    if (id < 0 || id > LB_BPE_MAX_ID)
        return lb_error(LB_EFORMAT, "%s: token \"%.*s\" has id %lld, expected 0..%d", where, (int)n, s, (long long)id,
                        LB_BPE_MAX_ID);
    int added;
    LB_TRY(lb_strmap_put(&m->vocab, s, n, id, NULL, &added));
    if (!added) return lb_error(LB_EFORMAT, "%s: token \"%.*s\" appears twice", where, (int)n, s);
    if (id >= m->n_ids) m->n_ids = (int)id + 1;
    return LB_OK;
}

lb_status lb_bpe_add_merge(lb_bpe *m, const char *a, size_t na, const char *b, size_t nb, uint32_t rank,
                           const char *where) {
    lb_strmap_entry *ea = lb_strmap_find(&m->vocab, a, na), *eb = lb_strmap_find(&m->vocab, b, nb);
    if (!ea || !eb)
        return lb_error(LB_EFORMAT, "%s[%u]: token \"%.*s\" of merge \"%.*s\" + \"%.*s\" is not in the vocabulary",
                        where, rank, (int)(ea ? nb : na), ea ? b : a, (int)na, a, (int)nb, b);
    char stack[256], *joined = na + nb <= sizeof stack ? stack : malloc(na + nb);
    if (!joined) return lb_error(LB_ENOMEM, "%s: out of memory", where);
    memcpy(joined, a, na);
    memcpy(joined + na, b, nb);
    lb_strmap_entry *ej = lb_strmap_find(&m->vocab, joined, na + nb);
    if (joined != stack) free(joined);
    if (!ej)
        return lb_error(LB_EFORMAT, "%s[%u]: the merge of \"%.*s\" and \"%.*s\" is not in the vocabulary", where, rank,
                        (int)na, a, (int)nb, b);
    /* A pair given twice keeps its last rank, as the library's map does. */
    uint64_t key = (uint64_t)ea->value << 32 | (uint64_t)eb->value;
    return lb_u64map_set(&m->merges, key, (uint64_t)rank << 32 | (uint64_t)ej->value);
}

lb_status lb_bpe_finish(lb_bpe *m) {
    m->tokens = calloc((size_t)m->n_ids + 1, sizeof *m->tokens);
    m->token_len = calloc((size_t)m->n_ids + 1, sizeof *m->token_len);
    m->small_ids = malloc(0x800 * sizeof *m->small_ids);
    m->cache = cache_new();
    if (!m->tokens || !m->token_len || !m->small_ids || !m->cache) return lb_error(LB_ENOMEM, "BPE model: out of memory");
    for (int c = 0; c < 0x800; c++) m->small_ids[c] = -1;
    for (size_t i = 0; i < m->vocab.n; i++) {
        const lb_strmap_entry *e = &m->vocab.entries[i];
        const char *s = lb_strmap_key(&m->vocab, e);
        int id = (int)e->value;
        if (m->tokens[id])
            return lb_error(LB_EFORMAT, "model.vocab: id %d is given to both \"%s\" and \"%s\"", id, m->tokens[id], s);
        m->tokens[id] = s;
        m->token_len[id] = (uint32_t)e->len;
        uint32_t cp;
        if (e->len >= 1 && lb_utf8_decode((const unsigned char *)s, e->len, &cp, NULL) == e->len && cp < 0x800)
            m->small_ids[cp] = id;
        /* the adjacent characters inside the token */
        uint32_t prev = 0;
        for (size_t k = 0; k < e->len;) {
            size_t len = lb_utf8_decode((const unsigned char *)s + k, e->len - k, &cp, NULL);
            if (len == 0) break;
            if (k > 0 && !lb_u64map_get_or_add(&m->bigrams, (uint64_t)prev << 32 | cp, 1))
                return lb_error(LB_ENOMEM, "BPE model: out of memory");
            prev = cp, k += len;
        }
        /* "<0xNN>" tokens, upper-case hex as the library formats them */
        if (e->len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
            unsigned v;
            char hex[3] = {s[3], s[4], 0};
            if (strspn(hex, "0123456789ABCDEF") == 2 && sscanf(hex, "%2X", &v) == 1) m->byte_ids[v] = id;
        }
    }
    if (m->unk_token) {
        lb_strmap_entry *e = lb_strmap_find(&m->vocab, m->unk_token, strlen(m->unk_token));
        m->unk_id = e ? (int)e->value : -1;
    }
    return LB_OK;
}

void lb_bpe_free(lb_bpe *m) {
    lb_strmap_free(&m->vocab);
    lb_u64map_free(&m->merges);
    lb_u64map_free(&m->bigrams);
    free(m->tokens);
    free(m->token_len);
    free(m->small_ids);
    free(m->unk_token);
    cache_free(m->cache);
    memset(m, 0, sizeof *m);
}

void lb_bpe_scratch_free(lb_bpe_scratch *s) {
    free(s->mem);
    memset(s, 0, sizeof *s);
}

/* ---- merging (word.rs) ---------------------------------------------------------------- */

typedef struct symbol {
    int c;          /* token id */
    int prev, next; /* -1 at the ends */
    int len;        /* bytes covered; 0 once merged into its left neighbour */
} symbol;

typedef struct heap_item {
    uint64_t key;   /* rank << 32 | position: the smallest rank first, then the leftmost */
    int new_id;
} heap_item;

static void heap_push(heap_item *h, size_t *n, heap_item x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= x.key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        heap_item best = x;
        if (l < *n && h[l].key < best.key) m = l, best = h[l];
        if (r < *n && h[r].key < best.key) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0) h[i] = x;
    return top;
}

static int pair_merge(const lb_bpe *m, int a, int b, uint32_t *rank) {
    const uint64_t *v = lb_u64map_find(&m->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (!v) return -1;
    *rank = (uint32_t)(*v >> 32);
    return (int)(uint32_t)*v;
}

static void add_symbol(symbol *sym, int *n, int c, int len) {
    if (*n > 0) sym[*n - 1].next = *n;
    sym[*n] = (symbol){c, *n - 1, -1, len};
    (*n)++;
}

/* The ids the first and the last symbol of a word take, in order (for long
 * words merged in pieces, below). */
#define CHAIN_MAX 32
typedef struct chain {
    int v[CHAIN_MAX];
    int n, overflow;
} chain;

static void chain_add(chain *c, int id) {
    if (c->n < CHAIN_MAX) c->v[c->n++] = id;
    else c->overflow = 1;
}

/* The lowest-rank merge first, the leftmost among equal ranks; an entry whose
 * pair has changed since it was queued is skipped (word.rs merge_all). With
 * first/last not NULL, records the ids the end symbols take. */
static void merge_all(const lb_bpe *m, symbol *sym, int n, heap_item *heap, chain *first, chain *last) {
    size_t nh = 0;
    if (first) {
        first->n = last->n = first->overflow = last->overflow = 0;
        chain_add(first, sym[0].c);
        chain_add(last, sym[n - 1].c);
    }
    for (int i = 0; i + 1 < n; i++) {
        uint32_t rank;
        int id = pair_merge(m, sym[i].c, sym[i + 1].c, &rank);
        if (id >= 0) heap_push(heap, &nh, (heap_item){(uint64_t)rank << 32 | (uint32_t)i, id});
    }
    while (nh > 0) {
        heap_item top = heap_pop(heap, &nh);
        int pos = (int)(uint32_t)top.key;
        if (sym[pos].len == 0 || sym[pos].next == -1) continue;
        int right = sym[pos].next;
        uint32_t rank;
        if (pair_merge(m, sym[pos].c, sym[right].c, &rank) != top.new_id) continue;
        sym[pos].c = top.new_id;
        sym[pos].len += sym[right].len;
        sym[pos].next = sym[right].next;
        sym[right].len = 0;
        if (sym[pos].next >= 0) sym[sym[pos].next].prev = pos;
        if (first && pos == 0) chain_add(first, top.new_id);
        if (first && sym[pos].next == -1) chain_add(last, top.new_id);
        if (sym[pos].prev >= 0) {
            int p = sym[pos].prev, id = pair_merge(m, sym[p].c, sym[pos].c, &rank);
            if (id >= 0) heap_push(heap, &nh, (heap_item){(uint64_t)rank << 32 | (uint32_t)p, id});
        }
        if (sym[pos].next >= 0) {
            int id = pair_merge(m, sym[pos].c, sym[sym[pos].next].c, &rank);
            if (id >= 0) heap_push(heap, &nh, (heap_item){(uint64_t)rank << 32 | (uint32_t)pos, id});
        }
    }
}

/* ---- long words in pieces -------------------------------------------------------------
 * A word of thousands of symbols (a tokenizer without pre-tokenizer sees a
 * whole text as one word) makes a large heap that misses the caches. It is
 * merged piece by piece instead, and the result is the same: if no id the
 * last symbol of one piece ever takes forms a merge with any id the first
 * symbol of the next piece takes, no merge ever crosses their boundary in the
 * whole word either (the pieces evolve independently, each in the order the
 * whole word would merge it). Where such a pair exists the two pieces are
 * merged again as one. */

#define PIECE_SYMBOLS 256

typedef struct piece {
    int start, end;        /* symbols [start, end) of the word */
    int out, n_out;        /* its merged ids in the output array */
    chain first, last;
} piece;

/* Merges symbols [p->start, p->end) of `init` alone; its ids go to res[p->out ..]. */
static void merge_piece(const lb_bpe *m, const symbol *init, piece *p, symbol *work, heap_item *heap, int *res) {
    int n = p->end - p->start;
    for (int i = 0; i < n; i++) work[i] = (symbol){init[p->start + i].c, i - 1, i + 1 < n ? i + 1 : -1, init[p->start + i].len};
    merge_all(m, work, n, heap, &p->first, &p->last);
    p->out = p->start;
    p->n_out = 0;
    for (int i = 0; i < n; i++)
        if (work[i].len) res[p->out + p->n_out++] = work[i].c;
}

static int pieces_conflict(const lb_bpe *m, const piece *a, const piece *b) {
    if (a->last.overflow || b->first.overflow) return 1;
    uint32_t rank;
    for (int i = 0; i < a->last.n; i++)
        for (int j = 0; j < b->first.n; j++)
            if (pair_merge(m, a->last.v[i], b->first.v[j], &rank) >= 0) return 1;
    return 0;
}

static lb_status merge_long(const lb_bpe *m, symbol *init, int n, symbol *work, heap_item *heap, lb_ids *out) {
    int n_pieces = 0, cap = n / PIECE_SYMBOLS + 2;
    piece *p = malloc((size_t)cap * sizeof *p);
    int *res = malloc((size_t)n * sizeof *res);
    if (!p || !res) {
        free(p);
        free(res);
        return lb_error(LB_ENOMEM, "BPE: out of memory for a %d-symbol word", n);
    }
    /* cut where the pair across has no merge, when one is near */
    for (int a = 0; a < n;) {
        int e = a + PIECE_SYMBOLS;
        if (e >= n) {
            e = n;
        } else {
            uint32_t rank;
            int limit = e + PIECE_SYMBOLS < n ? e + PIECE_SYMBOLS : n;
            while (e < limit && pair_merge(m, init[e - 1].c, init[e].c, &rank) >= 0) e++;
        }
        p[n_pieces++] = (piece){.start = a, .end = e};
        a = e;
    }
    for (int k = 0; k < n_pieces; k++) merge_piece(m, init, &p[k], work, heap, res);
    size_t redone = 0;
    for (int k = 0; k + 1 < n_pieces;) {
        if (!pieces_conflict(m, &p[k], &p[k + 1])) {
            k++;
            continue;
        }
        /* merge pieces k and k+1 as one, then look at the boundary before again */
        p[k].end = p[k + 1].end;
        memmove(p + k + 1, p + k + 2, (size_t)(n_pieces - k - 2) * sizeof *p);
        n_pieces--;
        redone += (size_t)(p[k].end - p[k].start);
        if (redone > 4 * (size_t)n) { /* pieces that keep joining: the whole word at once */
            p[0] = (piece){.start = 0, .end = n};
            n_pieces = 1;
            merge_piece(m, init, &p[0], work, heap, res);
            break;
        }
        merge_piece(m, init, &p[k], work, heap, res);
        if (k > 0) k--;
    }
    lb_status st = LB_OK;
    for (int k = 0; k < n_pieces && st == LB_OK; k++)
        for (int i = 0; i < p[k].n_out && st == LB_OK; i++) st = lb_ids_push(out, res[p[k].out + i]);
    free(p);
    free(res);
    return st;
}

static int char_id(const lb_bpe *m, const char *s, size_t k) {
    uint32_t cp;
    if (k == 1) return m->small_ids[(unsigned char)s[0]];
    if (k == 2 && lb_utf8_decode((const unsigned char *)s, k, &cp, NULL) == 2) return m->small_ids[cp];
    lb_strmap_entry *e = lb_strmap_find(&m->vocab, s, k);
    return e ? (int)e->value : -1;
}

/* merge_word of model.rs: one symbol per character (or per byte through
 * byte fallback, or one unknown token for a run of unknown characters when
 * fuse_unk), then the merges. */
static lb_status merge_word(const lb_bpe *m, lb_bpe_scratch *s, const char *w, size_t n, lb_ids *out) {
    if (s->cap < n) {
        free(s->mem);
        s->mem = malloc(n * (2 * sizeof(symbol) + 3 * sizeof(heap_item)));
        if (!s->mem) {
            s->cap = 0;
            return lb_error(LB_ENOMEM, "BPE: out of memory for a %zu-byte word", n);
        }
        s->cap = n;
    }
    symbol *sym = s->mem, *work = sym + s->cap;
    heap_item *heap = (heap_item *)(work + s->cap);
    int ns = 0, unk_len = 0; /* unk_len > 0: an unknown token is pending */
    for (size_t i = 0; i < n;) {
        size_t k = lb_utf8_char_len((unsigned char)w[i]);
        int id = char_id(m, w + i, k);
        if (id >= 0) {
            if (unk_len) add_symbol(sym, &ns, m->unk_id, unk_len), unk_len = 0;
            add_symbol(sym, &ns, id, (int)k);
        } else {
            int fallback = m->byte_fallback;
            for (size_t j = 0; fallback && j < k; j++) fallback = m->byte_ids[(unsigned char)w[i + j]] >= 0;
            if (fallback) {
                /* as the library does, a pending unknown token comes after these bytes */
                for (size_t j = 0; j < k; j++) add_symbol(sym, &ns, m->byte_ids[(unsigned char)w[i + j]], 1);
            } else if (m->unk_token) {
                if (m->unk_id < 0)
                    return lb_error(LB_EINVAL, "BPE: unk_token \"%s\" is not in the vocabulary (needed for \"%.*s\")",
                                    m->unk_token, (int)k, w + i);
                if (unk_len && m->fuse_unk) {
                    unk_len += (int)k;
                } else {
                    if (unk_len) add_symbol(sym, &ns, m->unk_id, unk_len);
                    unk_len = (int)k;
                }
            } /* else: the character is dropped, as the library drops it */
        }
        i += k;
    }
    if (unk_len) add_symbol(sym, &ns, m->unk_id, unk_len);
    if (ns > 4 * PIECE_SYMBOLS) return merge_long(m, sym, ns, work, heap, out);
    merge_all(m, sym, ns, heap, NULL, NULL);
    for (int i = 0; i < ns; i++)
        if (sym[i].len) LB_TRY(lb_ids_push(out, sym[i].c));
    return LB_OK;
}

/* One word (or a part of one that no merge crosses), through the cache. */
static lb_status tokenize_cached(const lb_bpe *m, lb_bpe_scratch *s, const char *w, size_t n, lb_ids *out) {
    uint64_t h = 0;
    if (n < LB_BPE_CACHE_MAX_WORD) {
        h = lb_hash_bytes(w, n);
        const cache_entry *e = cache_get(m->cache, h, w, n);
        if (e) {
            for (uint32_t i = 0; i < e->n_ids; i++) LB_TRY(lb_ids_push(out, e->ids[i]));
            return LB_OK;
        }
    }
    size_t first = out->n;
    LB_TRY(merge_word(m, s, w, n, out));
    if (n < LB_BPE_CACHE_MAX_WORD) cache_put(m->cache, h, w, n, out->v + first, out->n - first);
    return LB_OK;
}

/* The code point and vocabulary id of the character at w[i] (id -1: none). */
static uint32_t char_at(const lb_bpe *m, const char *w, size_t i, size_t *k, int *id) {
    uint32_t cp;
    *k = lb_utf8_char_len((unsigned char)w[i]);
    lb_utf8_decode((const unsigned char *)w + i, *k, &cp, NULL);
    *id = char_id(m, w + i, *k);
    return cp;
}

lb_status lb_bpe_tokenize(const lb_bpe *m, lb_bpe_scratch *s, const char *w, size_t n, lb_ids *out) {
    if (n == 0) return LB_OK;
    if (m->ignore_merges) {
        lb_strmap_entry *e = lb_strmap_find(&m->vocab, w, n);
        if (e) return lb_ids_push(out, (int)e->value);
    }
    if (n < LB_BPE_CACHE_MAX_WORD) return tokenize_cached(m, s, w, n, out);
    /* A long word (a whole text, for a tokenizer without pre-tokenizer) is cut
     * between two characters that are tokens and never adjacent inside any
     * token: a merge across would make a token holding both, so the parts
     * merge on their own exactly as they would in the word, and through the
     * cache. */
    size_t a = 0, k;
    int id;
    uint32_t prev = char_at(m, w, 0, &k, &id);
    int prev_known = id >= 0;
    for (size_t i = k; i < n; i += k) {
        uint32_t cp = char_at(m, w, i, &k, &id);
        if (prev_known && id >= 0 && !lb_u64map_find(&m->bigrams, (uint64_t)prev << 32 | cp)) {
            LB_TRY(tokenize_cached(m, s, w + a, i - a, out));
            a = i;
        }
        prev = cp, prev_known = id >= 0;
    }
    return tokenize_cached(m, s, w + a, n - a, out);
}

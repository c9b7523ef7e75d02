/* Training a byte-level BPE tokenizer on a corpus, as the Hugging Face
 * library's BpeTrainer does (models/bpe/trainer.rs) when fed the lines of the
 * corpus files (Tokenizer::train_from_files) through the GPT-2 ByteLevel
 * pre-tokenizer, with the 256 byte characters as initial alphabet and
 * <|endoftext|> as special token:
 *
 *   1. words: every pre-token of every line (with its line ending), counted;
 *   2. ids: the special token, then the alphabet sorted by code point;
 *   3. pair counts over all words, weighted by word counts, and for each pair
 *      the words it occurs in;
 *   4. until the vocabulary is full: take the most frequent pair (ties: the
 *      smallest pair of ids), add the merged token, merge the pair in the words
 *      listed with it, and update the counts of the neighbouring pairs.
 *
 * A queue entry keeps the words it was queued with and is re-queued when its
 * count has changed, exactly as the library does; so a pair that reappears
 * later (through a token that can be made in two ways) can be merged twice,
 * and the tokenizer.json keeps its last rank, as the library's does. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/corpus.h"
#include "data/hashmap.h"
#include "data/hf_tokenizer.h"
#include "data/tokenizer.h"
#include "data/utf8.h"

#define SPECIAL_TOKEN "<|endoftext|>"

/* ---- tokenizer.json ------------------------------------------------------------ */

typedef struct vocab_list {
    char *text;          /* tokens back to back */
    size_t *off, *len;
    int n, cap;
    size_t text_len, text_cap;
} vocab_list;

static lb_status vocab_add(vocab_list *v, const char *s, size_t n) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 1024;
        size_t *off = realloc(v->off, (size_t)cap * sizeof *off);
        if (off) v->off = off;
        size_t *len = off ? realloc(v->len, (size_t)cap * sizeof *len) : NULL;
        if (!off || !len) return lb_error(LB_ENOMEM, "BPE training: out of memory");
        v->len = len, v->cap = cap;
    }
    if (v->text_len + n > v->text_cap) {
        size_t cap = 2 * (v->text_len + n) + 4096;
        char *t = realloc(v->text, cap);
        if (!t) return lb_error(LB_ENOMEM, "BPE training: out of memory");
        v->text = t, v->text_cap = cap;
    }
    memcpy(v->text + v->text_len, s, n);
    v->off[v->n] = v->text_len, v->len[v->n] = n;
    v->text_len += n;
    v->n++;
    return LB_OK;
}

static void vocab_free(vocab_list *v) {
    free(v->text);
    free(v->off);
    free(v->len);
    memset(v, 0, sizeof *v);
}

static json_t *str(const vocab_list *v, int id) { return json_stringn(v->text + v->off[id], v->len[id]); }

/* The tokenizer.json of a byte-level BPE: vocabulary `v` (id = index),
 * merges as pairs of ids, the special token when `special`. NULL on failure. */
static char *byte_level_json(const vocab_list *v, const int *merges, size_t n_merges, int special, size_t *len) {
    json_t *root = json_object(), *vocab = json_object(), *mlist = json_array(), *added = json_array();
    json_t *model = json_object();
    int ok = root && vocab && mlist && added && model;
    for (int i = 0; ok && i < v->n; i++) {
        char *key = strndup(v->text + v->off[i], v->len[i]);
        ok = key && json_object_set_new(vocab, key, json_integer(i)) == 0;
        free(key);
    }
    for (size_t i = 0; ok && i < n_merges; i++)
        ok = json_array_append_new(mlist, json_pack("[oo]", str(v, merges[2 * i]), str(v, merges[2 * i + 1]))) == 0;
    if (ok && special)
        ok = json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 0, "content", SPECIAL_TOKEN,
                                                    "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                                                    "special", 1)) == 0;
    if (ok) {
        json_object_set_new(model, "type", json_string("BPE"));
        json_object_set_new(model, "dropout", json_null());
        json_object_set_new(model, "unk_token", json_null());
        json_object_set_new(model, "continuing_subword_prefix", json_null());
        json_object_set_new(model, "end_of_word_suffix", json_null());
        json_object_set_new(model, "fuse_unk", json_false());
        json_object_set_new(model, "byte_fallback", json_false());
        json_object_set_new(model, "ignore_merges", json_false());
        json_object_set(model, "vocab", vocab);
        json_object_set(model, "merges", mlist);
        json_object_set_new(root, "version", json_string("1.0"));
        json_object_set_new(root, "truncation", json_null());
        json_object_set_new(root, "padding", json_null());
        json_object_set(root, "added_tokens", added);
        json_object_set_new(root, "normalizer", json_null());
        json_object_set_new(root, "pre_tokenizer", json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel",
                                                             "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1));
        json_object_set_new(root, "post_processor", json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel",
                                                              "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1));
        json_object_set_new(root, "decoder", json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                                       "trim_offsets", 1, "use_regex", 1));
        json_object_set(root, "model", model);
    }
    char *text = ok ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(vocab);
    json_decref(mlist);
    json_decref(added);
    json_decref(model);
    json_decref(root);
    if (!text) lb_error(LB_ENOMEM, "BPE training: out of memory writing tokenizer.json");
    else *len = strlen(text);
    return text;
}

/* ---- words -------------------------------------------------------------------- */

typedef struct trainer {
    lb_strmap words;        /* pre-token → count */
    int *sym;               /* every word's symbol ids, back to back */
    size_t *start;          /* word w: sym[start[w] .. start[w] + len[w]) */
    int *len;
    int64_t *count;
    size_t n_words;
    vocab_list vocab;       /* id → token */
    lb_strmap ids;          /* token → id */
    lb_u64map pair_count;   /* pair → count (int64 bits) */
} trainer;

static void count_word(void *arg, const char *s, size_t n) {
    trainer *tr = arg;
    lb_strmap_entry *e;
    int added;
    if (lb_strmap_put(&tr->words, s, n, 1, &e, &added) == LB_OK && !added) e->value++;
}

static uint64_t pair_key(int a, int b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* ---- the queue: most frequent first, then the smallest pair -------------------- */

typedef struct entry {
    uint64_t pair;
    int64_t count;
    int *pos;               /* words to merge in */
    size_t n_pos;
} entry;

typedef struct queue {
    entry *v;
    size_t n, cap;
} queue;

static int before(const entry *a, const entry *b) { return a->count != b->count ? a->count > b->count : a->pair < b->pair; }

static lb_status queue_push(queue *q, entry e) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 1024;
        entry *v = realloc(q->v, cap * sizeof *v);
        if (!v) return lb_error(LB_ENOMEM, "BPE training: out of memory");
        q->v = v, q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0 && before(&e, &q->v[(i - 1) / 2])) {
        q->v[i] = q->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->v[i] = e;
    return LB_OK;
}

static entry queue_pop(queue *q) {
    entry top = q->v[0], x = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const entry *best = &x;
        if (l < q->n && before(&q->v[l], best)) m = l, best = &q->v[l];
        if (r < q->n && before(&q->v[r], best)) m = r;
        if (m == i) break;
        q->v[i] = q->v[m];
        i = m;
    }
    if (q->n > 0) q->v[i] = x;
    return top;
}

/* Pairs whose words changed in this step (the library's where_to_update), in
 * the order they were first seen. */
typedef struct updates {
    lb_u64map index;        /* pair → slot */
    uint64_t *pair;
    int **pos;
    size_t *n_pos, *cap_pos;
    size_t n, cap;
} updates;

static lb_status updates_add(updates *u, uint64_t pair, int w) {
    uint64_t *slot = lb_u64map_find(&u->index, pair);
    size_t k;
    if (slot) {
        k = (size_t)*slot;
    } else {
        if (u->n == u->cap) {
            size_t cap = u->cap ? 2 * u->cap : 256;
            uint64_t *p = realloc(u->pair, cap * sizeof *p);
            if (p) u->pair = p;
            int **pos = p ? realloc(u->pos, cap * sizeof *pos) : NULL;
            if (pos) u->pos = pos;
            size_t *np = pos ? realloc(u->n_pos, cap * sizeof *np) : NULL;
            if (np) u->n_pos = np;
            size_t *cp = np ? realloc(u->cap_pos, cap * sizeof *cp) : NULL;
            if (!cp) return lb_error(LB_ENOMEM, "BPE training: out of memory");
            u->cap_pos = cp, u->cap = cap;
        }
        k = u->n++;
        u->pair[k] = pair, u->pos[k] = NULL, u->n_pos[k] = 0, u->cap_pos[k] = 0;
        LB_TRY(lb_u64map_set(&u->index, pair, k));
    }
    /* a set of words: a word's changes come together, so checking the last suffices */
    if (u->n_pos[k] && u->pos[k][u->n_pos[k] - 1] == w) return LB_OK;
    if (u->n_pos[k] == u->cap_pos[k]) {
        size_t cap = u->cap_pos[k] ? 2 * u->cap_pos[k] : 4;
        int *p = realloc(u->pos[k], cap * sizeof *p);
        if (!p) return lb_error(LB_ENOMEM, "BPE training: out of memory");
        u->pos[k] = p, u->cap_pos[k] = cap;
    }
    u->pos[k][u->n_pos[k]++] = w;
    return LB_OK;
}

/* Moves every pair with a positive count into the queue and empties u. */
static lb_status updates_drain(updates *u, const trainer *tr, queue *q) {
    lb_status st = LB_OK;
    for (size_t k = 0; k < u->n; k++) {
        const uint64_t *c = lb_u64map_find(&tr->pair_count, u->pair[k]);
        int64_t count = c ? (int64_t)*c : 0;
        if (st == LB_OK && count > 0) {
            st = queue_push(q, (entry){u->pair[k], count, u->pos[k], u->n_pos[k]});
            if (st == LB_OK) continue;
        }
        free(u->pos[k]);
    }
    u->n = 0;
    lb_u64map_free(&u->index);
    return st;
}

static void updates_free(updates *u) {
    for (size_t k = 0; k < u->n; k++) free(u->pos[k]);
    free(u->pair);
    free(u->pos);
    free(u->n_pos);
    free(u->cap_pos);
    lb_u64map_free(&u->index);
    memset(u, 0, sizeof *u);
}

static lb_status add_count(trainer *tr, updates *u, int a, int b, int64_t delta, int w) {
    uint64_t key = pair_key(a, b), *c = lb_u64map_get_or_add(&tr->pair_count, key, 0);
    if (!c) return lb_errcode();
    *c = (uint64_t)((int64_t)*c + delta);
    return delta > 0 ? updates_add(u, key, w) : LB_OK;
}

/* Word::merge of word.rs: every occurrence of (c1, c2), left to right,
 * becomes `rep`; the pairs around it change. */
static lb_status merge_in_word(trainer *tr, updates *u, int w, int c1, int c2, int rep) {
    int *s = tr->sym + tr->start[w];
    int n = tr->len[w];
    int64_t k = tr->count[w];
    for (int i = 0; i < n; i++) {
        if (!(s[i] == c1 && i + 1 < n && s[i + 1] == c2)) continue;
        if (i > 0) {
            LB_TRY(add_count(tr, u, s[i - 1], c1, -k, w));
            LB_TRY(add_count(tr, u, s[i - 1], rep, k, w));
        }
        s[i] = rep;
        memmove(s + i + 1, s + i + 2, (size_t)(n - i - 2) * sizeof *s);
        n--;
        if (i < n - 1) {
            LB_TRY(add_count(tr, u, c2, s[i + 1], -k, w));
            LB_TRY(add_count(tr, u, rep, s[i + 1], k, w));
        }
    }
    tr->len[w] = n;
    return LB_OK;
}

static void trainer_free(trainer *tr) {
    lb_strmap_free(&tr->words);
    free(tr->sym);
    free(tr->start);
    free(tr->len);
    free(tr->count);
    vocab_free(&tr->vocab);
    lb_strmap_free(&tr->ids);
    lb_u64map_free(&tr->pair_count);
}

/* The words of every line of every document, through the ByteLevel pre-tokenizer. */
static lb_status collect_words(trainer *tr, const lb_corpus *c, const lb_hf *pre) {
    for (int d = 0; d < c->n_docs; d++) {
        const char *s = c->text + c->docs[d].offset;
        size_t n = c->docs[d].len;
        for (size_t a = 0; a < n;) {
            const char *nl = memchr(s + a, '\n', n - a);
            size_t e = nl ? (size_t)(nl - s) + 1 : n;
            LB_TRY(lb_hf_pre_tokenize(pre, s + a, e - a, count_word, tr));
            a = e;
        }
    }
    return LB_OK;
}

static lb_status train(trainer *tr, const lb_corpus *c, int vocab_size, int **merges_out, size_t *n_merges) {
    /* ids: the special token, then the 256 byte characters sorted by code point */
    LB_TRY(vocab_add(&tr->vocab, SPECIAL_TOKEN, strlen(SPECIAL_TOKEN)));
    int id_of_byte_char[324];
    for (uint32_t cp = 0; cp < 324; cp++) {
        id_of_byte_char[cp] = -1;
        for (int b = 0; b < 256; b++)
            if (lb_byte_level_char((unsigned char)b) == cp) {
                char u[4];
                id_of_byte_char[cp] = tr->vocab.n;
                LB_TRY(vocab_add(&tr->vocab, u, (size_t)lb_utf8_encode(cp, u)));
            }
    }
    for (int i = 0; i < tr->vocab.n; i++)
        LB_TRY(lb_strmap_put(&tr->ids, tr->vocab.text + tr->vocab.off[i], tr->vocab.len[i], i, NULL, NULL));

    /* pre-tokenize with the same pipeline, without merges or added tokens */
    size_t json_len;
    char *json = byte_level_json(&tr->vocab, NULL, 0, 0, &json_len);
    if (!json) return lb_errcode();
    lb_hf *pre = lb_hf_from_json(json, json_len, "BPE training pre-tokenizer");
    free(json);
    if (!pre) return lb_errcode();
    lb_status st = collect_words(tr, c, pre);
    lb_hf_free(pre);
    LB_TRY(st);

    /* words as symbol ids */
    size_t total = 0;
    tr->n_words = tr->words.n;
    for (size_t w = 0; w < tr->n_words; w++) total += tr->words.entries[w].len;
    tr->sym = malloc((total + 1) * sizeof *tr->sym);
    tr->start = malloc((tr->n_words + 1) * sizeof *tr->start);
    tr->len = malloc((tr->n_words + 1) * sizeof *tr->len);
    tr->count = malloc((tr->n_words + 1) * sizeof *tr->count);
    if (!tr->sym || !tr->start || !tr->len || !tr->count) return lb_error(LB_ENOMEM, "BPE training: out of memory");
    size_t at = 0;
    for (size_t w = 0; w < tr->n_words; w++) {
        const lb_strmap_entry *e = &tr->words.entries[w];
        const unsigned char *s = (const unsigned char *)lb_strmap_key(&tr->words, e);
        tr->start[w] = at, tr->count[w] = e->value, tr->len[w] = 0;
        for (size_t i = 0; i < e->len;) {
            uint32_t cp;
            size_t k = lb_utf8_decode(s + i, e->len - i, &cp, NULL);
            tr->sym[at++] = id_of_byte_char[cp]; /* words hold byte characters only */
            tr->len[w]++;
            i += k;
        }
    }

    /* pair counts and the words of each pair */
    queue q = {0};
    updates u = {0};
    for (size_t w = 0; w < tr->n_words && st == LB_OK; w++) {
        const int *s = tr->sym + tr->start[w];
        for (int i = 0; i + 1 < tr->len[w] && st == LB_OK; i++) st = add_count(tr, &u, s[i], s[i + 1], tr->count[w], (int)w);
    }
    if (st == LB_OK) st = updates_drain(&u, tr, &q);

    int *merges = NULL;
    size_t n = 0, cap = 0;
    while (st == LB_OK && tr->vocab.n < vocab_size && q.n > 0) {
        entry top = queue_pop(&q);
        const uint64_t *cnt = lb_u64map_find(&tr->pair_count, top.pair);
        int64_t now = cnt ? (int64_t)*cnt : 0;
        if (top.count != now) {
            top.count = now;
            st = queue_push(&q, top);
            if (st != LB_OK) free(top.pos);
            continue;
        }
        if (top.count < 1) {
            free(top.pos);
            break;
        }
        int a = (int)(top.pair >> 32), b = (int)(uint32_t)top.pair;
        size_t la = tr->vocab.len[a], lb_ = tr->vocab.len[b];
        char *joined = malloc(la + lb_ + 1);
        if (!joined) st = lb_error(LB_ENOMEM, "BPE training: out of memory");
        int new_id = -1;
        if (st == LB_OK) {
            memcpy(joined, tr->vocab.text + tr->vocab.off[a], la);
            memcpy(joined + la, tr->vocab.text + tr->vocab.off[b], lb_);
            lb_strmap_entry *e = lb_strmap_find(&tr->ids, joined, la + lb_);
            if (e) {
                new_id = (int)e->value;
            } else {
                new_id = tr->vocab.n;
                st = vocab_add(&tr->vocab, joined, la + lb_);
                if (st == LB_OK) st = lb_strmap_put(&tr->ids, joined, la + lb_, new_id, NULL, NULL);
            }
        }
        free(joined);
        if (st == LB_OK && n == cap) {
            cap = cap ? 2 * cap : 1024;
            int *m = realloc(merges, 2 * cap * sizeof *m);
            if (m) merges = m;
            else st = lb_error(LB_ENOMEM, "BPE training: out of memory");
        }
        if (st == LB_OK) merges[2 * n] = a, merges[2 * n + 1] = b, n++;
        for (size_t i = 0; i < top.n_pos && st == LB_OK; i++) st = merge_in_word(tr, &u, top.pos[i], a, b, new_id);
        free(top.pos);
        if (st == LB_OK) st = updates_drain(&u, tr, &q);
    }
    for (size_t i = 0; i < q.n; i++) free(q.v[i].pos);
    free(q.v);
    updates_free(&u);
    if (st != LB_OK) {
        free(merges);
        return st;
    }
    *merges_out = merges, *n_merges = n;
    return LB_OK;
}

/* A pair merged twice keeps its last place (the library keeps merges in a map). */
static size_t drop_repeated_merges(int *m, size_t n) {
    lb_u64map last = {0};
    for (size_t i = 0; i < n; i++)
        if (lb_u64map_set(&last, pair_key(m[2 * i], m[2 * i + 1]), i) != LB_OK) {
            lb_u64map_free(&last);
            return n; /* out of memory: keep them; loading keeps the last rank anyway */
        }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (*lb_u64map_find(&last, pair_key(m[2 * i], m[2 * i + 1])) == i) {
            m[2 * k] = m[2 * i], m[2 * k + 1] = m[2 * i + 1];
            k++;
        }
    lb_u64map_free(&last);
    return k;
}

lb_tokenizer *lb_tokenizer_train_bpe(const lb_corpus *c, int vocab_size) {
    if (vocab_size < 257 || vocab_size > LB_BPE_MAX_ID + 1) {
        lb_error(LB_ECONFIG, "key 'data.vocab_size': expected 257..%d for a bpe tokenizer (the special token and the "
                 "256 bytes come first), got %d", LB_BPE_MAX_ID + 1, vocab_size);
        return NULL;
    }
    if (!c || c->len == 0) {
        lb_error(LB_EINVAL, "BPE training: the corpus is empty");
        return NULL;
    }
    trainer tr = {0};
    int *merges = NULL;
    size_t n_merges = 0, len = 0;
    lb_tokenizer *t = NULL;
    if (train(&tr, c, vocab_size, &merges, &n_merges) == LB_OK) {
        n_merges = drop_repeated_merges(merges, n_merges);
        char *json = byte_level_json(&tr.vocab, merges, n_merges, 1, &len);
        if (json) t = lb_tokenizer_from_json(json, len, "trained BPE tokenizer.json", LB_TOKENIZER_BPE);
        free(json);
        if (t)
            lb_info("bpe tokenizer: %d tokens (%zu merges) from %zu distinct words", t->vocab_size, n_merges,
                        tr.n_words);
    }
    free(merges);
    trainer_free(&tr);
    return t;
}

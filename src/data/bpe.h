/* The BPE model of the Hugging Face tokenizers library (models/bpe/model.rs
 * and word.rs): a vocabulary, merges by rank, byte fallback, unknown tokens,
 * ignore_merges, and a cache of words already merged.
 *
 * lb_bpe_tokenize is safe to call from many threads on one model: the cache
 * only ever gains entries, published with atomic compare-and-swap, and each
 * caller passes its own scratch. */
#ifndef LOWBIT_DATA_BPE_H
#define LOWBIT_DATA_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/hashmap.h"
#include "data/tokenizer.h"

#define LB_BPE_MAX_ID 16777215 /* the largest token id accepted (model.vocab_size's limit, less one) */

/* Appends one id to a growable array of ids (lb_ids: data/tokenizer.h). */
lb_status lb_ids_push(lb_ids *ids, int id);

typedef struct lb_bpe_cache lb_bpe_cache;

typedef struct lb_bpe {
    lb_strmap vocab;       /* token → id */
    const char **tokens;   /* id → token (NUL-terminated, in vocab's key store), NULL for unused ids */
    uint32_t *token_len;
    int n_ids;             /* 1 + the largest id */
    lb_u64map merges;      /* (left id << 32 | right id) → (rank << 32 | merged id) */
    char *unk_token;       /* NULL: none */
    int unk_id;            /* its id, or -1 when it is not in the vocabulary (an error when needed) */
    int byte_fallback, fuse_unk, ignore_merges;
    int byte_ids[256];     /* ids of <0x00>..<0xFF>, -1 when absent */
    int32_t *small_ids;    /* id of each one-character token below U+0800, -1 when absent */
    lb_u64map bigrams;     /* every pair of adjacent characters inside a token (a << 32 | b) */
    lb_bpe_cache *cache;
} lb_bpe;

/* Per-thread work space of lb_bpe_tokenize; zero-initialise, free with lb_bpe_scratch_free. */
typedef struct lb_bpe_scratch {
    void *mem;
    size_t cap;  /* symbols it has room for */
} lb_bpe_scratch;
void lb_bpe_scratch_free(lb_bpe_scratch *s);

/* Building: lb_bpe_init, then lb_bpe_add_token for every vocabulary entry,
 * then lb_bpe_add_merge for every merge in rank order, then lb_bpe_finish.
 * Errors name `where` (the JSON path of the model). */
lb_status lb_bpe_init(lb_bpe *m);
lb_status lb_bpe_add_token(lb_bpe *m, const char *s, size_t n, int64_t id, const char *where);
lb_status lb_bpe_add_merge(lb_bpe *m, const char *a, size_t na, const char *b, size_t nb, uint32_t rank, const char *where);
lb_status lb_bpe_finish(lb_bpe *m);
void lb_bpe_free(lb_bpe *m);

/* Appends the ids of one pre-tokenized word w[0..n) (valid UTF-8, not empty) to out. */
lb_status lb_bpe_tokenize(const lb_bpe *m, lb_bpe_scratch *s, const char *w, size_t n, lb_ids *out);

/* Words longer than this many bytes are not cached (the library's MAX_LENGTH). */
#define LB_BPE_CACHE_MAX_WORD 256
/* The number of words the cache holds; later words are merged every time. */
#define LB_BPE_CACHE_WORDS 65536

#endif

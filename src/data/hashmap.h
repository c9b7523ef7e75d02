/* Hash maps for the tokenizers: byte strings → int64, and uint64 → uint64.
 * Open addressing with linear probing; insertion only (no removal). */
#ifndef LOWBIT_DATA_HASHMAP_H
#define LOWBIT_DATA_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

uint64_t lb_hash_bytes(const void *p, size_t n);

static inline uint64_t lb_hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

typedef struct lb_strmap_entry {
    uint64_t hash;
    size_t key;     /* offset of the key in `keys` */
    size_t len;
    int64_t value;
} lb_strmap_entry;

typedef struct lb_strmap {
    uint32_t *slots;          /* 0 empty, else entry index + 1 */
    size_t mask;              /* slots - 1 (a power of two) */
    lb_strmap_entry *entries; /* in insertion order */
    size_t n, cap;
    char *keys;               /* every key back to back */
    size_t keys_len, keys_cap;
} lb_strmap;

/* The entry of key s[0..n), or NULL. */
lb_strmap_entry *lb_strmap_find(const lb_strmap *m, const char *s, size_t n);
/* Inserts key → value, or finds the key already there; *e receives the entry
 * and *added whether it is new (the value is written only then). */
lb_status lb_strmap_put(lb_strmap *m, const char *s, size_t n, int64_t value, lb_strmap_entry **e, int *added);
static inline const char *lb_strmap_key(const lb_strmap *m, const lb_strmap_entry *e) { return m->keys + e->key; }
void lb_strmap_free(lb_strmap *m);

/* uint64 → uint64; the key UINT64_MAX is reserved. */
typedef struct lb_u64map {
    uint64_t *keys, *values;
    size_t mask, n;
} lb_u64map;

/* Pointer to the value of key, or NULL. */
static inline uint64_t *lb_u64map_find(const lb_u64map *m, uint64_t key) {
    if (!m->keys) return NULL;
    for (size_t i = lb_hash_u64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return &m->values[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
    }
}
/* Sets key → value (replacing a previous value). */
lb_status lb_u64map_set(lb_u64map *m, uint64_t key, uint64_t value);
/* Pointer to the value of key, inserted as `init` when absent. */
uint64_t *lb_u64map_get_or_add(lb_u64map *m, uint64_t key, uint64_t init);
void lb_u64map_free(lb_u64map *m);

#endif

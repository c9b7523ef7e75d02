#include "data/hashmap.h"

#include <stdlib.h>
#include <string.h>

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t lb_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = rotl(h ^ (w * 0x87c37b91114253d5ull), 31) * 0x4cf5ad432745937full;
        s += 8, n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h ^= w * 0x87c37b91114253d5ull;
    return lb_hash_u64(h);
}

/* ---- strings ------------------------------------------------------------------- */

lb_strmap_entry *lb_strmap_find(const lb_strmap *m, const char *s, size_t n) {
    if (!m->slots) return NULL;
    uint64_t h = lb_hash_bytes(s, n);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint32_t k = m->slots[i];
        if (k == 0) return NULL;
        lb_strmap_entry *e = &m->entries[k - 1];
        if (e->hash == h && e->len == n && memcmp(m->keys + e->key, s, n) == 0) return e;
    }
}

static lb_status strmap_grow(lb_strmap *m) {
    size_t n_slots = m->slots ? 2 * (m->mask + 1) : 64;
    uint32_t *slots = calloc(n_slots, sizeof *slots);
    if (!slots) return lb_error(LB_ENOMEM, "hash map: out of memory");
    for (size_t k = 0; k < m->n; k++) {
        size_t i = m->entries[k].hash & (n_slots - 1);
        while (slots[i]) i = (i + 1) & (n_slots - 1);
        slots[i] = (uint32_t)(k + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = n_slots - 1;
    return LB_OK;
}

lb_status lb_strmap_put(lb_strmap *m, const char *s, size_t n, int64_t value, lb_strmap_entry **out, int *added) {
    lb_strmap_entry *e = lb_strmap_find(m, s, n);
    if (e) {
        if (out) *out = e;
        if (added) *added = 0;
        return LB_OK;
    }
    if (m->n >= UINT32_MAX - 1) return lb_error(LB_ENOMEM, "hash map: too many keys");
    if (!m->slots || 2 * (m->n + 1) > m->mask + 1) LB_TRY(strmap_grow(m));
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        lb_strmap_entry *v = realloc(m->entries, cap * sizeof *v);
        if (!v) return lb_error(LB_ENOMEM, "hash map: out of memory");
        m->entries = v, m->cap = cap;
    }
    if (m->keys_len + n + 1 > m->keys_cap) {
        size_t cap = 2 * (m->keys_len + n + 1) + 1024;
        char *k = realloc(m->keys, cap);
        if (!k) return lb_error(LB_ENOMEM, "hash map: out of memory");
        m->keys = k, m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_len, s, n);
    m->keys[m->keys_len + n] = '\0';
    uint64_t h = lb_hash_bytes(s, n);
    e = &m->entries[m->n];
    *e = (lb_strmap_entry){h, m->keys_len, n, value};
    m->keys_len += n + 1;
    size_t i = h & m->mask;
    while (m->slots[i]) i = (i + 1) & m->mask;
    m->slots[i] = (uint32_t)(++m->n);
    if (out) *out = e;
    if (added) *added = 1;
    return LB_OK;
}

void lb_strmap_free(lb_strmap *m) {
    free(m->slots);
    free(m->entries);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

/* ---- integers ------------------------------------------------------------------ */

static lb_status u64map_grow(lb_u64map *m) {
    size_t n_slots = m->keys ? 2 * (m->mask + 1) : 64;
    uint64_t *keys = malloc(n_slots * sizeof *keys), *values = malloc(n_slots * sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return lb_error(LB_ENOMEM, "hash map: out of memory");
    }
    memset(keys, 0xFF, n_slots * sizeof *keys);
    if (m->keys)
        for (size_t j = 0; j <= m->mask; j++) {
            if (m->keys[j] == UINT64_MAX) continue;
            size_t i = lb_hash_u64(m->keys[j]) & (n_slots - 1);
            while (keys[i] != UINT64_MAX) i = (i + 1) & (n_slots - 1);
            keys[i] = m->keys[j], values[i] = m->values[j];
        }
    free(m->keys);
    free(m->values);
    m->keys = keys, m->values = values, m->mask = n_slots - 1;
    return LB_OK;
}

uint64_t *lb_u64map_get_or_add(lb_u64map *m, uint64_t key, uint64_t init) {
    uint64_t *v = lb_u64map_find(m, key);
    if (v) return v;
    if ((!m->keys || 2 * (m->n + 1) > m->mask + 1) && u64map_grow(m) != LB_OK) return NULL;
    size_t i = lb_hash_u64(key) & m->mask;
    while (m->keys[i] != UINT64_MAX) i = (i + 1) & m->mask;
    m->keys[i] = key, m->values[i] = init;
    m->n++;
    return &m->values[i];
}

lb_status lb_u64map_set(lb_u64map *m, uint64_t key, uint64_t value) {
    uint64_t *v = lb_u64map_get_or_add(m, key, value);
    if (!v) return lb_errcode();
    *v = value;
    return LB_OK;
}

void lb_u64map_free(lb_u64map *m) {
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

#include "io/name_index.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int lb_name_index_init(lb_name_index *ix, size_t n) {
    memset(ix, 0, sizeof *ix);
    size_t cap = 16;
    while (cap < 2 * n + 1) {
        if (cap > SIZE_MAX / 4) return -1;
        cap *= 2;
    }
    ix->names = calloc(cap, sizeof *ix->names);
    ix->values = calloc(cap, sizeof *ix->values);
    if (!ix->names || !ix->values) {
        lb_name_index_free(ix);
        return -1;
    }
    ix->cap = cap;
    return 0;
}

void lb_name_index_free(lb_name_index *ix) {
    free(ix->names);
    free(ix->values);
    memset(ix, 0, sizeof *ix);
}

static int grow(lb_name_index *ix) {
    lb_name_index bigger;
    if (lb_name_index_init(&bigger, ix->cap) != 0) return -1;
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->names[i]) lb_name_index_add(&bigger, ix->names[i], ix->values[i], NULL);
    lb_name_index_free(ix);
    *ix = bigger;
    return 0;
}

int lb_name_index_add(lb_name_index *ix, const char *name, size_t value, size_t *existing) {
    if (2 * (ix->count + 1) > ix->cap && grow(ix) != 0) return -1;
    size_t i = (size_t)hash_name(name) & (ix->cap - 1);
    while (ix->names[i]) {
        if (strcmp(ix->names[i], name) == 0) {
            if (existing) *existing = ix->values[i];
            return 0;
        }
        i = (i + 1) & (ix->cap - 1);
    }
    ix->names[i] = name;
    ix->values[i] = value;
    ix->count++;
    return 1;
}

int lb_name_index_get(const lb_name_index *ix, const char *name, size_t *value) {
    if (!ix->cap) return 0;
    size_t i = (size_t)hash_name(name) & (ix->cap - 1);
    while (ix->names[i]) {
        if (strcmp(ix->names[i], name) == 0) {
            if (value) *value = ix->values[i];
            return 1;
        }
        i = (i + 1) & (ix->cap - 1);
    }
    return 0;
}

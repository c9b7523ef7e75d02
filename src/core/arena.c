#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

struct lb_arena_chunk {
    lb_arena_chunk *next;
    size_t size;     /* usable bytes after the header */
    size_t used;
    unsigned char *mem;
};

static size_t align_up(size_t x) { return (x + LB_ARENA_ALIGN - 1) & ~(size_t)(LB_ARENA_ALIGN - 1); }

static lb_arena_chunk *chunk_new(size_t size) {
    lb_arena_chunk *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->mem = aligned_alloc(LB_ARENA_ALIGN, align_up(size));
    if (!c->mem) {
        free(c);
        return NULL;
    }
    c->next = NULL;
    c->size = align_up(size);
    c->used = 0;
    return c;
}

static void chunks_free(lb_arena_chunk *c) {
    while (c) {
        lb_arena_chunk *next = c->next;
        free(c->mem);
        free(c);
        c = next;
    }
}

lb_status lb_arena_init(lb_arena *a, size_t initial) {
    memset(a, 0, sizeof *a);
    a->chunk_size = initial ? initial : ((size_t)1 << 20);
    a->first = a->head = chunk_new(a->chunk_size);
    if (!a->first) return lb_error(LB_ENOMEM, "cannot reserve %zu bytes for the activation arena", a->chunk_size);
    a->capacity = a->first->size;
    a->n_system_allocs = 1;
    return LB_OK;
}

void lb_arena_free(lb_arena *a) {
    chunks_free(a->first);
    free(a->free);
    memset(a, 0, sizeof *a);
}

/* The smallest released block that holds `need` bytes (best fit keeps the
 * large blocks for large requests); its front is handed out, the rest stays
 * free. NULL when none is large enough. */
static void *take_released(lb_arena *a, size_t need) {
    size_t best = a->n_free;
    for (size_t i = 0; i < a->n_free; i++) {
        if (a->free[i].size < need) continue;
        if (best == a->n_free || a->free[i].size < a->free[best].size) best = i;
        if (a->free[best].size == need) break;
    }
    if (best == a->n_free) return NULL;
    lb_arena_block *b = &a->free[best];
    void *p = b->p;
    b->p += need;
    b->size -= need;
    if (b->size == 0) a->free[best] = a->free[--a->n_free];
    return p;
}

static int by_address(const void *x, const void *y) {
    const unsigned char *p = ((const lb_arena_block *)x)->p, *q = ((const lb_arena_block *)y)->p;
    return (p > q) - (p < q);
}

static const lb_arena_chunk *chunk_of(const lb_arena *a, const unsigned char *p) {
    for (const lb_arena_chunk *c = a->first; c; c = c->next)
        if (p >= c->mem && p < c->mem + c->size) return c;
    return NULL;
}

/* Merges released blocks that touch (within one chunk) into larger ones. */
static void coalesce_released(lb_arena *a) {
    if (a->n_free < 2) return;
    qsort(a->free, a->n_free, sizeof *a->free, by_address);
    size_t out = 0;
    for (size_t i = 1; i < a->n_free; i++) {
        lb_arena_block *last = &a->free[out];
        if (last->p + last->size == a->free[i].p && chunk_of(a, last->p) == chunk_of(a, a->free[i].p))
            last->size += a->free[i].size;
        else
            a->free[++out] = a->free[i];
    }
    a->n_free = out + 1;
}

void *lb_arena_alloc(lb_arena *a, size_t bytes) {
    size_t need = align_up(bytes ? bytes : 1);
    if (a->n_free) {
        void *p = take_released(a, need);
        if (!p) {
            coalesce_released(a);
            p = take_released(a, need);
        }
        if (p) return p;
    }
    lb_arena_chunk *c = a->head, *last = a->head;
    while (c && c->used + need > c->size) {
        /* Later chunks exist only before the first reset; move on to them. */
        last = c;
        c = c->next;
    }
    if (!c) {
        size_t size = need > a->chunk_size ? need : a->chunk_size;
        c = chunk_new(size);
        if (!c) {
            lb_error(LB_ENOMEM, "arena: cannot allocate %zu bytes", size);
            return NULL;
        }
        last->next = c;
        a->capacity += c->size;
        a->n_system_allocs++;
        a->chunk_size *= 2; /* fewer chunks while a large first step sizes the arena */
    }
    a->head = c;
    void *p = c->mem + c->used;
    c->used += need;
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void *lb_arena_calloc(lb_arena *a, size_t bytes) {
    void *p = lb_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void lb_arena_release(lb_arena *a, void *p, size_t bytes) {
    if (!p) return;
    if (a->n_free == a->cap_free) {
        size_t cap = a->cap_free ? 2 * a->cap_free : 256;
        lb_arena_block *blocks = realloc(a->free, cap * sizeof *blocks);
        if (!blocks) return; /* the block stays unused until the reset */
        a->free = blocks;
        a->cap_free = cap;
    }
    a->free[a->n_free++] = (lb_arena_block){p, align_up(bytes ? bytes : 1)};
}

void lb_arena_reset(lb_arena *a) {
    a->n_free = 0;
    if (a->first && a->first->next) {
        /* Fold the chunks into one, sized for the most the steps so far have
         * used (not the chunks' total, which the doubling makes up to twice
         * that). */
        size_t total = a->peak ? a->peak : a->capacity;
        lb_arena_chunk *one = chunk_new(total);
        if (one) {
            chunks_free(a->first);
            a->first = one;
            a->capacity = one->size;
            a->n_system_allocs++;
            /* The doubling restarts from what the steps use: a step needing a
             * little more each time (a growing generation window) would
             * otherwise double the next chunk at every reset, without bound. */
            a->chunk_size = one->size;
        }
    }
    for (lb_arena_chunk *c = a->first; c; c = c->next) c->used = 0;
    a->head = a->first;
    a->used = 0;
}

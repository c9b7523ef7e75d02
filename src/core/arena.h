/* A bump allocator for everything that lives for one training step:
 * activations, their gradients, and what ops save for their backward pass.
 *
 * The arena grows by adding chunks while the first step runs; lb_arena_reset()
 * then folds all chunks into one of the total size, so from the second step on
 * a step of the same shape allocates nothing from the system.
 *
 * Memory can also be handed back before the reset (lb_arena_release): the
 * backward pass returns each activation and gradient once no remaining node
 * needs it, and later allocations of the step take those blocks (best fit)
 * before bumping, so gradients live where finished activations were. */
#ifndef LOWBIT_CORE_ARENA_H
#define LOWBIT_CORE_ARENA_H

#include <stddef.h>

#include "core/error.h"

#define LB_ARENA_ALIGN 64   /* cache line; also what AVX-512 loads like */

typedef struct lb_arena_chunk lb_arena_chunk;
typedef struct lb_arena_block { unsigned char *p; size_t size; } lb_arena_block;

typedef struct lb_arena {
    lb_arena_chunk *head;   /* chunk being filled */
    lb_arena_chunk *first;
    size_t chunk_size;      /* size of a new chunk when one is needed */
    size_t used;            /* bytes bumped since the last reset (released blocks still count) */
    size_t peak;            /* largest `used` seen: the size the chunks fold into */
    size_t capacity;        /* bytes held from the system */
    size_t n_system_allocs; /* chunks ever allocated: tests assert it stops growing */
    lb_arena_block *free;   /* released blocks, reused before bumping; emptied by reset */
    size_t n_free, cap_free;
} lb_arena;

/* `initial` bytes are reserved now (0 picks a default of 1 MiB). */
lb_status lb_arena_init(lb_arena *a, size_t initial);
void lb_arena_free(lb_arena *a);

/* `bytes` aligned to LB_ARENA_ALIGN; NULL (with LB_ENOMEM recorded) when the
 * system has no more memory. The memory is not cleared. */
void *lb_arena_alloc(lb_arena *a, size_t bytes);
/* Same, cleared to zero. */
void *lb_arena_calloc(lb_arena *a, size_t bytes);

/* Returns `bytes` at `p` (both as given to/by lb_arena_alloc) for reuse
 * before the next reset. The caller must not touch the memory afterwards.
 * Never fails: when the free list cannot grow, the block is simply not
 * reused. */
void lb_arena_release(lb_arena *a, void *p, size_t bytes);

/* Forgets every allocation (pointers handed out become invalid). */
void lb_arena_reset(lb_arena *a);

#endif

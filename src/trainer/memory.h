/* How much memory a run needs, and whether this process may have it.
 *
 * The need is computed before anything large is allocated, part by part,
 * from the same sizes the code allocates: parameters and gradients from the
 * model's parameter table (lb_model_shape), optimizer state from the
 * optimizer's own per-parameter sizes (lb_optim_param_state_bytes), the
 * activation arena from the forward pass's tensors (lb_model_forward_bytes),
 * a distillation teacher likewise. The limit is the least of what
 * RLIMIT_AS and RLIMIT_DATA still allow this process (their limit minus
 * what it holds now) and MemAvailable + SwapFree of /proc/meminfo. */
#ifndef LOWBIT_TRAINER_MEMORY_H
#define LOWBIT_TRAINER_MEMORY_H

#include <stddef.h>

#include "core/error.h"

/* The activation arena is reserved at its estimated peak plus 1/8: the
 * estimate is within a few percent of the measured peak (tests/test_memory.c),
 * so the first step does not grow the arena. */
#define LB_ARENA_MARGIN 8

typedef struct lb_memory_need {
    size_t parameters;   /* fp32 weights (the masters) */
    size_t gradients;    /* fp32 gradients, one per parameter */
    size_t optimizer;    /* optimizer state in its configured precision, with scales */
    size_t activations;  /* the activation arena: its estimated peak over one micro-batch and
                            1/LB_ARENA_MARGIN of it more, reserved in one piece */
    size_t teacher;      /* train.distill: the teacher's weights, gradients and arena */
    size_t data;         /* the corpus and its token ids (or the shards' tokens) */
    size_t dist;         /* several ranks: gradient reduction buffers, and on rank 0 what a save gathers */
    size_t total;        /* the sum */
} lb_memory_need;

/* Sets need->total to the sum of the parts. */
void lb_memory_need_sum(lb_memory_need *need);

/* "~1.23 GiB: parameters 512.0 MiB, gradients 512.0 MiB, optimizer …,
 * activations …[, teacher …][, data …]"; returns the length as snprintf. */
int lb_memory_format(const lb_memory_need *need, char *buf, size_t size);

/* One size in the units above: "512.0 MiB", "1.23 GiB", "96.0 KiB". */
int lb_memory_size_str(size_t bytes, char *buf, size_t size);

/* What this process may still allocate (see the top of the file). */
typedef struct lb_memory_limit {
    int known;           /* 0: no limit found (nothing below is set) */
    size_t available;    /* bytes it may still allocate */
    size_t limit;        /* the limit itself (for ulimit: the whole address space allowed) */
    const char *what;    /* "ulimit -v", "ulimit -d", "MemAvailable + SwapFree" */
} lb_memory_limit;
lb_memory_limit lb_memory_limit_now(void);

/* LB_ENOMEM when need->total exceeds what the process may allocate:
 * "config 'x.yaml': needs about 4.30 GiB: parameters …, activations …, but
 * ulimit -v allows 1.00 GiB (660.4 MiB of it still free)": what the process
 * already holds counts against a ulimit. `what` names the config or file. */
lb_status lb_memory_check(const char *what, const lb_memory_need *need);

#endif

/* The benchmarks' clock (bench_autograd.c, bench_runtime.c). */
#ifndef LOWBIT_BENCH_CLOCK_H
#define LOWBIT_BENCH_CLOCK_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Wall time, or with LOWBIT_BENCH_CLOCK=cpu the CPU time of the process
 * (all its threads): on a machine other jobs keep busy, time spent waiting
 * for a core then does not count (set OMP_WAIT_POLICY=passive, so waiting
 * threads sleep instead of spinning). Rates are then per CPU-second. */
static double now(void) {
    static int clock_id = -1;
    if (clock_id < 0) {
        const char *c = getenv("LOWBIT_BENCH_CLOCK");
        clock_id = c && !strcmp(c, "cpu") ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
    }
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif

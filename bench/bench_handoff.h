/* The round trip of a cache line between two OpenMP threads (bench_handoff.c,
 * bench_runtime.c): multi-threaded decoding hands off four times a layer, so
 * this is the price of each hand-off on the machine at that moment. In a VM
 * it changes when the host moves the vCPUs (docs/runtime.md, "The host moves
 * under the measurements"). */
#ifndef LOWBIT_BENCH_HANDOFF_H
#define LOWBIT_BENCH_HANDOFF_H

#include <omp.h>
#include <stdatomic.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline void handoff_relax(void) {
#if defined(__x86_64__)
    _mm_pause();
#endif
}

/* Two threads pass a counter back and forth (each waits for the other's
 * value, then writes its own) `rounds` times, `reps` times; the fastest
 * round trip in ns, or -1 when two threads could not be had. */
static double handoff_round_trip_ns(long rounds, int reps) {
    static _Alignas(64) atomic_long ping;
    static _Alignas(64) atomic_long pong;
    double best = -1.0;
    for (int rep = 0; rep < reps; rep++) {
        atomic_store(&ping, 0);
        atomic_store(&pong, 0);
        double t0 = 0.0, t1 = 0.0;
        int threads = 0;
#pragma omp parallel num_threads(2)
        {
#pragma omp single
            threads = omp_get_num_threads();
            if (threads == 2 && omp_get_thread_num() == 0) {
                t0 = omp_get_wtime();
                for (long i = 1; i <= rounds; i++) {
                    atomic_store_explicit(&ping, i, memory_order_release);
                    while (atomic_load_explicit(&pong, memory_order_acquire) < i) handoff_relax();
                }
                t1 = omp_get_wtime();
            } else if (threads == 2) {
                for (long i = 1; i <= rounds; i++) {
                    while (atomic_load_explicit(&ping, memory_order_acquire) < i) handoff_relax();
                    atomic_store_explicit(&pong, i, memory_order_release);
                }
            }
        }
        if (threads != 2) return -1.0;
        const double ns = (t1 - t0) * 1e9 / (double)rounds;
        if (best < 0.0 || ns < best) best = ns;
    }
    return best;
}

#endif

/* The round trip of a cache line between two OpenMP threads (bench_handoff.c,
 * bench_runtime.c): multi-threaded decoding hands off four times a layer, so
 * this is the price of each hand-off on the machine at that moment. In a VM
 * it changes when the host moves the vCPUs (docs/runtime.md, "The host moves
 * under the measurements"). */
#ifndef LOWBIT_BENCH_HANDOFF_H
#define LOWBIT_BENCH_HANDOFF_H

#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
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
 * round trip in ns, or -1 when two threads could not be had or could not run
 * at once: a round that takes more than a second (both threads on one CPU, as
 * under `taskset -c 0`, pass the line once per time slice) ends the
 * measurement instead of spinning for minutes. */
static double handoff_round_trip_ns(long rounds, int reps) {
    static _Alignas(64) atomic_long ping;
    static _Alignas(64) atomic_long pong;
    static _Alignas(64) atomic_int stop;
    const double limit_s = 1.0;
    double best = -1.0;
    for (int rep = 0; rep < reps; rep++) {
        atomic_store(&ping, 0);
        atomic_store(&pong, 0);
        atomic_store(&stop, 0);
        double t0 = 0.0, t1 = 0.0;
        int threads = 0;
#pragma omp parallel num_threads(2)
        {
#pragma omp single
            threads = omp_get_num_threads();
            if (threads == 2 && omp_get_thread_num() == 0) {
                t0 = omp_get_wtime();
                for (long i = 1; i <= rounds && !atomic_load(&stop); i++) {
                    atomic_store_explicit(&ping, i, memory_order_release);
                    for (long spins = 1; atomic_load_explicit(&pong, memory_order_acquire) < i; spins++) {
                        handoff_relax();
                        if (spins % 1024 == 0 && omp_get_wtime() - t0 > limit_s) {
                            atomic_store(&stop, 1);
                            break;
                        }
                    }
                }
                t1 = omp_get_wtime();
            } else if (threads == 2) {
                for (long i = 1; i <= rounds && !atomic_load(&stop); i++) {
                    while (atomic_load_explicit(&ping, memory_order_acquire) < i && !atomic_load(&stop))
                        handoff_relax();
                    atomic_store_explicit(&pong, i, memory_order_release);
                }
            }
        }
        if (threads != 2 || atomic_load(&stop)) return -1.0;
        const double ns = (t1 - t0) * 1e9 / (double)rounds;
        if (best < 0.0 || ns < best) best = ns;
    }
    return best;
}

/* The round trip for a report line: "512 ns", or why there is none. */
static inline const char *handoff_str(double ns, char *buf, size_t size) {
    if (ns < 0.0) snprintf(buf, size, "not measured (two threads could not run at once)");
    else snprintf(buf, size, "%.0f ns", ns);
    return buf;
}

#endif

/* How long a cache line takes to go from one core to another and back.
 *
 *   bench_handoff [ROUNDS]
 *
 * Two OpenMP threads pass a counter back and forth (each waits for the
 * other's value, then writes its own) ROUNDS times (default 200000), five
 * times; prints the fastest round trip. Multi-threaded decoding hands off
 * four times a layer, so this is the price of each hand-off on this
 * machine. In a VM it changes when the host moves the vCPUs (docs/runtime.md,
 * "The host moves under the measurements"): run it before and after a
 * measurement and report it beside the figures. */
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif


static _Alignas(64) atomic_long ping;
static _Alignas(64) atomic_long pong;

static inline void relax(void) {
#if defined(__x86_64__)
    _mm_pause();
#endif
}

int main(int argc, char **argv) {
    const long rounds = argc > 1 ? atol(argv[1]) : 200000;
    if (rounds < 1) {
        fprintf(stderr, "usage: bench_handoff [ROUNDS >= 1]\n");
        return 2;
    }
    double best = 0.0;
    int threads = 0;
    for (int rep = 0; rep < 5; rep++) {
        atomic_store(&ping, 0);
        atomic_store(&pong, 0);
        double t0 = 0.0, t1 = 0.0;
#pragma omp parallel num_threads(2)
        {
            if (omp_get_thread_num() == 0) threads = omp_get_num_threads();
#pragma omp barrier
            if (threads == 2) {
                if (omp_get_thread_num() == 0) {
                    t0 = omp_get_wtime();
                    for (long i = 1; i <= rounds; i++) {
                        atomic_store_explicit(&ping, i, memory_order_release);
                        while (atomic_load_explicit(&pong, memory_order_acquire) < i) relax();
                    }
                    t1 = omp_get_wtime();
                } else {
                    for (long i = 1; i <= rounds; i++) {
                        while (atomic_load_explicit(&ping, memory_order_acquire) < i) relax();
                        atomic_store_explicit(&pong, i, memory_order_release);
                    }
                }
            }
        }
        if (threads != 2) {
            fprintf(stderr, "bench_handoff: needs 2 OpenMP threads, got %d\n", threads);
            return 1;
        }
        const double ns = (t1 - t0) * 1e9 / (double)rounds;
        if (rep == 0 || ns < best) best = ns;
    }
    printf("cache-line round trip between two threads: %.0f ns (best of 5 x %ld)\n", best, rounds);
    return 0;
}

/* How long a cache line takes to go from one core to another and back.
 *
 *   bench_handoff [ROUNDS]
 *
 * Two OpenMP threads pass a counter back and forth ROUNDS times (default
 * 200000), five times; prints the fastest round trip (bench_handoff.h). Run
 * it before and after a multi-threaded measurement and report it beside the
 * figures. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_handoff.h"

int main(int argc, char **argv) {
    const long rounds = argc > 1 ? atol(argv[1]) : 200000;
    if (rounds < 1) {
        fprintf(stderr, "usage: bench_handoff [ROUNDS >= 1]\n");
        return 2;
    }
    const double ns = handoff_round_trip_ns(rounds, 5);
    if (ns < 0.0) {
        fprintf(stderr, "bench_handoff: could not get 2 OpenMP threads running at once (one CPU?)\n");
        return 1;
    }
    printf("cache-line round trip between two threads: %.0f ns (best of 5 x %ld)\n", ns, rounds);
    return 0;
}

/* AVX-512 VNNI kernels: vpdpbusd multiplies 64 unsigned weight codes by 64
 * signed activation codes and adds them four at a time into 16 int32 lanes.
 * Compiled with -mavx512f -mavx512bw -mavx512vnni (CMakeLists.txt). */
#if defined(__x86_64__)
#include <immintrin.h>

/* vpdpbusd written out: GCC 12's _mm512_dpbusd_epi32 in a loop of many
 * accumulators copies each accumulator to another register and back around
 * every instruction, and spills those that no longer fit. */
static inline __m512i dot4(__m512i acc, __m512i u, __m512i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
    return acc;
}
#define LB_RT_DOT4(acc, u, s) dot4(acc, u, s)
#define LB_RT_KERNELS lb_rt_kernels_avx512vnni
#include "runtime/kernels_avx512.h"
#endif

/* AVX-512 VNNI kernels: vpdpbusd multiplies 64 unsigned weight codes by 64
 * signed activation codes and adds them four at a time into 16 int32 lanes.
 * Compiled with -mavx512f -mavx512bw -mavx512vnni (CMakeLists.txt). */
#if defined(__x86_64__)
#include <immintrin.h>

#define LB_RT_DOT4(acc, u, s) _mm512_dpbusd_epi32(acc, u, s)
#define LB_RT_KERNELS lb_rt_kernels_avx512vnni
#include "runtime/kernels_avx512.h"
#endif

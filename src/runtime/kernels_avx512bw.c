/* AVX-512BW kernels, for CPUs without VNNI: each vpdpbusd of
 * kernels_avx512.h done as vpmaddubsw (unsigned × signed bytes, pairs summed
 * to int16: at most 2·32·128 here (ternary_8x1's fields times 16), so no
 * saturation) and vpmaddwd against
 * ones (int16 pairs summed to int32).
 * Compiled with -mavx512f -mavx512bw and without VNNI (CMakeLists.txt). */
#if defined(__x86_64__)
#include <immintrin.h>

#define LB_RT_DOT4(acc, u, s) \
    _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)))
#define LB_RT_KERNELS lb_rt_kernels_avx512bw
#include "runtime/kernels_avx512.h"
#endif

/* AVX2 kernels (no VNNI, no AVX-512: what older CPUs and valgrind run).
 * A 64-byte ternary group is two 32-byte halves; vpmaddubsw multiplies
 * unsigned weight codes by signed activation codes and sums pairs into
 * int16 (at most 2·2·128), four runs are added in int16 (at most 2048) and
 * vpmaddwd against ones widens them into the int32 accumulators. Binary:
 * 32 sign bits become a byte mask (each byte picks its bit) that keeps the
 * activations of the +1 weights.
 * Compiled with -mavx2 and without AVX-512 (CMakeLists.txt). */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "runtime/kernels_tiles.h"

static inline int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Byte j of the result is 0xff when bit j of `bits` is set. */
static inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, /* lane 0: bytes 0, 1 */
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3); /* lane 1: bytes 2, 3 */
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

#define TERNARY_TILE(R, C)                                                                                        \
    static void LB_RT_TILE_NAME(ternary, R, C)(const uint8_t *w, size_t rb, const int8_t *a, size_t lda,          \
                                               const int32_t *asum, int groups, int32_t *out, size_t ldo) {       \
        __m256i acc[R][C];                                                                                         \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_si256();                                        \
        const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);                                       \
        for (int g = 0; g < groups; g++)                                                                           \
            for (int h = 0; h < 2; h++) {                                                                          \
                __m256i p[R], s16[R][C];                                                                           \
                for (int r = 0; r < R; r++) {                                                                      \
                    p[r] = _mm256_loadu_si256((const __m256i *)(w + (size_t)r * rb + 64 * (size_t)g + 32 * h));   \
                    for (int c = 0; c < C; c++) s16[r][c] = _mm256_setzero_si256();                                \
                }                                                                                                  \
                for (int i = 0; i < 4; i++) {                                                                      \
                    __m256i av[C];                                                                                 \
                    for (int c = 0; c < C; c++)                                                                    \
                        av[c] = _mm256_loadu_si256(                                                                \
                            (const __m256i *)(a + (size_t)c * lda + LB_RT_GROUP * (size_t)g + 64 * i + 32 * h));  \
                    for (int r = 0; r < R; r++) {                                                                  \
                        __m256i u = _mm256_and_si256(p[r], m3);                                                    \
                        p[r] = _mm256_srli_epi16(p[r], 2);                                                         \
                        for (int c = 0; c < C; c++)                                                                \
                            s16[r][c] = _mm256_add_epi16(s16[r][c], _mm256_maddubs_epi16(u, av[c]));               \
                    }                                                                                              \
                }                                                                                                  \
                for (int r = 0; r < R; r++)                                                                        \
                    for (int c = 0; c < C; c++)                                                                    \
                        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(s16[r][c], ones));               \
            }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) out[(size_t)c * ldo + r] = hsum(acc[r][c]) - asum[c];                      \
    }

#define BINARY_TILE(R, C)                                                                                         \
    static void LB_RT_TILE_NAME(binary, R, C)(const uint8_t *w, size_t rb, const int8_t *a, size_t lda,           \
                                              const int32_t *asum, int groups, int32_t *out, size_t ldo) {        \
        __m256i acc[R][C];                                                                                         \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_si256();                                        \
        const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);                                  \
        for (int g = 0; g < groups; g++) {                                                                         \
            __m256i s16[R][C]; /* eight runs of 32, at most 8·2·127 */                                             \
            for (int r = 0; r < R; r++)                                                                            \
                for (int c = 0; c < C; c++) s16[r][c] = _mm256_setzero_si256();                                    \
            for (int run = 0; run < 8; run++) {                                                                    \
                __m256i av[C];                                                                                     \
                for (int c = 0; c < C; c++)                                                                        \
                    av[c] = _mm256_loadu_si256(                                                                    \
                        (const __m256i *)(a + (size_t)c * lda + LB_RT_GROUP * (size_t)g + 32 * run));             \
                for (int r = 0; r < R; r++) {                                                                      \
                    uint32_t bits;                                                                                 \
                    memcpy(&bits, w + (size_t)r * rb + 32 * (size_t)g + 4 * run, sizeof bits);                    \
                    __m256i plus = bits_to_bytes(bits);                                                            \
                    for (int c = 0; c < C; c++)                                                                    \
                        s16[r][c] = _mm256_add_epi16(s16[r][c],                                                    \
                                                     _mm256_maddubs_epi16(ones8, _mm256_and_si256(plus, av[c])));  \
                }                                                                                                  \
            }                                                                                                      \
            for (int r = 0; r < R; r++)                                                                            \
                for (int c = 0; c < C; c++)                                                                        \
                    acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(s16[r][c], ones16));                 \
        }                                                                                                          \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) out[(size_t)c * ldo + r] = 2 * hsum(acc[r][c]) - asum[c];                  \
    }

TERNARY_TILE(2, 2)
TERNARY_TILE(1, 2)
TERNARY_TILE(4, 1)
TERNARY_TILE(1, 1)
LB_RT_TILED_DOT(ternary, 2, 2, 4, 4)

BINARY_TILE(2, 2)
BINARY_TILE(1, 2)
BINARY_TILE(4, 1)
BINARY_TILE(1, 1)
LB_RT_TILED_DOT(binary, 2, 2, 4, 4)

const lb_rt_kernels lb_rt_kernels_avx2 = {ternary, binary};
#endif

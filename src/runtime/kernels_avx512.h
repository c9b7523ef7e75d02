/* The AVX-512 kernels, written once and compiled twice: kernels_avx512vnni.c
 * and kernels_avx512bw.c define LB_RT_DOT4(acc, u, s) — acc plus, in each
 * int32 lane, the sum of the four products of unsigned bytes u and signed
 * bytes s (vpdpbusd) — and LB_RT_KERNELS, the name of the table, then
 * include this file.
 * Ternary: a 64-byte group load, then a mask and a 2-bit shift per run of 64
 * weights (a decoded token: one shift per group, ternary_8x1). Binary: a 64-bit word of signs is a byte mask that keeps the
 * activations of the +1 weights, summed against ones.
 * A decoded token runs 8-row tiles: one activation load serves 8 rows, and
 * the 8 accumulators are summed together (sum8) rather than one by one. */
#ifndef LB_RT_DOT4
#error "define LB_RT_DOT4 and LB_RT_KERNELS before including runtime/kernels_avx512.h"
#endif
#include <immintrin.h>
#include <string.h>

#include "runtime/kernels_tiles.h"

#define TERNARY_TILE(R, C)                                                                                        \
    static void LB_RT_TILE_NAME(ternary, R, C)(const uint8_t *w, size_t rb, const int8_t *a, size_t lda,          \
                                               const int32_t *asum, int groups, int32_t *out, size_t ldo) {       \
        __m512i acc[R][C];                                                                                         \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_si512();                                        \
        const __m512i m3 = _mm512_set1_epi8(3);                                                                    \
        for (int g = 0; g < groups; g++) {                                                                         \
            __m512i p[R];                                                                                          \
            for (int r = 0; r < R; r++) p[r] = _mm512_loadu_si512(w + (size_t)r * rb + 64 * (size_t)g);           \
            for (int i = 0; i < 4; i++) {                                                                          \
                __m512i av[C];                                                                                     \
                for (int c = 0; c < C; c++)                                                                        \
                    av[c] = _mm512_loadu_si512(a + (size_t)c * lda + LB_RT_GROUP * (size_t)g + 64 * i);           \
                for (int r = 0; r < R; r++) {                                                                      \
                    __m512i u = _mm512_and_si512(p[r], m3);                                                        \
                    p[r] = _mm512_srli_epi16(p[r], 2);                                                             \
                    for (int c = 0; c < C; c++) acc[r][c] = LB_RT_DOT4(acc[r][c], u, av[c]);             \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) out[(size_t)c * ldo + r] = _mm512_reduce_add_epi32(acc[r][c]) - asum[c];  \
    }

#define BINARY_TILE(R, C)                                                                                         \
    static void LB_RT_TILE_NAME(binary, R, C)(const uint8_t *w, size_t rb, const int8_t *a, size_t lda,           \
                                              const int32_t *asum, int groups, int32_t *out, size_t ldo) {        \
        __m512i acc[R][C];                                                                                         \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_si512();                                        \
        const __m512i ones = _mm512_set1_epi8(1);                                                                  \
        for (int g = 0; g < groups; g++)                                                                           \
            for (int i = 0; i < 4; i++) {                                                                          \
                __m512i av[C];                                                                                     \
                for (int c = 0; c < C; c++)                                                                        \
                    av[c] = _mm512_loadu_si512(a + (size_t)c * lda + LB_RT_GROUP * (size_t)g + 64 * i);           \
                for (int r = 0; r < R; r++) {                                                                      \
                    uint64_t bits;                                                                                 \
                    memcpy(&bits, w + (size_t)r * rb + 32 * (size_t)g + 8 * i, sizeof bits);                      \
                    __mmask64 plus = _cvtu64_mask64(bits);                                                         \
                    for (int c = 0; c < C; c++)                                                                    \
                        acc[r][c] = LB_RT_DOT4(acc[r][c], ones, _mm512_maskz_mov_epi8(plus, av[c]));      \
                }                                                                                                  \
            }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                                \
            for (int c = 0; c < C; c++)                                                                            \
                out[(size_t)c * ldo + r] = 2 * _mm512_reduce_add_epi32(acc[r][c]) - asum[c];                       \
    }

/* Lane r of the result: the sum of the 16 lanes of v[r]. A transpose-add
 * tree: pairs of vectors interleaved and added (32-bit, then 64-bit
 * elements), then the 128-bit lanes; 21 instructions for 8 rows. */
static inline __m256i sum8(const __m512i v[8]) {
    __m512i s1[4], s2[2];
    for (int i = 0; i < 4; i++) /* per 128-bit lane: v0 v1 v0 v1 (pairs of elements summed) */
        s1[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                 _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 2; i++) /* per 128-bit lane: rows 4i..4i + 3, each that lane's sum */
        s2[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(s1[2 * i], s1[2 * i + 1]),
                                 _mm512_unpackhi_epi64(s1[2 * i], s1[2 * i + 1]));
    /* 128-bit lanes: rows 0..3 of lanes 0 + 1, rows 4..7 of lanes 0 + 1, rows 0..3 of 2 + 3, rows 4..7 of 2 + 3 */
    const __m512i s3 = _mm512_add_epi32(_mm512_shuffle_i32x4(s2[0], s2[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_i32x4(s2[0], s2[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i s4 = _mm512_shuffle_i32x4(s3, s3, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm256_add_epi32(_mm512_castsi512_si256(s4), _mm512_extracti64x4_epi64(s4, 1));
}

/* Loaded once into a register: left to itself the compiler folds the load
 * into every instruction that uses the value (four times a weight vector,
 * four rows an activation vector), and the loads become the bottleneck. */
#define KEEP_IN_REGISTER(v) __asm__("" : "+v"(v))

/* A decoded token's 8 rows, with two accumulators a row. One 16-bit shift
 * of the group p by 2 puts every field at the bottom of a nibble:
 *   p & 0x03 field 0,  (p >> 2) & 0x03 field 1      (into acc[r][0])
 *   p & 0x30 field 2 times 16,  (p >> 2) & 0x30 field 3 times 16   (acc[r][1])
 * so that a row's 256 weights cost a shift, four masks and four vpdpbusd
 * (three shifts before), and acc[r][1], a multiple of 16 in every lane, is
 * shifted back once per row. Its bytes are at most 32, so vpmaddubsw
 * (kernels_avx512bw.c) does not saturate either. */
static void ternary_8x1(const uint8_t *w, size_t rb, const int8_t *a, size_t lda, const int32_t *asum, int groups,
                        int32_t *out, size_t ldo) {
    (void)lda, (void)ldo;
    __m512i acc[8][2];
    for (int r = 0; r < 8; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    const __m512i lo = _mm512_set1_epi8(0x03), hi = _mm512_set1_epi8(0x30);
    for (int g = 0; g < groups; g++) {
        __m512i av[4];
        for (int i = 0; i < 4; i++) {
            av[i] = _mm512_loadu_si512(a + LB_RT_GROUP * (size_t)g + 64 * i);
            KEEP_IN_REGISTER(av[i]);
        }
        for (int r = 0; r < 8; r++) {
            __m512i p = _mm512_loadu_si512(w + (size_t)r * rb + 64 * (size_t)g);
            KEEP_IN_REGISTER(p);
            const __m512i p2 = _mm512_srli_epi16(p, 2);
            acc[r][0] = LB_RT_DOT4(acc[r][0], _mm512_and_si512(p, lo), av[0]);
            acc[r][0] = LB_RT_DOT4(acc[r][0], _mm512_and_si512(p2, lo), av[1]);
            acc[r][1] = LB_RT_DOT4(acc[r][1], _mm512_and_si512(p, hi), av[2]);
            acc[r][1] = LB_RT_DOT4(acc[r][1], _mm512_and_si512(p2, hi), av[3]);
        }
    }
    __m512i row[8];
    for (int r = 0; r < 8; r++) row[r] = _mm512_add_epi32(acc[r][0], _mm512_srai_epi32(acc[r][1], 4));
    _mm256_storeu_si256((__m256i *)out, _mm256_sub_epi32(sum8(row), _mm256_set1_epi32(asum[0])));
}

static void binary_8x1(const uint8_t *w, size_t rb, const int8_t *a, size_t lda, const int32_t *asum, int groups,
                       int32_t *out, size_t ldo) {
    (void)lda, (void)ldo;
    __m512i acc[8];
    for (int r = 0; r < 8; r++) acc[r] = _mm512_setzero_si512();
    const __m512i ones = _mm512_set1_epi8(1);
    for (int g = 0; g < groups; g++) {
        __m512i av[4];
        for (int i = 0; i < 4; i++) av[i] = _mm512_loadu_si512(a + LB_RT_GROUP * (size_t)g + 64 * i);
        for (int r = 0; r < 8; r++)
            for (int i = 0; i < 4; i++) {
                uint64_t bits;
                memcpy(&bits, w + (size_t)r * rb + 32 * (size_t)g + 8 * i, sizeof bits);
                acc[r] = LB_RT_DOT4(acc[r], ones, _mm512_maskz_mov_epi8(_cvtu64_mask64(bits), av[i]));
            }
    }
    const __m256i s = sum8(acc);
    _mm256_storeu_si256((__m256i *)out, _mm256_sub_epi32(_mm256_add_epi32(s, s), _mm256_set1_epi32(asum[0])));
}

TERNARY_TILE(4, 4)
TERNARY_TILE(1, 4)
TERNARY_TILE(4, 1)
TERNARY_TILE(1, 1)
LB_RT_TILED_DOT(ternary, 4, 4, 8, 4)

BINARY_TILE(4, 4)
BINARY_TILE(1, 4)
BINARY_TILE(4, 1)
BINARY_TILE(1, 1)
LB_RT_TILED_DOT(binary, 4, 4, 8, 4)

const lb_rt_kernels LB_RT_KERNELS = {ternary, binary};

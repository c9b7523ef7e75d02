/* The loop every SIMD kernel file shares: rows × tokens in register tiles.
 *
 * A kernel file defines tile functions
 *   static void NAME_RxC(const uint8_t *w, size_t row_bytes, const int8_t *a, size_t lda,
 *                        const int32_t *asum, int groups, int32_t *out, size_t ldo)
 * that compute an R-row by C-token block (one load of a weight group serves
 * C tokens, one load of an activation run serves R rows), then
 *   LB_RT_TILED_DOT(NAME, RM, CM, RD, RE)
 * defines `static void NAME(...)` (an lb_rt_dot_fn) running RM×CM tiles over
 * blocks of CM tokens, RD×1 then RE×1 tiles over the tokens left (a decoded
 * token is one: RD is the wide decode tile), and 1×CM / 1×1 tiles over the
 * rows left. */
#ifndef LOWBIT_RUNTIME_KERNELS_TILES_H
#define LOWBIT_RUNTIME_KERNELS_TILES_H

#include "runtime/kernels.h"

#define LB_RT_TILE_NAME(name, r, c) name##_##r##x##c

#define LB_RT_TILED_DOT(name, RM, CM, RD, RE)                                                                          \
    static void name(const uint8_t *w, size_t row_bytes, int n_rows, const int8_t *a, size_t lda,                \
                     const int32_t *asum, int n_tok, int kp, int32_t *out, size_t ldo) {                         \
        const int groups = kp / LB_RT_GROUP;                                                                       \
        int t = 0;                                                                                                 \
        for (; t + CM <= n_tok; t += CM) {                                                                         \
            const int8_t *at = a + (size_t)t * lda;                                                                \
            int32_t *ot = out + (size_t)t * ldo;                                                                   \
            int r = 0;                                                                                             \
            for (; r + RM <= n_rows; r += RM)                                                                      \
                LB_RT_TILE_NAME(name, RM, CM)(w + (size_t)r * row_bytes, row_bytes, at, lda, asum + t, groups,    \
                                              ot + r, ldo);                                                        \
            for (; r < n_rows; r++)                                                                                \
                LB_RT_TILE_NAME(name, 1, CM)(w + (size_t)r * row_bytes, row_bytes, at, lda, asum + t, groups,     \
                                             ot + r, ldo);                                                         \
        }                                                                                                          \
        for (; t < n_tok; t++) {                                                                                   \
            const int8_t *at = a + (size_t)t * lda;                                                                \
            int32_t *ot = out + (size_t)t * ldo;                                                                   \
            int r = 0;                                                                                             \
            for (; r + RD <= n_rows; r += RD)                                                                      \
                LB_RT_TILE_NAME(name, RD, 1)(w + (size_t)r * row_bytes, row_bytes, at, lda, asum + t, groups,     \
                                             ot + r, ldo);                                                         \
            for (; r + RE <= n_rows; r += RE)                                                                      \
                LB_RT_TILE_NAME(name, RE, 1)(w + (size_t)r * row_bytes, row_bytes, at, lda, asum + t, groups,     \
                                             ot + r, ldo);                                                         \
            for (; r < n_rows; r++)                                                                                \
                LB_RT_TILE_NAME(name, 1, 1)(w + (size_t)r * row_bytes, row_bytes, at, lda, asum + t, groups,      \
                                            ot + r, ldo);                                                          \
        }                                                                                                          \
    }

#endif

/* The integer kernels of the packed runtime: exact dot products of packed
 * ternary or binary weight rows with int8 activation rows, one set per
 * instruction set, chosen at run time (runtime/isa.c).
 *
 * Packed rows. A row of K weights is padded to kp = K rounded up to
 * LB_RT_GROUP (256) and stored in groups of 256 weights:
 *   ternary  64 bytes a group, 2 bits a weight: byte j of group g holds
 *            weights 256g + j + 64i (i = 0..3) at bits 2i..2i+1 as code + 1
 *            (0, 1, 2 for −1, 0, +1). One 64-byte load gives four runs of 64
 *            consecutive weights, each a shift and a mask away.
 *   binary   32 bytes a group, 1 bit a weight: the group is four 64-bit
 *            little-endian words, bit j of word i is weight 256g + 64i + j
 *            (1 for +1, 0 for −1).
 * Padding weights are ternary 0 and binary −1; the activation codes are zero
 * there, so they add nothing.
 *
 * Activations are int8 codes, kp of them a row (zero past K), with
 * asum = Σ_k a[k]. The kernels multiply unsigned weight codes (w + 1 for
 * ternary, (w + 1)/2 for binary) by signed activation codes — the form of
 * VNNI's vpdpbusd and of vpmaddubsw — and take asum back out:
 *   Σ w·a = Σ (w + 1)·a − asum,     Σ w·a = 2·Σ ((w + 1)/2)·a − asum.
 * Every sum is exact in int32 for kp < 2^22. */
#ifndef LOWBIT_RUNTIME_KERNELS_H
#define LOWBIT_RUNTIME_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define LB_RT_GROUP 256

/* Bytes of a packed row of kp weights. */
static inline size_t lb_rt_ternary_row_bytes(int kp) { return (size_t)kp / 4; }
static inline size_t lb_rt_binary_row_bytes(int kp) { return (size_t)kp / 8; }
static inline int lb_rt_padded(int k) { return (k + LB_RT_GROUP - 1) / LB_RT_GROUP * LB_RT_GROUP; }

/* out[t·ldo + r] = Σ_k w[r, k]·a[t, k], exactly, for rows r < n_rows and
 * tokens t < n_tok. w: n_rows packed rows, row_bytes apart; a: n_tok rows of
 * kp codes, lda bytes apart; asum[t] the sum of row t's codes. */
typedef void (*lb_rt_dot_fn)(const uint8_t *w, size_t row_bytes, int n_rows, const int8_t *a, size_t lda,
                             const int32_t *asum, int n_tok, int kp, int32_t *out, size_t ldo);

typedef struct lb_rt_kernels {
    lb_rt_dot_fn ternary;
    lb_rt_dot_fn binary;
} lb_rt_kernels;

/* One per file kernels_<isa>.c, each compiled for its instruction set. */
extern const lb_rt_kernels lb_rt_kernels_portable;
#if defined(__x86_64__)
extern const lb_rt_kernels lb_rt_kernels_avx2;
extern const lb_rt_kernels lb_rt_kernels_avx512bw;
extern const lb_rt_kernels lb_rt_kernels_avx512vnni;
#endif

/* Packing one row of codes (−1, 0, +1 for ternary; −1, +1 for binary) of
 * length k into kp = lb_rt_padded(k) weights. */
void lb_rt_pack_ternary_row(const int8_t *codes, int k, uint8_t *out);
void lb_rt_pack_binary_row(const int8_t *codes, int k, uint8_t *out);

#endif

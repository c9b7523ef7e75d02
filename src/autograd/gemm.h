/* The matrix products of lowbit: every op's GEMM goes through here, and
 * nothing else calls a BLAS for a matrix product.
 *
 *   C[m, n] = s_m · Σ_k op(A)[m, k] · op(B)[k, n]  +  beta · C[m, n]
 *
 * with op(A) = A [M, K] (lda ≥ K), or Aᵀ when A is stored [K, M] (ta, lda ≥ M);
 * op(B) = B [K, N] (ldb ≥ N), or Bᵀ when B is stored [N, K] (tb, ldb ≥ K);
 * all row-major. s_m is row_scale[m] when row_scale is given (then alpha
 * must be 1), else alpha. C is always fp32. The operand types:
 *
 *   LB_GEMM_F32   fp32 × fp32, fp32 accumulation
 *   LB_GEMM_BF16  bf16 × bf16 (uint16_t bit patterns), fp32 accumulation:
 *                 every product of two bf16 values is exact in fp32
 *   LB_GEMM_S8    int8 × int8, int32 accumulation: Σ is exact; the result is
 *                 rounded once to fp32, then scaled (fl(fl(Σ)·s_m))
 *
 * Two backends, chosen at run time (LOWBIT_GEMM=onednn|openblas in the
 * environment, or lb_gemm_set_backend):
 *   onednn    oneDNN's matmul primitive (the default), picking its kernels
 *             by the instruction sets of the CPU (AVX-512, VNNI, BF16, AMX);
 *             a primitive is made once per shape and type and reused
 *   openblas  cblas_sgemm for fp32; bf16 operands are widened to fp32 first
 *             (exact) and multiplied by sgemm; int8 by lowbit's own integer
 *             loops. Also taken for a shape oneDNN only has a reference
 *             implementation for, for products of fewer than 32768
 *             multiply-adds (a primitive's JIT code costs more than they
 *             take), and for new shapes once 512 are cached.
 * A product may be called from inside an OpenMP parallel region (one per
 * thread): it then runs on the calling thread alone. Outside a region it
 * uses the OpenMP threads (the one pool lowbit's loops and OpenBLAS use).
 * For a given backend, shape and thread count the result is the same bits
 * from run to run. */
#ifndef LOWBIT_AUTOGRAD_GEMM_H
#define LOWBIT_AUTOGRAD_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum lb_gemm_type { LB_GEMM_F32 = 0, LB_GEMM_BF16, LB_GEMM_S8, LB_GEMM_N_TYPES } lb_gemm_type;

typedef enum lb_gemm_backend { LB_GEMM_ONEDNN = 0, LB_GEMM_OPENBLAS, LB_GEMM_N_BACKENDS } lb_gemm_backend;

/* The precision of products of fp32 operands (config key train.gemm_precision):
 * fp32, or bf16 operands with fp32 accumulation (mixed precision), or auto:
 * bf16 where the CPU multiplies bf16 natively, fp32 elsewhere (see
 * lb_gemm_precision_resolve; products take only fp32 or bf16). */
typedef enum lb_gemm_precision {
    LB_PRECISION_FP32 = 0,
    LB_PRECISION_BF16,
    LB_PRECISION_AUTO,
    LB_PRECISION_N
} lb_gemm_precision;

/* The spellings of lb_gemm_precision ("fp32", "bf16", "auto"), e.g. in configs. */
extern const char *const lb_gemm_precision_names[LB_PRECISION_N];

/* "f32", "bf16", "s8"; "onednn", "openblas"; "fp32", "bf16", "auto". */
const char *lb_gemm_type_name(lb_gemm_type t);
const char *lb_gemm_backend_name(lb_gemm_backend b);
const char *lb_gemm_precision_name(lb_gemm_precision p);

/* The backend in use: LOWBIT_GEMM from the environment on first use
 * (unknown values are an error there, reported by lb_gemm_init). */
lb_gemm_backend lb_gemm_get_backend(void);
void lb_gemm_set_backend(lb_gemm_backend b);
/* Reads LOWBIT_GEMM; LB_EINVAL naming the variable when it is not a backend
 * name. Called by the first product too (which then uses oneDNN). The
 * first call also logs lb_gemm_openblas_warning() when there is one. */
lb_status lb_gemm_init(void);

/* The product above. LB_EINVAL for bad sizes or leading dimensions, LB_ENOMEM. */
lb_status lb_gemm(lb_gemm_type type, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                  const void *B, int ldb, const float *row_scale, float beta, float *C, int ldc);

/* Whether bf16 products run on the CPU's own bf16 instructions (oneDNN with
 * AVX-512 BF16 or AMX): elsewhere they are emulated or widened to fp32 and
 * are slower than fp32 products. */
int lb_gemm_bf16_native(void);
/* p, with auto made fp32 or bf16: bf16 when lb_gemm_bf16_native()
 * (train.gemm_precision; docs/performance.md, "Loss at bf16 precision, over
 * seeds": the tiny configs' losses behind the choice). */
lb_gemm_precision lb_gemm_precision_resolve(lb_gemm_precision p);
/* The precision of attention's products (train.attention_precision) when it
 * is attention_p and the other products run at gemm_p (resolved): auto is
 * gemm_p. */
lb_gemm_precision lb_attention_precision_resolve(lb_gemm_precision attention_p, lb_gemm_precision gemm_p);

/* fp32 operands multiplied at precision p (fp32 or bf16, not auto): as they
 * are (LB_GEMM_F32), or rounded to bf16 (to nearest even) and multiplied as
 * LB_GEMM_BF16. */
lb_status lb_gemm_f32(lb_gemm_precision p, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* dst[r, c] = bf16(src[r, c] · row_scale[r]) (row_scale NULL: 1), rounded
 * to nearest even; NaN stays NaN. */
void lb_gemm_to_bf16(int rows, int cols, const float *src, int lds, const float *row_scale, uint16_t *dst,
                     int ldd);
/* dst = src as bf16, exactly (every int8 is a bf16). */
void lb_gemm_s8_to_bf16(int rows, int cols, const int8_t *src, int lds, uint16_t *dst, int ldd);

/* What runs the products of type t: oneDNN's implementation name
 * ("brg:avx512_core_vnni") or "openblas <core>". */
const char *lb_gemm_impl(lb_gemm_type t);
/* One line for the run banner: backend, the kernel of each type and the
 * precision p of fp32 products, e.g.
 * "gemm onednn 2.6.3: f32 brg:avx512_core, bf16 brg:avx512_core_bf16, s8 brg:avx512_core_vnni; fp32 products in bf16". */
const char *lb_gemm_describe(lb_gemm_precision p);
/* A warning when OpenBLAS runs kernels for an older instruction set than
 * the CPU has (e.g. "Prescott" on an AVX2 or AVX-512 CPU); NULL when not. */
const char *lb_gemm_openblas_warning(void);

/* Time spent in products, for benchmarks (bench/bench_train.c). When on,
 * every lb_gemm call is timed: outside a parallel region as it is, inside
 * one by thread 0, its time standing for the team's (its flops counted
 * once per thread). Conversions to bf16 are not products. */
typedef struct lb_gemm_stats {
    double seconds[LB_GEMM_N_TYPES];
    double flops[LB_GEMM_N_TYPES];   /* 2·M·N·K per product */
    long calls[LB_GEMM_N_TYPES];
} lb_gemm_stats;
void lb_gemm_stats_enable(int on);
/* The sums since the last reset. */
lb_gemm_stats lb_gemm_stats_get(void);
void lb_gemm_stats_reset(void);

/* Frees every cached primitive and buffer (also done at exit). Not while a
 * product runs. */
void lb_gemm_release(void);

#endif

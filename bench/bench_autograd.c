/* Benchmark of the autograd engine (a program, not a test).
 *
 *   0. The GEMM engine (lb_gemm) against a raw oneDNN primitive made and run
 *      by hand at the same shape, with the same post-ops, for every distinct
 *      product of a training step of bench_train's models (a) and (b): what
 *      the engine's cache lookup, per-call memory objects and (for fp32
 *      operands at bf16 precision) rounding to bf16 cost.
 *   1. lb_matmul forward, and forward + backward, against OpenBLAS's
 *      cblas_sgemm at square sizes, in the same run: the variants alternate
 *      and each figure is the median of several repetitions, so drift
 *      (turbo, other load) hits them alike.
 *   2. Per-op tape overhead: a tiny op through the graph (lb_graph_reset +
 *      the op, recording its node) against the bare kernel, in ns per op.
 *   3. Attention: lb_attention (GEMMs per head) against plain causal loops
 *      for the forward pass, to see where each pays.
 *
 * Usage: bench_autograd [max_size] [sections]   (default 2048 and "0123";
 * threads: OMP_NUM_THREADS; LOWBIT_BENCH_CLOCK=cpu: CPU time, see now()) */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/gemm.h"
#include "bench_clock.h"
#include "autograd/ops.h"
#include "core/rng.h"

#define REPS 7

/* Keeps the compiler from dropping or merging the bare kernels' stores. */
static inline void clobber(void *p) { __asm__ __volatile__("" : : "g"(p) : "memory"); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static lb_tensor *random_tensor(int ndim, const int *shape, int with_grad, uint64_t seed) {
    lb_tensor *t = lb_tensor_alloc(ndim, shape, with_grad);
    if (!t) {
        fprintf(stderr, "bench: %s\n", lb_errmsg());
        exit(1);
    }
    for (size_t i = 0; i < t->n; i++) t->data[i] = 2.0f * lb_rand_uniform(seed, 0, i) - 1.0f;
    return t;
}

static void check(const void *p) {
    if (!p) {
        fprintf(stderr, "bench: %s\n", lb_errmsg());
        exit(1);
    }
}

/* --- 0. the engine against raw oneDNN ----------------------------------------------- */

typedef struct gemm_case {
    const char *what;
    lb_gemm_type type;
    int ta, tb, M, N, K, lda, ldb, ldc;
    int rows;      /* a per-row scale (the BitLinear forward) */
    float beta;
    int per_thread; /* one product per thread inside a region, as attention runs them */
    int from_f32;   /* the engine is given fp32 operands (lb_gemm_f32 at bf16 precision) */
} gemm_case;

#define CK(x)                                                                   \
    do {                                                                        \
        dnnl_status_t s_ = (x);                                                 \
        if (s_ != dnnl_success) {                                               \
            fprintf(stderr, "bench: %s failed (status %d)\n", #x, (int)s_);     \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* A raw primitive: memory objects made once, executed back to back. */
typedef struct raw_gemm {
    dnnl_primitive_t prim;
    dnnl_memory_t mem[5];
    dnnl_exec_arg_t args[5];
    int n_args;
} raw_gemm;

static void md3(dnnl_memory_desc_t *md, dnnl_data_type_t dt, int rows, int cols, int ld, int trans) {
    dnnl_dims_t dims = {1, rows, cols};
    dnnl_dims_t strides = {(dnnl_dim_t)(trans ? cols : rows) * ld, trans ? 1 : ld, trans ? ld : 1};
    CK(dnnl_memory_desc_init_by_strides(md, 3, dims, dt, strides));
}

static raw_gemm raw_make(dnnl_engine_t eng, const gemm_case *c, void *A, void *B, float *C, float *scale) {
    const dnnl_data_type_t dt = c->type == LB_GEMM_F32 ? dnnl_f32 : c->type == LB_GEMM_BF16 ? dnnl_bf16 : dnnl_s8;
    dnnl_memory_desc_t a, b, d, sc;
    md3(&a, dt, c->M, c->K, c->lda, c->ta);
    md3(&b, dt, c->K, c->N, c->ldb, c->tb);
    md3(&d, dnnl_f32, c->M, c->N, c->ldc, 0);
    md3(&sc, dnnl_f32, c->rows ? c->M : 1, 1, 1, 0);
    dnnl_matmul_desc_t md;
    CK(dnnl_matmul_desc_init(&md, &a, &b, NULL, &d));
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po;
    CK(dnnl_primitive_attr_create(&attr));
    CK(dnnl_post_ops_create(&po));
    if (c->rows) CK(dnnl_post_ops_append_binary(po, dnnl_binary_mul, &sc));
    if (c->beta != 0.0f) CK(dnnl_post_ops_append_sum(po, c->beta));
    CK(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_primitive_desc_t pd;
    CK(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL));
    raw_gemm r = {0};
    CK(dnnl_primitive_create(&r.prim, pd));
    const struct { int arg; dnnl_memory_desc_t *md; void *p; } ops[4] = {
        {DNNL_ARG_SRC, &a, A}, {DNNL_ARG_WEIGHTS, &b, B}, {DNNL_ARG_DST, &d, C},
        {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, &sc, c->rows ? scale : NULL}};
    for (int i = 0; i < 4; i++) {
        if (!ops[i].p) continue;
        CK(dnnl_memory_create(&r.mem[r.n_args], ops[i].md, eng, ops[i].p));
        r.args[r.n_args] = (dnnl_exec_arg_t){ops[i].arg, r.mem[r.n_args]};
        r.n_args++;
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

static void raw_free(raw_gemm *r) {
    for (int i = 0; i < r->n_args; i++) dnnl_memory_destroy(r->mem[i]);
    dnnl_primitive_destroy(r->prim);
}

/* Seconds per product, `iters` products (per thread when per_thread). */
static double time_raw(dnnl_stream_t st, raw_gemm *r, const gemm_case *c, int iters) {
    double t0 = now();
    if (c->per_thread) {
#pragma omp parallel
        for (int i = 0; i < iters; i++) CK(dnnl_primitive_execute(r[omp_get_thread_num()].prim, st, r[omp_get_thread_num()].n_args, r[omp_get_thread_num()].args));
    } else {
        for (int i = 0; i < iters; i++) CK(dnnl_primitive_execute(r->prim, st, r->n_args, r->args));
    }
    return (now() - t0) / iters;
}

typedef struct gemm_bufs {
    void *A[2], *B[2];
    float *Af, *Bf, *C[2], *scale;
} gemm_bufs;

static double time_engine(const gemm_case *c, gemm_bufs *b, int iters) {
    double t0 = now();
    int bad = 0;
    if (c->per_thread) {
#pragma omp parallel reduction(+ : bad)
        {
            const int t = omp_get_thread_num();
            for (int i = 0; i < iters; i++)
                bad += (c->from_f32 ? lb_gemm_f32(LB_PRECISION_BF16, c->ta, c->tb, c->M, c->N, c->K, 1.0f, b->Af,
                                                  c->lda, b->Bf, c->ldb, c->beta, b->C[t], c->ldc)
                                    : lb_gemm(c->type, c->ta, c->tb, c->M, c->N, c->K, 1.0f, b->A[t], c->lda,
                                              b->B[t], c->ldb, NULL, c->beta, b->C[t], c->ldc)) != LB_OK;
        }
    } else {
        for (int i = 0; i < iters; i++)
            bad += (c->from_f32 ? lb_gemm_f32(LB_PRECISION_BF16, c->ta, c->tb, c->M, c->N, c->K, 1.0f, b->Af, c->lda,
                                              b->Bf, c->ldb, c->beta, b->C[0], c->ldc)
                                : lb_gemm(c->type, c->ta, c->tb, c->M, c->N, c->K, 1.0f, b->A[0], c->lda, b->B[0],
                                          c->ldb, c->rows ? b->scale : NULL, c->beta, b->C[0], c->ldc)) != LB_OK;
    }
    if (bad) check(NULL);
    return (now() - t0) / iters;
}

/* The distinct products of a step of bench_train's model (a) (M = 768 rows,
 * d 128, KV width 64, FFN 384, T 64, Dh 32) and (b) (M = 1024, d 512, KV
 * width 256, FFN 1536, T 256, Dh 64), b1.58 at bf16 precision. */
static void bench_engine(void) {
    static const gemm_case cases[] = {
        /* (b) forward: int8 codes × ternary codes, row scales */
        {"(b) fwd q,o", LB_GEMM_S8, 0, 1, 1024, 512, 512, 512, 512, 512, 1, 0, 0, 0},
        {"(b) fwd k,v", LB_GEMM_S8, 0, 1, 1024, 256, 512, 512, 512, 256, 1, 0, 0, 0},
        {"(b) fwd gate,up", LB_GEMM_S8, 0, 1, 1024, 1536, 512, 512, 512, 1536, 1, 0, 0, 0},
        {"(b) fwd down", LB_GEMM_S8, 0, 1, 1024, 512, 1536, 1536, 1536, 512, 1, 0, 0, 0},
        /* (b) backward: dx += dy·W, dW += dyᵀ·X in bf16 */
        {"(b) dx q,o", LB_GEMM_BF16, 0, 0, 1024, 512, 512, 512, 512, 512, 0, 1, 0, 0},
        {"(b) dx k,v", LB_GEMM_BF16, 0, 0, 1024, 512, 256, 256, 512, 512, 0, 1, 0, 0},
        {"(b) dx gate,up", LB_GEMM_BF16, 0, 0, 1024, 512, 1536, 1536, 512, 512, 0, 1, 0, 0},
        {"(b) dx down", LB_GEMM_BF16, 0, 0, 1024, 1536, 512, 512, 1536, 1536, 0, 1, 0, 0},
        {"(b) dW q,o", LB_GEMM_BF16, 1, 0, 512, 512, 1024, 512, 512, 512, 0, 1, 0, 0},
        {"(b) dW k,v", LB_GEMM_BF16, 1, 0, 256, 512, 1024, 256, 512, 512, 0, 1, 0, 0},
        {"(b) dW gate,up", LB_GEMM_BF16, 1, 0, 1536, 512, 1024, 1536, 512, 512, 0, 1, 0, 0},
        {"(b) dW down", LB_GEMM_BF16, 1, 0, 512, 1536, 1024, 512, 1536, 1536, 0, 1, 0, 0},
        /* (b) tied head (fp32 operands at bf16 precision) */
        {"(b) head fwd", LB_GEMM_BF16, 0, 1, 1024, 256, 512, 512, 512, 256, 0, 0, 0, 1},
        {"(b) head fwd", LB_GEMM_BF16, 0, 1, 1024, 256, 512, 512, 512, 256, 0, 0, 0, 0},
        {"(b) head dx", LB_GEMM_BF16, 0, 0, 1024, 512, 256, 256, 512, 512, 0, 1, 0, 1},
        {"(b) head dW", LB_GEMM_BF16, 1, 0, 256, 512, 1024, 256, 512, 512, 0, 1, 0, 1},
        /* (b) attention, one head per thread on dense head-major bf16 copies */
        {"(b) attn QK^T,dP", LB_GEMM_BF16, 0, 1, 256, 256, 64, 64, 64, 256, 0, 0, 1, 0},
        {"(b) attn PV", LB_GEMM_BF16, 0, 0, 256, 64, 256, 256, 64, 64, 0, 0, 1, 0},
        {"(b) attn dV,dK", LB_GEMM_BF16, 1, 0, 256, 64, 256, 256, 64, 64, 0, 1, 1, 0},
        {"(b) attn dQ", LB_GEMM_BF16, 0, 0, 256, 64, 256, 256, 64, 64, 0, 0, 1, 0},
        /* (a) */
        {"(a) fwd q,o", LB_GEMM_S8, 0, 1, 768, 128, 128, 128, 128, 128, 1, 0, 0, 0},
        {"(a) fwd gate,up", LB_GEMM_S8, 0, 1, 768, 384, 128, 128, 128, 384, 1, 0, 0, 0},
        {"(a) fwd down", LB_GEMM_S8, 0, 1, 768, 128, 384, 384, 384, 128, 1, 0, 0, 0},
        {"(a) dx gate,up", LB_GEMM_BF16, 0, 0, 768, 128, 384, 384, 128, 128, 0, 1, 0, 0},
        {"(a) dW gate,up", LB_GEMM_BF16, 1, 0, 384, 128, 768, 384, 128, 128, 0, 1, 0, 0},
        {"(a) attn QK^T,dP", LB_GEMM_BF16, 0, 1, 64, 64, 32, 32, 32, 64, 0, 0, 1, 0},
        {"(a) attn PV,dQ", LB_GEMM_BF16, 0, 0, 64, 32, 64, 64, 32, 32, 0, 0, 1, 0},
    };
    dnnl_engine_t eng;
    dnnl_stream_t st;
    CK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    if (lb_gemm_get_backend() != LB_GEMM_ONEDNN) printf("(LOWBIT_GEMM is not onednn: the engine column is the fallback)\n");
    printf("GEMM engine (lb_gemm) vs a raw oneDNN primitive at the same shape and post-ops, %d threads, median of %d%s\n",
           omp_get_max_threads(), REPS, getenv("LOWBIT_BENCH_CLOCK") ? " (CPU time: GOP per CPU-second)" : "");
    printf("(rows marked per-thread run one product per thread inside a region, as attention does; 'from f32'\n"
           " rows give the engine fp32 operands, which it rounds to bf16 first, inside the timing)\n");
    printf("%-16s %-5s %2s %5s %5s %5s %-11s %10s %10s %6s\n", "product", "type", "op", "M", "N", "K", "", "raw GOP/s",
           "lb GOP/s", "ratio");
    const int nt = omp_get_max_threads();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const gemm_case *c = &cases[i];
        const size_t na = (size_t)(c->ta ? c->K : c->M) * c->lda, nb = (size_t)(c->tb ? c->N : c->K) * c->ldb;
        const size_t nc = (size_t)c->M * c->ldc;
        const int copies = c->per_thread ? nt : 1;
        gemm_bufs b = {0};
        b.Af = malloc(na * sizeof(float));
        b.Bf = malloc(nb * sizeof(float));
        b.scale = malloc((size_t)c->M * sizeof(float));
        check(b.Af);
        check(b.Bf);
        check(b.scale);
        for (size_t k = 0; k < na; k++) b.Af[k] = 0.01f * (float)(k % 97) - 0.4f;
        for (size_t k = 0; k < nb; k++) b.Bf[k] = 0.01f * (float)(k % 89) - 0.4f;
        for (int m = 0; m < c->M; m++) b.scale[m] = 1e-3f;
        raw_gemm raw[64];
        for (int t = 0; t < copies; t++) {
            b.C[t] = calloc(nc, sizeof(float));
            b.A[t] = malloc(na * 2);
            b.B[t] = malloc(nb * 2);
            check(b.C[t]);
            check(b.A[t]);
            check(b.B[t]);
            if (c->type == LB_GEMM_S8) {
                for (size_t k = 0; k < na; k++) ((int8_t *)b.A[t])[k] = (int8_t)(k % 255 - 127);
                for (size_t k = 0; k < nb; k++) ((int8_t *)b.B[t])[k] = (int8_t)(k % 3 - 1);
            } else {
                lb_gemm_to_bf16(1, (int)na, b.Af, (int)na, NULL, b.A[t], (int)na);
                lb_gemm_to_bf16(1, (int)nb, b.Bf, (int)nb, NULL, b.B[t], (int)nb);
            }
            raw[t] = raw_make(eng, c, b.A[t], b.B[t], b.C[t], b.scale);
        }
        const double ops = 2.0 * c->M * c->N * (double)c->K * copies;
        double t1 = time_raw(st, raw, c, 1);
        time_engine(c, &b, 1);
        const int iters = (int)fmax(1.0, 0.02 / t1);
        double tr[REPS], te[REPS];
        for (int r = 0; r < REPS; r++) {
            tr[r] = time_raw(st, raw, c, iters);
            te[r] = time_engine(c, &b, iters);
        }
        const double gr = ops / median(tr, REPS) * 1e-9, ge = ops / median(te, REPS) * 1e-9;
        char op[3] = {c->ta ? 'T' : 'N', c->tb ? 'T' : 'N', 0};
        printf("%-16s %-5s %2s %5d %5d %5d %-11s %10.1f %10.1f %6.2f\n", c->what, lb_gemm_type_name(c->type), op, c->M,
               c->N, c->K, c->per_thread ? "per-thread" : c->from_f32 ? "from f32" : "", gr, ge, ge / gr);
        for (int t = 0; t < copies; t++) {
            raw_free(&raw[t]);
            free(b.A[t]);
            free(b.B[t]);
            free(b.C[t]);
        }
        free(b.Af);
        free(b.Bf);
        free(b.scale);
    }
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
}

/* --- 1. matmul ----------------------------------------------------------------- */

typedef struct mm_case {
    int n, iters;
    lb_tensor *x, *w;
    float *y;
    lb_graph *g;
} mm_case;

static double time_sgemm(mm_case *c, int calls) {
    const int n = c->n;
    double t0 = now();
    for (int it = 0; it < c->iters; it++)
        for (int k = 0; k < calls; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, c->x->data, n, c->w->data, n,
                        0.0f, c->y, n);
    return (now() - t0) / c->iters;
}

static double time_matmul(mm_case *c, int backward) {
    double t0 = now();
    for (int it = 0; it < c->iters; it++) {
        lb_graph_reset(c->g);
        lb_tensor *y = lb_matmul(c->g, c->x, c->w, 1);
        check(y);
        if (backward) {
            /* lb_sum seeds dy = 1; it is O(n²) next to the 3 GEMMs' O(n³). */
            lb_tensor *loss = lb_sum(c->g, y);
            check(loss);
            if (lb_backward(c->g, loss) != LB_OK) check(NULL);
        }
    }
    return (now() - t0) / c->iters;
}

static void bench_matmul(int max_n) {
    printf("\nlb_matmul (x [n,n] · wᵀ, w [n,n], fp32 precision, engine: %s %s) vs OpenBLAS cblas_sgemm (%s),\n"
           "%d threads, median of %d\n",
           lb_gemm_backend_name(lb_gemm_get_backend()), lb_gemm_impl(LB_GEMM_F32), openblas_get_corename(),
           omp_get_max_threads(), REPS);
    printf("%6s | %11s %11s %6s | %11s %11s %6s\n", "n", "sgemm", "lb fwd", "ratio", "3x sgemm", "lb fwd+bwd",
           "ratio");
    printf("%6s | %11s %11s %6s | %11s %11s %6s\n", "", "GFLOP/s", "GFLOP/s", "", "GFLOP/s", "GFLOP/s", "");
    lb_graph g;
    if (lb_graph_init(&g, 0) != LB_OK) check(NULL);
    for (int n = 128; n <= max_n; n *= 2) {
        int shape[2] = {n, n};
        mm_case c = {.n = n, .g = &g};
        c.x = random_tensor(2, shape, 1, 1);
        c.w = random_tensor(2, shape, 1, 2);
        c.y = malloc((size_t)n * n * sizeof(float));
        check(c.y);
        const double flops = 2.0 * n * n * (double)n;
        /* Enough iterations for ~50 ms per sample; one warm-up of each. */
        c.iters = 1;
        double t1 = time_sgemm(&c, 1);
        c.iters = (int)fmax(1.0, 0.05 / t1);
        time_matmul(&c, 1);
        double raw[REPS], fwd[REPS], raw3[REPS], both[REPS];
        for (int r = 0; r < REPS; r++) {
            raw[r] = time_sgemm(&c, 1);
            fwd[r] = time_matmul(&c, 0);
            raw3[r] = time_sgemm(&c, 3);
            both[r] = time_matmul(&c, 1);
        }
        double s = flops / median(raw, REPS) * 1e-9, f = flops / median(fwd, REPS) * 1e-9;
        double s3 = 3 * flops / median(raw3, REPS) * 1e-9, fb = 3 * flops / median(both, REPS) * 1e-9;
        printf("%6d | %11.1f %11.1f %6.3f | %11.1f %11.1f %6.3f\n", n, s, f, f / s, s3, fb, fb / s3);
        lb_tensor_free(c.x);
        lb_tensor_free(c.w);
        free(c.y);
    }
    lb_graph_free(&g);
}

/* --- 2. per-op tape overhead ------------------------------------------------------- */

static double ns_per_op(double seconds, long ops) { return seconds / (double)ops * 1e9; }

static void bench_overhead(void) {
    enum { N_ADD = 16, M8 = 8 };
    const long ops = 2000000;
    int s16[1] = {N_ADD}, s8[2] = {M8, M8};
    lb_tensor *a = random_tensor(1, s16, 1, 3), *b = random_tensor(1, s16, 1, 4);
    lb_tensor *x = random_tensor(2, s8, 1, 5), *w = random_tensor(2, s8, 1, 6);
    float out[N_ADD], y8[M8 * M8];
    lb_graph g;
    if (lb_graph_init(&g, 0) != LB_OK) check(NULL);

    double bare_add[REPS], tape_add[REPS], bare_mm[REPS], tape_mm[REPS], nograd_add[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        for (long i = 0; i < ops; i++) {
            for (int j = 0; j < N_ADD; j++) out[j] = a->data[j] + b->data[j];
            clobber(out);
        }
        bare_add[r] = now() - t0;

        t0 = now();
        for (long i = 0; i < ops; i++) {
            lb_graph_reset(&g);
            clobber(lb_add(&g, a, b));
        }
        tape_add[r] = now() - t0;

        lb_graph_set_grad(&g, 0);
        t0 = now();
        for (long i = 0; i < ops; i++) {
            lb_graph_reset(&g);
            clobber(lb_add(&g, a, b));
        }
        nograd_add[r] = now() - t0;
        lb_graph_set_grad(&g, 1);

        t0 = now();
        for (long i = 0; i < ops / 4; i++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M8, M8, M8, 1.0f, x->data, M8, w->data, M8, 0.0f,
                        y8, M8);
            clobber(y8);
        }
        bare_mm[r] = now() - t0;

        t0 = now();
        for (long i = 0; i < ops / 4; i++) {
            lb_graph_reset(&g);
            clobber(lb_matmul(&g, x, w, 1));
        }
        tape_mm[r] = now() - t0;
    }
    printf("\nper-op overhead (one lb_graph_reset + op per iteration), median of %d\n", REPS);
    printf("%-34s %10s %10s %10s\n", "op", "bare ns", "graph ns", "overhead");
    double ba = ns_per_op(median(bare_add, REPS), ops), ta = ns_per_op(median(tape_add, REPS), ops);
    double na = ns_per_op(median(nograd_add, REPS), ops);
    double bm = ns_per_op(median(bare_mm, REPS), ops / 4), tm = ns_per_op(median(tape_mm, REPS), ops / 4);
    printf("%-34s %10.1f %10.1f %10.1f\n", "lb_add, 16 floats, recorded", ba, ta, ta - ba);
    printf("%-34s %10.1f %10.1f %10.1f\n", "lb_add, 16 floats, grad disabled", ba, na, na - ba);
    printf("%-34s %10.1f %10.1f %10.1f\n", "lb_matmul 8x8 (vs cblas_sgemm)", bm, tm, tm - bm);
    lb_graph_free(&g);
    lb_tensor_free(a);
    lb_tensor_free(b);
    lb_tensor_free(x);
    lb_tensor_free(w);
}

/* --- 3. attention ------------------------------------------------------------------ */

/* Causal attention forward with plain loops: only s ≤ t is computed. */
static void attention_loops(const float *q, const float *k, const float *v, float *o, float *scores, int B, int T,
                            int H, int Hkv, int Dh) {
    const int group = H / Hkv, ldq = H * Dh, ldk = Hkv * Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *p = scores + (size_t)omp_get_thread_num() * T;
            const float *K = k + (size_t)b * T * ldk + (size_t)(h / group) * Dh;
            const float *V = v + (size_t)b * T * ldk + (size_t)(h / group) * Dh;
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * ldq + (size_t)h * Dh;
                float *ot = o + ((size_t)b * T + t) * ldq + (size_t)h * Dh;
                float mx = -INFINITY, sum = 0.0f;
                for (int s = 0; s <= t; s++) {
                    float dot = 0.0f;
                    for (int i = 0; i < Dh; i++) dot += qt[i] * K[(size_t)s * ldk + i];
                    p[s] = dot * scale;
                    mx = p[s] > mx ? p[s] : mx;
                }
                for (int s = 0; s <= t; s++) sum += p[s] = expf(p[s] - mx);
                for (int i = 0; i < Dh; i++) ot[i] = 0.0f;
                for (int s = 0; s <= t; s++) {
                    float ps = p[s] / sum;
                    for (int i = 0; i < Dh; i++) ot[i] += ps * V[(size_t)s * ldk + i];
                }
            }
        }
}

static void bench_attention(void) {
    static const int cases[][5] = {/* B, T, H, Hkv, Dh */
                                   {8, 32, 4, 2, 8},
                                   {4, 64, 8, 4, 16},
                                   {4, 128, 8, 8, 32},
                                   {2, 256, 8, 4, 64},
                                   {1, 512, 8, 8, 64}};
    printf("\nattention forward: lb_attention (GEMMs per head) vs plain causal loops, median of %d\n", REPS);
    printf("%-24s %12s %12s %8s %14s\n", "B,T,H,Hkv,Dh", "loops ms", "GEMMs ms", "speedup", "lb fwd+bwd ms");
    lb_graph g;
    if (lb_graph_init(&g, 0) != LB_OK) check(NULL);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int B = cases[c][0], T = cases[c][1], H = cases[c][2], Hkv = cases[c][3], Dh = cases[c][4];
        int qs[4] = {B, T, H, Dh}, ks[4] = {B, T, Hkv, Dh};
        lb_tensor *q = random_tensor(4, qs, 1, 7), *k = random_tensor(4, ks, 1, 8), *v = random_tensor(4, ks, 1, 9);
        float *o = malloc(q->n * sizeof(float)), *scores = malloc((size_t)omp_get_max_threads() * T * sizeof(float));
        check(o);
        check(scores);
        const int iters = (int)fmax(1.0, 2e7 / ((double)B * H * T * T * Dh));
        double loops[REPS], gemm[REPS], both[REPS];
        for (int r = 0; r < REPS; r++) {
            double t0 = now();
            for (int it = 0; it < iters; it++) attention_loops(q->data, k->data, v->data, o, scores, B, T, H, Hkv, Dh);
            loops[r] = (now() - t0) / iters;

            lb_graph_set_grad(&g, 0);
            t0 = now();
            for (int it = 0; it < iters; it++) {
                lb_graph_reset(&g);
                check(lb_attention(&g, q, k, v));
            }
            gemm[r] = (now() - t0) / iters;
            lb_graph_set_grad(&g, 1);

            t0 = now();
            for (int it = 0; it < iters; it++) {
                lb_graph_reset(&g);
                lb_tensor *loss = lb_sum(&g, lb_attention(&g, q, k, v));
                check(loss);
                if (lb_backward(&g, loss) != LB_OK) check(NULL);
            }
            both[r] = (now() - t0) / iters;
        }
        char label[64];
        snprintf(label, sizeof label, "%d,%d,%d,%d,%d", B, T, H, Hkv, Dh);
        double tl = median(loops, REPS) * 1e3, tg = median(gemm, REPS) * 1e3, tb = median(both, REPS) * 1e3;
        printf("%-24s %12.3f %12.3f %8.2f %14.3f\n", label, tl, tg, tl / tg, tb);
        lb_tensor_free(q);
        lb_tensor_free(k);
        lb_tensor_free(v);
        free(o);
        free(scores);
    }
    lb_graph_free(&g);
}

/* Other processes on the cores distort the figures (OpenMP teams wait for
 * descheduled threads), so the load is printed with them. */
static void print_load(const char *when) {
    double l1 = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = -1.0;
        fclose(f);
    }
    if (l1 >= 0.0) printf("# load average (1 min) %s: %.2f on %d cores\n", when, l1, omp_get_num_procs());
}

int main(int argc, char **argv) {
    int max_n = argc > 1 ? atoi(argv[1]) : 2048;
    const char *sections = argc > 2 ? argv[2] : "0123";
    if (max_n < 128) max_n = 128;
    if (lb_gemm_init() != LB_OK) check(NULL);
    print_load("at start");
    if (strchr(sections, '0')) bench_engine();
    if (strchr(sections, '1')) bench_matmul(max_n);
    if (strchr(sections, '2')) bench_overhead();
    if (strchr(sections, '3')) bench_attention();
    print_load("at end");
    return 0;
}

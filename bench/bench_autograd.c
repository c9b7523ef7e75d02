/* Benchmark of the autograd engine (a program, not a test).
 *
 *   1. lb_matmul forward, and forward + backward, against raw cblas_sgemm at
 *      square sizes, in the same run: the variants alternate and each figure
 *      is the median of several repetitions, so drift (turbo, other load)
 *      hits them alike.
 *   2. Per-op tape overhead: a tiny op through the graph (lb_graph_reset +
 *      the op, recording its node) against the bare kernel, in ns per op.
 *   3. Attention: lb_attention (sgemm per head) against plain causal loops
 *      for the forward pass, to see where each pays.
 *
 * Usage: bench_autograd [max_size]   (default 2048; threads: OMP_NUM_THREADS) */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ops.h"
#include "core/rng.h"

#define REPS 7

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    printf("lb_matmul (x [n,n] · wᵀ, w [n,n]) vs cblas_sgemm, %d threads, median of %d\n", omp_get_max_threads(),
           REPS);
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
    printf("\nattention forward: lb_attention (sgemm per head) vs plain causal loops, median of %d\n", REPS);
    printf("%-24s %12s %12s %8s %14s\n", "B,T,H,Hkv,Dh", "loops ms", "sgemm ms", "speedup", "lb fwd+bwd ms");
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
    if (max_n < 128) max_n = 128;
    print_load("at start");
    bench_matmul(max_n);
    bench_overhead();
    bench_attention();
    print_load("at end");
    return 0;
}

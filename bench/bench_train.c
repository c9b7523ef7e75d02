/* Training-step benchmark of one model shape (a program, not a test).
 *
 * Builds a model with random weights, feeds random byte tokens, and times
 * full steps (forward, backward, AdamW update, zero grad) as the trainer runs
 * them. Prints one line of key=value pairs, for scripts/bench_vs_torch.sh:
 *
 *   step_ms        median wall time of a step
 *   tok_s          B·T / step time
 *   rss_mb         peak resident set size of the process
 *   arena_forward_mb   activations and saved data when backward starts
 *   arena_peak_mb  most the arena held (backward reuses what it frees)
 *   sgemm_share    fraction of step time spent inside cblas_sgemm
 *   sgemm_gflops   GFLOP/s achieved by those sgemm calls
 *   omp_regions_per_step   OpenMP parallel regions run by a team per step (lowbit's
 *                  and OpenBLAS's together; regions whose `if` clause is false
 *                  are not counted)
 *   sgemm_calls_per_step   (calls inside a region counted once per region thread 0 runs)
 *   raw_gflops     the same calls replayed back to back on warm buffers
 *                  (what sgemm reaches at these shapes without the rest of
 *                  the step in between)
 *   sgemm_gflop_per_step   the multiply-adds of a step's sgemm calls (×2)
 *   peak_gflops    sgemm on a 2048³ product: the machine's practical peak
 *
 * sgemm time is measured by interposing cblas_sgemm in this program: the
 * static library's calls bind to the definition below, which times the call
 * and forwards to OpenBLAS's (found with dlsym(RTLD_NEXT)). Calls made inside
 * an OpenMP parallel region (small attention products, one per thread) are
 * counted once, by thread 0, with their time scaled by the team size.
 *
 * Usage: bench_train [--layers N] [--heads H] [--kv-heads H] [--dim D] [--ffn F]
 *                    [--seq T] [--batch B] [--vocab V] [--mode fp|b1.58|b1]
 *                    [--steps N] [--warmup N] [--no-sgemm-stats]
 * Threads: OMP_NUM_THREADS. LOWBIT_BENCH_SHAPES=1 lists the sgemm shapes of
 * a step, LOWBIT_BENCH_MEMORY=1 what the forward pass holds, by op (stderr). */
#define _GNU_SOURCE
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autograd/graph.h"
#include "core/rng.h"
#include "layers/model.h"
#include "optim/optim.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, lb_errmsg());
    exit(1);
}

/* --- sgemm interposition ------------------------------------------------------ */

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE,
                         const blasint, const blasint, const blasint, const float, const float *, const blasint,
                         const float *, const blasint, const float, float *, const blasint);

/* One distinct call shape, with how often it ran in the timed steps. */
typedef struct gemm_shape {
    int ta, tb, M, N, K, in_parallel;
    long count;
} gemm_shape;

#define MAX_SHAPES 512
static struct {
    sgemm_fn real;
    int recording;           /* 1 inside timed steps */
    double seconds, flops;   /* accumulated over recorded calls */
    gemm_shape shapes[MAX_SHAPES];
    int n_shapes;
} gs;

static void record_shape(int ta, int tb, int M, int N, int K, int in_parallel) {
    for (int i = 0; i < gs.n_shapes; i++) {
        gemm_shape *s = &gs.shapes[i];
        if (s->ta == ta && s->tb == tb && s->M == M && s->N == N && s->K == K && s->in_parallel == in_parallel) {
            s->count++;
            return;
        }
    }
    if (gs.n_shapes < MAX_SHAPES) gs.shapes[gs.n_shapes++] = (gemm_shape){ta, tb, M, N, K, in_parallel, 1};
}

void cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE ta, const enum CBLAS_TRANSPOSE tb,
                 const blasint M, const blasint N, const blasint K, const float alpha, const float *A,
                 const blasint lda, const float *B, const blasint ldb, const float beta, float *C,
                 const blasint ldc) {
    if (!gs.real) gs.real = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    if (!gs.real) {
        fprintf(stderr, "bench_train: OpenBLAS's cblas_sgemm not found (%s)\n", dlerror());
        exit(1);
    }
    if (!gs.recording) {
        gs.real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int par = omp_in_parallel();
    double t0 = now();
    gs.real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double dt = now() - t0;
    if (par && omp_get_thread_num() != 0) return;
    int team = par ? omp_get_num_threads() : 1;
    /* In a region the team's threads run such calls side by side; thread 0's
     * share stands for 1/team of the work in the same wall time. */
    gs.seconds += dt;
    gs.flops += 2.0 * M * N * K * team;
    record_shape(ta == CblasTrans, tb == CblasTrans, M, N, K, par);
}

/* Replays the recorded calls on scratch buffers, each under the same
 * conditions as in the step (alone, or once per thread inside a region):
 * the GFLOP/s sgemm reaches at these shapes with nothing else in between. */
static double raw_sgemm_gflops(void) {
    size_t big = 0;
    for (int i = 0; i < gs.n_shapes; i++) {
        gemm_shape *s = &gs.shapes[i];
        size_t a = (size_t)s->M * s->K, b = (size_t)s->K * s->N, c = (size_t)s->M * s->N;
        size_t m = a > b ? a : b;
        m = m > c ? m : c;
        big = m > big ? m : big;
    }
    const int nt = omp_get_max_threads();
    float *A = calloc(big, sizeof(float)), *B = calloc(big, sizeof(float));
    float *C = calloc(big * (size_t)nt, sizeof(float));
    if (!A || !B || !C) return 0.0;
    for (size_t i = 0; i < big; i++) A[i] = B[i] = 0.001f * (float)(i % 1000);
    double flops = 0.0, seconds = 0.0;
    for (int i = 0; i < gs.n_shapes; i++) {
        const gemm_shape *s = &gs.shapes[i];
        const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        const enum CBLAS_TRANSPOSE ta = s->ta ? CblasTrans : CblasNoTrans, tb = s->tb ? CblasTrans : CblasNoTrans;
        /* One warm-up call, then `count` calls (at least 3). */
        const long reps = s->count < 3 ? 3 : s->count;
        double t0 = 0.0;
        if (s->in_parallel) {
#pragma omp parallel
            {
                float *Ct = C + big * (size_t)omp_get_thread_num();
                gs.real(CblasRowMajor, ta, tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, Ct, s->N);
#pragma omp barrier
#pragma omp master
                t0 = now();
                for (long r = 0; r < reps; r++)
                    gs.real(CblasRowMajor, ta, tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 1.0f, Ct, s->N);
            }
            flops += 2.0 * s->M * s->N * s->K * (double)s->count * nt;
        } else {
            gs.real(CblasRowMajor, ta, tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
            t0 = now();
            for (long r = 0; r < reps; r++)
                gs.real(CblasRowMajor, ta, tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 1.0f, C, s->N);
            flops += 2.0 * s->M * s->N * s->K * (double)s->count;
        }
        seconds += (now() - t0) * (double)s->count / (double)reps;
    }
    free(A);
    free(B);
    free(C);
    return seconds > 0.0 ? flops / seconds * 1e-9 : 0.0;
}

/* What sgemm reaches on a large square product (n = 2048, best of 3): the
 * machine's practical peak, against which a step's sgemm work gives the
 * shortest step any implementation of the same arithmetic could take. */
static double peak_sgemm_gflops(void) {
    const int n = 2048;
    float *A = malloc((size_t)n * n * sizeof(float)), *B = malloc((size_t)n * n * sizeof(float));
    float *C = calloc((size_t)n * n, sizeof(float));
    if (!A || !B || !C) return 0.0;
    for (size_t i = 0; i < (size_t)n * n; i++) A[i] = B[i] = 0.001f * (float)(i % 1000);
    double best = 0.0;
    for (int r = 0; r < 4; r++) { /* the first call warms up */
        double t0 = now();
        gs.real(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double g = 2.0 * n * n * (double)n / (now() - t0) * 1e-9;
        if (r > 0 && g > best) best = g;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

/* --- OpenMP regions ----------------------------------------------------------------
 * Every `#pragma omp parallel` (lowbit's and OpenBLAS's) enters libgomp
 * through GOMP_parallel; counting them shows how many thread wake-ups and
 * barriers a step pays for. */

typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_fn real_gomp_parallel;
static long n_regions;
/* With LOWBIT_BENCH_REGIONS set, regions are also counted by their outlined
 * function, printed at exit as addresses for `addr2line -f -e bench_train`. */
#define MAX_REGION_FNS 256
static struct { void (*fn)(void *); long count; } region_fns[MAX_REGION_FNS];
static int n_region_fns, count_by_fn = -1;

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
    if (!real_gomp_parallel) real_gomp_parallel = (gomp_parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    /* An `if` clause that is false arrives as num_threads 1: no team, no barrier. */
    if (gs.recording && num_threads != 1) {
        n_regions++;
        if (count_by_fn < 0) count_by_fn = getenv("LOWBIT_BENCH_REGIONS") != NULL;
        int i = 0;
        while (count_by_fn && i < n_region_fns && region_fns[i].fn != fn) i++;
        if (count_by_fn && i < MAX_REGION_FNS) {
            region_fns[i].fn = fn;
            region_fns[i].count++;
            if (i == n_region_fns) n_region_fns++;
        }
    }
    real_gomp_parallel(fn, data, num_threads, flags);
}

/* --- the benchmark -------------------------------------------------------------- */

/* What the forward pass holds when backward starts (the step's peak): the
 * outputs each op made, summed by op, and the rest (saved data such as
 * attention probabilities and quantized inputs, tensor headers). */
static void print_forward_memory(const lb_graph *g) {
    enum { MAX_OPS = 64 };
    const char *ops[MAX_OPS];
    double mb[MAX_OPS], outputs = 0.0;
    int n_ops = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const lb_tensor *out = g->nodes[i].out;
        if (!(out->arena_owned & LB_OWNS_DATA)) continue;
        int k = 0;
        while (k < n_ops && strcmp(ops[k], g->nodes[i].op)) k++;
        if (k == n_ops) {
            if (n_ops == MAX_OPS) continue;
            ops[n_ops] = g->nodes[i].op;
            mb[n_ops++] = 0.0;
        }
        double bytes = (double)out->n * sizeof(float) / 1048576.0;
        mb[k] += bytes;
        outputs += bytes;
    }
    for (int k = 0; k < n_ops; k++) fprintf(stderr, "forward %-14s %8.1f MB\n", ops[k], mb[k]);
    fprintf(stderr, "forward %-14s %8.1f MB\n", "saved+other", (double)g->arena.used / 1048576.0 - outputs);
}

int main(int argc, char **argv) {
    int layers = 4, heads = 4, kv_heads = 2, dim = 128, ffn = 0, T = 64, B = 12, V = 256;
    int steps = 20, warmup = 3, sgemm_stats = 1;
    const char *mode = "b1.58";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = !strcmp(a, "--layers") ? &layers : !strcmp(a, "--heads") ? &heads
                : !strcmp(a, "--kv-heads") ? &kv_heads : !strcmp(a, "--dim") ? &dim
                : !strcmp(a, "--ffn") ? &ffn : !strcmp(a, "--seq") ? &T : !strcmp(a, "--batch") ? &B
                : !strcmp(a, "--vocab") ? &V : !strcmp(a, "--steps") ? &steps
                : !strcmp(a, "--warmup") ? &warmup : NULL;
        if (ip && v) {
            *ip = atoi(v);
            i++;
        } else if (!strcmp(a, "--mode") && v) {
            mode = v;
            i++;
        } else if (!strcmp(a, "--no-sgemm-stats")) {
            sgemm_stats = 0;
        } else {
            fprintf(stderr, "bench_train: unknown or incomplete option '%s' (see the comment at the top)\n", a);
            return 2;
        }
    }
    if (ffn == 0) ffn = 3 * dim;

    lb_model_config c;
    lb_model_config_defaults(&c);
    c.vocab_size = V;
    c.dim = dim;
    c.n_layers = layers;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.ffn_dim = ffn;
    c.max_seq_len = T;
    c.sub_norm = 1;
    lb_linear_mode lm = !strcmp(mode, "fp") ? LB_LINEAR_FP : !strcmp(mode, "b1") ? LB_LINEAR_B1 : LB_LINEAR_B158;
    if (strcmp(mode, "fp") && strcmp(mode, "b1") && strcmp(mode, "b1.58")) {
        fprintf(stderr, "bench_train: --mode '%s': expected fp, b1.58 or b1\n", mode);
        return 2;
    }
    c.attn.mode = c.ffn.mode = lm;

    lb_model *m = lb_model_create(&c, 1234);
    if (!m) die("model");
    lb_optim_config oc = lb_optim_config_default(LB_OPTIM_ADAMW);
    int *groups = malloc((size_t)m->n_params * sizeof *groups);
    for (int i = 0; i < m->n_params; i++) groups[i] = m->params[i].no_decay ? 1 : 0;
    lb_optim *opt = lb_optim_create(&oc, m->param_list, groups, m->n_params);
    if (!opt) die("optimizer");
    lb_graph g;
    if (lb_graph_init(&g, 0) != LB_OK) die("graph");

    /* Random bytes; targets are the next token, as in language modelling. */
    int *ids = malloc((size_t)B * T * sizeof *ids), *tgt = malloc((size_t)B * T * sizeof *tgt);
    for (int i = 0; i < B * T; i++) ids[i] = (int)(lb_rand_uniform(7, 0, (uint64_t)i) * V) % V;
    for (int i = 0; i < B * T; i++) tgt[i] = ids[(i + 1) % (B * T)];

    double *times = malloc((size_t)steps * sizeof *times);
    float loss0 = 0.0f, loss1 = 0.0f;
    size_t forward_bytes = 0;
    for (int s = 0; s < warmup + steps; s++) {
        gs.recording = sgemm_stats && s >= warmup;
        double t0 = now();
        lb_graph_reset(&g);
        lb_tensor *loss = lb_model_forward(m, &g, ids, B, T, tgt, NULL);
        if (!loss) die("forward");
        forward_bytes = g.arena.used;
        if (s == warmup + steps - 1 && getenv("LOWBIT_BENCH_MEMORY")) print_forward_memory(&g);
        if (lb_backward(&g, loss) != LB_OK) die("step");
        if (lb_optim_step(opt, 1e-3f, 0.1f, s + 1, NULL) != LB_OK) die("optimizer step");
        lb_optim_zero_grad(opt);
        double dt = now() - t0;
        if (s == 0) loss0 = loss->data[0];
        loss1 = loss->data[0];
        if (s >= warmup) times[s - warmup] = dt;
    }
    gs.recording = 0;
    double total = 0.0;
    for (int s = 0; s < steps; s++) total += times[s];
    double step = median(times, steps);
    double n_calls = 0.0;
    for (int i = 0; i < gs.n_shapes; i++) n_calls += (double)gs.shapes[i].count;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("impl=lowbit mode=%s layers=%d dim=%d heads=%d kv_heads=%d ffn=%d seq=%d batch=%d vocab=%d threads=%d "
           "blas=%s params=%zu step_ms=%.3f tok_s=%.1f rss_mb=%.1f loss_first=%.4f loss_last=%.4f",
           mode, layers, dim, heads, kv_heads, ffn, T, B, V, omp_get_max_threads(), openblas_get_corename(), m->n_elements, step * 1e3,
           (double)B * T / step, (double)ru.ru_maxrss / 1024.0, (double)loss0, (double)loss1);
    printf(" arena_forward_mb=%.1f arena_peak_mb=%.1f arena_capacity_mb=%.1f", (double)forward_bytes / 1048576.0,
           (double)g.arena.peak / 1048576.0, (double)g.arena.capacity / 1048576.0);
    if (sgemm_stats)
        printf(" omp_regions_per_step=%.0f sgemm_calls_per_step=%.0f sgemm_share=%.3f sgemm_gflops=%.1f raw_gflops=%.1f"
               " sgemm_gflop_per_step=%.3f peak_gflops=%.1f",
               (double)n_regions / steps, n_calls / steps, gs.seconds / total, gs.flops / gs.seconds * 1e-9,
               raw_sgemm_gflops(), gs.flops / steps * 1e-9, peak_sgemm_gflops());
    printf("\n");

    if (getenv("LOWBIT_BENCH_SHAPES")) /* the distinct sgemm calls of a step */
        for (int i = 0; i < gs.n_shapes; i++) {
            const gemm_shape *g1 = &gs.shapes[i];
            fprintf(stderr, "sgemm %c%c M=%d N=%d K=%d %s %.0f/step\n", g1->ta ? 'T' : 'N', g1->tb ? 'T' : 'N', g1->M,
                    g1->N, g1->K, g1->in_parallel ? "in-region" : "alone", (double)g1->count / steps);
        }
    for (int i = 0; i < n_region_fns; i++) {
        Dl_info info;
        int ok = dladdr((void *)region_fns[i].fn, &info);
        fprintf(stderr, "region %s+%#lx %.1f/step\n", ok && info.dli_fname ? info.dli_fname : "?",
                ok ? (unsigned long)((char *)region_fns[i].fn - (char *)info.dli_fbase) : 0UL,
                (double)region_fns[i].count / steps);
    }
    free(times);
    free(ids);
    free(tgt);
    free(groups);
    lb_graph_free(&g);
    lb_optim_free(opt);
    lb_model_free(m);
    return 0;
}

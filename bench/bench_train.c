/* Training-step benchmark of one model shape (a program, not a test).
 *
 * Builds a model with random weights, feeds random byte tokens, and times
 * full steps (forward, backward, AdamW update, zero grad) as the trainer runs
 * them. Prints one line of key=value pairs, for scripts/bench_vs_torch.sh:
 *
 *   step_ms        median wall time of a step
 *   tok_s          B·T / step time
 *   forward_ms, backward_ms, optim_ms   medians of the three parts of a step
 *   rss_mb         peak resident set size of the process
 *   arena_forward_mb   activations and saved data when backward starts
 *   arena_peak_mb  most the arena held (backward reuses what it frees)
 *   precision      the product precision of fp32 operands (--precision)
 *   attn_precision the same for attention's products (--attention-precision)
 *   backend        the GEMM backend (LOWBIT_GEMM), and {f32,bf16,s8}_impl the
 *                  kernels each operand type runs on (oneDNN's implementation
 *                  name, e.g. brg:avx512_core_vnni, or the OpenBLAS core)
 *   gemm_share     fraction of the step spent in matrix products (lb_gemm)
 *   gemm_ms        the same in ms per step; other_ms = step_ms − gemm_ms, the
 *                  norms, softmax, quantizers, conversions, optimizer, ...
 *   {f32,bf16,s8}_gflop_per_step, _gflops, _ms   per operand type: the
 *                  arithmetic of a step's products (2·M·N·K), the rate they
 *                  ran at, their time per step
 *   {f32,bf16,s8}_peak   each type's rate on a 1024³ product in this process
 *   floor_ms       Σ over types of GFLOP per step / peak: the shortest step
 *                  the same products allow on this machine
 *   omp_regions_per_step   OpenMP parallel regions run by a team per step
 *                  (lowbit's, oneDNN's and OpenBLAS's together; regions whose
 *                  `if` clause is false are not counted)
 *
 * Products are timed by the GEMM engine itself (lb_gemm_stats_enable): a
 * product made inside an OpenMP region (small attention products, one per
 * thread) is timed by thread 0, its time standing for the team's.
 *
 * Usage: bench_train [--layers N] [--heads H] [--kv-heads H] [--dim D] [--ffn F]
 *                    [--seq T] [--batch B] [--vocab V] [--mode fp|b1.58|b1]
 *                    [--precision fp32|bf16|auto] [--attention-precision fp32|bf16|auto]
 *                    [--steps N] [--warmup N] [--no-gemm-stats]
 * --precision and --attention-precision default to the config's defaults
 * (train.gemm_precision, train.attention_precision), resolved as a run does.
 * Threads: OMP_NUM_THREADS. LOWBIT_BENCH_MEMORY=1 prints what the forward
 * pass holds, by op (stderr); LOWBIT_BENCH_REGIONS=1 the regions by function. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autograd/gemm.h"
#include "autograd/graph.h"
#include "core/rng.h"
#include "io/config.h"
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

/* s with spaces as ':' (a value of a key=value pair), in one of 3 buffers. */
static const char *nospace(const char *s) {
    static char buf[3][128];
    static int k;
    char *b = buf[k++ % 3];
    snprintf(b, sizeof buf[0], "%s", s);
    for (char *p = b; *p; p++)
        if (*p == ' ') *p = ':';
    return b;
}

/* What a 1024³ product of type t reaches (best of 3 after a warm-up): the
 * machine's practical peak for that type. */
static double peak_gflops(lb_gemm_type t) {
    const int n = 1024;
    const size_t nn = (size_t)n * n, bytes = t == LB_GEMM_F32 ? 4 : t == LB_GEMM_BF16 ? 2 : 1;
    unsigned char *A = calloc(nn, bytes), *B = calloc(nn, bytes);
    float *C = calloc(nn, sizeof(float));
    if (!A || !B || !C) return 0.0;
    double best = 0.0;
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        if (lb_gemm(t, 0, 1, n, n, n, 1.0f, A, n, B, n, NULL, 0.0f, C, n) != LB_OK) die("peak product");
        double g = 2.0 * nn * (double)n / (now() - t0) * 1e-9;
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

static int recording; /* 1 inside timed steps */
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
    if (recording && num_threads != 1) {
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

/* A precision's name (lb_gemm_precision_names) into *p; 0 when it is none. */
static int precision_of(const char *option, const char *v, lb_gemm_precision *p) {
    for (int k = 0; k < LB_PRECISION_N; k++)
        if (!strcmp(v, lb_gemm_precision_names[k])) {
            *p = (lb_gemm_precision)k;
            return 1;
        }
    fprintf(stderr, "bench_train: %s '%s': expected fp32, bf16 or auto\n", option, v);
    return 0;
}

int main(int argc, char **argv) {
    int layers = 4, heads = 4, kv_heads = 2, dim = 128, ffn = 0, T = 64, B = 12, V = 256;
    int steps = 20, warmup = 3, gemm_stats = 1;
    const char *mode = "b1.58";
    lb_config defaults;
    lb_config_defaults(&defaults);
    lb_gemm_precision precision = defaults.train.gemm_precision, attn_precision = defaults.train.attention_precision;
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
        } else if ((!strcmp(a, "--precision") || !strcmp(a, "--attention-precision")) && v) {
            if (!precision_of(a, v, !strcmp(a, "--precision") ? &precision : &attn_precision)) return 2;
            i++;
        } else if (!strcmp(a, "--no-gemm-stats")) {
            gemm_stats = 0;
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
    if (lb_gemm_init() != LB_OK) die("gemm");
    g.precision = precision = lb_gemm_precision_resolve(precision);
    g.attn_precision = attn_precision = lb_attention_precision_resolve(attn_precision, precision);

    /* Random bytes; targets are the next token, as in language modelling. */
    int *ids = malloc((size_t)B * T * sizeof *ids), *tgt = malloc((size_t)B * T * sizeof *tgt);
    for (int i = 0; i < B * T; i++) ids[i] = (int)(lb_rand_uniform(7, 0, (uint64_t)i) * V) % V;
    for (int i = 0; i < B * T; i++) tgt[i] = ids[(i + 1) % (B * T)];

    double *times = malloc((size_t)steps * 4 * sizeof *times);
    double *t_fwd = times + steps, *t_bwd = times + 2 * steps, *t_opt = times + 3 * steps;
    float loss0 = 0.0f, loss1 = 0.0f;
    size_t forward_bytes = 0;
    for (int s = 0; s < warmup + steps; s++) {
        recording = gemm_stats && s >= warmup;
        if (s == warmup) lb_gemm_stats_reset();
        lb_gemm_stats_enable(recording);
        double t0 = now();
        lb_graph_reset(&g);
        lb_tensor *loss = lb_model_forward(m, &g, ids, B, T, tgt, NULL);
        if (!loss) die("forward");
        double t1 = now();
        forward_bytes = g.arena.used;
        if (s == warmup + steps - 1 && getenv("LOWBIT_BENCH_MEMORY")) print_forward_memory(&g);
        if (lb_backward(&g, loss) != LB_OK) die("step");
        double t2 = now();
        if (lb_optim_step(opt, 1e-3f, 0.1f, s + 1, NULL) != LB_OK) die("optimizer step");
        lb_optim_zero_grad(opt);
        double t3 = now();
        if (s == 0) loss0 = loss->data[0];
        loss1 = loss->data[0];
        if (s >= warmup) {
            times[s - warmup] = t3 - t0;
            t_fwd[s - warmup] = t1 - t0;
            t_bwd[s - warmup] = t2 - t1;
            t_opt[s - warmup] = t3 - t2;
        }
    }
    recording = 0;
    lb_gemm_stats_enable(0);
    const lb_gemm_stats st = lb_gemm_stats_get();
    double total = 0.0;
    for (int s = 0; s < steps; s++) total += times[s];
    double step = median(times, steps);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("impl=lowbit mode=%s layers=%d dim=%d heads=%d kv_heads=%d ffn=%d seq=%d batch=%d vocab=%d threads=%d "
           "backend=%s precision=%s attn_precision=%s f32_impl=%s bf16_impl=%s s8_impl=%s",
           mode, layers, dim, heads, kv_heads, ffn, T, B, V, omp_get_max_threads(),
           lb_gemm_backend_name(lb_gemm_get_backend()), lb_gemm_precision_name(precision),
           lb_gemm_precision_name(attn_precision),
           nospace(lb_gemm_impl(LB_GEMM_F32)), nospace(lb_gemm_impl(LB_GEMM_BF16)), nospace(lb_gemm_impl(LB_GEMM_S8)));
    printf(" params=%zu step_ms=%.3f tok_s=%.1f forward_ms=%.3f backward_ms=%.3f optim_ms=%.3f rss_mb=%.1f"
           " loss_first=%.4f loss_last=%.4f",
           m->n_elements, step * 1e3, (double)B * T / step, median(t_fwd, steps) * 1e3, median(t_bwd, steps) * 1e3,
           median(t_opt, steps) * 1e3, (double)ru.ru_maxrss / 1024.0, (double)loss0, (double)loss1);
    printf(" arena_forward_mb=%.1f arena_peak_mb=%.1f arena_capacity_mb=%.1f", (double)forward_bytes / 1048576.0,
           (double)g.arena.peak / 1048576.0, (double)g.arena.capacity / 1048576.0);
    if (gemm_stats) {
        double gemm_s = 0.0, floor_s = 0.0;
        for (int t = 0; t < LB_GEMM_N_TYPES; t++) gemm_s += st.seconds[t];
        printf(" omp_regions_per_step=%.0f gemm_share=%.3f gemm_ms=%.3f other_ms=%.3f", (double)n_regions / steps,
               gemm_s / total, gemm_s / steps * 1e3, (total - gemm_s) / steps * 1e3);
        for (int t = 0; t < LB_GEMM_N_TYPES; t++) {
            const char *name = lb_gemm_type_name((lb_gemm_type)t);
            double peak = st.calls[t] ? peak_gflops((lb_gemm_type)t) : 0.0;
            if (peak > 0.0) floor_s += st.flops[t] / (peak * 1e9);
            printf(" %s_calls_per_step=%.0f %s_gflop_per_step=%.3f %s_gflops=%.1f %s_ms=%.3f %s_peak=%.1f", name,
                   (double)st.calls[t] / steps, name, st.flops[t] / steps * 1e-9, name,
                   st.seconds[t] > 0.0 ? st.flops[t] / st.seconds[t] * 1e-9 : 0.0, name, st.seconds[t] / steps * 1e3,
                   name, peak);
        }
        printf(" floor_ms=%.3f", floor_s / steps * 1e3);
    }
    printf("\n");
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

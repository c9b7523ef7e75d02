/* Decode and prompt speed of the packed runtime, side by side in one run with
 * what bounds it and what it replaces (docs/runtime.md):
 *   - memory bandwidth, measured here: STREAM's copy and triad and a
 *     read-only sum, on arrays far larger than the caches (DRAM) and on
 *     arrays the size of the packed model's weights (where those fit in the
 *     caches);
 *   - the bound: tokens/s <= bandwidth / bytes of weights a decoded token
 *     reads (lb_rt_info.weight_bytes); the goal's is the DRAM copy's;
 *   - the packed runtime (lb_rt_generate, KV cache), the runtime with every
 *     layer as fp32 weights (the fp32 forward with a KV cache), and the
 *     training-time sampler (lb_generate: lb_model_forward over the whole
 *     context for every token, no cache).
 * Random weights (lb_model_create): speed does not depend on their values.
 *
 *   bench_runtime [CONFIG] [--prompt N] [--tokens N] [--training-tokens N] [--reps R] [--decode-only]
 *     CONFIG  a YAML config whose model to build (configs/bitnet-b158-small.yaml)
 *     --decode-only: only the packed runtime's prompt and decode rates (for
 *     profilers and quick side-by-side runs; no bandwidth, no bound)
 *     --prompt 64 tokens, then --tokens 64 generated (the first by the prompt
 *     pass); the training-time sampler generates only --training-tokens 8
 *     (it runs the whole window for each)
 *     threads: OMP_NUM_THREADS; LOWBIT_BENCH_CLOCK=cpu: CPU time of the
 *     process instead of wall time (rates per CPU-second, bench_clock.h); the
 *     bandwidths stay wall time: they are what the decode rate is bounded by */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "autograd/gemm.h"
#include "bench_clock.h"
#include "bench_handoff.h"
#include "io/config.h"
#include "layers/sample.h"
#include "runtime/runtime.h"

static void die(const char *what) {
    fprintf(stderr, "bench_runtime: %s: %s\n", what, lb_errmsg());
    exit(1);
}

/* ---- bandwidth -------------------------------------------------------------------- */

typedef struct bandwidth {
    double copy;   /* GB/s: a[i] = b[i], 16 bytes an element (STREAM's count: read and written) */
    double triad;  /* GB/s: a[i] = b[i] + s·c[i], 24 bytes an element (STREAM's count) */
    double read;   /* GB/s: Σ a[i], 8 bytes an element */
} bandwidth;

/* Best of `reps` over arrays of n doubles, on the OpenMP threads, each
 * timing `passes` passes over the arrays in one parallel region (so that
 * cache-sized arrays are not timed as thread wake-ups). */
static bandwidth measure_bandwidth(size_t n, int passes, int reps) {
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "bench_runtime: out of memory for the bandwidth arrays\n");
        exit(1);
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = 1.0, b[i] = 2.0, c[i] = 0.5; /* each thread touches its own pages */
    bandwidth bw = {0, 0, 0};
    double total = 0;
    for (int r = 0; r < reps; r++) {
        double tc = omp_get_wtime(), t0 = 0, t1 = 0, s = 0;
#pragma omp parallel
        {
            for (int k = 0; k < passes; k++) {
#pragma omp for schedule(static)
                for (size_t i = 0; i < n; i++) a[i] = b[i];
            }
#pragma omp single
            t0 = omp_get_wtime();
            for (int k = 0; k < passes; k++) {
#pragma omp for schedule(static)
                for (size_t i = 0; i < n; i++) a[i] = b[i] + 0.5 * c[i];
            }
#pragma omp single
            t1 = omp_get_wtime();
            for (int k = 0; k < passes; k++) {
#pragma omp for simd schedule(static) reduction(+ : s)
                for (size_t i = 0; i < n; i++) s += a[i];
            }
        }
        double t2 = omp_get_wtime();
        total += s;
        double copy = 16.0 * (double)n * passes / (t0 - tc) * 1e-9, triad = 24.0 * (double)n * passes / (t1 - t0) * 1e-9,
               read = 8.0 * (double)n * passes / (t2 - t1) * 1e-9;
        if (copy > bw.copy) bw.copy = copy;
        if (triad > bw.triad) bw.triad = triad;
        if (read > bw.read) bw.read = read;
    }
    if (total != 2.25 * (double)n * passes * reps) fprintf(stderr, "bench_runtime: the read pass summed %g\n", total);
    free(a);
    free(b);
    free(c);
    return bw;
}

/* The 1-minute load average (/proc/loadavg), or −1: on a machine other jobs
 * keep busy, wall-clock rates and bandwidths mostly measure the waits. */
static double load_average(void) {
    double la = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &la) != 1) la = -1.0;
        fclose(f);
    }
    return la;
}

/* ---- generation -------------------------------------------------------------------- */

typedef struct speed {
    double prompt_tps, decode_tps;
} speed;

/* The runtime: best of reps of a prompt pass and n_new − 1 decoded tokens. */
static speed run_runtime(const lb_model *m, int dense, const int *prompt, int n_prompt, int n_new, int reps,
                         lb_rt_info *info) {
    lb_rt_options o = lb_rt_options_default();
    o.dense = dense;
    lb_rt_model *rm = lb_rt_model_pack(m, &o);
    if (!rm) die("packing");
    lb_rt_model_info(rm, info);
    lb_rt_session *s = lb_rt_session_create(rm, 0);
    if (!s) die("session");
    const int V = lb_rt_model_config(rm)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits); /* every token's: sampling needs them */
    speed best = {0, 0};
    for (int r = 0; r < reps; r++) {
        /* lb_rt_generate's loop without sampling, timed with now() */
        double t0 = now();
        lb_status rc = lb_rt_forward(s, prompt, n_prompt, logits, 0);
        double t1 = now();
        if (rc != LB_OK) die("prompt");
        int tok = prompt[n_prompt - 1];
        for (int i = 1; i < n_new; i++) {
            tok = (tok * 31 + 7) % V; /* any token: the cost does not depend on which */
            if (lb_rt_forward(s, &tok, 1, logits, 0) != LB_OK) die("decode");
        }
        double t2 = now();
        lb_rt_session_reset(s);
        double p = n_prompt / (t1 - t0), d = (n_new - 1) / (t2 - t1);
        if (p > best.prompt_tps) best.prompt_tps = p;
        if (d > best.decode_tps) best.decode_tps = d;
    }
    free(logits);
    lb_rt_session_free(s);
    lb_rt_model_free(rm);
    return best;
}

/* The training-time forward: the prompt in one lb_model_forward (no grad),
 * and lb_generate's tokens/s (the whole window again for every token). */
static speed run_training(lb_model *m, const int *prompt, int n_prompt, int n_new, int reps) {
    lb_graph g;
    if (lb_graph_init(&g, 0) != LB_OK) die("graph");
    lb_graph_set_grad(&g, 0);
    int *out = malloc((size_t)n_new * sizeof *out);
    /* Size the graph's arena once for the longest window: lb_generate's
     * windows grow a token a step, and an arena that grows every step asks
     * for chunks of doubling size (docs/runtime.md). */
    int *window = malloc((size_t)(n_prompt + n_new) * sizeof *window);
    for (int i = 0; i < n_prompt + n_new; i++) window[i] = prompt[i % n_prompt];
    if (!lb_model_forward(m, &g, window, 1, n_prompt + n_new, NULL, NULL)) die("forward");
    free(window);
    speed best = {0, 0};
    for (int r = 0; r < reps; r++) {
        lb_graph_reset(&g);
        double t0 = now();
        if (!lb_model_forward(m, &g, prompt, 1, n_prompt, NULL, NULL)) die("forward");
        double t1 = now();
        lb_rng rng;
        lb_rng_init(&rng, 1, LB_STREAM_SAMPLE);
        if (lb_generate(m, &g, prompt, n_prompt, n_new, 0.0f, 1, &rng, out) != LB_OK) die("lb_generate");
        double t2 = now();
        /* every token of lb_generate, the first included, is a forward pass
         * over the whole window (n_prompt .. n_prompt + n_new − 1 tokens) */
        double p = n_prompt / (t1 - t0), d = n_new / (t2 - t1);
        if (p > best.prompt_tps) best.prompt_tps = p;
        if (d > best.decode_tps) best.decode_tps = d;
    }
    free(out);
    lb_graph_free(&g);
    return best;
}

int main(int argc, char **argv) {
    const char *config = "configs/bitnet-b158-small.yaml";
    int n_prompt = 64, n_new = 64, n_train = 8, reps = 3, decode_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--decode-only")) {
            decode_only = 1;
            continue;
        }
        int *ip = !strcmp(a, "--prompt") ? &n_prompt : !strcmp(a, "--tokens") ? &n_new : !strcmp(a, "--reps") ? &reps
                : !strcmp(a, "--training-tokens") ? &n_train : NULL;
        if (ip && v) {
            *ip = atoi(v);
            i++;
        } else if (a[0] != '-') {
            config = a;
        } else {
            fprintf(stderr, "bench_runtime: unknown or incomplete option '%s' (see the comment at the top)\n", a);
            return 2;
        }
    }
    lb_config cfg;
    if (lb_config_load_file(config, &cfg) != LB_OK) die("config");
    lb_model_config *c = &cfg.model;
    if (c->vocab_size == 0) c->vocab_size = 256; /* set by the tokenizer in training: bytes here */
    if (n_prompt < 1 || n_new < 2 || n_train < 2 || n_train > n_new || reps < 1 || n_prompt + n_new > c->max_seq_len) {
        fprintf(stderr, "bench_runtime: need --prompt >= 1, 2 <= --training-tokens <= --tokens, --reps >= 1 and prompt + tokens <= "
                        "max_seq_len %d\n", c->max_seq_len);
        return 2;
    }
    if (lb_gemm_init() != LB_OK) die("gemm");
    lb_model *m = lb_model_create(c, 1234);
    if (!m) die("model");
    int *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int)(lb_rand_u32(5, 0, (uint64_t)i) % (uint32_t)c->vocab_size);

    lb_rt_isa isa;
    if (lb_rt_isa_choose(LB_RT_ISA_AUTO, &isa) != LB_OK) die("instruction set");
    const int cpu_clock = getenv("LOWBIT_BENCH_CLOCK") && !strcmp(getenv("LOWBIT_BENCH_CLOCK"), "cpu");
    const double load0 = load_average(), handoff0 = handoff_round_trip_ns(50000, 3);
    printf("bench_runtime %s: %d layers, d %d, %d/%d heads, ffn %d, vocab %d; %d threads, %s kernels;\n"
           "prompt %d tokens, then %d decoded (positions %d..%d; training-time sampler: %d); best of %d; %s\n\n",
           config, c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab_size, omp_get_max_threads(),
           lb_rt_isa_name(isa), n_prompt, n_new - 1, n_prompt, n_prompt + n_new - 2, n_train - 1, reps,
           cpu_clock ? "CPU time (tokens per CPU-second)" : "wall time");

    if (decode_only) { /* the packed runtime alone, for profilers */
        lb_rt_info info;
        speed d = run_runtime(m, 0, prompt, n_prompt, n_new, reps, &info);
        printf("packed runtime: prompt %.1f tokens/s, decode %.1f tokens/s (%.3f ms a token)\n", d.prompt_tps,
               d.decode_tps, 1e3 / d.decode_tps);
        free(prompt);
        lb_model_free(m);
        return 0;
    }

    /* Interleaved: runtime, fp32 runtime, training; bandwidth before and after. */
    lb_rt_info packed_info, dense_info;
    speed pk = run_runtime(m, 0, prompt, n_prompt, n_new, 1, &packed_info); /* warm-up */
    const size_t wb = packed_info.weight_bytes;
    const size_t n_dram = (size_t)48 << 20, n_cache = wb / 24 + 1;  /* 3 × 384 MB; 3 × wb/3 bytes */
    const int cache_passes = (int)(n_dram / n_cache / 4) + 1;        /* about 1/4 of the DRAM pass's bytes */
    bandwidth dram = measure_bandwidth(n_dram, 1, reps), cache = measure_bandwidth(n_cache, cache_passes, reps);
    pk = run_runtime(m, 0, prompt, n_prompt, n_new, reps, &packed_info);
    speed dn = run_runtime(m, 1, prompt, n_prompt, n_new, reps, &dense_info);
    speed tr = run_training(m, prompt, n_prompt, n_train, reps);
    bandwidth dram2 = measure_bandwidth(n_dram, 1, reps), cache2 = measure_bandwidth(n_cache, cache_passes, reps);
    if (dram2.copy > dram.copy) dram.copy = dram2.copy;
    if (cache2.copy > cache.copy) cache.copy = cache2.copy;
    if (dram2.triad > dram.triad) dram.triad = dram2.triad;
    if (dram2.read > dram.read) dram.read = dram2.read;
    if (cache2.triad > cache.triad) cache.triad = cache2.triad;
    if (cache2.read > cache.read) cache.read = cache2.read;

    printf("| bandwidth, GB/s | copy | triad | read |\n|---|---:|---:|---:|\n");
    printf("| DRAM (3 × 384 MB arrays) | %.1f | %.1f | %.1f |\n", dram.copy, dram.triad, dram.read);
    printf("| the packed weights' size (3 × %.2f MB) | %.1f | %.1f | %.1f |\n\n", wb / 3.0 / 1e6, cache.copy,
           cache.triad, cache.read);

    printf("bytes of weights a decoded token reads: packed %.2f MB (of which %.2f MB ternary/binary codes), "
           "fp32 %.2f MB\n\n",
           wb / 1e6, packed_info.packed_bytes / 1e6, dense_info.weight_bytes / 1e6);
    printf("| forward | prompt tokens/s | decode tokens/s | decode bound, DRAM copy / triad / read | cache-size "
           "copy / triad / read | decode / bound (DRAM copy) |\n|---|---:|---:|---:|---:|---:|\n");
    const struct {
        const char *name;
        speed s;
        double bytes;
    } rows[] = {
        {"packed runtime (KV cache)", pk, (double)wb},
        {"runtime with fp32 weights (KV cache)", dn, (double)dense_info.weight_bytes},
        {"training forward, no cache (lb_generate)", tr, (double)dense_info.weight_bytes},
    };
    for (int i = 0; i < 3; i++) {
        const double b = rows[i].bytes;
        printf("| %s | %.1f | %.1f | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %.0f%% |\n", rows[i].name,
               rows[i].s.prompt_tps, rows[i].s.decode_tps, dram.copy * 1e9 / b, dram.triad * 1e9 / b,
               dram.read * 1e9 / b, cache.copy * 1e9 / b, cache.triad * 1e9 / b, cache.read * 1e9 / b,
               100.0 * rows[i].s.decode_tps / (dram.copy * 1e9 / b));
    }
    printf("\npacked runtime decode / bound: %.0f%% of DRAM copy, %.0f%% of DRAM triad, %.0f%% of DRAM read, %.0f%% of "
           "cache-size triad, %.0f%% of cache-size read\n",
           100.0 * pk.decode_tps * wb / (dram.copy * 1e9), 100.0 * pk.decode_tps * wb / (dram.triad * 1e9),
           100.0 * pk.decode_tps * wb / (dram.read * 1e9),
           100.0 * pk.decode_tps * wb / (cache.triad * 1e9), 100.0 * pk.decode_tps * wb / (cache.read * 1e9));
    /* The figure the runtime's goal is about (docs/runtime.md, Speed): decode
     * at >= 60% of the bound by the measured (DRAM) copy bandwidth, as the
     * goal names it, multi-threaded, in wall time. */
    const double goal = 100.0 * pk.decode_tps * wb / (dram.copy * 1e9), load1 = load_average();
    const double handoff1 = handoff_round_trip_ns(50000, 3);
    const double cores = (double)sysconf(_SC_NPROCESSORS_ONLN);
    char h0[64], h1[64];
    printf("\nGOAL decode >= 60%% of the DRAM-copy bound: %.0f tokens/s (%.3f ms a token) against %.0f tokens/s "
           "(copy %.1f GB/s; triad %.1f, read %.1f) = %.0f%% on %d threads (OMP_WAIT_POLICY %s), %s, load average %.1f at "
           "the start, %.1f at the end, a cache-line round trip between two threads %s at the start, %s at the "
           "end: %s\n",
           pk.decode_tps, 1e3 / pk.decode_tps, dram.copy * 1e9 / wb, dram.copy, dram.triad, dram.read, goal,
           omp_get_max_threads(), getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "unset",
           cpu_clock ? "CPU time" : "wall time", load0, load1, handoff_str(handoff0, h0, sizeof h0),
           handoff_str(handoff1, h1, sizeof h1),
           cpu_clock                          ? "not judged (the goal is wall time)"
           : load0 > cores || load1 > cores   ? "not judged (more runnable jobs than cores: rates and bandwidths "
                                                "measure the waits)"
           : goal >= 60.0                     ? "met"
                                              : "NOT met");
    free(prompt);
    lb_model_free(m);
    return 0;
}

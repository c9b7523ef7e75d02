/* Time of RTN and GPTQ on the linear layers of the small config
 * (configs/bitnet-b158-small.yaml: d 512, ffn 1536, 4 of 8 heads for k/v),
 * side by side in one run, with each method's output error on a Hessian of
 * random correlated inputs.
 *
 *   build/bench_ptq [SPEC ...]      (default int4:g128 int3:per_channel ternary)
 *   threads: OMP_NUM_THREADS; LOWBIT_BENCH_CLOCK=cpu: CPU time (bench_clock.h) */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_clock.h"
#include "core/rng.h"
#include "ptq/gptq.h"
#include "ptq/ptq.h"
#include "quant/quantize.h"

/* 2·XᵀX/n of n inputs of width K, a shared component every fourth column. */
static double *hessian(int K, int n) {
    float *X = malloc((size_t)n * K * sizeof *X), *H32 = calloc((size_t)K * K, sizeof *H32);
    double *H = malloc((size_t)K * K * sizeof *H);
    lb_rng r;
    lb_rng_init(&r, 1, (uint64_t)K);
    for (int t = 0; t < n; t++) {
        float common = lb_rng_normal(&r);
        for (int j = 0; j < K; j++) X[(size_t)t * K + j] = lb_rng_normal(&r) + (j % 4 == 0 ? common : 0.0f);
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, K, n, 2.0f / (float)n, X, K, 0.0f, H32, K);
    for (int i = 0; i < K; i++)
        for (int j = i; j < K; j++) H[(size_t)i * K + j] = H[(size_t)j * K + i] = H32[(size_t)i * K + j];
    free(X);
    free(H32);
    return H;
}

/* ½ Σ_rows δ H δᵀ, δ = W − Q */
static double error_of(const float *w, const float *q, int rows, int K, const double *H) {
    double sum = 0.0;
    double *d = malloc((size_t)K * sizeof *d), *e = malloc((size_t)K * sizeof *e);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < K; j++) d[j] = (double)w[(size_t)r * K + j] - q[(size_t)r * K + j];
        cblas_dsymv(CblasRowMajor, CblasUpper, K, 1.0, H, K, d, 1, 0.0, e, 1);
        for (int j = 0; j < K; j++) sum += d[j] * e[j];
    }
    free(d);
    free(e);
    return 0.5 * sum;
}

int main(int argc, char **argv) {
    const char *defaults[] = {"int4:g128", "int3:per_channel", "ternary"};
    int n_specs = argc > 1 ? argc - 1 : 3;
    const char *const *specs = argc > 1 ? (const char *const *)argv + 1 : defaults;
    /* (name, rows, cols, how many per block of the small config) */
    const struct { const char *name; int rows, cols, per_block; } shapes[] = {
        {"attn_q, attn_output", 512, 512, 2}, {"attn_k, attn_v", 256, 512, 2}, {"ffn_gate, ffn_up", 1536, 512, 2},
        {"ffn_down", 512, 1536, 1}};
    const int n_layers = 8, n_tokens = 4096;
    printf("RTN and GPTQ (block 128, damp 0.01) of the small config's layer shapes, %d threads%s\n",
           omp_get_max_threads(), getenv("LOWBIT_BENCH_CLOCK") ? ", CPU time" : ", wall time");
    for (int k = 0; k < n_specs; k++) {
        lb_qspec s;
        if (lb_qspec_parse(specs[k], &s) != LB_OK) {
            fprintf(stderr, "bench_ptq: %s\n", lb_errmsg());
            return 2;
        }
        double total_rtn = 0, total_gptq = 0;
        printf("\n%s\n%-22s %12s %10s %10s %12s %12s\n", specs[k], "layer", "shape", "rtn s", "gptq s", "rtn err",
               "gptq err");
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            int rows = shapes[i].rows, K = shapes[i].cols;
            size_t n = (size_t)rows * K;
            float *w = malloc(n * sizeof *w), *q = malloc(n * sizeof *q), *stored = malloc(n * sizeof *stored);
            float *steps = malloc(n * sizeof *steps);
            int8_t *codes = malloc(n);
            lb_rng r;
            lb_rng_init(&r, 2, i);
            for (size_t e = 0; e < n; e++) w[e] = 0.02f * lb_rng_normal(&r);
            double *H = hessian(K, n_tokens), *Hw = malloc((size_t)K * K * sizeof *Hw);
            double t0 = now();
            if (lb_ptq_rtn(&s, w, (size_t)rows, (size_t)K, stored, q) != LB_OK) goto fail;
            double t_rtn = now() - t0;
            double err_rtn = error_of(w, q, rows, K, H);
            memcpy(Hw, H, (size_t)K * K * sizeof *Hw);
            lb_gptq_options o = {0.01, 128, 0};
            t0 = now();
            if (lb_gptq(&s, w, (size_t)rows, (size_t)K, Hw, &o, codes, steps, q) != LB_OK) goto fail;
            double t_gptq = now() - t0;
            double err_gptq = error_of(w, q, rows, K, H);
            printf("%-22s %5d x %-5d %10.4f %10.4f %12.5g %12.5g\n", shapes[i].name, rows, K, t_rtn, t_gptq, err_rtn,
                   err_gptq);
            total_rtn += t_rtn * shapes[i].per_block * n_layers;
            total_gptq += t_gptq * shapes[i].per_block * n_layers;
            free(w);
            free(q);
            free(stored);
            free(steps);
            free(codes);
            free(H);
            free(Hw);
            continue;
        fail:
            fprintf(stderr, "bench_ptq: %s: %s\n", specs[k], lb_errmsg());
            return 1;
        }
        printf("all %d layers of the small config: rtn %.3f s, gptq %.2f s (without calibration)\n", 7 * n_layers,
               total_rtn, total_gptq);
    }
    return 0;
}

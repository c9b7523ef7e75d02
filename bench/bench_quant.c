/* Quantizer throughput: quantize (fp32 → codes + scales), dequantize (codes →
 * fp32) and fused fake-quant (fp32 → fp32) for each format, at 1M and 16M
 * elements, next to a memcpy of the same fp32 bytes. Reported as GB/s of fp32
 * input (4 bytes per element), best of several runs.
 *
 *   bench_quant [reps]        (threads: OMP_NUM_THREADS) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "quant/pack.h"
#include "quant/quantize.h"

static const char *specs[] = {
    "binary", "ternary", "ternary:per_channel", "int8:per_token", "int8:per_token:b1", "int8:per_channel:asym",
    "int4:g128", "int4:g128:asym", "int8:sr", "fp8_e4m3", "fp8_e5m2", "fp8_e4m3:sr", "fp4_e2m1:g32",
    "mxfp8", "mxfp4", "bf16", "fp16",
};

typedef enum { QUANT, DEQUANT, FAKE } mode;

static double run(const lb_qspec *s, mode m, const float *x, float *y, uint8_t *codes, float *scales, float *zeros,
                  size_t rows, size_t cols, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = omp_get_wtime();
        lb_status st = LB_OK;
        if (m == QUANT) st = lb_quantize(s, x, rows, cols, codes, scales, zeros);
        else if (m == DEQUANT) st = lb_dequantize(s, codes, scales, zeros, rows, cols, y);
        else st = lb_fake_quantize(s, x, y, rows, cols, NULL);
        double t = omp_get_wtime() - t0;
        if (st != LB_OK) {
            fprintf(stderr, "bench_quant: %s\n", lb_errmsg());
            exit(1);
        }
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    const size_t cols = 4096, sizes[2] = {1u << 20, 1u << 24};
    const size_t nmax = sizes[1];
    float *x = malloc(nmax * sizeof(float)), *y = malloc(nmax * sizeof(float));
    uint8_t *codes = malloc(nmax * 2), *packed = malloc(nmax);
    float *scales = malloc(nmax * sizeof(float)), *zeros = malloc(nmax * sizeof(float));
    if (!x || !y || !codes || !packed || !scales || !zeros) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    lb_rng r;
    lb_rng_init(&r, 1, 1);
    for (size_t i = 0; i < nmax; i++) x[i] = lb_rng_normal(&r);
    memset(y, 0, nmax * sizeof(float)); /* touch the pages before timing */
    memset(codes, 0, nmax * 2);

    /* Warm up: start the OpenMP threads and let the scheduler settle them
     * (on a busy machine the first parallel regions are much slower). */
    {
        lb_qspec w;
        lb_qspec_parse("int8:per_token", &w);
        double t0 = omp_get_wtime();
        while (omp_get_wtime() - t0 < 1.0) lb_fake_quantize(&w, x, y, nmax / cols, cols, NULL);
    }
    printf("threads %d, best of %d, GB/s of fp32 input\n\n", omp_get_max_threads(), reps);
    printf("| format | 1M quantize | 1M dequantize | 1M fake | 16M quantize | 16M dequantize | 16M fake |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    double mc[2];
    for (int k = 0; k < 2; k++) {
        double best = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = omp_get_wtime();
            memcpy(y, x, sizes[k] * sizeof(float));
            double t = omp_get_wtime() - t0;
            if (t < best) best = t;
        }
        mc[k] = 4e-9 * (double)sizes[k] / best;
    }
    printf("| memcpy (1 thread) | %.2f | | | %.2f | | |\n", mc[0], mc[1]);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        lb_qspec s;
        if (lb_qspec_parse(specs[i], &s) != LB_OK) {
            fprintf(stderr, "bench_quant: %s\n", lb_errmsg());
            return 1;
        }
        s.seed = 1;
        printf("| %s", specs[i]);
        for (int k = 0; k < 2; k++) {
            size_t rows = sizes[k] / cols;
            for (int m = QUANT; m <= FAKE; m++) {
                double t = run(&s, (mode)m, x, y, codes, scales, zeros, rows, cols, reps);
                printf(" | %.2f", 4e-9 * (double)sizes[k] / t);
            }
        }
        printf(" |\n");
    }

    /* Packing, GB/s of fp32 weights the codes stand for. */
    printf("\n| packer | 16M pack | 16M unpack |\n|---|---:|---:|\n");
    size_t n = sizes[1];
    for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(int8_t)((i * 7 % 3) - 1);
    const char *names[3] = {"ternary2 (2 bits)", "ternary5 (1.6 bits)", "int4 nibbles"};
    for (int p = 0; p < 3; p++) {
        double bp = 1e30, bu = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = omp_get_wtime();
            if (p == 0) lb_pack_ternary2((int8_t *)codes, n, packed);
            else if (p == 1) lb_pack_ternary5((int8_t *)codes, n, packed);
            else lb_pack_int4(codes, n, 1, packed);
            double t1 = omp_get_wtime();
            if (p == 0) lb_unpack_ternary2(packed, n, (int8_t *)codes);
            else if (p == 1) lb_unpack_ternary5(packed, n, (int8_t *)codes);
            else lb_unpack_int4(packed, n, 1, codes);
            double t2 = omp_get_wtime();
            if (t1 - t0 < bp) bp = t1 - t0;
            if (t2 - t1 < bu) bu = t2 - t1;
        }
        printf("| %s | %.2f | %.2f |\n", names[p], 4e-9 * (double)n / bp, 4e-9 * (double)n / bu);
    }
    free(x);
    free(y);
    free(codes);
    free(packed);
    free(scales);
    free(zeros);
    return 0;
}

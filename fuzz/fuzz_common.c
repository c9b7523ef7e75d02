#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One file per suffix (a harness uses one or two), named after the process. */
#define MAX_TMP 4
static struct {
    const char *suffix;
    char path[512];
} tmp[MAX_TMP];

const char *fuzz_tmp_file(const uint8_t *data, size_t size, const char *suffix) {
    int i = 0;
    while (i < MAX_TMP && tmp[i].suffix && strcmp(tmp[i].suffix, suffix) != 0) i++;
    if (i == MAX_TMP) return NULL;
    if (!tmp[i].suffix) {
        const char *dir = getenv("TMPDIR");
        tmp[i].suffix = suffix;
        snprintf(tmp[i].path, sizeof tmp[i].path, "%s/lowbit-fuzz-%ld%s", dir && dir[0] ? dir : "/tmp", (long)getpid(),
                 suffix);
    }
    FILE *f = fopen(tmp[i].path, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return tmp[i].path;
}

__attribute__((destructor)) static void remove_tmp_files(void) {
    for (int i = 0; i < MAX_TMP; i++)
        if (tmp[i].suffix) unlink(tmp[i].path);
}

int fuzz_model_fits(const lb_model_config *m) {
    double d = m->dim, v = m->vocab_size, f = m->ffn_dim, L = m->n_layers;
    if (d <= 0 || v <= 0 || f <= 0 || L <= 0) return 1; /* the model's own checks refuse it */
    double n = 2 * v * d + L * (4 * d * d + 3 * d * f + 4 * d);
    return n <= FUZZ_MAX_MODEL_PARAMS && m->max_seq_len <= 65536;
}

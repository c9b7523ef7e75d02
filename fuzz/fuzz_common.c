#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp_paths[4][512];

const char *fuzz_tmp_file(const uint8_t *data, size_t size, const char *suffix) {
    /* One file per suffix, named after the process: harnesses of one process reuse it. */
    int slot = suffix[0] ? (suffix[1] % 4) : 0;
    char *path = tmp_paths[slot];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof tmp_paths[0], "%s/lowbit-fuzz-%ld%s", dir && dir[0] ? dir : "/tmp", (long)getpid(), suffix);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return path;
}

__attribute__((destructor)) static void remove_tmp_files(void) {
    for (int i = 0; i < 4; i++)
        if (tmp_paths[i][0]) unlink(tmp_paths[i]);
}

int fuzz_model_fits(const lb_model_config *m) {
    double d = m->dim, v = m->vocab_size, f = m->ffn_dim, L = m->n_layers;
    if (d <= 0 || v <= 0 || f <= 0 || L <= 0) return 1; /* the model's own checks refuse it */
    double n = 2 * v * d + L * (4 * d * d + 3 * d * f + 4 * d);
    return n <= FUZZ_MAX_MODEL_PARAMS && m->max_seq_len <= 65536;
}

/* Helpers for the container tests (GGUF, safetensors): building byte buffers, reading
 * and writing files, running the independent reference readers in scripts/reference. */
#ifndef LOWBIT_TESTS_TESTUTIL_IO_H
#define LOWBIT_TESTS_TESTUTIL_IO_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define TU_PYTHON "/usr/bin/python3"

typedef struct tu_bytes {
    uint8_t *p;
    size_t n, cap;
} tu_bytes;

static inline void tu_put(tu_bytes *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) fail_msg("out of memory");
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static inline void tu_put_u32(tu_bytes *b, uint32_t v) { tu_put(b, &v, 4); }
static inline void tu_put_u64(tu_bytes *b, uint64_t v) { tu_put(b, &v, 8); }
static inline void tu_put_zeros(tu_bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) tu_put(b, "", 1);
}

static inline uint8_t *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    uint8_t *p = malloc((size_t)len + 1);
    if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) fail_msg("cannot read %s", path);
    fclose(f);
    p[len] = 0;
    *n = (size_t)len;
    return p;
}

static inline void tu_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) fail_msg("cannot write %s", path);
}

/* The reference scripts need python3 with numpy (and, for GGUF, node with the
 * @huggingface/gguf package): scripts/setup.sh installs them. Missing is a failure. */
static inline void tu_require_python_numpy(void) {
    if (access(TU_PYTHON, X_OK) != 0 || system(TU_PYTHON " -c 'import numpy' >/dev/null 2>&1") != 0)
        fail_msg("%s with numpy is missing: run scripts/setup.sh", TU_PYTHON);
}

static inline void tu_require_node_gguf(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "test -f '%s/scripts/reference/node_modules/@huggingface/gguf/package.json' && node --version >/dev/null 2>&1",
             tu_source_dir());
    if (system(cmd) != 0) fail_msg("node with @huggingface/gguf is missing: run scripts/setup.sh");
}

/* A malloc'd copy of exactly n bytes, so the sanitizers see any read past them. */
static inline uint8_t *tu_exact_copy(const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (!c) fail_msg("out of memory");
    if (n) memcpy(c, p, n);
    return c;
}

/* The directory holds `name` and nothing else (no temporary file left behind). */
static inline void tu_assert_only_file(const char *dir, const char *name) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = '%s'", dir, name);
    if (system(cmd) != 0) fail_msg("%s holds more than %s", dir, name);
}

/* Removes a test's temporary directory and what is in it. */
static inline void tu_rmdir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
}

#endif

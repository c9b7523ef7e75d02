/* The token shard reader (data/shards.h): the bytes as one shard file, opened
 * in both layouts (llm.c's .bin and nanoGPT's raw uint16). A shard that opens
 * promised every id below the vocabulary: every token is read and checked. */
#include <stdlib.h>

#include "data/shards.h"
#include "fuzz.h"

#define VOCAB 50257

static void open_as(const char *path, lb_shard_layout layout) {
    lb_shard s;
    if (lb_shard_open(&s, path, layout, VOCAB) != LB_OK) return;
    lb_tokens t = {.one = s.piece, .n = s.piece.n};
    int ids[256];
    for (size_t off = 0; off < t.n; off += 256) {
        size_t n = t.n - off < 256 ? t.n - off : 256;
        lb_tokens_read(&t, off, n, ids);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= VOCAB) abort();
    }
    lb_shard_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_tmp_file(data, size, ".bin");
    if (!path) return 0;
    open_as(path, LB_SHARDS_LLMC);
    open_as(path, LB_SHARDS_NANOGPT);
    return 0;
}

#include "data/batch.h"

#include <string.h>

/* Copies the window of T+1 tokens at tokens[off] into row `row`. */
static void copy_window(const int *tokens, size_t off, int T, int row, int *inputs, int *targets) {
    memcpy(inputs + (size_t)row * T, tokens + off, (size_t)T * sizeof *inputs);
    memcpy(targets + (size_t)row * T, tokens + off + 1, (size_t)T * sizeof *targets);
}

lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int B, int T, uint64_t seed) {
    memset(b, 0, sizeof *b);
    if (B < 1 || T < 1) return lb_error(LB_EINVAL, "batcher: batch %d × context %d, expected both ≥ 1", B, T);
    if (!ds || ds->n_train < (size_t)T + 1)
        return lb_error(LB_EINVAL, "batcher: train split has %zu tokens, expected at least context + 1 = %d",
                        ds ? ds->n_train : 0, T + 1);
    /* Offsets are drawn with one 32-bit lb_rng_below (a corpus of over 4G
     * tokens would not fit in memory as int32 anyway). */
    if (ds->n_train - (size_t)T > UINT32_MAX)
        return lb_error(LB_EINVAL, "batcher: train split of %zu tokens is larger than supported (2^32)",
                        ds->n_train);
    b->tokens = ds->train;
    b->n_tokens = ds->n_train;
    b->B = B;
    b->T = T;
    lb_rng_init(&b->rng, seed, LB_STREAM_DATA);
    return LB_OK;
}

void lb_batcher_next(lb_batcher *b, int *inputs, int *targets) {
    /* Starts 0 .. n − T − 1: the window's last token, at start + T, is in range. */
    uint32_t n_starts = (uint32_t)(b->n_tokens - (size_t)b->T);
    for (int row = 0; row < b->B; row++) {
        size_t off = lb_rng_below(&b->rng, n_starts);
        copy_window(b->tokens, off, b->T, row, inputs, targets);
    }
}

lb_rng lb_batcher_state(const lb_batcher *b) { return b->rng; }

lb_status lb_batcher_restore(lb_batcher *b, lb_rng state) {
    if (state.stream != LB_STREAM_DATA)
        return lb_error(LB_EFORMAT, "batcher state: stream %llu, expected %llu (data)",
                        (unsigned long long)state.stream, (unsigned long long)LB_STREAM_DATA);
    b->rng = state;
    return LB_OK;
}

int lb_val_batches_to_cover(const lb_dataset *ds, int B, int T) {
    if (!ds || B < 1 || T < 1 || ds->n_val < (size_t)T + 1) return 0;
    /* Starts run over 0 .. last; with N windows the spacing is last/(N − 1),
     * and spacing ≤ T leaves no gap: N = ceil(last / T) + 1. */
    size_t last = ds->n_val - (size_t)T - 1;
    size_t windows = (last + (size_t)T - 1) / (size_t)T + 1;
    size_t batches = (windows + (size_t)B - 1) / (size_t)B;
    return batches > (size_t)INT32_MAX ? INT32_MAX : (int)batches;
}

lb_status lb_val_batch(const lb_dataset *ds, int B, int T, int index, int n_batches, int *inputs, int *targets) {
    if (B < 1 || T < 1 || n_batches < 1 || index < 0 || index >= n_batches)
        return lb_error(LB_EINVAL, "validation batch %d of %d (batch %d × context %d): out of range", index,
                        n_batches, B, T);
    if (!ds || ds->n_val < (size_t)T + 1)
        return lb_error(LB_EINVAL, "validation split has %zu tokens, expected at least context + 1 = %d",
                        ds ? ds->n_val : 0, T + 1);
    size_t last = ds->n_val - (size_t)T - 1;
    uint64_t n_windows = (uint64_t)n_batches * (uint64_t)B;
    /* Keeps j·last below 2^63 so the offsets are exact in 64-bit integers. */
    if (n_windows > INT32_MAX || last > UINT32_MAX)
        return lb_error(LB_EINVAL, "validation: %llu windows over %zu tokens is more than supported",
                        (unsigned long long)n_windows, ds->n_val);
    for (int row = 0; row < B; row++) {
        uint64_t j = (uint64_t)index * (uint64_t)B + (uint64_t)row;
        size_t off = n_windows == 1 ? 0 : (size_t)(j * last / (n_windows - 1));
        copy_window(ds->val, off, T, row, inputs, targets);
    }
    return LB_OK;
}

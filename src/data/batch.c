#include "data/batch.h"

#include <string.h>

/* ---- token sequences ----------------------------------------------------- */

lb_tokens lb_tokens_of_ints(const int *ids, size_t n) {
    return (lb_tokens){.pieces = NULL, .starts = NULL, .n_pieces = 1, .one = {ids, n, LB_TOKENS_INT}, .n = n};
}

/* Copies n ids from piece p, starting at its id `off`. Shard ids are
 * little-endian on disk; lowbit builds only for little-endian hosts. */
static void read_piece(const lb_token_piece *p, size_t off, size_t n, int *dst) {
    switch (p->width) {
    case LB_TOKENS_INT:
        memcpy(dst, (const int *)p->ids + off, n * sizeof *dst);
        break;
    case LB_TOKENS_U16: {
        const uint16_t *s = (const uint16_t *)p->ids + off;
        for (size_t i = 0; i < n; i++) dst[i] = s[i];
        break;
    }
    case LB_TOKENS_U32: {
        const uint32_t *s = (const uint32_t *)p->ids + off;
        for (size_t i = 0; i < n; i++) dst[i] = (int)s[i];
        break;
    }
    }
}

/* Index of the piece holding id `off`: the last piece starting at or before it. */
static int piece_at(const lb_tokens *t, size_t off) {
    int lo = 0, hi = t->n_pieces - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (t->starts[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

void lb_tokens_read(const lb_tokens *t, size_t off, size_t n, int *dst) {
    if (!t->pieces) {
        read_piece(&t->one, off, n, dst);
        return;
    }
    for (int k = piece_at(t, off); n > 0; k++) {
        /* empty pieces are skipped: their start equals the next one's */
        size_t in_piece = off - t->starts[k], avail = t->pieces[k].n - in_piece;
        if (t->pieces[k].n == 0 || in_piece >= t->pieces[k].n) continue;
        size_t take = n < avail ? n : avail;
        read_piece(&t->pieces[k], in_piece, take, dst);
        dst += take;
        off += take;
        n -= take;
    }
}

/* ---- training batches ---------------------------------------------------- */

/* Copies the window of T+1 tokens at offset `off` into row `row`. */
static void copy_window(const lb_tokens *t, size_t off, int T, int row, int *inputs, int *targets) {
    int *in = inputs + (size_t)row * T, *tg = targets + (size_t)row * T;
    lb_tokens_read(t, off, (size_t)T, in);
    memmove(tg, in + 1, (size_t)(T - 1) * sizeof *tg);
    lb_tokens_read(t, off + (size_t)T, 1, tg + T - 1);
}

lb_status lb_batcher_init_tokens(lb_batcher *b, const lb_tokens *train, int B, int T, uint64_t seed) {
    memset(b, 0, sizeof *b);
    if (B < 1 || T < 1) return lb_error(LB_EINVAL, "batcher: batch %d × context %d, expected both ≥ 1", B, T);
    if (!train || train->n < (size_t)T + 1)
        return lb_error(LB_EINVAL, "batcher: train split has %zu tokens, expected at least context + 1 = %d",
                        train ? train->n : 0, T + 1);
    /* Offsets are drawn with one 32-bit lb_rng_below, so the same seed gives
     * the same windows over a dataset in memory and over its shards. */
    if (train->n - (size_t)T > UINT32_MAX)
        return lb_error(LB_EINVAL, "batcher: train split of %zu tokens is larger than supported (2^32 + context)",
                        train->n);
    b->train = *train;
    b->B = B;
    b->T = T;
    lb_rng_init(&b->rng, seed, LB_STREAM_DATA);
    return LB_OK;
}

lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int B, int T, uint64_t seed) {
    lb_tokens train = lb_tokens_of_ints(ds ? ds->train : NULL, ds ? ds->n_train : 0);
    return lb_batcher_init_tokens(b, &train, B, T, seed);
}

void lb_batcher_next_share(lb_batcher *b, int rank, int n_ranks, int *inputs, int *targets) {
    /* Starts 0 .. n − T − 1: the window's last token, at start + T, is in range. */
    uint32_t n_starts = (uint32_t)(b->train.n - (size_t)b->T);
    for (int r = 0; r < n_ranks; r++)
        for (int row = 0; row < b->B; row++) {
            size_t off = lb_rng_below(&b->rng, n_starts);
            if (r == rank) copy_window(&b->train, off, b->T, row, inputs, targets);
        }
}

void lb_batcher_next(lb_batcher *b, int *inputs, int *targets) { lb_batcher_next_share(b, 0, 1, inputs, targets); }

lb_rng lb_batcher_state(const lb_batcher *b) { return b->rng; }

lb_status lb_batcher_restore(lb_batcher *b, lb_rng state) {
    if (state.stream != LB_STREAM_DATA)
        return lb_error(LB_EFORMAT, "batcher state: stream %llu, expected %llu (data)",
                        (unsigned long long)state.stream, (unsigned long long)LB_STREAM_DATA);
    b->rng = state;
    return LB_OK;
}

/* ---- validation batches -------------------------------------------------- */

int lb_val_batches_to_cover_tokens(const lb_tokens *val, int B, int T) {
    if (!val || B < 1 || T < 1 || val->n < (size_t)T + 1) return 0;
    /* Starts run over 0 .. last; with N windows the spacing is last/(N − 1),
     * and spacing ≤ T leaves no gap: N = ceil(last / T) + 1. */
    size_t last = val->n - (size_t)T - 1;
    size_t windows = (last + (size_t)T - 1) / (size_t)T + 1;
    size_t batches = (windows + (size_t)B - 1) / (size_t)B;
    return batches > (size_t)INT32_MAX ? INT32_MAX : (int)batches;
}

int lb_val_batches_to_cover(const lb_dataset *ds, int B, int T) {
    lb_tokens val = lb_tokens_of_ints(ds ? ds->val : NULL, ds ? ds->n_val : 0);
    return lb_val_batches_to_cover_tokens(&val, B, T);
}

lb_status lb_val_batch_tokens(const lb_tokens *val, int B, int T, int index, int n_batches, int *inputs,
                              int *targets) {
    if (B < 1 || T < 1 || n_batches < 1 || index < 0 || index >= n_batches)
        return lb_error(LB_EINVAL, "validation batch %d of %d (batch %d × context %d): out of range", index,
                        n_batches, B, T);
    if (!val || val->n < (size_t)T + 1)
        return lb_error(LB_EINVAL, "validation split has %zu tokens, expected at least context + 1 = %d",
                        val ? val->n : 0, T + 1);
    size_t last = val->n - (size_t)T - 1;
    uint64_t n_windows = (uint64_t)n_batches * (uint64_t)B;
    /* Keeps j·last below 2^63 so the offsets are exact in 64-bit integers. */
    if (n_windows > INT32_MAX || last > UINT32_MAX)
        return lb_error(LB_EINVAL, "validation: %llu windows over %zu tokens is more than supported",
                        (unsigned long long)n_windows, val->n);
    for (int row = 0; row < B; row++) {
        uint64_t j = (uint64_t)index * (uint64_t)B + (uint64_t)row;
        size_t off = n_windows == 1 ? 0 : (size_t)(j * last / (n_windows - 1));
        copy_window(val, off, T, row, inputs, targets);
    }
    return LB_OK;
}

lb_status lb_val_batch(const lb_dataset *ds, int B, int T, int index, int n_batches, int *inputs, int *targets) {
    lb_tokens val = lb_tokens_of_ints(ds ? ds->val : NULL, ds ? ds->n_val : 0);
    return lb_val_batch_tokens(&val, B, T, index, n_batches, inputs, targets);
}

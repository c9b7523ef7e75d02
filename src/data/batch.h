/* Training and validation batches of token windows.
 *
 * A batch is B windows of T+1 consecutive tokens; row b of `inputs` [B*T]
 * holds tokens w[0..T) of window b and row b of `targets` [B*T] holds
 * w[1..T], the next token at every position. Callers own both buffers; no
 * call here allocates.
 *
 * Training windows start at offsets drawn uniformly from the train split,
 * one lb_rng_below(n_train − T) draw per row from the counter-based RNG on
 * stream LB_STREAM_DATA. The batcher's whole state is that lb_rng (seed,
 * stream, pos): a checkpoint saves the three integers and lb_batcher_restore
 * continues the exact same sequence of batches.
 *
 * Validation batches are a fixed set: n_batches·B windows evenly spaced over
 * the validation split, the first at its start and the last at its end, so
 * every evaluation sees the same text; lb_val_batches_to_cover gives the
 * smallest n_batches whose windows leave no validation token unseen. */
#ifndef LOWBIT_DATA_BATCH_H
#define LOWBIT_DATA_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/corpus.h"

typedef struct lb_batcher {
    const int *tokens;   /* the train split, borrowed from an lb_dataset */
    size_t n_tokens;
    int B, T;
    lb_rng rng;          /* the whole state */
} lb_batcher;

/* Batches of B rows of T tokens from ds->train (which must outlive the
 * batcher), with the RNG at the start of stream LB_STREAM_DATA under `seed`.
 * LB_EINVAL when B or T < 1 or the train split has fewer than T+1 tokens. */
lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int B, int T, uint64_t seed);

/* Fills inputs[B*T] and targets[B*T] with the next batch. */
void lb_batcher_next(lb_batcher *b, int *inputs, int *targets);

/* The state to save (a copy of b->rng) and its restoration, which rejects a
 * state from a stream other than LB_STREAM_DATA with LB_EFORMAT. */
lb_rng lb_batcher_state(const lb_batcher *b);
lb_status lb_batcher_restore(lb_batcher *b, lb_rng state);

/* Fewest validation batches of B×T whose evenly spaced windows cover every
 * token of the validation split; 0 when it has fewer than T+1 tokens. */
int lb_val_batches_to_cover(const lb_dataset *ds, int B, int T);

/* Batch `index` (0 ≤ index < n_batches) of the fixed validation set of
 * n_batches batches: windows index·B .. index·B + B − 1 of the n_batches·B
 * windows, window j starting at floor(j·(n_val − T − 1) / (n_batches·B − 1)).
 * LB_EINVAL on bad arguments or a validation split shorter than T+1 tokens. */
lb_status lb_val_batch(const lb_dataset *ds, int B, int T, int index, int n_batches, int *inputs, int *targets);

#endif

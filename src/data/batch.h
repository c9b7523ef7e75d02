/* Training and validation batches of token windows.
 *
 * A batch is B windows of T+1 consecutive tokens; row b of `inputs` [B*T]
 * holds tokens w[0..T) of window b and row b of `targets` [B*T] holds
 * w[1..T], the next token at every position. Callers own both buffers; no
 * call here allocates.
 *
 * Batches are read from an lb_tokens: a sequence of token ids made of pieces
 * back to back — an in-memory int array (an lb_dataset's split) or token
 * shards mapped from disk (uint16 or uint32, data/shards.h). A window may
 * span two pieces, as it may span two documents of a dataset, so a sequence
 * and the concatenation of its pieces give the same batches.
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

/* How a piece stores its ids. */
typedef enum lb_token_width {
    LB_TOKENS_INT = 0,  /* int, native (an lb_dataset) */
    LB_TOKENS_U16 = 1,  /* uint16, little-endian (shards) */
    LB_TOKENS_U32 = 2   /* uint32, little-endian, every id ≤ INT_MAX (shards) */
} lb_token_width;

typedef struct lb_token_piece {
    const void *ids;      /* borrowed */
    size_t n;
    lb_token_width width;
} lb_token_piece;

/* A read-only sequence of n ids: pieces[0..n_pieces) back to back, or, when
 * `pieces` is NULL, the single piece `one` (so a sequence over one array can
 * be copied freely). `starts` (n_pieces + 1 entries, may be NULL for one
 * piece) holds the offset of every piece and n at the end. */
typedef struct lb_tokens {
    const lb_token_piece *pieces;
    const size_t *starts;
    int n_pieces;
    lb_token_piece one;
    size_t n;
} lb_tokens;

/* The sequence of one int array (borrowed). */
lb_tokens lb_tokens_of_ints(const int *ids, size_t n);
/* Copies ids[off .. off + n) of the sequence into dst (off + n ≤ t->n). */
void lb_tokens_read(const lb_tokens *t, size_t off, size_t n, int *dst);

typedef struct lb_batcher {
    lb_tokens train;     /* the train split; its storage is borrowed */
    int B, T;
    lb_rng rng;          /* the whole state */
} lb_batcher;

/* Batches of B rows of T tokens from `train` (whose storage must outlive the
 * batcher), with the RNG at the start of stream LB_STREAM_DATA under `seed`.
 * LB_EINVAL when B or T < 1 or the train split has fewer than T+1 tokens. */
lb_status lb_batcher_init_tokens(lb_batcher *b, const lb_tokens *train, int B, int T, uint64_t seed);
/* The same over ds->train. */
lb_status lb_batcher_init(lb_batcher *b, const lb_dataset *ds, int B, int T, uint64_t seed);

/* Fills inputs[B*T] and targets[B*T] with the next batch. */
void lb_batcher_next(lb_batcher *b, int *inputs, int *targets);

/* Data parallelism: the next global batch is n_ranks·B rows, drawn exactly as
 * one process with batch n_ranks·B draws it, and rank `rank` gets rows
 * rank·B .. rank·B + B − 1 of it in inputs[B*T] and targets[B*T]. So the
 * sample order depends on the global batch only, not on how it is split. */
void lb_batcher_next_share(lb_batcher *b, int rank, int n_ranks, int *inputs, int *targets);

/* The state to save (a copy of b->rng) and its restoration, which rejects a
 * state from a stream other than LB_STREAM_DATA with LB_EFORMAT. */
lb_rng lb_batcher_state(const lb_batcher *b);
lb_status lb_batcher_restore(lb_batcher *b, lb_rng state);

/* Fewest validation batches of B×T whose evenly spaced windows cover every
 * token of the validation split; 0 when it has fewer than T+1 tokens. */
int lb_val_batches_to_cover(const lb_dataset *ds, int B, int T);
int lb_val_batches_to_cover_tokens(const lb_tokens *val, int B, int T);

/* Batch `index` (0 ≤ index < n_batches) of the fixed validation set of
 * n_batches batches: windows index·B .. index·B + B − 1 of the n_batches·B
 * windows, window j starting at floor(j·(n_val − T − 1) / (n_batches·B − 1)).
 * LB_EINVAL on bad arguments or a validation split shorter than T+1 tokens. */
lb_status lb_val_batch(const lb_dataset *ds, int B, int T, int index, int n_batches, int *inputs, int *targets);
/* The same over any validation sequence. */
lb_status lb_val_batch_tokens(const lb_tokens *val, int B, int T, int index, int n_batches, int *inputs,
                              int *targets);

#endif

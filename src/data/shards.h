/* Token shards: tokenized corpora on disk, memory-mapped for training.
 *
 * Two file layouts, both little-endian:
 *   llmc     llm.c's .bin (dev/data/data_common.py): a header of 256 int32 —
 *            [0] magic, [1] version, [2] token count, the rest 0 — then the
 *            tokens. magic 20240520 / version 1: uint16 tokens (llm.c's
 *            "gpt-2"); magic 20240801 / version 7: uint32 tokens ("llama-3").
 *            llm.c asserts count < 2^31; so does lowbit.
 *   nanogpt  nanoGPT's train.bin / val.bin: raw uint16 tokens, no header.
 *
 * Opening a shard maps it read-only and checks it whole before training
 * reads a token: the magic and version, the count against the file size
 * (exactly 1024 + count·width bytes), every id against the vocabulary. A
 * failure names the shard and the byte offset of what is wrong.
 *
 * A directory written by `lowbit data prepare` (lb_data_prepare, prepare.h)
 * holds train_NNNNNN.bin and val_NNNNNN.bin (llmc) or train.bin and val.bin
 * (nanogpt), the tokenizer (tokenizer.json for bpe/hf, tokenizer.lbtk — the
 * lb_tokenizer_to_bytes form — for byte/char) and manifest.json naming them:
 *   {"format": "lowbit-shards", "version": 1, "layout": "llmc"|"nanogpt",
 *    "dtype": "uint16"|"uint32", "vocab_size": N, "tokenizer": FILE,
 *    "tokenizer_kind": "byte"|"char"|"bpe"|"hf", "val_fraction": F,
 *    "train": [{"file": NAME, "tokens": N}, ...], "val": [...]}
 * Shards without a manifest (llm.c's, nanoGPT's) are read too: every
 * regular *.bin file of a directory, or the files a glob pattern matches;
 * a file whose name contains "val" is validation, any other train; the
 * tokenizer is the one the config names (byte or hf). */
#ifndef LOWBIT_DATA_SHARDS_H
#define LOWBIT_DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/batch.h"
#include "data/tokenizer.h"
#include "core/fileio.h"

typedef enum lb_shard_layout { LB_SHARDS_LLMC = 0, LB_SHARDS_NANOGPT = 1 } lb_shard_layout;
#define LB_SHARD_LAYOUT_COUNT 2
/* "llmc", "nanogpt": as data.format and --format spell them. */
extern const char *const lb_shard_layout_names[LB_SHARD_LAYOUT_COUNT];

#define LB_SHARD_HEADER_INTS 256
#define LB_SHARD_HEADER_BYTES (LB_SHARD_HEADER_INTS * 4)
#define LB_SHARD_MAX_TOKENS 2147483647u /* llm.c's count is an int32 */
#define LB_SHARD_MANIFEST "manifest.json"

/* The token width a vocabulary needs: uint16 when every id fits (≤ 65536
 * tokens), uint32 otherwise. */
lb_token_width lb_shard_width_for(int vocab_size);

/* One shard, mapped. */
typedef struct lb_shard {
    char *path;
    lb_mapped_file file;
    lb_token_piece piece; /* its tokens, inside the mapping */
} lb_shard;

/* Maps and checks `path` in `layout`; every id must be below vocab_size. A
 * failed open releases everything (lb_shard_close on it is still fine). */
lb_status lb_shard_open(lb_shard *s, const char *path, lb_shard_layout layout, int vocab_size);
void lb_shard_close(lb_shard *s);

/* Shards in order, read as one token sequence (`tokens`). */
typedef struct lb_shard_set {
    lb_shard *shards;
    int n;
    lb_token_piece *pieces;
    size_t *starts;
    lb_tokens tokens;
} lb_shard_set;

lb_status lb_shard_set_open(lb_shard_set *set, const char *const *paths, int n, lb_shard_layout layout,
                            int vocab_size);
void lb_shard_set_free(lb_shard_set *set);

/* What a training run reads: train and validation shards and their tokenizer. */
typedef struct lb_shard_data {
    lb_shard_set train, val;
    lb_tokenizer *tok;       /* owned */
    lb_shard_layout layout;
} lb_shard_data;

/* Opens data.shards: a directory with a manifest (its tokenizer is used and
 * `tok` is ignored), or a directory / glob of shards in `layout` with the
 * tokenizer `tok` describes (byte, or hf with its path; char and bpe need a
 * corpus and are refused). Zeroes *d first; free with lb_shard_data_free
 * (also after a failure). */
lb_status lb_shard_data_open(lb_shard_data *d, const char *spec, lb_shard_layout layout,
                             const lb_tokenizer_options *tok);
void lb_shard_data_free(lb_shard_data *d);

/* Writes one shard through a temporary file (core/fileio.h): header (llmc)
 * and tokens, then lb_shard_writer_close puts the count in the header,
 * fsyncs and renames the file onto `path`. */
typedef struct lb_shard_writer {
    lb_atomic_file file;
    lb_shard_layout layout;
    lb_token_width width;
    uint64_t n;              /* tokens written */
    uint8_t buf[1 << 16];    /* ids converted to the shard's width */
} lb_shard_writer;

lb_status lb_shard_writer_open(lb_shard_writer *w, const char *path, lb_shard_layout layout, lb_token_width width);
/* Appends ids, each in [0, 2^16) for uint16 and [0, 2^31) for uint32;
 * LB_EINVAL past LB_SHARD_MAX_TOKENS tokens (llmc) or for an id that does not fit. */
lb_status lb_shard_writer_append(lb_shard_writer *w, const int *ids, size_t n);
lb_status lb_shard_writer_close(lb_shard_writer *w);
/* Drops the temporary file (after a failure); the destination is untouched. */
void lb_shard_writer_abort(lb_shard_writer *w);

/* Writes dir/manifest.json (atomically) for shards already in dir; the
 * tokenizer file is named `tokenizer_file`. */
typedef struct lb_shard_manifest {
    lb_shard_layout layout;
    lb_token_width width;
    const lb_tokenizer *tok;
    const char *tokenizer_file;
    double val_fraction;
    int n_train, n_val;
    char **train_files, **val_files;     /* names inside dir */
    uint64_t *train_tokens, *val_tokens;
} lb_shard_manifest;
lb_status lb_shard_manifest_write(const char *dir, const lb_shard_manifest *m);

/* Saves `tok` into dir as tokenizer.json (bpe, hf) or tokenizer.lbtk (byte,
 * char); *name receives the file name (static). */
lb_status lb_shard_save_tokenizer(const char *dir, const lb_tokenizer *tok, const char **name);

#endif

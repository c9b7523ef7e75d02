/* `lowbit data prepare`: a corpus of any size tokenized into token shards
 * (data/shards.h), streaming file by file.
 *
 * Files are those lb_corpus_load would read (data/corpus.h: the same
 * directory rules, the same order), each mapped read-only and released once
 * its tokens are written. Each document is split as lb_dataset_build splits
 * it (lb_corpus_split_point); each part is cut into chunks of about
 * `chunk_bytes`, and chunks are tokenized on `threads` threads a window at a
 * time and written in document order, so the output bytes depend neither on
 * the thread count nor on the window. Train tokens fill train shards of at
 * most `shard_tokens` tokens, validation tokens val shards.
 *
 * Chunk edges. A chunk ends at a line start whose line break follows a
 * character that is not white space and is followed by one that is not
 * (".. x\nfoo"); failing that within the next chunk_bytes, at any line start;
 * failing that, at a UTF-8 character boundary. Byte and char tokens never
 * cross a character boundary, so their shards equal lb_dataset_build's ids
 * exactly. A byte-level BPE with a GPT-2-style pre-tokenizer (GPT-2, Llama 3,
 * lowbit's bpe) never joins a "\n" that follows a non-space character with
 * the non-space text after it, so the first kind of edge changes nothing
 * either; the fallbacks may split a pre-token (a whitespace run, a very
 * long line) in two. A tokenizer that prepends to every text it is given
 * (Metaspace "▁", add_prefix_space) prepends at every chunk, as it does at
 * every document part in memory. Files shorter than chunk_bytes are never
 * cut. The char and bpe tokenizers are built from the whole corpus, which
 * for them is loaded into memory once (use a tokenizer.json for corpora
 * larger than memory). */
#ifndef LOWBIT_DATA_PREPARE_H
#define LOWBIT_DATA_PREPARE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "data/shards.h"
#include "data/tokenizer.h"

typedef struct lb_prepare_options {
    const char *const *inputs;   /* files and directories */
    int n_inputs;
    const char *out_dir;         /* created; must not exist or be empty */
    lb_tokenizer_options tok;    /* byte, char, bpe (vocab_size) or hf (path) */
    double val_fraction;         /* [0, 1), as data.val_fraction */
    int threads;                 /* ≥ 1 */
    lb_shard_layout layout;
    uint64_t shard_tokens;       /* llmc: tokens per shard at most; 0: 100M */
    size_t chunk_bytes;          /* 0: 1 MiB */
    /* Called after each window is written (may be NULL). */
    void (*progress)(void *ctx, uint64_t bytes_done, uint64_t bytes_total);
    void *progress_ctx;
} lb_prepare_options;

typedef struct lb_prepare_result {
    uint64_t bytes;              /* text read */
    uint64_t n_train, n_val;     /* tokens written */
    int n_train_shards, n_val_shards;
    int n_docs, n_skipped;
    int vocab_size;
    lb_token_width width;
} lb_prepare_result;

lb_status lb_data_prepare(const lb_prepare_options *o, lb_prepare_result *r);

#endif

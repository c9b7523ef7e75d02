/* Corpora (text files read into memory) and their tokenized train/validation
 * split.
 *
 * A corpus is loaded from any mix of files and directories:
 *   - a file named explicitly is read as is (symlinks followed); it must be
 *     text: a NUL byte in it is an error;
 *   - a directory contributes its regular files, not recursively, in byte
 *     order of their names (strcmp, independent of locale), leaving out
 *     symlinks, subdirectories, hidden files (".name"), "*.dat" files and any
 *     file containing a NUL byte. These rules fit Debian's fortunes directory
 *     (/usr/share/games/fortunes, the default corpus), where "*.dat" are binary
 *     indexes and "*.u8" are symlinks to the text files.
 * Documents are kept back to back in one buffer, in load order.
 *
 * The split (lb_dataset_build) holds out the end of every document: the
 * validation part of a document of n bytes starts at the first line start at
 * or after byte floor((1 − val_fraction)·n) — or, when no line starts there,
 * at the first character boundary at or after it. Train and validation are
 * disjoint byte ranges of every file, every file contributes to both in
 * proportion, and the result depends only on the text and val_fraction (not on
 * thread count or seed). Train parts of all documents are concatenated into one
 * token array, validation parts into another. */
#ifndef LOWBIT_DATA_CORPUS_H
#define LOWBIT_DATA_CORPUS_H

#include <stddef.h>

#include "core/error.h"
#include "data/tokenizer.h"

#define LB_DEFAULT_CORPUS "/usr/share/games/fortunes"

typedef struct lb_corpus_doc {
    char *path;       /* as opened: "dir/name" for files found in a directory */
    size_t offset;    /* start in lb_corpus.text */
    size_t len;       /* bytes */
} lb_corpus_doc;

typedef struct lb_corpus {
    char *text;          /* every document back to back, NUL-terminated */
    size_t len;          /* bytes of text, not counting the terminator */
    lb_corpus_doc *docs;
    int n_docs;
    int n_skipped;       /* directory entries left out by the rules above */
} lb_corpus;

/* Loads paths[0..n_paths) (files or directories) into *c, which is zeroed
 * first and must be freed with lb_corpus_free (also after a failure).
 * Errors name the path: LB_EIO for a missing or unreadable path, LB_EFORMAT
 * for a NUL byte in a file named explicitly, LB_EINVAL when no text at all was
 * found. */
lb_status lb_corpus_load(lb_corpus *c, const char *const *paths, int n_paths);
/* The same for one path. */
lb_status lb_corpus_load_path(lb_corpus *c, const char *path);
void lb_corpus_free(lb_corpus *c);

/* The files lb_corpus_load reads, in its order, without reading them: for
 * readers that stream a corpus file by file (lb_data_prepare). A file found
 * in a directory that turns out to hold a NUL byte is to be left out, one
 * named explicitly is an error. Zeroes *l first; free with
 * lb_corpus_files_free (also after a failure). */
typedef struct lb_corpus_file {
    char *path;
    int explicit_path;   /* named in `paths`, not found in a directory */
} lb_corpus_file;
typedef struct lb_corpus_files {
    lb_corpus_file *files;
    int n, cap;
    int n_skipped;       /* directory entries left out by the rules above */
} lb_corpus_files;
lb_status lb_corpus_list(lb_corpus_files *l, const char *const *paths, int n_paths);
void lb_corpus_files_free(lb_corpus_files *l);

/* Where the validation part of document s[0..n) begins under the split rule
 * above (n when it has none). */
size_t lb_corpus_split_point(const char *s, size_t n, double val_fraction);

/* The tokenized corpus, split into train and validation. */
typedef struct lb_dataset {
    int *train;          /* token ids of the train parts, documents in order */
    size_t n_train;
    int *val;            /* token ids of the validation parts */
    size_t n_val;
    int vocab_size;      /* of the tokenizer used; every id is below it */
} lb_dataset;

/* Tokenizes corpus `c` with `tok` and splits it as described above;
 * val_fraction in [0, 1). Zeroes *ds first; free with lb_dataset_free (also
 * after a failure). Fails with LB_EINVAL on a bad fraction, when the split
 * leaves the train part empty or (for val_fraction > 0) the validation part
 * empty, or when a character is outside the tokenizer's vocabulary (the
 * message names the file). */
lb_status lb_dataset_build(lb_dataset *ds, const lb_corpus *c, const lb_tokenizer *tok, double val_fraction);
void lb_dataset_free(lb_dataset *ds);

#endif

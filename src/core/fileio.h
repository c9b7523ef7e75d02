/* File plumbing shared by the container readers and writers (safetensors, GGUF, token shards):
 * a whole file mapped read-only, and a file written atomically.
 *
 * Readers parse a mapped file as a plain byte buffer, so everything they check is
 * checked against `size` and a parser can be run on any buffer (tests, fuzzing).
 * Writers write into a temporary file next to the destination, then fsync it, rename
 * it over the destination and fsync the directory: the destination holds either its
 * old content or the complete new file, never a part. */
#ifndef LOWBIT_CORE_FILEIO_H
#define LOWBIT_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

typedef struct lb_mapped_file {
    const uint8_t *data; /* size bytes (not NUL-terminated); never NULL after a successful map */
    size_t size;
    void *base;          /* what munmap needs (NULL for an empty file) */
} lb_mapped_file;

/* Maps the regular file `path` read-only. LB_EIO naming the file on failure. */
lb_status lb_map_file(const char *path, lb_mapped_file *m);
void lb_unmap_file(lb_mapped_file *m);

typedef struct lb_atomic_file {
    FILE *f;       /* buffered writes go here */
    char *path;    /* the destination */
    char *tmp;     /* the temporary file being written */
    uint64_t pos;  /* bytes written so far */
    int failed;    /* a write failed: commit refuses */
} lb_atomic_file;

/* Creates a fresh temporary file next to `path` (O_EXCL, never someone else's file). */
lb_status lb_atomic_begin(const char *path, lb_atomic_file *af);
/* Appends n bytes. A failed write is reported (naming the file) and remembered. */
lb_status lb_atomic_write(lb_atomic_file *af, const void *p, size_t n);
/* Appends zero bytes until the file length is a multiple of `alignment`. */
lb_status lb_atomic_pad(lb_atomic_file *af, uint64_t alignment);
/* Bytes given to a writer: a pointer kept until commit, or a function producing
 * them at commit time into a buffer of nbytes (so a tensor can be converted or
 * quantized just before it is written, one at a time). */
typedef lb_status (*lb_produce_fn)(void *ctx, void *dst, size_t nbytes);
/* Appends `data`, or what `produce` writes into a temporary buffer when it is set. */
lb_status lb_atomic_write_produced(lb_atomic_file *af, const void *data, lb_produce_fn produce, void *ctx,
                                   size_t nbytes);
/* Overwrites n bytes at `offset` (< the current length), e.g. a count known only at
 * the end; later writes still append. */
lb_status lb_atomic_write_at(lb_atomic_file *af, uint64_t offset, const void *p, size_t n);
/* Flushes, fsyncs, renames onto the destination and fsyncs its directory. On failure
 * the temporary file is removed and the destination is untouched. Frees af's state. */
lb_status lb_atomic_commit(lb_atomic_file *af);
/* Removes the temporary file; the destination is untouched. Safe on a zeroed af. */
void lb_atomic_abort(lb_atomic_file *af);

#endif

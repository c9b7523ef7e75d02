/* safetensors files (Hugging Face): a reader over mapped files, single or sharded,
 * and an atomic writer. docs/formats.md describes the format and the checks.
 *
 * A file is an 8-byte little-endian header length n, n bytes of JSON
 *   {"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * padded with spaces, then the data: every tensor's bytes, row-major and
 * little-endian, at [begin, end) counted from the end of the header. The reader
 * validates exactly as the upstream crate (huggingface/safetensors, tensor.rs) does,
 * and refuses duplicate names too. Shapes are row-major, slowest dimension first, as
 * lowbit's own. */
#ifndef LOWBIT_IO_SAFETENSORS_H
#define LOWBIT_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/fileio.h" /* lb_produce_fn */

#define LB_ST_MAX_HEADER 100000000 /* bytes of JSON header (the upstream limit) */

typedef struct lb_st_tensor {
    const char *name;
    const char *dtype;       /* as the header spells it: "F32", "BF16", "I64", ... */
    int dt;                  /* its lb_dtype, -1 when lowbit has none (core/dtype.h) */
    int ndim;                /* 0 for a scalar */
    const int64_t *shape;
    uint64_t nelements;
    uint64_t nbytes;
    const void *data;        /* in the mapping of its file */
    const char *file;        /* the file holding it */
} lb_st_tensor;

typedef struct lb_st lb_st;

/* Opens `path`: a .safetensors file; a sharded model's index
 * (model.safetensors.index.json: {"weight_map": {tensor: shard file}}); or a
 * directory holding either model.safetensors.index.json or model.safetensors.
 * Every file is mapped and checked whole; for an index, every tensor it lists must
 * be in the shard it names and every tensor of a shard must be listed there. Errors
 * are LB_EIO or LB_EFORMAT naming the file and the field. */
lb_status lb_st_open(const char *path, lb_st **out);
/* One file's bytes, borrowed until lb_st_close; `label` names it in messages. */
lb_status lb_st_parse(const void *buf, size_t size, const char *label, lb_st **out);
void lb_st_close(lb_st *st);

/* Tensors in file order: shards in name order, then by data offset. */
size_t lb_st_count(const lb_st *st);
const lb_st_tensor *lb_st_at(const lb_st *st, size_t i);
const lb_st_tensor *lb_st_find(const lb_st *st, const char *name);

/* "__metadata__" (of the first file, for a sharded set): NULL when absent. */
size_t lb_st_metadata_count(const lb_st *st);
void lb_st_metadata_at(const lb_st *st, size_t i, const char **key, const char **value);
const char *lb_st_metadata(const lb_st *st, const char *key);

/* A tensor's elements as float32 through its dtype's row codec, n == t->nelements.
 * LB_EINVAL naming the tensor for dtypes lowbit has no lb_dtype for (BOOL, U64, C64,
 * F4, F6_*, F8_E8M0, the FNUZ fp8 variants). */
lb_status lb_st_to_f32(const lb_st *st, const lb_st_tensor *t, float *dst, size_t n);

/* Bits per element of a safetensors dtype name; 0 when unknown. */
int lb_st_dtype_bits(const char *dtype);

/* --- writing ------------------------------------------------------------------ */

/* Writes as the upstream crate does: tensors ordered by dtype alignment (largest
 * first) then name, so every tensor's data is aligned to its element size; the JSON
 * compact, "__metadata__" first; the header padded with spaces to a multiple of 8.
 * Data pointers are borrowed until commit (or produced then). Any failed call makes
 * commit refuse; abort or a failed commit leave `path` untouched. */
typedef struct lb_st_writer lb_st_writer;

lb_status lb_st_writer_begin(const char *path, lb_st_writer **out);
/* dtype: a safetensors name ("F32", "BF16", ...); shape row-major, ndim 0 for a
 * scalar; data: nelements · bits / 8 bytes. */
lb_status lb_st_writer_add(lb_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                           const void *data);
/* The same with the bytes produced at commit time (io/fileio.h). */
lb_status lb_st_writer_add_fn(lb_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                              lb_produce_fn produce, void *ctx);
/* A "__metadata__" entry (UTF-8 strings); setting a key again replaces its value. */
lb_status lb_st_writer_set_metadata(lb_st_writer *w, const char *key, const char *value);
lb_status lb_st_writer_commit(lb_st_writer *w); /* frees w either way */
void lb_st_writer_abort(lb_st_writer *w);

#endif

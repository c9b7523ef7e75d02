/* HDF5 checkpoints: one file holds everything needed to resume a run.
 *
 * A thin, generic layer over the HDF5 C API. It knows nothing of models or
 * optimizers: callers put named arrays, strings and attributes, and get them
 * back with their shapes checked. docs/checkpoint.md describes the file layout
 * and the groups the trainer uses.
 *
 *   lb_ckpt *c;
 *   LB_TRY(lb_ckpt_create("run/step_00000100.h5", &c));
 *   if (lb_ckpt_put_f32(c, "model/blk.0.attn_q.weight", 2, shape, w) != LB_OK) {
 *       lb_ckpt_abort(c);                  // the old file at PATH is untouched
 *       return lb_errcode();
 *   }
 *   return lb_ckpt_commit(c);              // atomic: old file or new file, never half
 *
 * Safety:
 *  - Writing goes to "PATH.tmp-*" in the same directory; commit flushes,
 *    fsyncs, renames it onto PATH and fsyncs the directory.
 *  - Every array is stored chunked with the Fletcher32 filter, and the file's
 *    metadata in the HDF5 1.10 format, which checksums it too; a truncated or
 *    bit-flipped file is reported as LB_EFORMAT, never read as good data.
 *  - HDF5's own error printing is switched off; failures become lb_error
 *    messages naming the file and the dataset.
 *
 * Names are paths of '/'-separated components, like "model/blk.0.ffn_up.weight";
 * groups are created as needed. A leading '/' is optional. Empty components,
 * "." and ".." are rejected.
 *
 * HDF5 (serial build) is not thread-safe: use checkpoints from one thread at a
 * time. Not for hot paths: these calls allocate. */
#ifndef LOWBIT_IO_CHECKPOINT_H
#define LOWBIT_IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

#define LB_CKPT_FORMAT "lowbit-checkpoint"   /* root attribute 'format' */
#define LB_CKPT_FORMAT_VERSION 1             /* root attribute 'format_version' */
#define LB_CKPT_MAX_DIMS 8

typedef struct lb_ckpt lb_ckpt;   /* an open checkpoint, for writing or for reading */

/* Element types are core/dtype.h's. On disk every scalar type is the
 * little-endian HDF5 type of its class and size (f32 → H5T_IEEE_F32LE,
 * u8 → H5T_STD_U8LE, ...). f16, bf16 and the fp8 formats have no standard
 * HDF5 type, so lowbit stores their codes as u16 / u8 (the optimizer's
 * state buffers do) and refuses them here. */

/* ---- writing ------------------------------------------------------------ */

/* Starts a new checkpoint for PATH. Nothing at PATH changes until
 * lb_ckpt_commit; the root attributes 'format' and 'format_version' are
 * written here. Fails with LB_EIO when the directory is missing or read-only. */
lb_status lb_ckpt_create(const char *path, lb_ckpt **out);

/* An array of `ndim` (0..LB_CKPT_MAX_DIMS) dimensions `shape` (each >= 0),
 * row-major, of element type `t`. ndim 0 is a scalar (shape may be NULL).
 * Writing a name twice is an error. After any failed put, commit refuses
 * and discards the file. */
lb_status lb_ckpt_put(lb_ckpt *c, const char *name, lb_dtype t, int ndim, const int *shape, const void *data);
/* The same with the C type checked by the compiler. */
static inline lb_status lb_ckpt_put_f32(lb_ckpt *c, const char *name, int ndim, const int *shape, const float *data) {
    return lb_ckpt_put(c, name, LB_DT_F32, ndim, shape, data);
}
static inline lb_status lb_ckpt_put_u8(lb_ckpt *c, const char *name, int ndim, const int *shape, const uint8_t *data) {
    return lb_ckpt_put(c, name, LB_DT_U8, ndim, shape, data);
}
static inline lb_status lb_ckpt_put_u16(lb_ckpt *c, const char *name, int ndim, const int *shape,
                                        const uint16_t *data) {
    return lb_ckpt_put(c, name, LB_DT_U16, ndim, shape, data);
}
static inline lb_status lb_ckpt_put_i32(lb_ckpt *c, const char *name, int ndim, const int *shape, const int32_t *data) {
    return lb_ckpt_put(c, name, LB_DT_I32, ndim, shape, data);
}
static inline lb_status lb_ckpt_put_i64(lb_ckpt *c, const char *name, int ndim, const int *shape, const int64_t *data) {
    return lb_ckpt_put(c, name, LB_DT_I64, ndim, shape, data);
}

/* A scalar fixed-length UTF-8 string dataset (h5py reads it as bytes;
 * ds.asstr()[()] gives str). */
lb_status lb_ckpt_put_string(lb_ckpt *c, const char *name, const char *text);

/* Attributes of an existing dataset or group ("" or "/" is the root);
 * setting an attribute again replaces it. */
lb_status lb_ckpt_set_attr_str(lb_ckpt *c, const char *object, const char *attr, const char *value);
lb_status lb_ckpt_set_attr_i64(lb_ckpt *c, const char *object, const char *attr, int64_t value);

/* Flushes and closes the file, fsyncs it, renames it onto PATH and fsyncs the
 * directory. Frees `c` whether it succeeds or not; on failure the temporary
 * file is removed and whatever was at PATH before is left as it was. */
lb_status lb_ckpt_commit(lb_ckpt *c);

/* Discards a checkpoint being written (removes the temporary file) and frees
 * `c`. On a checkpoint opened for reading it is lb_ckpt_close. NULL is fine. */
void lb_ckpt_abort(lb_ckpt *c);

/* ---- reading ------------------------------------------------------------ */

/* Opens PATH read-only and checks that it is HDF5 and a lowbit checkpoint of
 * a format version this build reads (LB_EFORMAT otherwise). */
lb_status lb_ckpt_open(const char *path, lb_ckpt **out);

/* 1 when a dataset or group of that name exists, else 0. */
int lb_ckpt_has(lb_ckpt *c, const char *name);

/* Element type and shape of a dataset. `shape` has room for LB_CKPT_MAX_DIMS.
 * A string dataset or a type lowbit has no dtype for is LB_EINVAL naming it. */
lb_status lb_ckpt_type_of(lb_ckpt *c, const char *name, lb_dtype *type);
lb_status lb_ckpt_shape(lb_ckpt *c, const char *name, int *ndim, int *shape);
/* 1 when `name` is a string dataset (lb_ckpt_put_string), else 0. */
int lb_ckpt_is_string(lb_ckpt *c, const char *name);

/* Reads a whole dataset into `data`. The stored type and shape must match
 * exactly (no conversions); otherwise LB_EINVAL with a message naming the
 * tensor and the expected and found type or shape. A missing dataset is
 * LB_EINVAL; corrupt data (checksum mismatch, truncation) is LB_EFORMAT. */
lb_status lb_ckpt_get(lb_ckpt *c, const char *name, lb_dtype t, int ndim, const int *shape, void *data);
static inline lb_status lb_ckpt_get_f32(lb_ckpt *c, const char *name, int ndim, const int *shape, float *data) {
    return lb_ckpt_get(c, name, LB_DT_F32, ndim, shape, data);
}
static inline lb_status lb_ckpt_get_u8(lb_ckpt *c, const char *name, int ndim, const int *shape, uint8_t *data) {
    return lb_ckpt_get(c, name, LB_DT_U8, ndim, shape, data);
}
static inline lb_status lb_ckpt_get_u16(lb_ckpt *c, const char *name, int ndim, const int *shape, uint16_t *data) {
    return lb_ckpt_get(c, name, LB_DT_U16, ndim, shape, data);
}
static inline lb_status lb_ckpt_get_i32(lb_ckpt *c, const char *name, int ndim, const int *shape, int32_t *data) {
    return lb_ckpt_get(c, name, LB_DT_I32, ndim, shape, data);
}
static inline lb_status lb_ckpt_get_i64(lb_ckpt *c, const char *name, int ndim, const int *shape, int64_t *data) {
    return lb_ckpt_get(c, name, LB_DT_I64, ndim, shape, data);
}

/* A scalar string dataset (fixed- or variable-length); *out is malloc'd and
 * NUL-terminated, the caller frees it. */
lb_status lb_ckpt_get_string(lb_ckpt *c, const char *name, char **out);

/* Attributes written by lb_ckpt_set_attr_*; *out of get_attr_str is malloc'd. */
lb_status lb_ckpt_get_attr_str(lb_ckpt *c, const char *object, const char *attr, char **out);
lb_status lb_ckpt_get_attr_i64(lb_ckpt *c, const char *object, const char *attr, int64_t *out);

/* Calls fn(name, ctx) for every dataset under `group` ("" or "/" for the whole
 * file), recursively, in name order; `name` is the full path without a
 * leading '/', e.g. "model/blk.0.attn_q.weight". A status other than LB_OK
 * from fn stops the walk and is returned. */
typedef lb_status (*lb_ckpt_list_fn)(const char *name, void *ctx);
lb_status lb_ckpt_list(lb_ckpt *c, const char *group, lb_ckpt_list_fn fn, void *ctx);

/* The PATH the checkpoint was created or opened with. */
const char *lb_ckpt_path(const lb_ckpt *c);

/* Closes a checkpoint opened for reading and frees `c`. On a checkpoint being
 * written it discards it, like lb_ckpt_abort. NULL is fine. */
void lb_ckpt_close(lb_ckpt *c);

#endif

/* GGUF files (the container of ggml / llama.cpp): a reader over a mapped file and an
 * atomic, streaming writer. docs/formats.md describes the format and the limits.
 *
 * Dimension order, the one convention to keep in mind: GGUF lists a tensor's dims
 * fastest-varying first, as ggml's ne[] (ne[0] is the length of a row). lowbit's
 * shapes are row-major, slowest first. This API speaks lowbit's order everywhere: a
 * matrix lowbit holds as [rows, cols] has shape {rows, cols} here and is stored in
 * the file as ne = {cols, rows}. The bytes are the same; only the list is reversed.
 * Block formats quantize along rows: shape[ndim-1] must be a multiple of the block.
 *
 * Everything in the file is little-endian; lowbit runs on little-endian hosts. */
#ifndef LOWBIT_IO_GGUF_H
#define LOWBIT_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/fileio.h" /* lb_produce_fn */

/* Metadata value types, with GGUF's ids. */
typedef enum lb_gguf_type {
    LB_GGUF_U8 = 0, LB_GGUF_I8 = 1, LB_GGUF_U16 = 2, LB_GGUF_I16 = 3, LB_GGUF_U32 = 4, LB_GGUF_I32 = 5,
    LB_GGUF_F32 = 6, LB_GGUF_BOOL = 7, LB_GGUF_STRING = 8, LB_GGUF_ARRAY = 9, LB_GGUF_U64 = 10,
    LB_GGUF_I64 = 11, LB_GGUF_F64 = 12,
    LB_GGUF_TYPE_COUNT
} lb_gguf_type;

/* "u8", "str", "arr", ...; "?" for an unknown id. */
const char *lb_gguf_type_name(int type);

/* ggml tensor types: every id ggml defines, those lowbit has no codec for included
 * (lowbit's own are lb_dtype_info(dt)->gguf_type). 1 with the block size and bytes per
 * block when `type` is a type a GGUF file may hold, 0 for unknown or removed ids. */
int lb_ggml_type_size(int type, int *block, int *block_bytes);
const char *lb_ggml_type_name(int type); /* "q8_0", ...; "?" when unknown */

#define LB_GGUF_DEFAULT_ALIGNMENT 32
#define LB_GGUF_MAX_DIMS 4
#define LB_GGUF_MAX_NAME 63                      /* bytes of a tensor name (ggml: < 64) */
#define LB_GGUF_MAX_STRING (1024ull * 1024 * 1024) /* bytes of one string (llama.cpp's limit) */
#define LB_GGUF_MAX_ARRAY (1024ull * 1024 * 1024)  /* elements of one array (likewise) */
#define LB_GGUF_MAX_NESTING 16                   /* arrays of arrays, deepest */

/* --- reading ------------------------------------------------------------------ */

/* A string in the file: not NUL-terminated, may hold any bytes. */
typedef struct lb_gguf_str {
    const char *s;
    uint64_t len;
} lb_gguf_str;

typedef struct lb_gguf_value {
    lb_gguf_type type;                  /* a scalar type, or LB_GGUF_ARRAY */
    lb_gguf_type elem;                  /* arrays: the element type; scalars: == type */
    uint64_t n;                         /* arrays: the element count; scalars: 1 */
    const uint8_t *raw;                 /* numbers and bools: n little-endian elements (unaligned) */
    const lb_gguf_str *strs;            /* strings: n of them */
    const struct lb_gguf_value *items;  /* arrays of arrays: n of them */
} lb_gguf_value;

typedef struct lb_gguf_kv {
    const char *key; /* NUL-terminated */
    lb_gguf_value value;
} lb_gguf_kv;

typedef struct lb_gguf_tensor {
    const char *name;   /* NUL-terminated */
    int ggml_type;
    int dtype;          /* the lb_dtype of ggml_type, -1 when lowbit has none (core/dtype.h) */
    int ndim;           /* as stored, 0..4 (0: a single element) */
    int64_t shape[LB_GGUF_MAX_DIMS]; /* lowbit order: shape[ndim-1] is the row, ne[0] */
    uint64_t nelements;
    uint64_t offset;    /* from the start of the data section */
    uint64_t nbytes;
    const void *data;   /* in the mapping */
} lb_gguf_tensor;

typedef struct lb_gguf lb_gguf;

/* Opens and checks a whole file: header, every key and value, every tensor's
 * name, shape, type and data range (see docs/formats.md for the exact rules).
 * Errors are LB_EIO (cannot open/map) or LB_EFORMAT, naming the file and the field. */
lb_status lb_gguf_open(const char *path, lb_gguf **out);
/* The same on a buffer the caller keeps alive until lb_gguf_close; `label` names it
 * in messages. */
lb_status lb_gguf_parse(const void *buf, size_t size, const char *label, lb_gguf **out);
void lb_gguf_close(lb_gguf *g);

uint32_t lb_gguf_version(const lb_gguf *g);
uint32_t lb_gguf_alignment(const lb_gguf *g);
uint64_t lb_gguf_data_offset(const lb_gguf *g); /* of the data section, from the file start */

size_t lb_gguf_kv_count(const lb_gguf *g);
const lb_gguf_kv *lb_gguf_kv_at(const lb_gguf *g, size_t i);  /* in file order */
const lb_gguf_value *lb_gguf_find(const lb_gguf *g, const char *key); /* NULL when absent */

size_t lb_gguf_tensor_count(const lb_gguf *g);
const lb_gguf_tensor *lb_gguf_tensor_at(const lb_gguf *g, size_t i);
const lb_gguf_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name);

/* Typed look-ups: LB_EFORMAT naming the file, the key, and what was found when the
 * key is absent or holds another type. get_int accepts every integer type (a u64
 * above INT64_MAX is refused), get_float f32 and f64. */
lb_status lb_gguf_get_int(const lb_gguf *g, const char *key, int64_t *out);
lb_status lb_gguf_get_float(const lb_gguf *g, const char *key, double *out);
lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, int *out);
lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, lb_gguf_str *out);
/* An array whose elements are of type `elem`. */
lb_status lb_gguf_get_array(const lb_gguf *g, const char *key, lb_gguf_type elem, const lb_gguf_value **out);

/* Element i of a value (a scalar is element 0), converted. Out of range or of a
 * non-numeric type gives 0 (or an empty string). */
int64_t lb_gguf_value_i64(const lb_gguf_value *v, uint64_t i);  /* integers and bool */
uint64_t lb_gguf_value_u64(const lb_gguf_value *v, uint64_t i); /* integers and bool */
double lb_gguf_value_f64(const lb_gguf_value *v, uint64_t i);   /* any number */
lb_gguf_str lb_gguf_value_str(const lb_gguf_value *v, uint64_t i);

/* A tensor's elements as float32 through its dtype's row codec, n == t->nelements.
 * LB_EINVAL naming the tensor for ggml types lowbit has no dtype for. */
lb_status lb_gguf_tensor_to_f32(const lb_gguf *g, const lb_gguf_tensor *t, float *dst, size_t n);

/* --- writing ------------------------------------------------------------------ */

/* Writes like ggml's gguf_write_to_file: header, key-value pairs in the order set,
 * tensor infos in the order added, zero padding to the alignment after the infos and
 * after every tensor's data. Keys are written to the file as they are set (a vocabulary
 * streams through without being held); tensor data is written at commit. Any failed
 * call makes commit refuse; abort or a failed commit leave `path` untouched. */
typedef struct lb_gguf_writer lb_gguf_writer;

lb_status lb_gguf_writer_begin(const char *path, lb_gguf_writer **out);

lb_status lb_gguf_set_u8(lb_gguf_writer *w, const char *key, uint8_t v);
lb_status lb_gguf_set_i8(lb_gguf_writer *w, const char *key, int8_t v);
lb_status lb_gguf_set_u16(lb_gguf_writer *w, const char *key, uint16_t v);
lb_status lb_gguf_set_i16(lb_gguf_writer *w, const char *key, int16_t v);
/* "general.alignment" (a power of two) also sets the alignment of the data. */
lb_status lb_gguf_set_u32(lb_gguf_writer *w, const char *key, uint32_t v);
lb_status lb_gguf_set_i32(lb_gguf_writer *w, const char *key, int32_t v);
lb_status lb_gguf_set_f32(lb_gguf_writer *w, const char *key, float v);
lb_status lb_gguf_set_bool(lb_gguf_writer *w, const char *key, int v);
lb_status lb_gguf_set_u64(lb_gguf_writer *w, const char *key, uint64_t v);
lb_status lb_gguf_set_i64(lb_gguf_writer *w, const char *key, int64_t v);
lb_status lb_gguf_set_f64(lb_gguf_writer *w, const char *key, double v);
lb_status lb_gguf_set_str(lb_gguf_writer *w, const char *key, const char *s);
/* n elements of a numeric or bool type, laid out as C arrays of that type (bool: one
 * byte each, 0 or 1). */
lb_status lb_gguf_set_array(lb_gguf_writer *w, const char *key, lb_gguf_type elem, uint64_t n, const void *data);
lb_status lb_gguf_set_str_array(lb_gguf_writer *w, const char *key, uint64_t n, const char *const *strs);

/* Streamed arrays: begin with the count, push exactly that many elements, end. For an
 * array of arrays, each element is itself begun (key NULL), filled and ended. Nothing
 * else may be set while an array is open. */
lb_status lb_gguf_begin_array(lb_gguf_writer *w, const char *key, lb_gguf_type elem, uint64_t n);
lb_status lb_gguf_push(lb_gguf_writer *w, const void *elem); /* one number, C layout of elem */
lb_status lb_gguf_push_str(lb_gguf_writer *w, const char *s, uint64_t len);
lb_status lb_gguf_end_array(lb_gguf_writer *w);

/* A tensor of `ggml_type` with shape[0..ndim) in lowbit order (1 <= ndim <= 4, every
 * dim >= 1, shape[ndim-1] a multiple of the type's block). `data` holds
 * nelements / block · block_bytes bytes and must stay valid until commit. ndim is
 * written as given (ggml's own writer drops trailing ne of 1; readers accept both). */
lb_status lb_gguf_add_tensor(lb_gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *shape,
                             const void *data);
/* The same with the bytes produced at commit time (io/fileio.h): lets an exporter
 * quantize one tensor at a time. */
lb_status lb_gguf_add_tensor_fn(lb_gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *shape,
                                lb_produce_fn produce, void *ctx);

/* Writes the tensor infos and data, then fsync and rename. Frees w either way. */
lb_status lb_gguf_writer_commit(lb_gguf_writer *w);
void lb_gguf_writer_abort(lb_gguf_writer *w);

#endif

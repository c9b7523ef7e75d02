/* Element and block formats: one traits table, looked up everywhere.
 *
 * Every place that stores numbers in something other than fp32 (optimizer
 * state, low-bit gradients, checkpoints, safetensors and GGUF files) names the
 * format with an lb_dtype and reads its facts here: its name, block size and
 * bytes, range, how a row converts to and from f32, and what the file formats
 * call it.
 *
 *   const lb_dtype_traits *t = lb_dtype_info(LB_DT_BF16);
 *   uint16_t codes[256];
 *   t->from_f32(x, codes, 256);                  // round to nearest even
 *   t->to_f32(codes, y, 256);
 *
 * The table is in core/dtype.c; the scalar float conversions behind the
 * codecs are core/minifloat.h. */
#ifndef LOWBIT_CORE_DTYPE_H
#define LOWBIT_CORE_DTYPE_H

#include <stddef.h>

#include "core/error.h"

typedef enum lb_dtype {
    LB_DT_F32 = 0, LB_DT_F16, LB_DT_BF16, LB_DT_F64,
    LB_DT_F8_E4M3, LB_DT_F8_E5M2,
    LB_DT_I8, LB_DT_U8, LB_DT_I16, LB_DT_U16, LB_DT_I32, LB_DT_U32, LB_DT_I64,
    /* GGML block formats, row codecs exactly as ggml-quants.c's reference quantizers
       (core/dtype_ggml.h has the layouts). */
    LB_DT_Q8_0, LB_DT_Q4_0, LB_DT_TQ1_0, LB_DT_TQ2_0,
    LB_DT_COUNT
} lb_dtype;

typedef enum lb_dtype_class { LB_DC_FLOAT, LB_DC_SINT, LB_DC_UINT, LB_DC_BLOCK } lb_dtype_class;

typedef struct lb_dtype_traits {
    const char *name;          /* lowbit's name, unique: "f32", "bf16", "f8_e4m3", "u8", "q8_0" */
    lb_dtype_class cls;        /* scalar float / signed int / unsigned int, or a quantized block */
    int block;                 /* elements per block (1 for scalar types) */
    int block_bytes;           /* bytes per block (the element size for scalar types) */
    double max;                /* largest finite magnitude a value can have (448 for e4m3, 127 i8,
                                  FLT_MAX f32, ...) */
    int gguf_type;             /* ggml_type id (F32 0, F16 1, Q4_0 2, Q8_0 8, I8 24, I16 25, I32 26,
                                  I64 27, F64 28, BF16 30, TQ1_0 34, TQ2_0 35), -1 if GGUF has none */
    const char *safetensors;   /* "F32","F16","BF16","F64","F8_E4M3","F8_E5M2","I8","U8","I16",
                                  "U16","I32","U32","I64"; NULL if safetensors has none */
    /* HDF5: scalar types are stored as the little-endian HDF5 type of their class and size
       (H5T_IEEE_F32LE, H5T_STD_U8LE, ...), chosen in io/checkpoint.c from cls and block_bytes;
       block types as u8 arrays. */
    /* Row codecs: n elements (a multiple of `block`) to and from f32. from_f32 rounds to nearest
       (even) and saturates where the format has no infinity; NULL only where a format has no
       defined encoding. Codes are in the machine's byte order (the containers choose theirs). */
    void (*to_f32)(const void *src, float *dst, size_t n);
    void (*from_f32)(const float *src, void *dst, size_t n);
} lb_dtype_traits;

const lb_dtype_traits *lb_dtype_info(lb_dtype t);          /* never NULL for t < LB_DT_COUNT */
size_t lb_dtype_row_bytes(lb_dtype t, size_t n);             /* bytes of n elements (n % block == 0) */
lb_status lb_dtype_by_name(const char *name, lb_dtype *out); /* LB_EINVAL listing the names */
int lb_dtype_by_gguf(int gguf_type, lb_dtype *out);          /* 1 found, 0 not */
int lb_dtype_by_safetensors(const char *s, lb_dtype *out);   /* 1 found, 0 not */

#endif

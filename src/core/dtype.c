/* The dtype traits table (see dtype.h): one row per format, then the lookups.
 *
 * Row codecs go element by element through memcpy, so code buffers need no
 * particular alignment (a safetensors or GGUF tensor may start anywhere);
 * compilers turn each memcpy into a plain load or store. */
#include "core/dtype.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/dtype_ggml.h"
#include "core/minifloat.h"

/* ---- row codecs ------------------------------------------------------------- */

static void f32_to_f32(const void *src, float *dst, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void f32_from_f32(const float *src, void *dst, size_t n) { memcpy(dst, src, n * sizeof(float)); }

static void f64_to_f32(const void *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, (const char *)src + 8 * i, 8);
        dst[i] = (float)v; /* nearest even; beyond FLT_MAX it is inf, as IEEE rounding gives */
    }
}
static void f64_from_f32(const float *src, void *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = src[i]; /* exact */
        memcpy((char *)dst + 8 * i, &v, 8);
    }
}

/* The 16- and 8-bit floats: one scalar conversion per element. */
#define HALF_CODECS(tag, to, from)                                                                   \
    static void tag##_to_f32(const void *src, float *dst, size_t n) {                                \
        for (size_t i = 0; i < n; i++) {                                                             \
            uint16_t h;                                                                              \
            memcpy(&h, (const char *)src + 2 * i, 2);                                                \
            dst[i] = to(h);                                                                          \
        }                                                                                            \
    }                                                                                                \
    static void tag##_from_f32(const float *src, void *dst, size_t n) {                              \
        for (size_t i = 0; i < n; i++) {                                                             \
            uint16_t h = from(src[i]);                                                               \
            memcpy((char *)dst + 2 * i, &h, 2);                                                      \
        }                                                                                            \
    }
HALF_CODECS(f16, lb_fp16_to_f32, lb_fp16_from_f32)
HALF_CODECS(bf16, lb_bf16_to_f32, lb_bf16_from_f32)

/* The 8-bit floats. E4M3 has no infinity, so it saturates; E5M2 has one, so
 * overflow is inf. */
#define FP8_CODECS(tag, decode, encode, saturate)                                                    \
    static void tag##_to_f32(const void *src, float *dst, size_t n) {                                \
        const uint8_t *s = src;                                                                      \
        for (size_t i = 0; i < n; i++) dst[i] = decode(s[i]);                                        \
    }                                                                                                \
    static void tag##_from_f32(const float *src, void *dst, size_t n) {                              \
        uint8_t *d = dst;                                                                            \
        for (size_t i = 0; i < n; i++) d[i] = encode(src[i], saturate);                              \
    }
FP8_CODECS(e4m3, lb_fp8_e4m3_to_f32, lb_fp8_e4m3_from_f32, 1)
FP8_CODECS(e5m2, lb_fp8_e5m2_to_f32, lb_fp8_e5m2_from_f32, 0)

/* Integers have no infinity: round to nearest even, saturate at the type's
 * range; NaN becomes 0. Every bound below is exact in a double. */
static double int_value(float x, double lo, double hi) {
    if (isnan(x)) return 0.0;
    double r = rint((double)x);
    return r < lo ? lo : r > hi ? hi : r;
}

#define INT_CODECS(tag, ctype, lo, hi)                                                               \
    static void tag##_to_f32(const void *src, float *dst, size_t n) {                                \
        for (size_t i = 0; i < n; i++) {                                                             \
            ctype v;                                                                                 \
            memcpy(&v, (const char *)src + sizeof(ctype) * i, sizeof v);                             \
            dst[i] = (float)v;                                                                       \
        }                                                                                            \
    }                                                                                                \
    static void tag##_from_f32(const float *src, void *dst, size_t n) {                              \
        for (size_t i = 0; i < n; i++) {                                                             \
            ctype v = (ctype)int_value(src[i], lo, hi);                                              \
            memcpy((char *)dst + sizeof(ctype) * i, &v, sizeof v);                                   \
        }                                                                                            \
    }
INT_CODECS(i8, int8_t, -128.0, 127.0)
INT_CODECS(u8, uint8_t, 0.0, 255.0)
INT_CODECS(i16, int16_t, -32768.0, 32767.0)
INT_CODECS(u16, uint16_t, 0.0, 65535.0)
INT_CODECS(i32, int32_t, -2147483648.0, 2147483647.0)
INT_CODECS(u32, uint32_t, 0.0, 4294967295.0)

/* INT64_MAX is not a double: 2^63 and above saturate explicitly. */
static void i64_to_f32(const void *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, (const char *)src + 8 * i, 8);
        dst[i] = (float)v;
    }
}
static void i64_from_f32(const float *src, void *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double r = int_value(src[i], -0x1p63, 0x1p63);
        int64_t v = r >= 0x1p63 ? INT64_MAX : (int64_t)r;
        memcpy((char *)dst + 8 * i, &v, 8);
    }
}

/* ---- the table ---------------------------------------------------------------- */

#define ROW(nm, c, bytes, mx, gguf, st, tag) \
    {.name = nm, .cls = c, .block = 1, .block_bytes = bytes, .max = mx, .gguf_type = gguf, \
     .safetensors = st, .to_f32 = tag##_to_f32, .from_f32 = tag##_from_f32}

#define BLOCK_ROW(nm, blk, bytes, mx, gguf, tag) \
    {.name = nm, .cls = LB_DC_BLOCK, .block = blk, .block_bytes = bytes, .max = mx, .gguf_type = gguf, \
     .safetensors = NULL, .to_f32 = lb_ggml_##tag##_to_f32, .from_f32 = lb_ggml_##tag##_from_f32}

static const lb_dtype_traits table[] = {
    [LB_DT_F32] = ROW("f32", LB_DC_FLOAT, 4, FLT_MAX, 0, "F32", f32),
    [LB_DT_F16] = ROW("f16", LB_DC_FLOAT, 2, 65504.0, 1, "F16", f16),
    [LB_DT_BF16] = ROW("bf16", LB_DC_FLOAT, 2, 0x1.fep127, 30, "BF16", bf16),
    [LB_DT_F64] = ROW("f64", LB_DC_FLOAT, 8, DBL_MAX, 28, "F64", f64),
    [LB_DT_F8_E4M3] = ROW("f8_e4m3", LB_DC_FLOAT, 1, 448.0, -1, "F8_E4M3", e4m3),
    [LB_DT_F8_E5M2] = ROW("f8_e5m2", LB_DC_FLOAT, 1, 57344.0, -1, "F8_E5M2", e5m2),
    [LB_DT_I8] = ROW("i8", LB_DC_SINT, 1, 127.0, 24, "I8", i8),
    [LB_DT_U8] = ROW("u8", LB_DC_UINT, 1, 255.0, -1, "U8", u8),
    [LB_DT_I16] = ROW("i16", LB_DC_SINT, 2, 32767.0, 25, "I16", i16),
    [LB_DT_U16] = ROW("u16", LB_DC_UINT, 2, 65535.0, -1, "U16", u16),
    [LB_DT_I32] = ROW("i32", LB_DC_SINT, 4, 2147483647.0, 26, "I32", i32),
    [LB_DT_U32] = ROW("u32", LB_DC_UINT, 4, 4294967295.0, -1, "U32", u32),
    [LB_DT_I64] = ROW("i64", LB_DC_SINT, 8, 9223372036854775807.0, 27, "I64", i64),
    /* max: the largest code times the largest fp16 scale (TQ2_0's code 3 decodes to 2d) */
    [LB_DT_Q8_0] = BLOCK_ROW("q8_0", LB_GGML_QK8_0, LB_GGML_Q8_0_BYTES, 127.0 * 65504.0, 8, q8_0),
    [LB_DT_Q4_0] = BLOCK_ROW("q4_0", LB_GGML_QK4_0, LB_GGML_Q4_0_BYTES, 8.0 * 65504.0, 2, q4_0),
    [LB_DT_TQ1_0] = BLOCK_ROW("tq1_0", LB_GGML_QK_K, LB_GGML_TQ1_0_BYTES, 65504.0, 34, tq1_0),
    [LB_DT_TQ2_0] = BLOCK_ROW("tq2_0", LB_GGML_QK_K, LB_GGML_TQ2_0_BYTES, 2.0 * 65504.0, 35, tq2_0),
};
_Static_assert(sizeof table / sizeof table[0] == LB_DT_COUNT, "core/dtype.c: one table row per lb_dtype");

/* ---- lookups -------------------------------------------------------------------- */

const lb_dtype_traits *lb_dtype_info(lb_dtype t) { return (unsigned)t < LB_DT_COUNT ? &table[t] : NULL; }

size_t lb_dtype_row_bytes(lb_dtype t, size_t n) {
    const lb_dtype_traits *d = lb_dtype_info(t);
    return d ? n / (size_t)d->block * (size_t)d->block_bytes : 0;
}

lb_status lb_dtype_by_name(const char *name, lb_dtype *out) {
    for (int t = 0; t < LB_DT_COUNT; t++)
        if (name && strcmp(name, table[t].name) == 0) {
            *out = (lb_dtype)t;
            return LB_OK;
        }
    char names[256];
    size_t k = 0;
    for (int t = 0; t < LB_DT_COUNT && k < sizeof names; t++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", t ? ", " : "", table[t].name);
    return lb_error(LB_EINVAL, "dtype '%s': expected one of %s", name ? name : "(null)", names);
}

int lb_dtype_by_gguf(int gguf_type, lb_dtype *out) {
    for (int t = 0; t < LB_DT_COUNT; t++)
        if (gguf_type >= 0 && table[t].gguf_type == gguf_type) {
            *out = (lb_dtype)t;
            return 1;
        }
    return 0;
}

int lb_dtype_by_safetensors(const char *s, lb_dtype *out) {
    for (int t = 0; t < LB_DT_COUNT; t++)
        if (s && table[t].safetensors && strcmp(s, table[t].safetensors) == 0) {
            *out = (lb_dtype)t;
            return 1;
        }
    return 0;
}

/* GGUF reader and writer. The reader checks what llama.cpp's gguf.cpp checks, with
 * its limits, and also that every tensor's data lies inside the file (what
 * llama.cpp's model loader checks next); docs/formats.md lists the rules. Every count
 * and length is compared with the bytes left before anything is allocated for it, so
 * the memory a file can make the reader take is bounded by the file's own size. */
#include "io/gguf.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "io/fileio.h"
#include "io/name_index.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lowbit reads and writes little-endian files on little-endian hosts only"
#endif

/* --- type tables ----------------------------------------------------------------- */

static const char *const value_type_names[LB_GGUF_TYPE_COUNT] = {
    [LB_GGUF_U8] = "u8",   [LB_GGUF_I8] = "i8",     [LB_GGUF_U16] = "u16",   [LB_GGUF_I16] = "i16",
    [LB_GGUF_U32] = "u32", [LB_GGUF_I32] = "i32",   [LB_GGUF_F32] = "f32",   [LB_GGUF_BOOL] = "bool",
    [LB_GGUF_STRING] = "str", [LB_GGUF_ARRAY] = "arr", [LB_GGUF_U64] = "u64", [LB_GGUF_I64] = "i64",
    [LB_GGUF_F64] = "f64",
};
_Static_assert(sizeof value_type_names / sizeof value_type_names[0] == LB_GGUF_TYPE_COUNT, "one name per type");

/* Bytes of a numeric or bool value; 0 for strings and arrays. */
static const uint8_t value_type_size[LB_GGUF_TYPE_COUNT] = {
    [LB_GGUF_U8] = 1, [LB_GGUF_I8] = 1, [LB_GGUF_U16] = 2, [LB_GGUF_I16] = 2, [LB_GGUF_U32] = 4,
    [LB_GGUF_I32] = 4, [LB_GGUF_F32] = 4, [LB_GGUF_BOOL] = 1, [LB_GGUF_U64] = 8, [LB_GGUF_I64] = 8,
    [LB_GGUF_F64] = 8,
};

const char *lb_gguf_type_name(int type) {
    return type >= 0 && type < LB_GGUF_TYPE_COUNT ? value_type_names[type] : "?";
}

/* ggml's types as its type traits define them (ggml.c; gguf-py's GGML_QUANT_SIZES);
 * ids without an entry (4, 5, 31-33, 36-38) were removed and have block size 0 there,
 * which gguf.cpp refuses. */
#define GGML_TYPE_COUNT 43
static const struct ggml_type_info {
    const char *name;
    int block, bytes;
} ggml_types[GGML_TYPE_COUNT] = {
    [0] = {"f32", 1, 4},          [1] = {"f16", 1, 2},         [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},       [6] = {"q5_0", 32, 22},      [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},       [9] = {"q8_1", 32, 36},      [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},    [12] = {"q4_K", 256, 144},   [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},    [15] = {"q8_K", 256, 292},   [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},   [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},    [21] = {"iq3_s", 256, 110},  [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136},  [24] = {"i8", 1, 1},         [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},         [27] = {"i64", 1, 8},        [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},    [30] = {"bf16", 1, 2},       [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},    [39] = {"mxfp4", 32, 17},    [40] = {"nvfp4", 64, 36},
    [41] = {"q1_0", 128, 18},     [42] = {"q2_0", 64, 18},
};

int lb_ggml_type_size(int type, int *block, int *block_bytes) {
    if (type < 0 || type >= GGML_TYPE_COUNT || ggml_types[type].block == 0) return 0;
    if (block) *block = ggml_types[type].block;
    if (block_bytes) *block_bytes = ggml_types[type].bytes;
    return 1;
}

const char *lb_ggml_type_name(int type) {
    return lb_ggml_type_size(type, NULL, NULL) ? ggml_types[type].name : "?";
}

/* --- the parsed file ------------------------------------------------------------- */

/* Everything parsing allocates hangs off one list, freed at close. */
typedef struct pool_node {
    struct pool_node *next;
    max_align_t data[];
} pool_node;

struct lb_gguf {
    lb_mapped_file map; /* when opened from a path */
    const uint8_t *buf;
    size_t size;
    char *label;
    uint32_t version, alignment;
    uint64_t data_offset;
    size_t n_kv, n_tensors;
    lb_gguf_kv *kv;
    lb_gguf_tensor *tensors;
    lb_name_index key_index, tensor_index;
    pool_node *pool;
};

static void *pool_alloc(lb_gguf *g, size_t size) {
    pool_node *n = malloc(sizeof *n + size);
    if (!n) return NULL;
    n->next = g->pool;
    g->pool = n;
    return n->data;
}

/* A cursor over the buffer. */
typedef struct rd {
    lb_gguf *g;
    size_t pos;
} rd;

static size_t left(const rd *r) { return r->g->size - r->pos; }

static lb_status fmt_error(const rd *r, const char *where, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status fmt_error(const rd *r, const char *where, const char *fmt, ...) {
    char msg[LB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (where && where[0]) return lb_error(LB_EFORMAT, "GGUF '%s': %s: %s", r->g->label, where, msg);
    return lb_error(LB_EFORMAT, "GGUF '%s': %s", r->g->label, msg);
}

/* n bytes at the cursor, or an error saying what was being read. */
static lb_status take(rd *r, uint64_t n, const char *where, const char *what, const uint8_t **out) {
    if (n > left(r))
        return fmt_error(r, where, "file ends at byte %zu while reading %s (%llu bytes needed, %zu left)",
                         r->g->size, what, (unsigned long long)n, left(r));
    *out = r->g->buf + r->pos;
    r->pos += (size_t)n;
    return LB_OK;
}

static lb_status take_u32(rd *r, const char *where, const char *what, uint32_t *v) {
    const uint8_t *p = NULL;
    LB_TRY(take(r, 4, where, what, &p));
    memcpy(v, p, 4);
    return LB_OK;
}

static lb_status take_u64(rd *r, const char *where, const char *what, uint64_t *v) {
    const uint8_t *p = NULL;
    LB_TRY(take(r, 8, where, what, &p));
    memcpy(v, p, 8);
    return LB_OK;
}

static lb_status take_str(rd *r, const char *where, const char *what, lb_gguf_str *s) {
    uint64_t len;
    LB_TRY(take_u64(r, where, what, &len));
    if (len > LB_GGUF_MAX_STRING)
        return fmt_error(r, where, "%s of %llu bytes is longer than the %llu allowed", what, (unsigned long long)len,
                         LB_GGUF_MAX_STRING);
    if (len > left(r))
        return fmt_error(r, where, "%s of %llu bytes runs past the end of the file (%zu bytes left)", what,
                         (unsigned long long)len, left(r));
    s->s = (const char *)r->g->buf + r->pos;
    s->len = len;
    r->pos += (size_t)len;
    return LB_OK;
}

/* A NUL-terminated copy of a key or tensor name, which must not hold NUL itself. */
static lb_status name_copy(rd *r, const char *where, const char *what, lb_gguf_str s, const char **out) {
    if (memchr(s.s, 0, (size_t)s.len)) return fmt_error(r, where, "%s contains a NUL byte", what);
    char *c = pool_alloc(r->g, (size_t)s.len + 1);
    if (!c) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", r->g->label);
    memcpy(c, s.s, (size_t)s.len);
    c[s.len] = '\0';
    *out = c;
    return LB_OK;
}

static lb_status parse_value(rd *r, lb_gguf_type type, int depth, const char *where, lb_gguf_value *v);

/* The elements of an array whose element type and count have been read. */
static lb_status parse_array_body(rd *r, lb_gguf_type elem, uint64_t n, int depth, const char *where,
                                  lb_gguf_value *v) {
    v->type = LB_GGUF_ARRAY;
    v->elem = elem;
    v->n = n;
    if (n > LB_GGUF_MAX_ARRAY)
        return fmt_error(r, where, "array of %llu elements is longer than the %llu allowed", (unsigned long long)n,
                         LB_GGUF_MAX_ARRAY);
    /* the least each element takes in the file: its bytes, a string's length, an
     * inner array's type and count */
    uint64_t least = elem == LB_GGUF_STRING ? 8 : elem == LB_GGUF_ARRAY ? 12 : value_type_size[elem];
    if (n > left(r) / least)
        return fmt_error(r, where, "array of %llu %s elements cannot fit in the %zu bytes left in the file",
                         (unsigned long long)n, value_type_names[elem], left(r));
    if (elem == LB_GGUF_STRING) {
        lb_gguf_str *s = pool_alloc(r->g, (size_t)n * sizeof *s + 1);
        if (!s) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", r->g->label);
        for (uint64_t i = 0; i < n; i++) LB_TRY(take_str(r, where, "array string", &s[i]));
        v->strs = s;
    } else if (elem == LB_GGUF_ARRAY) {
        if (depth + 1 > LB_GGUF_MAX_NESTING)
            return fmt_error(r, where, "arrays nested deeper than %d levels", LB_GGUF_MAX_NESTING);
        lb_gguf_value *items = pool_alloc(r->g, (size_t)n * sizeof *items + 1);
        if (!items) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", r->g->label);
        memset(items, 0, (size_t)n * sizeof *items);
        for (uint64_t i = 0; i < n; i++) LB_TRY(parse_value(r, LB_GGUF_ARRAY, depth + 1, where, &items[i]));
        v->items = items;
    } else {
        LB_TRY(take(r, n * least, where, "array elements", &v->raw));
    }
    return LB_OK;
}

/* A value of `type` (for LB_GGUF_ARRAY: element type, count, elements). */
static lb_status parse_value(rd *r, lb_gguf_type type, int depth, const char *where, lb_gguf_value *v) {
    memset(v, 0, sizeof *v);
    if (type == LB_GGUF_ARRAY) {
        uint32_t elem;
        uint64_t n;
        LB_TRY(take_u32(r, where, "array element type", &elem));
        if (elem >= LB_GGUF_TYPE_COUNT) return fmt_error(r, where, "array of unknown value type %u", elem);
        LB_TRY(take_u64(r, where, "array length", &n));
        return parse_array_body(r, (lb_gguf_type)elem, n, depth, where, v);
    }
    v->type = v->elem = type;
    v->n = 1;
    if (type == LB_GGUF_STRING) {
        lb_gguf_str *s = pool_alloc(r->g, sizeof *s);
        if (!s) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", r->g->label);
        LB_TRY(take_str(r, where, "string value", s));
        v->strs = s;
        return LB_OK;
    }
    return take(r, value_type_size[type], where, "value", &v->raw);
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

static lb_status parse_kv(rd *r) {
    lb_gguf *g = r->g;
    char where[96];
    for (size_t i = 0; i < g->n_kv; i++) {
        lb_gguf_kv *kv = &g->kv[i];
        snprintf(where, sizeof where, "key %zu", i);
        lb_gguf_str key;
        LB_TRY(take_str(r, where, "key", &key));
        if (key.len == 0) return fmt_error(r, where, "key is empty");
        LB_TRY(name_copy(r, where, "key", key, &kv->key));
        snprintf(where, sizeof where, "key %zu '%.60s'", i, kv->key);
        size_t first;
        int added = lb_name_index_add(&g->key_index, kv->key, i, &first);
        if (added < 0) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", g->label);
        if (added == 0) return fmt_error(r, where, "duplicate key (also key %zu)", first);
        uint32_t type;
        LB_TRY(take_u32(r, where, "value type", &type));
        if (type >= LB_GGUF_TYPE_COUNT) return fmt_error(r, where, "unknown value type %u", type);
        LB_TRY(parse_value(r, (lb_gguf_type)type, 0, where, &kv->value));
    }
    g->alignment = LB_GGUF_DEFAULT_ALIGNMENT;
    const lb_gguf_value *a = lb_gguf_find(g, "general.alignment");
    if (a) {
        if (a->type != LB_GGUF_U32)
            return fmt_error(r, "key 'general.alignment'", "must be of type u32, found %s", value_type_names[a->type]);
        uint32_t al = (uint32_t)lb_gguf_value_u64(a, 0);
        if (al == 0 || (al & (al - 1)) != 0)
            return fmt_error(r, "key 'general.alignment'", "alignment %u is not a power of 2", al);
        g->alignment = al;
    }
    return LB_OK;
}

static lb_status parse_tensor_infos(rd *r) {
    lb_gguf *g = r->g;
    char where[128];
    for (size_t i = 0; i < g->n_tensors; i++) {
        lb_gguf_tensor *t = &g->tensors[i];
        snprintf(where, sizeof where, "tensor %zu", i);
        lb_gguf_str name;
        LB_TRY(take_str(r, where, "tensor name", &name));
        if (name.len > LB_GGUF_MAX_NAME)
            return fmt_error(r, where, "name of %llu bytes is longer than the %d allowed", (unsigned long long)name.len,
                             LB_GGUF_MAX_NAME);
        LB_TRY(name_copy(r, where, "tensor name", name, &t->name));
        snprintf(where, sizeof where, "tensor %zu '%s'", i, t->name);
        size_t first;
        int added = lb_name_index_add(&g->tensor_index, t->name, i, &first);
        if (added < 0) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", g->label);
        if (added == 0) return fmt_error(r, where, "duplicate tensor name (also tensor %zu)", first);

        uint32_t ndim;
        LB_TRY(take_u32(r, where, "number of dimensions", &ndim));
        if (ndim > LB_GGUF_MAX_DIMS)
            return fmt_error(r, where, "%u dimensions, at most %d allowed", ndim, LB_GGUF_MAX_DIMS);
        t->ndim = (int)ndim;
        int64_t ne[LB_GGUF_MAX_DIMS] = {1, 1, 1, 1};
        for (uint32_t d = 0; d < ndim; d++) {
            uint64_t u;
            LB_TRY(take_u64(r, where, "dimension", &u));
            memcpy(&ne[d], &u, 8);
            if (ne[d] < 0) return fmt_error(r, where, "dimension %u is negative (%lld)", d, (long long)ne[d]);
        }
        for (int d = 0; d < t->ndim; d++) t->shape[d] = ne[t->ndim - 1 - d];
        for (int d = t->ndim; d < LB_GGUF_MAX_DIMS; d++) t->shape[d] = 1;
        int64_t count = 1;
        for (int d = 0; d < LB_GGUF_MAX_DIMS; d++)
            if (__builtin_mul_overflow(count, ne[d], &count) || count == INT64_MAX)
                return fmt_error(r, where, "shape (ne %lld, %lld, %lld, %lld) has more than 2^63 elements",
                                 (long long)ne[0], (long long)ne[1], (long long)ne[2], (long long)ne[3]);
        t->nelements = (uint64_t)count;

        uint32_t type;
        LB_TRY(take_u32(r, where, "tensor type", &type));
        int block, bytes;
        if (!lb_ggml_type_size((int)type, &block, &bytes))
            return fmt_error(r, where, "unknown ggml type %d", (int)type);
        t->ggml_type = (int)type;
        lb_dtype dt;
        t->dtype = lb_dtype_by_gguf(t->ggml_type, &dt) ? (int)dt : -1;
        if (ne[0] % block != 0)
            return fmt_error(r, where, "rows of %lld elements are not a multiple of the %s block (%d)",
                             (long long)ne[0], ggml_types[type].name, block);
        uint64_t nb = t->nelements / (uint64_t)block;
        if (nb > SIZE_MAX / (uint64_t)bytes)
            return fmt_error(r, where, "%llu blocks of %d bytes do not fit in memory", (unsigned long long)nb, bytes);
        t->nbytes = nb * (uint64_t)bytes;
        LB_TRY(take_u64(r, where, "data offset", &t->offset));
    }
    return LB_OK;
}

/* Data section: starts at the next multiple of the alignment after the infos; the
 * tensors follow one another in order, each padded to the alignment. */
static lb_status check_data(rd *r) {
    lb_gguf *g = r->g;
    g->data_offset = r->pos;
    if (g->n_tensors > 0) {
        g->data_offset = pad_to(r->pos, g->alignment);
        if (g->data_offset > g->size)
            return fmt_error(r, "", "data section would start at byte %llu, past the end of the file (%zu bytes)",
                             (unsigned long long)g->data_offset, g->size);
    }
    uint64_t expect = 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        lb_gguf_tensor *t = &g->tensors[i];
        char where[128];
        snprintf(where, sizeof where, "tensor %zu '%s'", i, t->name);
        if (t->offset != expect)
            return fmt_error(r, where,
                             "data offset %llu, expected %llu (tensors follow one another, each padded to %u bytes)",
                             (unsigned long long)t->offset, (unsigned long long)expect, g->alignment);
        uint64_t end = g->data_offset + t->offset; /* no overflow: the previous tensor ended inside the file */
        if (end > g->size || t->nbytes > g->size - end)
            return fmt_error(r, where, "data [%llu, %llu) runs past the end of the file (%zu bytes)",
                             (unsigned long long)end, (unsigned long long)(end + t->nbytes), g->size);
        t->data = g->buf + end;
        expect = pad_to(t->offset + t->nbytes, g->alignment);
    }
    return LB_OK;
}

static lb_status parse_all(lb_gguf *g) {
    rd r = {g, 0};
    const uint8_t *p = NULL;
    LB_TRY(take(&r, 4, "", "the magic", &p));
    if (memcmp(p, "GGUF", 4) != 0) {
        char m[5];
        for (int i = 0; i < 4; i++) m[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
        m[4] = '\0';
        return fmt_error(&r, "", "not a GGUF file (magic '%s', expected 'GGUF')", m);
    }
    LB_TRY(take_u32(&r, "", "the version", &g->version));
    if (g->version == 0) return fmt_error(&r, "", "bad version 0");
    if ((g->version & 0xffff) == 0)
        return fmt_error(&r, "", "version %u: a big-endian file? lowbit reads little-endian GGUF only", g->version);
    if (g->version == 1) return fmt_error(&r, "", "version 1 is no longer supported (versions 2 and 3 are)");
    if (g->version > 3) return fmt_error(&r, "", "version %u is newer than the 3 lowbit reads", g->version);

    uint64_t nt, nkv;
    LB_TRY(take_u64(&r, "", "the tensor count", &nt));
    LB_TRY(take_u64(&r, "", "the key-value count", &nkv));
    /* Each key-value pair takes at least 14 bytes (8 + a 1-byte key + 4 + a u8) and each
     * tensor info 24 (8 + 4 + 4 + 8): a count that cannot fit is refused before
     * anything is allocated for it. */
    if ((int64_t)nt < 0 || nt > left(&r) / 24)
        return fmt_error(&r, "", "tensor count %lld cannot fit in the %zu bytes that follow", (long long)nt, left(&r));
    if ((int64_t)nkv < 0 || nkv > left(&r) / 14)
        return fmt_error(&r, "", "key-value count %lld cannot fit in the %zu bytes that follow", (long long)nkv,
                         left(&r));
    g->n_tensors = (size_t)nt;
    g->n_kv = (size_t)nkv;
    g->kv = calloc(g->n_kv + 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors + 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors || lb_name_index_init(&g->key_index, g->n_kv) != 0 ||
        lb_name_index_init(&g->tensor_index, g->n_tensors) != 0)
        return lb_error(LB_ENOMEM, "GGUF '%s': out of memory for %zu keys and %zu tensors", g->label, g->n_kv,
                        g->n_tensors);
    LB_TRY(parse_kv(&r));
    LB_TRY(parse_tensor_infos(&r));
    return check_data(&r);
}

lb_status lb_gguf_parse(const void *buf, size_t size, const char *label, lb_gguf **out) {
    *out = NULL;
    lb_gguf *g = calloc(1, sizeof *g);
    const char *l = label ? label : "(buffer)";
    if (!g || !(g->label = malloc(strlen(l) + 1))) {
        free(g);
        return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", l);
    }
    strcpy(g->label, l);
    g->buf = buf;
    g->size = size;
    lb_status s = parse_all(g);
    if (s != LB_OK) {
        lb_gguf_close(g);
        return s;
    }
    *out = g;
    return LB_OK;
}

lb_status lb_gguf_open(const char *path, lb_gguf **out) {
    *out = NULL;
    lb_mapped_file m;
    lb_status s = lb_map_file(path, &m);
    if (s != LB_OK) {
        lb_error_prefix("GGUF");
        return s;
    }
    s = lb_gguf_parse(m.data, m.size, path, out);
    if (s != LB_OK) {
        lb_unmap_file(&m);
        return s;
    }
    (*out)->map = m;
    return LB_OK;
}

void lb_gguf_close(lb_gguf *g) {
    if (!g) return;
    while (g->pool) {
        pool_node *n = g->pool->next;
        free(g->pool);
        g->pool = n;
    }
    lb_name_index_free(&g->key_index);
    lb_name_index_free(&g->tensor_index);
    free(g->kv);
    free(g->tensors);
    free(g->label);
    lb_unmap_file(&g->map);
    free(g);
}

uint32_t lb_gguf_version(const lb_gguf *g) { return g->version; }
uint32_t lb_gguf_alignment(const lb_gguf *g) { return g->alignment; }
uint64_t lb_gguf_data_offset(const lb_gguf *g) { return g->data_offset; }
size_t lb_gguf_kv_count(const lb_gguf *g) { return g->n_kv; }
const lb_gguf_kv *lb_gguf_kv_at(const lb_gguf *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }
size_t lb_gguf_tensor_count(const lb_gguf *g) { return g->n_tensors; }
const lb_gguf_tensor *lb_gguf_tensor_at(const lb_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const lb_gguf_value *lb_gguf_find(const lb_gguf *g, const char *key) {
    size_t i;
    return lb_name_index_get(&g->key_index, key, &i) ? &g->kv[i].value : NULL;
}

const lb_gguf_tensor *lb_gguf_find_tensor(const lb_gguf *g, const char *name) {
    size_t i;
    return lb_name_index_get(&g->tensor_index, name, &i) ? &g->tensors[i] : NULL;
}

/* --- values -------------------------------------------------------------------- */

static int is_integer(lb_gguf_type t) {
    return t == LB_GGUF_U8 || t == LB_GGUF_I8 || t == LB_GGUF_U16 || t == LB_GGUF_I16 || t == LB_GGUF_U32 ||
           t == LB_GGUF_I32 || t == LB_GGUF_U64 || t == LB_GGUF_I64 || t == LB_GGUF_BOOL;
}

int64_t lb_gguf_value_i64(const lb_gguf_value *v, uint64_t i) {
    if (!v->raw || i >= v->n || !is_integer(v->elem)) return 0;
    const uint8_t *p = v->raw + i * value_type_size[v->elem];
    switch (v->elem) {
    case LB_GGUF_U8: return *p;
    case LB_GGUF_BOOL: return *p != 0;
    case LB_GGUF_I8: return (int8_t)*p;
    case LB_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case LB_GGUF_I16: { int16_t x; memcpy(&x, p, 2); return x; }
    case LB_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case LB_GGUF_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    default: { int64_t x; memcpy(&x, p, 8); return x; } /* u64 (as its bits) and i64 */
    }
}

uint64_t lb_gguf_value_u64(const lb_gguf_value *v, uint64_t i) { return (uint64_t)lb_gguf_value_i64(v, i); }

double lb_gguf_value_f64(const lb_gguf_value *v, uint64_t i) {
    if (!v->raw || i >= v->n) return 0;
    if (v->elem == LB_GGUF_F32) {
        float x;
        memcpy(&x, v->raw + 4 * i, 4);
        return x;
    }
    if (v->elem == LB_GGUF_F64) {
        double x;
        memcpy(&x, v->raw + 8 * i, 8);
        return x;
    }
    if (v->elem == LB_GGUF_U64) return (double)lb_gguf_value_u64(v, i);
    return (double)lb_gguf_value_i64(v, i);
}

lb_gguf_str lb_gguf_value_str(const lb_gguf_value *v, uint64_t i) {
    lb_gguf_str empty = {"", 0};
    if (v->elem != LB_GGUF_STRING || !v->strs || i >= v->n) return empty;
    return v->strs[i];
}

static lb_status lookup(const lb_gguf *g, const char *key, const lb_gguf_value **v) {
    *v = lb_gguf_find(g, key);
    if (!*v) return lb_error(LB_EFORMAT, "GGUF '%s': key '%s' is missing", g->label, key);
    return LB_OK;
}

static lb_status wrong_type(const lb_gguf *g, const char *key, const lb_gguf_value *v, const char *expected) {
    if (v->type == LB_GGUF_ARRAY)
        return lb_error(LB_EFORMAT, "GGUF '%s': key '%s': expected %s, found an array of %s", g->label, key, expected,
                        value_type_names[v->elem]);
    return lb_error(LB_EFORMAT, "GGUF '%s': key '%s': expected %s, found %s", g->label, key, expected,
                    value_type_names[v->type]);
}

lb_status lb_gguf_get_int(const lb_gguf *g, const char *key, int64_t *out) {
    const lb_gguf_value *v;
    LB_TRY(lookup(g, key, &v));
    if (v->type == LB_GGUF_ARRAY || v->type == LB_GGUF_BOOL || !is_integer(v->type))
        return wrong_type(g, key, v, "an integer");
    if (v->type == LB_GGUF_U64 && lb_gguf_value_u64(v, 0) > INT64_MAX)
        return lb_error(LB_EFORMAT, "GGUF '%s': key '%s': %llu is out of range", g->label, key,
                        (unsigned long long)lb_gguf_value_u64(v, 0));
    *out = lb_gguf_value_i64(v, 0);
    return LB_OK;
}

lb_status lb_gguf_get_float(const lb_gguf *g, const char *key, double *out) {
    const lb_gguf_value *v;
    LB_TRY(lookup(g, key, &v));
    if (v->type != LB_GGUF_F32 && v->type != LB_GGUF_F64) return wrong_type(g, key, v, "f32 or f64");
    *out = lb_gguf_value_f64(v, 0);
    return LB_OK;
}

lb_status lb_gguf_get_bool(const lb_gguf *g, const char *key, int *out) {
    const lb_gguf_value *v;
    LB_TRY(lookup(g, key, &v));
    if (v->type != LB_GGUF_BOOL) return wrong_type(g, key, v, "bool");
    *out = (int)lb_gguf_value_i64(v, 0);
    return LB_OK;
}

lb_status lb_gguf_get_str(const lb_gguf *g, const char *key, lb_gguf_str *out) {
    const lb_gguf_value *v;
    LB_TRY(lookup(g, key, &v));
    if (v->type != LB_GGUF_STRING) return wrong_type(g, key, v, "str");
    *out = v->strs[0];
    return LB_OK;
}

lb_status lb_gguf_get_array(const lb_gguf *g, const char *key, lb_gguf_type elem, const lb_gguf_value **out) {
    const lb_gguf_value *v;
    LB_TRY(lookup(g, key, &v));
    if (v->type != LB_GGUF_ARRAY || v->elem != elem) {
        char want[32];
        snprintf(want, sizeof want, "an array of %s", lb_gguf_type_name(elem));
        return wrong_type(g, key, v, want);
    }
    *out = v;
    return LB_OK;
}

/* --- tensor data as float32 ------------------------------------------------------ */

lb_status lb_gguf_tensor_to_f32(const lb_gguf *g, const lb_gguf_tensor *t, float *dst, size_t n) {
    if (n != t->nelements)
        return lb_error(LB_EINVAL, "GGUF '%s': tensor '%s' has %llu elements, not %zu", g->label, t->name,
                        (unsigned long long)t->nelements, n);
    if (t->dtype < 0)
        return lb_error(LB_EINVAL, "GGUF '%s': tensor '%s': lowbit cannot decode ggml type %s", g->label, t->name,
                        lb_ggml_type_name(t->ggml_type));
    lb_dtype_info((lb_dtype)t->dtype)->to_f32(t->data, dst, n);
    return LB_OK;
}

/* --- writer --------------------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    int type, ndim;
    int64_t shape[LB_GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
    lb_produce_fn produce;
    void *ctx;
} wtensor;

typedef struct open_array {
    lb_gguf_type elem;
    uint64_t n, done;
} open_array;

struct lb_gguf_writer {
    lb_atomic_file af;
    int failed;
    uint64_t n_kv;
    uint32_t alignment;
    lb_name_index keys;     /* names point into key_store */
    char **key_store;
    size_t n_keys_stored, cap_keys;
    open_array stack[LB_GGUF_MAX_NESTING + 1];
    int depth;              /* open arrays */
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    lb_name_index tensor_names;
};

/* Records a failure: every later call, and commit, refuse. */
static lb_status wfail(lb_gguf_writer *w, lb_status code, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status wfail(lb_gguf_writer *w, lb_status code, const char *fmt, ...) {
    char msg[LB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->failed = 1;
    return lb_error(code, "GGUF '%s': %s", w->af.path ? w->af.path : "?", msg);
}

static lb_status wcheck(lb_gguf_writer *w) {
    if (!w) return lb_error(LB_EINVAL, "GGUF writer is NULL");
    if (w->failed) return lb_error(LB_EINVAL, "GGUF '%s': an earlier call failed", w->af.path);
    return LB_OK;
}

static lb_status wbytes(lb_gguf_writer *w, const void *p, size_t n) {
    lb_status s = lb_atomic_write(&w->af, p, n);
    if (s != LB_OK) w->failed = 1;
    return s;
}

static lb_status wu32(lb_gguf_writer *w, uint32_t v) { return wbytes(w, &v, 4); }
static lb_status wu64(lb_gguf_writer *w, uint64_t v) { return wbytes(w, &v, 8); }
static lb_status wstr(lb_gguf_writer *w, const char *s, uint64_t len) {
    LB_TRY(wu64(w, len));
    return wbytes(w, s, (size_t)len);
}

lb_status lb_gguf_writer_begin(const char *path, lb_gguf_writer **out) {
    *out = NULL;
    lb_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return lb_error(LB_ENOMEM, "GGUF '%s': out of memory", path ? path : "?");
    lb_status s = lb_atomic_begin(path, &w->af);
    if (s != LB_OK) {
        free(w);
        lb_error_prefix("GGUF");
        return s;
    }
    w->alignment = LB_GGUF_DEFAULT_ALIGNMENT;
    /* magic, version, then the two counts, rewritten at commit */
    static const uint8_t header[24] = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    if ((s = wbytes(w, header, sizeof header)) != LB_OK) {
        lb_gguf_writer_abort(w);
        return s;
    }
    *out = w;
    return LB_OK;
}

/* The key of a new pair: not empty, not set before, no array open. */
static lb_status begin_kv(lb_gguf_writer *w, const char *key, lb_gguf_type type) {
    LB_TRY(wcheck(w));
    if (w->depth > 0) return wfail(w, LB_EINVAL, "key '%s' set while an array is still open", key ? key : "");
    if (!key || !key[0]) return wfail(w, LB_EINVAL, "empty key");
    if (w->n_keys_stored == w->cap_keys) {
        size_t cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **ks = realloc(w->key_store, cap * sizeof *ks);
        if (!ks) return wfail(w, LB_ENOMEM, "out of memory");
        w->key_store = ks;
        w->cap_keys = cap;
    }
    size_t len = strlen(key);
    char *k = malloc(len + 1);
    if (!k) return wfail(w, LB_ENOMEM, "out of memory");
    memcpy(k, key, len + 1);
    w->key_store[w->n_keys_stored++] = k;
    int added = lb_name_index_add(&w->keys, k, w->n_kv, NULL);
    if (added < 0) return wfail(w, LB_ENOMEM, "out of memory");
    if (added == 0) return wfail(w, LB_EINVAL, "key '%s' set twice", key);
    w->n_kv++;
    LB_TRY(wstr(w, key, len));
    return wu32(w, (uint32_t)type);
}

static lb_status set_scalar(lb_gguf_writer *w, const char *key, lb_gguf_type type, const void *v) {
    LB_TRY(begin_kv(w, key, type));
    return wbytes(w, v, value_type_size[type]);
}

lb_status lb_gguf_set_u8(lb_gguf_writer *w, const char *key, uint8_t v) { return set_scalar(w, key, LB_GGUF_U8, &v); }
lb_status lb_gguf_set_i8(lb_gguf_writer *w, const char *key, int8_t v) { return set_scalar(w, key, LB_GGUF_I8, &v); }
lb_status lb_gguf_set_u16(lb_gguf_writer *w, const char *key, uint16_t v) {
    return set_scalar(w, key, LB_GGUF_U16, &v);
}
lb_status lb_gguf_set_i16(lb_gguf_writer *w, const char *key, int16_t v) {
    return set_scalar(w, key, LB_GGUF_I16, &v);
}
lb_status lb_gguf_set_u32(lb_gguf_writer *w, const char *key, uint32_t v) {
    if (w && !w->failed && key && strcmp(key, "general.alignment") == 0) {
        if (v == 0 || (v & (v - 1)) != 0) return wfail(w, LB_EINVAL, "general.alignment %u is not a power of 2", v);
        if (w->n_tensors > 0) return wfail(w, LB_EINVAL, "general.alignment set after tensors were added");
        w->alignment = v;
    }
    return set_scalar(w, key, LB_GGUF_U32, &v);
}
lb_status lb_gguf_set_i32(lb_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, LB_GGUF_I32, &v);
}
lb_status lb_gguf_set_f32(lb_gguf_writer *w, const char *key, float v) { return set_scalar(w, key, LB_GGUF_F32, &v); }
lb_status lb_gguf_set_bool(lb_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return set_scalar(w, key, LB_GGUF_BOOL, &b);
}
lb_status lb_gguf_set_u64(lb_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, LB_GGUF_U64, &v);
}
lb_status lb_gguf_set_i64(lb_gguf_writer *w, const char *key, int64_t v) {
    return set_scalar(w, key, LB_GGUF_I64, &v);
}
lb_status lb_gguf_set_f64(lb_gguf_writer *w, const char *key, double v) {
    return set_scalar(w, key, LB_GGUF_F64, &v);
}

lb_status lb_gguf_set_str(lb_gguf_writer *w, const char *key, const char *s) {
    if (w && key && strcmp(key, "general.alignment") == 0)
        return wfail(w, LB_EINVAL, "general.alignment must be a u32");
    LB_TRY(begin_kv(w, key, LB_GGUF_STRING));
    return wstr(w, s, strlen(s));
}

lb_status lb_gguf_begin_array(lb_gguf_writer *w, const char *key, lb_gguf_type elem, uint64_t n) {
    LB_TRY(wcheck(w));
    if ((int)elem < 0 || elem >= LB_GGUF_TYPE_COUNT)
        return wfail(w, LB_EINVAL, "array of unknown value type %d", (int)elem);
    if (n > LB_GGUF_MAX_ARRAY)
        return wfail(w, LB_EINVAL, "array of %llu elements, at most %llu allowed", (unsigned long long)n,
                     LB_GGUF_MAX_ARRAY);
    if (key) {
        if (key && strcmp(key, "general.alignment") == 0)
            return wfail(w, LB_EINVAL, "general.alignment must be a u32");
        LB_TRY(begin_kv(w, key, LB_GGUF_ARRAY));
    } else {
        /* an element of the innermost open array, which must be an array of arrays */
        if (w->depth == 0) return wfail(w, LB_EINVAL, "array without a key outside an array of arrays");
        open_array *top = &w->stack[w->depth - 1];
        if (top->elem != LB_GGUF_ARRAY)
            return wfail(w, LB_EINVAL, "array pushed into an array of %s", value_type_names[top->elem]);
        if (top->done == top->n)
            return wfail(w, LB_EINVAL, "more elements than the %llu announced", (unsigned long long)top->n);
        if (w->depth > LB_GGUF_MAX_NESTING)
            return wfail(w, LB_EINVAL, "arrays nested deeper than %d levels", LB_GGUF_MAX_NESTING);
        top->done++;
    }
    LB_TRY(wu32(w, (uint32_t)elem));
    LB_TRY(wu64(w, n));
    w->stack[w->depth++] = (open_array){elem, n, 0};
    return LB_OK;
}

/* The innermost open array, ready for one more element of `type`. */
static lb_status next_elem(lb_gguf_writer *w, lb_gguf_type type) {
    LB_TRY(wcheck(w));
    if (w->depth == 0) return wfail(w, LB_EINVAL, "element pushed with no array open");
    open_array *top = &w->stack[w->depth - 1];
    if ((type == LB_GGUF_STRING) != (top->elem == LB_GGUF_STRING) || top->elem == LB_GGUF_ARRAY)
        return wfail(w, LB_EINVAL, "%s element pushed into an array of %s", type == LB_GGUF_STRING ? "string" : "numeric",
                     value_type_names[top->elem]);
    if (top->done == top->n)
        return wfail(w, LB_EINVAL, "more elements than the %llu announced", (unsigned long long)top->n);
    top->done++;
    return LB_OK;
}

lb_status lb_gguf_push(lb_gguf_writer *w, const void *elem) {
    LB_TRY(next_elem(w, LB_GGUF_U8));
    lb_gguf_type t = w->stack[w->depth - 1].elem;
    if (t == LB_GGUF_BOOL) {
        uint8_t b = *(const uint8_t *)elem != 0;
        return wbytes(w, &b, 1);
    }
    return wbytes(w, elem, value_type_size[t]);
}

lb_status lb_gguf_push_str(lb_gguf_writer *w, const char *s, uint64_t len) {
    LB_TRY(next_elem(w, LB_GGUF_STRING));
    if (len > LB_GGUF_MAX_STRING)
        return wfail(w, LB_EINVAL, "string of %llu bytes, at most %llu allowed", (unsigned long long)len,
                     LB_GGUF_MAX_STRING);
    return wstr(w, s, len);
}

lb_status lb_gguf_end_array(lb_gguf_writer *w) {
    LB_TRY(wcheck(w));
    if (w->depth == 0) return wfail(w, LB_EINVAL, "end_array with no array open");
    open_array *top = &w->stack[w->depth - 1];
    if (top->done != top->n)
        return wfail(w, LB_EINVAL, "array closed after %llu of its %llu elements", (unsigned long long)top->done,
                     (unsigned long long)top->n);
    w->depth--;
    return LB_OK;
}

lb_status lb_gguf_set_array(lb_gguf_writer *w, const char *key, lb_gguf_type elem, uint64_t n, const void *data) {
    if (w && (elem == LB_GGUF_STRING || elem == LB_GGUF_ARRAY || (int)elem < 0 || elem >= LB_GGUF_TYPE_COUNT))
        return wfail(w, LB_EINVAL, "key '%s': lb_gguf_set_array takes numbers or bools", key ? key : "");
    LB_TRY(lb_gguf_begin_array(w, key, elem, n));
    if (elem == LB_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++) LB_TRY(lb_gguf_push(w, (const uint8_t *)data + i));
    } else {
        LB_TRY(wbytes(w, data, (size_t)(n * value_type_size[elem])));
        w->stack[w->depth - 1].done = n;
    }
    return lb_gguf_end_array(w);
}

lb_status lb_gguf_set_str_array(lb_gguf_writer *w, const char *key, uint64_t n, const char *const *strs) {
    LB_TRY(lb_gguf_begin_array(w, key, LB_GGUF_STRING, n));
    for (uint64_t i = 0; i < n; i++) LB_TRY(lb_gguf_push_str(w, strs[i], strlen(strs[i])));
    return lb_gguf_end_array(w);
}

static lb_status add_tensor(lb_gguf_writer *w, const char *name, int type, int ndim, const int64_t *shape,
                            const void *data, lb_produce_fn produce, void *ctx) {
    LB_TRY(wcheck(w));
    if (w->depth > 0) return wfail(w, LB_EINVAL, "tensor added while an array is still open");
    if (!name || !name[0]) return wfail(w, LB_EINVAL, "tensor with an empty name");
    size_t len = strlen(name);
    if (len > LB_GGUF_MAX_NAME)
        return wfail(w, LB_EINVAL, "tensor '%s': name of %zu bytes, at most %d allowed", name, len, LB_GGUF_MAX_NAME);
    int block, bytes;
    if (!lb_ggml_type_size(type, &block, &bytes))
        return wfail(w, LB_EINVAL, "tensor '%s': unknown ggml type %d", name, type);
    if (ndim < 1 || ndim > LB_GGUF_MAX_DIMS)
        return wfail(w, LB_EINVAL, "tensor '%s': %d dimensions, 1 to %d allowed", name, ndim, LB_GGUF_MAX_DIMS);
    uint64_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1) return wfail(w, LB_EINVAL, "tensor '%s': dimension %d is %lld", name, d, (long long)shape[d]);
        if (__builtin_mul_overflow(count, (uint64_t)shape[d], &count) || count > INT64_MAX / 8)
            return wfail(w, LB_EINVAL, "tensor '%s': too many elements", name);
    }
    if (shape[ndim - 1] % block != 0)
        return wfail(w, LB_EINVAL, "tensor '%s': rows of %lld elements are not a multiple of the %s block (%d)", name,
                     (long long)shape[ndim - 1], ggml_types[type].name, block);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return wfail(w, LB_ENOMEM, "out of memory");
        w->tensors = t;
        w->cap_tensors = cap;
    }
    wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    if (!(t->name = malloc(len + 1))) return wfail(w, LB_ENOMEM, "out of memory");
    memcpy(t->name, name, len + 1);
    w->n_tensors++; /* owned from here on, freed with the writer */
    int added = lb_name_index_add(&w->tensor_names, t->name, w->n_tensors - 1, NULL);
    if (added < 0) return wfail(w, LB_ENOMEM, "out of memory");
    if (added == 0) return wfail(w, LB_EINVAL, "tensor '%s' added twice", name);
    t->type = type;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = count / (uint64_t)block * (uint64_t)bytes;
    t->data = data;
    t->produce = produce;
    t->ctx = ctx;
    return LB_OK;
}

lb_status lb_gguf_add_tensor(lb_gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *shape,
                             const void *data) {
    if (w && !data) return wfail(w, LB_EINVAL, "tensor '%s': no data", name ? name : "");
    return add_tensor(w, name, ggml_type, ndim, shape, data, NULL, NULL);
}

lb_status lb_gguf_add_tensor_fn(lb_gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *shape,
                                lb_produce_fn produce, void *ctx) {
    if (w && !produce) return wfail(w, LB_EINVAL, "tensor '%s': no producer", name ? name : "");
    return add_tensor(w, name, ggml_type, ndim, shape, NULL, produce, ctx);
}

static void writer_free(lb_gguf_writer *w) {
    for (size_t i = 0; i < w->n_keys_stored; i++) free(w->key_store[i]);
    free(w->key_store);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    lb_name_index_free(&w->keys);
    lb_name_index_free(&w->tensor_names);
    free(w);
}

void lb_gguf_writer_abort(lb_gguf_writer *w) {
    if (!w) return;
    lb_atomic_abort(&w->af);
    writer_free(w);
}

static lb_status write_tensors(lb_gguf_writer *w) {
    uint64_t counts[2] = {w->n_tensors, w->n_kv};
    LB_TRY(lb_atomic_write_at(&w->af, 8, counts, sizeof counts));
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        LB_TRY(wstr(w, t->name, strlen(t->name)));
        LB_TRY(wu32(w, (uint32_t)t->ndim));
        for (int d = t->ndim - 1; d >= 0; d--) LB_TRY(wu64(w, (uint64_t)t->shape[d])); /* ne[0] first */
        LB_TRY(wu32(w, (uint32_t)t->type));
        LB_TRY(wu64(w, offset));
        offset = pad_to(offset + t->nbytes, w->alignment);
    }
    LB_TRY(lb_atomic_pad(&w->af, w->alignment));
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        lb_status s = lb_atomic_write_produced(&w->af, t->data, t->produce, t->ctx, (size_t)t->nbytes);
        if (s != LB_OK) {
            w->failed = 1;
            lb_error_prefix("GGUF '%s': tensor '%s'", w->af.path, t->name);
            return s;
        }
        LB_TRY(lb_atomic_pad(&w->af, w->alignment));
    }
    return LB_OK;
}

lb_status lb_gguf_writer_commit(lb_gguf_writer *w) {
    lb_status s = wcheck(w);
    if (s == LB_OK && w->depth > 0) s = wfail(w, LB_EINVAL, "commit with an array still open");
    if (s == LB_OK) s = write_tensors(w);
    if (s != LB_OK) {
        if (w) lb_gguf_writer_abort(w);
        return s;
    }
    s = lb_atomic_commit(&w->af);
    if (s != LB_OK) lb_error_prefix("GGUF");
    writer_free(w);
    return s;
}

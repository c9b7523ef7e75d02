/* safetensors reader and writer. The checks follow the upstream crate's
 * SafeTensors::read_metadata and Metadata::validate (huggingface/safetensors,
 * safetensors/src/tensor.rs), in its order:
 *   the file holds the 8-byte length; the length is at most 100,000,000 and the header
 *   fits in the file; the header is UTF-8 and one JSON object (whitespace around it,
 *   such as the padding, is allowed; anything else is not); each tensor has a known
 *   dtype, a shape of non-negative integers and data_offsets [begin, end]; sorted by
 *   offsets, the tensors cover the data from 0 without gap or overlap, each holding
 *   exactly nelements·bits/8 bytes (no overflow; a whole number of bytes); and the data
 *   ends exactly at the end of the file.
 * lowbit adds: duplicate names are refused (JSON_REJECT_DUPLICATES), as are names
 * holding NUL. */
#include "io/safetensors.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dtype.h"
#include "io/fileio.h"
#include "io/name_index.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lowbit reads and writes little-endian files on little-endian hosts only"
#endif

/* The upstream Dtype enum, in its order ("increasing alignment"), with bits per
 * element. The writer sorts by this order, largest first. */
static const struct {
    const char *name;
    int bits;
} dtypes[] = {
    {"BOOL", 8},     {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6},     {"U8", 8},           {"I8", 8},
    {"F8_E5M2", 8},  {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8},  {"I16", 16},
    {"U16", 16},     {"F16", 16},    {"BF16", 16},   {"I32", 32},        {"U32", 32},         {"F32", 32},
    {"C64", 64},     {"F64", 64},    {"I64", 64},    {"U64", 64},
};
enum { N_DTYPES = sizeof dtypes / sizeof dtypes[0] };

static int dtype_rank(const char *name) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0) return i;
    return -1;
}

int lb_st_dtype_bits(const char *dtype) {
    int r = dtype ? dtype_rank(dtype) : -1;
    return r < 0 ? 0 : dtypes[r].bits;
}

/* --- reading ------------------------------------------------------------------- */

typedef struct st_file {
    char *path;
    lb_mapped_file map;
    const uint8_t *buf;
    size_t size;
    json_t *root;       /* kept: names and dtypes point into it */
    int64_t *shapes;    /* every tensor's shape, one after the other */
} st_file;

struct lb_st {
    st_file *files;
    size_t n_files;
    lb_st_tensor *tensors;
    size_t n_tensors, cap_tensors;
    lb_name_index index;
    const char **meta_keys, **meta_values;
    size_t n_meta;
};

static lb_status ferr(const st_file *f, const char *fmt, ...) LB_PRINTF(2, 3);
static lb_status ferr(const st_file *f, const char *fmt, ...) {
    char msg[LB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_error(LB_EFORMAT, "safetensors '%s': %s", f->path, msg);
}

/* Offset of the first byte that is not valid UTF-8 (as Rust's str::from_utf8: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or n when all is valid. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) len = 2, min = 0x80, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) len = 3, min = 0x800, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) len = 4, min = 0x10000, cp = c & 0x07;
        else return i;
        if (len > n - i) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

typedef struct entry {
    const char *name, *dtype;
    int ndim, bits;
    size_t shape_at; /* index into the file's shapes */
    uint64_t begin, end, nelements, nbytes;
} entry;

static int by_offsets(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* A non-negative JSON integer. */
static int get_count(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static lb_status parse_entry(st_file *f, const char *name, json_t *v, entry *e, size_t *shape_used) {
    if (!json_is_object(v)) return ferr(f, "tensor '%s': expected an object with dtype, shape, data_offsets", name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return ferr(f, "tensor '%s': \"dtype\" is %s", name, dt ? "not a string" : "missing");
    int r = dtype_rank(json_string_value(dt));
    if (r < 0) return ferr(f, "tensor '%s': unknown dtype '%.40s'", name, json_string_value(dt));
    if (!json_is_array(shape))
        return ferr(f, "tensor '%s': \"shape\" is %s", name, shape ? "not an array" : "missing");
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return ferr(f, "tensor '%s': \"data_offsets\" is %s", name, offs ? "not [begin, end]" : "missing");
    if (!get_count(json_array_get(offs, 0), &e->begin) || !get_count(json_array_get(offs, 1), &e->end))
        return ferr(f, "tensor '%s': \"data_offsets\" must hold two non-negative integers", name);
    e->name = name;
    e->dtype = dtypes[r].name;
    e->bits = dtypes[r].bits;
    e->ndim = (int)json_array_size(shape);
    e->shape_at = *shape_used;
    uint64_t n = 1;
    int overflow = 0;
    for (int d = 0; d < e->ndim; d++) {
        uint64_t dim;
        if (!get_count(json_array_get(shape, (size_t)d), &dim))
            return ferr(f, "tensor '%s': \"shape\" must hold non-negative integers", name);
        f->shapes[(*shape_used)++] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(n, dim, &n);
    }
    uint64_t bits;
    if (overflow || __builtin_mul_overflow(n, (uint64_t)e->bits, &bits)) {
        char s[256];
        shape_str(f->shapes + e->shape_at, e->ndim, s, sizeof s);
        return ferr(f, "tensor '%s': shape %s of %s overflows when computing its size", name, s, e->dtype);
    }
    if (bits % 8 != 0) {
        char s[256];
        shape_str(f->shapes + e->shape_at, e->ndim, s, sizeof s);
        return ferr(f, "tensor '%s': shape %s of %s is not a whole number of bytes", name, s, e->dtype);
    }
    e->nelements = n;
    e->nbytes = bits / 8;
    return LB_OK;
}

static int tensor_add(lb_st *st, const lb_st_tensor *t) {
    if (st->n_tensors == st->cap_tensors) {
        size_t cap = st->cap_tensors ? 2 * st->cap_tensors : 64;
        lb_st_tensor *p = realloc(st->tensors, cap * sizeof *p);
        if (!p) return 0;
        st->tensors = p;
        st->cap_tensors = cap;
    }
    st->tensors[st->n_tensors++] = *t;
    return 1;
}

/* Validates one file and appends its tensors (in offset order) to st. */
static lb_status parse_file(lb_st *st, st_file *f, int keep_metadata) {
    if (f->size < 8) return ferr(f, "header too small: %zu bytes, the header length alone takes 8", f->size);
    uint64_t n;
    memcpy(&n, f->buf, 8);
    if (n > LB_ST_MAX_HEADER)
        return ferr(f, "header length %llu is larger than the %d allowed", (unsigned long long)n, LB_ST_MAX_HEADER);
    if (n > f->size - 8)
        return ferr(f, "header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)n,
                    f->size);
    const uint8_t *h = f->buf + 8;
    size_t bad = utf8_invalid_at(h, (size_t)n);
    if (bad < n) return ferr(f, "header is not valid UTF-8 (byte %zu of the header)", bad);
    json_error_t err;
    f->root = json_loadb((const char *)h, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!f->root) return ferr(f, "header is not valid JSON: %s (at byte %d of the header)", err.text, err.position);
    if (!json_is_object(f->root)) return ferr(f, "header is not a JSON object");

    size_t count = json_object_size(f->root), shape_total = 0;
    const char *key;
    json_t *v;
    json_object_foreach(f->root, key, v) {
        json_t *s = json_is_object(v) ? json_object_get(v, "shape") : NULL;
        if (json_is_array(s)) shape_total += json_array_size(s);
    }
    entry *es = calloc(count + 1, sizeof *es);
    f->shapes = malloc((shape_total + 1) * sizeof *f->shapes);
    if (!es || !f->shapes) {
        free(es);
        return lb_error(LB_ENOMEM, "safetensors '%s': out of memory", f->path);
    }
    size_t ne = 0, shape_used = 0;
    lb_status s = LB_OK;
    json_object_foreach(f->root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (json_is_null(v)) continue;
            if (!json_is_object(v)) {
                s = ferr(f, "\"__metadata__\" is not an object of strings");
                break;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    s = ferr(f, "\"__metadata__\": the value of '%s' is not a string", mk);
                    break;
                }
            }
            if (s != LB_OK) break;
            if (keep_metadata) {
                size_t m = json_object_size(v);
                st->meta_keys = calloc(m + 1, sizeof *st->meta_keys);
                st->meta_values = calloc(m + 1, sizeof *st->meta_values);
                if (!st->meta_keys || !st->meta_values) {
                    s = lb_error(LB_ENOMEM, "safetensors '%s': out of memory", f->path);
                    break;
                }
                json_object_foreach(v, mk, mv) {
                    st->meta_keys[st->n_meta] = mk;
                    st->meta_values[st->n_meta++] = json_string_value(mv);
                }
            }
            continue;
        }
        if ((s = parse_entry(f, key, v, &es[ne], &shape_used)) != LB_OK) break;
        ne++;
    }
    if (s == LB_OK) {
        qsort(es, ne, sizeof *es, by_offsets);
        uint64_t at = 0;
        for (size_t i = 0; i < ne && s == LB_OK; i++) {
            const entry *e = &es[i];
            if (e->begin != at || e->end < e->begin) {
                s = ferr(f,
                         "tensor '%s': data_offsets [%llu, %llu) do not %s (tensors must cover the data from 0 "
                         "without gaps or overlaps)",
                         e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         e->end < e->begin ? "make a range" : "start where the previous tensor ends");
                break;
            }
            if (e->end - e->begin != e->nbytes) {
                char sh[256];
                shape_str(f->shapes + e->shape_at, e->ndim, sh, sizeof sh);
                s = ferr(f, "tensor '%s': data_offsets [%llu, %llu) hold %llu bytes, shape %s of %s needs %llu", e->name,
                         (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)(e->end - e->begin), sh, e->dtype, (unsigned long long)e->nbytes);
                break;
            }
            at = e->end;
        }
        uint64_t data_size = f->size - 8 - n;
        if (s == LB_OK && at != data_size)
            s = ferr(f, "the tensors cover %llu bytes of data but the file has %llu after the header",
                     (unsigned long long)at, (unsigned long long)data_size);
    }
    for (size_t i = 0; i < ne && s == LB_OK; i++) {
        const entry *e = &es[i];
        lb_dtype dt;
        lb_st_tensor t = {e->name, e->dtype, lb_dtype_by_safetensors(e->dtype, &dt) ? (int)dt : -1, e->ndim,
                          f->shapes + e->shape_at, e->nelements, e->nbytes, f->buf + 8 + n + e->begin, f->path};
        if (!tensor_add(st, &t)) s = lb_error(LB_ENOMEM, "safetensors '%s': out of memory", f->path);
    }
    free(es);
    return s;
}

static lb_status add_file(lb_st *st, const char *path, const void *buf, size_t size) {
    st_file *fs = realloc(st->files, (st->n_files + 1) * sizeof *fs);
    if (!fs) return lb_error(LB_ENOMEM, "safetensors '%s': out of memory", path);
    st->files = fs;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    if (!(f->path = strdup(path))) return lb_error(LB_ENOMEM, "safetensors '%s': out of memory", path);
    st->n_files++;
    if (buf) {
        f->buf = buf;
        f->size = size;
    } else {
        lb_status s = lb_map_file(path, &f->map);
        if (s != LB_OK) {
            lb_error_prefix("safetensors");
            return s;
        }
        f->buf = f->map.data;
        f->size = f->map.size;
    }
    return parse_file(st, f, st->n_files == 1);
}

/* Every tensor name once across all files. */
static lb_status build_index(lb_st *st) {
    if (lb_name_index_init(&st->index, st->n_tensors) != 0) return lb_error(LB_ENOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < st->n_tensors; i++) {
        size_t first;
        int added = lb_name_index_add(&st->index, st->tensors[i].name, i, &first);
        if (added < 0) return lb_error(LB_ENOMEM, "safetensors: out of memory");
        if (added == 0)
            return lb_error(LB_EFORMAT, "safetensors: tensor '%s' is in both '%s' and '%s'", st->tensors[i].name,
                            st->tensors[first].file, st->tensors[i].file);
    }
    return LB_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A sharded set: the index's weight_map names each tensor's file. */
static lb_status open_index(lb_st *st, const char *index_path) {
    lb_mapped_file m;
    LB_TRY(lb_map_file(index_path, &m));
    if (m.size > LB_ST_MAX_HEADER) {
        lb_unmap_file(&m);
        return lb_error(LB_EFORMAT, "safetensors index '%s': %zu bytes, more than the %d allowed", index_path, m.size,
                        LB_ST_MAX_HEADER);
    }
    json_error_t err;
    json_t *root = json_loadb((const char *)m.data, m.size, JSON_REJECT_DUPLICATES, &err);
    lb_unmap_file(&m);
    if (!root)
        return lb_error(LB_EFORMAT, "safetensors index '%s': not valid JSON: %s (line %d)", index_path, err.text,
                        err.line);
    lb_status s = LB_OK;
    json_t *wm = json_object_get(root, "weight_map");
    const char **shards = NULL;
    size_t n_shards = 0;
    if (!json_is_object(wm)) {
        s = lb_error(LB_EFORMAT, "safetensors index '%s': no \"weight_map\" object", index_path);
        goto done;
    }
    shards = calloc(json_object_size(wm) + 1, sizeof *shards);
    if (!shards) {
        s = lb_error(LB_ENOMEM, "safetensors index '%s': out of memory", index_path);
        goto done;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        const char *file = json_string_value(v);
        if (!file || !file[0] || strchr(file, '/') || strcmp(file, ".") == 0 || strcmp(file, "..") == 0) {
            s = lb_error(LB_EFORMAT,
                         "safetensors index '%s': weight_map: tensor '%s': the shard must be a file name in the "
                         "index's directory, found %s%.100s%s",
                         index_path, name, file ? "'" : "", file ? file : "no string", file ? "'" : "");
            goto done;
        }
        shards[n_shards++] = file;
    }
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    size_t distinct = 0;
    for (size_t i = 0; i < n_shards; i++)
        if (i == 0 || strcmp(shards[i], shards[distinct - 1]) != 0) shards[distinct++] = shards[i];
    const char *slash = strrchr(index_path, '/');
    int dirlen = slash ? (int)(slash - index_path) : 1;
    const char *dir = slash ? index_path : ".";
    for (size_t i = 0; i < distinct && s == LB_OK; i++) {
        size_t len = (size_t)dirlen + strlen(shards[i]) + 2;
        char *path = malloc(len);
        if (!path) {
            s = lb_error(LB_ENOMEM, "safetensors: out of memory");
            break;
        }
        snprintf(path, len, "%.*s/%s", dirlen, dir, shards[i]);
        size_t first = st->n_tensors;
        s = add_file(st, path, NULL, 0);
        /* every tensor of the shard is listed there */
        for (size_t k = first; k < st->n_tensors && s == LB_OK; k++) {
            const char *listed = json_string_value(json_object_get(wm, st->tensors[k].name));
            if (!listed || strcmp(listed, shards[i]) != 0)
                s = lb_error(LB_EFORMAT, "safetensors index '%s': shard '%s' holds tensor '%s', which the index %s%s%s",
                             index_path, shards[i], st->tensors[k].name, listed ? "puts in '" : "does not list",
                             listed ? listed : "", listed ? "'" : "");
        }
        free(path);
    }
    if (s == LB_OK) s = build_index(st);
    /* every tensor the index lists is where it says */
    json_object_foreach(wm, name, v) {
        if (s != LB_OK) break;
        if (!lb_name_index_get(&st->index, name, NULL))
            s = lb_error(LB_EFORMAT, "safetensors index '%s': tensor '%s' is not in its shard '%s'", index_path, name,
                         json_string_value(v));
    }
done:
    free(shards);
    json_decref(root);
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

lb_status lb_st_open(const char *path, lb_st **out) {
    *out = NULL;
    lb_st *st = calloc(1, sizeof *st);
    if (!st) return lb_error(LB_ENOMEM, "safetensors '%s': out of memory", path);
    struct stat sb;
    lb_status s;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
        if (stat(p, &sb) == 0) s = open_index(st, p);
        else {
            snprintf(p, sizeof p, "%s/model.safetensors", path);
            if (stat(p, &sb) == 0) {
                s = add_file(st, p, NULL, 0);
                if (s == LB_OK) s = build_index(st);
            } else
                s = lb_error(LB_EIO, "safetensors: '%s' holds neither model.safetensors nor model.safetensors.index.json",
                             path);
        }
    } else if (ends_with(path, ".json")) {
        s = open_index(st, path);
    } else {
        s = add_file(st, path, NULL, 0);
        if (s == LB_OK) s = build_index(st);
    }
    if (s != LB_OK) {
        lb_st_close(st);
        return s;
    }
    *out = st;
    return LB_OK;
}

lb_status lb_st_parse(const void *buf, size_t size, const char *label, lb_st **out) {
    *out = NULL;
    lb_st *st = calloc(1, sizeof *st);
    if (!st) return lb_error(LB_ENOMEM, "safetensors: out of memory");
    lb_status s = add_file(st, label ? label : "(buffer)", buf ? buf : "", size);
    if (s == LB_OK) s = build_index(st);
    if (s != LB_OK) {
        lb_st_close(st);
        return s;
    }
    *out = st;
    return LB_OK;
}

void lb_st_close(lb_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_files; i++) {
        json_decref(st->files[i].root);
        free(st->files[i].shapes);
        free(st->files[i].path);
        lb_unmap_file(&st->files[i].map);
    }
    free(st->files);
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    lb_name_index_free(&st->index);
    free(st);
}

size_t lb_st_count(const lb_st *st) { return st->n_tensors; }
const lb_st_tensor *lb_st_at(const lb_st *st, size_t i) { return i < st->n_tensors ? &st->tensors[i] : NULL; }
const lb_st_tensor *lb_st_find(const lb_st *st, const char *name) {
    size_t i;
    return lb_name_index_get(&st->index, name, &i) ? &st->tensors[i] : NULL;
}

size_t lb_st_metadata_count(const lb_st *st) { return st->n_meta; }
void lb_st_metadata_at(const lb_st *st, size_t i, const char **key, const char **value) {
    *key = i < st->n_meta ? st->meta_keys[i] : NULL;
    *value = i < st->n_meta ? st->meta_values[i] : NULL;
}
const char *lb_st_metadata(const lb_st *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

lb_status lb_st_to_f32(const lb_st *st, const lb_st_tensor *t, float *dst, size_t n) {
    (void)st;
    if (n != t->nelements)
        return lb_error(LB_EINVAL, "safetensors '%s': tensor '%s' has %llu elements, not %zu", t->file, t->name,
                        (unsigned long long)t->nelements, n);
    if (t->dt < 0)
        return lb_error(LB_EINVAL, "safetensors '%s': tensor '%s': lowbit cannot convert dtype %s to float32",
                        t->file, t->name, t->dtype);
    lb_dtype_info((lb_dtype)t->dt)->to_f32(t->data, dst, n);
    return LB_OK;
}

/* --- writing ------------------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    int rank, ndim;
    int64_t *shape;
    uint64_t nbytes;
    const void *data;
    lb_produce_fn produce;
    void *ctx;
} wtensor;

struct lb_st_writer {
    lb_atomic_file af;
    int failed;
    wtensor *t;
    size_t n, cap;
    lb_name_index names;
    json_t *meta; /* insertion-ordered object of strings */
};

static lb_status wfail(lb_st_writer *w, lb_status code, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status wfail(lb_st_writer *w, lb_status code, const char *fmt, ...) {
    char msg[LB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->failed = 1;
    return lb_error(code, "safetensors '%s': %s", w->af.path, msg);
}

static lb_status wcheck(lb_st_writer *w) {
    if (!w) return lb_error(LB_EINVAL, "safetensors writer is NULL");
    if (w->failed) return lb_error(LB_EINVAL, "safetensors '%s': an earlier call failed", w->af.path);
    return LB_OK;
}

lb_status lb_st_writer_begin(const char *path, lb_st_writer **out) {
    *out = NULL;
    lb_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->meta = json_object())) {
        free(w);
        return lb_error(LB_ENOMEM, "safetensors '%s': out of memory", path ? path : "?");
    }
    lb_status s = lb_atomic_begin(path, &w->af);
    if (s != LB_OK) {
        json_decref(w->meta);
        free(w);
        lb_error_prefix("safetensors");
        return s;
    }
    *out = w;
    return LB_OK;
}

static lb_status add(lb_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                     const void *data, lb_produce_fn produce, void *ctx) {
    LB_TRY(wcheck(w));
    if (!name) return wfail(w, LB_EINVAL, "tensor without a name");
    if (strcmp(name, "__metadata__") == 0) return wfail(w, LB_EINVAL, "'__metadata__' cannot name a tensor");
    if (utf8_invalid_at((const uint8_t *)name, strlen(name)) < strlen(name))
        return wfail(w, LB_EINVAL, "tensor name '%s' is not valid UTF-8", name);
    int r = dtype ? dtype_rank(dtype) : -1;
    if (r < 0) return wfail(w, LB_EINVAL, "tensor '%s': unknown dtype '%s'", name, dtype ? dtype : "(null)");
    if (ndim < 0 || ndim > 64) return wfail(w, LB_EINVAL, "tensor '%s': %d dimensions", name, ndim);
    uint64_t n = 1, bits;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return wfail(w, LB_EINVAL, "tensor '%s': dimension %d is %lld", name, d, (long long)shape[d]);
        if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n))
            return wfail(w, LB_EINVAL, "tensor '%s': too many elements", name);
    }
    if (__builtin_mul_overflow(n, (uint64_t)dtypes[r].bits, &bits) || bits / 8 > INT64_MAX / 2)
        return wfail(w, LB_EINVAL, "tensor '%s': too many elements", name);
    if (bits % 8) return wfail(w, LB_EINVAL, "tensor '%s': %llu elements of %s are not a whole number of bytes", name,
                               (unsigned long long)n, dtype);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return wfail(w, LB_ENOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->shape = malloc(((size_t)ndim + 1) * sizeof *t->shape);
    if (!t->name || !t->shape) {
        free(t->name);
        free(t->shape);
        return wfail(w, LB_ENOMEM, "out of memory");
    }
    w->n++;
    int added = lb_name_index_add(&w->names, t->name, w->n - 1, NULL);
    if (added < 0) return wfail(w, LB_ENOMEM, "out of memory");
    if (added == 0) return wfail(w, LB_EINVAL, "tensor '%s' added twice", name);
    t->rank = r;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = bits / 8;
    t->data = data;
    t->produce = produce;
    t->ctx = ctx;
    return LB_OK;
}

lb_status lb_st_writer_add(lb_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                           const void *data) {
    if (w && !data) return wfail(w, LB_EINVAL, "tensor '%s': no data", name ? name : "");
    return add(w, name, dtype, ndim, shape, data, NULL, NULL);
}

lb_status lb_st_writer_add_fn(lb_st_writer *w, const char *name, const char *dtype, int ndim, const int64_t *shape,
                              lb_produce_fn produce, void *ctx) {
    if (w && !produce) return wfail(w, LB_EINVAL, "tensor '%s': no producer", name ? name : "");
    return add(w, name, dtype, ndim, shape, NULL, produce, ctx);
}

lb_status lb_st_writer_set_metadata(lb_st_writer *w, const char *key, const char *value) {
    LB_TRY(wcheck(w));
    json_t *v = value ? json_string(value) : NULL;
    if (!key || !v || json_object_set_new(w->meta, key, v) != 0)
        return wfail(w, LB_EINVAL, "metadata '%s': key and value must be UTF-8 strings", key ? key : "(null)");
    return LB_OK;
}

static void writer_free(lb_st_writer *w) {
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].shape);
    }
    free(w->t);
    lb_name_index_free(&w->names);
    json_decref(w->meta);
    free(w);
}

void lb_st_writer_abort(lb_st_writer *w) {
    if (!w) return;
    lb_atomic_abort(&w->af);
    writer_free(w);
}

/* The upstream order: dtype alignment descending, then name. */
static int by_rank_then_name(const void *a, const void *b) {
    const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
    if (x->rank != y->rank) return y->rank - x->rank;
    return strcmp(x->name, y->name);
}

static lb_status write_all(lb_st_writer *w) {
    wtensor **order = malloc((w->n + 1) * sizeof *order);
    json_t *root = json_object();
    char *header = NULL;
    lb_status s = LB_OK;
    if (!order || !root) {
        s = wfail(w, LB_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, w->n, sizeof *order, by_rank_then_name);
    if (json_object_size(w->meta) > 0) {
        /* keys in byte order, so equal inputs give equal files */
        size_t nm = json_object_size(w->meta), k = 0;
        const char **keys = malloc(nm * sizeof *keys);
        json_t *meta = json_object();
        const char *key;
        json_t *v;
        if (!keys || !meta) {
            free(keys);
            json_decref(meta);
            s = wfail(w, LB_ENOMEM, "out of memory");
            goto done;
        }
        json_object_foreach(w->meta, key, v) keys[k++] = key;
        qsort(keys, nm, sizeof *keys, cmp_str);
        for (k = 0; k < nm; k++) json_object_set(meta, keys[k], json_object_get(w->meta, keys[k]));
        json_object_set_new(root, "__metadata__", meta);
        free(keys);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wtensor *t = order[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", dtypes[t->rank].name, "shape", shape, "data_offsets",
                              (json_int_t)offset, (json_int_t)(offset + t->nbytes));
        if (!e || json_object_set_new(root, t->name, e) != 0) {
            s = wfail(w, LB_ENOMEM, "out of memory");
            goto done;
        }
        offset += t->nbytes;
    }
    header = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!header) {
        s = wfail(w, LB_ENOMEM, "out of memory");
        goto done;
    }
    size_t len = strlen(header);
    uint64_t padded = (len + 7) / 8 * 8;
    if (padded > LB_ST_MAX_HEADER) {
        s = wfail(w, LB_EINVAL, "header of %llu bytes, more than the %d allowed", (unsigned long long)padded,
                  LB_ST_MAX_HEADER);
        goto done;
    }
    static const char spaces[8] = "        ";
    if ((s = lb_atomic_write(&w->af, &padded, 8)) != LB_OK || (s = lb_atomic_write(&w->af, header, len)) != LB_OK ||
        (s = lb_atomic_write(&w->af, spaces, (size_t)(padded - len))) != LB_OK)
        goto done;
    for (size_t i = 0; i < w->n && s == LB_OK; i++) {
        const wtensor *t = order[i];
        s = lb_atomic_write_produced(&w->af, t->data, t->produce, t->ctx, (size_t)t->nbytes);
        if (s != LB_OK) lb_error_prefix("safetensors '%s': tensor '%s'", w->af.path, t->name);
    }
done:
    free(header);
    json_decref(root);
    free(order);
    return s;
}

lb_status lb_st_writer_commit(lb_st_writer *w) {
    lb_status s = wcheck(w);
    if (s == LB_OK) s = write_all(w);
    if (s != LB_OK) {
        if (w) lb_st_writer_abort(w);
        return s;
    }
    s = lb_atomic_commit(&w->af);
    if (s != LB_OK) lb_error_prefix("safetensors");
    writer_free(w);
    return s;
}

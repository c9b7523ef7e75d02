/* HDF5 checkpoints (see checkpoint.h and docs/checkpoint.md).
 *
 * Reading order: the small helpers (errors, names, types) first, then writing
 * (create, put, attributes, commit), then reading. */
#include "io/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME_MAX_LEN 1024
/* Chunks of about 1 MiB: big enough that the per-chunk index and checksum
 * cost nothing, small enough that a damaged chunk names a small region. */
#define CHUNK_BYTES (1u << 20)
/* Strings up to this size live inside their object header ("compact"
 * layout), which the file format checksums; longer ones are stored
 * contiguously and are not checksummed. */
#define COMPACT_STRING_MAX 60000

struct lb_ckpt {
    hid_t file;
    int writing;   /* 1: created by lb_ckpt_create, 0: opened for reading */
    int failed;    /* a put failed: commit must not publish a partial file */
    char *path;    /* the final path */
    char *tmp;     /* the temporary file being written (writing only) */
};

/* ---- errors --------------------------------------------------------------- */

static void h5_quiet(void) {
    /* HDF5 prints its error stack to stderr by default; we report through
     * lb_error instead. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static herr_t innermost_error(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    (void)n;
    if (!buf[0] && e->desc && e->desc[0]) snprintf(buf, 256, "%s", e->desc);
    return 0;
}

/* The most specific message on HDF5's error stack (the innermost non-empty one), e.g. "data error detected
 * by Fletcher32 checksum". Call right after the failing HDF5 call: the next
 * HDF5 call clears the stack. */
static const char *h5_reason(char buf[256]) {
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, buf);
    if (!buf[0]) snprintf(buf, 256, "HDF5 error");
    return buf;
}

/* Records "checkpoint 'PATH': <message>" and returns `code`. */
static lb_status fail(const lb_ckpt *c, lb_status code, const char *fmt, ...) LB_PRINTF(3, 4);
static lb_status fail(const lb_ckpt *c, lb_status code, const char *fmt, ...) {
    char msg[LB_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lb_error(code, "checkpoint '%s': %s", c->path, msg);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- names, types, shapes -------------------------------------------------- */

/* Checks `name` and writes it without a leading '/' into out. With
 * allow_root, "" and "/" name the root group and come out as "/". */
static lb_status norm_name(const lb_ckpt *c, const char *name, char out[NAME_MAX_LEN], int allow_root) {
    if (!name) return fail(c, LB_EINVAL, "name is NULL");
    if (name[0] == '/') name++;
    size_t len = strlen(name);
    if (len == 0) {
        if (!allow_root) return fail(c, LB_EINVAL, "empty dataset name");
        snprintf(out, NAME_MAX_LEN, "/");
        return LB_OK;
    }
    if (len >= NAME_MAX_LEN) return fail(c, LB_EINVAL, "name '%.64s...' is longer than %d bytes", name, NAME_MAX_LEN - 1);
    /* Every component must be non-empty and not "." or "..". */
    const char *p = name;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return fail(c, LB_EINVAL, "bad name '%s' (empty, '.' or '..' component)", name);
        p += n;
        if (*p == '/') {
            p++;
            if (!*p) return fail(c, LB_EINVAL, "bad name '%s' (ends with '/')", name);
        }
    }
    memcpy(out, name, len + 1);
    return LB_OK;
}

/* 1 when every component of `name` (normalised) exists. H5Lexists needs the
 * intermediate groups to exist, so walk them one by one. */
static int exists(hid_t file, const char *name) {
    if (strcmp(name, "/") == 0) return 1;
    char buf[NAME_MAX_LEN];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
            if (saved == '\0') break;
            *p = saved;
        }
    }
    return H5Oexists_by_name(file, name, H5P_DEFAULT) > 0;
}

/* The HDF5 type of a dtype, from its class and size: little-endian on disk,
 * whatever the machine (see checkpoint.h), the machine's order in memory.
 * -1 when there is none (f16, bf16, fp8, the block formats). */
static hid_t hdf5_type(lb_dtype t, int in_memory) {
    const lb_dtype_traits *d = lb_dtype_info(t);
    if (!d || d->cls == LB_DC_BLOCK) return -1;
    int b = d->block_bytes, k = b == 1 ? 0 : b == 2 ? 1 : b == 4 ? 2 : b == 8 ? 3 : -1;
    if (k < 0) return -1;
    const hid_t floats[2][4] = {{-1, -1, H5T_IEEE_F32LE, H5T_IEEE_F64LE}, {-1, -1, H5T_NATIVE_FLOAT, H5T_NATIVE_DOUBLE}};
    const hid_t sints[2][4] = {{H5T_STD_I8LE, H5T_STD_I16LE, H5T_STD_I32LE, H5T_STD_I64LE},
                               {H5T_NATIVE_INT8, H5T_NATIVE_INT16, H5T_NATIVE_INT32, H5T_NATIVE_INT64}};
    const hid_t uints[2][4] = {{H5T_STD_U8LE, H5T_STD_U16LE, H5T_STD_U32LE, H5T_STD_U64LE},
                               {H5T_NATIVE_UINT8, H5T_NATIVE_UINT16, H5T_NATIVE_UINT32, H5T_NATIVE_UINT64}};
    const hid_t(*by)[4] = d->cls == LB_DC_FLOAT ? floats : d->cls == LB_DC_SINT ? sints : uints;
    return by[in_memory != 0][k];
}

static hid_t file_type(lb_dtype t) { return hdf5_type(t, 0); }
static hid_t mem_type(lb_dtype t) { return hdf5_type(t, 1); }

/* What a stored HDF5 type is, by class, size and sign. */
enum { STORED_STRING = -2, STORED_OTHER = -1 };
static int classify(hid_t t) {
    H5T_class_t cls = H5Tget_class(t);
    if (cls == H5T_STRING) return STORED_STRING;
    size_t size = H5Tget_size(t);
    lb_dtype_class want;
    if (cls == H5T_FLOAT) want = LB_DC_FLOAT;
    else if (cls == H5T_INTEGER) want = H5Tget_sign(t) == H5T_SGN_2 ? LB_DC_SINT : LB_DC_UINT;
    else return STORED_OTHER;
    for (int k = 0; k < LB_DT_COUNT; k++) {
        const lb_dtype_traits *d = lb_dtype_info((lb_dtype)k);
        if (d->cls == want && (size_t)d->block_bytes == size && file_type((lb_dtype)k) >= 0) return k;
    }
    return STORED_OTHER;
}

/* "f32", "u16", ... for a classify() result. */
static const char *stored_name(int t) {
    return t >= 0 ? lb_dtype_info((lb_dtype)t)->name : t == STORED_STRING ? "a string" : "an unsupported type";
}

static const char *shape_str(int ndim, const long long *dims, char *buf, size_t size) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, size - k, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, i ? ",%lld" : "%lld", dims[i]);
    if (k < size) snprintf(buf + k, size - k, "]");
    return buf;
}

/* ---- writing ---------------------------------------------------------------- */

static hid_t file_access_plist(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    /* The HDF5 1.10 file format checksums its metadata (superblock, object
     * headers, chunk indexes), so damage there is caught like damage to data.
     * Readable by HDF5 >= 1.10 (2016), h5py, h5dump. */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    /* Closing the file closes everything in it, so the bytes are final before
     * fsync and rename. */
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    return fapl;
}

static lb_status write_attr(lb_ckpt *c, hid_t obj, const char *objname, const char *attr, hid_t ftype,
                            hid_t mtype, const void *value) {
    char why[256];
    if (H5Aexists(obj, attr) > 0 && H5Adelete(obj, attr) < 0)
        return fail(c, LB_EIO, "'%s': cannot replace attribute '%s' (%s)", objname, attr, h5_reason(why));
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, attr, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, value);
    if (rc < 0) h5_reason(why);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    if (rc < 0) return fail(c, LB_EIO, "'%s': cannot write attribute '%s' (%s)", objname, attr, why);
    return LB_OK;
}

/* A fixed-length, NUL-terminated UTF-8 string type holding `len` bytes. */
static hid_t string_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len + 1);   /* size 0 is not allowed, so "" takes one byte */
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static lb_status set_attr(lb_ckpt *c, const char *object, const char *attr, const char *str, const int64_t *i64) {
    if (!c || !c->writing) return lb_error(LB_EINVAL, "checkpoint: setting an attribute needs a checkpoint being written");
    char name[NAME_MAX_LEN];
    LB_TRY(norm_name(c, object, name, 1));
    if (!attr || !attr[0]) return fail(c, LB_EINVAL, "'%s': empty attribute name", name);
    if (!exists(c->file, name)) return fail(c, LB_EINVAL, "no dataset or group '%s' to set attribute '%s' on", name, attr);
    hid_t obj = H5Oopen(c->file, name, H5P_DEFAULT);
    char why[256];
    if (obj < 0) return fail(c, LB_EIO, "cannot open '%s' (%s)", name, h5_reason(why));
    lb_status s;
    if (str) {
        hid_t t = string_type(strlen(str));
        s = write_attr(c, obj, name, attr, t, t, str);
        H5Tclose(t);
    } else {
        s = write_attr(c, obj, name, attr, H5T_STD_I64LE, H5T_NATIVE_INT64, i64);
    }
    H5Oclose(obj);
    return s;
}

lb_status lb_ckpt_set_attr_str(lb_ckpt *c, const char *object, const char *attr, const char *value) {
    if (!value) return lb_error(LB_EINVAL, "checkpoint: attribute '%s' value is NULL", attr ? attr : "?");
    lb_status s = set_attr(c, object, attr, value, NULL);
    if (s != LB_OK && c) c->failed = 1;
    return s;
}

lb_status lb_ckpt_set_attr_i64(lb_ckpt *c, const char *object, const char *attr, int64_t value) {
    lb_status s = set_attr(c, object, attr, NULL, &value);
    if (s != LB_OK && c) c->failed = 1;
    return s;
}

lb_status lb_ckpt_create(const char *path, lb_ckpt **out) {
    if (!out) return lb_error(LB_EINVAL, "lb_ckpt_create: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return lb_error(LB_EINVAL, "lb_ckpt_create: empty path");
    h5_quiet();

    lb_ckpt *c = calloc(1, sizeof *c);
    size_t len = strlen(path);
    if (!c || !(c->path = dup_str(path)) || !(c->tmp = malloc(len + 64))) {
        if (c) free(c->path);
        free(c);
        return lb_error(LB_ENOMEM, "checkpoint '%s': out of memory", path);
    }
    c->file = -1;
    c->writing = 1;

    /* A fresh temporary name next to PATH (same directory, so rename is
     * atomic). O_EXCL makes sure we never write into someone else's file. */
    static unsigned counter;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(c->tmp, len + 64, "%s.tmp-%ld-%u", path, (long)getpid(), counter++);
        fd = open(c->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        lb_status s = fail(c, LB_EIO, "cannot create temporary file '%s': %s", c->tmp, strerror(errno));
        free(c->tmp);
        free(c->path);
        free(c);
        return s;
    }
    close(fd);

    hid_t fapl = file_access_plist();
    c->file = H5Fcreate(c->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    char why[256];
    if (c->file < 0) h5_reason(why);
    H5Pclose(fapl);
    if (c->file < 0) {
        lb_status s = fail(c, LB_EIO, "cannot create HDF5 file '%s' (%s)", c->tmp, why);
        lb_ckpt_abort(c);
        return s;
    }
    int64_t version = LB_CKPT_FORMAT_VERSION;
    if (set_attr(c, "/", "format", LB_CKPT_FORMAT, NULL) != LB_OK ||
        set_attr(c, "/", "format_version", NULL, &version) != LB_OK) {
        lb_status s = lb_errcode();
        lb_ckpt_abort(c);
        return s;
    }
    *out = c;
    return LB_OK;
}

/* Chunk dimensions of at most CHUNK_BYTES: halve the leading dimensions
 * first, so a chunk is a block of whole rows. */
static void choose_chunk(int ndim, const hsize_t *dims, size_t elem, hsize_t *chunk) {
    size_t bytes = elem;
    for (int i = 0; i < ndim; i++) {
        chunk[i] = dims[i];
        bytes *= (size_t)dims[i];
    }
    for (int i = 0; i < ndim && bytes > CHUNK_BYTES; i++) {
        while (chunk[i] > 1 && bytes > CHUNK_BYTES) {
            hsize_t half = (chunk[i] + 1) / 2;
            bytes = bytes / (size_t)chunk[i] * (size_t)half;
            chunk[i] = half;
        }
    }
}

/* Creates dataset `name` of element type `ftype` and writes `data` (memory
 * type `mtype`); `dims` NULL means a scalar. Arrays are chunked with the
 * Fletcher32 filter; scalars, empty arrays and short strings are compact. */
static lb_status write_dataset(lb_ckpt *c, const char *name, hid_t ftype, hid_t mtype, int ndim,
                               const hsize_t *dims, size_t n, size_t bytes, const void *data) {
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (ndim > 0 && n > 0) {
        hsize_t chunk[LB_CKPT_MAX_DIMS];
        choose_chunk(ndim, dims, bytes / n, chunk);
        H5Pset_chunk(dcpl, ndim, chunk);
        H5Pset_fletcher32(dcpl);
    } else if (bytes <= COMPACT_STRING_MAX) {
        H5Pset_layout(dcpl, H5D_COMPACT);
    }
    char why[256];
    hid_t ds = H5Dcreate2(c->file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : n > 0 ? H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
    if (rc < 0) h5_reason(why);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (rc < 0) return fail(c, LB_EIO, "cannot write dataset '%s' (%s)", name, why);
    return LB_OK;
}

/* Checks that `name` is new and can be written; fills `out`. */
static lb_status check_new(lb_ckpt *c, const char *name, char out[NAME_MAX_LEN]) {
    if (!c || !c->writing) return lb_error(LB_EINVAL, "checkpoint: writing '%s' needs a checkpoint being written", name ? name : "?");
    LB_TRY(norm_name(c, name, out, 0));
    if (exists(c->file, out)) return fail(c, LB_EINVAL, "dataset '%s' written twice", out);
    return LB_OK;
}

static lb_status put_array(lb_ckpt *c, const char *name_in, lb_dtype t, int ndim, const int *shape,
                           const void *data) {
    char name[NAME_MAX_LEN];
    LB_TRY(check_new(c, name_in, name));
    if (file_type(t) < 0) {
        const lb_dtype_traits *d = lb_dtype_info(t);
        return fail(c, LB_EINVAL, "dataset '%s': dtype %s has no HDF5 type (store its codes as u8 or u16)", name,
                    d ? d->name : "(unknown)");
    }
    if (ndim < 0 || ndim > LB_CKPT_MAX_DIMS)
        return fail(c, LB_EINVAL, "dataset '%s': %d dimensions (0..%d supported)", name, ndim, LB_CKPT_MAX_DIMS);
    if (ndim > 0 && !shape) return fail(c, LB_EINVAL, "dataset '%s': shape is NULL", name);
    hsize_t dims[LB_CKPT_MAX_DIMS];
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return fail(c, LB_EINVAL, "dataset '%s': dimension %d is %d", name, i, shape[i]);
        dims[i] = (hsize_t)shape[i];
        if (shape[i] > 0 && n > SIZE_MAX / 8 / (size_t)shape[i])
            return fail(c, LB_EINVAL, "dataset '%s': too many elements", name);
        n *= (size_t)shape[i];
    }
    if (n > 0 && !data) return fail(c, LB_EINVAL, "dataset '%s': data is NULL", name);
    return write_dataset(c, name, file_type(t), mem_type(t), ndim, dims, n, lb_dtype_row_bytes(t, n), data);
}

lb_status lb_ckpt_put(lb_ckpt *c, const char *name, lb_dtype t, int ndim, const int *shape, const void *data) {
    lb_status s = put_array(c, name, t, ndim, shape, data);
    if (s != LB_OK && c) c->failed = 1;
    return s;
}

lb_status lb_ckpt_put_string(lb_ckpt *c, const char *name_in, const char *text) {
    char name[NAME_MAX_LEN];
    lb_status s = check_new(c, name_in, name);
    if (s == LB_OK && !text) s = fail(c, LB_EINVAL, "string '%s' is NULL", name);
    if (s == LB_OK) {
        size_t len = strlen(text);
        hid_t t = string_type(len);
        s = write_dataset(c, name, t, t, 0, NULL, 1, len + 1, text);
        H5Tclose(t);
    }
    if (s != LB_OK && c) c->failed = 1;
    return s;
}

/* Directory part of `path` ("." when it has none). */
static void dir_of(const char *path, char *buf, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, size, ".");
    else if (slash == path) snprintf(buf, size, "/");
    else snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

static lb_status fsync_path(const lb_ckpt *c, const char *path, int is_dir) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
    if (fd < 0) return fail(c, LB_EIO, "cannot open '%s' to fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* Some file systems cannot fsync a directory (EINVAL); nothing to do then. */
    if (rc != 0 && !(is_dir && err == EINVAL))
        return fail(c, LB_EIO, "fsync of '%s' failed: %s", path, strerror(err));
    return LB_OK;
}

lb_status lb_ckpt_commit(lb_ckpt *c) {
    if (!c) return lb_error(LB_EINVAL, "lb_ckpt_commit: checkpoint is NULL");
    if (!c->writing) {
        lb_status s = fail(c, LB_EINVAL, "opened for reading, cannot commit");
        lb_ckpt_close(c);
        return s;
    }
    if (c->failed) {
        lb_status s = fail(c, LB_EINVAL, "not committed: an earlier write to it failed");
        lb_ckpt_abort(c);
        return s;
    }
    char why[256];
    lb_status s = LB_OK;
    if (H5Fflush(c->file, H5F_SCOPE_GLOBAL) < 0)
        s = fail(c, LB_EIO, "flush of '%s' failed (%s)", c->tmp, h5_reason(why));
    herr_t rc = H5Fclose(c->file);
    c->file = -1;
    if (s == LB_OK && rc < 0) s = fail(c, LB_EIO, "close of '%s' failed (%s)", c->tmp, h5_reason(why));
    if (s == LB_OK) s = fsync_path(c, c->tmp, 0);
    if (s == LB_OK && rename(c->tmp, c->path) != 0)
        s = fail(c, LB_EIO, "cannot rename '%s' onto it: %s", c->tmp, strerror(errno));
    if (s != LB_OK) {
        lb_ckpt_abort(c);   /* removes the temporary file; PATH is untouched */
        return s;
    }
    char dir[4096];
    dir_of(c->path, dir, sizeof dir);
    s = fsync_path(c, dir, 1);
    free(c->tmp);
    free(c->path);
    free(c);
    return s;
}

void lb_ckpt_abort(lb_ckpt *c) {
    if (!c) return;
    if (c->file >= 0) H5Fclose(c->file);
    if (c->writing) unlink(c->tmp);
    free(c->tmp);
    free(c->path);
    free(c);
}

void lb_ckpt_close(lb_ckpt *c) { lb_ckpt_abort(c); }

const char *lb_ckpt_path(const lb_ckpt *c) { return c ? c->path : ""; }

/* ---- reading ---------------------------------------------------------------- */

/* Reads a scalar string from an attribute (is_attr) or a dataset into a
 * malloc'd buffer. Fixed- and variable-length strings are both accepted, so
 * files written by h5py read too. */
static lb_status read_string(const lb_ckpt *c, hid_t id, int is_attr, const char *what, char **out) {
    char why[256];
    hid_t ft = is_attr ? H5Aget_type(id) : H5Dget_type(id);
    hid_t space = is_attr ? H5Aget_space(id) : H5Dget_space(id);
    lb_status s = LB_OK;
    if (ft < 0 || space < 0) {
        s = fail(c, LB_EFORMAT, "%s: cannot read its type (%s)", what, h5_reason(why));
    } else if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        s = fail(c, LB_EINVAL, "%s: expected a single string", what);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *p = NULL;
        herr_t rc = is_attr ? H5Aread(id, mt, &p) : H5Dread(id, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p);
        if (rc < 0) s = fail(c, LB_EFORMAT, "%s: read failed (%s); the file is corrupt or truncated", what, h5_reason(why));
        else if (!(*out = dup_str(p ? p : ""))) s = lb_error(LB_ENOMEM, "out of memory");
        if (rc >= 0) H5Dvlen_reclaim(mt, space, H5P_DEFAULT, &p);
        H5Tclose(mt);
    } else {
        size_t size = H5Tget_size(ft);
        char *buf = calloc(size + 1, 1);
        hid_t mt = H5Tcopy(ft);
        herr_t rc = !buf ? -1 : is_attr ? H5Aread(id, mt, buf) : H5Dread(id, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        if (!buf) s = lb_error(LB_ENOMEM, "out of memory");
        else if (rc < 0) s = fail(c, LB_EFORMAT, "%s: read failed (%s); the file is corrupt or truncated", what, h5_reason(why));
        H5Tclose(mt);
        if (s == LB_OK) *out = buf;
        else free(buf);
    }
    if (space >= 0) H5Sclose(space);
    if (ft >= 0) H5Tclose(ft);
    return s;
}

static lb_status read_i64(const lb_ckpt *c, hid_t a, const char *what, int64_t *out) {
    char why[256];
    hid_t ft = H5Aget_type(a);
    hid_t space = H5Aget_space(a);
    lb_status s = LB_OK;
    if (ft < 0 || space < 0)
        s = fail(c, LB_EFORMAT, "%s: cannot read its type (%s)", what, h5_reason(why));
    else if (H5Tget_class(ft) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1)
        s = fail(c, LB_EINVAL, "%s: expected a single integer", what);
    else if (H5Aread(a, H5T_NATIVE_INT64, out) < 0)
        s = fail(c, LB_EFORMAT, "%s: read failed (%s)", what, h5_reason(why));
    if (space >= 0) H5Sclose(space);
    if (ft >= 0) H5Tclose(ft);
    return s;
}

/* Opens attribute `attr` of `object`; LB_EINVAL naming both when missing. */
static lb_status open_attr(const lb_ckpt *c, const char *object, const char *attr, hid_t *obj, hid_t *a,
                           char name[NAME_MAX_LEN]) {
    char why[256];
    LB_TRY(norm_name(c, object, name, 1));
    if (!attr) return fail(c, LB_EINVAL, "'%s': attribute name is NULL", name);
    if (!exists(c->file, name)) return fail(c, LB_EINVAL, "no dataset or group '%s'", name);
    *obj = H5Oopen(c->file, name, H5P_DEFAULT);
    if (*obj < 0) return fail(c, LB_EFORMAT, "cannot open '%s' (%s)", name, h5_reason(why));
    htri_t has = H5Aexists(*obj, attr);
    if (has <= 0) {
        lb_status s = has < 0 ? fail(c, LB_EFORMAT, "'%s': cannot read attributes (%s)", name, h5_reason(why))
                              : fail(c, LB_EINVAL, "'%s' has no attribute '%s'", name, attr);
        H5Oclose(*obj);
        return s;
    }
    *a = H5Aopen(*obj, attr, H5P_DEFAULT);
    if (*a < 0) {
        lb_status s = fail(c, LB_EFORMAT, "'%s': cannot open attribute '%s' (%s)", name, attr, h5_reason(why));
        H5Oclose(*obj);
        return s;
    }
    return LB_OK;
}

lb_status lb_ckpt_get_attr_str(lb_ckpt *c, const char *object, const char *attr, char **out) {
    if (!c || !out) return lb_error(LB_EINVAL, "lb_ckpt_get_attr_str: NULL argument");
    *out = NULL;
    char name[NAME_MAX_LEN], what[NAME_MAX_LEN + 64];
    hid_t obj = -1, a = -1;
    LB_TRY(open_attr(c, object, attr, &obj, &a, name));
    snprintf(what, sizeof what, "attribute '%s' of '%s'", attr, name);
    lb_status s = read_string(c, a, 1, what, out);
    H5Aclose(a);
    H5Oclose(obj);
    return s;
}

lb_status lb_ckpt_get_attr_i64(lb_ckpt *c, const char *object, const char *attr, int64_t *out) {
    if (!c || !out) return lb_error(LB_EINVAL, "lb_ckpt_get_attr_i64: NULL argument");
    char name[NAME_MAX_LEN], what[NAME_MAX_LEN + 64];
    hid_t obj = -1, a = -1;
    LB_TRY(open_attr(c, object, attr, &obj, &a, name));
    snprintf(what, sizeof what, "attribute '%s' of '%s'", attr, name);
    lb_status s = read_i64(c, a, what, out);
    H5Aclose(a);
    H5Oclose(obj);
    return s;
}

lb_status lb_ckpt_open(const char *path, lb_ckpt **out) {
    if (!out) return lb_error(LB_EINVAL, "lb_ckpt_open: out is NULL");
    *out = NULL;
    if (!path || !path[0]) return lb_error(LB_EINVAL, "lb_ckpt_open: empty path");
    h5_quiet();
    /* Tell "missing or unreadable" apart from "not HDF5". */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lb_error(LB_EIO, "checkpoint '%s': cannot open: %s", path, strerror(errno));
    close(fd);
    if (H5Fis_hdf5(path) <= 0) return lb_error(LB_EFORMAT, "checkpoint '%s': not an HDF5 file", path);

    lb_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->path = dup_str(path))) {
        free(c);
        return lb_error(LB_ENOMEM, "checkpoint '%s': out of memory", path);
    }
    hid_t fapl = file_access_plist();
    c->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    char why[256];
    if (c->file < 0) h5_reason(why);   /* before the next HDF5 call clears it */
    H5Pclose(fapl);
    if (c->file < 0) {
        lb_status s = fail(c, LB_EFORMAT, "cannot open as HDF5 (%s); the file is truncated or corrupt", why);
        lb_ckpt_close(c);
        return s;
    }

    /* Is it ours, and of a version we read? */
    lb_status s = LB_OK;
    htri_t has = H5Aexists(c->file, "format");
    if (has < 0) s = fail(c, LB_EFORMAT, "cannot read root attributes (%s); the file is corrupt", h5_reason(why));
    else if (has == 0) s = fail(c, LB_EFORMAT, "not a lowbit checkpoint (no 'format' attribute)");
    char *format = NULL;
    int64_t version = 0;
    if (s == LB_OK) s = lb_ckpt_get_attr_str(c, "/", "format", &format);
    if (s == LB_OK && strcmp(format, LB_CKPT_FORMAT) != 0)
        s = fail(c, LB_EFORMAT, "not a lowbit checkpoint (format is '%s', expected '%s')", format, LB_CKPT_FORMAT);
    if (s == LB_OK && lb_ckpt_get_attr_i64(c, "/", "format_version", &version) != LB_OK)
        s = fail(c, LB_EFORMAT, "no readable 'format_version' attribute");
    if (s == LB_OK && version > LB_CKPT_FORMAT_VERSION)
        s = fail(c, LB_EFORMAT, "format version %lld is newer than this build reads (%d); use a newer lowbit",
                 (long long)version, LB_CKPT_FORMAT_VERSION);
    if (s == LB_OK && version < 1) s = fail(c, LB_EFORMAT, "invalid format version %lld", (long long)version);
    free(format);
    if (s != LB_OK) {
        if (lb_errcode() != LB_EFORMAT) s = lb_error(LB_EFORMAT, "%s", lb_errmsg());
        lb_ckpt_close(c);
        return s;
    }
    *out = c;
    return LB_OK;
}

int lb_ckpt_has(lb_ckpt *c, const char *name) {
    char buf[NAME_MAX_LEN];
    if (!c || !name) return 0;
    if (name[0] == '/') name++;
    if (!name[0] || strlen(name) >= NAME_MAX_LEN) return 0;
    snprintf(buf, sizeof buf, "%s", name);
    return exists(c->file, buf);
}

/* Opens dataset `name`: LB_EINVAL naming it when missing. */
static lb_status open_dataset(lb_ckpt *c, const char *name_in, hid_t *ds, char name[NAME_MAX_LEN]) {
    if (!c) return lb_error(LB_EINVAL, "checkpoint is NULL");
    LB_TRY(norm_name(c, name_in, name, 0));
    if (!exists(c->file, name)) return fail(c, LB_EINVAL, "no tensor '%s'", name);
    char why[256];
    *ds = H5Dopen2(c->file, name, H5P_DEFAULT);
    if (*ds < 0) return fail(c, LB_EFORMAT, "cannot open dataset '%s' (%s)", name, h5_reason(why));
    return LB_OK;
}

/* Type and dims of an open dataset. */
static lb_status dataset_info(lb_ckpt *c, hid_t ds, const char *name, int *type, int *ndim, long long *dims) {
    char why[256];
    hid_t ft = H5Dget_type(ds);
    hid_t space = H5Dget_space(ds);
    lb_status s = LB_OK;
    int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (ft < 0 || nd < 0) {
        s = fail(c, LB_EFORMAT, "dataset '%s': cannot read its type or shape (%s)", name, h5_reason(why));
    } else if (nd > LB_CKPT_MAX_DIMS) {
        s = fail(c, LB_EINVAL, "dataset '%s': %d dimensions (at most %d supported)", name, nd, LB_CKPT_MAX_DIMS);
    } else {
        hsize_t d[LB_CKPT_MAX_DIMS];
        H5Sget_simple_extent_dims(space, d, NULL);
        for (int i = 0; i < nd; i++) dims[i] = (long long)d[i];
        *ndim = nd;
        *type = classify(ft);
    }
    if (space >= 0) H5Sclose(space);
    if (ft >= 0) H5Tclose(ft);
    return s;
}

lb_status lb_ckpt_type_of(lb_ckpt *c, const char *name_in, lb_dtype *type) {
    char name[NAME_MAX_LEN];
    hid_t ds = -1;
    LB_TRY(open_dataset(c, name_in, &ds, name));
    int t, nd;
    long long dims[LB_CKPT_MAX_DIMS];
    lb_status s = dataset_info(c, ds, name, &t, &nd, dims);
    H5Dclose(ds);
    if (s == LB_OK && t < 0) s = fail(c, LB_EINVAL, "dataset '%s' holds %s, not an array of a lowbit dtype", name, stored_name(t));
    if (s == LB_OK) *type = (lb_dtype)t;
    return s;
}

int lb_ckpt_is_string(lb_ckpt *c, const char *name_in) {
    char name[NAME_MAX_LEN];
    hid_t ds = -1;
    if (open_dataset(c, name_in, &ds, name) != LB_OK) return 0;
    int t = STORED_OTHER, nd;
    long long dims[LB_CKPT_MAX_DIMS];
    lb_status s = dataset_info(c, ds, name, &t, &nd, dims);
    H5Dclose(ds);
    return s == LB_OK && t == STORED_STRING;
}

lb_status lb_ckpt_shape(lb_ckpt *c, const char *name_in, int *ndim, int *shape) {
    char name[NAME_MAX_LEN];
    hid_t ds = -1;
    LB_TRY(open_dataset(c, name_in, &ds, name));
    int t, nd;
    long long dims[LB_CKPT_MAX_DIMS];
    lb_status s = dataset_info(c, ds, name, &t, &nd, dims);
    H5Dclose(ds);
    for (int i = 0; s == LB_OK && i < nd; i++)
        if (dims[i] > 0x7fffffffLL) s = fail(c, LB_EINVAL, "dataset '%s': dimension %d is too large (%lld)", name, i, dims[i]);
    if (s != LB_OK) return s;
    *ndim = nd;
    for (int i = 0; i < nd; i++) shape[i] = (int)dims[i];
    return LB_OK;
}

lb_status lb_ckpt_get(lb_ckpt *c, const char *name_in, lb_dtype want, int ndim, const int *shape, void *data) {
    char name[NAME_MAX_LEN];
    hid_t ds = -1;
    LB_TRY(open_dataset(c, name_in, &ds, name));
    int t, nd;
    long long dims[LB_CKPT_MAX_DIMS];
    lb_status s = dataset_info(c, ds, name, &t, &nd, dims);
    if (s == LB_OK && mem_type(want) < 0) {
        const lb_dtype_traits *d = lb_dtype_info(want);
        s = fail(c, LB_EINVAL, "tensor '%s': dtype %s has no HDF5 type", name, d ? d->name : "(unknown)");
    }
    if (s == LB_OK && t != (int)want)
        s = fail(c, LB_EINVAL, "tensor '%s': expected type %s, found %s", name, lb_dtype_info(want)->name, stored_name(t));
    int same = s == LB_OK && nd == ndim && (ndim == 0 || shape);
    for (int i = 0; same && i < nd; i++) same = dims[i] == (long long)shape[i];
    if (s == LB_OK && !same) {
        char e[256], f[256];
        long long want_dims[LB_CKPT_MAX_DIMS];
        int wn = ndim < 0 ? 0 : ndim > LB_CKPT_MAX_DIMS ? LB_CKPT_MAX_DIMS : ndim;
        for (int i = 0; i < wn; i++) want_dims[i] = shape ? shape[i] : -1;
        s = fail(c, LB_EINVAL, "tensor '%s': expected shape %s, found %s", name, shape_str(wn, want_dims, e, sizeof e),
                 shape_str(nd, dims, f, sizeof f));
    }
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
    if (s == LB_OK && n > 0) {
        char why[256];
        if (!data) s = fail(c, LB_EINVAL, "tensor '%s': data is NULL", name);
        else if (H5Dread(ds, mem_type(want), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            s = fail(c, LB_EFORMAT, "tensor '%s': read failed (%s); the file is corrupt or truncated", name,
                     h5_reason(why));
    }
    H5Dclose(ds);
    return s;
}

lb_status lb_ckpt_get_string(lb_ckpt *c, const char *name_in, char **out) {
    if (!out) return lb_error(LB_EINVAL, "lb_ckpt_get_string: out is NULL");
    *out = NULL;
    char name[NAME_MAX_LEN], what[NAME_MAX_LEN + 16];
    hid_t ds = -1;
    LB_TRY(open_dataset(c, name_in, &ds, name));
    snprintf(what, sizeof what, "string '%s'", name);
    lb_status s = read_string(c, ds, 0, what, out);
    H5Dclose(ds);
    return s;
}

struct visit {
    const char *prefix;   /* the group's name, "" for the root */
    lb_ckpt_list_fn fn;
    void *ctx;
    lb_status status;
};

static herr_t visit_one(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    (void)obj;
    struct visit *v = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    char full[2 * NAME_MAX_LEN + 2];
    snprintf(full, sizeof full, "%s%s%s", v->prefix, v->prefix[0] ? "/" : "", name);
    v->status = v->fn(full, v->ctx);
    return v->status == LB_OK ? 0 : 1;   /* positive: stop the walk */
}

lb_status lb_ckpt_list(lb_ckpt *c, const char *group, lb_ckpt_list_fn fn, void *ctx) {
    if (!c || !fn) return lb_error(LB_EINVAL, "lb_ckpt_list: NULL argument");
    char name[NAME_MAX_LEN], why[256];
    LB_TRY(norm_name(c, group ? group : "", name, 1));
    if (!exists(c->file, name)) return fail(c, LB_EINVAL, "no group '%s'", name);
    hid_t g = H5Oopen(c->file, name, H5P_DEFAULT);
    if (g < 0) return fail(c, LB_EFORMAT, "cannot open group '%s' (%s)", name, h5_reason(why));
    struct visit v = {strcmp(name, "/") == 0 ? "" : name, fn, ctx, LB_OK};
    herr_t rc = H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_INC, visit_one, &v, H5O_INFO_BASIC);
    lb_status s = v.status;
    if (rc < 0 && s == LB_OK) s = fail(c, LB_EFORMAT, "cannot list group '%s' (%s)", name, h5_reason(why));
    H5Oclose(g);
    return s;
}

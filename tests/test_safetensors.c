/* safetensors reader and writer: round trips, the upstream layout byte for byte
 * (against scripts/reference/safetensors_ref.py, an independent reader and writer),
 * sharded models, and clean errors for every kind of broken file. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/minifloat.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "testutil_io.h"

/* --- a sample with one tensor of most dtypes --------------------------------------- */

typedef struct sample {
    const char *name, *dtype;
    int ndim;
    int64_t shape[3];
} sample;

static const sample samples[] = {
    {"model.layers.0.self_attn.q_proj.weight", "F32", 2, {4, 6}},
    {"model.norm.weight", "F16", 1, {6}},
    {"lm_head.weight", "BF16", 2, {3, 2}},
    {"f64", "F64", 1, {3}},
    {"fp8", "F8_E4M3", 1, {8}},
    {"e5m2", "F8_E5M2", 1, {4}},
    {"i8", "I8", 1, {5}},
    {"u8", "U8", 1, {5}},
    {"i16", "I16", 1, {2}},
    {"u16", "U16", 1, {2}},
    {"i32", "I32", 2, {1, 3}},
    {"u32", "U32", 1, {2}},
    {"i64", "I64", 1, {2}},
    {"u64", "U64", 1, {2}},
    {"bool", "BOOL", 1, {3}},
    {"scalar", "F32", 0, {0}},
    {"empty", "BF16", 2, {0, 3}},
    {"unicod\xc3\xa9 \xe2\x9c\x93", "F32", 3, {1, 1, 2}},
};
enum { N_SAMPLES = sizeof samples / sizeof samples[0] };

static uint64_t numel(const sample *s) {
    uint64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= (uint64_t)s->shape[d];
    return n;
}

static uint8_t *sample_bytes(int i, size_t *nbytes) {
    const sample *s = &samples[i];
    size_t n = (size_t)numel(s);
    *nbytes = n * (size_t)lb_st_dtype_bits(s->dtype) / 8;
    uint8_t *p = malloc(*nbytes + 1);
    uint64_t st = 77 + (uint64_t)i;
    for (size_t k = 0; k < *nbytes; k++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        p[k] = (uint8_t)(st >> 40);
    }
    if (!strcmp(s->dtype, "F32")) /* ordinary values */
        for (size_t k = 0; k < n; k++) ((float *)p)[k] = (float)k * 0.25f - 1.0f;
    if (!strcmp(s->dtype, "F64"))
        for (size_t k = 0; k < n; k++) ((double *)p)[k] = 1.0 / 3.0 + (double)k;
    return p;
}

static lb_status produce(void *ctx, void *dst, size_t nbytes) {
    size_t n;
    uint8_t *p = sample_bytes((int)(intptr_t)ctx, &n);
    assert_int_equal(n, nbytes);
    memcpy(dst, p, n);
    free(p);
    return LB_OK;
}

static void write_sample(const char *path, uint8_t **bytes) {
    lb_st_writer *w;
    assert_int_equal(lb_st_writer_begin(path, &w), LB_OK);
    for (int i = 0; i < N_SAMPLES; i++) {
        const sample *s = &samples[i];
        size_t n;
        bytes[i] = sample_bytes(i, &n);
        if (i % 4 == 3)
            assert_int_equal(lb_st_writer_add_fn(w, s->name, s->dtype, s->ndim, s->shape, produce, (void *)(intptr_t)i),
                             LB_OK);
        else
            assert_int_equal(lb_st_writer_add(w, s->name, s->dtype, s->ndim, s->shape, bytes[i]), LB_OK);
    }
    assert_int_equal(lb_st_writer_set_metadata(w, "format", "pt"), LB_OK);
    assert_int_equal(lb_st_writer_set_metadata(w, "note", "draft"), LB_OK);
    assert_int_equal(lb_st_writer_set_metadata(w, "note", "r\xc3\xa9" "f"), LB_OK); /* replaces */
    assert_int_equal(lb_st_writer_commit(w), LB_OK);
}

static void test_round_trip(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint8_t *bytes[N_SAMPLES];
    write_sample(path, bytes);
    lb_st *st;
    assert_int_equal(lb_st_open(dir, &st), LB_OK); /* the directory finds model.safetensors */
    assert_int_equal(lb_st_count(st), N_SAMPLES);
    assert_string_equal(lb_st_metadata(st, "format"), "pt");
    assert_string_equal(lb_st_metadata(st, "note"), "r\xc3\xa9" "f");
    assert_int_equal(lb_st_metadata_count(st), 2);
    for (int i = 0; i < N_SAMPLES; i++) {
        const sample *s = &samples[i];
        const lb_st_tensor *t = lb_st_find(st, s->name);
        assert_non_null(t);
        assert_string_equal(t->dtype, s->dtype);
        assert_int_equal(t->ndim, s->ndim);
        for (int d = 0; d < s->ndim; d++) assert_int_equal(t->shape[d], s->shape[d]);
        assert_int_equal(t->nelements, numel(s));
        size_t n;
        uint8_t *want = sample_bytes(i, &n);
        assert_int_equal(t->nbytes, n);
        if (n) assert_memory_equal(t->data, want, n);
        /* data aligned to the element size, as the upstream order guarantees */
        assert_int_equal(((uintptr_t)t->data - (uintptr_t)lb_st_at(st, 0)->data) % (size_t)(lb_st_dtype_bits(t->dtype) / 8), 0);
        free(want);
    }
    /* float32 conversion */
    const lb_st_tensor *t = lb_st_find(st, "lm_head.weight");
    float f[6];
    assert_int_equal(lb_st_to_f32(st, t, f, 6), LB_OK);
    for (int k = 0; k < 6; k++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * k, 2);
        assert_true(memcmp(&f[k], &(float){lb_bf16_to_f32(h)}, 4) == 0);
    }
    assert_int_equal(lb_st_to_f32(st, t, f, 5), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "'lm_head.weight' has 6 elements"));
    assert_null(lb_st_find(st, "missing"));
    lb_st_close(st);
    for (int i = 0; i < N_SAMPLES; i++) free(bytes[i]);
    tu_rmdir(dir);
}

/* --- broken files ------------------------------------------------------------------ */

static lb_status parse_copy(const uint8_t *p, size_t n) {
    uint8_t *c = tu_exact_copy(p, n);
    lb_st *st = NULL;
    lb_status s = lb_st_parse(c, n, "bad.safetensors", &st);
    lb_st_close(st);
    free(c);
    return s;
}

/* A file of `header` (padded with spaces when pad is set) and `data_len` zero bytes. */
static void build(tu_bytes *b, const char *header, size_t data_len, int pad) {
    b->n = 0;
    size_t len = strlen(header), padded = pad ? (len + 7) / 8 * 8 : len;
    tu_put_u64(b, padded);
    tu_put(b, header, len);
    for (size_t i = len; i < padded; i++) tu_put(b, " ", 1);
    tu_put_zeros(b, data_len);
}

static void expect_error(const tu_bytes *b, const char *msg) {
    lb_status s = parse_copy(b->p, b->n);
    if (s != LB_EFORMAT) fail_msg("expected a format error with '%s', got %s: %s", msg, lb_status_name(s), lb_errmsg());
    if (!strstr(lb_errmsg(), msg) || !strstr(lb_errmsg(), "safetensors 'bad.safetensors'"))
        fail_msg("message '%s' lacks '%s'", lb_errmsg(), msg);
}

static void expect_ok(const char *header, size_t data_len, int pad) {
    tu_bytes b = {0};
    build(&b, header, data_len, pad);
    if (parse_copy(b.p, b.n) != LB_OK) fail_msg("'%s' refused: %s", header, lb_errmsg());
    free(b.p);
}

static void expect_bad(const char *header, size_t data_len, const char *msg) {
    tu_bytes b = {0};
    build(&b, header, data_len, 1);
    expect_error(&b, msg);
    free(b.p);
}

static void test_truncated_everywhere(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    uint8_t *bytes[N_SAMPLES];
    write_sample(path, bytes);
    size_t n;
    uint8_t *file = tu_read_file(path, &n);
    assert_int_equal(parse_copy(file, n), LB_OK);
    for (size_t len = 0; len < n; len++)
        if (parse_copy(file, len) != LB_EFORMAT) fail_msg("prefix of %zu bytes: %s", len, lb_errmsg());
    /* one byte too many is refused too: the data must end the file */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, file, n);
    longer[n] = 0;
    assert_int_equal(parse_copy(longer, n + 1), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "after the header"));
    free(longer);
    free(file);
    for (int i = 0; i < N_SAMPLES; i++) free(bytes[i]);
    tu_rmdir(dir);
}

static void test_lying_headers(void **state) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_ok(ok, 8, 1);
    expect_ok(ok, 8, 0);
    /* tensors listed out of order are fine: they are sorted by offset */
    expect_ok("{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"__metadata__\":null}",
              5, 1);
    expect_ok("{}", 0, 1);
    expect_ok("  {}\n\t", 0, 1); /* whitespace around the object */

    tu_bytes b = {0};
    tu_put(&b, "\x10\0\0\0\0\0", 6);
    expect_error(&b, "header too small: 6 bytes");
    b.n = 0;
    tu_put_u64(&b, 100000001);
    expect_error(&b, "header length 100000001 is larger than the 100000000 allowed");
    b.n = 0;
    tu_put_u64(&b, UINT64_MAX);
    expect_error(&b, "is larger than");
    b.n = 0;
    tu_put_u64(&b, 64);
    tu_put(&b, "{}", 2);
    expect_error(&b, "header length 64 runs past the end of the file (10 bytes)");
    build(&b, "{\"a\xff\":{}}", 0, 1);
    expect_error(&b, "header is not valid UTF-8 (byte 3");
    build(&b, "{\"\xed\xa0\x80\":{}}", 0, 1); /* an encoded surrogate */
    expect_error(&b, "not valid UTF-8");
    build(&b, "{\"\xc0\xaf\":{}}", 0, 1); /* overlong */
    expect_error(&b, "not valid UTF-8");
    expect_bad("{\"a\":", 0, "header is not valid JSON");
    expect_bad("{} x", 0, "header is not valid JSON");
    build(&b, "{}\0\0\0\0\0\0", 0, 0);
    b.n = 0;
    tu_put_u64(&b, 8);
    tu_put(&b, "{}\0\0\0\0\0\0", 8); /* NUL padding is not whitespace */
    expect_error(&b, "header is not valid JSON");
    expect_bad("[]", 0, "header is not a JSON object");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "duplicate object key");
    expect_bad("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'a': unknown dtype 'Q4'");
    expect_bad("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'a': \"dtype\" is missing");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "tensor 'a': \"shape\" is missing");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "tensor 'a': \"data_offsets\" is missing");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, "non-negative integers");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1, "non-negative integers");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, "not [begin, end]");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}", 1, "two non-negative integers");
    expect_bad("{\"a\":3}", 0, "tensor 'a': expected an object");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               "overflows");
    expect_bad("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1, "not a whole number of bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
               "tensor 'a': data_offsets [0, 4) hold 4 bytes, shape [2] of F32 needs 8");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "do not start where");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
               8, "tensor 'b': data_offsets [2, 6) do not start where the previous tensor ends");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "do not make a range");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
               "the tensors cover 4 bytes of data but the file has 12 after the header");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 8, "cover 400 bytes");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "the value of 'k' is not a string");
    expect_bad("{\"__metadata__\":[]}", 0, "\"__metadata__\" is not an object");
    free(b.p);

    lb_st *st;
    assert_int_equal(lb_st_open("/nonexistent/m.safetensors", &st), LB_EIO);
    assert_non_null(strstr(lb_errmsg(), "/nonexistent/m.safetensors"));
}

static void test_writer_errors(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    tu_write_file(path, "old", 3);
    float x[4] = {0};
    lb_st_writer *w;
    struct {
        int what;
        const char *msg;
    } cases[] = {{0, "added twice"}, {1, "unknown dtype 'F33'"}, {2, "cannot name a tensor"},
                 {3, "not a whole number of bytes"}, {4, "dimension 0 is -1"}, {5, "not valid UTF-8"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        assert_int_equal(lb_st_writer_begin(path, &w), LB_OK);
        lb_status s = LB_OK;
        switch (cases[c].what) {
        case 0:
            lb_st_writer_add(w, "a", "F32", 1, (int64_t[]){4}, x);
            s = lb_st_writer_add(w, "a", "F32", 1, (int64_t[]){4}, x);
            break;
        case 1: s = lb_st_writer_add(w, "a", "F33", 1, (int64_t[]){4}, x); break;
        case 2: s = lb_st_writer_add(w, "__metadata__", "F32", 1, (int64_t[]){4}, x); break;
        case 3: s = lb_st_writer_add(w, "a", "F4", 1, (int64_t[]){3}, x); break;
        case 4: s = lb_st_writer_add(w, "a", "F32", 1, (int64_t[]){-1}, x); break;
        case 5: s = lb_st_writer_add(w, "a\xff", "F32", 1, (int64_t[]){4}, x); break;
        }
        assert_int_equal(s, LB_EINVAL);
        if (!strstr(lb_errmsg(), cases[c].msg)) fail_msg("message '%s' lacks '%s'", lb_errmsg(), cases[c].msg);
        assert_int_not_equal(lb_st_writer_commit(w), LB_OK);
    }
    assert_int_equal(lb_st_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_st_writer_add(w, "a", "F32", 1, (int64_t[]){4}, x), LB_OK);
    lb_st_writer_abort(w);
    size_t n;
    uint8_t *old = tu_read_file(path, &n);
    assert_true(n == 3 && memcmp(old, "old", 3) == 0);
    free(old);
    tu_assert_only_file(dir, "out.safetensors");
    tu_rmdir(dir);
}

/* --- sharded models ----------------------------------------------------------------- */

static void write_shard(const char *path, const char *const *names, int n) {
    lb_st_writer *w;
    float x[2] = {1, 2};
    assert_int_equal(lb_st_writer_begin(path, &w), LB_OK);
    for (int i = 0; i < n; i++) assert_int_equal(lb_st_writer_add(w, names[i], "F32", 1, (int64_t[]){2}, x), LB_OK);
    assert_int_equal(lb_st_writer_commit(w), LB_OK);
}

static void expect_index_error(const char *dir, const char *index, const char *msg) {
    char path[400];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    tu_write_file(path, index, strlen(index));
    lb_st *st;
    lb_status s = lb_st_open(dir, &st);
    if (s == LB_OK) {
        lb_st_close(st);
        fail_msg("index accepted: %s", index);
    }
    if (!strstr(lb_errmsg(), msg)) fail_msg("message '%s' lacks '%s'", lb_errmsg(), msg);
}

static void test_sharded_errors(void **state) {
    char dir[256], path[400];
    tu_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/s1.safetensors", dir);
    write_shard(path, (const char *[]){"a", "b"}, 2);
    snprintf(path, sizeof path, "%s/s2.safetensors", dir);
    write_shard(path, (const char *[]){"c", "b"}, 2);
    snprintf(path, sizeof path, "%s/s3.safetensors", dir);
    write_shard(path, (const char *[]){"d"}, 1);

    char idx[400];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    const char *good = "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"d\":\"s3.safetensors\"}}";
    tu_write_file(idx, good, strlen(good));
    lb_st *st;
    assert_int_equal(lb_st_open(idx, &st), LB_OK);
    assert_int_equal(lb_st_count(st), 3);
    assert_string_equal(lb_st_at(st, 2)->name, "d");
    assert_non_null(strstr(lb_st_find(st, "d")->file, "s3.safetensors"));
    lb_st_close(st);

    expect_index_error(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}",
                       "shard 's1.safetensors' holds tensor 'b', which the index puts in 's2.safetensors'");
    expect_index_error(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\"}}",
                       "shard 's1.safetensors' holds tensor 'b', which the index does not list");
    expect_index_error(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"x\":\"s3.safetensors\"}}",
                       "shard 's3.safetensors' holds tensor 'd', which the index does not list");
    expect_index_error(dir, "{\"weight_map\":{\"d\":\"s3.safetensors\",\"e\":\"s3.safetensors\"}}",
                       "tensor 'e' is not in its shard 's3.safetensors'");
    expect_index_error(dir, "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", "must be a file name");
    expect_index_error(dir, "{\"weight_map\":{\"a\":7}}", "must be a file name");
    expect_index_error(dir, "{\"metadata\":{}}", "no \"weight_map\" object");
    expect_index_error(dir, "{\"weight_map\":", "not valid JSON");
    expect_index_error(dir, "{\"weight_map\":{\"q\":\"missing.safetensors\"}}", "missing.safetensors");
    tu_rmdir(dir);
}

/* --- the independent reference ------------------------------------------------------- */

/* lowbit's reading of `path` equals the reference's canonical JSON of it. */
static void compare_with_reference(const char *path, const char *json_path) {
    json_error_t err;
    json_t *ref = json_load_file(json_path, 0, &err);
    if (!ref) fail_msg("%s: %s", json_path, err.text);
    lb_st *st;
    if (lb_st_open(path, &st) != LB_OK) fail_msg("%s", lb_errmsg());
    json_t *meta = json_object_get(ref, "metadata"), *ts = json_object_get(ref, "tensors");
    assert_int_equal(json_object_size(meta), lb_st_metadata_count(st));
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) assert_string_equal(lb_st_metadata(st, k), json_string_value(v));
    assert_int_equal(json_array_size(ts), lb_st_count(st));
    for (size_t i = 0; i < lb_st_count(st); i++) {
        const lb_st_tensor *t = lb_st_at(st, i);
        json_t *r = json_array_get(ts, i), *shape = json_object_get(r, "shape");
        assert_string_equal(json_string_value(json_object_get(r, "name")), t->name);
        assert_string_equal(json_string_value(json_object_get(r, "dtype")), t->dtype);
        assert_int_equal(json_array_size(shape), t->ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(json_integer_value(json_array_get(shape, (size_t)d)), t->shape[d]);
        const char *hex = json_string_value(json_object_get(r, "hex"));
        assert_int_equal(strlen(hex), 2 * t->nbytes);
        for (uint64_t b = 0; b < t->nbytes; b++) {
            unsigned byte;
            sscanf(hex + 2 * b, "%2x", &byte);
            assert_int_equal(byte, ((const uint8_t *)t->data)[b]);
        }
        /* decoded values, for the dtypes lowbit has (BOOL and U64 it has not) */
        lb_dtype dt;
        int known = lb_dtype_by_safetensors(t->dtype, &dt);
        assert_int_equal(t->dt, known ? (int)dt : -1);
        json_t *f32 = json_object_get(r, "f32");
        if (!known) {
            float one;
            assert_int_equal(lb_st_to_f32(st, t, &one, (size_t)t->nelements), LB_EINVAL); /* before writing anything */
            continue;
        }
        assert_non_null(f32);
        float *f = malloc((size_t)t->nelements * sizeof *f + 1);
        assert_int_equal(lb_st_to_f32(st, t, f, (size_t)t->nelements), LB_OK);
        for (size_t e = 0; e < t->nelements; e++) {
            uint32_t mine, want = (uint32_t)strtoul(json_string_value(json_array_get(f32, e)), NULL, 10);
            memcpy(&mine, f + e, 4);
            if (mine != want && !isnan(f[e]))
                fail_msg("tensor '%s' (%s) element %zu: lowbit %08x, the reference %08x", t->name, t->dtype, e, mine,
                         want);
        }
        free(f);
    }
    lb_st_close(st);
    json_decref(ref);
}

static void test_independent_reference(void **state) {
    tu_require_python_numpy();
    char dir[256], a[300], b[300], json[300], cmd[2048];
    const char *script = "scripts/reference/safetensors_ref.py";
    const char *src = tu_source_dir();
    tu_tmpdir(dir, sizeof dir, "st");

    /* lowbit writes; the reference reads it, and its own writer, laying the same
     * tensors out the upstream way, produces the very same bytes */
    snprintf(a, sizeof a, "%s/lowbit.safetensors", dir);
    snprintf(b, sizeof b, "%s/rewritten.safetensors", dir);
    snprintf(json, sizeof json, "%s/lowbit.json", dir);
    uint8_t *bytes[N_SAMPLES];
    write_sample(a, bytes);
    snprintf(cmd, sizeof cmd, TU_PYTHON " '%s/%s' dump '%s' > '%s'", src, script, a, json);
    tu_run_ok(cmd);
    compare_with_reference(a, json);
    snprintf(cmd, sizeof cmd, TU_PYTHON " '%s/%s' rewrite '%s' '%s' > /dev/null", src, script, a, b);
    tu_run_ok(cmd);
    size_t na, nb;
    uint8_t *fa = tu_read_file(a, &na), *fb = tu_read_file(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa);
    free(fb);

    /* the reference writes; lowbit reads */
    snprintf(a, sizeof a, "%s/python.safetensors", dir);
    snprintf(json, sizeof json, "%s/python.json", dir);
    snprintf(cmd, sizeof cmd, TU_PYTHON " '%s/%s' write '%s' > '%s'", src, script, a, json);
    tu_run_ok(cmd);
    compare_with_reference(a, json);

    /* a sharded model written by the reference, opened by its directory */
    snprintf(a, sizeof a, "%s/sharded", dir);
    snprintf(json, sizeof json, "%s/sharded.json", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && " TU_PYTHON " '%s/%s' write-sharded '%s' > '%s'", a, src, script, a,
             json);
    tu_run_ok(cmd);
    compare_with_reference(a, json);

    for (int i = 0; i < N_SAMPLES; i++) free(bytes[i]);
    tu_rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_sharded_errors),
        cmocka_unit_test(test_independent_reference),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

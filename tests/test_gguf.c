/* GGUF reader and writer: round trips of every value and tensor type, the exact
 * bytes and padding, agreement with two independent readers (scripts/reference/
 * gguf_ref.py, written from the specification, and the npm package @huggingface/gguf)
 * in both directions, and clean errors for every kind of broken file. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/minifloat.h"
#include "io/gguf.h"
#include "testutil.h"
#include "testutil_io.h"

/* --- a sample file with one of everything ----------------------------------------- */

typedef struct sample_tensor {
    const char *name;
    lb_dtype dt;
    int ndim;
    int64_t shape[4];
} sample_tensor;

/* The ggml type id of a lowbit dtype. */
static int gt(lb_dtype d) { return lb_dtype_info(d)->gguf_type; }

static const sample_tensor sample_tensors[] = {
    {"token_embd.weight", LB_DT_F32, 2, {3, 8}},
    {"f16.weight", LB_DT_F16, 1, {5}},
    {"bf16.weight", LB_DT_BF16, 3, {2, 1, 3}},
    {"f64.weight", LB_DT_F64, 1, {3}},
    {"i8.weight", LB_DT_I8, 1, {7}},
    {"i16.weight", LB_DT_I16, 1, {3}},
    {"i32.weight", LB_DT_I32, 1, {2}},
    {"i64.weight", LB_DT_I64, 1, {2}},
    {"blk.0.attn_q.weight", LB_DT_Q8_0, 2, {2, 64}},
    {"blk.0.attn_k.weight", LB_DT_Q4_0, 2, {3, 32}},
    {"blk.0.ffn_up.weight", LB_DT_TQ1_0, 2, {2, 256}},
    {"blk.0.ffn_down.weight", LB_DT_TQ2_0, 4, {1, 1, 2, 512}},
};
enum { N_SAMPLE = sizeof sample_tensors / sizeof sample_tensors[0] };

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static uint64_t numel(const sample_tensor *t) {
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    return n;
}

/* The bytes of sample tensor i: random values in the tensor's type. */
static uint8_t *sample_bytes(int i, size_t *nbytes) {
    const sample_tensor *t = &sample_tensors[i];
    size_t n = (size_t)numel(t);
    *nbytes = lb_dtype_row_bytes(t->dt, n);
    uint8_t *p = malloc(*nbytes);
    float *x = malloc(n * sizeof *x);
    uint64_t s = 1000 + (uint64_t)i;
    for (size_t j = 0; j < n; j++) x[j] = ((float)lcg(&s) / 2147483648.0f - 1.0f) * 3.0f;
    if (lb_dtype_info(t->dt)->cls == LB_DC_FLOAT || lb_dtype_info(t->dt)->cls == LB_DC_BLOCK)
        lb_dtype_info(t->dt)->from_f32(x, p, n);
    else /* integers: random bytes */
        for (size_t j = 0; j < *nbytes; j++) p[j] = (uint8_t)lcg(&s);
    free(x);
    return p;
}

static lb_status produce_sample(void *ctx, void *dst, size_t nbytes) {
    size_t n;
    uint8_t *p = sample_bytes((int)(intptr_t)ctx, &n);
    assert_int_equal(n, nbytes);
    memcpy(dst, p, n);
    free(p);
    return LB_OK;
}

enum { N_TOKENS = 1000 };
static void token(int i, char *buf, size_t size) {
    if (i == 0) snprintf(buf, size, "%s", "");
    else if (i == 1) snprintf(buf, size, "%s", "\xc3\xbc\xe2\x9c\x93 (UTF-8)");
    else snprintf(buf, size, "tok%d", i);
}

static void write_sample(const char *path, uint8_t **bytes) {
    lb_gguf_writer *w;
    assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_gguf_set_str(w, "general.architecture", "llama"), LB_OK);
    assert_int_equal(lb_gguf_set_str(w, "general.name", "lowbit \xe2\x9c\x93"), LB_OK);
    assert_int_equal(lb_gguf_set_u8(w, "t.u8", 255), LB_OK);
    assert_int_equal(lb_gguf_set_i8(w, "t.i8", -128), LB_OK);
    assert_int_equal(lb_gguf_set_u16(w, "t.u16", 65535), LB_OK);
    assert_int_equal(lb_gguf_set_i16(w, "t.i16", -32768), LB_OK);
    assert_int_equal(lb_gguf_set_u32(w, "t.u32", 4294967295u), LB_OK);
    assert_int_equal(lb_gguf_set_i32(w, "t.i32", INT32_MIN), LB_OK);
    assert_int_equal(lb_gguf_set_f32(w, "t.f32", -0.1f), LB_OK);
    assert_int_equal(lb_gguf_set_bool(w, "t.bool", 1), LB_OK);
    assert_int_equal(lb_gguf_set_u64(w, "t.u64", UINT64_MAX), LB_OK);
    assert_int_equal(lb_gguf_set_i64(w, "t.i64", INT64_MIN), LB_OK);
    assert_int_equal(lb_gguf_set_f64(w, "t.f64", 1e-300), LB_OK);
    assert_int_equal(lb_gguf_set_str(w, "t.empty", ""), LB_OK);
    /* a vocabulary, streamed */
    assert_int_equal(lb_gguf_begin_array(w, "tokenizer.ggml.tokens", LB_GGUF_STRING, N_TOKENS), LB_OK);
    for (int i = 0; i < N_TOKENS; i++) {
        char tok[32];
        token(i, tok, sizeof tok);
        assert_int_equal(lb_gguf_push_str(w, tok, strlen(tok)), LB_OK);
    }
    assert_int_equal(lb_gguf_end_array(w), LB_OK);
    const char *merges[] = {"a b", "\xc4\xa0 t"};
    assert_int_equal(lb_gguf_set_str_array(w, "tokenizer.ggml.merges", 2, merges), LB_OK);
    /* numeric arrays of every type */
    uint8_t u8s[] = {0, 1, 255};
    int8_t i8s[] = {-128, 127};
    uint16_t u16s[] = {65535};
    int16_t i16s[] = {-2, 3};
    uint32_t u32s[] = {7, 4000000000u};
    int32_t i32s[] = {-5, 6, INT32_MAX};
    float f32s[] = {1.5f, -0.0f, FLT_MAX, 1e-45f};
    uint8_t bools[] = {1, 0, 1};
    uint64_t u64s[] = {UINT64_MAX, 0};
    int64_t i64s[] = {INT64_MIN, 9};
    double f64s[] = {-2.5, 1e300};
    assert_int_equal(lb_gguf_set_array(w, "a.u8", LB_GGUF_U8, 3, u8s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.i8", LB_GGUF_I8, 2, i8s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.u16", LB_GGUF_U16, 1, u16s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.i16", LB_GGUF_I16, 2, i16s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.u32", LB_GGUF_U32, 2, u32s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.i32", LB_GGUF_I32, 3, i32s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.f32", LB_GGUF_F32, 4, f32s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.bool", LB_GGUF_BOOL, 3, bools), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.u64", LB_GGUF_U64, 2, u64s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.i64", LB_GGUF_I64, 2, i64s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.f64", LB_GGUF_F64, 2, f64s), LB_OK);
    assert_int_equal(lb_gguf_set_array(w, "a.empty", LB_GGUF_U32, 0, NULL), LB_OK);
    /* an array of arrays: [["a", "bc"], [1, -2, 3], [[true]]] */
    assert_int_equal(lb_gguf_begin_array(w, "a.nested", LB_GGUF_ARRAY, 3), LB_OK);
    assert_int_equal(lb_gguf_begin_array(w, NULL, LB_GGUF_STRING, 2), LB_OK);
    assert_int_equal(lb_gguf_push_str(w, "a", 1), LB_OK);
    assert_int_equal(lb_gguf_push_str(w, "bc", 2), LB_OK);
    assert_int_equal(lb_gguf_end_array(w), LB_OK);
    assert_int_equal(lb_gguf_begin_array(w, NULL, LB_GGUF_I32, 3), LB_OK);
    for (int32_t v = 1; v <= 3; v++) {
        int32_t x = v == 2 ? -2 : v;
        assert_int_equal(lb_gguf_push(w, &x), LB_OK);
    }
    assert_int_equal(lb_gguf_end_array(w), LB_OK);
    assert_int_equal(lb_gguf_begin_array(w, NULL, LB_GGUF_ARRAY, 1), LB_OK);
    assert_int_equal(lb_gguf_begin_array(w, NULL, LB_GGUF_BOOL, 1), LB_OK);
    uint8_t t = 1;
    assert_int_equal(lb_gguf_push(w, &t), LB_OK);
    assert_int_equal(lb_gguf_end_array(w), LB_OK);
    assert_int_equal(lb_gguf_end_array(w), LB_OK);
    assert_int_equal(lb_gguf_end_array(w), LB_OK);

    for (int i = 0; i < N_SAMPLE; i++) {
        const sample_tensor *st = &sample_tensors[i];
        size_t n;
        bytes[i] = sample_bytes(i, &n);
        if (i % 3 == 2) /* some through a producer */
            assert_int_equal(lb_gguf_add_tensor_fn(w, st->name, gt(st->dt), st->ndim, st->shape, produce_sample,
                                                   (void *)(intptr_t)i),
                             LB_OK);
        else
            assert_int_equal(lb_gguf_add_tensor(w, st->name, gt(st->dt), st->ndim, st->shape, bytes[i]), LB_OK);
    }
    assert_int_equal(lb_gguf_writer_commit(w), LB_OK);
}

static void check_sample(const lb_gguf *g, uint8_t **bytes) {
    assert_int_equal(lb_gguf_version(g), 3);
    assert_int_equal(lb_gguf_alignment(g), 32);
    assert_int_equal(lb_gguf_data_offset(g) % 32, 0);
    int64_t i;
    double d;
    int b;
    lb_gguf_str s;
    assert_int_equal(lb_gguf_get_str(g, "general.architecture", &s), LB_OK);
    assert_true(s.len == 5 && memcmp(s.s, "llama", 5) == 0);
    assert_int_equal(lb_gguf_get_int(g, "t.u8", &i), LB_OK), assert_int_equal(i, 255);
    assert_int_equal(lb_gguf_get_int(g, "t.i8", &i), LB_OK), assert_int_equal(i, -128);
    assert_int_equal(lb_gguf_get_int(g, "t.u16", &i), LB_OK), assert_int_equal(i, 65535);
    assert_int_equal(lb_gguf_get_int(g, "t.i16", &i), LB_OK), assert_int_equal(i, -32768);
    assert_int_equal(lb_gguf_get_int(g, "t.u32", &i), LB_OK), assert_int_equal(i, 4294967295ll);
    assert_int_equal(lb_gguf_get_int(g, "t.i32", &i), LB_OK), assert_int_equal(i, INT32_MIN);
    assert_int_equal(lb_gguf_get_int(g, "t.i64", &i), LB_OK), assert_true(i == INT64_MIN);
    assert_int_equal(lb_gguf_get_int(g, "t.u64", &i), LB_EFORMAT); /* above INT64_MAX */
    assert_true(lb_gguf_value_u64(lb_gguf_find(g, "t.u64"), 0) == UINT64_MAX);
    assert_int_equal(lb_gguf_get_float(g, "t.f32", &d), LB_OK), assert_true(d == (double)-0.1f);
    assert_int_equal(lb_gguf_get_float(g, "t.f64", &d), LB_OK), assert_true(d == 1e-300);
    assert_int_equal(lb_gguf_get_bool(g, "t.bool", &b), LB_OK), assert_int_equal(b, 1);
    assert_int_equal(lb_gguf_get_str(g, "t.empty", &s), LB_OK), assert_int_equal(s.len, 0);
    /* wrong types and missing keys are errors naming the key */
    assert_int_equal(lb_gguf_get_str(g, "t.u8", &s), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "'t.u8'"));
    assert_non_null(strstr(lb_errmsg(), "found u8"));
    assert_int_equal(lb_gguf_get_int(g, "no.such.key", &i), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "'no.such.key' is missing"));

    const lb_gguf_value *v;
    assert_int_equal(lb_gguf_get_array(g, "tokenizer.ggml.tokens", LB_GGUF_STRING, &v), LB_OK);
    assert_int_equal(v->n, N_TOKENS);
    for (int k = 0; k < N_TOKENS; k++) {
        char tok[32];
        token(k, tok, sizeof tok);
        lb_gguf_str e = lb_gguf_value_str(v, (uint64_t)k);
        assert_true(e.len == strlen(tok) && memcmp(e.s, tok, e.len) == 0);
    }
    assert_int_equal(lb_gguf_get_array(g, "tokenizer.ggml.tokens", LB_GGUF_U32, &v), LB_EFORMAT);
    assert_non_null(strstr(lb_errmsg(), "found an array of str"));
    assert_int_equal(lb_gguf_get_array(g, "a.i32", LB_GGUF_I32, &v), LB_OK);
    assert_true(v->n == 3 && lb_gguf_value_i64(v, 0) == -5 && lb_gguf_value_i64(v, 2) == INT32_MAX);
    assert_int_equal(lb_gguf_get_array(g, "a.f32", LB_GGUF_F32, &v), LB_OK);
    assert_true(lb_gguf_value_f64(v, 2) == FLT_MAX && lb_gguf_value_f64(v, 3) == 1e-45f);
    assert_int_equal(lb_gguf_get_array(g, "a.bool", LB_GGUF_BOOL, &v), LB_OK);
    assert_true(lb_gguf_value_i64(v, 0) == 1 && lb_gguf_value_i64(v, 1) == 0);
    assert_int_equal(lb_gguf_get_array(g, "a.u64", LB_GGUF_U64, &v), LB_OK);
    assert_true(lb_gguf_value_u64(v, 0) == UINT64_MAX);
    assert_int_equal(lb_gguf_get_array(g, "a.empty", LB_GGUF_U32, &v), LB_OK);
    assert_int_equal(v->n, 0);
    assert_int_equal(lb_gguf_get_array(g, "a.nested", LB_GGUF_ARRAY, &v), LB_OK);
    assert_int_equal(v->n, 3);
    assert_true(v->items[0].elem == LB_GGUF_STRING && v->items[0].n == 2);
    assert_true(lb_gguf_value_str(&v->items[0], 1).len == 2);
    assert_true(v->items[1].elem == LB_GGUF_I32 && lb_gguf_value_i64(&v->items[1], 1) == -2);
    assert_true(v->items[2].elem == LB_GGUF_ARRAY && v->items[2].items[0].elem == LB_GGUF_BOOL);

    assert_int_equal(lb_gguf_tensor_count(g), N_SAMPLE);
    for (int k = 0; k < N_SAMPLE; k++) {
        const sample_tensor *st = &sample_tensors[k];
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, (size_t)k);
        assert_string_equal(t->name, st->name);
        assert_ptr_equal(lb_gguf_find_tensor(g, st->name), t);
        assert_int_equal(t->ggml_type, gt(st->dt));
        assert_int_equal(t->dtype, st->dt);
        assert_int_equal(t->ndim, st->ndim);
        for (int dd = 0; dd < st->ndim; dd++) assert_int_equal(t->shape[dd], st->shape[dd]);
        assert_int_equal(t->nelements, numel(st));
        assert_int_equal(t->offset % 32, 0);
        size_t n;
        uint8_t *want = bytes[k] ? bytes[k] : sample_bytes(k, &n);
        assert_memory_equal(t->data, want, (size_t)t->nbytes);
        if (!bytes[k]) free(want);
        float *f = malloc((size_t)t->nelements * sizeof *f);
        assert_int_equal(lb_gguf_tensor_to_f32(g, t, f, (size_t)t->nelements), LB_OK);
        free(f);
    }
    assert_null(lb_gguf_find_tensor(g, "missing"));
}

static void test_round_trip(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/sample.gguf", dir);
    uint8_t *bytes[N_SAMPLE] = {0};
    write_sample(path, bytes);
    lb_gguf *g;
    assert_int_equal(lb_gguf_open(path, &g), LB_OK);
    check_sample(g, bytes);
    lb_gguf_close(g);
    for (int i = 0; i < N_SAMPLE; i++) free(bytes[i]);
    tu_rmdir(dir);
}

/* --- exact bytes ------------------------------------------------------------------- */

static void put_str(tu_bytes *b, const char *s) {
    tu_put_u64(b, strlen(s));
    tu_put(b, s, strlen(s));
}

/* What ggml's gguf_write_to_file writes for one u8 key and two f32 tensors: the data
 * section and every tensor padded with zeros to 32 bytes. */
static void test_exact_bytes(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/small.gguf", dir);
    float a[3] = {1, 2, 3}, c[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    lb_gguf_writer *w;
    assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_gguf_set_u8(w, "k", 7), LB_OK);
    assert_int_equal(lb_gguf_add_tensor(w, "a", gt(LB_DT_F32), 1, (int64_t[]){3}, a), LB_OK);
    assert_int_equal(lb_gguf_add_tensor(w, "c", gt(LB_DT_F32), 2, (int64_t[]){2, 4}, c), LB_OK);
    assert_int_equal(lb_gguf_writer_commit(w), LB_OK);

    tu_bytes e = {0};
    tu_put(&e, "GGUF", 4);
    tu_put_u32(&e, 3);
    tu_put_u64(&e, 2);
    tu_put_u64(&e, 1);
    put_str(&e, "k");
    tu_put_u32(&e, LB_GGUF_U8);
    tu_put(&e, "\x07", 1);
    put_str(&e, "a");
    tu_put_u32(&e, 1);
    tu_put_u64(&e, 3);
    tu_put_u32(&e, gt(LB_DT_F32));
    tu_put_u64(&e, 0);
    put_str(&e, "c");
    tu_put_u32(&e, 2);
    tu_put_u64(&e, 4); /* ne[0]: the row */
    tu_put_u64(&e, 2);
    tu_put_u32(&e, gt(LB_DT_F32));
    tu_put_u64(&e, 32); /* 12 bytes of "a", padded */
    tu_put_zeros(&e, (32 - e.n % 32) % 32);
    tu_put(&e, a, sizeof a);
    tu_put_zeros(&e, 20);
    tu_put(&e, c, sizeof c);
    size_t n;
    uint8_t *got = tu_read_file(path, &n);
    assert_int_equal(n, e.n);
    assert_memory_equal(got, e.p, n);
    free(got);
    free(e.p);
    tu_rmdir(dir);
}

static void test_alignment_key(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/a64.gguf", dir);
    float x[5] = {0};
    lb_gguf_writer *w;
    assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_gguf_set_u32(w, "general.alignment", 64), LB_OK);
    assert_int_equal(lb_gguf_add_tensor(w, "x", gt(LB_DT_F32), 1, (int64_t[]){5}, x), LB_OK);
    assert_int_equal(lb_gguf_add_tensor(w, "y", gt(LB_DT_F32), 1, (int64_t[]){5}, x), LB_OK);
    assert_int_equal(lb_gguf_writer_commit(w), LB_OK);
    lb_gguf *g;
    assert_int_equal(lb_gguf_open(path, &g), LB_OK);
    assert_int_equal(lb_gguf_alignment(g), 64);
    assert_int_equal(lb_gguf_data_offset(g) % 64, 0);
    assert_int_equal(lb_gguf_tensor_at(g, 1)->offset, 64);
    lb_gguf_close(g);
    tu_rmdir(dir);
}

/* --- writer misuse ------------------------------------------------------------------ */

static void test_writer_errors(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    tu_write_file(path, "old content", 11);
    float x[64] = {0};
    lb_gguf_writer *w;

    /* a duplicate key fails, and so does commit; the old file stays */
    assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_gguf_set_u32(w, "a", 1), LB_OK);
    assert_int_equal(lb_gguf_set_u32(w, "a", 2), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "key 'a' set twice"));
    assert_int_equal(lb_gguf_set_u32(w, "b", 2), LB_EINVAL);
    assert_int_equal(lb_gguf_writer_commit(w), LB_EINVAL);

    /* a row that is not a multiple of the block names the tensor */
    assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_gguf_add_tensor(w, "blk.3.ffn_up.weight", gt(LB_DT_TQ2_0), 2, (int64_t[]){2, 32}, x), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "'blk.3.ffn_up.weight'"));
    assert_non_null(strstr(lb_errmsg(), "not a multiple of the tq2_0 block (256)"));
    lb_gguf_writer_abort(w);

    struct {
        const char *what, *msg;
    } cases[] = {
        {"dup tensor", "added twice"},   {"long name", "at most 63"},     {"bad type", "unknown ggml type 4"},
        {"open array", "array still open"}, {"too many", "more elements"}, {"too few", "after 1 of its 2"},
        {"alignment", "not a power of 2"}, {"5 dims", "1 to 4 allowed"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
        lb_status s = LB_OK;
        uint32_t one = 1;
        switch (c) {
        case 0:
            lb_gguf_add_tensor(w, "t", gt(LB_DT_F32), 1, (int64_t[]){1}, x);
            s = lb_gguf_add_tensor(w, "t", gt(LB_DT_F32), 1, (int64_t[]){1}, x);
            break;
        case 1: s = lb_gguf_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123",
                                       gt(LB_DT_F32), 1, (int64_t[]){1}, x);
            break;
        case 2: s = lb_gguf_add_tensor(w, "t", 4, 1, (int64_t[]){32}, x); break;
        case 3:
            lb_gguf_begin_array(w, "arr", LB_GGUF_U32, 1);
            s = lb_gguf_writer_commit(w);
            w = NULL;
            break;
        case 4:
            lb_gguf_begin_array(w, "arr", LB_GGUF_U32, 1);
            lb_gguf_push(w, &one);
            s = lb_gguf_push(w, &one);
            break;
        case 5:
            lb_gguf_begin_array(w, "arr", LB_GGUF_U32, 2);
            lb_gguf_push(w, &one);
            s = lb_gguf_end_array(w);
            break;
        case 6: s = lb_gguf_set_u32(w, "general.alignment", 48); break;
        case 7: s = lb_gguf_add_tensor(w, "t", gt(LB_DT_F32), 5, (int64_t[]){1, 1, 1, 1, 1}, x); break;
        }
        assert_int_not_equal(s, LB_OK);
        if (!strstr(lb_errmsg(), cases[c].msg)) fail_msg("%s: message '%s' lacks '%s'", cases[c].what, lb_errmsg(), cases[c].msg);
        if (w) assert_int_not_equal(lb_gguf_writer_commit(w), LB_OK);
    }
    size_t n;
    uint8_t *old = tu_read_file(path, &n);
    assert_true(n == 11 && memcmp(old, "old content", 11) == 0);
    free(old);

    /* a successful commit replaces the file; nothing else is left in the directory */
    assert_int_equal(lb_gguf_writer_begin(path, &w), LB_OK);
    assert_int_equal(lb_gguf_writer_commit(w), LB_OK);
    lb_gguf *g;
    assert_int_equal(lb_gguf_open(path, &g), LB_OK);
    assert_int_equal(lb_gguf_tensor_count(g), 0);
    lb_gguf_close(g);
    tu_assert_only_file(dir, "out.gguf");
    tu_rmdir(dir);
}

/* --- broken files ------------------------------------------------------------------- */

static lb_status parse_copy(const uint8_t *p, size_t n) {
    uint8_t *c = tu_exact_copy(p, n);
    lb_gguf *g = NULL;
    lb_status s = lb_gguf_parse(c, n, "bad.gguf", &g);
    lb_gguf_close(g);
    free(c);
    return s;
}

static void expect_error(const tu_bytes *b, const char *msg) {
    lb_status s = parse_copy(b->p, b->n);
    if (s != LB_EFORMAT) fail_msg("expected a format error with '%s', got %s: %s", msg, lb_status_name(s), lb_errmsg());
    if (!strstr(lb_errmsg(), msg) || !strstr(lb_errmsg(), "GGUF 'bad.gguf'"))
        fail_msg("message '%s' lacks '%s'", lb_errmsg(), msg);
}

/* Every prefix of a valid file is refused cleanly, up to the end of the last tensor's
 * data (the padding after it may be missing, as llama.cpp's loader allows). */
static void test_truncated_everywhere(void **state) {
    char dir[256], path[300];
    tu_tmpdir(dir, sizeof dir, "gguf");
    snprintf(path, sizeof path, "%s/sample.gguf", dir);
    uint8_t *bytes[N_SAMPLE] = {0};
    write_sample(path, bytes);
    size_t n;
    uint8_t *file = tu_read_file(path, &n);
    lb_gguf *g;
    assert_int_equal(lb_gguf_parse(file, n, "full", &g), LB_OK);
    const lb_gguf_tensor *last = lb_gguf_tensor_at(g, N_SAMPLE - 1);
    size_t end = (size_t)(lb_gguf_data_offset(g) + last->offset + last->nbytes);
    lb_gguf_close(g);
    for (size_t len = 0; len < end; len++) {
        lb_status s = parse_copy(file, len);
        if (s != LB_EFORMAT) fail_msg("prefix of %zu bytes: %s", len, lb_status_name(s));
    }
    assert_int_equal(parse_copy(file, end), LB_OK);
    free(file);
    for (int i = 0; i < N_SAMPLE; i++) free(bytes[i]);
    tu_rmdir(dir);
}

static void header(tu_bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    tu_put(b, "GGUF", 4);
    tu_put_u32(b, version);
    tu_put_u64(b, n_tensors);
    tu_put_u64(b, n_kv);
}

static void kv_u32(tu_bytes *b, const char *key, uint32_t type, uint32_t v) {
    put_str(b, key);
    tu_put_u32(b, type);
    tu_put_u32(b, v);
}

static void info(tu_bytes *b, const char *name, uint32_t ndim, const int64_t *ne, uint32_t type, uint64_t offset) {
    put_str(b, name);
    tu_put_u32(b, ndim);
    for (uint32_t d = 0; d < ndim; d++) tu_put_u64(b, (uint64_t)ne[d]);
    tu_put_u32(b, type);
    tu_put_u64(b, offset);
}

static void data(tu_bytes *b, size_t nbytes) {
    tu_put_zeros(b, (32 - b->n % 32) % 32);
    tu_put_zeros(b, nbytes);
}

static void test_lying_headers(void **state) {
    tu_bytes b = {0};
    /* the base case parses */
    header(&b, 3, 1, 1);
    kv_u32(&b, "k", LB_GGUF_U32, 1);
    info(&b, "t", 1, (int64_t[]){4}, gt(LB_DT_F32), 0);
    data(&b, 16);
    assert_int_equal(parse_copy(b.p, b.n), LB_OK);

    b.n = 0;
    tu_put(&b, "GGML\3\0\0\0", 8);
    expect_error(&b, "not a GGUF file (magic 'GGML'");
    header(&b, 1, 0, 0);
    expect_error(&b, "version 1 is no longer supported");
    header(&b, 4, 0, 0);
    expect_error(&b, "version 4 is newer");
    header(&b, 0x03000000, 0, 0);
    expect_error(&b, "big-endian");
    header(&b, 3, 1ull << 62, 0);
    expect_error(&b, "tensor count 4611686018427387904 cannot fit");
    header(&b, 3, 0, UINT64_MAX);
    expect_error(&b, "key-value count -1 cannot fit");
    header(&b, 3, 0, 1);
    tu_put_u64(&b, 1ull << 40);
    tu_put_zeros(&b, 16);
    expect_error(&b, "key 0: key of 1099511627776 bytes is longer than the 1073741824 allowed");
    header(&b, 3, 0, 1);
    tu_put_u64(&b, 1000);
    tu_put_zeros(&b, 16);
    expect_error(&b, "key 0: key of 1000 bytes runs past the end of the file");
    header(&b, 3, 0, 1);
    kv_u32(&b, "", LB_GGUF_U32, 1);
    expect_error(&b, "key 0: key is empty");
    header(&b, 3, 0, 1);
    put_str(&b, "a");
    b.p[b.n - 1] = 0;
    tu_put_u32(&b, LB_GGUF_U32);
    tu_put_u32(&b, 1);
    expect_error(&b, "key contains a NUL byte");
    header(&b, 3, 0, 1);
    kv_u32(&b, "k", 13, 1);
    expect_error(&b, "key 0 'k': unknown value type 13");
    header(&b, 3, 0, 2);
    kv_u32(&b, "k", LB_GGUF_U32, 1);
    kv_u32(&b, "k", LB_GGUF_U32, 1);
    expect_error(&b, "key 1 'k': duplicate key (also key 0)");
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    tu_put_u32(&b, LB_GGUF_ARRAY);
    tu_put_u32(&b, 99);
    tu_put_u64(&b, 1);
    expect_error(&b, "array of unknown value type 99");
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    tu_put_u32(&b, LB_GGUF_ARRAY);
    tu_put_u32(&b, LB_GGUF_U32);
    tu_put_u64(&b, 1ull << 31);
    expect_error(&b, "array of 2147483648 elements is longer than the 1073741824 allowed");
    header(&b, 3, 0, 1);
    put_str(&b, "arr");
    tu_put_u32(&b, LB_GGUF_ARRAY);
    tu_put_u32(&b, LB_GGUF_U32);
    tu_put_u64(&b, 1000);
    tu_put_zeros(&b, 40);
    expect_error(&b, "array of 1000 u32 elements cannot fit in the 40 bytes left");
    header(&b, 3, 0, 1);
    put_str(&b, "tokens");
    tu_put_u32(&b, LB_GGUF_ARRAY);
    tu_put_u32(&b, LB_GGUF_STRING);
    tu_put_u64(&b, 100000);
    tu_put_zeros(&b, 64);
    expect_error(&b, "array of 100000 str elements cannot fit");
    header(&b, 3, 0, 1); /* arrays nested 17 deep */
    put_str(&b, "deep");
    tu_put_u32(&b, LB_GGUF_ARRAY);
    for (int k = 0; k < 17; k++) {
        tu_put_u32(&b, LB_GGUF_ARRAY);
        tu_put_u64(&b, 1);
    }
    tu_put_u32(&b, LB_GGUF_U8);
    tu_put_u64(&b, 0);
    expect_error(&b, "nested deeper than 16 levels");
    header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    tu_put_u32(&b, LB_GGUF_U64);
    tu_put_u64(&b, 64);
    expect_error(&b, "key 'general.alignment': must be of type u32, found u64");
    header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", LB_GGUF_U32, 48);
    expect_error(&b, "alignment 48 is not a power of 2");

    /* tensor infos */
    header(&b, 3, 1, 0);
    info(&b, "0123456789012345678901234567890123456789012345678901234567890123", 1, (int64_t[]){4}, 0, 0);
    expect_error(&b, "tensor 0: name of 64 bytes is longer than the 63 allowed");
    header(&b, 3, 2, 0);
    info(&b, "t", 1, (int64_t[]){4}, gt(LB_DT_F32), 0);
    info(&b, "t", 1, (int64_t[]){4}, gt(LB_DT_F32), 32);
    data(&b, 64);
    expect_error(&b, "tensor 1 't': duplicate tensor name (also tensor 0)");
    header(&b, 3, 1, 0);
    info(&b, "t", 5, (int64_t[]){1, 1, 1, 1, 1}, gt(LB_DT_F32), 0);
    expect_error(&b, "tensor 0 't': 5 dimensions, at most 4 allowed");
    header(&b, 3, 1, 0);
    info(&b, "t", 2, (int64_t[]){4, -1}, gt(LB_DT_F32), 0);
    expect_error(&b, "dimension 1 is negative");
    header(&b, 3, 1, 0);
    info(&b, "t", 3, (int64_t[]){1 << 30, 1 << 30, 1 << 30}, gt(LB_DT_F32), 0);
    expect_error(&b, "more than 2^63 elements");
    const uint32_t bad_types[] = {4, 31, 43, 99, 0xffffffffu};
    for (size_t k = 0; k < sizeof bad_types / sizeof bad_types[0]; k++) {
        header(&b, 3, 1, 0);
        info(&b, "t", 1, (int64_t[]){32}, bad_types[k], 0);
        data(&b, 128);
        expect_error(&b, "unknown ggml type");
    }
    header(&b, 3, 1, 0);
    info(&b, "blk.0.attn_q.weight", 2, (int64_t[]){33, 2}, gt(LB_DT_Q8_0), 0);
    data(&b, 128);
    expect_error(&b, "tensor 0 'blk.0.attn_q.weight': rows of 33 elements are not a multiple of the q8_0 block (32)");
    header(&b, 3, 2, 0);
    info(&b, "a", 1, (int64_t[]){4}, gt(LB_DT_F32), 0);
    info(&b, "b", 1, (int64_t[]){4}, gt(LB_DT_F32), 16); /* overlaps the padding of a */
    data(&b, 64);
    expect_error(&b, "tensor 1 'b': data offset 16, expected 32");
    header(&b, 3, 1, 0);
    info(&b, "a", 1, (int64_t[]){4}, gt(LB_DT_F32), 32);
    data(&b, 64);
    expect_error(&b, "tensor 0 'a': data offset 32, expected 0");
    header(&b, 3, 1, 0);
    info(&b, "a", 1, (int64_t[]){1000}, gt(LB_DT_F32), 0);
    data(&b, 100);
    expect_error(&b, "tensor 0 'a': data [");
    expect_error(&b, "runs past the end of the file");
    header(&b, 3, 1, 0);
    info(&b, "a", 1, (int64_t[]){0}, gt(LB_DT_F32), 0); /* no data, but the section must start inside the file */
    expect_error(&b, "data section would start at byte 64, past the end");
    free(b.p);
}

/* A file lowbit never wrote: the version 2 layout is the same and is accepted; an
 * empty file and a lone magic are refused. */
static void test_small_files(void **state) {
    tu_bytes b = {0};
    header(&b, 2, 0, 1);
    kv_u32(&b, "k", LB_GGUF_U32, 5);
    assert_int_equal(parse_copy(b.p, b.n), LB_OK);
    assert_int_equal(parse_copy(b.p, 0), LB_EFORMAT);
    assert_int_equal(parse_copy(b.p, 4), LB_EFORMAT);
    free(b.p);
    lb_gguf *g;
    assert_int_equal(lb_gguf_open("/nonexistent/x.gguf", &g), LB_EIO);
    assert_non_null(strstr(lb_errmsg(), "/nonexistent/x.gguf"));
}

/* --- independent readers --------------------------------------------------------------- */

/* A lowbit value in the canonical JSON of scripts/reference/gguf_ref.py. */
static json_t *scalar_json(lb_gguf_type t, const lb_gguf_value *v, uint64_t i) {
    char buf[64];
    if (t == LB_GGUF_BOOL) return json_boolean(lb_gguf_value_i64(v, i));
    if (t == LB_GGUF_STRING) {
        lb_gguf_str s = lb_gguf_value_str(v, i);
        char *hex = malloc(2 * s.len + 1);
        for (uint64_t k = 0; k < s.len; k++) sprintf(hex + 2 * k, "%02x", (uint8_t)s.s[k]);
        hex[2 * s.len] = 0;
        json_t *j = json_string(hex);
        free(hex);
        return j;
    }
    if (t == LB_GGUF_F32) {
        uint32_t u;
        memcpy(&u, v->raw + 4 * i, 4);
        snprintf(buf, sizeof buf, "%u", u);
    } else if (t == LB_GGUF_F64 || t == LB_GGUF_U64) {
        uint64_t u;
        memcpy(&u, v->raw + 8 * i, 8);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)u);
    } else {
        snprintf(buf, sizeof buf, "%lld", (long long)lb_gguf_value_i64(v, i));
    }
    return json_string(buf);
}

static json_t *elements_json(const lb_gguf_value *v) {
    json_t *a = json_array();
    for (uint64_t i = 0; i < v->n; i++) {
        if (v->elem == LB_GGUF_ARRAY) {
            const lb_gguf_value *it = &v->items[i];
            json_array_append_new(a, json_pack("{s:s,s:o}", "elem", lb_gguf_type_name(it->elem), "value",
                                               elements_json(it)));
        } else {
            json_array_append_new(a, scalar_json(v->elem, v, i));
        }
    }
    return a;
}

static json_t *kv_json(const lb_gguf_kv *kv) {
    const lb_gguf_value *v = &kv->value;
    if (v->type == LB_GGUF_ARRAY)
        return json_pack("{s:s,s:s,s:s,s:o}", "key", kv->key, "type", "arr", "elem", lb_gguf_type_name(v->elem),
                         "value", elements_json(v));
    return json_pack("{s:s,s:s,s:o}", "key", kv->key, "type", lb_gguf_type_name(v->type), "value",
                     scalar_json(v->type, v, 0));
}

/* Compares lowbit's reading of `path` with gguf_ref.py's canonical JSON of it. */
static void compare_with_reference(const char *path, const char *json_path) {
    json_error_t err;
    json_t *ref = json_load_file(json_path, 0, &err);
    if (!ref) fail_msg("%s: %s", json_path, err.text);
    lb_gguf *g;
    if (lb_gguf_open(path, &g) != LB_OK) fail_msg("%s", lb_errmsg());
    assert_int_equal(json_integer_value(json_object_get(ref, "version")), lb_gguf_version(g));
    assert_int_equal(json_integer_value(json_object_get(ref, "alignment")), lb_gguf_alignment(g));
    json_t *kvs = json_object_get(ref, "kv"), *tensors = json_object_get(ref, "tensors");
    assert_int_equal(json_array_size(kvs), lb_gguf_kv_count(g));
    for (size_t i = 0; i < lb_gguf_kv_count(g); i++) {
        json_t *mine = kv_json(lb_gguf_kv_at(g, i));
        if (!json_equal(mine, json_array_get(kvs, i))) {
            char *a = json_dumps(mine, JSON_COMPACT), *b = json_dumps(json_array_get(kvs, i), JSON_COMPACT);
            fail_msg("key %zu: lowbit reads %.300s, the reference %.300s", i, a, b);
        }
        json_decref(mine);
    }
    assert_int_equal(json_array_size(tensors), lb_gguf_tensor_count(g));
    for (size_t i = 0; i < lb_gguf_tensor_count(g); i++) {
        const lb_gguf_tensor *t = lb_gguf_tensor_at(g, i);
        json_t *r = json_array_get(tensors, i), *ne = json_object_get(r, "ne");
        assert_string_equal(json_string_value(json_object_get(r, "name")), t->name);
        assert_int_equal(json_integer_value(json_object_get(r, "type")), t->ggml_type);
        assert_int_equal(json_array_size(ne), t->ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(strtoll(json_string_value(json_array_get(ne, (size_t)d)), NULL, 10),
                             t->shape[t->ndim - 1 - d]);
        assert_int_equal(strtoull(json_string_value(json_object_get(r, "offset")), NULL, 10), t->offset);
        const char *hex = json_string_value(json_object_get(r, "hex"));
        assert_int_equal(strlen(hex), 2 * t->nbytes);
        for (uint64_t k = 0; k < t->nbytes; k++) {
            unsigned byte;
            sscanf(hex + 2 * k, "%2x", &byte);
            assert_int_equal(byte, ((const uint8_t *)t->data)[k]);
        }
        /* lowbit's decoding equals the reference's, bit for bit (NaN aside) */
        json_t *f32 = json_object_get(r, "f32");
        assert_int_equal(json_array_size(f32), t->nelements);
        float *f = malloc((size_t)t->nelements * sizeof *f);
        assert_int_equal(lb_gguf_tensor_to_f32(g, t, f, (size_t)t->nelements), LB_OK);
        for (size_t k = 0; k < t->nelements; k++) {
            uint32_t mine, want = (uint32_t)strtoul(json_string_value(json_array_get(f32, k)), NULL, 10);
            memcpy(&mine, f + k, 4);
            if (mine != want && !isnan(f[k]))
                fail_msg("tensor '%s' element %zu: lowbit decodes %08x, the reference %08x", t->name, k, mine, want);
        }
        free(f);
    }
    lb_gguf_close(g);
    json_decref(ref);
}

static void test_independent_readers(void **state) {
    tu_require_python_numpy();
    tu_require_node_gguf();
    char dir[256], path[300], json[300], cmd[2048];
    const char *src = tu_source_dir();
    tu_tmpdir(dir, sizeof dir, "gguf");

    /* lowbit writes; the reference reader and @huggingface/gguf read */
    snprintf(path, sizeof path, "%s/lowbit.gguf", dir);
    snprintf(json, sizeof json, "%s/lowbit.json", dir);
    uint8_t *bytes[N_SAMPLE] = {0};
    write_sample(path, bytes);
    snprintf(cmd, sizeof cmd, TU_PYTHON " '%s/scripts/reference/gguf_ref.py' dump '%s' > '%s'", src, path, json);
    tu_run_ok(cmd);
    compare_with_reference(path, json);
    snprintf(cmd, sizeof cmd, "cd '%s/scripts/reference' && node gguf_js_check.mjs '%s' '%s' >/dev/null", src, path,
             json);
    tu_run_ok(cmd);

    /* the reference writes; lowbit and @huggingface/gguf read */
    snprintf(path, sizeof path, "%s/python.gguf", dir);
    snprintf(json, sizeof json, "%s/python.json", dir);
    snprintf(cmd, sizeof cmd, TU_PYTHON " '%s/scripts/reference/gguf_ref.py' write '%s' > '%s'", src, path, json);
    tu_run_ok(cmd);
    compare_with_reference(path, json);
    snprintf(cmd, sizeof cmd, "cd '%s/scripts/reference' && node gguf_js_check.mjs '%s' '%s' >/dev/null", src, path,
             json);
    tu_run_ok(cmd);

    for (int i = 0; i < N_SAMPLE; i++) free(bytes[i]);
    tu_rmdir(dir);
}

/* The container's table of ggml types agrees with the dtype table on every type both
 * know (the GGUF ids in core/dtype.c, the sizes in io/gguf.c). */
static void test_ggml_types_agree_with_dtypes(void **state) {
    for (int t = 0; t < LB_DT_COUNT; t++) {
        const lb_dtype_traits *d = lb_dtype_info((lb_dtype)t);
        if (d->gguf_type < 0) continue;
        int block, bytes;
        if (!lb_ggml_type_size(d->gguf_type, &block, &bytes)) fail_msg("%s: ggml type %d unknown", d->name, d->gguf_type);
        assert_int_equal(block, d->block);
        assert_int_equal(bytes, d->block_bytes);
        assert_string_equal(lb_ggml_type_name(d->gguf_type), d->name);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ggml_types_agree_with_dtypes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_alignment_key),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_small_files),
        cmocka_unit_test(test_independent_readers),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

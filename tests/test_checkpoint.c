/* Tests of src/io/checkpoint: round trips, error messages, damaged files,
 * atomic commit, and reading by h5py (checkpoint_h5py.py). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "testutil.h"

/* HDF5 1.10 leaks object headers whose checksum fails to verify (in
 * H5O_protect, on blocks recycled from its free lists, so the allocation
 * stacks point anywhere in HDF5). The bit-flip test walks that error path
 * thousands of times, so sanitizer builds ignore memory HDF5 allocated
 * itself. Our own leaks still show, and HDF5 objects we forget to close are
 * caught by assert_no_open_hdf5() instead. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

/* ---- helpers ---------------------------------------------------------------- */

static void must(lb_status s) {
    if (s != LB_OK) fail_msg("unexpected failure: %s", lb_errmsg());
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *read_all(const char *path, long *size) {
    *size = file_size(path);
    assert_true(*size > 0);
    unsigned char *buf = malloc((size_t)*size);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    return buf;
}

static void write_all(const char *path, const void *buf, long size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Removes a test's directory and the files in it (test directories are flat). */
static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Every file, dataset, group, type and attribute opened was closed. */
static void assert_no_open_hdf5(void) { assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0); }

static int contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

/* ---- the sample checkpoint ----------------------------------------------------
 * The same contents are checked by tests/checkpoint_h5py.py, which recomputes
 * every value from these formulas. */

enum { W_ROWS = 8, W_COLS = 16, N_CODES = 128 };
static const char *SAMPLE_YAML = "model:\n  dim: 64\nname: \"lowbit \xE2\x80\x93 \xC3\xBCnicode\"\n";
#define SAMPLE_STEP 1234567890123LL

static float sample_w(int i) { return (float)(i % 17) * 0.25f - 2.0f; }   /* exact in fp32 */

static void write_sample(const char *path) {
    lb_ckpt *c;
    must(lb_ckpt_create(path, &c));
    float w[W_ROWS * W_COLS];
    for (int i = 0; i < W_ROWS * W_COLS; i++) w[i] = sample_w(i);
    must(lb_ckpt_put_f32(c, "model/tok.weight", 2, (int[]){W_ROWS, W_COLS}, w));
    must(lb_ckpt_set_attr_str(c, "model/tok.weight", "quant", "ternary:absmean"));
    uint8_t codes[N_CODES];
    for (int i = 0; i < N_CODES; i++) codes[i] = (uint8_t)((i * 7) % 256);
    must(lb_ckpt_put_u8(c, "optim/tok.weight/m_codes", 1, (int[]){N_CODES}, codes));
    uint16_t codes16[4 * 8];
    for (int i = 0; i < 32; i++) codes16[i] = (uint16_t)(i * 2000);
    must(lb_ckpt_put_u16(c, "optim/tok.weight/v_codes", 2, (int[]){4, 8}, codes16));
    must(lb_ckpt_set_attr_str(c, "optim/tok.weight", "codec", "int8-blockwise"));
    int32_t ids[5] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    must(lb_ckpt_put_i32(c, "data/ids", 1, (int[]){5}, ids));
    int64_t step = SAMPLE_STEP;
    must(lb_ckpt_put_i64(c, "train/step", 0, NULL, &step));
    int64_t rng[3] = {42, 2, (int64_t)1 << 40};
    must(lb_ckpt_put_i64(c, "train/rng", 1, (int[]){3}, rng));
    must(lb_ckpt_put_string(c, "config/yaml", SAMPLE_YAML));
    must(lb_ckpt_set_attr_i64(c, "train", "tokens_seen", -7));
    must(lb_ckpt_set_attr_str(c, "/", "created_by", "test_checkpoint"));
    must(lb_ckpt_commit(c));
}

/* Reads back the sample: LB_OK and *same = 1 when every value matches.
 * Stops at the first error (for damaged files). */
static lb_status verify_sample(const char *path, int *same) {
    *same = 0;
    lb_ckpt *c;
    LB_TRY(lb_ckpt_open(path, &c));
    lb_status s;
    int ok = 1;
    float w[W_ROWS * W_COLS];
    uint8_t codes[N_CODES];
    uint16_t codes16[32];
    int32_t ids[5];
    int64_t step, rng[3], tokens;
    char *yaml = NULL, *quant = NULL, *codec = NULL, *by = NULL;
    if ((s = lb_ckpt_get_f32(c, "model/tok.weight", 2, (int[]){W_ROWS, W_COLS}, w)) != LB_OK) goto done;
    for (int i = 0; i < W_ROWS * W_COLS; i++) ok &= w[i] == sample_w(i);
    if ((s = lb_ckpt_get_u8(c, "optim/tok.weight/m_codes", 1, (int[]){N_CODES}, codes)) != LB_OK) goto done;
    for (int i = 0; i < N_CODES; i++) ok &= codes[i] == (uint8_t)((i * 7) % 256);
    if ((s = lb_ckpt_get_u16(c, "optim/tok.weight/v_codes", 2, (int[]){4, 8}, codes16)) != LB_OK) goto done;
    for (int i = 0; i < 32; i++) ok &= codes16[i] == (uint16_t)(i * 2000);
    if ((s = lb_ckpt_get_i32(c, "data/ids", 1, (int[]){5}, ids)) != LB_OK) goto done;
    ok &= ids[0] == INT32_MIN && ids[1] == -1 && ids[2] == 0 && ids[3] == 1 && ids[4] == INT32_MAX;
    if ((s = lb_ckpt_get_i64(c, "train/step", 0, NULL, &step)) != LB_OK) goto done;
    ok &= step == SAMPLE_STEP;
    if ((s = lb_ckpt_get_i64(c, "train/rng", 1, (int[]){3}, rng)) != LB_OK) goto done;
    ok &= rng[0] == 42 && rng[1] == 2 && rng[2] == (int64_t)1 << 40;
    if ((s = lb_ckpt_get_string(c, "config/yaml", &yaml)) != LB_OK) goto done;
    ok &= strcmp(yaml, SAMPLE_YAML) == 0;
    if ((s = lb_ckpt_get_attr_str(c, "model/tok.weight", "quant", &quant)) != LB_OK) goto done;
    ok &= strcmp(quant, "ternary:absmean") == 0;
    if ((s = lb_ckpt_get_attr_str(c, "optim/tok.weight", "codec", &codec)) != LB_OK) goto done;
    ok &= strcmp(codec, "int8-blockwise") == 0;
    if ((s = lb_ckpt_get_attr_str(c, "", "created_by", &by)) != LB_OK) goto done;
    ok &= strcmp(by, "test_checkpoint") == 0;
    if ((s = lb_ckpt_get_attr_i64(c, "train", "tokens_seen", &tokens)) != LB_OK) goto done;
    ok &= tokens == -7;
    *same = ok;
done:
    free(yaml);
    free(quant);
    free(codec);
    free(by);
    lb_ckpt_close(c);
    return s;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_sample_round_trip(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    write_sample(path);
    int same;
    must(verify_sample(path, &same));
    assert_true(same);
    assert_int_equal(count_entries(dir), 1);   /* no temporary file left behind */
    remove_tree(dir);
    assert_no_open_hdf5();
}

static lb_status collect(const char *name, void *ctx) {
    char *buf = ctx;
    strcat(buf, name);
    strcat(buf, ";");
    return LB_OK;
}

static lb_status stop_at_second(const char *name, void *ctx) {
    int *n = ctx;
    (void)name;
    return ++*n == 2 ? LB_EINTERRUPTED : LB_OK;
}

static void test_every_dtype_exact_and_queries(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/all.h5", dir);

    /* Bit patterns that a lossy or converting path would change: -0, a
     * subnormal, infinities, a NaN with payload, the largest float. */
    uint32_t bits[8] = {0x80000000u, 0x00000001u, 0x7f800000u, 0xff800000u,
                        0x7fc12345u, 0x7f7fffffu, 0x3f800000u, 0xbeaaaaabu};
    float f[8];
    memcpy(f, bits, sizeof f);
    uint8_t u8[256];
    for (int i = 0; i < 256; i++) u8[i] = (uint8_t)i;
    uint16_t u16[3] = {0, 1, 65535};
    int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
    int64_t i64[3] = {INT64_MIN, -1, INT64_MAX};
    /* A tensor of several 1 MiB chunks in 3 dimensions. */
    enum { A = 3, B = 300, C = 700 };
    size_t nbig = (size_t)A * B * C;
    float *big = malloc(nbig * sizeof(float)), *big2 = malloc(nbig * sizeof(float));
    for (size_t i = 0; i < nbig; i++) big[i] = (float)i * 0.5f;
    /* A string longer than the compact limit, and an empty one. */
    size_t nlong = 100000;
    char *longtext = malloc(nlong + 1);
    for (size_t i = 0; i < nlong; i++) longtext[i] = (char)('a' + i % 26);
    longtext[nlong] = '\0';

    lb_ckpt *c;
    must(lb_ckpt_create(path, &c));
    must(lb_ckpt_put_f32(c, "/f32", 2, (int[]){2, 4}, f));   /* leading '/' is allowed */
    must(lb_ckpt_put_u8(c, "a/b/c/u8", 1, (int[]){256}, u8));
    must(lb_ckpt_put_u16(c, "u16", 1, (int[]){3}, u16));
    must(lb_ckpt_put_i32(c, "i32", 1, (int[]){3}, i32));
    must(lb_ckpt_put_i64(c, "i64", 1, (int[]){3}, i64));
    must(lb_ckpt_put_f32(c, "big", 3, (int[]){A, B, C}, big));
    must(lb_ckpt_put_f32(c, "empty", 2, (int[]){0, 5}, NULL));
    float scalar = 2.5f;
    must(lb_ckpt_put_f32(c, "scalar", 0, NULL, &scalar));
    must(lb_ckpt_put_string(c, "long", longtext));
    must(lb_ckpt_put_string(c, "empty_str", ""));
    must(lb_ckpt_set_attr_i64(c, "u16", "n", 1));
    must(lb_ckpt_set_attr_i64(c, "u16", "n", 2));   /* replaces */
    must(lb_ckpt_set_attr_str(c, "a/b", "note", "x"));
    must(lb_ckpt_commit(c));

    must(lb_ckpt_open(path, &c));
    float f2[8];
    must(lb_ckpt_get_f32(c, "f32", 2, (int[]){2, 4}, f2));
    assert_memory_equal(f2, bits, sizeof bits);
    uint8_t u8b[256];
    must(lb_ckpt_get_u8(c, "a/b/c/u8", 1, (int[]){256}, u8b));
    assert_memory_equal(u8b, u8, sizeof u8);
    uint16_t u16b[3];
    must(lb_ckpt_get_u16(c, "u16", 1, (int[]){3}, u16b));
    assert_memory_equal(u16b, u16, sizeof u16);
    int32_t i32b[3];
    must(lb_ckpt_get_i32(c, "i32", 1, (int[]){3}, i32b));
    assert_memory_equal(i32b, i32, sizeof i32);
    int64_t i64b[3];
    must(lb_ckpt_get_i64(c, "i64", 1, (int[]){3}, i64b));
    assert_memory_equal(i64b, i64, sizeof i64);
    must(lb_ckpt_get_f32(c, "big", 3, (int[]){A, B, C}, big2));
    assert_memory_equal(big2, big, nbig * sizeof(float));
    must(lb_ckpt_get_f32(c, "empty", 2, (int[]){0, 5}, NULL));
    float scalar2 = 0;
    must(lb_ckpt_get_f32(c, "scalar", 0, NULL, &scalar2));
    assert_true(scalar2 == 2.5f);
    char *s = NULL;
    must(lb_ckpt_get_string(c, "long", &s));
    assert_string_equal(s, longtext);
    free(s);
    must(lb_ckpt_get_string(c, "empty_str", &s));
    assert_string_equal(s, "");
    free(s);
    int64_t n = 0;
    must(lb_ckpt_get_attr_i64(c, "u16", "n", &n));
    assert_int_equal(n, 2);
    must(lb_ckpt_get_attr_i64(c, "/", "format_version", &n));
    assert_int_equal(n, LB_CKPT_FORMAT_VERSION);

    /* Queries. */
    int nd, shape[LB_CKPT_MAX_DIMS];
    must(lb_ckpt_shape(c, "big", &nd, shape));
    assert_int_equal(nd, 3);
    assert_int_equal(shape[0], A);
    assert_int_equal(shape[1], B);
    assert_int_equal(shape[2], C);
    must(lb_ckpt_shape(c, "scalar", &nd, shape));
    assert_int_equal(nd, 0);
    lb_dtype t;
    must(lb_ckpt_type_of(c, "a/b/c/u8", &t));
    assert_int_equal(t, LB_DT_U8);
    assert_true(lb_ckpt_is_string(c, "long"));
    assert_false(lb_ckpt_is_string(c, "a/b/c/u8"));
    assert_true(lb_ckpt_has(c, "a/b"));
    assert_true(lb_ckpt_has(c, "/a/b/c/u8"));
    assert_false(lb_ckpt_has(c, "a/x/u8"));
    assert_false(lb_ckpt_has(c, "u16/below_a_dataset"));
    char names[512] = "";
    must(lb_ckpt_list(c, "a", collect, names));
    assert_string_equal(names, "a/b/c/u8;");
    names[0] = '\0';
    must(lb_ckpt_list(c, "", collect, names));
    assert_string_equal(names, "a/b/c/u8;big;empty;empty_str;f32;i32;i64;long;scalar;u16;");
    int visits = 0;
    assert_int_equal(lb_ckpt_list(c, "/", stop_at_second, &visits), LB_EINTERRUPTED);
    assert_int_equal(visits, 2);
    lb_ckpt_close(c);
    free(big);
    free(big2);
    free(longtext);
    remove_tree(dir);
    assert_no_open_hdf5();
}

/* Every dtype with an HDF5 type round-trips through lb_ckpt_put / lb_ckpt_get
 * with its own type on disk; the float formats without one are refused by
 * name, and the refusal keeps commit from publishing the file. */
static void test_generic_dtypes(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "ckpt_dtypes");
    snprintf(path, sizeof path, "%s/dtypes.h5", dir);
    uint8_t bytes[LB_DT_COUNT][5 * 8], back[5 * 8];
    lb_ckpt *c;
    must(lb_ckpt_create(path, &c));
    int stored = 0;
    for (int t = 0; t < LB_DT_COUNT; t++) {
        const lb_dtype_traits *d = lb_dtype_info((lb_dtype)t);
        /* f16, bf16, fp8 (below) and the GGML blocks are stored as their u8/u16 codes */
        if (d->cls == LB_DC_BLOCK) continue;
        for (int i = 0; i < 5 * d->block_bytes; i++) bytes[t][i] = (uint8_t)(37 * i + t);
        if (d->cls == LB_DC_FLOAT && d->block_bytes < 4) continue;
        must(lb_ckpt_put(c, d->name, (lb_dtype)t, 1, (int[]){5}, bytes[t]));
        stored++;
    }
    assert_int_equal(stored, 9); /* f32 f64 i8 u8 i16 u16 i32 u32 i64 */
    must(lb_ckpt_commit(c));
    must(lb_ckpt_open(path, &c));
    for (int t = 0; t < LB_DT_COUNT; t++) {
        const lb_dtype_traits *d = lb_dtype_info((lb_dtype)t);
        if ((d->cls == LB_DC_FLOAT && d->block_bytes < 4) || d->cls == LB_DC_BLOCK) continue;
        lb_dtype got;
        must(lb_ckpt_type_of(c, d->name, &got));
        assert_int_equal(got, t);
        must(lb_ckpt_get(c, d->name, (lb_dtype)t, 1, (int[]){5}, back));
        assert_memory_equal(back, bytes[t], (size_t)(5 * d->block_bytes));
    }
    assert_int_equal(lb_ckpt_get(c, "u32", LB_DT_I32, 1, (int[]){5}, back), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "expected type i32, found u32"));
    assert_int_equal(lb_ckpt_get(c, "u16", LB_DT_BF16, 1, (int[]){5}, back), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "bf16 has no HDF5 type"));
    lb_ckpt_close(c);

    char other[512];
    snprintf(other, sizeof other, "%s/refused.h5", dir);
    must(lb_ckpt_create(other, &c));
    assert_int_equal(lb_ckpt_put(c, "m", LB_DT_BF16, 1, (int[]){5}, bytes[LB_DT_BF16]), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "dataset 'm': dtype bf16 has no HDF5 type"));
    assert_int_equal(lb_ckpt_put(c, "e", LB_DT_F8_E4M3, 1, (int[]){5}, bytes[LB_DT_F8_E4M3]), LB_EINVAL);
    assert_int_equal(lb_ckpt_commit(c), LB_EINVAL); /* a put failed: nothing is published */
    assert_int_equal(file_size(other), -1);
    assert_no_open_hdf5();
    remove_tree(dir);
}

static void test_error_messages(void **state) {
    (void)state;
    char dir[256], path[512], want[1024];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    write_sample(path);
    lb_ckpt *c;
    must(lb_ckpt_open(path, &c));
    float w[W_ROWS * W_COLS];

    assert_int_equal(lb_ckpt_get_f32(c, "model/tok.weight", 2, (int[]){W_COLS, W_ROWS}, w), LB_EINVAL);
    snprintf(want, sizeof want, "checkpoint '%s': tensor 'model/tok.weight': expected shape [16,8], found [8,16]", path);
    assert_string_equal(lb_errmsg(), want);
    assert_int_equal(lb_ckpt_get_f32(c, "model/tok.weight", 1, (int[]){128}, w), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "expected shape [128], found [8,16]"));

    assert_int_equal(lb_ckpt_get_f32(c, "model/blk.0.attn_q.weight", 2, (int[]){2, 2}, w), LB_EINVAL);
    snprintf(want, sizeof want, "checkpoint '%s': no tensor 'model/blk.0.attn_q.weight'", path);
    assert_string_equal(lb_errmsg(), want);

    assert_int_equal(lb_ckpt_get_i32(c, "model/tok.weight", 2, (int[]){W_ROWS, W_COLS}, (int32_t *)w), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "tensor 'model/tok.weight': expected type i32, found f32"));

    char *s = NULL;
    assert_int_equal(lb_ckpt_get_attr_str(c, "model/tok.weight", "codec", &s), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "'model/tok.weight' has no attribute 'codec'"));
    assert_null(s);
    assert_int_equal(lb_ckpt_get_string(c, "model/tok.weight", &s), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "string 'model/tok.weight': expected a single string"));
    assert_int_equal(lb_ckpt_get_f32(c, "a//b", 1, (int[]){1}, w), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "bad name 'a//b'"));
    lb_ckpt_close(c);

    /* Writing: bad names and repeated names fail, and then commit refuses,
     * leaving the file at PATH as it was. */
    long before = file_size(path);
    must(lb_ckpt_create(path, &c));
    float x = 1;
    assert_int_equal(lb_ckpt_put_f32(c, "../up", 0, NULL, &x), LB_EINVAL);
    assert_int_equal(lb_ckpt_put_f32(c, "dir/", 0, NULL, &x), LB_EINVAL);
    must(lb_ckpt_put_f32(c, "x", 0, NULL, &x));
    assert_int_equal(lb_ckpt_put_f32(c, "x", 0, NULL, &x), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "dataset 'x' written twice"));
    assert_int_equal(lb_ckpt_put_f32(c, "y", 2, (int[]){2, -1}, &x), LB_EINVAL);
    assert_int_equal(lb_ckpt_set_attr_str(c, "nope", "quant", "x"), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "no dataset or group 'nope'"));
    assert_int_equal(lb_ckpt_commit(c), LB_EINVAL);
    assert_true(contains(lb_errmsg(), "an earlier write to it failed"));
    assert_int_equal(file_size(path), before);
    assert_int_equal(count_entries(dir), 1);
    int same;
    must(verify_sample(path, &same));
    assert_true(same);
    remove_tree(dir);
    assert_no_open_hdf5();
}

/* A file written with the plain HDF5 API, with optional root attributes. */
static void write_foreign(const char *path, const char *format, long long version) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    hsize_t dims[1] = {4};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, "data", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int v[4] = {1, 2, 3, 4};
    assert_true(H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
    if (format) {
        hid_t scalar = H5Screate(H5S_SCALAR);
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, strlen(format) + 1);
        hid_t a = H5Acreate2(f, "format", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(a, st, format) >= 0);
        H5Aclose(a);
        a = H5Acreate2(f, "format_version", H5T_STD_I32LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
        int ver = (int)version;
        assert_true(H5Awrite(a, H5T_NATIVE_INT, &ver) >= 0);
        H5Aclose(a);
        H5Tclose(st);
        H5Sclose(scalar);
    }
    H5Fclose(f);
}

static void test_foreign_and_non_hdf5_files_rejected(void **state) {
    (void)state;
    char dir[256], path[512], want[1024];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    lb_ckpt *c = (lb_ckpt *)1;

    snprintf(path, sizeof path, "%s/foreign.h5", dir);
    write_foreign(path, NULL, 0);
    assert_int_equal(lb_ckpt_open(path, &c), LB_EFORMAT);
    assert_null(c);
    snprintf(want, sizeof want, "checkpoint '%s': not a lowbit checkpoint (no 'format' attribute)", path);
    assert_string_equal(lb_errmsg(), want);

    write_foreign(path, "something-else", 1);
    assert_int_equal(lb_ckpt_open(path, &c), LB_EFORMAT);
    assert_true(contains(lb_errmsg(), "not a lowbit checkpoint (format is 'something-else'"));

    write_foreign(path, LB_CKPT_FORMAT, LB_CKPT_FORMAT_VERSION + 1);
    assert_int_equal(lb_ckpt_open(path, &c), LB_EFORMAT);
    assert_true(contains(lb_errmsg(), "format version 2 is newer than this build reads (1)"));

    /* The same attributes with the supported version are accepted, whoever
     * wrote them: the check is on the format, not on the writer. */
    write_foreign(path, LB_CKPT_FORMAT, LB_CKPT_FORMAT_VERSION);
    must(lb_ckpt_open(path, &c));
    int32_t v[4];
    must(lb_ckpt_get_i32(c, "data", 1, (int[]){4}, v));
    assert_int_equal(v[3], 4);
    lb_ckpt_close(c);

    snprintf(path, sizeof path, "%s/notes.txt", dir);
    const char *text = "this is not HDF5\n";
    write_all(path, text, (long)strlen(text));
    assert_int_equal(lb_ckpt_open(path, &c), LB_EFORMAT);
    snprintf(want, sizeof want, "checkpoint '%s': not an HDF5 file", path);
    assert_string_equal(lb_errmsg(), want);

    snprintf(path, sizeof path, "%s/missing.h5", dir);
    assert_int_equal(lb_ckpt_open(path, &c), LB_EIO);
    assert_true(contains(lb_errmsg(), "missing.h5': cannot open: No such file or directory"));
    remove_tree(dir);
    assert_no_open_hdf5();
}

static void test_truncated_file_is_an_error(void **state) {
    (void)state;
    char dir[256], path[512], cut[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    snprintf(cut, sizeof cut, "%s/cut.h5", dir);
    write_sample(path);
    long size;
    unsigned char *bytes = read_all(path, &size);
    long points[] = {0, 8, 100, size / 4, size / 2, 3 * size / 4, size - 1};
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        write_all(cut, bytes, size);
        assert_int_equal(truncate(cut, points[k]), 0);
        int same;
        lb_status s = verify_sample(cut, &same);
        if (s == LB_OK) fail_msg("file cut to %ld of %ld bytes read without error", points[k], size);
        assert_int_equal(s, LB_EFORMAT);
        assert_true(contains(lb_errmsg(), cut));
    }
    free(bytes);
    remove_tree(dir);
    assert_no_open_hdf5();
}

/* Offset of the first occurrence of `pat` in `buf`, or -1. */
static long find_bytes(const unsigned char *buf, long size, const void *pat, size_t n) {
    for (long i = 0; i + (long)n <= size; i++)
        if (memcmp(buf + i, pat, n) == 0) return i;
    return -1;
}

static void test_flipped_data_byte_is_caught(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    write_sample(path);
    long size;
    unsigned char *bytes = read_all(path, &size);
    /* The weight's bytes as stored (little-endian fp32, unfiltered apart
     * from the checksum appended to the chunk). */
    float w[W_ROWS * W_COLS];
    for (int i = 0; i < W_ROWS * W_COLS; i++) w[i] = sample_w(i);
    long at = find_bytes(bytes, size, w, sizeof w);
    assert_true(at > 0);
    bytes[at + 200] ^= 0x04;   /* one bit of one element in the middle */
    write_all(path, bytes, size);

    lb_ckpt *c;
    must(lb_ckpt_open(path, &c));   /* metadata is intact: the damage shows on read */
    assert_int_equal(lb_ckpt_get_f32(c, "model/tok.weight", 2, (int[]){W_ROWS, W_COLS}, w), LB_EFORMAT);
    assert_true(contains(lb_errmsg(), "tensor 'model/tok.weight': read failed"));
    assert_true(contains(lb_errmsg(), path));
    /* Other tensors still read. */
    int32_t ids[5];
    must(lb_ckpt_get_i32(c, "data/ids", 1, (int[]){5}, ids));
    lb_ckpt_close(c);
    free(bytes);
    remove_tree(dir);
    assert_no_open_hdf5();
}

/* Every single-bit flip anywhere in the file either is reported as an error
 * or changes nothing that is read back: never silently different values. */
static void test_any_flipped_bit_is_caught_or_harmless(void **state) {
    (void)state;
    char dir[256], path[512], bad[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    write_sample(path);
    long size;
    unsigned char *bytes = read_all(path, &size);
    write_all(bad, bytes, size);
    int fd = open(bad, O_WRONLY);
    assert_true(fd >= 0);
    int caught = 0, harmless = 0;
    for (long i = 0; i < size; i++) {
        /* Flip one bit of byte i in the copy, read it back, restore it. */
        int bit = (int)(i % 8);
        unsigned char flipped = bytes[i] ^ (unsigned char)(1u << bit);
        assert_int_equal(pwrite(fd, &flipped, 1, i), 1);
        int same;
        lb_status s = verify_sample(bad, &same);
        if (s != LB_OK) {
            caught++;
        } else if (same) {
            harmless++;
        } else {
            fail_msg("flipping bit %d of byte %ld (of %ld) changed values without an error", bit, i, size);
        }
        assert_int_equal(pwrite(fd, &bytes[i], 1, i), 1);
    }
    close(fd);
    print_message("%ld bit flips: %d reported, %d in unused bytes\n", size, caught, harmless);
    assert_true(caught > 0);
    free(bytes);
    remove_tree(dir);
    assert_no_open_hdf5();
}

static void test_commit_replaces_and_abort_keeps(void **state) {
    (void)state;
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    write_sample(path);

    /* Commit onto an existing checkpoint replaces it. */
    lb_ckpt *c;
    must(lb_ckpt_create(path, &c));
    int64_t v = 2;
    must(lb_ckpt_put_i64(c, "train/step", 0, NULL, &v));
    assert_int_equal(count_entries(dir), 2);   /* the old file and the temporary one */
    int same;
    must(verify_sample(path, &same));          /* PATH is untouched before commit */
    assert_true(same);
    must(lb_ckpt_commit(c));
    assert_int_equal(count_entries(dir), 1);
    must(lb_ckpt_open(path, &c));
    int64_t got = 0;
    must(lb_ckpt_get_i64(c, "train/step", 0, NULL, &got));
    assert_int_equal(got, 2);
    assert_false(lb_ckpt_has(c, "model/tok.weight"));
    lb_ckpt_close(c);

    /* Abort leaves it untouched and removes the temporary file. */
    must(lb_ckpt_create(path, &c));
    v = 3;
    must(lb_ckpt_put_i64(c, "train/step", 0, NULL, &v));
    lb_ckpt_abort(c);
    assert_int_equal(count_entries(dir), 1);
    must(lb_ckpt_open(path, &c));
    must(lb_ckpt_get_i64(c, "train/step", 0, NULL, &got));
    assert_int_equal(got, 2);
    lb_ckpt_close(c);

    /* Commit that cannot rename (PATH is a directory) fails and cleans up. */
    char blocked[600];
    snprintf(blocked, sizeof blocked, "%s/blocked.h5", dir);
    assert_int_equal(mkdir(blocked, 0755), 0);
    must(lb_ckpt_create(blocked, &c));
    must(lb_ckpt_put_i64(c, "x", 0, NULL, &v));
    assert_int_equal(lb_ckpt_commit(c), LB_EIO);
    assert_true(contains(lb_errmsg(), "cannot rename"));
    assert_int_equal(count_entries(dir), 2);   /* ckpt.h5 and the directory */
    rmdir(blocked);

    /* A missing directory fails at create. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/ckpt.h5", dir);
    assert_int_equal(lb_ckpt_create(missing, &c), LB_EIO);
    assert_null(c);
    assert_true(contains(lb_errmsg(), "No such file or directory"));

    /* A read-only directory fails at create and leaves the checkpoint in it
     * as it was (root ignores permissions, so skip there). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0555), 0);
        assert_int_equal(lb_ckpt_create(path, &c), LB_EIO);
        assert_int_equal(chmod(dir, 0755), 0);
        must(lb_ckpt_open(path, &c));
        must(lb_ckpt_get_i64(c, "train/step", 0, NULL, &got));
        assert_int_equal(got, 2);
        lb_ckpt_close(c);
    }
    remove_tree(dir);
    assert_no_open_hdf5();
}

/* h5py and h5dump read what we write. */
static void test_h5py_and_h5dump_read_checkpoint(void **state) {
    (void)state;
    const char *python = "/usr/bin/python3";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s -c 'import h5py, numpy' >/dev/null 2>&1", python);
    tu_require_dependency("h5py", access(python, X_OK) == 0 && system(cmd) == 0,
                          "apt-get install python3-h5py python3-numpy");
    tu_require_dependency("h5dump", system("command -v h5dump >/dev/null 2>&1") == 0, "apt-get install hdf5-tools");
    char dir[256], path[512];
    tu_tmpdir(dir, sizeof dir, "ckpt");
    snprintf(path, sizeof path, "%s/sample.h5", dir);
    write_sample(path);
    snprintf(cmd, sizeof cmd, "%s '%s/tests/checkpoint_h5py.py' '%s'", python, tu_source_dir(), path);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "h5dump -H '%s' >/dev/null", path);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "h5dump -d /model/tok.weight '%s' >/dev/null", path);
    assert_int_equal(system(cmd), 0);
    remove_tree(dir);
    assert_no_open_hdf5();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_round_trip),
        cmocka_unit_test(test_every_dtype_exact_and_queries),
        cmocka_unit_test(test_generic_dtypes),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_foreign_and_non_hdf5_files_rejected),
        cmocka_unit_test(test_truncated_file_is_an_error),
        cmocka_unit_test(test_flipped_data_byte_is_caught),
        cmocka_unit_test(test_any_flipped_bit_is_caught_or_harmless),
        cmocka_unit_test(test_commit_replaces_and_abort_keeps),
        cmocka_unit_test(test_h5py_and_h5dump_read_checkpoint),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

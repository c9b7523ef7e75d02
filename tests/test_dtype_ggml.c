/* The GGML block codecs of the dtype table, and its f16 and bf16 rows, against vectors
 * made by ggml itself (tests/data/ggml/README.md says how): every encoded byte and
 * every decoded float must be identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/dtype_ggml.h"
#include "core/minifloat.h"
#include "testutil.h"

typedef struct blob {
    void *p;
    size_t n;
} blob;

static blob load(const char *type, const char *ext) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/data/ggml/%s.%s", tu_source_dir(), type, ext);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    blob b = {malloc((size_t)n), (size_t)n};
    assert_non_null(b.p);
    assert_int_equal(fread(b.p, 1, b.n, f), b.n);
    fclose(f);
    return b;
}

/* Floats equal bit for bit; two NaNs count as equal (ggml keeps a NaN scale's payload
 * when it widens fp16, lb_fp16_to_f32 returns the default NaN: only NaN scales, which
 * no encoder writes, are affected). */
static void assert_same_floats(const float *got, const float *want, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, got + i, 4);
        memcpy(&b, want + i, 4);
        if (a != b && !(isnan(got[i]) && isnan(want[i])))
            fail_msg("%s: element %zu is %08x (%g), ggml gives %08x (%g)", what, i, a, got[i], b, want[i]);
    }
}

/* The vectors of one type through its dtype row (c->name is the files' name too). */
static void check_codec(lb_dtype t) {
    const lb_dtype_traits *c = lb_dtype_info(t);
    blob in = load(c->name, "in.f32"), q = load(c->name, "q"), out = load(c->name, "out.f32");
    blob rq = load(c->name, "rq"), rout = load(c->name, "rout.f32");
    size_t n = in.n / sizeof(float), nblocks = n / (size_t)c->block;
    assert_int_equal(n % (size_t)c->block, 0);
    assert_int_equal(q.n, nblocks * (size_t)c->block_bytes);

    uint8_t *mine = malloc(q.n);
    float *dec = malloc(in.n);
    c->from_f32(in.p, mine, n);
    for (size_t i = 0; i < q.n; i++)
        if (mine[i] != ((uint8_t *)q.p)[i])
            fail_msg("%s: byte %zu (block %zu) is %02x, ggml wrote %02x", c->name, i, i / (size_t)c->block_bytes,
                     mine[i], ((uint8_t *)q.p)[i]);
    c->to_f32(q.p, dec, n);
    assert_same_floats(dec, out.p, n, c->name);
    c->to_f32(rq.p, dec, n);
    assert_same_floats(dec, rout.p, n, c->name);

    free(mine);
    free(dec);
    free(in.p), free(q.p), free(out.p), free(rq.p), free(rout.p);
}

static void test_q8_0(void **state) { check_codec(LB_DT_Q8_0); }
static void test_q4_0(void **state) { check_codec(LB_DT_Q4_0); }
static void test_tq1_0(void **state) { check_codec(LB_DT_TQ1_0); }
static void test_tq2_0(void **state) { check_codec(LB_DT_TQ2_0); }

/* The f16 and bf16 rows, which GGUF F16/BF16 tensors use (and the scalar fp16
 * conversion every block scale goes through). */
static void test_f16_bf16(void **state) {
    const lb_dtype types[2] = {LB_DT_F16, LB_DT_BF16};
    for (int t = 0; t < 2; t++) {
        const lb_dtype_traits *d = lb_dtype_info(types[t]);
        blob in = load(d->name, "in.f32"), q = load(d->name, "q"), out = load(d->name, "out.f32");
        size_t n = in.n / 4;
        const float *x = in.p;
        const uint16_t *codes = q.p;
        uint16_t *mine = malloc(q.n);
        float *dec = malloc(in.n);
        d->from_f32(x, mine, n);
        for (size_t i = 0; i < n; i++)
            if (mine[i] != codes[i]) fail_msg("%s: %g encodes to %04x, ggml gives %04x", d->name, x[i], mine[i], codes[i]);
        d->to_f32(codes, dec, n);
        assert_same_floats(dec, out.p, n, d->name);
        free(mine);
        free(dec);
        free(in.p), free(q.p), free(out.p);
    }
}

/* Ternary weights γ·{−1, 0, 1} with one full-magnitude weight per block survive TQ1_0
 * and TQ2_0 exactly, up to fp16(γ): what export of a b1.58 model relies on. */
static void test_ternary_is_lossless(void **state) {
    enum { N = 4 * LB_GGML_QK_K };
    const float gamma = 0.0371f, gamma16 = lb_fp16_to_f32(lb_fp16_from_f32(gamma));
    float x[N], y[N];
    uint8_t buf[4 * LB_GGML_TQ2_0_BYTES];
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = gamma * (float)((int)((s >> 33) % 3) - 1);
    }
    for (int b = 0; b < 4; b++) x[b * LB_GGML_QK_K + 7] = -gamma;
    const lb_dtype ternary[2] = {LB_DT_TQ1_0, LB_DT_TQ2_0};
    for (int c = 0; c < 2; c++) {
        const lb_dtype_traits *d = lb_dtype_info(ternary[c]);
        d->from_f32(x, buf, N);
        d->to_f32(buf, y, N);
        for (int i = 0; i < N; i++) {
            float want = x[i] == 0 ? 0.0f : (x[i] > 0 ? gamma16 : -gamma16);
            if (y[i] != want) fail_msg("%s: weight %d: %g became %g", d->name, i, x[i], y[i]);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_tq1_0),
        cmocka_unit_test(test_tq2_0),
        cmocka_unit_test(test_f16_bf16),
        cmocka_unit_test(test_ternary_is_lossless),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Tests of the runtime's packed layouts and integer kernels
 * (src/runtime/kernels*.c, isa.c): the layouts byte by byte, every kernel
 * this CPU runs against the plain sum Σ w·a on random and extreme codes for
 * widths that do and do not fill a group, and the choice of kernels
 * (CPUID, LOWBIT_RUNTIME_ISA). */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "runtime/packed.h"
#include "testutil.h"

static void test_layouts(void **state) {
    (void)state;
    int8_t codes[300];
    memset(codes, 0, sizeof codes);
    codes[0] = -1, codes[64] = 1, codes[128] = 0, codes[192] = 1; /* byte 0 of group 0 */
    codes[65] = -1;                                                /* byte 1, bits 0-1 */
    codes[256] = 1, codes[299] = -1;                               /* group 1: bytes 64, 64 + 43 */
    uint8_t t[128];
    assert_int_equal(lb_rt_padded(300), 512);
    assert_int_equal(lb_rt_ternary_row_bytes(512), 128);
    lb_rt_pack_ternary_row(codes, 300, t);
    assert_int_equal(t[0], 0 << 0 | 2 << 2 | 1 << 4 | 2 << 6);
    assert_int_equal(t[1], 1 << 0 | 0 << 2 | 1 << 4 | 1 << 6);
    assert_int_equal(t[2], 0x55); /* zeros */
    assert_int_equal(t[64], 2 | 1 << 2 | 1 << 4 | 1 << 6);
    assert_int_equal(t[64 + 43], 0 | 1 << 2 | 1 << 4 | 1 << 6);
    assert_int_equal(t[127], 0x55); /* padding: code 0 */

    int8_t signs[70];
    for (int i = 0; i < 70; i++) signs[i] = i % 3 == 0 ? 1 : -1;
    uint8_t b[32];
    assert_int_equal(lb_rt_binary_row_bytes(256), 32);
    lb_rt_pack_binary_row(signs, 70, b);
    assert_int_equal(b[0], 0x49);    /* bits 0, 3, 6 */
    assert_int_equal(b[8], 0x24);    /* weights 64..69: 66 and 69 are +1; 70, 71 are padding (−1) */
    assert_int_equal(b[31], 0);       /* padding: −1 */
}

/* Random codes in [lo, hi] from a counter-based stream. */
static void fill(int8_t *x, size_t n, int lo, int hi, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = (int8_t)(lo + (int)(lb_rand_u32(seed, 7, i) % (uint32_t)(hi - lo + 1)));
}

typedef struct case_data {
    int n_rows, n_tok, k, kp;
    int8_t *w, *a;         /* codes [n_rows, k], [n_tok, kp] (zero past k) */
    uint8_t *packed;
    int32_t *asum, *out;
    size_t row_bytes;
} case_data;

static void make_case(case_data *c, int n_rows, int n_tok, int k, int binary, int extreme, uint64_t seed) {
    c->n_rows = n_rows, c->n_tok = n_tok, c->k = k, c->kp = lb_rt_padded(k);
    c->row_bytes = binary ? lb_rt_binary_row_bytes(c->kp) : lb_rt_ternary_row_bytes(c->kp);
    c->w = malloc((size_t)n_rows * k);
    c->a = calloc((size_t)n_tok * c->kp, 1);
    c->packed = malloc((size_t)n_rows * c->row_bytes);
    c->asum = malloc((size_t)n_tok * sizeof *c->asum);
    c->out = malloc((size_t)n_rows * n_tok * sizeof *c->out);
    assert_true(c->w && c->a && c->packed && c->asum && c->out);
    if (extreme) { /* the largest sums: every product at its bound */
        memset(c->w, 1, (size_t)n_rows * k);
        for (int t = 0; t < n_tok; t++) memset(c->a + (size_t)t * c->kp, t % 2 ? 0x80 : 0x7f, (size_t)k);
    } else {
        fill(c->w, (size_t)n_rows * k, -1, 1, seed);
        if (binary)
            for (size_t i = 0; i < (size_t)n_rows * k; i++) c->w[i] = c->w[i] >= 0 ? 1 : -1;
        for (int t = 0; t < n_tok; t++) fill(c->a + (size_t)t * c->kp, (size_t)k, -128, 127, seed + 1 + t);
    }
    for (int r = 0; r < n_rows; r++) {
        if (binary) lb_rt_pack_binary_row(c->w + (size_t)r * k, k, c->packed + r * c->row_bytes);
        else lb_rt_pack_ternary_row(c->w + (size_t)r * k, k, c->packed + r * c->row_bytes);
    }
    for (int t = 0; t < n_tok; t++) {
        int32_t s = 0;
        for (int i = 0; i < k; i++) s += c->a[(size_t)t * c->kp + i];
        c->asum[t] = s;
    }
}

static void free_case(case_data *c) {
    free(c->w), free(c->a), free(c->packed), free(c->asum), free(c->out);
}

/* Runs one kernel and compares every output with the plain sum. */
static void check_case(const lb_rt_kernels *kern, const char *isa, case_data *c, int binary) {
    const size_t ldo = (size_t)c->n_rows + 3; /* a wider output row than needed */
    int32_t *out = malloc((size_t)c->n_tok * ldo * sizeof *out);
    assert_non_null(out);
    (binary ? kern->binary : kern->ternary)(c->packed, c->row_bytes, c->n_rows, c->a, (size_t)c->kp, c->asum,
                                             c->n_tok, c->kp, out, ldo);
    for (int t = 0; t < c->n_tok; t++)
        for (int r = 0; r < c->n_rows; r++) {
            int64_t want = 0;
            for (int i = 0; i < c->k; i++) want += c->w[(size_t)r * c->k + i] * c->a[(size_t)t * c->kp + i];
            if (out[(size_t)t * ldo + r] != want)
                fail_msg("%s %s kernel, k = %d, %d rows x %d tokens: row %d token %d gives %d, expected %lld", isa,
                         binary ? "binary" : "ternary", c->k, c->n_rows, c->n_tok, r, t, out[(size_t)t * ldo + r],
                         (long long)want);
        }
    free(out);
}

static void test_kernels_exact(void **state) {
    (void)state;
    const int widths[] = {1, 5, 63, 64, 255, 256, 257, 300, 512, 777, 1536};
    const int rows[] = {1, 3, 4, 5, 9, 16, 21, 37}, toks[] = {1, 2, 3, 4, 5, 9};
    int paths = 0;
    for (int isa = 0; isa <= (int)lb_rt_isa_best(); isa++) {
        const lb_rt_kernels *kern = lb_rt_isa_kernels((lb_rt_isa)isa);
        if (!kern) continue;
        paths++;
        uint64_t seed = 100;
        for (int binary = 0; binary < 2; binary++)
            for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++)
                for (size_t ri = 0; ri < sizeof rows / sizeof *rows; ri++)
                    for (size_t ti = 0; ti < sizeof toks / sizeof *toks; ti++) {
                        case_data c;
                        make_case(&c, rows[ri], toks[ti], widths[wi], binary, 0, seed += 17);
                        check_case(kern, lb_rt_isa_name((lb_rt_isa)isa), &c, binary);
                        free_case(&c);
                    }
        /* Wide rows of extreme codes: no int16 stage saturates or wraps. */
        for (int binary = 0; binary < 2; binary++) {
            case_data c;
            make_case(&c, 21, 5, 8192 + 100, binary, 1, 1);
            check_case(kern, lb_rt_isa_name((lb_rt_isa)isa), &c, binary);
            free_case(&c);
        }
    }
    assert_true(paths >= 1);
}

static void test_isa_choice(void **state) {
    (void)state;
    lb_rt_isa isa;
    for (int i = 0; i < LB_RT_ISA_COUNT; i++) {
        assert_int_equal(lb_rt_isa_parse(lb_rt_isa_name((lb_rt_isa)i), &isa), LB_OK);
        assert_int_equal((int)isa, i);
    }
    assert_int_equal(lb_rt_isa_parse("avx1024", &isa), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "avx1024"));
    assert_non_null(strstr(lb_errmsg(), "avx512vnni"));

    const lb_rt_isa best = lb_rt_isa_best();
    unsetenv("LOWBIT_RUNTIME_ISA");
    assert_int_equal(lb_rt_isa_choose(LB_RT_ISA_AUTO, &isa), LB_OK);
    assert_int_equal(isa, best);
    setenv("LOWBIT_RUNTIME_ISA", "portable", 1);
    assert_int_equal(lb_rt_isa_choose(LB_RT_ISA_AUTO, &isa), LB_OK);
    assert_int_equal(isa, LB_RT_ISA_PORTABLE);
    assert_int_equal(lb_rt_isa_choose(best, &isa), LB_OK); /* an explicit request wins */
    assert_int_equal(isa, best);
    setenv("LOWBIT_RUNTIME_ISA", "neon", 1);
    assert_int_equal(lb_rt_isa_choose(LB_RT_ISA_AUTO, &isa), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "LOWBIT_RUNTIME_ISA"));
    if (best < LB_RT_ISA_AVX512VNNI) { /* a path above the CPU's is refused, naming both */
        setenv("LOWBIT_RUNTIME_ISA", "avx512vnni", 1);
        assert_int_equal(lb_rt_isa_choose(LB_RT_ISA_AUTO, &isa), LB_EINVAL);
        assert_non_null(strstr(lb_errmsg(), lb_rt_isa_name(best)));
    }
    unsetenv("LOWBIT_RUNTIME_ISA");
    assert_int_equal(lb_rt_isa_choose(LB_RT_ISA_COUNT, &isa), LB_EINVAL);
    print_message("runtime kernels: this CPU runs up to %s\n", lb_rt_isa_name(best));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_kernels_exact),
        cmocka_unit_test(test_isa_choice),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

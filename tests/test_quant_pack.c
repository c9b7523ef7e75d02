/* Tests of src/quant/pack.c: hand-computed layouts, exact round trips on
 * random and edge data for every packer, and rejection of bad codes. */
#include <stdlib.h>
#include <string.h>

#include "quant/pack.h"
#include "testutil.h"

static void test_layouts(void **state) {
    (void)state;
    uint8_t out[4];
    const int8_t t[5] = {-1, 0, 1, 1, 0};
    assert_int_equal(lb_pack_ternary2(t, 5, out), LB_OK);
    assert_int_equal(out[0], 0 | 1 << 2 | 2 << 4 | 2 << 6);
    assert_int_equal(out[1], 1);

    const int8_t t5[7] = {1, 0, -1, -1, 1, 1, 1};
    assert_int_equal(lb_pack_ternary5(t5, 7, out), LB_OK);
    assert_int_equal(out[0], 2 + 1 * 3 + 0 * 9 + 0 * 27 + 2 * 81);
    assert_int_equal(out[1], 2 + 2 * 3); /* padding trits are 0 */
    const int8_t ones[5] = {1, 1, 1, 1, 1};
    assert_int_equal(lb_pack_ternary5(ones, 5, out), LB_OK);
    assert_int_equal(out[0], 242);

    const int8_t i4[3] = {-8, 7, -1};
    assert_int_equal(lb_pack_int4((const uint8_t *)i4, 3, 1, out), LB_OK);
    assert_int_equal(out[0], 0x78);
    assert_int_equal(out[1], 0x0f);
}

/* Random codes of every layout, lengths that do and do not fill the last byte. */
static void test_round_trips(void **state) {
    (void)state;
    const size_t lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 255, 1000, 200003};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        int8_t *c = malloc(n), *back = malloc(n);
        uint8_t *p = malloc(n + 8);
        assert_true(c && back && p);

        for (size_t i = 0; i < n; i++) c[i] = (int8_t)(lb_rand_u32(1, 3, i) % 3) - 1;
        assert_int_equal(lb_pack_ternary2(c, n, p), LB_OK);
        lb_unpack_ternary2(p, n, back);
        assert_memory_equal(c, back, n);
        assert_int_equal(lb_pack_ternary5(c, n, p), LB_OK);
        assert_int_equal(lb_unpack_ternary5(p, n, back), LB_OK);
        assert_memory_equal(c, back, n);

        for (int sgn = 0; sgn < 2; sgn++) {
            for (size_t i = 0; i < n; i++) c[i] = (int8_t)((lb_rand_u32(1, 4, i) & 15) - (sgn ? 8 : 0));
            assert_int_equal(lb_pack_int4((uint8_t *)c, n, sgn, p), LB_OK);
            lb_unpack_int4(p, n, sgn, (uint8_t *)back);
            assert_memory_equal(c, back, n);
        }
        free(c);
        free(back);
        free(p);
    }
}

/* Edge data: all codes at one extreme, and the packed size. */
static void test_edges(void **state) {
    (void)state;
    int8_t c[64], back[64];
    uint8_t p[64];
    for (int v = -1; v <= 1; v++) {
        memset(c, v, sizeof c);
        assert_int_equal(lb_pack_ternary5(c, 64, p), LB_OK);
        assert_int_equal(lb_unpack_ternary5(p, 64, back), LB_OK);
        assert_memory_equal(c, back, 64);
        assert_int_equal(lb_pack_ternary2(c, 64, p), LB_OK);
        lb_unpack_ternary2(p, 64, back);
        assert_memory_equal(c, back, 64);
    }
    assert_int_equal(lb_packed_size_bits(9, 1), 2);
    assert_int_equal(lb_packed_size_bits(5, 2), 2);
    assert_int_equal(lb_packed_size_bits(3, 4), 2);
    assert_int_equal(lb_packed_size_ternary5(10), 2);
    assert_int_equal(lb_packed_size_ternary5(11), 3);
    /* 1.6 bits per weight at a multiple of 5. */
    assert_int_equal(lb_packed_size_ternary5(1000) * 8, 1600);
}

static void test_bad_codes(void **state) {
    (void)state;
    uint8_t p[8];
    const int8_t t[3] = {0, 2, 1};
    assert_int_equal(lb_pack_ternary2(t, 3, p), LB_EINVAL);
    assert_non_null(strstr(lb_errmsg(), "element 1"));
    assert_int_equal(lb_pack_ternary5(t, 3, p), LB_EINVAL);
    const uint8_t u[2] = {3, 16};
    assert_int_equal(lb_pack_int4(u, 2, 0, p), LB_EINVAL);
    const int8_t s[2] = {-9, 0};
    assert_int_equal(lb_pack_int4((const uint8_t *)s, 2, 1, p), LB_EINVAL);
    const uint8_t bad5[1] = {243};
    int8_t out[5];
    assert_int_equal(lb_unpack_ternary5(bad5, 5, out), LB_EFORMAT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_bad_codes),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

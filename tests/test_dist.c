/* src/dist in one process: the world of one rank (what every build without
 * an MPI launcher runs), the compressed-gradient codecs against the bounds of
 * their formats, and the ZeRO-1 ownership rule. The collectives themselves
 * run under mpirun -np 2 in tests/test_dist.sh. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/minifloat.h"
#include "dist/dist.h"
#include "testutil.h"

static void test_world_of_one_rank(void **state) {
    (void)state;
    const lb_dist *d = lb_dist_world();
    assert_int_equal(d->rank, 0);
    assert_int_equal(d->size, 1);
    int v = 7;
    assert_int_equal(lb_dist_max_int(d, &v), LB_OK);
    assert_int_equal(v, 7);
    double x[3] = {1.5, -2.0, 0.25}, sum = 0.0;
    assert_int_equal(lb_dist_sum_disjoint(d, x, 3), LB_OK);
    assert_true(x[0] == 1.5 && x[1] == -2.0 && x[2] == 0.25);
    assert_int_equal(lb_dist_sum_ranks(d, 3.25, &sum), LB_OK);
    assert_true(sum == 3.25);
    double sq = 9.0;
    assert_int_equal(lb_dist_sumsq((void *)d, &sq), LB_OK);
    assert_true(sq == 9.0);
}

/* Bounds from the formats: bf16 keeps 8 significant bits (relative error
 * ≤ 2^-8 with rounding to nearest); E4M3 4 (≤ 2^-4 of the value
 * for normal numbers, ≤ half the smallest subnormal step 2^-10 of the block's
 * scale below); int8 with step amax/127: error ≤ step/2. */
static void test_codecs_within_their_formats(void **state) {
    (void)state;
    float x[LB_COMM_BLOCK], y[LB_COMM_BLOCK];
    unsigned char buf[LB_COMM_BLOCK * 4];
    for (int trial = 0; trial < 4; trial++) {
        float range = powf(10.0f, (float)(2 * trial - 4)); /* 1e-4 .. 1e2 */
        size_t len = trial == 3 ? 77 : LB_COMM_BLOCK;      /* a partial last block too */
        float amax = 0.0f;
        for (size_t i = 0; i < len; i++) {
            x[i] = range * (2.0f * lb_rand_uniform(11, 3, (uint64_t)(trial * 1000) + i) - 1.0f);
            amax = fmaxf(amax, fabsf(x[i]));
        }
        lb_comm_encode(LB_COMM_BF16, x, len, buf);
        lb_comm_decode(LB_COMM_BF16, buf, len, y);
        for (size_t i = 0; i < len; i++) assert_true(fabsf(y[i] - x[i]) <= ldexpf(fabsf(x[i]), -8));

        lb_comm_encode(LB_COMM_INT8, x, len, buf);
        lb_comm_decode(LB_COMM_INT8, buf, len, y);
        float step = amax / 127.0f;
        for (size_t i = 0; i < len; i++) assert_true(fabsf(y[i] - x[i]) <= 0.5f * step * (1.0f + 1e-5f));

        lb_comm_encode(LB_COMM_FP8, x, len, buf);
        lb_comm_decode(LB_COMM_FP8, buf, len, y);
        float unit = amax / 448.0f; /* the block's value of 1.0 in E4M3 */
        for (size_t i = 0; i < len; i++)
            assert_true(fabsf(y[i] - x[i]) <= fmaxf(ldexpf(fabsf(x[i]), -4), ldexpf(unit, -10)) * (1.0f + 1e-5f));
    }
    /* all zeros: a zero step, zeros back */
    memset(x, 0, sizeof x);
    for (int f = LB_COMM_BF16; f < LB_COMM_COUNT; f++) {
        lb_comm_encode((lb_comm_format)f, x, LB_COMM_BLOCK, buf);
        lb_comm_decode((lb_comm_format)f, buf, LB_COMM_BLOCK, y);
        for (int i = 0; i < LB_COMM_BLOCK; i++) assert_true(y[i] == 0.0f);
    }
    /* a NaN or inf arrives non-finite (the trainer then skips the step on
     * every rank): int8 and fp8 send the whole block as NaN, bf16 the value */
    for (int bad = 0; bad < 2; bad++)
        for (int f = LB_COMM_BF16; f < LB_COMM_COUNT; f++) {
            for (int i = 0; i < LB_COMM_BLOCK; i++) x[i] = 0.01f * (float)(i % 7) - 0.03f;
            x[5] = bad ? INFINITY : NAN;
            lb_comm_encode((lb_comm_format)f, x, LB_COMM_BLOCK, buf);
            lb_comm_decode((lb_comm_format)f, buf, LB_COMM_BLOCK, y);
            assert_false(isfinite(y[5]));
            if (f != LB_COMM_BF16)
                for (int i = 0; i < LB_COMM_BLOCK; i++) assert_true(isnan(y[i]));
        }
    assert_int_equal(lb_comm_block_bytes(LB_COMM_BF16), 2 * LB_COMM_BLOCK);
    assert_int_equal(lb_comm_block_bytes(LB_COMM_INT8), 4 + LB_COMM_BLOCK);
    assert_int_equal(lb_comm_block_bytes(LB_COMM_FP8), 4 + LB_COMM_BLOCK);
}

/* Largest first to the least loaded rank: every tensor has one owner, the
 * loads differ by at most the largest tensor, ties go to the lowest rank. */
static void test_zero_owners(void **state) {
    (void)state;
    enum { N = 9 };
    const size_t sizes[N] = {100, 4000, 64, 64, 2500, 900, 4000, 10, 1};
    lb_tensor t[N];
    lb_tensor *p[N];
    memset(t, 0, sizeof t);
    for (int i = 0; i < N; i++) {
        t[i].n = sizes[i];
        p[i] = &t[i];
    }
    for (int ranks = 1; ranks <= 4; ranks++) {
        lb_dist d = {.rank = 0, .size = ranks};
        int owner[N];
        lb_zero_owners(&d, p, N, owner);
        size_t load[4] = {0};
        for (int i = 0; i < N; i++) {
            assert_true(owner[i] >= 0 && owner[i] < ranks);
            load[owner[i]] += sizes[i];
        }
        size_t lo = load[0], hi = load[0];
        for (int r = 1; r < ranks; r++) {
            lo = load[r] < lo ? load[r] : lo;
            hi = load[r] > hi ? load[r] : hi;
        }
        assert_true(hi - lo <= 4000);
        assert_int_equal(owner[1], 0); /* the first of the two largest */
        if (ranks > 1) assert_int_equal(owner[6], 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_of_one_rank),
        cmocka_unit_test(test_codecs_within_their_formats),
        cmocka_unit_test(test_zero_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Tests of src/core: errors, tensors, the arena and the RNG. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "testutil.h"

static void test_error_message_and_prefix(void **state) {
    (void)state;
    assert_int_equal(lb_error(LB_EINVAL, "tensor '%s': bad", "w"), LB_EINVAL);
    lb_error_prefix("checkpoint '%s'", "a.h5");
    assert_string_equal(lb_errmsg(), "checkpoint 'a.h5': tensor 'w': bad");
    assert_int_equal(lb_errcode(), LB_EINVAL);
    lb_error_clear();
    assert_string_equal(lb_errmsg(), "");
    assert_string_equal(lb_status_name(LB_EFORMAT), "bad file format");
}

static void test_tensor_shapes(void **state) {
    (void)state;
    int shape[3] = {2, 3, 4};
    lb_tensor *t = lb_tensor_alloc(3, shape, 1);
    assert_non_null(t);
    assert_int_equal(t->n, 24);
    assert_int_equal(lb_tensor_rows(t), 6);
    assert_int_equal(lb_tensor_cols(t), 4);
    char buf[32];
    assert_string_equal(lb_shape_str(t, buf, sizeof buf), "[2,3,4]");
    assert_float_equal(t->grad[23], 0.0f, 0.0f);
    lb_tensor_free(t);

    int bad[2] = {2, 0};
    assert_null(lb_tensor_alloc(2, bad, 0));
    assert_int_equal(lb_errcode(), LB_EINVAL);
    assert_int_equal(lb_shape_numel(5, shape), 0);

    float v[4] = {1, 2, NAN, 4};
    assert_int_equal(lb_find_nonfinite(v, 4), 3);
    assert_int_equal(lb_find_nonfinite(v, 2), 0);
}

static void test_arena_alignment_and_steady_state(void **state) {
    (void)state;
    lb_arena a;
    assert_int_equal(lb_arena_init(&a, 1024), LB_OK);
    /* First step: more than the initial chunk, so chunks are added. */
    for (int i = 0; i < 20; i++) {
        unsigned char *p = lb_arena_alloc(&a, 1000 + (size_t)i);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % LB_ARENA_ALIGN, 0);
        memset(p, 0xAB, 1000 + (size_t)i);
    }
    size_t peak = a.peak;
    assert_true(peak >= 20 * 1000);
    lb_arena_reset(&a);
    size_t allocs = a.n_system_allocs;
    /* Later steps of the same shape take nothing more from the system. */
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 20; i++) assert_non_null(lb_arena_alloc(&a, 1000 + (size_t)i));
        lb_arena_reset(&a);
    }
    assert_int_equal(a.n_system_allocs, allocs);
    assert_int_equal(a.peak, peak);
    float *z = lb_arena_calloc(&a, 64 * sizeof(float));
    for (int i = 0; i < 64; i++) assert_float_equal(z[i], 0.0f, 0.0f);
    lb_arena_free(&a);
}

/* Released blocks are reused before the arena bumps: best fit first, then
 * neighbours merged; a reset forgets them. */
static void test_arena_release_reuses_blocks(void **state) {
    (void)state;
    lb_arena a;
    assert_int_equal(lb_arena_init(&a, 1 << 16), LB_OK);
    unsigned char *p1 = lb_arena_alloc(&a, 1024), *p2 = lb_arena_alloc(&a, 1024), *p3 = lb_arena_alloc(&a, 4096);
    unsigned char *p4 = lb_arena_alloc(&a, 64);
    size_t used = a.used;
    lb_arena_release(&a, p3, 4096);
    lb_arena_release(&a, p2, 1024);
    assert_ptr_equal(lb_arena_alloc(&a, 1000), p2); /* the smaller block that fits */
    assert_ptr_equal(lb_arena_alloc(&a, 100), p3);  /* the front of the other... */
    assert_ptr_equal(lb_arena_alloc(&a, 64), p3 + 128); /* ...and what was left of it */
    assert_ptr_equal(lb_arena_alloc(&a, 4096 - 192), p3 + 192);
    assert_int_equal(a.used, used);
    lb_arena_release(&a, p1, 1024);
    lb_arena_release(&a, p2, 1000);
    /* Neither block alone holds 2000 bytes; side by side they do. */
    assert_ptr_equal(lb_arena_alloc(&a, 2000), p1);
    assert_int_equal(a.used, used);
    /* Nothing free that fits: bump. */
    assert_ptr_equal(lb_arena_alloc(&a, 64), p4 + 64);
    lb_arena_release(&a, p4, 64);
    lb_arena_reset(&a);
    assert_ptr_equal(lb_arena_alloc(&a, 64), p1);
    assert_ptr_equal(lb_arena_alloc(&a, 64), p1 + 64);
    lb_arena_free(&a);
}

/* Steps that each need a little more than the last (a generation window
 * growing by one token) grow the arena with what they use: its capacity
 * stays within a small factor of the peak instead of doubling per step. */
static void test_arena_growing_steps_stay_bounded(void **state) {
    (void)state;
    lb_arena a;
    assert_int_equal(lb_arena_init(&a, 4096), LB_OK);
    for (size_t step = 1; step <= 60; step++) {
        for (size_t i = 0; i < step; i++) assert_non_null(lb_arena_alloc(&a, 4096));
        assert_true(a.capacity <= 4 * a.peak + 4096);
        lb_arena_reset(&a);
    }
    assert_true(a.capacity <= 2 * a.peak);
    lb_arena_free(&a);
}

static void test_philox_known_answer(void **state) {
    (void)state;
    /* Known-answer vectors of Random123's philox4x32_10 (kat_vectors). */
    uint32_t out[4];
    lb_philox4x32(0, 0, 0, out);
    assert_int_equal(out[0], 0x6627e8d5u);
    assert_int_equal(out[1], 0xe169c58du);
    assert_int_equal(out[2], 0xbc57ac4cu);
    assert_int_equal(out[3], 0x9b00dbd8u);
    /* key {0xa4093822, 0x299f31d0}, counter {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344} */
    lb_philox4x32(0x299f31d0a4093822ull, 0x85a308d3243f6a88ull, 0x0370734413198a2eull, out);
    assert_int_equal(out[0], 0xd16cfe09u);
    assert_int_equal(out[1], 0x94fdccebu);
    assert_int_equal(out[2], 0x5001e420u);
    assert_int_equal(out[3], 0x24126ea1u);
}

/* The batched draws are the single draws, for any start (a counter's first
 * word or not), any length, and counters that carry into their high word. */
static void test_rand_fill_matches_single_draws(void **state) {
    (void)state;
    enum { MAXN = 5000 };
    uint32_t *w = malloc(MAXN * sizeof *w);
    float *u = malloc(MAXN * sizeof *u);
    const uint64_t firsts[] = {0, 1, 2, 3, 4, 1001, ((uint64_t)1 << 34) - 6, UINT64_MAX - 5000};
    const size_t lens[] = {0, 1, 3, 4, 5, 255, 256, 257, 1000, MAXN};
    for (size_t a = 0; a < sizeof firsts / sizeof firsts[0]; a++)
        for (size_t b = 0; b < sizeof lens / sizeof lens[0]; b++) {
            uint64_t first = firsts[a];
            size_t n = lens[b];
            lb_rand_u32_fill(7, LB_STREAM_STOCHASTIC + 3, first, n, w);
            lb_rand_uniform_fill(7, LB_STREAM_STOCHASTIC + 3, first, n, u);
            for (size_t i = 0; i < n; i++) {
                if (w[i] != lb_rand_u32(7, LB_STREAM_STOCHASTIC + 3, first + i))
                    fail_msg("lb_rand_u32_fill from %llu, n %zu: word %zu differs", (unsigned long long)first, n, i);
                assert_true(u[i] == lb_rand_uniform(7, LB_STREAM_STOCHASTIC + 3, first + i));
            }
        }
    free(w);
    free(u);
}

static void fill_parallel(float *v, int n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 7)
    for (int i = 0; i < n; i++) v[i] = lb_rand_uniform(42, LB_STREAM_DATA, (uint64_t)i);
}

static void test_rng_same_with_1_and_2_threads(void **state) {
    (void)state;
    enum { N = 10007 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    fill_parallel(a, N, 1);
    fill_parallel(b, N, 2);
    assert_memory_equal(a, b, N * sizeof(float));
    double mean = 0;
    for (int i = 0; i < N; i++) {
        assert_true(a[i] >= 0.0f && a[i] < 1.0f);
        mean += a[i];
    }
    mean /= N;
    assert_true(fabs(mean - 0.5) < 0.01);
    free(a);
    free(b);
}

static void test_rng_sequential_resume_and_distributions(void **state) {
    (void)state;
    lb_rng r, s;
    lb_rng_init(&r, 7, LB_STREAM_INIT);
    for (int i = 0; i < 5; i++) lb_rng_u32(&r);
    s = r; /* the state is three integers: copying it resumes the stream */
    assert_int_equal(lb_rng_u32(&r), lb_rng_u32(&s));
    lb_rng other;
    lb_rng_init(&other, 7, LB_STREAM_DATA);
    assert_int_not_equal(lb_rng_u32(&other), lb_rand_u32(7, LB_STREAM_INIT, 0));

    double sum = 0, sq = 0;
    enum { N = 200000 };
    for (int i = 0; i < N; i++) {
        double x = lb_rng_normal(&r);
        sum += x;
        sq += x * x;
    }
    assert_true(fabs(sum / N) < 0.01);
    assert_true(fabs(sq / N - 1.0) < 0.02);
    int counts[5] = {0};
    for (int i = 0; i < 50000; i++) counts[lb_rng_below(&r, 5)]++;
    for (int k = 0; k < 5; k++) assert_true(abs(counts[k] - 10000) < 400);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_message_and_prefix),
        cmocka_unit_test(test_tensor_shapes),
        cmocka_unit_test(test_arena_alignment_and_steady_state),
        cmocka_unit_test(test_arena_release_reuses_blocks),
        cmocka_unit_test(test_arena_growing_steps_stay_bounded),
        cmocka_unit_test(test_philox_known_answer),
        cmocka_unit_test(test_rand_fill_matches_single_draws),
        cmocka_unit_test(test_rng_same_with_1_and_2_threads),
        cmocka_unit_test(test_rng_sequential_resume_and_distributions),
    };
    return tu_run_group_tests(tests, NULL, NULL);
}

/* Helpers shared by the test programs. */
#ifndef LOWBIT_TESTS_TESTUTIL_H
#define LOWBIT_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "autograd/ops.h"
#include "io/config.h"
#include "core/rng.h"

/* Fills t->data with uniform values in [lo, hi) from (seed, stream). */
void tu_fill_uniform(lb_tensor *t, uint64_t seed, float lo, float hi);

/* A heap tensor filled uniformly in [lo, hi): tu_param with a gradient
 * (requires_grad set), tu_const without. Fails the test when out of memory.
 * Free with lb_tensor_free. */
lb_tensor *tu_param(int ndim, const int *shape, uint64_t seed, float lo, float hi);
lb_tensor *tu_const(int ndim, const int *shape, uint64_t seed, float lo, float hi);

/* sum(y ⊙ R) with a fixed random R in [-1, 1) drawn from `seed`, so every
 * element of y moves the loss by a different amount and a misplaced gradient
 * cannot cancel out. NULL when y is NULL. */
lb_tensor *tu_weighted_sum(lb_graph *g, lb_tensor *y, uint64_t seed);

/* A function from the current values of `params` to a scalar loss, built on a
 * fresh graph each call. It returns the loss tensor (NULL on error). */
typedef lb_tensor *(*tu_loss_fn)(lb_graph *g, lb_tensor **params, int n_params, void *ctx);

/* Finite-difference gradient check.
 *
 * Runs `fn` once with gradients and lb_backward, then for every element of
 * every parameter compares the analytic gradient against the central
 * difference (L(p + h) − L(p − h)) / 2h computed in double from two fp32
 * forward passes. With fp32 forwards the difference carries an absolute
 * error of about eps_f32·|L|/h, so the check passes when
 *   |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|).
 * h = 1e-2 to 1e-3 with rtol 1e-2 and atol 1e-3 suit smooth ops on O(1)
 * inputs. Fails the running cmocka test with the parameter, index and both
 * values on the first mismatch. Returns the largest relative error seen. */
double tu_gradcheck(tu_loss_fn fn, lb_tensor **params, int n_params, void *ctx, float h, double rtol,
                    double atol);

/* A fresh, empty directory under $TMPDIR (or /tmp) for a test's files;
 * `buf` receives its path. */
void tu_tmpdir(char *buf, size_t size, const char *tag);

/* Runs a shell command; the test fails, naming it, unless it exits 0. */
void tu_run_ok(const char *cmd);

/* A temporary run directory holding a generated corpus: sentences from a
 * small grammar (subject, verb, object) drawn with the counter-based RNG
 * under `seed`, `corpus_bytes` long, which a small model learns in a few
 * dozen steps. tu_run_dir_free removes the directory and everything in it. */
typedef struct tu_run_dir {
    char dir[256];
    char corpus[300];
} tu_run_dir;
tu_run_dir *tu_run_dir_new(const char *tag, size_t corpus_bytes, uint64_t seed);
void tu_run_dir_free(tu_run_dir *r);

/* lb_config_set with a printf-style assignment; fails the test on error. */
void tu_config_set(lb_config *c, const char *fmt, ...) LB_PRINTF(2, 3);

/* The tests' small model on c: d 64, 2 layers, 2 heads, ffn 128, 32
 * positions (a step takes milliseconds; 64x64 weights are 4096 elements). */
void tu_config_small_model(lb_config *c);

/* cmocka_run_group_tests limited to the tests $LOWBIT_TEST_FILTER names (a
 * cmocka glob) when it is set: ctest uses it to list one gradient check per
 * op (see tests/CMakeLists.txt). Its value is the program's exit status:
 * 1 when a test failed, else TU_EXIT_SKIPPED when one was skipped, else 0. */
#define tu_run_group_tests(tests, setup, teardown) \
    (tu_apply_test_filter(), tu_exit_status(cmocka_run_group_tests(tests, setup, teardown)))
void tu_apply_test_filter(void);
int tu_exit_status(int n_failed);

/* The exit status ctest reports as "skipped" (SKIP_RETURN_CODE in
 * tests/CMakeLists.txt), the automake convention. */
#define TU_EXIT_SKIPPED 77

/* For a test that needs something scripts/setup.sh installs (PyTorch, h5py,
 * the fortunes corpus): returns when `present` is true. Otherwise, or when
 * $LOWBIT_TEST_HIDE_DEPS (a comma-separated list, for testing this path)
 * names `name`, the dependency is missing, and the running test
 *   - fails, saying so, when $LOWBIT_REQUIRE_DEPS is 1 (scripts/test.sh sets
 *     it: the suite must not pass with a check left out);
 *   - is skipped otherwise, and the program then exits with TU_EXIT_SKIPPED
 *     so that ctest shows it as skipped, not passed.
 * `install` says how to get it, e.g. "apt-get install python3-torch". */
void tu_require_dependency(const char *name, int present, const char *install);

/* Runs /usr/bin/python3 <source>/scripts/reference/<script> <args> and returns
 * its exit status; status 77 (the script found no torch) goes through
 * tu_require_dependency("torch", ...). */
int tu_run_torch_script(const char *script, const char *args);

/* $LOWBIT_SOURCE_DIR (set by ctest) or "." */
const char *tu_source_dir(void);

#endif

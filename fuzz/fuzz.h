/* Shared by the fuzz harnesses (fuzz/fuzz_*.c): each defines libFuzzer's
 * LLVMFuzzerTestOneInput for one reader. Built two ways (fuzz/CMakeLists.txt):
 * with LOWBIT_FUZZ=ON against libFuzzer (clang, ASan, UBSan), and in every
 * build with replay_main.c, which runs given files and directories through the
 * same function so the suite replays fuzz/regressions and fuzz/corpus. */
#ifndef LOWBIT_FUZZ_H
#define LOWBIT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "layers/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to one temporary file (the same path for the whole process, in
 * $TMPDIR or /tmp) for readers that take a path, and returns the path; NULL
 * when it cannot be written. `suffix` ends the name (".h5", ".bin"). */
const char *fuzz_tmp_file(const uint8_t *data, size_t size, const char *suffix);

/* Readers that build a model from what a file says are tried only up to this
 * many parameters: a lying header may ask for any size, and allocating it is
 * the trainer's business (its error names the bytes), not the reader's. */
#define FUZZ_MAX_MODEL_PARAMS (4u << 20)
int fuzz_model_fits(const lb_model_config *m);

#endif

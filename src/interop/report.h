/* How compressible lowbit's exports are (docs/export.md, "Compressibility"): the question of
 * "On the Compressibility of Quantized Large Language Models" asked of lowbit's models.
 *
 * For every tensor and every GGUF export type: the bits per weight of the encoding (scales
 * included), the Shannon entropy of its codes (the quantized symbols without their scales:
 * ternary codes, q8_0 int8, q4_0 nibbles, f16 and f32 bit patterns), and the bits per weight
 * after zstd at levels 3 and 19 (libzstd); then the totals of the file's tensors. */
#ifndef LOWBIT_INTEROP_REPORT_H
#define LOWBIT_INTEROP_REPORT_H

#include <stdio.h>

#include "core/error.h"
#include "layers/model.h"

/* Prints the report of `m` to `out`. */
lb_status lb_export_report(const lb_model *m, FILE *out);

/* Compresses the file `src` into `dst` (a standard zstd frame: `zstd -d` gives `src` back)
 * at `level`, atomically; *in_bytes and *out_bytes (may be NULL) receive the sizes. */
lb_status lb_zstd_compress_file(const char *src, const char *dst, int level, size_t *in_bytes, size_t *out_bytes);

#endif

/* A quantization spec: which number format, and over what the scales are
 * shared. Configs name specs with compact strings (lb_qspec_parse):
 *
 *   none            no quantization (fp32)
 *   binary          BitNet b1 weights: sign(W − mean W), scale mean|W|
 *   ternary         BitNet b1.58 weights: absmean ternary, per tensor
 *   ternary:per_channel, ternary:g128     finer scale granularity
 *   int8:per_token  BitNet activations: absmax per row (token)
 *   int4:g128:sym, int8:per_channel:asym, int2..int8 likewise
 *   int4:g128:lsq   learned step sizes (LSQ), one per scale block
 *   fp8_e4m3, fp8_e5m2, fp4_e2m1, mxfp8, mxfp4, bf16, fp16
 *
 * The exact grammar is documented in docs/quantization.md. */
#ifndef LOWBIT_QUANT_QSPEC_H
#define LOWBIT_QUANT_QSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"

typedef enum lb_qformat {
    LB_QF_NONE = 0,
    LB_QF_BINARY,     /* BitNet b1 */
    LB_QF_TERNARY,    /* BitNet b1.58 */
    LB_QF_INT,        /* INTn, n = bits (2..8) */
    LB_QF_FP8_E4M3,
    LB_QF_FP8_E5M2,
    LB_QF_FP4_E2M1,
    LB_QF_MXFP8,      /* 32 E4M3 elements share an E8M0 scale */
    LB_QF_MXFP4,      /* 32 E2M1 elements share an E8M0 scale */
    LB_QF_BF16,
    LB_QF_FP16,
    LB_QF_COUNT
} lb_qformat;

/* What a format is, from quant/qspec.c's table: its name in spec strings,
 * its default bits per element, and for formats whose elements are a stored
 * float dtype (FP8, MX-FP8, BF16, FP16) that dtype of core/dtype.h, whose
 * traits (range, codecs) the quantizers use. */
typedef struct lb_qformat_traits {
    const char *name;  /* "ternary", "fp8_e4m3", ...; INT is spelled int2..int8 */
    int bits;          /* binary 1, ternary 2, INT 8 (a spec sets 2..8), fp8 8, ... */
    int element;       /* an lb_dtype, or -1 (binary, ternary and INT codes, FP4) */
} lb_qformat_traits;

/* NULL for a value outside the enum. */
const lb_qformat_traits *lb_qformat_info(lb_qformat f);

typedef enum lb_qgran {
    LB_QG_TENSOR = 0, /* one scale for the whole tensor */
    LB_QG_ROW,        /* one scale per row: per output channel of a weight, per token of an activation */
    LB_QG_GROUP       /* one scale per `group` consecutive elements of a row */
} lb_qgran;

typedef struct lb_qspec {
    lb_qformat format;
    int bits;          /* INT: 2..8; set for every format (binary 1, ternary 2, fp8 8, ...) */
    lb_qgran gran;
    int group;         /* elements per group when gran == LB_QG_GROUP */
    int asymmetric;    /* INT: zero point (min/max) instead of symmetric absmax */
    int per_token;     /* printed as per_token rather than per_channel (same kernel: rows) */
    int stochastic;    /* INT8/FP8: stochastic rounding instead of nearest-even */
    int saturate;      /* FP8: clamp overflow to ±max (default 1) instead of NaN/inf */
    int b1;            /* INT: BitNet b1 activation form, x·Qb/γ with Qb = 2^(bits−1), codes within ±(Qb−1);
                          with `asymmetric` the b1 zero-point shift x − min(x) for non-negative inputs */
    int raw;           /* FP8/FP4: cast without a scale (fixed scale 1) instead of a power-of-two amax scale */
    int lsq;           /* INT: learned step sizes (LSQ, Esser et al. 2020), one per scale block, trained as
                          parameters of the model; applied by lb_fake_quant_lsq, not by the absmax kernels */
    int unused_;       /* 0: keeps the struct free of padding, so equal specs are equal bytes */
    /* Stochastic rounding draws element i's uniform as
     *   lb_rand_uniform(seed, LB_STREAM_STOCHASTIC + stream, i)
     * (i the flat index in the tensor), so (seed, stream) reproduces a rounding.
     * Callers give every (step, tensor) its own stream, e.g. (step << 20) + tensor index.
     * Not part of the text form: parsing sets both to 0. */
    uint64_t seed;
    uint64_t stream;
} lb_qspec;
_Static_assert(sizeof(lb_qspec) == 12 * sizeof(int) + 2 * sizeof(uint64_t), "lb_qspec has no padding");

/* Parses `text` into `out`. LB_ECONFIG with a message saying what was
 * expected when `text` is malformed. */
lb_status lb_qspec_parse(const char *text, lb_qspec *out);
/* Canonical text of a spec (parses back to the same spec). Returns the
 * length written, as snprintf does. */
int lb_qspec_format(const lb_qspec *spec, char *buf, size_t size);
/* A spec that does nothing (format none). */
lb_qspec lb_qspec_none(void);
static inline int lb_qspec_is_none(const lb_qspec *s) { return s->format == LB_QF_NONE; }

#endif

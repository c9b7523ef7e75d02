/* Array quantizers: one pass for the statistics of each scale block (mean,
 * mean |x|, min, max), then one element pass that rounds, clamps and either
 * stores codes or writes the dequantized value straight back (fake-quant).
 *
 * Every integer-like format is the same element operation with different
 * block parameters:
 *   q = clamp(round((x − shift) · s) + z, qmin, qmax),   y = q · d + m
 *   ternary      s = 1/γ, γ = max(mean|x|, 1e-5), q in [−1, 1]       (BitNet b1.58)
 *   INT sym      s = Qp / max(max|x|, 1e-5), q in [−Qp−1, Qp]
 *   INT b1       s = Qb / max(max|x|, 1e-5), q in [−(Qb−1), Qb−1]    (BitNet b1 activations)
 *   INT b1 asym  shift = min x, q in [0, Qb−1], m = min x
 *   INT asym     d = (max(x,0) − min(x,0)) / (2^n − 1), z = round(−min(x,0)/d), m = −z·d
 * with d = 1/s. Binary is a sign against the mean, and the float formats
 * round through the shared minifloat encoder (core/minifloat.h).
 * round() is round-half-to-even (rintf), as torch.round in the BitNet
 * reference code. */
#include "quant/quantize.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/minifloat.h"
#include "core/minifloat.h"

#define MX_BLOCK 32
#define PAR_MIN 32768 /* below this many elements a loop runs on one thread */

/* --- blocks ------------------------------------------------------------------ */

static int scaled_by_block(const lb_qspec *s) {
    switch (s->format) {
    case LB_QF_NONE: case LB_QF_BF16: case LB_QF_FP16: return 0;
    case LB_QF_FP8_E4M3: case LB_QF_FP8_E5M2: case LB_QF_FP4_E2M1: return !s->raw;
    default: return 1;
    }
}

static size_t groups_per_row(const lb_qspec *s, size_t cols) { return (cols + (size_t)s->group - 1) / (size_t)s->group; }

size_t lb_quant_n_blocks(const lb_qspec *s, size_t rows, size_t cols) {
    if (!scaled_by_block(s) || s->gran == LB_QG_TENSOR) return 1;
    if (s->gran == LB_QG_ROW) return rows;
    return rows * groups_per_row(s, cols);
}

size_t lb_quant_block_of(const lb_qspec *s, size_t rows, size_t cols, size_t r, size_t c) {
    (void)rows;
    if (!scaled_by_block(s) || s->gran == LB_QG_TENSOR) return 0;
    if (s->gran == LB_QG_ROW) return r;
    return r * groups_per_row(s, cols) + c / (size_t)s->group;
}

lb_status lb_quant_check(const lb_qspec *s, size_t rows, size_t cols) {
    if (rows == 0 || cols == 0) return lb_error(LB_EINVAL, "quantize: empty matrix [%zu, %zu]", rows, cols);
    if (s->format == LB_QF_INT && (s->bits < 2 || s->bits > 8))
        return lb_error(LB_EINVAL, "quantize: int%d: expected 2 to 8 bits", s->bits);
    if (s->format == LB_QF_MXFP8 || s->format == LB_QF_MXFP4) {
        if (s->gran != LB_QG_GROUP || s->group != MX_BLOCK)
            return lb_error(LB_EINVAL, "quantize: MX formats need blocks of %d (gran group, group %d)", MX_BLOCK, MX_BLOCK);
    }
    if (scaled_by_block(s) && s->gran == LB_QG_GROUP && s->group < 1)
        return lb_error(LB_EINVAL, "quantize: group size %d: expected >= 1", s->group);
    if ((unsigned)s->format >= LB_QF_COUNT) return lb_error(LB_EINVAL, "quantize: unknown format %d", (int)s->format);
    return LB_OK;
}

void lb_quant_block_span(const lb_qspec *s, size_t rows, size_t cols, size_t b, size_t *start, size_t *len) {
    if (!scaled_by_block(s) || s->gran == LB_QG_TENSOR) {
        *start = 0;
        *len = rows * cols;
    } else if (s->gran == LB_QG_ROW) {
        *start = b * cols;
        *len = cols;
    } else {
        size_t G = groups_per_row(s, cols), r = b / G, k = b % G, g = (size_t)s->group;
        *start = r * cols + k * g;
        *len = cols - k * g < g ? cols - k * g : g;
    }
}

/* --- statistics --------------------------------------------------------------- */

typedef struct stats {
    double sum, sabs;  /* only when the format needs means */
    float mn, mx;      /* NaNs are skipped (comparisons with NaN are false) */
    int nonfinite;     /* an inf or NaN was seen */
} stats;

static int needs_means(const lb_qspec *s) { return s->format == LB_QF_BINARY || s->format == LB_QF_TERNARY; }

static stats stats_of(const lb_qspec *s, const float *x, size_t n) {
    stats st = {0, 0, INFINITY, -INFINITY, 0};
    if (needs_means(s)) {
        double sum = 0, sabs = 0;
        /* simd reorders the sum by vector lanes: fixed for a given build, not
         * dependent on threads. */
#pragma omp simd reduction(+ : sum, sabs)
        for (size_t i = 0; i < n; i++) {
            sum += x[i];
            sabs += fabsf(x[i]);
        }
        st.sum = sum;
        st.sabs = sabs;
    } else {
        float mn = INFINITY, mx = -INFINITY;
        int bad = 0;
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(| : bad)
        for (size_t i = 0; i < n; i++) {
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
            bad |= (lb_f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u;
        }
        st.mn = mn;
        st.mx = mx;
        st.nonfinite = bad;
    }
    return st;
}

/* Whole-tensor statistics over fixed chunks combined in order, so the sums
 * do not depend on the number of threads. */
#define MAX_CHUNKS 256
static stats stats_tensor(const lb_qspec *s, const float *x, size_t n) {
    stats part[MAX_CHUNKS];
    size_t chunk = n / MAX_CHUNKS + 1;
    if (chunk < 4096) chunk = 4096;
    int nc = (int)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int c = 0; c < nc; c++) {
        size_t lo = (size_t)c * chunk, len = n - lo < chunk ? n - lo : chunk;
        part[c] = stats_of(s, x + lo, len);
    }
    stats st = part[0];
    for (int c = 1; c < nc; c++) {
        st.sum += part[c].sum;
        st.sabs += part[c].sabs;
        st.mn = part[c].mn < st.mn ? part[c].mn : st.mn;
        st.mx = part[c].mx > st.mx ? part[c].mx : st.mx;
        st.nonfinite |= part[c].nonfinite;
    }
    return st;
}

/* --- block parameters ---------------------------------------------------------- */

typedef struct qblock {
    float s, d;          /* multiply before rounding; step after */
    float shift, z, m;   /* see the top of the file */
    float qmin, qmax;
    float lo, hi;        /* representable range */
} qblock;

/* Largest finite value of a format's elements: the element dtype's (core/dtype.h),
 * FP4's from core/minifloat.h; unbounded for the integer formats. */
static float fmt_max(lb_qformat f) {
    if (f == LB_QF_FP4_E2M1 || f == LB_QF_MXFP4) return LB_FP4_E2M1_MAX;
    int e = lb_qformat_info(f)->element;
    return e >= 0 ? (float)lb_dtype_info((lb_dtype)e)->max : FLT_MAX;
}

float lb_pow2_scale(float amax, float fmax, int margin, float old_scale) {
    if (!(amax > 0.0f) || !isfinite(amax)) return old_scale;
    /* floor(log2(fmax / amax)) from the binary exponents, exactly: with
     * x = m·2^e, m in [0.5, 1), the ratio is (m_max / m_amax)·2^(e_max − e_amax)
     * and m_max / m_amax lies in (0.5, 2). */
    int e_max, e_amax;
    float m_max = frexpf(fmax, &e_max);
    float m_amax = frexpf(amax, &e_amax);
    int e = e_max - e_amax - (m_max < m_amax ? 1 : 0) - margin;
    if (e > 126) e = 126;
    if (e < -126) e = -126;
    return lb_pow2f(e);
}

static qblock params_of(const lb_qspec *s, const stats *st, size_t n) {
    qblock b = {1, 1, 0, 0, 0, 0, 0, -INFINITY, INFINITY};
    float amax = fmaxf(fabsf(st->mn), fabsf(st->mx));
    switch (s->format) {
    case LB_QF_BINARY: {
        float alpha = (float)(st->sum / (double)n), beta = (float)(st->sabs / (double)n);
        b.shift = alpha; /* the threshold */
        b.d = beta;
        b.qmin = -1;
        b.qmax = 1;
        break;
    }
    case LB_QF_TERNARY: {
        float gamma = fmaxf((float)(st->sabs / (double)n), 1e-5f);
        b.s = 1.0f / gamma;
        b.d = 1.0f / b.s;
        b.qmin = -1;
        b.qmax = 1;
        break;
    }
    case LB_QF_INT: {
        float Qb = (float)(1 << (s->bits - 1));
        if (s->b1) {
            b.s = Qb / fmaxf(amax, 1e-5f);
            b.d = 1.0f / b.s;
            b.qmin = s->asymmetric ? 0 : -(Qb - 1);
            b.qmax = Qb - 1;
            if (s->asymmetric) b.shift = b.m = st->mn;
        } else if (s->asymmetric) {
            float lo = fminf(st->mn, 0.0f), hi = fmaxf(st->mx, 0.0f);
            b.qmax = (float)((1 << s->bits) - 1);
            b.d = fmaxf(hi - lo, 1e-5f) / b.qmax;
            b.s = 1.0f / b.d;
            b.z = fminf(fmaxf(rintf(-lo * b.s), 0.0f), b.qmax);
            b.m = -(b.z * b.d);
        } else {
            b.s = (Qb - 1) / fmaxf(amax, 1e-5f);
            b.d = 1.0f / b.s;
            b.qmin = -Qb;
            b.qmax = Qb - 1;
        }
        b.lo = (b.qmin - 0.5f) * b.d + b.m;
        b.hi = (b.qmax + 0.5f) * b.d + b.m;
        return b;
    }
    case LB_QF_FP8_E4M3: case LB_QF_FP8_E5M2: case LB_QF_FP4_E2M1:
        if (!s->raw) {
            b.s = lb_pow2_scale(amax, fmt_max(s->format), 0, 1.0f);
            b.d = 1.0f / b.s;
        }
        b.lo = -fmt_max(s->format) * b.d;
        b.hi = fmt_max(s->format) * b.d;
        return b;
    case LB_QF_MXFP8: case LB_QF_MXFP4: {
        /* OCP MX v1.0: shared exponent floor(log2(amax)) − emax of the element type. */
        int emax = ilogbf(fmt_max(s->format)); /* 8 for E4M3 (448), 2 for E2M1 (6) */
        int ea = (int)((lb_f32_bits(amax) >> 23) & 0xff) - 127; /* floor(log2 amax) for normal amax */
        int X = amax > 0.0f ? (ea > -127 ? ea : ilogbf(amax)) - emax : -127;
        if (X < -127) X = -127;
        if (X > 127) X = 127;
        b.d = st->nonfinite ? NAN : (X > -127 ? lb_pow2f(X) : ldexpf(1.0f, X));
        b.s = X < 127 ? lb_pow2f(-X) : ldexpf(1.0f, -X);
        b.lo = -fmt_max(s->format) * b.d;
        b.hi = fmt_max(s->format) * b.d;
        return b;
    }
    case LB_QF_BF16: case LB_QF_FP16:
        b.lo = -fmt_max(s->format);
        b.hi = fmt_max(s->format);
        return b;
    case LB_QF_NONE: case LB_QF_COUNT: return b; /* lb_quant_check refuses LB_QF_COUNT */
    }
    /* Binary and ternary: x is inside while the clamp does not change its
     * code, within half a step of the extreme levels (binary: levels ±β,
     * step 2β, so [−2β, 2β]). */
    b.lo = s->format == LB_QF_BINARY ? -2.0f * b.d : (b.qmin - 0.5f) * b.d;
    b.hi = s->format == LB_QF_BINARY ? 2.0f * b.d : (b.qmax + 0.5f) * b.d;
    return b;
}

/* --- element passes -------------------------------------------------------------
 * x, codes and y point at the block's first element; `base` is its flat index
 * (for the stochastic-rounding counter). Exactly one of codes/y is non-NULL. */

/* Stochastic rounding draws its uniforms SR_BATCH at a time with
 * lb_rand_uniform_fill (core/rng.h): u[i] = lb_rand_uniform(seed, stream, base + i). */
#define SR_BATCH 256

static void int_pass(const lb_qspec *s, const qblock *b, const float *x, size_t n, size_t base, uint8_t *codes,
                     float *y) {
    const float sc = b->s, shift = b->shift, z = b->z, qmin = b->qmin, qmax = b->qmax, d = b->d, m = b->m;
    /* Clamps written as comparisons so the loops vectorize; NaN passes through. */
    if (s->stochastic) {
        const uint64_t stream = LB_STREAM_STOCHASTIC + s->stream;
        float u[SR_BATCH];
        for (size_t i0 = 0; i0 < n; i0 += SR_BATCH) {
            size_t len = n - i0 < SR_BATCH ? n - i0 : SR_BATCH;
            lb_rand_uniform_fill(s->seed, stream, base + i0, len, u);
            /* u now holds the rounded values; then codes or dequantized values. */
            for (size_t j = 0; j < len; j++) {
                float q = floorf((x[i0 + j] - shift) * sc + u[j]) + z;
                q = q < qmin ? qmin : q;
                u[j] = q > qmax ? qmax : q;
            }
            if (codes)
                for (size_t j = 0; j < len; j++) codes[i0 + j] = (uint8_t)(int)u[j];
            else
                for (size_t j = 0; j < len; j++) y[i0 + j] = u[j] * d + m;
        }
    } else if (codes) {
        for (size_t i = 0; i < n; i++) {
            float q = rintf((x[i] - shift) * sc) + z;
            q = q < qmin ? qmin : q;
            q = q > qmax ? qmax : q;
            codes[i] = (uint8_t)(int)q;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float q = rintf((x[i] - shift) * sc) + z;
            q = q < qmin ? qmin : q;
            q = q > qmax ? qmax : q;
            y[i] = q * d + m;
        }
    }
}

static void binary_pass(const qblock *b, const float *x, size_t n, uint8_t *codes, float *y) {
    const float alpha = b->shift, beta = b->d;
    /* sign(x − α) with sign(0) = −1 */
    if (codes)
        for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(x[i] > alpha ? 1 : -1);
    else
        for (size_t i = 0; i < n; i++) y[i] = x[i] > alpha ? beta : -beta;
}

/* Decoding table of an element format: 256 entries (16 used for FP4). */
static void fp_table(lb_qformat f, float *lut) {
    uint8_t codes[256];
    for (int c = 0; c < 256; c++) codes[c] = (uint8_t)c;
    int e = lb_qformat_info(f)->element;
    if (e >= 0) {
        lb_dtype_info((lb_dtype)e)->to_f32(codes, lut, 256);
        return;
    }
    for (int c = 0; c < 256; c++) lut[c] = lb_fp4_e2m1_to_f32((uint8_t)(c & 15));
}

typedef struct fp_fmt {
    int mbits, bias;
    float fmax;
    float ovf;      /* value of a finite overflow: fmax (saturating), inf or NaN */
    int keep_inf;   /* inf inputs stay inf (E5M2) */
    int nan_zero;   /* NaN becomes +0 (FP4 has no NaN) */
} fp_fmt;

static fp_fmt fp_fmt_of(const lb_qspec *s) {
    const float fmax = fmt_max(s->format);
    fp_fmt f = {LB_E2M1_MBITS, LB_E2M1_BIAS, fmax, fmax, 0, 1}; /* E2M1 always saturates */
    int sat = (s->format == LB_QF_MXFP8 || s->format == LB_QF_MXFP4) ? 1 : s->saturate;
    if (s->format == LB_QF_FP8_E4M3 || s->format == LB_QF_MXFP8)
        f = (fp_fmt){LB_E4M3_MBITS, LB_E4M3_BIAS, fmax, sat ? fmax : NAN, 0, 0};
    if (s->format == LB_QF_FP8_E5M2) f = (fp_fmt){LB_E5M2_MBITS, LB_E5M2_BIAS, fmax, sat ? fmax : INFINITY, 1, 0};
    return f;
}

static void fp_pass(const lb_qspec *s, const qblock *b, const float *x, size_t n, size_t base, uint8_t *codes,
                    float *y) {
    const lb_qformat f = s->format;
    const float sc = b->s, d = b->d;
    const int sat = (f == LB_QF_MXFP8 || f == LB_QF_MXFP4) ? 1 : s->saturate;
    const fp_fmt ff = fp_fmt_of(s);
    if (s->stochastic && (f == LB_QF_FP8_E4M3 || f == LB_QF_FP8_E5M2)) {
        const uint64_t stream = LB_STREAM_STOCHASTIC + s->stream;
        const int mbits = ff.mbits, bias = ff.bias, keep_inf = ff.keep_inf;
        const float fmax = ff.fmax, ovf = ff.ovf;
        float u[SR_BATCH];
        for (size_t i0 = 0; i0 < n; i0 += SR_BATCH) {
            size_t len = n - i0 < SR_BATCH ? n - i0 : SR_BATCH;
            lb_rand_uniform_fill(s->seed, stream, base + i0, len, u);
            if (codes) {
                for (size_t j = 0; j < len; j++)
                    codes[i0 + j] = f == LB_QF_FP8_E4M3 ? lb_fp8_e4m3_from_f32_sr(x[i0 + j] * sc, u[j], sat)
                                                        : lb_fp8_e5m2_from_f32_sr(x[i0 + j] * sc, u[j], sat);
                continue;
            }
            /* The rounding of lb_mini_encode_mag_sr in the float domain (see below). */
            for (size_t j = 0; j < len; j++) {
                float v = x[i0 + j] * sc, a = fabsf(v);
                int e = lb_mini_exp(a, bias);
                e = e > 127 ? 127 : e;
                float r = floorf(a * lb_pow2f(mbits - e) + u[j]) * lb_pow2f(e - mbits);
                r = a > FLT_MAX ? a : r;
                r = r > fmax ? (keep_inf && a > FLT_MAX ? a : ovf) : r;
                y[i0 + j] = copysignf(r, v) * d;
            }
        }
        return;
    }
    /* Both loops round in the float domain, as the encoder does, written
     * without branches so they vectorize: r = rint(|v| / spacing) · spacing,
     * then the overflow and inf/NaN rules of the format. */
    const int mbits = ff.mbits, bias = ff.bias, keep_inf = ff.keep_inf, nan_zero = ff.nan_zero;
    const float fmax = ff.fmax, ovf = ff.ovf;
    if (codes) {
        /* Codes of the format (see formats.c): the largest finite code, what a
         * finite overflow, an inf and a NaN become, where the sign bit goes. */
        const int fp4 = nan_zero, emin = 1 - bias;
        const uint32_t maxc = fp4 ? 7u : (keep_inf ? 0x7bu : 0x7eu);
        const uint32_t ovfc = fp4 ? 7u : (sat ? maxc : (keep_inf ? 0x7cu : 0x7fu));
        const uint32_t infc = fp4 ? 7u : (keep_inf ? 0x7cu : (sat ? 0x7eu : 0x7fu));
        const uint32_t nanc = fp4 ? 0u : 0x7fu;
        const int sign_shift = fp4 ? 3 : 7;
        const uint32_t mmask = (1u << mbits) - 1;
        for (size_t i = 0; i < n; i++) {
            float v = x[i] * sc, a = fabsf(v);
            int e = lb_mini_exp(a, bias);
            e = e > 127 ? 127 : e;
            float r = rintf(a * lb_pow2f(mbits - e)) * lb_pow2f(e - mbits);
            int finite = a <= FLT_MAX, over = finite && r > fmax, isnan_ = a != a;
            float rr = finite && !over ? r : 0.0f;
            uint32_t u = lb_f32_bits(rr);
            int E = (int)(u >> 23) - 127;
            uint32_t normal = ((uint32_t)(E + bias) << mbits) | ((u >> (23 - mbits)) & mmask);
            uint32_t sub = (uint32_t)(rr * lb_pow2f(mbits - emin));
            uint32_t c = E >= emin ? normal : sub;
            c = over ? ovfc : c;
            c = finite || isnan_ ? c : infc;
            c = isnan_ ? nanc : c;
            uint32_t sign = (fp4 && isnan_) ? 0u : (lb_f32_bits(v) >> 31) << sign_shift;
            codes[i] = (uint8_t)(c | sign);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * sc, a = fabsf(v);
        int e = lb_mini_exp(a, bias);
        e = e > 127 ? 127 : e; /* inf/NaN: keeps the exponents below in range */
        float r = rintf(a * lb_pow2f(mbits - e)) * lb_pow2f(e - mbits);
        r = a > FLT_MAX ? a : r;                                  /* inf */
        r = r > fmax ? (keep_inf && a > FLT_MAX ? a : ovf) : r;   /* overflow */
        float out = copysignf(r, v);
        out = (nan_zero && a != a) ? 0.0f : out;
        y[i] = out * d;
    }
}

static void half_pass(const lb_qspec *s, const float *x, size_t n, uint16_t *codes, float *y) {
    const int bf = s->format == LB_QF_BF16;
    if (codes) {
        for (size_t i = 0; i < n; i++) codes[i] = bf ? lb_bf16_from_f32(x[i]) : lb_fp16_from_f32(x[i]);
    } else if (bf) {
        /* Round the low 16 bits away, to nearest even; NaN stays a quiet NaN. */
        for (size_t i = 0; i < n; i++) {
            uint32_t u = lb_f32_bits(x[i]);
            uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
            r = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : r;
            y[i] = lb_f32_from_bits(r);
        }
    } else {
        /* binary16 through the float-domain rounding of fp_pass. */
        const float fmax = fmt_max(LB_QF_FP16);
        for (size_t i = 0; i < n; i++) {
            float v = x[i], a = fabsf(v);
            int e = lb_mini_exp(a, LB_F16_BIAS);
            e = e > 127 ? 127 : e;
            float r = rintf(a * lb_pow2f(LB_F16_MBITS - e)) * lb_pow2f(e - LB_F16_MBITS);
            r = a > FLT_MAX ? a : r;
            r = r > fmax ? INFINITY : r;
            y[i] = copysignf(r, v);
        }
    }
}

static void pass(const lb_qspec *s, const qblock *b, const float *x, size_t start, size_t n, void *codes, float *y) {
    uint8_t *c8 = codes ? (uint8_t *)codes + start : NULL;
    float *yy = y ? y + start : NULL;
    switch (s->format) {
    case LB_QF_NONE:
        if (yy && yy != x + start) memcpy(yy, x + start, n * sizeof(float));
        break;
    case LB_QF_BINARY: binary_pass(b, x + start, n, c8, yy); break;
    case LB_QF_TERNARY: case LB_QF_INT: int_pass(s, b, x + start, n, start, c8, yy); break;
    case LB_QF_BF16: case LB_QF_FP16:
        half_pass(s, x + start, n, codes ? (uint16_t *)codes + start : NULL, yy);
        break;
    default: fp_pass(s, b, x + start, n, start, c8, yy); break;
    }
}

/* --- drivers ---------------------------------------------------------------------- */

static lb_status run(const lb_qspec *s, const float *x, size_t rows, size_t cols, void *codes, float *scales,
                     float *zeros, float *y, float *range) {
    LB_TRY(lb_quant_check(s, rows, cols));
    if (s->lsq)
        return lb_error(LB_EINVAL, "quantize: an 'lsq' spec has learned steps, not absmax scales: apply it with "
                                   "lb_fake_quant_lsq and its step tensor");
    size_t nb = lb_quant_n_blocks(s, rows, cols), n = rows * cols;
    if (nb == 1) {
        stats st = scaled_by_block(s) ? stats_tensor(s, x, n) : (stats){0, 0, 0, 0, 0};
        qblock b = params_of(s, &st, n);
        if (scales) scales[0] = b.d;
        if (zeros) zeros[0] = b.m;
        if (range) range[0] = b.lo, range[1] = b.hi;
        const size_t chunk = 16384;
        long nc = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (long c = 0; c < nc; c++) {
            size_t lo = (size_t)c * chunk;
            pass(s, &b, x, lo, n - lo < chunk ? n - lo : chunk, codes, y);
        }
        return LB_OK;
    }
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long bi = 0; bi < (long)nb; bi++) {
        size_t start, len;
        lb_quant_block_span(s, rows, cols, (size_t)bi, &start, &len);
        stats st = stats_of(s, x + start, len);
        qblock b = params_of(s, &st, len);
        if (scales) scales[bi] = b.d;
        if (zeros) zeros[bi] = b.m;
        if (range) range[2 * bi] = b.lo, range[2 * bi + 1] = b.hi;
        pass(s, &b, x, start, len, codes, y);
    }
    return LB_OK;
}

lb_status lb_quantize(const lb_qspec *s, const float *x, size_t rows, size_t cols, void *codes, float *scales,
                      float *zeros) {
    if (s->format == LB_QF_NONE) return lb_error(LB_EINVAL, "quantize: format 'none' has no codes");
    if (s->format == LB_QF_INT && s->asymmetric && !zeros)
        return lb_error(LB_EINVAL, "quantize: asymmetric int%d needs a zeros array", s->bits);
    return run(s, x, rows, cols, codes, scales, zeros, NULL, NULL);
}

lb_status lb_fake_quantize(const lb_qspec *s, const float *x, float *y, size_t rows, size_t cols, float *range) {
    return run(s, x, rows, cols, NULL, NULL, NULL, y, range);
}

lb_status lb_quant_fit_block(const lb_qspec *s, const float *x, size_t n, lb_qblock_params *p) {
    if (!(s->format == LB_QF_TERNARY || s->format == LB_QF_INT) || s->b1 || s->lsq || s->stochastic || n == 0)
        return lb_error(LB_EINVAL, "quantize: block parameters are for ternary and INT specs (not b1, lsq or sr)");
    stats st = stats_of(s, x, n);
    qblock b = params_of(s, &st, n);
    *p = (lb_qblock_params){b.s, b.d, b.z, b.m, b.qmin, b.qmax};
    return LB_OK;
}

lb_status lb_dequantize(const lb_qspec *s, const void *codes, const float *scales, const float *zeros, size_t rows,
                        size_t cols, float *y) {
    LB_TRY(lb_quant_check(s, rows, cols));
    if (s->format == LB_QF_NONE) return lb_error(LB_EINVAL, "dequantize: format 'none' has no codes");
    int asym = s->format == LB_QF_INT && s->asymmetric;
    if (asym && !zeros) return lb_error(LB_EINVAL, "dequantize: asymmetric int%d needs a zeros array", s->bits);
    size_t nb = lb_quant_n_blocks(s, rows, cols), n = rows * cols;
    const uint8_t *c8 = codes;
    const uint16_t *c16 = codes;
    float lut[256];
    if (s->format >= LB_QF_FP8_E4M3 && s->format <= LB_QF_MXFP4) fp_table(s->format, lut);
    /* Parallel over blocks when there are several, else over chunks of the one. */
    size_t unit = nb > 1 ? 0 : 16384;
    long nu = nb > 1 ? (long)nb : (long)((n + unit - 1) / unit);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long u = 0; u < nu; u++) {
        size_t start, len, b = 0;
        if (nb > 1) {
            b = (size_t)u;
            lb_quant_block_span(s, rows, cols, b, &start, &len);
        } else {
            start = (size_t)u * unit;
            len = n - start < unit ? n - start : unit;
        }
        float d = scales ? scales[b] : 1.0f, m = asym ? zeros[b] : 0.0f;
        float *yy = y + start;
        const uint8_t *c = c8 + start;
        switch (s->format) {
        case LB_QF_BINARY: case LB_QF_TERNARY:
            for (size_t i = 0; i < len; i++) yy[i] = (float)(int8_t)c[i] * d;
            break;
        case LB_QF_INT:
            if (asym)
                for (size_t i = 0; i < len; i++) yy[i] = (float)c[i] * d + m;
            else
                for (size_t i = 0; i < len; i++) yy[i] = (float)(int8_t)c[i] * d;
            break;
        case LB_QF_BF16:
            for (size_t i = 0; i < len; i++) yy[i] = lb_f32_from_bits((uint32_t)c16[start + i] << 16);
            break;
        case LB_QF_FP16:
            /* binary16 → fp32 without branches: rebias normals, scale
             * subnormals, widen inf/NaN. */
            for (size_t i = 0; i < len; i++) {
                uint32_t h = c16[start + i], sign = (h & 0x8000u) << 16, em = h & 0x7fffu;
                uint32_t normal = (em << 13) + ((127u - 15u) << 23);
                uint32_t sub = lb_f32_bits((float)em * (1.0f / 16777216.0f));
                uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);
                uint32_t bits = em >= 0x7c00u ? special : (em < 0x400u ? sub : normal);
                yy[i] = lb_f32_from_bits(bits | sign);
            }
            break;
        default:
            for (size_t i = 0; i < len; i++) yy[i] = lut[c[i]] * d;
            break;
        }
    }
    return LB_OK;
}

/* --- LSQ ---------------------------------------------------------------------------- */

static void lsq_forward_run(const float *x, float *y, size_t n, float s, float Qn, float Qp, float lambda) {
    const float inv = 1.0f / s;
    for (size_t i = 0; i < n; i++) {
        float q = rintf(fminf(fmaxf(x[i] * inv, -Qn), Qp)) * s;
        y[i] = lambda == 1.0f ? q : x[i] + lambda * (q - x[i]);
    }
}

/* Σ dy·∂q/∂s over a run of one block (before λ and the gradient scale);
 * adds the STE gradient into dx. */
static double lsq_backward_run(const float *x, const float *dy, float *dx, size_t n, float s, float Qn, float Qp,
                               float lambda) {
    const float inv = 1.0f / s, outside = 1.0f - lambda;
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * inv, g;
        int inside = 0;
        if (v < -Qn) g = -Qn;
        else if (v > Qp) g = Qp;
        else g = rintf(v) - v, inside = 1;
        if (dx) dx[i] += inside ? dy[i] : dy[i] * outside;
        acc += (double)dy[i] * g;
    }
    return acc;
}

void lb_lsq_forward(const lb_qspec *s, const float *x, float *y, size_t rows, size_t cols, const float *step,
                    float lambda) {
    const float Qn = (float)(1 << (s->bits - 1)), Qp = Qn - 1;
    const size_t nb = lb_quant_n_blocks(s, rows, cols), n = rows * cols;
    if (nb == 1) {
        const size_t chunk = 16384;
        long nc = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (long c = 0; c < nc; c++) {
            size_t lo = (size_t)c * chunk;
            lsq_forward_run(x + lo, y + lo, n - lo < chunk ? n - lo : chunk, step[0], Qn, Qp, lambda);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long b = 0; b < (long)nb; b++) {
        size_t start, len;
        lb_quant_block_span(s, rows, cols, (size_t)b, &start, &len);
        lsq_forward_run(x + start, y + start, len, step[b], Qn, Qp, lambda);
    }
}

void lb_lsq_backward(const lb_qspec *s, const float *x, const float *dy, float *dx, size_t rows, size_t cols,
                     const float *step, float lambda, float *dstep) {
    const float Qn = (float)(1 << (s->bits - 1)), Qp = Qn - 1;
    const size_t nb = lb_quant_n_blocks(s, rows, cols), n = rows * cols;
    if (nb == 1) {
        /* Fixed chunks summed in order keep the sum independent of the thread count. */
        enum { CH = 64 };
        double part[CH] = {0};
        size_t chunk = n / CH + 1;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
        for (int c = 0; c < CH; c++) {
            size_t lo = (size_t)c * chunk, hi = lo + chunk < n ? lo + chunk : n;
            part[c] = lo < hi ? lsq_backward_run(x + lo, dy + lo, dx ? dx + lo : NULL, hi - lo, step[0], Qn, Qp, lambda)
                              : 0.0;
        }
        double sum = 0.0;
        for (int c = 0; c < CH; c++) sum += part[c];
        if (dstep) dstep[0] += (float)(lambda * sum / sqrt((double)n * Qp));
        return;
    }
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (long b = 0; b < (long)nb; b++) {
        size_t start, len;
        lb_quant_block_span(s, rows, cols, (size_t)b, &start, &len);
        double sum = lsq_backward_run(x + start, dy + start, dx ? dx + start : NULL, len, step[b], Qn, Qp, lambda);
        if (dstep) dstep[b] += (float)(lambda * sum / sqrt((double)len * Qp));
    }
}

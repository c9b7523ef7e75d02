/* Low-bit gradient rounding (see grad_round.h). */
#include "quant/grad_round.h"

#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "core/rng.h"
#include "quant/quantize.h"

const char *const lb_grad_precision_names[] = {[LB_GRAD_FP32] = "fp32", [LB_GRAD_FP8] = "fp8", [LB_GRAD_INT8] = "int8"};
_Static_assert(sizeof lb_grad_precision_names / sizeof lb_grad_precision_names[0] == LB_GRAD_COUNT,
               "quant/grad_round.c: one name per lb_grad_precision");

lb_status lb_grad_precision_parse(const char *text, lb_grad_precision *out) {
    for (int p = 0; p < LB_GRAD_COUNT; p++)
        if (text && strcmp(text, lb_grad_precision_names[p]) == 0) {
            *out = (lb_grad_precision)p;
            return LB_OK;
        }
    return lb_error(LB_ECONFIG, "gradient precision '%s': expected fp32, fp8 or int8", text ? text : "(null)");
}

/* FP8 E5M2 with one power-of-two scale per tensor, through the format's
 * codec (core/dtype.h): the scale keeps every value within its range. */
static void quantize_fp8(float *g, size_t n) {
    float amax = 0.0f;
    int finite = 1;
#pragma omp parallel for reduction(max : amax) reduction(&& : finite) schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) finite = 0;
        else amax = fmaxf(amax, fabsf(g[i]));
    }
    if (!finite || amax == 0.0f) return;
    const lb_dtype_traits *e5m2 = lb_dtype_info(LB_DT_F8_E5M2);
    float scale = lb_pow2_scale(amax, (float)e5m2->max, 0, 1.0f);
    float inv = 1.0f / scale; /* exact: scale is a power of two */
    enum { CH = 1024 };
    long nch = (long)((n + CH - 1) / CH);
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (long c = 0; c < nch; c++) {
        size_t lo = (size_t)c * CH, len = n - lo < CH ? n - lo : CH;
        float *x = g + lo;
        uint8_t codes[CH];
        for (size_t i = 0; i < len; i++) x[i] *= scale;
        e5m2->from_f32(x, codes, len);
        e5m2->to_f32(codes, x, len);
        for (size_t i = 0; i < len; i++) x[i] *= inv;
    }
}

/* One row to INT8 with stochastic rounding. `first` is the row's first
 * element index in the tensor (the RNG index). */
static void quantize_row_int8(float *row, size_t cols, uint64_t seed, uint64_t stream, uint64_t first) {
    float amax = 0.0f;
    for (size_t j = 0; j < cols; j++) {
        if (!isfinite(row[j])) return; /* leave it for the overflow check */
        amax = fmaxf(amax, fabsf(row[j]));
    }
    if (amax == 0.0f) return;
    float s = 127.0f / amax, inv = amax / 127.0f;
    float u[256]; /* uniforms in [0, 1): u[j] = lb_rand_uniform(seed, stream, first + j0 + j) */
    for (size_t j0 = 0; j0 < cols; j0 += 256) {
        size_t len = cols - j0 < 256 ? cols - j0 : 256;
        lb_rand_uniform_fill(seed, stream, first + j0, len, u);
        for (size_t j = 0; j < len; j++) {
            float q = floorf(row[j0 + j] * s + u[j]);
            /* |row·s| <= 127 so q is in [-127, 127]; the clamp only guards rounding of s. */
            if (q > 127.0f) q = 127.0f;
            if (q < -127.0f) q = -127.0f;
            row[j0 + j] = q * inv;
        }
    }
}

lb_status lb_quantize_grad_inplace(float *g, size_t rows, size_t cols, lb_grad_precision p, uint64_t seed,
                                   uint64_t counter) {
    switch (p) {
    case LB_GRAD_FP32: return LB_OK;
    case LB_GRAD_FP8: quantize_fp8(g, rows * cols); return LB_OK;
    case LB_GRAD_INT8: {
        uint64_t stream = LB_STREAM_STOCHASTIC + counter;
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
        for (size_t r = 0; r < rows; r++) quantize_row_int8(g + r * cols, cols, seed, stream, r * cols);
        return LB_OK;
    }
    case LB_GRAD_COUNT: break;
    }
    return lb_error(LB_EINVAL, "lb_quantize_grad_inplace: unknown gradient precision %d", (int)p);
}

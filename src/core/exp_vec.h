/* A vectorizable exp for inner loops: the ops' (ops_elementwise.c,
 * ops_attention.c) and the runtime's (runtime/forward.c). */
#ifndef LOWBIT_CORE_EXP_VEC_H
#define LOWBIT_CORE_EXP_VEC_H

#include <math.h>
#include <stdint.h>

/* exp(x) in plain arithmetic, so that the loops calling it vectorize (libm's
 * expf is one call per element; SwiGLU evaluates one per FFN activation
 * forward and backward, attention's softmax one per score). x = n·ln2 + r
 * with |r| ≤ ln2/2; e^r by its Taylor polynomial to r^7 (truncation < 1e-8 relative), then 2^n put into the
 * exponent bits. x is clamped to [−87, 88], where 2^n stays a normal float;
 * beyond that a sigmoid is 0 or 1 to float precision anyway, and a softmax
 * term (x ≤ 0 there) is below 1e-38. NaN stays NaN. */
static inline float lb_exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f; /* ln2 split in two: the high part is exact in n·ln2_hi */
    r = r - n * 1.42860682030941723e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23};
    return p * scale.f;
}

#endif

/* Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
 *
 * Every number is a pure function of (seed, stream, index), so a parallel loop
 * that draws number i for element i gets the same values with 1 or 64
 * threads, and a run is resumed by saving three integers. */
#ifndef LOWBIT_CORE_RNG_H
#define LOWBIT_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Four 32-bit outputs for the 128-bit counter (ctr_lo, ctr_hi) under key `seed`. */
void lb_philox4x32(uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]);

/* Stateless draws: number `index` of stream `stream` under `seed`. */
uint32_t lb_rand_u32(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in [0, 1) with 24 random bits. */
float lb_rand_uniform(uint64_t seed, uint64_t stream, uint64_t index);

/* Numbers first .. first + n − 1 of a stream in one call, computed many
 * counters at a time so the rounds vectorise (stochastic rounding draws one
 * per element):
 *   lb_rand_u32_fill:     out[i] = lb_rand_u32(seed, stream, first + i)
 *   lb_rand_uniform_fill: out[i] = lb_rand_uniform(seed, stream, first + i) */
void lb_rand_u32_fill(uint64_t seed, uint64_t stream, uint64_t first, size_t n, uint32_t *out);
void lb_rand_uniform_fill(uint64_t seed, uint64_t stream, uint64_t first, size_t n, float *out);

/* A sequential generator over one stream; its whole state is these fields. */
typedef struct lb_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t pos;   /* index of the next number */
} lb_rng;

void lb_rng_init(lb_rng *r, uint64_t seed, uint64_t stream);
uint32_t lb_rng_u32(lb_rng *r);
float lb_rng_uniform(lb_rng *r);                 /* [0, 1) */
uint32_t lb_rng_below(lb_rng *r, uint32_t n);    /* [0, n), unbiased; n > 0 */
float lb_rng_normal(lb_rng *r);                  /* standard normal (Box-Muller) */

/* Stream numbers used across the library. Each use owns the 2^48 streams
 * from its base, so "base + index" (a parameter, a step and tensor) never
 * reaches another use's streams. */
#define LB_STREAM_INIT ((uint64_t)1 << 48)        /* parameter initialisation (+ parameter index) */
#define LB_STREAM_DATA ((uint64_t)2 << 48)        /* batch sampling */
#define LB_STREAM_SAMPLE ((uint64_t)3 << 48)      /* text generation */
#define LB_STREAM_STOCHASTIC ((uint64_t)4 << 48)  /* stochastic rounding (+ step and tensor counter) */

/* Stochastic rounding of step `step` and tensor `id` draws from stream
 * LB_STREAM_STOCHASTIC + LB_SR_COUNTER(step, id). The 2^20 ids of a step are
 * shared out as
 *   [0, 2^18)                  quant specs with :sr in the forward pass: 2i for the
 *                              weight of parameter i, 2i + 1 for its input (layers/model.c)
 *   [LB_SR_ID_ACT_GRAD, +2^18) activation gradients, + parameter index (layers/model.c)
 *   [LB_SR_ID_OPTIM, +2^19)    the optimizer: 3i for parameter i's gradient, 3i + 1
 *                              and 3i + 2 for its two state slots (optim/optim.c) */
#define LB_SR_COUNTER(step, id) (((uint64_t)(step) << 20) + (uint64_t)(id))
#define LB_SR_ID_ACT_GRAD (1u << 18)
#define LB_SR_ID_OPTIM (1u << 19)

#endif

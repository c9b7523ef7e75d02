#include "core/rng.h"

#include <math.h>

void lb_philox4x32(uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += W0;
        k1 += W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

uint32_t lb_rand_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t out[4];
    lb_philox4x32(seed, index >> 2, stream, out);
    return out[index & 3];
}

float lb_rand_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)(lb_rand_u32(seed, stream, index) >> 8) * (1.0f / 16777216.0f);
}

void lb_rng_init(lb_rng *r, uint64_t seed, uint64_t stream) {
    r->seed = seed;
    r->stream = stream;
    r->pos = 0;
}

uint32_t lb_rng_u32(lb_rng *r) { return lb_rand_u32(r->seed, r->stream, r->pos++); }

float lb_rng_uniform(lb_rng *r) { return (float)(lb_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

uint32_t lb_rng_below(lb_rng *r, uint32_t n) {
    /* Rejection keeps the result exactly uniform. */
    uint32_t limit = UINT32_MAX - UINT32_MAX % n;
    uint32_t x;
    do x = lb_rng_u32(r);
    while (x >= limit);
    return x % n;
}

float lb_rng_normal(lb_rng *r) {
    double u1 = ((double)(lb_rng_u32(r) >> 8) + 0.5) / 16777216.0; /* (0,1): log is finite */
    double u2 = (double)(lb_rng_u32(r) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

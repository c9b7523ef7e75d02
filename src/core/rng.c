#include "core/rng.h"

#include <math.h>
#include <string.h>

#define LANES 64 /* counters per batch of lb_rand_*_fill */

/* The ten Philox4x32 rounds for the n <= LANES counters (ctr + j, hi), under
 * key `seed`; word k of counter j goes to w[4j + k]. Written over arrays of
 * lanes so that the batch vectorises; with n = 1 it is the scalar generator. */
static inline void philox_lanes(uint64_t seed, uint64_t ctr, uint64_t hi, int n, uint32_t *w) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
    for (int j = 0; j < n; j++) {
        c0[j] = (uint32_t)(ctr + (uint64_t)j);
        c1[j] = (uint32_t)((ctr + (uint64_t)j) >> 32);
        c2[j] = (uint32_t)hi;
        c3[j] = (uint32_t)(hi >> 32);
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        for (int j = 0; j < n; j++) {
            uint64_t p0 = (uint64_t)M0 * c0[j], p1 = (uint64_t)M1 * c2[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c0[j] = n0;
            c1[j] = (uint32_t)p1;
            c2[j] = n2;
            c3[j] = (uint32_t)p0;
        }
        k0 += W0;
        k1 += W1;
    }
    for (int j = 0; j < n; j++) {
        w[4 * j + 0] = c0[j];
        w[4 * j + 1] = c1[j];
        w[4 * j + 2] = c2[j];
        w[4 * j + 3] = c3[j];
    }
}

void lb_philox4x32(uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]) {
    philox_lanes(seed, ctr_lo, ctr_hi, 1, out);
}

void lb_rand_u32_fill(uint64_t seed, uint64_t stream, uint64_t first, size_t n, uint32_t *out) {
    uint32_t w[4 * LANES];
    size_t i = 0;
    while (i < n) {
        uint64_t idx = first + i;
        size_t off = (size_t)(idx & 3), words = n - i + off; /* from the counter's first word */
        int lanes = words >= 4 * LANES ? LANES : (int)((words + 3) / 4);
        philox_lanes(seed, idx >> 2, stream, lanes, w);
        size_t take = 4 * (size_t)lanes - off;
        if (take > n - i) take = n - i;
        memcpy(out + i, w + off, take * sizeof *out);
        i += take;
    }
}

void lb_rand_uniform_fill(uint64_t seed, uint64_t stream, uint64_t first, size_t n, float *out) {
    uint32_t w[4 * LANES];
    for (size_t i = 0; i < n; i += 4 * LANES) {
        size_t len = n - i < 4 * LANES ? n - i : 4 * LANES;
        lb_rand_u32_fill(seed, stream, first + i, len, w);
        for (size_t j = 0; j < len; j++) out[i + j] = (float)(w[j] >> 8) * (1.0f / 16777216.0f);
    }
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

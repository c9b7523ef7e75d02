/* Bit packing: plain loops over output bytes, parallel when large. Each
 * output byte depends only on its own input codes, so the loops are free of
 * races and the result does not depend on the thread count. */
#include "quant/pack.h"

#define PAR_MIN (1 << 16) /* bytes */

/* --- ternary, 2 bits: code + 1 in {0, 1, 2} --------------------------------------- */

static lb_status check_ternary(const int8_t *codes, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (codes[i] < -1 || codes[i] > 1)
            return lb_error(LB_EINVAL, "pack %s: code %d at element %zu, expected -1, 0 or 1", what, codes[i], i);
    return LB_OK;
}

lb_status lb_pack_ternary2(const int8_t *codes, size_t n, uint8_t *out) {
    LB_TRY(check_ternary(codes, n, "ternary2"));
    long nb = (long)lb_packed_size_bits(n, 2);
#pragma omp parallel for schedule(static) if (nb > PAR_MIN)
    for (long k = 0; k < nb; k++) {
        size_t i0 = (size_t)k * 4;
        uint8_t byte = 0;
        for (size_t j = 0; j < 4 && i0 + j < n; j++) byte |= (uint8_t)((codes[i0 + j] + 1) << (2 * j));
        out[k] = byte;
    }
    return LB_OK;
}

void lb_unpack_ternary2(const uint8_t *in, size_t n, int8_t *codes) {
#pragma omp parallel for schedule(static) if (n > 4 * PAR_MIN)
    for (size_t i = 0; i < n; i++) codes[i] = (int8_t)(((in[i >> 2] >> (2 * (i & 3))) & 3) - 1);
}

/* --- ternary, 5 trits per byte: Σ (code + 1)·3^j ------------------------------------ */

lb_status lb_pack_ternary5(const int8_t *codes, size_t n, uint8_t *out) {
    LB_TRY(check_ternary(codes, n, "ternary5"));
    long nb = (long)lb_packed_size_ternary5(n);
#pragma omp parallel for schedule(static) if (nb > PAR_MIN)
    for (long k = 0; k < nb; k++) {
        size_t i0 = (size_t)k * 5;
        unsigned v = 0;
        /* Horner from the last trit: v = t0 + 3(t1 + 3(t2 + ...)) */
        for (size_t j = 5; j-- > 0;) v = 3 * v + (i0 + j < n ? (unsigned)(codes[i0 + j] + 1) : 0);
        out[k] = (uint8_t)v;
    }
    return LB_OK;
}

lb_status lb_unpack_ternary5(const uint8_t *in, size_t n, int8_t *codes) {
    size_t nb = lb_packed_size_ternary5(n);
    for (size_t k = 0; k < nb; k++)
        if (in[k] > 242) return lb_error(LB_EFORMAT, "unpack ternary5: byte %zu is %d, expected at most 242", k, in[k]);
#pragma omp parallel for schedule(static) if (nb > PAR_MIN)
    for (long k = 0; k < (long)nb; k++) {
        unsigned v = in[k];
        size_t i0 = (size_t)k * 5;
        for (size_t j = 0; j < 5 && i0 + j < n; j++) {
            codes[i0 + j] = (int8_t)(v % 3) - 1;
            v /= 3;
        }
    }
    return LB_OK;
}

/* --- code ranges ------------------------------------------------------------------------- */

static lb_status check_bits(const uint8_t *codes, size_t n, int bits, int is_signed, const char *what) {
    if (bits < 1 || bits > 8) return lb_error(LB_EINVAL, "pack %s: %d bits, expected 1 to 8", what, bits);
    int lo = is_signed ? -(1 << (bits - 1)) : 0, hi = is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        int c = is_signed ? (int)(int8_t)codes[i] : (int)codes[i];
        if (c < lo || c > hi)
            return lb_error(LB_EINVAL, "pack %s: code %d at element %zu, expected %d to %d", what, c, i, lo, hi);
    }
    return LB_OK;
}

/* --- INT4 nibbles ------------------------------------------------------------------------ */

lb_status lb_pack_int4(const uint8_t *codes, size_t n, int is_signed, uint8_t *out) {
    LB_TRY(check_bits(codes, n, 4, is_signed, "int4"));
    long nb = (long)lb_packed_size_bits(n, 4);
#pragma omp parallel for schedule(static) if (nb > PAR_MIN)
    for (long k = 0; k < nb; k++) {
        size_t i = (size_t)k * 2;
        unsigned lo = codes[i] & 15u, hi = i + 1 < n ? codes[i + 1] & 15u : 0u;
        out[k] = (uint8_t)(lo | hi << 4);
    }
    return LB_OK;
}

void lb_unpack_int4(const uint8_t *in, size_t n, int is_signed, uint8_t *codes) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        unsigned c = (in[i >> 1] >> (4 * (i & 1))) & 15u;
        if (is_signed && (c & 8u)) c |= ~15u;
        codes[i] = (uint8_t)c;
    }
}

/* Bit packing of quantization codes (as lb_quantize writes them, one byte
 * per element) with exact round trips: the ternary and INT4 layouts a packed
 * runtime and exporters start from.
 *
 *   layout        bits/weight  codes in            byte k holds elements
 *   ternary2      2            int8 −1, 0, 1       4k..4k+3, element 4k+j at bits 2j (code + 1: 0, 1, 2)
 *   ternary5      1.6          int8 −1, 0, 1       5k..5k+4 as Σ_j (code + 1)·3^j  (0..242)
 *   int4          4            4-bit codes         2k (low nibble), 2k+1 (high nibble)
 *
 * A final partial byte is padded with zero bits (ternary5: zero trits).
 * Unpackers read exactly n codes. Packers return LB_EINVAL, naming
 * the element, for a code the layout cannot hold. The int4 unpacker
 * sign-extends signed codes when asked. None allocates. (GGUF's TQ1_0 and
 * TQ2_0 order their codes differently: they are dtypes of core/dtype.h.) */
#ifndef LOWBIT_QUANT_PACK_H
#define LOWBIT_QUANT_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Bytes of the packed form of n codes of `bits` bits (2 for ternary2, 4 for int4). */
static inline size_t lb_packed_size_bits(size_t n, int bits) { return (n * (size_t)bits + 7) / 8; }
static inline size_t lb_packed_size_ternary5(size_t n) { return (n + 4) / 5; }

lb_status lb_pack_ternary2(const int8_t *codes, size_t n, uint8_t *out);
void lb_unpack_ternary2(const uint8_t *in, size_t n, int8_t *codes);

lb_status lb_pack_ternary5(const int8_t *codes, size_t n, uint8_t *out);
/* LB_EFORMAT when a byte is above 242 (not 5 trits). */
lb_status lb_unpack_ternary5(const uint8_t *in, size_t n, int8_t *codes);

/* codes: signed ([−8, 7], as int8 bytes) when is_signed, else [0, 15]. */
lb_status lb_pack_int4(const uint8_t *codes, size_t n, int is_signed, uint8_t *out);
void lb_unpack_int4(const uint8_t *in, size_t n, int is_signed, uint8_t *codes);

#endif

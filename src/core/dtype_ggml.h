/* The GGML block formats lowbit writes and reads: Q8_0, Q4_0, TQ1_0, TQ2_0.
 *
 * Row codecs bit-exact with ggml-quants.c: *_from_f32 is quantize_row_*_ref (the
 * reference quantizer ggml and llama-quantize use to create model files), *_to_f32
 * is dequantize_row_*. n is the number of elements, a multiple of the block. The
 * byte layout of each block (all little-endian, fp16 scales):
 *
 *   Q8_0   32 weights, 34 bytes: fp16 d, then 32 int8 q;         x = q·d,
 *          d = amax/127, q = round(x/d) (halves away from zero).
 *   Q4_0   32 weights, 18 bytes: fp16 d, then 16 bytes of nibbles; byte j holds
 *          weight j in its low nibble and weight j+16 in its high one; x = (q−8)·d,
 *          d = −m/8 where m is the signed value of largest magnitude (first wins),
 *          q = min(15, trunc(x/d + 8.5)).
 *   TQ2_0  256 weights, 66 bytes: 64 bytes of 2-bit codes, then fp16 d. In each
 *          128-weight chunk, byte m (0..31) holds weights m, m+32, m+64, m+96 at bit
 *          shifts 0, 2, 4, 6; code = round(x/d) + 1 ∈ {0,1,2}, x = (code−1)·d, d = amax.
 *          (Code 3 decodes to 2·d, as in ggml.)
 *   TQ1_0  256 weights, 54 bytes: 48 bytes of 5 trits each, 4 bytes of 4 trits each,
 *          then fp16 d (= amax). A byte holding trits t0..t4 (t = round(x/d)+1, t0 the
 *          most significant) stores ceil((t0·81 + t1·27 + t2·9 + t3·3 + t4)·256/243),
 *          so trit k is recovered as ((uint8)(byte·3^k)·3) >> 8. Bytes 0..31 hold
 *          weights m + 32·k (k = 0..4) of weights 0..159, bytes 32..47 weights
 *          160 + m + 16·k, and the 4 last bytes weights 240 + m + 4·k (k = 0..3, times 3
 *          so the first trit is the most significant).
 *
 * Non-finite inputs are not rejected here (callers check their data); the codecs then
 * still behave as ggml's reference built for x86-64 does, without undefined behaviour. */
#ifndef LOWBIT_CORE_DTYPE_GGML_H
#define LOWBIT_CORE_DTYPE_GGML_H

#include <stddef.h>

enum {
    LB_GGML_QK8_0 = 32, LB_GGML_Q8_0_BYTES = 34,
    LB_GGML_QK4_0 = 32, LB_GGML_Q4_0_BYTES = 18,
    LB_GGML_QK_K = 256, LB_GGML_TQ1_0_BYTES = 54, LB_GGML_TQ2_0_BYTES = 66
};

void lb_ggml_q8_0_from_f32(const float *src, void *dst, size_t n);
void lb_ggml_q8_0_to_f32(const void *src, float *dst, size_t n);
void lb_ggml_q4_0_from_f32(const float *src, void *dst, size_t n);
void lb_ggml_q4_0_to_f32(const void *src, float *dst, size_t n);
void lb_ggml_tq1_0_from_f32(const float *src, void *dst, size_t n);
void lb_ggml_tq1_0_to_f32(const void *src, float *dst, size_t n);
void lb_ggml_tq2_0_from_f32(const float *src, void *dst, size_t n);
void lb_ggml_tq2_0_to_f32(const void *src, float *dst, size_t n);

#endif

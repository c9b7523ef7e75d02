/* The portable kernels (plain C) and the packers of runtime/kernels.h.
 * Built without AVX (CMakeLists.txt), so LOWBIT_RUNTIME_ISA=portable runs
 * no AVX instruction in the products. */
#include <string.h>

#include "runtime/kernels.h"

void lb_rt_pack_ternary_row(const int8_t *codes, int k, uint8_t *out) {
    int kp = lb_rt_padded(k);
    memset(out, 0x55, lb_rt_ternary_row_bytes(kp)); /* code 0 (stored as 1) in every slot */
    for (int i = 0; i < k; i++) {
        int g = i / LB_RT_GROUP, r = i % LB_RT_GROUP, byte = g * 64 + r % 64, shift = 2 * (r / 64);
        out[byte] = (uint8_t)((out[byte] & ~(3u << shift)) | (unsigned)(codes[i] + 1) << shift);
    }
}

void lb_rt_pack_binary_row(const int8_t *codes, int k, uint8_t *out) {
    int kp = lb_rt_padded(k);
    memset(out, 0, lb_rt_binary_row_bytes(kp)); /* −1 in every slot */
    for (int i = 0; i < k; i++)
        if (codes[i] > 0) out[i / 8] |= (uint8_t)(1u << (i % 8)); /* bit j of LE word w = bit j%8 of byte 8w + j/8 */
}

static void ternary_dot(const uint8_t *w, size_t row_bytes, int n_rows, const int8_t *a, size_t lda,
                        const int32_t *asum, int n_tok, int kp, int32_t *out, size_t ldo) {
    (void)asum;
    for (int t = 0; t < n_tok; t++) {
        const int8_t *at = a + (size_t)t * lda;
        for (int r = 0; r < n_rows; r++) {
            const uint8_t *wr = w + (size_t)r * row_bytes;
            int32_t s = 0;
            for (int g = 0; g < kp / LB_RT_GROUP; g++)
                for (int j = 0; j < 64; j++) {
                    unsigned b = wr[64 * g + j];
                    const int8_t *ag = at + LB_RT_GROUP * g + j;
                    s += ((int)(b & 3) - 1) * ag[0] + ((int)(b >> 2 & 3) - 1) * ag[64] +
                         ((int)(b >> 4 & 3) - 1) * ag[128] + ((int)(b >> 6) - 1) * ag[192];
                }
            out[(size_t)t * ldo + r] = s;
        }
    }
}

static void binary_dot(const uint8_t *w, size_t row_bytes, int n_rows, const int8_t *a, size_t lda,
                       const int32_t *asum, int n_tok, int kp, int32_t *out, size_t ldo) {
    for (int t = 0; t < n_tok; t++) {
        const int8_t *at = a + (size_t)t * lda;
        for (int r = 0; r < n_rows; r++) {
            const uint8_t *wr = w + (size_t)r * row_bytes;
            int32_t s = 0; /* Σ over the +1 weights */
            for (int i = 0; i < kp; i++)
                if (wr[i / 8] >> (i % 8) & 1) s += at[i];
            out[(size_t)t * ldo + r] = 2 * s - asum[t];
        }
    }
}

const lb_rt_kernels lb_rt_kernels_portable = {ternary_dot, binary_dot};

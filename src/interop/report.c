/* Compressibility of the GGUF export types (see report.h). */
#include "interop/report.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/dtype_ggml.h"
#include "interop/gguf_export.h"
#include "io/fileio.h"

static const lb_dtype TYPES[] = {LB_DT_TQ2_0, LB_DT_TQ1_0, LB_DT_Q8_0, LB_DT_Q4_0, LB_DT_F16, LB_DT_F32};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0] };
static const int LEVELS[] = {3, 19};
enum { N_LEVELS = sizeof LEVELS / sizeof LEVELS[0] };

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Shannon entropy in bits per symbol of codes[0..n) (sorted in place). */
static double entropy(uint32_t *codes, size_t n) {
    qsort(codes, n, sizeof *codes, cmp_u32);
    double h = 0.0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && codes[j] == codes[i]; j++) {}
        double p = (double)(j - i) / (double)n;
        h -= p * log2(p);
    }
    return h;
}

/* The quantized symbols of n elements encoded as `type` in `bytes` (values: their decoding). */
static void codes_of(lb_dtype type, const uint8_t *bytes, const float *values, size_t n, uint32_t *codes) {
    switch (type) {
    case LB_DT_F32: memcpy(codes, bytes, n * 4); break;
    case LB_DT_F16:
        for (size_t i = 0; i < n; i++) codes[i] = (uint32_t)bytes[2 * i] | (uint32_t)bytes[2 * i + 1] << 8;
        break;
    case LB_DT_Q8_0:
        for (size_t i = 0; i < n; i++)
            codes[i] = bytes[(i / LB_GGML_QK8_0) * LB_GGML_Q8_0_BYTES + 2 + i % LB_GGML_QK8_0];
        break;
    case LB_DT_Q4_0:
        for (size_t i = 0; i < n; i++) {
            size_t j = i % LB_GGML_QK4_0;
            uint8_t b = bytes[(i / LB_GGML_QK4_0) * LB_GGML_Q4_0_BYTES + 2 + j % 16];
            codes[i] = j < 16 ? (b & 15u) : (uint32_t)(b >> 4);
        }
        break;
    default: /* TQ1_0, TQ2_0: trits, read back from the values (d > 0 in every block that is not all 0) */
        for (size_t i = 0; i < n; i++) codes[i] = values[i] > 0.0f ? 2u : values[i] < 0.0f ? 0u : 1u;
        break;
    }
}

typedef struct type_totals {
    double n, bytes, bits_h, z[N_LEVELS];
} type_totals;

lb_status lb_export_report(const lb_model *m, FILE *out) {
    type_totals tot[N_TYPES];
    memset(tot, 0, sizeof tot);
    size_t max_n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].t->n > max_n) max_n = m->params[i].t->n;
    size_t cap = ZSTD_compressBound(max_n * 4);
    float *w = malloc(max_n * sizeof *w), *dec = malloc(max_n * sizeof *dec);
    uint8_t *enc = malloc(max_n * 4), *z = malloc(cap);
    uint32_t *codes = malloc(max_n * sizeof *codes);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    lb_status s = w && dec && enc && z && codes && cctx ? LB_OK : lb_error(LB_ENOMEM, "report: out of memory");
    if (s == LB_OK)
        fprintf(out, "%-28s %-6s %10s %7s %9s %9s %9s\n", "tensor", "type", "weights", "bpw", "H(codes)", "zstd-3",
                "zstd-19");
    for (int i = 0; s == LB_OK && i < m->n_params; i++) {
        const lb_param *p = &m->params[i];
        if (lb_param_role_of(p->role)->kind == LB_PARAM_QSTEP) continue;
        size_t n = p->t->n;
        if ((s = lb_export_effective_weights(m, i, w)) != LB_OK) break;
        uint64_t printed = 0; /* a tensor written the same for several types (norms: f32) is printed once */
        for (int k = 0; k < N_TYPES; k++) {
            lb_dtype type = lb_gguf_export_param_type(p, TYPES[k]);
            const lb_dtype_traits *ti = lb_dtype_info(type);
            size_t nb = lb_dtype_row_bytes(type, n);
            double bits_h = 0, zb[N_LEVELS] = {0};
            if ((size_t)p->t->shape[p->t->ndim - 1] % (size_t)ti->block != 0) {
                fprintf(out, "%-28s %-6s %10zu   (rows are not a multiple of its block of %d)\n", p->t->name, ti->name,
                        n, ti->block);
                nb = 0;
            } else {
                ti->from_f32(w, enc, n);
                ti->to_f32(enc, dec, n);
                codes_of(type, enc, dec, n, codes);
                double h = entropy(codes, n);
                bits_h = h * (double)n;
                for (int l = 0; l < N_LEVELS; l++) {
                    size_t r = ZSTD_compressCCtx(cctx, z, cap, enc, nb, LEVELS[l]);
                    if (ZSTD_isError(r)) {
                        s = lb_error(LB_EINVAL, "%s: zstd: %s", p->t->name, ZSTD_getErrorName(r));
                        break;
                    }
                    zb[l] = (double)r;
                }
                if (!(printed >> type & 1))
                    fprintf(out, "%-28s %-6s %10zu %7.3f %9.3f %9.3f %9.3f\n", p->t->name, ti->name, n,
                            8.0 * (double)nb / (double)n, h, 8.0 * zb[0] / (double)n, 8.0 * zb[1] / (double)n);
            }
            printed |= UINT64_C(1) << type;
            tot[k].n += (double)n;
            tot[k].bytes += (double)nb;
            tot[k].bits_h += bits_h;
            for (int l = 0; l < N_LEVELS; l++) tot[k].z[l] += zb[l];
        }
    }
    if (s == LB_OK) {
        fprintf(out, "\ntotal, all tensors as each --type writes them (norms f32, token_embd f16/q8_0 as chosen)\n");
        fprintf(out, "%-6s %12s %7s %9s %12s %9s %12s %9s\n", "type", "bytes", "bpw", "H(codes)", "zstd-3", "bpw",
                "zstd-19", "bpw");
        for (int k = 0; k < N_TYPES; k++)
            fprintf(out, "%-6s %12.0f %7.3f %9.3f %12.0f %9.3f %12.0f %9.3f\n", lb_dtype_info(TYPES[k])->name,
                    tot[k].bytes, 8.0 * tot[k].bytes / tot[k].n, tot[k].bits_h / tot[k].n, tot[k].z[0],
                    8.0 * tot[k].z[0] / tot[k].n, tot[k].z[1], 8.0 * tot[k].z[1] / tot[k].n);
    }
    ZSTD_freeCCtx(cctx);
    free(w);
    free(dec);
    free(enc);
    free(z);
    free(codes);
    return s;
}

lb_status lb_zstd_compress_file(const char *src, const char *dst, int level, size_t *in_bytes, size_t *out_bytes) {
    lb_mapped_file mf;
    LB_TRY(lb_map_file(src, &mf));
    size_t cap = ZSTD_compressBound(mf.size);
    void *z = malloc(cap ? cap : 1);
    if (!z) {
        lb_unmap_file(&mf);
        return lb_error(LB_ENOMEM, "%s: out of memory for %zu compressed bytes", dst, cap);
    }
    size_t r = ZSTD_compress(z, cap, mf.data, mf.size, level);
    lb_status s = ZSTD_isError(r) ? lb_error(LB_EINVAL, "%s: zstd level %d: %s", dst, level, ZSTD_getErrorName(r)) : LB_OK;
    lb_atomic_file af = {0};
    if (s == LB_OK) s = lb_atomic_begin(dst, &af);
    if (s == LB_OK && (s = lb_atomic_write(&af, z, r)) == LB_OK) s = lb_atomic_commit(&af);
    else if (af.f) lb_atomic_abort(&af);
    if (s == LB_OK && in_bytes) *in_bytes = mf.size;
    if (s == LB_OK && out_bytes) *out_bytes = r;
    free(z);
    lb_unmap_file(&mf);
    return s;
}

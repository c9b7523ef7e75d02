/* The GEMM engine (see gemm.h): oneDNN matmul primitives made once per
 * shape and reused, and the OpenBLAS fallback.
 *
 * oneDNN: every product is a 3-D matmul {1, M, K} × {1, K, N} → {1, M, N}
 * with strides, so transposed operands and leading dimensions need no copy.
 * The batch dimension of 1 makes M the "channel" dimension of the result,
 * which lets one binary-multiply post-op scale rows ({1, M, 1}, broadcast
 * along N) with oneDNN's fast (brgemm) kernels; on a 2-D result that
 * broadcast falls back to a reference kernel. Scales travel as post-op
 * operands, not as "output scales": run-time output scales also send oneDNN
 * 2.6 to its slower gemm-based kernels, and a scale fixed at creation would
 * need a primitive per value. beta ≠ 0 is a sum post-op. The scratchpad is
 * the caller's (per thread), so one primitive can run on several threads at
 * once, as attention does per head.
 *
 * The cache is an append-only array searched under a mutex; entries live
 * until lb_gemm_release (at exit). A few dozen shapes make a model. */
#include "autograd/gemm.h"

#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "core/minifloat.h"

#define MAX_ENTRIES 512   /* past this, new shapes run on the fallback */
/* Products with fewer multiply-adds run on the fallback: making a oneDNN
 * primitive (JIT code) costs milliseconds, which a product this small never
 * earns back, and models meet many such shapes once (sampling grows T). */
#define MIN_DNNL_MACS 32768.0
/* Products with fewer multiply-adds run on one thread (a primitive made for
 * one thread, so oneDNN enters no OpenMP region): a team's barrier costs
 * more than splitting such a product saves, far more when the machine is
 * busy and a thread waits for a core. */
#define MIN_PARALLEL_MACS 262144.0
#define MAX_SLOTS 256     /* per-thread buffers: thread t of a region uses slot t */
#define PAR_MIN 32768     /* elements below which conversion loops stay on one thread */

static const char *const type_names[LB_GEMM_N_TYPES] = {"f32", "bf16", "s8"};
static const char *const backend_names[LB_GEMM_N_BACKENDS] = {"onednn", "openblas"};
const char *const lb_gemm_precision_names[LB_PRECISION_N] = {"fp32", "bf16", "auto"};
static const dnnl_data_type_t type_dnnl[LB_GEMM_N_TYPES] = {dnnl_f32, dnnl_bf16, dnnl_s8};

const char *lb_gemm_type_name(lb_gemm_type t) { return (unsigned)t < LB_GEMM_N_TYPES ? type_names[t] : "?"; }
const char *lb_gemm_backend_name(lb_gemm_backend b) {
    return (unsigned)b < LB_GEMM_N_BACKENDS ? backend_names[b] : "?";
}
const char *lb_gemm_precision_name(lb_gemm_precision p) {
    return (unsigned)p < LB_PRECISION_N ? lb_gemm_precision_names[p] : "?";
}

/* --- state ------------------------------------------------------------------- */

typedef enum scale_kind { SCALE_NONE = 0, SCALE_ALPHA, SCALE_ROWS } scale_kind;

typedef struct gemm_key {
    int type, ta, tb, M, N, K, lda, ldb, ldc, scale;
    float beta;
    int threads;   /* the team the primitive was made for */
} gemm_key;

typedef struct gemm_entry {
    gemm_key key;
    dnnl_primitive_t prim;     /* NULL: oneDNN has only a reference kernel here; use the fallback */
    dnnl_memory_desc_t a, b, c, s; /* s: the scale operand ({1,1,1} or {1,M,1}) */
    size_t scratch_bytes;
    char impl[64];
} gemm_entry;

/* Buffers of one thread: oneDNN's scratchpad, the fallback's widened
 * operands, lb_gemm_f32's bf16 copies. */
#define N_HINTS 64        /* per thread: recently used entries, found without the lock */
#define N_ARGS 5          /* src, weights, dst, scale, scratchpad */

typedef struct slot {
    void *scratch;
    size_t scratch_n;
    float *wide;
    size_t wide_n;
    uint16_t *half;
    size_t half_n;
    /* This thread's memory objects of cached entry i: mem[N_ARGS·i ...],
     * made on first use; later calls only point them at the data (making
     * them anew costs about 0.6 µs each, which small products notice). */
    dnnl_memory_t *mem;
    const gemm_entry *hint[N_HINTS];
} slot;

static struct {
    pthread_mutex_t lock;
    int backend;              /* -1 until lb_gemm_init */
    int at_exit;              /* lb_gemm_release registered */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    gemm_entry *entries;
    int n_entries;
    slot slots[MAX_SLOTS];
    char impl[LB_GEMM_N_TYPES][96];  /* lb_gemm_impl */
    char describe[512];
    char warning[320];
    int stats_on;
    lb_gemm_stats stats;
} E = {.lock = PTHREAD_MUTEX_INITIALIZER, .backend = -1};

void lb_gemm_stats_enable(int on) { E.stats_on = on; }
lb_gemm_stats lb_gemm_stats_get(void) { return E.stats; }
void lb_gemm_stats_reset(void) { memset(&E.stats, 0, sizeof E.stats); }

lb_status lb_gemm_init(void) {
    pthread_mutex_lock(&E.lock);
    if (!E.at_exit) {
        atexit(lb_gemm_release);
        E.at_exit = 1;
    }
    lb_status s = LB_OK;
    if (E.backend < 0) {
        const char *w = lb_gemm_openblas_warning();
        if (w) lb_warn("%s", w);
        const char *v = getenv("LOWBIT_GEMM");
        E.backend = LB_GEMM_ONEDNN;
        if (v && *v) {
            if (!strcmp(v, "openblas")) E.backend = LB_GEMM_OPENBLAS;
            else if (strcmp(v, "onednn"))
                s = lb_error(LB_EINVAL, "environment variable LOWBIT_GEMM='%s': expected onednn or openblas", v);
        }
    }
    pthread_mutex_unlock(&E.lock);
    return s;
}

lb_gemm_backend lb_gemm_get_backend(void) {
    if (E.backend < 0) (void)lb_gemm_init();
    return (lb_gemm_backend)E.backend;
}

void lb_gemm_set_backend(lb_gemm_backend b) {
    (void)lb_gemm_init();
    E.backend = (int)b;
}

void lb_gemm_release(void) {
    pthread_mutex_lock(&E.lock);
    for (int i = 0; i < E.n_entries; i++)
        if (E.entries[i].prim) dnnl_primitive_destroy(E.entries[i].prim);
    free(E.entries);
    E.entries = NULL;
    E.n_entries = 0;
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (E.slots[i].mem)
            for (int k = 0; k < MAX_ENTRIES * N_ARGS; k++)
                if (E.slots[i].mem[k]) dnnl_memory_destroy(E.slots[i].mem[k]);
        free(E.slots[i].mem);
        free(E.slots[i].scratch);
        free(E.slots[i].wide);
        free(E.slots[i].half);
        memset(&E.slots[i], 0, sizeof E.slots[i]);
    }
    if (E.stream) dnnl_stream_destroy(E.stream);
    if (E.engine) dnnl_engine_destroy(E.engine);
    E.stream = NULL;
    E.engine = NULL;
    memset(E.impl, 0, sizeof E.impl);
    pthread_mutex_unlock(&E.lock);
}

/* This thread's buffers: thread t of a parallel region, or slot 0 outside. */
static slot *my_slot(void) {
    int t = omp_in_parallel() ? omp_get_thread_num() : 0;
    if (t >= MAX_SLOTS) {
        lb_error(LB_EINVAL, "gemm: thread %d: at most %d threads may run products at once", t, MAX_SLOTS);
        return NULL;
    }
    return &E.slots[t];
}

/* Grows *p to at least `bytes` (contents not kept), 64-byte aligned. */
static void *grow(void **p, size_t *have, size_t bytes) {
    if (*have >= bytes) return *p;
    bytes = (bytes + 63) / 64 * 64;
    void *q = aligned_alloc(64, bytes);
    if (!q) {
        lb_error(LB_ENOMEM, "gemm: cannot allocate %zu bytes of buffers", bytes);
        return NULL;
    }
    free(*p);
    *p = q;
    *have = bytes;
    return q;
}

/* --- oneDNN ------------------------------------------------------------------ */

static lb_status dnnl_fail(dnnl_status_t st, const char *what) {
    return lb_error(st == dnnl_out_of_memory ? LB_ENOMEM : LB_EINVAL, "gemm: oneDNN %s failed (status %d)", what,
                    (int)st);
}

/* A 3-D {1, rows, cols} descriptor of a row-major matrix with leading
 * dimension ld, read transposed when `trans` (stored [cols, rows]). */
static dnnl_status_t matrix_md(dnnl_memory_desc_t *md, dnnl_data_type_t dt, int rows, int cols, int ld, int trans) {
    dnnl_dims_t dims = {1, rows, cols};
    dnnl_dims_t strides = {(dnnl_dim_t)(trans ? cols : rows) * ld, trans ? 1 : ld, trans ? ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 3, dims, dt, strides);
}

/* Makes the primitive of `k` into *e (under the lock). */
static lb_status make_entry(const gemm_key *k, gemm_entry *e) {
    memset(e, 0, sizeof *e);
    e->key = *k;
    dnnl_status_t st;
    if (!E.engine) {
        if ((st = dnnl_engine_create(&E.engine, dnnl_cpu, 0)) != dnnl_success) return dnnl_fail(st, "engine");
        if ((st = dnnl_stream_create(&E.stream, E.engine, dnnl_stream_default_flags)) != dnnl_success)
            return dnnl_fail(st, "stream");
    }
    const dnnl_data_type_t dt = type_dnnl[k->type];
    if ((st = matrix_md(&e->a, dt, k->M, k->K, k->lda, k->ta)) != dnnl_success ||
        (st = matrix_md(&e->b, dt, k->K, k->N, k->ldb, k->tb)) != dnnl_success ||
        (st = matrix_md(&e->c, dnnl_f32, k->M, k->N, k->ldc, 0)) != dnnl_success ||
        (st = matrix_md(&e->s, dnnl_f32, k->scale == SCALE_ROWS ? k->M : 1, 1, 1, 0)) != dnnl_success)
        return dnnl_fail(st, "memory descriptor");
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    lb_status s = LB_OK;
    if ((st = dnnl_matmul_desc_init(&md, &e->a, &e->b, NULL, &e->c)) != dnnl_success ||
        (st = dnnl_primitive_attr_create(&attr)) != dnnl_success ||
        (st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) != dnnl_success ||
        (st = dnnl_post_ops_create(&po)) != dnnl_success ||
        (k->scale != SCALE_NONE && (st = dnnl_post_ops_append_binary(po, dnnl_binary_mul, &e->s)) != dnnl_success) ||
        (k->beta != 0.0f && (st = dnnl_post_ops_append_sum(po, k->beta)) != dnnl_success) ||
        (st = dnnl_primitive_attr_set_post_ops(attr, po)) != dnnl_success) {
        s = dnnl_fail(st, "matmul description");
        goto done;
    }
    st = dnnl_primitive_desc_create(&pd, &md, attr, E.engine, NULL);
    if (st == dnnl_unimplemented) { /* e.g. bf16 on a CPU without AVX-512: the fallback serves */
        snprintf(e->impl, sizeof e->impl, "unimplemented");
        goto done;
    }
    if (st != dnnl_success) {
        s = dnnl_fail(st, "matmul primitive description");
        goto done;
    }
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl) impl = "?";
    snprintf(e->impl, sizeof e->impl, "%s", impl);
    /* oneDNN's reference kernels are plain loops, far slower than the fallback. */
    if (strncmp(impl, "ref", 3) == 0) goto done;
    e->scratch_bytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
    if ((st = dnnl_primitive_create(&e->prim, pd)) != dnnl_success) {
        e->prim = NULL;
        s = dnnl_fail(st, "matmul primitive");
    }
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

static unsigned key_hash(const gemm_key *k) {
    const unsigned char *p = (const unsigned char *)k;
    unsigned h = 2166136261u;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The cached entry of `k`, made on first use; when the cache is full, *tmp
 * filled as an entry without a primitive (the fallback serves).
 * Entries never move or change until lb_gemm_release, so a thread's hint
 * can be read without the lock. */
static const gemm_entry *lookup(const gemm_key *k, gemm_entry *tmp, slot *sl) {
    const unsigned h = key_hash(k) % N_HINTS;
    if (sl && sl->hint[h] && memcmp(&sl->hint[h]->key, k, sizeof *k) == 0) return sl->hint[h];
    pthread_mutex_lock(&E.lock);
    const gemm_entry *found = NULL;
    for (int i = E.n_entries - 1; i >= 0 && !found; i--)
        if (memcmp(&E.entries[i].key, k, sizeof *k) == 0) found = &E.entries[i];
    if (!found) {
        if (!E.entries && !(E.entries = calloc(MAX_ENTRIES, sizeof *E.entries))) {
            lb_error(LB_ENOMEM, "gemm: cannot allocate the primitive cache");
        } else if (E.n_entries < MAX_ENTRIES) {
            if (make_entry(k, &E.entries[E.n_entries]) == LB_OK) found = &E.entries[E.n_entries++];
        } else { /* full: no primitive, the caller takes the fallback */
            memset(tmp, 0, sizeof *tmp);
            tmp->key = *k;
            snprintf(tmp->impl, sizeof tmp->impl, "cache full");
            found = tmp;
        }
    }
    pthread_mutex_unlock(&E.lock);
    if (sl && found && found != tmp) sl->hint[h] = found;
    return found;
}

static lb_status run_dnnl(const gemm_entry *e, slot *sl, const void *A, const void *B, const float *scale,
                          float *C) {
    if (e->scratch_bytes && !grow(&sl->scratch, &sl->scratch_n, e->scratch_bytes)) return lb_errcode();
    const long idx = e >= E.entries && e < E.entries + MAX_ENTRIES ? e - E.entries : -1; /* -1: not cached */
    if (idx >= 0 && !sl->mem && !(sl->mem = calloc((size_t)MAX_ENTRIES * N_ARGS, sizeof *sl->mem)))
        return lb_error(LB_ENOMEM, "gemm: cannot allocate memory objects");
    dnnl_memory_t own[N_ARGS] = {NULL}, *mem = idx >= 0 ? sl->mem + idx * N_ARGS : own;
    dnnl_exec_arg_t args[N_ARGS];
    int n = 0;
    const struct { int arg; const dnnl_memory_desc_t *md; const void *p; } ops[N_ARGS] = {
        {DNNL_ARG_SRC, &e->a, A},
        {DNNL_ARG_WEIGHTS, &e->b, B},
        {DNNL_ARG_DST, &e->c, C},
        {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, &e->s, e->key.scale != SCALE_NONE ? scale : NULL},
        {DNNL_ARG_SCRATCHPAD, NULL, e->scratch_bytes ? sl->scratch : NULL},
    };
    dnnl_status_t st = dnnl_success;
    for (int i = 0; i < N_ARGS && st == dnnl_success; i++) {
        if (!ops[i].p) continue;
        if (!mem[i]) {
            dnnl_memory_desc_t scratch_md;
            const dnnl_memory_desc_t *md = ops[i].md;
            if (!md) { /* the scratchpad, as bytes */
                dnnl_dims_t d = {(dnnl_dim_t)e->scratch_bytes};
                if ((st = dnnl_memory_desc_init_by_tag(&scratch_md, 1, d, dnnl_u8, dnnl_a)) != dnnl_success) break;
                md = &scratch_md;
            }
            if ((st = dnnl_memory_create(&mem[i], md, E.engine, DNNL_MEMORY_NONE)) != dnnl_success) break;
        }
        st = dnnl_memory_set_data_handle(mem[i], (void *)ops[i].p);
        args[n++] = (dnnl_exec_arg_t){ops[i].arg, mem[i]};
    }
    if (st == dnnl_success) st = dnnl_primitive_execute(e->prim, E.stream, n, args);
    for (int i = 0; i < N_ARGS; i++)
        if (own[i]) dnnl_memory_destroy(own[i]);
    return st == dnnl_success ? LB_OK : dnnl_fail(st, "matmul execution");
}

/* --- fallback -------------------------------------------------------------------- */

/* C = t·s_m + beta·C for one row, t the unscaled product (the order oneDNN
 * applies its post-ops in). */
static void scale_row(float *c, const float *t, int N, float s, float beta) {
    if (beta == 0.0f)
        for (int n = 0; n < N; n++) c[n] = t[n] * s;
    else
        for (int n = 0; n < N; n++) c[n] = t[n] * s + beta * c[n];
}

/* int8 × int8 → int32 per element, then one rounding to fp32 and the scale. */
static void s8_row(int ta, int tb, int m, int N, int K, const int8_t *A, int lda, const int8_t *B, int ldb,
                   float s, float beta, float *c, int32_t *acc) {
    if (!ta && tb) { /* the BitLinear layout: two contiguous rows per dot product */
        const int8_t *a = A + (size_t)m * lda;
        for (int n = 0; n < N; n++) {
            const int8_t *b = B + (size_t)n * ldb;
            int32_t sum = 0;
            for (int k = 0; k < K; k++) sum += (int32_t)a[k] * (int32_t)b[k];
            acc[n] = sum;
        }
    } else {
        for (int n = 0; n < N; n++) acc[n] = 0;
        for (int k = 0; k < K; k++) {
            const int32_t a = ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
            for (int n = 0; n < N; n++) acc[n] += a * (int32_t)(tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n]);
        }
    }
    for (int n = 0; n < N; n++) {
        float v = (float)acc[n] * s;
        c[n] = beta == 0.0f ? v : v + beta * c[n];
    }
}

static lb_status s8_fallback(int ta, int tb, int M, int N, int K, float alpha, const int8_t *A, int lda,
                             const int8_t *B, int ldb, const float *row_scale, float beta, float *C, int ldc) {
    const int parallel = !omp_in_parallel() && (double)M * N * K >= 1e6;
    lb_status s = LB_OK;
#pragma omp parallel if (parallel)
    {
        int32_t *acc = malloc((size_t)N * sizeof *acc);
        if (!acc) {
#pragma omp critical(lb_gemm_error)
            s = lb_error(LB_ENOMEM, "gemm: cannot allocate %d int32 accumulators", N);
        }
#pragma omp for schedule(static)
        for (int m = 0; m < M; m++)
            if (acc)
                s8_row(ta, tb, m, N, K, A, lda, B, ldb, row_scale ? row_scale[m] : alpha, beta, C + (size_t)m * ldc,
                       acc);
        free(acc);
    }
    return s;
}

/* Runs row(r) for r < rows, on the threads when the matrix is large and no
 * region is running, else on this thread without entering a region (even
 * an `if (0)` region costs about half a microsecond, more on a busy machine). */
#define FOR_ROWS(rows, cols, body)                                         \
    do {                                                                   \
        if (!omp_in_parallel() && (size_t)(rows) * (cols) >= PAR_MIN) {    \
            _Pragma("omp parallel for schedule(static)")                   \
            for (int r = 0; r < (rows); r++) body                          \
        } else {                                                           \
            for (int r = 0; r < (rows); r++) body                          \
        }                                                                  \
    } while (0)

/* bf16 rows → fp32 (exact: a bf16 is the top half of an fp32). */
static void widen_row(const uint16_t *src, float *dst, int cols) {
    for (int c = 0; c < cols; c++) dst[c] = lb_bf16_to_f32(src[c]);
}

static void widen_bf16(int rows, int cols, const uint16_t *src, int lds, float *dst) {
    FOR_ROWS(rows, cols, { widen_row(src + (size_t)r * lds, dst + (size_t)r * cols, cols); });
}

static lb_status blas_fallback(lb_gemm_type type, int ta, int tb, int M, int N, int K, float alpha, const void *A,
                               int lda, const void *B, int ldb, const float *row_scale, float beta, float *C,
                               int ldc) {
    if (type == LB_GEMM_S8) return s8_fallback(ta, tb, M, N, K, alpha, A, lda, B, ldb, row_scale, beta, C, ldc);
    slot *sl = my_slot();
    if (!sl) return lb_errcode();
    const float *a = A, *b = B;
    /* The stored shapes: A is [M, K] or [K, M], B [K, N] or [N, K]. */
    const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const size_t na = (size_t)ar * ac, nb = (size_t)br * bc;
    const size_t nt = row_scale && beta != 0.0f ? (size_t)M * N : 0; /* the unscaled product */
    size_t need = (type == LB_GEMM_BF16 ? na + nb : 0) + nt;
    if (need && !grow((void **)&sl->wide, &sl->wide_n, need * sizeof(float))) return lb_errcode();
    if (type == LB_GEMM_BF16) {
        widen_bf16(ar, ac, A, lda, sl->wide);
        widen_bf16(br, bc, B, ldb, sl->wide + na);
        a = sl->wide;
        b = sl->wide + na;
        lda = ac;
        ldb = bc;
    }
    const enum CBLAS_TRANSPOSE tra = ta ? CblasTrans : CblasNoTrans, trb = tb ? CblasTrans : CblasNoTrans;
    if (!row_scale) {
        cblas_sgemm(CblasRowMajor, tra, trb, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
        return LB_OK;
    }
    float *t = nt ? sl->wide + (type == LB_GEMM_BF16 ? na + nb : 0) : C;
    const int ldt = nt ? N : ldc;
    cblas_sgemm(CblasRowMajor, tra, trb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, t, ldt);
    for (int m = 0; m < M; m++) scale_row(C + (size_t)m * ldc, t + (size_t)m * ldt, N, row_scale[m], beta);
    return LB_OK;
}

/* oneDNN's int8 kernels sum in int32 exactly only with VNNI: without it they
 * multiply u8 × s8 pairs with vpmaddubsw, which saturates at 16 bits (seen
 * under valgrind, whose CPU has no VNNI); the fallback's loops are exact. */
static int exact_s8(void) {
    static int vnni = -1;
    if (vnni < 0) {
        const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
        vnni = (isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni ||
               (isa & dnnl_cpu_isa_avx2_vnni) == dnnl_cpu_isa_avx2_vnni;
    }
    return vnni;
}

/* --- the product ---------------------------------------------------------------------- */

static lb_status gemm(lb_gemm_type type, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                      const void *B, int ldb, const float *row_scale, float beta, float *C, int ldc) {
    ta = ta != 0;
    tb = tb != 0;
    if ((unsigned)type >= LB_GEMM_N_TYPES || M < 1 || N < 1 || K < 1 || lda < (ta ? M : K) || ldb < (tb ? K : N) ||
        ldc < N || !A || !B || !C || (row_scale && alpha != 1.0f))
        return lb_error(LB_EINVAL,
                        "gemm: %s %c%c M=%d N=%d K=%d lda=%d ldb=%d ldc=%d%s: bad sizes, leading dimensions or "
                        "operands",
                        lb_gemm_type_name(type), ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, lda, ldb, ldc,
                        row_scale && alpha != 1.0f ? " (alpha must be 1 with row scales)" : "");
    if (E.backend < 0) LB_TRY(lb_gemm_init());
    if (E.backend == LB_GEMM_OPENBLAS || (double)M * N * K < MIN_DNNL_MACS || (type == LB_GEMM_S8 && !exact_s8()))
        return blas_fallback(type, ta, tb, M, N, K, alpha, A, lda, B, ldb, row_scale, beta, C, ldc);
    const int in_region = omp_in_parallel(), team = omp_get_max_threads();
    const int single = !in_region && team > 1 && (double)M * N * K < MIN_PARALLEL_MACS;
    gemm_key k = {.type = type, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc,
                  .scale = row_scale ? SCALE_ROWS : alpha != 1.0f ? SCALE_ALPHA : SCALE_NONE, .beta = beta,
                  .threads = in_region || single ? 1 : team};
    slot *sl = my_slot();
    if (!sl) return lb_errcode();
    /* oneDNN plans a primitive for omp_get_max_threads() and runs it on that
     * many; one thread of this task's team for a small product. */
    if (single) omp_set_num_threads(1);
    gemm_entry tmp = {0};
    const gemm_entry *e = lookup(&k, &tmp, sl);
    lb_status s = e ? LB_OK : lb_errcode();
    if (e && !e->prim)
        s = blas_fallback(type, ta, tb, M, N, K, alpha, A, lda, B, ldb, row_scale, beta, C, ldc);
    else if (e)
        s = run_dnnl(e, sl, A, B, row_scale ? row_scale : &alpha, C);
    if (single) omp_set_num_threads(team);
    return s;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lb_status lb_gemm(lb_gemm_type type, int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda,
                  const void *B, int ldb, const float *row_scale, float beta, float *C, int ldc) {
    if (!E.stats_on) return gemm(type, ta, tb, M, N, K, alpha, A, lda, B, ldb, row_scale, beta, C, ldc);
    const int in_region = omp_in_parallel(), team = in_region ? omp_get_num_threads() : 1;
    const double t0 = now();
    lb_status s = gemm(type, ta, tb, M, N, K, alpha, A, lda, B, ldb, row_scale, beta, C, ldc);
    if (s == LB_OK && (unsigned)type < LB_GEMM_N_TYPES && (!in_region || omp_get_thread_num() == 0)) {
        E.stats.seconds[type] += now() - t0;
        E.stats.flops[type] += 2.0 * M * N * (double)K * team;
        E.stats.calls[type] += team;
    }
    return s;
}

/* --- bf16 conversions --------------------------------------------------------------- */

/* lb_bf16_from_f32 (core/minifloat.h: round to nearest even, NaN stays a
 * quiet NaN) without its branch, so the loops below vectorize (about 10×
 * faster); tests/test_gemm.c checks that the two agree. */
static inline uint16_t bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, nan = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

static void round_row(const float *s, uint16_t *d, int cols, float f) {
    for (int c = 0; c < cols; c++) d[c] = bf16_round(s[c] * f);
}

static void round_row_unscaled(const float *s, uint16_t *d, int cols) {
    for (int c = 0; c < cols; c++) d[c] = bf16_round(s[c]);
}

static void s8_row_to_bf16(const int8_t *s, uint16_t *d, int cols) {
    for (int c = 0; c < cols; c++) d[c] = bf16_round((float)s[c]);
}

void lb_gemm_to_bf16(int rows, int cols, const float *src, int lds, const float *row_scale, uint16_t *dst, int ldd) {
    if (row_scale)
        FOR_ROWS(rows, cols, { round_row(src + (size_t)r * lds, dst + (size_t)r * ldd, cols, row_scale[r]); });
    else
        FOR_ROWS(rows, cols, { round_row_unscaled(src + (size_t)r * lds, dst + (size_t)r * ldd, cols); });
}

void lb_gemm_s8_to_bf16(int rows, int cols, const int8_t *src, int lds, uint16_t *dst, int ldd) {
    FOR_ROWS(rows, cols, { s8_row_to_bf16(src + (size_t)r * lds, dst + (size_t)r * ldd, cols); });
}

lb_status lb_gemm_f32(lb_gemm_precision p, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (p == LB_PRECISION_FP32) return lb_gemm(LB_GEMM_F32, ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
    if (p != LB_PRECISION_BF16)
        return lb_error(LB_EINVAL, "gemm: product precision %d (%s): expected fp32 or bf16 (auto is resolved first)",
                        (int)p, lb_gemm_precision_name(p));
    /* Both operands rounded to bf16, packed (the stored shapes, leading
     * dimension = their width). */
    const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const size_t na = (size_t)ar * ac, nb = (size_t)br * bc;
    slot *sl = my_slot();
    if (!sl || !grow((void **)&sl->half, &sl->half_n, (na + nb) * sizeof(uint16_t))) return lb_errcode();
    uint16_t *a = sl->half, *b = sl->half + na;
    lb_gemm_to_bf16(ar, ac, A, lda, NULL, a, ac);
    lb_gemm_to_bf16(br, bc, B, ldb, NULL, b, bc);
    return lb_gemm(LB_GEMM_BF16, ta, tb, M, N, K, alpha, a, ac, b, bc, NULL, beta, C, ldc);
}

/* --- what runs ---------------------------------------------------------------------- */

const char *lb_gemm_impl(lb_gemm_type t) {
    if ((unsigned)t >= LB_GEMM_N_TYPES) return "?";
    if (lb_gemm_get_backend() == LB_GEMM_OPENBLAS || (t == LB_GEMM_S8 && !exact_s8())) {
        static const char *const how[LB_GEMM_N_TYPES] = {"", " (bf16 widened to f32)", ""};
        if (t == LB_GEMM_S8) snprintf(E.impl[t], sizeof E.impl[t], "lowbit int32 loops");
        else snprintf(E.impl[t], sizeof E.impl[t], "openblas %s%s", openblas_get_corename(), how[t]);
        return E.impl[t];
    }
    /* A probe of a typical layer shape (the layout of a BitLinear product). */
    gemm_key k = {.type = t, .ta = 0, .tb = 1, .M = 256, .N = 256, .K = 256, .lda = 256, .ldb = 256, .ldc = 256,
                  .scale = t == LB_GEMM_S8 ? SCALE_ROWS : SCALE_NONE, .beta = 0.0f, .threads = omp_get_max_threads()};
    gemm_entry tmp = {0};
    const gemm_entry *e = lookup(&k, &tmp, NULL);
    if (!e) snprintf(E.impl[t], sizeof E.impl[t], "error: %s", lb_errmsg());
    else if (!e->prim) snprintf(E.impl[t], sizeof E.impl[t], "openblas %s (oneDNN: %s)", openblas_get_corename(), e->impl);
    else snprintf(E.impl[t], sizeof E.impl[t], "%s", e->impl);
    return E.impl[t];
}

int lb_gemm_bf16_native(void) {
    const char *impl = lb_gemm_impl(LB_GEMM_BF16); /* "openblas ..." when oneDNN has none */
    return lb_gemm_get_backend() == LB_GEMM_ONEDNN && strncmp(impl, "openblas", 8) &&
           (strstr(impl, "bf16") || strstr(impl, "amx"));
}

lb_gemm_precision lb_gemm_precision_resolve(lb_gemm_precision p) {
    if (p != LB_PRECISION_AUTO) return p;
    return lb_gemm_bf16_native() ? LB_PRECISION_BF16 : LB_PRECISION_FP32;
}

lb_gemm_precision lb_attention_precision_resolve(lb_gemm_precision attention_p, lb_gemm_precision gemm_p) {
    return attention_p == LB_PRECISION_AUTO ? gemm_p : attention_p;
}

const char *lb_gemm_describe(lb_gemm_precision p) {
    const lb_gemm_backend b = lb_gemm_get_backend();
    char version[32] = "";
    if (b == LB_GEMM_ONEDNN) {
        const dnnl_version_t *v = dnnl_version();
        snprintf(version, sizeof version, " %d.%d.%d", v->major, v->minor, v->patch);
    }
    char f32[96], bf16[96], s8[96];
    snprintf(f32, sizeof f32, "%s", lb_gemm_impl(LB_GEMM_F32));
    snprintf(bf16, sizeof bf16, "%s", lb_gemm_impl(LB_GEMM_BF16));
    snprintf(s8, sizeof s8, "%s", lb_gemm_impl(LB_GEMM_S8));
    snprintf(E.describe, sizeof E.describe, "gemm %s%s: f32 %s, bf16 %s, s8 %s; fp32 products in %s",
             lb_gemm_backend_name(b), version, f32, bf16, s8, lb_gemm_precision_name(p));
    return E.describe;
}

/* OpenBLAS's x86-64 kernels that use AVX2 or more. */
static int core_has_avx2(const char *core) {
    static const char *const cores[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
        if (!strcasecmp(core, cores[i])) return 1;
    return 0;
}

const char *lb_gemm_openblas_warning(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2");
    const char *core = openblas_get_corename();
    if (!(avx2 || avx512) || !core || core_has_avx2(core)) return NULL;
    snprintf(E.warning, sizeof E.warning,
             "OpenBLAS runs its '%s' kernels on a CPU with %s: its sgemm is several times slower than the CPU "
             "allows (OpenBLAS did not recognise the processor; OPENBLAS_CORETYPE=Haswell%s selects faster kernels)",
             core, avx512 ? "AVX-512" : "AVX2", avx512 ? " or SkylakeX" : "");
    return E.warning;
#else
    return NULL;
#endif
}

/* The runtime's forward pass: sessions, the KV cache, and one pass over the
 * weights for up to CHUNK tokens at a time.
 *
 * A pass is a fixed sequence of phases. Each phase is a set of independent
 * work items (a token's norm, a block of weight rows for every token, a
 * head's RoPE, one query's attention), split into one contiguous share per
 * thread; a thread claims the items of its share from a counter of its own
 * (a cache line no other thread writes while its owner runs; a decoding
 * pass claims the whole share at once), then waits for the other shares or
 * takes what is left of them, and moves on once every item of the phase is
 * finished (phase()). No thread has to wait for another to arrive: on a
 * machine shared with other work, a thread that is not running claims
 * nothing, and the others carry the pass. A decoded token's
 * items are a few microseconds of work each, so one shared counter (a cache
 * line moving between the cores at every claim) would cost about as much as
 * the items. Every item is computed whole by one thread in a fixed order, so
 * the results do not depend on which thread ran it or how many there were,
 * and a token's values do not depend on the other tokens of its pass.
 *
 * Per block, the phases are
 *   rows   residual, attn_norm, the input of q/k/v (codes or fp32)
 *   heads  q, k, v for one head each; RoPE; k and v into the cache
 *   attn   one (token, KV head) each: softmax(q·Kᵀ/√Dh)·V over the cache for its query heads
 *   rows   attn_sub_norm, the input of attn_output
 *   rows×  attn_output, ROW_BLOCK weight rows each
 *   rows   residual, ffn_norm, the input of gate/up
 *   rows×  gate and up
 *   rows   silu(gate)·up or relu²(gate)·up, ffn_sub_norm, the input of ffn_down
 *   rows×  ffn_down
 * then output_norm and the head for the tokens whose logits are wanted. A
 * pass of one or two tokens (decoding) folds (pass_body): every thread runs
 * each `rows` phase itself, on its own copy of the residual stream and the
 * layer inputs, right after the phase before it, and heads and attn are one
 * phase, an item per KV head (qkv_attn_item): four hand-offs a layer. Without
 * a probe, each gate/up item also computes the activation of its columns
 * (gate_up_item). */
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/exp_vec.h"
#include "quant/quantize.h"
#include "runtime/packed.h"

#define CHUNK 64      /* tokens per pass over the weights */
#define ROW_BLOCK 64  /* weight rows per work item */
#define KEYS 64       /* attention scores computed together */
#define PAIR 2        /* query heads of one KV head computed together */
#define FOLD 2        /* passes of up to FOLD tokens (decoding) run as in pass_body's fold */

/* A layer's input and the residual stream, for rows of tokens. */
typedef struct rt_io {
    float *x;               /* [rows, d] the residual stream */
    float *hn;              /* [rows, wmax] a norm's output */
    float *fq;              /* [rows, wmax] an fp32 layer's input */
    int8_t *codes;          /* [rows, wmax] a packed layer's input codes */
    float *cstep;           /* [rows] their steps */
    int32_t *csum;          /* [rows] their sums */
} rt_io;

typedef struct rt_counter {
    atomic_int n;
    char pad[64 - sizeof(atomic_int)]; /* one cache line each */
} rt_counter;
#define CTR_PER_PHASE(threads) (2 * (threads))

struct lb_rt_session {
    const lb_rt_model *m;
    int n_threads;
    int len;                /* tokens in the cache */
    int seq;                /* max_seq rounded up to KEYS */
    float *kc;              /* [L, Hkv, Dh, seq]: keys transposed, so that scores come KEYS at a time */
    float *vc;              /* [L, Hkv, max_seq, Dh] */
    /* One pass's values, CHUNK tokens each. */
    rt_io shared;           /* CHUNK rows */
    rt_io *own;             /* [threads], FOLD rows each: a decoding thread's copy (see pass_body) */
    float *q, *k, *v;       /* [CHUNK, q_dim], [CHUNK, kv_dim] */
    float *att;             /* [CHUNK, q_dim] */
    float *lo;              /* [CHUNK, d] attn_output, then ffn_down */
    float *gate, *up, *act; /* [CHUNK, F] */
    float *fold_out;        /* [L, FOLD, q_dim + 2d + F]: a decoding pass's att, lo (twice) and act per layer */
    int32_t *isum;          /* [threads, CHUNK · isum_rows] integer products */
    size_t isum_stride;
    float *scores;          /* [threads, PAIR, seq] */
    rt_counter *ctr;        /* per phase of a pass, CTR_PER_PHASE: for each thread's share the next item
                               and the items finished; after the last phase one: the threads but the
                               first that left the pass */
    int n_ctr;
    lb_rt_probe_fn probe;
    void *probe_ctx;
    void *mem[24];
    int n_mem;
};

/* One pass: n tokens at positions pos0.., logits for tokens logit0..n − 1. */
typedef struct rt_pass {
    lb_rt_session *s;
    const lb_rt_model *m;
    const int *ids;
    int n, pos0, logit0;
    int n_threads;
    float *logits;          /* [n − logit0, V] */
    const rt_io *io;        /* the residual stream and layer inputs this thread reads */
    /* The current layer's values that per-token steps read: [n, q_dim], [n, d], [n, d], [n, F]. */
    float *att, *attn_out, *ffn_out, *act;
} rt_pass;

static const char *const site_names[] = {
    [LB_RT_ATTN_NORM] = "attn_norm",       [LB_RT_Q] = "q",
    [LB_RT_K] = "k",                       [LB_RT_V] = "v",
    [LB_RT_ATTN] = "attn",                 [LB_RT_ATTN_SUB_NORM] = "attn_sub_norm",
    [LB_RT_ATTN_OUTPUT] = "attn_output",   [LB_RT_ATTN_RESIDUAL] = "attn_residual",
    [LB_RT_FFN_NORM] = "ffn_norm",         [LB_RT_FFN_GATE] = "ffn_gate",
    [LB_RT_FFN_UP] = "ffn_up",             [LB_RT_FFN_ACT] = "ffn_act",
    [LB_RT_FFN_SUB_NORM] = "ffn_sub_norm", [LB_RT_FFN_DOWN] = "ffn_down",
    [LB_RT_FFN_RESIDUAL] = "ffn_residual", [LB_RT_OUTPUT_NORM] = "output_norm",
    [LB_RT_LOGITS] = "logits",
};
_Static_assert(sizeof site_names / sizeof site_names[0] == LB_RT_SITE_COUNT, "runtime/forward.c: one name per site");

const char *lb_rt_site_name(lb_rt_site site) { return (unsigned)site < LB_RT_SITE_COUNT ? site_names[site] : "?"; }

/* ---- sessions ------------------------------------------------------------------ */

/* Points io's arrays into `mem` (NULL: only counts), `rows` rows each;
 * returns the bytes they take. */
static size_t io_carve(const lb_rt_model *m, rt_io *io, char *mem, size_t rows) {
    const size_t W = (size_t)m->width_max;
    size_t off = 0;
#define CARVE(field, bytes) (io->field = mem ? (void *)(mem + off) : NULL, off += ((bytes) + 63) / 64 * 64)
    CARVE(x, rows * m->d * sizeof(float));
    CARVE(hn, rows * W * sizeof(float));
    CARVE(fq, rows * W * sizeof(float));
    CARVE(codes, rows * W);
    CARVE(cstep, rows * sizeof(float));
    CARVE(csum, rows * sizeof(int32_t));
#undef CARVE
    return off;
}

static void *session_alloc(lb_rt_session *s, size_t bytes) {
    if (s->n_mem == (int)(sizeof s->mem / sizeof s->mem[0])) return NULL;
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) {
        memset(p, 0, (bytes + 63) / 64 * 64);
        s->mem[s->n_mem++] = p;
    }
    return p;
}

void lb_rt_session_free(lb_rt_session *s) {
    if (!s) return;
    for (int i = 0; i < s->n_mem; i++) free(s->mem[i]);
    free(s);
}

lb_rt_session *lb_rt_session_create(const lb_rt_model *m, int n_threads) {
    lb_rt_session *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    const size_t C = CHUNK, nt = (size_t)s->n_threads;
    s->seq = (m->max_seq + KEYS - 1) / KEYS * KEYS;
    const size_t cache = (size_t)m->L * m->Hkv * s->seq * m->Dh;
    s->isum_stride = C * (size_t)(m->Dh > ROW_BLOCK ? m->Dh : ROW_BLOCK);
    s->n_ctr = (9 * m->L + 2) * CTR_PER_PHASE(s->n_threads);
    rt_io none;
    const size_t shared_bytes = io_carve(m, &none, NULL, C), own_bytes = io_carve(m, &none, NULL, FOLD);
    char *shared, *own;
    if (!(s->kc = session_alloc(s, cache * sizeof(float))) || !(s->vc = session_alloc(s, cache * sizeof(float))) ||
        !(shared = session_alloc(s, shared_bytes)) || !(own = session_alloc(s, nt * own_bytes)) ||
        !(s->own = session_alloc(s, nt * sizeof *s->own)) ||
        !(s->q = session_alloc(s, C * m->q_dim * sizeof(float))) ||
        !(s->k = session_alloc(s, C * m->kv_dim * sizeof(float))) ||
        !(s->v = session_alloc(s, C * m->kv_dim * sizeof(float))) ||
        !(s->att = session_alloc(s, C * m->q_dim * sizeof(float))) ||
        !(s->lo = session_alloc(s, C * m->d * sizeof(float))) ||
        !(s->gate = session_alloc(s, C * m->F * sizeof(float))) ||
        !(s->up = session_alloc(s, C * m->F * sizeof(float))) ||
        !(s->act = session_alloc(s, C * m->F * sizeof(float))) ||
        !(s->fold_out = session_alloc(s, (size_t)m->L * FOLD * (m->q_dim + 2 * m->d + m->F) * sizeof(float))) ||
        !(s->isum = session_alloc(s, nt * s->isum_stride * sizeof(int32_t))) ||
        !(s->scores = session_alloc(s, nt * PAIR * s->seq * sizeof(float))) ||
        !(s->ctr = session_alloc(s, (size_t)(s->n_ctr + 1) * sizeof(rt_counter))))
        goto oom;
    io_carve(m, &s->shared, shared, C);
    for (size_t i = 0; i < nt; i++) io_carve(m, &s->own[i], own + i * own_bytes, FOLD);
    return s;
oom:
    lb_error(LB_ENOMEM, "runtime: a session of %d tokens on %d threads", m->max_seq, n_threads);
    lb_rt_session_free(s);
    return NULL;
}

void lb_rt_session_reset(lb_rt_session *s) { s->len = 0; }
int lb_rt_session_length(const lb_rt_session *s) { return s->len; }
const lb_rt_model *lb_rt_session_model(const lb_rt_session *s) { return s->m; }

void lb_rt_session_set_probe(lb_rt_session *s, lb_rt_probe_fn fn, void *ctx) {
    s->probe = fn;
    s->probe_ctx = ctx;
}

/* ---- float parts, as the training forward writes them ---------------------------- */

/* 16 floats as one value (GCC/Clang vector extensions: one AVX-512
 * register, two AVX ones, four SSE ones); loaded with memcpy, so any address. */
#define LANES 16
typedef float f32xL __attribute__((vector_size(4 * LANES)));
static inline f32xL load_l(const float *x) {
    f32xL v;
    memcpy(&v, x, sizeof v);
    return v;
}

/* Σ a[i]·b[i] in LANES running sums, added pairwise at the end: the sums stay
 * in registers, where a reduction clause over a short row ends in a chain of
 * scalar adds. */
static inline float dot_f32(const float *a, const float *b, int n) {
    f32xL acc = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES) acc += load_l(a + i) * load_l(b + i);
    float part[LANES];
    memcpy(part, &acc, sizeof part);
    for (int l = 0; i < n; i++, l++) part[l] += a[i] * b[i];
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) part[l] += part[l + w];
    return part[0];
}

/* RMSNorm or LayerNorm (no bias) of one row, as lb_rmsnorm / lb_layernorm. */
static void norm_row(const lb_rt_model *m, const float *x, const float *w, float *y, int D) {
    float mu = 0.0f;
    if (m->cfg.norm == LB_NORM_LAYER) {
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < D; i++) sum += x[i];
        mu = sum / (float)D;
    }
    float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
    for (int i = 0; i < D; i++) sq += (x[i] - mu) * (x[i] - mu);
    const float rs = 1.0f / sqrtf(sq / (float)D + m->cfg.norm_eps);
    for (int i = 0; i < D; i++) y[i] = (x[i] - mu) * rs * w[i];
}

/* RoPE of one head's rows x[t·ld ..] at positions pos0 + t, as lb_rope. */
static void rope_rows(const lb_rt_model *m, float *x, size_t ld, int n, int pos0) {
    const int half = m->Dh / 2;
    for (int t = 0; t < n; t++) {
        float *h = x + (size_t)t * ld;
        const float *c = m->rope_cos + (size_t)(pos0 + t) * half, *s = m->rope_sin + (size_t)(pos0 + t) * half;
        for (int j = 0; j < half; j++) {
            float x0 = h[j], x1 = h[j + half];
            h[j] = x0 * c[j] - x1 * s[j];
            h[j + half] = x1 * c[j] + x0 * s[j];
        }
    }
}

/* ---- a layer's input ------------------------------------------------------------ */

/* lb_quantize's symmetric INT form for one row: s = num / max(max|x|, 1e-5),
 * codes clamp(rint(x·s)), step 1/s; codes past k are zero. */
static void quantize_row(const lb_rt_linear *L, const float *x, int8_t *codes, float *step, int32_t *sum) {
    const int k = L->k;
    float mn = INFINITY, mx = -INFINITY;
#pragma omp simd reduction(min : mn) reduction(max : mx)
    for (int i = 0; i < k; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    const float s = L->act_num / fmaxf(fmaxf(fabsf(mn), fabsf(mx)), 1e-5f);
    const float lo = L->act_min, hi = L->act_max;
    int32_t total = 0;
#pragma omp simd reduction(+ : total)
    for (int i = 0; i < k; i++) {
        float q = rintf(x[i] * s);
        q = q < lo ? lo : q;
        q = q > hi ? hi : q;
        q = q == q ? q : 0.0f; /* NaN (an overflowed input) has no code; the residual keeps it */
        codes[i] = (int8_t)q;
        total += (int32_t)q;
    }
    memset(codes + k, 0, (size_t)(L->kp - k));
    *step = 1.0f / s;
    *sum = total;
}

/* Token t's input `src` of the layers that share L's input. */
static void prepare_input(const rt_pass *p, const lb_rt_linear *L, int t, const float *src) {
    const size_t W = (size_t)p->m->width_max;
    if (L->input == LB_RT_IN_CODES) {
        quantize_row(L, src, p->io->codes + t * W, &p->io->cstep[t], &p->io->csum[t]);
        return;
    }
    float *dst = p->io->fq + t * W;
    if (L->input == LB_RT_IN_AS_IS) {
        memcpy(dst, src, (size_t)L->k * sizeof *dst);
        return;
    }
    /* Checked when the model was packed: cannot fail. */
    (void)lb_fake_quantize(&L->act, src, dst, 1, (size_t)L->k, NULL);
    if (L->lambda < 1.0f)
        for (int i = 0; i < L->k; i++) dst[i] = src[i] + L->lambda * (dst[i] - src[i]);
}

/* out[t·ldo + r − r0] for rows r0..r1 of L and tokens t0..t0 + n_tok − 1. A
 * packed layer: y = fl(fl(S)·fl(step_t·d_w)) with S the exact integer sum,
 * as the training forward's integer path; fp32: one dot product each. */
static void linear_rows(const rt_pass *p, const lb_rt_linear *L, int r0, int r1, int t0, int n_tok, float *out,
                        size_t ldo, int tid) {
    lb_rt_session *s = p->s;
    const lb_rt_model *m = p->m;
    const size_t W = (size_t)m->width_max;
    const int nr = r1 - r0;
    if (L->format == LB_RT_W_F32) {
        for (int r = r0; r < r1; r++) {
            const float *wr = L->w + (size_t)r * L->k;
            for (int t = 0; t < n_tok; t++) out[(size_t)t * ldo + (r - r0)] = dot_f32(p->io->fq + (t0 + t) * W, wr, L->k);
        }
        return;
    }
    int32_t *S = s->isum + (size_t)tid * s->isum_stride;
    lb_rt_dot_fn dot = L->format == LB_RT_W_TERNARY ? m->kern->ternary : m->kern->binary;
    dot(L->packed + (size_t)r0 * L->row_bytes, L->row_bytes, nr, p->io->codes + t0 * W, W, p->io->csum + t0, n_tok, L->kp,
        S, (size_t)nr);
    for (int t = 0; t < n_tok; t++) {
        const float rs = p->io->cstep[t0 + t] * L->scale;
        const int32_t *St = S + (size_t)t * nr;
        float *ot = out + (size_t)t * ldo;
        for (int r = 0; r < nr; r++) ot[r] = (float)St[r] * rs;
    }
}

/* ---- the phases ---------------------------------------------------------------- */

/* Asks for the cache lines of columns c0..c1 − 1 of n_tok rows (ld floats
 * apart) for writing (PREFETCHW), ahead of the stores. A decoding pass's
 * outputs are read by every thread (each computes the next norm from all
 * rows), so the lines a thread writes sit in the other cores' caches; taking
 * them back one store at a time stalls the thread once its store buffer
 * fills behind the first (each a cache-line round trip: ~0.5 µs with the
 * vCPUs of a VM far apart), where asked for ahead they move while it computes. */
static void lines_for_writing(const lb_rt_model *m, const float *base, size_t ld, int n_tok, int c0, int c1) {
#if defined(__x86_64__)
    if (!m->prefetchw || c1 <= c0) return;
    for (int t = 0; t < n_tok; t++) {
        const uintptr_t first = (uintptr_t)(base + (size_t)t * ld + c0), last = (uintptr_t)(base + (size_t)t * ld + c1 - 1);
        for (uintptr_t a = first & ~(uintptr_t)63; a <= last; a += 64)
            __asm__ volatile("prefetchw %0" ::"m"(*(const char *)a));
    }
#else
    (void)m, (void)base, (void)ld, (void)n_tok, (void)c0, (void)c1;
#endif
}

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    _mm_pause();
#endif
}

/* Waits until *a >= want, spinning, then yielding the core: the thread
 * that is to raise it may need this core. */
static void wait_for(atomic_int *a, int want) {
    for (int spins = 0; atomic_load_explicit(a, memory_order_acquire) < want; spins++) {
        if (spins < 4096) cpu_relax();
        else sched_yield();
    }
}

typedef void (*item_fn)(const rt_pass *p, int layer, int item, const void *arg, int tid);

/* Per-token work: a phase of steps, each for one token. With a probe the
 * steps run one after another over all tokens, each followed by its site. */
typedef struct row_step {
    void (*fn)(const rt_pass *p, int layer, int t);
    lb_rt_site site;       /* LB_RT_SITE_COUNT: none */
    int site_layer;        /* the site's layer relative to the phase's (−1: the block before) */
} row_step;

typedef struct row_program {
    const row_step *steps;
    int n_steps, t0;       /* tokens t0..n − 1 */
    int layer;
} row_program;


/* Spins until *a >= want, at most `spins` times; returns whether it got there. */
static int await_spins(atomic_int *a, int want, int spins) {
    for (int i = 0; i < spins; i++) {
        if (atomic_load_explicit(a, memory_order_acquire) >= want) return 1;
        cpu_relax();
    }
    return atomic_load_explicit(a, memory_order_acquire) >= want;
}

/* A decoding thread waits this many spins (some tens of microseconds: a
 * decoded token's phase takes a few) for another thread's share before it
 * takes that share itself, if its owner has not begun it. */
#define STEAL_AFTER 2048

static int share_start(int n_items, int thread, int n_threads) {
    return (int)((long)n_items * thread / n_threads);
}

/* Runs the items of the next phase: the thread's own share, then, for each
 * other share, waits for its owner to finish it — or, when the owner is not
 * running (a machine shared with other work), takes what it has not begun.
 * A prompt pass takes other shares' items one at a time, at once (its items
 * are large and uneven). A decoding pass (`then`) claims a whole share with
 * one compare-and-swap and publishes it finished with a plain store, and
 * takes another's share only when its owner has not begun it after
 * `STEAL_AFTER` spins: a decoded token's items are a fraction of a
 * microsecond, and a locked instruction per item (it waits for the thread's
 * stores to drain) cost 3–4% of two threads' decoding. In the usual case each
 * thread touches only its own counters and the other threads' finished
 * counts, a cache line moving once each way. Returns when every item of the
 * phase is finished; then, with `then`, runs its steps for every token on the
 * thread's own copy of the inputs (p->io), so that no thread waits for
 * another to compute them. */
static void phase(const rt_pass *p, int *slot, int n_items, item_fn fn, int layer, const void *arg,
                  const row_program *then, int tid) {
    const int nt = p->n_threads;
    rt_counter *next = &p->s->ctr[(size_t)(*slot)++ * CTR_PER_PHASE(nt)], *done = next + nt;
    for (int k = 0; k < nt; k++) {
        const int o = (tid + k) % nt, lo = share_start(n_items, o, nt), n = share_start(n_items, o + 1, nt) - lo;
        if (then) { /* decoding: whole shares */
            if (k > 0 && await_spins(&done[o].n, n, STEAL_AFTER)) continue;
            int unclaimed = 0;
            if (n > 0 && atomic_compare_exchange_strong_explicit(&next[o].n, &unclaimed, n, memory_order_relaxed,
                                                                 memory_order_relaxed)) {
                for (int i = 0; i < n; i++) fn(p, layer, lo + i, arg, tid);
                atomic_store_explicit(&done[o].n, n, memory_order_release);
            }
        } else {
            if (k > 0 && await_spins(&done[o].n, n, 0)) continue;
            int finished = 0;
            for (int i; (i = atomic_fetch_add_explicit(&next[o].n, 1, memory_order_relaxed)) < n; finished++)
                fn(p, layer, lo + i, arg, tid);
            if (finished) atomic_fetch_add_explicit(&done[o].n, finished, memory_order_release);
        }
        wait_for(&done[o].n, n);
    }
    if (then)
        for (int t = then->t0; t < p->n; t++)
            for (int k = 0; k < then->n_steps; k++) then->steps[k].fn(p, then->layer, t);
}

/* Where a site's values live: rows `ld` floats apart, `width` of them used. */
static float *site_values(const rt_pass *p, lb_rt_site site, int *width, size_t *ld) {
    lb_rt_session *s = p->s;
    const lb_rt_model *m = p->m;
    const size_t W = (size_t)m->width_max;
    switch (site) {
    case LB_RT_ATTN_NORM: case LB_RT_FFN_NORM: case LB_RT_OUTPUT_NORM: *width = m->d; *ld = W; return p->io->hn;
    case LB_RT_ATTN_SUB_NORM: *width = m->q_dim; *ld = W; return p->io->hn;
    case LB_RT_FFN_SUB_NORM: *width = m->F; *ld = W; return p->io->hn;
    case LB_RT_Q: *width = m->q_dim; *ld = (size_t)m->q_dim; return s->q;
    case LB_RT_K: *width = m->kv_dim; *ld = (size_t)m->kv_dim; return s->k;
    case LB_RT_V: *width = m->kv_dim; *ld = (size_t)m->kv_dim; return s->v;
    case LB_RT_ATTN: *width = m->q_dim; *ld = (size_t)m->q_dim; return p->att;
    case LB_RT_ATTN_OUTPUT: *width = m->d; *ld = (size_t)m->d; return p->attn_out;
    case LB_RT_FFN_DOWN: *width = m->d; *ld = (size_t)m->d; return p->ffn_out;
    case LB_RT_ATTN_RESIDUAL: case LB_RT_FFN_RESIDUAL: *width = m->d; *ld = (size_t)m->d; return p->io->x;
    case LB_RT_FFN_GATE: *width = m->F; *ld = (size_t)m->F; return s->gate;
    case LB_RT_FFN_UP: *width = m->F; *ld = (size_t)m->F; return s->up;
    case LB_RT_FFN_ACT: *width = m->F; *ld = (size_t)m->F; return p->act;
    case LB_RT_LOGITS: *width = m->V; *ld = (size_t)m->V; return p->logits;
    case LB_RT_SITE_COUNT: break;
    }
    return NULL;
}

/* Hands tokens t0..n − 1 of a site to the probe (one thread runs while one is set). */
static void probe(const rt_pass *p, lb_rt_site site, int layer, int t0) {
    if (!p->s->probe || t0 >= p->n) return;
    int width = 0;
    size_t ld = 0;
    float *x = site_values(p, site, &width, &ld);
    if (site != LB_RT_LOGITS) x += (size_t)t0 * ld;
    if (site == LB_RT_OUTPUT_NORM || site == LB_RT_LOGITS) layer = -1;
    p->s->probe(p->s->probe_ctx, site, layer, p->pos0 + t0, p->n - t0, x, width, ld);
}

static void rows_item(const rt_pass *p, int layer, int item, const void *arg, int tid) {
    const row_program *rp = arg;
    (void)tid, (void)layer;
    for (int k = 0; k < rp->n_steps; k++) rp->steps[k].fn(p, rp->layer, rp->t0 + item);
}

static void rows_phase(const rt_pass *p, int *slot, const row_program *rp, int tid) {
    if (!p->s->probe) {
        phase(p, slot, p->n - rp->t0, rows_item, rp->layer, rp, NULL, tid);
        return;
    }
    (*slot)++;
    for (int k = 0; k < rp->n_steps; k++) {
        for (int t = rp->t0; t < p->n; t++) rp->steps[k].fn(p, rp->layer, t);
        const row_step *st = &rp->steps[k];
        if (st->site != LB_RT_SITE_COUNT) probe(p, st->site, rp->layer + st->site_layer, rp->t0);
    }
}

/* ---- the steps of a pass --------------------------------------------------------- */

static float *row_of(float *base, size_t ld, int t) { return base + (size_t)t * ld; }
#define HN(p, t) row_of((p)->io->hn, (size_t)(p)->m->width_max, t)

static void step_embed(const rt_pass *p, int l, int t) {
    (void)l;
    memcpy(row_of(p->io->x, (size_t)p->m->d, t), p->m->embd + (size_t)p->ids[t] * p->m->d,
           (size_t)p->m->d * sizeof(float));
}

/* x += y: a residual. */
static void add_row(float *x, const float *y, int d) {
    for (int i = 0; i < d; i++) x[i] += y[i];
}

static void step_attn_residual(const rt_pass *p, int l, int t) {
    (void)l;
    const size_t d = (size_t)p->m->d;
    add_row(row_of(p->io->x, d, t), row_of(p->attn_out, d, t), (int)d);
}

static void step_ffn_residual(const rt_pass *p, int l, int t) {
    (void)l;
    const size_t d = (size_t)p->m->d;
    add_row(row_of(p->io->x, d, t), row_of(p->ffn_out, d, t), (int)d);
}

static void step_attn_norm(const rt_pass *p, int l, int t) {
    norm_row(p->m, row_of(p->io->x, (size_t)p->m->d, t), p->m->blocks[l].attn_norm, HN(p, t), p->m->d);
}

static void step_prep_qkv(const rt_pass *p, int l, int t) { prepare_input(p, &p->m->blocks[l].q, t, HN(p, t)); }

static void step_attn_sub_norm(const rt_pass *p, int l, int t) {
    norm_row(p->m, row_of(p->att, (size_t)p->m->q_dim, t), p->m->blocks[l].attn_sub_norm, HN(p, t),
             p->m->q_dim);
}

static void step_prep_o(const rt_pass *p, int l, int t) {
    const lb_rt_block *b = &p->m->blocks[l];
    prepare_input(p, &b->o, t, b->attn_sub_norm ? HN(p, t) : row_of(p->att, (size_t)p->m->q_dim, t));
}

static void step_ffn_norm(const rt_pass *p, int l, int t) {
    norm_row(p->m, row_of(p->io->x, (size_t)p->m->d, t), p->m->blocks[l].ffn_norm, HN(p, t), p->m->d);
}

static void step_prep_gate(const rt_pass *p, int l, int t) { prepare_input(p, &p->m->blocks[l].gate, t, HN(p, t)); }

/* silu(gate)·up or relu²(gate)·up of token t's columns i0..i1 − 1, as lb_swiglu
 * and lb_mul(lb_relu2) write them. */
static void act_cols(const rt_pass *p, int t, int i0, int i1) {
    const int F = p->m->F;
    const float *g = row_of(p->s->gate, (size_t)F, t), *u = row_of(p->s->up, (size_t)F, t);
    float *a = row_of(p->act, (size_t)F, t);
    if (p->m->cfg.ffn_act == LB_FFN_RELU2) {
        for (int i = i0; i < i1; i++) {
            float r = g[i] > 0.0f ? g[i] : 0.0f;
            a[i] = r * r * u[i];
        }
    } else {
        for (int i = i0; i < i1; i++) a[i] = g[i] * (1.0f / (1.0f + lb_exp_vec(-g[i]))) * u[i];
    }
}

static void step_act(const rt_pass *p, int l, int t) {
    (void)l;
    act_cols(p, t, 0, p->m->F);
}

static void step_ffn_sub_norm(const rt_pass *p, int l, int t) {
    norm_row(p->m, row_of(p->act, (size_t)p->m->F, t), p->m->blocks[l].ffn_sub_norm, HN(p, t), p->m->F);
}

static void step_prep_down(const rt_pass *p, int l, int t) {
    const lb_rt_block *b = &p->m->blocks[l];
    prepare_input(p, &b->down, t, b->ffn_sub_norm ? HN(p, t) : row_of(p->act, (size_t)p->m->F, t));
}

static void step_output_norm(const rt_pass *p, int l, int t) {
    (void)l;
    norm_row(p->m, row_of(p->io->x, (size_t)p->m->d, t), p->m->output_norm, HN(p, t), p->m->d);
}

static void step_prep_head(const rt_pass *p, int l, int t) {
    (void)l;
    prepare_input(p, &p->m->head, t, HN(p, t));
}

#define NO_SITE LB_RT_SITE_COUNT
static const row_step steps_first[] = {
    {step_embed, NO_SITE, 0}, {step_attn_norm, LB_RT_ATTN_NORM, 0}, {step_prep_qkv, NO_SITE, 0}};
static const row_step steps_attn_in[] = {
    {step_ffn_residual, LB_RT_FFN_RESIDUAL, -1}, {step_attn_norm, LB_RT_ATTN_NORM, 0}, {step_prep_qkv, NO_SITE, 0}};
static const row_step steps_o_in[] = {{step_attn_sub_norm, LB_RT_ATTN_SUB_NORM, 0}, {step_prep_o, NO_SITE, 0}};
static const row_step steps_ffn_in[] = {
    {step_attn_residual, LB_RT_ATTN_RESIDUAL, 0}, {step_ffn_norm, LB_RT_FFN_NORM, 0}, {step_prep_gate, NO_SITE, 0}};
static const row_step steps_down_in[] = {
    {step_act, LB_RT_FFN_ACT, 0}, {step_ffn_sub_norm, LB_RT_FFN_SUB_NORM, 0}, {step_prep_down, NO_SITE, 0}};
static const row_step steps_down_in_plain[] = {{step_act, LB_RT_FFN_ACT, 0}, {step_prep_down, NO_SITE, 0}};
/* ... when gate_up_item computed the activation (no probe) */
static const row_step steps_down_in_fused[] = {{step_ffn_sub_norm, NO_SITE, 0}, {step_prep_down, NO_SITE, 0}};
static const row_step steps_head_in[] = {
    {step_ffn_residual, LB_RT_FFN_RESIDUAL, -1}, {step_output_norm, LB_RT_OUTPUT_NORM, 0}, {step_prep_head, NO_SITE, 0}};
#define N_STEPS(a) ((int)(sizeof a / sizeof a[0]))

/* ---- the items of a pass --------------------------------------------------------- */

static void store_kv(const rt_pass *p, int l, int kh, int is_v) {
    const lb_rt_model *m = p->m;
    const int Dh = m->Dh;
    const size_t head = ((size_t)l * m->Hkv + kh) * p->s->seq * Dh;
    const float *src = (is_v ? p->s->v : p->s->k) + (size_t)kh * Dh;
    if (is_v) {
        for (int t = 0; t < p->n; t++)
            memcpy(p->s->vc + head + (size_t)(p->pos0 + t) * Dh, src + (size_t)t * m->kv_dim,
                   (size_t)Dh * sizeof(float));
        return;
    }
    float *kt = p->s->kc + head;
    for (int t = 0; t < p->n; t++)
        for (int i = 0; i < Dh; i++) kt[(size_t)i * p->s->seq + p->pos0 + t] = src[(size_t)t * m->kv_dim + i];
}

/* One head of q, k or v for every token: its Dh rows, RoPE, the cache. */
static void qkv_item(const rt_pass *p, int l, int item, const void *arg, int tid) {
    (void)arg;
    const lb_rt_model *m = p->m;
    const lb_rt_block *b = &m->blocks[l];
    const int is_q = item < m->H, is_k = !is_q && item < m->H + m->Hkv;
    const int h = is_q ? item : is_k ? item - m->H : item - m->H - m->Hkv;
    const lb_rt_linear *L = is_q ? &b->q : is_k ? &b->k : &b->v;
    float *buf = is_q ? p->s->q : is_k ? p->s->k : p->s->v;
    const size_t ld = (size_t)(is_q ? m->q_dim : m->kv_dim);
    const int r0 = h * m->Dh;
    linear_rows(p, L, r0, r0 + m->Dh, 0, p->n, buf + r0, ld, tid);
    if (is_q || is_k) rope_rows(m, buf + r0, ld, p->n, p->pos0);
    if (!is_q) store_kv(p, l, h, !is_k);
}

/* The scores of keys j0..j0 + nb·LANES − 1 (nb <= 4) for nh query heads q,
 * into sc: the sums in registers, in order of i. */
static inline __attribute__((always_inline)) void scores_block(const float *Kt, size_t S, int Dh, int j0,
                                                               const float *const *q, float *const *sc, int nh,
                                                               int nb) {
    _Static_assert(KEYS == 4 * LANES, "runtime/forward.c: up to four vectors of scores at a time");
    f32xL acc[PAIR][4] = {{{0}}};
    for (int i = 0; i < Dh; i++) {
        const float *k = Kt + (size_t)i * S + j0;
        f32xL kv[4];
        for (int b = 0; b < nb; b++) kv[b] = load_l(k + LANES * b);
        for (int e = 0; e < nh; e++)
            for (int b = 0; b < nb; b++) acc[e][b] += q[e][i] * kv[b];
    }
    for (int e = 0; e < nh; e++)
        for (int b = 0; b < nb; b++) memcpy(sc[e] + j0 + LANES * b, &acc[e][b], sizeof acc[e][b]);
}

/* Query heads h0..h0 + nh − 1 (nh <= PAIR, one KV head) of token t against the
 * cache, positions 0..pos0 + t: each key and value vector loaded once for
 * the heads (grouped-query attention shares them). Each score and each
 * output is a sum in order of i (scores) or j (outputs), whatever the
 * position, pass, thread or head count: KEYS scores and 4·LANES outputs at
 * a time, in registers. */
static inline __attribute__((always_inline)) void attn_heads(const rt_pass *p, int l, int t, int h0, int nh,
                                                             int tid) {
    const lb_rt_model *m = p->m;
    const int Dh = m->Dh, kh = h0 / (m->H / m->Hkv), P = p->pos0 + t;
    const size_t S = (size_t)p->s->seq, head = ((size_t)l * m->Hkv + kh) * S * Dh;
    const float *Kt = p->s->kc + head, *V = p->s->vc + head;
    const float *q[PAIR];
    float *sc[PAIR], *o[PAIR];
    for (int e = 0; e < nh; e++) {
        q[e] = p->s->q + (size_t)t * m->q_dim + (size_t)(h0 + e) * Dh;
        sc[e] = p->s->scores + ((size_t)tid * PAIR + e) * S;
        o[e] = p->att + (size_t)t * m->q_dim + (size_t)(h0 + e) * Dh;
    }
    int j0 = 0;
    for (; j0 + KEYS <= P + 1; j0 += KEYS) scores_block(Kt, S, Dh, j0, q, sc, nh, KEYS / LANES);
    switch (j0 <= P ? (P - j0) / LANES + 1 : 0) { /* the last keys, LANES at a time (past P: of no use) */
    case 0: break;
    case 1: scores_block(Kt, S, Dh, j0, q, sc, nh, 1); break;
    case 2: scores_block(Kt, S, Dh, j0, q, sc, nh, 2); break;
    case 3: scores_block(Kt, S, Dh, j0, q, sc, nh, 3); break;
    default: scores_block(Kt, S, Dh, j0, q, sc, nh, 4); break;
    }
    for (int e = 0; e < nh; e++) {
        float *se = sc[e];
        for (int j = 0; j <= P; j++) se[j] *= m->attn_scale;
        float mx = se[0];
#pragma omp simd reduction(max : mx)
        for (int j = 1; j <= P; j++) mx = se[j] > mx ? se[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j <= P; j++) {
            se[j] = lb_exp_vec(se[j] - mx);
            sum += se[j];
        }
        const float inv = 1.0f / sum;
        for (int j = 0; j <= P; j++) se[j] *= inv;
    }
    /* o[i] = Σ_j p_j·V[j, i] in order of j */
    int i0 = 0;
    for (; i0 + 4 * LANES <= Dh; i0 += 4 * LANES) {
        f32xL acc[PAIR][4] = {{{0}}};
        for (int j = 0; j <= P; j++) {
            f32xL vv[4];
            for (int b = 0; b < 4; b++) vv[b] = load_l(V + (size_t)j * Dh + i0 + LANES * b);
            for (int e = 0; e < nh; e++)
                for (int b = 0; b < 4; b++) acc[e][b] += sc[e][j] * vv[b];
        }
        for (int e = 0; e < nh; e++) memcpy(o[e] + i0, acc[e], sizeof acc[e]);
    }
    for (int e = 0; e < nh; e++) {
        int i = i0;
        for (; i + LANES <= Dh; i += LANES) {
            f32xL acc = {0};
            for (int j = 0; j <= P; j++) acc += sc[e][j] * load_l(V + (size_t)j * Dh + i);
            memcpy(o[e] + i, &acc, sizeof acc);
        }
        for (; i < Dh; i++) {
            float acc = 0.0f;
            for (int j = 0; j <= P; j++) acc += sc[e][j] * V[(size_t)j * Dh + i];
            o[e][i] = acc;
        }
    }
}

/* Token t's query heads of KV head kh, PAIR at a time (attn_heads compiled
 * for each count, so that its sums stay in registers). */
static void attn_item(const rt_pass *p, int l, int item, const void *arg, int tid) {
    (void)arg;
    const lb_rt_model *m = p->m;
    const int group = m->H / m->Hkv, t = item / m->Hkv, kh = item % m->Hkv;
    _Static_assert(PAIR == 2, "runtime/forward.c: attn_item calls attn_heads for 2 and 1 heads");
    int h = kh * group;
    for (; h + PAIR <= (kh + 1) * group; h += PAIR) attn_heads(p, l, t, h, PAIR, tid);
    if (h < (kh + 1) * group) attn_heads(p, l, t, h, 1, tid);
}

/* A decoded token's KV head `item`, whole: q of its query heads, its k and
 * v, RoPE, the cache, then attention (q/k/v and attention in one phase,
 * one wait a layer fewer). The same values as qkv_item and attn_item. */
static void qkv_attn_item(const rt_pass *p, int l, int item, const void *arg, int tid) {
    const lb_rt_model *m = p->m;
    const int group = m->H / m->Hkv;
    for (int h = item * group; h < (item + 1) * group; h++) qkv_item(p, l, h, arg, tid);
    qkv_item(p, l, m->H + item, arg, tid);
    qkv_item(p, l, m->H + m->Hkv + item, arg, tid);
    for (int t = 0; t < p->n; t++) attn_item(p, l, t * m->Hkv + item, arg, tid);
}

/* ROW_BLOCK rows of gate and of up for tokens t0..n − 1, then (no probe:
 * nothing replaces gate and up in between) the activation of those rows. */
static void gate_up_item(const rt_pass *p, int l, int item, const void *arg, int tid) {
    const lb_rt_block *b = &p->m->blocks[l];
    const int F = p->m->F, r0 = item * ROW_BLOCK, r1 = r0 + ROW_BLOCK < F ? r0 + ROW_BLOCK : F;
    (void)arg;
    linear_rows(p, &b->gate, r0, r1, 0, p->n, p->s->gate + r0, (size_t)F, tid);
    linear_rows(p, &b->up, r0, r1, 0, p->n, p->s->up + r0, (size_t)F, tid);
    for (int t = 0; t < p->n; t++) act_cols(p, t, r0, r1);
}

/* ROW_BLOCK rows of one of up to two layers (gate and up share a phase) for
 * tokens t0..n − 1. */
typedef struct blocks_arg {
    const lb_rt_linear *L[2];
    float *out[2];
    size_t ldo;
    int n_blocks; /* per layer */
    int t0;
} blocks_arg;

static void blocks_item(const rt_pass *p, int l, int item, const void *arg, int tid) {
    (void)l;
    const blocks_arg *a = arg;
    const int which = item / a->n_blocks, r0 = item % a->n_blocks * ROW_BLOCK;
    const lb_rt_linear *L = a->L[which];
    const int r1 = r0 + ROW_BLOCK < L->n ? r0 + ROW_BLOCK : L->n;
    linear_rows(p, L, r0, r1, a->t0, p->n - a->t0, a->out[which] + r0, a->ldo, tid);
}

static int n_blocks(int rows) { return (rows + ROW_BLOCK - 1) / ROW_BLOCK; }

/* ---- a pass ---------------------------------------------------------------------- */

/* A decoding pass's places for layer l's att, attn_out, ffn_out and act: each
 * layer's of its own, since a thread may still be reading layer l's while the
 * others, having taken its items, write layer l + 1's. */
static void fold_places(rt_pass *p, int l) {
    const lb_rt_model *m = p->m;
    p->att = p->s->fold_out + (size_t)l * FOLD * (m->q_dim + 2 * m->d + m->F);
    p->attn_out = p->att + (size_t)FOLD * m->q_dim;
    p->ffn_out = p->attn_out + (size_t)FOLD * m->d;
    p->act = p->ffn_out + (size_t)FOLD * m->d;
}

/* The phases of a decoding pass's layer, in order. */
enum { FOLD_QKV_ATTN, FOLD_O, FOLD_GATE_UP, FOLD_DOWN, FOLD_PHASES };

/* Asks for the lines that thread tid writes in phase `ph` of layer l of a
 * decoding pass (its share of the items, as phase() deals them) for writing:
 * called a layer ahead (a phase ahead was slower), so that they move while
 * it computes. */
static void fold_lines_ahead(const rt_pass *p, int l, int ph, int tid) {
    const lb_rt_model *m = p->m;
    if (l >= m->L || !m->prefetchw) return;
    rt_pass q = *p;
    fold_places(&q, l);
    const int group_cols = m->H / m->Hkv * m->Dh;
    const struct { const float *base; int width, per_item; } out[FOLD_PHASES] = {
        [FOLD_QKV_ATTN] = {q.att, m->q_dim, group_cols}, [FOLD_O] = {q.attn_out, m->d, ROW_BLOCK},
        [FOLD_GATE_UP] = {q.act, m->F, ROW_BLOCK}, [FOLD_DOWN] = {q.ffn_out, m->d, ROW_BLOCK}};
    const int per = out[ph].per_item, items = (out[ph].width + per - 1) / per;
    const int c0 = share_start(items, tid, p->n_threads) * per, c1 = share_start(items, tid + 1, p->n_threads) * per;
    lines_for_writing(m, out[ph].base, (size_t)out[ph].width, p->n, c0, c1 < out[ph].width ? c1 : out[ph].width);
}

/* One thread's part of a pass; returns the phases it ran. A pass of up to
 * FOLD tokens (decoding) folds: each thread keeps its own copy of the
 * residual stream and of the layers' inputs, and after every phase of weight
 * rows computes the next norm and input codes from all the rows itself, the
 * other threads alike; four hand-offs a layer, each the other threads'
 * finished counts and rows. Longer passes run their per-token steps in
 * phases of their own, a token an item, into one shared copy. */
static int pass_body(const rt_pass *pass, int tid) {
    const lb_rt_model *m = pass->m;
    lb_rt_session *s = pass->s;
    const int fold = !s->probe && pass->n <= FOLD;
    rt_pass mine = *pass;
    if (fold) mine.io = &s->own[tid];
    const rt_pass *p = &mine;
    int slot = 0;
    /* With several threads, a decoding pass asks for each phase's output lines a layer ahead. */
    const int ahead = fold && p->n_threads > 1;
    if (ahead)
        for (int ph = 0; ph < FOLD_PHASES; ph++) fold_lines_ahead(p, 0, ph, tid);
    const row_program first = {steps_first, N_STEPS(steps_first), 0, 0};
    if (fold)
        for (int t = 0; t < p->n; t++)
            for (int k = 0; k < first.n_steps; k++) first.steps[k].fn(p, 0, t);
    else
        rows_phase(p, &slot, &first, tid);
    for (int l = 0; l < m->L; l++) {
        const lb_rt_block *b = &m->blocks[l];
        if (fold) fold_places(&mine, l);
        const row_program o_in = {b->attn_sub_norm ? steps_o_in : steps_o_in + 1, b->attn_sub_norm ? 2 : 1, 0, l};
        const row_program ffn_in = {steps_ffn_in, N_STEPS(steps_ffn_in), 0, l};
        const row_program down_in =
            s->probe ? (row_program){b->ffn_sub_norm ? steps_down_in : steps_down_in_plain,
                                     b->ffn_sub_norm ? N_STEPS(steps_down_in) : N_STEPS(steps_down_in_plain), 0, l}
                     : (row_program){b->ffn_sub_norm ? steps_down_in_fused : steps_down_in_fused + 1,
                                     b->ffn_sub_norm ? N_STEPS(steps_down_in_fused) : 1, 0, l};
        const row_program next = l + 1 < m->L ? (row_program){steps_attn_in, N_STEPS(steps_attn_in), 0, l + 1}
                                              : (row_program){steps_head_in, N_STEPS(steps_head_in), p->logit0, m->L};

        if (fold) {
            if (ahead) fold_lines_ahead(p, l + 1, FOLD_QKV_ATTN, tid);
            phase(p, &slot, m->Hkv, qkv_attn_item, l, NULL, &o_in, tid);
        } else {
            phase(p, &slot, m->H + 2 * m->Hkv, qkv_item, l, NULL, NULL, tid);
            if (s->probe) {
                probe(p, LB_RT_Q, l, 0);
                probe(p, LB_RT_K, l, 0);
                probe(p, LB_RT_V, l, 0);
                for (int kh = 0; kh < m->Hkv; kh++) store_kv(p, l, kh, 0), store_kv(p, l, kh, 1); /* what the probe left */
            }
            phase(p, &slot, p->n * m->Hkv, attn_item, l, NULL, NULL, tid);
            probe(p, LB_RT_ATTN, l, 0);
        }
        if (!fold) rows_phase(p, &slot, &o_in, tid);

        const blocks_arg o = {{&b->o, NULL}, {p->attn_out, NULL}, (size_t)m->d, n_blocks(m->d), 0};
        if (ahead) fold_lines_ahead(p, l + 1, FOLD_O, tid);
        phase(p, &slot, o.n_blocks, blocks_item, l, &o, fold ? &ffn_in : NULL, tid);
        probe(p, LB_RT_ATTN_OUTPUT, l, 0);
        if (!fold) rows_phase(p, &slot, &ffn_in, tid);

        const blocks_arg gu = {{&b->gate, &b->up}, {s->gate, s->up}, (size_t)m->F, n_blocks(m->F), 0};
        if (ahead) fold_lines_ahead(p, l + 1, FOLD_GATE_UP, tid);
        if (s->probe) phase(p, &slot, 2 * gu.n_blocks, blocks_item, l, &gu, NULL, tid);
        else phase(p, &slot, gu.n_blocks, gate_up_item, l, NULL, fold ? &down_in : NULL, tid);
        probe(p, LB_RT_FFN_GATE, l, 0);
        probe(p, LB_RT_FFN_UP, l, 0);
        if (!fold) rows_phase(p, &slot, &down_in, tid);

        const blocks_arg dn = {{&b->down, NULL}, {p->ffn_out, NULL}, (size_t)m->d, n_blocks(m->d), 0};
        if (ahead) fold_lines_ahead(p, l + 1, FOLD_DOWN, tid);
        phase(p, &slot, dn.n_blocks, blocks_item, l, &dn, fold ? &next : NULL, tid);
        probe(p, LB_RT_FFN_DOWN, l, 0);
        if (!fold) rows_phase(p, &slot, &next, tid);
    }
    if (p->logit0 < p->n) {
        const blocks_arg hd = {{&m->head, NULL}, {p->logits, NULL}, (size_t)m->V, n_blocks(m->V), p->logit0};
        phase(p, &slot, hd.n_blocks, blocks_item, m->L, &hd, NULL, tid);
        probe(p, LB_RT_LOGITS, -1, p->logit0);
    }
    return slot;
}

lb_status lb_rt_forward(lb_rt_session *s, const int *ids, int n, float *logits, int all_logits) {
    const lb_rt_model *m = s->m;
    if (n < 1) return lb_error(LB_EINVAL, "runtime: forward of %d tokens: expected at least one", n);
    if (n > m->max_seq - s->len)
        return lb_error(LB_EINVAL, "runtime: %d more tokens after the %d in the cache exceed max_seq_len %d", n,
                        s->len, m->max_seq);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->V)
            return lb_error(LB_EINVAL, "runtime: token %d is %d, expected an id in [0, %d)", i, ids[i], m->V);
    const int nt = s->probe ? 1 : s->n_threads;
    for (int done = 0; done < n;) {
        const int c = n - done < CHUNK ? n - done : CHUNK;
        rt_pass p = {s, m, ids + done, c, s->len, c, nt, NULL, &s->shared, s->att, s->lo, s->lo, s->act};
        if (logits && all_logits) {
            p.logit0 = 0;
            p.logits = logits + (size_t)done * m->V;
        } else if (logits && done + c == n) {
            p.logit0 = c - 1;
            p.logits = logits;
        }
        int phases = 0;
        if (nt == 1) {
            phases = pass_body(&p, 0);
        } else {
            atomic_int *left = &s->ctr[s->n_ctr].n;
            atomic_store_explicit(left, 0, memory_order_relaxed);
#pragma omp parallel num_threads(nt)
            {
                const int ran = pass_body(&p, omp_get_thread_num());
                /* The first thread leaves last: with OMP_WAIT_POLICY=passive a
                 * thread that reaches the region's end barrier before the others
                 * sleeps, and waking it costs more than a decoded token's phase. */
                if (omp_get_thread_num() != 0) {
                    atomic_fetch_add_explicit(left, 1, memory_order_release);
                } else {
                    phases = ran;
                    wait_for(left, omp_get_num_threads() - 1);
                }
            }
        }
        memset(s->ctr, 0, (size_t)phases * CTR_PER_PHASE(nt) * sizeof *s->ctr); /* for the next pass: the counters it used */
        s->len += c;
        done += c;
    }
    if (logits) {
        size_t count = (size_t)(all_logits ? n : 1) * m->V, bad = lb_find_nonfinite(logits, count);
        if (bad)
            return lb_error(LB_ENUMERIC, "runtime: the logits of position %zu are not finite (the activations "
                                         "overflowed)", (size_t)s->len - (all_logits ? (size_t)n : 1) + (bad - 1) / m->V);
    }
    return LB_OK;
}

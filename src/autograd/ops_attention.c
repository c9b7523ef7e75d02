/* Rotary position embedding and causal multi-head attention with grouped
 * key/value heads.
 *
 * Layouts are those the projections produce without any copy:
 * q [B, T, H, Dh], k and v [B, T, Hkv, Dh]. One head of one sequence is then
 * a [T, Dh] matrix whose rows are H·Dh (or Hkv·Dh) floats apart, which is
 * exactly a matrix with a leading dimension for the GEMM engine. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/exp_vec.h"
#include "autograd/gemm.h"
#include "autograd/ops.h"

/* --- lb_rope -------------------------------------------------------------------
 * Pair (j, j + Dh/2) of every head at position p = pos0 + t is rotated by the
 * angle p · theta^(−2j/Dh). The cos/sin table [T, Dh/2] is computed per call
 * into the arena (in double, so long positions stay accurate) and kept for
 * the backward pass, which rotates the gradient back by −angle. */

typedef struct rope_saved {
    const float *cos, *sin;   /* [T, Dh/2] */
} rope_saved;

/* Below this many elements the loops stay on one thread: entering an OpenMP
 * parallel region costs about half a microsecond even when its `if` clause
 * is false, so small tensors skip the region altogether. */
#define PAR_MIN 32768

/* Rotates the H heads of one position by the angles in c/s (sign = −1
 * rotates back). With `accumulate`, adds into y instead of storing. */
static void rope_position(const float *x, float *y, const float *c, const float *s, int H, int Dh, float sign,
                          int accumulate) {
    const int half = Dh / 2;
    for (int h = 0; h < H; h++, x += Dh, y += Dh)
        for (int j = 0; j < half; j++) {
            float x0 = x[j], x1 = x[j + half], sn = sign * s[j];
            float y0 = x0 * c[j] - x1 * sn, y1 = x1 * c[j] + x0 * sn;
            y[j] = accumulate ? y[j] + y0 : y0;
            y[j + half] = accumulate ? y[j + half] + y1 : y1;
        }
}

/* All B·T positions of x [B, T, H, Dh]; position p uses row p % T of the table. */
static void rope_apply(const float *x, float *y, const float *cos_t, const float *sin_t, const int *shape,
                       float sign, int accumulate) {
    const int T = shape[1], H = shape[2], Dh = shape[3], half = Dh / 2;
    const int n_pos = shape[0] * T;
    const size_t stride = (size_t)H * Dh;
    if ((size_t)n_pos * stride >= PAR_MIN) {
#pragma omp parallel for schedule(static)
        for (int p = 0; p < n_pos; p++)
            rope_position(x + p * stride, y + p * stride, cos_t + (size_t)(p % T) * half,
                          sin_t + (size_t)(p % T) * half, H, Dh, sign, accumulate);
    } else {
        for (int p = 0; p < n_pos; p++)
            rope_position(x + p * stride, y + p * stride, cos_t + (size_t)(p % T) * half,
                          sin_t + (size_t)(p % T) * half, H, Dh, sign, accumulate);
    }
}

/* The transpose of a rotation is the rotation by the opposite angle; it is
 * added into x->grad. */
static void rope_backward(lb_node *node) {
    lb_tensor *x = node->in[0];
    if (!x->requires_grad) return;
    const rope_saved *rs = node->saved;
    rope_apply(node->out->grad, x->grad, rs->cos, rs->sin, x->shape, -1.0f, 1);
}

lb_tensor *lb_rope(lb_graph *g, lb_tensor *x, float theta, int pos0) {
    if (!x) return NULL;
    char xs[64];
    if (x->ndim != 4 || x->shape[3] % 2 != 0) {
        lb_error(LB_EINVAL, "rope: x %s must be [B, T, H, Dh] with an even Dh", lb_shape_str(x, xs, sizeof xs));
        return NULL;
    }
    if (!(theta > 1.0f) || pos0 < 0) {
        lb_error(LB_EINVAL, "rope: x %s: theta must be > 1 (got %g) and pos0 >= 0 (got %d)",
                 lb_shape_str(x, xs, sizeof xs), (double)theta, pos0);
        return NULL;
    }
    const int T = x->shape[1], Dh = x->shape[3], half = Dh / 2;
    lb_tensor *y = lb_graph_tensor(g, 4, x->shape);
    float *cos_t = lb_graph_alloc(g, (size_t)T * half * sizeof(float));
    float *sin_t = lb_graph_alloc(g, (size_t)T * half * sizeof(float));
    if (!y || !cos_t || !sin_t) return NULL;
    for (int j = 0; j < half; j++) {
        double inv_freq = pow((double)theta, -2.0 * j / Dh);
        for (int t = 0; t < T; t++) {
            double a = (double)(pos0 + t) * inv_freq;
            cos_t[(size_t)t * half + j] = (float)cos(a);
            sin_t[(size_t)t * half + j] = (float)sin(a);
        }
    }
    rope_apply(x->data, y->data, cos_t, sin_t, x->shape, 1.0f, 0);

    if (lb_graph_needs_grad(g, &x, 1)) {
        rope_saved *rs = lb_graph_alloc(g, sizeof *rs);
        if (!rs) return NULL;
        rs->cos = cos_t;
        rs->sin = sin_t;
        lb_node *node = lb_graph_record(g, "rope", rope_backward, y, x, NULL, NULL, NULL);
        if (!node) return NULL;
        node->saved = rs;
    }
    return y;
}

/* --- lb_attention --------------------------------------------------------------
 * For one (batch b, query head h) with KV head kh = h / (H / Hkv):
 *   S = Q Kᵀ · scale   [T, T], scale = 1/sqrt(Dh)
 *   P = causal softmax of S (row t over s ≤ t; s > t gets exactly 0)
 *   O = P V            [T, Dh]
 * The backward pass computes P again, head by head, the same way (same
 * calls, same order, so the same bits), then:
 *   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),
 *   dQ += scale · dS K,  dK += scale · dSᵀ Q.
 * Keeping P instead would hold B·H·T² floats per layer across the step
 * (model (b) of docs/performance.md: 8 MB a layer; at T = 2048, 128 MB a
 * layer per sequence) to save one Q·Kᵀ product and a softmax per head,
 * about a sixth of attention's arithmetic. The products go through the
 * GEMM engine at the graph's attention precision (g->attn_precision, not
 * g->precision: fp32, or bf16 operands with fp32 accumulation; the softmax
 * is fp32 either way); Q·Kᵀ and P·V also compute the masked upper
 * triangle, a waste that costs less than hand loops lose to GEMM kernels
 * (see bench/bench_autograd.c).
 *
 * The query heads that share a KV head are adjacent in the head-major
 * copies, so their row-wise products (Q·Kᵀ, P·V, dO·Vᵀ, dS·K) are one
 * product of G·T rows (G = H / Hkv heads per call while the group's
 * probabilities stay within ATTN_GROUP_MAX floats): fewer, larger products,
 * and each row the same sum as a head's own product. dV and dK sum over the
 * group's heads, one product per head added in head order as before. */

typedef struct attn_saved {
    int n_threads;    /* the forward pass's team: the backward pass runs the same */
    lb_gemm_precision p;
} attn_saved;

/* Below about this many multiply-adds (B·H·T²·Dh) the heads run on one
 * thread: entering an OpenMP region costs about half a microsecond, and far
 * more when other processes hold the cores. */
#define ATTN_PAR_MIN 65536.0

static int attn_parallel(const lb_tensor *q) {
    return (double)q->shape[0] * q->shape[2] * q->shape[1] * q->shape[1] * q->shape[3] >= ATTN_PAR_MIN;
}

/* In place over the rows of S [T, T]: row t becomes softmax(S[t, 0..t]),
 * zeros after the diagonal. The loops vectorize (lb_exp_vec; `simd`
 * reductions sum by vector lanes, an order fixed for a given build). The
 * exps run over whole blocks of SOFTMAX_BLOCK (past the diagonal too; those
 * are overwritten), so no exp is left to a scalar loop; the sum stays a loop
 * of its own over s ≤ t, in the order it always had. */
#define SOFTMAX_BLOCK 16

static void causal_softmax(float *S, int T) {
    for (int t = 0; t < T; t++) {
        float *row = S + (size_t)t * T;
        float mx = row[0];
#pragma omp simd reduction(max : mx)
        for (int s = 1; s <= t; s++) mx = row[s] > mx ? row[s] : mx;
        int n = (t + SOFTMAX_BLOCK) / SOFTMAX_BLOCK * SOFTMAX_BLOCK;
        n = n < T ? n : T;
#pragma omp simd
        for (int s = 0; s < n; s++) row[s] = lb_exp_vec(row[s] - mx);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int s = 0; s <= t; s++) sum += row[s];
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int s = 0; s < T; s++) row[s] = s <= t ? row[s] * inv : 0.0f;
    }
}

/* dS = P ⊙ (dP − rowsum(P ⊙ dP)) in place of dP, row by row (causal: zeros
 * after the diagonal). */
static void softmax_backward(const float *P, float *dS, int T) {
    for (int t = 0; t < T; t++) {
        const float *pr = P + (size_t)t * T;
        float *d = dS + (size_t)t * T;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int s = 0; s <= t; s++) dot += pr[s] * d[s];
#pragma omp simd
        for (int s = 0; s < T; s++) d[s] = s <= t ? pr[s] * (d[s] - dot) : 0.0f;
    }
}

/* The products' operands: q, k, v (and dO in the backward pass) copied
 * head-major, [B, heads, T, Dh], in the type of the products (fp32, or
 * bf16 at bf16 precision: rounded once per pass, not once per head). Every
 * head is then a dense [T, Dh] matrix, and the products write dense
 * per-thread buffers that are copied (added) into the [B, T, H, Dh] results:
 * oneDNN 2.6 runs its fast (brgemm) kernels only on dense matrices, and
 * strided heads fall back to slower ones. */
typedef struct attn_ops {
    lb_gemm_type type;
    size_t esize;                 /* bytes per element */
    void *q, *k, *v, *dO;         /* head-major copies */
    int B, T, H, Hkv, Dh;
    float scale;                  /* 1/sqrt(Dh) */
    int add_dq, add_dk;           /* backward: add into q's and k's gradients (0: they are unwritten, store) */
} attn_ops;

/* Head h of sequence b in a head-major copy with nh heads. */
static const void *head_of(const attn_ops *op, const void *base, int b, int h, int nh) {
    return (const char *)base + ((size_t)b * nh + h) * op->T * op->Dh * op->esize;
}

/* Head i (= b·nh + h) of x [B, T, nh, Dh] (fp32) → dst [B, nh, T, Dh] of op->type. */
static void to_heads(const attn_ops *op, const float *x, int nh, void *dst, int i) {
    const int T = op->T, Dh = op->Dh, b = i / nh, h = i % nh;
    const float *src = x + (size_t)b * T * nh * Dh + (size_t)h * Dh;
    void *d = (char *)dst + (size_t)i * T * Dh * op->esize;
    if (op->type == LB_GEMM_BF16) {
        lb_gemm_to_bf16(T, Dh, src, nh * Dh, NULL, d, Dh);
    } else {
        for (int t = 0; t < T; t++)
            memcpy((float *)d + (size_t)t * Dh, src + (size_t)t * nh * Dh, (size_t)Dh * sizeof(float));
    }
}

/* q, k, v (and dO when not NULL) → op's head-major copies, all heads of all
 * of them in one parallel loop (one OpenMP region, not one per tensor). */
static void all_to_heads(const attn_ops *op, const float *q, const float *k, const float *v, const float *dO) {
    const float *src[4] = {q, k, v, dO};
    void *dst[4] = {op->q, op->k, op->v, op->dO};
    const int nh[4] = {op->H, op->Hkv, op->Hkv, op->H}, n_src = dO ? 4 : 3;
    int end[4], n = 0; /* tasks of source s: [end[s − 1], end[s]) */
    for (int s = 0; s < n_src; s++) end[s] = n += op->B * nh[s];
    const int parallel = (size_t)n * op->T * op->Dh >= PAR_MIN;
#pragma omp parallel for schedule(static) if (parallel)
    for (int task = 0; task < n; task++) {
        int s = 0;
        while (task >= end[s]) s++;
        to_heads(op, src[s], nh[s], dst[s], task - (s ? end[s - 1] : 0));
    }
}

/* Head h of sequence b of y [B, T, nh, Dh] = (or +=) the dense [T, Dh] r. */
static void from_head(float *y, const float *r, int b, int h, int nh, int T, int Dh, int add) {
    for (int t = 0; t < T; t++) {
        float *dst = y + ((size_t)b * T + t) * nh * Dh + (size_t)h * Dh;
        const float *src = r + (size_t)t * Dh;
        if (add)
            for (int j = 0; j < Dh; j++) dst[j] += src[j];
        else
            memcpy(dst, src, (size_t)Dh * sizeof(float));
    }
}

/* fp32 [rows, T] as an operand of op->type: x itself, or rounded into half. */
static const void *operand_of(const attn_ops *op, const float *x, int rows, uint16_t *half) {
    if (op->type == LB_GEMM_F32) return x;
    lb_gemm_to_bf16(rows, op->T, x, op->T, NULL, half, op->T);
    return half;
}

/* Fills *op with copies of q, k, v (and dO when not NULL) in the arena at
 * *copy, `*bytes` long (the caller hands them back). */
static lb_status attn_ops_make(attn_ops *op, lb_arena *arena, lb_gemm_precision p, const lb_tensor *q,
                               const lb_tensor *k, const lb_tensor *v, const float *dO, void **copy, size_t *bytes) {
    *op = (attn_ops){.type = p == LB_PRECISION_BF16 ? LB_GEMM_BF16 : LB_GEMM_F32, .B = q->shape[0],
                     .T = q->shape[1], .H = q->shape[2], .Hkv = k->shape[2], .Dh = q->shape[3]};
    op->esize = op->type == LB_GEMM_BF16 ? sizeof(uint16_t) : sizeof(float);
    op->scale = 1.0f / sqrtf((float)op->Dh);
    const size_t nq = q->n * op->esize, nk = k->n * op->esize;
    *bytes = (dO ? 2 : 1) * nq + 2 * nk;
    char *c = *copy = lb_arena_alloc(arena, *bytes);
    if (!c) return LB_ENOMEM;
    op->q = c, op->k = c + nq, op->v = c + nq + nk, op->dO = dO ? c + nq + 2 * nk : NULL;
    all_to_heads(op, q->data, k->data, v->data, dO);
    return LB_OK;
}

/* Heads per product: the whole group while its probabilities [G·T, T] stay
 * within ATTN_GROUP_MAX floats (the scratch holds three such), else one. */
#define ATTN_GROUP_MAX ((size_t)1 << 20)

static int heads_per_call(int T, int H, int Hkv) {
    const int G = H / Hkv;
    return (size_t)G * T * T <= ATTN_GROUP_MAX ? G : 1;
}

/* Per-thread scratch in floats for gh heads per product: P and dS [gh·T, T],
 * their bf16 copies, and [gh·T, Dh] (O or dQ), dK and dV [T, Dh]. */
static size_t scratch_floats(int T, int Dh, int gh) {
    return 3 * (size_t)gh * T * T + ((size_t)gh + 2) * T * Dh;
}

size_t lb_attention_scratch_floats(int T, int Dh, int H, int Hkv) {
    return scratch_floats(T, Dh, heads_per_call(T, H, Hkv));
}

/* P [gh·T, T] = causal softmax(Q Kᵀ · scale) of sequence b, query heads
 * h .. h + gh − 1 (one KV head), each head's [T, T] block on its own. */
static lb_status heads_probs(const attn_ops *op, int b, int h, int gh, float *P) {
    const int T = op->T, kh = h / (op->H / op->Hkv);
    LB_TRY(lb_gemm(op->type, 0, 1, gh * T, T, op->Dh, op->scale, head_of(op, op->q, b, h, op->H), op->Dh,
                   head_of(op, op->k, b, kh, op->Hkv), op->Dh, NULL, 0.0f, P, T));
    for (int g = 0; g < gh; g++) causal_softmax(P + (size_t)g * T * T, T);
    return LB_OK;
}

/* Forward of sequence b, query heads h .. h + gh − 1; `scratch` per scratch_floats. */
static lb_status heads_forward(const attn_ops *op, lb_tensor *o, int b, int h, int gh, float *scratch) {
    const int T = op->T, Dh = op->Dh, kh = h / (op->H / op->Hkv);
    const size_t GTT = (size_t)gh * T * T;
    float *P = scratch, *O = scratch + 3 * GTT;
    LB_TRY(heads_probs(op, b, h, gh, P));
    const void *Pop = operand_of(op, P, gh * T, (uint16_t *)(scratch + 2 * GTT));
    LB_TRY(lb_gemm(op->type, 0, 0, gh * T, Dh, T, 1.0f, Pop, T, head_of(op, op->v, b, kh, op->Hkv), Dh, NULL, 0.0f,
                   O, Dh));
    for (int g = 0; g < gh; g++) from_head(o->data, O + (size_t)g * T * Dh, b, h + g, op->H, T, Dh, 0);
    return LB_OK;
}

/* Backward of sequence b, KV head kh and the query heads that read it, gh
 * at a time. The heads of a group add into the same dK/dV buffers in head
 * order, so the sums have a fixed order. */
static lb_status group_backward(const lb_node *node, const attn_ops *op, int b, int kh, int gh, float *scratch) {
    lb_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2];
    const int T = op->T, Dh = op->Dh, group = op->H / op->Hkv;
    const size_t TT = (size_t)T * T, GTT = (size_t)gh * TT, TD = (size_t)T * Dh;
    float *P = scratch, *dS = scratch + GTT, *dQ = scratch + 3 * GTT, *dK = dQ + gh * TD, *dV = dK + TD;
    uint16_t *Ph = (uint16_t *)(scratch + 2 * GTT), *dSh = Ph + GTT;
    const size_t es = op->esize;
    const void *K = head_of(op, op->k, b, kh, op->Hkv), *V = head_of(op, op->v, b, kh, op->Hkv);
    for (int h0 = kh * group; h0 < (kh + 1) * group; h0 += gh) {
        const void *Q = head_of(op, op->q, b, h0, op->H), *dO = head_of(op, op->dO, b, h0, op->H);
        LB_TRY(heads_probs(op, b, h0, gh, P));
        const char *Pop = operand_of(op, P, gh * T, Ph);
        for (int g = 0; g < gh && v->requires_grad; g++) { /* dV += Pᵀ dO; the group's first head starts it */
            const float beta = h0 + g == kh * group ? 0.0f : 1.0f;
            LB_TRY(lb_gemm(op->type, 1, 0, T, Dh, T, 1.0f, Pop + g * TT * es, T, (const char *)dO + g * TD * es, Dh,
                           NULL, beta, dV, Dh));
        }
        if (!q->requires_grad && !k->requires_grad) continue;
        /* dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) in place, head by head. */
        LB_TRY(lb_gemm(op->type, 0, 1, gh * T, T, Dh, 1.0f, dO, Dh, V, Dh, NULL, 0.0f, dS, T));
        for (int g = 0; g < gh; g++) softmax_backward(P + g * TT, dS + g * TT, T);
        const char *dSop = operand_of(op, dS, gh * T, dSh);
        if (q->requires_grad) { /* dQ = scale · dS K */
            LB_TRY(lb_gemm(op->type, 0, 0, gh * T, Dh, T, op->scale, dSop, T, K, Dh, NULL, 0.0f, dQ, Dh));
            for (int g = 0; g < gh; g++) from_head(q->grad, dQ + g * TD, b, h0 + g, op->H, T, Dh, op->add_dq);
        }
        for (int g = 0; g < gh && k->requires_grad; g++) { /* dK += scale · dSᵀ Q */
            const float beta = h0 + g == kh * group ? 0.0f : 1.0f;
            LB_TRY(lb_gemm(op->type, 1, 0, T, Dh, T, op->scale, dSop + g * TT * es, T, (const char *)Q + g * TD * es,
                           Dh, NULL, beta, dK, Dh));
        }
    }
    if (k->requires_grad) from_head(k->grad, dK, b, kh, op->Hkv, T, Dh, op->add_dk);
    if (v->requires_grad) from_head(v->grad, dV, b, kh, op->Hkv, T, Dh, 1);
    return LB_OK;
}

/* The tensor whose buffers t uses (t itself unless it is a view). */
static const lb_tensor *base_of(const lb_tensor *t) {
    while (t->view_of) t = t->view_of;
    return t;
}

static void attention_backward(lb_node *node) {
    lb_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2];
    const attn_saved *as = node->saved;
    const int B = q->shape[0], T = q->shape[1], H = q->shape[2], Hkv = k->shape[2], gh = heads_per_call(T, H, Hkv);
    const size_t per_thread = scratch_floats(T, q->shape[3], gh);
    const size_t bytes = (size_t)as->n_threads * per_thread * sizeof(float);
    attn_ops op;
    void *copy;
    size_t copy_bytes;
    if (attn_ops_make(&op, &node->graph->arena, as->p, q, k, v, node->out->grad, &copy, &copy_bytes) != LB_OK) {
        lb_node_fail(node, LB_ENOMEM);
        return;
    }
    /* Every element of dQ and dK is written once (a head's rows by its own
     * task), so unwritten gradients are stored into. */
    op.add_dq = !(q->requires_grad && lb_grad_unwritten(q));
    op.add_dk = !(k->requires_grad && lb_grad_unwritten(k));
    float *scratch = lb_node_scratch(node, bytes);
    lb_status s = scratch ? LB_OK : LB_ENOMEM;
    /* One task per (b, KV head). */
    if (scratch && attn_parallel(q)) {
#pragma omp parallel for schedule(static) num_threads(as->n_threads)
        for (int task = 0; task < B * Hkv; task++) {
            lb_status st = group_backward(node, &op, task / Hkv, task % Hkv, gh,
                                          scratch + (size_t)omp_get_thread_num() * per_thread);
            if (st != LB_OK) {
#pragma omp critical(lb_attention_status)
                s = st;
            }
        }
    } else if (scratch) {
        for (int task = 0; task < B * Hkv && s == LB_OK; task++)
            s = group_backward(node, &op, task / Hkv, task % Hkv, gh, scratch);
    }
    if (scratch) lb_node_release(node, scratch, bytes);
    lb_node_release(node, copy, copy_bytes);
    if (s != LB_OK) lb_node_fail(node, s);
}

lb_tensor *lb_attention(lb_graph *g, lb_tensor *q, lb_tensor *k, lb_tensor *v) {
    if (!q || !k || !v) return NULL;
    char qs[64], ks[64], vs[64];
    if (q->ndim != 4 || k->ndim != 4 || !lb_tensor_same_shape(k, v) || k->shape[0] != q->shape[0] ||
        k->shape[1] != q->shape[1] || k->shape[3] != q->shape[3] || q->shape[2] % k->shape[2] != 0) {
        lb_error(LB_EINVAL,
                 "attention: q %s, k %s, v %s: expected q [B,T,H,Dh] and k, v [B,T,Hkv,Dh] with Hkv dividing H",
                 lb_shape_str(q, qs, sizeof qs), lb_shape_str(k, ks, sizeof ks), lb_shape_str(v, vs, sizeof vs));
        return NULL;
    }
    const int B = q->shape[0], T = q->shape[1], H = q->shape[2], gh = heads_per_call(T, H, k->shape[2]);

    /* Scratch per thread for this call only (P, and its bf16 copy). */
    const int n_threads = omp_get_max_threads();
    const size_t per_thread = scratch_floats(T, q->shape[3], gh);
    const size_t probs_bytes = (size_t)n_threads * per_thread * sizeof(float);
    const lb_gemm_precision p = g->attn_precision;
    lb_tensor *o = lb_graph_tensor(g, 4, q->shape);
    float *probs = o ? lb_graph_alloc(g, probs_bytes) : NULL;
    if (!probs) return NULL;
    attn_ops op;
    void *copy;
    size_t copy_bytes;
    if (attn_ops_make(&op, &g->arena, p, q, k, v, NULL, &copy, &copy_bytes) != LB_OK) return NULL;

    /* One task per (b, gh query heads). */
    lb_status s = LB_OK;
    const int per_seq = H / gh;
    if (attn_parallel(q)) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
        for (int task = 0; task < B * per_seq; task++) {
            lb_status st = heads_forward(&op, o, task / per_seq, task % per_seq * gh, gh,
                                         probs + (size_t)omp_get_thread_num() * per_thread);
            if (st != LB_OK) {
#pragma omp critical(lb_attention_status)
                s = st;
            }
        }
    } else {
        for (int task = 0; task < B * per_seq && s == LB_OK; task++)
            s = heads_forward(&op, o, task / per_seq, task % per_seq * gh, gh, probs);
    }
    lb_arena_release(&g->arena, copy, copy_bytes);
    lb_arena_release(&g->arena, probs, probs_bytes);
    if (s != LB_OK) {
        lb_error(s, "attention: q %s: a product failed", lb_shape_str(q, qs, sizeof qs));
        return NULL;
    }

    lb_tensor *ins[3] = {q, k, v};
    if (lb_graph_needs_grad(g, ins, 3)) {
        attn_saved *as = lb_graph_alloc(g, sizeof *as);
        if (!as) return NULL;
        as->n_threads = n_threads;
        as->p = p;
        lb_node *node = lb_graph_record(g, "attention", attention_backward, o, q, k, v, NULL);
        if (!node) return NULL;
        node->saved = as;
        /* dQ and dK are stored when q, k and v are three tensors (no views
         * of one another), so no store lands on another's gradient. */
        const lb_tensor *bq = base_of(q), *bk = base_of(k), *bv = base_of(v);
        node->stores_grad = 3 * (bq != bk && bq != bv && bk != bv);
    }
    return o;
}

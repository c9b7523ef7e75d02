/* Data parallelism over MPI (dist.h). Without LOWBIT_MPI the world is one
 * rank and the collectives return at once. */
#include "dist/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/minifloat.h"

#ifdef LOWBIT_MPI
#include <mpi.h>
#endif

static lb_dist g_world = {.rank = 0, .size = 1, .timeout = 300.0};

int lb_dist_compiled(void) {
#ifdef LOWBIT_MPI
    return 1;
#else
    return 0;
#endif
}

const lb_dist *lb_dist_world(void) { return &g_world; }

/* The number of ranks a launcher started, from the variables it sets: Open
 * MPI's mpirun, MPICH's hydra and Slurm's PMI; -1 when launched by a PMIx
 * launcher that states no size; 0 when no launcher started this process. */
static int launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return getenv("PMIX_RANK") ? -1 : 0;
}

static lb_status read_timeout(void) {
    const char *v = getenv("LOWBIT_DIST_TIMEOUT");
    if (!v || !*v) return LB_OK;
    char *end;
    double t = strtod(v, &end);
    if (*end || !(t > 0.0))
        return lb_error(LB_ECONFIG, "LOWBIT_DIST_TIMEOUT='%s': expected a number of seconds > 0", v);
    g_world.timeout = t;
    return LB_OK;
}

/* ---- compressed gradients -------------------------------------------------- */

const char *const lb_comm_format_names[] = {
    [LB_COMM_FP32] = "fp32", [LB_COMM_BF16] = "bf16", [LB_COMM_FP8] = "fp8", [LB_COMM_INT8] = "int8"};
_Static_assert(sizeof lb_comm_format_names / sizeof lb_comm_format_names[0] == LB_COMM_COUNT,
               "dist/dist.c: one name per lb_comm_format");

/* A block: bf16, 2 bytes per value; fp8 and int8, an fp32 step (the value of
 * one unit: amax/448 for E4M3, amax/127 for int8) then one byte per value. */
size_t lb_comm_block_bytes(lb_comm_format f) {
    switch (f) {
    case LB_COMM_FP32: return LB_COMM_BLOCK * sizeof(float);
    case LB_COMM_BF16: return LB_COMM_BLOCK * sizeof(uint16_t);
    case LB_COMM_FP8:
    case LB_COMM_INT8: return sizeof(float) + LB_COMM_BLOCK;
    case LB_COMM_COUNT: break;
    }
    return 0;
}

void lb_comm_encode(lb_comm_format f, const float *x, size_t len, unsigned char *out) {
    if (f == LB_COMM_BF16) {
        for (size_t i = 0; i < len; i++) {
            uint16_t h = lb_bf16_from_f32(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return;
    }
    /* A block holding inf or NaN is sent with a NaN step, so every rank
     * decodes NaN there and the step is skipped on all of them (int8's
     * clamp alone would turn a NaN into a finite -127 steps). */
    float amax = 0.0f;
    for (size_t i = 0; i < len; i++) {
        float a = fabsf(x[i]);
        if (!(a <= amax)) amax = isnan(a) ? INFINITY : a;
    }
    float step = isfinite(amax) ? amax / (f == LB_COMM_FP8 ? 448.0f : 127.0f) : NAN;
    float inv = step > 0.0f ? 1.0f / step : 0.0f;
    memcpy(out, &step, sizeof step);
    unsigned char *q = out + sizeof step;
    for (size_t i = 0; i < len; i++) {
        float v = x[i] * inv;
        q[i] = f == LB_COMM_FP8 ? lb_fp8_e4m3_from_f32(v, 1) : (unsigned char)(int8_t)lrintf(fminf(fmaxf(v, -127.0f), 127.0f));
    }
}

void lb_comm_decode(lb_comm_format f, const unsigned char *in, size_t len, float *y) {
    if (f == LB_COMM_BF16) {
        for (size_t i = 0; i < len; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            y[i] = lb_bf16_to_f32(h);
        }
        return;
    }
    float step;
    memcpy(&step, in, sizeof step);
    const unsigned char *q = in + sizeof step;
    for (size_t i = 0; i < len; i++)
        y[i] = step * (f == LB_COMM_FP8 ? lb_fp8_e4m3_to_f32(q[i]) : (float)(int8_t)q[i]);
}

void lb_zero_owners(const lb_dist *d, lb_tensor *const *params, int n, int *owner) {
    size_t load[d->size];
    for (int r = 0; r < d->size; r++) load[r] = 0;
    for (int i = 0; i < n; i++) owner[i] = -1;
    for (int k = 0; k < n; k++) {
        int big = -1; /* the largest tensor not yet given out (first in parameter order on ties) */
        for (int i = 0; i < n; i++)
            if (owner[i] < 0 && (big < 0 || params[i]->n > params[big]->n)) big = i;
        int least = 0;
        for (int r = 1; r < d->size; r++)
            if (load[r] < load[least]) least = r;
        owner[big] = least;
        load[least] += params[big]->n;
    }
}

/* The sizes of the reduction's large buffers (in elements of their type). */
typedef struct sync_sizes {
    size_t flat, shard;      /* floats: the gradients flattened into buckets; this rank's share */
    size_t packed;           /* bytes: compressed buckets of every rank (0 for fp32) */
    size_t residual;         /* floats: error feedback (0 for fp32) */
} sync_sizes;

static sync_sizes sizes_of(const lb_dist *d, lb_tensor *const *params, int n_params, lb_comm_format comm) {
    sync_sizes z = {0, 0, 0, 0};
    for (int i = 0; i < n_params; i++) z.flat += params[i]->n + (size_t)d->size;
    z.shard = z.flat / (size_t)d->size + (size_t)n_params;
    if (comm != LB_COMM_FP32) {
        size_t blocks = z.flat / LB_COMM_BLOCK + (size_t)n_params; /* every bucket's last block may be partial */
        z.packed = blocks * lb_comm_block_bytes(comm) * (size_t)d->size;
        for (int i = 0; i < n_params; i++) z.residual += params[i]->n;
    }
    return z;
}

size_t lb_grad_sync_bytes(const lb_dist *d, lb_tensor *const *params, int n_params, const int *owner,
                          lb_comm_format comm) {
    if (d->size < 2) return 0;
    sync_sizes z = sizes_of(d, params, n_params, owner ? LB_COMM_FP32 : comm);
    return (z.flat + z.shard + z.residual) * sizeof(float) + z.packed;
}

lb_status lb_dist_sumsq(void *ctx, double *sumsq) { return lb_dist_sum_ranks(ctx, *sumsq, sumsq); }

#ifndef LOWBIT_MPI

lb_status lb_dist_init(int *argc, char ***argv) {
    LB_TRY(read_timeout());
    int n = launched_size();
    if (n > 1)
        return lb_error(LB_EINVAL,
                        "started as one of %d MPI ranks, but this lowbit was built without MPI (LOWBIT_MPI=OFF): "
                        "each rank would train alone; rebuild with MPI (apt-get install libopenmpi-dev)",
                        n);
    return LB_OK;
}

void lb_dist_finalize(void) {}
void lb_dist_abort(const lb_dist *d, int code, const char *why) {}
lb_status lb_dist_max_int(const lb_dist *d, int *v) { return LB_OK; }
lb_status lb_dist_sum_disjoint(const lb_dist *d, double *x, int n) { return LB_OK; }
lb_status lb_dist_sum_ranks(const lb_dist *d, double v, double *sum) {
    *sum = v;
    return LB_OK;
}

lb_grad_sync *lb_grad_sync_create(const lb_dist *d, lb_tensor *const *params, int n_params, size_t bucket_bytes,
                                  const int *owner, lb_comm_format comm) {
    lb_error(LB_EINVAL, "gradient reduction across ranks: this lowbit was built without MPI");
    return NULL;
}
void lb_grad_sync_free(lb_grad_sync *s) {}
lb_status lb_grad_sync_begin(lb_grad_sync *s, lb_graph *g) { return LB_OK; }
lb_status lb_grad_sync_end(lb_grad_sync *s, lb_graph *g) { return LB_OK; }
lb_grad_sync_stats lb_grad_sync_last(const lb_grad_sync *s) {
    lb_grad_sync_stats st = {0};
    return st;
}
size_t lb_grad_sync_residual_len(const lb_grad_sync *s) { return 0; }
lb_status lb_grad_sync_gather_residuals(lb_grad_sync *s, float *all) { return LB_OK; }
void lb_grad_sync_set_residuals(lb_grad_sync *s, const float *mine) {}
lb_status lb_zero_broadcast(const lb_dist *d, lb_tensor *const *params, int n, const int *owner) { return LB_OK; }
lb_status lb_zero_gather_state(const lb_dist *d, const lb_optim *shard, lb_optim *full, const int *owner) {
    return lb_error(LB_EINVAL, "ZeRO-1 across ranks: this lowbit was built without MPI");
}

#else /* LOWBIT_MPI */

/* Collectives on one communicator must be started in the same order on
 * every rank. The gradient buckets' reduce-scatters start in bucket order
 * during the backward pass, and each all-gather when its reduce-scatter has
 * finished, which ranks see at different moments: so the all-gathers have a
 * communicator of their own (in bucket order there too). */
static MPI_Comm g_comm = MPI_COMM_NULL, g_comm_gather = MPI_COMM_NULL;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lb_status mpi_error(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    return lb_error(LB_EIO, "rank %d of %d: %s failed: %s", g_world.rank, g_world.size, what, msg);
}

lb_status lb_dist_init(int *argc, char ***argv) {
    LB_TRY(read_timeout());
    if (launched_size() == 0) return LB_OK; /* a plain process: no MPI at all */
    int provided, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return lb_error(LB_EIO, "MPI_Init_thread failed (error %d)", rc);
    g_world.mpi = 1;
    /* Errors come back as codes, so a failing rank can say what failed
     * before it ends the job (lb_dist_abort). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &g_comm)) != MPI_SUCCESS ||
        (rc = MPI_Comm_dup(MPI_COMM_WORLD, &g_comm_gather)) != MPI_SUCCESS)
        return mpi_error(rc, "MPI_Comm_dup");
    MPI_Comm_rank(g_comm, &g_world.rank);
    MPI_Comm_size(g_comm, &g_world.size);
    return LB_OK;
}

void lb_dist_finalize(void) {
    if (!g_world.mpi) return;
    if (g_comm != MPI_COMM_NULL) MPI_Comm_free(&g_comm);
    if (g_comm_gather != MPI_COMM_NULL) MPI_Comm_free(&g_comm_gather);
    MPI_Finalize();
    g_world.mpi = 0;
}

void lb_dist_abort(const lb_dist *d, int code, const char *why) {
    if (!d->mpi || d->size < 2) return;
    fprintf(stderr, "lowbit: rank %d of %d: %s; ending every rank of the job\n", d->rank, d->size, why);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}

/* Waits for `req` until the deadline: a peer that died or hangs makes this
 * an error, which ends the job (the caller aborts), never a silent wait. */
static lb_status wait_for(MPI_Request *req, const char *what) {
    double t0 = now_seconds();
    for (;;) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        if (done) return LB_OK;
        double waited = now_seconds() - t0;
        if (waited > g_world.timeout)
            return lb_error(LB_EIO,
                            "rank %d of %d: %s did not complete in %.0f s (LOWBIT_DIST_TIMEOUT): another rank died "
                            "or stopped answering",
                            g_world.rank, g_world.size, what, g_world.timeout);
        if (waited > 1e-3) nanosleep(&(struct timespec){.tv_nsec = 50000}, NULL);
    }
}

lb_status lb_dist_max_int(const lb_dist *d, int *v) {
    if (d->size < 2) return LB_OK;
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MAX, g_comm, &req);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Iallreduce (max)");
    return wait_for(&req, "agreeing on a flag (MPI_Iallreduce)");
}

lb_status lb_dist_sum_disjoint(const lb_dist *d, double *x, int n) {
    if (d->size < 2) return LB_OK;
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, g_comm, &req);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Iallreduce (sum)");
    return wait_for(&req, "summing across ranks (MPI_Iallreduce)");
}

lb_status lb_dist_sum_ranks(const lb_dist *d, double v, double *sum) {
    if (d->size < 2) {
        *sum = v;
        return LB_OK;
    }
    double *all = malloc((size_t)d->size * sizeof *all);
    if (!all) return lb_error(LB_ENOMEM, "summing across %d ranks", d->size);
    MPI_Request req;
    int rc = MPI_Iallgather(&v, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, g_comm, &req);
    lb_status s = rc != MPI_SUCCESS ? mpi_error(rc, "MPI_Iallgather") : wait_for(&req, "gathering a value (MPI_Iallgather)");
    if (s == LB_OK) {
        double acc = 0.0;
        for (int r = 0; r < d->size; r++) acc += all[r];
        *sum = acc;
    }
    free(all);
    return s;
}

/* ---- gradient reduction ---------------------------------------------------- */

enum { BUCKET_WAITING, BUCKET_SCATTERING, BUCKET_SCATTERED, BUCKET_GATHERING, BUCKET_DONE };

typedef struct bucket {
    int first, count;    /* order[first .. first+count) */
    size_t off, len;     /* in flat[]: len is the bucket's elements padded to a multiple of the ranks */
    size_t coff, clen;   /* compressed: rank r's blocks at packed + coff·ranks + r·clen */
    int phase;
    MPI_Request req;
} bucket;

typedef struct param_ref {
    const lb_tensor *t;
    int index;
} param_ref;

struct lb_grad_sync {
    const lb_dist *d;
    int n_params;
    lb_tensor **params;
    param_ref *by_address; /* sorted by tensor address: node inputs to parameter indices */
    size_t bucket_elems;
    int *first_use;        /* per parameter: the first node on the tape using it, -1 for none */
    int *order;            /* parameters with a gradient, in the order the backward pass finishes them */
    int n_order;
    int cursor;            /* order[0..cursor) are final */
    bucket *buckets;
    int n_buckets;
    int next_start;        /* buckets[0..next_start) were started */
    int next_gather;       /* buckets[0..next_gather) have their all-gather started */
    float *flat, *shard;   /* capacity: every element plus one bucket's padding per parameter */
    const int *owner;      /* ZeRO-1: each parameter reduced to its owner, a bucket of its own */
    lb_comm_format comm;   /* optim.comm */
    unsigned char *packed; /* compressed buckets of every rank */
    float **residual;      /* compressed: per parameter, what compression lost last step (error feedback) */
    lb_status status;      /* the first failure inside the backward pass */
    lb_grad_sync_stats last;
};

static int by_address_cmp(const void *a, const void *b) {
    const lb_tensor *x = ((const param_ref *)a)->t, *y = ((const param_ref *)b)->t;
    return (x > y) - (x < y);
}

lb_grad_sync *lb_grad_sync_create(const lb_dist *d, lb_tensor *const *params, int n_params, size_t bucket_bytes,
                                  const int *owner, lb_comm_format comm) {
    lb_grad_sync *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->d = d;
    s->owner = owner;
    s->comm = owner ? LB_COMM_FP32 : comm;
    s->n_params = n_params;
    if (!bucket_bytes) {
        const char *kb = getenv("LOWBIT_DIST_BUCKET_KB");
        bucket_bytes = kb && atol(kb) > 0 ? (size_t)atol(kb) * 1024 : LB_GRAD_SYNC_BUCKET;
    }
    s->bucket_elems = bucket_bytes / sizeof(float);
    sync_sizes z = sizes_of(d, params, n_params, s->comm);
    s->params = malloc((size_t)n_params * sizeof *s->params);
    s->by_address = malloc((size_t)n_params * sizeof *s->by_address);
    s->first_use = malloc((size_t)n_params * sizeof *s->first_use);
    s->order = malloc((size_t)n_params * sizeof *s->order);
    s->buckets = malloc((size_t)n_params * sizeof *s->buckets);
    s->flat = malloc(z.flat * sizeof *s->flat);
    s->shard = malloc(z.shard * sizeof *s->shard);
    if (!s->params || !s->by_address || !s->first_use || !s->order || !s->buckets || !s->flat || !s->shard) goto nomem;
    if (s->comm != LB_COMM_FP32) {
        s->packed = malloc(z.packed);
        s->residual = calloc((size_t)n_params, sizeof *s->residual);
        if (!s->packed || !s->residual) goto nomem;
        for (int i = 0; i < n_params; i++)
            if (!(s->residual[i] = calloc(params[i]->n, sizeof(float)))) goto nomem;
    }
    for (int i = 0; i < n_params; i++) {
        s->params[i] = params[i];
        s->by_address[i] = (param_ref){params[i], i};
    }
    qsort(s->by_address, (size_t)n_params, sizeof *s->by_address, by_address_cmp);
    return s;
nomem:
    lb_grad_sync_free(s);
    lb_error(LB_ENOMEM, "gradient reduction buffers for %d parameters", n_params);
    return NULL;
}

void lb_grad_sync_free(lb_grad_sync *s) {
    if (!s) return;
    free(s->params);
    free(s->by_address);
    free(s->first_use);
    free(s->order);
    free(s->buckets);
    free(s->flat);
    free(s->shard);
    if (s->residual)
        for (int i = 0; i < s->n_params; i++) free(s->residual[i]);
    free(s->residual);
    free(s->packed);
    free(s);
}

static int param_index(const lb_grad_sync *s, const lb_tensor *t) {
    param_ref key = {t, 0};
    const param_ref *hit = bsearch(&key, s->by_address, (size_t)s->n_params, sizeof key, by_address_cmp);
    return hit ? hit->index : -1;
}

/* Later first use finishes earlier: the backward pass runs the tape from its end. */
static const lb_grad_sync *g_sort_ctx;
static int order_cmp(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    int fi = g_sort_ctx->first_use[i], fj = g_sort_ctx->first_use[j];
    if (fi != fj) return fi > fj ? -1 : 1;
    return (i > j) - (i < j);
}

/* The buckets of this tape: parameters in finishing order, cut every
 * bucket_elems elements; each bucket padded to a multiple of the ranks. */
static void plan_buckets(lb_grad_sync *s, const lb_graph *g) {
    for (int i = 0; i < s->n_params; i++) s->first_use[i] = -1;
    for (int i = g->n_nodes - 1; i >= 0; i--)
        for (int k = 0; k < LB_NODE_MAX_IN; k++) {
            const lb_tensor *in = g->nodes[i].in[k];
            int p = in ? param_index(s, in) : -1;
            if (p >= 0) s->first_use[p] = i;
        }
    s->n_order = 0;
    for (int i = 0; i < s->n_params; i++)
        if (s->params[i]->grad) s->order[s->n_order++] = i;
    g_sort_ctx = s;
    qsort(s->order, (size_t)s->n_order, sizeof *s->order, order_cmp);
    size_t ranks = (size_t)s->d->size, off = 0, coff = 0, elems = 0, blocks = 0;
    s->n_buckets = 0;
    for (int k = 0; k < s->n_order; k++) {
        if (elems == 0) s->buckets[s->n_buckets] = (bucket){.first = k, .off = off};
        bucket *b = &s->buckets[s->n_buckets];
        b->count++;
        elems += s->params[s->order[k]]->n;
        blocks += (s->params[s->order[k]]->n + LB_COMM_BLOCK - 1) / LB_COMM_BLOCK; /* each tensor starts a block */
        if (s->owner || elems >= s->bucket_elems || k == s->n_order - 1) {
            b->len = (elems + ranks - 1) / ranks * ranks;
            b->phase = BUCKET_WAITING;
            b->coff = coff;
            b->clen = blocks * lb_comm_block_bytes(s->comm);
            coff += b->clen;
            off += b->len;
            elems = 0;
            blocks = 0;
            s->n_buckets++;
        }
    }
    s->cursor = 0;
    s->next_start = 0;
    s->next_gather = 0;
}

/* ZeRO-1: the bucket's one parameter summed into its owner's .grad. */
static lb_status start_reduce_to_owner(lb_grad_sync *s, bucket *b) {
    int p = s->order[b->first], root = s->owner[p];
    lb_tensor *t = s->params[p];
    int mine = root == s->d->rank;
    int rc = MPI_Ireduce(mine ? MPI_IN_PLACE : t->grad, mine ? t->grad : NULL, (int)t->n, MPI_FLOAT, MPI_SUM, root,
                         g_comm, &b->req);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Ireduce (gradients)");
    b->phase = BUCKET_SCATTERING;
    if (!mine) s->last.bytes_sent += t->n * sizeof(float);
    return LB_OK;
}

/* Compressed: this rank's gradient plus residual encoded into its slot of
 * the bucket, the new residual kept, then the slots all-gathered. */
static lb_status start_compressed(lb_grad_sync *s, bucket *b) {
    float *x = s->flat + b->off;
    size_t pos = 0;
    for (int k = b->first; k < b->first + b->count; k++) {
        int p = s->order[k];
        const lb_tensor *t = s->params[p];
        for (size_t j = 0; j < t->n; j++) x[pos + j] = t->grad[j] + s->residual[p][j];
        pos += t->n;
    }
    memset(x + pos, 0, (b->len - pos) * sizeof(float));
    size_t bb = lb_comm_block_bytes(s->comm);
    unsigned char *mine = s->packed + b->coff * (size_t)s->d->size + (size_t)s->d->rank * b->clen;
    size_t cpos = 0; /* each tensor starts a block */
    pos = 0;
    for (int k = b->first; k < b->first + b->count; k++) { /* encode, and keep what was lost */
        int p = s->order[k];
        size_t n = s->params[p]->n;
        for (size_t j = 0; j < n; j += LB_COMM_BLOCK) {
            size_t len = j + LB_COMM_BLOCK <= n ? LB_COMM_BLOCK : n - j;
            float y[LB_COMM_BLOCK];
            unsigned char *code = mine + (cpos + j) / LB_COMM_BLOCK * bb;
            lb_comm_encode(s->comm, x + pos + j, len, code);
            lb_comm_decode(s->comm, code, len, y);
            for (size_t i = 0; i < len; i++) { /* a non-finite block keeps its residual: that step is skipped */
                float r = x[pos + j + i] - y[i];
                if (isfinite(r)) s->residual[p][j + i] = r;
            }
        }
        pos += n;
        cpos += (n + LB_COMM_BLOCK - 1) / LB_COMM_BLOCK * LB_COMM_BLOCK;
    }
    int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->packed + b->coff * (size_t)s->d->size, (int)b->clen,
                            MPI_BYTE, g_comm, &b->req);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Iallgather (compressed gradients)");
    b->phase = BUCKET_GATHERING;
    s->last.bytes_sent += (size_t)(s->d->size - 1) * b->clen; /* ring all-gather */
    return LB_OK;
}

/* Compressed: every rank's gradient decoded and added in rank order into
 * the bucket's slots of flat[], for finish_bucket to average. */
static void sum_compressed(lb_grad_sync *s, bucket *b) {
    size_t bb = lb_comm_block_bytes(s->comm), pos = 0, cpos = 0;
    float *sum = s->flat + b->off;
    for (int k = b->first; k < b->first + b->count; k++) {
        size_t n = s->params[s->order[k]]->n;
        for (size_t j = 0; j < n; j += LB_COMM_BLOCK) {
            size_t len = j + LB_COMM_BLOCK <= n ? LB_COMM_BLOCK : n - j;
            float y[LB_COMM_BLOCK];
            for (int r = 0; r < s->d->size; r++) {
                lb_comm_decode(s->comm, s->packed + b->coff * (size_t)s->d->size + (size_t)r * b->clen + (cpos + j) / LB_COMM_BLOCK * bb, len, y);
                for (size_t i = 0; i < len; i++) sum[pos + j + i] = r == 0 ? y[i] : sum[pos + j + i] + y[i];
            }
        }
        pos += n;
        cpos += (n + LB_COMM_BLOCK - 1) / LB_COMM_BLOCK * LB_COMM_BLOCK;
    }
}

static lb_status start_bucket(lb_grad_sync *s, bucket *b) {
    if (s->owner) return start_reduce_to_owner(s, b);
    if (s->comm != LB_COMM_FP32) return start_compressed(s, b);
    float *dst = s->flat + b->off;
    for (int k = b->first; k < b->first + b->count; k++) {
        const lb_tensor *t = s->params[s->order[k]];
        memcpy(dst, t->grad, t->n * sizeof(float));
        dst += t->n;
    }
    memset(dst, 0, (size_t)(s->flat + b->off + b->len - dst) * sizeof(float));
    int part = (int)(b->len / (size_t)s->d->size);
    int rc = MPI_Ireduce_scatter_block(s->flat + b->off, s->shard + b->off / (size_t)s->d->size, part, MPI_FLOAT,
                                       MPI_SUM, g_comm, &b->req);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Ireduce_scatter_block (gradients)");
    b->phase = BUCKET_SCATTERING;
    s->last.bytes_sent += 2 * (b->len - (size_t)part) * sizeof(float); /* ring volume of both phases */
    return LB_OK;
}

/* The second phase once the sums of this rank's part are in: every rank
 * gathers the parts, so each sum is formed once and copied everywhere. */
static lb_status start_gather(lb_grad_sync *s, bucket *b) {
    size_t part = b->len / (size_t)s->d->size;
    memcpy(s->flat + b->off + (size_t)s->d->rank * part, s->shard + b->off / (size_t)s->d->size, part * sizeof(float));
    int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->flat + b->off, (int)part, MPI_FLOAT,
                            g_comm_gather, &b->req);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Iallgather (gradients)");
    b->phase = BUCKET_GATHERING;
    return LB_OK;
}

static void finish_bucket(lb_grad_sync *s, bucket *b) {
    const float inv = 1.0f / (float)s->d->size;
    if (s->owner) { /* the owner's mean; the others' partial sums are spent */
        lb_tensor *t = s->params[s->order[b->first]];
        if (s->owner[s->order[b->first]] == s->d->rank)
            for (size_t j = 0; j < t->n; j++) t->grad[j] *= inv;
        else
            memset(t->grad, 0, t->n * sizeof(float));
        b->phase = BUCKET_DONE;
        return;
    }
    if (s->comm != LB_COMM_FP32) sum_compressed(s, b);
    const float *src = s->flat + b->off;
    for (int k = b->first; k < b->first + b->count; k++) {
        lb_tensor *t = s->params[s->order[k]];
        for (size_t j = 0; j < t->n; j++) t->grad[j] = src[j] * inv;
        src += t->n;
    }
    b->phase = BUCKET_DONE;
}

/* Starts the buckets whose parameters are all final, in bucket order; moves
 * the started ones forward (all-gathers in bucket order too); *all_done
 * when every bucket is done. */
static lb_status progress(lb_grad_sync *s, int *all_done) {
    while (s->next_start < s->n_buckets) {
        bucket *b = &s->buckets[s->next_start];
        if (b->first + b->count > s->cursor) break;
        LB_TRY(start_bucket(s, b));
        s->next_start++;
    }
    for (int i = 0; i < s->next_start; i++) {
        bucket *b = &s->buckets[i];
        if (b->phase != BUCKET_SCATTERING && b->phase != BUCKET_GATHERING) continue;
        int done = 0, rc = MPI_Test(&b->req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(rc, "reducing gradients");
        if (done && b->phase == BUCKET_SCATTERING && !s->owner) b->phase = BUCKET_SCATTERED;
        else if (done) finish_bucket(s, b);
    }
    while (s->next_gather < s->next_start && s->buckets[s->next_gather].phase == BUCKET_SCATTERED)
        LB_TRY(start_gather(s, &s->buckets[s->next_gather++]));
    *all_done = s->next_start == s->n_buckets;
    for (int i = 0; i < s->n_buckets && *all_done; i++)
        if (s->buckets[i].phase != BUCKET_DONE) *all_done = 0;
    return LB_OK;
}

static void after_node(void *ctx, int node) {
    lb_grad_sync *s = ctx;
    if (s->status != LB_OK) return;
    while (s->cursor < s->n_order && s->first_use[s->order[s->cursor]] >= node) s->cursor++;
    int all_done;
    s->status = progress(s, &all_done);
}

lb_status lb_grad_sync_begin(lb_grad_sync *s, lb_graph *g) {
    memset(&s->last, 0, sizeof s->last);
    s->status = LB_OK;
    plan_buckets(s, g);
    s->last.buckets = s->n_buckets;
    g->after_node = after_node;
    g->after_node_ctx = s;
    return LB_OK;
}

lb_status lb_grad_sync_end(lb_grad_sync *s, lb_graph *g) {
    g->after_node = NULL;
    g->after_node_ctx = NULL;
    LB_TRY(s->status);
    s->cursor = s->n_order; /* parameters no node used: zero or accumulated gradients, final now */
    double t0 = now_seconds();
    for (;;) {
        int all_done;
        LB_TRY(progress(s, &all_done));
        if (all_done) break;
        if (now_seconds() - t0 > s->d->timeout)
            return lb_error(LB_EIO,
                            "rank %d of %d: the gradient reduction did not complete in %.0f s (LOWBIT_DIST_TIMEOUT): "
                            "another rank died or stopped answering",
                            s->d->rank, s->d->size, s->d->timeout);
        if (now_seconds() - t0 > 1e-3) nanosleep(&(struct timespec){.tv_nsec = 50000}, NULL);
    }
    s->last.wait_seconds = now_seconds() - t0;
    return LB_OK;
}

lb_grad_sync_stats lb_grad_sync_last(const lb_grad_sync *s) { return s->last; }

size_t lb_grad_sync_residual_len(const lb_grad_sync *s) {
    size_t len = 0;
    for (int i = 0; s && s->residual && i < s->n_params; i++) len += s->params[i]->n;
    return len;
}

lb_status lb_grad_sync_gather_residuals(lb_grad_sync *s, float *all) {
    size_t len = lb_grad_sync_residual_len(s);
    if (len == 0) return LB_OK;
    if (len > INT32_MAX)
        return lb_error(LB_EINVAL, "error feedback: %zu residuals per rank, over one MPI message", len);
    float *mine = malloc(len * sizeof *mine);
    if (!mine) return lb_error(LB_ENOMEM, "gathering %zu residuals", len);
    size_t off = 0;
    for (int i = 0; i < s->n_params; i++) {
        memcpy(mine + off, s->residual[i], s->params[i]->n * sizeof *mine);
        off += s->params[i]->n;
    }
    MPI_Request req;
    int rc = MPI_Igather(mine, (int)len, MPI_FLOAT, all, (int)len, MPI_FLOAT, 0, g_comm, &req);
    lb_status st = rc == MPI_SUCCESS ? wait_for(&req, "gathering the error-feedback residuals (MPI_Igather)")
                                     : mpi_error(rc, "MPI_Igather (residuals)");
    free(mine);
    return st;
}

void lb_grad_sync_set_residuals(lb_grad_sync *s, const float *mine) {
    size_t off = 0;
    for (int i = 0; s && s->residual && i < s->n_params; i++) {
        memcpy(s->residual[i], mine + off, s->params[i]->n * sizeof *mine);
        off += s->params[i]->n;
    }
}

/* ---- ZeRO-1 -------------------------------------------------------------------- */

/* Waits for all of reqs[0..n) with the deadline. */
static lb_status wait_all(MPI_Request *reqs, int n, const char *what) {
    for (int i = 0; i < n; i++) LB_TRY(wait_for(&reqs[i], what));
    return LB_OK;
}

lb_status lb_zero_broadcast(const lb_dist *d, lb_tensor *const *params, int n, const int *owner) {
    if (d->size < 2) return LB_OK;
    MPI_Request *reqs = malloc((size_t)n * sizeof *reqs);
    if (!reqs) return lb_error(LB_ENOMEM, "broadcasting %d parameters", n);
    lb_status s = LB_OK;
    int started = 0;
    for (; started < n; started++) {
        int rc = MPI_Ibcast(params[started]->data, (int)params[started]->n, MPI_FLOAT, owner[started], g_comm,
                            &reqs[started]);
        if (rc != MPI_SUCCESS) {
            s = mpi_error(rc, "MPI_Ibcast (parameters)");
            break;
        }
    }
    if (s == LB_OK) s = wait_all(reqs, started, "broadcasting the updated parameters (MPI_Ibcast)");
    free(reqs);
    return s;
}

static lb_status buffer_count(const lb_state_buffer *b, int *count) {
    size_t bytes = lb_dtype_row_bytes(b->dtype, b->n);
    if (bytes > INT32_MAX) return lb_error(LB_EINVAL, "optimizer state '%s': %zu bytes, over 2 GiB in one message", b->name, bytes);
    *count = (int)bytes;
    return LB_OK;
}

static const lb_state_buffer *find_buffer(const lb_state_buffer *b, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0) return &b[i];
    return NULL;
}

/* Messages between two ranks on one communicator with one tag arrive in the
 * order they were sent: each owner sends its buffers in parameter order and
 * rank 0 receives them in the same order. */
lb_status lb_zero_gather_state(const lb_dist *d, const lb_optim *shard, lb_optim *full, const int *owner) {
    int n_shard, n_full = 0;
    const lb_state_buffer *mine = lb_optim_buffers(shard, &n_shard);
    const lb_state_buffer *all = full ? lb_optim_buffers(full, &n_full) : NULL;
    MPI_Request *reqs = malloc(((size_t)(n_shard > n_full ? n_shard : n_full) + 1) * sizeof *reqs);
    if (!reqs) return lb_error(LB_ENOMEM, "gathering the optimizer state");
    lb_status s = LB_OK;
    int n_req = 0, count = 0;
    for (int b = 0; d->rank != 0 && b < n_shard && s == LB_OK; b++) { /* this shard's tensors, to rank 0 */
        if (lb_optim_buffer_param(shard, b) < 0) continue;
        if ((s = buffer_count(&mine[b], &count)) != LB_OK) break;
        int rc = MPI_Isend(mine[b].data, count, MPI_BYTE, 0, 0, g_comm, &reqs[n_req]);
        if (rc != MPI_SUCCESS) s = mpi_error(rc, "MPI_Isend (optimizer state)");
        else n_req++;
    }
    for (int b = 0; d->rank == 0 && b < n_full && s == LB_OK; b++) { /* rank 0: every buffer */
        int p = lb_optim_buffer_param(full, b);
        if (p < 0 || owner[p] == 0) { /* rank 0's own tensors, and the loss scale (the same on every rank) */
            const lb_state_buffer *src = find_buffer(mine, n_shard, all[b].name);
            if (!src) {
                s = lb_error(LB_EINVAL, "optimizer state '%s' missing from rank 0's shard", all[b].name);
                break;
            }
            memcpy(all[b].data, src->data, lb_dtype_row_bytes(all[b].dtype, all[b].n));
            continue;
        }
        if ((s = buffer_count(&all[b], &count)) != LB_OK) break;
        int rc = MPI_Irecv(all[b].data, count, MPI_BYTE, owner[p], 0, g_comm, &reqs[n_req]);
        if (rc != MPI_SUCCESS) s = mpi_error(rc, "MPI_Irecv (optimizer state)");
        else n_req++;
    }
    lb_status sw = wait_all(reqs, n_req, "gathering the optimizer state for a checkpoint");
    if (s == LB_OK) s = sw;
    if (s == LB_OK && full) s = lb_optim_state_loaded(full);
    free(reqs);
    return s;
}

#endif /* LOWBIT_MPI */

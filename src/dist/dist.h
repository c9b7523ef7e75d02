/* Data parallelism over MPI: the ranks of a job, the few collectives the
 * trainer needs, and the gradient reduction overlapped with the backward pass.
 *
 *   lb_dist_init(&argc, &argv);            // joins the job when mpirun started us
 *   const lb_dist *d = lb_dist_world();    // rank, size
 *   ... every rank trains on its share of each global batch (trainer.c) ...
 *   lb_dist_finalize();
 *
 * Built without MPI (LOWBIT_MPI off), or run without an MPI launcher, the
 * world is one rank and every function here is the identity: the trainer
 * takes the same code path as before data parallelism existed, bit for bit.
 *
 * Every collective is started non-blocking and waited for with a deadline
 * (LOWBIT_DIST_TIMEOUT seconds, 300 by default): a rank that died or stopped
 * answering ends the job with a message naming the rank and the operation,
 * never a hang. A rank that fails on its own (a file it cannot read) calls
 * lb_dist_abort, which ends every rank: no rank waits for one that left.
 *
 * The results of these collectives are identical on every rank (sums are
 * formed once, by one rank or in rank order, then copied), so the replicas of
 * the model stay equal bit for bit without ever being compared. */
#ifndef LOWBIT_DIST_DIST_H
#define LOWBIT_DIST_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/graph.h"
#include "core/error.h"
#include "core/tensor.h"
#include "optim/optim.h"

typedef struct lb_dist {
    int rank, size;   /* 0 and 1 for a single process */
    double timeout;   /* seconds a collective may wait before the job is ended */
    int mpi;          /* 1: MPI was initialised here (lb_dist_finalize ends it) */
} lb_dist;

/* 1 when lowbit was built with MPI. */
int lb_dist_compiled(void);

/* Joins the MPI job when this process was started by an MPI launcher (Open
 * MPI's mpirun, MPICH's hydra, srun with PMI): MPI_Init_thread (funneled),
 * errors returned rather than fatal. Otherwise, and without MPI, a world of
 * one rank. LB_EINVAL when a launcher started several ranks of a build
 * without MPI (each would train alone). */
lb_status lb_dist_init(int *argc, char ***argv);
void lb_dist_finalize(void);

/* The world after lb_dist_init (one rank before it). */
const lb_dist *lb_dist_world(void);

/* Ends every rank of the job with exit code `code` after printing `why` (and
 * this rank) to stderr. Returns (does nothing) in a world of one rank. */
void lb_dist_abort(const lb_dist *d, int code, const char *why);

/* ---- small collectives (every rank calls them in the same order) ---------- */

/* The largest of the ranks' values of `v` (the stop flag, a failed status). */
lb_status lb_dist_max_int(const lb_dist *d, int *v);

/* Replaces x[0..n) by the element-wise sum over ranks where, for each
 * element, at most one rank holds a nonzero value: the sums are then exact,
 * the same as one process computing every element. */
lb_status lb_dist_sum_disjoint(const lb_dist *d, double *x, int n);

/* The sum over ranks of `v`, added in rank order (the same on every rank). */
lb_status lb_dist_sum_ranks(const lb_dist *d, double v, double *sum);

/* ---- gradient reduction overlapped with the backward pass ------------------
 *
 *   lb_grad_sync *s = lb_grad_sync_create(d, params, n, 0);
 *   lb_grad_sync_begin(s, &graph);      // after the forward pass of the last micro-batch
 *   lb_backward(&graph, loss);          // buckets are sent as their gradients become final
 *   lb_grad_sync_end(s, &graph);        // waits; every .grad is now the mean over ranks
 *
 * Parameters are taken in the order the backward pass finishes them and cut
 * into buckets of about `bucket_bytes` (when 0: LOWBIT_DIST_BUCKET_KB from the
 * environment, else LB_GRAD_SYNC_BUCKET). When the
 * first node using each of a bucket's parameters has run, the bucket is
 * copied into one buffer and reduced: a reduce-scatter (rank r sums part r)
 * then an all-gather, both non-blocking and driven forward after every node.
 *
 * With `owner` (ZeRO-1, below) each parameter is reduced on its own to the
 * rank that owns it (a non-blocking reduce, started as its gradient becomes
 * final): afterwards an owner's .grad holds the mean over the ranks and every
 * other .grad is zero. */
#define LB_GRAD_SYNC_BUCKET ((size_t)1 << 20)

/* optim.comm: the format gradients travel in. fp32 is the reduce-scatter +
 * all-gather above. The others compress each rank's gradient plus its
 * residual (error feedback: what the last compression lost, kept per rank
 * and added back next step) in blocks of LB_COMM_BLOCK with one fp32 scale
 * per block (bf16 needs none), all-gather the compressed buckets, and every
 * rank decodes and adds the N gradients in rank order. */
typedef enum lb_comm_format { LB_COMM_FP32 = 0, LB_COMM_BF16, LB_COMM_FP8, LB_COMM_INT8, LB_COMM_COUNT } lb_comm_format;
#define LB_COMM_BLOCK 256
extern const char *const lb_comm_format_names[LB_COMM_COUNT]; /* "fp32" "bf16" "fp8" "int8" */
/* Bytes of one block of LB_COMM_BLOCK gradients in format f. */
size_t lb_comm_block_bytes(lb_comm_format f);
/* One block of len ≤ LB_COMM_BLOCK values to lb_comm_block_bytes(f) bytes
 * and back (f other than fp32). */
void lb_comm_encode(lb_comm_format f, const float *x, size_t len, unsigned char *out);
void lb_comm_decode(lb_comm_format f, const unsigned char *in, size_t len, float *y);

typedef struct lb_grad_sync lb_grad_sync;

typedef struct lb_grad_sync_stats {
    int buckets;              /* buckets of the last step */
    size_t bytes_sent;        /* bytes this rank sent in the last step (both phases) */
    double wait_seconds;      /* time lb_grad_sync_end waited for the reductions */
} lb_grad_sync_stats;

lb_grad_sync *lb_grad_sync_create(const lb_dist *d, lb_tensor *const *params, int n_params, size_t bucket_bytes,
                                  const int *owner, lb_comm_format comm);
void lb_grad_sync_free(lb_grad_sync *s);
/* The bytes of the large buffers lb_grad_sync_create would allocate for
 * these arguments (gradient buckets, this rank's share, compressed buckets and
 * residuals); 0 for one rank. For sizing a run before it starts. */
size_t lb_grad_sync_bytes(const lb_dist *d, lb_tensor *const *params, int n_params, const int *owner,
                          lb_comm_format comm);
lb_status lb_grad_sync_begin(lb_grad_sync *s, lb_graph *g);
lb_status lb_grad_sync_end(lb_grad_sync *s, lb_graph *g);
lb_grad_sync_stats lb_grad_sync_last(const lb_grad_sync *s);

/* Error feedback's residuals, for checkpoints: each rank's own, so a
 * checkpoint holds all of them ([ranks × len], rank-major) and a resume with
 * the same ranks and format gives each rank its row back (bit-exact resume).
 * len: the floats one rank keeps (every parameter's elements, in parameter
 * order); 0 for fp32 communication, ZeRO-1 and one rank. */
size_t lb_grad_sync_residual_len(const lb_grad_sync *s);
/* Every rank calls it at the same point; rank 0 receives all ranks' rows
 * into all[d->size × len] (NULL on the other ranks). */
lb_status lb_grad_sync_gather_residuals(lb_grad_sync *s, float *all);
/* This rank's residuals from its row of a checkpoint (len floats). */
void lb_grad_sync_set_residuals(lb_grad_sync *s, const float *mine);

/* ---- ZeRO-1 (optim.zero) ----------------------------------------------------
 *
 * Whole parameter tensors are shared out among the ranks; each rank keeps the
 * optimizer state of its own tensors only (an lb_optim over them), so state
 * memory per rank falls as 1/N down to the largest tensor. A step: gradients
 * reduced to their owners (lb_grad_sync with `owner`), the norm summed over
 * the shards (lb_dist_sumsq, set with lb_optim_set_sumsq_reduce), each owner
 * updates its tensors, then every tensor is broadcast from its owner. */

/* owner[i] for n parameters: the largest first, each to the rank holding the
 * fewest elements so far (ties to the lowest rank): the same on every rank. */
void lb_zero_owners(const lb_dist *d, lb_tensor *const *params, int n, int *owner);

/* Every parameter's values from its owner to all ranks. */
lb_status lb_zero_broadcast(const lb_dist *d, lb_tensor *const *params, int n, const int *owner);

/* For checkpoints: the state of every shard into `full` on rank 0 (an
 * optimizer over all parameters, same config; NULL on the other ranks).
 * `shard` is this rank's optimizer over its tensors, in parameter order. */
lb_status lb_zero_gather_state(const lb_dist *d, const lb_optim *shard, lb_optim *full, const int *owner);

/* lb_optim_sumsq_fn over the ranks (ctx: the lb_dist): the shards' sums of
 * squares added in rank order. */
lb_status lb_dist_sumsq(void *ctx, double *sumsq);

#endif

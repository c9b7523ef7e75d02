/* The α-β model of this machine's MPI: a message of n bytes takes α + n/β.
 *
 *   mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1 build/bench_dist
 *
 * Rank 0 and 1 bounce messages of 8 B .. 64 MiB (ping-pong: half the round
 * trip is one message), then time the gradient reduction (a reduce-scatter
 * then an all-gather of float sums) with the blocking calls (rs+ag: the MPI's
 * tuned algorithms) and with the non-blocking ones src/dist starts (irs+iag:
 * Open MPI's libnbc schedules), and MPI_Allreduce on the same sizes. α is the time of an 8-byte message, β the best bandwidth of
 * messages of 64 KiB and more (larger ones are the likeliest to be
 * descheduled on a shared machine); the
 * reduction's times are printed next to the ring model's prediction
 * 2(p−1)α + 2(p−1)/p · n/β. docs/distributed.md uses the figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LOWBIT_MPI
int main(void) {
    puts("bench_dist: this lowbit was built without MPI (LOWBIT_MPI=OFF)");
    return 0;
}
#else
#include <mpi.h>

/* Seconds per call of `what` on n bytes: the fastest of repeated calls
 * (at least 5, for ~0.2 s), as rank 0 saw it. The minimum, not the mean: on
 * a shared machine a call that waited for a descheduled rank measures the
 * scheduler, not MPI. */
enum { PINGPONG, REDUCE_SCATTER_GATHER, IREDUCE_SCATTER_GATHER, ALLREDUCE };

static double run(int what, char *buf, char *tmp, size_t n, int rank, int size) {
    int reps = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime(), best = 1e30;
    int go = 1;
    while (go) {
        double t1 = MPI_Wtime();
        if (what == PINGPONG) {
            if (rank == 0) {
                MPI_Send(buf, (int)n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(buf, (int)n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(buf, (int)n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, (int)n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
        } else {
            int count = (int)(n / sizeof(float) / (size_t)size);
            if (what == REDUCE_SCATTER_GATHER) {
                MPI_Reduce_scatter_block(buf, tmp, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                MPI_Allgather(tmp, count, MPI_FLOAT, buf, count, MPI_FLOAT, MPI_COMM_WORLD);
            } else if (what == IREDUCE_SCATTER_GATHER) { /* src/dist's calls: the non-blocking ones, in place */
                MPI_Request req;
                MPI_Ireduce_scatter_block(buf, tmp, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
                MPI_Wait(&req, MPI_STATUS_IGNORE);
                memcpy(buf + (size_t)rank * (size_t)count * sizeof(float), tmp, (size_t)count * sizeof(float));
                MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, count, MPI_FLOAT, MPI_COMM_WORLD, &req);
                MPI_Wait(&req, MPI_STATUS_IGNORE);
            } else {
                MPI_Allreduce(MPI_IN_PLACE, buf, count * size, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            }
        }
        double t = MPI_Wtime() - t1;
        best = t < best ? t : best;
        reps++;
        go = reps < 5 || (MPI_Wtime() - t0 < 0.2 && reps < 2000);
        MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    double per = best;
    if (what == PINGPONG) per /= 2.0;
    MPI_Bcast(&per, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return per;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        if (rank == 0) fputs("bench_dist: run with at least 2 ranks (mpirun -np 2)\n", stderr);
        MPI_Finalize();
        return 1;
    }
    const size_t max = (size_t)64 << 20;
    char *buf = calloc(max, 1), *tmp = calloc(max, 1);
    enum { NS = 13 };
    size_t sizes[NS];
    double pp[NS] = {0}, rsag[NS] = {0}, irsag[NS] = {0}, ar[NS] = {0};
    for (int i = 0; i < NS; i++) sizes[i] = (size_t)8 << (2 * i); /* 8 B .. 128 MiB, capped below */
    int ns = 0;
    while (ns < NS && sizes[ns] <= max) ns++;
    for (int i = 0; i < ns; i++) {
        pp[i] = run(PINGPONG, buf, tmp, sizes[i], rank, size);
        size_t n = sizes[i] < (size_t)(4 * size) ? (size_t)(4 * size) : sizes[i];
        rsag[i] = run(REDUCE_SCATTER_GATHER, buf, tmp, n, rank, size);
        irsag[i] = run(IREDUCE_SCATTER_GATHER, buf, tmp, n, rank, size);
        ar[i] = run(ALLREDUCE, buf, tmp, n, rank, size);
    }
    /* α: the smallest message; β: the best bandwidth of messages ≥ 64 KiB */
    double alpha = pp[0], inv_beta = 1e30;
    for (int i = 0; i < ns; i++)
        if (sizes[i] >= 65536 && (pp[i] - alpha) / (double)sizes[i] < inv_beta) inv_beta = (pp[i] - alpha) / (double)sizes[i];
    if (rank == 0) {
        printf("bench_dist: %d ranks; α = %.2f µs, β = %.2f GB/s (ping-pong: 8 B; the best of ≥ 64 KiB)\n", size, alpha * 1e6,
               1e-9 / inv_beta);
        printf("%12s %14s %16s %16s %16s %18s\n", "bytes", "ping-pong µs", "rs+ag µs", "irs+iag µs", "allreduce µs",
               "ring model µs");
        for (int i = 0; i < ns; i++) {
            double p = size, model = 2 * (p - 1) * alpha + 2 * (p - 1) / p * (double)sizes[i] * inv_beta;
            printf("%12zu %14.2f %16.2f %16.2f %16.2f %18.2f\n", sizes[i], pp[i] * 1e6, rsag[i] * 1e6, irsag[i] * 1e6,
                   ar[i] * 1e6, model * 1e6);
        }
    }
    free(buf);
    free(tmp);
    MPI_Finalize();
    return 0;
}
#endif

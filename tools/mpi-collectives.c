// mpi-collectives.c — the measurement behind src/dist's choice of collectives: on the ranks of one
// mpirun, times the ways to sum a float block over the ranks and prints the best of 5 for each:
// Open MPI's MPI_Allreduce and MPI_Reduce_scatter (in place), dist's ring reduce-scatter
// (dist_sum_part_f: MPI_Sendrecv, what a split optimizer step uses) and MPI_Allgatherv
// (dist_gather_parts_f), plus ring + all-gather, the all-reduce dist_sum_f does for blocks of
// 4 KB or more. Each result is checked against the exact sum (every rank adds small integers).
//
// usage: make mpi-collectives && mpirun -np 2 build/mpi-collectives [FLOATS]
//        (default 33575424 floats = bench-moe's 134 MB gradient)
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist/dist.h"
#include "util/common.h"

static double best[5];
static const char *name[5] = {"MPI_Allreduce", "MPI_Reduce_scatter (in place)", "dist ring reduce-scatter",
                              "MPI_Allgatherv (in place)", "dist ring + MPI_Allgatherv (dist_sum_f)"};

// Every rank r holds r + (i % 7): the sum over p ranks is p(p-1)/2 + p·(i % 7), exact in float.
static void fill(float *a, long n, int r) {
    for (long i = 0; i < n; i++) a[i] = (float)(r + i % 7);
}
// a[0..len) against the sums of elements g0.. of the block.
static int check(const float *a, long g0, long len, int p) {
    for (long i = 0; i < len; i++)
        if (a[i] != (float)(p * (p - 1) / 2 + p * ((g0 + i) % 7))) return 0;
    return 1;
}

int main(int argc, char **argv) {
    if (!dist_init(&argc, &argv) || dist_size() < 2) {
        fprintf(stderr, "mpi-collectives: start it with mpirun -np N (N >= 2)\n");
        return 2;
    }
    long n = argc > 1 ? atol(argv[1]) : 33575424;
    int r = dist_rank(), p = dist_size(), *cnt = xmalloc(sizeof(int) * (size_t)p), ok = 1;
    dist_even_parts((size_t)n, p, cnt);
    long lo = 0;
    for (int q = 0; q < r; q++) lo += cnt[q];
    float *a = falloc((size_t)n);
    for (int k = 0; k < 5; k++) best[k] = 1e30;
    for (int rep = 0; rep < 5; rep++)
        for (int k = 0; k < 5; k++) {
            fill(a, n, r);
            if (k == 3)  // the gather alone: every part already summed
                for (long i = 0; i < n; i++) a[i] = (float)(p * (p - 1) / 2 + p * (i % 7));
            MPI_Barrier(MPI_COMM_WORLD);
            double t = MPI_Wtime();
            if (k == 0) MPI_Allreduce(MPI_IN_PLACE, a, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            if (k == 1) MPI_Reduce_scatter(MPI_IN_PLACE, a, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            if (k == 2) dist_sum_part_f(a, cnt);
            if (k == 3) dist_gather_parts_f(a, cnt);
            if (k == 4) dist_sum_f(a, (size_t)n);
            t = MPI_Wtime() - t;
            MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);  // the slowest rank
            if (t < best[k]) best[k] = t;
            // in place, MPI_Reduce_scatter leaves this rank's part at the start of the block
            ok &= k == 1 ? check(a, lo, cnt[r], p) : k == 2 ? check(a + lo, lo, cnt[r], p) : check(a, 0, n, p);
        }
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!r) {
        printf("mpi-collectives: %d ranks, %ld floats (%.1f MB), best of 5, slowest rank\n", p, n, n * 4 / 1e6);
        for (int k = 0; k < 5; k++) printf("  %-42s %8.1f ms\n", name[k], best[k] * 1e3);
        printf("  results %s\n", ok ? "exact" : "WRONG");
    }
    free(a); free(cnt);
    dist_finalize();
    return ok ? 0 : 1;
}

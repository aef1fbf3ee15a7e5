// dist.h — the one place aoe talks to MPI (Open MPI): start-up, rank/size, the collectives the
// training step needs, and the communication counters the tokens/s lines report.
//
// Where it sits: like util/, below every folder of the data flow. It knows nothing about models
// or data; train/ drives it (data parallelism: gradient and statistics sums), and the sparse
// layers (model/moe_ep.c) and selection (select/) call the collectives on the groups train set up.
//
// Start-up rule: MPI_Init only when launched by an MPI launcher (mpirun/mpiexec/srun set
// OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE). A plain `./aoe train` never touches MPI: no
// singleton start-up (which needs a working launcher daemon, absent in many containers), no cost;
// then rank 0 of 1 and every collective is a no-op. AOE_NO_MPI=1 forces that path under a launcher.
//
// Groups (train.expert_parallel = E): "world" = all N ranks (data parallelism over the batch);
// "ep" = the E consecutive ranks r - r%E .. that share one set of experts, rank r holding experts
// (r%E)·n/E .. (r%E+1)·n/E-1 of every sparse layer; "replica" = the N/E ranks holding the same
// experts (same r%E), over which those experts' gradients are summed.
#ifndef AOE_DIST_H
#define AOE_DIST_H

#include <stddef.h>

// Call first in main. Returns 1 if MPI was started (launched by mpirun), else 0.
int dist_init(int *argc, char ***argv);
// Call before a normal exit (no-op without MPI).
void dist_finalize(void);
int dist_rank(void);   // world rank (0 without MPI)
int dist_size(void);   // world size (1 without MPI)
int dist_mpi(void);    // 1 if MPI is running (even with one rank)
// Ranks on this machine (sharing its memory), this one included: 1 without MPI. Collective.
int dist_local_size(void);

// In-place sums over the world (no-op with one rank).
void dist_sum_f(float *buf, size_t n);
void dist_sum_d(double *buf, size_t n);
double dist_max_d(double v);  // max over the world
// Every rank's `per` floats (ints) to every rank: all [N·per], rank q's at all + q·per (a copy with
// one rank). Counted apart from the sums, as gather bytes ((N-1)·per elements around the ring).
void dist_allgather_f(const float *mine, size_t per, float *all);
void dist_allgather_i(const int *mine, size_t per, int *all);
// Non-blocking in-place fp32 sum over the world (replicas = 0) or over this rank's replica group
// (replicas = 1; the world without expert parallelism), started now (MPI_Iallreduce). Open MPI
// moves such a sum forward only inside MPI calls: dist_isum_progress (MPI_Testall) lets the
// started sums advance between pieces of computation; dist_isum_wait completes all of them.
// buf must not be touched until then.
void dist_isum_f(float *buf, size_t n, int replicas);
// Splits n floats (n <= INT_MAX) into p consecutive parts of a multiple of 16 floats, the last ones
// shorter (or empty): cnt[q] for q < p. Returns the full part's length.
size_t dist_even_parts(size_t n, int p, int *cnt);
// The two halves of a ring all-reduce, for a float block split into consecutive parts, cnt[q]
// floats for rank q in rank order: dist_sum_part_f leaves in this rank's part the sum over the
// world of that part (the rest of buf is scratch afterwards; a ring of MPI_Sendrecv, the sum's
// order fixed by the ranks); dist_gather_parts_f copies every rank's part to every rank. Each
// counts (N-1)/N of the block's bytes. No-op with one rank.
void dist_sum_part_f(float *buf, const int *cnt);
void dist_gather_parts_f(float *buf, const int *cnt);
void dist_isum_progress(void);
void dist_isum_wait(void);
void dist_barrier(void);
// Rank 0 sends buf (n bytes) to all ranks.
void dist_bcast(void *buf, size_t n);
// Prints "aoe: rank R of N: <message>" and takes the whole job down (MPI_Abort; exit without MPI).
_Noreturn void dist_abort(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A rank killed by a signal (kill -9, OOM) leaves the others blocked in a collective until
// mpirun stops the job with SIGTERM (and SIGKILL 1 s later). Once `stopped()` (the training
// loop's stop flag) is set while this rank has been inside an MPI call for 0.3 s, a watchdog
// thread prints one line naming the cause and `hint` (how to continue) and exits: that is the
// message rank 0 leaves when a peer dies.
void dist_watch_stop(int (*stopped)(void), const char *hint);

// Expert-parallel groups of E consecutive ranks (E divides dist_size()). Call once before any
// dist_ep_* call; E = 1 means no expert parallelism.
void dist_ep_setup(int E);
int dist_ep_size(void);  // E
int dist_ep_rank(void);  // rank within the group, 0..E-1
// Sums over this rank's replica group: the N/E ranks holding the same experts (same group rank).
void dist_rep_sum_f(float *buf, size_t n);
// Sums over the expert-parallel group.
void dist_ep_sum_d(double *buf, size_t n);
// Within the group, to its rank 0: every rank passes its `per` floats, group rank 0 gets rank
// q's at all + q·per (all is ignored elsewhere). Without groups: copies mine to all.
void dist_ep_gather_f(const float *mine, size_t per, float *all);
// Within the group: element counts/displacements in floats, one entry per group rank.
void dist_ep_alltoallv_f(const float *send, const int *scnt, const int *sdisp, float *recv, const int *rcnt,
                         const int *rdisp);
// Within the group: each rank sends `per` ints to every rank (send [E·per] -> recv [E·per]).
void dist_ep_alltoall_i(const int *send, int *recv, int per);

// Communication counters since the last dist_stats_reset: seconds inside MPI calls, and bytes this
// rank sent: ring all-reduce model 2(N-1)/N · bytes for sums, the exact off-rank payload for
// all-to-all.
typedef struct { double sec, allreduce_bytes, alltoall_bytes, gather_bytes; long calls; } DistStats;
void dist_stats(DistStats *s);
void dist_stats_reset(void);
void dist_stats_restore(const DistStats *s);  // leave a stretch (a validation pass) out of the counters

#endif

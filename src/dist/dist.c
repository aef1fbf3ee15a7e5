// dist.c — see dist.h. Every MPI call goes through call_ok(), which times it and turns an error
// (a peer that died, a broken link) into one clear line and a job-wide abort instead of a hang.
#include "dist/dist.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/common.h"

static int mpi_on, rank, size = 1, ep_size = 1, ep_rank;
static MPI_Comm ep_comm = MPI_COMM_NULL, rep_comm = MPI_COMM_NULL;
static DistStats st;
static volatile double in_mpi_since;  // 0 = not inside a collective
static int (*watch_stopped)(void);
static char watch_hint[512];

static int launched_by_mpi(void) {
    const char *off = getenv("AOE_NO_MPI");
    if (off && *off && strcmp(off, "0")) return 0;
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

// die() on one rank must not leave the others waiting in a collective.
static void abort_job(int code) {
    if (mpi_on) MPI_Abort(MPI_COMM_WORLD, code);
}

int dist_init(int *argc, char ***argv) {
    if (!launched_by_mpi()) return 0;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "aoe: MPI_Init failed (launched by mpirun?); set AOE_NO_MPI=1 to run without MPI\n");
        exit(EXIT_RUNTIME);
    }
    mpi_on = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    die_hook = abort_job;
    // other ranks' progress lines would interleave with rank 0's: only rank 0 prints to stdout
    if (rank && !getenv("AOE_ALL_RANKS_PRINT") && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "aoe: rank %d: cannot silence stdout\n", rank);
    return 1;
}

void dist_finalize(void) {
    if (!mpi_on) return;
    if (ep_comm != MPI_COMM_NULL) MPI_Comm_free(&ep_comm);
    if (rep_comm != MPI_COMM_NULL) MPI_Comm_free(&rep_comm);
    MPI_Finalize();
    mpi_on = 0;
}

int dist_rank(void) { return rank; }
int dist_size(void) { return size; }
int dist_mpi(void) { return mpi_on; }


void dist_abort(int code, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "aoe: rank %d of %d: ", rank, size);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (mpi_on) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void *watchdog(void *arg) {
    (void)arg;
    double stop_seen = 0;
    for (;;) {
        usleep(50000);
        double now = now_sec(), since = in_mpi_since;
        if (!watch_stopped || !watch_stopped()) continue;
        if (!stop_seen) stop_seen = now;
        // mpirun sends SIGKILL 1 s after SIGTERM (odls_base_sigkill_timeout): speak within it
        if (since > 0 && now - since > 0.3 && now - stop_seen > 0.3) {
            char msg[1024];
            int n = snprintf(msg, sizeof msg, "aoe: rank %d of %d: stop signal while waiting %.1f s for the other ranks: "
                             "a rank has died or the job is being stopped (mpirun's message names the rank); no "
                             "checkpoint is written now. %s\n", rank, size, now - since, watch_hint);
            if (write(2, msg, n > 0 && n < (int)sizeof msg ? (size_t)n : strlen(msg)) < 0) _exit(EXIT_RUNTIME);
            _exit(EXIT_RUNTIME);
        }
    }
    return NULL;
}

void dist_watch_stop(int (*stopped)(void), const char *hint) {
    snprintf(watch_hint, sizeof watch_hint, "%s", hint);
    if (size == 1 || watch_stopped) { watch_stopped = stopped; return; }
    watch_stopped = stopped;
    pthread_t t;
    if (!pthread_create(&t, NULL, watchdog, NULL)) pthread_detach(t);
}

// Marks entry into / exit from a blocking MPI call for the watchdog and the time counter.
static double enter(void) { return in_mpi_since = now_sec(); }
static void leave(double t0) { in_mpi_since = 0; st.sec += now_sec() - t0; st.calls++; }

static void call_ok(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    dist_abort(EXIT_RUNTIME, "%s failed (%s): another rank has probably died; stopping the job (continue from the "
               "last checkpoint with: mpirun ... aoe train --resume RUN_DIR)", what, msg);
}

int dist_local_size(void) {
    if (size == 1) return 1;
    MPI_Comm node;
    int n = 1;
    call_ok(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    return n;
}

// Offset of rank q's part and the block's length (parts of at most INT_MAX floats in total).
static int part_at(const int *cnt, int q) {
    long at = 0;
    for (int i = 0; i < q; i++) at += cnt[i];
    return (int)at;
}

// A ring reduce-scatter written out with MPI_Sendrecv, over the p ranks of comm (this one: me):
// Open MPI 4.1's MPI_Reduce_scatter took 110 ms on 2 ranks for a 134 MB block where this takes
// 14 ms, and its MPI_Allreduce 55 ms (tools/mpi-collectives.c). In p-1 steps each rank passes a running sum one rank
// on: at step s rank r sends its sum of part (r-s-1) mod p to rank r+1 and adds what rank r-1
// sends into part (r-s-2) mod p, which after the last step is part r. Segments of RING_SEG floats
// keep the receive buffer small and the added data in cache. Counts (p-1)/p of the block's bytes.
#define RING_SEG (1 << 20)

static void ring_sum_part(MPI_Comm comm, int p, int me, float *buf, const int *cnt) {
    static float *tmp;
    if (!tmp) tmp = xmalloc(sizeof(float) * RING_SEG);
    int to = (me + 1) % p, from = (me + p - 1) % p;
    double t0 = enter();
    for (int s = 0; s < p - 1; s++) {
        int ps = ((me - s - 1) % p + p) % p, pr = ((me - s - 2) % p + p) % p;
        float *snd = buf + part_at(cnt, ps), *rcv = buf + part_at(cnt, pr);
        int ns = cnt[ps], nr = cnt[pr];
        for (long k = 0; k < ns || k < nr; k += RING_SEG) {
            int a = (int)(ns - k < RING_SEG ? ns - k : RING_SEG), b = (int)(nr - k < RING_SEG ? nr - k : RING_SEG);
            if (a < 0) a = 0;
            if (b < 0) b = 0;
            call_ok(MPI_Sendrecv(snd + k, a, MPI_FLOAT, to, s, tmp, b, MPI_FLOAT, from, s, comm, MPI_STATUS_IGNORE),
                    "MPI_Sendrecv");
            float *acc = rcv + k;
#pragma omp simd
            for (int i = 0; i < b; i++) acc[i] += tmp[i];
        }
    }
    leave(t0);
    st.allreduce_bytes += (double)(p - 1) / p * part_at(cnt, p) * sizeof(float);
}

// Every rank's part to every rank (in place); counts (p-1)/p of the block's bytes.
static void gather_parts(MPI_Comm comm, int p, float *buf, const int *cnt) {
    int *disp = xmalloc(sizeof(int) * (size_t)p);
    for (int q = 0; q < p; q++) disp[q] = part_at(cnt, q);
    double t0 = enter();
    call_ok(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, cnt, disp, MPI_FLOAT, comm), "MPI_Allgatherv");
    leave(t0);
    st.allreduce_bytes += (double)(p - 1) / p * part_at(cnt, p) * sizeof(float);
    free(disp);
}

size_t dist_even_parts(size_t n, int p, int *cnt) {
    size_t per = ((n + (size_t)p - 1) / (size_t)p + 15) / 16 * 16;  // whole vectors and cache lines
    for (int q = 0; q < p; q++) {
        size_t lo = per * q < n ? per * q : n;
        cnt[q] = (int)((lo + per < n ? lo + per : n) - lo);
    }
    return per;
}

void dist_sum_part_f(float *buf, const int *cnt) {
    if (size > 1) ring_sum_part(MPI_COMM_WORLD, size, rank, buf, cnt);
}

void dist_gather_parts_f(float *buf, const int *cnt) {
    if (size > 1) gather_parts(MPI_COMM_WORLD, size, buf, cnt);
}

// In-place sum over a communicator of p ranks; counts the ring all-reduce volume 2(p-1)/p·bytes.
// Float blocks (of 4 KB or more: small sums stay one call) go through the ring and an all-gather,
// faster than Open MPI's all-reduce (see ring_sum_part); the same bits end on every rank.
static void sum_on(MPI_Comm comm, int p, void *buf, size_t n, MPI_Datatype type, size_t elem) {
    if (p == 1 || !n) return;
    if (type == MPI_FLOAT && n >= 1024 && n <= (size_t)INT_MAX) {
        int me, *cnt = xmalloc(sizeof(int) * (size_t)p);
        MPI_Comm_rank(comm, &me);
        dist_even_parts(n, p, cnt);
        ring_sum_part(comm, p, me, buf, cnt);
        gather_parts(comm, p, buf, cnt);
        free(cnt);
        return;
    }
    double t0 = enter();
    call_ok(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, type, MPI_SUM, comm), "MPI_Allreduce");
    leave(t0);
    st.allreduce_bytes += 2.0 * (p - 1) / p * n * elem;
}

// Non-blocking sums in flight (dist_isum_*): requests of this step, grown as needed.
static MPI_Request *reqs;
static int n_req, cap_req;

void dist_isum_f(float *buf, size_t n, int replicas) {
    MPI_Comm comm = replicas && ep_size > 1 ? rep_comm : MPI_COMM_WORLD;
    int p = replicas ? size / ep_size : size;
    if (p == 1 || !n) return;
    if (n > (size_t)INT_MAX) dist_abort(EXIT_RUNTIME, "a gradient bucket of %zu floats is too large for one MPI call", n);
    if (n_req == cap_req) reqs = xrealloc(reqs, sizeof *reqs * (size_t)(cap_req = cap_req ? 2 * cap_req : 64));
    double t0 = enter();
    call_ok(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, comm, &reqs[n_req++]), "MPI_Iallreduce");
    leave(t0);
    st.allreduce_bytes += 2.0 * (p - 1) / p * n * sizeof(float);
}

void dist_isum_progress(void) {
    if (!n_req) return;
    int done;
    double t0 = enter();
    call_ok(MPI_Testall(n_req, reqs, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    leave(t0);
}

void dist_isum_wait(void) {
    if (!n_req) return;
    double t0 = enter();
    call_ok(MPI_Waitall(n_req, reqs, MPI_STATUSES_IGNORE), "MPI_Waitall");
    leave(t0);
    n_req = 0;
}

void dist_sum_f(float *buf, size_t n) { sum_on(MPI_COMM_WORLD, size, buf, n, MPI_FLOAT, sizeof(float)); }
void dist_sum_d(double *buf, size_t n) { sum_on(MPI_COMM_WORLD, size, buf, n, MPI_DOUBLE, sizeof(double)); }
void dist_rep_sum_f(float *buf, size_t n) {
    if (ep_size == 1) dist_sum_f(buf, n);
    else sum_on(rep_comm, size / ep_size, buf, n, MPI_FLOAT, sizeof(float));
}
void dist_ep_sum_d(double *buf, size_t n) { sum_on(ep_comm, ep_size, buf, n, MPI_DOUBLE, sizeof(double)); }

void dist_ep_gather_f(const float *mine, size_t per, float *all) {
    if (ep_size == 1) { if (per) memcpy(all, mine, sizeof(float) * per); return; }
    if (per > (size_t)INT_MAX) dist_abort(EXIT_RUNTIME, "a tensor slice of %zu floats is too large for one MPI_Gather", per);
    double t0 = enter();
    call_ok(MPI_Gather(mine, (int)per, MPI_FLOAT, all, (int)per, MPI_FLOAT, 0, ep_comm), "MPI_Gather");
    leave(t0);
}

static void allgather(const void *mine, size_t per, void *all, MPI_Datatype type, size_t elem) {
    if (size == 1) { if (per) memcpy(all, mine, elem * per); return; }
    if (per > (size_t)INT_MAX) dist_abort(EXIT_RUNTIME, "an all-gather of %zu elements per rank is too large", per);
    double t0 = enter();
    call_ok(MPI_Allgather(mine, (int)per, type, all, (int)per, type, MPI_COMM_WORLD), "MPI_Allgather");
    leave(t0);
    st.gather_bytes += (double)(size - 1) * per * elem;
}
void dist_allgather_f(const float *mine, size_t per, float *all) { allgather(mine, per, all, MPI_FLOAT, sizeof(float)); }
void dist_allgather_i(const int *mine, size_t per, int *all) { allgather(mine, per, all, MPI_INT, sizeof(int)); }

double dist_max_d(double v) {
    if (size == 1) return v;
    double t0 = enter();
    call_ok(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
    leave(t0); st.allreduce_bytes += 2.0 * (size - 1) / size * sizeof v;
    return v;
}

void dist_barrier(void) {
    if (size == 1) return;
    double t0 = enter();
    call_ok(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    leave(t0);
}

void dist_bcast(void *buf, size_t n) {
    if (size == 1 || !n) return;
    double t0 = enter();
    call_ok(MPI_Bcast(buf, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    leave(t0);
}

void dist_ep_setup(int E) {
    if (E < 1 || size % E) dist_abort(EXIT_BAD_INPUT, "train.expert_parallel (%d) must divide the number of ranks (%d)", E, size);
    if (ep_comm != MPI_COMM_NULL) MPI_Comm_free(&ep_comm);
    if (rep_comm != MPI_COMM_NULL) MPI_Comm_free(&rep_comm);
    ep_size = E;
    ep_rank = rank % E;
    if (E > 1) {
        call_ok(MPI_Comm_split(MPI_COMM_WORLD, rank / E, ep_rank, &ep_comm), "MPI_Comm_split");
        call_ok(MPI_Comm_split(MPI_COMM_WORLD, ep_rank, rank / E, &rep_comm), "MPI_Comm_split");
        MPI_Comm_set_errhandler(ep_comm, MPI_ERRORS_RETURN);
        MPI_Comm_set_errhandler(rep_comm, MPI_ERRORS_RETURN);
    }
}

int dist_ep_size(void) { return ep_size; }
int dist_ep_rank(void) { return ep_rank; }

void dist_ep_alltoallv_f(const float *send, const int *scnt, const int *sdisp, float *recv, const int *rcnt,
                         const int *rdisp) {
    if (ep_size == 1) { memcpy(recv + rdisp[0], send + sdisp[0], sizeof(float) * (size_t)scnt[0]); return; }
    double t0 = enter();
    call_ok(MPI_Alltoallv(send, scnt, sdisp, MPI_FLOAT, recv, rcnt, rdisp, MPI_FLOAT, ep_comm), "MPI_Alltoallv");
    leave(t0);
    for (int q = 0; q < ep_size; q++)
        if (q != ep_rank) st.alltoall_bytes += (double)scnt[q] * sizeof(float);
}

void dist_ep_alltoall_i(const int *send, int *recv, int per) {
    if (ep_size == 1) { memcpy(recv, send, sizeof(int) * (size_t)per); return; }
    double t0 = enter();
    call_ok(MPI_Alltoall(send, per, MPI_INT, recv, per, MPI_INT, ep_comm), "MPI_Alltoall");
    leave(t0);
}

void dist_stats(DistStats *s) { *s = st; }
void dist_stats_reset(void) { memset(&st, 0, sizeof st); }
void dist_stats_restore(const DistStats *s) { st = *s; }

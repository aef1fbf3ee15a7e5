// dp.c — see dp.h.
#include "train/dp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "model/moe_ep.h"
#include "util/common.h"

// Expert tensors under expert parallelism: offsets and sizes [n_ex]; this rank's slice of
// tensor i is off[i] + ep_rank·len[i]/E, len[i]/E floats.
static struct { int n; size_t *off, *len, total; } ex;

int dp_setup(const Config *c) {
    int N = dist_size(), E = c->expert_parallel;
    if (E > 1 && c->ffn.erc_coef > 0)
        die_input("train.expert_parallel (%d) with model.ffn.erc_coef > 0: the ERC loss reads every expert's W_g, "
                  "which expert parallelism spreads over ranks; set one of them off", E);
    if (c->batch_size % N)
        die_input("train.batch_size (%d, the global micro-batch) must be divisible by the %d MPI ranks", c->batch_size, N);
    if (N % E)
        die_input("train.expert_parallel (%d) must divide the number of MPI ranks (%d)", E, N);
    dist_ep_setup(E);
    return c->batch_size / N;
}

void dp_bind(const Params *P) {
    free(ex.off); free(ex.len);
    memset(&ex, 0, sizeof ex);
    if (dist_ep_size() == 1) return;
    ex.off = xcalloc(P->n, sizeof(size_t));
    ex.len = xcalloc(P->n, sizeof(size_t));
    for (int i = 0; i < P->n; i++)
        if (moe_ep_is_expert_tensor(&P->t[i])) {
            ex.off[ex.n] = P->t[i].off;
            ex.len[ex.n++] = P->t[i].n;
            ex.total += P->t[i].n;
        }
}

void dp_sum_grads(Params *P) {
    if (!ex.n) { dist_sum_f(P->g, P->total); return; }
    // runs of non-expert tensors over all ranks, expert slices over their replicas
    size_t at = 0, E = dist_ep_size(), me = dist_ep_rank();
    for (int i = 0; i <= ex.n; i++) {
        size_t end = i < ex.n ? ex.off[i] : P->total;
        if (end > at) dist_sum_f(P->g + at, end - at);
        if (i == ex.n) break;
        size_t per = ex.len[i] / E;
        dist_rep_sum_f(P->g + ex.off[i] + me * per, per);
        at = ex.off[i] + ex.len[i];
    }
}

double dp_grad_norm(const Params *P) {
    if (!ex.n) return grad_norm(P);
    // Σ g² of everything but expert slices (the same on every rank) + Σ over the group of each
    // rank's own slices (other slices are zero here)
    double all = grad_norm(P), mine = 0;
    size_t E = dist_ep_size(), me = dist_ep_rank();
    for (int i = 0; i < ex.n; i++) {
        size_t per = ex.len[i] / E;
        const float *g = P->g + ex.off[i] + me * per;
        for (size_t k = 0; k < per; k++) mine += (double)g[k] * g[k];
    }
    double rest = all * all - mine;
    dist_ep_sum_d(&mine, 1);
    return sqrt(fmax(rest, 0) + mine);
}

void dp_gather_experts(Params *P, Optim *o) {
    size_t E = dist_ep_size();
    for (int i = 0; i < ex.n; i++) {
        dist_ep_allgather_f(P->w + ex.off[i], ex.len[i] / E);
        for (int k = 0; k < o->ops->n_state; k++) dist_ep_allgather_f(o->s[k] + ex.off[i], ex.len[i] / E);
    }
}

void dp_step_stats(double *loss, double *aux) {
    int N = dist_size();
    if (N == 1) return;
    double v[2] = {*loss, *aux};
    dist_sum_d(v, 2);
    *loss = v[0] / N;
    *aux = v[1] / N;
}

int dp_stop_agree(int stop) {
    if (dist_size() == 1) return stop;
    double any = stop ? 1 : 0;
    any = dist_max_d(any);
    return stop ? stop : (any > 0 ? 15 /* SIGTERM: another rank was asked to stop */ : 0);
}

int dp_kill_hook_applies(void) {
    const char *s = getenv("AOE_TEST_KILL_RANK");
    return !s || !*s || atoi(s) == dist_rank();
}

void dp_report_comm(const Config *c, size_t n_params, long tokens_per_micro, long steps, double wall) {
    int N = dist_size();
    if (N == 1 || steps < 1) return;
    DistStats s;
    dist_stats(&s);
    // ring all-reduce: non-expert floats over N ranks, each rank's expert slices over N/E replicas
    int E = dist_ep_size(), Rp = N / E;
    size_t mine = ex.total / E;
    double ring = 4.0 * (n_params - ex.total) * 2 * (N - 1) / N + 4.0 * mine * 2 * (Rp - 1) / Rp;
    double a2a = c->grad_accum * moe_ep_uniform_bytes(c, c->expert_parallel, tokens_per_micro);
    printf("communication per step (rank %d of %d): all-reduce %.3f MB (ring formula 4 B x 2(N-1)/N x %zu "
           "parameters", dist_rank(), N, s.allreduce_bytes / steps / 1e6, n_params - ex.total);
    if (ex.total) printf(" + 4 B x 2(R-1)/R x %zu expert parameters of this rank over its R (%d) replicas", mine, Rp);
    printf(" = %.3f MB; the rest is batch statistics), all-to-all %.3f MB (uniform-routing formula %.3f MB), "
           "%.1f%% of the time in MPI\n", ring / 1e6, s.alltoall_bytes / steps / 1e6, a2a / 1e6,
           wall > 0 ? 100 * s.sec / wall : 0);
}

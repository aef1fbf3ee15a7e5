// dp.c — see dp.h.
#include "train/dp.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "model/kernels.h"
#include "model/moe_ep.h"
#include "util/common.h"

// Expert tensors under expert parallelism: this rank holds only its experts' slices of them
// (TensorInfo.slices, set by the sparse layers); offsets and sizes [n] in the local block.
static struct { int n; size_t *off, *len, total; } ex;
// Split optimizer step (dp.h): this rank's part [lo, hi) of the flat block and every rank's count.
static struct { int on, overlap; size_t lo, hi; int *cnt; } part;

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
    part.overlap = c->overlap_grads;
    moe_ep_layout(E, dist_ep_rank());  // the sparse layers model_create builds hold this rank's experts
    return c->batch_size / N;
}

void dp_bind(const Params *P) {
    free(ex.off); free(ex.len); free(part.cnt);
    memset(&ex, 0, sizeof ex);
    part.on = 0;
    part.cnt = NULL;
    int N = dist_size();
    if (dist_ep_size() == 1 && !part.overlap && N > 1 && P->total <= (size_t)INT_MAX) {
        part.cnt = xmalloc(sizeof(int) * (size_t)N);
        size_t per = dist_even_parts(P->total, N, part.cnt), r = (size_t)dist_rank();
        part.lo = per * r < P->total ? per * r : P->total;
        part.hi = part.lo + (size_t)part.cnt[r];
        part.on = 1;
    }
    if (dist_ep_size() == 1) return;
    ex.off = xcalloc(P->n, sizeof(size_t));
    ex.len = xcalloc(P->n, sizeof(size_t));
    for (int i = 0; i < P->n; i++)
        if (tensor_sharded(&P->t[i])) {
            ex.off[ex.n] = P->t[i].off;
            ex.len[ex.n++] = P->t[i].n;
            ex.total += P->t[i].n;
        }
}

// Overlapped sum: model_backward reports each finished range (a block, the head, the embedding);
// its sums start at once (non-expert runs over all ranks, expert tensors over their replicas)
// and advance at every later report; dp_sum_grads waits for them.
static int overlap_started;

static void grad_ready(void *ctx, size_t lo, size_t hi) {
    Params *P = ctx;
    size_t at = lo;
    for (int i = 0; i < ex.n && at < hi; i++) {
        if (ex.off[i] + ex.len[i] <= at || ex.off[i] >= hi) continue;
        if (ex.off[i] > at) dist_isum_f(P->g + at, ex.off[i] - at, 0);
        dist_isum_f(P->g + ex.off[i], ex.len[i], 1);
        at = ex.off[i] + ex.len[i];
    }
    if (hi > at) dist_isum_f(P->g + at, hi - at, 0);
    dist_isum_progress();
    overlap_started = 1;
}

void dp_overlap_next_backward(Model *m, int on) {
    m->grad_ready = on && dist_size() > 1 ? grad_ready : NULL;
    m->grad_ctx = &m->P;
}

void dp_sum_grads(Params *P) {
    if (overlap_started) { dist_isum_wait(); overlap_started = 0; return; }
    if (part.on) { dist_sum_part_f(P->g, part.cnt); return; }
    if (!ex.n) { dist_sum_f(P->g, P->total); return; }
    // runs of non-expert tensors over all ranks, expert slices over their replicas
    size_t at = 0;
    for (int i = 0; i <= ex.n; i++) {
        size_t end = i < ex.n ? ex.off[i] : P->total;
        if (end > at) dist_sum_f(P->g + at, end - at);
        if (i == ex.n) break;
        dist_rep_sum_f(P->g + ex.off[i], ex.len[i]);
        at = ex.off[i] + ex.len[i];
    }
}

double dp_grad_norm(const Params *P) {
    if (part.on) {
        double s = grad_sumsq_part(P, part.lo, part.hi);
        dist_sum_d(&s, 1);
        return sqrt(s);
    }
    if (!ex.n) return grad_norm(P);
    // Σ g² of the replicated tensors (the same on every rank) + Σ over the group of each rank's
    // expert slices
    double all = grad_norm(P), mine = 0;
    for (int i = 0; i < ex.n; i++) {
        const float *g = P->g + ex.off[i];
        for (size_t k = 0; k < ex.len[i]; k++) mine += (double)g[k] * g[k];
    }
    double rest = all * all - mine;
    dist_ep_sum_d(&mine, 1);
    return sqrt(fmax(rest, 0) + mine);
}

void dp_optim_step(Optim *o, Params *P, const Config *c, float lr, float gscale) {
    if (!part.on) { optim_step_scaled(o, P, c, lr, gscale); return; }
    optim_step_part(o, P, c, lr, gscale, part.lo, part.hi);
    dist_gather_parts_f(P->w, part.cnt);
    kernels_weights_changed(P->w);  // bf16 precision: the copy follows the whole block
}

size_t dp_optim_share(void) { return part.on ? part.hi - part.lo : 0; }

void dp_optim_gather(Optim *o) {
    if (!part.on) return;
    DistStats st;  // a checkpoint's traffic, like a validation pass's, is not the step's
    dist_stats(&st);
    for (int k = 0; k < o->ops->n_state; k++) dist_gather_parts_f(o->s[k], part.cnt);
    dist_stats_restore(&st);
}

void dp_ckpt_gather(const float *local, const TensorInfo *t, float *whole) {
    dist_ep_gather_f(local + t->off, t->n, whole);
}

void dp_ckpt_send(const Params *P, const Optim *o) {
    int R = dist_rank();
    if (!ex.n || R == 0 || R >= dist_ep_size()) return;  // only rank 0's group feeds the writer
    const float *arr[1 + OPT_MAX_STATE] = {P->w};
    for (int k = 0; k < o->ops->n_state; k++) arr[1 + k] = o->s[k];
    for (int a = 0; a < 1 + o->ops->n_state; a++)  // the writer's order: arrays, then tensors
        for (int i = 0; i < P->n; i++)
            if (tensor_sharded(&P->t[i])) dist_ep_gather_f(arr[a] + P->t[i].off, P->t[i].n, NULL);
}

size_t dp_expert_floats(void) { return ex.total; }

double dp_ring_bytes(size_t n_params) {
    int N = dist_size(), Rp = N / dist_ep_size();
    return 4.0 * (n_params - ex.total) * 2 * (N - 1) / N + 4.0 * ex.total * 2 * (Rp - 1) / Rp;
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
    int Rp = N / dist_ep_size();
    double a2a = c->grad_accum * moe_ep_uniform_bytes(c, c->expert_parallel, tokens_per_micro);
    printf("communication per step (rank %d of %d): all-reduce %.3f MB (ring formula 4 B x 2(N-1)/N x %zu "
           "parameters", dist_rank(), N, s.allreduce_bytes / steps / 1e6, n_params - ex.total);
    if (ex.total) printf(" + 4 B x 2(R-1)/R x %zu expert parameters of this rank over its R (%d) replicas", ex.total, Rp);
    printf(" = %.3f MB; the rest is batch statistics), all-to-all %.3f MB (uniform-routing formula %.3f MB), ",
           dp_ring_bytes(n_params) / 1e6, s.alltoall_bytes / steps / 1e6, a2a / 1e6);
    if (s.gather_bytes > 0)  // expert choice / ETR: each expert's best candidates of every rank
        printf("selection candidates %.3f MB, ", s.gather_bytes / steps / 1e6);
    printf("%.1f%% of the time in MPI\n", wall > 0 ? 100 * s.sec / wall : 0);
}

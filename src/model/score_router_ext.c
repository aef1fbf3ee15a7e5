// score_router_ext.c — the router MoE rows of the AoE paper's Table 2 that change the router side
// (methods.md §1.6, §4.5), each a score source (score.h):
//   router_lowrank (model.ffn.gate_rank = r > 0): the usual router S = X·R, and every expert's W_g
//       factorised as W_down^e·W_up^e ("+ factorized W_g"): the source computes the keys
//       C = X·W_down [T,n·r] (layers.L.ffn.w_down, column block e = expert e) that the experts'
//       gate branch reads, exactly as AoE's keys but ranked by the router, not by their norms.
//       The keys of every expert are computed for every token (one product, as AoE does), so the
//       layer pays AoE's n·d·r per token; the expert width is Eq.5 with r (ffn_d_wide).
//   router_mlp (model.ffn.router_hidden = h > 0): a two-layer linear router S = (X·R1)·R2,
//       R1 [d,h] (layers.L.ffn.router_in), R2 [h,n] (layers.L.ffn.router_out), no nonlinearity,
//       as the paper's large-router code (Linear(d→h)→Linear(h→n)); h = n·r·d/(d+n) spends AoE's
//       W_down parameters on selection ("+ large router").
// Neither exposes a single router matrix, so the z-loss and ERC (which read R [d,n] and W_g) are
// refused for both (ScoreInfo.router = 0).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ffn.h"
#include "model/kernels.h"
#include "model/score.h"

// ---- router_lowrank ----
typedef struct { long o_down; } LowRank;  // W_down offset (o_param is the router)

static int lowrank_match(const Config *c) { return !strcmp(c->ffn.type, "moe") && c->ffn.gate_rank > 0; }

static const char *lowrank_check(const Config *c, char *buf, int len) {
    if (c->ffn.gate_rank >= c->d_model) {
        snprintf(buf, len, "model.ffn.gate_rank (%d) must be < model.d_model (%d)", c->ffn.gate_rank, c->d_model);
        return buf;
    }
    if (c->ffn.router_hidden > 0) return "model.ffn.gate_rank and model.ffn.router_hidden are separate ablations; set one to 0";
    if (c->ffn.d_wide == 0 && ffn_d_wide(c) < 1) {
        snprintf(buf, len, "model.ffn.d_wide: parameter matching (AoE Eq.5) gives no width for model.ffn.gate_rank %d; "
                 "set it explicitly", c->ffn.gate_rank);
        return buf;
    }
    return NULL;
}

static int lowrank_key_dim(const Config *c) { return c->ffn.gate_rank; }

static void lowrank_init(Score *s, Params *P, const Config *c) {
    char name[64];
    LowRank *p = xcalloc(1, sizeof *p);
    snprintf(name, sizeof name, "layers.%d.ffn.router", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n);
    snprintf(name, sizeof name, "layers.%d.ffn.w_down", s->layer);
    p->o_down = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n * s->r);
    s->priv = p;
}

static void lowrank_free(Score *s) { free(s->priv); }

static void lowrank_forward(Score *s, const Params *P, const float *x, int T) {
    const LowRank *p = s->priv;
    int d = s->d, n = s->n, r = s->r;
    matmul(s->S, n, x, d, P->w + s->o_param, n, T, n, d, 0, 0, 1, 0);
    matmul(s->key, n * r, x, d, P->w + p->o_down, n * r, T, n * r, d, 0, 0, 1, 0);
}

// dR += x^T·dS, dx += dS·R^T; dW_down += x^T·dkey, dx += dkey·W_down^T (dkey: the experts' only).
static void lowrank_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    const LowRank *p = s->priv;
    int d = s->d, n = s->n, r = s->r;
    matmul(P->g + s->o_param, n, x, d, s->dS, n, d, n, T, 1, 0, 1, 1);
    matmul(dx, d, s->dS, n, P->w + s->o_param, n, T, d, n, 0, 1, 1, 1);
    matmul(P->g + p->o_down, n * r, x, d, s->dkey, n * r, d, n * r, T, 1, 0, 1, 1);
    matmul(dx, d, s->dkey, n * r, P->w + p->o_down, n * r, T, d, n * r, 0, 1, 1, 1);
}

// y [m] = x [k] · W [k, m] (row-major, leading dimension ldw), in double.
static void vecmat(double *y, const double *x, const float *W, int k, int m, int ldw) {
    for (int j = 0; j < m; j++) y[j] = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < m; j++) y[j] += x[i] * W[(size_t)i * ldw + j];
}

static void lowrank_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank,
                                  double *key) {
    const LowRank *p = s->priv;
    int d = s->d, n = s->n, r = s->r;
    double *xd = xmalloc(sizeof(double) * d);
    for (int k = 0; k < d; k++) xd[k] = xt[k];
    vecmat(z, xd, P->w + s->o_param, d, n, n);
    vecmat(key, xd, P->w + p->o_down, d, n * r, n * r);
    memcpy(rank, z, sizeof(double) * n);
    free(xd);
}

static void lowrank_backward_naive(const Score *s, const Params *P, const float *xt, const double *z,
                                   const double *rank, const double *key, const double *dz, const double *dkey,
                                   double *G, double *dxt) {
    (void)z; (void)rank; (void)key;
    const LowRank *p = s->priv;
    int d = s->d, n = s->n, nr = s->n * s->r;
    const float *R = P->w + s->o_param, *W = P->w + p->o_down;
    for (int k = 0; k < d; k++) {
        for (int e = 0; e < n; e++) {
            G[s->o_param + (size_t)k * n + e] += xt[k] * dz[e];
            dxt[k] += dz[e] * R[(size_t)k * n + e];
        }
        for (int j = 0; j < nr; j++) {
            G[p->o_down + (size_t)k * nr + j] += xt[k] * dkey[j];
            dxt[k] += dkey[j] * W[(size_t)k * nr + j];
        }
    }
}

static double lowrank_count(const Config *c) {
    return (double)c->d_model * c->ffn.n_experts * (1 + c->ffn.gate_rank);
}

const ScoreOps score_router_lowrank = {
    .info = {.name = "router_lowrank", .router = 0},
    .keys = ROUTER_PICK_KEYS " d_wide",
    .summary = "router logits X·R with every expert's W_g factorised as W_down·W_up (model.ffn.gate_rank)",
    .match = lowrank_match,
    .check = lowrank_check,
    .key_dim = lowrank_key_dim,
    .init = lowrank_init,
    .forward = lowrank_forward,
    .backward = lowrank_backward,
    .free = lowrank_free,
    .forward_naive = lowrank_forward_naive,
    .backward_naive = lowrank_backward_naive,
    .count = lowrank_count,
};

// ---- router_mlp ----
typedef struct {
    int h;
    long o_out;  // R2 [h,n]; o_param is R1 [d,h]
    float *H;    // [max_T,h] X·R1 of the last forward
    float *dH;   // [max_T,h]
} Mlp;

static int mlp_match(const Config *c) { return !strcmp(c->ffn.type, "moe") && c->ffn.router_hidden > 0; }

static void mlp_init(Score *s, Params *P, const Config *c) {
    Mlp *p = xcalloc(1, sizeof *p);
    char name[64];
    p->h = c->ffn.router_hidden;
    snprintf(name, sizeof name, "layers.%d.ffn.router_in", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, p->h);
    snprintf(name, sizeof name, "layers.%d.ffn.router_out", s->layer);
    p->o_out = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, p->h, s->n);
    p->H = falloc((size_t)s->max_T * p->h);
    p->dH = falloc((size_t)s->max_T * p->h);
    s->priv = p;
}

static void mlp_free(Score *s) {
    Mlp *p = s->priv;
    if (!p) return;
    free(p->H); free(p->dH); free(p);
}

static void mlp_forward(Score *s, const Params *P, const float *x, int T) {
    Mlp *p = s->priv;
    int d = s->d, n = s->n, h = p->h;
    matmul(p->H, h, x, d, P->w + s->o_param, h, T, h, d, 0, 0, 1, 0);
    matmul(s->S, n, p->H, h, P->w + p->o_out, n, T, n, h, 0, 0, 1, 0);
}

// dR2 += H^T·dS; dH = dS·R2^T; dR1 += x^T·dH; dx += dH·R1^T.
static void mlp_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    Mlp *p = s->priv;
    int d = s->d, n = s->n, h = p->h;
    matmul(P->g + p->o_out, n, p->H, h, s->dS, n, h, n, T, 1, 0, 1, 1);
    matmul(p->dH, h, s->dS, n, P->w + p->o_out, n, T, h, n, 0, 1, 1, 0);
    matmul(P->g + s->o_param, h, x, d, p->dH, h, d, h, T, 1, 0, 1, 1);
    matmul(dx, d, p->dH, h, P->w + s->o_param, h, T, d, h, 0, 1, 1, 1);
}

static void mlp_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank, double *key) {
    (void)key;
    const Mlp *p = s->priv;
    int d = s->d, n = s->n, h = p->h;
    double *xd = xmalloc(sizeof(double) * d), *H = xmalloc(sizeof(double) * h);
    for (int k = 0; k < d; k++) xd[k] = xt[k];
    vecmat(H, xd, P->w + s->o_param, d, h, h);
    vecmat(z, H, P->w + p->o_out, h, n, n);
    memcpy(rank, z, sizeof(double) * n);
    free(xd); free(H);
}

static void mlp_backward_naive(const Score *s, const Params *P, const float *xt, const double *z, const double *rank,
                               const double *key, const double *dz, const double *dkey, double *G, double *dxt) {
    (void)z; (void)rank; (void)key; (void)dkey;
    const Mlp *p = s->priv;
    int d = s->d, n = s->n, h = p->h;
    const float *R1 = P->w + s->o_param, *R2 = P->w + p->o_out;
    double *H = xcalloc(h, sizeof(double)), *dH = xcalloc(h, sizeof(double));
    for (int k = 0; k < d; k++)
        for (int j = 0; j < h; j++) H[j] += (double)xt[k] * R1[(size_t)k * h + j];
    for (int j = 0; j < h; j++)
        for (int e = 0; e < n; e++) {
            G[p->o_out + (size_t)j * n + e] += H[j] * dz[e];
            dH[j] += dz[e] * R2[(size_t)j * n + e];
        }
    for (int k = 0; k < d; k++)
        for (int j = 0; j < h; j++) {
            G[s->o_param + (size_t)k * h + j] += xt[k] * dH[j];
            dxt[k] += dH[j] * R1[(size_t)k * h + j];
        }
    free(H); free(dH);
}

static double mlp_count(const Config *c) {
    return (double)c->ffn.router_hidden * (c->d_model + c->ffn.n_experts);
}

const ScoreOps score_router_mlp = {
    .info = {.name = "router_mlp", .router = 0},
    .keys = ROUTER_PICK_KEYS,
    .summary = "two-layer linear router (X·R1)·R2 of hidden width model.ffn.router_hidden",
    .match = mlp_match,
    .init = mlp_init,
    .forward = mlp_forward,
    .backward = mlp_backward,
    .free = mlp_free,
    .forward_naive = mlp_forward_naive,
    .backward_naive = mlp_backward_naive,
    .count = mlp_count,
};

// ---- expert_norm: the router-free probe (model.ffn.score_override; evaluation only) ----
// A trained router MoE chooses and gates its experts by the L2 norm of one node of every expert's
// own computation instead of its router (AoE paper §3.1, Table 1). score_override names the node:
//   norm         u = x·W_g^e (the pre-SiLU gate projection, the node AoE standardises on)
//   norm_proj    v = x·W_p^e          norm_silu    SiLU(u)
//   norm_act     SiLU(u) ⊙ v          norm_output  the expert's output (SiLU(u) ⊙ v)·W_o^e
// It registers the router tensor like the router source, unused, so the model's parameter table
// still matches its checkpoint. Cost: the node for all n experts per token (norm_output: n full
// expert FFNs, n/K times the experts' FLOPs of the top-K layer); the chosen experts then run as
// usual (the probe hands them nothing). No backward.
//   random       the baseline without information: S = 0 and the experts ranked by uniform
//                draws, so the top-K is K experts drawn uniformly without replacement and the
//                gates are the model's over equal scores (top-K softmax: 1/K each). The draws
//                come from a hash of train.seed, the layer and the token's input x_t, so they
//                do not depend on batching and the naive twin reproduces them.
enum { NODE_GATE, NODE_PROJ, NODE_SILU, NODE_ACT, NODE_OUT, NODE_RANDOM };

typedef struct {
    int node, D;
    uint64_t seed;
    long o_gate, o_proj, o_out;  // w_gate, w_proj [n,d,D], w_out [n,D,d], found by name at first use
    float *U, *V, *Y;            // [max_T,D] x2, [max_T,d] scratch
} Probe;

static int probe_node(const char *v) {
    return !strcmp(v, "norm_proj") ? NODE_PROJ : !strcmp(v, "norm_silu") ? NODE_SILU : !strcmp(v, "norm_act") ? NODE_ACT
           : !strcmp(v, "norm_output") ? NODE_OUT : !strcmp(v, "random") ? NODE_RANDOM : NODE_GATE;
}

// random: the generator of token x_t's draws in layer `layer`, seeded by (seed, layer, x_t).
static Rng random_draws(uint64_t seed, int layer, const float *xt, int d) {
    Rng g;
    rng_seed(&g, hash64(xt, sizeof(float) * d, seed * 0x9e3779b97f4a7c15ULL + (uint64_t)layer));
    return g;
}

static int probe_match(const Config *c) { return !strcmp(c->ffn.type, "moe") && strcmp(c->ffn.score_override, "none"); }

static const char *probe_check(const Config *c, char *buf, int len) {
    (void)buf; (void)len;
    if (c->ffn.gate_rank > 0 || c->ffn.router_hidden > 0)
        return "model.ffn.score_override probes a plain router MoE (model.ffn.gate_rank and router_hidden 0)";
    if (probe_node(c->ffn.score_override) == NODE_RANDOM && strcmp(c->ffn.select, "topk"))
        return "model.ffn.score_override random draws K experts per token: it needs model.ffn.select topk";
    return NULL;
}

static void probe_init(Score *s, Params *P, const Config *c) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.router", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n);
    Probe *p = xcalloc(1, sizeof *p);
    p->node = probe_node(c->ffn.score_override);
    p->seed = c->seed;
    if (p->node == NODE_RANDOM) s->rank = falloc((size_t)s->max_T * s->n);
    p->o_gate = -1;
    p->D = c->ffn.d_ff;
    p->U = falloc((size_t)s->max_T * p->D);
    p->V = falloc((size_t)s->max_T * p->D);
    p->Y = falloc((size_t)s->max_T * s->d);
    s->priv = p;
}

static void probe_free(Score *s) {
    Probe *p = s->priv;
    if (!p) return;
    free(p->U); free(p->V); free(p->Y); free(p);
}

static void probe_offsets(Score *s, const Params *P) {
    Probe *p = s->priv;
    if (p->o_gate >= 0) return;
    p->o_gate = score_expert_tensor(s, P, "w_gate", s->d, p->D);
    p->o_proj = score_expert_tensor(s, P, "w_proj", s->d, p->D);
    p->o_out = score_expert_tensor(s, P, "w_out", p->D, s->d);
}

static double sq(double a) { return a * a; }

static void probe_forward(Score *s, const Params *P, const float *x, int T) {
    Probe *p = s->priv;
    int d = s->d, n = s->n, D = p->D, node = p->node;
    if (node == NODE_RANDOM) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            Rng g = random_draws(p->seed, s->layer, x + (size_t)t * d, d);
            for (int e = 0; e < n; e++) {
                s->S[(size_t)t * n + e] = 0;
                s->rank[(size_t)t * n + e] = (float)rng_uniform(&g);
            }
        }
        return;
    }
    probe_offsets(s, P);
    for (int e = 0; e < n; e++) {
        if (node != NODE_PROJ) matmul(p->U, D, x, d, P->w + p->o_gate + (size_t)e * d * D, D, T, D, d, 0, 0, 1, 0);
        if (node == NODE_PROJ || node >= NODE_ACT)
            matmul(p->V, D, x, d, P->w + p->o_proj + (size_t)e * d * D, D, T, D, d, 0, 0, 1, 0);
        if (node == NODE_SILU || node >= NODE_ACT)
            for (size_t i = 0; i < (size_t)T * D; i++) p->U[i] = silu(p->U[i]) * (node >= NODE_ACT ? p->V[i] : 1.0f);
        if (node == NODE_OUT) matmul(p->Y, d, p->U, D, P->w + p->o_out + (size_t)e * D * d, d, T, d, D, 0, 0, 1, 0);
        const float *src = node == NODE_OUT ? p->Y : node == NODE_PROJ ? p->V : p->U;
        int w = node == NODE_OUT ? d : D;
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            double q = 0;
            for (int i = 0; i < w; i++) q += sq(src[(size_t)t * w + i]);
            s->S[(size_t)t * n + e] = (float)sqrt(q);
        }
    }
}

static void probe_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    (void)s; (void)P; (void)dx; (void)x; (void)T;
    die_input("model.ffn.score_override is an evaluation probe (aoe eval --select-override); it cannot be trained");
}

static void probe_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank, double *key) {
    (void)key;
    const Probe *p = s->priv;
    int d = s->d, n = s->n, D = p->D, node = p->node;
    if (node == NODE_RANDOM) {  // float ranks, as the fast path stores them
        Rng g = random_draws(p->seed, s->layer, xt, d);
        for (int e = 0; e < n; e++) { z[e] = 0; rank[e] = (float)rng_uniform(&g); }
        return;
    }
    long og = score_expert_tensor(s, P, "w_gate", d, D), op = score_expert_tensor(s, P, "w_proj", d, D),
         oo = score_expert_tensor(s, P, "w_out", D, d);
    double *xd = xmalloc(sizeof(double) * d), *u = xmalloc(sizeof(double) * D), *v = xmalloc(sizeof(double) * D),
           *y = xmalloc(sizeof(double) * d);
    for (int k = 0; k < d; k++) xd[k] = xt[k];
    for (int e = 0; e < n; e++) {
        vecmat(u, xd, P->w + og + (size_t)e * d * D, d, D, D);
        vecmat(v, xd, P->w + op + (size_t)e * d * D, d, D, D);
        for (int i = 0; i < D; i++) {
            double a = u[i] / (1 + exp(-u[i]));  // SiLU
            u[i] = node == NODE_PROJ ? v[i] : node == NODE_SILU ? a : node >= NODE_ACT ? a * v[i] : u[i];
        }
        if (node == NODE_OUT) vecmat(y, u, P->w + oo + (size_t)e * D * d, D, d, d);
        double q = 0;
        for (int i = 0; i < (node == NODE_OUT ? d : D); i++) q += sq(node == NODE_OUT ? y[i] : u[i]);
        z[e] = rank[e] = sqrt(q);
    }
    free(xd); free(u); free(v); free(y);
}

static double probe_count(const Config *c) { return (double)c->d_model * c->ffn.n_experts; }  // the router, unused

// The node of every expert per token (the chosen experts recompute theirs: counted by the layer).
static double probe_macs(const Config *c) {
    double d = c->d_model, n = c->ffn.n_experts, D = c->ffn.d_ff;
    static const double per[] = {1, 1, 1, 2, 3, 0};  // d·D products: W_g, W_p, W_g, both, all three
    return n * d * D * per[probe_node(c->ffn.score_override)];
}

const ScoreOps score_expert_norm = {
    .info = {.name = "expert_norm", .router = 0},
    .keys = ROUTER_PICK_KEYS,
    .summary = "evaluation probe: the norm of a node of every expert instead of the router (model.ffn.score_override)",
    .match = probe_match,
    .check = probe_check,
    .init = probe_init,
    .forward = probe_forward,
    .backward = probe_backward,
    .free = probe_free,
    .forward_naive = probe_forward_naive,
    .count = probe_count,
    .macs = probe_macs,
};

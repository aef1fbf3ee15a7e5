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

// ---- expert_norm: the router-free probe (model.ffn.score_override norm; evaluation only) ----
// A trained router MoE chooses and gates its experts by S[t,e] = ||x_t·W_g^e||_2 (the pre-SiLU
// gate projection, the node AoE standardises on) instead of its router (AoE paper §3.1, Table 1).
// It registers the router tensor like the router source, unused, so the model's parameter table
// still matches its checkpoint. Costs a full n·d·D product per token; no backward.
typedef struct {
    long o_gate;  // w_gate [n,d,D], found by name at the first forward
    int D;
    float *U;     // [max_T,D] scratch
} Probe;

static int probe_match(const Config *c) { return !strcmp(c->ffn.type, "moe") && !strcmp(c->ffn.score_override, "norm"); }

static const char *probe_check(const Config *c, char *buf, int len) {
    (void)buf; (void)len;
    if (c->ffn.gate_rank > 0 || c->ffn.router_hidden > 0)
        return "model.ffn.score_override norm probes a plain router MoE (model.ffn.gate_rank and router_hidden 0)";
    return NULL;
}

static void probe_init(Score *s, Params *P, const Config *c) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.router", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n);
    Probe *p = xcalloc(1, sizeof *p);
    p->o_gate = -1;
    p->D = c->ffn.d_ff;
    p->U = falloc((size_t)s->max_T * p->D);
    s->priv = p;
}

static void probe_free(Score *s) {
    Probe *p = s->priv;
    if (!p) return;
    free(p->U); free(p);
}

static long probe_gate(const Score *s, const Params *P, int D) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.w_gate", s->layer);
    const TensorInfo *t = params_find(P, name);
    if (!t || t->ndim != 3 || t->shape[0] != s->n || t->shape[1] != s->d || t->shape[2] != D)
        die("internal: score_override norm: layer %d has no w_gate [%d,%d,%d]", s->layer, s->n, s->d, D);
    return (long)t->off;
}

static void probe_forward(Score *s, const Params *P, const float *x, int T) {
    Probe *p = s->priv;
    int d = s->d, n = s->n, D = p->D;
    if (p->o_gate < 0) p->o_gate = probe_gate(s, P, D);
    for (int e = 0; e < n; e++) {
        matmul(p->U, D, x, d, P->w + p->o_gate + (size_t)e * d * D, D, T, D, d, 0, 0, 1, 0);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            double q = 0;
            for (int i = 0; i < D; i++) q += (double)p->U[(size_t)t * D + i] * p->U[(size_t)t * D + i];
            s->S[(size_t)t * n + e] = (float)sqrt(q);
        }
    }
}

static void probe_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    (void)s; (void)P; (void)dx; (void)x; (void)T;
    die_input("model.ffn.score_override norm is an evaluation probe (aoe eval --select-override norm); it cannot be trained");
}

static void probe_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank, double *key) {
    (void)key;
    const Probe *p = s->priv;
    int d = s->d, n = s->n, D = p->D;
    long og = probe_gate(s, P, D);
    double *xd = xmalloc(sizeof(double) * d), *u = xmalloc(sizeof(double) * D);
    for (int k = 0; k < d; k++) xd[k] = xt[k];
    for (int e = 0; e < n; e++) {
        vecmat(u, xd, P->w + og + (size_t)e * d * D, d, D, D);
        double q = 0;
        for (int i = 0; i < D; i++) q += u[i] * u[i];
        z[e] = rank[e] = sqrt(q);
    }
    free(xd); free(u);
}

static double probe_count(const Config *c) {
    return (double)c->d_model * c->ffn.n_experts * (1 + c->ffn.d_ff);  // router (unused) + every W_g
}

const ScoreOps score_expert_norm = {
    .info = {.name = "expert_norm", .router = 0},
    .summary = "evaluation probe: ||x·W_g^e|| of every expert instead of the router (model.ffn.score_override norm)",
    .match = probe_match,
    .check = probe_check,
    .init = probe_init,
    .forward = probe_forward,
    .backward = probe_backward,
    .free = probe_free,
    .forward_naive = probe_forward_naive,
    .count = probe_count,
};

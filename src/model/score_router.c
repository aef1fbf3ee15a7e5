// score_router.c — the router MoE's score source: logits S = X·R, R = layers.L.ffn.router [d,n]
// (no bias), initialised N(0, init_std²) and weight-decayed like every matrix.
#include <string.h>

#include "model/kernels.h"
#include "model/score.h"

static int router_match(const Config *c) { return !strcmp(c->ffn.type, "moe"); }

static void router_init(Score *s, Params *P, const Config *c) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.router", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n);
}

static void router_forward(Score *s, const Params *P, const float *x, int T) {
    matmul(s->S, s->n, x, s->d, P->w + s->o_param, s->n, T, s->n, s->d, 0, 0, 1, 0);
}

// dR += x^T·dS, dx += dS·R^T.
static void router_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    int d = s->d, n = s->n;
    matmul(P->g + s->o_param, n, x, d, s->dS, n, d, n, T, 1, 0, 1, 1);
    matmul(dx, d, s->dS, n, P->w + s->o_param, n, T, d, n, 0, 1, 1, 1);
}

static void router_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank,
                                 double *key) {
    (void)key;
    const float *W = P->w + s->o_param;
    for (int e = 0; e < s->n; e++) {
        z[e] = 0;
        for (int k = 0; k < s->d; k++) z[e] += (double)xt[k] * W[(size_t)k * s->n + e];
        rank[e] = z[e];
    }
}

static void router_backward_naive(const Score *s, const Params *P, const float *xt, const double *z,
                                  const double *rank, const double *key, const double *dz, const double *dkey,
                                  double *G, double *dxt) {
    (void)z; (void)rank; (void)key; (void)dkey;
    int d = s->d, n = s->n;
    const float *W = P->w + s->o_param;
    for (int k = 0; k < d; k++)
        for (int e = 0; e < n; e++) {
            G[s->o_param + (size_t)k * n + e] += xt[k] * dz[e];
            dxt[k] += dz[e] * W[(size_t)k * n + e];
        }
}

static double router_count(const Config *c) { return (double)c->d_model * c->ffn.n_experts; }

const ScoreOps score_router = {
    .info = {.name = "router", .router = 1},
    .keys = ROUTER_PICK_KEYS " z_loss erc_coef erc_alpha erc_detach_router erc_allow_alpha_gt1 erc_log",
    .summary = "router logits X·R (model.ffn.type moe)",
    .match = router_match,
    .init = router_init,
    .forward = router_forward,
    .backward = router_backward,
    .forward_naive = router_forward_naive,
    .backward_naive = router_backward_naive,
    .count = router_count,
};

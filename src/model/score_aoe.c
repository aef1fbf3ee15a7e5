// score_aoe.c — Autonomy-of-Experts' score source (methods.md §1.2, §1.5): every expert's key
// c_te = x_t·W_down^e (r = model.ffn.d_low), S[t,e] = ||c_te||_2. W_down of all experts is one
// tensor layers.L.ffn.w_down [d,n·r], column block e·r..(e+1)·r = expert e, so C = X·W_down is
// one product. The keys are the experts' gate-branch input (the layer's w_up [n,r,D]).
#include <math.h>
#include <string.h>

#include "model/kernels.h"
#include "model/score.h"

static int aoe_match(const Config *c) { return !strcmp(c->ffn.type, "aoe"); }

static const char *aoe_check(const Config *c, char *buf, int len) {
    if (c->ffn.d_low >= c->d_model) {
        snprintf(buf, len, "model.ffn.d_low (%d) must be < model.d_model (%d)", c->ffn.d_low, c->d_model);
        return buf;
    }
    return NULL;
}

static int aoe_key_dim(const Config *c) { return c->ffn.d_low; }

static void aoe_init(Score *s, Params *P, const Config *c) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.w_down", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n * s->r);
}

static void aoe_forward(Score *s, const Params *P, const float *x, int T) {
    int d = s->d, n = s->n, r = s->r;
    matmul(s->key, n * r, x, d, P->w + s->o_param, n * r, T, n * r, d, 0, 0, 1, 0);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n; e++) {
            const float *c = s->key + (size_t)t * n * r + (size_t)e * r;
            double q = 0;
#pragma omp simd reduction(+ : q)
            for (int k = 0; k < r; k++) q += (double)c[k] * c[k];
            s->S[(size_t)t * n + e] = (float)sqrt(q);
        }
}

// dC = dS·C/max(S, 1e-12) (the norm) + dkey (the experts' path), in place in dkey;
// dW_down += x^T·dC, dx += dC·W_down^T.
static void aoe_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    int d = s->d, n = s->n, r = s->r;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n; e++) {
            size_t o = (size_t)t * n * r + (size_t)e * r;
            float q = s->S[(size_t)t * n + e];
            float k = s->dS[(size_t)t * n + e] / (q > 1e-12f ? q : 1e-12f);
            for (int j = 0; j < r; j++) s->dkey[o + j] = k * s->key[o + j] + s->dkey[o + j];
        }
    matmul(P->g + s->o_param, n * r, x, d, s->dkey, n * r, d, n * r, T, 1, 0, 1, 1);
    matmul(dx, d, s->dkey, n * r, P->w + s->o_param, n * r, T, d, n * r, 0, 1, 1, 1);
}

static void aoe_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank,
                              double *key) {
    int d = s->d, n = s->n, r = s->r;
    const float *W = P->w + s->o_param;
    for (int e = 0; e < n; e++) {
        double *c = key + (size_t)e * r, ss = 0;
        for (int j = 0; j < r; j++) {
            c[j] = 0;
            for (int k = 0; k < d; k++) c[j] += (double)xt[k] * W[(size_t)k * n * r + (size_t)e * r + j];
            ss += c[j] * c[j];
        }
        z[e] = rank[e] = sqrt(ss);
    }
}

static void aoe_backward_naive(const Score *s, const Params *P, const float *xt, const double *z,
                               const double *rank, const double *key, const double *dz, const double *dkey,
                               double *G, double *dxt) {
    (void)rank;
    int d = s->d, n = s->n, r = s->r;
    const float *W = P->w + s->o_param;
    for (int e = 0; e < n; e++) {
        const double *c = key + (size_t)e * r;
        for (int j = 0; j < r; j++) {
            double dcj = dkey[(size_t)e * r + j] + dz[e] * c[j] / fmax(z[e], 1e-12);
            for (int k = 0; k < d; k++) {
                size_t o = (size_t)k * n * r + (size_t)e * r + j;
                G[s->o_param + o] += xt[k] * dcj;
                dxt[k] += dcj * W[o];
            }
        }
    }
}

static double aoe_count(const Config *c) { return (double)c->d_model * c->ffn.n_experts * c->ffn.d_low; }

const ScoreOps score_aoe_norm = {
    .info = {.name = "aoe_norm", .router = 0},
    .summary = "AoE: L2 norm of each expert's key x·W_down^e (model.ffn.type aoe)",
    .match = aoe_match,
    .check = aoe_check,
    .key_dim = aoe_key_dim,
    .init = aoe_init,
    .forward = aoe_forward,
    .backward = aoe_backward,
    .forward_naive = aoe_forward_naive,
    .backward_naive = aoe_backward_naive,
    .count = aoe_count,
    .expert_work = 1,
    .mean_stat = "norm_mean",
};

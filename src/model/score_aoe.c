// score_aoe.c — Autonomy-of-Experts' score source (methods.md §1.2, §1.5): every expert's key
// c_te = x_t·W_down^e (r = model.ffn.d_low), S[t,e] = ||c_te|| in the norm model.ffn.aoe_norm:
// l2 (the paper's), l1 = Σ|c|, linf = max|c| (the paper's App. A ablation). Backward dS → dc:
// l2 c/||c||; l1 sign(c); linf sign(c_k) at the first k of largest |c_k| (a subgradient, 0 at c = 0). W_down of all experts is one
// tensor layers.L.ffn.w_down [d,n·r], column block e·r..(e+1)·r = expert e, so C = X·W_down is
// one product. The keys are the experts' gate-branch input (the layer's w_up [n,r,D]).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/score.h"

static int aoe_match(const Config *c) { return !strcmp(c->ffn.type, "aoe") && !strcmp(c->ffn.aoe_norm_at, "down"); }

static const char *aoe_check(const Config *c, char *buf, int len) {
    if (c->ffn.d_low >= c->d_model) {
        snprintf(buf, len, "model.ffn.d_low (%d) must be < model.d_model (%d)", c->ffn.d_low, c->d_model);
        return buf;
    }
    return NULL;
}

static int aoe_key_dim(const Config *c) { return c->ffn.d_low; }

enum { NORM_L2, NORM_L1, NORM_LINF };
static int norm_kind(const Score *s) { return *(const int *)s->priv; }
int aoe_norm_kind(const Config *c) {
    return !strcmp(c->ffn.aoe_norm, "l1") ? NORM_L1 : !strcmp(c->ffn.aoe_norm, "linf") ? NORM_LINF : NORM_L2;
}

// The norm of c [r] (double) and, if g != NULL, its gradient g [r] scaled by k: g += k·∂||c||/∂c.
// One function for the fast path (float keys) and the naive twin (double keys) via two wrappers.
#define NORM_BODY(T)                                                                                    \
    double q = 0;                                                                                       \
    int arg = 0;                                                                                        \
    for (int j = 0; j < r; j++) {                                                                       \
        double a = c[j];                                                                                \
        if (kind == NORM_L2) q += a * a;                                                                \
        else if (kind == NORM_L1) q += fabs(a);                                                         \
        else if (fabs(a) > q) { q = fabs(a); arg = j; }                                                 \
    }                                                                                                   \
    if (kind == NORM_L2) q = sqrt(q);                                                                   \
    if (!g) return q;                                                                                   \
    if (kind == NORM_L2) { double m = k / fmax(q, 1e-12); for (int j = 0; j < r; j++) g[j] += (T)(m * c[j]); } \
    else if (kind == NORM_L1) { for (int j = 0; j < r; j++) g[j] += (T)(c[j] > 0 ? k : c[j] < 0 ? -k : 0); } \
    else if (c[arg] != 0) g[arg] += (T)(c[arg] > 0 ? k : -k);                                           \
    return q;
double aoe_norm_f(int kind, const float *c, int r, double k, float *g) { NORM_BODY(float) }
double aoe_norm_d(int kind, const double *c, int r, double k, double *g) { NORM_BODY(double) }
#undef NORM_BODY

static void aoe_init(Score *s, Params *P, const Config *c) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.w_down", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n * s->r);
    int *kind = xmalloc(sizeof(int));
    *kind = aoe_norm_kind(c);
    s->priv = kind;
}

static void aoe_free(Score *s) { free(s->priv); }

static void aoe_forward(Score *s, const Params *P, const float *x, int T) {
    int d = s->d, n = s->n, r = s->r;
    matmul(s->key, n * r, x, d, P->w + s->o_param, n * r, T, n * r, d, 0, 0, 1, 0);
    int kind = norm_kind(s);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n; e++)
            s->S[(size_t)t * n + e] = (float)aoe_norm_f(kind, s->key + (size_t)t * n * r + (size_t)e * r, r, 0, NULL);
}

// dC = dS·∂||C||/∂C (the norm) + dkey (the experts' path), in place in dkey;
// dW_down += x^T·dC, dx += dC·W_down^T.
static void aoe_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    int d = s->d, n = s->n, r = s->r, kind = norm_kind(s);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n; e++) {
            size_t o = (size_t)t * n * r + (size_t)e * r;
            aoe_norm_f(kind, s->key + o, r, s->dS[(size_t)t * n + e], s->dkey + o);
        }
    matmul(P->g + s->o_param, n * r, x, d, s->dkey, n * r, d, n * r, T, 1, 0, 1, 1);
    matmul(dx, d, s->dkey, n * r, P->w + s->o_param, n * r, T, d, n * r, 0, 1, 1, 1);
}

// Naive twins of the keys (shared with score_aoe_at.c): c_e = x_t·W_down^e [r] for expert e; and
// back, G[W_down^e] += x_t ⊗ dc, dxt += W_down^e·dc.
void aoe_key_naive(const Score *s, const Params *P, const float *xt, int e, double *c) {
    int d = s->d, nr = s->n * s->r, r = s->r;
    const float *W = P->w + s->o_param + (size_t)e * r;
    for (int j = 0; j < r; j++) {
        c[j] = 0;
        for (int k = 0; k < d; k++) c[j] += (double)xt[k] * W[(size_t)k * nr + j];
    }
}

void aoe_key_backward_naive(const Score *s, const Params *P, const float *xt, int e, const double *dc, double *G,
                            double *dxt) {
    int d = s->d, nr = s->n * s->r, r = s->r;
    size_t o0 = (size_t)s->o_param + (size_t)e * r;
    for (int j = 0; j < r; j++)
        for (int k = 0; k < d; k++) {
            size_t o = o0 + (size_t)k * nr + j;
            G[o] += xt[k] * dc[j];
            dxt[k] += dc[j] * P->w[o];
        }
}

static void aoe_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank,
                              double *key) {
    for (int e = 0; e < s->n; e++) {
        double *c = key + (size_t)e * s->r;
        aoe_key_naive(s, P, xt, e, c);
        z[e] = rank[e] = aoe_norm_d(norm_kind(s), c, s->r, 0, NULL);
    }
}

static void aoe_backward_naive(const Score *s, const Params *P, const float *xt, const double *z,
                               const double *rank, const double *key, const double *dz, const double *dkey,
                               double *G, double *dxt) {
    (void)rank; (void)z;
    int r = s->r;
    double *dc = xcalloc(r, sizeof(double));
    for (int e = 0; e < s->n; e++) {
        memcpy(dc, dkey + (size_t)e * r, sizeof(double) * r);
        aoe_norm_d(norm_kind(s), key + (size_t)e * r, r, dz[e], dc);
        aoe_key_backward_naive(s, P, xt, e, dc, G, dxt);
    }
    free(dc);
}

static double aoe_count(const Config *c) { return (double)c->d_model * c->ffn.n_experts * c->ffn.d_low; }

const ScoreOps score_aoe_norm = {
    .info = {.name = "aoe_norm", .router = 0},
    .keys = "d_low aoe_norm aoe_norm_at",
    .summary = "AoE: the norm (model.ffn.aoe_norm) of each expert's key x·W_down^e (model.ffn.type aoe)",
    .match = aoe_match,
    .check = aoe_check,
    .key_dim = aoe_key_dim,
    .init = aoe_init,
    .forward = aoe_forward,
    .backward = aoe_backward,
    .free = aoe_free,
    .forward_naive = aoe_forward_naive,
    .backward_naive = aoe_backward_naive,
    .count = aoe_count,
    .expert_work = 1,
    .mean_stat = "norm_mean",
};

// grap.c — GrAP affinities (see grap.h): group sums in double, one pass over x per token; the
// score source built on them and its naive twin.
#include "model/grap.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "model/score.h"

// ||x_t|| is floored so that a zero row gives δ = 0 instead of NaN (RMSNorm output never is).
#define GRAP_NORM_FLOOR 1e-12

void grap_forward(float *S, float *aff, float *xnorm, const float *x, int T, int d, int n, int cosine) {
    int m = d / n;
    double rm = sqrt((double)m);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)xt[k] * xt[k];
        double nx = fmax(sqrt(ss), GRAP_NORM_FLOOR);
        xnorm[t] = (float)nx;
        for (int i = 0; i < n; i++) {
            double g = 0;
            for (int k = i * m; k < (i + 1) * m; k++) g += xt[k];
            aff[(size_t)t * n + i] = (float)(g / (rm * nx));
            S[(size_t)t * n + i] = (float)(cosine ? g / (rm * nx) : g / m);
        }
    }
}

void grap_backward(float *dx, const float *dS, const float *aff, const float *xnorm, const float *x, int T,
                   int d, int n, int cosine) {
    int m = d / n;
    double rm = sqrt((double)m);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *ds = dS + (size_t)t * n, *xt = x + (size_t)t * d;
        float *o = dx + (size_t)t * d;
        if (!cosine) {
            for (int k = 0; k < d; k++) o[k] += ds[k / m] / m;
            continue;
        }
        double nx = xnorm[t], proj = 0;
        for (int i = 0; i < n; i++) proj += (double)ds[i] * aff[(size_t)t * n + i];
        for (int k = 0; k < d; k++) o[k] += (float)(ds[k / m] / (rm * nx) - xt[k] * proj / (nx * nx));
    }
}

// ---- the score source (score.h): asked for by model.ffn.select etr ----
typedef struct {
    int cosine;    // S = δ (model.ffn.etr_gate cosine), else S = z
    float *xnorm;  // [max_T] ||x_t|| of the last forward
} Grap;

static const char *grap_check(const Config *c, char *buf, int len) {
    if (strcmp(c->ffn.type, "moe")) {
        snprintf(buf, len, "model.ffn.select %s brings its own scores (fixed GrAP affinities instead of a router); "
                 "use it with model.ffn.type moe", c->ffn.select);
        return buf;
    }
    if (c->d_model % c->ffn.n_experts) {
        snprintf(buf, len, "model.d_model (%d) must be divisible by model.ffn.n_experts (%d) for model.ffn.select %s "
                 "(GrAP affinity groups of d_model/n_experts features)", c->d_model, c->ffn.n_experts, c->ffn.select);
        return buf;
    }
    return NULL;
}

static void grap_init(Score *s, Params *P, const Config *c) {
    (void)P;
    Grap *g = xcalloc(1, sizeof *g);
    g->cosine = !strcmp(c->ffn.etr_gate, "cosine");
    g->xnorm = falloc(s->max_T);
    s->rank = falloc((size_t)s->max_T * s->n);
    s->priv = g;
}

static void grap_free(Score *s) {
    Grap *g = s->priv;
    if (g) free(g->xnorm);
    free(g);
}

static void grap_score_forward(Score *s, const Params *P, const float *x, int T) {
    (void)P;
    Grap *g = s->priv;
    grap_forward(s->S, s->rank, g->xnorm, x, T, s->d, s->n, g->cosine);
}

static void grap_score_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    (void)P;
    Grap *g = s->priv;
    grap_backward(dx, s->dS, s->rank, g->xnorm, x, T, s->d, s->n, g->cosine);
}

// The twin: z = group mean, δ = cos(x, w_e) with w_e = n/d on group e, in double (no norm floor).
static void grap_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank,
                               double *key) {
    (void)P; (void)key;
    const Grap *gr = s->priv;
    int d = s->d, n = s->n, m = d / n;
    double ss = 0;
    for (int k = 0; k < d; k++) ss += (double)xt[k] * xt[k];
    double xn = sqrt(ss);
    for (int e = 0; e < n; e++) {
        double g = 0;
        for (int k = e * m; k < (e + 1) * m; k++) g += xt[k];
        rank[e] = g / (sqrt((double)m) * xn);
        z[e] = gr->cosine ? rank[e] : g / m;
    }
}

static void grap_backward_naive(const Score *s, const Params *P, const float *xt, const double *z,
                                const double *rank, const double *key, const double *dz, const double *dkey,
                                double *G, double *dxt) {
    (void)P; (void)z; (void)key; (void)dkey; (void)G;
    const Grap *gr = s->priv;
    int d = s->d, n = s->n, m = d / n;
    double ss = 0, proj = 0;
    for (int k = 0; k < d; k++) ss += (double)xt[k] * xt[k];
    double nx = sqrt(ss);
    for (int e = 0; e < n; e++) proj += dz[e] * rank[e];
    for (int k = 0; k < d; k++)
        dxt[k] += gr->cosine ? dz[k / m] / (sqrt((double)m) * nx) - xt[k] * proj / (nx * nx) : dz[k / m] / m;
}

const ScoreOps score_grap = {
    .info = {.name = "grap", .router = 0},
    .keys = "etr_gate",
    .summary = "ETR's fixed GrAP affinities: group means of x (or their cosines), no parameters",
    .check = grap_check,
    .init = grap_init,
    .forward = grap_score_forward,
    .backward = grap_score_backward,
    .free = grap_free,
    .forward_naive = grap_forward_naive,
    .backward_naive = grap_backward_naive,
};

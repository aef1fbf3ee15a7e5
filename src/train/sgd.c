// sgd.c — SGD with (heavy-ball) momentum and decoupled weight decay as an OptimOps entry:
//   b = μ·b + g;  w -= lr·(b + wd·w),  μ = train.beta1.
// State: the momentum buffer "sgd.momentum". Also the proof that an optimizer is one file plus
// one table line (tests/test_ckpt.c trains with it and resumes bit-identically).
#include "train/optim.h"

static void sgd_update(Optim *o, Params *P, const Config *c, float lr, float gscale) {
    float mu = c->beta1;
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        float wd = ti->decay ? c->weight_decay : 0;
        float *w = P->w + ti->off, *g = P->g + ti->off, *b = o->s[0] + ti->off;
        long n = (long)ti->n;
#pragma omp parallel for simd
        for (long j = 0; j < n; j++) {
            b[j] = mu * b[j] + g[j] * gscale;
            w[j] -= lr * (b[j] + wd * w[j]);
        }
    }
}

static void sgd_naive(Optim *o, Params *P, const Config *c, float lr) {
    double mu = c->beta1;
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        for (size_t j = 0; j < ti->n; j++) {
            size_t k = ti->off + j;
            o->s[0][k] = (float)(mu * o->s[0][k] + P->g[k]);
            P->w[k] = (float)(P->w[k] - lr * ((double)o->s[0][k] + (ti->decay ? c->weight_decay : 0) * P->w[k]));
        }
    }
}

const OptimOps optim_sgd = {"sgd", 1, {"sgd.momentum"}, sgd_update, sgd_naive};

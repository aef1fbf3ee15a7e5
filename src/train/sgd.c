// sgd.c — SGD with (heavy-ball) momentum and decoupled weight decay as an OptimOps entry:
//   b = μ·b + g;  w -= lr·(b + wd·w),  μ = train.beta1.
// State: the momentum buffer "sgd.momentum". Also the proof that an optimizer is one file plus
// one table line (tests/test_ckpt.c trains with it and resumes bit-identically).
#include "train/optim.h"

static void sgd_update(Optim *o, Params *P, const Config *c, float lr, float gscale, size_t lo, size_t hi) {
    float mu = c->beta1;
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        size_t j0;
        long n = (long)tensor_part(ti, lo, hi, &j0);
        if (!n) continue;
        size_t k = ti->off + j0;
        float wd = ti->decay ? c->weight_decay : 0;
        float *w = P->w + k, *g = P->g + k, *b = o->s[0] + k;
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

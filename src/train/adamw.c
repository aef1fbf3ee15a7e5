// adamw.c — AdamW (decoupled weight decay, applied as lr·wd·w) as an OptimOps entry.
// State: first and second moments "adamw.m", "adamw.v".
#include <math.h>

#include "train/optim.h"

static void adamw_update(Optim *o, Params *P, const Config *c, float lr, float gscale, size_t lo, size_t hi) {
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    float bc1 = 1.0f - powf(b1, (float)o->t), bc2 = 1.0f - powf(b2, (float)o->t);
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        size_t j0;
        long n = (long)tensor_part(ti, lo, hi, &j0);
        if (!n) continue;
        size_t k = ti->off + j0;
        float wd = ti->decay ? c->weight_decay : 0;
        float *w = P->w + k, *g = P->g + k, *m = o->s[0] + k, *v = o->s[1] + k;
#pragma omp parallel for simd
        for (long j = 0; j < n; j++) {
            float gj = g[j] * gscale;  // exact when gscale == 1
            m[j] = b1 * m[j] + (1 - b1) * gj;
            v[j] = b2 * v[j] + (1 - b2) * gj * gj;
            float mh = m[j] / bc1, vh = v[j] / bc2;
            w[j] -= lr * (mh / (sqrtf(vh) + eps) + wd * w[j]);
        }
    }
}

static void adamw_naive(Optim *o, Params *P, const Config *c, float lr) {
    double b1 = c->beta1, b2 = c->beta2;
    float *M = o->s[0], *V = o->s[1];
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        for (size_t j = 0; j < ti->n; j++) {
            size_t k = ti->off + j;
            double g = P->g[k];
            M[k] = (float)(b1 * M[k] + (1 - b1) * g);
            V[k] = (float)(b2 * V[k] + (1 - b2) * g * g);
            double mh = M[k] / (1 - pow(b1, o->t)), vh = V[k] / (1 - pow(b2, o->t));
            P->w[k] = (float)(P->w[k] - lr * (mh / (sqrt(vh) + c->eps) + (ti->decay ? c->weight_decay : 0) * P->w[k]));
        }
    }
}

const OptimOps optim_adamw = {"adamw", 2, {"adamw.m", "adamw.v"}, adamw_update, adamw_naive};

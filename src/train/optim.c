// optim.c — see optim.h.
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "model/kernels.h"

void adamw_init(AdamW *o, const Params *P) {
    o->m = falloc(P->total);
    o->v = falloc(P->total);
    o->t = 0;
}
void adamw_free(AdamW *o) { free(o->m); free(o->v); o->m = o->v = NULL; }

// The update with the gradient read as gscale·g (gradient clipping folded into the one pass
// over the moments: the gradient block is not rewritten first).
static void adamw_update(AdamW *o, Params *P, const Config *c, float lr, float gscale) {
    o->t++;
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    float bc1 = 1.0f - powf(b1, (float)o->t), bc2 = 1.0f - powf(b2, (float)o->t);
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        float wd = ti->decay ? c->weight_decay : 0;
        float *w = P->w + ti->off, *g = P->g + ti->off, *m = o->m + ti->off, *v = o->v + ti->off;
        long n = (long)ti->n;
#pragma omp parallel for simd
        for (long j = 0; j < n; j++) {
            float gj = g[j] * gscale;  // exact when gscale == 1
            m[j] = b1 * m[j] + (1 - b1) * gj;
            v[j] = b2 * v[j] + (1 - b2) * gj * gj;
            float mh = m[j] / bc1, vh = v[j] / bc2;
            w[j] -= lr * (mh / (sqrtf(vh) + eps) + wd * w[j]);
        }
    }
    kernels_weights_changed(P->w);  // bf16 precision: refresh the weights' bf16 copy
}

void adamw_step(AdamW *o, Params *P, const Config *c, float lr) { adamw_update(o, P, c, lr, 1.0f); }

double adamw_step_clip(AdamW *o, Params *P, const Config *c, float lr, double max_norm) {
    double n = grad_norm(P);
    adamw_update(o, P, c, lr, clip_scale(n, max_norm));
    return n;
}

void adamw_step_naive(AdamW *o, Params *P, const Config *c, float lr) {
    o->t++;
    double b1 = c->beta1, b2 = c->beta2;
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *ti = &P->t[i];
        for (size_t j = 0; j < ti->n; j++) {
            size_t k = ti->off + j;
            double g = P->g[k];
            o->m[k] = (float)(b1 * o->m[k] + (1 - b1) * g);
            o->v[k] = (float)(b2 * o->v[k] + (1 - b2) * g * g);
            double mh = o->m[k] / (1 - pow(b1, o->t)), vh = o->v[k] / (1 - pow(b2, o->t));
            P->w[k] = (float)(P->w[k] - lr * (mh / (sqrt(vh) + c->eps) + (ti->decay ? c->weight_decay : 0) * P->w[k]));
        }
    }
    kernels_weights_changed(P->w);
}

float lr_at(const Config *c, long step) {
    if (c->warmup > 0 && step < c->warmup) return c->lr * (float)(step + 1) / c->warmup;
    long span = c->steps - c->warmup;
    if (span <= 0) return c->lr;
    double p = (double)(step - c->warmup) / span;
    if (p > 1) p = 1;
    return (float)(c->min_lr + 0.5 * (c->lr - c->min_lr) * (1 + cos(M_PI * p)));
}

double grad_norm(const Params *P) {
    // Fixed-size blocks summed in order: the same value whatever the thread count.
    const long blk = 1 << 16;
    long nb = ((long)P->total + blk - 1) / blk;
    double *part = calloc(nb, sizeof(double)), s = 0;
#pragma omp parallel for
    for (long b = 0; b < nb; b++) {
        long e = (b + 1) * blk < (long)P->total ? (b + 1) * blk : (long)P->total;
        const float *g = P->g;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (long i = b * blk; i < e; i++) acc += (double)g[i] * g[i];
        part[b] = acc;
    }
    for (long b = 0; b < nb; b++) s += part[b];
    free(part);
    return sqrt(s);
}

float clip_scale(double norm, double max_norm) {
    return max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
}

double clip_grad(Params *P, double max_norm) {
    double n = grad_norm(P);
    float sc = clip_scale(n, max_norm);
    if (sc != 1.0f) {
#pragma omp parallel for
        for (long i = 0; i < (long)P->total; i++) P->g[i] *= sc;
    }
    return n;
}

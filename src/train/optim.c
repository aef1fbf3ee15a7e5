// optim.c — the optimizer table and what every optimizer shares: the step driver (t, clipping
// folded into the update), the learning-rate schedule, the gradient norm. See optim.h.
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"

// The optimizers `train.optimizer` can name. One line per optimizer.
extern const OptimOps optim_adamw, optim_sgd;
static const OptimOps *const optim_table[] = {&optim_adamw, &optim_sgd};
#define N_OPTIM (int)(sizeof optim_table / sizeof *optim_table)

const OptimOps *optim_ops_for(const char *name) {
    for (int i = 0; i < N_OPTIM; i++)
        if (!strcmp(optim_table[i]->name, name)) return optim_table[i];
    return NULL;
}

const char *optim_names(void) {
    static char buf[256];
    if (!buf[0])
        for (int i = 0; i < N_OPTIM; i++) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "|" : "", optim_table[i]->name);
    return buf;
}

const OptimOps *optim_for_config(const Config *c, const char *src) {
    const OptimOps *o = optim_ops_for(c->optimizer);
    if (!o) die_input("%s: train.optimizer: unknown optimizer '%s' (expected %s)", src, c->optimizer, optim_names());
    return o;
}

void optim_init(Optim *o, const OptimOps *ops, const Params *P) {
    memset(o, 0, sizeof *o);
    o->ops = ops;
    for (int k = 0; k < ops->n_state; k++) o->s[k] = falloc(P->total);
}

void optim_free(Optim *o) {
    for (int k = 0; k < OPT_MAX_STATE; k++) free(o->s[k]);
    memset(o, 0, sizeof *o);
}

void optim_step_part(Optim *o, Params *P, const Config *c, float lr, float gscale, size_t lo, size_t hi) {
    o->t++;
    o->ops->update(o, P, c, lr, gscale, lo, hi);
}

void optim_step_scaled(Optim *o, Params *P, const Config *c, float lr, float gscale) {
    optim_step_part(o, P, c, lr, gscale, 0, P->total);
    kernels_weights_changed(P->w);  // bf16 precision: refresh the weights' bf16 copy
}

void optim_step(Optim *o, Params *P, const Config *c, float lr) { optim_step_scaled(o, P, c, lr, 1.0f); }

double optim_step_clip(Optim *o, Params *P, const Config *c, float lr, double max_norm) {
    double n = grad_norm(P);
    optim_step_scaled(o, P, c, lr, clip_scale(n, max_norm));
    return n;
}

void optim_step_naive(Optim *o, Params *P, const Config *c, float lr) {
    o->t++;
    o->ops->update_naive(o, P, c, lr);
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

double grad_sumsq_part(const Params *P, size_t lo, size_t hi) {
    // Fixed-size blocks summed in order: the same value whatever the thread count.
    const long blk = 1 << 16;
    long n = hi > lo ? (long)(hi - lo) : 0, nb = (n + blk - 1) / blk;
    double *part = xcalloc(nb ? nb : 1, sizeof(double)), s = 0;
    const float *g = P->g + lo;
#pragma omp parallel for
    for (long b = 0; b < nb; b++) {
        long e = (b + 1) * blk < n ? (b + 1) * blk : n;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (long i = b * blk; i < e; i++) acc += (double)g[i] * g[i];
        part[b] = acc;
    }
    for (long b = 0; b < nb; b++) s += part[b];
    free(part);
    return s;
}

double grad_norm(const Params *P) { return sqrt(grad_sumsq_part(P, 0, P->total)); }

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

// params.c — see params.h.
#include "model/params.h"

#include "util/mem.h"

#include "model/kernels.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

size_t params_add(Params *p, const char *name, int decay, int init, float init_scale, int ndim, ...) {
    if (p->n == p->cap) p->t = xrealloc(p->t, sizeof(TensorInfo) * (p->cap = p->cap ? 2 * p->cap : 64));
    TensorInfo *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    va_list ap;
    va_start(ap, ndim);
    t->ndim = ndim;
    t->n = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = va_arg(ap, int); t->n *= (size_t)t->shape[i]; }
    va_end(ap);
    t->decay = decay; t->init = init; t->init_scale = init_scale;
    t->off = p->total;
    p->total += (t->n + 15) & ~(size_t)15;  // keep every tensor 64-byte aligned
    return t->off;
}

void params_alloc(Params *p) {
    p->w = falloc(p->total);
    p->g = falloc(p->total);
    // bf16 precision keeps a bf16 copy of w (a memory estimate adds it without making it)
    if (!mem_dry) kernels_weights_register(p->w, p->total);
}

void params_init(Params *p, Rng *rng) {
    if (mem_dry) return;  // a memory estimate (util/mem.h) counts the block, never touches it
    for (int i = 0; i < p->n; i++) {
        TensorInfo *t = &p->t[i];
        float *w = p->w + t->off;
        for (size_t j = 0; j < t->n; j++) {
            switch (t->init) {
            case INIT_NORMAL: w[j] = t->init_scale * rng_normal(rng); break;
            case INIT_ONES: w[j] = 1; break;
            case INIT_ZEROS: w[j] = 0; break;
            default: w[j] = t->init_scale * (float)(2 * rng_uniform(rng) - 1); break;
            }
        }
    }
    kernels_weights_changed(p->w);
}

void params_zero_grad(Params *p) { memset(p->g, 0, p->total * sizeof(float)); }

void params_free(Params *p) {
    if (p->w) kernels_weights_unregister(p->w);
    free(p->t); free(p->w); free(p->g);
    memset(p, 0, sizeof *p);
}

const TensorInfo *params_find(const Params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name)) return &p->t[i];
    return NULL;
}

// params.c — see params.h.
#include "model/params.h"

#include "util/mem.h"

#include "model/kernels.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static size_t add(Params *p, const char *name, int decay, int init, float init_scale, int slice0, int slices,
                  int ndim, va_list ap) {
    if (p->n == p->cap) p->t = xrealloc(p->t, sizeof(TensorInfo) * (p->cap = p->cap ? 2 * p->cap : 64));
    TensorInfo *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->gn = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = va_arg(ap, int); t->gn *= (size_t)t->shape[i]; }
    if (slices < 0) slices = t->shape[0];
    if (slice0 < 0 || slices < 1 || slice0 + slices > t->shape[0])
        die("internal: tensor %s: slices %d..%d of %d", name, slice0, slice0 + slices - 1, t->shape[0]);
    t->slice0 = slice0; t->slices = slices;
    t->n = t->gn / t->shape[0] * slices;
    t->decay = decay; t->init = init; t->init_scale = init_scale;
    t->off = p->total;
    t->goff = p->gtotal;
    p->total += (t->n + 15) & ~(size_t)15;  // keep every tensor 64-byte aligned
    p->gtotal += (t->gn + 15) & ~(size_t)15;
    return t->off;
}

size_t params_add(Params *p, const char *name, int decay, int init, float init_scale, int ndim, ...) {
    va_list ap;
    va_start(ap, ndim);
    size_t off = add(p, name, decay, init, init_scale, 0, -1, ndim, ap);
    va_end(ap);
    return off;
}

size_t params_add_slices(Params *p, const char *name, int decay, int init, float init_scale, int slice0, int slices,
                         int ndim, ...) {
    va_list ap;
    va_start(ap, ndim);
    size_t off = add(p, name, decay, init, init_scale, slice0, slices, ndim, ap);
    va_end(ap);
    return off;
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
        size_t lo = t->gn / t->shape[0] * t->slice0, hi = lo + t->n;  // the slices this process keeps
        for (size_t j = 0; j < t->gn; j++) {
            float v;
            switch (t->init) {
            case INIT_NORMAL: v = t->init_scale * rng_normal(rng); break;
            case INIT_ONES: v = 1; break;
            case INIT_ZEROS: v = 0; break;
            default: v = t->init_scale * (float)(2 * rng_uniform(rng) - 1); break;
            }
            if (j >= lo && j < hi) w[j - lo] = v;
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

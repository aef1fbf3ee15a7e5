// params.h — all parameters live in one contiguous block described by a table of named tensors;
// gradients and the AdamW moments mirror that layout, so the optimizer is one flat loop and a
// checkpoint is a table plus one write. Layers register tensors at build time and keep offsets.
#ifndef AOE_PARAMS_H
#define AOE_PARAMS_H

#include <stddef.h>

#include "util/common.h"

enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS, INIT_UNIFORM };

typedef struct {
    char name[64];
    int ndim, shape[4];
    size_t off, n;
    int decay;         // AdamW weight decay applies (not for norms)
    int init;          // INIT_*
    float init_scale;  // std for NORMAL, bound for UNIFORM
} TensorInfo;

typedef struct {
    TensorInfo *t;
    int n, cap;
    size_t total;      // floats
    float *w, *g;      // parameters and gradients [total]
} Params;

// Registers a tensor of shape dims[0..ndim-1]; returns its offset into w/g. Call before params_alloc.
size_t params_add(Params *p, const char *name, int decay, int init, float init_scale, int ndim, ...);
void params_alloc(Params *p);               // allocates w and g (zeroed)
void params_init(Params *p, Rng *rng);      // fills w by each tensor's init rule, in table order
void params_zero_grad(Params *p);
void params_free(Params *p);
const TensorInfo *params_find(const Params *p, const char *name);

#endif

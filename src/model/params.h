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
    int ndim, shape[4];   // the whole tensor's shape (as in checkpoints)
    size_t off, n;        // where this process stores it in w/g, and how many floats it holds
    // Sharded along the first axis (expert parallelism): this process holds only slices
    // slice0 .. slice0+slices-1 of shape[0] (n = slices·(gn/shape[0])); slices = shape[0] otherwise.
    // goff, gn: offset and size in the whole model's layout, the one checkpoints store.
    int slice0, slices;
    size_t goff, gn;
    int decay;         // AdamW weight decay applies (not for norms)
    int init;          // INIT_*
    float init_scale;  // std for NORMAL, bound for UNIFORM
} TensorInfo;

typedef struct {
    TensorInfo *t;
    int n, cap;
    size_t total;      // floats this process holds
    size_t gtotal;     // floats of the whole model (= total unless some tensor is sharded)
    float *w, *g;      // parameters and gradients [total]
} Params;

// Registers a tensor of shape dims[0..ndim-1]; returns its offset into w/g. Call before params_alloc.
size_t params_add(Params *p, const char *name, int decay, int init, float init_scale, int ndim, ...);
// The same for a tensor of which this process holds only slices slice0 .. slice0+slices-1 of the
// first axis (expert parallelism: the experts of this rank). Its offset counts local floats only.
size_t params_add_slices(Params *p, const char *name, int decay, int init, float init_scale, int slice0, int slices,
                         int ndim, ...);
static inline int tensor_sharded(const TensorInfo *t) { return t->n != t->gn; }
void params_alloc(Params *p);               // allocates w and g (zeroed)
// Fills w by each tensor's init rule, in table order; a sharded tensor draws the whole tensor's
// values and keeps its slices, so every rank gets the values one process would.
void params_init(Params *p, Rng *rng);
void params_zero_grad(Params *p);
void params_free(Params *p);
const TensorInfo *params_find(const Params *p, const char *name);

#endif

// optim.h — optimizers behind a table (like FfnOps), the learning-rate schedule and gradient
// clipping. An optimizer keeps n_state arrays that mirror the Params layout (so a checkpoint stores
// them as flat arrays under the names the optimizer gives) and a step count t. Adding one = a file
// with its OptimOps + a line in optim_table (optim.c); `train.optimizer` picks it by name.
#ifndef AOE_OPTIM_H
#define AOE_OPTIM_H

#include "config/config.h"
#include "model/params.h"

#define OPT_MAX_STATE 4

typedef struct Optim Optim;

typedef struct {
    const char *name;                         // value of train.optimizer
    int n_state;                              // state arrays, each [P->total], zero at start
    const char *state_names[OPT_MAX_STATE];   // as stored in checkpoints, e.g. "adamw.m"
    // One update with learning rate lr, reading the gradient as gscale·g (clipping folded in;
    // the gradient block is not rewritten), of the elements [lo, hi) of the flat block only (the
    // whole block, or one rank's share when data-parallel ranks split the step: tensor_part).
    // Element-wise, so any split gives the same bits. o->t has already been incremented.
    void (*update)(Optim *o, Params *P, const Config *c, float lr, float gscale, size_t lo, size_t hi);
    // The naive twin of update with gscale = 1: per-element scalar loop in double (test oracle).
    void (*update_naive)(Optim *o, Params *P, const Config *c, float lr);
} OptimOps;

struct Optim {
    const OptimOps *ops;
    float *s[OPT_MAX_STATE];  // state arrays [P->total]
    long t;                   // optimizer steps taken
};

const OptimOps *optim_ops_for(const char *name);  // NULL if unknown
const char *optim_names(void);                    // "adamw|sgd" (for messages)
// The optimizer c->optimizer names; exits 2 naming `src` and the choices if there is none.
const OptimOps *optim_for_config(const Config *c, const char *src);

void optim_init(Optim *o, const OptimOps *ops, const Params *P);
void optim_free(Optim *o);
// One update with learning rate lr; weight decay only on tensors with decay=1.
void optim_step(Optim *o, Params *P, const Config *c, float lr);
// clip_grad + optim_step in one pass over the gradient (the gradient block keeps its unclipped
// values). Returns the gradient norm before clipping, like clip_grad.
double optim_step_clip(Optim *o, Params *P, const Config *c, float lr, double max_norm);
// One update reading the gradient as gscale·g (the caller computed the norm and clip_scale).
void optim_step_scaled(Optim *o, Params *P, const Config *c, float lr, float gscale);
// The same for the elements [lo, hi) only, without refreshing the bf16 weight copy: the caller
// (dp.c, whose ranks each update a share and then exchange the weights) calls
// kernels_weights_changed once all of P->w is current.
void optim_step_part(Optim *o, Params *P, const Config *c, float lr, float gscale, size_t lo, size_t hi);
// The elements of tensor t inside [lo, hi): returns how many, and in *j0 the first one's index
// within the tensor (for OptimOps.update).
static inline size_t tensor_part(const TensorInfo *t, size_t lo, size_t hi, size_t *j0) {
    size_t a = t->off > lo ? t->off : lo, b = t->off + t->n < hi ? t->off + t->n : hi;
    *j0 = a - t->off;
    return b > a ? b - a : 0;
}
void optim_step_naive(Optim *o, Params *P, const Config *c, float lr);
// Linear warmup to train.lr over train.warmup steps, then cosine decay to train.min_lr at train.steps.
float lr_at(const Config *c, long step);
// Global L2 norm of the gradient (deterministic reduction order).
double grad_norm(const Params *P);
// Σ g² over the elements [lo, hi) of the gradient block, in the same fixed order.
double grad_sumsq_part(const Params *P, size_t lo, size_t hi);
// The factor clip_grad applies: max_norm/(norm+1e-6) when norm > max_norm > 0, else 1.
float clip_scale(double norm, double max_norm);
// Scales the gradient so its norm is at most max_norm (no-op if max_norm <= 0). Returns the norm.
double clip_grad(Params *P, double max_norm);

#endif

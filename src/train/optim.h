// optim.h — AdamW over the flat parameter block, the learning-rate schedule and gradient
// clipping. Moments mirror the Params layout, so a checkpoint saves them as two flat arrays.
#ifndef AOE_OPTIM_H
#define AOE_OPTIM_H

#include "config/config.h"
#include "model/params.h"

typedef struct {
    float *m, *v;  // first and second moments [P->total]
    long t;        // optimizer steps taken
} AdamW;

void adamw_init(AdamW *o, const Params *P);
void adamw_free(AdamW *o);
// One update with learning rate lr; weight decay only on tensors with decay=1.
void adamw_step(AdamW *o, Params *P, const Config *c, float lr);
// clip_grad + adamw_step in one pass over the gradient (the gradient block keeps its unclipped
// values). Returns the gradient norm before clipping, like clip_grad.
double adamw_step_clip(AdamW *o, Params *P, const Config *c, float lr, double max_norm);
// The naive twin: per-tensor scalar loop in double (test oracle).
void adamw_step_naive(AdamW *o, Params *P, const Config *c, float lr);
// Linear warmup to train.lr over train.warmup steps, then cosine decay to train.min_lr at train.steps.
float lr_at(const Config *c, long step);
// Global L2 norm of the gradient (deterministic reduction order).
double grad_norm(const Params *P);
// The factor clip_grad applies: max_norm/(norm+1e-6) when norm > max_norm > 0, else 1.
float clip_scale(double norm, double max_norm);
// Scales the gradient so its norm is at most max_norm (no-op if max_norm <= 0). Returns the norm.
double clip_grad(Params *P, double max_norm);

#endif

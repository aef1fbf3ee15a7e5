// expert.h — one SwiGLU expert over a block of rows, starting from what is already known. The
// sparse layer (moe.c) runs its chosen experts with it; a score source that ranks experts by a
// node of their own computation (score_aoe_at.c) runs every expert on every token with it.
//   u = in·Wg (in = x, or the source's key of width gin), v = x·Wp, a = SiLU(u) ⊙ v, y = a·Wo.
// Stages: `todo` names which of u, v, y (with a) this call computes. The others are given in the
// forward; in the backward their gradients are left in du / dv / dy for the caller (the source
// that computed them) instead of being propagated into weights and inputs.
#ifndef AOE_EXPERT_H
#define AOE_EXPERT_H

enum { STAGE_U = 1, STAGE_V = 2, STAGE_Y = 4, STAGE_ALL = 7, N_STAGES = 3 };

typedef void (*MatmulFn)(float *, int, const float *, int, const float *, int, int, int, int, int, int,
                         float, float);

typedef struct {
    int m, d, D, gin, todo;      // rows, model width, expert width, gate-input width, STAGE_* mask
    const float *x, *in;         // [m,d] token rows (stride ldx), [m,gin] gate input (stride ldin)
    int ldx, ldin, ldD, ldy;     // row strides; u, v, a, du, dv share ldD; y, dy ldy
    const float *Wg, *Wp, *Wo;   // [gin,D], [d,D], [D,d]
    float *gWg, *gWp, *gWo;      // their gradients (+=)
    float *u, *v, *a, *y;        // [m,D] x3, [m,d]
    float *du, *dv, *dy;         // backward: dy in (if Y in todo); du, dv out, or in when Y is not
    float *dx;                   // [m,d] (stride ldx): dv·Wp^T (+ du·Wg^T when in is x)
    float dx_beta;               // 0: dx overwritten (zeroed if no stage here reaches x), 1: +=
    float *din;                  // [m,gin] (stride ldin) = du·Wg^T when in is a key, else NULL
} ExpertPass;

void expert_pass_forward(const ExpertPass *p, MatmulFn mm);
void expert_pass_backward(const ExpertPass *p, MatmulFn mm);

#endif

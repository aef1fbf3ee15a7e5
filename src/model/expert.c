// expert.c — see expert.h. Row-major products; the element-wise SiLU steps walk rows because
// the buffers may be column blocks of wider arrays (a source's [T,n,D]).
#include "model/expert.h"

#include <string.h>

#include "model/ffn.h"
#include "model/kernels.h"

void expert_pass_forward(const ExpertPass *p, MatmulFn mm) {
    int m = p->m, d = p->d, D = p->D;
    if (!m) return;
    if (p->todo & STAGE_U) mm(p->u, p->ldD, p->in, p->ldin, p->Wg, D, m, D, p->gin, 0, 0, 1, 0);
    if (p->todo & STAGE_V) mm(p->v, p->ldD, p->x, p->ldx, p->Wp, D, m, D, d, 0, 0, 1, 0);
    if (!(p->todo & STAGE_Y)) return;
    // a feeds only products: stored in bf16 (an activation block, kernels.h) it is computed in
    // du's rows (the backward's scratch, free during the forward) and stored row by row
    float *af = act_out(p->a, p->du);
    for (int i = 0; i < m; i++) {
        const float *u = p->u + (size_t)i * p->ldD, *v = p->v + (size_t)i * p->ldD;
        float *a = af + (size_t)i * p->ldD;
        for (int j = 0; j < D; j++) a[j] = silu(u[j]) * v[j];
        act_store(p->a + (size_t)i * p->ldD, a, D);
    }
    mm(p->y, p->ldy, p->a, p->ldD, p->Wo, d, m, d, D, 0, 0, 1, 0);
}

// dWo += a^T·dy; da = dy·Wo^T; dv = da⊙SiLU(u); du = da⊙v⊙SiLU'(u); dWp += x^T·dv;
// dx = dv·Wp^T; dWg += in^T·du; din = du·Wg^T (key input) or dx += du·Wg^T (x input).
void expert_pass_backward(const ExpertPass *p, MatmulFn mm) {
    int m = p->m, d = p->d, D = p->D, ld = p->ldD;
    if (!m) return;
    if (p->todo & STAGE_Y) {
        mm(p->gWo, d, p->a, ld, p->dy, p->ldy, D, d, m, 1, 0, 1, 1);
        mm(p->du, ld, p->dy, p->ldy, p->Wo, d, m, D, d, 0, 1, 1, 0);  // dA, in place below
        for (int i = 0; i < m; i++) {
            const float *u = p->u + (size_t)i * ld, *v = p->v + (size_t)i * ld;
            float *du = p->du + (size_t)i * ld, *dv = p->dv + (size_t)i * ld;
            for (int j = 0; j < D; j++) {
                float da = du[j];
                dv[j] = da * silu(u[j]);
                du[j] = da * v[j] * silu_grad(u[j]);
            }
        }
    }
    float beta = p->dx_beta;
    if (p->todo & STAGE_V) {
        mm(p->gWp, D, p->x, p->ldx, p->dv, ld, d, D, m, 1, 0, 1, 1);
        mm(p->dx, p->ldx, p->dv, ld, p->Wp, D, m, d, D, 0, 1, 1, beta);
        beta = 1;
    }
    if (p->todo & STAGE_U) {
        mm(p->gWg, D, p->in, p->ldin, p->du, ld, p->gin, D, m, 1, 0, 1, 1);
        if (p->din) mm(p->din, p->ldin, p->du, ld, p->Wg, D, m, p->gin, D, 0, 1, 1, 0);
        else { mm(p->dx, p->ldx, p->du, ld, p->Wg, D, m, d, D, 0, 1, 1, beta); beta = 1; }
    }
    if (beta == 0)  // nothing here reaches x
        for (int i = 0; i < m; i++) memset(p->dx + (size_t)i * p->ldx, 0, sizeof(float) * d);
}

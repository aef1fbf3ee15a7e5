// ffn_dense.c — the SwiGLU feed-forward (also the expert computation reused by MoE layers) and
// the dense FfnOps. h = (SiLU(x·Wg) ⊙ (x·Wp))·Wo.
#include <math.h>
#include <stdlib.h>

#include "model/ffn.h"
#include "model/kernels.h"
#include "util/prof.h"

typedef void (*MatmulFn)(float *, int, const float *, int, const float *, int, int, int, int, int, int, float, float);

void swiglu_forward(float *h, float *u, float *v, float *a, const float *x, const float *Wg,
                    const float *Wp, const float *Wo, int T, int d, int D, int single_thread) {
    MatmulFn mm = single_thread ? matmul_st : matmul;
    mm(u, D, x, d, Wg, D, T, D, d, 0, 0, 1, 0);  // u [T,D] = x·Wg
    mm(v, D, x, d, Wp, D, T, D, d, 0, 0, 1, 0);  // v [T,D] = x·Wp
    long n = (long)T * D;
#pragma omp parallel for if (!single_thread)
    for (long i = 0; i < n; i++) a[i] = silu(u[i]) * v[i];
    mm(h, d, a, D, Wo, d, T, d, D, 0, 0, 1, 0);  // h [T,d] = a·Wo
}

void swiglu_backward(float *dx, float *dWg, float *dWp, float *dWo, float *du, float *dv,
                     const float *dh, const float *x, const float *u, const float *v, const float *a,
                     const float *Wg, const float *Wp, const float *Wo, int T, int d, int D, int single_thread) {
    MatmulFn mm = single_thread ? matmul_st : matmul;
    mm(dWo, d, a, D, dh, d, D, d, T, 1, 0, 1, 1);  // dWo [D,d] += a^T dh
    float *da = du;                                 // da [T,D] = dh·Wo^T, then overwritten by du
    mm(da, D, dh, d, Wo, d, T, D, d, 0, 1, 1, 0);
    long n = (long)T * D;
#pragma omp parallel for if (!single_thread)
    for (long i = 0; i < n; i++) {
        float g = da[i];
        dv[i] = g * silu(u[i]);
        du[i] = g * v[i] * silu_grad(u[i]);
    }
    mm(dWg, D, x, d, du, D, d, D, T, 1, 0, 1, 1);  // dWg [d,D] += x^T du
    mm(dWp, D, x, d, dv, D, d, D, T, 1, 0, 1, 1);  // dWp [d,D] += x^T dv
    mm(dx, d, du, D, Wg, D, T, d, D, 0, 1, 1, 0);  // dx [T,d] = du·Wg^T + dv·Wp^T
    mm(dx, d, dv, D, Wp, D, T, d, D, 0, 1, 1, 1);
}

typedef struct {
    size_t wg, wp, wo;  // offsets into the parameter block
    int d, D;
    float *u, *v, *a, *du, *dv;  // caches [max_T, D]
} Dense;

static void *dense_create(Params *P, const Config *c, int layer, int max_T) {
    Dense *L = xcalloc(1, sizeof *L);
    char name[64];
    L->d = c->d_model; L->D = c->ffn.d_ff;
    float out_std = c->init_std / sqrtf(2.0f * c->n_layer);
    snprintf(name, sizeof name, "layers.%d.ffn.w_gate", layer);
    L->wg = params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, L->d, L->D);
    snprintf(name, sizeof name, "layers.%d.ffn.w_proj", layer);
    L->wp = params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, L->d, L->D);
    snprintf(name, sizeof name, "layers.%d.ffn.w_out", layer);
    L->wo = params_add(P, name, 1, INIT_NORMAL, out_std, 2, L->D, L->d);
    size_t n = (size_t)max_T * L->D;
    L->u = falloc(n); L->v = falloc(n); L->du = falloc(n); L->dv = falloc(n);
    L->a = act_alloc(n);  // feeds only products (kernels.h activation block)
    return L;
}

static void dense_forward(void *self, const Params *P, float *out, const float *x, int T, int train, Rng *rng) {
    (void)train; (void)rng;
    Dense *L = self;
    double t0 = prof_begin();
    float *a = act_out(L->a, L->du);  // bf16 storage: computed in du (backward scratch), then stored
    swiglu_forward(out, L->u, L->v, a, x, P->w + L->wg, P->w + L->wp, P->w + L->wo, T, L->d, L->D, 0);
    act_store(L->a, a, (size_t)T * L->D);
    prof_end(PROF_EXPERT, t0);
}

static void dense_backward(void *self, Params *P, float *dx, const float *dout, const float *x, int T, float aux_scale) {
    (void)aux_scale;
    Dense *L = self;
    double t0 = prof_begin();
    swiglu_backward(dx, P->g + L->wg, P->g + L->wp, P->g + L->wo, L->du, L->dv, dout, x, L->u, L->v, L->a,
                    P->w + L->wg, P->w + L->wp, P->w + L->wo, T, L->d, L->D, 0);
    prof_end(PROF_EXPERT, t0);
}

static double dense_aux(void *self) { (void)self; return 0; }
static void dense_stats(void *self, FILE *f, long step, int layer) { (void)self; (void)f; (void)step; (void)layer; }
static void dense_count(const Config *c, double *total, double *active, double *flops) {
    double p = 3.0 * c->d_model * c->ffn.d_ff;
    *total = *active = p;
    *flops = 2 * p;
}
static void dense_destroy(void *self) {
    Dense *L = self;
    act_free(L->a);
    free(L->u); free(L->v); free(L->du); free(L->dv); free(L);
}

const FfnOps ffn_dense_ops = {
    .name = "dense", .create = dense_create, .forward = dense_forward, .backward = dense_backward,
    .aux_loss = dense_aux, .write_stats = dense_stats, .count = dense_count, .destroy = dense_destroy,
    .keys = "d_ff",
};

// moe.c — router MoE and AoE layers (FfnOps): score source, dispatch and experts. Selection,
// gates, auxiliary losses and statistics are delegated to src/select. The per-token reference
// (the specification and test oracle) is moe_ref.c.
//
// Dispatch: the (token, slot) pairs that survive selection are counting-sorted by expert (tokens
// ascending within an expert), their rows gathered into contiguous buffers, and each expert runs
// as three (AoE: three) matrix products over its rows. The gate-weighted scatter-add walks each
// token's slots in order, so results do not depend on thread scheduling (no float atomics).
#include "model/moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/grap.h"
#include "model/kernels.h"
#include "util/json.h"
#include "util/prof.h"

static int expert_parallel_mode = -1;
void moe_set_expert_parallel(int mode) { expert_parallel_mode = mode; }

typedef void (*MatmulFn)(float *, int, const float *, int, const float *, int, int, int, int, int, int,
                         float, float);

// Score source of a router-type layer: the selection method's own (ETR: GrAP affinities) or the router.
static ScoreSource moe_source(const FfnConfig *f) {
    const SelectMethod *m = select_find(f->select);
    return m ? m->source : SCORE_ROUTER;
}

// ---- create / destroy ----
static void *create_common(Params *P, const Config *c, int layer, int max_T, int aoe) {
    MoeLayer *L = xcalloc(1, sizeof *L);
    const FfnConfig *f = &c->ffn;
    L->aoe = aoe;
    L->layer = layer;
    L->d = c->d_model;
    L->n = f->n_experts;
    L->K = f->top_k;
    L->r = aoe ? f->d_low : 0;
    L->D = aoe ? ffn_d_wide(c) : f->d_ff;
    L->max_T = max_T;
    if (L->d <= 0 || L->n <= 0 || L->D <= 0 || (aoe && (L->r <= 0 || L->r >= L->d)))
        die_input("layer %d: bad sparse FFN sizes (model.d_model %d, model.ffn.n_experts %d, width %d, "
                  "model.ffn.d_low %d)", layer, L->d, L->n, L->D, L->r);
    // ETR: fixed GrAP affinities replace the router (one feature group of d/n per expert)
    ScoreSource src = aoe ? SCORE_AOE_NORM : moe_source(f);
    if (src == SCORE_AFFINITY && L->d % L->n)
        die_input("model.d_model (%d) must be divisible by model.ffn.n_experts (%d) for model.ffn.select %s "
                  "(GrAP affinity groups of d_model/n_experts features)", L->d, L->n, f->select);
    L->sel = select_create(f, src, max_T);
    // parameter aux losses (ERC) are averaged over the sparse layers: each carries 1/#sparse
    int n_sparse = 0;
    for (int l = 0; l < c->n_layer; l++) n_sparse += ffn_is_sparse_layer(c, l);
    L->sel->layer_share = n_sparse > 0 ? 1.0f / n_sparse : 1.0f;
    L->kmax = L->sel->kmax;
    int d = L->d, n = L->n, D = L->D, r = L->r;
    float sd = c->init_std;
    char name[64];
#define NAME(s) (snprintf(name, sizeof name, "layers.%d.ffn.%s", layer, s), name)
    if (aoe) {
        L->o_score = params_add(P, NAME("w_down"), 1, INIT_NORMAL, sd, 2, d, n * r);
        L->o_gate = params_add(P, NAME("w_up"), 1, INIT_NORMAL, sd, 3, n, r, D);
    } else {
        if (src == SCORE_ROUTER) L->o_score = params_add(P, NAME("router"), 1, INIT_NORMAL, sd, 2, d, n);
        L->o_gate = params_add(P, NAME("w_gate"), 1, INIT_NORMAL, sd, 3, n, d, D);
    }
    L->o_proj = params_add(P, NAME("w_proj"), 1, INIT_NORMAL, sd, 3, n, d, D);
    // w_out scaled like the dense FFN's (GPT-2 residual-branch init), so 1 expert == dense
    L->o_out = params_add(P, NAME("w_out"), 1, INIT_NORMAL, sd / sqrtf(2.0f * c->n_layer), 3, n, D, d);
#undef NAME
    size_t T = max_T, R = (size_t)max_T * L->kmax;
    L->S = falloc(T * n);
    L->cnt = xcalloc(n, sizeof(int));
    L->start = xcalloc(n + 1, sizeof(int));
    L->row_slot = xcalloc(R, sizeof(int));
    L->slot_row = xcalloc(R, sizeof(int));
    L->Xe = falloc(R * d);
    L->U = falloc(R * D);
    L->V = falloc(R * D);
    L->A = falloc(R * D);
    L->Y = falloc(R * d);
    L->dY = falloc(R * d);
    L->dU = falloc(R * D);
    L->dV = falloc(R * D);
    L->dXe = falloc(R * d);
    L->dgate = falloc(R);
    L->dS = falloc(T * n);
    if (aoe) {
        L->C = falloc(T * n * r);
        L->Ce = falloc(R * r);
        L->dCe = falloc(R * r);
        L->dC = falloc(T * n * r);
    }
    if (src == SCORE_AFFINITY) {  // ETR
        L->Aff = falloc(T * n);
        L->xnorm = falloc(T);
        L->sel->aff = L->Aff;
        L->cosine = !strcmp(f->etr_gate, "cosine");
    }
    L->norm_sum = xcalloc(n, sizeof(double));
    return L;
}

static void *moe_create(Params *P, const Config *c, int layer, int max_T) {
    return create_common(P, c, layer, max_T, 0);
}
static void *aoe_create(Params *P, const Config *c, int layer, int max_T) {
    return create_common(P, c, layer, max_T, 1);
}

static void moe_destroy(void *self) {
    MoeLayer *L = self;
    if (!L) return;
    select_destroy(L->sel);
    float *fb[] = {L->S, L->C, L->Xe, L->Ce, L->U, L->V, L->A, L->Y, L->dY, L->dU, L->dV, L->dXe,
                   L->dCe, L->dgate, L->dS, L->dC, L->Aff, L->xnorm};
    for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++) free(fb[i]);
    free(L->cnt); free(L->start); free(L->row_slot); free(L->slot_row); free(L->norm_sum);
    free(L);
}

// ---- scores ----
// S [T,n] from x [T,d]: router logits x·R (R [d,n]) or AoE key norms (C = x·Wd [T,n*r] cached).
static void scores_forward(MoeLayer *L, const Params *P, const float *x, int T) {
    int d = L->d, n = L->n, r = L->r;
    const float *W = P->w + L->o_score;
    if (L->sel->src == SCORE_AFFINITY) {  // ETR: no parameters
        grap_forward(L->S, L->Aff, L->xnorm, x, T, d, n, L->cosine);
        return;
    }
    if (!L->aoe) { matmul(L->S, n, x, d, W, n, T, n, d, 0, 0, 1, 0); return; }
    matmul(L->C, n * r, x, d, W, n * r, T, n * r, d, 0, 0, 1, 0);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n; e++) {
            const float *c = L->C + (size_t)t * n * r + (size_t)e * r;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < r; k++) s += (double)c[k] * c[k];
            L->S[(size_t)t * n + e] = (float)sqrt(s);
        }
}

// From dS [T,n] (and, for AoE, the expert path's dCe [R,r]): score-parameter gradients += and
// dx [T,d] +=.  Router: dR += x^T·dS, dx += dS·R^T.  AoE: dC = dS·C/max(S,1e-12) (norm) plus the
// scattered dCe; dWd += x^T·dC, dx += dC·Wd^T.
static void scores_backward(MoeLayer *L, Params *P, float *dx, const float *x, int T) {
    int d = L->d, n = L->n, r = L->r, km = L->kmax;
    const float *W = P->w + L->o_score;
    float *gW = P->g + L->o_score;
    if (L->sel->src == SCORE_AFFINITY) {  // ETR: into the input only
        grap_backward(dx, L->dS, L->Aff, L->xnorm, x, T, d, n, L->cosine);
        return;
    }
    if (!L->aoe) {
        matmul(gW, n, x, d, L->dS, n, d, n, T, 1, 0, 1, 1);
        matmul(dx, d, L->dS, n, W, n, T, d, n, 0, 1, 1, 1);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        for (int e = 0; e < n; e++) {
            size_t o = (size_t)t * n * r + (size_t)e * r;
            float s = L->S[(size_t)t * n + e];
            float k = L->dS[(size_t)t * n + e] / (s > 1e-12f ? s : 1e-12f);
            for (int j = 0; j < r; j++) L->dC[o + j] = k * L->C[o + j];
        }
        for (int j = 0; j < km; j++) {
            int row = L->slot_row[(size_t)t * km + j];
            if (row < 0) continue;
            int e = L->sel->expert[(size_t)t * km + j];
            float *dc = L->dC + (size_t)t * n * r + (size_t)e * r;
            const float *src = L->dCe + (size_t)row * r;
            for (int i = 0; i < r; i++) dc[i] += src[i];
        }
    }
    matmul(gW, n * r, x, d, L->dC, n * r, d, n * r, T, 1, 0, 1, 1);
    matmul(dx, d, L->dC, n * r, W, n * r, T, d, n * r, 0, 1, 1, 1);
}

// ---- dispatch ----
// Counting sort of the processed slots by expert; gathers Xe (and Ce) rows.
static void dispatch_build(MoeLayer *L, const float *x, int T) {
    int n = L->n, km = L->kmax, d = L->d, r = L->r;
    const int *ex = L->sel->expert;
    memset(L->cnt, 0, sizeof(int) * n);
    for (long i = 0; i < (long)T * km; i++)
        if (ex[i] >= 0) L->cnt[ex[i]]++;
    L->start[0] = 0;
    for (int e = 0; e < n; e++) L->start[e + 1] = L->start[e] + L->cnt[e];
    L->rows = L->start[n];
    int *fill = xcalloc(n, sizeof(int));
    for (long i = 0; i < (long)T * km; i++) {
        int e = ex[i];
        if (e < 0) { L->slot_row[i] = -1; continue; }
        int row = L->start[e] + fill[e]++;
        L->slot_row[i] = row;
        L->row_slot[row] = (int)i;
    }
    free(fill);
#pragma omp parallel for schedule(static)
    for (int row = 0; row < L->rows; row++) {
        int i = L->row_slot[row], t = i / km;
        memcpy(L->Xe + (size_t)row * d, x + (size_t)t * d, sizeof(float) * d);
        if (L->aoe) {
            int e = ex[i];
            memcpy(L->Ce + (size_t)row * r, L->C + (size_t)t * n * r + (size_t)e * r, sizeof(float) * r);
        }
    }
}

static int use_expert_parallel(const MoeLayer *L) {
    if (expert_parallel_mode >= 0) return expert_parallel_mode;
    // Small per-expert products do not split well across threads; many experts balance well.
    return L->n >= 2 * kernels_threads() || (double)L->rows / L->n * L->D * L->d < 4e6;
}

// Expert e over its m rows: U = Xe·Wg (AoE: Ce·Wup), V = Xe·Wp, A = SiLU(U)⊙V, Y = A·Wo.
static void expert_forward(MoeLayer *L, const Params *P, int e, MatmulFn mm) {
    int m = L->cnt[e], d = L->d, D = L->D, r = L->r;
    if (!m) return;
    size_t b = L->start[e];
    float *U = L->U + b * D, *V = L->V + b * D, *A = L->A + b * D;
    const float *Xe = L->Xe + b * d;
    if (L->aoe) mm(U, D, L->Ce + b * r, r, P->w + L->o_gate + (size_t)e * r * D, D, m, D, r, 0, 0, 1, 0);
    else mm(U, D, Xe, d, P->w + L->o_gate + (size_t)e * d * D, D, m, D, d, 0, 0, 1, 0);
    mm(V, D, Xe, d, P->w + L->o_proj + (size_t)e * d * D, D, m, D, d, 0, 0, 1, 0);
    for (size_t i = 0; i < (size_t)m * D; i++) A[i] = silu(U[i]) * V[i];
    mm(L->Y + b * d, d, A, D, P->w + L->o_out + (size_t)e * D * d, d, m, d, D, 0, 0, 1, 0);
}

// Expert e backward from dY [m,d]: dWo += A^T·dY; dA = dY·Wo^T; dV = dA⊙SiLU(U);
// dU = dA⊙V⊙SiLU'(U); dWp += Xe^T·dV; dXe = dV·Wp^T; MoE: dWg += Xe^T·dU, dXe += dU·Wg^T;
// AoE: dWup += Ce^T·dU, dCe = dU·Wup^T.
static void expert_backward(MoeLayer *L, Params *P, int e, MatmulFn mm) {
    int m = L->cnt[e], d = L->d, D = L->D, r = L->r;
    if (!m) return;
    size_t b = L->start[e];
    const float *U = L->U + b * D, *V = L->V + b * D, *A = L->A + b * D, *Xe = L->Xe + b * d;
    const float *dY = L->dY + b * d;
    float *dU = L->dU + b * D, *dV = L->dV + b * D, *dXe = L->dXe + b * d;
    const float *Wg = P->w + L->o_gate + (size_t)e * (L->aoe ? r : d) * D;
    const float *Wp = P->w + L->o_proj + (size_t)e * d * D, *Wo = P->w + L->o_out + (size_t)e * D * d;
    float *gWg = P->g + L->o_gate + (size_t)e * (L->aoe ? r : d) * D;
    float *gWp = P->g + L->o_proj + (size_t)e * d * D, *gWo = P->g + L->o_out + (size_t)e * D * d;
    mm(gWo, d, A, D, dY, d, D, d, m, 1, 0, 1, 1);
    mm(dU, D, dY, d, Wo, d, m, D, d, 0, 1, 1, 0);  // dA, in place below
    for (size_t i = 0; i < (size_t)m * D; i++) {
        float da = dU[i];
        dV[i] = da * silu(U[i]);
        dU[i] = da * V[i] * silu_grad(U[i]);
    }
    mm(gWp, D, Xe, d, dV, D, d, D, m, 1, 0, 1, 1);
    mm(dXe, d, dV, D, Wp, D, m, d, D, 0, 1, 1, 0);
    if (L->aoe) {
        const float *Ce = L->Ce + b * r;
        mm(gWg, D, Ce, r, dU, D, r, D, m, 1, 0, 1, 1);
        mm(L->dCe + b * r, r, dU, D, Wg, D, m, r, D, 0, 1, 1, 0);
    } else {
        mm(gWg, D, Xe, d, dU, D, d, D, m, 1, 0, 1, 1);
        mm(dXe, d, dU, D, Wg, D, m, d, D, 0, 1, 1, 1);
    }
}

static void experts_run(MoeLayer *L, Params *P, int backward) {
    if (use_expert_parallel(L)) {
        // largest experts first (insertion sort, ties by index): the dynamic schedule then ends
        // on small ones, so threads finish close together. Each expert writes only its own rows
        // and gradient slices, so the order does not change any result.
        int *ord = xmalloc(sizeof(int) * L->n);
        for (int e = 0; e < L->n; e++) {
            int j = e;
            for (; j > 0 && L->cnt[ord[j - 1]] < L->cnt[e]; j--) ord[j] = ord[j - 1];
            ord[j] = e;
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < L->n; i++) {
            if (backward) expert_backward(L, P, ord[i], matmul_st);
            else expert_forward(L, P, ord[i], matmul_st);
        }
        free(ord);
    } else {
        for (int e = 0; e < L->n; e++) {
            if (backward) expert_backward(L, P, e, matmul);
            else expert_forward(L, P, e, matmul);
        }
    }
}

static SelectParams param_view(const MoeLayer *L, Params *P) {
    SelectParams v = {.d = L->d, .n = L->n, .D = L->D};
    if (L->sel->src == SCORE_ROUTER) {
        v.R = P->w + L->o_score; v.dR = P->g + L->o_score;
        v.Wg = P->w + L->o_gate; v.dWg = P->g + L->o_gate;
    }
    return v;
}

// ---- FfnOps ----
// out [T,d] = Σ_j gate[t,j]·E_{expert[t,j]}(x_t), x [T,d].
static void moe_forward(void *self, const Params *P, float *out, const float *x, int T, int train, Rng *rng) {
    MoeLayer *L = self;
    int d = L->d, km = L->kmax, n = L->n;
    if (T > L->max_T) die("moe_forward: %d tokens > %d the layer was built for", T, L->max_T);
    L->T = T;
    // profiling: the AoE key product is expert work (it is W_down of every expert), the router
    // product is routing
    double t0 = prof_begin();
    scores_forward(L, P, x, T);
    prof_end(L->aoe ? PROF_EXPERT : PROF_DISPATCH, t0);
    t0 = prof_begin();
    select_forward(L->sel, L->S, T, train, rng);
    dispatch_build(L, x, T);
    prof_end(PROF_DISPATCH, t0);
    t0 = prof_begin();
    experts_run(L, (Params *)P, 0);
    if (train) {  // method's parameter losses and ERC (select.c decides which apply)
        SelectParams v = param_view(L, (Params *)P);
        select_param_aux_forward(L->sel, &v, rng);
    }
    prof_end(PROF_EXPERT, t0);
    t0 = prof_begin();
    const float *gate = L->sel->gate;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * d;
        memset(o, 0, sizeof(float) * d);
        for (int j = 0; j < km; j++) {
            int row = L->slot_row[(size_t)t * km + j];
            if (row < 0) continue;
            float g = gate[(size_t)t * km + j];
            const float *y = L->Y + (size_t)row * d;
            for (int k = 0; k < d; k++) o[k] += g * y[k];
        }
    }
    if (train && L->aoe) {
        for (int t = 0; t < T; t++)
            for (int e = 0; e < n; e++) L->norm_sum[e] += L->S[(size_t)t * n + e];
        L->norm_tokens += T;
    }
    prof_end(PROF_DISPATCH, t0);
}

static void moe_backward(void *self, Params *P, float *dx, const float *dout, const float *x, int T, float aux_scale) {
    MoeLayer *L = self;
    int d = L->d, km = L->kmax;
    if (T != L->T) die("moe_backward: %d tokens, but the last forward had %d", T, L->T);
    const float *gate = L->sel->gate;
    double t0 = prof_begin();
    // dgate = <dout_t, y_row>; dY_row = gate·dout_t
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < km; j++) {
            size_t i = (size_t)t * km + j;
            int row = L->slot_row[i];
            if (row < 0) { L->dgate[i] = 0; continue; }
            const float *g = dout + (size_t)t * d, *y = L->Y + (size_t)row * d;
            float *dy = L->dY + (size_t)row * d;
            double s = 0;
            float gi = gate[i];
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < d; k++) { s += (double)g[k] * y[k]; dy[k] = gi * g[k]; }
            L->dgate[i] = (float)s;
        }
    prof_end(PROF_DISPATCH, t0);
    t0 = prof_begin();
    experts_run(L, P, 1);
    prof_end(PROF_EXPERT, t0);
    t0 = prof_begin();
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *o = dx + (size_t)t * d;
        memset(o, 0, sizeof(float) * d);
        for (int j = 0; j < km; j++) {
            int row = L->slot_row[(size_t)t * km + j];
            if (row < 0) continue;
            const float *s = L->dXe + (size_t)row * d;
            for (int k = 0; k < d; k++) o[k] += s[k];
        }
    }
    select_backward(L->sel, L->dgate, L->dS, aux_scale);
    SelectParams v = param_view(L, P);
    select_param_aux_backward(L->sel, &v, aux_scale);
    prof_end(PROF_DISPATCH, t0);
    t0 = prof_begin();
    scores_backward(L, P, dx, x, T);
    prof_end(L->aoe ? PROF_EXPERT : PROF_DISPATCH, t0);
}

static double moe_aux_loss(void *self) {
    MoeLayer *L = self;
    return L->sel->train ? L->sel->aux : 0;
}

static void moe_write_stats(void *self, FILE *f, long step, int layer) {
    MoeLayer *L = self;
    if (!L->sel->st.forwards) return;
    fprintf(f, "{\"v\":1,\"step\":%ld,\"layer\":%d,\"type\":\"%s\",\"select\":\"%s\",\"gate\":\"%s\",\"n\":%d,\"k\":%d",
            step, layer, L->aoe ? "aoe" : "moe", L->sel->m->name,
            L->sel->gate_kind == GATE_SOFTMAX ? "softmax" : "topk_softmax", L->n, L->K);
    select_write_stats(L->sel, f);
    if (L->aoe) {
        char nb[40];
        fprintf(f, ",\"norm_mean\":[");
        for (int e = 0; e < L->n; e++)
            fprintf(f, "%s%s", e ? "," : "",
                    json_fmt(nb, sizeof nb, "%.6g", L->norm_tokens ? L->norm_sum[e] / L->norm_tokens : 0.0));
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    select_stats_reset(L->sel);
    memset(L->norm_sum, 0, sizeof(double) * L->n);
    L->norm_tokens = 0;
}

static void moe_set_progress(void *self, float progress) { ((MoeLayer *)self)->sel->progress = progress; }

// Per layer: parameters, parameters a token touches (all scores + K experts), and forward FLOPs
// per token (2 per multiply-add; scores, K experts, gates/norms ignored).
static void moe_count(const Config *c, double *total, double *active, double *flops) {
    double d = c->d_model, n = c->ffn.n_experts, K = c->ffn.top_k, D = c->ffn.d_ff;
    double router = moe_source(&c->ffn) == SCORE_ROUTER ? d * n : 0;  // ETR: fixed affinities
    *total = router + 3 * n * d * D;
    *active = router + 3 * K * d * D;
    *flops = 2 * (router + 3 * K * d * D);
}

static void aoe_count(const Config *c, double *total, double *active, double *flops) {
    double d = c->d_model, n = c->ffn.n_experts, K = c->ffn.top_k, r = c->ffn.d_low, Dw = ffn_d_wide(c);
    double expert = r * Dw + 2 * d * Dw;
    *total = d * n * r + n * expert;
    *active = d * n * r + K * expert;  // every expert's W_down runs for every token
    *flops = 2 * (d * n * r + K * expert);
}

const FfnOps ffn_moe_ops = {
    .name = "moe", .create = moe_create, .forward = moe_forward, .backward = moe_backward,
    .aux_loss = moe_aux_loss, .write_stats = moe_write_stats, .count = moe_count, .destroy = moe_destroy,
    .set_progress = moe_set_progress,
};

const FfnOps ffn_aoe_ops = {
    .name = "aoe", .create = aoe_create, .forward = moe_forward, .backward = moe_backward,
    .aux_loss = moe_aux_loss, .write_stats = moe_write_stats, .count = aoe_count, .destroy = moe_destroy,
    .set_progress = moe_set_progress,
};

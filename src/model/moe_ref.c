// moe_ref.c — the specification of the router MoE and AoE layers: per-token loops, double
// accumulation, top-K token choice with the same tie, gate, capacity and auxiliary-loss rules as
// src/select (methods.md §0, §1). Slow; used as the test oracle for moe.c. It does not use the
// fast path's caches, only its sizes, offsets and selection settings.
// The scores come from the source's naive twin (ScoreOps.forward_naive/backward_naive: router,
// AoE norms, GrAP); a method's rules beyond token-choice top-K (ETR's expert-side capacity and
// locality loss, methods.md §3) from its naive twins SelectMethod.ref_keep / ref_aux.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/moe.h"

typedef struct {
    int T, n, K, d, D, r;
    double *z, *prob, *lse;   // [T,n], [T,n], [T]
    double *rank;             // [T,n] what the choice ranks by (= z unless the source says otherwise)
    double *c;                // [T,n,r] keys of a source with r > 0 (AoE)
    int *idx, *keep;          // [T,K] chosen experts (descending score), processed?
    double *g;                // [T,K] gates
    double *u, *v, *a, *y;    // [T,K,D] x3, [T,K,d]
    double *load;             // [n] chosen (pre-capacity) count
    double lb, zl, aux;
} Ref;

static double dsilu(double u) { return u / (1 + exp(-u)); }
static double dsilu_grad(double u) { double s = 1 / (1 + exp(-u)); return s * (1 + u * (1 - s)); }

static void ref_forward(Ref *R, const MoeLayer *L, const Params *P, const float *x, int T) {
    const Selection *s = L->sel;
    const Score *sc = &L->score;
    if (s->m != &select_topk && !s->m->ref_keep)
        die("moe reference: only model.ffn.select=topk|etr is specified here");
    int n = L->n, K = L->K, d = L->d, D = L->D, r = L->r;
    *R = (Ref){.T = T, .n = n, .K = K, .d = d, .D = D, .r = r};
    R->rank = calloc((size_t)T * n, sizeof(double));
    R->z = calloc((size_t)T * n, sizeof(double));
    R->prob = calloc((size_t)T * n, sizeof(double));
    R->lse = calloc(T, sizeof(double));
    R->c = calloc((size_t)T * n * (r ? r : 1), sizeof(double));
    R->idx = calloc((size_t)T * K, sizeof(int));
    R->keep = calloc((size_t)T * K, sizeof(int));
    R->g = calloc((size_t)T * K, sizeof(double));
    R->u = calloc((size_t)T * K * D, sizeof(double));
    R->v = calloc((size_t)T * K * D, sizeof(double));
    R->a = calloc((size_t)T * K * D, sizeof(double));
    R->y = calloc((size_t)T * K * d, sizeof(double));
    R->load = calloc(n, sizeof(double));
    for (int t = 0; t < T; t++) {
        double *z = R->z + (size_t)t * n;
        sc->ops->forward_naive(sc, P, x + (size_t)t * d, z, R->rank + (size_t)t * n, R->c + (size_t)t * n * r);
        double mx = z[0], sum = 0;
        for (int e = 1; e < n; e++) mx = fmax(mx, z[e]);
        for (int e = 0; e < n; e++) sum += exp(z[e] - mx);
        for (int e = 0; e < n; e++) R->prob[(size_t)t * n + e] = exp(z[e] - mx) / sum;
        R->lse[t] = mx + log(sum);
        // top-K by repeated argmax of the rank (GrAP: δ); '>' keeps the lower index on ties
        int *idx = R->idx + (size_t)t * K;
        const double *rank = R->rank + (size_t)t * n;
        for (int j = 0; j < K; j++) {
            int best = -1;
            for (int e = 0; e < n; e++) {
                int used = 0;
                for (int i = 0; i < j; i++) used |= idx[i] == e;
                if (!used && (best < 0 || rank[e] > rank[best])) best = e;
            }
            idx[j] = best;
            R->load[best]++;
        }
        double *g = R->g + (size_t)t * K, gs = 0;
        for (int j = 0; j < K; j++) {
            g[j] = s->gate_kind == GATE_SOFTMAX ? R->prob[(size_t)t * n + idx[j]] : exp(z[idx[j]] - z[idx[0]]);
            gs += g[j];
        }
        if (s->gate_kind == GATE_TOPK_SOFTMAX)
            for (int j = 0; j < K; j++) g[j] /= gs;
    }
    // capacity: slot-major, token order, ceil(capacity·T·K/n) per expert
    long cap = s->capacity > 0 ? (long)ceil((double)s->capacity * T * K / n) : (long)T * K;
    long *used = calloc(n, sizeof(long));
    for (int j = 0; j < K; j++)
        for (int t = 0; t < T; t++) {
            int e = R->idx[(size_t)t * K + j];
            R->keep[(size_t)t * K + j] = used[e] < cap;
            if (used[e] < cap) used[e]++;
        }
    free(used);
    if (s->m->ref_keep) s->m->ref_keep(s, T, R->idx, R->rank, R->keep);  // method's own drop rule
    // experts
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) {
            size_t q = (size_t)t * K + j;
            if (!R->keep[q]) continue;
            int e = R->idx[q];
            double *u = R->u + q * D, *v = R->v + q * D, *a = R->a + q * D, *y = R->y + q * d;
            const float *Wg = P->w + L->o_gate + (size_t)e * L->gin * D;
            const float *Wp = P->w + L->o_proj + (size_t)e * d * D, *Wo = P->w + L->o_out + (size_t)e * D * d;
            const float *xt = x + (size_t)t * d;
            for (int i = 0; i < D; i++) {
                if (r) {  // the gate branch reads the source's key
                    const double *c = R->c + ((size_t)t * n + e) * r;
                    for (int k = 0; k < r; k++) u[i] += c[k] * Wg[(size_t)k * D + i];
                } else {
                    for (int k = 0; k < d; k++) u[i] += (double)xt[k] * Wg[(size_t)k * D + i];
                }
                for (int k = 0; k < d; k++) v[i] += (double)xt[k] * Wp[(size_t)k * D + i];
                a[i] = dsilu(u[i]) * v[i];
            }
            for (int o = 0; o < d; o++)
                for (int i = 0; i < D; i++) y[o] += a[i] * Wo[(size_t)i * d + o];
        }
    // auxiliary losses
    double lb = 0, zl = 0;
    for (int e = 0; e < n; e++) {
        double Pm = 0;
        for (int t = 0; t < T; t++) Pm += R->prob[(size_t)t * n + e];
        lb += R->load[e] / T * Pm / T;
    }
    lb *= n;
    if (s->lb_div_k) lb /= K;
    for (int t = 0; t < T; t++) zl += R->lse[t] * R->lse[t] / T;
    R->lb = lb;
    R->zl = zl;
    R->aux = s->lb_coef * lb + s->z_coef * zl;
    if (s->m->ref_aux) R->aux += s->m->ref_aux(s, T, R->prob, NULL, 0);
}

static void ref_free(Ref *R) {
    free(R->z); free(R->prob); free(R->lse); free(R->c); free(R->idx); free(R->keep); free(R->g);
    free(R->u); free(R->v); free(R->a); free(R->y); free(R->load); free(R->rank);
}

// h[t] = Σ_j keep·g·y in double, into out (float, may be NULL) and/or the objective Σ G·h.
static double ref_output(const Ref *R, float *out, const float *G) {
    int d = R->d, K = R->K;
    double obj = 0;
    for (int t = 0; t < R->T; t++)
        for (int o = 0; o < d; o++) {
            double h = 0;
            for (int j = 0; j < K; j++) {
                size_t q = (size_t)t * K + j;
                if (R->keep[q]) h += R->g[q] * R->y[q * d + o];
            }
            if (out) out[(size_t)t * d + o] = (float)h;
            if (G) obj += G[(size_t)t * d + o] * h;
        }
    return obj;
}

static void ref_choice(const Ref *R, int *choice) {
    if (choice)
        for (int i = 0; i < R->T * R->K; i++) choice[i] = R->keep[i] ? R->idx[i] : -1;
}

double moe_forward_naive(const MoeLayer *L, const Params *P, float *out, const float *x, int T, int *choice) {
    Ref R;
    ref_forward(&R, L, P, x, T);
    ref_output(&R, out, NULL);
    ref_choice(&R, choice);
    double aux = R.aux;
    ref_free(&R);
    return aux;
}

double moe_objective_naive(const MoeLayer *L, const Params *P, const float *x, int T, const float *G,
                           double aux_scale, int *choice) {
    Ref R;
    ref_forward(&R, L, P, x, T);
    double obj = ref_output(&R, NULL, G) + aux_scale * R.aux;
    ref_choice(&R, choice);
    ref_free(&R);
    return obj;
}

void moe_backward_naive(const MoeLayer *L, const Params *P, float *dx, float *dW, const float *dout,
                        const float *x, int T, float aux_scale) {
    Ref R;
    ref_forward(&R, L, P, x, T);
    const Selection *s = L->sel;
    const Score *sc = &L->score;
    int n = L->n, K = L->K, d = L->d, D = L->D, r = L->r;
    double *G = calloc(P->total, sizeof(double));
    double *dzm = NULL;  // [T,n] gradient of the method's extra auxiliary loss
    if (s->m->ref_aux) {
        dzm = calloc((size_t)T * n, sizeof(double));
        s->m->ref_aux(s, T, R.prob, dzm, aux_scale);
    }
    double *dz = calloc(n, sizeof(double)), *dc = calloc((size_t)n * (r ? r : 1), sizeof(double));
    double *dg = calloc(K, sizeof(double)), *dxt = calloc(d, sizeof(double)), *da = calloc(D, sizeof(double));
    double *f = calloc(n, sizeof(double));
    for (int e = 0; e < n; e++) f[e] = R.load[e] / T;
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d, *gt = dout + (size_t)t * d;
        memset(dz, 0, sizeof(double) * n);
        memset(dc, 0, sizeof(double) * n * (r ? r : 1));
        memset(dxt, 0, sizeof(double) * d);
        for (int j = 0; j < K; j++) {
            size_t q = (size_t)t * K + j;
            dg[j] = 0;
            if (!R.keep[q]) continue;
            int e = R.idx[q];
            const double *u = R.u + q * D, *v = R.v + q * D, *a = R.a + q * D, *y = R.y + q * d;
            for (int o = 0; o < d; o++) dg[j] += gt[o] * y[o];
            size_t og = L->o_gate + (size_t)e * L->gin * D, op = L->o_proj + (size_t)e * d * D,
                   oo = L->o_out + (size_t)e * D * d;
            for (int i = 0; i < D; i++) {
                da[i] = 0;
                for (int o = 0; o < d; o++) {
                    double dy = R.g[q] * gt[o];
                    G[oo + (size_t)i * d + o] += a[i] * dy;
                    da[i] += dy * P->w[oo + (size_t)i * d + o];
                }
                double dv = da[i] * dsilu(u[i]), du = da[i] * v[i] * dsilu_grad(u[i]);
                for (int k = 0; k < d; k++) {
                    G[op + (size_t)k * D + i] += xt[k] * dv;
                    dxt[k] += dv * P->w[op + (size_t)k * D + i];
                }
                if (r) {
                    const double *c = R.c + ((size_t)t * n + e) * r;
                    for (int k = 0; k < r; k++) {
                        G[og + (size_t)k * D + i] += c[k] * du;
                        dc[(size_t)e * r + k] += du * P->w[og + (size_t)k * D + i];
                    }
                } else {
                    for (int k = 0; k < d; k++) {
                        G[og + (size_t)k * D + i] += xt[k] * du;
                        dxt[k] += du * P->w[og + (size_t)k * D + i];
                    }
                }
            }
        }
        // gate path
        const double *p = R.prob + (size_t)t * n, *g = R.g + (size_t)t * K;
        const int *idx = R.idx + (size_t)t * K;
        double gd = 0;
        for (int j = 0; j < K; j++) gd += g[j] * dg[j];
        if (s->gate_kind == GATE_TOPK_SOFTMAX) {
            for (int j = 0; j < K; j++) dz[idx[j]] += g[j] * (dg[j] - gd);
        } else {
            for (int e = 0; e < n; e++) dz[e] -= p[e] * gd;
            for (int j = 0; j < K; j++) dz[idx[j]] += p[idx[j]] * dg[j];
        }
        // balancing loss and z-loss
        double pf = 0, cl = aux_scale * s->lb_coef * n / T / (s->lb_div_k ? K : 1);
        for (int e = 0; e < n; e++) pf += p[e] * f[e];
        for (int e = 0; e < n; e++)
            dz[e] += cl * p[e] * (f[e] - pf) + aux_scale * s->z_coef * 2.0 / T * R.lse[t] * p[e];
        if (dzm)
            for (int e = 0; e < n; e++) dz[e] += dzm[(size_t)t * n + e];
        // score source
        sc->ops->backward_naive(sc, P, xt, R.z + (size_t)t * n, R.rank + (size_t)t * n, R.c + (size_t)t * n * r, dz,
                                dc, G, dxt);
        for (int k = 0; k < d; k++) dx[(size_t)t * d + k] = (float)dxt[k];
    }
    for (size_t i = 0; i < P->total; i++) dW[i] += (float)G[i];
    free(G); free(dz); free(dc); free(dg); free(dxt); free(da); free(f); free(dzm);
    ref_free(&R);
}

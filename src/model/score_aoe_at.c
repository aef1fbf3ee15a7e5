// score_aoe_at.c — AoE with the ranking norm taken at a later node of every expert's own
// computation (model.ffn.aoe_norm_at; the AoE paper compares where the norm is taken, §3.1 and
// Table 1's nodes). With the expert E_e(x) = (SiLU(c·W_up^e) ⊙ (x·W_p^e))·W_o^e, c = x·W_down^e:
//   proj    S = ||x·W_p^e||              [D]  every expert's W_p for every token
//   silu    S = ||SiLU(c·W_up^e)||       [D]  every expert's W_down and W_up
//   act     S = ||SiLU(c·W_up^e) ⊙ x·W_p^e||  both branches of every expert
//   output  S = ||E_e(x)||               [d]  every expert's whole FFN: n/K times the experts' work
// (down, the paper's ||x·W_down^e||, is score_aoe.c.) The parameters are AoE's (w_down here,
// w_up/w_proj/w_out of the layer at the Eq.5 width), so the positions differ only in where the
// norm is taken; the norm's kind is model.ffn.aoe_norm and the gates are the selection method's
// over S, as for down (methods.md §1.3: softmax over the K chosen norms).
// Every expert runs its stages on every token here (model/expert.h, the code the layer's experts
// run); the chosen experts gather them (score.h stages) instead of recomputing. Backward: the
// experts' gradients at the stages (from the layer) plus the norm's dS·∂||node||/∂node go
// through the stages of every expert, then through W_down (dkey) into x, as the autograd of the
// same forward would (methods.md §1.5 with the norm moved).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/ffn.h"
#include "model/kernels.h"
#include "model/score.h"

enum { AT_PROJ, AT_SILU, AT_ACT, AT_OUT };

typedef struct {
    int at, kind, todo;           // position, norm kind, stages computed here (STAGE_*)
    long o_up, o_proj, o_out;     // the layer's w_up [n,r,D], w_proj [n,d,D], w_out [n,D,d] (-1: not found yet)
    float *A;                     // [max_T,n,D] the pass's a; silu: SiLU(u)
    float *U, *V, *dU, *dV;       // output only: [max_T,n,D] stages the layer does not read
} At;

static int at_pos(const Config *c) {
    const char *a = c->ffn.aoe_norm_at;
    return !strcmp(a, "proj") ? AT_PROJ : !strcmp(a, "silu") ? AT_SILU : !strcmp(a, "act") ? AT_ACT : AT_OUT;
}
static const int todo_of[] = {STAGE_V, STAGE_U, STAGE_U | STAGE_V, STAGE_ALL};
static const int shown_of[] = {STAGE_V, STAGE_U, STAGE_U | STAGE_V, STAGE_Y};  // what the layer reads

static int at_match(const Config *c) { return !strcmp(c->ffn.type, "aoe") && strcmp(c->ffn.aoe_norm_at, "down"); }

static const char *at_check(const Config *c, char *buf, int len) {
    const char *why = score_aoe_norm.check(c, buf, len);
    if (why) return why;
    if (c->expert_parallel > 1)
        return "model.ffn.aoe_norm_at other than down computes every expert on every token where the token is; "
               "set train.expert_parallel to 1";
    return NULL;
}

static int at_key_dim(const Config *c) { return c->ffn.d_low; }
static int at_stages(const Config *c) { return shown_of[at_pos(c)]; }

static void at_init(Score *s, Params *P, const Config *c) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.w_down", s->layer);
    s->o_param = (long)params_add(P, name, 1, INIT_NORMAL, c->init_std, 2, s->d, s->n * s->r);
    At *p = xcalloc(1, sizeof *p);
    p->at = at_pos(c);
    p->kind = aoe_norm_kind(c);
    p->todo = todo_of[p->at];
    p->o_up = -1;
    size_t tnD = (size_t)s->max_T * s->n * ffn_d_wide(c);
    if (p->at != AT_PROJ) p->A = falloc(tnD);
    if (p->at == AT_OUT) { p->U = falloc(tnD); p->V = falloc(tnD); p->dU = falloc(tnD); p->dV = falloc(tnD); }
    s->priv = p;
}

static void at_free(Score *s) {
    At *p = s->priv;
    if (!p) return;
    free(p->A); free(p->U); free(p->V); free(p->dU); free(p->dV); free(p);
}

static void find_tensors(Score *s, const Params *P) {
    At *p = s->priv;
    if (p->o_up >= 0) return;
    p->o_up = score_expert_tensor(s, P, "w_up", s->r, s->D);
    p->o_proj = score_expert_tensor(s, P, "w_proj", s->d, s->D);
    p->o_out = score_expert_tensor(s, P, "w_out", s->D, s->d);
}

// A stage buffer [T,n,w] (or its gradient): the layer's (score.h) or, for output, this source's.
static float *stage_buf(Score *s, int bit, int grad) {
    At *p = s->priv;
    int i = bit == STAGE_U ? 0 : bit == STAGE_V ? 1 : 2;
    if (s->stage[i]) return grad ? s->dstage[i] : s->stage[i];
    return bit == STAGE_U ? (grad ? p->dU : p->U) : bit == STAGE_V ? (grad ? p->dV : p->V) : NULL;
}

// Expert e on all T tokens: column block e of every [T,n,·] buffer.
static ExpertPass at_pass(Score *s, Params *P, int e, const float *x, float *dx, int T) {
    At *p = s->priv;
    int d = s->d, n = s->n, r = s->r, D = s->D;
    float *U = stage_buf(s, STAGE_U, 0), *V = stage_buf(s, STAGE_V, 0), *Y = stage_buf(s, STAGE_Y, 0);
    float *dU = stage_buf(s, STAGE_U, 1), *dV = stage_buf(s, STAGE_V, 1), *dY = stage_buf(s, STAGE_Y, 1);
    size_t eD = (size_t)e * D;
#define COL(b, o) ((b) ? (b) + (o) : NULL)
    return (ExpertPass){
        .m = T, .d = d, .D = D, .gin = r, .todo = p->todo, .x = x, .in = s->key + (size_t)e * r,
        .ldx = d, .ldin = n * r, .ldD = n * D, .ldy = n * d,
        .Wg = P->w + p->o_up + eD * r, .Wp = P->w + p->o_proj + eD * d, .Wo = P->w + p->o_out + eD * d,
        .gWg = P->g + p->o_up + eD * r, .gWp = P->g + p->o_proj + eD * d, .gWo = P->g + p->o_out + eD * d,
        .u = COL(U, eD), .v = COL(V, eD), .a = COL(p->A, eD), .y = COL(Y, (size_t)e * d),
        .du = COL(dU, eD), .dv = COL(dV, eD), .dy = COL(dY, (size_t)e * d),
        .dx = dx, .dx_beta = 1, .din = s->dkey + (size_t)e * r};
#undef COL
}

// The normed node of (t,e) and its width.
static float *node(Score *s, size_t te, int *w) {
    At *p = s->priv;
    *w = p->at == AT_OUT ? s->d : s->D;
    return p->at == AT_PROJ ? stage_buf(s, STAGE_V, 0) + te * s->D
           : p->at == AT_OUT ? stage_buf(s, STAGE_Y, 0) + te * s->d : p->A + te * s->D;
}

static void at_forward(Score *s, const Params *P, const float *x, int T) {
    At *p = s->priv;
    find_tensors(s, P);
    int d = s->d, n = s->n, r = s->r, D = s->D;
    matmul(s->key, n * r, x, d, P->w + s->o_param, n * r, T, n * r, d, 0, 0, 1, 0);
    for (int e = 0; e < n; e++) {
        ExpertPass ep = at_pass(s, (Params *)P, e, x, NULL, T);
        expert_pass_forward(&ep, matmul);
    }
    const float *U = stage_buf(s, STAGE_U, 0), *V = stage_buf(s, STAGE_V, 0);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int e = 0; e < n; e++) {
            size_t te = (size_t)t * n + e;
            if (p->at == AT_SILU || p->at == AT_ACT)  // the node after SiLU (output: the pass made a)
                for (int j = 0; j < D; j++)
                    p->A[te * D + j] = silu(U[te * D + j]) * (p->at == AT_ACT ? V[te * D + j] : 1.0f);
            int w;
            const float *q = node(s, te, &w);
            s->S[te] = (float)aoe_norm_f(p->kind, q, w, 0, NULL);
        }
}

// The norm's gradient joins the experts' at the stages; then every expert's stages, then W_down.
static void at_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    At *p = s->priv;
    int d = s->d, n = s->n, r = s->r, D = s->D;
    float *U = stage_buf(s, STAGE_U, 0), *V = stage_buf(s, STAGE_V, 0);
    float *dU = stage_buf(s, STAGE_U, 1), *dV = stage_buf(s, STAGE_V, 1), *dY = stage_buf(s, STAGE_Y, 1);
#pragma omp parallel
    {
        float *g = falloc(D);  // gradient at the node after SiLU
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++)
            for (int e = 0; e < n; e++) {
                size_t te = (size_t)t * n + e;
                double k = s->dS[te];
                int w;
                const float *q = node(s, te, &w);
                if (p->at == AT_PROJ) { aoe_norm_f(p->kind, q, w, k, dV + te * D); continue; }
                if (p->at == AT_OUT) { aoe_norm_f(p->kind, q, w, k, dY + te * d); continue; }
                memset(g, 0, sizeof(float) * D);
                aoe_norm_f(p->kind, q, w, k, g);
                const float *u = U + te * D, *v = p->at == AT_ACT ? V + te * D : NULL;
                float *du = dU + te * D;
                for (int j = 0; j < D; j++) {
                    du[j] += g[j] * (v ? v[j] : 1.0f) * silu_grad(u[j]);
                    if (v) dV[te * D + j] += g[j] * silu(u[j]);
                }
            }
        free(g);
    }
    for (int e = 0; e < n; e++) {
        ExpertPass ep = at_pass(s, P, e, x, dx, T);
        expert_pass_backward(&ep, matmul);
    }
    // dkey: the experts' (proj: they read the keys) or the passes' just above
    matmul(P->g + s->o_param, n * r, x, d, s->dkey, n * r, d, n * r, T, 1, 0, 1, 1);
    matmul(dx, d, s->dkey, n * r, P->w + s->o_param, n * r, T, d, n * r, 0, 1, 1, 1);
}

// ---- naive twin: one token in double, every expert computed in full ----
typedef struct { double *c, *u, *v, *a, *y, *g; } Tok;  // [r], [D] x3, [d], [max(D,d)]

static double dsilu(double u) { return u / (1 + exp(-u)); }
static double dsilu_grad(double u) { double q = 1 / (1 + exp(-u)); return q * (1 + u * (1 - q)); }

// Expert e on x_t from its key c: u, v, a, y; returns the normed node.
static const double *naive_expert(const Score *s, const Params *P, const float *xt, const double *c, int e, Tok *k,
                                  int *w) {
    const At *p = s->priv;
    int d = s->d, r = s->r, D = s->D;
    const float *Wu = P->w + p->o_up + (size_t)e * r * D;
    const float *Wp = P->w + p->o_proj + (size_t)e * d * D;
    const float *Wo = P->w + p->o_out + (size_t)e * D * d;
    for (int i = 0; i < D; i++) {
        double u = 0, v = 0;
        for (int j = 0; j < r; j++) u += c[j] * Wu[(size_t)j * D + i];
        for (int j = 0; j < d; j++) v += (double)xt[j] * Wp[(size_t)j * D + i];
        k->u[i] = u; k->v[i] = v;
        k->a[i] = p->at == AT_SILU ? dsilu(u) : dsilu(u) * v;
    }
    for (int o = 0; o < d; o++) {
        double y = 0;
        for (int i = 0; i < D; i++) y += dsilu(k->u[i]) * k->v[i] * Wo[(size_t)i * d + o];
        k->y[o] = y;
    }
    *w = p->at == AT_OUT ? d : D;
    return p->at == AT_PROJ ? k->v : p->at == AT_OUT ? k->y : k->a;
}

static Tok tok_alloc(const Score *s) {
    int D = s->D, w = D > s->d ? D : s->d;
    return (Tok){xcalloc(s->r, 8), xcalloc(D, 8), xcalloc(D, 8), xcalloc(D, 8), xcalloc(s->d, 8), xcalloc(w, 8)};
}
static void tok_free(Tok *k) { free(k->c); free(k->u); free(k->v); free(k->a); free(k->y); free(k->g); }

static void at_forward_naive(const Score *s, const Params *P, const float *xt, double *z, double *rank, double *key) {
    const At *p = s->priv;
    find_tensors((Score *)s, P);  // offsets only (the layer's tensors are registered after the source's)
    Tok k = tok_alloc(s);
    for (int e = 0; e < s->n; e++) {
        double *c = key + (size_t)e * s->r;
        aoe_key_naive(s, P, xt, e, c);
        int w;
        const double *q = naive_expert(s, P, xt, c, e, &k, &w);
        z[e] = rank[e] = aoe_norm_d(p->kind, q, w, 0, NULL);
    }
    tok_free(&k);
}

// dz [n] through every expert's node back to its tensors and x; dkey [n·r] (the experts' path
// into the keys, from the reference layer) joins at c.
static void at_backward_naive(const Score *s, const Params *P, const float *xt, const double *z, const double *rank,
                              const double *key, const double *dz, const double *dkey, double *G, double *dxt) {
    (void)z; (void)rank;
    const At *p = s->priv;
    int d = s->d, n = s->n, r = s->r, D = s->D;
    find_tensors((Score *)s, P);
    long ou = p->o_up, op = p->o_proj, oo = p->o_out;
    Tok k = tok_alloc(s);
    double *ga = xcalloc(D, 8), *gv = xcalloc(D, 8), *dc = xcalloc(r, 8);
    for (int e = 0; e < n; e++) {
        const double *c = key + (size_t)e * r;
        int w;
        const double *q = naive_expert(s, P, xt, c, e, &k, &w);
        memset(k.g, 0, sizeof(double) * w);
        aoe_norm_d(p->kind, q, w, dz[e], k.g);  // gradient at the node
        memset(gv, 0, sizeof(double) * D);
        for (int i = 0; i < D; i++) ga[i] = p->at == AT_ACT ? k.g[i] : 0;
        if (p->at == AT_PROJ) memcpy(gv, k.g, sizeof(double) * D);
        if (p->at == AT_OUT)
            for (int i = 0; i < D; i++)
                for (int o = 0; o < d; o++) {
                    size_t wi = oo + ((size_t)e * D + i) * d + o;
                    G[wi] += dsilu(k.u[i]) * k.v[i] * k.g[o];
                    ga[i] += k.g[o] * P->w[wi];
                }
        memcpy(dc, dkey + (size_t)e * r, sizeof(double) * r);
        for (int i = 0; i < D; i++) {
            double gu = p->at == AT_SILU ? k.g[i] * dsilu_grad(k.u[i]) : ga[i] * k.v[i] * dsilu_grad(k.u[i]);
            gv[i] += ga[i] * dsilu(k.u[i]);
            for (int j = 0; j < d; j++) {
                size_t wi = op + ((size_t)e * d + j) * D + i;
                G[wi] += xt[j] * gv[i];
                dxt[j] += gv[i] * P->w[wi];
            }
            for (int j = 0; j < r; j++) {
                size_t wi = ou + ((size_t)e * r + j) * D + i;
                G[wi] += c[j] * gu;
                dc[j] += gu * P->w[wi];
            }
        }
        aoe_key_backward_naive(s, P, xt, e, dc, G, dxt);
    }
    free(ga); free(gv); free(dc);
    tok_free(&k);
}

static double at_count(const Config *c) { return (double)c->d_model * c->ffn.n_experts * c->ffn.d_low; }

// W_down of every expert plus the stages of every expert (each weight once per token).
static double at_macs(const Config *c) {
    double d = c->d_model, n = c->ffn.n_experts, r = c->ffn.d_low, D = ffn_d_wide(c);
    double stage[] = {d * D, r * D, r * D + d * D, r * D + 2 * d * D};
    return n * (d * r + stage[at_pos(c)]);
}

const ScoreOps score_aoe_at = {
    .info = {.name = "aoe_at", .router = 0},
    .summary = "AoE with the norm at a later node of every expert (model.ffn.aoe_norm_at proj|silu|act|output)",
    .match = at_match,
    .check = at_check,
    .key_dim = at_key_dim,
    .init = at_init,
    .forward = at_forward,
    .backward = at_backward,
    .free = at_free,
    .forward_naive = at_forward_naive,
    .backward_naive = at_backward_naive,
    .count = at_count,
    .macs = at_macs,
    .stages = at_stages,
    .keys = "d_low aoe_norm aoe_norm_at",
    .expert_work = 1,
    .mean_stat = "norm_mean",
};

// expert_choice.c — expert choice (Zhou et al. 2022; AoE paper Table 3, methods.md §1.8): every
// expert takes the C tokens of the batch with the largest p[t,e] = softmax(S[t])[e] (the token-wise
// softmax of router logits or AoE key norms, as in Zhou et al.; ties to the lower token index),
//   C = min(T, ceil(c·T/n)),  c = model.ffn.capacity, 2 when 0,
// so each expert processes exactly C tokens and the load is balanced by construction. c is Zhou
// et al.'s capacity factor, the mean number of experts per token (c = 2 costs what top-2 does; the
// AoE paper's c = 2 with n = 8 gives each expert 25% of the batch); model.ffn.top_k is unused. Slot j of a
// token is expert j (n slots, empty where expert j did not take the token); a token may get
// anything from 0 to n experts. Tokens that no expert takes pass through the residual only and
// are counted in the `unrouted` statistic; nothing is `dropped` (the capacity is the rule itself).
// Gates by model.ffn.gate over the experts that took the token: "softmax" is Zhou et al.'s
// (g = p[t,e], no renormalisation); "topk_softmax" renormalises over those experts.
//
// The selection is batch-level: whether expert e takes token t depends on every other token of
// the micro-batch, including later positions of the same sequence, so in a causal LM a token's
// output depends on future tokens (information leak; evaluation forwards select the same way over
// their own batch). On data-parallel ranks the batch is the global micro-batch: C comes from the
// ranks' token count together and each expert takes the global top C (ec_pool), so N ranks
// select what one process would, ties included. Auxiliary losses: the standard ones; with equal
// loads the balancing loss is the constant n·C/T (no gradient), Zhou et al. use none.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "select/select.h"

typedef struct {
    float factor;
    float *col;  // [n,max_T] one score column per expert (scratch)
    int *idx;    // [n,max_T] the tokens it takes (scratch)
    int *sel;    // [n] experts that took one token (scratch)
    float *gs;   // [n] their gates (scratch)
} ExpertChoice;

static int ec_slots(const FfnConfig *c) { return c->n_experts; }

static const char *ec_check(const FfnConfig *c, const ScoreInfo *src) {
    (void)src;
    if (c->capacity < 0) return "model.ffn.capacity must be > 0 with model.ffn.select expert_choice (0 = default 2)";
    return NULL;
}

static void ec_init(Selection *s, const FfnConfig *c) {
    ExpertChoice *p = xcalloc(1, sizeof *p);
    p->factor = c->capacity > 0 ? c->capacity : 2.0f;
    p->col = falloc((size_t)s->n * s->max_T);
    p->idx = xcalloc((size_t)s->n * s->max_T, sizeof(int));
    p->sel = xcalloc(s->n, sizeof(int));
    p->gs = falloc(s->n);
    s->priv = p;
}

static void ec_free(Selection *s) {
    ExpertChoice *p = s->priv;
    free(p->col);
    free(p->idx);
    free(p->sel);
    free(p->gs);
    free(p);
}

static int keep_first(int e, const float *keys, int m, void *ctx) {
    (void)e; (void)keys;
    int C = *(const int *)ctx;
    return m < C ? m : C;
}

// Data-parallel ranks (all with T tokens): C comes from the N·T tokens, each rank offers its top
// min(C, T) per expert, and select_pool_candidates says how many of them are in the global top C.
static void ec_pool(Selection *s, ExpertChoice *p, int C, int k, int *take) {
    int n = s->n;
    float *key = falloc((size_t)n * k);
    int *tok = xmalloc(sizeof(int) * (size_t)n * k);
    for (int e = 0; e < n; e++) {
        const float *col = p->col + (size_t)e * s->max_T;
        const int *idx = p->idx + (size_t)e * s->max_T;
        for (int j = 0; j < k; j++) key[(size_t)e * k + j] = col[idx[j]], tok[(size_t)e * k + j] = idx[j];
    }
    select_pool_candidates(s, key, tok, k, keep_first, &C, take);
    free(key); free(tok);
}

static void ec_select(Selection *s, Rng *rng) {
    (void)rng;
    ExpertChoice *p = s->priv;
    int n = s->n, T = s->T, N = dist_size();
    long c = select_capacity_slots(p->factor, (double)T * N, n);  // of the global micro-batch
    int C = c < (long)T * N ? (int)c : T * N, k = C < T ? C : T;   // k: the best of this rank's
    for (long i = 0; i < (long)T * n; i++) s->choice[i] = -1;
    // threads only pay off for real batches (a parallel region costs more than a small one)
#pragma omp parallel for schedule(static) if ((long)T * k > 65536)
    for (int e = 0; e < n; e++) {
        float *col = p->col + (size_t)e * s->max_T;
        for (int t = 0; t < T; t++) col[t] = s->prob[(size_t)t * n + e];
        select_topk_row(col, T, k, p->idx + (size_t)e * s->max_T);
    }
    int *take = xmalloc(sizeof(int) * n);
    if (N > 1) ec_pool(s, p, C, k, take);
    else for (int e = 0; e < n; e++) take[e] = k;
    for (int e = 0; e < n; e++) {
        const int *idx = p->idx + (size_t)e * s->max_T;
        for (int j = 0; j < take[e]; j++) s->choice[(size_t)idx[j] * n + e] = e;
        s->load[e] = take[e];
    }
    free(take);
    int *sel = p->sel;
    float *gs = p->gs;
    for (int t = 0; t < T; t++) {
        int *ch = s->choice + (size_t)t * n, m = 0;
        float *g = s->gate + (size_t)t * n;
        for (int e = 0; e < n; e++) {
            g[e] = 0;
            if (ch[e] >= 0) sel[m++] = e;
        }
        if (!m) continue;
        select_gates_row(s, t, sel, m, gs);
        for (int j = 0; j < m; j++) g[sel[j]] = gs[j];
    }
    memcpy(s->expert, s->choice, sizeof(int) * (size_t)T * n);
    s->dropped = 0;
}

const SelectMethod select_expert_choice = {
    .name = "expert_choice",
    .keys = "gate capacity",
    .summary = "expert choice: each expert takes the ceil(capacity*T/n) tokens of the batch with the highest softmax score (sees future tokens)",
    .slots = ec_slots,
    .check = ec_check,
    .init = ec_init,
    .free = ec_free,
    .select = ec_select,
    .gate_backward = select_gates_backward,
};

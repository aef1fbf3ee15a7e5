// etr.c — Expert-Token Resonance (methods.md §3; LocMoE+), on the fixed GrAP affinities of the
// layer (score source "grap", src/model/grap.h: S = GrAP logits z or cosines δ, s->aff = δ).
//   TCR: each token takes its top-K experts by δ (the paper uses K = 1; model.ffn.top_k).
//   ECR (training forwards): each expert keeps at most C = max(1, ceil(c_f·K·T/n)) of the tokens
//        that chose it, highest δ first, ties to the lower token index; the others are dropped
//        (they pass through the residual only and are counted in `dropped`). c_f goes linearly
//        from model.ffn.etr_cap_start (first step) to etr_cap_end (last step): few drops while
//        tokens are isotropic, a tighter expert-side cut later (§3.3 [I]).
//   Gates: the chosen entries of softmax(S_t) over all n, no renormalisation (LocMoE); S = z
//        (etr_gate grap) or δ (cosine). model.ffn.gate is ignored.
//   Losses: the Switch balancing loss of select.c (f from the TCR choices, P from softmax(S)) plus
//        etr_loc_coef·L_loc. L_loc emulates nodes on one process (§3.4 [I]): experts and tokens
//        are split into G = etr_groups contiguous groups (expert i in group i/(n/G); token t in
//        ⌊t·G/T⌋, i.e. whole sequences when G divides the batch, like data-parallel ranks); for
//        token group g, D_c = mean over its tokens of softmax(S_t), D_l = (1−η)·uniform over group
//        g's experts + η·uniform over all; L_loc = mean over non-empty groups of KL(D_c‖D_l), the
//        paper's direction (the unofficial ports compute the reverse).
//   τ (model.ffn.etr_tau < 1): the paper's "adaptive threshold of the sum of affinity scores",
//        whose rule it does not give (§3.3 [I]): of its candidates sorted by δ, an expert keeps
//        the shortest prefix whose Σ max(δ,0) reaches τ·Σ max(δ,0) over all of them (at least
//        one), and at most C. Drops by τ are counted in `dropped` like capacity drops.
//   ECR only (select etr_ecr): no token-side stage; every expert ranks all T tokens of the
//        micro-batch by δ and takes the first C (and the τ prefix), C as above with K = top_k;
//        slot j of a token is expert j, so a token gets 0..n experts (like expert choice, the
//        selection is batch-level and sees future tokens; it runs the same way in evaluation).
//   Gates: model.ffn.etr_renorm renormalises them over the experts a token keeps (top-1: 1).
//   Data-parallel ranks: the expert side ranks the global micro-batch (capacity from all ranks'
//        tokens, τ's Σ max(δ,0) and candidate counts summed, candidates pooled by
//        select_pool_candidates) and L_loc's group sums and counts are summed over the ranks, so
//        N ranks train what one process would (when etr_groups divides each rank's sequences).
// Not done: dropping at
// evaluation (eval forwards are dropless, so a token's output never depends on other tokens of
// the batch; in training, as with expert choice, the drops do see future tokens of a causal LM),
// learnable GrAP entries.
#include "select/etr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

typedef struct {
    float key;  // δ of the (token, expert) pair
    int slot;   // t·kmax + j
} Cand;

const Etr *etr_state(const Selection *s) { return s && s->m == &select_etr ? s->priv : NULL; }
const Etr *etr_ecr_state(const Selection *s) { return s && s->m == &select_etr_ecr ? s->priv : NULL; }

double etr_cap_factor(const Etr *e, float progress) {
    return e->cap_start + ((double)e->cap_end - e->cap_start) * progress;
}

long etr_capacity(double cap_factor, int K, int T, int n) {
    return select_capacity_slots(cap_factor, (double)K * T, n);
}

static int etr_slots(const FfnConfig *c) { return c->top_k; }
static int ecr_slots(const FfnConfig *c) { return c->n_experts; }

// The source is always "grap" (.source below; the source checks model.ffn.type and d_model); the
// z-loss and ERC are refused by select_check (no router).
static const char *etr_check(const FfnConfig *c, const ScoreInfo *src) {
    (void)src;
    if (c->capacity != 0)
        return "model.ffn.capacity must be 0 with model.ffn.select etr (its capacity schedule is "
               "model.ffn.etr_cap_start -> model.ffn.etr_cap_end)";
    if (!(c->etr_cap_start > 0) || !(c->etr_cap_end > 0))
        return "model.ffn.etr_cap_start and model.ffn.etr_cap_end must be > 0";
    if (!(c->etr_loc_coef >= 0)) return "model.ffn.etr_loc_coef must be >= 0";
    if (c->etr_groups < 1 || c->n_experts % c->etr_groups)
        return "model.ffn.etr_groups must divide model.ffn.n_experts (each group emulates a node holding "
               "n_experts/etr_groups experts)";
    if (strcmp(c->etr_gate, "grap") && strcmp(c->etr_gate, "cosine"))
        return "model.ffn.etr_gate must be grap or cosine";
    if (!(c->etr_tau > 0 && c->etr_tau <= 1)) return "model.ffn.etr_tau must be in (0, 1] (1 = off)";
    return NULL;
}

static void etr_init(Selection *s, const FfnConfig *c) {
    Etr *e = xcalloc(1, sizeof *e);
    e->cap_start = c->etr_cap_start;
    e->cap_end = c->etr_cap_end;
    e->loc_coef = c->etr_loc_coef;
    e->groups = c->etr_groups;
    e->cap_factor = etr_cap_factor(e, 0);
    e->tscale = 1;
    e->cand = xmalloc(sizeof(Cand) * (size_t)s->max_T * s->kmax);
    e->start = xcalloc(s->n + 1, sizeof(int));
    e->dc = xcalloc((size_t)e->groups * s->n, sizeof(double));
    e->a = xcalloc((size_t)e->groups * s->n, sizeof(double));
    e->tg = xcalloc(e->groups, sizeof(int));
    e->tau = c->etr_tau;
    e->sel = xcalloc(s->n, sizeof(int));
    e->gs = falloc(s->n);
    s->priv = e;
    // ETR's gate is the full softmax (or its renormalisation), whatever model.ffn.gate says
    s->gate_kind = c->etr_renorm ? GATE_TOPK_SOFTMAX : GATE_SOFTMAX;
}

static void etr_free(Selection *s) {
    Etr *e = s->priv;
    if (!e) return;
    free(e->cand); free(e->start); free(e->dc); free(e->a); free(e->tg); free(e->sel); free(e->gs); free(e);
    s->priv = NULL;
}

// δ descending, then slot (= token) ascending: a strict total order, so qsort is deterministic.
static int cand_cmp(const void *pa, const void *pb) {
    const Cand *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

// How many of an expert's m candidates it keeps, their δ in key[0], key[inc], ... descending: at
// most cap, and with τ < 1 the shortest prefix whose Σ max(δ,0) reaches τ·tot, tot = Σ max(δ,0)
// over all m candidates (at least one).
static int keep_prefix(const float *key, int inc, long m, long cap, float tau, double tot) {
    int lim = (int)(m < cap ? m : cap);
    if (tau >= 1 || !(tot > 0)) return lim;
    double acc = 0;
    int j = 0;
    for (; j < lim && acc < tau * tot; j++) acc += fmax(key[(size_t)j * inc], 0);
    return j;
}

static double positive_sum(const Cand *c, int m) {
    double tot = 0;
    for (int j = 0; j < m; j++) tot += fmax(c[j].key, 0);
    return tot;
}

_Static_assert(sizeof(Cand) == 2 * sizeof(float), "Cand: key, then one 4-byte slot");
static int keep_count(const Cand *c, int m, long cap, float tau) {
    return keep_prefix(&c->key, 2, m, cap, tau, tau < 1 ? positive_sum(c, m) : 0);
}

// ---- data-parallel ranks: the expert side ranks the global micro-batch (select_pool_candidates)
typedef struct { long cap; float tau; double *m, *tot; } EtrPool;  // m, tot [n]: global per expert

static int etr_pool_keep(int i, const float *keys, int merged, void *ctx) {
    const EtrPool *p = ctx;
    (void)merged;  // ≥ min(cap, m): every rank offers its first min(cap, own m)
    return keep_prefix(keys, 1, (long)p->m[i], p->cap, p->tau, p->tot[i]);
}

// The candidates of expert i are c + start[i] .. (sorted, this rank's; slot = token·kmax + j);
// returns in keep[i] how many of them this rank keeps. cap is the global capacity; each rank
// offers at most k ≤ cap of them.
static void pool_keep(const Selection *s, const Cand *c, const int *start, long cap, int k, int *keep) {
    const Etr *e = s->priv;
    int n = s->n;
    double *red = xcalloc(2 * (size_t)n, sizeof(double));
    float *mine = falloc((size_t)n * k);
    int *tok = xcalloc((size_t)n * k, sizeof(int));
    for (int i = 0; i < n; i++) {
        int m = start[i + 1] - start[i];
        red[i] = m;
        red[n + i] = positive_sum(c + start[i], m);
        for (int j = 0; j < k && j < m; j++) {
            mine[(size_t)i * k + j] = c[start[i] + j].key;
            tok[(size_t)i * k + j] = c[start[i] + j].slot / s->kmax;
        }
        for (int j = m; j < k; j++) mine[(size_t)i * k + j] = -INFINITY;
    }
    dist_sum_d(red, 2 * (size_t)n);
    EtrPool p = {cap, e->tau, red, red + n};
    select_pool_candidates(s, mine, tok, k, etr_pool_keep, &p, keep);
    free(red); free(mine); free(tok);
}

static void etr_select(Selection *s, Rng *rng) {
    (void)rng;
    Etr *e = s->priv;
    int n = s->n, K = s->kmax, T = s->T;
    const float *aff = s->aff ? s->aff : s->S;  // S alone (tests driving the method directly)
    for (int t = 0; t < T; t++) {  // TCR
        int *ch = s->choice + (size_t)t * K;
        select_topk_row(aff + (size_t)t * n, n, K, ch);
        select_gates_row(s, t, ch, K, s->gate + (size_t)t * K);
    }
    select_apply_capacity(s);  // capacity is 0 (check): load from the choices, expert = choice
    if (!s->train) return;     // evaluation: dropless
    // ECR: bucket the slots by expert (load = bucket sizes), sort each by δ, keep the first cap
    // (of the global micro-batch on data-parallel ranks: the capacity from all ranks' tokens)
    int N = dist_size();
    e->cap_factor = etr_cap_factor(e, s->progress);
    e->cap = etr_capacity(e->cap_factor, K, T * N, n);
    Cand *cand = e->cand;
    e->start[0] = 0;
    for (int i = 0; i < n; i++) e->start[i + 1] = e->start[i] + (int)s->load[i];
    int *fill = xcalloc(n, sizeof(int));
    for (int q = 0; q < T * K; q++) {
        int i = s->choice[q], t = q / K;
        cand[e->start[i] + fill[i]++] = (Cand){aff[(size_t)t * n + i], q};
    }
    free(fill);
    int *keep = xmalloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        int m = e->start[i + 1] - e->start[i];
        if (N == 1 && m <= e->cap && e->tau >= 1) { keep[i] = m; continue; }
        qsort(cand + e->start[i], m, sizeof(Cand), cand_cmp);
        if (N == 1) keep[i] = keep_count(cand + e->start[i], m, e->cap, e->tau);
    }
    if (N > 1) pool_keep(s, cand, e->start, e->cap, (int)(e->cap < T ? e->cap : T), keep);
    for (int i = 0; i < n; i++)
        for (int j = keep[i]; j < e->start[i + 1] - e->start[i]; j++) {
            s->expert[cand[e->start[i] + j].slot] = -1;
            s->dropped++;
        }
    free(keep);
}

// ECR only: expert i takes the first keep_count of all T tokens sorted by δ[t,i]; slot i of token t.
static void ecr_select(Selection *s, Rng *rng) {
    (void)rng;
    Etr *e = s->priv;
    int n = s->n, T = s->T;
    const float *aff = s->aff ? s->aff : s->S;
    int N = dist_size(), Tg = T * N;  // data-parallel ranks: every expert ranks the global batch
    e->cap_factor = etr_cap_factor(e, s->progress);
    long c = etr_capacity(e->cap_factor, s->K, Tg, n);
    e->cap = c < Tg ? c : Tg;
    Cand *cand = e->cand;  // [n·T]: kmax = n slots per token
    int *keep = xmalloc(sizeof(int) * n), *start = xmalloc(sizeof(int) * (n + 1));
    for (long q = 0; q < (long)T * n; q++) s->choice[q] = -1;
    for (int i = 0; i < n; i++) {
        Cand *ci = cand + (size_t)i * T;
        for (int t = 0; t < T; t++) ci[t] = (Cand){aff[(size_t)t * n + i], t * n + i};
        qsort(ci, T, sizeof(Cand), cand_cmp);
        if (N == 1) keep[i] = keep_count(ci, T, e->cap, e->tau);
        start[i] = i * T;
    }
    start[n] = n * T;
    if (N > 1) pool_keep(s, cand, start, e->cap, (int)(e->cap < T ? e->cap : T), keep);
    for (int i = 0; i < n; i++) {
        const Cand *ci = cand + (size_t)i * T;
        for (int j = 0; j < keep[i]; j++) s->choice[ci[j].slot] = i;
        s->load[i] = keep[i];
    }
    free(keep); free(start);
    for (int t = 0; t < T; t++) {
        int *ch = s->choice + (size_t)t * n, m = 0;
        float *g = s->gate + (size_t)t * n;
        for (int i = 0; i < n; i++) {
            g[i] = 0;
            if (ch[i] >= 0) e->sel[m++] = i;
        }
        if (!m) continue;
        select_gates_row(s, t, e->sel, m, e->gs);
        for (int j = 0; j < m; j++) g[e->sel[j]] = e->gs[j];
    }
    memcpy(s->expert, s->choice, sizeof(int) * (size_t)T * n);
    s->dropped = 0;
}

// Locality loss of the last forward (see the top); caches D_c and a = ln(D_c/D_l) for backward.
// On data-parallel ranks the group sums and counts are summed over the ranks: group g of a rank
// holds global sequences of group g when etr_groups divides the rank's sequences (the loader
// gives rank r sequences r, r+N, ...), so D_c is the one process's.
static double loc_forward(const Selection *s, Etr *e) {
    int n = s->n, T = s->T, G = e->groups, per = n / G;
    memset(e->dc, 0, sizeof(double) * G * n);
    memset(e->tg, 0, sizeof(int) * G);
    for (int t = 0; t < T; t++) {
        int g = (int)((long)t * G / T);
        e->tg[g]++;
        for (int i = 0; i < n; i++) e->dc[g * n + i] += s->prob[(size_t)t * n + i];
    }
    e->tscale = 1;
    if (dist_size() > 1) {
        double *r = xmalloc(sizeof(double) * ((size_t)G * n + G + 1));
        memcpy(r, e->dc, sizeof(double) * G * n);
        for (int g = 0; g < G; g++) r[G * n + g] = e->tg[g];
        r[G * n + G] = T;
        dist_sum_d(r, (size_t)G * n + G + 1);
        memcpy(e->dc, r, sizeof(double) * G * n);
        for (int g = 0; g < G; g++) e->tg[g] = (int)r[G * n + g];
        e->tscale = r[G * n + G] / T;
        free(r);
    }
    double L = 0;
    e->ne = 0;
    for (int g = 0; g < G; g++) {
        if (!e->tg[g]) continue;
        e->ne++;
        for (int i = 0; i < n; i++) {
            double D = e->dc[g * n + i] / e->tg[g];
            double Dl = (i / per == g ? (1 - ETR_LOC_ETA) / per : 0) + ETR_LOC_ETA / n;
            e->dc[g * n + i] = D;
            e->a[g * n + i] = log(fmax(D, 1e-30) / Dl);
            L += D * e->a[g * n + i];
        }
    }
    return e->ne ? L / e->ne : 0;
}

// dS_tj += scale · (1/(ne·T_g)) · p_tj (a_gj − Σ_i p_ti a_gi), g = group of t: the softmax Jacobian
// applied to d(D ln(D/D_l))/dD = a + 1, whose +1 cancels because Σ_i p_ti = 1. On N ranks T_g counts
// all ranks' tokens and scale carries the ranks' 1/N (a rank's own mean), undone by tscale.
static void loc_backward(const Selection *s, const Etr *e, float *dS, double scale) {
    int n = s->n, T = s->T, G = e->groups;
    for (int t = 0; t < T; t++) {
        int g = (int)((long)t * G / T);
        const float *p = s->prob + (size_t)t * n;
        const double *a = e->a + g * n;
        double c = scale * e->tscale / ((double)e->ne * e->tg[g]), pa = 0;
        for (int i = 0; i < n; i++) pa += p[i] * a[i];
        for (int j = 0; j < n; j++) dS[(size_t)t * n + j] += (float)(c * p[j] * (a[j] - pa));
    }
}

static double etr_aux_forward(Selection *s) {
    Etr *e = s->priv;
    double aux = select_std_aux_forward(s);
    e->loc = loc_forward(s, e);
    // called before the driver counts this forward: 0 forwards = a new statistics interval
    if (s->st.forwards == 0) e->loc_sum = 0;
    e->loc_sum += e->loc;
    return aux + e->loc_coef * e->loc;
}

static void etr_aux_backward(const Selection *s, float *dS, float scale) {
    const Etr *e = s->priv;
    select_std_aux_backward(s, dS, scale);
    if (e->loc_coef > 0) loc_backward(s, e, dS, (double)scale * e->loc_coef);
}

// ---- naive twins for the layer reference (moe_ref.c): per slot / per group loops in double ----
// Expert side: a slot is kept iff fewer than cap slots of its expert rank above it (δ descending,
// then slot ascending) and, with τ < 1, the positive δ ranked above it is below τ·Σ max(δ,0).
static void etr_ref_keep(const Selection *s, int T, const int *idx, const double *rank, int *keep) {
    const Etr *e = s->priv;
    int K = s->K, n = s->n;
    long ecap = etr_capacity(etr_cap_factor(e, s->progress), K, T, n);
    for (int q = 0; q < T * K; q++) {
        int x = idx[q], above = 0;
        double dq = rank[(size_t)(q / K) * n + x], mass_above = 0, mass = 0;  // τ: positive δ
        for (int o = 0; o < T * K; o++) {
            if (idx[o] != x) continue;
            double dv = rank[(size_t)(o / K) * n + x];
            mass += fmax(dv, 0);
            if (o == q) continue;
            int up = dv > dq || (dv == dq && o < q);
            above += up;
            if (up) mass_above += fmax(dv, 0);
        }
        keep[q] = above < ecap && (e->tau >= 1 || !(mass > 0) || mass_above < e->tau * mass);
    }
}

// loc_coef·L_loc: token t in group ⌊tG/T⌋, expert i in group i/(n/G); mean over non-empty groups of
// KL(D_c‖D_l); dz_tj += scale·loc_coef/(ne·T_g)·p_tj (a_gj − Σ_i p_ti a_gi), a = ln(D_c/D_l).
static double etr_ref_aux(const Selection *s, int T, const double *prob, double *dz, double scale) {
    const Etr *e = s->priv;
    int n = s->n, G = e->groups, per = n / G, ne = 0;
    int *tg = xcalloc(G, sizeof(int));
    double *Dc = xcalloc((size_t)G * n, sizeof(double)), *la = xcalloc((size_t)G * n, sizeof(double)), loc = 0;
    for (int t = 0; t < T; t++) {
        int g = (int)((long)t * G / T);
        tg[g]++;
        for (int i = 0; i < n; i++) Dc[g * n + i] += prob[(size_t)t * n + i];
    }
    for (int g = 0; g < G; g++) {
        if (!tg[g]) continue;
        ne++;
        for (int i = 0; i < n; i++) {
            double D = Dc[g * n + i] / tg[g], Dl = ETR_LOC_ETA / n + (i / per == g ? (1 - ETR_LOC_ETA) / per : 0);
            la[g * n + i] = log(D / Dl);
            loc += D * la[g * n + i];
        }
    }
    loc /= ne;
    for (int t = 0; t < T && dz; t++) {
        int g = (int)((long)t * G / T);
        const double *p = prob + (size_t)t * n, *a = la + g * n;
        double pa = 0, c = scale * e->loc_coef / ((double)ne * tg[g]);
        for (int i = 0; i < n; i++) pa += p[i] * a[i];
        for (int i = 0; i < n; i++) dz[(size_t)t * n + i] += c * p[i] * (a[i] - pa);
    }
    free(tg); free(Dc); free(la);
    return e->loc_coef * loc;
}

static void etr_write_stats(const Selection *s, FILE *f) {
    const Etr *e = s->priv;
    fprintf(f, ",\"cap_factor\":%.6g,\"cap_tokens\":%ld,\"loc_loss\":%.6g", e->cap_factor, e->cap,
            s->st.forwards ? e->loc_sum / s->st.forwards : 0.0);
}

// model.ffn.gate and capacity are not read: ETR has its own gates and capacity schedule.
#define ETR_KEYS "etr_cap_start etr_cap_end etr_loc_coef etr_groups etr_gate etr_tau etr_renorm"

const SelectMethod select_etr = {
    .name = "etr",
    .keys = ETR_KEYS,
    .summary = "Expert-Token Resonance: GrAP affinities, token top-K then expert-side capacity, locality loss",
    .source = "grap",
    .slots = etr_slots,
    .check = etr_check,
    .init = etr_init,
    .free = etr_free,
    .select = etr_select,
    .gate_backward = select_gates_backward,
    .aux_forward = etr_aux_forward,
    .aux_backward = etr_aux_backward,
    .write_stats = etr_write_stats,
    .ref_keep = etr_ref_keep,
    .ref_aux = etr_ref_aux,
};

const SelectMethod select_etr_ecr = {
    .name = "etr_ecr",
    .keys = ETR_KEYS,
    .summary = "ETR's expert-side stage alone: each expert takes its top tokens of the batch by GrAP affinity (capacity schedule, tau)",
    .source = "grap",
    .slots = ecr_slots,
    .check = etr_check,
    .init = etr_init,
    .free = etr_free,
    .select = ecr_select,
    .gate_backward = select_gates_backward,
    .aux_forward = etr_aux_forward,
    .aux_backward = etr_aux_backward,
    .write_stats = etr_write_stats,
};

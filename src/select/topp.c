// topp.c — Top-P token choice (Huang et al. 2024, "Harder tasks need more experts"; AoE paper
// Table 3, methods.md §1.8): every token sorts p = softmax(S[t]) over all n experts (descending,
// ties to the lower index) and takes the shortest prefix whose cumulative probability reaches
// P = model.ffn.top_p (at least one expert; P = 1 takes all n). Gates by model.ffn.gate over the
// taken experts. Slots per token: n (unused slots are empty). Capacity (model.ffn.capacity > 0)
// drops as for top-K, with K = model.ffn.top_k as the nominal per-token budget in
// ceil(capacity·T·K/n).
//
// Auxiliary losses: the standard balancing loss (f_i counts every taken slot, so a balanced
// router gives the mean number of experts per token) plus the selection-entropy loss of the
// paper, weight model.ffn.topp_ent_coef:
//   L_ent = mean_t H(p_t),  H(p) = −Σ_i p_i ln p_i,  dH/dz_j = −p_j (ln p_j + H)
// It keeps the router from spreading probability to activate more experts. Its raw value is the
// `ent_conf` statistic.
#include <math.h>
#include <stdlib.h>

#include "select/select.h"

typedef struct {
    float P, ent_coef;
    int *order;  // [n] scratch
} TopP;

static int topp_slots(const FfnConfig *c) { return c->n_experts; }

static const char *topp_check(const FfnConfig *c, const ScoreInfo *src) {
    (void)src;
    if (!(c->top_p > 0 && c->top_p <= 1)) return "model.ffn.top_p must be in (0, 1] with model.ffn.select topp";
    if (c->topp_ent_coef < 0) return "model.ffn.topp_ent_coef must be >= 0";
    return NULL;
}

static void topp_init(Selection *s, const FfnConfig *c) {
    TopP *p = xcalloc(1, sizeof *p);
    p->P = c->top_p;
    p->ent_coef = c->topp_ent_coef;
    p->order = xcalloc(s->n, sizeof(int));
    s->priv = p;
}

static void topp_free(Selection *s) {
    TopP *p = s->priv;
    free(p->order);
    free(p);
}

static void topp_select(Selection *s, Rng *rng) {
    (void)rng;
    TopP *tp = s->priv;
    int n = s->n, *ord = tp->order;
    for (int t = 0; t < s->T; t++) {
        const float *p = s->prob + (size_t)t * n;
        int *ch = s->choice + (size_t)t * n;
        float *g = s->gate + (size_t)t * n;
        // p sorts like S (softmax is monotone); sorting S keeps exact ties on the lower index
        select_topk_row(s->S + (size_t)t * n, n, n, ord);
        // the threshold is relative to the row's own sum, so P = 1 reaches the last expert
        // exactly despite rounding
        double total = 0, cum = 0;
        for (int i = 0; i < n; i++) total += p[ord[i]];
        int m = 0;
        while (m < n) {
            cum += p[ord[m++]];
            if (cum >= (double)tp->P * total) break;
        }
        for (int j = 0; j < n; j++) ch[j] = j < m ? ord[j] : -1;
        for (int j = m; j < n; j++) g[j] = 0;
        select_gates_row(s, t, ch, m, g);
    }
    select_apply_capacity(s);
}

static double topp_aux_forward(Selection *s) {
    TopP *tp = s->priv;
    double a = select_std_aux_forward(s);
    if (tp->ent_coef == 0) return a;
    double h = 0;
    for (long i = 0; i < (long)s->T * s->n; i++)
        if (s->prob[i] > 0) h -= s->prob[i] * log(s->prob[i]);
    return a + tp->ent_coef * h / s->T;
}

static void topp_aux_backward(const Selection *s, float *dS, float scale) {
    const TopP *tp = s->priv;
    select_std_aux_backward(s, dS, scale);
    if (tp->ent_coef == 0) return;
    int n = s->n;
    double c = (double)scale * tp->ent_coef / s->T;
    for (int t = 0; t < s->T; t++) {
        const float *p = s->prob + (size_t)t * n;
        float *d = dS + (size_t)t * n;
        double h = 0;
        for (int i = 0; i < n; i++) if (p[i] > 0) h -= p[i] * log(p[i]);
        for (int j = 0; j < n; j++)
            if (p[j] > 0) d[j] -= (float)(c * p[j] * (log(p[j]) + h));
    }
}

const SelectMethod select_topp = {
    .name = "topp",
    .keys = "gate capacity top_p topp_ent_coef",
    .summary = "Top-P token choice: each token takes its most probable experts until their probability reaches model.ffn.top_p",
    .slots = topp_slots,
    .check = topp_check,
    .init = topp_init,
    .free = topp_free,
    .select = topp_select,
    .gate_backward = select_gates_backward,
    .aux_forward = topp_aux_forward,
    .aux_backward = topp_aux_backward,
};

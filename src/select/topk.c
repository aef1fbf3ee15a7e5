// topk.c — token choice top-K (the paper's baseline for both router MoE and AoE): every token
// takes the K experts with the largest scores (ties to the lower index); gates by
// model.ffn.gate; optional capacity factor with token dropping (model.ffn.capacity > 0);
// standard Switch balancing loss and z-loss. No gradient through the choice itself.
#include "select/select.h"

static int topk_slots(const FfnConfig *c) { return c->top_k; }

static void topk_select(Selection *s, Rng *rng) {
    (void)rng;
    int n = s->n, K = s->kmax;
    for (int t = 0; t < s->T; t++) {
        int *ch = s->choice + (size_t)t * K;
        select_topk_row((s->aff ? s->aff : s->S) + (size_t)t * n, n, K, ch);  // the source's rank if it has one
        select_gates_row(s, t, ch, K, s->gate + (size_t)t * K);
    }
    select_apply_capacity(s);
}

const SelectMethod select_topk = {
    .name = "topk",
    .keys = "gate capacity",
    .summary = "token choice: each token takes its K highest-scoring experts",
    .slots = topk_slots,
    .select = topk_select,
    .gate_backward = select_gates_backward,
};

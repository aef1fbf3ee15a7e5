// moe.c — router MoE and AoE layers (FfnOps): dispatch and experts. The scores come from a score
// source (score.h); selection, gates, auxiliary losses and statistics are delegated to src/select.
// The per-token reference (the specification and test oracle) is moe_ref.c.
//
// Dispatch: the (token, slot) pairs that survive selection are counting-sorted by expert (tokens
// ascending within an expert), their rows gathered into contiguous buffers, and each expert runs
// as three (AoE: three) matrix products over its rows. The gate-weighted scatter-add walks each
// token's slots in order, so results do not depend on thread scheduling (no float atomics).
#include "model/moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/moe_ep.h"
#include "util/prof.h"

static int expert_parallel_mode = -1;
void moe_set_expert_parallel(int mode) { expert_parallel_mode = mode; }

// The config as this FFN kind sees it: model.ffn.type is the kind's own name (the score source
// follows it), whatever the config says for the other layers.
static Config as_type(const Config *c, const char *type) {
    Config k = *c;
    snprintf(k.ffn.type, sizeof k.ffn.type, "%s", type);
    return k;
}

// ---- create / destroy ----
// c has passed model_validate_config: sizes and rules are asserted here, not re-checked.
static void *create_common(Params *P, const Config *cfg, int layer, int max_T, int aoe) {
    MoeLayer *L = xcalloc(1, sizeof *L);
    Config k = as_type(cfg, aoe ? "aoe" : "moe");
    const Config *c = &k;
    const FfnConfig *f = &c->ffn;
    const ScoreOps *so = score_for(c);
    L->type = aoe ? "aoe" : "moe";
    L->layer = layer;
    L->d = c->d_model;
    L->n = f->n_experts;
    L->K = f->top_k;
    L->D = aoe || f->gate_rank > 0 ? ffn_d_wide(c) : f->d_ff;  // factorised gate: Eq.5 width
    L->max_T = max_T;
    if (!so || L->d <= 0 || L->n <= 0 || L->D <= 0)
        die("internal: layer %d: sparse FFN on an unchecked config (model.d_model %d, model.ffn.n_experts %d, "
            "width %d)", layer, L->d, L->n, L->D);
    score_create(&L->score, so, P, c, layer, max_T);  // registers the score parameters first
    L->r = L->score.r;
    L->gin = L->r ? L->r : L->d;
    L->sel = select_create(f, &so->info, max_T);
    L->sel->aff = L->score.rank;
    L->sel->seq_len = c->seq_len;
    // parameter aux losses (ERC) are averaged over the sparse layers: each carries 1/#sparse
    int n_sparse = 0;
    for (int l = 0; l < c->n_layer; l++) n_sparse += ffn_is_sparse_layer(c, l);
    L->sel->layer_share = n_sparse > 0 ? 1.0f / n_sparse : 1.0f;
    L->kmax = L->sel->kmax;
    int d = L->d, n = L->n, D = L->D, r = L->r;
    float sd = c->init_std;
    char name[64];
#define NAME(s) (snprintf(name, sizeof name, "layers.%d.ffn.%s", layer, s), name)
    // expert parallelism: this process holds (and trains) only experts e0 .. e0+ne-1
    if (n % moe_ep_group_size()) die("internal: %d experts over expert-parallel groups of %d", n, moe_ep_group_size());
    L->ne = n / moe_ep_group_size();
    L->e0 = moe_ep_layout_rank() * L->ne;
    L->o_gate = params_add_slices(P, NAME(r ? "w_up" : "w_gate"), 1, INIT_NORMAL, sd, L->e0, L->ne, 3, n, L->gin, D);
    L->o_proj = params_add_slices(P, NAME("w_proj"), 1, INIT_NORMAL, sd, L->e0, L->ne, 3, n, d, D);
    // w_out scaled like the dense FFN's (GPT-2 residual-branch init), so 1 expert == dense
    L->o_out = params_add_slices(P, NAME("w_out"), 1, INIT_NORMAL, sd / sqrtf(2.0f * c->n_layer), L->e0, L->ne, 3, n, D, d);
#undef NAME
    // expert-side buffers (U, V, A, dU, dV) start at R rows; under expert parallelism moe_ep.c
    // regrows them when more rows arrive (up to E·R when the whole group picks this rank's experts)
    size_t R = (size_t)max_T * L->kmax;
    L->cnt = xcalloc(n, sizeof(int));
    L->start = xcalloc(n + 1, sizeof(int));
    L->row_slot = xcalloc(R, sizeof(int));
    L->slot_row = xcalloc(R, sizeof(int));
    // Xe, Ce, A and dY feed only products: activation blocks (bf16 storage in bf16 precision,
    // kernels.h) — except under expert parallelism (moe_ep.c sends and regrows fp32 rows), and dY
    // when the source computed Y itself (it takes dY back as a stage gradient)
    int local = moe_ep_group_size() == 1;
    L->Xe = local ? act_alloc(R * d) : falloc(R * d);
    L->U = falloc(R * D);
    L->V = falloc(R * D);
    L->A = local ? act_alloc(R * D) : falloc(R * D);
    L->Y = falloc(R * d);
    L->dY = local && !(L->score.stages & STAGE_Y) ? act_alloc(R * d) : falloc(R * d);
    if (local) {  // expert parallelism shares them across layers (moe_ep.c)
        L->dU = falloc(R * D);
        L->dV = falloc(R * D);
    }
    L->dXe = falloc(R * d);
    L->dgate = falloc(R);
    if (r) {
        L->Ce = local ? act_alloc(R * r) : falloc(R * r);
        L->dCe = falloc(R * r);
    }
    L->ex = (struct ExpertRows){L->cnt, L->start, L->Xe, L->Ce, L->Y, L->dY, L->dXe, L->dCe};
    L->ep = moe_ep_create(L, R);  // NULL without expert parallelism
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
    score_destroy(&L->score);
    moe_ep_destroy(L);
    float *fb[] = {L->U, L->V, L->Y, L->dU, L->dV, L->dXe, L->dCe, L->dgate}, *acts[] = {L->Xe, L->Ce, L->A, L->dY};
    for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++) free(fb[i]);
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) act_free(acts[i]);
    free(L->cnt); free(L->start); free(L->row_slot); free(L->slot_row);
    free(L);
}

// ---- scores ----
// The experts read the source's keys unless the source computed their gate branch (u) or all of
// them (y) itself (score.h stages).
static int reads_keys(const MoeLayer *L) { return L->r && !(L->score.stages & (STAGE_U | STAGE_Y)); }

// The row buffer of a source stage (bit i of STAGE_*) on the layer's side, and its gradient.
static float *stage_rows(MoeLayer *L, int i, int grad) {
    int b = 1 << i;
    return b == STAGE_U ? (grad ? L->dU : L->U) : b == STAGE_V ? (grad ? L->dV : L->V) : (grad ? L->dY : L->Y);
}

// A source's per-(token, expert) array [T,n,w] from the processed rows [rows,w]: the rows
// scattered back to their (token, expert), zero where the expert did not run. The experts'
// gradients into the source's keys and stages.
static void scatter_rows(MoeLayer *L, float *dst, const float *rows, int w, int T) {
    int n = L->n, km = L->kmax;
    memset(dst, 0, sizeof(float) * (size_t)T * n * w);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < km; j++) {
            int row = L->slot_row[(size_t)t * km + j];
            if (row < 0) continue;
            int e = L->sel->expert[(size_t)t * km + j];
            float *o = dst + ((size_t)t * n + e) * w;
            const float *src = rows + (size_t)row * w;
            for (int i = 0; i < w; i++) o[i] += src[i];
        }
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
    int keys = reads_keys(L), D = L->D;
    const Score *sc = &L->score;
#pragma omp parallel for schedule(static)
    for (int row = 0; row < L->rows; row++) {
        int i = L->row_slot[row], t = i / km;
        size_t te = (size_t)t * n + ex[i];  // (token, expert)
        act_store(L->Xe + (size_t)row * d, x + (size_t)t * d, d);
        if (keys) act_store(L->Ce + (size_t)row * r, sc->key + te * r, r);
        for (int s = 0; s < N_STAGES; s++)  // what the source computed for every expert: reused
            if (sc->stages & 1 << s) {
                size_t w = (1 << s) == STAGE_Y ? (size_t)d : (size_t)D;
                memcpy(stage_rows(L, s, 0) + (size_t)row * w, sc->stage[s] + te * w, sizeof(float) * w);
            }
    }
}

static int use_expert_parallel(const MoeLayer *L) {
    if (expert_parallel_mode >= 0) return expert_parallel_mode;
    // Small per-expert products do not split well across threads; many experts balance well.
    return L->n >= 2 * kernels_threads() || (double)L->rows / L->n * L->D * L->d < 4e6;
}

// Expert e over its m rows: U = In·Wg with In = Xe (or the keys Ce, width r, when the source
// has keys: AoE's Wup), V = Xe·Wp, A = SiLU(U)⊙V, Y = A·Wo — less what the source computed
// (its stages: gathered, not recomputed; their gradients handed back, not propagated).
static ExpertPass expert_pass(MoeLayer *L, Params *P, int e) {
    const struct ExpertRows *x = &L->ex;
    int d = L->d, D = L->D, gi = L->gin;
    size_t b = x->start[e], le = (size_t)(e - L->e0);  // le: the expert's slice in this process's tensors
    return (ExpertPass){
        .m = x->cnt[e], .d = d, .D = D, .gin = gi, .todo = STAGE_ALL & ~L->score.stages,
        .x = x->Xe + b * d, .in = L->r ? x->Ce + b * L->r : x->Xe + b * d, .ldx = d, .ldin = gi, .ldD = D, .ldy = d,
        .Wg = P->w + L->o_gate + le * gi * D, .Wp = P->w + L->o_proj + le * d * D,
        .Wo = P->w + L->o_out + le * D * d, .gWg = P->g + L->o_gate + le * gi * D,
        .gWp = P->g + L->o_proj + le * d * D, .gWo = P->g + L->o_out + le * D * d,
        .u = L->U + b * D, .v = L->V + b * D, .a = L->A + b * D, .y = x->Y + b * d,
        .du = L->dU + b * D, .dv = L->dV + b * D, .dy = x->dY + b * d, .dx = x->dXe + b * d,
        .din = L->r ? x->dCe + b * L->r : NULL};
}

static void expert_forward(MoeLayer *L, const Params *P, int e, MatmulFn mm) {
    ExpertPass p = expert_pass(L, (Params *)P, e);
    expert_pass_forward(&p, mm);
}

static void expert_backward(MoeLayer *L, Params *P, int e, MatmulFn mm) {
    ExpertPass p = expert_pass(L, P, e);
    expert_pass_backward(&p, mm);
}

static void experts_run(MoeLayer *L, Params *P, int backward) {
    if (use_expert_parallel(L)) {
        // largest experts first (insertion sort, ties by index): the dynamic schedule then ends
        // on small ones, so threads finish close together. Each expert writes only its own rows
        // and gradient slices, so the order does not change any result.
        int *ord = xmalloc(sizeof(int) * L->ne);
        for (int e = L->e0; e < L->e0 + L->ne; e++) {
            int j = e - L->e0;
            for (; j > 0 && L->ex.cnt[ord[j - 1]] < L->ex.cnt[e]; j--) ord[j] = ord[j - 1];
            ord[j] = e;
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < L->ne; i++) {
            if (backward) expert_backward(L, P, ord[i], matmul_st);
            else expert_forward(L, P, ord[i], matmul_st);
        }
        free(ord);
    } else {
        for (int e = L->e0; e < L->e0 + L->ne; e++) {  // this process's experts (all without EP)
            if (backward) expert_backward(L, P, e, matmul);
            else expert_forward(L, P, e, matmul);
        }
    }
}

static SelectParams param_view(const MoeLayer *L, Params *P) {
    SelectParams v = {.d = L->d, .n = L->n, .D = L->D};
    if (L->score.ops->info.router) {  // R [d,n] and the experts' W_g [n,d,D] (no keys)
        v.R = P->w + L->score.o_param; v.dR = P->g + L->score.o_param;
        v.Wg = P->w + L->o_gate; v.dWg = P->g + L->o_gate;
    }
    return v;
}

// ---- FfnOps ----
// out [T,d] = Σ_j gate[t,j]·E_{expert[t,j]}(x_t), x [T,d].
static void moe_forward(void *self, const Params *P, float *out, const float *x, int T, int train, Rng *rng) {
    MoeLayer *L = self;
    int d = L->d, km = L->kmax;
    if (T > L->max_T) die("moe_forward: %d tokens > %d the layer was built for", T, L->max_T);
    L->T = T;
    // profiling: the AoE key product is expert work (it is W_down of every expert), the router
    // product is routing (ScoreOps.expert_work)
    double t0 = prof_begin();
    score_forward(&L->score, P, x, T, train);
    prof_end(L->score.ops->expert_work ? PROF_EXPERT : PROF_DISPATCH, t0);
    t0 = prof_begin();
    select_forward(L->sel, L->score.S, T, train, rng);
    dispatch_build(L, x, T);
    prof_end(PROF_DISPATCH, t0);
    t0 = prof_begin();
    if (L->ep) moe_ep_dispatch(L);  // rows to the ranks holding their experts
    experts_run(L, (Params *)P, 0);
    if (L->ep) moe_ep_combine(L);   // expert outputs back to the tokens' ranks
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
    prof_end(PROF_DISPATCH, t0);
}

static void moe_backward(void *self, Params *P, float *dx, const float *dout, const float *x, int T, float aux_scale) {
    MoeLayer *L = self;
    int d = L->d, km = L->kmax;
    if (T != L->T) die("moe_backward: %d tokens, but the last forward had %d", T, L->T);
    const float *gate = L->sel->gate;
    double t0 = prof_begin();
    // dgate = <dout_t, y_row>; dY_row = gate·dout_t (computed in dXe, free until the experts run,
    // when dY is stored in bf16)
    float *dYf = act_out(L->dY, L->dXe);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < km; j++) {
            size_t i = (size_t)t * km + j;
            int row = L->slot_row[i];
            if (row < 0) { L->dgate[i] = 0; continue; }
            const float *g = dout + (size_t)t * d, *y = L->Y + (size_t)row * d;
            float *dy = dYf + (size_t)row * d;
            double s = 0;
            float gi = gate[i];
#pragma omp simd reduction(+ : s)
            for (int k = 0; k < d; k++) { s += (double)g[k] * y[k]; dy[k] = gi * g[k]; }
            L->dgate[i] = (float)s;
        }
    act_store(L->dY, dYf, (size_t)L->rows * d);
    prof_end(PROF_DISPATCH, t0);
    t0 = prof_begin();
    if (L->ep) moe_ep_dispatch_grad(L);
    experts_run(L, P, 1);
    if (L->ep) moe_ep_combine_grad(L);
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
    select_backward(L->sel, L->dgate, L->score.dS, aux_scale);
    SelectParams v = param_view(L, P);
    select_param_aux_backward(L->sel, &v, aux_scale);
    if (reads_keys(L)) scatter_rows(L, L->score.dkey, L->dCe, L->r, T);
    for (int i = 0; i < N_STAGES; i++)
        if (L->score.stages & 1 << i)
            scatter_rows(L, L->score.dstage[i], stage_rows(L, i, 1), (1 << i) == STAGE_Y ? L->d : L->D, T);
    prof_end(PROF_DISPATCH, t0);
    t0 = prof_begin();
    score_backward(&L->score, P, dx, x, T);
    prof_end(L->score.ops->expert_work ? PROF_EXPERT : PROF_DISPATCH, t0);
}

static double moe_aux_loss(void *self) {
    MoeLayer *L = self;
    return L->sel->train ? L->sel->aux : 0;
}

static void moe_write_stats(void *self, FILE *f, long step, int layer) {
    MoeLayer *L = self;
    if (!L->sel->st.forwards) return;
    // data parallelism: counts over all ranks (collective); only rank 0 passes a file, others NULL
    select_stats_reduce(L->sel);
    score_stats_reduce(&L->score);
    if (f) {
        fprintf(f, "{\"v\":1,\"step\":%ld,\"layer\":%d,\"type\":\"%s\",\"select\":\"%s\",\"gate\":\"%s\",\"n\":%d,\"k\":%d",
                step, layer, L->type, L->sel->m->name,
                L->sel->gate_kind == GATE_SOFTMAX ? "softmax" : "topk_softmax", L->n, L->K);
        select_write_stats(L->sel, f);
    }
    score_write_stats(&L->score, f);
    if (f) fprintf(f, "}\n");
    select_stats_reset(L->sel);
}

static void moe_set_progress(void *self, float progress) { ((MoeLayer *)self)->sel->progress = progress; }

// Per layer: parameters, parameters a token touches (the score source's + K experts'), and
// forward FLOPs per token (2 per multiply-add; gates, norms and SiLU ignored). Expert: gate
// branch (input x or the source's key) + projection + output, less the stages the source
// already computed for every expert (counted in its macs: AoE's proj..output positions).
static void sparse_count(const Config *cfg, const char *type, double *total, double *active, double *flops) {
    Config k = as_type(cfg, type);
    const Config *c = &k;
    const ScoreOps *so = score_for(c);
    double D = strcmp(type, "aoe") && c->ffn.gate_rank <= 0 ? c->ffn.d_ff : ffn_d_wide(c);
    double d = c->d_model, n = c->ffn.n_experts, K = c->ffn.top_k;
    double score = so && so->count ? so->count(c) : 0, r = so && so->key_dim ? so->key_dim(c) : 0;
    double macs = so && so->macs ? so->macs(c) : score;
    int st = so && so->stages ? so->stages(c) : 0;
    double expert = (r ? r : d) * D + 2 * d * D;
    double rest = st & STAGE_Y ? 0 : (st & STAGE_U ? 0 : (r ? r : d) * D) + (st & STAGE_V ? 0 : d * D) + D * d;
    *total = score + n * expert;
    *active = macs + K * rest;  // every token pays the whole score source (AoE: every W_down)
    *flops = 2 * (macs + K * rest);
}

static void moe_count(const Config *c, double *total, double *active, double *flops) {
    sparse_count(c, "moe", total, active, flops);
}

static void aoe_count(const Config *c, double *total, double *active, double *flops) {
    sparse_count(c, "aoe", total, active, flops);
}

// The sparse FFN's rules, each checked here only: the layer placement, then the score source's
// (AoE d_low, GrAP divisibility, ...), then the selection method's (top_k, gate, losses, ...).
static const char *sparse_check(const Config *c, char *buf, int len) {
    const FfnConfig *f = &c->ffn;
    if (f->first >= c->n_layer) {
        snprintf(buf, len, "model.ffn.first (%d) must be < model.n_layer (%d): no layer would be sparse", f->first,
                 c->n_layer);
        return buf;
    }
    const char *why = score_check(c, buf, len);
    if (why) return why;
    return select_check(f, &score_for(c)->info, buf, len);
}

// Read by every sparse layer (placement, experts, the selection layer's balancing loss); d_ff is
// the expert width and that of the dense layers in between.
#define SPARSE_KEYS "d_ff n_experts top_k every first select lb_coef lb_div_k"

const FfnOps ffn_moe_ops = {
    .name = "moe", .create = moe_create, .forward = moe_forward, .backward = moe_backward,
    .aux_loss = moe_aux_loss, .write_stats = moe_write_stats, .count = moe_count, .destroy = moe_destroy,
    .set_progress = moe_set_progress, .check = sparse_check, .keys = SPARSE_KEYS,
};

const FfnOps ffn_aoe_ops = {
    .name = "aoe", .create = aoe_create, .forward = moe_forward, .backward = moe_backward,
    .aux_loss = moe_aux_loss, .write_stats = moe_write_stats, .count = aoe_count, .destroy = moe_destroy,
    .set_progress = moe_set_progress, .check = sparse_check, .keys = SPARSE_KEYS " d_wide",
};

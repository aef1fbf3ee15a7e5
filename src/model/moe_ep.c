// moe_ep.c — see moe_ep.h. Layout: rows leave in the sender's dispatch order (expert-major,
// tokens ascending), arrive source-major (rank 0's rows for my experts, then rank 1's, ...) and
// are permuted to expert-major so each local expert runs one product over all its rows, in
// source order: the same rows in the same order as one process would give it.
#include "model/moe_ep.h"

#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "util/mem.h"

struct MoeEp {
    int E, me, ne, e0;             // group size, my group rank, experts per rank, my first expert
    int *rc;                       // [E·ne] rows source s sent for my local expert j: rc[s·ne + j]
    int *srow, *sdisp, *rrow, *rdisp;  // [E] rows sent to / received from each rank, offsets
    int *ic, *id, *oc, *od;        // [E] the same in floats for one exchange
    int *cnt, *start;              // [n], [n+1] expert-side rows (0 for experts held elsewhere)
    size_t cap;                    // rows the layer's expert-side buffers hold
    float *Xe, *Ce;                // [cap·d], [cap·r] the arriving inputs, kept for the backward
};

// Rows that live only within one exchange or one expert pass — the source-major staging, the
// expert outputs before they go back, the arriving output gradients, the leaving input (and key)
// gradients — share one set of buffers across all layers; they only grow.
// The experts' backward scratch dU, dV (rows × D) is shared the same way.
static struct { size_t rows, w, r, D; float *stage, *Y, *dY, *dXe, *dCe, *dU, *dV; } tr;

static void transient_fit(size_t rows, size_t d, size_t r, size_t D) {
    if (rows <= tr.rows && d <= tr.w && r <= tr.r && D <= tr.D) return;
    tr.rows = rows > tr.rows ? rows : tr.rows;
    tr.w = d > tr.w ? d : tr.w;
    tr.r = r > tr.r ? r : tr.r;
    tr.D = D > tr.D ? D : tr.D;
    float **b[] = {&tr.stage, &tr.Y, &tr.dY, &tr.dXe, &tr.dCe, &tr.dU, &tr.dV};
    size_t w[] = {tr.w > tr.r ? tr.w : tr.r /* x (d) or keys (r) */, tr.w, tr.w, tr.w, tr.r, tr.D, tr.D};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) {
        if (!mem_dry) free(*b[i]);  // a memory estimate's blocks are only reserved, never freed
        *b[i] = falloc(tr.rows * w[i]);
    }
}

// Points the layer's expert rows at its own inputs and the shared transients (call before each
// pass: another layer may have regrown the transients).
static void bind_rows(MoeLayer *L, struct MoeEp *ep) {
    L->ex = (struct ExpertRows){ep->cnt, ep->start, ep->Xe, ep->Ce, tr.Y, tr.dY, tr.dXe, L->r ? tr.dCe : NULL};
    L->dU = tr.dU;
    L->dV = tr.dV;
}

double moe_ep_uniform_bytes(const Config *c, int E, long T) {
    if (E <= 1 || !strcmp(c->ffn.type, "dense")) return 0;
    int n_sparse = 0;
    for (int l = 0; l < c->n_layer; l++) n_sparse += ffn_is_sparse_layer(c, l);
    const ScoreOps *so = score_for(c);  // keys (AoE) travel with their rows
    double r = so && so->key_dim ? so->key_dim(c) : 0;
    return n_sparse * (double)T * c->ffn.top_k * (E - 1) / E * (4.0 * c->d_model + 2 * r) * 4;
}

static int lay_E = 1, lay_me = 0;
void moe_ep_layout(int E, int me) { lay_E = E; lay_me = me; }
int moe_ep_group_size(void) { return lay_E; }
int moe_ep_layout_rank(void) { return lay_me; }

struct MoeEp *moe_ep_create(MoeLayer *L, size_t R) {
    int E = lay_E;
    if (E == 1) return NULL;
    struct MoeEp *ep = xcalloc(1, sizeof *ep);
    ep->E = E;
    ep->me = lay_me;
    ep->ne = L->ne;
    ep->e0 = L->e0;
    ep->rc = xcalloc((size_t)E * ep->ne, sizeof(int));
    int **iv[] = {&ep->srow, &ep->sdisp, &ep->rrow, &ep->rdisp, &ep->ic, &ep->id, &ep->oc, &ep->od};
    for (size_t i = 0; i < sizeof iv / sizeof iv[0]; i++) *iv[i] = xcalloc(E, sizeof(int));
    ep->cnt = xcalloc(L->n, sizeof(int));
    ep->start = xcalloc(L->n + 1, sizeof(int));
    ep->cap = R;
    ep->Xe = falloc(R * L->d);
    if (L->r) ep->Ce = falloc(R * L->r);
    transient_fit(R, L->d, L->r, L->D);
    bind_rows(L, ep);
    return ep;
}

// The expert-side buffers are sized for the rows a rank sends (balanced routing); a forward that
// brings more rows to this rank's experts regrows them (their contents are rewritten anyway).
static void ensure_rows(MoeLayer *L, struct MoeEp *ep, size_t rows) {
    if (rows > ep->cap) {
        rows += rows / 8;  // some headroom, so a slowly rising load does not regrow every step
        float **wide[] = {&L->U, &L->V, &L->A};
        for (size_t i = 0; i < sizeof wide / sizeof *wide; i++) { free(*wide[i]); *wide[i] = falloc(rows * L->D); }
        free(ep->Xe); ep->Xe = falloc(rows * L->d);
        if (L->r) { free(ep->Ce); ep->Ce = falloc(rows * L->r); }
        ep->cap = rows;
        transient_fit(rows, L->d, L->r, L->D);
    }
    bind_rows(L, ep);
}

void moe_ep_destroy(MoeLayer *L) {
    struct MoeEp *ep = L->ep;
    if (!ep) return;
    L->dU = L->dV = NULL;  // the shared ones stay for the next model
    L->ep = NULL;
    int *iv[] = {ep->rc, ep->srow, ep->sdisp, ep->rrow, ep->rdisp, ep->ic, ep->id, ep->oc, ep->od, ep->cnt, ep->start};
    for (size_t i = 0; i < sizeof iv / sizeof iv[0]; i++) free(iv[i]);
    free(ep->Xe); free(ep->Ce);
    free(ep);
}

// Copies rows between the source-major staging (stage) and the expert-major buffer (ex):
// to_expert = 1: stage -> ex; 0: ex -> stage. w floats per row.
static void permute(const struct MoeEp *ep, float *stage, float *ex, int w, int to_expert) {
    for (int s = 0; s < ep->E; s++) {
        size_t src = ep->rdisp[s];
        for (int j = 0; j < ep->ne; j++) {
            int m = ep->rc[s * ep->ne + j], e = ep->e0 + j;
            size_t dst = ep->start[e];
            for (int q = 0; q < s; q++) dst += ep->rc[q * ep->ne + j];
            float *a = stage + src * w, *b = ex + dst * w;
            if (to_expert) memcpy(b, a, sizeof(float) * (size_t)m * w);
            else memcpy(a, b, sizeof(float) * (size_t)m * w);
            src += m;
        }
    }
}

// One exchange of w-float rows: out = 1 sends the sender's dispatch blocks (srow/sdisp) and
// receives source-major (rrow/rdisp); out = 0 is the way back.
static void exchange(struct MoeEp *ep, const float *send, float *recv, int w, int out) {
    const int *sc = out ? ep->srow : ep->rrow, *sd = out ? ep->sdisp : ep->rdisp;
    const int *rc = out ? ep->rrow : ep->srow, *rd = out ? ep->rdisp : ep->sdisp;
    for (int q = 0; q < ep->E; q++) {
        ep->ic[q] = sc[q] * w; ep->id[q] = sd[q] * w;
        ep->oc[q] = rc[q] * w; ep->od[q] = rd[q] * w;
    }
    dist_ep_alltoallv_f(send, ep->ic, ep->id, recv, ep->oc, ep->od);
}

// Rows of w floats in this rank's dispatch order -> the experts' ranks, expert-major there.
static void rows_out(struct MoeEp *ep, const float *local, float *expert, int w) {
    exchange(ep, local, tr.stage, w, 1);
    permute(ep, tr.stage, expert, w, 1);
}

// The way back: expert-major rows -> the ranks of their tokens, in their dispatch order.
static void rows_back(struct MoeEp *ep, float *expert, float *local, int w) {
    permute(ep, tr.stage, expert, w, 0);
    exchange(ep, tr.stage, local, w, 0);
}

void moe_ep_dispatch(MoeLayer *L) {
    struct MoeEp *ep = L->ep;
    int E = ep->E, ne = ep->ne;
    // how many rows each rank has for each of my experts (the dispatch counts, ne per rank)
    dist_ep_alltoall_i(L->cnt, ep->rc, ne);
    for (int q = 0; q < E; q++) {
        ep->sdisp[q] = L->start[q * ne];
        ep->srow[q] = L->start[(q + 1) * ne] - ep->sdisp[q];
        ep->rrow[q] = 0;
        for (int j = 0; j < ne; j++) ep->rrow[q] += ep->rc[q * ne + j];
        ep->rdisp[q] = q ? ep->rdisp[q - 1] + ep->rrow[q - 1] : 0;
    }
    memset(ep->cnt, 0, sizeof(int) * L->n);
    for (int s = 0; s < E; s++)
        for (int j = 0; j < ne; j++) ep->cnt[ep->e0 + j] += ep->rc[s * ne + j];
    for (int e = 0; e < L->n; e++) ep->start[e + 1] = ep->start[e] + ep->cnt[e];
    ensure_rows(L, ep, (size_t)ep->start[L->n]);
    rows_out(ep, L->Xe, ep->Xe, L->d);
    if (L->r) rows_out(ep, L->Ce, ep->Ce, L->r);
}

void moe_ep_combine(MoeLayer *L) { rows_back(L->ep, tr.Y, L->Y, L->d); }

void moe_ep_dispatch_grad(MoeLayer *L) {
    bind_rows(L, L->ep);
    rows_out(L->ep, L->dY, tr.dY, L->d);
}

void moe_ep_combine_grad(MoeLayer *L) {
    rows_back(L->ep, tr.dXe, L->dXe, L->d);
    if (L->r) rows_back(L->ep, tr.dCe, L->dCe, L->r);
}

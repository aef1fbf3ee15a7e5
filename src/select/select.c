// select.c — the method table, the driver every sparse layer calls, and the building blocks
// methods share (top-K of a row, gate variants and their backward, capacity dropping, the
// standard auxiliary losses, load statistics). See select.h for the interface.
#include "select/select.h"

#include "dist/dist.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

// ---- the table: one line per method ----
static const SelectMethod *const methods[] = {
    &select_topk,
    &select_topp,
    &select_expert_choice,
    &select_etr,
    &select_etr_ecr,
};
static const int n_methods = sizeof methods / sizeof methods[0];

const SelectMethod *select_find(const char *name) {
    for (int i = 0; i < n_methods; i++)
        if (!strcmp(methods[i]->name, name)) return methods[i];
    return NULL;
}

int select_key_listed(const char *name) {
    for (int i = 0; i < n_methods; i++)
        if (word_in(methods[i]->keys, name)) return 1;
    return 0;
}

const char *select_names(void) {
    static char buf[256];
    if (!buf[0])
        for (int i = 0; i < n_methods; i++) {
            if (i) strncat(buf, "|", sizeof buf - strlen(buf) - 1);
            strncat(buf, methods[i]->name, sizeof buf - strlen(buf) - 1);
        }
    return buf;
}

int select_gate_kind(const char *name) {
    if (!strcmp(name, "topk_softmax")) return GATE_TOPK_SOFTMAX;
    if (!strcmp(name, "softmax")) return GATE_SOFTMAX;
    return -1;
}

const char *select_check(const FfnConfig *c, const ScoreInfo *src, char *buf, int buflen) {
    const SelectMethod *m = select_find(c->select);
    if (!m) {
        snprintf(buf, buflen, "model.ffn.select: unknown method '%s' (expected %s)", c->select, select_names());
        return buf;
    }
    if (select_gate_kind(c->gate) < 0) {
        snprintf(buf, buflen, "model.ffn.gate: unknown gate '%s' (expected topk_softmax|softmax)", c->gate);
        return buf;
    }
    if (c->n_experts < 1) return "model.ffn.n_experts must be >= 1";
    if (c->top_k < 1 || c->top_k > c->n_experts) {
        snprintf(buf, buflen, "model.ffn.top_k (%d) must be in 1..model.ffn.n_experts (%d)", c->top_k, c->n_experts);
        return buf;
    }
    if (c->capacity < 0) return "model.ffn.capacity must be >= 0 (0 = dropless)";
    if (c->lb_coef < 0 || c->z_loss < 0) return "model.ffn.lb_coef and model.ffn.z_loss must be >= 0";
    if (c->z_loss > 0 && !src->router) {
        snprintf(buf, buflen, "model.ffn.z_loss acts on router logits; the score source '%s' (model.ffn.type %s, "
                 "model.ffn.select %s) has no router (set it to 0)", src->name, c->type, c->select);
        return buf;
    }
    // ERC composes with every method but needs router rows
    if (c->erc_coef < 0) return "model.ffn.erc_coef must be >= 0 (0 = off)";
    if (c->erc_log && !src->router) {
        snprintf(buf, buflen, "model.ffn.erc_log measures router rows; the score source '%s' (model.ffn.type %s, "
                 "model.ffn.select %s) has none (set model.ffn.erc_log to false)", src->name, c->type, c->select);
        return buf;
    }
    if (c->erc_coef > 0 && !src->router) {
        snprintf(buf, buflen, "model.ffn.erc_coef couples router rows with experts; the score source '%s' "
                 "(model.ffn.type %s, model.ffn.select %s) has no router (set model.ffn.erc_coef to 0)",
                 src->name, c->type, c->select);
        return buf;
    }
    if (c->erc_coef > 0 && c->n_experts < 2) return "model.ffn.erc_coef needs model.ffn.n_experts >= 2";
    if (c->erc_alpha < 0 || (c->erc_alpha > 1 && !c->erc_allow_alpha_gt1)) {
        snprintf(buf, buflen, "model.ffn.erc_alpha (%g) must be in [0, 1] unless model.ffn.erc_allow_alpha_gt1 "
                 "is true (then >= 0)", c->erc_alpha);
        return buf;
    }
    return m->check ? m->check(c, src) : NULL;
}

// ---- driver ----
Selection *select_create(const FfnConfig *c, const ScoreInfo *src, int max_T) {
    const SelectMethod *m = select_find(c->select);
    if (!m || select_gate_kind(c->gate) < 0 || c->top_k < 1 || c->top_k > c->n_experts)
        die("internal: select_create on an unchecked config (model.ffn.select %s); validate it first", c->select);
    Selection *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->src = src;
    s->gate_kind = (GateKind)select_gate_kind(c->gate);
    s->n = c->n_experts;
    s->K = c->top_k;
    s->kmax = s->m->slots(c);
    s->max_T = max_T;
    s->lb_coef = c->lb_coef;
    s->z_coef = c->z_loss;
    s->lb_div_k = c->lb_div_k;
    s->capacity = c->capacity;
    size_t tn = (size_t)max_T * s->n, tk = (size_t)max_T * s->kmax;
    s->prob = falloc(tn);
    s->lse = falloc(max_T);
    s->choice = xcalloc(tk, sizeof(int));
    s->expert = xcalloc(tk, sizeof(int));
    s->gate = falloc(tk);
    s->load = xcalloc(s->n, sizeof(long));
    s->f = xcalloc(s->n, sizeof(double));
    s->red = xcalloc(2 * (size_t)s->n + 2, sizeof(double));
    s->st.counts = xcalloc(s->n, sizeof(long));
    s->layer_share = 1;
    if (c->erc_coef > 0 || c->erc_log) s->erc = erc_create(c);
    if (s->m->init) s->m->init(s, c);
    return s;
}

void select_destroy(Selection *s) {
    if (!s) return;
    if (s->m->free) s->m->free(s);
    erc_free(s->erc);
    free(s->prob); free(s->lse); free(s->choice); free(s->expert); free(s->gate);
    free(s->load); free(s->f); free(s->red); free(s->st.counts); free(s);
}

// prob[t] = softmax(S[t]) over n, lse[t] = logsumexp(S[t]); S [T,n].
static void softmax_rows(float *prob, float *lse, const float *S, int T, int n) {
    for (int t = 0; t < T; t++) {
        const float *z = S + (size_t)t * n;
        float *p = prob + (size_t)t * n;
        float mx = z[0];
        for (int i = 1; i < n; i++) if (z[i] > mx) mx = z[i];
        double sum = 0;
        for (int i = 0; i < n; i++) sum += exp((double)z[i] - mx);
        for (int i = 0; i < n; i++) p[i] = (float)(exp((double)z[i] - mx) / sum);
        lse[t] = (float)(mx + log(sum));
    }
}

void select_forward(Selection *s, const float *S, int T, int train, Rng *rng) {
    if (T > s->max_T) die("select_forward: %d tokens > %d the layer was built for", T, s->max_T);
    s->S = S;
    s->T = T;
    s->train = train;
    softmax_rows(s->prob, s->lse, S, T, s->n);
    s->m->select(s, rng);
    if (!train) return;
    // every auxiliary loss is averaged over the sparse layers (methods.md §0.2 [I]), so its weight
    // means the same whatever the depth
    s->aux = s->layer_share * (s->m->aux_forward ? s->m->aux_forward(s) : select_std_aux_forward(s));
    SelectStats *st = &s->st;
    st->forwards++;
    st->tokens += T;
    st->dropped += s->dropped;
    st->lb += s->lb;
    st->z += s->z;
    for (long i = 0; i < (long)T * s->kmax; i++) {
        if (s->expert[i] >= 0) st->counts[s->expert[i]]++;
        st->chosen += s->choice[i] >= 0;
    }
    for (int t = 0; t < T; t++) {
        int any = 0;
        for (int j = 0; j < s->kmax; j++) any |= s->expert[(size_t)t * s->kmax + j] >= 0;
        st->unrouted += !any;
    }
    for (int t = 0; t < T; t++) {
        const float *p = s->prob + (size_t)t * s->n;
        double h = 0;
        for (int i = 0; i < s->n; i++) if (p[i] > 0) h -= p[i] * log(p[i]);
        st->ent_conf += h;
    }
}

void select_backward(const Selection *s, const float *dgate, float *dS, float aux_scale) {
    memset(dS, 0, sizeof(float) * (size_t)s->T * s->n);
    s->m->gate_backward(s, dgate, dS);
    if (!s->train || aux_scale == 0) return;
    aux_scale *= s->layer_share;
    if (s->m->aux_backward) s->m->aux_backward(s, dS, aux_scale);
    else select_std_aux_backward(s, dS, aux_scale);
}

void select_param_aux_forward(Selection *s, const SelectParams *v, Rng *rng) {
    if (s->m->param_aux_forward) s->aux += s->layer_share * s->m->param_aux_forward(s, v, rng);
    if (!s->erc) return;
    // erc_log alone: the clean router (no noise, so the training RNG stream is not touched) and no
    // gradient; with erc_coef > 0 the logged loss is the trained (noised) one
    int train_on = erc_coef(s->erc) > 0;
    erc_noise(s->erc, v, train_on ? rng : NULL);
    double l = erc_loss(s->erc, v);
    s->aux += (double)erc_coef(s->erc) * s->layer_share * l;
    s->st.erc += l;
    s->st.erc_eps += erc_eps_mean(s->erc);
}

void select_param_aux_backward(Selection *s, const SelectParams *v, float aux_scale) {
    if (!s->train || aux_scale == 0) return;
    if (s->m->param_aux_backward) s->m->param_aux_backward(s, v, aux_scale * s->layer_share);
    if (s->erc && erc_coef(s->erc) > 0) erc_backward(s->erc, v, aux_scale * erc_coef(s->erc) * s->layer_share);
}

void select_stats_reset(Selection *s) {
    long *c = s->st.counts;
    memset(c, 0, sizeof(long) * s->n);
    memset(&s->st, 0, sizeof s->st);
    s->st.counts = c;
}

void select_stats_reduce(Selection *s) {
    if (dist_size() == 1) return;
    SelectStats *st = &s->st;
    int n = s->n;
    double *b = xmalloc(sizeof(double) * (n + 6));
    double v[6] = {st->tokens, st->dropped, st->chosen, st->unrouted, st->ent_conf, 0};
    for (int i = 0; i < n; i++) b[i] = st->counts[i];
    memcpy(b + n, v, sizeof v);
    dist_sum_d(b, n + 6);
    for (int i = 0; i < n; i++) st->counts[i] = (long)b[i];
    st->tokens = (long)b[n]; st->dropped = (long)b[n + 1]; st->chosen = (long)b[n + 2];
    st->unrouted = (long)b[n + 3]; st->ent_conf = b[n + 4];
    // forwards, lb, z and the ERC sums are the same on every rank (global losses)
    free(b);
}

void select_write_stats(const Selection *s, FILE *f) {
    const SelectStats *st = &s->st;
    int n = s->n;
    long total = 0, dead = 0;
    for (int i = 0; i < n; i++) { total += st->counts[i]; dead += st->counts[i] == 0; }
    double ent = 0, fmax = 0, fmin = 1, mean = (double)total / n, var = 0;
    for (int i = 0; i < n; i++) {
        double fr = total ? (double)st->counts[i] / total : 0;
        if (fr > 0) ent -= fr * log(fr);
        if (fr > fmax) fmax = fr;
        if (fr < fmin) fmin = fr;
        var += (st->counts[i] - mean) * (st->counts[i] - mean);
    }
    double cv = mean > 0 ? sqrt(var / n) / mean : 0;
    double fw = st->forwards ? (double)st->forwards : 1, tk = st->tokens ? (double)st->tokens : 1;
    fprintf(f, ",\"tokens\":%ld,\"forwards\":%ld,\"counts\":[", st->tokens, st->forwards);
    for (int i = 0; i < n; i++) fprintf(f, "%s%ld", i ? "," : "", st->counts[i]);
    char a[40], b[40], c[40], e[40];  // values from a diverged model may be non-finite: valid JSON
    fprintf(f, "],\"ent_load\":%.6g,\"ent_conf\":%s,\"max_minus_min\":%.6g,\"cv\":%.6g,\"dead\":%ld,"
               "\"dropped\":%ld,\"lb_loss\":%s,\"z_loss\":%s",
            ent, json_fmt(a, sizeof a, "%.6g", st->ent_conf / tk), total ? fmax - fmin : 0.0, cv, dead, st->dropped,
            json_fmt(b, sizeof b, "%.6g", st->lb / fw), json_fmt(c, sizeof c, "%.6g", st->z / fw));
    fprintf(f, ",\"k_mean\":%.6g,\"unrouted\":%ld", st->chosen / tk, st->unrouted);
    if (s->erc)
        fprintf(f, ",\"erc_loss\":%s,\"erc_eps\":%s", json_fmt(a, sizeof a, "%.6g", st->erc / fw),
                json_fmt(e, sizeof e, "%.6g", st->erc_eps / fw));
    if (s->m->write_stats) s->m->write_stats(s, f);
}

// ---- building blocks ----
typedef struct { float v; int g, rank; } PoolCand;  // key, place in the global batch, owner
static int pool_cmp(const void *a, const void *b) {
    const PoolCand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->g > y->g) - (x->g < y->g);
}

void select_pool_candidates(const Selection *s, const float *key, const int *tok, int k, SelectKeepFn keep, void *ctx,
                            int *taken) {
    int n = s->n, N = dist_size(), me = dist_rank(), S = s->seq_len, T = s->T;
    if (!(S > 0 && T % S == 0) || (long)T * N > INT_MAX)
        die("internal: pooled selection of %d tokens per rank with sequences of %d", T, S);
    size_t per = (size_t)n * k;
    float *all = falloc(N * per), *keys = falloc((size_t)N * k);
    int *g = xmalloc(sizeof(int) * per), *gall = xmalloc(sizeof(int) * N * per);
    for (size_t i = 0; i < per; i++) {  // local token t: sequence t/S of this rank is global t/S·N + me
        int t = key[i] == -INFINITY ? 0 : tok[i];
        g[i] = ((t / S) * N + me) * S + t % S;
    }
    PoolCand *c = xmalloc(sizeof *c * (size_t)N * k);
    dist_allgather_f(key, per, all);
    dist_allgather_i(g, per, gall);
    for (int e = 0; e < n; e++) {
        int m = 0;
        for (int q = 0; q < N; q++)
            for (int j = 0; j < k; j++) {
                size_t at = ((size_t)q * n + e) * k + j;
                if (all[at] == -INFINITY) break;  // past rank q's candidates
                c[m++] = (PoolCand){all[at], gall[at], q};
            }
        qsort(c, m, sizeof *c, pool_cmp);
        for (int i = 0; i < m; i++) keys[i] = c[i].v;
        int K = keep(e, keys, m, ctx), t = 0;
        for (int i = 0; i < K && i < m; i++) t += c[i].rank == me;
        taken[e] = t;
    }
    free(all); free(keys); free(g); free(gall); free(c);
}

void select_topk_row(const float *row, int n, int K, int *idx) {
    // insertion into a sorted list of K; strict '>' keeps the lower index first on ties
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m == K && !(row[i] > row[idx[K - 1]])) continue;
        int j = m < K ? m++ : K - 1;
        while (j > 0 && row[i] > row[idx[j - 1]]) { idx[j] = idx[j - 1]; j--; }
        idx[j] = i;
    }
}

void select_gates_row(const Selection *s, int t, const int *idx, int m, float *g) {
    const float *z = s->S + (size_t)t * s->n, *p = s->prob + (size_t)t * s->n;
    if (s->gate_kind == GATE_SOFTMAX) {
        for (int j = 0; j < m; j++) g[j] = p[idx[j]];
        return;
    }
    float mx = z[idx[0]];
    for (int j = 1; j < m; j++) if (z[idx[j]] > mx) mx = z[idx[j]];
    double sum = 0;
    for (int j = 0; j < m; j++) sum += exp((double)z[idx[j]] - mx);
    for (int j = 0; j < m; j++) g[j] = (float)(exp((double)z[idx[j]] - mx) / sum);
}

void select_gates_backward(const Selection *s, const float *dgate, float *dS) {
    int n = s->n, km = s->kmax;
    for (int t = 0; t < s->T; t++) {
        const int *ch = s->choice + (size_t)t * km;
        const float *g = s->gate + (size_t)t * km, *dg = dgate + (size_t)t * km;
        const float *p = s->prob + (size_t)t * n;
        float *d = dS + (size_t)t * n;
        double a = 0;
        for (int j = 0; j < km; j++) if (ch[j] >= 0) a += (double)g[j] * dg[j];
        if (s->gate_kind == GATE_TOPK_SOFTMAX) {
            // g = softmax over the chosen: dz_i = g_i (dg_i - Σ_j g_j dg_j)
            for (int j = 0; j < km; j++)
                if (ch[j] >= 0) d[ch[j]] += (float)(g[j] * (dg[j] - a));
        } else {
            // g_i = p_i (full softmax): dz_j = Σ_i dg_i p_i (δ_ij - p_j) = p_j dg_j - p_j Σ_i dg_i p_i
            for (int i = 0; i < n; i++) d[i] -= (float)(p[i] * a);
            for (int j = 0; j < km; j++)
                if (ch[j] >= 0) d[ch[j]] += g[j] * dg[j];
        }
    }
}

long select_capacity_slots(double factor, double assignments, int n) {
    long c = (long)ceil(factor * assignments / n * (1 - 1e-6));
    return c < 1 ? 1 : c;
}

void select_apply_capacity(Selection *s) {
    int n = s->n, km = s->kmax, T = s->T;
    memset(s->load, 0, sizeof(long) * n);
    for (long i = 0; i < (long)T * km; i++)
        if (s->choice[i] >= 0) s->load[s->choice[i]]++;
    s->dropped = 0;
    if (s->capacity <= 0) {
        memcpy(s->expert, s->choice, sizeof(int) * (size_t)T * km);
        return;
    }
    long cap = select_capacity_slots(s->capacity, (double)T * s->K, n);
    long *used = xcalloc(n, sizeof(long));
    for (int j = 0; j < km; j++)
        for (int t = 0; t < T; t++) {
            long i = (long)t * km + j;
            int e = s->choice[i];
            if (e >= 0 && used[e] >= cap) { s->expert[i] = -1; s->dropped++; }
            else { s->expert[i] = e; if (e >= 0) used[e]++; }
        }
    free(used);
}

double select_std_aux_forward(Selection *s) {
    int n = s->n, T = s->T;
    // sums over this rank's tokens, then over all ranks: [0,n) load, [n,2n) Σ_t p, Σ lse², T
    double *g = s->red;
    for (int i = 0; i < n; i++) {
        double P = 0;
        for (int t = 0; t < T; t++) P += s->prob[(size_t)t * n + i];
        g[i] = (double)s->load[i];
        g[n + i] = P;
    }
    double z = 0;
    for (int t = 0; t < T; t++) z += (double)s->lse[t] * s->lse[t];
    g[2 * n] = z;
    g[2 * n + 1] = T;
    dist_sum_d(g, 2 * (size_t)n + 2);
    double Tg = g[2 * n + 1], lb = 0;
    for (int i = 0; i < n; i++) {
        s->f[i] = g[i] / Tg;
        lb += s->f[i] * (g[n + i] / Tg);
    }
    lb *= n;
    if (s->lb_div_k) lb /= s->K;
    s->lb = lb;
    s->z = g[2 * n] / Tg;
    return s->lb_coef * s->lb + s->z_coef * s->z;
}

void select_std_aux_backward(const Selection *s, float *dS, float scale) {
    int n = s->n, T = s->T;
    double cl = scale * s->lb_coef * n / T / (s->lb_div_k ? s->K : 1), cz = scale * s->z_coef * 2.0 / T;
    if (cl == 0 && cz == 0) return;
    const double *f = s->f;  // global (select_std_aux_forward)
    for (int t = 0; t < T; t++) {
        const float *p = s->prob + (size_t)t * n;
        float *d = dS + (size_t)t * n;
        double pf = 0;
        for (int i = 0; i < n; i++) pf += p[i] * f[i];
        // d(n Σ f_i P_i)/dz_tj = (n/T) p_j (f_j - <p, f>);  d(mean lse²)/dz_tj = (2/T) lse_t p_j
        for (int j = 0; j < n; j++) d[j] += (float)(cl * p[j] * (f[j] - pf) + cz * s->lse[t] * p[j]);
    }
}

// score.c — the score-source table and the calls a sparse layer makes (see score.h).
#include "model/score.h"

#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "util/common.h"
#include "util/json.h"

// ---- the table: one line per source, specific before general (score_for takes the first match) ----
static const ScoreOps *const sources[] = {
    &score_aoe_norm,
    &score_aoe_at,
    &score_expert_norm,
    &score_router_lowrank,
    &score_router_mlp,
    &score_router,
    &score_grap,
};
static const int n_sources = sizeof sources / sizeof sources[0];

const ScoreOps *score_for(const Config *c) {
    const SelectMethod *m = select_find(c->ffn.select);
    for (int i = 0; i < n_sources; i++) {
        const ScoreOps *o = sources[i];
        if (m && m->source ? !strcmp(m->source, o->info.name) : o->match && o->match(c)) return o;
    }
    return NULL;
}

int score_key_listed(const char *name) {
    for (int i = 0; i < n_sources; i++)
        if (word_in(sources[i]->keys, name)) return 1;
    return 0;
}

const char *score_check(const Config *c, char *buf, int len) {
    const ScoreOps *o = score_for(c);
    if (!o) {
        snprintf(buf, len, "model.ffn.type %s with model.ffn.select %s: no expert score source for this "
                 "combination", c->ffn.type, c->ffn.select);
        return buf;
    }
    return o->check ? o->check(c, buf, len) : NULL;
}

void score_create(Score *s, const ScoreOps *ops, Params *P, const Config *c, int layer, int max_T) {
    s->ops = ops;
    s->layer = layer;
    s->d = c->d_model;
    s->n = c->ffn.n_experts;
    s->r = ops->key_dim ? ops->key_dim(c) : 0;
    s->max_T = max_T;
    s->o_param = -1;
    if (s->d <= 0 || s->n <= 0 || s->r < 0 || s->r >= s->d)  // config validation guarantees these
        die("internal: score source %s on unchecked sizes (d %d, n %d, r %d)", ops->info.name, s->d, s->n, s->r);
    ops->init(s, P, c);
    size_t tn = (size_t)max_T * s->n;
    s->S = falloc(tn);
    s->dS = falloc(tn);
    if (s->r) {
        s->key = falloc(tn * s->r);
        s->dkey = falloc(tn * s->r);
    }
    s->stages = ops->stages ? ops->stages(c) : 0;
    s->D = s->stages ? ffn_d_wide(c) : 0;  // stages are AoE's (Eq.5 width)
    for (int i = 0; i < N_STAGES; i++)
        if (s->stages & 1 << i) {
            size_t w = (1 << i) == STAGE_Y ? (size_t)s->d : (size_t)s->D;
            s->stage[i] = falloc(tn * w);
            s->dstage[i] = falloc(tn * w);
        }
    s->mean_sum = xcalloc(s->n, sizeof(double));
}

void score_destroy(Score *s) {
    if (s->ops && s->ops->free) s->ops->free(s);
    free(s->S); free(s->dS); free(s->rank); free(s->key); free(s->dkey); free(s->mean_sum);
    for (int i = 0; i < N_STAGES; i++) { free(s->stage[i]); free(s->dstage[i]); }
}

void score_forward(Score *s, const Params *P, const float *x, int T, int train) {
    s->ops->forward(s, P, x, T);
    if (!train || !s->ops->mean_stat) return;
    for (int t = 0; t < T; t++)
        for (int e = 0; e < s->n; e++) s->mean_sum[e] += s->S[(size_t)t * s->n + e];
    s->mean_tokens += T;
}

void score_backward(Score *s, Params *P, float *dx, const float *x, int T) {
    s->ops->backward(s, P, dx, x, T);
}

void score_stats_reduce(Score *s) {
    if (!s->ops->mean_stat || dist_size() == 1) return;
    double t = (double)s->mean_tokens;
    dist_sum_d(s->mean_sum, s->n);
    dist_sum_d(&t, 1);
    s->mean_tokens = (long)t;
}

void score_write_stats(Score *s, FILE *f) {
    if (!s->ops->mean_stat) return;
    if (!f) goto reset;
    char nb[40];
    fprintf(f, ",\"%s\":[", s->ops->mean_stat);
    for (int e = 0; e < s->n; e++)
        fprintf(f, "%s%s", e ? "," : "",
                json_fmt(nb, sizeof nb, "%.6g", s->mean_tokens ? s->mean_sum[e] / s->mean_tokens : 0.0));
    fprintf(f, "]");
reset:
    memset(s->mean_sum, 0, sizeof(double) * s->n);
    s->mean_tokens = 0;
}

long score_expert_tensor(const Score *s, const Params *P, const char *what, int a, int b) {
    char name[64];
    snprintf(name, sizeof name, "layers.%d.ffn.%s", s->layer, what);
    const TensorInfo *t = params_find(P, name);
    if (!t || t->ndim != 3 || t->shape[0] != s->n || t->shape[1] != a || t->shape[2] != b || tensor_sharded(t))
        die("internal: score source %s: layer %d has no whole %s [%d,%d,%d]", s->ops->info.name, s->layer, what, s->n, a, b);
    return (long)t->off;
}

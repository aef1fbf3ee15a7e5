// test_select.c — the selection methods beyond top-K (Top-P, expert choice) and the ERC loss:
// central finite differences of every gate path and auxiliary loss, at the selection level (the
// objective as a function of the scores S, tight tolerance) and through real router-MoE and AoE
// layers (fast float path, looser tolerance: checks the wiring to parameters and input); the ERC
// loss wired through a router layer (the loss alone: test_erc.c); invariants (capacity large
// enough == dropless, P = 1 == all experts, expert choice with C = T == all experts); config
// refusals; statistics fields.
// moe_ref.c specifies top-K only, so the new methods are checked by finite differences instead.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/moe.h"
#include "test.h"

typedef struct {
    const char *type, *select, *gate;
    int n, K;
    float P, ent, cap, lb, z, erc, alpha;
} SSpec;

typedef struct {
    Config c;
    Params P;
    MoeLayer *L;
    const FfnOps *ops;
} Fix;

enum { FD_D = 8, FD_FF = 6, FD_R = 3, FD_T = 12 };

static void fix_make(Fix *f, const SSpec *s, int d, int D, int T, int n_layer, uint64_t seed) {
    memset(f, 0, sizeof *f);
    config_defaults(&f->c);
    Config *c = &f->c;
    snprintf(c->ffn.type, sizeof c->ffn.type, "%s", s->type);
    snprintf(c->ffn.select, sizeof c->ffn.select, "%s", s->select);
    snprintf(c->ffn.gate, sizeof c->ffn.gate, "%s", s->gate);
    c->d_model = d;
    c->n_layer = n_layer;
    c->init_std = 0.5f;
    c->ffn.n_experts = s->n;
    c->ffn.top_k = s->K;
    c->ffn.d_ff = D;
    c->ffn.d_low = FD_R;
    c->ffn.d_wide = 0;
    c->ffn.top_p = s->P;
    c->ffn.topp_ent_coef = s->ent;
    c->ffn.capacity = s->cap;
    c->ffn.lb_coef = s->lb;
    c->ffn.z_loss = s->z;
    c->ffn.erc_coef = s->erc;
    c->ffn.erc_alpha = s->alpha;
    f->ops = !strcmp(s->type, "aoe") ? &ffn_aoe_ops : &ffn_moe_ops;
    f->L = f->ops->create(&f->P, c, 0, T);
    params_alloc(&f->P);
    Rng rng;
    rng_seed(&rng, seed);
    params_init(&f->P, &rng);
}

static void fix_free(Fix *f) {
    f->ops->destroy(f->L);
    params_free(&f->P);
}

static FfnConfig ffn_cfg(const SSpec *s) {
    Config c;
    config_defaults(&c);
    FfnConfig f = c.ffn;
    snprintf(f.type, sizeof f.type, "%s", s->type);
    snprintf(f.select, sizeof f.select, "%s", s->select);
    snprintf(f.gate, sizeof f.gate, "%s", s->gate);
    f.n_experts = s->n; f.top_k = s->K; f.top_p = s->P; f.topp_ent_coef = s->ent; f.capacity = s->cap;
    f.lb_coef = s->lb; f.z_loss = s->z; f.erc_coef = s->erc; f.erc_alpha = s->alpha;
    return f;
}

// ---- selection level: objective(S) = Σ_{processed slots} dg·gate + aux_scale·aux ----
static double sel_obj(Selection *s, const float *S, int T, const float *dg, float aux_scale, int *ex) {
    select_forward(s, S, T, 1, NULL);
    double o = aux_scale * s->aux;
    for (long i = 0; i < (long)T * s->kmax; i++)
        if (s->expert[i] >= 0) o += (double)dg[i] * s->gate[i];
    memcpy(ex, s->expert, sizeof(int) * (size_t)T * s->kmax);
    return o;
}

// Central differences in every S[t,e]; coordinates whose perturbation changes the selection are
// skipped (counted in *skipped). Returns the max relative error (floor 1e-3 of the largest |dS|).
static double sel_gradcheck(const SSpec *sp, const ScoreInfo *src, int T, float aux_scale, int *skipped) {
    FfnConfig c = ffn_cfg(sp);
    Selection *s = select_create(&c, src, T);
    int n = s->n, km = s->kmax;
    float *S = test_randn((long)T * n, 1.5f, 61), *dg = test_randn((long)T * km, 1, 62);
    if (src == &score_aoe_norm.info)
        for (long i = 0; i < (long)T * n; i++) S[i] = 1 + fabsf(S[i]);  // norms are positive
    int *ex0 = calloc((size_t)T * km, sizeof(int)), *ex = calloc((size_t)T * km, sizeof(int));
    float *dgm = falloc((size_t)T * km), *dS = falloc((size_t)T * n), *num = falloc((size_t)T * n);
    sel_obj(s, S, T, dg, aux_scale, ex0);
    for (long i = 0; i < (long)T * km; i++) dgm[i] = ex0[i] >= 0 ? dg[i] : 0;
    select_backward(s, dgm, dS, aux_scale);
    double gmax = 0;
    *skipped = 0;
    for (long i = 0; i < (long)T * n; i++) {
        gmax = fmax(gmax, fabs(dS[i]));
        float s0 = S[i], sp_ = s0 + 1e-2f, sm = s0 - 1e-2f;
        S[i] = sp_;
        double lp = sel_obj(s, S, T, dg, aux_scale, ex);
        int same = !memcmp(ex, ex0, sizeof(int) * (size_t)T * km);
        S[i] = sm;
        double lm = sel_obj(s, S, T, dg, aux_scale, ex);
        same &= !memcmp(ex, ex0, sizeof(int) * (size_t)T * km);
        S[i] = s0;
        if (!same) { (*skipped)++; num[i] = dS[i]; continue; }
        num[i] = (float)((lp - lm) / ((double)sp_ - sm));
    }
    double e = gmax > 0 ? max_rel_err(dS, num, (long)T * n, gmax * 1e-3) : 1;
    free(S); free(dg); free(ex0); free(ex); free(dgm); free(dS); free(num);
    select_destroy(s);
    return e;
}

TEST(select_gradcheck_scores_topp_and_expert_choice) {
    // {type, select, gate, n, K, P, ent, cap, lb, z, erc, alpha}
    SSpec specs[] = {
        {"moe", "topp", "topk_softmax", 6, 2, 0.7f, 0.3f, 0, 0.2f, 0.05f, 0, 1},
        {"moe", "topp", "softmax", 6, 2, 0.5f, 0.3f, 0, 0.2f, 0, 0, 1},
        {"aoe", "topp", "topk_softmax", 6, 2, 0.6f, 0.5f, 0.8f, 0.2f, 0, 0, 1},  // + capacity drops
        {"moe", "topp", "topk_softmax", 6, 2, 0.6f, 1.0f, 0, 0, 0, 0, 1},        // entropy loss alone
        {"moe", "expert_choice", "softmax", 6, 2, 0.6f, 0, 0, 0.2f, 0.05f, 0, 1},
        {"aoe", "expert_choice", "topk_softmax", 6, 2, 0.6f, 0, 0.75f, 0.2f, 0, 0, 1},
        {"moe", "expert_choice", "topk_softmax", 6, 1, 0.6f, 0, 1, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        const SSpec *s = &specs[i];
        const ScoreInfo *src = !strcmp(s->type, "aoe") ? &score_aoe_norm.info : &score_router.info;
        int skipped, T = 16;
        double e = sel_gradcheck(s, src, T, 0.7f, &skipped);
        fprintf(stderr, "[%s/%s/%s %.1e] ", s->type, s->select, s->gate, e);
        CHECK(e < 2e-3);
        CHECK(skipped * 10 < T * s->n);
    }
}

// ---- layer level (fast path, float) ----
// Σ G·out + aux_scale·aux of a training forward; ex gets the processed slots.
static double layer_obj(Fix *f, float *out, const float *x, int T, const float *G, float aux_scale, int *ex) {
    Rng rng;
    rng_seed(&rng, 1);
    f->ops->forward(f->L, &f->P, out, x, T, 1, &rng);
    double o = aux_scale * f->ops->aux_loss(f->L);
    for (long i = 0; i < (long)T * f->c.d_model; i++) o += (double)G[i] * out[i];
    memcpy(ex, f->L->sel->expert, sizeof(int) * (size_t)T * f->L->kmax);
    return o;
}

// Central differences (step 1e-2: the forward is float) in every parameter and the input, at up
// to 40 coordinates per tensor (evenly strided: each forward costs a few OpenMP regions).
// Returns the worst per-tensor relative error (floor 1e-2 of the tensor's largest gradient).
static double layer_gradcheck(const SSpec *sp, float aux_scale, const char *label) {
    Fix f;
    int T = FD_T, d = FD_D;
    fix_make(&f, sp, d, FD_FF, T, 1, 71);
    float *x = test_randn((long)T * d, 1, 72), *G = test_randn((long)T * d, 1, 73);
    float *out = falloc((size_t)T * d), *dx = falloc((size_t)T * d);
    int km = f.L->kmax, *ex0 = calloc((size_t)T * km, sizeof(int)), *ex = calloc((size_t)T * km, sizeof(int));
    layer_obj(&f, out, x, T, G, aux_scale, ex0);
    params_zero_grad(&f.P);
    f.ops->backward(f.L, &f.P, dx, G, x, T, aux_scale);
    double worst = 0;
    int skipped = 0, total = 0;
    for (int ti = 0; ti <= f.P.n; ti++) {
        float *w = ti < f.P.n ? f.P.w + f.P.t[ti].off : x;
        const float *ga = ti < f.P.n ? f.P.g + f.P.t[ti].off : dx;
        long nn = ti < f.P.n ? (long)f.P.t[ti].n : (long)T * d;
        float *num = falloc(nn), *ana = falloc(nn);
        double gmax = 0;
        for (long i = 0; i < nn; i++) gmax = fmax(gmax, fabs(ga[i]));
        long step = nn > 40 ? nn / 40 : 1, m = 0;
        for (long i = 0; i < nn; i += step, m++) {
            ana[m] = ga[i];
            float w0 = w[i], wp = w0 + 1e-2f, wm = w0 - 1e-2f;
            w[i] = wp;
            double lp = layer_obj(&f, out, x, T, G, aux_scale, ex);
            int same = !memcmp(ex, ex0, sizeof(int) * (size_t)T * km);
            w[i] = wm;
            double lm = layer_obj(&f, out, x, T, G, aux_scale, ex);
            same &= !memcmp(ex, ex0, sizeof(int) * (size_t)T * km);
            w[i] = w0;
            total++;
            if (!same) { skipped++; num[m] = ga[i]; continue; }
            num[m] = (float)((lp - lm) / ((double)wp - wm));
        }
        double e = gmax > 0 ? max_rel_err(ana, num, m, gmax * 1e-2) : 1;
        if (e > 2e-2) fprintf(stderr, "  %s: %s rel err %.2e (max |g| %.2e)\n", label,
                              ti < f.P.n ? f.P.t[ti].name : "input", e, gmax);
        if (e > worst) worst = e;
        free(num); free(ana);
    }
    CHECK(skipped * 10 < total);
    free(x); free(G); free(out); free(dx); free(ex0); free(ex);
    fix_free(&f);
    return worst;
}

TEST(select_gradcheck_layers_topp) {
    kernels_init(2);
    SSpec specs[] = {
        {"moe", "topp", "topk_softmax", 4, 2, 0.6f, 0.3f, 0, 0.3f, 0.05f, 0, 1},
        {"moe", "topp", "softmax", 4, 2, 0.8f, 0.3f, 0, 0.3f, 0, 0, 1},
        {"aoe", "topp", "topk_softmax", 4, 2, 0.6f, 0.3f, 0, 0.3f, 0, 0, 1},
        {"aoe", "topp", "softmax", 4, 2, 0.6f, 0.3f, 0, 0.3f, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        double e = layer_gradcheck(&specs[i], 0.7f, specs[i].type);
        fprintf(stderr, "[%s/%s %.1e] ", specs[i].type, specs[i].gate, e);
        CHECK(e < 2e-2);
    }
}

TEST(select_gradcheck_layers_expert_choice) {
    kernels_init(2);
    SSpec specs[] = {
        {"moe", "expert_choice", "softmax", 4, 2, 0.6f, 0, 1, 0.3f, 0.05f, 0, 1},
        {"moe", "expert_choice", "topk_softmax", 4, 2, 0.6f, 0, 0.75f, 0.3f, 0, 0, 1},
        {"aoe", "expert_choice", "softmax", 4, 2, 0.6f, 0, 1, 0.3f, 0, 0, 1},
        {"aoe", "expert_choice", "topk_softmax", 4, 2, 0.6f, 0, 0, 0.3f, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        double e = layer_gradcheck(&specs[i], 0.7f, specs[i].type);
        fprintf(stderr, "[%s/%s %.1e] ", specs[i].type, specs[i].gate, e);
        CHECK(e < 2e-2);
    }
}

// ---- ERC through a layer (the loss itself: test_erc.c) ----
// The layer adds erc_coef/#sparse layers · L to its aux loss and the matching gradient to router
// and w_gate; nothing else changes.
TEST(select_erc_wired_through_router_layer) {
    kernels_init(2);
    const char *methods[] = {"topk", "topp", "expert_choice"};
    for (int mi = 0; mi < 3; mi++) {
        SSpec on = {"moe", methods[mi], "topk_softmax", 4, 2, 0.6f, 1e-2f, 0, 0.1f, 0, 0.5f, 1};
        SSpec off = on;
        off.erc = 0;
        Fix a, b;
        int T = 20, d = 8, D = 6;
        fix_make(&a, &on, d, D, T, 2, 5);  // 2 sparse layers: this one carries half the loss
        fix_make(&b, &off, d, D, T, 2, 5);
        CHECK(a.L->sel->layer_share == 0.5f);
        float *x = test_randn((long)T * d, 1, 6), *G = test_randn((long)T * d, 1, 7);
        float *oa = falloc((size_t)T * d), *ob = falloc((size_t)T * d), *dxa = falloc((size_t)T * d),
              *dxb = falloc((size_t)T * d);
        Rng r1, r2;
        rng_seed(&r1, 9);
        rng_seed(&r2, 9);
        a.ops->forward(a.L, &a.P, oa, x, T, 1, &r1);
        b.ops->forward(b.L, &b.P, ob, x, T, 1, &r2);
        CHECK(!memcmp(oa, ob, sizeof(float) * T * d));  // routing uses the clean router
        params_zero_grad(&a.P);
        params_zero_grad(&b.P);
        a.ops->backward(a.L, &a.P, dxa, G, x, T, 0.7f);
        b.ops->backward(b.L, &b.P, dxb, G, x, T, 0.7f);
        CHECK(!memcmp(dxa, dxb, sizeof(float) * T * d));
        // the expected difference from the loss's own backward on the layer's cached noise
        float *gR = falloc((size_t)d * 4), *gW = falloc((size_t)4 * d * D);
        SelectParams v = {.d = d, .n = 4, .D = D, .R = a.P.w + a.L->score.o_param, .dR = gR,
                          .Wg = a.P.w + a.L->o_gate, .dWg = gW};
        double l = erc_loss(a.L->sel->erc, &v);
        CHECK(l > 0);
        CHECK_NEAR(a.ops->aux_loss(a.L) - b.ops->aux_loss(b.L), 0.5 * 0.5 * l, 1e-6);
        erc_backward(a.L->sel->erc, &v, 0.7f * 0.5f * 0.5f);
        for (int ti = 0; ti < a.P.n; ti++) {
            const TensorInfo *t = &a.P.t[ti];
            const float *want = (long)t->off == a.L->score.o_param ? gR : t->off == a.L->o_gate ? gW : NULL;
            double e = 0;
            for (size_t i = 0; i < t->n; i++)
                e = fmax(e, fabs(a.P.g[t->off + i] - b.P.g[t->off + i] - (want ? want[i] : 0)));
            CHECK(e < 1e-5);
        }
        free(x); free(G); free(oa); free(ob); free(dxa); free(dxb); free(gR); free(gW);
        fix_free(&a);
        fix_free(&b);
    }
}

// ---- invariants ----
// Training forward + backward of one layer; out and dx [T,d] and the parameter gradients.
static void run_layer(const SSpec *s, int T, float *out, float *dx, float **grad, int *experts_per_token) {
    Fix f;
    int d = 16, D = 24;
    fix_make(&f, s, d, D, T, 1, 101);
    float *x = test_randn((long)T * d, 1, 102), *G = test_randn((long)T * d, 1, 103);
    Rng rng;
    rng_seed(&rng, 1);
    f.ops->forward(f.L, &f.P, out, x, T, 1, &rng);
    params_zero_grad(&f.P);
    f.ops->backward(f.L, &f.P, dx, G, x, T, 1.0f);
    *grad = falloc(f.P.total);
    memcpy(*grad, f.P.g, sizeof(float) * f.P.total);
    for (int t = 0; t < T; t++) {
        experts_per_token[t] = 0;
        for (int j = 0; j < f.L->kmax; j++) experts_per_token[t] += f.L->sel->expert[t * f.L->kmax + j] >= 0;
    }
    free(x); free(G);
    fix_free(&f);
}

// Max relative difference of the outputs and input gradients of two specs; ka, kb [T] get the
// experts per token.
static double compare_specs(const SSpec *a, const SSpec *b, int T, int *ka, int *kb) {
    int d = 16;
    float *oa = falloc((size_t)T * d), *ob = falloc((size_t)T * d), *da = falloc((size_t)T * d),
          *db = falloc((size_t)T * d), *ga, *gb;
    run_layer(a, T, oa, da, &ga, ka);
    run_layer(b, T, ob, db, &gb, kb);
    double e = fmax(max_rel_err(oa, ob, (long)T * d, 1e-3), max_rel_err(da, db, (long)T * d, 1e-3));
    free(oa); free(ob); free(da); free(db); free(ga); free(gb);
    return e;
}

TEST(select_capacity_large_equals_dropless) {
    kernels_init(2);
    int T = 40, ka[40], kb[40];
    const char *methods[] = {"topk", "topp"}, *types[] = {"moe", "aoe"};
    for (int m = 0; m < 2; m++)
        for (int ty = 0; ty < 2; ty++) {
            // capacity n/K: ceil(capacity·T·K/n) = T, no expert can be over it
            SSpec drop = {types[ty], methods[m], "topk_softmax", 8, 2, 0.7f, 1e-2f, 0, 0.01f, 0, 0, 1};
            SSpec cap = drop;
            cap.cap = 4;
            CHECK(compare_specs(&drop, &cap, T, ka, kb) == 0);
            for (int t = 0; t < T; t++) CHECK_EQ_INT(ka[t], kb[t]);
            cap.cap = 0.3f;  // small: it does drop
            compare_specs(&drop, &cap, T, ka, kb);
            int fewer = 0;
            for (int t = 0; t < T; t++) fewer += kb[t] < ka[t];
            CHECK(fewer > 0);
        }
}

TEST(select_topp_extremes_equal_topk) {
    kernels_init(2);
    int T = 40, ka[40], kb[40];
    const char *types[] = {"moe", "aoe"}, *gates[] = {"topk_softmax", "softmax"};
    for (int ty = 0; ty < 2; ty++)
        for (int g = 0; g < 2; g++) {
            // P = 1: all n experts, in score order == top-K with K = n
            SSpec p1 = {types[ty], "topp", gates[g], 8, 2, 1.0f, 0, 0, 0.01f, 0, 0, 1};
            SSpec kn = {types[ty], "topk", gates[g], 8, 8, 0.6f, 0, 0, 0.01f, 0, 0, 1};
            CHECK(compare_specs(&p1, &kn, T, ka, kb) < 1e-6);
            for (int t = 0; t < T; t++) CHECK_EQ_INT(ka[t], 8);
            // tiny P: exactly the top expert == top-1
            SSpec p0 = p1, k1 = kn;
            p0.P = 1e-6f;
            k1.K = 1;
            CHECK(compare_specs(&p0, &k1, T, ka, kb) < 1e-6);
            for (int t = 0; t < T; t++) CHECK_EQ_INT(ka[t], 1);
            // in between: a variable number, more with larger P
            SSpec pa = p1, pb = p1;
            pa.P = 0.3f;
            pb.P = 0.8f;
            compare_specs(&pa, &pb, T, ka, kb);
            int sa = 0, sb = 0, varies = 0;
            for (int t = 0; t < T; t++) { sa += ka[t]; sb += kb[t]; varies |= kb[t] != kb[0]; CHECK(ka[t] <= kb[t]); }
            CHECK(sa < sb && varies);
        }
}

TEST(select_expert_choice_full_capacity_equals_all_experts) {
    kernels_init(2);
    int T = 40, ka[40], kb[40];
    const char *types[] = {"moe", "aoe"}, *gates[] = {"topk_softmax", "softmax"};
    for (int ty = 0; ty < 2; ty++)
        for (int g = 0; g < 2; g++) {
            // capacity n: C = T, every expert takes every token (slot order differs: by expert)
            SSpec ec = {types[ty], "expert_choice", gates[g], 8, 2, 0.6f, 0, 8, 0.01f, 0, 0, 1};
            SSpec kn = {types[ty], "topk", gates[g], 8, 8, 0.6f, 0, 0, 0.01f, 0, 0, 1};
            double ce = compare_specs(&ec, &kn, T, ka, kb);
            fprintf(stderr, "[%s/%s %.1e] ", types[ty], gates[g], ce);
            CHECK(ce < 1e-4);  // summation order differs (slots by expert vs by score)
            for (int t = 0; t < T; t++) CHECK_EQ_INT(ka[t], 8);
        }
}

static char *stats_line(Fix *f) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    f->ops->write_stats(f->L, m, 10, 0);
    fclose(m);
    return buf;
}

static double jnum(cJSON *j, const char *k) {
    cJSON *v = cJSON_GetObjectItem(j, k);
    CHECK(cJSON_IsNumber(v));
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

TEST(select_stats_fields_consistent) {
    kernels_init(2);
    SSpec specs[] = {
        {"moe", "topp", "topk_softmax", 8, 2, 0.6f, 1e-2f, 0, 0.01f, 0, 0, 1},
        {"aoe", "topp", "softmax", 8, 2, 0.6f, 1e-2f, 0.5f, 0.01f, 0, 0, 1},
        {"moe", "expert_choice", "softmax", 8, 2, 0.6f, 0, 0, 0.01f, 0, 1, 1},   // default factor 2, ERC
        {"aoe", "expert_choice", "topk_softmax", 8, 2, 0.6f, 0, 0.5f, 0.01f, 0, 0, 1},
        {"moe", "topk", "topk_softmax", 8, 2, 0.6f, 0, 0.5f, 0.01f, 0, 1, 0.5f},  // capacity, ERC
    };
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        const SSpec *s = &specs[si];
        int ec = !strcmp(s->select, "expert_choice");
        Fix f;
        fix_make(&f, s, 16, 24, 50, 1, 111);
        Rng rng;
        rng_seed(&rng, 1);
        float *out = falloc(50 * 16);
        long tokens = 0, unrouted = 0, cap_total = 0;
        for (int it = 0; it < 3; it++) {
            int T = 50 - 7 * it;
            float *x = test_randn((long)T * 16, 1, 200 + it);
            f.ops->forward(f.L, &f.P, out, x, T, 1, &rng);
            for (int t = 0; t < T; t++) {
                int any = 0;
                for (int j = 0; j < f.L->kmax; j++) any |= f.L->sel->expert[t * f.L->kmax + j] >= 0;
                unrouted += !any;
            }
            long C = (long)ceil((s->cap > 0 ? s->cap : 2.0) * T / s->n);
            cap_total += C < T ? C : T;
            tokens += T;
            free(x);
        }
        char *line = stats_line(&f);
        cJSON *j = cJSON_Parse(line);
        REQUIRE(j);
        cJSON *counts = cJSON_GetObjectItem(j, "counts");
        long sum = 0;
        for (int e = 0; e < s->n; e++) {
            long c = (long)cJSON_GetArrayItem(counts, e)->valuedouble;
            sum += c;
            if (ec) CHECK_EQ_INT(c, cap_total);  // every expert processes exactly C per forward
        }
        double k_mean = jnum(j, "k_mean"), dropped = jnum(j, "dropped");
        CHECK_EQ_INT(jnum(j, "tokens"), tokens);
        CHECK_NEAR((sum + dropped) / (double)tokens, k_mean, 1e-5 * k_mean);
        CHECK_EQ_INT(jnum(j, "unrouted"), unrouted);
        if (ec) CHECK(dropped == 0);
        if (ec && s->cap == 0.5f) CHECK(unrouted > 0);  // C = T/16 per expert leaves tokens out
        if (!strcmp(s->select, "topk")) CHECK_NEAR(k_mean, s->K, 1e-9);
        if (!strcmp(s->select, "topp")) CHECK(k_mean >= 1 && k_mean <= s->n);
        if (s->cap > 0 && !ec) CHECK(dropped > 0);
        cJSON *erc = cJSON_GetObjectItem(j, "erc_loss"), *eps = cJSON_GetObjectItem(j, "erc_eps");
        if (s->erc > 0) {
            CHECK(cJSON_IsNumber(erc) && erc->valuedouble > 0);
            CHECK(cJSON_IsNumber(eps) && eps->valuedouble > 0);
        } else {
            CHECK(!erc && !eps);
        }
        cJSON_Delete(j);
        free(line);
        free(out);
        fix_free(&f);
    }
}

TEST(select_check_refuses_bad_settings) {
    char buf[256];
    struct { SSpec s; const ScoreInfo *src; const char *want; } cases[] = {
        {{"moe", "topp", "topk_softmax", 8, 2, 0, 1e-4f, 0, 0.01f, 0, 0, 1}, &score_router.info, "model.ffn.top_p"},
        {{"aoe", "topp", "topk_softmax", 8, 2, 1.5f, 1e-4f, 0, 0.01f, 0, 0, 1}, &score_aoe_norm.info, "model.ffn.top_p"},
        {{"moe", "expert_choice", "softmax", 8, 2, 0.6f, 0, -1, 0.01f, 0, 0, 1}, &score_router.info, "model.ffn.capacity"},
        {{"moe", "topk", "topk_softmax", 8, 2, 0.6f, 0, -1, 0.01f, 0, 0, 1}, &score_router.info, "model.ffn.capacity"},
        {{"aoe", "topk", "topk_softmax", 8, 2, 0.6f, 0, 0, 0.01f, 0, 1, 1}, &score_aoe_norm.info, "model.ffn.erc_coef"},
        {{"moe", "topk", "topk_softmax", 8, 2, 0.6f, 0, 0, 0.01f, 0, 1, 1.5f}, &score_router.info, "model.ffn.erc_alpha"},
        {{"moe", "topk", "topk_softmax", 8, 2, 0.6f, 0, 0, 0.01f, 0, 1, -0.5f}, &score_router.info, "model.ffn.erc_alpha"},
        {{"moe", "topk", "topk_softmax", 1, 1, 0.6f, 0, 0, 0.01f, 0, 1, 1}, &score_router.info, "model.ffn.n_experts"},
        {{"moe", "topp", "topk_softmax", 8, 2, 0.6f, -1, 0, 0.01f, 0, 0, 1}, &score_router.info, "model.ffn.topp_ent_coef"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FfnConfig f = ffn_cfg(&cases[i].s);
        CHECK_STR_CONTAINS(select_check(&f, cases[i].src, buf, sizeof buf), cases[i].want);
    }
    SSpec ok = {"moe", "topk", "topk_softmax", 8, 2, 1.0f, 0, 0, 0.01f, 0, 1, 2.5f};
    FfnConfig f = ffn_cfg(&ok);
    f.erc_allow_alpha_gt1 = 1;
    CHECK(select_check(&f, &score_router.info, buf, sizeof buf) == NULL);
    snprintf(f.select, sizeof f.select, "topp");  // P = 1 is allowed
    CHECK(select_check(&f, &score_router.info, buf, sizeof buf) == NULL);
    CHECK(select_find("topp") == &select_topp);
    CHECK(select_find("expert_choice") == &select_expert_choice);
    CHECK_STR_CONTAINS(select_names(), "expert_choice");
}

TEST(select_cli_refuses_bad_settings) {
    const char *bad[][2] = {
        {"configs/moe.json model.ffn.select=topp model.ffn.top_p=0", "model.ffn.top_p"},
        {"configs/aoe.json model.ffn.erc_coef=1", "model.ffn.erc_coef"},
        {"configs/moe.json model.ffn.erc_coef=1 model.ffn.erc_alpha=1.5", "model.ffn.erc_alpha"},
        {"configs/moe.json model.ffn.select=expert_choice model.ffn.capacity=-1", "model.ffn.capacity"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512], *out, *err;
        snprintf(cmd, sizeof cmd, "%s train %s --dry-run", aoe_bin(), bad[i][0]);
        CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
        CHECK_STR_CONTAINS(err, bad[i][1]);
        CHECK(strchr(err, '\n') == err + strlen(err) - 1);  // one line
        free(out);
        free(err);
    }
}

TEST(select_stats_cli_shows_selection_and_erc) {
    kernels_init(2);
    char dir[512], path[600], cmd[1200];
    snprintf(dir, sizeof dir, "%s/select_stats_run", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    REQUIRE(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/load.jsonl", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    SSpec specs[2] = {{"moe", "topk", "topk_softmax", 6, 2, 0.6f, 0, 0, 0.01f, 0, 1, 1},
                      {"aoe", "expert_choice", "softmax", 6, 2, 0.6f, 0, 1, 0, 0, 0, 1}};
    Rng rng;
    rng_seed(&rng, 4);
    for (int i = 0; i < 2; i++) {
        Fix x;
        fix_make(&x, &specs[i], 16, 24, 30, 2, 120 + i);
        float *in = test_randn(30 * 16, 1, 130 + i), *out = falloc(30 * 16);
        for (int step = 1; step <= 20; step++) {
            x.ops->forward(x.L, &x.P, out, in, 30, 1, &rng);
            if (step % 10 == 0) x.ops->write_stats(x.L, f, step, i);
        }
        free(in); free(out);
        fix_free(&x);
    }
    fclose(f);
    char *out, *err;
    snprintf(cmd, sizeof cmd, "%s stats %s --no-plots", aoe_bin(), dir);
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "erc_eps");
    CHECK_STR_CONTAINS(out, "expert_choice");
    free(out);
    free(err);
}

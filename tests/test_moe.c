// test_moe.c — router MoE and AoE layers: fast path against the per-token reference, central
// finite differences (in double through the reference) for every parameter tensor and the input,
// through the expert, gate, balancing-loss, z-loss and AoE norm paths, for both gate variants;
// invariants (1 expert == dense SwiGLU, Eq.5 parameter matching, stats counts), determinism.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/moe.h"
#include "test.h"
#include "test_sparse.h"

typedef struct {
    Config c;
    Params P;
    MoeLayer *L;
    const FfnOps *ops;
} Fix;

typedef struct {
    const char *type, *gate;
    int d, n, K, D, r, T;
    float std, lb, z, cap;
} Spec;

static void fix_make(Fix *f, const Spec *s, uint64_t seed) {
    memset(f, 0, sizeof *f);
    config_defaults(&f->c);
    Config *c = &f->c;
    snprintf(c->ffn.type, sizeof c->ffn.type, "%s", s->type);
    snprintf(c->ffn.gate, sizeof c->ffn.gate, "%s", s->gate);
    c->d_model = s->d;
    c->n_layer = 1;
    c->init_std = s->std;
    c->ffn.n_experts = s->n;
    c->ffn.top_k = s->K;
    c->ffn.d_ff = s->D;
    c->ffn.d_low = s->r;
    c->ffn.d_wide = 0;
    c->ffn.lb_coef = s->lb;
    c->ffn.z_loss = s->z;
    c->ffn.capacity = s->cap;
    f->ops = !strcmp(s->type, "aoe") ? &ffn_aoe_ops : &ffn_moe_ops;
    f->L = f->ops->create(&f->P, c, 0, s->T);
    params_alloc(&f->P);
    Rng rng;
    rng_seed(&rng, seed);
    params_init(&f->P, &rng);
}

static void fix_free(Fix *f) {
    f->ops->destroy(f->L);
    params_free(&f->P);
}

// ---- selection building blocks ----
TEST(moe_topk_ties_lower_index) {
    float row[6] = {1, 3, 3, 0, 3, 2};
    int idx[4];
    select_topk_row(row, 6, 4, idx);
    CHECK_EQ_INT(idx[0], 1); CHECK_EQ_INT(idx[1], 2); CHECK_EQ_INT(idx[2], 4); CHECK_EQ_INT(idx[3], 5);
    Rng r;
    rng_seed(&r, 5);
    for (int it = 0; it < 200; it++) {  // against repeated argmax on rows with many ties
        float z[9];
        int n = 1 + (int)rng_below(&r, 9), K = 1 + (int)rng_below(&r, n), got[9], used[9] = {0};
        for (int i = 0; i < n; i++) z[i] = (float)rng_below(&r, 4);
        select_topk_row(z, n, K, got);
        for (int j = 0; j < K; j++) {
            int b = -1;
            for (int i = 0; i < n; i++) if (!used[i] && (b < 0 || z[i] > z[b])) b = i;
            used[b] = 1;
            CHECK_EQ_INT(got[j], b);
        }
    }
}

TEST(moe_select_check_refuses_bad_combinations) {
    Config c;
    config_defaults(&c);
    char buf[256];
    CHECK(select_check(&c.ffn, &score_router.info, buf, sizeof buf) == NULL);
    c.ffn.top_k = c.ffn.n_experts + 1;
    CHECK_STR_CONTAINS(select_check(&c.ffn, &score_router.info, buf, sizeof buf), "model.ffn.top_k");
    config_defaults(&c);
    snprintf(c.ffn.select, sizeof c.ffn.select, "nope");
    CHECK_STR_CONTAINS(select_check(&c.ffn, &score_aoe_norm.info, buf, sizeof buf), "model.ffn.select");
    config_defaults(&c);
    snprintf(c.ffn.gate, sizeof c.ffn.gate, "max");
    CHECK_STR_CONTAINS(select_check(&c.ffn, &score_router.info, buf, sizeof buf), "model.ffn.gate");
    config_defaults(&c);
    c.ffn.z_loss = 1e-3f;
    CHECK(select_check(&c.ffn, &score_router.info, buf, sizeof buf) == NULL);
    CHECK_STR_CONTAINS(select_check(&c.ffn, &score_aoe_norm.info, buf, sizeof buf), "model.ffn.z_loss");
    CHECK(select_find("topk") == &select_topk);
    CHECK(select_find("bogus") == NULL);
}

// ---- fast path against the reference ----
static double fast_vs_naive(const Spec *s, double *fwd_err, double *aux_err) {
    Fix f;
    fix_make(&f, s, 11);
    int T = s->T, d = s->d;
    float *x = test_randn(T * d, 1, 12), *G = test_randn(T * d, 1, 13);
    float *out = falloc(T * d), *ref = falloc(T * d), *dx = falloc(T * d), *dxr = falloc(T * d);
    float *gref = falloc(f.P.total);
    Rng rng;
    rng_seed(&rng, 1);
    f.ops->forward(f.L, &f.P, out, x, T, 1, &rng);
    double aux_ref = moe_forward_naive(f.L, &f.P, ref, x, T, NULL);
    *fwd_err = max_rel_err(out, ref, (long)T * d, 1e-3);
    *aux_err = fabs(f.ops->aux_loss(f.L) - aux_ref) / fmax(fabs(aux_ref), 1e-6);
    params_zero_grad(&f.P);
    f.ops->backward(f.L, &f.P, dx, G, x, T, 0.7f);
    moe_backward_naive(f.L, &f.P, dxr, gref, G, x, T, 0.7f);
    double e = max_rel_err(dx, dxr, (long)T * d, 1e-3);
    for (int i = 0; i < f.P.n; i++) {
        const TensorInfo *t = &f.P.t[i];
        double ei = max_rel_err(f.P.g + t->off, gref + t->off, (long)t->n, 1e-3);
        if (ei > e) e = ei;
    }
    free(x); free(G); free(out); free(ref); free(dx); free(dxr); free(gref);
    fix_free(&f);
    return e;
}

TEST(moe_fast_matches_reference) {
    kernels_init(2);
    Spec specs[] = {
        {"moe", "topk_softmax", 16, 8, 2, 24, 0, 64, 0.3f, 0.1f, 0.01f, 0},
        {"moe", "softmax", 16, 8, 3, 24, 0, 64, 0.3f, 0.1f, 0.01f, 0},
        {"aoe", "topk_softmax", 16, 8, 2, 24, 5, 64, 0.3f, 0.1f, 0, 0},
        {"aoe", "softmax", 16, 8, 2, 24, 5, 64, 0.3f, 0.1f, 0, 0},
        {"moe", "topk_softmax", 16, 8, 2, 24, 0, 64, 0.3f, 0.1f, 0, 0.75f},  // capacity: drops
        {"aoe", "softmax", 16, 8, 2, 24, 5, 64, 0.3f, 0.1f, 0, 0.75f},
    };
    for (int mode = 0; mode <= 1; mode++) {
        moe_set_expert_parallel(mode);
        for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
            double fe, ae, be = fast_vs_naive(&specs[i], &fe, &ae);
            if (fe > 1e-4 || ae > 1e-5 || be > 1e-3)
                fprintf(stderr, "  spec %zu mode %d: fwd %.2e aux %.2e bwd %.2e\n", i, mode, fe, ae, be);
            CHECK(fe < 1e-4);
            CHECK(ae < 1e-5);
            CHECK(be < 1e-3);
        }
    }
    moe_set_expert_parallel(-1);
}

// ---- finite differences ----
// Central differences of the double-precision reference objective; the analytic gradient is the
// fast path's backward with dout = G. Coordinates whose perturbation changes the top-K set (or
// the capacity drops) are skipped and counted. Returns the worst relative error over tensors.
static double gradcheck(const Spec *s, int with_output, float aux_scale, const char *label) {
    Fix f;
    fix_make(&f, s, 21);
    int T = s->T, d = s->d, K = s->K;
    float *x = test_randn(T * d, 1, 22), *G = test_randn(T * d, with_output ? 1 : 0, 23);
    float *out = falloc(T * d), *dx = falloc(T * d);
    Rng rng;
    rng_seed(&rng, 1);
    f.ops->forward(f.L, &f.P, out, x, T, 1, &rng);
    params_zero_grad(&f.P);
    f.ops->backward(f.L, &f.P, dx, G, x, T, aux_scale);
    int skipped = 0, total = 0;
    double worst = test_sparse_fd(f.L, &f.P, x, dx, G, T, d, K, aux_scale, 0, 1e-7, label, &skipped, &total);
    CHECK(skipped * 20 < total);  // the perturbation may flip a few top-K sets, not many
    if (s->cap > 0) CHECK(f.L->sel->dropped > 0);  // the capacity path is exercised
    free(x); free(G); free(out); free(dx);
    fix_free(&f);
    return worst;
}

#define GC_MOE(g, lb, z, cap) {"moe", g, 8, 4, 2, 6, 0, 12, 0.5f, lb, z, cap}
#define GC_AOE(g, lb, cap) {"aoe", g, 8, 4, 2, 6, 3, 12, 0.5f, lb, 0, cap}

TEST(moe_gradcheck_router_topk_softmax) {
    kernels_init(2);
    Spec s = GC_MOE("topk_softmax", 0.3f, 0.05f, 0);
    double e = gradcheck(&s, 1, 0.7f, "moe/topk_softmax");
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(moe_gradcheck_router_softmax) {
    kernels_init(2);
    Spec s = GC_MOE("softmax", 0.3f, 0.05f, 0);
    double e = gradcheck(&s, 1, 0.7f, "moe/softmax");
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

// Finite differences of one tensor (and the input) with dout = 0: only the auxiliary losses
// contribute. Returns the worst relative error; *gmax gets the largest analytic |gradient|.
static double aux_only_check(const Spec *s, float aux_scale, double *gmax_w, double *gmax_x, double *err_x) {
    Fix f;
    fix_make(&f, s, 21);
    int T = s->T, d = s->d;
    float *x = test_randn(T * d, 1, 22), *G = falloc(T * d), *out = falloc(T * d), *dx = falloc(T * d);
    Rng rng;
    rng_seed(&rng, 1);
    f.ops->forward(f.L, &f.P, out, x, T, 1, &rng);
    params_zero_grad(&f.P);
    f.ops->backward(f.L, &f.P, dx, G, x, T, aux_scale);
    double errs[2];
    for (int pass = 0; pass < 2; pass++) {  // router / W_down, then the input
        float *w = pass ? x : f.P.w + f.L->score.o_param;
        const float *g = pass ? dx : f.P.g + f.L->score.o_param;
        long nn = pass ? (long)T * d : (long)d * s->n * (f.L->r ? s->r : 1);
        float *num = falloc(nn);
        double gmax = 0;
        for (long i = 0; i < nn; i++) {
            float w0 = w[i], wp = (float)(w0 + 1e-3), wm = (float)(w0 - 1e-3);
            w[i] = wp;
            double lp = moe_objective_naive(f.L, &f.P, x, T, G, aux_scale, NULL);
            w[i] = wm;
            double lm = moe_objective_naive(f.L, &f.P, x, T, G, aux_scale, NULL);
            w[i] = w0;
            num[i] = (float)((lp - lm) / ((double)wp - wm));
            gmax = fmax(gmax, fabs(g[i]));
        }
        errs[pass] = max_rel_err(g, num, nn, gmax * 1e-3);
        *(pass ? gmax_x : gmax_w) = gmax;
        free(num);
    }
    *err_x = errs[1];
    free(x); free(G); free(out); free(dx);
    fix_free(&f);
    return errs[0];
}

TEST(moe_gradcheck_router_aux_only) {  // balancing loss + z-loss alone reach router and input
    kernels_init(2);
    Spec s = GC_MOE("topk_softmax", 0.3f, 0.05f, 0);
    double gw, gx, ex, ew = aux_only_check(&s, 0.7f, &gw, &gx, &ex);
    fprintf(stderr, "[router %.2e, input %.2e] ", ew, ex);
    CHECK(gw > 0 && gx > 0);
    CHECK(ew < 2e-3);
    CHECK(ex < 2e-3);
}

TEST(moe_gradcheck_router_capacity_drop) {
    kernels_init(2);
    Spec s = GC_MOE("topk_softmax", 0.3f, 0, 0.75f);
    double e = gradcheck(&s, 1, 0.7f, "moe/capacity");
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(moe_gradcheck_aoe_topk_softmax) {
    kernels_init(2);
    Spec s = GC_AOE("topk_softmax", 0.3f, 0);
    double e = gradcheck(&s, 1, 0.7f, "aoe/topk_softmax");
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(moe_gradcheck_aoe_softmax) {
    kernels_init(2);
    Spec s = GC_AOE("softmax", 0.3f, 0);
    double e = gradcheck(&s, 1, 0.7f, "aoe/softmax");
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(moe_gradcheck_aoe_no_balancing) {  // gate + expert paths only
    kernels_init(2);
    Spec s = GC_AOE("topk_softmax", 0, 0);
    double e = gradcheck(&s, 1, 1.0f, "aoe/lb0");
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(moe_gradcheck_aoe_balancing_norm_path) {  // balancing loss alone: W_down via the norms
    kernels_init(2);
    const char *gates[] = {"softmax", "topk_softmax"};
    for (int i = 0; i < 2; i++) {
        Spec s = GC_AOE(gates[i], 0.5f, 0);
        double gw, gx, ex, ew = aux_only_check(&s, 1.0f, &gw, &gx, &ex);
        fprintf(stderr, "[%s: w_down %.2e, input %.2e] ", gates[i], ew, ex);
        CHECK(gw > 0 && gx > 0);
        CHECK(ew < 2e-3);
        CHECK(ex < 2e-3);
    }
}

// ---- invariants ----
TEST(moe_one_expert_top1_equals_dense) {
    kernels_init(2);
    int T = 16, d = 12, D = 20;
    const char *gates[] = {"topk_softmax", "softmax"};
    for (int gi = 0; gi < 2; gi++) {
        Spec s = {"moe", gates[gi], d, 1, 1, D, 0, T, 0.2f, 0.01f, 0, 0};
        Fix f;
        fix_make(&f, &s, 31);
        Params Pd = {0};
        void *dense = ffn_dense_ops.create(&Pd, &f.c, 0, T);
        params_alloc(&Pd);
        const char *nm[] = {"w_gate", "w_proj", "w_out"};
        for (int i = 0; i < 3; i++) {
            char a[64];
            snprintf(a, sizeof a, "layers.0.ffn.%s", nm[i]);
            const TensorInfo *td = params_find(&Pd, a), *tm = params_find(&f.P, a);
            REQUIRE(td && tm && td->n == tm->n);
            memcpy(Pd.w + td->off, f.P.w + tm->off, sizeof(float) * td->n);
        }
        float *x = test_randn(T * d, 1, 32), *G = test_randn(T * d, 1, 33);
        float *o1 = falloc(T * d), *o2 = falloc(T * d), *d1 = falloc(T * d), *d2 = falloc(T * d);
        Rng rng;
        rng_seed(&rng, 1);
        f.ops->forward(f.L, &f.P, o1, x, T, 1, &rng);
        ffn_dense_ops.forward(dense, &Pd, o2, x, T, 1, &rng);
        CHECK(max_rel_err(o1, o2, (long)T * d, 1e-4) < 1e-5);
        params_zero_grad(&f.P);
        f.ops->backward(f.L, &f.P, d1, G, x, T, 1.0f);
        ffn_dense_ops.backward(dense, &Pd, d2, G, x, T, 1.0f);
        CHECK(max_rel_err(d1, d2, (long)T * d, 1e-4) < 1e-5);
        for (int i = 0; i < 3; i++) {
            char a[64];
            snprintf(a, sizeof a, "layers.0.ffn.%s", nm[i]);
            const TensorInfo *td = params_find(&Pd, a), *tm = params_find(&f.P, a);
            CHECK(max_rel_err(Pd.g + td->off, f.P.g + tm->off, (long)td->n, 1e-4) < 1e-5);
        }
        // the router gets no gradient (gate = 1, balancing loss constant = 1)
        const TensorInfo *tr = params_find(&f.P, "layers.0.ffn.router");
        double rmax = 0;
        for (size_t i = 0; i < tr->n; i++) rmax = fmax(rmax, fabs(f.P.g[tr->off + i]));
        CHECK(rmax < 1e-6);
        CHECK_NEAR(f.ops->aux_loss(f.L), 0.01, 1e-6);
        free(x); free(G); free(o1); free(o2); free(d1); free(d2);
        ffn_dense_ops.destroy(dense);
        params_free(&Pd);
        fix_free(&f);
    }
}

TEST(moe_param_matched_aoe_counts) {
    // paper examples (methods.md §1.2): d=768, D=3072
    Config c;
    config_defaults(&c);
    c.d_model = 768; c.ffn.d_ff = 3072; c.ffn.d_wide = 0;
    int rs[] = {64, 128, 256, 512}, want[] = {4393, 4195, 3840, 3264};
    for (int i = 0; i < 4; i++) {
        c.ffn.d_low = rs[i];
        CHECK(abs(ffn_d_wide(&c) - want[i]) <= 1);
    }
    // count() totals: AoE experts match MoE experts (router excluded) within Eq.5 rounding, and
    // agree with the parameters the layer actually registers
    int ds[] = {128, 192, 320}, Ds[] = {256, 512, 384};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            if (rs[j] >= ds[i]) continue;
            Config k;
            config_defaults(&k);
            k.d_model = ds[i]; k.ffn.d_ff = Ds[i]; k.ffn.d_low = rs[j]; k.ffn.n_experts = 8; k.ffn.top_k = 2;
            double tm, am, fm, ta, aa, fa;
            ffn_moe_ops.count(&k, &tm, &am, &fm);
            ffn_aoe_ops.count(&k, &ta, &aa, &fa);
            double router = (double)k.d_model * 8, slack = 8 * (rs[j] + 2.0 * ds[i]) / 2;
            CHECK(fabs(ta - (tm - router)) <= slack);
            CHECK(fabs(ta - (tm - router)) / tm < 0.01);
            CHECK(aa > 0 && fa > 0 && am < tm && aa < ta);
            snprintf(k.ffn.type, sizeof k.ffn.type, "aoe");
            Params P = {0};
            void *L = ffn_aoe_ops.create(&P, &k, 0, 4);
            size_t sum = 0;
            for (int t = 0; t < P.n; t++) sum += P.t[t].n;
            CHECK_EQ_INT((long long)sum, (long long)ta);
            ffn_aoe_ops.destroy(L);
            params_free(&P);
            Params Q = {0};
            L = ffn_moe_ops.create(&Q, &k, 0, 4);
            sum = 0;
            for (int t = 0; t < Q.n; t++) sum += Q.t[t].n;
            CHECK_EQ_INT((long long)sum, (long long)tm);
            ffn_moe_ops.destroy(L);
            params_free(&Q);
        }
}

static char *stats_line(Fix *f, long step) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    f->ops->write_stats(f->L, m, step, 0);
    fclose(m);
    return buf;
}

TEST(moe_stats_counts_sum_to_tokens_times_k) {
    kernels_init(2);
    Spec specs[] = {
        {"moe", "topk_softmax", 16, 8, 2, 24, 0, 50, 0.3f, 0.01f, 0, 0},
        {"aoe", "softmax", 16, 8, 3, 24, 5, 50, 0.3f, 0.01f, 0, 0},
        {"aoe", "topk_softmax", 16, 8, 2, 24, 5, 50, 0.3f, 0.01f, 0, 0.5f},
    };
    for (int si = 0; si < 3; si++) {
        Spec *s = &specs[si];
        Fix f;
        fix_make(&f, s, 41);
        Rng rng;
        rng_seed(&rng, 1);
        float *out = falloc(s->T * s->d);
        long tokens = 0;
        for (int it = 0; it < 3; it++) {
            int T = s->T - it * 7;
            float *x = test_randn(T * s->d, 1, 100 + it);
            f.ops->forward(f.L, &f.P, out, x, T, 1, &rng);
            f.ops->forward(f.L, &f.P, out, x, T, 0, &rng);  // eval forwards are not counted
            tokens += T;
            free(x);
        }
        char *line = stats_line(&f, 30);
        REQUIRE(line && line[strlen(line) - 1] == '\n');
        cJSON *j = cJSON_Parse(line);
        REQUIRE(j);
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "v")->valueint, 1);
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "step")->valueint, 30);
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "tokens")->valueint, tokens);
        cJSON *counts = cJSON_GetObjectItem(j, "counts");
        REQUIRE(cJSON_GetArraySize(counts) == s->n);
        long sum = 0;
        for (int e = 0; e < s->n; e++) sum += cJSON_GetArrayItem(counts, e)->valueint;
        long dropped = cJSON_GetObjectItem(j, "dropped")->valueint;
        CHECK_EQ_INT(sum + dropped, tokens * s->K);
        if (s->cap == 0) CHECK_EQ_INT(dropped, 0);
        else CHECK(dropped > 0);
        const char *keys[] = {"ent_load", "ent_conf", "max_minus_min", "cv", "dead", "lb_loss", "z_loss"};
        for (int k = 0; k < 7; k++) CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, keys[k])));
        double el = cJSON_GetObjectItem(j, "ent_load")->valuedouble;
        CHECK(el > 0 && el <= log(s->n) + 1e-9);
        cJSON *nm = cJSON_GetObjectItem(j, "norm_mean");
        CHECK(!strcmp(s->type, "aoe") ? cJSON_GetArraySize(nm) == s->n : nm == NULL);
        cJSON_Delete(j);
        free(line);
        line = stats_line(&f, 40);  // reset: nothing accumulated, nothing written
        CHECK(line == NULL || line[0] == 0);
        free(line);
        free(out);
        fix_free(&f);
    }
}

TEST(moe_deterministic_across_runs) {
    kernels_init(2);
    Spec s = {"aoe", "topk_softmax", 32, 8, 2, 48, 8, 96, 0.1f, 0.01f, 0, 0};
    float *res[2][2];
    for (int run = 0; run < 2; run++) {
        Fix f;
        fix_make(&f, &s, 51);
        float *x = test_randn(s.T * s.d, 1, 52), *G = test_randn(s.T * s.d, 1, 53);
        res[run][0] = falloc(s.T * s.d);
        res[run][1] = falloc(s.T * s.d);
        Rng rng;
        rng_seed(&rng, 1);
        f.ops->forward(f.L, &f.P, res[run][0], x, s.T, 1, &rng);
        params_zero_grad(&f.P);
        f.ops->backward(f.L, &f.P, res[run][1], G, x, s.T, 1.0f);
        free(x); free(G);
        fix_free(&f);
    }
    CHECK(!memcmp(res[0][0], res[1][0], sizeof(float) * s.T * s.d));
    CHECK(!memcmp(res[0][1], res[1][1], sizeof(float) * s.T * s.d));
    for (int i = 0; i < 2; i++) for (int j = 0; j < 2; j++) free(res[i][j]);
}

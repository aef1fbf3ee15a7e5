// test_etr_ablate.c — the ETR ablation options (src/select/etr.c): the expert-side threshold τ
// (model.ffn.etr_tau), ETR's expert-side stage alone (select etr_ecr), renormalised gates
// (etr_renorm); and ERC logging without training on it (model.ffn.erc_log, src/select/select.c).
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/kernels.h"
#include "select/etr.h"
#include "test.h"
#include "test_etr.h"
#include "test_sparse.h"

typedef struct { float key; int t; } KeyTok;
static int by_key_desc(const void *pa, const void *pb) {
    const KeyTok *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return a->t - b->t;
}

// Sorts an expert's candidates by δ (ties to the lower token) and returns how many it keeps: rank j
// is kept iff j < cap and (τ = 1, or no positive δ, or the positive δ ranked above j is still
// below τ·Σ max(δ,0)). Written per rank, not as the implementation's running prefix.
static int expected_keep(KeyTok *c, int m, long cap, double tau) {
    qsort(c, m, sizeof *c, by_key_desc);
    double tot = 0;
    for (int j = 0; j < m; j++) tot += c[j].key > 0 ? c[j].key : 0;
    int k = 0;
    for (int j = 0; j < m; j++) {
        double above = 0;
        for (int i = 0; i < j; i++) above += c[i].key > 0 ? c[i].key : 0;
        int keep = j < cap && (tau >= 1 || tot <= 0 || above < tau * tot);
        if (keep) CHECK_EQ_INT(j, k);  // the kept ranks form a prefix
        k += keep;
    }
    return k;
}

// τ with ample and with tight capacity: the kept slots of each expert are the expected prefix,
// dropped = the rest; τ = 1 is bit-identical to the capacity-only rule.
TEST(etr_tau_keeps_the_affinity_prefix) {
    kernels_init(2);
    int T = 60, d = 16, n = 4;
    float caps[] = {5, 0.6f};
    for (int ci = 0; ci < 2; ci++)
        for (int ti = 0; ti < 3; ti++) {
            float tau = ti == 0 ? 1 : ti == 1 ? 0.5f : 0.9f;
            Spec s = {"cosine", d, n, 1, 8, T, 2, 0.3f, 0.01f, 0.01f, caps[ci], caps[ci], 0, NULL, tau, 0};
            Fix f;
            fix_make(&f, &s, 31);
            float *x = test_randn(T * d, 1, 32), *out = falloc(T * d);
            train_forward(&f, out, x, T);
            const Selection *sel = f.L->sel;
            const Etr *e = etr_state(sel);
            REQUIRE(e);
            long dropped = 0;
            KeyTok c[60];
            for (int i = 0; i < n; i++) {
                int m = 0;
                for (int t = 0; t < T; t++)
                    if (sel->choice[t] == i) c[m++] = (KeyTok){sel->aff[t * n + i], t};
                int k = expected_keep(c, m, e->cap, tau);
                dropped += m - k;
                for (int j = 0; j < m; j++) CHECK_EQ_INT(sel->expert[c[j].t] == i, j < k);
            }
            CHECK_EQ_INT(sel->dropped, dropped);
            if (tau < 1 || ci == 1) CHECK(dropped > 0);
            if (tau == 1 && ci == 0) CHECK_EQ_INT(dropped, 0);
            free(x); free(out);
            fix_free(&f);
        }
}

// ECR only: every expert takes its C highest-δ tokens of the batch (τ prefix within them), a token
// gets 0..n experts, gates are softmax(S) entries (renormalised over the token's experts with
// etr_renorm), unrouted tokens output 0, evaluation selects the same way.
TEST(etr_ecr_experts_take_their_top_tokens) {
    kernels_init(2);
    int T = 48, d = 16, n = 4;
    for (int v = 0; v < 3; v++) {
        Spec s = {"grap", d, n, 1, 8, T, 2, 0.3f, 0.01f, 0.01f, 0.5f, 0.5f, 0, "etr_ecr", v == 2 ? 0.15f : 1, v == 1};
        Fix f;
        fix_make(&f, &s, 41);
        CHECK_EQ_INT(f.L->kmax, n);
        float *x = test_randn(T * d, 1, 42), *out = falloc(T * d), *oe = falloc(T * d);
        train_forward(&f, out, x, T);
        const Selection *sel = f.L->sel;
        const Etr *e = etr_ecr_state(sel);
        REQUIRE(e);
        CHECK_EQ_INT(e->cap, (long)ceil(0.5 * T / n));
        KeyTok c[48];
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < T; t++) c[t] = (KeyTok){sel->aff[t * n + i], t};
            int k = expected_keep(c, T, e->cap, s.tau);
            CHECK_EQ_INT(sel->load[i], k);
            for (int j = 0; j < T; j++) CHECK_EQ_INT(sel->expert[c[j].t * n + i] == i, j < k);
            if (v == 2) CHECK(k < e->cap);
        }
        int unrouted = 0;
        for (int t = 0; t < T; t++) {
            double gs = 0;
            int m = 0;
            for (int i = 0; i < n; i++) {
                float g = sel->gate[t * n + i];
                if (sel->expert[t * n + i] < 0) { CHECK(g == 0); continue; }
                m++;
                gs += g;
                if (v != 1) CHECK_NEAR(g, sel->prob[t * n + i], 0);
            }
            if (m && v == 1) CHECK_NEAR(gs, 1, 1e-6);
            if (!m) {
                unrouted++;
                for (int k = 0; k < d; k++) CHECK(out[t * d + k] == 0);
            }
        }
        CHECK(unrouted > 0);
        Rng rng;
        rng_seed(&rng, 1);
        ffn_moe_ops.forward(f.L, &f.P, oe, x, T, 0, &rng);
        CHECK(!memcmp(out, oe, sizeof(float) * T * d));
        free(x); free(out); free(oe);
        fix_free(&f);
    }
}

// Renormalised top-1 ETR gates are exactly 1 for every kept token.
TEST(etr_renorm_top1_gate_is_one) {
    kernels_init(2);
    int T = 40, d = 16, n = 4;
    Spec s = {"grap", d, n, 1, 8, T, 2, 0.3f, 0.01f, 0.01f, 0.8f, 0.8f, 0, NULL, 1, 1};
    Fix f;
    fix_make(&f, &s, 51);
    float *x = test_randn(T * d, 1, 52), *out = falloc(T * d);
    train_forward(&f, out, x, T);
    CHECK(f.L->sel->gate_kind == GATE_TOPK_SOFTMAX);
    for (int t = 0; t < T; t++) CHECK(f.L->sel->gate[t] == 1.0f);
    free(x); free(out);
    fix_free(&f);
}

// `aoe stats` on a load.jsonl of two intervals of this line: the ERC plot is written.
static void stats_plot(const char *line) {
    char dir[600], path[700], cmd[1400];
    snprintf(dir, sizeof dir, "%s/erclog-run", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    REQUIRE(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/load.jsonl", dir);
    FILE *f = fopen(path, "w");
    const char *p = strstr(line, "\"step\":1,");
    REQUIRE(f && p);
    fprintf(f, "%s%.*s\"step\":2,%s", line, (int)(p - line), line, p + 9);
    fclose(f);
    char *out = NULL, *err = NULL;
    int rc = aoe_run(&out, &err, "stats %s", dir);
    CHECK_EQ_INT(rc, 0);
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        CHECK_STR_CONTAINS(out, "erc_over_time.png");
        snprintf(path, sizeof path, "%s/plots/erc_over_time.png", dir);
        CHECK(access(path, R_OK) == 0);
    }
    free(out); free(err);
}

// erc_log: the same forward, auxiliary loss and gradients (bitwise) as without it, and the stats
// line gains erc_eps / erc_loss equal to the clean-router values.
TEST(erc_log_measures_without_training) {
    kernels_init(2);
    int T = 30, d = 16;
    float *x = test_randn(T * d, 1, 62), *G = test_randn(T * d, 1, 63);
    float *out[2], *dx[2];
    Params P[2] = {{0}};
    void *L[2];
    Config c[2];
    for (int k = 0; k < 2; k++) {
        config_defaults(&c[k]);
        snprintf(c[k].ffn.type, sizeof c[k].ffn.type, "moe");
        c[k].d_model = d; c[k].n_layer = 1; c[k].ffn.n_experts = 4; c[k].ffn.d_ff = 12; c[k].init_std = 0.3f;
        c[k].ffn.erc_log = k;
        L[k] = ffn_moe_ops.create(&P[k], &c[k], 0, T);
        params_alloc(&P[k]);
        Rng rng;
        rng_seed(&rng, 61);
        params_init(&P[k], &rng);
        out[k] = falloc(T * d);
        dx[k] = falloc(T * d);
        rng_seed(&rng, 1);
        ffn_moe_ops.forward(L[k], &P[k], out[k], x, T, 1, &rng);
        ffn_moe_ops.backward(L[k], &P[k], dx[k], G, x, T, 1.0f);
    }
    CHECK(!memcmp(out[0], out[1], sizeof(float) * T * d));
    CHECK(!memcmp(dx[0], dx[1], sizeof(float) * T * d));
    CHECK(!memcmp(P[0].g, P[1].g, sizeof(float) * P[0].total));
    CHECK(ffn_moe_ops.aux_loss(L[0]) == ffn_moe_ops.aux_loss(L[1]));
    // the logged values: erc.c on the clean router
    const TensorInfo *tr = params_find(&P[1], "layers.0.ffn.router"), *tg = params_find(&P[1], "layers.0.ffn.w_gate");
    SelectParams v = {.d = d, .n = 4, .D = 12, .R = P[1].w + tr->off, .Wg = P[1].w + tg->off};
    Erc *e = erc_create(&c[1].ffn);
    erc_noise(e, &v, NULL);
    double want = erc_loss(e, &v), eps = erc_eps_mean(e);
    erc_free(e);
    for (int k = 0; k < 2; k++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        ffn_moe_ops.write_stats(L[k], m, 1, 0);
        fclose(m);
        cJSON *j = cJSON_Parse(buf);
        REQUIRE(j);
        CHECK(!!cJSON_GetObjectItem(j, "erc_eps") == k);
        if (k) {
            CHECK_NEAR(cJSON_GetObjectItem(j, "erc_eps")->valuedouble, eps, 1e-5 * eps);
            CHECK_NEAR(cJSON_GetObjectItem(j, "erc_loss")->valuedouble, want, 1e-5 * want + 1e-9);
            stats_plot(buf);
        }
        cJSON_Delete(j);
        free(buf);
        ffn_moe_ops.destroy(L[k]);
        params_free(&P[k]);
        free(out[k]); free(dx[k]);
    }
    char *err = NULL;
    CHECK_EQ_INT(aoe_run(NULL, &err, "train configs/aoe.json model.ffn.erc_log=true --dry-run"), 2);
    CHECK_STR_CONTAINS(err, "model.ffn.erc_log measures router rows");
    free(err);
    free(x); free(G);
}

// Finite differences through the reference (its expert-side rule includes τ) with τ dropping tokens.
TEST(etr_tau_gradcheck) {
    kernels_init(2);
    Spec s = {"grap", 8, 4, 1, 6, 12, 2, 0.5f, 0.3f, 0.2f, 5, 5, 0, NULL, 0.7f, 0};
    Fix f;
    fix_make(&f, &s, 21);
    int T = s.T, d = s.d;
    float *x = test_randn(T * d, 1, 22), *G = test_randn(T * d, 1, 23), *out = falloc(T * d), *dx = falloc(T * d);
    train_forward(&f, out, x, T);
    CHECK(f.L->sel->dropped > 0);  // τ drops (capacity 5 never binds)
    params_zero_grad(&f.P);
    ffn_moe_ops.backward(f.L, &f.P, dx, G, x, T, 0.7f);
    int skipped = 0, total = 0;
    double e = test_sparse_fd(f.L, &f.P, x, dx, G, T, d, 1, 0.7f, 0, 1e-9, "etr/tau", &skipped, &total);
    fprintf(stderr, "[%.2e, %d/%d skipped] ", e, skipped, total);
    CHECK(skipped * 10 < total);
    CHECK(e < 2e-3);
    free(x); free(G); free(out); free(dx);
    fix_free(&f);
}

// ECR only has no reference layer (the reference is shaped for token choice), so its gradient is
// checked by central differences of the fast path itself: objective Σ G·out + aux_scale·aux from
// training forwards in float (accumulated in double), eps 1e-2; a perturbation that changes any
// processed (token, expert) slot is skipped. Experts, gates (softmax over all n), GrAP affinities,
// balancing and locality losses all contribute.
static double fast_objective(Fix *f, const float *x, const float *G, int T, float aux_scale, int *expert) {
    float *out = falloc((size_t)T * f->c.d_model);
    train_forward(f, out, x, T);
    double obj = aux_scale * ffn_moe_ops.aux_loss(f->L);
    for (long i = 0; i < (long)T * f->c.d_model; i++) obj += (double)G[i] * out[i];
    memcpy(expert, f->L->sel->expert, sizeof(int) * (size_t)T * f->L->kmax);
    free(out);
    return obj;
}

TEST(etr_ecr_gradcheck_fast_path) {
    kernels_init(2);
    Spec s = {"grap", 8, 4, 1, 6, 12, 2, 0.5f, 0.3f, 0.2f, 0.5f, 0.5f, 0, "etr_ecr", 1, 0};
    Fix f;
    fix_make(&f, &s, 21);
    int T = s.T, d = s.d, slots = T * s.n;
    float *x = test_randn(T * d, 1, 22), *G = test_randn(T * d, 1, 23), *out = falloc(T * d), *dx = falloc(T * d);
    int *e0 = malloc(sizeof(int) * slots), *e1 = malloc(sizeof(int) * slots);
    fast_objective(&f, x, G, T, 0.7f, e0);
    params_zero_grad(&f.P);
    ffn_moe_ops.backward(f.L, &f.P, dx, G, x, T, 0.7f);
    const double eps = 1e-2;
    double worst = 0;
    int skipped = 0, total = 0;
    for (int ti = 0; ti <= f.P.n; ti++) {  // tensors, then the input
        float *w = ti < f.P.n ? f.P.w + f.P.t[ti].off : x;
        const float *ga = ti < f.P.n ? f.P.g + f.P.t[ti].off : dx;
        long nn = ti < f.P.n ? (long)f.P.t[ti].n : (long)T * d;
        double gmax = 0, err = 0;
        for (long i = 0; i < nn; i++) gmax = fmax(gmax, fabs(ga[i]));
        for (long i = 0; i < nn; i++) {
            float w0 = w[i];
            w[i] = (float)(w0 + eps);
            double lp = fast_objective(&f, x, G, T, 0.7f, e1);
            int same = !memcmp(e0, e1, sizeof(int) * slots);
            w[i] = (float)(w0 - eps);
            double lm = fast_objective(&f, x, G, T, 0.7f, e1);
            same &= !memcmp(e0, e1, sizeof(int) * slots);
            w[i] = w0;
            total++;
            if (!same) { skipped++; continue; }
            err = fmax(err, fabs((lp - lm) / (2 * eps) - ga[i]) / fmax(gmax, 1e-6));
        }
        CHECK(gmax > 0);  // every tensor and the input get gradient
        worst = fmax(worst, err);
    }
    fprintf(stderr, "[%.2e, %d/%d skipped] ", worst, skipped, total);
    CHECK(skipped * 10 < total);
    CHECK(worst < 1e-2);
    free(x); free(G); free(out); free(dx); free(e0); free(e1);
    fix_free(&f);
}

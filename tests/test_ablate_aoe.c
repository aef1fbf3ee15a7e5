// test_ablate_aoe.c — the AoE paper's ablation options on the sparse layer: the AoE norm
// (model.ffn.aoe_norm l1 / linf), the router MoE with a factorised W_g (model.ffn.gate_rank) and
// with a two-layer router (model.ffn.router_hidden): central finite differences in double through
// the reference layer (moe_ref.c, each source's naive twin) for every tensor and the input, fast
// path against the reference, parameter counts; and the evaluation probe
// (model.ffn.score_override norm, `aoe eval --select-override norm`).
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/model.h"
#include "model/moe.h"
#include "model/score.h"
#include "test.h"
#include "test_sparse.h"

// A layer of 4 experts, d 8, width 6, top-2 over 12 tokens, with cfg edited by `set` ("key=value").
static MoeLayer *layer(Config *c, Params *P, const char *type, const char *const *set, int nset, int T) {
    config_defaults(c);
    snprintf(c->ffn.type, sizeof c->ffn.type, "%s", type);
    c->d_model = 8; c->n_layer = 1; c->init_std = 0.5f;
    c->ffn.n_experts = 4; c->ffn.top_k = 2; c->ffn.d_ff = 6; c->ffn.d_low = 3; c->ffn.lb_coef = 0.3f;
    for (int i = 0; i < nset; i++) config_set(c, set[i], "test");
    model_validate_config(c, "test");
    const FfnOps *ops = !strcmp(type, "aoe") ? &ffn_aoe_ops : &ffn_moe_ops;
    memset(P, 0, sizeof *P);
    MoeLayer *L = ops->create(P, c, 0, T);
    params_alloc(P);
    Rng rng;
    rng_seed(&rng, 21);
    params_init(P, &rng);
    return L;
}

// Fast forward/backward against the reference, then finite differences; returns the worst error.
static double check(const char *type, const char *const *set, int nset, const char *label, const ScoreOps *want) {
    Config c;
    Params P;
    int T = 12, d = 8;
    MoeLayer *L = layer(&c, &P, type, set, nset, T);
    const FfnOps *ops = !strcmp(type, "aoe") ? &ffn_aoe_ops : &ffn_moe_ops;
    CHECK(L->score.ops == want);
    float *x = test_randn(T * d, 1, 22), *G = test_randn(T * d, 1, 23), *out = falloc(T * d), *ref = falloc(T * d);
    float *dx = falloc(T * d), *dxr = falloc(T * d), *gref = falloc(P.total);
    Rng rng;
    rng_seed(&rng, 1);
    ops->forward(L, &P, out, x, T, 1, &rng);
    double aux = moe_forward_naive(L, &P, ref, x, T, NULL);
    CHECK(max_rel_err(out, ref, (long)T * d, 1e-3) < 1e-4);
    CHECK_NEAR(ops->aux_loss(L), aux, 1e-5 * fabs(aux) + 1e-7);
    params_zero_grad(&P);
    ops->backward(L, &P, dx, G, x, T, 0.7f);
    moe_backward_naive(L, &P, dxr, gref, G, x, T, 0.7f);
    CHECK(max_rel_err(dx, dxr, (long)T * d, 1e-3) < 1e-3);
    CHECK(max_rel_err(P.g, gref, (long)P.total, 1e-3) < 1e-3);
    int skipped = 0, total = 0;
    double worst = test_sparse_fd(L, &P, x, dx, G, T, d, L->kmax, 0.7f, 0, 1e-7, label, &skipped, &total);
    CHECK(skipped * 20 < total);
    free(x); free(G); free(out); free(ref); free(dx); free(dxr); free(gref);
    ops->destroy(L);
    params_free(&P);
    return worst;
}

TEST(aoe_norm_l1_linf_gradcheck) {
    kernels_init(2);
    const char *norms[] = {"model.ffn.aoe_norm=l1", "model.ffn.aoe_norm=linf", "model.ffn.aoe_norm=l2"};
    for (int i = 0; i < 3; i++) {
        double e = check("aoe", &norms[i], 1, norms[i] + 19, &score_aoe_norm);
        fprintf(stderr, "[%s %.2e] ", norms[i] + 19, e);
        CHECK(e < 2e-3);
    }
}

// Where the norm is taken (model.ffn.aoe_norm_at): every position through the reference, one in
// the l1 norm; the fast scores against the naive twin's; counts: same parameters as down, FLOPs
// per token with each position's stages for every expert (output: every expert's whole FFN).
TEST(aoe_norm_at_gradcheck_and_counts) {
    kernels_init(2);
    const char *at[][2] = {{"model.ffn.aoe_norm_at=proj", ""}, {"model.ffn.aoe_norm_at=silu", ""},
                           {"model.ffn.aoe_norm_at=act", ""}, {"model.ffn.aoe_norm_at=output", ""},
                           {"model.ffn.aoe_norm_at=output", "model.ffn.aoe_norm=l1"}};
    for (int i = 0; i < 5; i++) {
        double e = check("aoe", at[i], at[i][1][0] ? 2 : 1, at[i][0] + 22, &score_aoe_at);
        fprintf(stderr, "[%s%s %.2e] ", at[i][0] + 22, at[i][1][0] ? " l1" : "", e);
        CHECK(e < 2e-3);
    }
    Config c;
    Params P;
    double tot0, act0, fl0, tot, act, fl, d = 8, n = 4, K = 2, r = 3;
    MoeLayer *L = layer(&c, &P, "aoe", NULL, 0, 4);
    double D = L->D;
    ffn_aoe_ops.count(&c, &tot0, &act0, &fl0);
    ffn_aoe_ops.destroy(L); params_free(&P);
    // multiply-adds per token: W_down of all + the stages of all + the chosen experts' rest
    double want[] = {n * (d * r + d * D) + K * (r * D + D * d), n * (d * r + r * D) + K * 2 * d * D,
                     n * (d * r + r * D + d * D) + K * D * d, n * (d * r + r * D + 2 * d * D)};
    for (int i = 0; i < 4; i++) {
        L = layer(&c, &P, "aoe", at[i], 1, 5);
        ffn_aoe_ops.count(&c, &tot, &act, &fl);
        CHECK_NEAR(tot, tot0, 0.5);
        CHECK_NEAR(act, want[i], 0.5);
        CHECK_NEAR(fl, 2 * want[i], 0.5);
        float *x = test_randn(5 * 8, 1, 40 + i), *out = falloc(5 * 8);
        double z[4], rk[4], key[12];
        ffn_aoe_ops.forward(L, &P, out, x, 5, 0, NULL);
        for (int t = 0; t < 5; t++) {
            L->score.ops->forward_naive(&L->score, &P, x + t * 8, z, rk, key);
            for (int e = 0; e < 4; e++) CHECK_NEAR(L->score.S[t * 4 + e], z[e], 1e-4 * z[e] + 1e-6);
        }
        free(x); free(out);
        ffn_aoe_ops.destroy(L); params_free(&P);
    }
    CHECK(act0 < want[0]);
    char buf[256];
    config_defaults(&c);
    config_set(&c, "model.ffn.type=aoe", "test");
    config_set(&c, "model.ffn.aoe_norm_at=silu", "test");
    config_set(&c, "train.expert_parallel=2", "test");
    CHECK_STR_CONTAINS(score_check(&c, buf, sizeof buf), "expert_parallel");
}

// The norm kinds rank by what they say: S = Σ|c| and max|c| of the key x·W_down^e.
TEST(aoe_norm_values) {
    Config c;
    Params P;
    const char *set[] = {"model.ffn.aoe_norm=l1", "model.ffn.aoe_norm=linf"};
    for (int k = 0; k < 2; k++) {
        MoeLayer *L = layer(&c, &P, "aoe", &set[k], 1, 5);
        float *x = test_randn(5 * 8, 1, 3), *out = falloc(5 * 8);
        ffn_aoe_ops.forward(L, &P, out, x, 5, 0, NULL);
        for (int t = 0; t < 5; t++)
            for (int e = 0; e < 4; e++) {
                const float *kk = L->score.key + (size_t)t * 4 * 3 + e * 3;
                double v = 0;
                for (int j = 0; j < 3; j++) v = k ? fmax(v, fabs(kk[j])) : v + fabs(kk[j]);
                CHECK_NEAR(L->score.S[t * 4 + e], v, 1e-5 * v);
            }
        free(x); free(out);
        ffn_aoe_ops.destroy(L);
        params_free(&P);
    }
}

TEST(moe_gate_rank_gradcheck_and_width) {
    kernels_init(2);
    const char *set[] = {"model.ffn.gate_rank=3"};
    double e = check("moe", set, 1, "gate_rank", &score_router_lowrank);
    fprintf(stderr, "[%.2e] ", e);
    CHECK(e < 2e-3);
    // parameter matching: experts have AoE's d_wide (Eq.5 with r = gate_rank); total = router + AoE's
    Config c, a;
    Params P, Q;
    MoeLayer *L = layer(&c, &P, "moe", set, 1, 4);
    const char *aoe_set[] = {"model.ffn.d_low=3"};
    MoeLayer *A = layer(&a, &Q, "aoe", aoe_set, 1, 4);
    CHECK_EQ_INT(L->D, A->D);
    double tot, act, fl;
    ffn_moe_ops.count(&c, &tot, &act, &fl);
    long sum = 0, sumq = 0;  // P.total includes alignment padding
    for (int i = 0; i < P.n; i++) sum += (long)P.t[i].n;
    for (int i = 0; i < Q.n; i++) sumq += (long)Q.t[i].n;
    CHECK_EQ_INT((long)tot, sum);
    CHECK_EQ_INT(sum, sumq + 8 * 4);  // AoE's parameters plus the router
    ffn_moe_ops.destroy(L); params_free(&P);
    ffn_aoe_ops.destroy(A); params_free(&Q);
}

TEST(moe_router_hidden_gradcheck) {
    kernels_init(2);
    const char *set[] = {"model.ffn.router_hidden=5"};
    double e = check("moe", set, 1, "router_hidden", &score_router_mlp);
    fprintf(stderr, "[%.2e] ", e);
    CHECK(e < 2e-3);
    const char *both[] = {"model.ffn.router_hidden=5", "model.ffn.gate_rank=3"};
    char buf[256];
    Config c;
    config_defaults(&c);
    snprintf(c.ffn.type, sizeof c.ffn.type, "moe");
    for (int i = 0; i < 2; i++) config_set(&c, both[i], "test");
    CHECK_STR_CONTAINS(score_check(&c, buf, sizeof buf), "separate ablations");
}

// The probe ranks by ||x·W_g^e||: S equals the norm computed here, the choice is the top-K of it,
// and the layer (with the probe) equals its reference; training it is refused.
TEST(moe_score_override_norm_probe) {
    kernels_init(2);
    Config c;
    Params P;
    const char *set[] = {"model.ffn.score_override=norm"};
    int T = 7;
    MoeLayer *L = layer(&c, &P, "moe", set, 1, T);
    CHECK(L->score.ops == &score_expert_norm);
    CHECK(params_find(&P, "layers.0.ffn.router") != NULL);  // a router checkpoint still loads
    float *x = test_randn(T * 8, 1, 5), *out = falloc(T * 8), *ref = falloc(T * 8);
    ffn_moe_ops.forward(L, &P, out, x, T, 0, NULL);
    const float *Wg = P.w + params_find(&P, "layers.0.ffn.w_gate")->off;
    for (int t = 0; t < T; t++)
        for (int e = 0; e < 4; e++) {
            double q = 0;
            for (int i = 0; i < 6; i++) {
                double u = 0;
                for (int k = 0; k < 8; k++) u += (double)x[t * 8 + k] * Wg[(size_t)e * 8 * 6 + k * 6 + i];
                q += u * u;
            }
            CHECK_NEAR(L->score.S[t * 4 + e], sqrt(q), 1e-5 * sqrt(q));
        }
    moe_forward_naive(L, &P, ref, x, T, NULL);
    CHECK(max_rel_err(out, ref, (long)T * 8, 1e-3) < 1e-4);
    free(x); free(out); free(ref);
    ffn_moe_ops.destroy(L);
    params_free(&P);
    // the other nodes of the paper's Table 1: fast scores and layer output against the naive twin
    const char *nodes[] = {"model.ffn.score_override=norm_proj", "model.ffn.score_override=norm_silu",
                           "model.ffn.score_override=norm_act", "model.ffn.score_override=norm_output"};
    for (int k = 0; k < 4; k++) {
        MoeLayer *M = layer(&c, &P, "moe", &nodes[k], 1, T);
        float *xx = test_randn(T * 8, 1, 6 + k), *o = falloc(T * 8), *r = falloc(T * 8);
        ffn_moe_ops.forward(M, &P, o, xx, T, 0, NULL);
        moe_forward_naive(M, &P, r, xx, T, NULL);
        double e = max_rel_err(o, r, (long)T * 8, 1e-3);
        if (e >= 1e-4) fprintf(stderr, "  %s: %.2e\n", nodes[k], e);
        CHECK(e < 1e-4);
        free(xx); free(o); free(r);
        ffn_moe_ops.destroy(M);
        params_free(&P);
    }
    // random: K distinct experts per token, each expert about K/n of the time, gates 1/K; equals
    // the reference (same draws from the same token); a different seed draws differently
    const char *rnd[] = {"model.ffn.score_override=random", "train.seed=9"};
    int Tr = 400, same = 0;
    int *ch = xcalloc((size_t)Tr * 2, sizeof(int)), *ch2 = xcalloc((size_t)Tr * 2, sizeof(int));
    for (int pass = 0; pass < 2; pass++) {
        MoeLayer *M = layer(&c, &P, "moe", rnd, 1 + pass, Tr);
        float *xx = test_randn(Tr * 8, 1, 77), *o = falloc(Tr * 8), *r = falloc(Tr * 8);
        ffn_moe_ops.forward(M, &P, o, xx, Tr, 0, NULL);
        moe_forward_naive(M, &P, r, xx, Tr, pass ? ch2 : ch);
        CHECK(max_rel_err(o, r, (long)Tr * 8, 1e-3) < 1e-4);
        int cnt[4] = {0};
        for (int t = 0; t < Tr; t++) {
            const int *e = M->sel->expert + t * 2;
            CHECK(e[0] != e[1] && e[0] >= 0 && e[1] >= 0);
            CHECK_EQ_INT(e[0], (pass ? ch2 : ch)[t * 2]);
            CHECK_NEAR(M->sel->gate[t * 2], 0.5, 1e-6);
            cnt[e[0]]++; cnt[e[1]]++;
            if (pass) same += ch[t * 2] == ch2[t * 2] && ch[t * 2 + 1] == ch2[t * 2 + 1];
        }
        for (int e = 0; e < 4; e++) CHECK(fabs(cnt[e] - Tr * 0.5) < 5 * sqrt(Tr * 0.5 * 0.5));  // 5 sigma
        free(xx); free(o); free(r);
        ffn_moe_ops.destroy(M);
        params_free(&P);
    }
    CHECK(same < Tr / 3);  // 1/6 of pairs agree by chance
    free(ch); free(ch2);
    char *err = NULL;
    const char *d = test_tiny_data();  // shipped data may be unprepared (fresh clone)
    CHECK_EQ_INT(aoe_run(NULL, &err, "train configs/moe.json model.ffn.score_override=norm train.steps=1 "
                                     "data.train='%s/train-*.shard' data.val='%s/val-*.shard' "
                                     "data.tokenizer=%s/tokenizer.bpe run.out=%s/probe-train",
                         d, d, d, test_tmpdir()), 2);
    CHECK_STR_CONTAINS(err, "cannot be trained");
    free(err);
}

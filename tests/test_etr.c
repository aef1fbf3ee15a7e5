// test_etr.c — Expert-Token Resonance (src/select/etr.c on the GrAP score source of
// src/model/grap.c): fast layer against the per-token reference (moe_ref.c), central finite
// differences in double through the reference for the gate/affinity path and for the balancing
// and locality losses alone; invariants (ample capacity == dropless == a router MoE whose router
// is the GrAP matrix; dropped counts; the capacity schedule; eval is dropless; statistics fields);
// refusals of bad configs.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "model/grap.h"
#include "model/kernels.h"
#include "model/model.h"
#include "model/moe.h"
#include "select/etr.h"
#include "test.h"
#include "test_etr.h"
#include "test_sparse.h"

// ---- refusals ----
// One bad setting each: select_check names the key; the CLI refuses it at config read (exit 2,
// one line) before anything is written.
TEST(etr_refuses_bad_configs) {
    char buf[256];
    Config c;
    cfg_etr(&c);
    CHECK(select_find("etr") == &select_etr);
    CHECK(score_for(&c) == &score_grap);  // the method brings its source, whatever the type
    CHECK(select_check(&c.ffn, &score_grap.info, buf, sizeof buf) == NULL);
    CHECK(model_check_config(&c, buf, sizeof buf) == NULL);
    snprintf(c.ffn.type, sizeof c.ffn.type, "aoe");
    CHECK(score_for(&c) == &score_grap);
    CHECK_STR_CONTAINS(score_check(&c, buf, sizeof buf), "model.ffn.type moe");
    CHECK_STR_CONTAINS(model_check_config(&c, buf, sizeof buf), "model.ffn.type moe");
    cfg_etr(&c);
    c.ffn.n_experts = 6;  // 128 not divisible: the source's rule
    CHECK_STR_CONTAINS(score_check(&c, buf, sizeof buf), "divisible by model.ffn.n_experts (6)");
    for (int k = 0; k < 7; k++) {
        cfg_etr(&c);
        FfnConfig *f = &c.ffn;
        const char *want[] = {"model.ffn.capacity", "model.ffn.z_loss", "model.ffn.etr_groups",
                              "model.ffn.etr_groups", "model.ffn.etr_cap_start", "model.ffn.etr_gate",
                              "model.ffn.erc_coef"};
        switch (k) {
        case 0: f->capacity = 1; break;
        case 1: f->z_loss = 1e-3f; break;
        case 2: f->etr_groups = 3; break;   // does not divide 8 experts
        case 3: f->etr_groups = 16; break;  // more groups than experts
        case 4: f->etr_cap_end = 0; break;
        case 5: snprintf(f->etr_gate, sizeof f->etr_gate, "max"); break;
        case 6: f->erc_coef = 1; break;     // ERC needs router rows
        }
        CHECK_STR_CONTAINS(model_check_config(&c, buf, sizeof buf), want[k]);
    }
    const char *cli[][2] = {
        {"model.ffn.n_experts=6", "model.d_model (128) must be divisible by model.ffn.n_experts (6)"},
        {"model.ffn.type=aoe", "model.ffn.type moe"},
        {"model.ffn.etr_groups=3", "model.ffn.etr_groups must divide"},
        {"model.ffn.capacity=1.5", "model.ffn.capacity must be 0"},
        {"model.ffn.etr_gate=max", "model.ffn.etr_gate"},
    };
    for (int k = 0; k < 5; k++) {
        char *err = NULL;
        int rc = aoe_run(NULL, &err, "train configs/etr.json %s run.out=%s/etr-refused --dry-run", cli[k][0],
                         test_tmpdir());
        CHECK_EQ_INT(rc, 2);
        CHECK_STR_CONTAINS(err, cli[k][1]);
        CHECK(err && strchr(err, '\n') == err + strlen(err) - 1);  // one line
        free(err);
    }
}

// ---- the score source ----
TEST(etr_grap_scores_and_no_router) {
    kernels_init(2);
    int T = 5, d = 12, n = 4, m = 3;
    float *x = test_randn(T * d, 1, 3), S[20], aff[20], xn[5];
    for (int cos = 0; cos <= 1; cos++) {
        grap_forward(S, aff, xn, x, T, d, n, cos);
        for (int t = 0; t < T; t++) {
            double nx = 0;
            for (int k = 0; k < d; k++) nx += (double)x[t * d + k] * x[t * d + k];
            nx = sqrt(nx);
            for (int i = 0; i < n; i++) {
                // w_i = n/d on group i: z = w_i·x, δ = w_i·x / (||w_i||·||x||), ||w_i|| = 1/sqrt(m)
                double dot = 0;
                for (int k = i * m; k < (i + 1) * m; k++) dot += (double)n / d * x[t * d + k];
                double cosv = dot / (nx / sqrt((double)m));
                CHECK_NEAR(aff[t * n + i], cosv, 1e-6);
                CHECK_NEAR(S[t * n + i], cos ? cosv : dot, 1e-6);
            }
        }
    }
    free(x);
    // the layer registers experts only, and count() agrees
    Spec s = {"grap", 16, 4, 1, 8, 4, 2, 0.1f, 0.01f, 0.01f, 1.1f, 0.66f, 0, NULL, 0, 0};
    Fix f;
    fix_make(&f, &s, 1);
    CHECK(params_find(&f.P, "layers.0.ffn.router") == NULL);
    size_t sum = 0;
    for (int t = 0; t < f.P.n; t++) sum += f.P.t[t].n;
    double tot, act, fl;
    ffn_moe_ops.count(&f.c, &tot, &act, &fl);
    CHECK_EQ_INT((long long)sum, (long long)tot);
    CHECK_EQ_INT((long long)tot, 3LL * 4 * 16 * 8);
    fix_free(&f);
}

// ---- fast path against the reference ----
// Max relative errors of output, aux loss and (dx, every parameter gradient).
static void fast_vs_naive(const Spec *s, double *fe, double *ae, double *be, long *dropped) {
    Fix f;
    fix_make(&f, s, 11);
    int T = s->T, d = s->d;
    float *x = test_randn(T * d, 1, 12), *G = test_randn(T * d, 1, 13);
    float *out = falloc(T * d), *ref = falloc(T * d), *dx = falloc(T * d), *dxr = falloc(T * d);
    float *gref = falloc(f.P.total);
    train_forward(&f, out, x, T);
    *dropped = f.L->sel->dropped;
    double aux_ref = moe_forward_naive(f.L, &f.P, ref, x, T, NULL);
    *fe = max_rel_err(out, ref, (long)T * d, 1e-3);
    *ae = fabs(ffn_moe_ops.aux_loss(f.L) - aux_ref) / fmax(fabs(aux_ref), 1e-6);
    params_zero_grad(&f.P);
    ffn_moe_ops.backward(f.L, &f.P, dx, G, x, T, 0.7f);
    moe_backward_naive(f.L, &f.P, dxr, gref, G, x, T, 0.7f);
    *be = max_rel_err(dx, dxr, (long)T * d, 1e-3);
    for (int i = 0; i < f.P.n; i++) {
        const TensorInfo *t = &f.P.t[i];
        *be = fmax(*be, max_rel_err(f.P.g + t->off, gref + t->off, (long)t->n, 1e-3));
    }
    free(x); free(G); free(out); free(ref); free(dx); free(dxr); free(gref);
    fix_free(&f);
}

TEST(etr_fast_matches_reference) {
    kernels_init(2);
    Spec specs[] = {
        {"grap", 16, 8, 1, 24, 64, 2, 0.3f, 0.1f, 0.1f, 1.1f, 0.66f, 0, NULL, 0, 0},     // c_f 1.1
        {"grap", 16, 8, 1, 24, 64, 2, 0.3f, 0.1f, 0.1f, 1.1f, 0.5f, 1, NULL, 0, 0},      // c_f 0.5: many drops
        {"cosine", 16, 8, 1, 24, 64, 4, 0.3f, 0.1f, 0.1f, 1.1f, 0.66f, 0.5f, NULL, 0, 0},
        {"cosine", 16, 8, 2, 24, 64, 1, 0.3f, 0.1f, 0.1f, 0.6f, 0.6f, 0, NULL, 0, 0},    // top-2 token choice
        {"grap", 16, 4, 1, 24, 50, 2, 0.3f, 0, 0.5f, 100, 100, 0, NULL, 0, 0},           // no drops
    };
    for (int mode = 0; mode <= 1; mode++) {
        moe_set_expert_parallel(mode);
        for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
            double fe, ae, be;
            long dropped;
            fast_vs_naive(&specs[i], &fe, &ae, &be, &dropped);
            if (fe > 1e-4 || ae > 1e-5 || be > 1e-3)
                fprintf(stderr, "  spec %zu mode %d: fwd %.2e aux %.2e bwd %.2e\n", i, mode, fe, ae, be);
            CHECK(fe < 1e-4);
            CHECK(ae < 1e-5);
            CHECK(be < 1e-3);
            CHECK(i == 4 ? dropped == 0 : dropped > 0);
        }
    }
    moe_set_expert_parallel(-1);
}

// ---- finite differences ----
// Central differences of the double-precision reference objective Σ G·out + aux_scale·aux; the
// analytic gradient is the fast path's backward with dout = G. Perturbations that change a kept
// (token, expert) pair (TCR choice or ECR cut) are skipped and counted. with_output = 0 leaves
// only the auxiliary losses. Returns the worst relative error over the tensors and the input
// (the input last; every one must receive gradient unless only_input).
static double gradcheck(const Spec *s, int with_output, float aux_scale, const char *label, int only_input) {
    Fix f;
    fix_make(&f, s, 21);
    int T = s->T, d = s->d, K = s->K;
    float *x = test_randn(T * d, 1, 22), *G = test_randn(T * d, with_output ? 1 : 0, 23);
    float *out = falloc(T * d), *dx = falloc(T * d);
    train_forward(&f, out, x, T);
    params_zero_grad(&f.P);
    ffn_moe_ops.backward(f.L, &f.P, dx, G, x, T, aux_scale);
    int skipped = 0, total = 0;
    double worst = test_sparse_fd(f.L, &f.P, x, dx, G, T, d, K, aux_scale, only_input ? f.P.n : 0, 1e-9, label, &skipped, &total);
    CHECK(skipped * 20 < total);
    if (s->cap1 < 1) CHECK(f.L->sel->dropped > 0);  // the expert-side cut is exercised
    free(x); free(G); free(out); free(dx);
    fix_free(&f);
    return worst;
}

// small layers: d 8, 4 experts (groups of 2 features), expert width 6, 12 tokens
#define GC(gate, lb, loc, cap, groups) {gate, 8, 4, 1, 6, 12, groups, 0.5f, lb, loc, cap, cap, 0, NULL, 0, 0}

TEST(etr_gradcheck_gate_affinity_grap) {  // experts, gates, GrAP logits, both losses, with drops
    kernels_init(2);
    Spec s = GC("grap", 0.3f, 0.2f, 0.5f, 2);
    double e = gradcheck(&s, 1, 0.7f, "etr/grap", 0);
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(etr_gradcheck_gate_affinity_cosine) {
    kernels_init(2);
    Spec s = GC("cosine", 0.3f, 0.2f, 0.5f, 2);
    double e = gradcheck(&s, 1, 0.7f, "etr/cosine", 0);
    fprintf(stderr, "[max rel err %.2e] ", e);
    CHECK(e < 2e-3);
    Spec s2 = GC("cosine", 0.3f, 0.2f, 100, 4);  // top-2, no drops
    s2.K = 2;
    e = gradcheck(&s2, 1, 0.7f, "etr/cosine/top2", 0);
    fprintf(stderr, "[top-2 %.2e] ", e);
    CHECK(e < 2e-3);
}

TEST(etr_gradcheck_balancing_loss_alone) {  // dout = 0, locality off: into the input only
    kernels_init(2);
    const char *gates[] = {"grap", "cosine"};
    for (int i = 0; i < 2; i++) {
        Spec s = GC(gates[i], 0.5f, 0, 0.5f, 2);
        s.T = 14;  // 14 tokens cannot split evenly over 4 experts: balanced loads give no gradient
        double e = gradcheck(&s, 0, 1.0f, "etr/lb", 1);
        fprintf(stderr, "[%s %.2e] ", gates[i], e);
        CHECK(e < 2e-3);
    }
}

TEST(etr_gradcheck_locality_loss_alone) {  // dout = 0, balancing off, G = 1, 2, 4 groups
    kernels_init(2);
    const char *gates[] = {"grap", "cosine"};
    int groups[] = {1, 2, 4};
    for (int i = 0; i < 2; i++)
        for (int g = 0; g < 3; g++) {
            Spec s = GC(gates[i], 0, 0.5f, 0.5f, groups[g]);
            double e = gradcheck(&s, 0, 1.0f, "etr/loc", 1);
            fprintf(stderr, "[%s G%d %.2e] ", gates[i], groups[g], e);
            CHECK(e < 2e-3);
        }
}

// ---- invariants ----
// Capacity ≥ every expert's load: no drops, the training forward equals the (dropless) eval
// forward, and the layer equals a router MoE (top-K, full-softmax gates) whose router is frozen
// at the GrAP matrix W[k,i] = n/d on group i — output, dx and expert gradients (locality off, the
// same balancing loss on both sides).
TEST(etr_ample_capacity_equals_dropless) {
    kernels_init(2);
    int T = 40, d = 16, n = 4, D = 12;
    for (int K = 1; K <= 2; K++) {
        Spec s = {"grap", d, n, K, D, T, 2, 0.3f, 0.1f, 0, 5, 5, 0, NULL, 0, 0};  // C = ceil(5·K·T/n) ≥ K·T
        Fix f;
        fix_make(&f, &s, 61);
        float *x = test_randn(T * d, 1, 62), *G = test_randn(T * d, 1, 63);
        float *o1 = falloc(T * d), *o2 = falloc(T * d), *o3 = falloc(T * d), *d1 = falloc(T * d), *d3 = falloc(T * d);
        Rng rng;
        rng_seed(&rng, 1);
        ffn_moe_ops.forward(f.L, &f.P, o2, x, T, 0, &rng);
        train_forward(&f, o1, x, T);
        CHECK_EQ_INT(f.L->sel->dropped, 0);
        CHECK(!memcmp(o1, o2, sizeof(float) * T * d));
        params_zero_grad(&f.P);
        ffn_moe_ops.backward(f.L, &f.P, d1, G, x, T, 1.0f);

        Config rc = f.c;  // the twin: select topk, softmax gates, router = GrAP matrix
        snprintf(rc.ffn.select, sizeof rc.ffn.select, "topk");
        snprintf(rc.ffn.gate, sizeof rc.ffn.gate, "softmax");
        Params Q = {0};
        MoeLayer *R = ffn_moe_ops.create(&Q, &rc, 0, T);
        params_alloc(&Q);
        const TensorInfo *tr = params_find(&Q, "layers.0.ffn.router");
        REQUIRE(tr && tr->n == (size_t)d * n);
        for (int k = 0; k < d; k++)
            for (int i = 0; i < n; i++) Q.w[tr->off + (size_t)k * n + i] = k / (d / n) == i ? (float)n / d : 0;
        const char *nm[] = {"w_gate", "w_proj", "w_out"};
        for (int i = 0; i < 3; i++) {
            char a[64];
            snprintf(a, sizeof a, "layers.0.ffn.%s", nm[i]);
            const TensorInfo *ta = params_find(&f.P, a), *tb = params_find(&Q, a);
            REQUIRE(ta && tb && ta->n == tb->n);
            memcpy(Q.w + tb->off, f.P.w + ta->off, sizeof(float) * ta->n);
        }
        ffn_moe_ops.forward(R, &Q, o3, x, T, 1, &rng);
        CHECK(max_rel_err(o1, o3, (long)T * d, 1e-3) < 1e-4);  // float rounding of x·R vs group sums
        CHECK_NEAR(ffn_moe_ops.aux_loss(f.L), ffn_moe_ops.aux_loss(R), 1e-6);
        params_zero_grad(&Q);
        ffn_moe_ops.backward(R, &Q, d3, G, x, T, 1.0f);
        CHECK(max_rel_err(d1, d3, (long)T * d, 1e-3) < 1e-4);
        for (int i = 0; i < 3; i++) {
            char a[64];
            snprintf(a, sizeof a, "layers.0.ffn.%s", nm[i]);
            const TensorInfo *ta = params_find(&f.P, a), *tb = params_find(&Q, a);
            CHECK(max_rel_err(f.P.g + ta->off, Q.g + tb->off, (long)ta->n, 1e-3) < 1e-4);
        }
        ffn_moe_ops.destroy(R);
        params_free(&Q);
        free(x); free(G); free(o1); free(o2); free(o3); free(d1); free(d3);
        fix_free(&f);
    }
}

// Tight capacity: the kept slots of each expert are exactly its cap highest-δ candidates (ties to
// the lower token), dropped = Σ_i max(0, load_i − cap), dropped tokens output 0 (residual only);
// the capacity factor follows the schedule; evaluation forwards drop nothing.
TEST(etr_capacity_schedule_and_drops) {
    kernels_init(2);
    int T = 60, d = 16, n = 4;
    Spec s = {"cosine", d, n, 1, 8, T, 2, 0.3f, 0.01f, 0.01f, 1.2f, 0.4f, 0, NULL, 0, 0};
    Fix f;
    fix_make(&f, &s, 71);
    float *x = test_randn(T * d, 1, 72), *out = falloc(T * d);
    const Etr *e = etr_state(f.L->sel);
    REQUIRE(e);
    float prog[] = {0, 0.25f, 1};
    for (int pi = 0; pi < 3; pi++) {
        ffn_moe_ops.set_progress(f.L, prog[pi]);
        train_forward(&f, out, x, T);
        const Selection *sel = f.L->sel;
        double cf = 1.2 + (0.4 - 1.2) * prog[pi];
        CHECK_NEAR(e->cap_factor, cf, 1e-6);
        long cap = (long)ceil(cf * T / n);
        CHECK_EQ_INT(e->cap, cap);
        long want = 0;
        for (int i = 0; i < n; i++) want += sel->load[i] > cap ? sel->load[i] - cap : 0;
        CHECK_EQ_INT(sel->dropped, want);
        for (int t = 0; t < T; t++) {
            int i = sel->choice[t];
            long above = 0;  // candidates of expert i ranked above token t
            for (int u = 0; u < T; u++)
                if (u != t && sel->choice[u] == i) {
                    float a = sel->aff[u * n + i], b = sel->aff[t * n + i];
                    above += a > b || (a == b && u < t);
                }
            CHECK_EQ_INT(sel->expert[t] == i, above < cap);
            if (sel->expert[t] < 0) {
                double mx = 0;
                for (int k = 0; k < d; k++) mx = fmax(mx, fabs(out[t * d + k]));
                CHECK(mx == 0);
            }
        }
        if (pi == 2) CHECK(sel->dropped > 0);
    }
    Rng rng;
    rng_seed(&rng, 1);
    ffn_moe_ops.forward(f.L, &f.P, out, x, T, 0, &rng);
    CHECK_EQ_INT(f.L->sel->dropped, 0);
    free(x); free(out);
    fix_free(&f);
}

static char *stats_line(Fix *f) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ffn_moe_ops.write_stats(f->L, m, 7, 0);
    fclose(m);
    return buf;
}

// load.jsonl fields: Σ counts + dropped = tokens·k; dropped, cap_factor, cap_tokens of the last
// forward, loc_loss = mean raw locality loss over the interval's forwards; a new interval starts
// from zero.
TEST(etr_stats_fields) {
    kernels_init(2);
    int d = 16, n = 8;
    Spec s = {"grap", d, n, 1, 8, 64, 2, 0.3f, 0.01f, 0.05f, 1.0f, 0.5f, 0, NULL, 0, 0};
    Fix f;
    fix_make(&f, &s, 81);
    float *out = falloc(64 * d);
    for (int interval = 0; interval < 2; interval++) {
        long tokens = 0, dropped = 0;
        double loc = 0;
        for (int it = 0; it < 3; it++) {
            int T = 64 - it * 9;
            float *x = test_randn(T * d, 1, 90 + it + 10 * interval);
            ffn_moe_ops.set_progress(f.L, 0.5f * it);
            train_forward(&f, out, x, T);
            tokens += T;
            dropped += f.L->sel->dropped;
            loc += etr_state(f.L->sel)->loc;
            free(x);
        }
        char *line = stats_line(&f);
        cJSON *j = cJSON_Parse(line);
        REQUIRE(j);
        CHECK(!strcmp(cJSON_GetObjectItem(j, "select")->valuestring, "etr"));
        CHECK(!strcmp(cJSON_GetObjectItem(j, "gate")->valuestring, "softmax"));
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "tokens")->valueint, tokens);
        cJSON *counts = cJSON_GetObjectItem(j, "counts");
        long sum = 0;
        for (int e = 0; e < n; e++) sum += cJSON_GetArrayItem(counts, e)->valueint;
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "dropped")->valueint, dropped);
        CHECK_EQ_INT(sum + dropped, tokens);
        CHECK(dropped > 0);
        CHECK_NEAR(cJSON_GetObjectItem(j, "cap_factor")->valuedouble, 0.5, 1e-6);  // progress 1
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "cap_tokens")->valueint, (long)ceil(0.5 * (64 - 18) / n));
        CHECK_NEAR(cJSON_GetObjectItem(j, "loc_loss")->valuedouble, loc / 3, 1e-5 * loc);
        CHECK(loc > 0);
        cJSON_Delete(j);
        free(line);
    }
    free(out);
    fix_free(&f);
}

// The training loop's progress reaches every sparse layer through the model.
TEST(etr_model_progress_reaches_layers) {
    kernels_init(2);
    Config c;
    cfg_etr(&c);
    c.d_model = 16; c.n_head = 2; c.n_layer = 3; c.seq_len = 8; c.ffn.n_experts = 4; c.ffn.d_ff = 8;
    c.ffn.every = 2;  // layers 0 and 2 sparse
    Model *m = model_create(&c, 32, 2, 1);
    model_set_progress(m, 0.25f);
    int sparse = 0;
    for (int l = 0; l < m->L; l++) {
        if (m->blocks[l].ffn != &ffn_moe_ops) continue;
        sparse++;
        CHECK_NEAR(((MoeLayer *)m->blocks[l].ffn_state)->sel->progress, 0.25, 0);
    }
    CHECK_EQ_INT(sparse, 2);
    model_free(m);
}

// test_model.c — fast kernels against their naive twins, and every dense backward pass against
// central finite differences (layer by layer, then the whole model).
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/ffn.h"
#include "model/kernels.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/score.h"
#include "model/vmath.h"
#include "test.h"
#include "train/optim.h"
#include "util/common.h"

static void fill(float *a, long n, Rng *r, float s) {
    for (long i = 0; i < n; i++) a[i] = s * rng_normal(r);
}

TEST(kernels_matmul_matches_naive) {
    kernels_init(2);
    Rng r;
    rng_seed(&r, 1);
    int M = 37, N = 29, K = 41;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = falloc(M * K), *B = falloc(K * N), *C1 = falloc(M * N), *C2 = falloc(M * N);
            fill(A, M * K, &r, 1); fill(B, K * N, &r, 1); fill(C1, M * N, &r, 1);
            memcpy(C2, C1, sizeof(float) * M * N);
            int lda = ta ? M : K, ldb = tb ? K : N;
            matmul(C1, N, A, lda, B, ldb, M, N, K, ta, tb, 0.5f, 1.0f);
            matmul_naive(C2, N, A, lda, B, ldb, M, N, K, ta, tb, 0.5f, 1.0f);
            CHECK(max_rel_err(C1, C2, M * N, 1.0) < 1e-5);
            matmul_st(C1, N, A, lda, B, ldb, M, N, K, ta, tb, 1.0f, 0.0f);
            matmul_naive(C2, N, A, lda, B, ldb, M, N, K, ta, tb, 1.0f, 0.0f);
            CHECK(max_rel_err(C1, C2, M * N, 1.0) < 1e-5);
            free(A); free(B); free(C1); free(C2);
        }
}

TEST(kernels_blis_uses_native_family) {
    const char *arch = kernels_init(2);
    __builtin_cpu_init();
    if (!getenv("BLIS_ARCH_TYPE") || __builtin_cpu_supports("avx512f") || __builtin_cpu_supports("avx2"))
        CHECK(strcmp(arch, "generic") != 0);
}

// exp_fast against exp in double: 4 M evenly spaced points over its range plus the ends, and the
// special values its callers rely on (0 below the range, NaN through, saturation instead of +inf).
TEST(vmath_exp_fast_matches_exp) {
    double worst = 0;
    const long N = 1 << 22;
    for (long i = 0; i <= N; i++) {
        float x = -87.3f + (float)((88.0 + 87.3) * i / N);
        double ref = exp((double)x), err = fabs(exp_fast(x) - ref) / ref;
        if (err > worst) worst = err;
    }
    CHECK(worst < 3e-7);  // ~2.5 ulp; measured 1.4 ulp
    CHECK(exp_fast(-87.5f) == 0.0f && exp_fast(-INFINITY) == 0.0f && exp_fast(-1e30f) == 0.0f);
    CHECK(exp_fast(0.0f) == 1.0f);
    CHECK(isnan(exp_fast(NAN)));
    CHECK(isfinite(exp_fast(INFINITY)) && exp_fast(INFINITY) > 1e38f);
    float x[1000], y[1000];
    for (int k = 0; k < 1000; k++) x[k] = -20.0f + 0.04f * k;
#pragma omp simd
    for (int k = 0; k < 1000; k++) y[k] = exp_fast(x[k]);  // the vectorised form agrees too
    for (int k = 0; k < 1000; k++) CHECK(fabs(y[k] - exp((double)x[k])) <= 3e-7 * exp((double)x[k]));
}

// Scalar objective L = sum(out ⊙ probe): its gradient wrt out is `probe`.
static double dotp(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

TEST(layers_rmsnorm_backward_fd) {
    int T = 5, d = 12;
    Rng r;
    rng_seed(&r, 2);
    float x[60], w[12], y[60], rstd[5], probe[60], dx[60] = {0}, dw[12] = {0};
    fill(x, T * d, &r, 1); fill(w, d, &r, 1); fill(probe, T * d, &r, 1);
    rmsnorm_forward(y, rstd, x, w, T, d, 1e-5f);
    rmsnorm_backward(dx, dw, probe, x, w, rstd, T, d);
    float h = 1e-3f;
    for (int i = 0; i < T * d; i++) {
        float s = x[i];
        x[i] = s + h; rmsnorm_forward(y, rstd, x, w, T, d, 1e-5f); double lp = dotp(y, probe, T * d);
        x[i] = s - h; rmsnorm_forward(y, rstd, x, w, T, d, 1e-5f); double lm = dotp(y, probe, T * d);
        x[i] = s;
        CHECK_NEAR(dx[i], (lp - lm) / (2 * h), 2e-3 + 2e-3 * fabs(dx[i]));
    }
    for (int i = 0; i < d; i++) {
        float s = w[i];
        w[i] = s + h; rmsnorm_forward(y, rstd, x, w, T, d, 1e-5f); double lp = dotp(y, probe, T * d);
        w[i] = s - h; rmsnorm_forward(y, rstd, x, w, T, d, 1e-5f); double lm = dotp(y, probe, T * d);
        w[i] = s;
        CHECK_NEAR(dw[i], (lp - lm) / (2 * h), 2e-3 + 2e-3 * fabs(dw[i]));
    }
}

TEST(layers_attention_forward_matches_naive) {
    kernels_init(2);
    int B = 2, S = 7, H = 3, hd = 4, C = H * hd, n = B * S * C;
    Rng r;
    rng_seed(&r, 3);
    float *q = falloc(n), *k = falloc(n), *v = falloc(n), *o1 = falloc(n), *o2 = falloc(n), *att = falloc(B * H * S * S);
    fill(q, n, &r, 1); fill(k, n, &r, 1); fill(v, n, &r, 1);
    attention_forward(o1, att, q, k, v, B, S, H, hd);
    attention_forward_naive(o2, q, k, v, B, S, H, hd);
    CHECK(max_rel_err(o1, o2, n, 1e-3) < 1e-4);
    free(q); free(k); free(v); free(o1); free(o2); free(att);
}

// Causal tiling: several row blocks, a partial last one, block 1 and a block >= S all give the
// naive result; the backward is the same whatever the block (datt poisoned with NaN first, so
// any read of an entry the tiling leaves unwritten would show).
TEST(layers_attention_tiled_matches_naive) {
    kernels_init(2);
    int B = 2, S = 150, H = 2, hd = 8, C = H * hd, n = B * S * C;
    long na = (long)B * H * S * S;
    Rng r;
    rng_seed(&r, 13);
    float *q = falloc(n), *k = falloc(n), *v = falloc(n), *o1 = falloc(n), *o2 = falloc(n), *att = falloc(na);
    float *probe = falloc(n), *datt = falloc(na), *g[2][3];
    fill(q, n, &r, 1); fill(k, n, &r, 1); fill(v, n, &r, 1); fill(probe, n, &r, 1);
    attention_forward_naive(o2, q, k, v, B, S, H, hd);
    int blocks[] = {64, 1, 37, 512};
    for (int bi = 0; bi < 4; bi++) {
        attention_set_block(blocks[bi]);
        for (long i = 0; i < na; i++) att[i] = datt[i] = NAN;
        attention_forward(o1, att, q, k, v, B, S, H, hd);
        CHECK(max_rel_err(o1, o2, n, 1e-3) < 1e-4);
        int slot = bi == 0 ? 0 : 1;
        for (int w = 0; w < 3; w++) g[slot][w] = bi < 2 ? falloc(n) : g[slot][w];
        attention_backward(g[slot][0], g[slot][1], g[slot][2], datt, probe, q, k, v, att, B, S, H, hd);
        if (bi > 0)
            for (int w = 0; w < 3; w++) CHECK(max_rel_err(g[1][w], g[0][w], n, 1e-3) < 1e-4);
    }
    attention_set_block(0);
    for (int s = 0; s < 2; s++)
        for (int w = 0; w < 3; w++) free(g[s][w]);
    free(q); free(k); free(v); free(o1); free(o2); free(att); free(probe); free(datt);
}

static void attention_rope_fd(int block) {
    kernels_init(1);
    attention_set_block(block);
    int B = 2, S = 5, H = 2, hd = 4, C = H * hd, n = B * S * C;
    Rng r;
    rng_seed(&r, 4);
    float *q = falloc(n), *k = falloc(n), *v = falloc(n), *o = falloc(n), *att = falloc(B * H * S * S);
    float *probe = falloc(n), *dq = falloc(n), *dk = falloc(n), *dv = falloc(n), *datt = falloc(B * H * S * S);
    float *qr = falloc(n), *kr = falloc(n), *cs = falloc(S * hd / 2), *sn = falloc(S * hd / 2);
    rope_tables(cs, sn, S, hd, 10000);
    fill(q, n, &r, 1); fill(k, n, &r, 1); fill(v, n, &r, 1); fill(probe, n, &r, 1);
    // f(q,k,v) = <attention(rope(q), rope(k), v), probe>
#define FWD() (memcpy(qr, q, 4 * n), memcpy(kr, k, 4 * n), rope_apply(qr, cs, sn, B, S, H, hd, 0), \
               rope_apply(kr, cs, sn, B, S, H, hd, 0), attention_forward(o, att, qr, kr, v, B, S, H, hd), dotp(o, probe, n))
    FWD();
    attention_backward(dq, dk, dv, datt, probe, qr, kr, v, att, B, S, H, hd);
    rope_apply(dq, cs, sn, B, S, H, hd, 1);
    rope_apply(dk, cs, sn, B, S, H, hd, 1);
    float *ins[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
    float h = 1e-2f;
    for (int which = 0; which < 3; which++)
        for (int i = 0; i < n; i++) {
            float s = ins[which][i];
            ins[which][i] = s + h; double lp = FWD();
            ins[which][i] = s - h; double lm = FWD();
            ins[which][i] = s;
            CHECK_NEAR(gs[which][i], (lp - lm) / (2 * h), 3e-3 + 3e-3 * fabs(gs[which][i]));
        }
#undef FWD
    float *bufs[] = {q, k, v, o, att, probe, dq, dk, dv, datt, qr, kr, cs, sn};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    attention_set_block(0);
}
TEST(layers_attention_rope_backward_fd) { attention_rope_fd(0); }
TEST(layers_attention_rope_backward_fd_tiled) { attention_rope_fd(2); }  // S=5: blocks 2,2,1

TEST(layers_swiglu_backward_fd) {
    kernels_init(1);
    int T = 6, d = 5, D = 7;
    Rng r;
    rng_seed(&r, 5);
    float *x = falloc(T * d), *Wg = falloc(d * D), *Wp = falloc(d * D), *Wo = falloc(D * d), *h = falloc(T * d);
    float *u = falloc(T * D), *v = falloc(T * D), *a = falloc(T * D), *du = falloc(T * D), *dv = falloc(T * D);
    float *probe = falloc(T * d), *dx = falloc(T * d), *dWg = falloc(d * D), *dWp = falloc(d * D), *dWo = falloc(D * d);
    fill(x, T * d, &r, 1); fill(Wg, d * D, &r, 0.7f); fill(Wp, d * D, &r, 0.7f); fill(Wo, D * d, &r, 0.7f);
    fill(probe, T * d, &r, 1);
    swiglu_forward(h, u, v, a, x, Wg, Wp, Wo, T, d, D, 1);
    swiglu_backward(dx, dWg, dWp, dWo, du, dv, probe, x, u, v, a, Wg, Wp, Wo, T, d, D, 1);
    float *ins[4] = {x, Wg, Wp, Wo}, *gs[4] = {dx, dWg, dWp, dWo};
    int ns[4] = {T * d, d * D, d * D, D * d};
    float eps = 1e-2f;
    for (int w = 0; w < 4; w++)
        for (int i = 0; i < ns[w]; i++) {
            float s = ins[w][i];
            ins[w][i] = s + eps; swiglu_forward(h, u, v, a, x, Wg, Wp, Wo, T, d, D, 1); double lp = dotp(h, probe, T * d);
            ins[w][i] = s - eps; swiglu_forward(h, u, v, a, x, Wg, Wp, Wo, T, d, D, 1); double lm = dotp(h, probe, T * d);
            ins[w][i] = s;
            CHECK_NEAR(gs[w][i], (lp - lm) / (2 * eps), 3e-3 + 3e-3 * fabs(gs[w][i]));
        }
    float *bufs[] = {x, Wg, Wp, Wo, h, u, v, a, du, dv, probe, dx, dWg, dWp, dWo};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

TEST(layers_crossentropy_backward_fd) {
    int T = 4, V = 9;
    Rng r;
    rng_seed(&r, 6);
    float z[36], p[36], zz[36];
    int32_t tg[4] = {1, 8, -1, 3};
    fill(z, T * V, &r, 2);
    memcpy(p, z, sizeof z);
    crossentropy_forward(p, NULL, tg, T, V);
    crossentropy_backward(p, tg, T, V, 1.0f / 3);
    float h = 1e-2f;
    for (int i = 0; i < T * V; i++) {
        memcpy(zz, z, sizeof z); zz[i] += h; double lp = crossentropy_forward(zz, NULL, tg, T, V);
        memcpy(zz, z, sizeof z); zz[i] -= h; double lm = crossentropy_forward(zz, NULL, tg, T, V);
        CHECK_NEAR(p[i], (lp - lm) / (2 * h), 1e-3);
    }
}

// The read-only loss equals crossentropy_forward's (NaN-free, ignored targets give 0) and leaves
// the logits alone.
TEST(layers_crossentropy_loss_matches_forward) {
    int T = 6, V = 37;
    Rng r;
    rng_seed(&r, 21);
    float z[222], p[222], z0[222], l1[6], l2[6];
    int32_t tg[6] = {1, 36, -1, 3, 0, -5};
    fill(z, T * V, &r, 5);
    memcpy(p, z, sizeof z); memcpy(z0, z, sizeof z);
    double m1 = crossentropy_forward(p, l1, tg, T, V);
    double m2 = crossentropy_loss(z, l2, tg, T, V);
    CHECK_NEAR(m2, m1, 1e-6 * fabs(m1));
    for (int t = 0; t < T; t++) CHECK_NEAR(l2[t], l1[t], 1e-6 * fabs(l1[t]) + 1e-7);
    CHECK(memcmp(z, z0, sizeof z) == 0);
}

// Scoring mode (model.h score_only): the same losses as a full forward, raw logits whose argmax is
// the probabilities' argmax at scored positions; a later normal forward gives probabilities again.
static void score_only_check(const char *ffn_type) {
    kernels_init(2);
    Config c;
    config_defaults(&c);
    c.d_model = 16; c.n_layer = 2; c.n_head = 2; c.seq_len = 9;
    snprintf(c.ffn.type, sizeof c.ffn.type, "%s", ffn_type);
    c.ffn.d_ff = 12; c.ffn.n_experts = 4; c.ffn.top_k = 2; c.ffn.d_low = 4; c.ffn.d_wide = 12;
    int V = 23, B = 3, T = B * c.seq_len;
    Model *m = model_create(&c, V, B, 5);
    Rng r;
    rng_seed(&r, 22);
    int32_t x[27], y[27];
    for (int i = 0; i < T; i++) {
        x[i] = (int32_t)rng_below(&r, V);
        int t = i % c.seq_len, row = i / c.seq_len;
        y[i] = (row == 0 || (t >= 4 && t < 7 - row)) ? (int32_t)rng_below(&r, V) : -1;  // runs, empty row
    }
    float l1[27], l2[27], *probs = falloc((size_t)T * V);
    double m1 = model_forward(m, x, y, B, c.seq_len, l1, 0, NULL);
    memcpy(probs, m->logits, sizeof(float) * T * V);
    m->score_only = 1;
    double m2 = model_forward(m, x, y, B, c.seq_len, l2, 0, NULL);
    CHECK_NEAR(m2, m1, 1e-5 * fabs(m1));
    for (int i = 0; i < T; i++) {
        CHECK_NEAR(l2[i], l1[i], 1e-5 * fabs(l1[i]) + 1e-7);
        if (y[i] < 0) continue;
        int a1 = 0, a2 = 0;
        for (int v = 1; v < V; v++) {
            if (probs[(size_t)i * V + v] > probs[(size_t)i * V + a1]) a1 = v;
            if (m->logits[(size_t)i * V + v] > m->logits[(size_t)i * V + a2]) a2 = v;
        }
        CHECK_EQ_INT(a2, a1);
    }
    m->score_only = 0;
    model_forward(m, x, y, B, c.seq_len, NULL, 0, NULL);
    CHECK(max_rel_err(m->logits, probs, (long)T * V, 1e-6) < 1e-5);
    free(probs);
    model_free(m);
}
TEST(model_score_only_matches_full_dense) { score_only_check("dense"); }
TEST(model_score_only_matches_full_aoe) { score_only_check("aoe"); }

// Eval forward at a shorter S with more sequences (model.h): the same losses as a model built at
// that S sharing the weights (MoE, so dispatch buffers are exercised at B > max_B too).
TEST(model_eval_forward_shorter_seq) {
    kernels_init(2);
    Config c;
    config_defaults(&c);
    c.d_model = 16; c.n_layer = 2; c.n_head = 2; c.seq_len = 12;
    snprintf(c.ffn.type, sizeof c.ffn.type, "moe");
    c.ffn.d_ff = 12; c.ffn.n_experts = 4; c.ffn.top_k = 2;
    int V = 19, B = 2, S2 = 5, B2 = 4, T2 = B2 * S2;  // 20 positions <= 2*12
    Model *m = model_create(&c, V, B, 9);
    Config c2 = c;
    c2.seq_len = S2;
    Model *m2 = model_create_shared(&c2, V, B2, m);
    Rng r;
    rng_seed(&r, 23);
    int32_t x[20], y[20];
    for (int i = 0; i < T2; i++) { x[i] = (int32_t)rng_below(&r, V); y[i] = i % 3 ? (int32_t)rng_below(&r, V) : -1; }
    float l1[20], l2[20];
    double a = model_forward(m, x, y, B2, S2, l1, 0, NULL);
    double b = model_forward(m2, x, y, B2, S2, l2, 0, NULL);
    CHECK_NEAR(a, b, 1e-5 * fabs(b));
    for (int i = 0; i < T2; i++) CHECK_NEAR(l1[i], l2[i], 1e-5 * fabs(l2[i]) + 1e-7);
    m2->P.w = NULL;
    model_free(m2);
    model_free(m);
}

// Whole-model check: analytic gradient of the mean loss against central differences on a sample
// of coordinates from every tensor. Large init so gradients are well above float noise.
static void model_fd_check(const char *ffn_type, int tie) {
    kernels_init(1);
    Config c;
    config_defaults(&c);
    c.d_model = 8; c.n_layer = 2; c.n_head = 2; c.seq_len = 5; c.init_std = 0.3f; c.tie_embeddings = tie;
    snprintf(c.ffn.type, sizeof c.ffn.type, "%s", ffn_type);
    c.ffn.d_ff = 12;
    int V = 11, B = 2, T = B * c.seq_len;
    Model *m = model_create(&c, V, B, 7);
    Rng r;
    rng_seed(&r, 8);
    int32_t x[10], y[10];
    for (int i = 0; i < T; i++) { x[i] = (int32_t)rng_below(&r, V); y[i] = (int32_t)rng_below(&r, V); }
    params_zero_grad(&m->P);
    model_forward(m, x, y, B, c.seq_len, NULL, 1, &r);
    model_backward(m, y, 1.0f);
    float *g = falloc(m->P.total);
    memcpy(g, m->P.g, sizeof(float) * m->P.total);
    int bad = 0, checked = 0;
    for (int ti = 0; ti < m->P.n; ti++) {
        const TensorInfo *t = &m->P.t[ti];
        for (int s = 0; s < 6; s++) {
            size_t k = t->off + rng_below(&r, t->n);
            float save = m->P.w[k], h = 1e-2f;
            m->P.w[k] = save + h; double lp = model_forward(m, x, y, B, c.seq_len, NULL, 0, NULL);
            m->P.w[k] = save - h; double lm = model_forward(m, x, y, B, c.seq_len, NULL, 0, NULL);
            m->P.w[k] = save;
            double num = (lp - lm) / (2 * h);
            checked++;
            if (fabs(num - g[k]) > 2e-3 + 2e-2 * fabs(num)) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", t->name, k - t->off, g[k], num);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(checked > 50);
    free(g);
    model_free(m);
}

TEST(model_dense_backward_fd_tied) { model_fd_check("dense", 1); }
TEST(model_dense_backward_fd_untied) { model_fd_check("dense", 0); }

// Every optimizer of the table: optim_step against its naive twin (double scalar loop) for three
// steps; then optim_step_clip (clipping folded into the update) against clip_grad + the naive
// step, on gradients large enough to be clipped and small enough not to be; grad_norm against a
// double loop.
static void optim_check(const char *name) {
    const OptimOps *ops = optim_ops_for(name);
    REQUIRE(ops);
    for (int clip = 0; clip < 2; clip++) {
        Params P = {0};
        params_add(&P, "a", 1, INIT_NORMAL, 1, 2, clip ? 300 : 7, clip ? 301 : 5);  // clip: > one 2^16 block of grad_norm
        params_add(&P, "norm", 0, INIT_ONES, 0, 1, 9);
        params_alloc(&P);
        Rng r;
        rng_seed(&r, 9 + 10 * clip);
        params_init(&P, &r);
        Config c;
        config_defaults(&c);
        float *w1 = P.w, *w2 = falloc(P.total), *g2 = falloc(P.total);
        memcpy(w2, P.w, sizeof(float) * P.total);
        Optim a, b;
        optim_init(&a, ops, &P); optim_init(&b, ops, &P);
        float gs[3] = {1, 1e-5f, 0.5f};  // norm ~ 300, ~ 3e-3 (under max_norm 1), ~ 150
        for (int step = 0; step < 3; step++) {
            fill(P.g, P.total, &r, clip ? gs[step] : 1);
            memcpy(g2, P.g, sizeof(float) * P.total);
            if (!clip) {
                P.w = w1; optim_step(&a, &P, &c, 1e-2f);
                P.w = w2; optim_step_naive(&b, &P, &c, 1e-2f);
                continue;
            }
            double ref = 0;
            for (size_t i = 0; i < P.total; i++) ref += (double)P.g[i] * P.g[i];
            CHECK_NEAR(grad_norm(&P), sqrt(ref), 1e-9 * sqrt(ref));
            P.w = w1; double n1 = optim_step_clip(&a, &P, &c, 1e-2f, 1.0);
            memcpy(P.g, g2, sizeof(float) * P.total);
            P.w = w2; double n2 = clip_grad(&P, 1.0); optim_step_naive(&b, &P, &c, 1e-2f);
            CHECK(n1 == n2);
        }
        CHECK_EQ_INT(a.t, 3);
        CHECK(max_rel_err(w1, w2, P.total, 1e-3) < 1e-5);
        for (int k = 0; k < ops->n_state; k++) CHECK(max_rel_err(a.s[k], b.s[k], P.total, 1e-3) < 1e-5);
        P.w = w1;
        free(w2); free(g2); optim_free(&a); optim_free(&b); params_free(&P);
    }
}
TEST(optim_adamw_matches_naive) { optim_check("adamw"); }
TEST(optim_sgd_matches_naive) { optim_check("sgd"); }

// The split step of data-parallel ranks (train/dp.c): three "ranks" each update their part of the
// flat block (cuts inside a tensor and at a tensor's edge) with their own optimizer state; the
// weights and each part's state equal one update of the whole, bit for bit, and the parts' sums of
// squares add up to the gradient norm.
TEST(optim_parts_equal_the_whole) {
    const char *names[] = {"adamw", "sgd"};
    for (int o = 0; o < 2; o++) {
        const OptimOps *ops = optim_ops_for(names[o]);
        REQUIRE(ops);
        Params P = {0};
        params_add(&P, "a", 1, INIT_NORMAL, 1, 2, 300, 301);
        params_add(&P, "norm", 0, INIT_ONES, 0, 1, 9);
        params_add(&P, "b", 1, INIT_NORMAL, 1, 2, 7, 5);
        params_alloc(&P);
        Rng r;
        rng_seed(&r, 21);
        params_init(&P, &r);
        Config c;
        config_defaults(&c);
        size_t cut[4] = {0, 40000, 300 * 301 + 9, P.total};  // inside "a"; between "norm" and "b"
        float *w1 = P.w, *w2 = falloc(P.total);
        memcpy(w2, P.w, sizeof(float) * P.total);
        Optim whole, part[3];
        optim_init(&whole, ops, &P);
        for (int q = 0; q < 3; q++) optim_init(&part[q], ops, &P);
        for (int step = 0; step < 3; step++) {
            fill(P.g, P.total, &r, 1);
            double sum = 0;
            for (int q = 0; q < 3; q++) sum += grad_sumsq_part(&P, cut[q], cut[q + 1]);
            double n = grad_norm(&P);
            CHECK_NEAR(sqrt(sum), n, 1e-12 * n);
            P.w = w1; optim_step_scaled(&whole, &P, &c, 1e-2f, 0.7f);
            P.w = w2;
            for (int q = 0; q < 3; q++) optim_step_part(&part[q], &P, &c, 1e-2f, 0.7f, cut[q], cut[q + 1]);
        }
        CHECK(!memcmp(w1, w2, sizeof(float) * P.total));
        for (int q = 0; q < 3; q++) {
            CHECK_EQ_INT(part[q].t, 3);
            for (int k = 0; k < ops->n_state; k++)
                CHECK(!memcmp(whole.s[k] + cut[q], part[q].s[k] + cut[q], sizeof(float) * (cut[q + 1] - cut[q])));
            optim_free(&part[q]);
        }
        P.w = w1;
        free(w2); optim_free(&whole); params_free(&P);
    }
}

TEST(optim_lr_schedule) {
    Config c;
    config_defaults(&c);
    c.lr = 1e-3f; c.min_lr = 1e-4f; c.warmup = 10; c.steps = 110;
    CHECK_NEAR(lr_at(&c, 0), 1e-4, 1e-9);
    CHECK_NEAR(lr_at(&c, 9), 1e-3, 1e-9);
    CHECK_NEAR(lr_at(&c, 60), 5.5e-4, 1e-8);
    CHECK_NEAR(lr_at(&c, 110), 1e-4, 1e-9);
}

// Which config keys a model uses (the report's "differs" column asks): a key of another FFN kind,
// score source or selection method is not used; every model.ffn.* key but type is listed by
// some part, so a new key without an owner fails here rather than showing everywhere.
static int used(const char *type, const char *select, const char *key) {
    Config c;
    config_defaults(&c);
    snprintf(c.ffn.type, sizeof c.ffn.type, "%s", type);
    snprintf(c.ffn.select, sizeof c.ffn.select, "%s", select);
    return model_key_used(&c, key);
}

TEST(model_key_used_per_ffn_kind_source_and_method) {
    // per FFN kind and method: keys (after "model.ffn.", or whole paths) used, and not used
    static const struct { const char *type, *select, *used, *unused; } cases[] = {
        {"dense", "topk", "d_ff type model.d_model train.lr", "d_low n_experts capacity"},
        {"moe", "topk", "capacity erc_alpha gate_rank lb_coef", "d_low etr_tau top_p"},
        {"moe", "etr", "etr_tau etr_gate", "capacity gate"}, {"moe", "topp", "top_p", "etr_tau"},
        {"moe", "expert_choice", "capacity", ""}, {"aoe", "topk", "d_low d_wide aoe_norm aoe_norm_at lb_coef", "erc_coef z_loss"},
        {"aoe", "nosuch", "etr_tau", ""},  // an unknown method: every key counts
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int want = 1; want >= 0; want--) {
            char list[200], key[80];
            snprintf(list, sizeof list, "%s", want ? cases[i].used : cases[i].unused);
            for (char *w = strtok(list, " "); w; w = strtok(NULL, " ")) {
                snprintf(key, sizeof key, "%s%s", strchr(w, '.') ? "" : "model.ffn.", w);
                int got = used(cases[i].type, cases[i].select, key);
                if (got != want) fprintf(stderr, "  %s/%s %s: %d\n", cases[i].type, cases[i].select, key, got);
                CHECK_EQ_INT(got, want);
            }
        }
    // a router MoE with a factorised gate (another score source) still uses gate_rank and d_wide
    Config c;
    config_defaults(&c);
    snprintf(c.ffn.type, sizeof c.ffn.type, "moe");
    c.ffn.gate_rank = 8;
    CHECK(model_key_used(&c, "model.ffn.gate_rank") && model_key_used(&c, "model.ffn.d_wide"));
    CHECK(!model_key_used(&c, "model.ffn.d_low"));
    // every model.ffn key of the schema has an owner (type: every kind)
    char *js = config_to_json(&c);
    cJSON *root = cJSON_Parse(js), *ffn = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "model"), "ffn"), *k;
    REQUIRE(ffn);
    int n = 0;
    cJSON_ArrayForEach(k, ffn) {
        if (!strcmp(k->string, "type")) continue;
        int owned = ffn_key_listed(k->string) || score_key_listed(k->string) || select_key_listed(k->string);
        if (!owned) fprintf(stderr, "  model.ffn.%s is in no keys list\n", k->string);
        CHECK(owned);
        n++;
    }
    CHECK(n > 30);
    cJSON_Delete(root);
    free(js);
}

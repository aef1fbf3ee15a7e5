// test_bf16.c — the bf16 precision: rounding, oneDNN products against the naive twins with a
// tolerance derived from bf16's precision, weight copies, and the precision choice.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "test.h"
#include "util/common.h"

TEST(bf16_round_to_nearest_even) {
    CHECK(bf16_round(1.0f) == 0x3f80);
    CHECK(bf16_round(-2.0f) == 0xc000);
    // 1 + 2^-8 is half-way between 1 and 1 + 2^-7: ties go to the even neighbour (1)
    CHECK(bf16_round(1.0f + 0x1p-8f) == 0x3f80);
    CHECK(bf16_round(1.0f + 0x1p-7f + 0x1p-8f) == 0x3f82);  // tie, odd below: up
    CHECK(bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);  // above the tie: up
    CHECK(bf16_round(INFINITY) == 0x7f80 && bf16_round(-INFINITY) == 0xff80);
    CHECK(isnan(bf16_to_float(bf16_round(NAN))));
    CHECK(bf16_round(3.4e38f) == 0x7f80);  // above bf16's largest finite: rounds to inf
    for (int i = -1000; i <= 1000; i++) {  // relative error <= 2^-8 (8-bit significand, RNE)
        float x = i * 0.37f + 0.001f;
        CHECK(fabsf(bf16_to_float(bf16_round(x)) - x) <= fabsf(x) * 0x1p-8f);
    }
}

// Tolerance of a bf16 product against the exact one (the fp32 naive twin, double accumulation),
// per element: each operand rounded to bf16 has relative error <= u = 2^-8, so a product a·b
// has <= 2u + u^2; fp32 accumulation of K terms adds <= K·2^-24 (gamma_K, first order), plus one
// rounding each for alpha and the beta·C sum. All relative to sum_k |a_ik||b_kj|:
//   |C - C_exact| <= |alpha|·(2^-7 + 2^-16 + (K + 2)·2^-24)·sum_k |a_ik b_kj| + 2^-24·|beta C| + 1e-30
// (the floor covers the denormals that bf16 dot-product instructions flush to zero).
static int within_bound(const float *C, const float *Cref, const float *C0, const float *A, int lda,
                        const float *B, int ldb, int M, int N, int K, int ta, int tb, float alpha,
                        float beta, double tight) {
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += fabs((double)(ta ? A[(long)k * lda + i] : A[(long)i * lda + k]) *
                          (tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j]));
            double rel = tight >= 0 ? tight : 0x1p-7 + 0x1p-16 + (K + 2) * 0x1p-24;
            double tol = fabs(alpha) * rel * s + 0x1p-24 * fabs(beta * C0[(long)i * N + j]) + 1e-30;
            if (fabs((double)C[(long)i * N + j] - Cref[(long)i * N + j]) > tol) bad++;
        }
    return bad;
}

TEST(bf16_matmul_matches_naive_twins) {
    kernels_init(2);
    kernels_set_precision(PREC_BF16);
    Rng r;
    rng_seed(&r, 3);
    // M = 37 runs a fixed-shape primitive, M = 150 one with M given at execution
    int shapes[][3] = {{37, 29, 41}, {150, 70, 300}};
    for (int s = 0; s < 2; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int st = 0; st < 2; st++) {
                    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    float *A = test_randn((long)M * K, 1, rng_next(&r)), *B = test_randn((long)K * N, 1, rng_next(&r));
                    float *C0 = test_randn((long)M * N, 1, rng_next(&r));
                    float *C = falloc((size_t)M * N), *R = falloc((size_t)M * N), *Rb = falloc((size_t)M * N);
                    float alpha = st ? 0.125f : 1.0f, beta = st ? 0.0f : 1.0f;
                    int lda = ta ? M : K, ldb = tb ? K : N;
                    memcpy(C, C0, sizeof(float) * M * N);
                    memcpy(R, C0, sizeof(float) * M * N);
                    memcpy(Rb, C0, sizeof(float) * M * N);
                    (st ? matmul_st : matmul)(C, N, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
                    matmul_naive(R, N, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
                    matmul_bf16_naive(Rb, N, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
                    // against fp32: the full bound; against the bf16 twin (same rounded operands):
                    // accumulation only, (K + 2)·2^-24
                    CHECK_EQ_INT(within_bound(C, R, C0, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta, -1), 0);
                    CHECK_EQ_INT(within_bound(C, Rb, C0, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta,
                                              (K + 2) * 0x1p-24), 0);
                    // and bf16 is really in use: the fp32 result is not reproduced to fp32 accuracy
                    CHECK(max_rel_err(C, R, (long)M * N, 1.0) > 1e-5);
                    free(A); free(B); free(C0); free(C); free(R); free(Rb);
                }
    kernels_set_precision(PREC_FP32);
}

// Products whose per-call rounded operand is large run in row blocks (large A) or column blocks
// (large B) so the rounding buffers stay small; the blocks must add up to the same product.
// And the vector rounding (VCVTNEPS2BF16 where built for it) agrees with bf16_round bit for bit:
// A·I (I exact in bf16, one nonzero term per sum) must reproduce round(A) exactly, denormals,
// ties and huge values included.
TEST(bf16_matmul_blocked_and_exact_rounding) {
    kernels_init(2);
    kernels_set_precision(PREC_BF16);
    int K = 4096, Mb = 520, Nb = 8;  // Mb·K > 2^21: two row blocks; likewise for B with N = 520
    for (int big_b = 0; big_b < 2; big_b++)
        for (int t = 0; t < 2; t++) {
            int M = big_b ? Nb : Mb, N = big_b ? Mb : Nb;
            float *A = test_randn((long)M * K, 1, 20 + t), *B = test_randn((long)K * N, 1, 30 + t);
            float *C0 = falloc((size_t)M * N), *C = falloc((size_t)M * N), *R = falloc((size_t)M * N);
            int ta = big_b ? 0 : t, tb = big_b ? t : 0;
            matmul(C, N, A, ta ? M : K, B, tb ? K : N, M, N, K, ta, tb, 1, 0);
            matmul_bf16_naive(R, N, A, ta ? M : K, B, tb ? K : N, M, N, K, ta, tb, 1, 0);
            CHECK_EQ_INT(within_bound(C, R, C0, A, ta ? M : K, B, tb ? K : N, M, N, K, ta, tb, 1, 0, (K + 2) * 0x1p-24), 0);
            free(A); free(B); free(C0); free(C); free(R);
        }
    int M = 40, n = 37;
    float *A = falloc((size_t)M * n), *I = falloc((size_t)n * n), *C = falloc((size_t)M * n);
    Rng r;
    rng_seed(&r, 4);
    for (int i = 0; i < M * n; i++) {
        float x = rng_normal(&r) * ldexpf(1.0f, (int)rng_below(&r, 250) - 125);  // 2^-125 .. 2^124: denormal results too
        if (i % 5 == 0) x = 1.0f + 0x1p-8f * (float)(i % 3);                       // exact ties
        if (i % 7 == 0) x = ldexpf(1.0f, -130) * (float)(i % 11);                  // denormal inputs
        A[i] = x;
    }
    for (int i = 0; i < n; i++) I[(long)i * n + i] = 1;
    matmul(C, n, A, n, I, n, M, n, n, 0, 0, 1, 0);
    int bad = 0;
    for (int i = 0; i < M * n; i++) bad += C[i] != bf16_to_float(bf16_round(A[i]));
    CHECK_EQ_INT(bad, 0);
    CHECK(bf16_round(ldexpf(1.0f, -130)) == 0 && bf16_round(-ldexpf(1.0f, -130)) == 0x8000);
    free(A); free(I); free(C);
    kernels_set_precision(PREC_FP32);
}

// Products inside an OpenMP loop (matmul_st, one thread each) equal the same call made alone,
// and a repeated product is bit-identical.
TEST(bf16_matmul_st_in_parallel_loop_reproducible) {
    kernels_init(2);
    kernels_set_precision(PREC_BF16);
    int M = 64, N = 48, K = 96, nb = 6;
    float *A = test_randn((long)nb * M * K, 1, 5), *B = test_randn((long)K * N, 1, 6);
    float *C = falloc((size_t)nb * M * N), *C2 = falloc((size_t)nb * M * N);
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < nb; i++) matmul_st(C + (long)i * M * N, N, A + (long)i * M * K, K, B, N, M, N, K, 0, 0, 1, 0);
    for (int i = 0; i < nb; i++) matmul_st(C2 + (long)i * M * N, N, A + (long)i * M * K, K, B, N, M, N, K, 0, 0, 1, 0);
    CHECK(!memcmp(C, C2, sizeof(float) * nb * M * N));
    CHECK_EQ_INT(omp_get_max_threads(), 2);  // the thread count is restored after st products
    matmul(C, N, A, K, B, N, nb * M, N, K, 0, 0, 1, 0);
    matmul(C2, N, A, K, B, N, nb * M, N, K, 0, 0, 1, 0);
    CHECK(!memcmp(C, C2, sizeof(float) * nb * M * N));
    free(A); free(B); free(C); free(C2);
    kernels_set_precision(PREC_FP32);
}

// A registered weight block is read through its bf16 copy: same result as converting on the
// fly, and the copy follows kernels_weights_changed.
TEST(bf16_weight_copy_follows_changes) {
    kernels_init(2);
    int M = 100, N = 40, K = 64;
    float *W = test_randn((long)K * N + 7, 1, 8), *X = test_randn((long)M * K, 1, 9);
    float *Wc = falloc((size_t)K * N), *C1 = falloc((size_t)M * N), *C2 = falloc((size_t)M * N);
    kernels_weights_register(W, (size_t)K * N + 7);
    kernels_set_precision(PREC_BF16);
    for (int round = 0; round < 2; round++) {
        memcpy(Wc, W + 7, sizeof(float) * K * N);
        matmul(C1, N, X, K, W + 7, N, M, N, K, 0, 0, 1, 0);   // through the copy
        matmul(C2, N, X, K, Wc, N, M, N, K, 0, 0, 1, 0);      // converted per call
        CHECK(!memcmp(C1, C2, sizeof(float) * M * N));
        for (long i = 0; i < (long)K * N + 7; i++) W[i] *= -1.5f;
        kernels_weights_changed(W);
    }
    // fp32 again: BLIS on the fp32 block
    kernels_set_precision(PREC_FP32);
    float *R = falloc((size_t)M * N);
    matmul(C1, N, X, K, W + 7, N, M, N, K, 0, 0, 1, 0);
    matmul_naive(R, N, X, K, W + 7, N, M, N, K, 0, 0, 1, 0);
    CHECK(max_rel_err(C1, R, (long)M * N, 1.0) < 1e-5);
    kernels_weights_unregister(W);
    free(W); free(X); free(Wc); free(C1); free(C2); free(R);
}

TEST(bf16_cpu_detection_override) {
    setenv("AOE_TEST_NO_BF16", "1", 1);
    CHECK_EQ_INT(kernels_cpu_has_bf16(), 0);
    unsetenv("AOE_TEST_NO_BF16");
    __builtin_cpu_init();
    // this build's compiler knows the feature name: the cpuid bit agrees with it
    CHECK_EQ_INT(kernels_cpu_has_bf16() != 0,
                 __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16"));
}

// train.precision: auto picks bf16 exactly when the CPU has native bf16 dot products (and fp32 on
// a CPU without them, simulated), explicit values are kept, anything else is refused; the
// choice, not "auto", is what config.json and --dry-run record.
static char *dry_run(const char *args) {
    char *out = NULL, *err = NULL;
    int rc = aoe_run(&out, &err, "train configs/quickstart.json %s --dry-run", args);
    free(err);
    if (rc) { free(out); return NULL; }
    return out;
}

TEST(bf16_precision_choice) {
    int native = kernels_cpu_has_bf16();
    char *o = dry_run("");
    CHECK_STR_CONTAINS(o, native ? "\"precision\":\t\"bf16\"" : "\"precision\":\t\"fp32\"");
    free(o);
    setenv("AOE_TEST_NO_BF16", "1", 1);  // inherited by the aoe child
    CHECK_EQ_INT(precision_parse("auto"), PREC_FP32);
    o = dry_run("train.precision=auto");
    CHECK_STR_CONTAINS(o, "\"precision\":\t\"fp32\"");
    free(o);
    o = dry_run("train.precision=bf16");  // explicit bf16 stays (oneDNN emulates without native support)
    CHECK_STR_CONTAINS(o, "\"precision\":\t\"bf16\"");
    free(o);
    unsetenv("AOE_TEST_NO_BF16");
    CHECK_EQ_INT(precision_parse("auto"), native ? PREC_BF16 : PREC_FP32);
    CHECK_EQ_INT(precision_parse("fp32"), PREC_FP32);
    CHECK_EQ_INT(precision_parse("bf16"), PREC_BF16);
    CHECK_EQ_INT(precision_parse("fp16"), -1);
    char *out, *err;
    CHECK_EQ_INT(aoe_run(&out, &err, "train configs/quickstart.json train.precision=fp16 --dry-run"), 2);
    CHECK_STR_CONTAINS(err, "train.precision");
    CHECK_STR_CONTAINS(err, "auto|fp32|bf16");
    free(out); free(err);
}

// A CPU without native bf16, stood in for by oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA): with AVX512
// but no bf16 instructions oneDNN emulates the products and training gives the native run's
// losses; below AVX512 it has no bf16 product, and an explicit bf16 run stops before it creates
// its run directory with one line saying to use fp32 (exit 2). A CPU that has no AVX512 at all
// checks only the refusal.
static int tiny_bf16(const char *isa, const char *run, char **err) {
    const char *d = test_tiny_data();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s%s %s train configs/quickstart.json model.d_model=32 model.n_layer=1 model.n_head=2 model.seq_len=32 "
             "model.ffn.d_ff=64 model.ffn.n_experts=4 model.ffn.d_low=8 train.steps=3 train.batch_size=2 "
             "train.log_every=1 train.eval_every=0 train.threads=1 train.precision=bf16 data.train='%s/train-*.shard' "
             "data.val='%s/val-*.shard' data.tokenizer=%s/tokenizer.bpe run.out=%s/%s",
             isa ? "ONEDNN_MAX_CPU_ISA=" : "", isa ? isa : "", aoe_bin(), d, d, d, test_tmpdir(), run);
    return run_capture(cmd, NULL, err);
}

static const char no_bf16_line[] = "has no bf16 matrix product on this CPU";

TEST(bf16_without_native_support) {
    char *err = NULL, p[700];
    int native = tiny_bf16(NULL, "isa-native", &err);
    if (native) {  // this CPU has no AVX512: the refusal is all there is to see
        CHECK_EQ_INT(native, 2);
        CHECK_STR_CONTAINS(err, no_bf16_line);
        free(err);
        return;
    }
    free(err);
    CHECK_EQ_INT(tiny_bf16("AVX512_CORE", "isa-emulated", &err), 0);
    free(err);
    double a[8], b[8];
    snprintf(p, sizeof p, "%s/isa-native/metrics.jsonl", test_tmpdir());
    int na = test_jsonl_numbers(p, "loss", a, 8);
    snprintf(p, sizeof p, "%s/isa-emulated/metrics.jsonl", test_tmpdir());
    int nb = test_jsonl_numbers(p, "loss", b, 8);
    CHECK(na == 3 && nb == 3);
    for (int i = 0; i < na && i < nb; i++) CHECK(fabs(a[i] - b[i]) <= 1e-5 * fabs(a[i]));
    if (na == 3 && nb == 3) fprintf(stderr, "[step 3 loss native %.6f, emulated %.6f] ", a[2], b[2]);
    CHECK_EQ_INT(tiny_bf16("AVX2", "isa-avx2", &err), 2);
    CHECK_STR_CONTAINS(err, no_bf16_line);
    CHECK_STR_CONTAINS(err, "train.precision=fp32");
    free(err);
    snprintf(p, sizeof p, "%s/isa-avx2", test_tmpdir());
    CHECK(!file_exists(p));
}

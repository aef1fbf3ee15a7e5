// test_bf16_act.c — activation blocks (kernels.h act_*): activations that feed only products are
// stored in bf16 in bf16 precision. Stored values are exactly what each product rounded before,
// so a model built in bf16 precision (bf16 blocks) must give the same bits as one built in fp32
// precision and run in bf16 (fp32 blocks, operands rounded per product).
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/model.h"
#include "model/moe.h"
#include "test.h"
#include "util/common.h"

// The block itself: storage by precision, stores at an offset, products through the handle equal
// products of the fp32 values rounded per call, act_out picks the scratch only for bf16 storage.
TEST(bf16_act_block_store_and_products) {
    kernels_init(2);
    int M = 70, K = 48, N = 33;
    float *X = test_randn((long)M * K, 1, 41), *W = test_randn((long)K * N, 1, 42), *scratch = falloc((size_t)M * K);
    float *C1 = falloc((size_t)M * N), *C2 = falloc((size_t)M * N);
    float *f = act_alloc((size_t)M * K);  // fp32 precision: an ordinary float block
    CHECK(!act_is_bf16(f) && act_out(f, scratch) == f);
    act_store(f + 5, X, 7);
    CHECK(!memcmp(f + 5, X, sizeof(float) * 7));
    act_free(f);
    kernels_set_precision(PREC_BF16);
    float *a = act_alloc((size_t)M * K);
    CHECK(act_is_bf16(a) && act_is_bf16(a + (long)M * K - 1) && !act_is_bf16(X));
    CHECK(act_out(a, scratch) == scratch);
    // stored in two pieces (the second at an offset), read by products as A and as B^T
    long half = (long)M * K / 2;
    act_store(a, X, (size_t)half);
    act_store(a + half, X + half, (size_t)((long)M * K - half));
    for (int t = 0; t < 2; t++) {
        if (!t) {
            matmul(C1, N, a, K, W, N, M, N, K, 0, 0, 1, 0);
            matmul(C2, N, X, K, W, N, M, N, K, 0, 0, 1, 0);
        } else {  // C [N,M] = W^T · X^T with X [M,K] as B transposed, from inside a parallel region
#pragma omp parallel for
            for (int i = 0; i < 2; i++)
                matmul_st(i ? C1 : C2, M, W, N, i ? a : X, K, N, M, K, 1, 1, 1, 0);
        }
        CHECK(!memcmp(C1, C2, sizeof(float) * M * N));
    }
    act_free(a);
    kernels_set_precision(PREC_FP32);
    free(X); free(W); free(scratch); free(C1); free(C2);
}

// One training forward + backward of a small model of `type`: a model built in fp32 precision
// and run in bf16 (fp32 blocks) against one built in bf16 precision (bf16 blocks).
static void same_bits_check(const char *type, const char *norm_at, int expert_parallel) {
    kernels_init(2);
    moe_set_expert_parallel(expert_parallel);
    Config c;
    config_defaults(&c);
    c.d_model = 32; c.n_layer = 2; c.n_head = 2; c.seq_len = 16;
    snprintf(c.ffn.type, sizeof c.ffn.type, "%s", type);
    if (norm_at) snprintf(c.ffn.aoe_norm_at, sizeof c.ffn.aoe_norm_at, "%s", norm_at);
    c.ffn.d_ff = 48; c.ffn.n_experts = 4; c.ffn.top_k = 2; c.ffn.d_low = 8;
    const int V = 64, B = 4, T = B * c.seq_len;
    int32_t x[64], y[64];
    Rng r;
    rng_seed(&r, 12);
    for (int i = 0; i < T; i++) { x[i] = rng_below(&r, V); y[i] = rng_below(&r, V); }
    kernels_set_precision(PREC_FP32);
    Model *ref = model_create(&c, V, B, 7);
    kernels_set_precision(PREC_BF16);
    Model *m = model_create(&c, V, B, 7);
    double l[2];
    for (int i = 0; i < 2; i++) {
        Model *mi = i ? m : ref;
        memset(mi->P.g, 0, mi->P.n * sizeof(float));
        l[i] = model_forward(mi, x, y, B, c.seq_len, NULL, 1, NULL);
        model_backward(mi, y, 1.0f);
    }
    CHECK(act_is_bf16(m->blocks[1].q) && !act_is_bf16(ref->blocks[1].q));
    fprintf(stderr, "[%s%s%s ep%d loss %.6f] ", type, norm_at ? " at " : "", norm_at ? norm_at : "", expert_parallel, l[1]);
    CHECK(l[1] == l[0]);
    CHECK(!memcmp(m->P.g, ref->P.g, m->P.n * sizeof(float)));
    CHECK(!memcmp(m->logits, ref->logits, sizeof(float) * T * V));
    model_free(m);
    model_free(ref);
    kernels_set_precision(PREC_FP32);
    moe_set_expert_parallel(-1);
}

TEST(bf16_act_blocks_same_bits_dense) { same_bits_check("dense", NULL, -1); }
TEST(bf16_act_blocks_same_bits_moe) {
    same_bits_check("moe", NULL, 0);
    same_bits_check("moe", NULL, 1);
}
// AoE, and AoE with its norm taken at a later node (the source computes stages of every expert:
// the layer gathers them, and with the output stage hands dY back to the source)
TEST(bf16_act_blocks_same_bits_aoe) {
    same_bits_check("aoe", NULL, 0);
    same_bits_check("aoe", NULL, 1);
    same_bits_check("aoe", "act", 1);
    same_bits_check("aoe", "output", 0);
}

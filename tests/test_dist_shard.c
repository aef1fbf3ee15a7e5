// test_dist_shard.c — expert parallelism holds only a rank's experts (in process, no MPI): the
// sparse layers built for group rank q of E = 2 register their expert tensors with half the
// experts, initialised to exactly the values one process gets for those experts; every other
// tensor is whole and identical. A whole-model checkpoint loads into such a rank as its slices,
// and a sharded model writes (through the gather) the same file, byte for byte, as one process.
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "model/moe_ep.h"
#include "test.h"
#include "util/common.h"

static Model *build(const char *type, int E, int me) {
    Config c;
    config_defaults(&c);
    const char *sets[] = {"model.d_model=16", "model.n_layer=2", "model.n_head=2", "model.seq_len=8",
                          "model.ffn.d_ff=24", "model.ffn.n_experts=4", "model.ffn.top_k=2", "model.ffn.d_low=4"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) config_set(&c, sets[i], "t");
    char t[64];
    snprintf(t, sizeof t, "model.ffn.type=%s", type);
    config_set(&c, t, "t");
    moe_ep_layout(E, me);
    Model *m = model_create(&c, 50, 1, 3);
    moe_ep_layout(1, 0);  // every other test builds whole models
    return m;
}

// The sharded model of the gather below: group rank 1's half of every expert tensor.
static const Model *other_half;
static void gather_two(const float *local, const TensorInfo *t, float *whole) {
    memcpy(whole, local + t->off, t->n * sizeof(float));
    const TensorInfo *o = &other_half->P.t[t - other_half->P.t];  // same table index
    memcpy(whole + t->n, other_half->P.w + o->off, o->n * sizeof(float));
}

static void check_type(const char *type) {
    Model *one = build(type, 1, 0), *half[2] = {build(type, 2, 0), build(type, 2, 1)};
    const Params *P1 = &one->P;
    int sharded = 0;
    for (int q = 0; q < 2; q++) {
        const Params *P = &half[q]->P;
        REQUIRE(P->n == P1->n);
        CHECK(P->gtotal == P1->total);
        size_t dropped = 0;
        int same = 1;
        for (int i = 0; i < P->n; i++) {
            const TensorInfo *a = &P1->t[i], *b = &P->t[i];
            int expert = strstr(a->name, ".ffn.w_") && a->ndim == 3;  // w_gate/w_up, w_proj, w_out
            same &= !strcmp(a->name, b->name) && b->goff == a->off && b->gn == a->n && b->shape[0] == a->shape[0];
            if (expert) {
                same &= tensor_sharded(b) && b->slice0 == 2 * q && b->slices == 2 && b->n == a->n / 2;
                // the values one process draws for experts 2q, 2q+1
                same &= !memcmp(P->w + b->off, P1->w + a->off + q * b->n, b->n * sizeof(float));
                dropped += (a->n / 2 + 15) & ~(size_t)15;
                sharded += q == 0;
            } else {
                same &= !tensor_sharded(b) && !memcmp(P->w + b->off, P1->w + a->off, a->n * sizeof(float));
            }
        }
        CHECK(same);
        CHECK(P->total == P1->total - dropped);  // the other rank's experts are not allocated here
    }
    CHECK(sharded >= 3);  // at least one sparse layer's three expert tensors
    // a whole-model checkpoint -> rank 1 keeps its slices
    char p1[600], p2[600], err[600];
    snprintf(p1, sizeof p1, "%s/shard-%s-one.aoec", test_tmpdir(), type);
    snprintf(p2, sizeof p2, "%s/shard-%s-two.aoec", test_tmpdir(), type);
    CkptMeta meta = {0};
    REQUIRE(ckpt_save(p1, one, NULL, &meta, 0, err, sizeof err) == 0);
    Model *back = build(type, 2, 1);
    memset(back->P.w, 0, back->P.total * sizeof(float));
    CkptMeta got;
    ckpt_load_into(p1, back, NULL, &got, NULL, 0);
    CHECK(!memcmp(back->P.w, half[1]->P.w, back->P.total * sizeof(float)));
    // the two halves, gathered by the writer -> the one-process file (compressed and not)
    other_half = half[1];
    for (int z = 0; z < 2; z++) {
        REQUIRE(ckpt_save(p1, one, NULL, &meta, z, err, sizeof err) == 0);
        REQUIRE(ckpt_save_gather(p2, half[0], NULL, &meta, z, gather_two, err, sizeof err) == 0);
        size_t n1, n2;
        char *a = read_file(p1, &n1), *b = read_file(p2, &n2);
        CHECK(n1 == n2 && !memcmp(a, b, n1));
        free(a); free(b);
    }
    model_free(back);
    model_free(one); model_free(half[0]); model_free(half[1]);
}

TEST(dist_expert_shards_hold_their_slices) {
    check_type("moe");
    check_type("aoe");
}

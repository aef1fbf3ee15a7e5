// test_train.c — the training loop end to end: gradient accumulation equals the full batch, a
// short run on shipped text lowers the loss, and the same config + seed + threads gives
// bit-identical losses.
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "test.h"
#include "util/common.h"

// grad_accum relies on model_backward's loss_scale: two half batches with scale 1/2 must give the
// gradient of one full batch (same tokens), for every FFN kind.
static void accum_check(const char *type) {
    Config c;
    config_defaults(&c);
    c.d_model = 32; c.n_layer = 2; c.n_head = 2; c.seq_len = 16;
    snprintf(c.ffn.type, sizeof c.ffn.type, "%s", type);
    c.ffn.d_ff = 48; c.ffn.n_experts = 4; c.ffn.top_k = 2; c.ffn.d_low = 8;
    c.ffn.lb_coef = 0;  // the balancing loss is a batch statistic: not additive over micro-batches
    const int V = 64, B = 4, S = c.seq_len;
    Model *m = model_create(&c, V, B, 7);
    int32_t x[4 * 16], y[4 * 16];
    Rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < B * S; i++) { x[i] = rng_below(&r, V); y[i] = rng_below(&r, V); }
    size_t n = m->P.n;
    memset(m->P.g, 0, n * sizeof(float));
    model_forward(m, x, y, B, S, NULL, 1, NULL);
    model_backward(m, y, 1.0f);
    float *full = malloc(n * sizeof(float));
    memcpy(full, m->P.g, n * sizeof(float));
    memset(m->P.g, 0, n * sizeof(float));
    for (int h = 0; h < 2; h++) {
        model_forward(m, x + h * 2 * S, y + h * 2 * S, 2, S, NULL, 1, NULL);
        model_backward(m, y + h * 2 * S, 0.5f);
    }
    double e = max_rel_err(full, m->P.g, (long)n, 1e-3);
    fprintf(stderr, "[%s %.2e] ", type, e);
    CHECK(e < 1e-4);
    free(full);
    model_free(m);
}
TEST(train_grad_accum_equals_full_batch) {
    accum_check("dense");
    accum_check("moe");
    accum_check("aoe");
}


TEST(train_cli_lowers_loss_deterministically) {
    const char *tmp = test_tmpdir();
    char *out, *err;
    // 300 KB of Shakespeare, vocab 512: prepare takes a fraction of a second
    size_t len;
    char *txt = read_file("data/text/tinyshakespeare/input.txt", &len), path[600];
    REQUIRE(txt && len > 300000);
    snprintf(path, sizeof path, "%s/tr-corpus.txt", tmp);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fwrite(txt, 1, 300000, f);
    fclose(f);
    free(txt);
    int rc = aoe_run(NULL, &err, "prepare --out %s/tr-data --vocab 512 --doc-bytes 4000 --val-frac 0.05 %s", tmp, path);
    if (rc) fprintf(stderr, "  %s", err);
    free(err);
    REQUIRE(rc == 0);
    double a[64], b[64];
    int na = 0, nb = 0;
    for (int run = 0; run < 2; run++) {
        rc = aoe_run(&out, &err,
                     "train configs/quickstart-dense.json model.d_model=64 model.n_layer=2 model.n_head=2 "
                     "model.seq_len=64 model.ffn.d_ff=128 train.steps=80 train.warmup=10 train.log_every=10 "
                     "train.eval_every=40 train.eval_batches=2 train.ckpt_every=0 train.threads=1 train.precision=fp32 "
                     "data.train='%s/tr-data/train-*.shard' data.val='%s/tr-data/val-*.shard' "
                     "data.tokenizer=%s/tr-data/tokenizer.bpe run.out=%s/tr-run%d",
                     tmp, tmp, tmp, tmp, run);
        if (rc) fprintf(stderr, "  train: %s", err);
        REQUIRE(rc == 0);
        CHECK_STR_CONTAINS(out, "tok/s");
        free(out); free(err);
        snprintf(path, sizeof path, "%s/tr-run%d/metrics.jsonl", tmp, run);
        if (run == 0) na = test_jsonl_numbers(path, "loss", a, 64); else nb = test_jsonl_numbers(path, "loss", b, 64);
    }
    REQUIRE(na >= 8 && na == nb);
    fprintf(stderr, "[loss %.3f -> %.3f] ", a[0], a[na - 1]);
    CHECK(a[na - 1] < a[0] - 1.0);
    for (int i = 0; i < na; i++) CHECK(a[i] == b[i]);  // bit-identical, not merely close
}

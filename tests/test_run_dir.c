// test_run_dir.c — a run directory is self-contained and relocatable (absolute paths in
// config.json, its own tokenizer copy): trained from one directory with relative paths, moved,
// then evaluated, sampled and resumed from another; train.init_from (weights, optionally the
// optimizer state; mismatches refused). The exit status after SIGTERM: test_ckpt.c.
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/common.h"

static const char *TINY = "model.d_model=16 model.n_layer=1 model.n_head=2 model.seq_len=16 model.ffn.type=aoe "
                          "model.ffn.n_experts=4 model.ffn.top_k=2 model.ffn.d_ff=16 model.ffn.d_low=4 "
                          "train.batch_size=2 train.log_every=1 train.eval_every=2 train.eval_batches=1 train.warmup=1 train.precision=fp32";

static char *slurp(const char *dir, const char *name) {
    char p[900];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    size_t n;
    return file_exists(p) ? read_file(p, &n) : NULL;
}

// `aoe eval RUN --tasks shards:VAL` -> its "token_perplexity = X" (malloc'd) or NULL.
static char *eval_line(const char *cwd, const char *run, const char *val, const char *out) {
    char *o = NULL, *e = NULL;
    int rc = test_shf(&o, &e, "cd %s && %s eval %s --tasks 'shards:%s' --limit 2 --out %s", cwd, test_aoe_abs(), run, val, out);
    if (rc) fprintf(stderr, "  eval %s: %s", run, e);
    char *line = NULL, *p = e && !rc ? strstr(e, "token_perplexity = ") : NULL;
    if (p) {
        size_t k = strcspn(p, " (\n") ;
        k += strcspn(p + k + 3, " (\n") + 3;  // "token_perplexity", " = ", the number
        line = xmalloc(k + 1);
        memcpy(line, p, k);
        line[k] = 0;
    }
    free(o); free(e);
    return line;
}

TEST(run_dir_moved_is_usable_from_anywhere) {
    const char *tmp = test_tmpdir(), *abs_bin = test_aoe_abs();
    char *out = NULL, *err = NULL;
    // A private copy of the data, named relative to tmp, so its tokenizer can be removed later.
    int rc = test_shf(NULL, NULL, "rm -rf %s/mv && mkdir -p %s/mv/elsewhere && cp -r %s %s/mv/pdata", tmp, tmp,
                      test_tiny_data(), tmp);
    REQUIRE(rc == 0);
    rc = test_shf(&out, &err, "cd %s/mv && echo {} >c.json && %s train c.json %s train.steps=4 train.ckpt_every=2 "
                  "'data.train=pdata/train-*.shard' 'data.val=./pdata/val-*.shard' data.tokenizer=pdata/tokenizer.bpe "
                  "run.out=runs/r1", tmp, abs_bin, TINY);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s", err);
    free(out); free(err);
    char run[700], moved[700], val[700];
    snprintf(run, sizeof run, "%s/mv/runs/r1", tmp);
    snprintf(moved, sizeof moved, "%s/mv/elsewhere/r1-moved", tmp);
    snprintf(val, sizeof val, "%s/mv/pdata/val-*.shard", tmp);
    char *cfg = slurp(run, "config.json"), want[800];
    snprintf(want, sizeof want, "\"tokenizer\":\t\"%s/mv/pdata/tokenizer.bpe\"", tmp);
    CHECK_STR_CONTAINS(cfg, want);
    snprintf(want, sizeof want, "\"val\":\t\"%s/mv/pdata/val-*.shard\"", tmp);
    CHECK_STR_CONTAINS(cfg, want);
    snprintf(want, sizeof want, "\"out\":\t\"%s/mv/runs/r1\"", tmp);
    CHECK_STR_CONTAINS(cfg, want);
    free(cfg);
    char evout[800];
    snprintf(evout, sizeof evout, "%s/mv/ev", tmp);
    char *before = eval_line("/", run, val, evout);
    // Move the run, delete the original tokenizer: the run's own copy serves eval, sample, resume.
    rc = test_shf(NULL, NULL, "mv %s %s && rm %s/mv/pdata/tokenizer.bpe", run, moved, tmp);
    REQUIRE(rc == 0);
    char *after = eval_line("/", moved, val, evout);
    REQUIRE(before && after);
    CHECK(!strcmp(before, after));
    if (strcmp(before, after)) fprintf(stderr, "  before: %s\n  after:  %s\n", before, after);
    free(before); free(after);
    rc = test_shf(&out, &err, "cd / && %s sample %s --prompt the --max-tokens 4", abs_bin, moved);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s", err);
    free(out); free(err);
    rc = test_shf(&out, &err, "cd / && %s train --resume %s train.steps=6", abs_bin, moved);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "at step 4");
    CHECK_STR_CONTAINS(out, "done: 6 steps");
    if (rc) fprintf(stderr, "  %s", err);
    free(out); free(err);
    cfg = slurp(moved, "config.json");
    snprintf(want, sizeof want, "\"out\":\t\"%s\"", moved);
    CHECK_STR_CONTAINS(cfg, want);  // the resume records where the run is now
    free(cfg);
}

// One meta value of `aoe inspect` output ("  opt.t ... = N" style lines): the first number after name.
static long inspect_meta(const char *ckpt, const char *name) {
    char *o = NULL;
    test_shf(&o, NULL, "%s inspect %s", test_aoe_abs(), ckpt);
    const char *p = o ? strstr(o, name) : NULL;
    long v = -1;
    if (p) {
        p += strlen(name);
        while (*p && (*p < '0' || *p > '9')) p++;
        v = atol(p);
    }
    free(o);
    return v;
}

TEST(run_dir_init_from) {
    const char *tmp = test_tmpdir(), *d = test_tiny_data();
    char base[4096], *out = NULL, *err = NULL;
    snprintf(base, sizeof base, "%s train %s/c.json %s 'data.train=%s/train-*.shard' 'data.val=%s/val-*.shard' "
             "data.tokenizer=%s/tokenizer.bpe", test_aoe_abs(), tmp, TINY, d, d, d);
    test_shf(NULL, NULL, "echo {} >%s/c.json && rm -rf %s/ia %s/ib %s/ic %s/id", tmp, tmp, tmp, tmp, tmp);
    int rc = test_shf(&out, &err, "%s train.steps=4 run.out=%s/ia", base, tmp);
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    // lr 0: the weights stay those of the checkpoint, so B evaluates exactly like A.
    rc = test_shf(&out, &err, "%s train.steps=2 train.lr=0 train.min_lr=0 run.out=%s/ib train.init_from=%s/ia", base, tmp, tmp);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "weights; optimizer state fresh");
    CHECK_STR_CONTAINS(out, "train.init_from: step 4 of its run");
    if (rc) fprintf(stderr, "  %s", err);
    free(out); free(err);
    char run_a[700], run_b[700], val[700], ev[700];
    snprintf(run_a, sizeof run_a, "%s/ia", tmp);
    snprintf(run_b, sizeof run_b, "%s/ib", tmp);
    snprintf(val, sizeof val, "%s/val-*.shard", d);
    snprintf(ev, sizeof ev, "%s/iev", tmp);
    char *ea = eval_line(tmp, run_a, val, ev), *eb = eval_line(tmp, run_b, val, ev);
    REQUIRE(ea && eb);
    CHECK(!strcmp(ea, eb));
    if (strcmp(ea, eb)) fprintf(stderr, "  A %s\n  B %s\n", ea, eb);
    free(ea); free(eb);
    char *cfg = slurp(run_b, "config.json"), want[900];
    snprintf(want, sizeof want, "\"init_from\":\t\"%s/ia/ckpt-4.aoec\"", tmp);  // the file, not the directory
    CHECK_STR_CONTAINS(cfg, want);
    free(cfg);
    // The optimizer's step count: fresh (2) or continued from the checkpoint (4 + 2).
    char ck[800];
    snprintf(ck, sizeof ck, "%s/ckpt-2.aoec", run_b);
    CHECK_EQ_INT(inspect_meta(ck, "opt.t"), 2);
    rc = test_shf(&out, &err, "%s train.steps=2 run.out=%s/ic train.init_from=%s/ia/ckpt-4.aoec train.init_keep_optim=true",
                  base, tmp, tmp);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "(weights and optimizer state)");
    free(out); free(err);
    snprintf(ck, sizeof ck, "%s/ic/ckpt-2.aoec", tmp);
    CHECK_EQ_INT(inspect_meta(ck, "opt.t"), 6);
    // A resume of an initialized run continues its own checkpoint.
    rc = test_shf(&out, &err, "%s train --resume %s/ic train.steps=3", test_aoe_abs(), tmp);
    CHECK_EQ_INT(rc, 0);
    CHECK(out && !strstr(out, "train.init_from: loading"));
    free(out); free(err);
    // Refusals: other shapes, another tokenizer, no checkpoint, another optimizer with kept state.
    rc = test_shf(NULL, &err, "%s train.steps=2 run.out=%s/id model.d_model=32 train.init_from=%s/ia", base, tmp, tmp);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "config mismatch: model.d_model is 16 in the checkpoint but 32 in the run config");
    free(err);
    rc = test_shf(NULL, &err, "%s train.steps=2 run.out=%s/id model.ffn.d_low=8 train.init_from=%s/ia", base, tmp, tmp);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "ckpt-4.aoec: byte");
    CHECK_STR_CONTAINS(err, "expected");
    free(err);
    rc = test_shf(NULL, &err, "%s train.steps=2 run.out=%s/id train.init_from=%s/nothing-here", base, tmp, tmp);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "train.init_from: ");
    CHECK_STR_CONTAINS(err, "nothing-here: no such checkpoint");
    free(err);
    rc = test_shf(NULL, &err, "%s train.steps=2 run.out=%s/id train.optimizer=sgd train.init_from=%s/ia train.init_keep_optim=true",
                  base, tmp, tmp);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "train.optimizer is \"adamw\" in the checkpoint but \"sgd\" in the run config");
    free(err);
    // Another tokenizer of the same size: its own data, made from another text.
    rc = test_shf(NULL, NULL, "head -c 100000 data/text/tinyshakespeare/input.txt >%s/other.txt && "
                  "%s prepare --out %s/odata --vocab 300 --val-frac 0.1 --doc-bytes 2000 %s/other.txt", tmp, test_aoe_abs(), tmp, tmp);
    CHECK_EQ_INT(rc, 0);
    rc = test_shf(NULL, &err, "%s train %s/c.json %s 'data.train=%s/odata/train-*.shard' 'data.val=%s/odata/val-*.shard' "
                  "data.tokenizer=%s/odata/tokenizer.bpe train.steps=2 run.out=%s/id train.init_from=%s/ia",
                  test_aoe_abs(), tmp, TINY, tmp, tmp, tmp, tmp, tmp);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "ckpt-4.aoec: trained with tokenizer");
    CHECK_STR_CONTAINS(err, "odata/tokenizer.bpe is");
    free(err);
    snprintf(ck, sizeof ck, "%s/id/ckpt-2.aoec", tmp);
    CHECK(!file_exists(ck));
}

// test_sweep.c — tools/sweep.sh naming (a one-value override is not an axis and not in run names;
// --axis makes it one) and the studies' --set (every run gets it, no run name shows it, a key
// the study sets itself is refused). The studies run for real on a tiny model made by --set.
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/common.h"

#define abs_aoe test_aoe_abs

// A tiny AoE config without a data section: the data comes from --set, as for another corpus.
static const char *tiny_config(void) {
    static char cfg[700];
    if (cfg[0]) return cfg;
    snprintf(cfg, sizeof cfg, "%s/sw-tiny.json", test_tmpdir());
    FILE *f = fopen(cfg, "w");
    if (f) {
        fputs("{\"model\": {\"d_model\": 16, \"n_layer\": 1, \"n_head\": 2, \"seq_len\": 16,\n"
              "  \"ffn\": {\"type\": \"aoe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 16, \"d_low\": 4}},\n"
              " \"train\": {\"steps\": 4, \"batch_size\": 2, \"log_every\": 1, \"eval_every\": 2, \"eval_batches\": 1,"
              " \"warmup\": 1, \"ckpt_every\": 2, \"precision\": \"fp32\"}}\n", f);
        fclose(f);
    }
    return cfg;
}

static char *data_sets(void) {
    static char s[2048];
    const char *d = test_tiny_data();
    snprintf(s, sizeof s, "--set 'data.train=%s/train-*.shard' --set 'data.val=%s/val-*.shard' --set data.tokenizer=%s/tokenizer.bpe",
             d, d, d);
    return s;
}

TEST(sweep_one_value_is_not_an_axis) {
    char *out = NULL, *err = NULL;
    int rc = test_shf(&out, &err, "AOE=%s tools/sweep.sh --dry-run --out %s/sw1 %s %s model.ffn.d_low=4,8 train.lr=0.003",
                      abs_aoe(), test_tmpdir(), data_sets(), tiny_config());
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "[1/2] sw-tiny_d_low-4: fresh train (4 steps)");
    CHECK_STR_CONTAINS(out, "[2/2] sw-tiny_d_low-8: fresh train");
    CHECK(out && !strstr(out, "lr") && !strstr(out, "data") && !strstr(out, "train-"));
    free(out); free(err);
    rc = test_shf(&out, &err, "AOE=%s tools/sweep.sh --dry-run --out %s/sw1 %s %s train.lr=0.003 --axis train.seed=7",
                  abs_aoe(), test_tmpdir(), data_sets(), tiny_config());
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "[1/1] sw-tiny_seed-7: fresh train");
    free(out); free(err);
    // Fixed overrides reach aoe train: a real run, then its config.json.
    rc = test_shf(&out, &err, "AOE=%s OMP_NUM_THREADS=1 tools/sweep.sh --eval-tasks none --out %s/sw2 %s %s train.lr=0.003 train.steps=2",
                  abs_aoe(), test_tmpdir(), data_sets(), tiny_config());
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    char p[800];
    snprintf(p, sizeof p, "%s/sw2/sw-tiny/config.json", test_tmpdir());
    size_t n;
    char *cfg = file_exists(p) ? read_file(p, &n) : NULL;
    CHECK_STR_CONTAINS(cfg, "\"lr\":\t0.003");
    CHECK_STR_CONTAINS(cfg, "\"steps\":\t2,");
    CHECK_STR_CONTAINS(cfg, test_tiny_data());
    free(cfg);
    // The same key as a fixed override and an axis: refused.
    rc = test_shf(NULL, &err, "AOE=%s tools/sweep.sh --dry-run --set train.lr=1 %s train.lr=2,3", abs_aoe(), tiny_config());
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "train.lr is given twice");
    free(err);
}

// compare-methods.sh on the shipped method configs shrunk by --set (d_model 64, 1 layer, 2 steps,
// the test data), then sweep-dlow.sh into the same study directory: runs common to both studies
// are trained once.
TEST(sweep_studies_take_set) {
    char sets[4096], *out = NULL, *err = NULL;
    snprintf(sets, sizeof sets, "--steps 2 --seeds 1 --eval-tasks none --out %s/study --set model.d_model=64 "
             "--set model.n_layer=1 --set model.n_head=2 --set model.seq_len=16 --set model.ffn.d_ff=16 "
             "--set train.batch_size=2 --set train.warmup=1 --set train.lr=0.0031 %s", test_tmpdir(), data_sets());
    int rc = test_shf(&out, &err, "AOE=%s OMP_NUM_THREADS=1 tools/compare-methods.sh %s", abs_aoe(), sets);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    free(out); free(err);
    static const char *runs[] = {"moe-lb_steps-2_seed-1", "moe-nolb_steps-2_seed-1", "aoe-lb_steps-2_d_low-48_seed-1",
                                 "aoe-nolb_steps-2_d_low-48_seed-1", "moe-erc_steps-2_seed-1", "moe-topp_steps-2_seed-1",
                                 "aoe-topp_steps-2_seed-1", "moe-ec_steps-2_seed-1", "aoe-ec_steps-2_seed-1", "etr_steps-2_seed-1"};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s/study/runs/%s/config.json", test_tmpdir(), runs[i]);
        size_t n;
        char *cfg = file_exists(p) ? read_file(p, &n) : NULL;
        if (!cfg) fprintf(stderr, "  missing %s\n", p);
        CHECK_STR_CONTAINS(cfg, "\"d_model\":\t64,");
        CHECK_STR_CONTAINS(cfg, "\"lr\":\t0.0031");
        CHECK_STR_CONTAINS(cfg, test_tiny_data());
        free(cfg);
    }
    char p[800];
    snprintf(p, sizeof p, "%s/study/methods/report.md", test_tmpdir());
    CHECK(file_exists(p));
    rc = test_shf(&out, &err, "AOE=%s OMP_NUM_THREADS=1 tools/sweep-dlow.sh --dlow 8,48 %s", abs_aoe(), sets);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "[1/2] aoe-lb_steps-2_d_low-8_seed-1: training (2 steps)");
    CHECK_STR_CONTAINS(out, "[2/2] aoe-lb_steps-2_d_low-48_seed-1: finished earlier, training skipped");
    CHECK_STR_CONTAINS(out, "[1/1] moe-nolb_steps-2_seed-1: finished earlier, training skipped");
    free(out); free(err);
    // A key the study sets itself cannot be overridden.
    rc = test_shf(NULL, &err, "AOE=%s tools/sweep-dlow.sh --dry-run --set model.ffn.lb_coef=0.5", abs_aoe());
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "--set model.ffn.lb_coef=0.5: aoe-lb sets model.ffn.lb_coef itself");
    free(err);
    rc = test_shf(NULL, &err, "AOE=%s tools/compare-methods.sh --dry-run --set lr=1", abs_aoe());
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "--set 'lr=1': expected key=value with a config key");
    free(err);
}

// Last "loss" of a metrics.jsonl (the text of the number, so equal means bit-equal as printed).
static char *final_loss(const char *run) {
    char p[800];
    snprintf(p, sizeof p, "%s/metrics.jsonl", run);
    size_t n;
    char *m = file_exists(p) ? read_file(p, &n) : NULL, *last = NULL;
    for (char *q = m; q && (q = strstr(q, "\"loss\":")); q++) last = q;
    char *r = NULL;
    if (last) {
        size_t k = strcspn(last, ",}");
        r = xmalloc(k + 1);
        memcpy(r, last, k);
        r[k] = 0;
    }
    free(m);
    return r;
}

// Ctrl-C in a terminal signals the whole process group: sweep.sh gets SIGINT and forwards SIGTERM,
// aoe train gets SIGINT itself. The run must be checkpointed (both signals fall in the grace
// period), the sweep must stop with 130, and rerunning it must end at the same loss as a sweep
// that was never interrupted.
TEST(sweep_ctrl_c_to_the_process_group_resumes) {
    char base[8192], *out = NULL, *err = NULL;
    snprintf(base, sizeof base, "AOE=%s OMP_NUM_THREADS=1 tools/sweep.sh --eval-tasks none %s %s train.steps=6 "
             "train.ckpt_every=4 model.ffn.d_low=4,8", abs_aoe(), data_sets(), tiny_config());
    int rc = test_shf(&out, &err, "%s --out %s/ref", base, test_tmpdir());
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    char run[800];
    snprintf(run, sizeof run, "%s/sig/sw-tiny_d_low-4", test_tmpdir());
    // Job control (set -m) gives the sweep its own process group with SIGINT not ignored, as in
    // a terminal; the hook holds aoe train inside step 3 until a stop signal arrives.
    char script[800];
    snprintf(script, sizeof script, "%s/ctrl-c.sh", test_tmpdir());
    FILE *f = fopen(script, "w");
    if (f) {
        fprintf(f, "set -m\nAOE_TEST_PAUSE_AT_STEP=3 %s --out %s/sig >%s/sig.out 2>%s/sig.err & pid=$!\n"
                   "for i in $(seq 600); do grep -q 'paused at step 3' %s/train.log 2>/dev/null && break; sleep 0.05; done\n"
                   "kill -INT -- -$pid; wait $pid; echo \"rc=$?\"; cat %s/sig.err >&2\n",
                base, test_tmpdir(), test_tmpdir(), test_tmpdir(), run, test_tmpdir());
        fclose(f);
    }
    rc = test_shf(&out, &err, "bash %s", script);
    CHECK_STR_CONTAINS(out, "rc=130");
    CHECK_STR_CONTAINS(err, "[1/2] sw-tiny_d_low-4: stopped at ckpt-3.aoec; rerun to resume");
    CHECK_STR_CONTAINS(err, "sweep.sh: interrupted (SIGINT)");
    free(out); free(err);
    char p[900];
    snprintf(p, sizeof p, "%s/ckpt-3.aoec", run);
    CHECK(file_exists(p));
    snprintf(p, sizeof p, "%s/train.log", run);
    size_t n;
    char *log = file_exists(p) ? read_file(p, &n) : NULL;
    CHECK_STR_CONTAINS(log, "stopped by SIGINT");
    free(log);
    rc = test_shf(&out, &err, "%s --out %s/sig", base, test_tmpdir());
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "[1/2] sw-tiny_d_low-4: resuming from ckpt-3.aoec");
    CHECK_STR_CONTAINS(out, "[2/2] sw-tiny_d_low-8: training (6 steps)");
    free(out); free(err);
    for (int k = 0; k < 2; k++) {
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/ref/sw-tiny_d_low-%d", test_tmpdir(), k ? 8 : 4);
        snprintf(b, sizeof b, "%s/sig/sw-tiny_d_low-%d", test_tmpdir(), k ? 8 : 4);
        char *la = final_loss(a), *lb = final_loss(b);
        REQUIRE(la && lb);
        if (strcmp(la, lb)) fprintf(stderr, "  %s: %s vs %s\n", b, la, lb);
        CHECK(!strcmp(la, lb));
        free(la); free(lb);
    }
}

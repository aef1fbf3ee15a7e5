// test_report.c — `aoe report` on hand-written run directories (table and CSV values, seed
// grouping with mean ± std, eval results, plots, malformed input named with file and line) and
// tools/sweep.sh end to end on a 2-point grid of tiny runs: killed runs are resumed, a second
// call skips finished and evaluated runs; the report takes bits per byte from the evaluation.
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "util/common.h"

static void put(const char *path, const char *fmt, ...) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "  cannot write %s\n", path); return; }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

#define shf test_shf

static char *slurp(const char *path) {
    size_t n;
    return file_exists(path) ? read_file(path, &n) : NULL;
}

// A fake run: config.json, metrics.jsonl (val loss at steps 10 and 20), load.jsonl (2 layers,
// 2 intervals), and eval/results.json when acc >= 0.
static void fake_run(const char *root, const char *name, const char *type, int d_low, int seed, double val,
                     double acc) {
    char d[700], p[800];
    snprintf(d, sizeof d, "%s/%s", root, name);
    snprintf(p, sizeof p, "mkdir -p %s/eval", d);
    if (system(p)) return;
    snprintf(p, sizeof p, "%s/config.json", d);
    put(p, "{\"model\": {\"d_model\": 64, \"ffn\": {\"type\": \"%s\", \"d_low\": %d, \"lb_coef\": 0.01, \"select\": \"topk\"}},\n"
           " \"train\": {\"steps\": 20, \"seed\": %d, \"lr\": 0.00200000009, \"precision\": \"fp32\"},\n"
           " \"data\": {\"val\": \"/nonexistent/val-*.shard\", \"tokenizer\": \"/nonexistent/tok.bpe\"},\n"
           " \"run\": {\"out\": \"%s\"}}", type, d_low, seed, d);
    snprintf(p, sizeof p, "%s/metrics.jsonl", d);
    put(p, "{\"step\":10,\"loss\":7,\"tokens_per_s\":1000,\"peak_rss_mb\":50,\"val_loss\":%.4f,\"val_bpb\":9}\n"
           "{\"step\":15,\"loss\":6.5,\"tokens_per_s\":3000,\"peak_rss_mb\":60}\n"
           "{\"step\":20,\"loss\":6,\"tokens_per_s\":2000,\"peak_rss_mb\":55,\"val_loss\":%.4f,\"val_bpb\":%.4f}\n",
        val + 1, val, 0.6 * val);
    if (d_low == 48) {  // model.json of aoe train; the others are older runs without it
        snprintf(p, sizeof p, "%s/model.json", d);
        put(p, "{\"vocab_size\": 300, \"params_total\": 2000000, \"params_active\": 500000}\n");
    }
    snprintf(p, sizeof p, "%s/load.jsonl", d);
    FILE *f = fopen(p, "w");
    for (int step = 10; step <= 20; step += 10)
        for (int l = 0; l < 2; l++)
            fprintf(f, "{\"v\":1,\"step\":%d,\"layer\":%d,\"type\":\"%s\",\"n\":4,\"k\":2,\"tokens\":100,\"counts\":[50,50,50,50],"
                       "\"ent_load\":%.2f,\"ent_conf\":%.2f,\"max_minus_min\":0,\"cv\":0,\"dead\":0,\"dropped\":%d,\"lb_loss\":1,"
                       "\"k_mean\":2,\"unrouted\":%d}\n",
                    step, l, type, 1.0 + l * 0.2, 0.5 + seed * 0.1, step == 20 ? 4 : 0, step == 20 ? 2 : 0);
    fclose(f);
    if (acc < 0) return;
    snprintf(p, sizeof p, "%s/eval/results.json", d);
    put(p, "{\"results\": {\"shards\": {\"alias\": \"shards\", \"bits_per_byte,none\": %.3f, \"token_perplexity,none\": 9},\n"
           "  \"piqa\": {\"alias\": \"piqa\", \"acc,none\": 0.1, \"acc_norm,none\": %.3f},\n"
           "  \"blimp\": {\"alias\": \"blimp\", \"acc,none\": 0.7},\n"
           "  \"blimp_island\": {\"alias\": \" - blimp_island\", \"acc,none\": 0.2},\n"
           "  \"wikitext\": {\"alias\": \"wikitext\", \"word_perplexity,none\": 900}},\n"
           " \"group_subtasks\": {\"blimp\": [\"blimp_island\"]}}\n", val / 2, acc);
}

// The CSV row whose first two fields are kind,group (malloc'd), or NULL.
static char *csv_row(const char *csv, const char *kind_group) {
    const char *p = csv;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (!strncmp(p, kind_group, strlen(kind_group)) && p[strlen(kind_group)] == ',') {
            char *r = malloc(n + 1);
            memcpy(r, p, n);
            r[n] = 0;
            return r;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

TEST(report_table_csv_seed_groups) {
    char root[600], *out = NULL, *err = NULL;
    snprintf(root, sizeof root, "%s/rep", test_tmpdir());
    fake_run(root, "aoe_r48_seed-1", "aoe", 48, 1, 4.0, 0.6);
    fake_run(root, "aoe_r48_seed-2", "aoe", 48, 2, 4.2, 0.5);
    fake_run(root, "aoe_r32_seed-1", "aoe", 32, 1, 4.5, -1);
    fake_run(root, "moe_seed-1", "moe", 48, 1, 4.4, -1);
    int rc = shf(&out, &err, "%s report %s/aoe_r48_seed-1 %s/aoe_r48_seed-2/ %s/aoe_r32_seed-1 %s/moe_seed-1 --out %s/out",
                 aoe_bin(), root, root, root, root, root);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    // 3 groups: the two r48 seeds together. Every differing key the row's model uses is shown,
    // defaults included (not the MoE's d_low: a router MoE has none). Training's numbers, then
    // eval's: val bpb (training) and eval bpb apart.
    CHECK_STR_CONTAINS(out, "| aoe_r48_seed-* | 1,2 | aoe+lb | d_low=48 | 20/20 | 2.00 ± 0.00 | 0.50 ± 0.00 | 4.1000 ± 0.1414 "
                            "| 2.4600 ± 0.0849 | 2000 ± 0 | 60 ± 0 | 1.100 ± 0.000 | 0.650 ± 0.071 | 1.00 ± 0.00 | 1.00 ± 0.00 "
                            "| 2.0500 ± 0.0707 | 55.0 ± 7.1 | 70.0 ± 0.0 | 62.5 ± 3.5 |");
    CHECK_STR_CONTAINS(out, "| aoe_r32_seed-1 | 1 | aoe+lb | d_low=32 | 20/20 | – | – | 4.5000 | 2.7000 |");
    CHECK_STR_CONTAINS(out, "| moe_seed-1 | 1 | moe+lb | – | 20/20 | 2.00 | 0.50 | 4.4000 | 2.6400 |");
    CHECK_STR_CONTAINS(out, "| params (M) | active (M) | val loss | val bpb | tok/s | peak MB | Ent_load | Ent_conf | dropped % "
                            "| unrouted % | eval bpb | piqa | blimp | avg |");
    char path[700];
    snprintf(path, sizeof path, "%s/out/report.csv", root);
    char *csv = slurp(path);
    REQUIRE(csv);
    CHECK_STR_CONTAINS(csv, "kind,group,run,seed,n,method,differs,step,steps,params_total,params_active,val_loss,val_bpb,"
                            "tokens_per_s,peak_rss_mb,ent_load,ent_conf,dropped_pct,unrouted_pct,eval_bpb,piqa,blimp,avg\n");
    // Per run: median tokens/s, max peak RSS, mean over layers of the last interval, dropped =
    // 4 per layer of 2·100·2 assignments per layer = 1%, unrouted 2 of 2·100 tokens per layer = 1%.
    CHECK_STR_CONTAINS(csv, "run,aoe_r48_seed-*,aoe_r48_seed-1,1,1,aoe+lb,d_low=48,20,20,2000000,500000,4,2.4,2000,60,1.1,0.6,1,1,"
                            "2,60,70,65\n");
    char *m = csv_row(csv, "mean,aoe_r48_seed-*"), *s = csv_row(csv, "std,aoe_r48_seed-*");
    CHECK_STR_CONTAINS(m, "mean,aoe_r48_seed-*,,,2,aoe+lb,d_low=48,20,20,2000000,500000,4.1,2.46,2000,60,1.1,0.65,1,1,2.05,55,70,62.5");
    CHECK_STR_CONTAINS(s, "2,aoe+lb,d_low=48,20,20,0,0,0.141421,0.0848528,0,0,0,0.0707107,0,0,0.0707107,7.07107,0,3.53553");
    char *mm = csv_row(csv, "mean,moe_seed-1");
    CHECK_STR_CONTAINS(mm, ",20,20,2000000,500000,4.4,2.64,2000,60,1.1,0.6,1,1,,,,");  // no eval results
    free(mm);
    free(m); free(s);
    CHECK(csv_row(csv, "std,moe_seed-1") != NULL);  // every group has mean and std rows
    free(csv);
    snprintf(path, sizeof path, "%s/out/report.md", root);
    char *md = slurp(path);
    CHECK_STR_CONTAINS(md, "## Runs");
    CHECK_STR_CONTAINS(md, "| aoe_r48_seed-2 | 2 | aoe+lb | d_low=48 | 20/20 | 2.00 | 0.50 | 4.2000 | 2.5200 |");
    CHECK_STR_CONTAINS(md, "| 2.1000 | 50.0 | 70.0 | 60.0 |");
    CHECK_STR_CONTAINS(md, "- aoe_r48_seed-2: eval results from `");
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        const char *png[] = {"train_loss.png", "val_loss.png", "load_entropy.png", "dlow_loss.png"};
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/out/plots/%s", root, png[i]);
            CHECK(access(path, R_OK) == 0);
            CHECK_STR_CONTAINS(md, png[i]);
        }
        snprintf(path, sizeof path, "%s/out/plots/dlow_loss.dat", root);
        char *dat = slurp(path);
        CHECK_STR_CONTAINS(dat, "32 4.5 0\n48 4.1 0.141421\n");
        free(dat);
        // one colour per group in every figure (G0 = aoe_r48_seed-*, G2 = moe_seed-1), keys beside
        // the plot, never below it where the x label is
        snprintf(path, sizeof path, "%s/out/plots/report.gp", root);
        char *gp = slurp(path);
        int n0 = 0, n2 = 0;
        for (const char *q = gp; q && (q = strstr(q, "lc rgb '#1f77b4' dt 1 title G0")); q++) n0++;
        for (const char *q = gp; q && (q = strstr(q, "lc rgb '#2ca02c' dt 1 title G2")); q++) n2++;
        CHECK_EQ_INT(n0, 5);  // train loss, val loss, Ent_load, Ent_conf, its point on the d_low series
        CHECK_EQ_INT(n2, 5);  // train loss, val loss, Ent_load, Ent_conf, its baseline in dlow_loss
        CHECK_STR_CONTAINS(gp, "G0 = 'aoe_r48_seed-*'");
        CHECK_STR_CONTAINS(gp, "set key outside right");
        CHECK(!strstr(gp, "key below"));
        free(gp);
    } else {
        CHECK_STR_CONTAINS(err, "gnuplot not found");
    }
    free(md); free(out); free(err);
}

// "differs" per row: only keys the row's model uses (model_key_used). AoE rows vary d_low; the
// dense and MoE rows have no d_low, so they show none; a key every model uses (train.lr) shows on
// every row. A config.json with an FFN value this aoe does not know shows every differing key.
TEST(report_differs_only_keys_the_row_uses) {
    char root[600], p[1400], *out = NULL, *err = NULL;
    snprintf(root, sizeof root, "%s/repdiff", test_tmpdir());
    fake_run(root, "aoe16", "aoe", 16, 1, 4.0, -1);
    fake_run(root, "aoe32", "aoe", 32, 1, 4.1, -1);
    fake_run(root, "moe", "moe", 64, 1, 4.2, -1);
    fake_run(root, "dense", "dense", 64, 1, 4.3, -1);
    int rc = shf(&out, &err, "%s report --no-plots %s/aoe16 %s/aoe32 %s/moe %s/dense --out %s/out", aoe_bin(), root, root,
                 root, root, root);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "| aoe16 | 1 | aoe+lb | d_low=16 |");
    CHECK_STR_CONTAINS(out, "| aoe32 | 1 | aoe+lb | d_low=32 |");
    CHECK_STR_CONTAINS(out, "| moe | 1 | moe+lb | – |");
    CHECK_STR_CONTAINS(out, "| dense | 1 | dense | – |");
    free(out); free(err);
    // dense at another lr: lr shows, d_low still not; an FFN setting this aoe does not know (MoE
    // select "future"): every differing key shows
    snprintf(p, sizeof p, "sed -i 's/0.00200000009/0.001/' %s/dense/config.json && sed -i 's/\"topk\"/\"future\"/' "
             "%s/moe/config.json", root, root);
    REQUIRE(system(p) == 0);
    rc = shf(&out, &err, "%s report --no-plots %s/aoe16 %s/moe %s/dense --out %s/out2", aoe_bin(), root, root, root, root);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "| aoe16 | 1 | aoe+lb | d_low=16 lr=0.002 |");
    CHECK_STR_CONTAINS(out, "| moe | 1 | moe/future+lb | d_low=64 lr=0.002 |");
    CHECK_STR_CONTAINS(out, "| dense | 1 | dense | lr=0.001 |");
    free(out); free(err);
}

TEST(report_malformed_input) {
    char root[600], p[800], *err = NULL;
    snprintf(root, sizeof root, "%s/repbad", test_tmpdir());
    fake_run(root, "a", "aoe", 48, 1, 4.0, 0.6);
    const char *run = "%s report --no-plots --out %s/out %s/a";
    snprintf(p, sizeof p, "%s/a/metrics.jsonl", root);
    put(p, "{\"step\":10,\"val_loss\":5}\n{\"step\":20,\"val_loss\":5\n{\"step\":30}\n");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/metrics.jsonl:2: not a JSON object");
    free(err);
    put(p, "{\"step\":10,\"val_loss\":\"low\"}\n");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/metrics.jsonl:1: key 'val_loss' must be a number");
    free(err);
    put(p, "{\"loss\":3}\n");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/metrics.jsonl:1: missing key 'step'");
    free(err);
    put(p, "{\"step\":10,\"val_loss\":5}\n{\"step\":20,\"val_lo");  // torn last line: a warning
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 0);
    CHECK_STR_CONTAINS(err, "metrics.jsonl:2: unterminated last line ignored");
    free(err);
    snprintf(p, sizeof p, "%s/a/eval/results.json", root);
    put(p, "{\"results\": {\"piqa\": {\"acc,none\": 0.5,}}}");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/eval/results.json: line 1, column");
    free(err);
    put(p, "{\"res\": {}}");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "key 'results' must be an object");
    free(err);
    unlink(p);
    snprintf(p, sizeof p, "%s/a/load.jsonl", root);
    put(p, "{\"v\":1,\"step\":10,\"layer\":0}\n");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/load.jsonl:1: missing or non-numeric key 'ent_load'");
    free(err);
    unlink(p);
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/load.jsonl: missing (a aoe run writes it");
    free(err);
    snprintf(p, sizeof p, "%s/a/config.json", root);
    put(p, "{\"model\": {\n  \"ffn\": [}\n");
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/config.json: line 2, column");
    free(err);
    unlink(p);
    CHECK_EQ_INT(shf(NULL, &err, run, aoe_bin(), root, root), 2);
    CHECK_STR_CONTAINS(err, "a/config.json: missing");
    free(err);
    CHECK_EQ_INT(shf(NULL, &err, "%s report %s/nope", aoe_bin(), root), 2);
    CHECK_STR_CONTAINS(err, "nope: not a directory");
    free(err);
    CHECK_EQ_INT(shf(NULL, &err, "%s report --frob %s", aoe_bin(), root), 2);
    CHECK_STR_CONTAINS(err, "unknown option '--frob'");
    free(err);
    char *out;
    CHECK_EQ_INT(shf(&out, NULL, "%s report --help", aoe_bin()), 0);
    CHECK_STR_CONTAINS(out, "usage: aoe report RUN_DIR...");
    free(out);
}

// tools/sweep.sh on model.ffn.d_low=4,8 with train.seed=1: the first call is killed at step 3
// (after the step-2 checkpoint) in both runs; the second resumes both, trains to step 4 and
// evaluates; the third skips everything. Then `aoe report` over the two runs.
TEST(report_sweep_resume_skip) {
    const char *d = test_tiny_data();
    char root[600], cfg[700], bin[PATH_MAX], sweep[PATH_MAX + 2048], *out = NULL, *err = NULL;
    snprintf(root, sizeof root, "%s/sweep", test_tmpdir());
    snprintf(cfg, sizeof cfg, "%s/sweep-tiny.json", test_tmpdir());
    put(cfg, "{\"model\": {\"d_model\": 16, \"n_layer\": 1, \"n_head\": 2, \"seq_len\": 16,\n"
             "  \"ffn\": {\"type\": \"aoe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 16, \"d_low\": 4}},\n"
             " \"train\": {\"steps\": 4, \"batch_size\": 2, \"log_every\": 1, \"eval_every\": 2, \"eval_batches\": 1,"
             " \"warmup\": 1, \"ckpt_every\": 2, \"precision\": \"fp32\"},\n"
             " \"data\": {\"train\": \"%s/train-*.shard\", \"val\": \"%s/val-*.shard\", \"tokenizer\": \"%s/tokenizer.bpe\"}}\n",
        d, d, d);
    if (!realpath(aoe_bin(), bin)) snprintf(bin, sizeof bin, "%s", aoe_bin());
    snprintf(sweep, sizeof sweep, "AOE=%s OMP_NUM_THREADS=1 tools/sweep.sh --out %s --eval-tasks val --eval-limit 4 %s "
             "model.ffn.d_low=4,8 --axis train.seed=1", bin, root, cfg);
    int rc = shf(&out, &err, "AOE_TEST_KILL_AT_STEP=3 %s", sweep);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_CONTAINS(err, "[1/2] sweep-tiny_d_low-4_seed-1: training failed");
    CHECK_STR_CONTAINS(err, "[2/2] sweep-tiny_d_low-8_seed-1: training failed");
    free(out); free(err);
    rc = shf(&out, &err, "%s", sweep);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_STR_CONTAINS(out, "[1/2] sweep-tiny_d_low-4_seed-1: resuming from ckpt-2.aoec");
    CHECK_STR_CONTAINS(out, "[2/2] sweep-tiny_d_low-8_seed-1: resuming from ckpt-2.aoec");
    CHECK_STR_CONTAINS(out, "2 points: 0 trained, 2 resumed, 0 already trained, 2 evaluated, 0 failed");
    free(out); free(err);
    char p[800];
    snprintf(p, sizeof p, "%s/sweep-tiny_d_low-8_seed-1/metrics.jsonl", root);
    char *metrics = slurp(p);
    CHECK_STR_CONTAINS(metrics, "{\"step\":4,");
    int n2 = 0;  // the resumed run's log has each step once
    for (const char *q = metrics; q && (q = strstr(q, "{\"step\":2,")); q++) n2++;
    CHECK_EQ_INT(n2, 1);
    free(metrics);
    rc = shf(&out, &err, "%s --report %s/rep", sweep, root);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "[1/2] sweep-tiny_d_low-4_seed-1: finished earlier, training skipped");
    CHECK_STR_CONTAINS(out, "2 points: 0 trained, 0 resumed, 2 already trained, 0 evaluated, 0 failed");
    free(out); free(err);
    snprintf(p, sizeof p, "%s/rep/report.csv", root);
    char *csv = slurp(p);
    CHECK_STR_CONTAINS(csv, "run,sweep-tiny_d_low-4_seed-1,sweep-tiny_d_low-4_seed-1,1,1,aoe+lb,d_low=4,4,4,");
    CHECK_STR_CONTAINS(csv, ",unrouted_pct,eval_bpb\n");  // the evaluation of the validation shards
    char *row = csv_row(csv, "run,sweep-tiny_d_low-4_seed-1");
    CHECK(row && row[strlen(row) - 1] != ',');                 // ... has a value
    free(row);
    free(csv);
    // Bad usage: one line, exit 2, nothing run.
    rc = shf(NULL, &err, "AOE=%s tools/sweep.sh --out %s %s model.ffn.d_low=4,,8", bin, root, cfg);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "axis model.ffn.d_low=4,,8: empty value in the list");
    free(err);
    rc = shf(NULL, &err, "AOE=%s tools/sweep.sh --out %s %s model.ffn.nope=1", bin, root, cfg);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, "unknown key 'model.ffn.nope'");
    free(err);
}

// The value after "key": in text (NAN if absent).
static double json_num_after(const char *text, const char *key) {
    const char *p = text ? strstr(text, key) : NULL;
    return p ? atof(p + strlen(key)) : NAN;
}

// aoe train logs val_bpb with every val_loss (bytes per token of exactly the validation windows,
// counted once at start); it equals the bits per byte `aoe eval` computes on the same windows, and
// `aoe report` shows it (column val bpb) with the data and tokenizer gone. A run logged without val_bpb (an
// older aoe) gets "–" and a line naming it, not a guess.
TEST(report_bpb_recorded_at_train_time) {
    const char *d = test_tiny_data();
    char data[700], run[700], cmd[4096], p[800], *out = NULL, *err = NULL;
    snprintf(data, sizeof data, "%s/bpbdata", test_tmpdir());
    snprintf(run, sizeof run, "%s/bpbrun", test_tmpdir());
    snprintf(cmd, sizeof cmd, "rm -rf %s %s && mkdir -p %s && cp %s/val-*.shard %s/train-*.shard %s/tokenizer.bpe %s/", data,
             run, data, d, d, d, data);
    REQUIRE(system(cmd) == 0);
    snprintf(p, sizeof p, "%s/bpb.json", test_tmpdir());
    put(p, "{\"model\": {\"d_model\": 16, \"n_layer\": 1, \"n_head\": 2, \"seq_len\": 16, \"ffn\": {\"d_ff\": 32}},\n"
           " \"train\": {\"steps\": 2, \"batch_size\": 2, \"eval_batches\": 3, \"warmup\": 1, \"threads\": 1, \"precision\": \"fp32\"},\n"
           " \"data\": {\"train\": \"%s/train-*.shard\", \"val\": \"%s/val-*.shard\", \"tokenizer\": \"%s/tokenizer.bpe\"},\n"
           " \"run\": {\"out\": \"%s\"}}\n", data, data, data, run);
    int rc = aoe_run(&out, &err, "train %s", p);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    free(out); free(err);
    rc = aoe_run(&out, &err, "eval %s --tasks 'shards:%s/val-*.shard' --limit 6 --threads 1 --out %s/ev", run, data, run);
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    snprintf(p, sizeof p, "%s/metrics.jsonl", run);
    char *metrics = slurp(p);
    snprintf(p, sizeof p, "%s/ev/results.json", run);
    char *res = slurp(p);
    double train_bpb = json_num_after(metrics, "\"val_bpb\":"), eval_bpb = json_num_after(res, "\"bits_per_byte,none\":");
    CHECK(train_bpb > 0.5 && train_bpb < 30);
    CHECK_NEAR(train_bpb, eval_bpb, 2e-4 * eval_bpb);  // 6 windows = 3 batches of 2, both sides
    free(res);
    snprintf(cmd, sizeof cmd, "rm -rf %s", data);  // the report needs neither shards nor tokenizer
    REQUIRE(system(cmd) == 0);
    rc = aoe_run(&out, &err, "report --no-plots --out %s/rep %s", run, run);
    CHECK_EQ_INT(rc, 0);
    char want[64];
    snprintf(want, sizeof want, "| %.4f |", train_bpb);  // the val bpb column
    CHECK_STR_CONTAINS(out, want);
    free(out); free(err);
    // The same run as an older aoe logged it: no val_bpb.
    for (char *q = metrics; (q = strstr(q, ",\"val_bpb\":"));) {
        char *e = strchr(q, '}');
        memmove(q, e, strlen(e) + 1);
    }
    snprintf(p, sizeof p, "%s/metrics.jsonl", run);
    put(p, "%s", metrics);
    free(metrics);
    rc = aoe_run(&out, &err, "report --no-plots --out %s/rep %s", run, run);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(err, "bpbrun: val bpb unavailable (metrics.jsonl has val_loss but no val_bpb");
    CHECK(!strstr(out, want));
    free(out); free(err);
}

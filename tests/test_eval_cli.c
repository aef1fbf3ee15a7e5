// test_eval_cli.c — `aoe eval` as a user drives it on a trained run: every task and every
// checkpoint is checked before any is scored (a bad second file, two files with one name, shards
// of another tokenizer, a corrupt or wrong-tokenizer second checkpoint all fail with nothing
// scored or written), and what was scored is written at once; --limit takes N items of each sub-task.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "test.h"
#include "util/common.h"

static void put_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const char *good_mc = "{\"query\":\"the cat\",\"choices\":[\"sat\",\"ran\"],\"gold\":0}\n"
                             "{\"query\":\"a dog\",\"choices\":[\"ran\",\"sat\"],\"gold\":1}\n";

TEST(eval_checks_every_task_before_scoring) {
    const char *run = test_tiny_run();
    REQUIRE(run);
    char a[700], b[700], bad[700], out[700], cmd[2048];
    snprintf(a, sizeof a, "%s/ev1/t.jsonl", test_tmpdir());
    snprintf(b, sizeof b, "%s/ev2/t.jsonl", test_tmpdir());
    snprintf(bad, sizeof bad, "%s/ev2/bad.jsonl", test_tmpdir());
    snprintf(out, sizeof out, "%s/ev-out", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s/ev1 %s/ev2 && rm -rf %s", test_tmpdir(), test_tmpdir(), out);
    REQUIRE(system(cmd) == 0);
    put_text(a, good_mc);
    put_text(b, good_mc);
    put_text(bad, "{\"query\":\"x\",\"choices\":[\"a\",\"b\"],\"gold\":0}\n{\"query\":\"y\",\"choices\":[\"a\",\"b\"],\"gold\":\"zz\"}\n");
    char *o = NULL, *e = NULL;
    // the bad file comes second: refused before the first is scored, nothing written
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s --tasks %s,%s --out %s --threads 1", run, a, bad, out), 2);
    CHECK_STR_CONTAINS(e, "bad.jsonl:2: \"gold\" is \"zz\": expected the index of the right answer in \"choices\" (0 to 1)");
    CHECK(!strstr(e, "acc_norm ="));
    CHECK(!is_directory(out));
    free(o); free(e);
    // two files named t.jsonl would both be results key "t"
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s --tasks %s,%s --out %s --threads 1", run, a, b, out), 2);
    CHECK_STR_CONTAINS(e, "both give results named 't'");
    CHECK(!is_directory(out));
    free(o); free(e);
    // shards made with another tokenizer, after a good task: refused before scoring
    char other[700];
    snprintf(other, sizeof other, "%s/ev-other", test_tmpdir());
    CHECK_EQ_INT(aoe_run(NULL, NULL, "prepare --out %s --vocab 290 --doc-bytes 2000 --val-frac 0.1 %s/ck-text.txt", other,
                         test_tmpdir()), 0);  // the text of test_tiny_data, another vocabulary
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s --tasks %s,'shards:%s/val-*.shard' --out %s --threads 1", run, a, other, out), 2);
    CHECK_STR_CONTAINS(e, "tokenizer");
    CHECK(!strstr(e, "acc_norm ="));
    free(o); free(e);
}

// Several checkpoints: a bad one after a good one is refused before anything is scored; one that
// fails only while scoring (non-finite log-likelihoods) leaves the earlier results on disk.
TEST(eval_checks_every_checkpoint_before_scoring) {
    const char *run = test_tiny_run();
    REQUIRE(run);
    char d[600], task[800], out[800], ck[800], cmd[8192];
    snprintf(d, sizeof d, "%s/evck", test_tmpdir());
    snprintf(task, sizeof task, "%s/qa.jsonl", d);
    snprintf(out, sizeof out, "%s/out", d);
    snprintf(ck, sizeof ck, "%s/ckpt-4.aoec", run);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/crc %s/tok %s/nan && cp %s %s/crc/ && cp %s %s/tok/", d, d, d, d, ck,
             d, ck, d);
    REQUIRE(system(cmd) == 0);
    put_text(task, good_mc);
    // a flipped parameter byte (every section CRC intact): found by the up-front check
    snprintf(ck, sizeof ck, "%s/crc/ckpt-4.aoec", d);
    size_t n;
    char *img = read_file(ck, &n);
    uint64_t payload = 0;  // header bytes 72..79: the payload's offset (docs/formats.md)
    for (int i = 7; i >= 0; i--) payload = payload << 8 | (unsigned char)img[72 + i];
    REQUIRE(payload + 64 < n);
    img[payload + 21] ^= 0x10;
    write_file_atomic(ck, img, n);
    free(img);
    char *o = NULL, *e = NULL;
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s %s --tasks %s --out %s --threads 1", run, ck, task, out), 2);
    CHECK_STR_CONTAINS(e, "crc/ckpt-4.aoec: byte ");
    CHECK_STR_CONTAINS(e, "CRC mismatch");
    CHECK(!strstr(e, "acc_norm ="));
    CHECK(!is_directory(out));
    free(o); free(e);
    // the run directory's own tokenizer is another one: refused before scoring
    CHECK_EQ_INT(aoe_run(NULL, NULL, "prepare --out %s/tok/other --vocab 290 --doc-bytes 2000 --val-frac 0.1 %s/ck-text.txt",
                         d, test_tmpdir()), 0);
    snprintf(cmd, sizeof cmd, "cp %s/tok/other/tokenizer.bpe %s/tok/tokenizer.bpe", d, d);
    REQUIRE(system(cmd) == 0);
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s %s/tok --tasks %s --out %s --threads 1", run, d, task, out), 2);
    CHECK_STR_CONTAINS(e, "is not the one this checkpoint was trained with");
    CHECK(!strstr(e, "acc_norm ="));
    CHECK(!is_directory(out));
    free(o); free(e);
    // valid file, NaN weights: only scoring finds it; the first checkpoint's results stay
    CkptMeta meta;
    snprintf(ck, sizeof ck, "%s/ckpt-4.aoec", run);
    Model *m = ckpt_load_model(ck, 1, &meta);
    m->P.w[m->P.n ? m->P.t[m->P.n - 1].off : 0] = NAN;
    snprintf(ck, sizeof ck, "%s/nan/ckpt-4.aoec", d);
    char err[300];
    REQUIRE(ckpt_save(ck, m, NULL, &meta, 0, err, sizeof err) == 0);
    model_free(m);
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s %s --tasks %s --out %s --threads 1", run, ck, task, out), 2);
    CHECK_STR_CONTAINS(e, "log-likelihoods are not finite");
    free(o); free(e);
    char p[900];
    snprintf(p, sizeof p, "%s/tinyrun_ckpt-4/results.json", out);
    CHECK(file_exists(p));
    snprintf(p, sizeof p, "%s/nan_ckpt-4/results.json", out);
    CHECK(!file_exists(p));
    snprintf(p, sizeof p, "%s/report.md", out);
    char *md = file_exists(p) ? read_file(p, &n) : NULL;
    CHECK_STR_CONTAINS(md, "| tinyrun/ckpt-4 |");
    CHECK(md && !strstr(md, "nan/ckpt-4"));
    free(md);
}

// A task file with 3 groups ("group": g0..g2) of 3 two-choice items.
static void grouped_task(const char *path) {
    Buf t = {0};
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < 3; i++)
            bprintf(&t, "{\"query\":\"the cat %d\",\"choices\":[\"sat\",\"ran\"],\"gold\":%d,\"group\":\"g%d\"}\n", i, i % 2, g);
    put_text(path, t.s);
    free(t.s);
}

// A task with 3 groups of 3 items, --limit 2: 2 items of every group, 6 for the task.
TEST(eval_limit_applies_to_each_subtask) {
    const char *run = test_tiny_run();
    REQUIRE(run);
    char task[700], out[700], p[800];
    snprintf(task, sizeof task, "%s/grouped.jsonl", test_tmpdir());
    snprintf(out, sizeof out, "%s/ev-lim", test_tmpdir());
    grouped_task(task);
    char *o = NULL, *e = NULL;
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s --tasks %s --limit 2 --out %s --threads 1", run, task, out), 0);
    CHECK_STR_CONTAINS(e, "grouped: --limit 2 applies to each of its 3 sub-tasks");
    free(o); free(e);
    snprintf(p, sizeof p, "%s/results.json", out);
    size_t len;
    char *js = file_exists(p) ? read_file(p, &len) : NULL;
    REQUIRE(js);
    cJSON *j = cJSON_Parse(js), *ns = cJSON_GetObjectItem(j, "n-samples"), *x;
    int n = 0;
    cJSON_ArrayForEach(x, ns) {
        int eff = cJSON_GetObjectItem(x, "effective")->valueint, orig = cJSON_GetObjectItem(x, "original")->valueint;
        CHECK_EQ_INT(eff, strcmp(x->string, "grouped") ? 2 : 6);
        CHECK_EQ_INT(orig, strcmp(x->string, "grouped") ? 3 : 9);
        n++;
    }
    CHECK_EQ_INT(n, 4);
    cJSON_Delete(j);
    free(js);
}

static double jnum(const cJSON *o, const char *path) {  // "a.b.c" (array items by index)
    char buf[200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok(buf, "."); k && o; k = strtok(NULL, "."))
        o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(k)) : cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(o) ? o->valuedouble : -1;
}

// --dry-run checks as a real run does, prints the plan (what would be scored, with the memory
// estimate) and writes nothing; its counts are those the real run then scores.
TEST(eval_dry_run_prints_the_plan) {
    const char *run = test_tiny_run();
    REQUIRE(run);
    char task[700], out[700], args[2400], p[800];
    snprintf(task, sizeof task, "%s/dry-grouped.jsonl", test_tmpdir());
    snprintf(out, sizeof out, "%s/ev-dry", test_tmpdir());
    grouped_task(task);
    snprintf(args, sizeof args, "eval %s --tasks %s,'shards:%s/val-*.shard' --limit 2 --out %s --threads 1", run, task,
             test_tiny_data(), out);
    char *o = NULL, *e = NULL;
    CHECK_EQ_INT(aoe_run(&o, &e, "%s --dry-run", args), 0);
    CHECK(!is_directory(out));  // nothing written
    CHECK_STR_CONTAINS(e, "memory estimate: ");
    CHECK_STR_CONTAINS(e, "available: ");
    CHECK(!strstr(e, "acc_norm ="));
    cJSON *plan = cJSON_Parse(o);
    REQUIRE(plan);
    CHECK_EQ_INT((int)jnum(plan, "checkpoints.0.step"), 4);
    CHECK(jnum(plan, "checkpoints.0.memory_bytes") > 1e6);
    CHECK(jnum(plan, "checkpoints.0.params_total") > jnum(plan, "checkpoints.0.params_active"));
    snprintf(p, sizeof p, "%s/results.json", out);
    CHECK_STR_CONTAINS(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(plan, "checkpoints"), 0),
                                                                "results")), p);
    CHECK_EQ_INT((int)jnum(plan, "tasks.0.total"), 9);
    CHECK_EQ_INT((int)jnum(plan, "tasks.0.scored"), 6);  // 2 of each of the 3 sub-tasks
    CHECK_EQ_INT((int)jnum(plan, "tasks.0.sub_tasks"), 3);
    CHECK_EQ_INT((int)jnum(plan, "limit"), 2);
    double windows = jnum(plan, "checkpoints.0.shards_windows.shards.scored");
    CHECK_EQ_INT((int)windows, 2);
    CHECK(jnum(plan, "checkpoints.0.shards_windows.shards.total") >= 2);
    free(o); free(e);
    // the real run scores what the plan said
    CHECK_EQ_INT(aoe_run(&o, &e, "%s", args), 0);
    free(o); free(e);
    size_t len;
    char *js = file_exists(p) ? read_file(p, &len) : NULL;
    cJSON *res = js ? cJSON_Parse(js) : NULL;
    REQUIRE(res);
    CHECK_EQ_INT((int)jnum(res, "n-samples.dry-grouped.effective"), (int)jnum(plan, "tasks.0.scored"));
    CHECK_EQ_INT((int)jnum(res, "n-samples.shards.effective"), (int)windows);
    cJSON_Delete(res); cJSON_Delete(plan);
    free(js);
}

// `aoe eval A B --out X` writes X/<label>/results.json; `aoe report A B --eval X` uses each for
// the run that holds its checkpoint (nothing without --eval: those runs have no RUN/eval).
TEST(report_finds_multi_checkpoint_eval_results) {
    const char *run = test_tiny_run();
    REQUIRE(run);
    char run2[700], task[700], x[700], cmd[2400];
    snprintf(run2, sizeof run2, "%s/tinyrun-copy", test_tmpdir());
    snprintf(task, sizeof task, "%s/evrep/qa.jsonl", test_tmpdir());
    snprintf(x, sizeof x, "%s/evrep/X", test_tmpdir());
    snprintf(cmd, sizeof cmd, "rm -rf %s %s/evrep && mkdir -p %s/evrep && cp -r %s %s", run2, test_tmpdir(), test_tmpdir(), run, run2);
    REQUIRE(system(cmd) == 0);
    put_text(task, good_mc);
    char *o = NULL, *e = NULL;
    CHECK_EQ_INT(aoe_run(&o, &e, "eval %s %s --tasks %s --out %s --threads 1", run, run2, task, x), 0);
    free(o); free(e);
    CHECK_EQ_INT(aoe_run(&o, &e, "report --no-plots --out %s/evrep/r1 %s %s", test_tmpdir(), run, run2), 0);
    CHECK(!strstr(o, "| qa |"));
    free(o); free(e);
    CHECK_EQ_INT(aoe_run(&o, &e, "report --no-plots --out %s/evrep/r2 %s %s --eval %s", test_tmpdir(), run, run2, x), 0);
    CHECK_STR_CONTAINS(o, "| qa | avg |");
    free(o); free(e);
    char p[800];
    snprintf(p, sizeof p, "%s/evrep/r2/report.md", test_tmpdir());
    size_t len;
    char *md = file_exists(p) ? read_file(p, &len) : NULL;
    CHECK_STR_CONTAINS(md, "- tinyrun: eval results from `");
    CHECK_STR_CONTAINS(md, "tinyrun_ckpt-4/results.json`");
    CHECK_STR_CONTAINS(md, "- tinyrun-copy: eval results from `");
    CHECK_STR_CONTAINS(md, "tinyrun-copy_ckpt-4/results.json`");
    free(md);
    // an --eval directory whose results belong to none of the runs: said, not used
    CHECK_EQ_INT(aoe_run(&o, &e, "report --no-plots --out %s/evrep/r3 %s --eval %s", test_tmpdir(), run2, x), 0);
    CHECK_STR_CONTAINS(e, "tinyrun_ckpt-4/results.json: its checkpoint is in none of the run directories given; not used");
    free(o); free(e);
}

// aoe sample says why each sample stopped; --num-samples continues one RNG stream, so its first
// sample is the single-sample output.
TEST(sample_says_why_it_stopped_and_num_samples) {
    const char *run = test_tiny_run();
    REQUIRE(run);
    char *one = NULL, *three = NULL, *e = NULL;
    const char *opts = "--prompt 'the cat' --seed 5 --threads 1 --precision fp32";
    CHECK_EQ_INT(aoe_run(&one, &e, "sample %s %s --max-tokens 3", run, opts), 0);
    CHECK_STR_CONTAINS(e, "aoe sample: stopped after 3 tokens: --max-tokens 3 reached");
    free(e);
    CHECK_EQ_INT(aoe_run(&three, &e, "sample %s %s --max-tokens 3 --num-samples 3", run, opts), 0);
    CHECK_STR_CONTAINS(e, "aoe sample: sample 3/3: stopped after 3 tokens: --max-tokens 3 reached");
    CHECK_STR_CONTAINS(three, "=== sample 1/3 ===\n");
    CHECK_STR_CONTAINS(three, "=== sample 3/3 ===\n");
    if (one && three && strchr(three, '\n')) {
        const char *first = strchr(three, '\n') + 1;  // after the header
        CHECK(!strncmp(first, one, strlen(one)));
    }
    free(one); free(three); free(e);
    // A 4-step model is near uniform over ~300 tokens: at temperature 3 one of 3 samples of up to
    // 2000 tokens ends at <|endoftext|> except with probability about (1 - 1/300)^6000 = e^-20.
    CHECK_EQ_INT(aoe_run(NULL, &e, "sample %s %s --max-tokens 2000 --num-samples 3 --temperature 3", run, opts), 0);
    CHECK_STR_CONTAINS(e, "stopped at end-of-text after");
    free(e);
    CHECK_EQ_INT(aoe_run(NULL, &e, "sample %s --num-samples 0", run), 2);
    CHECK_STR_CONTAINS(e, "--num-samples: expected a count in [1, 100000], got '0'");
    free(e);
}

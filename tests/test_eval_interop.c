// test_eval_interop.c — eval outside the repository and its files for other tools: a registered
// task whose data is absent is reported "not available" and the other tasks still run; no cap on
// tasks; --log-samples; a non-finite model refused; every JSON written valid.
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "eval/results.h"
#include "test.h"
#include "test_eval_fixtures.h"
#include "util/common.h"
#include "util/json.h"

static const char *pair_jsonl = "{\"sentence_good\": \"The cat sat on the mat.\", \"sentence_bad\": \"The cat sat the on mat.\"}\n"
                                "{\"sentence_good\": \"The dog sat on the log.\", \"sentence_bad\": \"The dog on sat the log.\"}\n";

// A copy of the binary run from an empty directory has no data root holding piqa: piqa is
// reported with how to get it, the user's own task is still scored, exit 0.
TEST(eval_unavailable_task_reported_others_run) {
    char dir[400], ck[600], tok[600], cmd[3000], p[700];
    snprintf(dir, sizeof dir, "%s/eval_away", test_tmpdir());
    REQUIRE(eval_tiny_ckpt(dir, "dense", 3, ck, sizeof ck, tok, sizeof tok) == 0);
    snprintf(p, sizeof p, "%s/pairs.jsonl", dir);
    write_file_atomic(p, pair_jsonl, strlen(pair_jsonl));
    snprintf(cmd, sizeof cmd, "mkdir -p %s/bin && cp %s %s/bin/aoe", dir, aoe_bin(), dir);
    REQUIRE(system(cmd) == 0);
    char *out, *err;
    snprintf(cmd, sizeof cmd, "cd %s && ./bin/aoe eval %s --tasks piqa,pairs.jsonl --out res --threads 1", dir, ck);
    int rc = run_capture(cmd, &out, &err);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(err, "aoe eval: task piqa: not available: 'piqa/valid.jsonl' is under none of the data roots");
    CHECK_STR_CONTAINS(err, "--data-dir");
    CHECK_STR_CONTAINS(out, "| checkpoint | pairs (acc) | avg |");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "cd %s && ./bin/aoe eval %s --tasks piqa --out res2 --threads 1", dir, ck);
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);  // nothing left to run
    CHECK_STR_CONTAINS(err, "none of the tasks 'piqa' is available");
    free(out); free(err);
    // from the repository root every registered task is found in the shipped data/tasks
    snprintf(cmd, sizeof cmd, "%s eval --list-tasks", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 0);
    CHECK(!strstr(out, "not available"));  // every registered task ships in data/tasks
    free(out); free(err);
}

static char *slurp(const char *p) {
    size_t len;
    return file_exists(p) ? read_file(p, &len) : NULL;
}

// More than 300 tasks in one call, half of them perplexity documents (the old fixed 256-result
// array overflowed there): every result is written. Quick: one tiny item or document each.
TEST(eval_many_tasks_no_cap) {
    char dir[400], ck[600], tok[600], p[700];
    snprintf(dir, sizeof dir, "%s/eval_many", test_tmpdir());
    REQUIRE(eval_tiny_ckpt(dir, "dense", 3, ck, sizeof ck, tok, sizeof tok) == 0);
    enum { N = 301 };
    Buf cmd = {0};  // relative names, run from dir: the list stays a few KB
    char bin[4096];
    REQUIRE(realpath(aoe_bin(), bin));
    bprintf(&cmd, "cd %s && %s eval %s --out res --threads 1 --tasks ", dir, bin, ck);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, i % 2 ? "t%03d.jsonl" : "d%03d.txt", i);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        if (i % 2) write_file_atomic(p, pair_jsonl, strlen(pair_jsonl));
        else write_file_atomic(p, "The cat sat on the mat.\n", 24);
        bprintf(&cmd, "%s%s", i ? "," : "", name);
    }
    char *out, *err;
    int rc = run_capture(cmd.s, &out, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %.2000s\n", err);
    free(out); free(err); free(cmd.s);
    snprintf(p, sizeof p, "%s/res/results.json", dir);
    char *js = slurp(p);
    REQUIRE(js);
    cJSON *j = cJSON_Parse(js);
    REQUIRE(j);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")), N);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "results"), "d300") != NULL);
    CHECK(!strstr(js, "(null)"));
    cJSON_Delete(j);
    free(js);
}

// --log-samples: one line per item beside results.json, lm-eval's fields, per-choice
// [loglikelihood, is_greedy] in log space; the per-sample acc averages to the task's acc. A task
// "group" with invalid UTF-8 still gives valid JSON (U+FFFD) in results.json and the samples.
TEST(eval_log_samples_shape) {
    char dir[400], ck[600], tok[600], p[700];
    snprintf(dir, sizeof dir, "%s/eval_samples", test_tmpdir());
    REQUIRE(eval_tiny_ckpt(dir, "moe", 3, ck, sizeof ck, tok, sizeof tok) == 0);
    const char *mc =
        "{\"query\": \"The cat sat on the\", \"choices\": [\"mat\", \"tree\", \"sun\"], \"gold\": 0, \"group\": \"ok\"}\n"
        "{\"query\": \"Water flows from the\", \"choices\": [\"spout\", \"bird\"], \"gold\": 0, \"group\": \"bad\xff\xfe\"}\n"
        "{\"query\": \"He went to the\", \"choices\": [\"store\", \"snow\"], \"gold\": 1, \"group\": \"ok\"}\n";
    snprintf(p, sizeof p, "%s/mc.jsonl", dir);
    write_file_atomic(p, mc, strlen(mc));
    char *out, *err;
    int rc = aoe_run(&out, &err, "eval %s --tasks %s --out %s/res --threads 1 --log-samples", ck, p, dir);
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    snprintf(p, sizeof p, "%s/res/results.json", dir);
    char *js = slurp(p);
    REQUIRE(js);
    CHECK(json_utf8_valid(js));
    cJSON *res = cJSON_Parse(js);
    REQUIRE(res);
    double acc = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "results"), "mc"), "acc,none")->valuedouble;
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "results"), "mc_bad\xef\xbf\xbd\xef\xbf\xbd") != NULL);
    cJSON_Delete(res);
    free(js);
    snprintf(p, sizeof p, "%s/res/samples_mc.jsonl", dir);
    char *text = slurp(p);
    REQUIRE(text);
    CHECK(json_utf8_valid(text));
    int lines = 0;
    double acc_sum = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        cJSON *s = cJSON_Parse(line);
        REQUIRE(s);
        CHECK_EQ_INT(cJSON_GetObjectItem(s, "doc_id")->valueint, lines);
        cJSON *args = cJSON_GetObjectItem(s, "arguments"), *fr = cJSON_GetObjectItem(s, "filtered_resps");
        int nch = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "doc"), "choices"));
        CHECK_EQ_INT(cJSON_GetArraySize(args), nch);
        CHECK_EQ_INT(cJSON_GetArraySize(fr), nch);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(s, "resps")), nch);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(s, "token_ids")), nch);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetArrayItem(args, 0)), 2);  // (context, continuation)
        CHECK(cJSON_GetArrayItem(cJSON_GetArrayItem(args, 0), 1)->valuestring[0] == ' ');
        int best = 0;
        for (int c = 0; c < nch; c++) {
            cJSON *pair = cJSON_GetArrayItem(fr, c);
            double ll = cJSON_GetArrayItem(pair, 0)->valuedouble;
            CHECK(cJSON_IsNumber(cJSON_GetArrayItem(pair, 0)) && ll < 0 && isfinite(ll));
            CHECK(cJSON_IsBool(cJSON_GetArrayItem(pair, 1)));
            if (ll > cJSON_GetArrayItem(cJSON_GetArrayItem(fr, best), 0)->valuedouble) best = c;
        }
        int target = cJSON_GetObjectItem(s, "target")->valueint;
        CHECK_EQ_INT((int)cJSON_GetObjectItem(s, "acc")->valuedouble, best == target);
        acc_sum += cJSON_GetObjectItem(s, "acc")->valuedouble;
        cJSON_Delete(s);
    }
    CHECK_EQ_INT(lines, 3);
    CHECK_NEAR(acc_sum / 3, acc, 1e-12);
    free(text);
}

// A model whose log-likelihoods are not finite is refused with one line and exit 2.
TEST(eval_refuses_nonfinite_model) {
    char dir[300], ck[600], tok[480], p[700];
    snprintf(dir, sizeof dir, "%s/eval_nan", test_tmpdir());
    mkdir_p(dir);
    Tokenizer *tk = eval_tiny_tok(300);
    snprintf(tok, sizeof tok, "%s/tok.bpe", dir);
    tok_save(tk, tok);
    Model *m = eval_tiny_model("dense", tok_vocab_size(tk), 64, 1);
    snprintf(m->cfg.tokenizer, sizeof m->cfg.tokenizer, "%s", tok);
    const TensorInfo *ti = params_find(&m->P, "final_norm");
    REQUIRE(ti);
    m->P.w[ti->off] = NAN;  // what a diverged run leaves
    CkptMeta meta = {0};
    ckpt_meta_put_i64(&meta, "step", 1);
    ckpt_meta_put_u64(&meta, "tok_hash", tok_hash(tk));
    snprintf(ck, sizeof ck, "%s/ckpt-1.aoec", dir);
    char err1[256];
    REQUIRE(ckpt_save(ck, m, NULL, &meta, 0, err1, sizeof err1) == 0);
    model_free(m);
    tok_free(tk);
    snprintf(p, sizeof p, "%s/pairs.jsonl", dir);
    write_file_atomic(p, pair_jsonl, strlen(pair_jsonl));
    char *out, *err;
    CHECK_EQ_INT(aoe_run(&out, &err, "eval %s --tasks %s --out %s/res --threads 1", ck, p, dir), 2);
    CHECK_STR_CONTAINS(err, "log-likelihoods are not finite (task pairs); refusing to score it");
    free(out); free(err);
    snprintf(p, sizeof p, "%s/res/results.json", dir);
    CHECK(!file_exists(p));
}

// The JSON writers' helpers: UTF-8 repair, non-finite numbers as strings, an overflowing
// perplexity in results.json as "inf" (not null).
TEST(json_writer_valid_utf8_and_nonfinite) {
    CHECK(json_utf8_valid("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    const char *bad[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "a\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(!json_utf8_valid(bad[i]));
        char *f = json_utf8_fix(bad[i]);
        CHECK(json_utf8_valid(f));
        CHECK_STR_CONTAINS(f, "\xef\xbf\xbd");
        free(f);
    }
    char buf[40];
    CHECK(!strcmp(json_fmt(buf, sizeof buf, "%.3f", INFINITY), "\"inf\""));
    CHECK(!strcmp(json_fmt(buf, sizeof buf, "%.3f", NAN), "\"nan\""));
    CHECK(!strcmp(json_fmt(buf, sizeof buf, "%.3f", 1.5), "1.500"));
    TaskResult r = {0};
    snprintf(r.task, sizeof r.task, "big");
    r.kind = TK_PPL;
    r.main_metric = "word_perplexity";
    metrics_ppl(&r, 1e6, 10, 100, 50);  // exp(1e5): overflows a double
    CkptResults c = {.path = "x.aoec", .label = "x", .file_hash = 1, .tok_hash = 2, .step = 3, .params_total = 1e6,
                     .params_active = 1e6, .res = &r, .n_res = 1, .seconds = 1.0};
    EvalSettings s = {"big", 0, 0, 2048, 1, 1234, NULL};
    char *js = results_json(&c, &s);
    cJSON *j = cJSON_Parse(js);
    REQUIRE(j);
    cJSON *wp = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "results"), "big"), "word_perplexity,none");
    CHECK(cJSON_IsString(wp) && !strcmp(wp->valuestring, "inf"));
    cJSON *bpb = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "results"), "big"), "bits_per_byte,none");
    CHECK(cJSON_IsNumber(bpb));  // log-space metrics stay numbers
    cJSON_Delete(j);
    free(js);
}

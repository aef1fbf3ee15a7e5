// test_eval.c — evaluation against brute force: the scorer's (bucketed, batched) log-likelihoods
// and greedy flags equal a per-sequence full-length forward summed by hand; a whole task's acc /
// acc_norm equal the brute-force argmax; rolling perplexity equals lm-eval's windows done by hand.
// Metrics on hand-made scores with known answers, task-file errors (file:line, exit 2), every
// report field, and the CLI end to end on a tiny checkpoint (including a refused tokenizer).
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "eval/eval_task.h"
#include "eval/results.h"
#include "model/kernels.h"
#include "model/model.h"
#include "test.h"
#include "test_eval_fixtures.h"
#include "util/common.h"

// Brute force: one sequence, full-length model, B = 1; sum of log p(target) over the last ncont
// positions read from the probability rows; greedy = argmax at each of them.
static double brute_ll(Model *m, const int32_t *tok, int n, int ncont, int *greedy) {
    int S = m->S;
    int32_t *x = calloc(S, sizeof(int32_t)), *y = malloc(sizeof(int32_t) * S);
    for (int t = 0; t < S; t++) y[t] = -1;
    for (int t = 0; t < n - 1; t++) x[t] = tok[t];
    model_forward(m, x, y, 1, S, NULL, 0, NULL);
    double ll = 0;
    *greedy = 1;
    for (int t = n - 1 - ncont; t < n - 1; t++) {
        const float *p = m->logits + (size_t)t * m->V;
        ll += log((double)p[tok[t + 1]]);
        int b = 0;
        for (int v = 1; v < m->V; v++)
            if (p[v] > p[b]) b = v;
        if (b != tok[t + 1]) *greedy = 0;
    }
    free(x); free(y);
    return ll;
}

static void scorer_vs_brute(const char *ffn) {
    kernels_init(2);
    int V = 97, S = 80;
    Model *m = eval_tiny_model(ffn, V, S, 1);
    Rng r;
    rng_seed(&r, 3);
    enum { N = 9 };
    int lens[N] = {2, 5, 17, 31, 33, 47, 64, 65, 81}, nc[N] = {1, 2, 5, 10, 1, 20, 63, 3, 80};
    Seq seqs[N];
    int32_t *toks[N];
    for (int i = 0; i < N; i++) {
        toks[i] = malloc(sizeof(int32_t) * lens[i]);
        for (int t = 0; t < lens[i]; t++) toks[i][t] = (int32_t)rng_below(&r, V);
        seqs[i] = (Seq){toks[i], lens[i], nc[i]};
    }
    // make one greedy sequence: feed the model its own argmax
    {
        int32_t *g = toks[2];
        for (int t = 12; t < lens[2]; t++) {
            int32_t x[80] = {0}, y[80];
            for (int k = 0; k < S; k++) y[k] = -1;
            memcpy(x, g, sizeof(int32_t) * t);
            model_forward(m, x, y, 1, S, NULL, 0, NULL);
            const float *p = m->logits + (size_t)(t - 1) * V;
            int b = 0;
            for (int v = 1; v < V; v++)
                if (p[v] > p[b]) b = v;
            g[t] = b;
        }
    }
    Scorer *sc = scorer_new(m, 256);  // 3 sequences of 80, or 5 of 48, 15 of 17, ...
    SeqScore out[N];
    scorer_run(sc, seqs, N, out);
    for (int i = 0; i < N; i++) {
        int greedy;
        double ll = brute_ll(m, toks[i], lens[i], nc[i], &greedy);
        CHECK_NEAR(out[i].ll, ll, 1e-4 * (1 + fabs(ll)));
        CHECK_EQ_INT(out[i].greedy, greedy);
    }
    CHECK_EQ_INT(out[2].greedy, 1);
    scorer_free(sc);
    for (int i = 0; i < N; i++) free(toks[i]);
    model_free(m);
}

TEST(eval_scorer_matches_bruteforce_dense) { scorer_vs_brute("dense"); }
TEST(eval_scorer_matches_bruteforce_moe) { scorer_vs_brute("moe"); }
TEST(eval_scorer_matches_bruteforce_aoe) { scorer_vs_brute("aoe"); }

TEST(eval_encode_pair_lm_eval_convention) {
    Tokenizer *tk = eval_tiny_tok(300);
    int n, nc;
    // trailing space of the context moves to the continuation
    int32_t *s = encode_pair(tk, "The cat sat on the ", "mat.", 1000, &n, &nc);
    CHECK_EQ_INT(s[0], tok_eot(tk));
    size_t len;
    char *cont = tok_decode(tk, s + n - nc, nc, &len);
    CHECK(!strcmp(cont, " mat."));
    char *ctx = tok_decode(tk, s + 1, n - 1 - nc, &len);
    CHECK(!strcmp(ctx, "The cat sat on the"));
    free(cont); free(ctx); free(s);
    // left truncation keeps the continuation and the end of the context
    int n2, nc2;
    int32_t *full = encode_pair(tk, "The dog sat on the log. A bird sang in the tree", " and the cat", 1000, &n, &nc);
    int32_t *tr = encode_pair(tk, "The dog sat on the log. A bird sang in the tree", " and the cat", 6, &n2, &nc2);
    CHECK_EQ_INT(n2, 6);
    CHECK_EQ_INT(nc2, nc < 5 ? nc : 5);
    CHECK(!memcmp(tr, full + n - 6, sizeof(int32_t) * 6));
    free(full); free(tr);
    tok_free(tk);
}

TEST(eval_metrics_known_answers) {
    // 4 items: argmax correct on items 0 and 1; length normalisation flips items 1 and 2
    double l0[] = {-1, -5, -6}, l1[] = {-4, -5}, l2[] = {-10, -9}, l3[] = {-2, -1};
    int c0[] = {3, 3, 3}, c1[] = {2, 20}, c2[] = {20, 2}, c3[] = {5, 5};
    const double *lls[] = {l0, l1, l2, l3};
    const int *cl[] = {c0, c1, c2, c3};
    int nopt[] = {3, 2, 2, 2}, gold[] = {0, 0, 0, 0};
    TaskResult r = {0};
    metrics_mc(&r, 4, nopt, lls, cl, gold, 1);
    const Metric *acc = result_metric(&r, "acc"), *an = result_metric(&r, "acc_norm");
    REQUIRE(acc && an);
    // acc: items 0 (-1 best) and 1 (-4 > -5) right, 2 and 3 wrong -> 0.5
    CHECK_NEAR(acc->value, 0.5, 1e-12);
    CHECK_NEAR(acc->stderr_, sqrt(0.5 * 0.5 / 3), 1e-12);
    // acc_norm: item0 -1/3 right; item1 -4/2=-2 vs -5/20=-0.25 wrong; item2 -10/20=-0.5 vs -4.5 right; item3 wrong
    CHECK_NEAR(an->value, 0.5, 1e-12);
    TaskResult r2 = {0};
    int g2[] = {0, 0, 1, 1};
    metrics_mc(&r2, 4, nopt, lls, cl, g2, 1);
    CHECK_NEAR(result_metric(&r2, "acc")->value, 1.0, 1e-12);  // every argmax right
    CHECK_NEAR(result_metric(&r2, "acc")->stderr_, 0.0, 1e-12);
    CHECK_NEAR(result_metric(&r2, "acc_norm")->value, 0.5, 1e-12);  // items 1 and 2 flip
    CHECK_NEAR(result_metric(&r2, "acc_norm")->stderr_, sqrt(0.5 * 0.5 / 3), 1e-12);
    // cloze: perplexity = exp(mean NLL), acc = greedy
    double ll[] = {-1, -2, -3};
    int gr[] = {1, 0, 1};
    TaskResult r3 = {0};
    metrics_cloze(&r3, 3, ll, gr);
    CHECK_NEAR(result_metric(&r3, "perplexity")->value, exp(2.0), 1e-9);
    CHECK_NEAR(result_metric(&r3, "acc")->value, 2.0 / 3, 1e-12);
    CHECK_NEAR(result_metric(&r3, "acc")->stderr_, sqrt((2.0 / 3) * (1.0 / 3) / 2), 1e-12);
    // perplexity metrics
    TaskResult r4 = {0};
    metrics_ppl(&r4, 100.0, 20, 80, 40);
    CHECK_NEAR(result_metric(&r4, "word_perplexity")->value, exp(5.0), 1e-9);
    CHECK_NEAR(result_metric(&r4, "byte_perplexity")->value, exp(1.25), 1e-9);
    CHECK_NEAR(result_metric(&r4, "bits_per_byte")->value, 1.25 / log(2.0), 1e-12);
    CHECK_NEAR(result_metric(&r4, "token_perplexity")->value, exp(2.5), 1e-9);
}

static const char *mc_jsonl =
    "{\"query\": \"Question: What does the cat sit on?\\nAnswer:\", \"choices\": [\"the mat\", \"the log\", \"a tree\"], \"gold\": 0}\n"
    "\n"
    "{\"query\": \"The faucet is on, therefore\", \"choices\": [\"water flows from the spout.\", \"the snow is cold.\"], \"gold\": 0}\n"
    "{\"context\": \"The sun is\", \"choices\": [\"hot\", \"cold and the dog sat on the log\"], \"gold\": 1}\n"
    "{\"query\": \"She poured milk in the\", \"choices\": [\"bowl\", \"store\"], \"gold\": \"store\"}\n";

static int ends_with_ctx(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

// Whole task through eval_task vs. the same prompts encoded and scored one by one on the
// full-length model.
TEST(eval_task_acc_matches_bruteforce) {
    kernels_init(2);
    Tokenizer *tk = eval_tiny_tok(320);
    Model *m = eval_tiny_model("dense", tok_vocab_size(tk), 64, 1);
    Task *t = task_parse_jsonl(mc_jsonl, strlen(mc_jsonl), "hand.jsonl");
    REQUIRE(t->n == 4 && t->kind == TK_MC);
    CHECK_EQ_INT(t->items[3].gold, 1);
    CHECK_EQ_INT(t->items[2].line, 4);
    for (int shots = 0; shots <= 2; shots += 2) {
        Scorer *sc = scorer_new(m, 128);
        TaskResult res[4];
        int got = eval_task(sc, tk, t, 0, shots, 1234, res, 4);
        REQUIRE(got == 1);
        int right = 0, right_n = 0;
        for (int i = 0; i < t->n; i++) {
            double best = -1e300, bestn = -1e300;
            int arg = 0, argn = 0;
            for (int j = 0; j < t->items[i].n_opts; j++) {
                char *ctx, *cont;
                build_request(t, i, j, shots, 1234, &ctx, &cont);
                CHECK(cont[0] == ' ' && !strcmp(cont + 1, t->items[i].opts[j]));
                if (shots == 0) CHECK(!strcmp(ctx, t->items[i].ctx));
                else CHECK(strstr(ctx, "\n\n") && ends_with_ctx(ctx, t->items[i].ctx));
                // independent encoding: [EOT] + enc(ctx) + (enc(ctx+cont) minus enc(ctx) prefix)
                size_t lc = strlen(ctx);
                char *whole = malloc(lc + strlen(cont) + 1);
                strcpy(whole, ctx); strcat(whole, cont);
                int nw, nc;
                int32_t *w = tok_encode(tk, whole, strlen(whole), &nw), *c = tok_encode(tk, ctx, lc, &nc);
                int n = 1 + nw;
                int32_t *seq = malloc(sizeof(int32_t) * n);
                seq[0] = tok_eot(tk);
                memcpy(seq + 1, w, sizeof(int32_t) * nw);
                int start = n > 65 ? n - 65 : 0;
                int gr;
                double ll = brute_ll(m, seq + start, n - start, nw - nc, &gr);
                if (ll > best) { best = ll; arg = j; }
                double nl = ll / (double)strlen(t->items[i].opts[j]);
                if (nl > bestn) { bestn = nl; argn = j; }
                free(whole); free(w); free(c); free(seq); free(ctx); free(cont);
            }
            right += arg == t->items[i].gold;
            right_n += argn == t->items[i].gold;
        }
        CHECK_NEAR(result_metric(&res[0], "acc")->value, right / 4.0, 1e-12);
        CHECK_NEAR(result_metric(&res[0], "acc_norm")->value, right_n / 4.0, 1e-12);
        CHECK_EQ_INT(res[0].n, 4);
        CHECK_EQ_INT(res[0].shots, shots);
        scorer_free(sc);
    }
    task_free(t);
    model_free(m);
    tok_free(tk);
}

// Rolling perplexity (lm-eval windows: first [EOT]+tok[0:S-1] -> tok[0:S], then disjoint windows
// of S predictions whose inputs are the S tokens before each target) against a hand loop.
TEST(eval_rolling_perplexity_matches_bruteforce) {
    kernels_init(2);
    Tokenizer *tk = eval_tiny_tok(300);
    int S = 32;
    Model *m = eval_tiny_model("dense", tok_vocab_size(tk), S, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/eval_doc.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs(eval_corpus, f);
    fclose(f);
    Task *t = task_load(path, NULL);
    REQUIRE(t->kind == TK_PPL && t->n_docs == 1);
    Scorer *sc = scorer_new(m, 256);
    TaskResult res[2];
    REQUIRE(eval_task(sc, tk, t, 0, 0, 1, res, 2) == 1);
    int nt;
    int32_t *ids = tok_encode(tk, eval_corpus, strlen(eval_corpus), &nt);
    REQUIRE(nt > 2 * S + 5);
    double nll = 0;
    int32_t win[33];
    for (int p0 = 0; p0 < nt; p0 += S) {
        int end = p0 + S < nt ? p0 + S : nt, gr;
        if (p0 == 0) {
            win[0] = tok_eot(tk);
            memcpy(win + 1, ids, sizeof(int32_t) * S);
            nll -= brute_ll(m, win, end + 1, end, &gr);
        } else {
            memcpy(win, ids + end - S - 1, sizeof(int32_t) * (S + 1));
            nll -= brute_ll(m, win, S + 1, end - p0, &gr);
        }
    }
    double bytes = strlen(eval_corpus), words = 1;
    for (const char *p = eval_corpus; *p; p++)
        if (*p == ' ' && p[1] && p[1] != ' ') words++;
    words += 1;  // trailing space: re.split gives a final empty piece
    CHECK_NEAR(result_metric(&res[0], "bits_per_byte")->value, nll / (log(2.0) * bytes), 1e-5);
    CHECK_NEAR(log(result_metric(&res[0], "word_perplexity")->value), nll / words, 1e-5);
    CHECK_NEAR(log(result_metric(&res[0], "token_perplexity")->value), nll / nt, 1e-5);
    free(ids);
    scorer_free(sc);
    task_free(t);
    model_free(m);
    tok_free(tk);
}

// Held-out shards: every loader window scored in full equals the brute-force sum.
TEST(eval_shard_perplexity_matches_bruteforce) {
    kernels_init(2);
    char dir[300], txt[400], cmd[1200], spec[400], tokp[400];
    snprintf(dir, sizeof dir, "%s/eval_shards", test_tmpdir());
    mkdir_p(dir);
    snprintf(txt, sizeof txt, "%s/c.txt", dir);
    FILE *f = fopen(txt, "w");
    for (int i = 0; i < 6; i++) fputs(eval_corpus, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s prepare -o %s/prep --vocab 300 --val-frac 0 %s", aoe_bin(), dir, txt);
    REQUIRE(run_capture(cmd, NULL, NULL) == 0);
    snprintf(spec, sizeof spec, "shards:%s/prep/train-*.shard", dir);
    snprintf(tokp, sizeof tokp, "%s/prep/tokenizer.bpe", dir);
    Tokenizer *tk = tok_load(tokp);
    int S = 32;
    Model *m = eval_tiny_model("dense", tok_vocab_size(tk), S, 1);
    Task *t = task_load(spec, NULL);
    Scorer *sc = scorer_new(m, 128);
    TaskResult res[1];
    REQUIRE(eval_task(sc, tk, t, 0, 0, 1, res, 1) == 1);
    char glob[400];
    snprintf(glob, sizeof glob, "%s/prep/train-*.shard", dir);
    Loader *L = loader_open(glob, S, 1, 0, 0, 0, 1);
    uint64_t nw = loader_total_windows(L);
    REQUIRE(nw > 2);
    double nll = 0;
    int32_t w[33];
    for (uint64_t g = 0; g < nw; g++) {
        int gr;
        loader_window(L, g, w);
        nll -= brute_ll(m, w, S + 1, S, &gr);
    }
    loader_close(L);
    CHECK_EQ_INT(res[0].n, (int)nw);
    CHECK_NEAR(log(result_metric(&res[0], "token_perplexity")->value), nll / (double)(nw * S), 1e-5);
    scorer_free(sc);
    task_free(t);
    model_free(m);
    tok_free(tk);
}

TEST(eval_wikitext_detokenizer) {
    char *d = wikitext_detokenize(" = Valkyria = \n The game 's 3 @,@ 000 units , and ( in Japan ) a @-@ b . \n");
    CHECK(!strcmp(d, " == Valkyria ==\nThe game's 3,000 units, and (in Japan) a-b. \n") ||
          strstr(d, "game's 3,000 units, and (in Japan) a-b."));
    CHECK_STR_CONTAINS(d, "(in Japan)");
    free(d);
}

static void write_tmp(const char *name, const char *text, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

TEST(eval_task_file_errors_name_file_and_line) {
    struct { const char *text, *expect; } cases[] = {
        {"{\"query\":\"a\",\"choices\":[\"x\",\"y\"],\"gold\":0}\n{\"query\":\"b\",\"choices\":[\"x\"],\"gold\":3}\n",
         ":2: \"gold\" is 3: expected the index of the right answer in \"choices\" (0 to 0) or the text of one of them"},
        {"{\"query\":\"a\",\"choices\":[\"x\",\"y\"],\"gold\":\"zz\"}\n",
         ":1: \"gold\" is \"zz\": expected the index of the right answer in \"choices\" (0 to 1) or the text of one of them"},
        {"{\"context_options\":[\"x\",\"y\"],\"continuation\":\"c\"}\n",
         ":1: no \"gold\": expected the index of the right answer in \"context_options\" (0 to 1)"},
        {"{\"query\":\"a\",\"choices\":[\"x\",\"y\"],\"gold\":0}\n\n{not json}\n", ":3: expected one JSON object"},
        {"{\"query\":\"a\",\"choices\":[\"x\",\"y\"],\"gold\":0}\n{\"context\":\"a\",\"continuation\":\"b\"}\n",
         ":2: expected a multiple-choice"},
        {"{\"query\":\"a\",\"choices\":[1,2],\"gold\":0}\n", ":1: expected \"choices\" to be a non-empty array of strings"},
        {"{\"foo\":1}\n", ":1: expected an object with"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512], cmd[1400], name[64];
        snprintf(name, sizeof name, "eval_bad%zu.jsonl", i);
        write_tmp(name, cases[i].text, path, sizeof path);
        snprintf(cmd, sizeof cmd, "%s eval /nonexistent.aoec --tasks %s", aoe_bin(), path);
        char *out, *err;
        int rc = run_capture(cmd, &out, &err);
        CHECK_EQ_INT(rc, 2);
        CHECK_STR_CONTAINS(err, name);
        CHECK_STR_CONTAINS(err, cases[i].expect);
        free(out); free(err);
    }
    char *out, *err;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s eval x.aoec --tasks no_such_task", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "unknown task 'no_such_task'");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s eval x.aoec --frobnicate 1", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "usage: aoe eval");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s sample --help", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "usage: aoe sample");
    free(out); free(err);
}

TEST(eval_report_fields) {
    TaskResult res[3] = {0};
    snprintf(res[0].task, sizeof res[0].task, "piqa");
    res[0].kind = TK_MC; res[0].n = 10; res[0].n_original = 1838; res[0].main_metric = "acc_norm";
    double l0[] = {-1, -2}, *lls[10];
    int c0[] = {1, 1}, *cl[10], nopt[10], gold[10];
    for (int i = 0; i < 10; i++) { lls[i] = l0; cl[i] = c0; nopt[i] = 2; gold[i] = i < 7 ? 0 : 1; }
    metrics_mc(&res[0], 10, nopt, (const double *const *)lls, (const int *const *)cl, gold, 1);
    snprintf(res[1].task, sizeof res[1].task, "blimp");
    res[1].kind = TK_PAIR; res[1].main_metric = "acc";
    metrics_mc(&res[1], 10, nopt, (const double *const *)lls, (const int *const *)cl, gold, 0);
    snprintf(res[2].task, sizeof res[2].task, "blimp_adjunct_island");
    res[2].kind = TK_PAIR; res[2].main_metric = "acc"; res[2].subtask = 1;
    metrics_mc(&res[2], 10, nopt, (const double *const *)lls, (const int *const *)cl, gold, 0);
    CkptResults c = {"runs/a/ckpt-1.aoec", "a/ckpt-1", 0x1234, 0x5678, 1, 1e6, 5e5, NULL, res, 3, 2.0, NULL};
    EvalSettings s = {"piqa,blimp", 10, 0, 2048, 2, 1234, NULL};
    char *js = results_json(&c, &s);
    cJSON *j = cJSON_Parse(js);
    REQUIRE(j);
    cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "results"), "piqa");
    REQUIRE(r);
    const char *keys[] = {"acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none", "alias"};
    for (int i = 0; i < 5; i++) CHECK(cJSON_GetObjectItem(r, keys[i]) != NULL);
    CHECK_NEAR(cJSON_GetObjectItem(r, "acc,none")->valuedouble, 0.7, 1e-12);
    CHECK_NEAR(cJSON_GetObjectItem(r, "acc_stderr,none")->valuedouble, sqrt(0.7 * 0.3 / 9), 1e-12);
    const char *top[] = {"results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                         "n-samples", "config", "git_hash", "date", "checkpoint", "model_name",
                         "total_evaluation_time_seconds"};
    for (size_t i = 0; i < sizeof top / sizeof *top; i++) {
        if (!cJSON_GetObjectItem(j, top[i])) fprintf(stderr, "  missing %s\n", top[i]);
        CHECK(cJSON_GetObjectItem(j, top[i]) != NULL);
    }
    cJSON *ns = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "n-samples"), "piqa");
    CHECK_EQ_INT(cJSON_GetObjectItem(ns, "original")->valueint, 1838);
    CHECK_EQ_INT(cJSON_GetObjectItem(ns, "effective")->valueint, 10);
    CHECK(cJSON_IsArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "group_subtasks"), "blimp")));
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "checkpoint"), "file_hash")->valuestring, "0000000000001234"));
    CHECK_EQ_INT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "config"), "limit")->valueint, 10);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "higher_is_better"), "piqa"), "acc_norm")));
    cJSON_Delete(j);
    free(js);
    CkptResults two[2] = {c, c};
    two[1].label = "b/ckpt-2";
    char *md = results_markdown(two, 2, &s);
    CHECK_STR_CONTAINS(md, "| checkpoint | piqa (acc_norm) | blimp (acc) | avg |");
    CHECK_STR_CONTAINS(md, "| a/ckpt-1 | 70.00 | 70.00 | 70.00 |");
    CHECK_STR_CONTAINS(md, "| b/ckpt-2 |");
    CHECK_STR_CONTAINS(md, "70.00 ± 15.28");
    free(md);
}

// CLI end to end: tiny checkpoint + its tokenizer -> results.json/report.md; a different
// tokenizer is refused; sample prints text.
TEST(eval_cli_end_to_end) {
    kernels_init(2);
    char dir[256], tokp[400], tok2[400], ck[400], task[512], cmd[3000];
    snprintf(dir, sizeof dir, "%s/eval_cli", test_tmpdir());
    REQUIRE(eval_tiny_ckpt(dir, "dense", 7, ck, sizeof ck, tokp, sizeof tokp) == 0);
    Tokenizer *tk2 = eval_tiny_tok(280);
    snprintf(tok2, sizeof tok2, "%s/other.bpe", dir);
    tok_save(tk2, tok2);
    write_tmp("eval_cli_task.jsonl", mc_jsonl, task, sizeof task);
    snprintf(cmd, sizeof cmd, "%s eval %s %s --tasks %s,%s --out %s/out --threads 1", aoe_bin(), ck, ck, task, task, dir);
    char *out, *er;
    int rc = run_capture(cmd, &out, &er);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "%s\n", er);
    CHECK_STR_CONTAINS(out, "| checkpoint | eval_cli_task (acc_norm) | avg |");
    free(out); free(er);
    char p[1200];
    snprintf(p, sizeof p, "%s/out/report.md", dir);
    CHECK(file_exists(p));
    snprintf(p, sizeof p, "%s/out/eval_cli_ckpt-7/results.json", dir);
    CHECK(file_exists(p));
    if (file_exists(p)) {
        size_t len;
        char *js = read_file(p, &len);
        cJSON *j = cJSON_Parse(js);
        cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "results"), "eval_cli_task");
        CHECK(r && cJSON_GetObjectItem(r, "acc_norm_stderr,none"));
        cJSON *ckj = cJSON_GetObjectItem(j, "checkpoint");
        CHECK(ckj && cJSON_GetObjectItem(ckj, "step")->valueint == 7);
        cJSON_Delete(j);
        free(js);
    }
    // --limit counts per BLiMP paradigm (as lm-eval limits each blimp_* task): every paradigm scored
    snprintf(cmd, sizeof cmd, "%s eval %s --tasks blimp --limit 2 --data-dir data/tasks --out %s/out3 --threads 1", aoe_bin(), ck, dir);
    CHECK_EQ_INT(run_capture(cmd, &out, &er), 0);
    free(out); free(er);
    snprintf(p, sizeof p, "%s/out3/results.json", dir);  // one checkpoint: no sub-directory
    if (file_exists(p)) {
        size_t len;
        char *js = read_file(p, &len);
        cJSON *j = cJSON_Parse(js), *ns = cJSON_GetObjectItem(j, "n-samples"), *e;
        int subtasks = 0;
        cJSON_ArrayForEach(e, ns) {
            int eff = cJSON_GetObjectItem(e, "effective")->valueint;
            if (strcmp(e->string, "blimp")) { subtasks++; CHECK_EQ_INT(eff, 2); }
            else CHECK_EQ_INT(eff, 2 * 67);
        }
        CHECK_EQ_INT(subtasks, 67);
        cJSON_Delete(j);
        free(js);
    } else CHECK(!"results.json for --tasks blimp --limit 2");
    // a tokenizer that is not the checkpoint's is refused
    snprintf(cmd, sizeof cmd, "%s eval %s --tasks %s --tokenizer %s --out %s/out2 --threads 1", aoe_bin(), ck, task, tok2, dir);
    CHECK_EQ_INT(run_capture(cmd, &out, &er), 2);
    CHECK_STR_CONTAINS(er, "is not the one this checkpoint was trained with");
    free(out); free(er);
    snprintf(cmd, sizeof cmd, "%s sample %s --prompt 'The cat' --max-tokens 5 --top-k 5 --temperature 0.8 --seed 3 --threads 1", aoe_bin(), ck);
    CHECK_EQ_INT(run_capture(cmd, &out, &er), 0);
    CHECK(!strncmp(out, "The cat", 7));
    char *again;
    run_capture(cmd, &again, NULL);
    CHECK(!strcmp(out, again));  // seeded
    free(again); free(out); free(er);
    tok_free(tk2);
}

// The registered tasks load from the shipped data/tasks (run from the repository root) with the
// item counts of the MANIFEST and lm-eval's prompts.
TEST(eval_registered_tasks_load) {
    REQUIRE(is_directory("data/tasks"));  // the runner starts in the repository root
    struct { const char *name; int n; TaskKind kind; const char *ctx_end; } want[] = {
        {"arc_easy", 2376, TK_MC, "\nAnswer:"}, {"arc_challenge", 1172, TK_MC, "\nAnswer:"},
        {"piqa", 1838, TK_MC, "\nAnswer:"}, {"winogrande", 1267, TK_PARTIAL, NULL},
        {"boolq", 3270, TK_MC, "?\nAnswer:"}, {"lambada_openai", 5153, TK_CLOZE, NULL},
        {"hellaswag", 10042, TK_MC, NULL}, {"blimp", 67000, TK_PAIR, NULL},
        {"copa", 100, TK_MC, " therefore"}, {"openbookqa", 500, TK_MC, NULL},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        Task *t = task_load(want[i].name, "data/tasks");
        CHECK_EQ_INT(t->n, want[i].n);
        CHECK_EQ_INT(t->kind, want[i].kind);
        if (want[i].ctx_end) CHECK(ends_with_ctx(t->items[0].ctx, want[i].ctx_end));
        task_free(t);
    }
    Task *t = task_load("piqa", "data/tasks");
    CHECK(!strncmp(t->items[0].ctx, "Question: How do I ready a guinea pig cage", 42));
    CHECK_EQ_INT(t->items[0].gold, 0);
    task_free(t);
    t = task_load("boolq", "data/tasks");
    CHECK(strncmp(t->items[0].ctx, "Passage: ", 9) != 0);
    task_free(t);
    t = task_load("hellaswag", "data/tasks");
    CHECK(!strcmp(t->items[0].ctx, "Roof shingle removal: A man is sitting on a roof. he"));
    CHECK(!strcmp(t->items[0].opts[3], "starts pulling up roofing on a roof."));
    CHECK_EQ_INT(t->items[0].gold, 3);
    task_free(t);
    t = task_load("lambada_openai", "data/tasks");
    CHECK(!strcmp(t->items[0].cont, "signs"));
    task_free(t);
    t = task_load("blimp", "data/tasks");
    CHECK_EQ_INT(t->n_groups, 67);
    task_free(t);
    t = task_load("blimp_adjunct_island", "data/tasks");
    CHECK_EQ_INT(t->n, 1000);
    CHECK_EQ_INT(t->n_groups, 0);
    task_free(t);
    t = task_load("wikitext", "data/tasks");
    CHECK(t->kind == TK_PPL && t->n_docs > 50);
    CHECK_STR_CONTAINS(t->docs[0], " = Robert <unk> =\n");
    task_free(t);
    t = task_load("copa", NULL);
    CHECK(!strcmp(t->items[0].ctx, "The man turned on the faucet therefore"));
    task_free(t);
}

// test_analyze.c — `aoe analyze`: the ERC analysis against a naive recomputation from the
// checkpoint's own tensors, the streamed Calinski–Harabasz index against a two-pass one, the
// clusters CLI on a trained model, and bad input (one line, exit 2).
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "ckpt/ckpt.h"
#include "eval/analyze.h"
#include "test.h"

// A tiny MoE / AoE run (4 experts, 2 layers) trained for a few steps into test_tmpdir()/<name>.
static const char *tiny_run(const char *name, const char *ffn) {
    static char dir[4][700];
    static int k;
    char *dst = dir[k++ % 4], cfg[800], cmd[4096], *err = NULL;
    const char *d = test_tiny_data();
    snprintf(dst, 700, "%s/%s", test_tmpdir(), name);
    snprintf(cfg, sizeof cfg, "%s/%s.json", test_tmpdir(), name);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "{\"model\": {\"d_model\": 32, \"n_layer\": 2, \"n_head\": 2, \"seq_len\": 32, \"ffn\": %s},\n"
               " \"train\": {\"steps\": 6, \"batch_size\": 4, \"log_every\": 3, \"eval_every\": 0, \"warmup\": 2, \"precision\": \"fp32\"},\n"
               " \"data\": {\"train\": \"%s/train-*.shard\", \"val\": \"%s/val-*.shard\", \"tokenizer\": \"%s/tokenizer.bpe\"},\n"
               " \"run\": {\"out\": \"%s\"}}\n", ffn, d, d, d, dst);
    fclose(f);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s train %s", aoe_bin(), cfg);
    if (run_capture(cmd, NULL, &err)) fprintf(stderr, "  train %s: %s\n", name, err);
    free(err);
    return dst;
}

static double num(const cJSON *a, int i) { return cJSON_GetArrayItem(a, i)->valuedouble; }

TEST(analyze_erc_matches_naive_recomputation) {
    const char *run = tiny_run("an-moe", "{\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24}");
    char js[800], *out = NULL, *err = NULL;
    snprintf(js, sizeof js, "%s/erc.json", test_tmpdir());
    int rc = aoe_run(&out, &err, "analyze erc %s --alpha 0.5,1,3 --matrix --out %s", run, js);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK_STR_CONTAINS(out, "| 1 |");
    CHECK_STR_CONTAINS(out, "M of layer 1");
    free(out); free(err);
    size_t n;
    char *text = read_file(js, &n);
    cJSON *j = cJSON_Parse(text);
    REQUIRE(j);
    char *ck = ckpt_latest(run);
    CkptMeta meta;
    Model *m = ckpt_load_model(ck, 1, &meta);
    const cJSON *layers = cJSON_GetObjectItem(j, "layers");
    CHECK_EQ_INT(cJSON_GetArraySize(layers), 2);
    const double al[3] = {0.5, 1, 3};
    for (int l = 0; l < 2; l++) {
        const cJSON *o = cJSON_GetArrayItem(layers, l);
        char nm[64];
        snprintf(nm, sizeof nm, "layers.%d.ffn.router", l);
        const float *R = m->P.w + params_find(&m->P, nm)->off;  // [d,4]
        snprintf(nm, sizeof nm, "layers.%d.ffn.w_gate", l);
        const float *Wg = m->P.w + params_find(&m->P, nm)->off;  // [4,d,24]
        int d = 32, D = 24, E = 4;
        double M[4][4], epsm = 0;
        for (int i = 0; i < E; i++) {
            double ni = 0, best = INFINITY;
            for (int k = 0; k < d; k++) ni += (double)R[k * E + i] * R[k * E + i];
            for (int q = 0; q < E; q++) {
                if (q == i) continue;
                double s = 0;
                for (int k = 0; k < d; k++) s += ((double)R[k * E + i] - R[k * E + q]) * ((double)R[k * E + i] - R[k * E + q]);
                best = fmin(best, s);
            }
            double eps = sqrt(best) / (2 * sqrt(ni));
            CHECK_NEAR(num(cJSON_GetObjectItem(o, "eps"), i), eps, 1e-6 * eps);
            epsm += eps / E;
            for (int q = 0; q < E; q++) {
                double s = 0;
                for (int c = 0; c < D; c++) {
                    double a = 0;
                    for (int k = 0; k < d; k++) a += (double)R[k * E + i] * Wg[(size_t)q * d * D + k * D + c];
                    s += a * a;
                }
                M[i][q] = sqrt(s);
                CHECK_NEAR(num(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "M"), i), q), M[i][q], 1e-6 * M[i][q]);
            }
        }
        CHECK_NEAR(cJSON_GetObjectItem(o, "eps_mean")->valuedouble, epsm, 1e-6 * epsm);
        for (int a = 0; a < 3; a++) {
            double L = 0;
            for (int i = 0; i < E; i++)
                for (int q = 0; q < E; q++)
                    if (q != i) L += fmax(M[i][q] - al[a] * M[i][i], 0) + fmax(M[q][i] - al[a] * M[i][i], 0);
            CHECK_NEAR(num(cJSON_GetObjectItem(o, "loss"), a), L / 16, 1e-6 * (L / 16) + 1e-12);
        }
    }
    model_free(m);
    free(ck);
    cJSON_Delete(j);
    free(text);
}

TEST(analyze_bad_input_is_one_line_exit_2) {
    const char *aoe = tiny_run("an-aoe", "{\"type\": \"aoe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24, \"d_low\": 8}");
    char *err = NULL;
    CHECK_EQ_INT(aoe_run(NULL, &err, "analyze erc %s", aoe), 2);
    CHECK_STR_CONTAINS(err, "has no router");
    free(err);
    struct { const char *args, *msg; } bad[] = {
        {"analyze erc %s --alpha 1,,2", "--alpha: entry 2"},
        {"analyze erc %s --alpha -1", "expected a number in [0, 100]"},
        {"analyze clusters %s", "--text FILE is required"},
        {"analyze clusters %s --text /nonexistent/file.txt", "/nonexistent/file.txt"},
        {"analyze clusters %s --text README.md --max-tokens 1", "--max-tokens"},
        {"analyze nosuch %s", "unknown analysis 'nosuch'"},
        {"analyze erc %s/nothing-here", "no such checkpoint"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        CHECK_EQ_INT(aoe_run(NULL, &err, bad[i].args, aoe), 2);
        CHECK_STR_CONTAINS(err, bad[i].msg);
        free(err);
    }
    char *out = NULL;
    CHECK_EQ_INT(aoe_run(&out, NULL, "analyze --help"), 0);
    CHECK_STR_CONTAINS(out, "erc ");
    CHECK_STR_CONTAINS(out, "clusters ");
    free(out);
}

// The streamed index equals the textbook two-pass one on random clustered points.
TEST(analyze_ch_streamed_matches_two_pass) {
    int N = 300, d = 5, n = 4;
    float *x = test_randn((long)N * d, 1.0f, 7);
    int *lab = malloc(sizeof(int) * N);
    ClusterAcc *a = cluster_acc_new(n, d);
    for (int t = 0; t < N; t++) {
        lab[t] = t % 7 == 6 ? -1 : t % 3;  // cluster 3 stays empty; every 7th point unrouted
        if (lab[t] >= 0) x[t * d] += 2.0f * lab[t];  // separate the clusters along axis 0
        cluster_acc_add(a, x + t * d, lab[t]);
    }
    double c[5] = {0}, ci[4][5] = {{0}}, B = 0, W = 0;
    long cnt[4] = {0}, Nc = 0;
    for (int t = 0; t < N; t++) {
        if (lab[t] < 0) continue;
        Nc++; cnt[lab[t]]++;
        for (int k = 0; k < d; k++) { c[k] += x[t * d + k]; ci[lab[t]][k] += x[t * d + k]; }
    }
    for (int k = 0; k < d; k++) c[k] /= Nc;
    for (int e = 0; e < 3; e++)
        for (int k = 0; k < d; k++) { ci[e][k] /= cnt[e]; B += cnt[e] * (ci[e][k] - c[k]) * (ci[e][k] - c[k]); }
    for (int t = 0; t < N; t++)
        if (lab[t] >= 0)
            for (int k = 0; k < d; k++) W += (x[t * d + k] - ci[lab[t]][k]) * (x[t * d + k] - ci[lab[t]][k]);
    long Ng;
    int k;
    double ch, bw;
    cluster_acc_finish(a, &Ng, &k, &ch, &bw);
    CHECK_EQ_INT(Ng, Nc);
    CHECK_EQ_INT(k, 3);
    CHECK_EQ_INT(a->unrouted, N - Nc);
    CHECK_NEAR(bw, B / W, 1e-9 * (B / W));
    CHECK_NEAR(ch, (B / 2) / (W / (Nc - 3)), 1e-9 * ch);
    cluster_acc_free(a);
    free(x); free(lab);
}

TEST(analyze_clusters_cli_counts_every_token) {
    const char *run = tiny_run("an-moe2", "{\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24}");
    char js[800], txt[800], *err = NULL;
    snprintf(js, sizeof js, "%s/cl.json", test_tmpdir());
    snprintf(txt, sizeof txt, "%s/ck-text.txt", test_tmpdir());  // written by test_tiny_data
    int rc = aoe_run(NULL, &err, "analyze clusters %s --text %s --max-tokens 1000 --batch 3 --out %s", run, txt, js);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    free(err);
    size_t n;
    char *text = read_file(js, &n);
    cJSON *j = cJSON_Parse(text);
    REQUIRE(j);
    CHECK_EQ_INT(cJSON_GetObjectItem(j, "tokens")->valueint, 1000);
    const cJSON *layers = cJSON_GetObjectItem(j, "layers");
    CHECK_EQ_INT(cJSON_GetArraySize(layers), 2);
    for (int l = 0; l < 2; l++) {
        const cJSON *o = cJSON_GetArrayItem(layers, l);
        long s = 0;
        for (int e = 0; e < 4; e++) s += (long)num(cJSON_GetObjectItem(o, "counts"), e);
        CHECK_EQ_INT(s + cJSON_GetObjectItem(o, "unrouted")->valueint, 1000);
        CHECK_EQ_INT(cJSON_GetObjectItem(o, "unrouted")->valueint, 0);  // dropless top-2
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "ch")));
    }
    cJSON_Delete(j);
    free(text);
}

// aoe eval --load-stats: counts of every real token (top-2 dropless: 2 per token and layer), the
// entropies from those counts, and nothing from padding: another batch size (other padding) gives
// the same token counts and entropies.
TEST(eval_load_stats_counts_real_tokens_only) {
    const char *run = tiny_run("an-moe3", "{\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24}");
    char *text[2] = {NULL, NULL};
    const int budget[2] = {32, 2048};
    for (int k = 0; k < 2; k++) {
        char *err = NULL;
        int rc = aoe_run(NULL, &err, "eval %s --tasks piqa,arc_easy --limit 6 --load-stats --batch-tokens %d --out %s/ls%d",
                         run, budget[k], test_tmpdir(), k);
        if (rc) fprintf(stderr, "  %s\n", err);
        REQUIRE(rc == 0);
        free(err);
        char p[800];
        snprintf(p, sizeof p, "%s/ls%d/load_stats.json", test_tmpdir(), k);
        size_t n;
        text[k] = read_file(p, &n);
    }
    cJSON *j = cJSON_Parse(text[0]);
    REQUIRE(j);
    const cJSON *tasks = cJSON_GetObjectItem(j, "tasks");
    CHECK_EQ_INT(cJSON_GetArraySize(tasks), 2);
    for (int t = 0; t < 2; t++) {
        const cJSON *st = cJSON_GetObjectItem(cJSON_GetArrayItem(tasks, t), "stats");
        long tokens = (long)cJSON_GetObjectItem(st, "tokens")->valuedouble;
        CHECK(tokens > 6);
        const cJSON *layers = cJSON_GetObjectItem(st, "layers");
        CHECK_EQ_INT(cJSON_GetArraySize(layers), 2);
        for (int l = 0; l < 2; l++) {
            const cJSON *o = cJSON_GetArrayItem(layers, l);
            long sum = 0, c[4];
            for (int e = 0; e < 4; e++) sum += c[e] = (long)num(cJSON_GetObjectItem(o, "counts"), e);
            CHECK_EQ_INT(sum, 2 * tokens);
            double h = 0;
            for (int e = 0; e < 4; e++)
                if (c[e]) h -= (double)c[e] / sum * log((double)c[e] / sum);
            CHECK_NEAR(cJSON_GetObjectItem(o, "ent_load")->valuedouble, h, 1e-5);
            double ec = cJSON_GetObjectItem(o, "ent_conf")->valuedouble;
            CHECK(ec > 0 && ec <= log(4) + 1e-6);
        }
    }
    cJSON *j1 = cJSON_Parse(text[1]);  // padding differs; the tokens counted do not
    REQUIRE(j1);
    for (int t = 0; t < 2; t++) {
        const cJSON *a = cJSON_GetObjectItem(cJSON_GetArrayItem(tasks, t), "stats"),
                    *b = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j1, "tasks"), t), "stats");
        CHECK_EQ_INT(cJSON_GetObjectItem(a, "tokens")->valuedouble, cJSON_GetObjectItem(b, "tokens")->valuedouble);
        CHECK_NEAR(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "layers"), 1), "ent_conf")->valuedouble,
                   cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "layers"), 1), "ent_conf")->valuedouble, 1e-4);
    }
    cJSON_Delete(j1);
    cJSON_Delete(j);
    char *out = NULL, *err = NULL;  // aoe report picks load_stats.json up next to the results
    int rc = aoe_run(&out, &err, "report %s --eval %s/ls1 --out %s/ls-report", run, test_tmpdir(), test_tmpdir());
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "eval Ent_load");
    free(out); free(err);
    free(text[0]); free(text[1]);
}

// aoe report over a run that logs ε (model.ffn.erc_log) draws erc_eps.png; over one without, not.
TEST(report_erc_eps_figure) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) return;  // figures need gnuplot
    const char *a = tiny_run("an-erclog", "{\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24, \"erc_log\": true}");
    const char *b = tiny_run("an-moe4", "{\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24}");
    for (int k = 0; k < 2; k++) {
        char *out = NULL, *err = NULL;
        int rc = aoe_run(&out, &err, "report %s --out %s/erc-report%d", k ? b : a, test_tmpdir(), k);
        if (rc) fprintf(stderr, "  %s\n", err);
        CHECK_EQ_INT(rc, 0);
        CHECK(!!strstr(out ? out : "", "erc_eps.png") == !k);
        free(out); free(err);
    }
}

// aoe analyze load: every token counted K times per layer (top-2, dropless), Ent_load from the
// counts; the table and the JSON agree.
TEST(analyze_load_counts_and_entropy) {
    const char *run = tiny_run("an-moe5", "{\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 24}");
    char js[800], txt[800], *out = NULL, *err = NULL;
    snprintf(js, sizeof js, "%s/load.json", test_tmpdir());
    snprintf(txt, sizeof txt, "%s/ck-text.txt", test_tmpdir());
    int rc = aoe_run(&out, &err, "analyze load %s --text %s --max-tokens 700 --batch 2 --out %s", run, txt, js);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    size_t n;
    char *text = read_file(js, &n);
    cJSON *j = cJSON_Parse(text);
    REQUIRE(j);
    const cJSON *st = cJSON_GetObjectItem(j, "stats");
    CHECK_EQ_INT(cJSON_GetObjectItem(st, "tokens")->valueint, 700);
    const cJSON *l;
    int nl = 0;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(st, "layers")) {
        long c[4], sum = 0;
        for (int e = 0; e < 4; e++) sum += c[e] = (long)num(cJSON_GetObjectItem(l, "counts"), e);
        CHECK_EQ_INT(sum, 1400);
        double h = 0;
        for (int e = 0; e < 4; e++)
            if (c[e]) h -= (double)c[e] / sum * log((double)c[e] / sum);
        CHECK_NEAR(cJSON_GetObjectItem(l, "ent_load")->valuedouble, h, 1e-5);
        char row[32];  // the table row of this layer shows the same Ent_load (4 decimals)
        snprintf(row, sizeof row, "\n| %d | ", nl++);
        const char *p = out ? strstr(out, row) : NULL;
        double shown = -1;
        CHECK(p && sscanf(p + strlen(row), "%lf", &shown) == 1);
        CHECK_NEAR(shown, h, 6e-5);
    }
    CHECK_EQ_INT(nl, 2);
    cJSON_Delete(j);
    free(text); free(out); free(err);
}

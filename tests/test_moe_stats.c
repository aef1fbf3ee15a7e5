// test_moe_stats.c — `aoe stats`: table and plots from a load.jsonl written by real layers,
// malformed input (file and line named, exit 2), usage.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/kernels.h"
#include "model/moe.h"
#include "test.h"

// Writes DIR/load.jsonl from two real layers (one MoE, one AoE) over a few "log intervals".
static void write_run(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/load.jsonl", dir);
    FILE *f = fopen(path, "w");
    const char *types[2] = {"moe", "aoe"};
    Config c[2];
    Params P[2] = {{0}};
    void *L[2];
    int T = 40, d = 16;
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < 2; i++) {
        config_defaults(&c[i]);
        snprintf(c[i].ffn.type, sizeof c[i].ffn.type, "%s", types[i]);
        c[i].d_model = d; c[i].ffn.d_ff = 24; c[i].ffn.d_low = 4; c[i].ffn.n_experts = 6; c[i].ffn.top_k = 2;
        c[i].init_std = 0.2f;
        const FfnOps *ops = i ? &ffn_aoe_ops : &ffn_moe_ops;
        L[i] = ops->create(&P[i], &c[i], i, T);
        params_alloc(&P[i]);
        params_init(&P[i], &rng);
    }
    float *x = falloc(T * d), *out = falloc(T * d);
    for (int step = 1; step <= 30; step++) {
        for (int k = 0; k < T * d; k++) x[k] = rng_normal(&rng);
        for (int i = 0; i < 2; i++) {
            const FfnOps *ops = i ? &ffn_aoe_ops : &ffn_moe_ops;
            ops->forward(L[i], &P[i], out, x, T, 1, &rng);
            if (step % 10 == 0) ops->write_stats(L[i], f, step, i);
        }
    }
    fclose(f);
    for (int i = 0; i < 2; i++) {
        (i ? &ffn_aoe_ops : &ffn_moe_ops)->destroy(L[i]);
        params_free(&P[i]);
    }
    free(x); free(out);
}

TEST(moe_stats_cli_table_and_plots) {
    kernels_init(2);
    char dir[512], cmd[1200], png[600];
    snprintf(dir, sizeof dir, "%s/moe_stats_run", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    REQUIRE(system(cmd) == 0);
    write_run(dir);
    char *out, *err;
    snprintf(cmd, sizeof cmd, "%s stats %s", aoe_bin(), dir);
    int rc = run_capture(cmd, &out, &err);
    if (rc) fprintf(stderr, "  %s\n%s\n", cmd, err);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "6 records, 2 sparse layers, steps 10..30");
    CHECK_STR_CONTAINS(out, "last interval");
    CHECK_STR_CONTAINS(out, "mean over training");
    CHECK_STR_CONTAINS(out, "    1 aoe    6  2");
    if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
        const char *pngs[] = {"load_heatmap.png", "load_over_time.png", "norm_over_time.png"};
        for (int i = 0; i < 3; i++) {
            snprintf(png, sizeof png, "%s/plots/%s", dir, pngs[i]);
            CHECK(access(png, R_OK) == 0);
        }
        // every figure's title starts with the run's name
        snprintf(png, sizeof png, "%s/plots/stats.gp", dir);
        size_t n;
        char *gp = file_exists(png) ? read_file(png, &n) : NULL;
        CHECK_STR_CONTAINS(gp, "R = 'moe_stats_run'.': '");
        int titled = 0;
        for (const char *q = gp; q && (q = strstr(q, "title R.'")); q++) titled++;
        CHECK_EQ_INT(titled, 3);  // heatmap, load over time, norm over time
        free(gp);
    } else {
        CHECK_STR_CONTAINS(err, "gnuplot not found");
    }
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s stats --no-plots %s", aoe_bin(), dir);
    CHECK_EQ_INT(run_capture(cmd, NULL, NULL), 0);
}

TEST(moe_stats_cli_malformed_and_usage) {
    char dir[512], cmd[1200], path[600];
    snprintf(dir, sizeof dir, "%s/moe_stats_bad", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    REQUIRE(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/load.jsonl", dir);
    const char *good = "{\"v\":1,\"step\":10,\"layer\":0,\"counts\":[3,1],\"ent_load\":0.56,\"ent_conf\":0.6,"
                       "\"max_minus_min\":0.5,\"cv\":0.5,\"dead\":0,\"dropped\":0,\"lb_loss\":2}\n";
    const char *bad[] = {
        "{\"v\":1,\"step\":20,\"layer\":0,\"counts\":[3,1],\"ent_load\":0.5\n",            // truncated JSON
        "{\"v\":1,\"step\":20,\"layer\":0,\"counts\":[3,1,4],\"ent_load\":0.56,\"ent_conf\":0.6,"
        "\"max_minus_min\":0.5,\"cv\":0.5,\"dead\":0,\"dropped\":0,\"lb_loss\":2}\n",      // expert count changes
        "{\"v\":1,\"step\":20,\"layer\":0,\"counts\":[3,1],\"ent_conf\":0.6,"
        "\"max_minus_min\":0.5,\"cv\":0.5,\"dead\":0,\"dropped\":0,\"lb_loss\":2}\n",      // missing key
        "{\"v\":7,\"step\":20,\"layer\":0}\n",                                             // future schema
    };
    const char *want[] = {"not a JSON object", "expected 2", "'ent_load'", "schema version 7"};
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(path, "w");
        fputs(good, f);
        fputs("\n", f);  // blank lines are allowed
        fputs(bad[i], f);
        fclose(f);
        char *err;
        snprintf(cmd, sizeof cmd, "%s stats --no-plots %s", aoe_bin(), dir);
        CHECK_EQ_INT(run_capture(cmd, NULL, &err), 2);
        CHECK_STR_CONTAINS(err, "load.jsonl:3:");
        CHECK_STR_CONTAINS(err, want[i]);
        free(err);
    }
    char *out, *err;
    snprintf(cmd, sizeof cmd, "%s stats %s/nope", aoe_bin(), test_tmpdir());
    CHECK_EQ_INT(run_capture(cmd, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "not a directory");
    free(err);
    snprintf(cmd, sizeof cmd, "%s stats %s", aoe_bin(), test_tmpdir());
    CHECK_EQ_INT(run_capture(cmd, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "load.jsonl: no such file");
    free(err);
    snprintf(cmd, sizeof cmd, "%s stats --help", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "usage: aoe stats RUN_DIR");
    free(out);
    snprintf(cmd, sizeof cmd, "%s stats", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, NULL, NULL), 2);
}

// A finished dense run: no expert layers, said plainly (exit 0), not "no records yet".
TEST(moe_stats_dense_run) {
    char dir[512], p[700], *out = NULL, *err = NULL;
    snprintf(dir, sizeof dir, "%s/stats_dense_run", test_tmpdir());
    snprintf(p, sizeof p, "mkdir -p %s", dir);
    REQUIRE(system(p) == 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs("{\"model\": {\"ffn\": {\"type\": \"dense\"}}, \"train\": {\"steps\": 20}}\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/load.jsonl", dir);
    f = fopen(p, "w");
    REQUIRE(f);
    fclose(f);
    CHECK_EQ_INT(aoe_run(&out, &err, "stats %s", dir), 0);
    CHECK_STR_CONTAINS(out, "stats_dense_run: a dense run (model.ffn.type dense): no expert layers, so no expert-load statistics.");
    CHECK(!strstr(out, "no records yet"));
    free(out); free(err);
}

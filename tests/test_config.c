// test_config.c — the config schema: defaults, JSON loading, dotted overrides, validation errors
// (one line naming file and key, exit 2, nothing written) and the resolved-config round trip.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "test.h"
#include "util/common.h"

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

TEST(config_defaults_and_overrides) {
    Config c;
    config_defaults(&c);
    CHECK_EQ_INT(c.d_model, 128);
    CHECK(!strcmp(c.ffn.type, "dense"));
    config_set(&c, "model.ffn.d_low=96", "test");
    config_set(&c, "train.lr=0.005", "test");
    config_set(&c, "model.tie_embeddings=false", "test");
    config_set(&c, "model.ffn.type=aoe", "test");
    CHECK_EQ_INT(c.ffn.d_low, 96);
    CHECK_NEAR(c.lr, 0.005, 1e-9);
    CHECK_EQ_INT(c.tie_embeddings, 0);
    CHECK(!strcmp(c.ffn.type, "aoe"));
}

TEST(config_json_roundtrip) {
    Config a, b;
    config_defaults(&a);
    config_set(&a, "model.ffn.type=moe", "t");
    config_set(&a, "train.lr=0.0031", "t");
    config_set(&a, "train.seed=12345678901", "t");
    config_set(&a, "run.out=/tmp/x y", "t");
    char *js = config_to_json(&a), err[128];
    REQUIRE(config_from_json_text(&b, js, "roundtrip", err, sizeof err) == 0);
    memset(a.origin, 0, sizeof a.origin);  // values, not where they came from
    memset(b.origin, 0, sizeof b.origin);
    CHECK(!memcmp(&a, &b, sizeof a));
    free(js);
}

TEST(config_aoe_param_matching) {
    Config c;
    config_defaults(&c);
    c.d_model = 768; c.ffn.d_ff = 3072;
    c.ffn.d_low = 256; CHECK_EQ_INT(ffn_d_wide(&c), 3840);  // AoE paper: exact
    c.ffn.d_low = 512; CHECK_EQ_INT(ffn_d_wide(&c), 3264);
    c.ffn.d_low = 64; CHECK_EQ_INT(ffn_d_wide(&c), 4393);   // 4392.96 rounded
    c.d_model = 1280; c.ffn.d_ff = 5120; c.ffn.d_low = 400;
    CHECK_EQ_INT(ffn_d_wide(&c), 6469);                     // paper rounds 6469.2 up to 6470
}

// Each bad input: exit 2, one line naming the file / key and what was expected.
static void expect_bad(const char *cfg_text, const char *args, const char *needle) {
    char cmd[2048], *out, *err;
    const char *p = write_tmp("bad.json", cfg_text);
    snprintf(cmd, sizeof cmd, "%s train %s %s run.out=%s/never", aoe_bin(), p, args, test_tmpdir());
    int rc = run_capture(cmd, &out, &err);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, needle);
    int lines = 0;
    for (char *s = err; *s; s++) lines += *s == '\n';
    CHECK_EQ_INT(lines, 1);
    char never[600];
    snprintf(never, sizeof never, "%s/never", test_tmpdir());
    CHECK(!file_exists(never));
    free(out); free(err);
}

TEST(cli_config_errors) {
    expect_bad("{\"model\": {\"d_model\": 64,,}}", "", "bad.json: line 1, column 2");
    expect_bad("{\n \"model\": {\n  \"d_model\": 64\n }\n", "", "line 5");
    expect_bad("{\"model\": {\"d_modle\": 64}}", "", "unknown key 'model.d_modle'");
    expect_bad("{\"modle\": {\"d_model\": 64}}", "", "unknown section 'modle'");
    expect_bad("{\"model\": {\"d_model\": \"big\"}}", "", "model.d_model: expected integer");
    expect_bad("{\"model\": {\"d_model\": 64.5}}", "", "model.d_model: expected integer");
    expect_bad("{\"train\": {\"lr\": -1}}", "", "train.lr: expected a number in [0, 10]");
    expect_bad("{\"model\": {\"ffn\": {\"type\": \"sparse\"}}}", "", "model.ffn.type: expected one of dense|moe|aoe");
    expect_bad("{}", "train.steps=abc", "command line: train.steps: expected an integer");
    expect_bad("{}", "train.stepz=3", "unknown key 'train.stepz'");
    expect_bad("{}", "model.n_head=3", "model.d_model (128) must be divisible by model.n_head (3)");
    expect_bad("{\"model\": {\"ffn\": {\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 5}}}", "",
               "model.ffn.top_k (5) must be in 1..model.ffn.n_experts (4)");
    expect_bad("{\"model\": {\"ffn\": {\"type\": \"aoe\", \"d_low\": 128}}}", "",
               "model.ffn.d_low (128) must be < model.d_model (128)");
    expect_bad("[1, 2]", "", "expected a JSON object");
    expect_bad("", "", "empty file");
}

TEST(cli_config_missing_and_directory) {
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s train %s/nope.json", aoe_bin(), test_tmpdir());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "nope.json: cannot open");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s train %s", aoe_bin(), test_tmpdir());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "is a directory");
    free(out); free(err);
}

TEST(cli_dry_run_prints_resolved_config) {
    char cmd[1024], *out, *err;
    const char *p = write_tmp("ok.json", "{\"model\": {\"ffn\": {\"type\": \"aoe\", \"d_low\": 32}}}");
    snprintf(cmd, sizeof cmd, "%s train %s model.ffn.top_k=1 --dry-run", aoe_bin(), p);
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "\"type\":\t\"aoe\"");
    CHECK_STR_CONTAINS(out, "\"d_low\":\t32");
    CHECK_STR_CONTAINS(out, "\"top_k\":\t1");
    free(out); free(err);
}

// Every command that `aoe --help` lists answers --help with its usage and exit 0.
TEST(cli_help_and_usage) {
    char cmd[512], *list, *out, *err;
    snprintf(cmd, sizeof cmd, "%s --help", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &list, &err), 0);
    free(err);
    int n = 0;
    const char *p = strstr(list, "commands:");
    REQUIRE(p);
    for (p = strchr(p, '\n'); p && p[1]; p = strchr(p + 1, '\n')) {
        char name[64];
        if (sscanf(p + 1, "  %63s", name) != 1 || p[1] != ' ') continue;
        snprintf(cmd, sizeof cmd, "%s %s --help", aoe_bin(), name);
        int rc = run_capture(cmd, &out, &err);
        if (rc != 0 || !strstr(out, "usage: aoe")) fprintf(stderr, "  aoe %s --help: rc %d\n", name, rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_STR_CONTAINS(out, "usage: aoe");
        free(out); free(err);
        n++;
    }
    CHECK(n >= 8);
    free(list);
    snprintf(cmd, sizeof cmd, "%s frobnicate", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "unknown command 'frobnicate'");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "%s train --bogus", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "unknown option '--bogus'");
    free(out); free(err);
}

// Issues 16/17: trailing content and duplicate keys refused with the place; the closest key for a
// typo; origins of the keys a broken rule names; train.eps = 0 refused.
TEST(cli_config_strict_json_and_messages) {
    expect_bad("{\"model\": {\"d_model\": 64}} x", "", "line 1, column 28 (byte offset 27): unexpected content");
    expect_bad("{\"model\": {\"d_model\": 64}}\n{}", "", "line 2, column 1 (byte offset 27)");
    expect_bad("{\"model\": {\"d_model\": 64,\n \"d_model\": 32}}", "", "line 2: duplicate key 'model.d_model'");
    expect_bad("{\"train\": {\"lr\": 1e-3}, \"train\": {}}", "", "duplicate section 'train'");
    expect_bad("{}", "model.ffn.dlow=3", "command line: unknown key 'model.ffn.dlow': did you mean model.ffn.d_low?");
    expect_bad("{\"model\": {\"ffn\": {\"n_expert\": 4}}}", "", "did you mean model.ffn.n_experts?");
    expect_bad("{}", "train.eps=0", "train.eps: expected a number in [1e-30, 1], got 0");
    expect_bad("{}", "model.init_std=1e-50", "representable as float32");
    expect_bad("{\"model\": {\"ffn\": {\"type\": \"moe\", \"n_experts\": 4}}}", "model.ffn.top_k=5",
               "(model.ffn.n_experts from ");
    expect_bad("{\"model\": {\"ffn\": {\"type\": \"moe\", \"n_experts\": 4}}}", "model.ffn.top_k=5",
               "model.ffn.top_k from the command line)");
    expect_bad("{\"train\": {\"lr\": 0.001}}", "train.min_lr=0.01", "(train.lr from ");
    expect_bad("{\"train\": {\"lr\": 0.001}}", "train.min_lr=0.01", "train.min_lr from the command line)");
}

// Values are checked as the float32 they are stored as and printed in their shortest round-trip
// form: what training accepts, a re-read of its config.json accepts, with the same value.
TEST(config_float_values_round_trip) {
    const char *sets[] = {"model.norm_eps=1e-12", "model.init_std=1e-6", "train.lr=0.002", "train.eps=1e-30",
                          "model.rope_theta=500000", "train.beta2=0.999999"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        Config c, d;
        config_defaults(&c);
        config_set(&c, sets[i], "test");
        char *js = config_to_json(&c), err[128];
        CHECK(config_from_json_text(&d, js, "test", err, sizeof err) == 0);
        CHECK(!memcmp(&c.norm_eps, &d.norm_eps, sizeof(float)) && c.init_std == d.init_std && c.lr == d.lr &&
              c.eps == d.eps && c.rope_theta == d.rope_theta && c.beta2 == d.beta2);
        free(js);
    }
    Config c;
    config_defaults(&c);
    config_set(&c, "train.lr=0.002", "test");
    char *js = config_to_json(&c);
    CHECK_STR_CONTAINS(js, "\"lr\":\t0.002,");
    CHECK(!strstr(js, "0.00200000009"));
    CHECK_STR_CONTAINS(js, "\"norm_eps\":\t1e-05,");
    free(js);
}

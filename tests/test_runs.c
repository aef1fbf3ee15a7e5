// test_runs.c — helpers for tests that drive `aoe train` in the scratch directory (test_ckpt.c,
// test_run.c): a small dense config on the tiny fixture data, runs with test hooks in the
// environment, file helpers.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "test_runs.h"

char *rt_tmp_path(const char *name) {
    static char buf[8][600];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 600, "%s/%s", test_tmpdir(), name);
    return p;
}

char *rt_slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { *n = 0; return NULL; }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(len + 1);
    *n = fread(b, 1, len, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

void rt_spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

int rt_sh(const char *cmd, char **out, char **err) { return run_capture(cmd, out, err); }

const char *rt_data_dir(void) { return test_tiny_data(); }

const char *rt_config_file(void) {
    static char path[600];
    if (path[0]) return path;
    const char *d = rt_data_dir();
    snprintf(path, sizeof path, "%s/ck-config.json", test_tmpdir());
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"model\": {\"d_model\": 32, \"n_layer\": 2, \"n_head\": 2, \"seq_len\": 32, \"ffn\": {\"type\": \"dense\", \"d_ff\": 64}},\n"
               " \"train\": {\"steps\": 30, \"batch_size\": 4, \"ckpt_every\": 5, \"log_every\": 3, \"eval_every\": 10,"
               " \"eval_batches\": 2, \"warmup\": 5, \"keep_ckpts\": 2, \"precision\": \"fp32\"},\n"
               " \"data\": {\"train\": \"%s/train-*.shard\", \"val\": \"%s/val-*.shard\", \"tokenizer\": \"%s/tokenizer.bpe\"}}\n",
            d, d, d);
    fclose(f);
    return path;
}

// aoe train, OMP_NUM_THREADS=1 throughout (fast on a loaded machine; resume is exact per thread count); env is prefixed (e.g. "AOE_TEST_KILL_AT_STEP=7").
const char *rt_abs_bin(void) {
    static char b[PATH_MAX];
    if (!b[0] && !realpath(aoe_bin(), b)) snprintf(b, sizeof b, "%s", aoe_bin());
    return b;
}

int rt_train(const char *env, const char *args, char **out, char **err) {
    char cmd[PATH_MAX + 4096];
    snprintf(cmd, sizeof cmd, "cd %s && %s OMP_NUM_THREADS=1 %s train %s", test_tmpdir(), env ? env : "", rt_abs_bin(), args);
    return rt_sh(cmd, out, err);
}

int rt_fresh_run(const char *run, const char *extra) {
    char args[1200], *err;
    snprintf(args, sizeof args, "%s run.out=%s %s", rt_config_file(), run, extra ? extra : "");
    int rc = rt_train(NULL, args, NULL, &err);
    if (rc) fprintf(stderr, "  train %s: %s\n", run, err);
    free(err);
    return rc;
}

char *rt_rel(const char *run, const char *file) {
    static char b[4][700];
    static int k;
    char *p = b[k++ % 4];
    snprintf(p, 700, "%s/%s/%s", test_tmpdir(), run, file);
    return p;
}


// test_run.c — the failures a real run meets (issue 17, train side): a non-finite loss or gradient
// stops training without saving that state (or, with train.skip_nonfinite, the step is skipped,
// counted and resumed exactly); metrics.jsonl stays valid JSON; one writer per run directory
// (flock), a killed holder does not block --resume; a file-size limit is reported like a full disk
// with no temp file left; checkpoint meta out of range is refused by every reader.
#include <cjson/cJSON.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "test.h"
#include "test_runs.h"
#include "util/common.h"

// Every line of a JSONL file parses as a JSON object and has no NaN spelling; returns the lines.
static int jsonl_valid(const char *path, int *lines) {
    size_t n;
    char *t = rt_slurp(path, &n);
    *lines = 0;
    if (!t) return 0;
    int ok = !strstr(t, "nan") && !strstr(t, "inf");
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ok &= cJSON_IsObject(j);
        cJSON_Delete(j);
        ++*lines;
    }
    free(t);
    return ok;
}

TEST(run_nonfinite_stops_without_saving) {
    char args[1200], *out, *err;
    // injected NaN gradient at step 7: checkpoints 5 exists, step 7 is neither applied nor saved
    snprintf(args, sizeof args, "%s run.out=nan", rt_config_file());
    int rc = rt_train("AOE_TEST_NAN_AT_STEP=7", args, &out, &err);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_CONTAINS(err, "step 7: non-finite gradient norm");
    CHECK_STR_CONTAINS(err, "latest still names");
    CHECK_STR_CONTAINS(err, "ckpt-5.aoec");
    free(out); free(err);
    char *l = ckpt_latest(rt_tmp_path("nan"));
    CHECK_STR_CONTAINS(l, "ckpt-5.aoec");
    free(l);
    CHECK(!file_exists(rt_rel("nan", "ckpt-10.aoec")));
    int lines;
    CHECK(jsonl_valid(rt_rel("nan", "metrics.jsonl"), &lines));
    CHECK_EQ_INT(lines, 2);  // steps 3 and 6
    // it resumes from step 5 (the NaN hook is gone)
    CHECK_EQ_INT(rt_train(NULL, "--resume nan train.steps=10", NULL, NULL), 0);
    // the divergence recipe (train.lr=10 model.init_std=10 train.eps=0) owed its NaN to
    // eps = 0 (0/0 in AdamW where the second moment is 0); eps = 0 is now refused at config time,
    // before anything is written, and the injected NaN above covers the stop
    snprintf(args, sizeof args, "%s run.out=diverge train.lr=10 model.init_std=10 train.eps=0", rt_config_file());
    CHECK_EQ_INT(rt_train(NULL, args, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "train.eps: expected a number in [1e-30, 1], got 0");
    free(err);
    l = ckpt_latest(rt_tmp_path("diverge"));
    CHECK(l == NULL);
    free(l);
}

// Skipped steps are counted in metrics.jsonl and in the checkpoint: killed and resumed, the run
// ends bit-identical to an uninterrupted one with the same skips.
TEST(run_skip_nonfinite_counts_and_resumes) {
    char args[1200], *err;
    snprintf(args, sizeof args, "%s run.out=skip-ref train.skip_nonfinite=true", rt_config_file());
    CHECK_EQ_INT(rt_train("AOE_TEST_NAN_AT_STEP=4,11", args, NULL, &err), 0);
    free(err);
    int lines;
    CHECK(jsonl_valid(rt_rel("skip-ref", "metrics.jsonl"), &lines));
    size_t n;
    char *m = rt_slurp(rt_rel("skip-ref", "metrics.jsonl"), &n);
    CHECK_STR_CONTAINS(m, "\"step\":3,");
    CHECK_STR_CONTAINS(m, "\"skipped_nonfinite\":1,");
    CHECK_STR_CONTAINS(m, "\"step\":30,");
    CHECK(m && strstr(strstr(m, "\"step\":30,"), "\"skipped_nonfinite\":2"));
    free(m);
    snprintf(args, sizeof args, "%s run.out=skip-kill train.skip_nonfinite=true", rt_config_file());
    CHECK_EQ_INT(rt_train("AOE_TEST_NAN_AT_STEP=4,11 AOE_TEST_KILL_AT_STEP=13", args, NULL, NULL), 128 + SIGKILL);
    CHECK_EQ_INT(rt_train("AOE_TEST_NAN_AT_STEP=4,11", "--resume skip-kill", NULL, NULL), 0);
    size_t na, nb;
    char *a = rt_slurp(rt_rel("skip-ref", "ckpt-30.aoec"), &na), *b = rt_slurp(rt_rel("skip-kill", "ckpt-30.aoec"), &nb);
    REQUIRE(a && b);
    // the same payload (parameters, AdamW m and v: the file's tail) and meta but the wall-clock time
    CkptMeta ma, mb;
    Model *x = ckpt_load_model(rt_rel("skip-ref", "ckpt-30.aoec"), 1, &ma), *y = ckpt_load_model(rt_rel("skip-kill", "ckpt-30.aoec"), 1, &mb);
    size_t tail = 3 * x->P.total * sizeof(float);
    CHECK(na > tail && nb > tail && !memcmp(a + na - tail, b + nb - tail, tail));  // (run.out differs in the config)
    CHECK_EQ_INT(ma.n, mb.n);
    for (int i = 0; i < ma.n && ma.n == mb.n; i++)
        CHECK(!strcmp(ma.it[i].name, "elapsed") || ma.it[i].bits == mb.it[i].bits);
    model_free(x); model_free(y);
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), rt_rel("skip-kill", "ckpt-30.aoec"));
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "skipped          2");
    free(out); free(a); free(b);
}

TEST(run_one_writer_per_directory) {
    char cmd[PATH_MAX + 4096], *out, *err;
    // a long run holds run.out=busy; a second writer (fresh or --resume) is refused naming its pid;
    // after SIGKILL the lock file is still there but --resume goes ahead
    snprintf(cmd, sizeof cmd,
             "cd %s && (OMP_NUM_THREADS=1 %s train %s run.out=busy train.steps=1000000 train.ckpt_every=2 "
             "train.eval_every=0 > busy.out 2>&1 & pid=$!; "
             "for i in $(seq 400); do [ -s busy/latest ] && break; sleep 0.05; done; "
             "echo pid=$pid; OMP_NUM_THREADS=1 %s train %s run.out=busy; echo rc=$?; "
             "OMP_NUM_THREADS=1 %s train --resume busy; echo rc=$?; kill -KILL $pid; wait $pid; echo killed=$?)",
             test_tmpdir(), rt_abs_bin(), rt_config_file(), rt_abs_bin(), rt_config_file(), rt_abs_bin());
    CHECK_EQ_INT(rt_sh(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "rc=2\nrc=2\nkilled=137");
    char want[64];
    const char *p = out ? strstr(out, "pid=") : NULL;
    snprintf(want, sizeof want, "another aoe train (pid %ld) holds", p ? strtol(p + 4, NULL, 10) : -1L);
    CHECK_STR_CONTAINS(err, want);
    CHECK_STR_CONTAINS(err, "busy: run directory in use");
    free(out); free(err);
    CHECK(file_exists(rt_rel("busy", "lock")));
    char *l = ckpt_latest(rt_tmp_path("busy"));
    REQUIRE(l);
    long s = ckpt_name_step(strrchr(l, '/') + 1);
    free(l);
    char args[128];
    snprintf(args, sizeof args, "--resume busy train.steps=%ld", s + 2);
    CHECK_EQ_INT(rt_train(NULL, args, &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "resumed from");
    free(out);
}

// The signal rule (README "Stopping a run") while a save is in progress: a second Ctrl-C within
// the 3 s grace period is ignored, one after it stops at once (the process dies by SIGINT). The
// held write stays a temp file, `latest` still names the previous checkpoint, and --resume works.
TEST(run_signal_after_grace_stops_during_save) {
    CHECK_EQ_INT(rt_fresh_run("grace", "train.steps=5"), 0);  // ckpt-5.aoec, latest
    size_t n0, n1;
    char *good = rt_slurp(rt_rel("grace", "ckpt-5.aoec"), &n0), script[700], cmd[PATH_MAX + 4096], *out, *err;
    REQUIRE(good);
    // set -m: aoe train gets its own process group with SIGINT not ignored, as from a terminal
    snprintf(script, sizeof script, "%s/grace.sh", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "set -m; cd %s\n"
             "AOE_TEST_PAUSE_AT_STEP=7 AOE_TEST_HOLD_IN_WRITE=5000 OMP_NUM_THREADS=1 %s train --resume grace "
             "train.steps=30 > grace.out 2>&1 & pid=$!\n"
             "w() { for i in $(seq 400); do grep -q \"$1\" grace.out && return; sleep 0.05; done; }\n"
             "w 'paused at step 7'; kill -INT $pid; sleep 0.3; kill -INT $pid\n"
             "w 'holding the checkpoint write'; sleep 3.2; ls grace > grace.ls; kill -INT $pid\n"
             "wait $pid; echo rc=$?; cat grace.out grace.ls\n",
             test_tmpdir(), rt_abs_bin());
    rt_spit(script, cmd, strlen(cmd));
    snprintf(cmd, sizeof cmd, "bash %s", script);
    CHECK_EQ_INT(rt_sh(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "rc=130");  // killed by SIGINT: not 75, nothing was saved
    CHECK_STR_CONTAINS(out, "aoe: already stopping: finishing the step and saving a checkpoint");
    CHECK_STR_CONTAINS(out, "holding the checkpoint write after 5000 bytes");
    CHECK_STR_CONTAINS(out, "ckpt-7.aoec.tmp.");  // the half-written file existed while held
    CHECK(out && !strstr(out, "stopped by SIGINT"));
    free(out); free(err);
    CHECK(!file_exists(rt_rel("grace", "ckpt-7.aoec")));
    char *l = ckpt_latest(rt_tmp_path("grace"));
    CHECK_STR_CONTAINS(l, "ckpt-5.aoec");
    free(l);
    char *after = rt_slurp(rt_rel("grace", "ckpt-5.aoec"), &n1);
    CHECK(after && n0 == n1 && !memcmp(good, after, n0));
    free(good); free(after);
    snprintf(cmd, sizeof cmd, "%s inspect --quiet %s", aoe_bin(), rt_tmp_path("grace"));
    CHECK_EQ_INT(rt_sh(cmd, NULL, NULL), 0);
    CHECK_EQ_INT(rt_train(NULL, "--resume grace train.steps=8", &out, NULL), 0);  // resumes from step 5
    CHECK_STR_CONTAINS(out, "resumed from");
    free(out);
    snprintf(cmd, sizeof cmd, "ls %s/grace | grep -c tmp", test_tmpdir());
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 1);  // grep found nothing: the resume removed the temp file
    free(out);
}

// ulimit -f below the checkpoint size: EFBIG reported like a full disk (not killed by SIGXFSZ),
// no temp file left, the previous checkpoint and `latest` intact.
TEST(run_file_size_limit_like_full_disk) {
    CHECK_EQ_INT(rt_fresh_run("fsz", "train.steps=5"), 0);
    size_t n;
    char *ck = rt_slurp(rt_rel("fsz", "ckpt-5.aoec"), &n);
    REQUIRE(ck && n > 200000);
    free(ck);
    char cmd[PATH_MAX + 2048], *out, *err;
    snprintf(cmd, sizeof cmd, "cd %s && (ulimit -f %zu; OMP_NUM_THREADS=1 %s train --resume fsz train.steps=10)", test_tmpdir(),
             n / 2 / 1024, rt_abs_bin());
    int rc = rt_sh(cmd, &out, &err);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_CONTAINS(err, "ckpt-10.aoec: write failed after");
    CHECK_STR_CONTAINS(err, "File too large (previous checkpoint left intact)");
    CHECK_STR_CONTAINS(err, "--resume");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "ls %s/fsz | grep -c tmp", test_tmpdir());
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 1);  // grep found nothing
    free(out);
    char *l = ckpt_latest(rt_tmp_path("fsz"));
    CHECK_STR_CONTAINS(l, "ckpt-5.aoec");
    free(l);
}

// A checkpoint with valid CRCs but step 2449958197289549826: inspect, eval and --resume refuse it
// (the range check is in the reader, before any arithmetic on it).
TEST(run_meta_out_of_range_refused) {
    CHECK_EQ_INT(rt_fresh_run("wild", "train.steps=5"), 0);
    CkptMeta cm;
    const char *good = rt_rel("wild", "ckpt-5.aoec");
    Model *m = ckpt_load_model(good, 1, &cm);
    for (int i = 0; i < cm.n; i++)
        if (!strcmp(cm.it[i].name, "step")) cm.it[i].bits = 2449958197289549826ULL;
    char err[512];
    REQUIRE(ckpt_save(rt_rel("wild", "ckpt-6.aoec"), m, NULL, &cm, 0, err, sizeof err) == 0);
    model_free(m);
    char cmd[1024], *out, *er;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), rt_rel("wild", "ckpt-6.aoec"));
    CHECK_EQ_INT(rt_sh(cmd, &out, &er), 2);
    CHECK_STR_CONTAINS(er, "meta step = 2449958197289549826 (expected 0..1000000000)");
    free(out); free(er);
    snprintf(cmd, sizeof cmd, "%s eval %s --tasks x --out %s", aoe_bin(), rt_rel("wild", "ckpt-6.aoec"), rt_tmp_path("wild-ev"));
    CHECK_EQ_INT(rt_sh(cmd, &out, &er), 2);
    free(out); free(er);
    rt_spit(rt_rel("wild", "latest"), "ckpt-6.aoec\n", 12);
    CHECK_EQ_INT(rt_train(NULL, "--resume wild train.steps=10", NULL, &er), 2);
    CHECK_STR_CONTAINS(er, "ckpt-6.aoec: byte ");
    CHECK_STR_CONTAINS(er, "meta step = 2449958197289549826");
    free(er);
}

// "memory estimate: 608.95 MiB (..." -> bytes, or -1.
static double parse_estimate(const char *s) {
    const char *p = s ? strstr(s, "memory estimate: ") : NULL;
    double v;
    char unit[8];
    if (!p || sscanf(p + 17, "%lf %7s", &v, unit) != 2) return -1;
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    for (int i = 0; i < 5; i++, v *= 1024)
        if (!strcmp(unit, u[i])) return v;
    return -1;
}

// Peak RSS (bytes) of one `aoe train` child, from wait4's rusage (that child and its children).
static double child_peak_rss(const char *args) {
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "cd %s && OMP_NUM_THREADS=2 AOE_TEST_KILL_AT_STEP=1 exec %s train %s >/dev/null 2>&1", test_tmpdir(),
             rt_abs_bin(), args);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &st, 0, &ru) != pid) return -1;
    return (double)ru.ru_maxrss * 1024;
}

// The estimate `aoe train --dry-run` prints is within 15% of the peak RSS of the run it describes,
// on the bench configs (one step: every buffer is touched by then; killed before the checkpoint).
TEST(run_memory_estimate_matches_peak_rss) {
    const char *d = rt_data_dir();
    for (int i = 0; i < 3; i++) {
        static const char *cf[3] = {"dense", "moe", "aoe"};
        char args[PATH_MAX + 1024], *out, *err;
        char rel[64], cfg[PATH_MAX];
        snprintf(rel, sizeof rel, "configs/bench-%s.json", cf[i]);
        REQUIRE(realpath(rel, cfg));
        snprintf(args, sizeof args, "%s model.vocab_size=0 data.train=%s/train-*.shard data.val= "
                 "data.tokenizer=%s/tokenizer.bpe train.steps=1 run.out=mem-%s", cfg, d, d, cf[i]);
        char dry[PATH_MAX + 1100];
        snprintf(dry, sizeof dry, "%s --dry-run", args);
        CHECK_EQ_INT(rt_train(NULL, dry, &out, &err), 0);
        double est = parse_estimate(err), peak = child_peak_rss(args);
        fprintf(stderr, "  [%s: estimate %.1f MiB, peak RSS %.1f MiB, %+.1f%%]", cf[i], est / 1048576, peak / 1048576,
                100 * (est / peak - 1));
#ifdef __SANITIZE_ADDRESS__
        CHECK(est > 0 && peak > est);  // ASan adds shadow memory and redzones: 15% holds for normal builds only
#else
        CHECK(est > 0 && peak > 0 && est > 0.85 * peak && est < 1.15 * peak);
#endif
        free(out); free(err);
    }
    // a model far too large is refused before allocating, with the estimate and the limit
    char args[1200], *err;
    snprintf(args, sizeof args, "%s run.out=huge model.d_model=16384 model.n_layer=256 model.n_head=16", rt_config_file());
    CHECK_EQ_INT(rt_train(NULL, args, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "memory: this training run needs about ");
    CHECK_STR_CONTAINS(err, "TiB (parameters ");
    CHECK_STR_CONTAINS(err, "are available (");
    free(err);
    CHECK(!file_exists(rt_rel("huge", "config.json")));  // nothing written
    // eval checks before loading a checkpoint (a machine of 1000 bytes via the test hook)
    REQUIRE(rt_fresh_run("memev", "train.steps=2") == 0);
    char tasks[PATH_MAX], cmd[3 * PATH_MAX], *out;
    REQUIRE(realpath("data/tasks", tasks));
    snprintf(cmd, sizeof cmd, "AOE_TEST_MEM_AVAILABLE=1000 %s eval %s --tasks piqa --limit 2 --data-dir %s --out %s", aoe_bin(),
             rt_tmp_path("memev"), tasks, rt_tmp_path("memev-out"));
    CHECK_EQ_INT(rt_sh(cmd, &out, &err), 2);
    CHECK_STR_CONTAINS(err, "ckpt-2.aoec needs about ");
    CHECK_STR_CONTAINS(err, "but only 1000 B are available (AOE_TEST_MEM_AVAILABLE)");
    free(out); free(err);
}

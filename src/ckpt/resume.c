// resume.c — the pieces of `aoe train` that checkpointing needs besides the file format: the
// config of `--resume RUN_DIR` (RUN_DIR/config.json plus the few overrides that cannot change
// the model, the data or the data order), trimming the append-only logs back to the resumed step,
// the SIGINT/SIGTERM "finish the step, save, exit 0" flag, and the SIGKILL test hook.
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"

// Keys a resume may override: none of them changes the model, the data or the order of batches.
// train.steps changes the cosine schedule from the resumed step on (to extend a run); the
// bit-identical guarantee holds for an unchanged config and the same thread count.
static const char *const resume_keys[] = {
    "train.steps", "train.log_every", "train.eval_every", "train.eval_batches", "train.ckpt_every",
    "train.keep_ckpts", "train.threads", "run.ckpt_compress", "data.val",
};

void ckpt_resume_config(int argc, char **argv, const char *run_dir, Config *c) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) { i++; continue; }
        if (argv[i][0] == '-') continue;
        const char *eq = strchr(argv[i], '=');
        if (!eq)
            die_input("train --resume: '%s': the config comes from %s/config.json; give only key=value overrides", argv[i], run_dir);
        int ok = 0;
        for (size_t k = 0; k < sizeof resume_keys / sizeof *resume_keys && !ok; k++)
            ok = strlen(resume_keys[k]) == (size_t)(eq - argv[i]) && !strncmp(argv[i], resume_keys[k], eq - argv[i]);
        if (!ok)
            die_input("train --resume: %.*s cannot be changed when resuming (it would change the model, the data or "
                      "their order); allowed: train.steps, train.log_every, train.eval_every, train.eval_batches, "
                      "train.ckpt_every, train.keep_ckpts, train.threads, run.ckpt_compress, data.val",
                      (int)(eq - argv[i]), argv[i]);
    }
    if (!is_directory(run_dir)) die_input("%s: not a run directory (train --resume needs the run.out of a run)", run_dir);
    size_t n = strlen(run_dir) + 16;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/config.json", run_dir);
    if (!file_exists(path)) die_input("%s: missing; is %s a run directory?", path, run_dir);
    config_defaults(c);
    config_load_file(c, path);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) { i++; continue; }
        if (argv[i][0] != '-' && strchr(argv[i], '=')) config_set(c, argv[i], "command line");
    }
    if (strlen(run_dir) >= CFG_STR) die_input("%s: run directory path too long", run_dir);
    snprintf(c->out, CFG_STR, "%s", run_dir);
    config_validate(c, path);
    free(path);
}

// Keeps the lines of run_dir/name whose "step" is <= step (lines without one are kept).
static void trim_log(const char *run_dir, const char *name, long step) {
    size_t n = strlen(run_dir) + strlen(name) + 2, len;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", run_dir, name);
    if (!file_exists(path)) { free(path); return; }
    char *text = read_file(path, &len), *out = xmalloc(len + 1);
    size_t k = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) + 1 : strlen(line);
        char *s = strstr(line, "\"step\":");
        int keep = nl != NULL;  // a torn last line (crash mid-write) is dropped
        if (keep && s && s < line + ll && strtol(s + 7, NULL, 10) > step) keep = 0;
        if (keep) { memcpy(out + k, line, ll); k += ll; }
        line += ll;
    }
    if (k != len) write_file_atomic(path, out, k);
    free(text); free(out); free(path);
}

void ckpt_trim_logs(const char *run_dir, long step) {
    trim_log(run_dir, "metrics.jsonl", step);
    trim_log(run_dir, "load.jsonl", step);
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) {
    if (stop_signal) {  // second signal: stop now (a checkpoint being written stays a temp file)
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_signal = sig;
}

void ckpt_install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int ckpt_stop_requested(void) { return stop_signal; }

void ckpt_test_kill_hook(long step) {
    static long at = -2;
    if (at == -2) {
        const char *s = getenv("AOE_TEST_KILL_AT_STEP");
        at = s && *s ? strtol(s, NULL, 10) : -1;
    }
    if (at >= 0 && step == at) {
        fflush(NULL);
        raise(SIGKILL);
    }
}

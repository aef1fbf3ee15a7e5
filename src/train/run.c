// run.c — see run.h. The checkpoint file is written and read by src/ckpt; this file decides what
// a training checkpoint holds and keeps the run directory consistent: a checkpoint appears only by
// rename, `latest` is replaced only after it, old ones are pruned only after that.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/file.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train/run.h"

#include "train/dp.h"

// ---------------------------------------------------------------- checkpoint contents
static void state_of(const Optim *opt, CkptState *st) {
    memset(st, 0, sizeof *st);
    st->n = opt->ops->n_state;
    for (int k = 0; k < st->n; k++) { st->name[k] = opt->ops->state_names[k]; st->data[k] = opt->s[k]; }
}

int run_ckpt_save(const char *path, const Model *m, const Optim *opt, const TrainMeta *mt, int compress, char *err,
                  int errlen) {
    CkptMeta cm = {0};
    ckpt_meta_put_i64(&cm, "step", mt->step);
    ckpt_meta_put_i64(&cm, "opt.t", opt->t);
    static const char *rn[4] = {"rng.0", "rng.1", "rng.2", "rng.3"};
    for (int i = 0; i < 4; i++) ckpt_meta_put_u64(&cm, rn[i], mt->rng.s[i]);
    ckpt_meta_put_u64(&cm, "tok_hash", mt->tok_hash);
    ckpt_meta_put_u64(&cm, "loader.epoch", mt->pos.epoch);
    ckpt_meta_put_u64(&cm, "loader.cursor", mt->pos.cursor);
    ckpt_meta_put_u64(&cm, "loader.seed", mt->pos.seed);
    ckpt_meta_put_u64(&cm, "loader.windows", mt->pos.n_windows);
    ckpt_meta_put_f64(&cm, "log.loss", mt->loss_acc);
    ckpt_meta_put_f64(&cm, "log.aux", mt->aux_acc);
    ckpt_meta_put_i64(&cm, "log.steps", mt->n_acc);
    ckpt_meta_put_i64(&cm, "log.tokens", mt->tok_log);
    ckpt_meta_put_f64(&cm, "elapsed", mt->elapsed);
    ckpt_meta_put_i64(&cm, "skipped", mt->skipped);
    ckpt_meta_put_i64(&cm, "ranks", mt->ranks > 0 ? mt->ranks : 1);
    CkptState st;
    state_of(opt, &st);
    return ckpt_save_gather(path, m, &st, &cm, compress, dp_ckpt_gather, err, errlen);  // experts from rank 0's group
}

void run_ckpt_load(const char *path, Model *m, Optim *opt, TrainMeta *mt) {
    // The model, and what gives the saved loader position, RNG and optimizer state their meaning.
    static const char *const same[] = {"model.", "train.seed", "train.batch_size", "train.grad_accum", "train.optimizer"};
    CkptState st;
    state_of(opt, &st);
    CkptMeta cm;
    ckpt_load_into(path, m, &st, &cm, same, (int)(sizeof same / sizeof *same));
    const int64_t max_steps = 1000000000;  // train.steps' upper bound
    memset(mt, 0, sizeof *mt);
    mt->step = (long)ckpt_meta_i64(&cm, "step", 0, max_steps);
    // The optimizer's step count is the run's step, plus the initial checkpoint's with init_keep_optim.
    opt->t = (long)ckpt_meta_i64(&cm, "opt.t", 0, m->cfg.init_keep_optim ? (int64_t)1 << 50 : mt->step);
    static const char *rn[4] = {"rng.0", "rng.1", "rng.2", "rng.3"};
    for (int i = 0; i < 4; i++) mt->rng.s[i] = ckpt_meta_u64(&cm, rn[i], 0, UINT64_MAX);
    mt->tok_hash = ckpt_meta_u64(&cm, "tok_hash", 0, UINT64_MAX);
    mt->pos.epoch = ckpt_meta_u64(&cm, "loader.epoch", 0, UINT64_MAX);
    mt->pos.seed = ckpt_meta_u64(&cm, "loader.seed", 0, UINT64_MAX);
    mt->pos.n_windows = ckpt_meta_u64(&cm, "loader.windows", 0, UINT64_MAX);
    mt->pos.cursor = ckpt_meta_u64(&cm, "loader.cursor", 0, mt->pos.n_windows);  // the loader checks the rest
    mt->loss_acc = ckpt_meta_f64(&cm, "log.loss");
    mt->aux_acc = ckpt_meta_f64(&cm, "log.aux");
    mt->n_acc = (long)ckpt_meta_i64(&cm, "log.steps", 0, mt->step);
    mt->tok_log = (long)ckpt_meta_i64(&cm, "log.tokens", 0, INT64_MAX / 2);
    mt->elapsed = ckpt_meta_f64(&cm, "elapsed");
    mt->skipped = ckpt_meta_has(&cm, "skipped") ? (long)ckpt_meta_i64(&cm, "skipped", 0, mt->step) : 0;  // new in v2
    mt->ranks = ckpt_meta_has(&cm, "ranks") ? (int)ckpt_meta_i64(&cm, "ranks", 1, 1 << 20) : 1;
}

// Weights (and with train.init_keep_optim the optimizer state) of c->init_from, into a model and
// optimizer built from the run's config; the step, RNG and data order stay fresh.
void run_init_from(const Config *c, Model *m, Optim *opt, uint64_t tok_hash) {
    // Keys that shape the parameters, named before the tensor table catches anything else.
    static const char *const same[] = {"model.d_model", "model.n_layer", "model.n_head", "model.tie_embeddings",
                                       "model.ffn.type", "train.optimizer"};
    int n_same = (int)(sizeof same / sizeof *same) - !c->init_keep_optim;
    CkptState st;
    state_of(opt, &st);
    CkptMeta cm;
    printf("train.init_from: loading %s (%s)\n", c->init_from,
           c->init_keep_optim ? "weights and optimizer state" : "weights; optimizer state fresh");
    fflush(stdout);
    ckpt_load_into(c->init_from, m, c->init_keep_optim ? &st : NULL, &cm, same, n_same);
    uint64_t h = ckpt_meta_tok_hash(&cm);
    if (h && h != tok_hash)
        die_input("train.init_from %s: trained with tokenizer %016llx, but data.tokenizer %s is %016llx; encode the "
                  "data with the checkpoint's tokenizer (aoe prepare --tokenizer)", c->init_from,
                  (unsigned long long)h, c->tokenizer, (unsigned long long)tok_hash);
    if (c->init_keep_optim) opt->t = (long)ckpt_meta_i64(&cm, "opt.t", 0, 1000000000);
    printf("train.init_from: step %ld of its run\n", ckpt_meta_step(&cm));
}

// ---------------------------------------------------------------- run directory
// Sorted (descending) steps of the complete checkpoints in run_dir.
static int list_ckpts(const char *run_dir, long **steps) {
    DIR *d = opendir(run_dir);
    int n = 0, cap = 0;
    *steps = NULL;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        long s = ckpt_name_step(e->d_name);
        if (s < 0) continue;
        if (n == cap) *steps = xrealloc(*steps, sizeof(long) * (cap = cap ? 2 * cap : 16));
        (*steps)[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)  // insertion sort, newest first
        for (int j = i; j > 0 && (*steps)[j] > (*steps)[j - 1]; j--) { long t = (*steps)[j]; (*steps)[j] = (*steps)[j - 1]; (*steps)[j - 1] = t; }
    return n;
}

int run_save(const char *run_dir, const Model *m, const Optim *opt, const TrainMeta *meta, int compress, int keep,
             char *err, int errlen) {
    char name[64];
    snprintf(name, sizeof name, "ckpt-%ld.aoec", meta->step);
    char *path = path_join(run_dir, name), *lp = path_join(run_dir, "latest");
    int rc = run_ckpt_save(path, m, opt, meta, compress, err, errlen);
    if (!rc) {
        AtomicFile af;
        char line[80];
        int n = snprintf(line, sizeof line, "%s\n", name);
        if (atomic_open(&af, lp) || fwrite(line, 1, n, af.f) != (size_t)n || atomic_commit(&af)) {
            int e = errno;
            if (af.f) atomic_abort(&af);
            snprintf(err, errlen, "%s: cannot update the latest pointer: %s (%s was written)", lp, strerror(e), path);
            rc = -1;
        }
    }
    if (!rc) {  // prune: keep the newest `keep` (the one just written is always among them)
        long *steps;
        int n = list_ckpts(run_dir, &steps), kept = 0;
        for (int i = 0; i < n; i++) {
            if (steps[i] == meta->step || (steps[i] < meta->step && kept < keep - 1)) {
                if (steps[i] != meta->step) kept++;
                continue;
            }
            if (steps[i] > meta->step) continue;  // newer files from an abandoned branch: leave them
            snprintf(name, sizeof name, "ckpt-%ld.aoec", steps[i]);
            char *old = path_join(run_dir, name);
            if (unlink(old)) warnf("%s: cannot delete old checkpoint: %s", old, strerror(errno));
            free(old);
        }
        free(steps);
    }
    free(path); free(lp);
    return rc;
}

void run_clean_tmp(const char *run_dir) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t || (strncmp(e->d_name, "ckpt-", 5) && strncmp(e->d_name, "latest.", 7))) continue;
        char *p = path_join(run_dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

// ---------------------------------------------------------------- --resume
// Keys a resume may override: none of them changes the model, the data or the order of batches.
// train.steps changes the cosine schedule from the resumed step on (to extend a run); the
// bit-identical guarantee holds for an unchanged config and the same thread count.
static const char *const resume_keys[] = {
    "train.steps", "train.log_every", "train.eval_every", "train.eval_batches", "train.ckpt_every",
    "train.keep_ckpts", "train.threads", "run.ckpt_compress", "data.val", "train.skip_nonfinite",
    "train.expert_parallel", "train.overlap_grads",
};

void run_resume_config(int argc, char **argv, const char *run_dir, Config *c) {
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
            die_input("train --resume: %.*s may not change on resume: a resume continues the saved run exactly "
                      "(same model, data, order and optimizer settings), and this key is fixed by config.json; start a "
                      "new run to change it; allowed: train.steps, train.log_every, train.eval_every, train.eval_batches, "
                      "train.ckpt_every, train.keep_ckpts, train.threads, run.ckpt_compress, data.val, train.skip_nonfinite, "
                      "train.expert_parallel, train.overlap_grads",
                      (int)(eq - argv[i]), argv[i]);
    }
    if (!is_directory(run_dir)) die_input("%s: not a run directory (train --resume needs the run.out of a run)", run_dir);
    char *path = path_join(run_dir, "config.json");
    if (!file_exists(path)) die_input("%s: missing; is %s a run directory?", path, run_dir);
    config_defaults(c);
    config_load_file(c, path);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--resume")) { i++; continue; }
        if (argv[i][0] != '-' && strchr(argv[i], '=')) config_set(c, argv[i], "command line");
    }
    if (strlen(run_dir) >= CFG_STR) die_input("%s: run directory path too long", run_dir);
    snprintf(c->out, CFG_STR, "%s", run_dir);
    model_validate_config(c, path);
    free(path);
}

// Keeps the lines of run_dir/name whose "step" is <= step (lines without one are kept).
static void trim_log(const char *run_dir, const char *name, long step) {
    char *path = path_join(run_dir, name);
    if (!file_exists(path)) { free(path); return; }
    size_t len;
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

void run_trim_logs(const char *run_dir, long step) {
    trim_log(run_dir, "metrics.jsonl", step);
    trim_log(run_dir, "load.jsonl", step);
}

// ---------------------------------------------------------------- signals and test hooks
static volatile sig_atomic_t stop_signal;
static struct timespec stop_time;  // of the first signal; written only by the handler

static void on_stop(int sig) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (stop_signal) {
        long ms = (long)(now.tv_sec - stop_time.tv_sec) * 1000 + (now.tv_nsec - stop_time.tv_nsec) / 1000000;
        if (ms < RUN_STOP_GRACE_MS) {  // the same request: let the save finish
            static const char msg[] = "aoe: already stopping: finishing the step and saving a checkpoint\n";
            ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
            (void)w;
            return;
        }
        signal(sig, SIG_DFL);  // a later signal: stop now
        raise(sig);
    }
    stop_time = now;
    stop_signal = sig;
}

void run_install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);  // one handler at a time: the first signal's time is set whole
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int run_stop_requested(void) { return stop_signal; }

static long env_step(const char *name) {
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 10) : -1;
}

void run_test_pause_hook(long step) {
    static long at = -2;
    if (at == -2) at = env_step("AOE_TEST_PAUSE_AT_STEP");
    if (at < 0 || step != at) return;
    fprintf(stderr, "paused at step %ld\n", step);
    fflush(NULL);
    for (int i = 0; i < 6000 && !stop_signal; i++) {
        struct timespec t = {0, 10000000};
        nanosleep(&t, NULL);
    }
}

// ---------------------------------------------------------------- paths
void run_absolute_paths(Config *c) {
    struct { const char *key; char *v; } p[] = {
        {"data.train", c->train_path}, {"data.val", c->val_path}, {"data.tokenizer", c->tokenizer},
        {"run.out", c->out}, {"train.init_from", c->init_from},
    };
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) {
        char abs[CFG_STR];
        if (abs_path_list(p[i].v, abs, sizeof abs))
            die_input("%s: '%s' made absolute is longer than %d bytes", p[i].key, p[i].v, CFG_STR - 1);
        memcpy(p[i].v, abs, CFG_STR);
    }
}

void run_copy_tokenizer(const char *run_dir, const char *tokenizer) {
    size_t len;
    char *bytes = read_file(tokenizer, &len), *dst = path_join(run_dir, RUN_TOKENIZER);
    write_file_atomic(dst, bytes, len);
    free(bytes);
    free(dst);
}

void run_test_kill_hook(long step) {
    static long at = -2;
    if (at == -2) at = env_step("AOE_TEST_KILL_AT_STEP");
    if (at >= 0 && step == at) {
        fflush(NULL);
        raise(SIGKILL);
    }
}

void run_test_nan_hook(long step, Params *P) {
    const char *s = getenv("AOE_TEST_NAN_AT_STEP");
    for (char *e; s && *s; s = *e ? e + 1 : e)
        if (strtol(s, &e, 10) == step) { P->g[P->t[0].off] = NAN; return; }
}

const char *run_nonfinite_param(const Params *P) {
    for (int i = 0; i < P->n; i++) {
        const float *w = P->w + P->t[i].off;
        int bad = 0;
#pragma omp parallel for reduction(| : bad)
        for (long j = 0; j < (long)P->t[i].n; j++) bad |= !isfinite(w[j]);
        if (bad) return P->t[i].name;
    }
    return NULL;
}

// ---------------------------------------------------------------- one writer
void run_lock(const char *run_dir) {
    char *path = path_join(run_dir, "lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die("%s: cannot open the run lock: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        if (errno != EWOULDBLOCK) die("%s: cannot lock: %s", path, strerror(errno));
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        die_input("%s: run directory in use: another aoe train (pid %ld) holds %s; wait for it to finish or "
                  "choose another run.out", run_dir, pid, path);
    }
    char line[32];
    int k = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, line, k, 0) != k) warnf("%s: cannot record the pid: %s", path, strerror(errno));
    free(path);  // fd stays open (and locked) until the process exits
}

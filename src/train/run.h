// run.h — the run directory of `aoe train`: what a training checkpoint holds (parameters, the
// optimizer's state arrays, TrainMeta), ckpt-<step>.aoec + the `latest` pointer + pruning, the
// config of `--resume`, trimming the logs back to the resumed step, SIGINT/SIGTERM, test hooks.
// The file format itself is src/ckpt (ckpt.h).
#ifndef AOE_RUN_H
#define AOE_RUN_H

#include <stdint.h>

#include "ckpt/ckpt.h"
#include "config/config.h"
#include "data/loader.h"
#include "model/model.h"
#include "train/optim.h"

// The training state besides parameters and optimizer state (checkpoint meta keys in
// docs/formats.md).
typedef struct {
    long step;          // optimizer steps completed
    Rng rng;            // training RNG (noise draws)
    LoaderPos pos;      // training loader position
    uint64_t tok_hash;  // tokenizer identity
    // The open logging interval, so metrics.jsonl after a resume matches an uninterrupted run.
    double loss_acc, aux_acc, elapsed;
    long n_acc, tok_log;
    long skipped;       // steps skipped for a non-finite loss or gradient (train.skip_nonfinite)
    int ranks;          // MPI ranks that wrote it (1 for checkpoints without the key)
} TrainMeta;

// Saves parameters, the optimizer's state arrays and t, and meta to `path` atomically. Returns 0,
// or -1 with a message in err (the previous file at `path` is untouched).
int run_ckpt_save(const char *path, const Model *m, const Optim *opt, const TrainMeta *meta, int compress, char *err,
                  int errlen);
// Loads parameters, optimizer state and meta into a model and optimizer built from the run's
// config. Exits 2 if the file is bad, its config differs from m->cfg in a model.* key or in
// train.seed / batch_size / grad_accum / optimizer (names the key), or a meta value is out of range.
void run_ckpt_load(const char *path, Model *m, Optim *opt, TrainMeta *meta);
// train.init_from: loads c->init_from's parameters (and, with train.init_keep_optim, the optimizer's
// state arrays and step count) into m and opt. Exits 2 naming the key if the model shapes (or the
// optimizer, when kept) differ, naming both identities if the tokenizer differs.
void run_init_from(const Config *c, Model *m, Optim *opt, uint64_t tok_hash);
// Saves <run_dir>/ckpt-<step>.aoec, then points <run_dir>/latest at it (atomically), then deletes
// all but the newest `keep` checkpoints. Returns 0, or -1 with err filled; on failure the previous
// checkpoint and `latest` are untouched.
int run_save(const char *run_dir, const Model *m, const Optim *opt, const TrainMeta *meta, int compress, int keep,
             char *err, int errlen);
// Removes temporary files left by a crashed writer (ckpt-*.aoec.tmp.*, latest.tmp.*).
void run_clean_tmp(const char *run_dir);

// `aoe train --resume RUN_DIR [key=value ...]`: the config is RUN_DIR/config.json; overrides are
// allowed only for keys that change neither the model nor the data or its order (train.steps,
// log/eval/ckpt intervals, keep_ckpts, threads, run.ckpt_compress, data.val); run.out = RUN_DIR.
// Exits 2 naming the key otherwise.
void run_resume_config(int argc, char **argv, const char *run_dir, Config *c);
// Drops lines of metrics.jsonl / load.jsonl logged after `step` (and a torn last line), so a resumed
// run's logs continue as if it had never stopped.
void run_trim_logs(const char *run_dir, long step);
// SIGINT/SIGTERM set a flag; training polls it after each step, saves a checkpoint and exits with
// EXIT_STOPPED. Further signals within RUN_STOP_GRACE_MS of the first are the same request (a
// terminal's Ctrl-C reaches every process of the group, and a wrapper such as tools/sweep.sh
// forwards its own): they are ignored, so the save completes. A signal after the grace period
// terminates at once (the checkpoint being written stays a temp file; the previous one is intact).
#define RUN_STOP_GRACE_MS 3000
void run_install_stop_handlers(void);
int run_stop_requested(void);  // the signal number, or 0
// Test hooks: if AOE_TEST_KILL_AT_STEP equals `step`, the process sends itself SIGKILL; if
// AOE_TEST_PAUSE_AT_STEP does, it prints "paused at step N" on stderr and waits (at most 60 s)
// for a stop signal.
void run_test_kill_hook(long step);
// Test hook: if `step` is in AOE_TEST_NAN_AT_STEP (comma-separated), one gradient element becomes NaN.
void run_test_nan_hook(long step, Params *P);
// Name of the first tensor with a NaN or infinite parameter, or NULL if all are finite.
const char *run_nonfinite_param(const Params *P);

// One writer per run directory: takes an exclusive flock on <run_dir>/lock (pid inside) for the
// life of the process. If another live process holds it, exits 2 naming its pid. The kernel drops
// the lock when its holder dies, so a lock file left by a killed run does not block --resume.
void run_lock(const char *run_dir);
void run_test_pause_hook(long step);

// The run directory keeps its own copy of the tokenizer under this name (eval, sample and analyze
// look there first), so a run directory can be moved and used from anywhere.
#define RUN_TOKENIZER "tokenizer.bpe"
// Makes the config's paths (data.train, data.val, data.tokenizer, run.out, train.init_from)
// absolute against the current directory, so config.json and the checkpoints name files that
// exist from any directory. Exits 2 if a path gets too long.
void run_absolute_paths(Config *c);
// Copies the tokenizer file into <run_dir>/RUN_TOKENIZER (atomically; dies on failure).
void run_copy_tokenizer(const char *run_dir, const char *tokenizer);

#endif

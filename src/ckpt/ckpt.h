// ckpt.h — checkpoints: header (magic, version), the resolved config JSON, a tensor table (name,
// shape, dtype, offset, CRC32), parameters, AdamW moments, step, RNG state, loader position and
// tokenizer identity. Written atomically (temp + fsync + rename); docs/formats.md has the layout.
#ifndef AOE_CKPT_H
#define AOE_CKPT_H

#include <stdint.h>

#include "config/config.h"
#include "data/loader.h"
#include "model/model.h"
#include "train/optim.h"

typedef struct {
    long step;          // optimizer steps completed
    Rng rng;            // training RNG (noise draws)
    LoaderPos pos;      // training loader position
    uint64_t tok_hash;  // tokenizer identity
    // The open logging interval, so metrics.jsonl after a resume matches an uninterrupted run.
    double loss_acc, aux_acc, elapsed;
    long n_acc, tok_log;
} TrainMeta;

// Saves model parameters, optimizer moments and meta to `path` atomically. Returns 0, or -1 with
// a message in err (the previous file at `path` is untouched).
int ckpt_save(const char *path, const Model *m, const AdamW *opt, const TrainMeta *meta, int compress,
              char *err, int errlen);
// Loads a checkpoint for inference: builds the model from the stored config (activations for up
// to max_B sequences). Exits 2 with "file: offset: what was expected" on a bad file.
Model *ckpt_load_model(const char *path, int max_B, TrainMeta *meta_out);
// Loads parameters, moments and meta into an existing model built from the same config (resume).
// Exits 2 if the file is bad or its config does not match m->cfg in a model.* key or in
// train.seed / train.batch_size / train.grad_accum (names the differing key).
void ckpt_load_train(const char *path, Model *m, AdamW *opt, TrainMeta *meta);
// Path of the newest complete checkpoint of a run directory (via its `latest` pointer), or NULL.
char *ckpt_latest(const char *run_dir);

// ---- run-directory helpers used by `aoe train` ----
// Saves <run_dir>/ckpt-<step>.aoec, then points <run_dir>/latest at it (atomically), then deletes
// all but the newest `keep` checkpoints. Returns 0, or -1 with err filled; on failure the previous
// checkpoint and `latest` are untouched.
int ckpt_save_run(const char *run_dir, const Model *m, const AdamW *opt, const TrainMeta *meta,
                  int compress, int keep, char *err, int errlen);
// Removes temporary files left by a crashed writer (ckpt-*.aoec.tmp.*, latest.tmp.*).
void ckpt_clean_tmp(const char *run_dir);
// First key under `prefix` (e.g. "model.") whose value differs between a and b: returns NULL if
// none, else a message "model.d_model is 64 in A but 32 in B" in buf (names from an/bn).
const char *ckpt_config_diff(const Config *a, const char *an, const Config *b, const char *bn,
                             const char *prefix, char *buf, int buflen);

// `aoe train --resume RUN_DIR [key=value ...]`: the config is RUN_DIR/config.json; overrides are
// allowed only for keys that change neither the model nor the data or its order (train.steps,
// log/eval/ckpt intervals, keep_ckpts, threads, run.ckpt_compress, data.val); run.out = RUN_DIR.
// Exits 2 naming the key otherwise.
void ckpt_resume_config(int argc, char **argv, const char *run_dir, Config *c);
// Drops lines of metrics.jsonl / load.jsonl logged after `step` (and a torn last line), so a resumed
// run's logs continue as if it had never stopped.
void ckpt_trim_logs(const char *run_dir, long step);
// SIGINT/SIGTERM set a flag (a second one terminates at once); training polls it after each step.
void ckpt_install_stop_handlers(void);
int ckpt_stop_requested(void);  // the signal number, or 0
// Test hook: if AOE_TEST_KILL_AT_STEP equals `step`, the process sends itself SIGKILL.
void ckpt_test_kill_hook(long step);

// Test hooks (documented in docs/formats.md): AOE_FAULT_WRITE_AFTER=N makes checkpoint writes
// fail with ENOSPC after N bytes; AOE_TEST_KILL_IN_WRITE=N sends SIGKILL to the process after N
// bytes of a checkpoint were written.

#endif

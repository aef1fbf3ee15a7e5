// ckpt.h — the checkpoint file: a set of named fp32 arrays that share one tensor table (the
// parameters and any number of state arrays mirroring them, e.g. optimizer moments), the resolved
// config JSON and a small table of named scalars (the meta). Written atomically (temp + fsync +
// rename); every section and every tensor of every array is CRC-checked on read. The layout is in
// docs/formats.md, "Checkpoint". This module knows nothing about training: what the arrays and
// scalars mean is the writer's business (src/train/run.c writes the training state).
#ifndef AOE_CKPT_H
#define AOE_CKPT_H

#include <stdint.h>

#include "config/config.h"
#include "model/model.h"

#define CKPT_MAX_STATE 8      // state arrays besides the parameters
#define CKPT_MAX_META 64      // named scalars
#define CKPT_META_NAME 20     // bytes of a scalar's name, NUL included
#define CKPT_ARRAY_NAME 32    // bytes of an array's name, NUL included
#define CKPT_PARAMS "params"  // the name of the parameter array

// Named scalars. Values are stored as 64-bit patterns; the type says how to read them.
enum { CKPT_U64 = 0, CKPT_I64 = 1, CKPT_F64 = 2 };
typedef struct {
    char name[CKPT_META_NAME];
    uint32_t type;
    uint64_t bits;
    uint64_t at;  // byte offset of the entry in the file it was read from (0 when built in memory)
} CkptMetaItem;

typedef struct {
    int n;
    CkptMetaItem it[CKPT_MAX_META];
    const char *path;  // the file it was read from (NULL when built in memory): for messages
} CkptMeta;

void ckpt_meta_put_u64(CkptMeta *m, const char *name, uint64_t v);
void ckpt_meta_put_i64(CkptMeta *m, const char *name, int64_t v);
void ckpt_meta_put_f64(CkptMeta *m, const char *name, double v);
// Readers: the value of `name`, range-checked. A missing entry, a wrong type or a value outside
// [lo, hi] exits 2 with "file: byte N: meta NAME = V (expected lo..hi)". ckpt_meta_f64 also
// refuses NaN and infinities.
uint64_t ckpt_meta_u64(const CkptMeta *m, const char *name, uint64_t lo, uint64_t hi);
int64_t ckpt_meta_i64(const CkptMeta *m, const char *name, int64_t lo, int64_t hi);
double ckpt_meta_f64(const CkptMeta *m, const char *name);
int ckpt_meta_has(const CkptMeta *m, const char *name);
// The two entries every reader uses: the training step (0..10^9) and the tokenizer identity;
// 0 when the checkpoint has none. Out of range exits 2 like the getters above.
long ckpt_meta_step(const CkptMeta *m);
uint64_t ckpt_meta_tok_hash(const CkptMeta *m);

// State arrays to save or load besides the parameters: each has P->total floats in the layout of
// the model's (local) parameter block (model/params.h), so the tensor table describes every array.
typedef struct {
    int n;
    const char *name[CKPT_MAX_STATE];
    float *data[CKPT_MAX_STATE];
} CkptState;

// Saves m's parameters, the state arrays st (may be NULL) and meta to `path` atomically. Meta
// keys "vocab" (the model's V) is added by the writer. Returns 0, or -1 with a message in err
// (the previous file at `path` is untouched).
int ckpt_save(const char *path, const Model *m, const CkptState *st, const CkptMeta *meta, int compress, char *err,
              int errlen);
// A model whose parameter table has sharded tensors (model/params.h; expert parallelism) holds
// only its slices of them; the file still holds the whole model. The writer calls gather(local,
// t, whole) once per sharded tensor and array, arrays in order (parameters, then st's), tensors
// in table order: it must fill whole [t->gn] from this process's local + t->off and the other
// holders' slices (a collective the other holders join in the same order). NULL: nothing sharded.
typedef void (*CkptGatherFn)(const float *local, const TensorInfo *t, float *whole);
int ckpt_save_gather(const char *path, const Model *m, const CkptState *st, const CkptMeta *meta, int compress,
                     CkptGatherFn gather, char *err, int errlen);
// Loads a checkpoint for inference: builds the model from the stored config (activations for up
// to max_B sequences), reads only the parameters. Exits 2 with "file: byte N: what was expected"
// on a bad file. meta_out may be NULL.
Model *ckpt_load_model(const char *path, int max_B, CkptMeta *meta_out);
// The stored config and vocabulary size, the file checked up to (not including) the payload.
void ckpt_read_config(const char *path, Config *cfg, int *V);
// A checkpoint checked as ckpt_load_model would, without building a model: header, config,
// meta, tensor table and the parameters' CRCs (read into a scratch array; optimizer state arrays
// are skipped, as inference skips them). Exits 2 with the load's message on any problem. cfg, V
// and meta (each may be NULL) get what the file stores.
void ckpt_verify(const char *path, Config *cfg, int *V, CkptMeta *meta);
// The same with config overrides ("key=value", e.g. model.ffn.score_override=norm for an
// evaluation probe) applied to the stored config and validated before the model is built.
Model *ckpt_load_model_with(const char *path, int max_B, CkptMeta *meta_out, const char *const *sets, int nsets);
// Loads parameters and the state arrays named in st into an existing model built from the same
// config (a sharded model keeps its slices of the whole tensors in the file). Exits 2 if the file is bad, if its config differs from m->cfg in a key under one of
// `same_keys` (prefixes such as "model."; names the key), or if its state arrays are not exactly
// those of st (names them). st NULL: the parameters only, whatever state arrays the file holds.
void ckpt_load_into(const char *path, Model *m, const CkptState *st, CkptMeta *meta, const char *const *same_keys,
                    int n_same);
// Path of the newest complete checkpoint of a run directory (via its `latest` pointer, else the
// highest ckpt-<step>.aoec), or NULL.
char *ckpt_latest(const char *run_dir);
// Step number of a file name "ckpt-<digits>.aoec", or -1.
long ckpt_name_step(const char *name);
// First key under `prefix` (e.g. "model.") whose value differs between a and b: returns NULL if
// none, else a message "model.d_model is 64 in A but 32 in B" in buf (names from an/bn).
const char *ckpt_config_diff(const Config *a, const char *an, const Config *b, const char *bn,
                             const char *prefix, char *buf, int buflen);

// Test hooks (documented in docs/formats.md): AOE_FAULT_WRITE_AFTER=N makes checkpoint writes
// fail with ENOSPC after N bytes; AOE_TEST_KILL_IN_WRITE=N sends SIGKILL to the process after N
// bytes of a checkpoint were written; AOE_TEST_HOLD_IN_WRITE=N stalls each checkpoint write for
// 30 s after N bytes (printing "holding the checkpoint write after N bytes"), to signal a process
// while it saves.

#endif

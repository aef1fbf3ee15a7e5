// eval.h — evaluation scored the way lm-evaluation-harness scores: tasks (registry and loaders for
// the real benchmark files and a generic JSONL format), a scorer that turns (context,
// continuation) pairs into summed log-likelihoods / greedy flags on a Model, metrics with standard
// errors, and lm-eval-shaped reports. It does not train, and it does not reuse a KV cache: the
// model API recomputes every sequence, so a question's shared context is "shared" only in the
// sense that all its choices run in the same batch. docs/eval.md is the user-facing description.
#ifndef AOE_EVAL_H
#define AOE_EVAL_H

#include <stdint.h>

#include "data/tokenizer.h"
#include "model/model.h"

// ---- tasks ----------------------------------------------------------------------------------

typedef enum {
    TK_MC,       // shared context, one continuation per choice: acc, acc_norm
    TK_PARTIAL,  // one context per option, shared continuation (WinoGrande): acc
    TK_CLOZE,    // context -> target, greedy accuracy and perplexity (LAMBADA)
    TK_PAIR,     // minimal pair (good, bad), empty context: acc = logP(good) > logP(bad) (BLiMP)
    TK_PPL,      // rolling log-likelihood of documents: word/byte perplexity, bits per byte
} TaskKind;

typedef struct {
    char *ctx;      // MC / CLOZE context (PAIR, PARTIAL: NULL)
    char **opts;    // MC choices, PARTIAL contexts, PAIR {good, bad}
    int n_opts;
    char *cont;     // PARTIAL shared continuation, CLOZE target (both without the delimiter)
    int gold;
    int group;      // sub-task index (BLiMP paradigm), else 0
    int line;       // 1-based source line (for messages)
} Item;

typedef struct {
    char name[96];
    TaskKind kind;
    char path[2048];         // what was loaded (file or directory)
    Item *items;
    int n;
    char **docs;             // TK_PPL documents
    int n_docs;
    char *shards;            // TK_PPL on token shards ("shards:GLOB"): the loader spec, else NULL
    char **groups;           // sub-task names (n_groups > 1: reported as name_<group>)
    int n_groups;
    const char *main_metric; // the comparison-table column ("acc", "acc_norm", "word_perplexity")
    const char *fewshot_sep; // between shots ("\n\n")
} Task;

// Name -> definition. Returns the number of registered tasks; fills names[] if not NULL.
int task_registry_names(const char **names, int max);
const char *task_registry_desc(const char *name);
// Expands a --tasks list ("all", "paper", registry names, *.jsonl / *.txt paths) into task specs
// (malloc'd strings); dies (exit 2) on an unknown name.
char **task_expand(const char *list, int *n_out);
// Loads one spec: "shards:GLOB" (perplexity over the loader's windows of those shards), a registry name (file found under the data roots, see task_data_roots), a JSONL
// file in the generic / llm-foundry formats, or a text file (perplexity). Dies with
// "file:line: what was expected" on malformed content.
Task *task_load(const char *spec, const char *data_dir);
void task_free(Task *t);
// Parses generic / llm-foundry JSONL text (used by task_load and by tests). name is for messages.
Task *task_parse_jsonl(const char *text, size_t len, const char *name);
// Search path for task data: data_dir (if set), $AOE_DATA_DIR, ./data/tasks, <exe dir>/data/tasks,
// ../shared/data. Fills roots[], returns their count.
int task_data_roots(const char *data_dir, const char **roots, int max);
// lm-eval's wikitext detokenizer (undoes " @-@ ", " , ", "( x )" spacing); malloc'd.
char *wikitext_detokenize(const char *s);

// ---- scoring --------------------------------------------------------------------------------

// A sequence to score: tok[0..n) (tok[0] is the EOT prefix); its last ncont tokens are scored,
// each given everything before it. n <= S+1 of the model (callers left-truncate).
typedef struct { const int32_t *tok; int n, ncont; } Seq;
typedef struct { double ll; int greedy; } SeqScore;

typedef struct Scorer Scorer;
// Wraps m (not owned) with a scoring model that shares m's weights and holds tok_budget positions
// (at least one sequence of m->S); short sequences run at short S (their longest member) in
// larger batches. tok_budget bounds B*S per forward (memory ~ L*H*budget*S).
Scorer *scorer_new(Model *m, int tok_budget);
void scorer_free(Scorer *s);
// Scores n sequences; forwards batch as many consecutive ones as fit the budget, in the given order.
void scorer_run(Scorer *s, const Seq *seqs, int n, SeqScore *out);
// One forward of tok[0..n) (n <= S); returns the probability row [V] of the last position.
const float *scorer_next_probs(Scorer *s, const int32_t *tok, int n);
int scorer_seq_len(const Scorer *s);   // the model's S (longest sequence)
long scorer_tokens(const Scorer *s);     // tokens forwarded so far (padding excluded)
long scorer_positions(const Scorer *s);  // positions forwarded (padding included)

// lm-eval's pair encoding: trailing spaces of ctx move to the continuation; the continuation's
// ids are encode(ctx+cont) minus the prefix of encode(ctx). Returns [EOT] + ctx ids + cont ids
// left-truncated to max_len tokens (malloc'd), *ncont = continuation ids kept.
int32_t *encode_pair(const Tokenizer *tk, const char *ctx, const char *cont, int max_len, int *n,
                     int *ncont);

// ---- metrics --------------------------------------------------------------------------------

typedef struct {
    char name[40];
    double value, stderr_;  // stderr_ < 0: not applicable ("N/A" in lm-eval)
    int higher_is_better;
} Metric;

typedef struct {
    char task[192];
    int n, n_original;          // items scored (after --limit) and in the file
    int shots;
    int subtask;                // a sub-task (BLiMP paradigm) of the preceding task
    TaskKind kind;
    Metric m[8];
    int n_m;
    const char *main_metric;
    double seconds, tokens;     // wall time and real (unpadded) tokens forwarded
    double positions;           // positions forwarded, padding included
} TaskResult;

// Mean and standard error of the mean (sample std / sqrt(n), lm-eval's mean_stderr).
void mean_stderr(const double *x, int n, double *mean, double *se);
// Multiple choice metrics from per-choice log-likelihoods: lls[i][j] for item i, choice j, with
// clen[i][j] the choice length in characters (acc_norm divisor). with_norm adds acc_norm.
void metrics_mc(TaskResult *r, int n, const int *n_opts, const double *const *lls,
                const int *const *clen, const int *gold, int with_norm);
void metrics_cloze(TaskResult *r, int n, const double *ll, const int *greedy);
void metrics_ppl(TaskResult *r, double nll, double words, double bytes, double tokens);
const Metric *result_metric(const TaskResult *r, const char *name);

// Runs one task on a scorer (shots drawn from the task itself with `seed`, excluding the item).
// Writes one or more results (sub-tasks after the main one); returns their count.
int eval_task(Scorer *sc, const Tokenizer *tk, const Task *t, int limit, int shots, uint64_t seed,
              TaskResult *out, int max_out);
// Builds the prompt (few-shot prefix + context) of request j of item i; cont gets the
// continuation with its delimiter. Both malloc'd. Exposed for tests.
void build_request(const Task *t, int i, int j, int shots, uint64_t seed, char **ctx, char **cont);

// ---- reports --------------------------------------------------------------------------------

typedef struct {
    const char *path, *label;
    uint64_t file_hash, tok_hash;
    long step;
    double params_total, params_active;
    const char *config_json;  // resolved config (may be NULL)
    TaskResult *res;
    int n_res;
    double seconds;
} CkptResults;

typedef struct {
    const char *tasks_arg;
    int limit, shots, tok_budget, threads;
    uint64_t seed;
    const char *data_dir;
} EvalSettings;

// results.json in lm-eval's shape for one checkpoint (malloc'd JSON text).
char *report_results_json(const CkptResults *c, const EvalSettings *s);
// report.md: comparison table (rows = checkpoints, columns = main metric of each task + average
// of the accuracy tasks) and per-task details (malloc'd).
char *report_markdown(const CkptResults *c, int n_ckpt, const EvalSettings *s);

#endif

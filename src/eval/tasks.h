// tasks.h — evaluation tasks: the registry of benchmarks, loaders for the real benchmark files
// and the generic JSONL format, and their in-memory form (Task, Item). docs/eval.md describes
// the formats. Scoring is in scorer.h, one task's run in eval_task.h.
#ifndef AOE_EVAL_TASKS_H
#define AOE_EVAL_TASKS_H

#include <stddef.h>

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
// As task_load, but a registered task whose data is not available (file under no data root,
// bzip2 missing) returns NULL with `why` saying where it looked and how to get it.
Task *task_try_load(const char *spec, const char *data_dir, char *why, size_t wcap);
void task_free(Task *t);
// The results key of sub-task g of t ("<task>_<group>", "blimp_<paradigm>"), or of t itself (g < 0).
void task_result_name(const Task *t, int g, char *buf, size_t n);
// Dies (exit 2) naming both specs unless every results key of the n tasks is distinct.
void task_check_unique(Task *const *t, char *const *specs, int n);
// Parses generic / llm-foundry JSONL text (used by task_load and by tests). name is for messages.
Task *task_parse_jsonl(const char *text, size_t len, const char *name);
// Search path for task data: data_dir (if set), $AOE_DATA_DIR, ./data/tasks, <exe dir>/data/tasks,
// <exe dir>/../share/aoe/tasks (make install). Fills roots[], returns their count.
int task_data_roots(const char *data_dir, const char **roots, int max);
// lm-eval's wikitext detokenizer (undoes " @-@ ", " , ", "( x )" spacing); malloc'd.
char *wikitext_detokenize(const char *s);

#endif

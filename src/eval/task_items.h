// task_items.h — building a Task's items (task_items.c), shared by the generic JSONL parser and
// the loaders of the original benchmark formats in tasks.c. Internal to src/eval.
#ifndef AOE_EVAL_TASK_ITEMS_H
#define AOE_EVAL_TASK_ITEMS_H

#include <cjson/cJSON.h>

#include "eval/tasks.h"

// The string value of key k of object o, or NULL.
const char *jstr(const cJSON *o, const char *k);
Task *task_new(const char *name, TaskKind kind, const char *path);
// Appends a zeroed item (capacity doubles).
Item *push_item(Task *t);
// Index of sub-task g of t, added if new.
int group_index(Task *t, const char *g);
// Parses generic / llm-foundry JSONL text into t's items (docs/eval.md). *kind: the kind of the
// first item (-1 before it); every line must be of that kind. fixed_group >= 0 puts every item in
// that sub-task, else an item's "group" (or "UID") field does. Dies "name:line: ..." on bad input.
void parse_jsonl_into(Task *t, const char *text, size_t len, const char *name, int *kind, int fixed_group);

#endif

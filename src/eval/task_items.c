// task_items.c — a Task's items: creation and release, and the generic / llm-foundry JSONL format
// (docs/eval.md) with its messages (file:line, what was found, what was expected).
#include "eval/task_items.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util/common.h"

// ---- items ----------------------------------------------------------------------------------

Task *task_new(const char *name, TaskKind kind, const char *path) {
    Task *t = xcalloc(1, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->path, sizeof t->path, "%s", path);
    t->kind = kind;
    t->fewshot_sep = "\n\n";
    t->main_metric = kind == TK_PPL ? "word_perplexity" : kind == TK_MC ? "acc_norm" : "acc";
    return t;
}

Item *push_item(Task *t) {
    if ((t->n & (t->n - 1)) == 0) t->items = xrealloc(t->items, sizeof(Item) * (t->n ? 2 * t->n : 1));
    Item *it = &t->items[t->n++];
    memset(it, 0, sizeof *it);
    return it;
}

int group_index(Task *t, const char *g) {
    for (int i = 0; i < t->n_groups; i++)
        if (!strcmp(t->groups[i], g)) return i;
    t->groups = xrealloc(t->groups, sizeof(char *) * (t->n_groups + 1));
    t->groups[t->n_groups] = xstrdup(g);
    return t->n_groups++;
}

void task_free(Task *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) {
        Item *it = &t->items[i];
        free(it->ctx); free(it->cont);
        for (int j = 0; j < it->n_opts; j++) free(it->opts[j]);
        free(it->opts);
    }
    free(t->items);
    for (int i = 0; i < t->n_docs; i++) free(t->docs[i]);
    free(t->docs);
    for (int i = 0; i < t->n_groups; i++) free(t->groups[i]);
    free(t->groups);
    free(t->shards);
    free(t);
}

// ---- generic / llm-foundry JSONL ------------------------------------------------------------

static const char *kind_name(TaskKind k) {
    switch (k) {
    case TK_MC: return "multiple-choice {\"query\"|\"context\", \"choices\", \"gold\"}";
    case TK_PARTIAL: return "partial {\"context_options\", \"continuation\", \"gold\"}";
    case TK_CLOZE: return "cloze {\"context\", \"continuation\"} or {\"text\"}";
    case TK_PAIR: return "minimal pair {\"sentence_good\", \"sentence_bad\"}";
    default: return "perplexity";
    }
}

const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Reads "gold" (integer index, or a string equal to one option) of an item whose options are the
// array `field`. Returns -1 with a sentence in why[] (what was found, what was expected).
static int jgold(const cJSON *o, int n_opts, char **opts, const char *field, char *why, size_t nwhy) {
    const char *key = "gold";
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!g && (g = cJSON_GetObjectItemCaseSensitive(o, "label"))) key = "label";
    // range first: converting an out-of-range double to int is undefined (found by fuzz-tasks)
    if (cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble < n_opts && g->valuedouble == floor(g->valuedouble))
        return (int)g->valuedouble;
    if (cJSON_IsString(g))
        for (int i = 0; i < n_opts; i++)
            if (!strcmp(g->valuestring, opts[i])) return i;
    char *found = g ? cJSON_PrintUnformatted(g) : NULL, what[100];
    if (found) snprintf(what, sizeof what, "\"%s\" is %.60s%s", key, found, strlen(found) > 60 ? "..." : "");
    else snprintf(what, sizeof what, "no \"gold\"");
    snprintf(why, nwhy, "%s: expected the index of the right answer in \"%s\" (0 to %d) or the text of one of them", what,
             field, n_opts - 1);
    free(found);
    return -1;
}

static int fail(char *why, size_t nwhy, const char *msg) {
    snprintf(why, nwhy, "%s", msg);
    return -1;
}

static int jstrings(const cJSON *a, char ***out, int *n) {
    if (!cJSON_IsArray(a)) return -1;
    int k = cJSON_GetArraySize(a);
    if (k < 1) return -1;
    char **v = xcalloc(k, sizeof(char *));
    for (int i = 0; i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(e)) { for (int j = 0; j < i; j++) free(v[j]); free(v); return -1; }
        v[i] = xstrdup(e->valuestring);
    }
    *out = v; *n = k;
    return 0;
}

// Parses one line into it; returns its kind, or -1 with a sentence in why[].
static int parse_item(const cJSON *o, Item *it, char *why, size_t nwhy) {
    const char *good = jstr(o, "sentence_good"), *bad = jstr(o, "sentence_bad");
    if (!good) good = jstr(o, "good");
    if (!bad) bad = jstr(o, "bad");
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
    const cJSON *copts = cJSON_GetObjectItemCaseSensitive(o, "context_options");
    if (!copts) copts = cJSON_GetObjectItemCaseSensitive(o, "contexts");
    const char *query = jstr(o, "query");
    if (!query) query = jstr(o, "context");
    const char *cont = jstr(o, "continuation"), *text = jstr(o, "text");
    if (good || bad) {
        if (!good || !bad) return fail(why, nwhy, "expected both \"sentence_good\" and \"sentence_bad\" strings (a minimal pair)");
        it->opts = xcalloc(2, sizeof(char *));
        it->opts[0] = xstrdup(good); it->opts[1] = xstrdup(bad);
        it->n_opts = 2; it->gold = 0;
        return TK_PAIR;
    }
    if (copts) {
        if (jstrings(copts, &it->opts, &it->n_opts)) return fail(why, nwhy, "expected \"context_options\" to be a non-empty array of strings");
        if (!cont) return fail(why, nwhy, "expected a \"continuation\" string (a partial-scoring item)");
        it->cont = xstrdup(cont);
        if ((it->gold = jgold(o, it->n_opts, it->opts, "context_options", why, nwhy)) < 0) return -1;
        return TK_PARTIAL;
    }
    if (choices) {
        if (jstrings(choices, &it->opts, &it->n_opts)) return fail(why, nwhy, "expected \"choices\" to be a non-empty array of strings");
        if (!query) return fail(why, nwhy, "expected a \"query\" (or \"context\") string (a multiple-choice item)");
        if (it->n_opts > 256) return fail(why, nwhy, "expected at most 256 \"choices\"");
        it->ctx = xstrdup(query);
        if ((it->gold = jgold(o, it->n_opts, it->opts, "choices", why, nwhy)) < 0) return -1;
        return TK_MC;
    }
    if (query && cont) {
        it->ctx = xstrdup(query); it->cont = xstrdup(cont);
        return TK_CLOZE;
    }
    if (text) {  // LAMBADA original: target = last space-separated word
        const char *sp = strrchr(text, ' ');
        if (!sp || !sp[1]) return fail(why, nwhy, "expected \"text\" to hold at least two space-separated words (a cloze item)");
        it->ctx = strndup(text, sp - text); it->cont = xstrdup(sp + 1);
        return TK_CLOZE;
    }
    return fail(why, nwhy, "expected an object with \"choices\", \"context_options\", \"continuation\", \"text\" or "
                           "\"sentence_good\"/\"sentence_bad\"");
}

void parse_jsonl_into(Task *t, const char *text, size_t len, const char *name, int *kind, int fixed_group) {
    int line = 0, first_line = 0;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line++;
        size_t a = i, b = e;
        while (a < b && isspace((unsigned char)text[a])) a++;
        while (b > a && isspace((unsigned char)text[b - 1])) b--;
        i = e + 1;
        if (a == b) continue;
        cJSON *o = cJSON_ParseWithLength(text + a, b - a);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            die_input("%s:%d: expected one JSON object per line (%s)", name, line,
                      o ? "not an object" : "invalid JSON");
        }
        Item *it = push_item(t);
        it->line = line;
        char why[400];
        int k = parse_item(o, it, why, sizeof why);
        if (k < 0) { cJSON_Delete(o); die_input("%s:%d: %s", name, line, why); }
        if (*kind < 0) { *kind = k; first_line = line; }
        else if (k != *kind) {
            cJSON_Delete(o);
            die_input("%s:%d: expected a %s item like line %d, got a %s item", name, line, kind_name(*kind),
                      first_line ? first_line : 1, kind_name(k));
        }
        const char *g = jstr(o, "group");
        if (!g) g = jstr(o, "UID");
        it->group = fixed_group >= 0 ? fixed_group : g ? group_index(t, g) : 0;
        cJSON_Delete(o);
    }
}

Task *task_parse_jsonl(const char *text, size_t len, const char *name) {
    Task *t = task_new(name, TK_MC, name);
    int kind = -1;
    parse_jsonl_into(t, text, len, name, &kind, -1);
    if (kind < 0) die_input("%s: no items (expected one JSON object per line)", name);
    t->kind = kind;
    t->main_metric = kind == TK_MC ? "acc_norm" : "acc";
    if (t->n_groups == 1) { free(t->groups[0]); free(t->groups); t->groups = NULL; t->n_groups = 0; }
    return t;
}


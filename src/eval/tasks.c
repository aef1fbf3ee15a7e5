// tasks.c — the task registry and loaders. Each registered task names a file relative to a data
// root and a loader that turns the file into items with lm-eval's prompts:
//   piqa        piqa/valid.jsonl + valid-labels.lst   "Question: {goal}\nAnswer:" -> sol1|sol2
//   hellaswag   hellaswag-text/*.txt.bz2 (6 lines/item) "{label}: {ctx}" -> endings (preprocessed)
//   arc_*, boolq, copa, openbookqa, winogrande: llm-foundry ICL jsonl, rewritten to lm-eval prompts
//   lambada_openai lambada-openai/lambada_test.jsonl   text minus last word -> " " + last word
//   blimp[_uid] blimp/data/<uid>.jsonl[.gz]            "" -> good|bad
//   wikitext    wikitext-2-tokens/test.txt             rolling log-likelihood per article
// Any other *.jsonl is read in the generic / llm-foundry formats (task_items.c); any other file is
// a perplexity document. Errors name file:line and what was expected, and exit 2.
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "data/loader.h"
#include "eval/task_items.h"
#include "eval/tasks.h"
#include "util/common.h"

enum { F_JSONL, F_PIQA, F_HSWAG, F_BLIMP, F_WIKITEXT, F_TEXT };

typedef struct {
    const char *name, *rel;
    int fmt;
    const char *strip_prefix, *suffix;  // query rewrite to lm-eval's prompt
    int copa;                           // ", therefore" -> " therefore" (lm-eval's COPA prompt)
    const char *main_metric, *desc;
} TaskDef;

static const TaskDef defs[] = {
    {"arc_easy", "llmfoundry-icl/arc_easy.jsonl", F_JSONL, NULL, "\nAnswer:", 0, "acc_norm",
     "ARC-Easy test, 2376 x 4 choices (CC BY-SA 4.0)"},
    {"arc_challenge", "llmfoundry-icl/arc_challenge.jsonl", F_JSONL, NULL, "\nAnswer:", 0, "acc_norm",
     "ARC-Challenge test, 1172 x 4 choices (CC BY-SA 4.0)"},
    {"piqa", "piqa/valid.jsonl", F_PIQA, NULL, NULL, 0, "acc_norm", "PIQA dev, 1838 x 2 choices (AFL-3.0)"},
    {"hellaswag", "hellaswag-text/hellaswag_val_full.txt.bz2", F_HSWAG, NULL, NULL, 0, "acc_norm",
     "HellaSwag val, 10042 x 4 endings (MIT)"},
    {"winogrande", "llmfoundry-icl/winogrande.jsonl", F_JSONL, NULL, NULL, 0, "acc",
     "WinoGrande 1.1 dev, 1267 x 2, partial scoring (CC-BY)"},
    {"boolq", "llmfoundry-icl/boolq.jsonl", F_JSONL, "Passage: ", "\nAnswer:", 0, "acc",
     "BoolQ validation, 3270 yes/no (CC BY-SA 3.0)"},
    {"copa", "llmfoundry-icl/copa.jsonl", F_JSONL, NULL, NULL, 1, "acc", "COPA validation, 100 x 2"},
    {"openbookqa", "llmfoundry-icl/openbook_qa.jsonl", F_JSONL, NULL, NULL, 0, "acc_norm",
     "OpenBookQA test, 500 x 4 choices"},
    {"lambada_openai", "lambada-openai/lambada_test.jsonl", F_JSONL, NULL, NULL, 0, "acc",
     "LAMBADA (OpenAI) test, 5153 last-word cloze (CC BY 4.0)"},
    {"blimp", "blimp/data", F_BLIMP, NULL, NULL, 0, "acc", "BLiMP, 67 paradigms of minimal pairs (CC BY 4.0)"},
    {"wikitext", "wikitext-2-tokens/test.txt", F_WIKITEXT, NULL, NULL, 0, "word_perplexity",
     "WikiText-2 test, rolling perplexity per article (CC BY-SA 3.0)"},
};
static const int n_defs = sizeof defs / sizeof defs[0];

static const char *groups[][2] = {
    {"paper", "arc_easy,piqa,winogrande,hellaswag"},  // the AoE paper's zero-shot set (no SIQA here)
    {"all", "arc_easy,arc_challenge,piqa,hellaswag,winogrande,boolq,copa,openbookqa,lambada_openai,blimp,wikitext"},
    {"small", "arc_easy,piqa,winogrande,copa,lambada_openai,blimp,wikitext"},
};

int task_registry_names(const char **names, int max) {
    for (int i = 0; i < n_defs && names && i < max; i++) names[i] = defs[i].name;
    return n_defs;
}

const char *task_registry_desc(const char *name) {
    for (int i = 0; i < n_defs; i++)
        if (!strcmp(defs[i].name, name)) return defs[i].desc;
    return NULL;
}

static const TaskDef *find_def(const char *name) {
    for (int i = 0; i < n_defs; i++)
        if (!strcmp(defs[i].name, name)) return &defs[i];
    return NULL;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void push_spec(char ***v, int *n, const char *s) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*v)[i], s)) return;  // no duplicates
    *v = xrealloc(*v, sizeof(char *) * (*n + 1));
    (*v)[(*n)++] = xstrdup(s);
}

void task_result_name(const Task *t, int g, char *buf, size_t n) {
    if (g < 0 || t->n_groups <= 1) snprintf(buf, n, "%s", t->name);
    else snprintf(buf, n, "%s_%s", strncmp(t->name, "blimp", 5) ? t->name : "blimp", t->groups[g]);
}

void task_check_unique(Task *const *t, char *const *specs, int n) {
    char a[160], b[160];
    for (int i = 0; i < n; i++)
        for (int g = -1; g < (t[i]->n_groups > 1 ? t[i]->n_groups : 0); g++) {
            task_result_name(t[i], g, a, sizeof a);
            for (int j = 0; j < i; j++)
                for (int h = -1; h < (t[j]->n_groups > 1 ? t[j]->n_groups : 0); h++) {
                    task_result_name(t[j], h, b, sizeof b);
                    if (!strcmp(a, b))
                        die_input("--tasks: '%s' and '%s' both give results named '%s' (results are keyed by task name, "
                                  "the file name without its extension): rename one of them", specs[j], specs[i], a);
                }
        }
}

char **task_expand(const char *list, int *n_out) {
    char **v = NULL;
    int n = 0;
    char *copy = xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        int grp = 0;
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
            if (!strcmp(tok, groups[g][0])) {
                int k = 0;
                char **sub = task_expand(groups[g][1], &k);
                for (int i = 0; i < k; i++) { push_spec(&v, &n, sub[i]); free(sub[i]); }
                free(sub);
                grp = 1;
            }
        if (grp) continue;
        if (find_def(tok) || !strncmp(tok, "blimp_", 6) || !strncmp(tok, "shards:", 7) || strchr(tok, '/') ||
            strchr(tok, '.'))
            push_spec(&v, &n, tok);
        else {
            char known[1024] = "";
            for (int i = 0; i < n_defs; i++) {
                strncat(known, defs[i].name, sizeof known - strlen(known) - 3);
                strncat(known, ", ", sizeof known - strlen(known) - 1);
            }
            die_input("unknown task '%s' (known: %sblimp_<paradigm>, groups paper/small/all, or a "
                      ".jsonl / text file path)", tok, known);
        }
    }
    free(copy);
    if (!n) die_input("--tasks: empty task list");
    *n_out = n;
    return v;
}

int task_data_roots(const char *data_dir, const char **roots, int max) {
    static char exe_root[2][1100];
    int n = 0;
    if (data_dir && n < max) roots[n++] = data_dir;
    const char *env = getenv("AOE_DATA_DIR");
    if (env && *env && n < max) roots[n++] = env;
    if (n < max) roots[n++] = "data/tasks";
    char exe[1024];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        // next to the binary (a build in the repository) and PREFIX/share/aoe/tasks (make install)
        snprintf(exe_root[0], sizeof exe_root[0], "%s/data/tasks", exe);
        snprintf(exe_root[1], sizeof exe_root[1], "%s/../share/aoe/tasks", exe);
        for (int i = 0; i < 2 && n < max; i++) roots[n++] = exe_root[i];
    }
    return n;
}

// First root under which `rel` exists (0), else -1 with `why` saying where it looked and how to
// get the file.
static int resolve(const char *rel, const char *data_dir, char *out, size_t cap, char *why, size_t wcap) {
    const char *roots[8];
    int n = task_data_roots(data_dir, roots, 8);
    char tried[4096] = "";
    for (int i = 0; i < n; i++) {
        snprintf(out, cap, "%s/%s", roots[i], rel);
        if (file_exists(out) || is_directory(out)) return 0;
        strncat(tried, " ", sizeof tried - strlen(tried) - 1);
        strncat(tried, roots[i], sizeof tried - strlen(tried) - 1);
    }
    snprintf(why, wcap, "'%s' is under none of the data roots (%s); it ships in the repository's "
             "data/tasks: run from the repository root, `make install`, or pass --data-dir "
             "<repository>/data/tasks", rel, tried + 1);
    return -1;
}

// ---- original formats -----------------------------------------------------------------------

static char *cat3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = xmalloc(la + lb + lc + 1);
    memcpy(s, a, la); memcpy(s + la, b, lb); memcpy(s + la + lb, c, lc); s[la + lb + lc] = 0;
    return s;
}

static Task *load_piqa(const char *path, const char *name) {
    size_t len, llen;
    char *text = read_file(path, &len);
    char lpath[2100];
    snprintf(lpath, sizeof lpath, "%.*s-labels.lst", (int)(strlen(path) - 6), path);  // valid.jsonl -> valid-labels.lst
    if (!ends_with(path, ".jsonl") || !file_exists(lpath))
        die_input("%s: PIQA needs its labels file next to it (%s)", path, lpath);
    char *labels = read_file(lpath, &llen);
    Task *t = task_new(name, TK_MC, path);
    char *save = NULL, *lab = strtok_r(labels, "\n", &save);
    int line = 0;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        line++;
        cJSON *o = cJSON_ParseWithLength(text + i, e - i);
        i = e + 1;
        if (!o) die_input("%s:%d: expected a JSON object {\"goal\", \"sol1\", \"sol2\"}", path, line);
        const char *g = jstr(o, "goal"), *s1 = jstr(o, "sol1"), *s2 = jstr(o, "sol2");
        if (!g || !s1 || !s2) die_input("%s:%d: expected string fields \"goal\", \"sol1\", \"sol2\"", path, line);
        if (!lab || (strcmp(lab, "0") && strcmp(lab, "1")))
            die_input("%s:%d: expected a label 0 or 1 for this item", lpath, line);
        Item *it = push_item(t);
        it->line = line;
        it->ctx = cat3("Question: ", g, "\nAnswer:");
        it->opts = xcalloc(2, sizeof(char *));
        it->opts[0] = xstrdup(s1); it->opts[1] = xstrdup(s2);
        it->n_opts = 2;
        it->gold = lab[0] - '0';
        cJSON_Delete(o);
        lab = strtok_r(NULL, "\n", &save);
    }
    free(text); free(labels);
    return t;
}

// lm-eval's hellaswag preprocess: strip, " [title]" -> ". ", drop "[...]", "  " -> " ".
static char *hs_pre(const char *s) {
    size_t n = strlen(s);
    char *o = xmalloc(2 * n + 1);
    size_t k = 0;
    while (*s == ' ') s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(s + i, " [title]", 8)) { o[k++] = '.'; o[k++] = ' '; i += 7; continue; }
        if (s[i] == '[') {
            const char *c = memchr(s + i, ']', n - i);
            if (c) { i = c - s; continue; }
        }
        o[k++] = s[i];
    }
    o[k] = 0;
    // collapse double spaces (one pass, like str.replace("  ", " "))
    size_t w = 0;
    for (size_t r = 0; r < k; r++) {
        if (o[r] == ' ' && r + 1 < k && o[r + 1] == ' ') { o[w++] = ' '; r++; continue; }
        o[w++] = o[r];
    }
    o[w] = 0;
    return o;
}

static char *slurp_cmd(const char *cmd, size_t *len) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *b = xmalloc(cap);
    for (size_t got; (got = fread(b + n, 1, cap - n - 1, p)) > 0;) {
        n += got;
        if (n + 1 >= cap) b = xrealloc(b, cap *= 2);
    }
    b[n] = 0;
    if (pclose(p) != 0) { free(b); return NULL; }
    *len = n;
    return b;
}

// NULL with `why` when the .bz2 cannot be decompressed (no bzip2 program).
static Task *load_hellaswag(const char *path, const char *name, char *why, size_t wcap) {
    size_t len;
    char *text;
    if (ends_with(path, ".bz2")) {
        if (strchr(path, '\'')) die_input("%s: path must not contain a quote", path);
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "bzip2 -dc '%s' 2>/dev/null", path);
        text = slurp_cmd(cmd, &len);
        if (!text) {
            snprintf(why, wcap, "%s could not be decompressed with `bzip2 -dc`; install bzip2 "
                     "(apt-get install bzip2, part of `make deps`)", path);
            return NULL;
        }
    } else
        text = read_file(path, &len);
    Task *t = task_new(name, TK_MC, path);
    char *lines[6];
    int line = 0, k = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        lines[k++] = l;
        if (k < 6) continue;
        k = 0;
        char *end;
        long g = strtol(lines[1], &end, 10);
        if (end == lines[1] || *end || g < 0 || g > 3)
            die_input("%s:%d: expected the gold ending index 0-3 (6 lines per item: context, gold, 4 endings)",
                      path, line - 4);
        Item *it = push_item(t);
        it->line = line - 5;
        it->ctx = hs_pre(lines[0]);
        it->opts = xcalloc(4, sizeof(char *));
        for (int j = 0; j < 4; j++) it->opts[j] = hs_pre(lines[2 + j]);
        it->n_opts = 4;
        it->gold = (int)g;
    }
    if (k) die_input("%s:%d: incomplete item (expected 6 lines per item)", path, line);
    free(text);
    return t;
}

// Whole file, gzip-compressed or plain (zlib reads both); NUL-terminated, dies on a read error.
static char *read_maybe_gz(const char *path, size_t *len) {
    gzFile g = gzopen(path, "rb");
    if (!g) die_input("%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    char *b = xmalloc(cap);
    for (int got; (got = gzread(g, b + n, (unsigned)(cap - n - 1))) > 0;) {
        n += (size_t)got;
        if (n + 1 >= cap) b = xrealloc(b, cap *= 2);
    }
    int err;
    const char *msg = gzerror(g, &err);
    if (err != Z_OK && err != Z_BUF_ERROR) die_input("%s: %s (expected gzip or plain text)", path, msg);
    gzclose(g);
    b[n] = 0;
    *len = n;
    return b;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// BLiMP: every <dir>/*.jsonl (or .jsonl.gz, as shipped) is one paradigm (sub-task); `only`
// selects one. A paradigm present both plain and compressed is read once (the plain file).
static Task *load_blimp(const char *dir, const char *name, const char *only) {
    Task *t = task_new(name, TK_PAIR, dir);
    t->main_metric = "acc";
    DIR *d = opendir(dir);
    if (!d) die_input("%s: cannot open BLiMP directory", dir);
    char **files = NULL;
    int nf = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (ends_with(e->d_name, ".jsonl") || ends_with(e->d_name, ".jsonl.gz")) {
            files = xrealloc(files, sizeof(char *) * (nf + 1));
            files[nf++] = xstrdup(e->d_name);
        }
    closedir(d);
    qsort(files, nf, sizeof(char *), cmp_str);  // "x.jsonl" sorts before "x.jsonl.gz"
    int kind = TK_PAIR;
    char prev[256] = "";
    for (int i = 0; i < nf; i++) {
        char uid[256];
        snprintf(uid, sizeof uid, "%.*s", (int)(strstr(files[i], ".jsonl") - files[i]), files[i]);
        if ((only && strcmp(uid, only)) || !strcmp(uid, prev)) { free(files[i]); continue; }
        snprintf(prev, sizeof prev, "%s", uid);
        char p[2400];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        size_t len;
        char *text = read_maybe_gz(p, &len);
        parse_jsonl_into(t, text, len, p, &kind, group_index(t, uid));
        free(text); free(files[i]);
    }
    free(files);
    if (!t->n) die_input("%s: no BLiMP paradigm%s%s found", dir, only ? " " : "s", only ? only : "");
    if (only) { for (int i = 0; i < t->n_groups; i++) free(t->groups[i]); free(t->groups); t->groups = NULL; t->n_groups = 0; for (int i = 0; i < t->n; i++) t->items[i].group = 0; }
    return t;
}

static char *replace_all(char *cur, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to), n = strlen(cur);
    char *o = xmalloc(n * (lt > lf ? lt : 1) + 1), *w = o;
    for (const char *p = cur; *p;) {
        if (!strncmp(p, from, lf)) { memcpy(w, to, lt); w += lt; p += lf; }
        else *w++ = *p++;
    }
    *w = 0;
    free(cur);
    return o;
}

// re.sub(r"OPEN\s*([^CLOSE]*?)\s*CLOSE", r"OPEN\1CLOSE"): trims spaces inside each pair.
static char *trim_pairs(char *cur, char open, char close) {
    size_t n = strlen(cur);
    char *o = xmalloc(n + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        const char *c = cur[i] == open ? strchr(cur + i + 1, close) : NULL;
        if (!c) { *w++ = cur[i]; continue; }
        size_t a = i + 1, b = c - cur;
        while (a < b && isspace((unsigned char)cur[a])) a++;
        while (b > a && isspace((unsigned char)cur[b - 1])) b--;
        *w++ = open;
        memcpy(w, cur + a, b - a); w += b - a;
        *w++ = close;
        i = c - cur;
    }
    *w = 0;
    free(cur);
    return o;
}

char *wikitext_detokenize(const char *s) {
    // lm-eval preprocess_wikitext.wikitext_detokenizer, rule by rule in its order
    static const char *pre[][2] = {
        {"s '", "s'"}, {" @-@ ", "-"}, {" @,@ ", ","}, {" @.@ ", "."}, {" : ", ": "}, {" ; ", "; "},
        {" . ", ". "}, {" ! ", "! "}, {" ? ", "? "}, {" , ", ", "},
    };
    static const char *post[][2] = {
        {"= = = =", "===="}, {"= = =", "==="}, {"= =", "=="}, {" \xc2\xb0 ", "\xc2\xb0"},
        {" \n", "\n"}, {"\n ", "\n"}, {" N ", " 1 "}, {" 's", "'s"},
    };
    char *cur = xstrdup(s);
    for (size_t r = 0; r < sizeof pre / sizeof pre[0]; r++) cur = replace_all(cur, pre[r][0], pre[r][1]);
    cur = trim_pairs(cur, '(', ')');
    cur = trim_pairs(cur, '[', ']');
    cur = trim_pairs(cur, '{', '}');
    cur = trim_pairs(cur, '"', '"');
    cur = trim_pairs(cur, '\'', '\'');
    for (size_t r = 0; r < sizeof post / sizeof post[0]; r++) cur = replace_all(cur, post[r][0], post[r][1]);
    return cur;
}

static void push_doc(Task *t, char *d) {
    const char *p = d;
    while (*p && isspace((unsigned char)*p)) p++;
    if (!*p) { free(d); return; }  // whitespace only (between articles): nothing to score
    t->docs = xrealloc(t->docs, sizeof(char *) * (t->n_docs + 1));
    t->docs[t->n_docs++] = d;
}

// WikiText: a line " = Title = " (one '=' each side) starts a new article.
static Task *load_wikitext(const char *path, const char *name) {
    size_t len;
    char *text = read_file(path, &len);
    Task *t = task_new(name, TK_PPL, path);
    size_t start = 0, i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        int head = e - i > 6 && !strncmp(text + i, " = ", 3) && text[i + 3] != '=' &&
                   !strncmp(text + e - 3, " = ", 3) && text[e - 4] != '=';
        if (head && i > start) {
            char *raw = strndup(text + start, i - start);
            push_doc(t, wikitext_detokenize(raw));
            free(raw);
            start = i;
        }
        i = e + 1;
    }
    if (len > start) {
        char *raw = strndup(text + start, len - start);
        push_doc(t, wikitext_detokenize(raw));
        free(raw);
    }
    free(text);
    return t;
}

// Query rewrite for llm-foundry files into lm-eval's prompts.
static void rewrite(Task *t, const TaskDef *d) {
    for (int i = 0; i < t->n; i++) {
        Item *it = &t->items[i];
        if (!it->ctx) continue;
        char *q = it->ctx;
        if (d->strip_prefix && !strncmp(q, d->strip_prefix, strlen(d->strip_prefix)))
            memmove(q, q + strlen(d->strip_prefix), strlen(q) - strlen(d->strip_prefix) + 1);
        if (d->copa) {  // "premise, therefore" -> "premise therefore"
            size_t n = strlen(q);
            if (ends_with(q, ", therefore")) memmove(q + n - 11, q + n - 10, 11);
            else if (ends_with(q, ", because")) memmove(q + n - 9, q + n - 8, 9);
        }
        if (d->suffix) {
            it->ctx = cat3(q, d->suffix, "");
            free(q);
        }
    }
}

Task *task_try_load(const char *spec, const char *data_dir, char *why, size_t wcap) {
    if (!strncmp(spec, "shards:", 7)) {
        if (!spec[7]) die_input("task '%s': expected shards:FILE_OR_GLOB[,...]", spec);
        Task *t = task_new("shards", TK_PPL, spec + 7);
        t->shards = xstrdup(spec + 7);
        t->main_metric = "token_perplexity";  // exp(validation loss); words are approximate here
        int n;
        char **paths = data_expand_spec(t->shards, &n);  // dies on a pattern that matches nothing
        data_free_spec(paths, n);
        return t;
    }
    const TaskDef *d = find_def(spec);
    char path[2048];
    if (!d && !strncmp(spec, "blimp_", 6) && !strchr(spec, '/')) {
        d = find_def("blimp");
        if (resolve(d->rel, data_dir, path, sizeof path, why, wcap)) return NULL;
        return load_blimp(path, spec, spec + 6);
    }
    if (d) {
        if (resolve(d->rel, data_dir, path, sizeof path, why, wcap)) return NULL;
        Task *t;
        switch (d->fmt) {
        case F_PIQA: t = load_piqa(path, d->name); break;
        case F_HSWAG: t = load_hellaswag(path, d->name, why, wcap); break;
        case F_BLIMP: t = load_blimp(path, d->name, NULL); break;
        case F_WIKITEXT: t = load_wikitext(path, d->name); break;
        default: {
            size_t len;
            char *text = read_maybe_gz(path, &len);
            t = task_parse_jsonl(text, len, path);
            free(text);
            snprintf(t->name, sizeof t->name, "%s", d->name);
            rewrite(t, d);
        }
        }
        if (t) t->main_metric = d->main_metric;
        return t;
    }
    if (!file_exists(spec)) die_input("task '%s': no such task or file", spec);
    const char *base = strrchr(spec, '/');
    base = base ? base + 1 : spec;
    char name[96];
    snprintf(name, sizeof name, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
    if (ends_with(spec, ".jsonl") || ends_with(spec, ".json")) {
        size_t len;
        char *text = read_file(spec, &len);
        Task *t = task_parse_jsonl(text, len, spec);
        free(text);
        snprintf(t->name, sizeof t->name, "%s", name);
        return t;
    }
    size_t len;
    char *text = read_file(spec, &len);
    Task *t = task_new(name, TK_PPL, spec);
    push_doc(t, text);  // a raw text file is one document
    if (!t->n_docs) die_input("%s: no text to score (empty or whitespace only)", spec);
    return t;
}

Task *task_load(const char *spec, const char *data_dir) {
    char why[4096];
    Task *t = task_try_load(spec, data_dir, why, sizeof why);
    if (!t) die_input("task '%s': not available: %s", spec, why);
    return t;
}

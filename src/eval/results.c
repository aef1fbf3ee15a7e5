// results.c — results.json in the shape lm-evaluation-harness writes (results -> task ->
// "metric,none" / "metric_stderr,none", configs, versions, n-shot, higher_is_better, n-samples,
// config, git_hash, date) plus an aoe "checkpoint" block, and report.md: one comparison table
// (rows = checkpoints, columns = each task's main metric and the average of the accuracy tasks,
// like the AoE paper's Table 2) followed by every metric with its standard error.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "eval/results.h"
#include "util/common.h"
#include "util/json.h"

static const char *output_type(TaskKind k) {
    switch (k) {
    case TK_CLOZE: return "loglikelihood";
    case TK_PPL: return "loglikelihood_rolling";
    default: return "multiple_choice";
    }
}

static void git_hash(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (!p) return;
    char buf[64] = "";
    if (fgets(buf, sizeof buf, p)) {
        buf[strcspn(buf, "\n")] = 0;
        if (buf[0]) snprintf(out, cap, "%s", buf);
    }
    pclose(p);
}

static int is_subtask(const CkptResults *c, int i) { return c->res[i].subtask; }

char *results_json(const CkptResults *c, const EvalSettings *s) {
    cJSON *root = cJSON_CreateObject();
    cJSON *results = cJSON_AddObjectToObject(root, "results");
    cJSON *gsub = cJSON_AddObjectToObject(root, "group_subtasks");
    cJSON *configs = cJSON_AddObjectToObject(root, "configs");
    cJSON *versions = cJSON_AddObjectToObject(root, "versions");
    cJSON *nshot = cJSON_AddObjectToObject(root, "n-shot");
    cJSON *hib = cJSON_AddObjectToObject(root, "higher_is_better");
    cJSON *nsamp = cJSON_AddObjectToObject(root, "n-samples");
    for (int i = 0; i < c->n_res; i++) {
        const TaskResult *r = &c->res[i];
        int sub = is_subtask(c, i);
        cJSON *t = cJSON_AddObjectToObject(results, r->task);
        char alias[220];
        snprintf(alias, sizeof alias, "%s%s", sub ? " - " : "", r->task);
        cJSON_AddStringToObject(t, "alias", alias);
        cJSON *h = cJSON_AddObjectToObject(hib, r->task);
        cJSON *ml = cJSON_CreateArray();
        for (int k = 0; k < r->n_m; k++) {
            const Metric *m = &r->m[k];
            char key[80];
            snprintf(key, sizeof key, "%s,none", m->name);
            cJSON_AddNumberToObject(t, key, m->value);
            snprintf(key, sizeof key, "%s_stderr,none", m->name);
            if (m->stderr_ >= 0) cJSON_AddNumberToObject(t, key, m->stderr_);
            else cJSON_AddStringToObject(t, key, "N/A");
            cJSON_AddBoolToObject(h, m->name, m->higher_is_better);
            cJSON *me = cJSON_CreateObject();
            cJSON_AddStringToObject(me, "metric", m->name);
            cJSON_AddStringToObject(me, "aggregation", r->kind == TK_PPL ? "weighted_perplexity" :
                                    !strcmp(m->name, "perplexity") ? "perplexity" : "mean");
            cJSON_AddBoolToObject(me, "higher_is_better", m->higher_is_better);
            cJSON_AddItemToArray(ml, me);
        }
        cJSON *cf = cJSON_AddObjectToObject(configs, r->task);
        cJSON_AddStringToObject(cf, "task", r->task);
        cJSON_AddStringToObject(cf, "output_type", output_type(r->kind));
        cJSON_AddNumberToObject(cf, "num_fewshot", r->shots);
        cJSON_AddStringToObject(cf, "target_delimiter", r->kind == TK_PPL ? "" : " ");
        cJSON_AddStringToObject(cf, "fewshot_delimiter", "\n\n");
        cJSON_AddStringToObject(cf, "prefix_token", "<|endoftext|>");
        cJSON_AddItemToObject(cf, "metric_list", ml);
        cJSON *md = cJSON_AddObjectToObject(cf, "metadata");
        cJSON_AddNumberToObject(md, "version", 1.0);
        cJSON_AddNumberToObject(versions, r->task, 1.0);
        cJSON_AddNumberToObject(nshot, r->task, r->shots);
        cJSON *ns = cJSON_AddObjectToObject(nsamp, r->task);
        cJSON_AddNumberToObject(ns, "original", r->n_original);
        cJSON_AddNumberToObject(ns, "effective", r->n);
        if (!sub) {
            cJSON *arr = NULL;
            for (int j = i + 1; j < c->n_res && c->res[j].subtask; j++) {
                if (!arr) arr = cJSON_AddArrayToObject(gsub, r->task);
                cJSON_AddItemToArray(arr, cJSON_CreateString(c->res[j].task));
            }
        }
    }
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(cfg, "model", "aoe");
    char margs[1200];
    snprintf(margs, sizeof margs, "ckpt=%s", c->path);
    cJSON_AddStringToObject(cfg, "model_args", margs);
    cJSON_AddNumberToObject(cfg, "model_num_parameters", c->params_total);
    cJSON_AddStringToObject(cfg, "batch_size", "auto");
    cJSON_AddNumberToObject(cfg, "batch_tokens", s->tok_budget);
    cJSON_AddStringToObject(cfg, "device", "cpu");
    cJSON_AddNumberToObject(cfg, "threads", s->threads);
    if (s->limit > 0) cJSON_AddNumberToObject(cfg, "limit", s->limit);
    else cJSON_AddNullToObject(cfg, "limit");
    cJSON_AddNumberToObject(cfg, "num_fewshot", s->shots);
    cJSON_AddNumberToObject(cfg, "fewshot_seed", (double)s->seed);
    cJSON_AddNumberToObject(cfg, "bootstrap_iters", 0);
    cJSON_AddStringToObject(cfg, "tasks", s->tasks_arg);
    if (s->data_dir) cJSON_AddStringToObject(cfg, "data_dir", s->data_dir);
    else cJSON_AddNullToObject(cfg, "data_dir");
    char gh[64];
    git_hash(gh, sizeof gh);
    cJSON_AddStringToObject(root, "git_hash", gh);
    cJSON_AddNumberToObject(root, "date", (double)time(NULL));
    cJSON *ck = cJSON_AddObjectToObject(root, "checkpoint");
    cJSON_AddStringToObject(ck, "path", c->path);
    cJSON_AddStringToObject(ck, "label", c->label);
    char hx[32];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)c->file_hash);
    cJSON_AddStringToObject(ck, "file_hash", hx);
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)c->tok_hash);
    cJSON_AddStringToObject(ck, "tokenizer_hash", hx);
    cJSON_AddNumberToObject(ck, "step", (double)c->step);
    cJSON_AddNumberToObject(ck, "params_total", c->params_total);
    cJSON_AddNumberToObject(ck, "params_active", c->params_active);
    if (c->config_json) {
        cJSON *cj = cJSON_Parse(c->config_json);
        if (cj) cJSON_AddItemToObject(ck, "config", cj);
    }
    cJSON_AddStringToObject(root, "model_name", c->path);
    double toks = 0;
    for (int i = 0; i < c->n_res; i++)
        if (!is_subtask(c, i)) toks += c->res[i].tokens;
    cJSON_AddNumberToObject(root, "eval_tokens_per_second", c->seconds > 0 ? toks / c->seconds : 0);
    char secs[32];
    snprintf(secs, sizeof secs, "%.2f", c->seconds);
    cJSON_AddStringToObject(root, "total_evaluation_time_seconds", secs);
    char *out = json_print(root, 1);
    cJSON_Delete(root);
    return out;
}

static int is_acc(const char *m) { return !strcmp(m, "acc") || !strcmp(m, "acc_norm"); }

static void fmt_metric(char *o, size_t cap, const Metric *m, int with_se) {
    if (!m) { snprintf(o, cap, "–"); return; }
    int pct = is_acc(m->name);
    double v = pct ? 100 * m->value : m->value, se = pct ? 100 * m->stderr_ : m->stderr_;
    if (with_se && m->stderr_ >= 0) snprintf(o, cap, "%.2f ± %.2f", v, se);
    else snprintf(o, cap, pct ? "%.2f" : "%.3f", v);
}

char *results_markdown(const CkptResults *c, int n_ckpt, const EvalSettings *s) {
    Buf b = {0};
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    char lim[32] = "none";
    if (s->limit > 0) snprintf(lim, sizeof lim, "%d", s->limit);
    bprintf(&b, "# aoe eval report\n\n%s · tasks `%s` · %d-shot (seed %llu) · limit %s · %d threads\n\n",
            date, s->tasks_arg, s->shots, (unsigned long long)s->seed, lim, s->threads);
    bprintf(&b, "Accuracies in %%, perplexities as is. `avg` is the mean of the accuracy columns.\n\n");
    // comparison table over the top-level tasks of the first checkpoint
    const CkptResults *c0 = &c[0];
    bprintf(&b, "| checkpoint |");
    int ncol = 0;
    for (int i = 0; i < c0->n_res; i++) {
        if (is_subtask(c0, i)) continue;
        bprintf(&b, " %s (%s) |", c0->res[i].task, c0->res[i].main_metric);
        ncol++;
    }
    bprintf(&b, " avg |\n|---|");
    for (int i = 0; i <= ncol; i++) bprintf(&b, "---:|");
    bprintf(&b, "\n");
    for (int k = 0; k < n_ckpt; k++) {
        bprintf(&b, "| %s |", c[k].label);
        double sum = 0;
        int na = 0;
        for (int i = 0; i < c0->n_res; i++) {
            if (is_subtask(c0, i)) continue;
            const Metric *m = NULL;
            for (int j = 0; j < c[k].n_res && !m; j++)
                if (!strcmp(c[k].res[j].task, c0->res[i].task))
                    m = result_metric(&c[k].res[j], c0->res[i].main_metric);
            char v[64];
            fmt_metric(v, sizeof v, m, 0);
            bprintf(&b, " %s |", v);
            if (m && is_acc(m->name)) { sum += 100 * m->value; na++; }
        }
        if (na) bprintf(&b, " %.2f |\n", sum / na);
        else bprintf(&b, " – |\n");
    }
    bprintf(&b, "\n## Checkpoints\n\n| label | path | file hash | tokenizer | step | params (total / active) | time (s) |\n|---|---|---|---|---:|---:|---:|\n");
    for (int k = 0; k < n_ckpt; k++)
        bprintf(&b, "| %s | `%s` | %016llx | %016llx | %ld | %.3gM / %.3gM | %.1f |\n", c[k].label, c[k].path,
                (unsigned long long)c[k].file_hash, (unsigned long long)c[k].tok_hash, c[k].step,
                c[k].params_total / 1e6, c[k].params_active / 1e6, c[k].seconds);
    for (int k = 0; k < n_ckpt; k++) {
        bprintf(&b, "\n## %s\n\n| task | n | shots | metric | value ± stderr |\n|---|---:|---:|---|---:|\n", c[k].label);
        for (int i = 0; i < c[k].n_res; i++) {
            const TaskResult *r = &c[k].res[i];
            for (int j = 0; j < r->n_m; j++) {
                char v[64];
                fmt_metric(v, sizeof v, &r->m[j], 1);
                bprintf(&b, "| %s%s | %d | %d | %s | %s |\n", is_subtask(&c[k], i) ? "↳ " : "", r->task, r->n,
                        r->shots, r->m[j].name, v);
            }
        }
    }
    return b.s;
}

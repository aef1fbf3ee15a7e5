// report_model.c — read-only queries on the report model (report_model.h) and its release.
#include "report/report_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/common.h"

const char *kv_find(const ConfKV *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[i].key, key)) return kv[i].val;
    return NULL;
}

const char *run_conf(const Run *r, const char *key) { return kv_find(r->kv, r->nkv, key); }

char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int same_val(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

char *differs_text(const Report *R, const Run *r, const char *skip) {
    Buf b = {0};
    bprintf(&b, "%s", "");
    for (int j = 0; j < R->ndiffer; j++) {
        const char *k = R->differ_keys[j], *dot = strrchr(k, '.'), *shortk = dot ? dot + 1 : k;
        const char *v = run_conf(r, k);
        if (!strcmp(k, "model.ffn.type") || !strcmp(k, "model.ffn.select") || word_in(skip, k)) continue;
        if (r->cfg && !model_key_used(r->cfg, k)) continue;
        for (int i = 0; i < R->ndiffer; i++) {
            const char *o = R->differ_keys[i], *od = strrchr(o, '.');
            if (i != j && !strcmp(od ? od + 1 : o, shortk)) shortk = k;
        }
        bprintf(&b, "%s%s=%s", b.n ? " " : "", shortk, v ? v : "(unset)");
    }
    return b.s;
}

int report_col(const Report *R, const char *csv) {
    for (int c = 0; c < R->ncol; c++)
        if (!strcmp(R->col[c].csv, csv)) return c;
    return -1;
}

int group_stat(const Report *R, const Group *g, int c, double *mean, double *std) {
    double s = 0, ss = 0;
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        double v = R->run[g->member[i]].col[c];
        if (isnan(v)) continue;
        s += v; n++;
    }
    *mean = n ? s / n : NAN;
    for (int i = 0; i < g->n; i++) {
        double v = R->run[g->member[i]].col[c];
        if (!isnan(v)) ss += (v - *mean) * (v - *mean);
    }
    *std = n > 1 ? sqrt(ss / (n - 1)) : NAN;
    return n;
}


void free_kv(ConfKV *kv, int n) {
    for (int k = 0; k < n; k++) { free(kv[k].key); free(kv[k].val); }
    free(kv);
}

void report_free(Report *R) {
    for (int i = 0; i < R->nrun; i++) {
        Run *r = &R->run[i];
        free_kv(r->kv, r->nkv);
        free(r->cfg);
        for (int t = 0; t < r->nt; t++) free(r->task[t]);
        free(r->task); free(r->score); free(r->vstep); free(r->vloss); free(r->col);
        free(r->tstep); free(r->tloss); free(r->eval_path);
        free(r->layer); free(r->lay_ent_load); free(r->lay_ent_conf); free(r->estep); free(r->eps); free(r->dir); free(r->name);
    }
    for (int g = 0; g < R->ngroup; g++) {
        free(R->group[g].member); free(R->group[g].label); free(R->group[g].method); free(R->group[g].differs);
    }
    for (int j = 0; j < R->ndiffer; j++) free(R->differ_keys[j]);
    free(R->run); free(R->group); free(R->col); free(R->differ_keys);
}

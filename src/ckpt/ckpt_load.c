// ckpt_load.c — loading a checkpoint into a model (for inference, or with its state arrays for a
// resume), the range-checked meta getters, the config comparison, and finding a run directory's
// newest checkpoint through its `latest` pointer (the writer side of the run directory is
// src/train/run.c).
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_format.h"
#include "model/kernels.h"

// ---------------------------------------------------------------- meta getters
static const CkptMetaItem *meta_find(const CkptMeta *m, const char *name, uint32_t type) {
    static const char *tn[] = {"u64", "i64", "f64"};
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->it[i].name, name)) continue;
        if (m->it[i].type != type)
            ckpt_fail(m->path ? m->path : "(checkpoint meta)", m->it[i].at, "meta %s is %s (expected %s)", name,
                      tn[m->it[i].type % 3], tn[type]);
        return &m->it[i];
    }
    ckpt_fail(m->path ? m->path : "(checkpoint meta)", 0, "meta %s missing (expected a %s)", name, tn[type]);
}

int ckpt_meta_has(const CkptMeta *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->it[i].name, name)) return 1;
    return 0;
}

uint64_t ckpt_meta_u64(const CkptMeta *m, const char *name, uint64_t lo, uint64_t hi) {
    const CkptMetaItem *it = meta_find(m, name, CKPT_U64);
    if (it->bits < lo || it->bits > hi)
        ckpt_fail(m->path, it->at, "meta %s = %" PRIu64 " (expected %" PRIu64 "..%" PRIu64 ")", name, it->bits, lo, hi);
    return it->bits;
}

int64_t ckpt_meta_i64(const CkptMeta *m, const char *name, int64_t lo, int64_t hi) {
    const CkptMetaItem *it = meta_find(m, name, CKPT_I64);
    int64_t v = (int64_t)it->bits;
    if (v < lo || v > hi) ckpt_fail(m->path, it->at, "meta %s = %" PRId64 " (expected %" PRId64 "..%" PRId64 ")", name, v, lo, hi);
    return v;
}

double ckpt_meta_f64(const CkptMeta *m, const char *name) {
    const CkptMetaItem *it = meta_find(m, name, CKPT_F64);
    double d;
    memcpy(&d, &it->bits, 8);
    if (!isfinite(d)) ckpt_fail(m->path, it->at, "meta %s = %g (expected a finite number)", name, d);
    return d;
}

long ckpt_meta_step(const CkptMeta *m) {
    return ckpt_meta_has(m, "step") ? (long)ckpt_meta_i64(m, "step", 0, 1000000000) : 0;
}

uint64_t ckpt_meta_tok_hash(const CkptMeta *m) {
    return ckpt_meta_has(m, "tok_hash") ? ckpt_meta_u64(m, "tok_hash", 0, UINT64_MAX) : 0;
}

// ---------------------------------------------------------------- loading
static void read_into_model(CkptFile *cf, Model *m, float *const *dst) {
    if (cf->V != m->V) ckpt_fail(cf->path, cf->h.off[SEC_META], "vocabulary size %d (expected %d, the run's tokenizer)", cf->V, m->V);
    ckpt_file_check_table(cf, &m->P);
    ckpt_file_read_payload(cf, dst, &m->P, 0, 0);
    kernels_weights_changed(m->P.w);  // bf16 weight copies are derived, never stored
}

void ckpt_read_config(const char *path, Config *cfg, int *V) {
    CkptFile cf;
    ckpt_file_open(&cf, path);
    *cfg = cf.cfg;
    *V = cf.V;
    ckpt_file_close(&cf);
}

void ckpt_verify(const char *path, Config *cfg, int *V, CkptMeta *meta) {
    CkptFile cf;
    ckpt_file_open(&cf, path);
    float *dst[CKPT_MAX_ARRAYS] = {falloc(cf.total)};  // the parameters, as a load reads them
    ckpt_file_read_payload(&cf, dst, NULL, 0, 0);
    free(dst[0]);
    if (cfg) *cfg = cf.cfg;
    if (V) *V = cf.V;
    if (meta) *meta = cf.meta;
    ckpt_file_close(&cf);
}

Model *ckpt_load_model(const char *path, int max_B, CkptMeta *meta_out) {
    return ckpt_load_model_with(path, max_B, meta_out, NULL, 0);
}

Model *ckpt_load_model_with(const char *path, int max_B, CkptMeta *meta_out, const char *const *sets, int nsets) {
    CkptFile cf;
    ckpt_file_open(&cf, path);
    for (int i = 0; i < nsets; i++) config_set(&cf.cfg, sets[i], "override");
    if (nsets) model_validate_config(&cf.cfg, path);
    Model *m = model_create(&cf.cfg, cf.V, max_B, cf.cfg.seed);
    float *dst[CKPT_MAX_ARRAYS] = {m->P.w};
    read_into_model(&cf, m, dst);
    if (meta_out) *meta_out = cf.meta;
    ckpt_file_close(&cf);
    return m;
}

void ckpt_load_into(const char *path, Model *m, const CkptState *st, CkptMeta *meta, const char *const *same_keys,
                    int n_same) {
    CkptFile cf;
    ckpt_file_open(&cf, path);
    char buf[400];
    for (int i = 0; i < n_same; i++)
        if (ckpt_config_diff(&cf.cfg, "the checkpoint", &m->cfg, "the run config", same_keys[i], buf, sizeof buf))
            ckpt_fail(path, cf.h.off[SEC_CONFIG], "config mismatch: %s", buf);
    int n = st ? st->n : 0, same = !st || cf.n_arrays == 1 + n;  // NULL: parameters only
    for (int a = 1; st && same && a < cf.n_arrays; a++) same = !strcmp(cf.array_name[a], st->name[a - 1]);
    if (!same) {
        char have[400] = "", want[400] = "";
        for (int a = 1; a < cf.n_arrays; a++) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", a > 1 ? ", " : "", cf.array_name[a]);
        for (int a = 0; a < n; a++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", a ? ", " : "", st->name[a]);
        ckpt_fail(path, cf.h.off[SEC_TABLE], "state arrays [%s] (expected [%s])", have, want);
    }
    float *dst[CKPT_MAX_ARRAYS] = {m->P.w};
    for (int a = 0; a < n; a++) dst[a + 1] = st->data[a];
    read_into_model(&cf, m, dst);
    *meta = cf.meta;
    ckpt_file_close(&cf);
}

// Walks two resolved-config JSON trees in parallel (same schema, same key order).
static const char *json_diff(const cJSON *a, const cJSON *b, const char *path, const char *prefix, char *buf, int n,
                             const char *an, const char *bn) {
    for (const cJSON *x = a->child; x; x = x->next) {
        char p[256];
        snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", x->string);
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
        size_t lp = strlen(p), lq = strlen(prefix);
        if (strncmp(p, prefix, lp < lq ? lp : lq)) continue;  // outside the prefix
        if (cJSON_IsObject(x) && y && cJSON_IsObject(y)) {
            const char *r = json_diff(x, y, p, prefix, buf, n, an, bn);
            if (r) return r;
            continue;
        }
        char *sx = cJSON_PrintUnformatted(x), *sy = y ? cJSON_PrintUnformatted(y) : xstrdup("(missing)");
        int differ = strcmp(sx, sy) != 0;
        if (differ) snprintf(buf, n, "%s is %s in %s but %s in %s", p, sx, an, sy, bn);
        free(sx); free(sy);
        if (differ) return buf;
    }
    return NULL;
}

const char *ckpt_config_diff(const Config *a, const char *an, const Config *b, const char *bn, const char *prefix,
                             char *buf, int buflen) {
    char *ja = config_to_json(a), *jb = config_to_json(b);
    cJSON *xa = cJSON_Parse(ja), *xb = cJSON_Parse(jb);
    const char *r = json_diff(xa, xb, "", prefix, buf, buflen, an, bn);
    cJSON_Delete(xa); cJSON_Delete(xb);
    free(ja); free(jb);
    return r;
}

// ---------------------------------------------------------------- run directory (reading)
long ckpt_name_step(const char *name) {
    if (strncmp(name, "ckpt-", 5)) return -1;
    char *end;
    errno = 0;
    long s = strtol(name + 5, &end, 10);
    if (end == name + 5 || errno || strcmp(end, ".aoec") || s < 0) return -1;
    return s;
}

char *ckpt_latest(const char *run_dir) {
    char *lp = path_join(run_dir, "latest");
    FILE *f = fopen(lp, "r");
    free(lp);
    char name[256] = "";
    if (f) {
        if (!fgets(name, sizeof name, f)) name[0] = 0;
        fclose(f);
        name[strcspn(name, "\r\n")] = 0;
        if (ckpt_name_step(name) >= 0) {
            char *p = path_join(run_dir, name);
            if (file_exists(p)) return p;
            free(p);
        }
    }
    // No usable pointer (crash between the checkpoint's rename and the pointer's): every
    // ckpt-<step>.aoec is complete (it only appears by rename), so take the newest.
    DIR *d = opendir(run_dir);
    long best = -1;
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            long s = ckpt_name_step(e->d_name);
            if (s > best) best = s;
        }
        closedir(d);
    }
    if (best < 0) return NULL;
    snprintf(name, sizeof name, "ckpt-%ld.aoec", best);
    return path_join(run_dir, name);
}

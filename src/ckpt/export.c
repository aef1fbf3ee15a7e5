// export.c — `aoe export CKPT --format safetensors --out FILE [--dtype fp32|bf16]`. The
// safetensors layout: u64 little-endian header length N, N bytes of JSON (padded with spaces to a
// multiple of 8 so the data is aligned), then the tensors' bytes back to back in the order of the
// parameter table; each header entry gives dtype, shape and [begin, end) byte offsets into that
// data. Written through a temp file and renamed, like every aoe output.
#include "ckpt/export.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "model/kernels.h"
#include "util/common.h"
#include "util/json.h"

static char *header_json(const Model *m, const CkptMeta *meta, int bf16) {
    const Params *P = &m->P;
    cJSON *h = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(h, "__metadata__");  // string -> string, by the spec
    cJSON_AddStringToObject(md, "format", "pt");
    char *cfg = config_to_json(&m->cfg), buf[64];
    cJSON_AddStringToObject(md, "aoe_config", cfg);
    free(cfg);
    snprintf(buf, sizeof buf, "%d", m->V);
    cJSON_AddStringToObject(md, "aoe_vocab", buf);
    snprintf(buf, sizeof buf, "%ld", ckpt_meta_step(meta));
    cJSON_AddStringToObject(md, "aoe_step", buf);
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)ckpt_meta_tok_hash(meta));
    cJSON_AddStringToObject(md, "aoe_tok_hash", buf);
    cJSON_AddStringToObject(md, "aoe_dtype", bf16 ? "bf16" : "fp32");
    cJSON_AddStringToObject(md, "aoe_layout", "row-major; used as y = x @ W (W is [in, out], not torch.nn.Linear's [out, in])");
    size_t off = 0, es = bf16 ? 2 : 4;
    for (int i = 0; i < P->n; i++) {
        const TensorInfo *t = &P->t[i];
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(e, "dtype", bf16 ? "BF16" : "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int k = 0; k < t->ndim; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber(t->shape[k]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += t->n * es;
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *s = json_print(h, 0);
    cJSON_Delete(h);
    return s;
}

int export_safetensors(const Model *m, const CkptMeta *meta, const char *path, int bf16, char *err, int errlen) {
    char *hj = header_json(m, meta, bf16);
    size_t hl = strlen(hj), padded = (hl + 7) / 8 * 8;
    AtomicFile af;
    if (atomic_open(&af, path)) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        free(hj);
        return -1;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, af.f) == 8 && fwrite(hj, 1, hl, af.f) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', af.f) != EOF;
    free(hj);
    const Params *P = &m->P;
    for (int i = 0; ok && i < P->n; i++) {
        const TensorInfo *t = &P->t[i];
        const float *w = P->w + t->off;
        if (!bf16) { ok = fwrite(w, sizeof(float), t->n, af.f) == t->n; continue; }
        for (size_t k = 0; ok && k < t->n; k++) {
            uint16_t b = bf16_round(w[k]);
            unsigned char le[2] = {(unsigned char)b, (unsigned char)(b >> 8)};
            ok = fwrite(le, 1, 2, af.f) == 2;
        }
    }
    if (!ok) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        atomic_abort(&af);
        return -1;
    }
    if (atomic_commit(&af)) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe export CKPT|RUN_DIR --format safetensors --out FILE [--dtype fp32|bf16]\n\n"
            "Writes a checkpoint's parameters as a safetensors file for other tools (PyTorch:\n"
            "tools/aoe_torch.py). Tensor names are aoe's (wte, layers.L.attn.wq, layers.L.ffn.w_down, ...),\n"
            "row-major and used as y = x @ W; the resolved config is in the metadata (aoe_config).\n"
            "docs/interop.md lists every name and shape.\n"
            "  --format F   safetensors (the only format)\n"
            "  --out FILE   output file (written to a temp file, then renamed)\n"
            "  --dtype D    fp32 (default, exact) or bf16 (round to nearest even)\n");
}

int cmd_export(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *ck = NULL, *fmt = NULL, *out = NULL, *dtype = "fp32";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (ck) { fprintf(stderr, "aoe export: one checkpoint at a time (got '%s' and '%s')\n", ck, a); return 2; }
            ck = a;
            continue;
        }
        if (!v) { fprintf(stderr, "aoe export: %s needs a value\n", a); usage(stderr); return 2; }
        if (!strcmp(a, "--format")) fmt = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else { fprintf(stderr, "aoe export: unknown option '%s'\n", a); usage(stderr); return 2; }
        i++;
    }
    if (!ck || !out || !fmt) { fprintf(stderr, "aoe export: need CKPT, --format and --out\n"); usage(stderr); return 2; }
    if (strcmp(fmt, "safetensors")) die_input("--format: expected safetensors, got '%s'", fmt);
    if (strcmp(dtype, "fp32") && strcmp(dtype, "bf16")) die_input("--dtype: expected fp32 or bf16, got '%s'", dtype);
    char *path = NULL;
    if (is_directory(ck)) {
        path = ckpt_latest(ck);
        if (!path) die_input("%s: no complete checkpoint in this run directory", ck);
    } else path = xstrdup(ck);
    CkptMeta meta;
    Model *m = ckpt_load_model(path, 1, &meta);
    char err[1200];
    int rc = export_safetensors(m, &meta, out, !strcmp(dtype, "bf16"), err, sizeof err);
    if (rc) fprintf(stderr, "aoe export: %s\n", err);
    else printf("aoe export: %s -> %s (%d tensors, %zu parameters, %s)\n", path, out, m->P.n, m->P.total, dtype);
    model_free(m);
    free(path);
    return rc ? 1 : 0;
}

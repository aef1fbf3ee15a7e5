// test_export.c — `aoe export --format safetensors`: the file is checked byte for byte against the
// checkpoint's tensors (read back with ckpt_load_model), for fp32 and bf16, with a reader written
// here from the safetensors layout (no Python): header length, JSON header, offsets that tile the
// data, every tensor's bytes, the config in the metadata.
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "model/kernels.h"
#include "test.h"
#include "test_eval_fixtures.h"
#include "util/common.h"

static void check_export(const char *ffn, int bf16) {
    char dir[300], ck[600], tok[480], st[700];
    snprintf(dir, sizeof dir, "%s/export_%s_%d", test_tmpdir(), ffn, bf16);
    REQUIRE(eval_tiny_ckpt(dir, ffn, 5, ck, sizeof ck, tok, sizeof tok) == 0);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    char *out, *err;
    int rc = aoe_run(&out, &err, "export %s --format safetensors --out %s%s", ck, st, bf16 ? " --dtype bf16" : "");
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s", err);
    free(out); free(err);
    size_t len;
    unsigned char *f = (unsigned char *)read_file(st, &len);
    REQUIRE(len >= 8);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)f[i] << (8 * i);
    REQUIRE(8 + hl <= len);
    CHECK_EQ_INT((int)(hl % 8), 0);  // data aligned
    cJSON *h = cJSON_ParseWithLength((const char *)f + 8, hl);
    REQUIRE(h);
    const unsigned char *data = f + 8 + hl;
    size_t dlen = len - 8 - hl;
    Model *m = ckpt_load_model(ck, 1, NULL);
    cJSON *md = cJSON_GetObjectItem(h, "__metadata__");
    REQUIRE(md);
    cJSON *cfg = cJSON_Parse(cJSON_GetObjectItem(md, "aoe_config")->valuestring);
    REQUIRE(cfg);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "model"), "ffn"), "type")->valuestring, ffn));
    CHECK_EQ_INT(atoi(cJSON_GetObjectItem(md, "aoe_vocab")->valuestring), m->V);
    CHECK(!strcmp(cJSON_GetObjectItem(md, "aoe_step")->valuestring, "5"));
    cJSON_Delete(cfg);
    CHECK_EQ_INT(cJSON_GetArraySize(h), m->P.n + 1);  // every tensor, plus the metadata
    size_t es = bf16 ? 2 : 4, covered = 0;
    for (int i = 0; i < m->P.n; i++) {
        const TensorInfo *t = &m->P.t[i];
        cJSON *e = cJSON_GetObjectItem(h, t->name);
        if (!e) { fprintf(stderr, "  missing %s\n", t->name); CHECK(e); continue; }
        CHECK(!strcmp(cJSON_GetObjectItem(e, "dtype")->valuestring, bf16 ? "BF16" : "F32"));
        cJSON *sh = cJSON_GetObjectItem(e, "shape"), *o = cJSON_GetObjectItem(e, "data_offsets");
        CHECK_EQ_INT(cJSON_GetArraySize(sh), t->ndim);
        for (int k = 0; k < t->ndim; k++) CHECK_EQ_INT(cJSON_GetArrayItem(sh, k)->valueint, t->shape[k]);
        size_t b = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble, end = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble;
        CHECK(b == covered && end - b == t->n * es && end <= dlen);  // in table order, no gaps
        if (end > dlen || end - b != t->n * es) continue;
        covered = end;
        const float *w = m->P.w + t->off;
        size_t bad = 0;
        for (size_t k = 0; k < t->n; k++) {
            const unsigned char *p = data + b + k * es;
            if (bf16) {
                uint16_t want = bf16_round(w[k]), got = (uint16_t)(p[0] | p[1] << 8);
                bad += want != got;
            } else {
                uint32_t want, got = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
                memcpy(&want, &w[k], 4);
                bad += want != got;
            }
        }
        if (bad) fprintf(stderr, "  %s: %zu of %zu values differ\n", t->name, bad, t->n);
        CHECK(bad == 0);
    }
    CHECK(covered == dlen);  // the data is exactly the tensors
    cJSON_Delete(h);
    model_free(m);
    free(f);
}

TEST(export_safetensors_dense_fp32_exact) { check_export("dense", 0); }
TEST(export_safetensors_moe_bf16_exact) { check_export("moe", 1); }
TEST(export_safetensors_aoe_fp32_exact) { check_export("aoe", 0); }

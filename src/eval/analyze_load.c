// analyze_load.c — `aoe analyze load CKPT --text FILE`: the AoE paper's expert-load analysis on
// held-out text (§4.1.2 Q3, Q8; Eq.7–8; Fig. 3), per sparse layer: processed assignments per
// expert, Ent_load = −Σ f ln f of the load fractions (higher = more balanced, max ln n),
// Ent_conf = mean per-token entropy of softmax(scores) (lower = more confident) and the max − min
// load fraction (the paper's idle-time proxy). The numbers are eval/loadstats.c's, the same as
// `aoe eval --load-stats` on a text task; this form needs no task and prints a per-layer table.
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/analyze.h"
#include "eval/loadstats.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe analyze load CKPT|RUN_DIR --text FILE [--max-tokens N] [--batch N]\n"
            "                        [--tokenizer PATH] [--threads N] [--out FILE.json]\n"
            "\n"
            "Expert load of every sparse layer on text (AoE paper Fig. 3): counts per expert, Ent_load\n"
            "(entropy of the load fractions, max ln n), Ent_conf (mean entropy of softmax(scores) per token)\n"
            "and max-min load fraction. Options as `aoe analyze clusters` (--max-tokens default 65536).\n");
}

static void add(void *ctx, const Model *m, int B, int S) {
    int *len = xmalloc(sizeof(int) * B);
    for (int b = 0; b < B; b++) len[b] = S;
    loadstats_add(ctx, m, len, B, S);
    free(len);
}

int analyze_load(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    TextRun tr;
    const char *out = NULL;
    int rc = analyze_text_open(&tr, argc, argv, "load", &out);
    if (rc) { usage(stderr); return rc; }
    LoadStats *ls = loadstats_new(tr.m);
    analyze_text_run(&tr, add, ls, "analyze load");
    Buf js = {0}, st = {0};
    loadstats_json(ls, &st);
    bprintf(&js, "{\"v\":1,\"checkpoint\":");
    analyze_json_string(&js, tr.path);
    bprintf(&js, ",\"step\":%ld,\"text\":", ckpt_meta_step(&tr.meta));
    analyze_json_string(&js, tr.text_path);
    bprintf(&js, ",\"stats\":%s}\n", st.s);
    printf("# aoe analyze load %s (step %ld) on %s: %d tokens\n", tr.path, ckpt_meta_step(&tr.meta), tr.text_path, tr.nt);
    printf("| layer | Ent_load | Ent_conf | max-min | counts |\n|---:|---:|---:|---:|---|\n");
    cJSON *j = cJSON_Parse(st.s), *l;  // the table from the JSON: one source for both
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(j, "layers")) {
        printf("| %d | %.4f | %.4f | %.4f | ", cJSON_GetObjectItem(l, "layer")->valueint,
               cJSON_GetObjectItem(l, "ent_load")->valuedouble, cJSON_GetObjectItem(l, "ent_conf")->valuedouble,
               cJSON_GetObjectItem(l, "max_minus_min")->valuedouble);
        const cJSON *c;
        int k = 0;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(l, "counts")) printf("%s%.0f", k++ ? " " : "", c->valuedouble);
        printf(" |\n");
    }
    cJSON_Delete(j);
    analyze_write(out, js.s);
    if (out) fprintf(stderr, "aoe analyze load: wrote %s\n", out);
    free(js.s); free(st.s);
    loadstats_free(ls);
    analyze_text_close(&tr);
    return 0;
}

// analyze.c — the `aoe analyze` command table and the helpers its analyses share (analyze.h).
#include "eval/analyze.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "eval/open.h"
#include "model/kernels.h"
#include "model/moe.h"
#include "util/json.h"

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} Analysis;

static const Analysis analyses[] = {
    {"erc", "expert-router coupling of a router MoE: noise bound ε, matrix M, ERC loss over α", analyze_erc},
    {"clusters", "Calinski-Harabasz index of tokens grouped by chosen expert, per layer, on text", analyze_clusters},
    {"load", "expert load per layer on text: counts, Ent_load, Ent_conf, max-min load (AoE Fig. 3)", analyze_load},
};
static const int n_analyses = sizeof analyses / sizeof analyses[0];

static void usage(FILE *f) {
    fprintf(f, "usage: aoe analyze <analysis> CKPT|RUN_DIR [options]   (aoe analyze <analysis> --help)\n\n"
               "Post-hoc measurements of a trained checkpoint (docs/eval.md, \"aoe analyze\").\nanalyses:\n");
    for (int i = 0; i < n_analyses; i++) fprintf(f, "  %-10s %s\n", analyses[i].name, analyses[i].summary);
}

int cmd_analyze(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (int i = 0; i < n_analyses; i++)
        if (!strcmp(argv[0], analyses[i].name)) return analyses[i].run(argc - 1, argv + 1);
    fprintf(stderr, "aoe analyze: unknown analysis '%s' (expected one of:", argv[0]);
    for (int i = 0; i < n_analyses; i++) fprintf(stderr, " %s", analyses[i].name);
    fprintf(stderr, ")\n");
    return 2;
}

int analyze_parse_list(const char *opt, const char *v, double lo, double hi, double *out, int max) {
    int n = 0;
    const char *p = v;
    if (!v || !*v) die_input("%s: expected a comma-separated list of numbers, got ''", opt);
    for (;;) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x) || x < lo || x > hi || (*end && *end != ','))
            die_input("%s: entry %d of '%s': expected a number in [%g, %g]", opt, n + 1, v, lo, hi);
        if (n == max) die_input("%s: at most %d entries, got more in '%s'", opt, max, v);
        out[n++] = x;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

long analyze_parse_long(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi)
        die_input("%s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, v ? v : "");
    return x;
}

const Selection *analyze_layer_selection(const Model *m, int l) {
    const Block *b = &m->blocks[l];
    if (b->ffn != &ffn_moe_ops && b->ffn != &ffn_aoe_ops) return NULL;
    return ((const MoeLayer *)b->ffn_state)->sel;
}

void analyze_write(const char *path, const char *text) {
    if (path) write_file_atomic(path, text, strlen(text));
}

void analyze_json_string(Buf *b, const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *t = j ? json_print(j, 0) : NULL;
    if (!t) die("out of memory writing JSON");
    bprintf(b, "%s", t);
    free(t);
    cJSON_Delete(j);
}

int analyze_text_open(TextRun *r, int argc, char **argv, const char *name, const char **out) {
    memset(r, 0, sizeof *r);
    const char *ck = NULL, *tok_path = NULL;
    long max_tokens = 65536;
    int threads = 0;
    r->B = 8;
    *out = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] == '-' && a[1]) {
            if (!v) { fprintf(stderr, "aoe analyze %s: %s needs a value\n", name, a); return 2; }
            if (!strcmp(a, "--text")) r->text_path = v;
            else if (!strcmp(a, "--max-tokens")) max_tokens = analyze_parse_long(a, v, 2, 1L << 40);
            else if (!strcmp(a, "--batch")) r->B = (int)analyze_parse_long(a, v, 1, 4096);
            else if (!strcmp(a, "--tokenizer")) tok_path = v;
            else if (!strcmp(a, "--threads")) threads = (int)analyze_parse_long(a, v, 0, 4096);
            else if (!strcmp(a, "--out")) *out = v;
            else { fprintf(stderr, "aoe analyze %s: unknown option '%s'\n", name, a); return 2; }
            i++;
            continue;
        }
        if (ck) { fprintf(stderr, "aoe analyze %s: one checkpoint, got '%s' and '%s'\n", name, ck, a); return 2; }
        ck = a;
    }
    if (!ck) { fprintf(stderr, "aoe analyze %s: no checkpoint given\n", name); return 2; }
    if (!r->text_path) { fprintf(stderr, "aoe analyze %s: --text FILE is required\n", name); return 2; }
    r->path = eval_resolve_ckpt(ck);
    size_t len;
    char *text = read_file(r->text_path, &len);  // before the model: fail fast on a missing file
    kernels_init(threads);
    r->m = ckpt_load_model(r->path, r->B, &r->meta);
    r->tk = eval_open_tokenizer(&r->m->cfg, r->m->V, &r->meta, r->path, tok_path, NULL);
    r->ids = tok_encode(r->tk, text, len, &r->nt);
    free(text);
    if (r->nt < 2) die_input("%s: %d token(s) after tokenizing; expected at least 2", r->text_path, r->nt);
    if (r->nt > max_tokens) r->nt = (int)max_tokens;
    int sparse = 0;
    for (int l = 0; l < r->m->L; l++) sparse += analyze_layer_selection(r->m, l) != NULL;
    if (!sparse) die_input("%s: no sparse layer (model.ffn.type %s)", r->path, r->m->cfg.ffn.type);
    return 0;
}

void analyze_text_run(TextRun *r, void (*fn)(void *ctx, const Model *m, int B, int S), void *ctx, const char *what) {
    Model *m = r->m;
    int S = m->S, B = r->B, nt = r->nt;
    int32_t *tg = xmalloc(sizeof(int32_t) * (size_t)B * S);
    for (long i = 0; i < (long)B * S; i++) tg[i] = -1;
    m->score_only = 1;  // no LM head: no position has a target
    Progress pr;
    progress_start(&pr, what, "tok", nt);
    for (int pos = 0; pos < nt;) {
        int rem = nt - pos, b = rem >= S ? (rem / S < B ? rem / S : B) : 1, s = rem >= S ? S : rem;
        model_forward(m, r->ids + pos, tg, b, s, NULL, 0, NULL);
        fn(ctx, m, b, s);
        pos += b * s;
        progress_update(&pr, pos);
    }
    progress_end(&pr, nt);
    free(tg);
}

void analyze_text_close(TextRun *r) {
    free(r->ids);
    free(r->path);
    tok_free(r->tk);
    model_free(r->m);
}

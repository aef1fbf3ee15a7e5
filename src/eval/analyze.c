// analyze.c — the `aoe analyze` command table and the helpers its analyses share (analyze.h).
#include "eval/analyze.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "model/moe.h"
#include "util/json.h"

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} Analysis;

static const Analysis analyses[] = {
    {"erc", "expert-router coupling of a router MoE: noise bound ε, matrix M, ERC loss over α", analyze_erc},
    {"clusters", "Calinski-Harabasz index of tokens grouped by chosen expert, per layer, on text", analyze_clusters},
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

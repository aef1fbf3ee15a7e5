// analyze_erc.c — `aoe analyze erc CKPT --alpha LIST`: how strongly a router MoE's router rows are
// coupled with its experts, trained with the ERC loss or not (ERC paper App. A.1, Table 2;
// methods.md §2). Per sparse layer, from the clean router R (no noise δ, as the paper's post-hoc
// check): the noise bound ε_i = min_{j≠i} ||R_i − R_j|| / (2||R_i||), the matrix
// M[i,j] = ||R_i·W_g^j|| and the raw ERC loss (1/n²) Σ_i Σ_{j≠i} relu(M[i,j] − α·M[i,i]) +
// relu(M[j,i] − α·M[i,i]) at each α. The math is src/select/erc.c's, the training loss's own.
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/analyze.h"
#include "eval/open.h"

#define MAX_ALPHA 32

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe analyze erc CKPT|RUN_DIR [--alpha LIST] [--matrix] [--out FILE.json]\n"
            "\n"
            "Expert-router coupling of a router MoE checkpoint (ERC paper Table 2), from the clean router:\n"
            "per sparse layer the noise bound eps (mean over experts), the ERC loss at each alpha, and how\n"
            "many experts' own proxy (router row) gives the largest entry of their row / column of M.\n"
            "  --alpha LIST   comma-separated alphas in [0, 100] (default 0.5,0.75,1,2,5)\n"
            "  --matrix       also print M[i,j] = ||R_i W_g^j|| (row i = proxy of expert i) per layer\n"
            "  --out FILE     write everything (eps per expert, M, losses) as JSON\n");
}

int analyze_erc(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    double alpha[MAX_ALPHA] = {0.5, 0.75, 1, 2, 5};
    int na = 5, show_m = 0;
    const char *ck = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--matrix")) { show_m = 1; continue; }
        if (a[0] == '-' && a[1]) {
            if (!v) { fprintf(stderr, "aoe analyze erc: %s needs a value\n", a); return 2; }
            if (!strcmp(a, "--alpha")) na = analyze_parse_list(a, v, 0, 100, alpha, MAX_ALPHA);
            else if (!strcmp(a, "--out")) out = v;
            else { fprintf(stderr, "aoe analyze erc: unknown option '%s'\n", a); usage(stderr); return 2; }
            i++;
            continue;
        }
        if (ck) { fprintf(stderr, "aoe analyze erc: one checkpoint, got '%s' and '%s'\n", ck, a); return 2; }
        ck = a;
    }
    if (!ck) { fprintf(stderr, "aoe analyze erc: no checkpoint given\n"); usage(stderr); return 2; }
    char *path = eval_resolve_ckpt(ck);
    CkptMeta meta;
    Model *m = ckpt_load_model(path, 1, &meta);
    const Config *c = &m->cfg;
    Buf js = {0}, mt = {0};
    bprintf(&js, "{\"v\":1,\"checkpoint\":");
    analyze_json_string(&js, path);
    bprintf(&js, ",\"step\":%ld,\"alpha\":[", ckpt_meta_step(&meta));
    for (int a = 0; a < na; a++) bprintf(&js, "%s%.17g", a ? "," : "", alpha[a]);
    bprintf(&js, "],\"layers\":[");
    printf("# aoe analyze erc %s (step %ld): clean router, losses raw (unweighted)\n", path, ckpt_meta_step(&meta));
    printf("| layer | eps mean |");
    for (int a = 0; a < na; a++) printf(" L_ERC a=%g |", alpha[a]);
    printf(" diag max of row | diag max of col |\n|---:|---:|");
    for (int a = 0; a < na; a++) printf("---:|");
    printf("---:|---:|\n");
    int layers = 0;
    for (int l = 0; l < m->L; l++) {
        if (!ffn_is_sparse_layer(c, l)) continue;
        char nr[64], ng[64];
        snprintf(nr, sizeof nr, "layers.%d.ffn.router", l);
        snprintf(ng, sizeof ng, "layers.%d.ffn.w_gate", l);
        const TensorInfo *tr = params_find(&m->P, nr), *tg = params_find(&m->P, ng);
        if (!tr || !tg)
            die_input("%s: layer %d has no router (model.ffn.type %s, select %s); the ERC analysis needs a "
                      "router MoE", path, l, c->ffn.type, c->ffn.select);
        SelectParams v = {.d = tr->shape[0], .n = tr->shape[1], .D = tg->shape[2],
                          .R = m->P.w + tr->off, .Wg = m->P.w + tg->off};
        int n = v.n;
        Erc *e = erc_create(&c->ffn);
        erc_noise(e, &v, NULL);  // ε; δ = 1 (clean router)
        erc_loss(e, &v);
        const double *eps = erc_eps(e), *M = erc_matrix(e);
        int drow = 0, dcol = 0;
        for (int i = 0; i < n; i++) {
            int rmax = 1, cmax = 1;
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                if (M[(size_t)i * n + j] >= M[(size_t)i * n + i]) rmax = 0;
                if (M[(size_t)j * n + i] >= M[(size_t)i * n + i]) cmax = 0;
            }
            drow += rmax;
            dcol += cmax;
        }
        printf("| %d | %.4f |", l, erc_eps_mean(e));
        bprintf(&js, "%s{\"layer\":%d,\"eps_mean\":%.9g,\"eps\":[", layers ? "," : "", l, erc_eps_mean(e));
        for (int i = 0; i < n; i++) bprintf(&js, "%s%.9g", i ? "," : "", eps[i]);
        bprintf(&js, "],\"loss\":[");
        for (int a = 0; a < na; a++) {
            double L = erc_loss_at(e, alpha[a]);
            printf(" %.4f |", L);
            bprintf(&js, "%s%.9g", a ? "," : "", L);
        }
        printf(" %d/%d | %d/%d |\n", drow, n, dcol, n);
        bprintf(&js, "],\"diag_row_max\":%d,\"diag_col_max\":%d,\"M\":[", drow, dcol);
        for (int i = 0; i < n; i++) {
            bprintf(&js, "%s[", i ? "," : "");
            for (int j = 0; j < n; j++) bprintf(&js, "%s%.9g", j ? "," : "", M[(size_t)i * n + j]);
            bprintf(&js, "]");
        }
        bprintf(&js, "]}");
        if (show_m) {  // after the table
            bprintf(&mt, "\nM of layer %d (row i = proxy R_i, column j = expert j):\n", l);
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) bprintf(&mt, "%s%8.4f", j ? " " : "  ", M[(size_t)i * n + j]);
                bprintf(&mt, "\n");
            }
        }
        erc_free(e);
        layers++;
    }
    bprintf(&js, "]}\n");
    if (mt.s) printf("%s", mt.s);
    free(mt.s);
    if (!layers) die_input("%s: no sparse layer (model.ffn.type %s)", path, c->ffn.type);
    analyze_write(out, js.s);
    if (out) fprintf(stderr, "aoe analyze erc: wrote %s\n", out);
    free(js.s);
    model_free(m);
    free(path);
    return 0;
}

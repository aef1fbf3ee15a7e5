// test_fixtures.c — helpers shared by several test files (no TESTs here): tiny training data for
// tests that drive `aoe train`, random arrays, and the finite-difference loop of sparse layers.
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>

#include "test.h"
#include "test_etr.h"
#include "test_sparse.h"
#include "util/common.h"

const char *test_tiny_data(void) {
    static char dir[600];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/ckdata", test_tmpdir());
    char txt[700], cmd[2048];
    snprintf(txt, sizeof txt, "%s/ck-text.txt", test_tmpdir());
    FILE *f = fopen(txt, "w");
    static const char *w[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red",
                              "house", "with", "green", "tree", "under", "blue", "sky", "while", "bird", "sings"};
    Rng r;
    rng_seed(&r, 3);
    for (int d = 0; d < 40; d++) {
        for (int i = 0; i < 250; i++) fprintf(f, "%s%s", w[rng_below(&r, 22)], i % 17 == 16 ? ".\n" : " ");
        fprintf(f, "\n\n");
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s prepare --out %s --vocab 300 --doc-bytes 2000 --val-frac 0.1 %s", aoe_bin(), dir, txt);
    char *err;
    if (run_capture(cmd, NULL, &err)) fprintf(stderr, "  prepare failed: %s\n", err);
    free(err);
    return dir;
}

const char *test_aoe_abs(void) {
    static char bin[PATH_MAX];
    if (!bin[0] && !realpath(aoe_bin(), bin)) snprintf(bin, sizeof bin, "%s", aoe_bin());
    return bin;
}

int test_shf(char **out, char **err, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return run_capture(cmd, out, err);
}

const char *test_tiny_run(void) {
    static char dir[600];
    static int tried;
    if (tried) return dir[0] ? dir : NULL;
    tried = 1;
    const char *d = test_tiny_data();
    char cfg[700], *err = NULL;
    snprintf(cfg, sizeof cfg, "%s/tinyrun.json", test_tmpdir());
    FILE *f = fopen(cfg, "w");
    if (!f) return NULL;
    fprintf(f, "{\"model\": {\"d_model\": 16, \"n_layer\": 1, \"n_head\": 2, \"seq_len\": 16,\n"
               "  \"ffn\": {\"type\": \"moe\", \"n_experts\": 4, \"top_k\": 2, \"d_ff\": 16}},\n"
               " \"train\": {\"steps\": 4, \"batch_size\": 2, \"log_every\": 1, \"eval_every\": 2, \"eval_batches\": 1,"
               " \"warmup\": 1, \"threads\": 1, \"precision\": \"fp32\"},\n"
               " \"data\": {\"train\": \"%s/train-*.shard\", \"val\": \"%s/val-*.shard\", \"tokenizer\": \"%s/tokenizer.bpe\"},\n"
               " \"run\": {\"out\": \"%s/tinyrun\"}}\n", d, d, d, test_tmpdir());
    fclose(f);
    if (aoe_run(NULL, &err, "train %s", cfg)) fprintf(stderr, "  tiny run: training failed: %s\n", err);
    else snprintf(dir, sizeof dir, "%s/tinyrun", test_tmpdir());
    free(err);
    return dir[0] ? dir : NULL;
}

float *test_randn(long n, float sd, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *a = falloc(n);
    for (long i = 0; i < n; i++) a[i] = sd * rng_normal(&r);
    return a;
}

double test_sparse_fd(const MoeLayer *L, Params *P, float *x, const float *dx, const float *G, int T, int d,
                      int kmax, float aux_scale, int first_tensor, double floor, const char *label,
                      int *skipped, int *total) {
    int *ch0 = calloc((size_t)T * kmax, sizeof(int)), *ch = calloc((size_t)T * kmax, sizeof(int));
    moe_objective_naive(L, P, x, T, G, aux_scale, ch0);
    double worst = 0;
    const double eps = 1e-3;
    for (int ti = first_tensor; ti <= P->n; ti++) {  // tensors, then the input (index P->n)
        float *w = ti < P->n ? P->w + P->t[ti].off : x;
        const float *ga = ti < P->n ? P->g + P->t[ti].off : dx;
        long nn = ti < P->n ? (long)P->t[ti].n : (long)T * d;
        float *num = falloc(nn);
        double gmax = 0;
        for (long i = 0; i < nn; i++) gmax = fmax(gmax, fabs(ga[i]));
        for (long i = 0; i < nn; i++) {
            float w0 = w[i], wp = (float)(w0 + eps), wm = (float)(w0 - eps);
            int same = 1;
            w[i] = wp;
            double lp = moe_objective_naive(L, P, x, T, G, aux_scale, ch);
            for (int j = 0; j < T * kmax; j++) same &= ch[j] == ch0[j];
            w[i] = wm;
            double lm = moe_objective_naive(L, P, x, T, G, aux_scale, ch);
            for (int j = 0; j < T * kmax; j++) same &= ch[j] == ch0[j];
            w[i] = w0;
            ++*total;
            if (!same) { ++*skipped; num[i] = ga[i]; continue; }
            num[i] = (float)((lp - lm) / ((double)wp - (double)wm));
        }
        double e = max_rel_err(ga, num, nn, fmax(gmax * 1e-3, floor));
        if (e > worst) worst = e;
        if (e > 2e-3 || gmax == 0)
            fprintf(stderr, "  %s: %s rel err %.2e (max |g| %.2e)\n", label, ti < P->n ? P->t[ti].name : "input", e, gmax);
        if (!(gmax > 0)) worst = 1;  // every tensor must receive gradient on the paths checked
        free(num);
    }
    free(ch0);
    free(ch);
    return worst;
}

// ---- the ETR layer fixture (test_etr.h) ----
void cfg_etr(Config *c) {
    config_defaults(c);
    snprintf(c->ffn.type, sizeof c->ffn.type, "moe");
    snprintf(c->ffn.select, sizeof c->ffn.select, "etr");
    c->ffn.top_k = 1;
}

void fix_make(Fix *f, const Spec *s, uint64_t seed) {
    memset(f, 0, sizeof *f);
    Config *c = &f->c;
    cfg_etr(c);
    snprintf(c->ffn.etr_gate, sizeof c->ffn.etr_gate, "%s", s->gate);
    c->d_model = s->d;
    c->n_layer = 1;
    c->init_std = s->std;
    c->ffn.n_experts = s->n;
    c->ffn.top_k = s->K;
    c->ffn.d_ff = s->D;
    c->ffn.lb_coef = s->lb;
    c->ffn.etr_loc_coef = s->loc;
    c->ffn.etr_groups = s->groups;
    c->ffn.etr_cap_start = s->cap0;
    c->ffn.etr_cap_end = s->cap1;
    if (s->method) snprintf(c->ffn.select, sizeof c->ffn.select, "%s", s->method);
    c->ffn.etr_tau = s->tau > 0 ? s->tau : 1;
    c->ffn.etr_renorm = s->renorm;
    f->L = ffn_moe_ops.create(&f->P, c, 0, s->T);
    ffn_moe_ops.set_progress(f->L, s->progress);
    params_alloc(&f->P);
    Rng rng;
    rng_seed(&rng, seed);
    params_init(&f->P, &rng);
}

void fix_free(Fix *f) {
    ffn_moe_ops.destroy(f->L);
    params_free(&f->P);
}

void train_forward(Fix *f, float *out, const float *x, int T) {
    Rng rng;
    rng_seed(&rng, 1);
    ffn_moe_ops.forward(f->L, &f->P, out, x, T, 1, &rng);
}


// sample.c — `aoe sample CKPT --prompt "..."`: autoregressive sampling with temperature, top-k
// and a seed. Each new token re-runs the forward over the (sliding, at most seq_len) context —
// there is no KV cache, so this is for looking at a model, not for throughput.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "cli.h"
#include "eval/open.h"
#include "eval/scorer.h"
#include "model/kernels.h"
#include "util/common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe sample CKPT|RUN_DIR [--prompt TEXT] [--max-tokens N] [--num-samples N]\n"
            "                  [--temperature T] [--top-k K] [--seed N] [--tokenizer PATH] [--threads N]\n"
            "                  [--precision P]\n"
            "\n"
            "Continues TEXT (default: empty, i.e. from <|endoftext|>) and prints the continuation; stderr\n"
            "says for each sample why it stopped (end-of-text, or --max-tokens reached).\n"
            "  --max-tokens N     tokens to generate (default 64); stops early at <|endoftext|>\n"
            "  --num-samples N    continuations of the same prompt (default 1), one RNG stream: the\n"
            "                     first is what --num-samples 1 prints; from 2 on each starts with a\n"
            "                     line \"=== sample i/N ===\"\n"
            "  --temperature T    softmax temperature (default 1.0; 0 = greedy)\n"
            "  --top-k K          sample among the K most likely tokens (default 0 = all)\n"
            "  --seed N           RNG seed (default 1)\n"
            "  --tokenizer PATH   tokenizer (default: the checkpoint config's; must match the checkpoint)\n"
            "  --threads N        threads (default: OMP_NUM_THREADS, else all cores)\n"
            "  --precision P      fp32, bf16 or auto (default: the precision the checkpoint was trained in)\n");
}

typedef struct { float p; int id; } Cand;
static int cmp_cand(const void *a, const void *b) {
    float x = ((const Cand *)a)->p, y = ((const Cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : ((const Cand *)a)->id - ((const Cand *)b)->id;
}

// Draws from probs^(1/T) restricted to the top k (k <= 0: all); T == 0: argmax.
static int draw(const float *probs, int V, float temp, int top_k, Rng *r, Cand *c) {
    if (temp <= 0) {
        int b = 0;
        for (int i = 1; i < V; i++)
            if (probs[i] > probs[b]) b = i;
        return b;
    }
    for (int i = 0; i < V; i++) c[i] = (Cand){probs[i], i};
    int n = V;
    if (top_k > 0 && top_k < V) { qsort(c, V, sizeof(Cand), cmp_cand); n = top_k; }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double w = c[i].p > 0 ? exp(log((double)c[i].p) / temp) : 0;
        c[i].p = (float)w;
        sum += w;
    }
    if (sum <= 0) return c[0].id;
    double u = rng_uniform(r) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id;
}

int cmd_sample(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *ckpt = NULL, *prompt = "", *tok_path = NULL, *prec = NULL;
    int max_tokens = 64, top_k = 0, threads = 0, nsamples = 1;
    double temp = 1.0;
    uint64_t seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' || !a[1]) {
            if (ckpt) { fprintf(stderr, "aoe sample: one checkpoint only ('%s')\n", a); usage(stderr); return 2; }
            ckpt = a;
            continue;
        }
        if (!v) { fprintf(stderr, "aoe sample: %s needs a value\n", a); usage(stderr); return 2; }
        char *end = NULL;
        if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--precision")) prec = v;
        else if (!strcmp(a, "--max-tokens")) { max_tokens = (int)strtol(v, &end, 10); if (*end || max_tokens < 0) die_input("--max-tokens: expected a count >= 0, got '%s'", v); }
        else if (!strcmp(a, "--num-samples")) { nsamples = (int)strtol(v, &end, 10); if (*end || nsamples < 1 || nsamples > 100000) die_input("--num-samples: expected a count in [1, 100000], got '%s'", v); }
        else if (!strcmp(a, "--top-k")) { top_k = (int)strtol(v, &end, 10); if (*end || top_k < 0) die_input("--top-k: expected an integer >= 0, got '%s'", v); }
        else if (!strcmp(a, "--threads")) { threads = (int)strtol(v, &end, 10); if (*end || threads < 0) die_input("--threads: expected an integer >= 0, got '%s'", v); }
        else if (!strcmp(a, "--seed")) { seed = strtoull(v, &end, 10); if (*end) die_input("--seed: expected an integer, got '%s'", v); }
        else if (!strcmp(a, "--temperature")) { temp = strtod(v, &end); if (*end || !(temp >= 0) || temp > 100) die_input("--temperature: expected a number in [0, 100], got '%s'", v); }
        else { fprintf(stderr, "aoe sample: unknown option '%s'\n", a); usage(stderr); return 2; }
        i++;
    }
    if (!ckpt) { fprintf(stderr, "aoe sample: no checkpoint given\n"); usage(stderr); return 2; }
    kernels_init(threads);
    char *path = is_directory(ckpt) ? ckpt_latest(ckpt) : xstrdup(ckpt);
    if (!path) die_input("%s: no complete checkpoint in this run directory", ckpt);
    if (!file_exists(path)) die_input("%s: no such checkpoint", path);
    CkptMeta meta;
    Model *m = ckpt_load_model(path, 1, &meta);
    kernels_set_precision(model_precision(&m->cfg, prec));
    Tokenizer *tk = eval_open_tokenizer(&m->cfg, m->V, &meta, path, tok_path, NULL);
    Scorer *sc = scorer_new(m, m->S);
    int np = 0;
    int32_t *p = tok_encode(tk, prompt, strlen(prompt), &np);
    int cap = 1 + np + max_tokens;
    int32_t *ctx = xmalloc(sizeof(int32_t) * cap);
    ctx[0] = tok_eot(tk);
    memcpy(ctx + 1, p, sizeof(int32_t) * np);  // every sample continues [EOT] + prompt
    Cand *cand = xmalloc(sizeof(Cand) * m->V);
    Rng r;
    rng_seed(&r, seed);
    double t0 = now_sec();
    long total = 0;
    for (int k = 0; k < nsamples; k++) {
        if (nsamples > 1) printf("=== sample %d/%d ===\n", k + 1, nsamples);
        fputs(prompt, stdout);
        int n = 1 + np, gen = 0, eot = 0;
        for (; gen < max_tokens; gen++) {
            int start = n > m->S ? n - m->S : 0;  // sliding window of the last S tokens
            const float *probs = scorer_next_probs(sc, ctx + start, n - start);
            int id = draw(probs, m->V, (float)temp, top_k, &r, cand);
            if (id == tok_eot(tk)) { eot = 1; break; }
            if (id >= tok_vocab_size(tk)) continue;  // padding rows of the embedding
            ctx[n++] = id;
            size_t len;
            char *s = tok_decode(tk, &ctx[n - 1], 1, &len);
            fwrite(s, 1, len, stdout);
            fflush(stdout);
            free(s);
        }
        printf("\n");
        fflush(stdout);
        total += gen;
        if (nsamples > 1) fprintf(stderr, "aoe sample: sample %d/%d: ", k + 1, nsamples);
        else fprintf(stderr, "aoe sample: ");
        if (eot) fprintf(stderr, "stopped at end-of-text after %d tokens (the model ended the document)\n", gen);
        else fprintf(stderr, "stopped after %d tokens: --max-tokens %d reached\n", gen, max_tokens);
    }
    fprintf(stderr, "aoe sample: %ld tokens in %.2f s (%.1f tok/s), T=%g top-k=%d seed=%llu\n", total,
            now_sec() - t0, total / fmax(now_sec() - t0, 1e-9), temp, top_k, (unsigned long long)seed);
    free(cand); free(ctx); free(p); free(path);
    scorer_free(sc);
    tok_free(tk);
    model_free(m);
    return 0;
}

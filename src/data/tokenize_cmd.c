// tokenize_cmd.c — `aoe tokenize`: shows what the model sees. Encodes a string or file into ids
// and pieces, decodes ids back to bytes, shows a training window of prepared shards, or streams
// shards through the loader (throughput and peak memory).
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/loader.h"
#include "data/prepare_util.h"
#include "data/tokenizer.h"
#include "util/common.h"

static const char *USAGE =
    "usage: aoe tokenize TOKENIZER --text STRING [--ids]\n"
    "       aoe tokenize TOKENIZER --file PATH [--ids]\n"
    "       aoe tokenize TOKENIZER --decode ID,ID,...\n"
    "       aoe tokenize TOKENIZER --data SHARDS [--seq-len N] [--window I]\n"
    "       aoe tokenize --data SHARDS --scan [--seq-len N] [--batch B] [--shuffle] [--seed S] [--world W]\n"
    "\n"
    "TOKENIZER is a tokenizer.bpe written by `aoe prepare` (e.g. data/prepared/tokenizer.bpe).\n"
    "  --text / --file   encode; prints one line per token (id and the bytes it stands for, escaped)\n"
    "                    and a summary; with --ids only the comma-separated ids (input for --decode)\n"
    "  --decode IDS      writes the decoded bytes to stdout exactly (<|endoftext|> shown literally)\n"
    "  --data SHARDS     shard files (comma list or glob, e.g. 'data/prepared/train-*.shard'):\n"
    "                    prints token/window counts; with --window I prints training window I\n"
    "                    (seq_len+1 tokens, default seq-len 256) token by token\n"
    "  --scan            reads one epoch through the training data loader (seeded shuffle with\n"
    "                    --shuffle) and reports windows/s and peak resident memory\n";

static int usage_error(const char *what, const char *arg) {
    fprintf(stderr, "aoe: tokenize: %s%s\n\n%s", what, arg, USAGE);
    return 2;
}

// Prints bytes with C-style escapes for anything not printable ASCII.
static void put_escaped(FILE *f, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c == '"') fputs("\\\"", f);
        else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

static void print_tokens(const Tokenizer *t, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const unsigned char *p = tok_piece(t, ids[i], &len);
        printf("%8d  \"", (int)ids[i]);
        put_escaped(stdout, p, len);
        printf("\"\n");
    }
}

static int32_t *parse_ids(const char *s, int vocab, int *n_out) {
    int n = 0, cap = 64;
    int32_t *ids = xmalloc((size_t)cap * sizeof(int32_t));
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ',' && *end != ' '))
            die_input("--decode: character %ld: expected a token id, found '%.12s'", (long)(p - s), p);
        if (v < 0 || v >= vocab)
            die_input("--decode: id %ld (item %d) is outside the vocabulary [0, %d)", v, n + 1, vocab);
        if (n == cap) ids = xrealloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
        ids[n++] = (int32_t)v;
        p = end;
    }
    *n_out = n;
    return ids;
}

static int run_data(const char *tok_path, const char *spec, int seq_len, long long window, int scan, int batch,
                    int shuffle, uint64_t seed, int world) {
    Loader *L = loader_open(spec, seq_len, batch, seed, shuffle, 0, world);
    Tokenizer *t = NULL;
    if (tok_path) {
        t = tok_load(tok_path);
        loader_require(L, tok_vocab_size(t), tok_hash(t));
    }
    printf("%s: vocab %d, tokenizer %016llx, %llu tokens, %llu windows of %d+1 tokens (%llu per rank of %d)\n", spec,
           loader_vocab(L), (unsigned long long)loader_tok_hash(L), (unsigned long long)loader_total_tokens(L),
           (unsigned long long)loader_total_windows(L), seq_len, (unsigned long long)loader_n_windows(L), world);
    if (window >= 0) {
        if ((uint64_t)window >= loader_total_windows(L))
            die_input("--window: %lld is past the last window %llu", window,
                      (unsigned long long)loader_total_windows(L) - 1);
        if (!t) die_input("--window needs a TOKENIZER to show the tokens");
        int32_t *w = xmalloc(((size_t)seq_len + 1) * sizeof(int32_t));
        loader_window(L, (uint64_t)window, w);
        print_tokens(t, w, (size_t)seq_len + 1);
        free(w);
    }
    if (scan) {
        size_t n = (size_t)batch * (size_t)seq_len;
        int32_t *x = xmalloc(n * sizeof(int32_t)), *y = xmalloc(n * sizeof(int32_t));
        uint64_t steps = loader_n_windows(L) / (uint64_t)batch, sum = 0;
        double t0 = now_sec();
        for (uint64_t s = 0; s < steps; s++) {
            loader_next(L, x, y);
            sum += (uint64_t)x[0] + (uint64_t)y[n - 1];  // keep the reads observable
        }
        double dt = now_sec() - t0;
        printf("scan: %llu batches of %d windows in %.2f s: %.0f windows/s, %.1f M tokens/s; peak RSS %ld KB "
               "(checksum %llu)\n", (unsigned long long)steps, batch, dt, dt > 0 ? (double)steps * batch / dt : 0.0,
               dt > 0 ? (double)steps * (double)n / dt / 1e6 : 0.0, peak_rss_kb(), (unsigned long long)sum);
        free(x); free(y);
    }
    loader_close(L);
    tok_free(t);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
    const char *tok_path = NULL, *text = NULL, *file = NULL, *decode = NULL, *data = NULL;
    int ids_only = 0, scan = 0, shuffle = 0, seq_len = 256, batch = 8, world = 1;
    long long window = -1;
    uint64_t seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "--text") || !strcmp(a, "--file") || !strcmp(a, "--decode") || !strcmp(a, "--data") ||
                    !strcmp(a, "--seq-len") || !strcmp(a, "--window") || !strcmp(a, "--batch") ||
                    !strcmp(a, "--seed") || !strcmp(a, "--world");
        if (takes && !v) return usage_error(a, " needs a value");
        if (!strcmp(a, "--text")) text = v;
        else if (!strcmp(a, "--file")) file = v;
        else if (!strcmp(a, "--decode")) decode = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--seq-len")) seq_len = (int)parse_uint(a, v, 1, 1 << 24);
        else if (!strcmp(a, "--window")) window = (long long)parse_uint(a, v, 0, 1ULL << 62);
        else if (!strcmp(a, "--batch")) batch = (int)parse_uint(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--seed")) seed = parse_uint(a, v, 0, UINT64_MAX);
        else if (!strcmp(a, "--world")) world = (int)parse_uint(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--ids")) ids_only = 1;
        else if (!strcmp(a, "--scan")) scan = 1;
        else if (!strcmp(a, "--shuffle")) shuffle = 1;
        else if (a[0] == '-' && a[1]) return usage_error("unknown option ", a);
        else if (!tok_path) tok_path = a;
        else return usage_error("unexpected argument ", a);
        if (takes) i++;
    }
    if (data) return run_data(tok_path, data, seq_len, window, scan, batch, shuffle, seed, world);
    if (!tok_path) return usage_error("no TOKENIZER given", "");
    if (!!text + !!file + !!decode != 1) return usage_error("give exactly one of --text, --file, --decode", "");
    Tokenizer *t = tok_load(tok_path);
    if (decode) {
        int n;
        int32_t *ids = parse_ids(decode, tok_vocab_size(t), &n);
        size_t len;
        char *s = tok_decode(t, ids, n, &len);
        fwrite(s, 1, len, stdout);
        free(s); free(ids);
    } else {
        size_t len;
        char *buf = file ? read_file(file, &len) : xstrdup(text);
        if (!file) len = strlen(buf);
        int n;
        int32_t *ids = tok_encode(t, buf, len, &n);
        if (ids_only) {
            for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
            printf("\n");
        } else {
            print_tokens(t, ids, (size_t)n);
            printf("%d tokens for %zu bytes (%.2f bytes/token), vocab %d\n", n, len, n ? (double)len / n : 0.0,
                   tok_vocab_size(t));
        }
        free(ids); free(buf);
    }
    tok_free(t);
    return 0;
}

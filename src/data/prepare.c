// prepare.c — `aoe prepare`: text files -> byte-level BPE tokenizer + train/validation token
// shards. Passes over the input: the first validates every file (nothing is written if one is
// bad) and cuts files into documents; after the seeded split, the tokenizer is trained on the
// training documents; the last pass encodes documents in parallel (OpenMP over text segments) and
// writes shards in input order. All outputs are staged under temp names and renamed into place
// together at the end.
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data/loader.h"
#include "data/prepare_util.h"
#include "data/shard.h"
#include "data/staging.h"
#include "data/tokenizer.h"
#include "util/common.h"

static const char *USAGE =
    "usage: aoe prepare [options] INPUT...\n"
    "       aoe prepare --check SHARDS [--tokenizer FILE]\n"
    "\n"
    "Trains a byte-level BPE tokenizer on text and encodes it into zlib-compressed token shards\n"
    "(formats: docs/formats.md). INPUT is a text file or a directory, walked recursively for *.txt\n"
    "files in name order. Files are cut into documents (see --doc-bytes); each document ends with\n"
    "<|endoftext|>, and a seeded random subset of documents goes to the validation shards.\n"
    "\n"
    "Writes into --out DIR: tokenizer.bpe, train-NNNNN.shard, val-NNNNN.shard. They appear together\n"
    "only if everything succeeds (no partial output); older train-/val- shards in DIR are removed.\n"
    "A bad input (missing, empty, binary, a directory without *.txt) stops before anything is written.\n"
    "\n"
    "options:\n"
    "  -o, --out DIR        output directory (default data/prepared)\n"
    "  --vocab N            vocabulary size = 256 bytes + <|endoftext|> + merges (default 4096;\n"
    "                       257..1048576; shards store 16-bit tokens up to 65536, else 32-bit)\n"
    "  --tokenizer FILE     encode with this tokenizer instead of training one (copied to DIR)\n"
    "  --train-bytes N      train the tokenizer on the first N bytes of input only (default: all)\n"
    "  --val-frac F         fraction of documents held out for validation (default 0.05; 0 = none)\n"
    "  --seed N             seed of the train/validation split (default 1)\n"
    "  --doc-bytes N        cut files into documents of about N bytes at blank lines (default 65536;\n"
    "                       0 = one document per file)\n"
    "  --shard-tokens N     start a new shard after about N tokens (default 67108864)\n"
    "  --chunk-tokens N     tokens per zlib chunk (default 4096; larger packs a little tighter but\n"
    "                       makes shuffled reads slower)\n"
    "  --zlevel N           zlib compression level 1..9 (default 6)\n"
    "  --strip-pos-tags     input is word/TAG text (the Brown corpus): drop every /TAG suffix\n"
    "  --check SHARDS       verify shards (comma list or glob) completely, print their headers, exit\n"
    "\n"
    "Encoding runs on OMP_NUM_THREADS threads and shows a progress line with MB/s on a terminal\n"
    "(or with AOE_PROGRESS=1). Example, the default corpus (what `make data` runs):\n"
    "  aoe prepare --out data/prepared --vocab 4096 data/text\n";

typedef struct {
    const char *out, *tokenizer, *check;
    long vocab, doc_bytes, chunk_tokens, zlevel;
    double val_frac;
    unsigned long long seed, shard_tokens, train_bytes;
    int strip_tags;
} Opts;

typedef struct { int file; size_t off, len; } Doc;
typedef struct { size_t doc; const char *text; size_t len; TokIds ids; } Seg;  // a piece of a document

// ---- input collection ----
typedef struct { char **v; int n, cap; } StrList;
static void push_str(StrList *l, const char *s) {
    if (l->n == l->cap) l->v = xrealloc(l->v, (size_t)(l->cap = l->cap * 2 + 16) * sizeof(char *));
    l->v[l->n++] = xstrdup(s);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}
static void walk(const char *dir, StrList *out) {
    DIR *d = opendir(dir);
    if (!d) die_input("%s: cannot read directory: %s", dir, strerror(errno));
    StrList here = {0};
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;  // hidden files, and our own *.tmp.* are never inputs
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = xmalloc(n);
        snprintf(p, n, "%s/%s", dir, e->d_name);
        push_str(&here, p);
        free(p);
    }
    closedir(d);
    if (here.n > 1) qsort(here.v, (size_t)here.n, sizeof(char *), cmp_str);
    for (int i = 0; i < here.n; i++) {
        if (is_directory(here.v[i])) walk(here.v[i], out);
        else if (ends_with(here.v[i], ".txt")) push_str(out, here.v[i]);
        free(here.v[i]);
    }
    free(here.v);
}

// Reads one input file and checks it is usable text.
static char *load_text(const char *path, size_t *len, int strip) {
    char *buf = read_file(path, len);  // dies on missing / directory / unreadable
    if (*len == 0) die_input("%s: empty file; expected text", path);
    const char *nul = memchr(buf, 0, *len);
    if (nul) die_input("%s: byte offset %zu: NUL byte; expected text (is this a binary file?)", path, (size_t)(nul - buf));
    if (strip) {
        *len = strip_pos_tags(buf, *len);
        if (*len == 0) die_input("%s: no text left after removing POS tags", path);
    }
    return buf;
}

// ---- --check ----
static int run_check(const Opts *o) {
    uint64_t want = 0;
    if (o->tokenizer) { Tokenizer *t = tok_load(o->tokenizer); want = tok_hash(t); tok_free(t); }
    int n;
    char **paths = data_expand_spec(o->check, &n);
    for (int i = 0; i < n; i++) {
        Shard *s = shard_open(paths[i]);
        if (want && s->tok_hash != want)
            die_input("%s: byte offset 24: made with tokenizer %016llx, but %s is %016llx", s->path,
                      (unsigned long long)s->tok_hash, o->tokenizer, (unsigned long long)want);
        shard_verify(s);
        printf("%s: ok: vocab %u (%u-bit tokens), tokenizer %016llx, %llu tokens, %llu documents, %llu chunks of %u, "
               "%llu bytes (%.2f bytes/token)\n", s->path, s->vocab, 8 * s->token_bytes, (unsigned long long)s->tok_hash,
               (unsigned long long)s->n_tokens, (unsigned long long)s->n_docs, (unsigned long long)s->n_chunks,
               s->chunk_tokens, (unsigned long long)s->file_size,
               s->n_tokens ? (double)s->file_size / (double)s->n_tokens : 0.0);
        shard_close(s);
    }
    data_free_spec(paths, n);
    return 0;
}

// ---- shard output with rollover ----
typedef struct {
    const char *dir, *kind;
    const Opts *o;
    const Tokenizer *t;
    ShardWriter *w;
    int n_shards;
    uint64_t tokens, docs, bytes;
    StrList written;
} Out;

static void out_doc(Out *s, const int32_t *ids, size_t n) {
    if (!s->w) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-%05d.shard", s->dir, s->kind, s->n_shards++);
        push_str(&s->written, path);
        s->w = shard_create(path, tok_vocab_size(s->t), tok_hash(s->t), tok_eot(s->t), (int)s->o->chunk_tokens,
                            (int)s->o->zlevel);
    }
    shard_add_doc(s->w, ids, n);
    s->tokens += n + 1;
    s->docs++;
    if (shard_writer_tokens(s->w) >= s->o->shard_tokens) { s->bytes += shard_finish(s->w); s->w = NULL; }
}
static void out_finish(Out *s) {
    if (s->w) { s->bytes += shard_finish(s->w); s->w = NULL; }
}

// Removes <dir>/<kind>-*.shard files this run did not write (they would be picked up by globs).
static void remove_stale(const char *dir, const char *kind, const StrList *keep) {
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/%s-*.shard", dir, kind);
    int n = 0;
    char **old = NULL;
    if (!has_glob_match(pat)) return;
    old = data_expand_spec(pat, &n);
    for (int i = 0; i < n; i++) {
        int kept = 0;
        for (int j = 0; j < keep->n && !kept; j++) kept = !strcmp(keep->v[j], old[i]);
        if (!kept && unlink(old[i]) != 0) warnf("%s: cannot remove stale shard: %s", old[i], strerror(errno));
    }
    data_free_spec(old, n);
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "aoe: prepare: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", USAGE);
    return 2;
}

int cmd_prepare(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
    Opts o = {.out = "data/prepared", .vocab = 4096, .doc_bytes = 65536, .chunk_tokens = SHARD_DEFAULT_CHUNK,
              .zlevel = 6, .val_frac = 0.05, .seed = 1, .shard_tokens = 1ULL << 26};
    StrList args = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
#define VAL() (has_val ? argv[++i] : (usage_error("%s needs a value", a), (char *)NULL))
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(o.out = VAL())) return 2; }
        else if (!strcmp(a, "--tokenizer")) { if (!(o.tokenizer = VAL())) return 2; }
        else if (!strcmp(a, "--check")) { if (!(o.check = VAL())) return 2; }
        else if (!strcmp(a, "--vocab")) { const char *v = VAL(); if (!v) return 2; o.vocab = (long)parse_uint(a, v, TOK_MIN_VOCAB, TOK_MAX_VOCAB); }
        else if (!strcmp(a, "--doc-bytes")) { const char *v = VAL(); if (!v) return 2; o.doc_bytes = (long)parse_uint(a, v, 0, 1UL << 40); }
        else if (!strcmp(a, "--chunk-tokens")) { const char *v = VAL(); if (!v) return 2; o.chunk_tokens = (long)parse_uint(a, v, 64, 1 << 24); }
        else if (!strcmp(a, "--zlevel")) { const char *v = VAL(); if (!v) return 2; o.zlevel = (long)parse_uint(a, v, 1, 9); }
        else if (!strcmp(a, "--seed")) { const char *v = VAL(); if (!v) return 2; o.seed = parse_uint(a, v, 0, UINT64_MAX); }
        else if (!strcmp(a, "--shard-tokens")) { const char *v = VAL(); if (!v) return 2; o.shard_tokens = parse_uint(a, v, 1, UINT64_MAX); }
        else if (!strcmp(a, "--train-bytes")) { const char *v = VAL(); if (!v) return 2; o.train_bytes = parse_uint(a, v, 1, UINT64_MAX); }
        else if (!strcmp(a, "--val-frac")) { const char *v = VAL(); if (!v) return 2; o.val_frac = parse_frac(a, v); }
        else if (!strcmp(a, "--strip-pos-tags")) o.strip_tags = 1;
        else if (a[0] == '-' && a[1]) return usage_error("unknown option %s", a);
        else push_str(&args, a);
#undef VAL
    }
    if (o.check) return run_check(&o);
    if (!args.n) return usage_error("%s", "no INPUT given");

    if (file_exists(o.out) && !is_directory(o.out))
        die_input("%s: exists and is not a directory; expected an output directory for --out", o.out);
    // Pass 1: collect and validate inputs, cut documents, count words for the tokenizer.
    StrList files = {0};
    for (int i = 0; i < args.n; i++) {
        if (!is_directory(args.v[i])) { push_str(&files, args.v[i]); continue; }
        int before = files.n;
        walk(args.v[i], &files);
        if (files.n == before) die_input("%s: directory has no *.txt files; expected text input", args.v[i]);
    }
    Tokenizer *tok = o.tokenizer ? tok_load(o.tokenizer) : NULL;
    Doc *docs = NULL;
    size_t ndocs = 0, cdocs = 0, total_bytes = 0;
    for (int f = 0; f < files.n; f++) {
        size_t len;
        char *buf = load_text(files.v[f], &len, o.strip_tags);
        for (size_t off = 0; off < len;) {
            size_t end = doc_end(buf, len, off, (size_t)o.doc_bytes);
            if (ndocs == cdocs) docs = xrealloc(docs, (cdocs = cdocs * 2 + 256) * sizeof(Doc));
            docs[ndocs++] = (Doc){f, off, end - off};
            off = end;
        }
        total_bytes += len;
        free(buf);
    }

    // Seeded split by document: a partial Fisher-Yates shuffle picks the validation documents.
    unsigned char *is_val = xcalloc(ndocs, 1);
    size_t n_val = (size_t)(o.val_frac * (double)ndocs + 0.5);
    if (o.val_frac > 0 && n_val == 0) n_val = 1;
    if (n_val >= ndocs) n_val = ndocs - 1;
    if (o.val_frac > 0 && n_val == 0)
        warnf("only %zu document: no validation shard (use --doc-bytes to cut files into documents)", ndocs);
    {
        size_t *perm = xmalloc(ndocs * sizeof(size_t));
        for (size_t i = 0; i < ndocs; i++) perm[i] = i;
        Rng r;
        rng_seed(&r, o.seed);
        for (size_t i = 0; i < n_val; i++) {
            size_t j = i + (size_t)rng_below(&r, ndocs - i), t = perm[i];
            perm[i] = perm[j]; perm[j] = t;
            is_val[perm[i]] = 1;
        }
        free(perm);
    }

    // The tokenizer learns from training documents only, so validation text stays unseen.
    if (!tok) {
        double t0 = now_sec();
        TokTrainer *tr = tok_trainer_new();
        size_t trained = 0, d = 0;
        for (int f = 0; f < files.n && (!o.train_bytes || trained < o.train_bytes); f++) {
            size_t len;
            char *buf = load_text(files.v[f], &len, o.strip_tags);
            for (; d < ndocs && docs[d].file == f; d++) {
                if (is_val[d] || (o.train_bytes && trained >= o.train_bytes)) continue;
                size_t take = docs[d].len;
                if (o.train_bytes && take > o.train_bytes - trained)
                    take = tok_safe_cut(buf + docs[d].off, docs[d].len, o.train_bytes - trained);
                tok_trainer_add(tr, buf + docs[d].off, take);
                trained += take;
            }
            free(buf);
        }
        size_t words = tok_trainer_words(tr);
        tok = tok_trainer_finish(tr, (int)o.vocab);
        fprintf(stderr, "aoe prepare: tokenizer: %d tokens learned from %.1f MB (%zu distinct pre-tokens) in %.2f s\n",
                tok_vocab_size(tok), (double)trained / 1e6, words, now_sec() - t0);
    }

    // Pass 2: encode in batches of files, segments in parallel, documents written in order.
    if (mkdir_p(o.out) != 0) die_input("%s: cannot create the output directory: %s", o.out, strerror(errno));
    Out train = {.dir = o.out, .kind = "train", .o = &o, .t = tok}, val = {.dir = o.out, .kind = "val", .o = &o, .t = tok};
    int nthreads = omp_get_max_threads();
    TokEncoder **enc = xmalloc((size_t)nthreads * sizeof *enc);
    for (int i = 0; i < nthreads; i++) enc[i] = tok_encoder_new(tok);
    Progress pr;
    progress_start(&pr, "encode", "MB", (double)total_bytes / 1e6);
    double t1 = now_sec(), t_tok = 0;
    size_t done_bytes = 0, d = 0;
    TokIds docids = {0};
    enum { BATCH_BYTES = 4 << 20, SEG_BYTES = 256 << 10 };
    for (int f0 = 0; f0 < files.n;) {
        int f1 = f0;
        size_t bbytes = 0;
        char **bufs = xcalloc((size_t)files.n, sizeof(char *));  // indexed by file, only [f0, f1) used
        while (f1 < files.n && (f1 == f0 || bbytes < BATCH_BYTES)) {
            size_t len;
            bufs[f1] = load_text(files.v[f1], &len, o.strip_tags);
            bbytes += len;
            f1++;
        }
        size_t d1 = d;
        while (d1 < ndocs && docs[d1].file < f1) d1++;
        // Segments: documents cut at encoding-safe points so both threads stay busy.
        size_t nseg = 0, cseg = 0;
        Seg *seg = NULL;
        for (size_t k = d; k < d1; k++) {
            const char *s = bufs[docs[k].file] + docs[k].off;
            for (size_t p = 0; p < docs[k].len;) {
                size_t q = tok_safe_cut(s, docs[k].len, p + SEG_BYTES);
                if (nseg == cseg) seg = xrealloc(seg, (cseg = cseg * 2 + 64) * sizeof(Seg));
                seg[nseg++] = (Seg){k, s + p, q - p, {0}};
                p = q;
            }
        }
        double ts = now_sec();
        #pragma omp parallel for schedule(dynamic, 1)
        for (size_t k = 0; k < nseg; k++) tok_encoder_append(enc[omp_get_thread_num()], seg[k].text, seg[k].len, &seg[k].ids);
        t_tok += now_sec() - ts;
        for (size_t k = 0; k < nseg;) {
            size_t doc = seg[k].doc;
            docids.n = 0;
            for (; k < nseg && seg[k].doc == doc; k++) {
                tokids_append(&docids, seg[k].ids.v, seg[k].ids.n);
                tokids_free(&seg[k].ids);
            }
            out_doc(is_val[doc] ? &val : &train, docids.v, docids.n);
        }
        free(seg);
        for (int f = f0; f < f1; f++) free(bufs[f]);
        free(bufs);
        done_bytes += bbytes;
        progress_update(&pr, (double)done_bytes / 1e6);
        d = d1;
        f0 = f1;
    }
    progress_end(&pr, (double)done_bytes / 1e6);
    out_finish(&train);
    out_finish(&val);
    double t2 = now_sec();

    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.bpe", o.out);
    size_t img_len;
    unsigned char *img = tok_serialize(tok, &img_len);
    FILE *tf = stage_open(path);
    if (fwrite(img, 1, img_len, tf) != img_len) die("%s: write failed: %s", path, strerror(errno));
    stage_close(tf);
    free(img);
    stage_commit();
    remove_stale(o.out, "train", &train.written);
    remove_stale(o.out, "val", &val.written);

    uint64_t ntok = train.tokens + val.tokens;
    printf("prepared %s: %.2f MB of text -> %llu tokens (%.2f bytes/token), vocab %d, tokenizer %016llx\n", o.out,
           (double)total_bytes / 1e6, (unsigned long long)ntok, ntok ? (double)total_bytes / (double)ntok : 0.0,
           tok_vocab_size(tok), (unsigned long long)tok_hash(tok));
    printf("  train: %d shard(s), %llu documents, %llu tokens, %.2f MB\n", train.n_shards,
           (unsigned long long)train.docs, (unsigned long long)train.tokens, (double)train.bytes / 1e6);
    printf("  val:   %d shard(s), %llu documents, %llu tokens, %.2f MB\n", val.n_shards, (unsigned long long)val.docs,
           (unsigned long long)val.tokens, (double)val.bytes / 1e6);
    printf("  encode: %.2f s on %d thread(s): %.1f MB/s end to end, %.1f MB/s tokenizing\n", t2 - t1, nthreads,
           (double)total_bytes / 1e6 / (t2 - t1), t_tok > 0 ? (double)total_bytes / 1e6 / t_tok : 0.0);
    for (int i = 0; i < nthreads; i++) tok_encoder_free(enc[i]);
    free(enc); free(docs); free(is_val); tokids_free(&docids); tok_free(tok);
    for (int i = 0; i < files.n; i++) free(files.v[i]);
    for (int i = 0; i < args.n; i++) free(args.v[i]);
    for (int i = 0; i < train.written.n; i++) free(train.written.v[i]);
    for (int i = 0; i < val.written.n; i++) free(val.written.v[i]);
    free(files.v); free(args.v); free(train.written.v); free(val.written.v);
    return 0;
}

// prepare.c — `aoe prepare`: text files -> byte-level BPE tokenizer + train/validation token
// shards. Passes over the input: the first validates every file (nothing is written if one is
// bad) and cuts files into documents; after the seeded split, the tokenizer is trained on the
// training documents; the last pass encodes documents in parallel (OpenMP over text segments) and
// writes shards in input order. All outputs are staged under temp names and renamed into place
// together at the end.
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data/docstream.h"
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
    "(formats: docs/formats.md). INPUT is a file (any name) or a directory, walked recursively for\n"
    "every regular file in name order (hidden files and symbolic links inside it are skipped;\n"
    "--glob/--exclude choose by file name). Each file is cut into documents: plain text at blank\n"
    "lines (--doc-bytes), at separator lines (--doc-sep), or one per JSON line (--jsonl-field).\n"
    "Each document ends with <|endoftext|>; a seeded random subset goes to the validation shards.\n"
    "Files are streamed: memory holds a 4 MB batch and the longest document, not the input.\n"
    "\n"
    "Writes into --out DIR: tokenizer.bpe, train-NNNNN.shard, val-NNNNN.shard. They appear together\n"
    "only if everything succeeds (no partial output); older train-/val- shards in DIR are removed.\n"
    "A bad input (missing, empty, binary, malformed JSON line, a directory with no matching file)\n"
    "stops before anything is written.\n"
    "\n"
    "options:\n"
    "  -o, --out DIR        output directory (default data/prepared)\n"
    "  --vocab N            vocabulary size = 256 bytes + <|endoftext|> + merges (default 4096;\n"
    "                       257..1048576; shards store 16-bit tokens up to 65536, else 32-bit)\n"
    "  --tokenizer FILE     encode with this tokenizer instead of training one (copied to DIR)\n"
    "  --train-bytes N      train the tokenizer on the first N bytes of input only (default: all)\n"
    "  --val-frac F         fraction of documents held out for validation (default 0.05; 0 = none)\n"
    "  --seed N             seed of the train/validation split (default 1)\n"
    "  --doc-bytes N        cut plain text into documents of about N bytes at blank lines\n"
    "                       (default 65536; 0 = one document per file)\n"
    "  --doc-sep LINE       a line equal to LINE (e.g. '%' for fortune files) ends a document; the\n"
    "                       line itself is dropped, blank documents are skipped\n"
    "  --jsonl-field NAME   JSON Lines input: one object per line, the document is its string field\n"
    "                       NAME (e.g. text); blank lines and blank texts are skipped\n"
    "  --glob PATTERN       in directories, read only files whose name matches (repeatable; any)\n"
    "  --exclude PATTERN    in directories, skip files whose name matches (repeatable)\n"
    "  --shard-tokens N     start a new shard after about N tokens (default 67108864)\n"
    "  --chunk-tokens N     tokens per zlib chunk (default 4096; larger packs a little tighter but\n"
    "                       makes shuffled reads slower)\n"
    "  --zlevel N           zlib compression level 1..9 (default 6)\n"
    "  --strip-pos-tags     input is word/TAG text (the Brown corpus): drop every /TAG suffix\n"
    "  --check SHARDS       verify shards (comma list or glob) completely, print their headers, exit\n"
    "\n"
    "Encoding runs on OMP_NUM_THREADS threads and shows a progress line with MB/s on a terminal\n"
    "(or with AOE_PROGRESS=1). Example, the default corpus (what `make data` runs):\n"
    "  aoe prepare --out data/prepared --vocab 4096 --glob '*.txt' data/text\n"
    "Fortune files and a JSONL corpus:\n"
    "  aoe prepare --out data/fortunes --doc-sep % --exclude '*.dat' --exclude '*.u8' /usr/share/games/fortunes\n"
    "  aoe prepare --out data/web --jsonl-field text corpus.jsonl\n";

typedef struct {
    const char *out, *tokenizer, *check;
    long vocab, chunk_tokens, zlevel;
    double val_frac;
    unsigned long long seed, shard_tokens, train_bytes;
    DocFormat fmt;
} Opts;

typedef struct { size_t off, len; int val; } BDoc;                           // a document in a batch
typedef struct { size_t doc; const char *text; size_t len; TokIds ids; } Seg;  // a piece of a document

// ---- input collection ----
typedef struct { char **v; int n, cap; } StrList;
static void push_str(StrList *l, const char *s) {
    if (l->n == l->cap) l->v = xrealloc(l->v, (size_t)(l->cap = l->cap * 2 + 16) * sizeof(char *));
    l->v[l->n++] = xstrdup(s);
}
static void free_strs(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Which files of a directory are inputs: --glob patterns (any may match; none given = all) and
// --exclude patterns, matched against the file name.
typedef struct { StrList globs, excludes; } Filter;
static int any_match(const StrList *pats, const char *name) {
    for (int i = 0; i < pats->n; i++)
        if (fnmatch(pats->v[i], name, 0) == 0) return 1;
    return 0;
}

// Regular files under dir, recursively, in name order. Hidden entries (and our own *.tmp.*) are
// skipped; symbolic links are not followed (no cycles, no file read twice through an alias).
static void walk(const char *dir, const Filter *flt, StrList *out) {
    DIR *d = opendir(dir);
    if (!d) die_input("%s: cannot read directory: %s", dir, strerror(errno));
    StrList here = {0};
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = xmalloc(n);
        snprintf(p, n, "%s/%s", dir, e->d_name);
        push_str(&here, p);
        free(p);
    }
    closedir(d);
    if (here.n > 1) qsort(here.v, (size_t)here.n, sizeof(char *), cmp_str);
    for (int i = 0; i < here.n; i++) {
        struct stat st;
        const char *name = strrchr(here.v[i], '/') + 1;
        if (lstat(here.v[i], &st) != 0) die_input("%s: cannot read: %s", here.v[i], strerror(errno));
        if (S_ISDIR(st.st_mode)) walk(here.v[i], flt, out);
        else if (S_ISREG(st.st_mode) && (!flt->globs.n || any_match(&flt->globs, name)) && !any_match(&flt->excludes, name))
            push_str(out, here.v[i]);
    }
    free_strs(&here);
}

// Documents of every input, in order: calls fn(doc index, text, len, ctx) until it returns 0.
typedef int (*DocFn)(uint64_t d, const char *text, size_t len, void *ctx);
static uint64_t each_doc(const StrList *files, const DocFormat *fmt, DocFn fn, void *ctx) {
    uint64_t d = 0;
    for (int f = 0; f < files->n; f++) {
        DocStream *s = docs_open(files->v[f], fmt);
        const char *t;
        size_t n;
        uint64_t before = d;
        int go = 1;
        while (go && docs_next(s, &t, &n)) go = fn(d++, t, n, ctx);
        if (go && d == before)
            die_input("%s: no documents (%s); expected text", files->v[f],
                      fmt->mode == DOC_JSONL ? "no line with a non-blank text field" : "only separator lines and blanks");
        docs_close(s);
        if (!go) break;
    }
    return d;
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

// ---- passes over the documents ----
typedef struct { const unsigned char *is_val; TokTrainer *tr; uint64_t limit, trained; } TrainCtx;
static int count_doc(uint64_t d, const char *t, size_t n, void *ctx) {
    (void)d; (void)t;
    *(uint64_t *)ctx += n;
    return 1;
}
// The tokenizer learns from training documents only, so validation text stays unseen.
static int train_doc(uint64_t d, const char *t, size_t n, void *ctx) {
    TrainCtx *c = ctx;
    if (IS_VAL(c->is_val, d)) return 1;
    size_t take = n;
    if (c->limit && take > c->limit - c->trained) take = tok_safe_cut(t, n, (size_t)(c->limit - c->trained));
    tok_trainer_add(c->tr, t, take);
    c->trained += take;
    return !c->limit || c->trained < c->limit;
}

// Encoding: documents are gathered into batches of about BATCH_BYTES, cut into segments at
// encoding-safe points so every thread stays busy, encoded in parallel and written in order.
typedef struct {
    const unsigned char *is_val;
    Out *train, *val;
    TokEncoder **enc;
    char *text;
    size_t n, cap;
    BDoc *docs;
    size_t ndocs, cdocs;
    TokIds docids;
    double t_tok, done;
    Progress *pr;
} EncCtx;
enum { BATCH_BYTES = 4 << 20, SEG_BYTES = 256 << 10 };

static void encode_batch(EncCtx *c) {
    size_t nseg = 0, cseg = 0;
    Seg *seg = NULL;
    for (size_t k = 0; k < c->ndocs; k++) {
        const char *s = c->text + c->docs[k].off;
        for (size_t p = 0; p < c->docs[k].len;) {
            size_t q = tok_safe_cut(s, c->docs[k].len, p + SEG_BYTES);
            if (nseg == cseg) seg = xrealloc(seg, (cseg = cseg * 2 + 64) * sizeof(Seg));
            seg[nseg++] = (Seg){k, s + p, q - p, {0}};
            p = q;
        }
    }
    double ts = now_sec();
    #pragma omp parallel for schedule(dynamic, 1)
    for (size_t k = 0; k < nseg; k++) tok_encoder_append(c->enc[omp_get_thread_num()], seg[k].text, seg[k].len, &seg[k].ids);
    c->t_tok += now_sec() - ts;
    for (size_t k = 0, doc = 0; doc < c->ndocs; doc++) {  // empty documents have no segment
        c->docids.n = 0;
        for (; k < nseg && seg[k].doc == doc; k++) {
            tokids_append(&c->docids, seg[k].ids.v, seg[k].ids.n);
            tokids_free(&seg[k].ids);
        }
        out_doc(c->docs[doc].val ? c->val : c->train, c->docids.v, c->docids.n);
    }
    free(seg);
    c->done += (double)c->n;
    progress_update(c->pr, c->done / 1e6);
    c->n = c->ndocs = 0;
}
static int encode_doc(uint64_t d, const char *t, size_t n, void *ctx) {
    EncCtx *c = ctx;
    if (c->n + n > c->cap) c->text = xrealloc(c->text, c->cap = c->n + n + BATCH_BYTES);
    memcpy(c->text + c->n, t, n);
    if (c->ndocs == c->cdocs) c->docs = xrealloc(c->docs, (c->cdocs = c->cdocs * 2 + 256) * sizeof(BDoc));
    c->docs[c->ndocs++] = (BDoc){c->n, n, IS_VAL(c->is_val, d)};
    c->n += n;
    if (c->n >= BATCH_BYTES) encode_batch(c);
    return 1;
}

int cmd_prepare(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(USAGE, stdout); return 0; }
    Opts o = {.out = "data/prepared", .vocab = 4096, .chunk_tokens = SHARD_DEFAULT_CHUNK, .zlevel = 6,
              .val_frac = 0.05, .seed = 1, .shard_tokens = 1ULL << 26, .fmt = {.doc_bytes = 65536}};
    StrList args = {0};
    Filter flt = {0};
    int doc_bytes_given = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
#define VAL() (has_val ? argv[++i] : (usage_error("%s needs a value", a), (char *)NULL))
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(o.out = VAL())) return 2; }
        else if (!strcmp(a, "--tokenizer")) { if (!(o.tokenizer = VAL())) return 2; }
        else if (!strcmp(a, "--check")) { if (!(o.check = VAL())) return 2; }
        else if (!strcmp(a, "--vocab")) { const char *v = VAL(); if (!v) return 2; o.vocab = (long)parse_uint(a, v, TOK_MIN_VOCAB, TOK_MAX_VOCAB); }
        else if (!strcmp(a, "--doc-bytes")) { const char *v = VAL(); if (!v) return 2; o.fmt.doc_bytes = (size_t)parse_uint(a, v, 0, 1UL << 40); doc_bytes_given = 1; }
        else if (!strcmp(a, "--doc-sep")) { if (!(o.fmt.sep = VAL())) return 2; }
        else if (!strcmp(a, "--jsonl-field")) { if (!(o.fmt.field = VAL())) return 2; }
        else if (!strcmp(a, "--glob")) { const char *v = VAL(); if (!v) return 2; push_str(&flt.globs, v); }
        else if (!strcmp(a, "--exclude")) { const char *v = VAL(); if (!v) return 2; push_str(&flt.excludes, v); }
        else if (!strcmp(a, "--chunk-tokens")) { const char *v = VAL(); if (!v) return 2; o.chunk_tokens = (long)parse_uint(a, v, 64, 1 << 24); }
        else if (!strcmp(a, "--zlevel")) { const char *v = VAL(); if (!v) return 2; o.zlevel = (long)parse_uint(a, v, 1, 9); }
        else if (!strcmp(a, "--seed")) { const char *v = VAL(); if (!v) return 2; o.seed = parse_uint(a, v, 0, UINT64_MAX); }
        else if (!strcmp(a, "--shard-tokens")) { const char *v = VAL(); if (!v) return 2; o.shard_tokens = parse_uint(a, v, 1, UINT64_MAX); }
        else if (!strcmp(a, "--train-bytes")) { const char *v = VAL(); if (!v) return 2; o.train_bytes = parse_uint(a, v, 1, UINT64_MAX); }
        else if (!strcmp(a, "--val-frac")) { const char *v = VAL(); if (!v) return 2; o.val_frac = parse_frac(a, v); }
        else if (!strcmp(a, "--strip-pos-tags")) o.fmt.strip_tags = 1;
        else if (a[0] == '-' && a[1]) return usage_error("unknown option %s", a);
        else push_str(&args, a);
#undef VAL
    }
    if (o.check) return run_check(&o);
    if (!args.n) return usage_error("%s", "no INPUT given");
    if (o.fmt.sep && o.fmt.field) return usage_error("%s", "--doc-sep and --jsonl-field are two input formats; give one");
    if ((o.fmt.sep || o.fmt.field) && doc_bytes_given)
        return usage_error("--doc-bytes cuts plain text; with %s the input says where documents end", o.fmt.sep ? "--doc-sep" : "--jsonl-field");
    if (o.fmt.field && o.fmt.strip_tags) return usage_error("%s", "--strip-pos-tags applies to plain text, not --jsonl-field");
    if (o.fmt.sep && (!*o.fmt.sep || strchr(o.fmt.sep, '\n'))) return usage_error("%s", "--doc-sep needs a non-empty line");
    if (o.fmt.field && !*o.fmt.field) return usage_error("%s", "--jsonl-field needs a field name");
    o.fmt.mode = o.fmt.sep ? DOC_SEP : o.fmt.field ? DOC_JSONL : DOC_TEXT;

    if (file_exists(o.out) && !is_directory(o.out))
        die_input("%s: exists and is not a directory; expected an output directory for --out", o.out);
    // Pass 1: collect and validate every input and count its documents; nothing is kept per document.
    StrList files = {0};
    for (int i = 0; i < args.n; i++) {
        if (!is_directory(args.v[i])) { push_str(&files, args.v[i]); continue; }
        int before = files.n;
        walk(args.v[i], &flt, &files);
        if (files.n == before)
            die_input("%s: directory has no %s; expected text input", args.v[i],
                      flt.globs.n || flt.excludes.n ? "file matching --glob/--exclude" : "regular files");
    }
    Tokenizer *tok = o.tokenizer ? tok_load(o.tokenizer) : NULL;
    uint64_t total_bytes = 0, ndocs = each_doc(&files, &o.fmt, count_doc, &total_bytes);

    // Seeded split by document.
    uint64_t n_val = (uint64_t)(o.val_frac * (double)ndocs + 0.5);
    if (o.val_frac > 0 && n_val == 0) n_val = 1;
    if (n_val >= ndocs) n_val = ndocs - 1;
    if (o.val_frac > 0 && n_val == 0)
        warnf("only %llu document: no validation shard (use --doc-bytes to cut files into documents)", (unsigned long long)ndocs);
    unsigned char *is_val = pick_val_docs(ndocs, n_val, o.seed);

    if (!tok) {
        double t0 = now_sec();
        TrainCtx tc = {is_val, tok_trainer_new(), o.train_bytes, 0};
        each_doc(&files, &o.fmt, train_doc, &tc);
        size_t words = tok_trainer_words(tc.tr);
        tok = tok_trainer_finish(tc.tr, (int)o.vocab);
        fprintf(stderr, "aoe prepare: tokenizer: %d tokens learned from %.1f MB (%zu distinct pre-tokens) in %.2f s\n",
                tok_vocab_size(tok), (double)tc.trained / 1e6, words, now_sec() - t0);
    }

    // Pass 3: encode and write shards.
    if (mkdir_p(o.out) != 0) die_input("%s: cannot create the output directory: %s", o.out, strerror(errno));
    Out train = {.dir = o.out, .kind = "train", .o = &o, .t = tok}, val = {.dir = o.out, .kind = "val", .o = &o, .t = tok};
    int nthreads = omp_get_max_threads();
    Progress pr;
    EncCtx ec = {.is_val = is_val, .train = &train, .val = &val, .pr = &pr, .enc = xmalloc((size_t)nthreads * sizeof(TokEncoder *))};
    for (int i = 0; i < nthreads; i++) ec.enc[i] = tok_encoder_new(tok);
    progress_start(&pr, "encode", "MB", (double)total_bytes / 1e6);
    double t1 = now_sec();
    each_doc(&files, &o.fmt, encode_doc, &ec);
    if (ec.ndocs) encode_batch(&ec);
    progress_end(&pr, ec.done / 1e6);
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
    printf("  encode: %.2f s on %d thread(s): %.1f MB/s end to end, %.1f MB/s tokenizing; peak RSS %.1f MB\n", t2 - t1,
           nthreads, (double)total_bytes / 1e6 / (t2 - t1), ec.t_tok > 0 ? (double)total_bytes / 1e6 / ec.t_tok : 0.0,
           (double)peak_rss_kb() / 1024);
    for (int i = 0; i < nthreads; i++) tok_encoder_free(ec.enc[i]);
    free(ec.enc); free(ec.text); free(ec.docs); free(is_val); tokids_free(&ec.docids); tok_free(tok);
    free_strs(&files); free_strs(&args); free_strs(&train.written); free_strs(&val.written);
    free_strs(&flt.globs); free_strs(&flt.excludes);
    return 0;
}

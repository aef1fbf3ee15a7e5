// test_data_formats.c — `aoe prepare` inputs: directories (every regular file, --glob, --exclude),
// --doc-sep, --jsonl-field, and the streaming reader against whole-file oracles (doc_end and
// strip_pos_tags on the file in memory, the dense Fisher-Yates split).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/docstream.h"
#include "data/prepare_util.h"
#include "test.h"
#include "util/common.h"

static void put(const char *dir, const char *name, const char *s) {
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fputs(s, f);
    fclose(f);
}
static char *mkdir_tmp(const char *name) {
    static char d[8][600];
    static int k;
    char *p = d[k++ & 7];
    snprintf(p, 600, "%s/%s", test_tmpdir(), name);
    mkdir_p(p);
    return p;
}

// With vocab 257 (bytes only) every document is its bytes plus <|endoftext|>: "N tokens" of the
// summary counts the text exactly.
static long prepared_tokens(const char *args, long *docs) {
    char *out, *err;
    int rc = aoe_run(&out, &err, "prepare --vocab 257 --val-frac 0 %s", args);
    long n = -1;
    const char *p = out ? strstr(out, "-> ") : NULL, *q = out ? strstr(out, "train: 1 shard(s), ") : NULL;
    if (rc == 0 && p) n = atol(p + 3);
    if (docs) *docs = q ? atol(q + strlen("train: 1 shard(s), ")) : -1;
    if (rc) fprintf(stderr, "  prepare %s: %s", args, err);
    free(out); free(err);
    return n;
}

TEST(data_formats_directory_glob_exclude) {
    char *d = mkdir_tmp("anynames"), sub[700], link[700], target[700];
    put(d, "a.txt", "alpha\n");            // 6 bytes
    put(d, "README", "read me\n");         // 8
    put(d, ".hidden", "never read\n");
    snprintf(sub, sizeof sub, "%s/sub", d);
    mkdir_p(sub);
    put(sub, "b.md", "beta text\n");       // 10
    snprintf(link, sizeof link, "%s/alias.txt", d);
    snprintf(target, sizeof target, "%s/a.txt", d);
    CHECK_EQ_INT(symlink(target, link), 0);  // not followed inside a walk: a.txt counts once
    char args[2048];
    long docs;
    snprintf(args, sizeof args, "--out %s/o1 --doc-bytes 0 %s", test_tmpdir(), d);
    CHECK_EQ_INT(prepared_tokens(args, &docs), 6 + 8 + 10 + 3);
    CHECK_EQ_INT(docs, 3);
    snprintf(args, sizeof args, "--out %s/o2 --doc-bytes 0 --glob '*.txt' --glob '*.md' %s", test_tmpdir(), d);
    CHECK_EQ_INT(prepared_tokens(args, &docs), 6 + 10 + 2);
    snprintf(args, sizeof args, "--out %s/o3 --doc-bytes 0 --exclude '*.*' %s", test_tmpdir(), d);
    CHECK_EQ_INT(prepared_tokens(args, &docs), 8 + 1);
    snprintf(args, sizeof args, "--out %s/o4 --doc-bytes 0 %s/alias.txt", test_tmpdir(), d);  // named: followed
    CHECK_EQ_INT(prepared_tokens(args, &docs), 6 + 1);
    char *out, *err;
    CHECK_EQ_INT(aoe_run(&out, &err, "prepare --out %s/o5 --glob '*.json' %s", test_tmpdir(), d), 2);
    CHECK_STR_CONTAINS(err, "directory has no file matching --glob/--exclude");
    free(out); free(err);
    put(d, "index.dat", "");  // a binary file met in a directory names the way out
    char bin[700];
    snprintf(bin, sizeof bin, "%s/index.dat", d);
    FILE *f = fopen(bin, "wb");
    if (f) { fwrite("\0\0\0\2abc", 1, 7, f); fclose(f); }
    CHECK_EQ_INT(aoe_run(&out, &err, "prepare --out %s/o6 %s", test_tmpdir(), d), 2);
    CHECK_STR_CONTAINS(err, "index.dat: byte offset 0: NUL byte");
    CHECK_STR_CONTAINS(err, "--exclude PATTERN");
    free(out); free(err);
}

TEST(data_formats_doc_sep) {
    char *d = mkdir_tmp("fortunes");
    // Documents: "one\n", "two\nlines\n", "crlf\r\n", "last" (no newline at the end); "%%" and
    // "% " are text, blank documents between separators are skipped.
    put(d, "f1", "one\n%\ntwo\nlines\n%\n%\n  \n%\ncrlf\r\n%\r\n");
    put(d, "f2", "%%\n% \n%\nlast");
    char args[2048];
    long docs;
    snprintf(args, sizeof args, "--out %s/s1 --doc-sep %% %s", test_tmpdir(), d);
    CHECK_EQ_INT(prepared_tokens(args, &docs), 4 + 10 + 6 + 6 + 4 + 5);
    CHECK_EQ_INT(docs, 5);
    char *out, *err;
    put(d, "f3", "%\n\n%\n");  // a file of separators only
    CHECK_EQ_INT(aoe_run(&out, &err, "prepare --out %s/s2 --doc-sep %% %s/f3", test_tmpdir(), d), 2);
    CHECK_STR_CONTAINS(err, "f3: no documents (only separator lines and blanks)");
    free(out); free(err);
    CHECK_EQ_INT(aoe_run(&out, &err, "prepare --out %s/s2 --doc-sep %% --doc-bytes 10 %s/f1", test_tmpdir(), d), 2);
    CHECK_STR_CONTAINS(err, "--doc-bytes cuts plain text");
    free(out); free(err);
    CHECK_EQ_INT(aoe_run(&out, &err, "prepare --out %s/s2 --doc-sep %% --jsonl-field text %s/f1", test_tmpdir(), d), 2);
    CHECK_STR_CONTAINS(err, "two input formats");
    free(out); free(err);
}

TEST(data_formats_jsonl) {
    char *d = mkdir_tmp("jsonl");
    put(d, "a.jsonl", "{\"id\": 1, \"text\": \"caf\\u00e9\\n\", \"meta\": {\"text\": 5}}\n"  // 6 bytes
                      "\n"
                      "   {\"text\": \"tab\\there\"}\r\n"                                 // 8
                      "{\"text\": \"  \"}\n"                                             // blank: skipped
                      "{\"text\": \"no newline at the end\"}");                          // 21
    char args[2048];
    long docs;
    snprintf(args, sizeof args, "--out %s/j1 --jsonl-field text %s/a.jsonl", test_tmpdir(), d);
    CHECK_EQ_INT(prepared_tokens(args, &docs), 6 + 8 + 21 + 3);
    CHECK_EQ_INT(docs, 3);
    struct { const char *body, *want; } bad[] = {
        {"{\"text\": \"ok\"}\n{\"text\": \"cut\n", "bad.jsonl:2: column 11: malformed JSON; expected one JSON object per line"},
        {"{\"text\": \"ok\"}\n\n[\"text\"]\n", "bad.jsonl:3: an array; expected a JSON object with a string field \"text\""},
        {"{\"body\": \"ok\"}\n", "bad.jsonl:1: no field \"text\"; expected a JSON object with a string field \"text\""},
        {"{\"text\": 42}\n", "bad.jsonl:1: field \"text\" is a number; expected a string"},
        {"{\"text\": \"a\"} {\"text\": \"b\"}\n", "bad.jsonl:1: column 15: malformed JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(d, "bad.jsonl", bad[i].body);
        char *out, *err;
        // The good file comes first: the bad one still stops the run before anything is written.
        int rc = aoe_run(&out, &err, "prepare --out %s/jbad --jsonl-field text %s/a.jsonl %s/bad.jsonl", test_tmpdir(), d, d);
        CHECK_EQ_INT(rc, 2);
        CHECK_STR_CONTAINS(err, bad[i].want);
        free(out); free(err);
    }
    char p[700];
    snprintf(p, sizeof p, "%s/jbad", test_tmpdir());
    CHECK(!file_exists(p));
}

// Streaming reader vs the whole file in memory, on a file several read blocks (1 MB) long with
// long lines, so documents and words straddle the block boundaries.
static char *make_text(size_t n, int tagged, int sep, uint64_t seed) {
    char *s = xmalloc(n + 1);
    Rng r;
    rng_seed(&r, seed);
    static const char *w[] = {"the/at", "jury/nn", "said/vbd", "1/2/cd", "%", "a", "\n", "\n\n", "\r\n", "\t"};
    size_t k = 0;
    while (k < n) {
        const char *x = w[rng_below(&r, sep ? 10 : 9)];
        if (!tagged && !strcmp(x, "%")) x = "%\n";
        if (sep && rng_below(&r, 40) == 0) x = "\n%\n";
        if (rng_below(&r, 100000) == 0) {  // a long line now and then
            for (size_t i = 0; i < 300000 && k < n; i++) s[k++] = "abc "[rng_below(&r, 4)];
            continue;
        }
        for (; *x && k < n; x++) s[k++] = *x;
        if (k < n && !tagged) s[k++] = ' ';
        else if (k < n) s[k++] = rng_below(&r, 3) ? ' ' : '\n';
    }
    s[n] = 0;
    return s;
}

static void stream_matches(const char *path, const char *text, size_t n, const DocFormat *fmt) {
    DocStream *ds = docs_open(path, fmt);
    const char *t;
    size_t len, off = 0, ndoc = 0;
    int ok = 1;
    while (ok && docs_next(ds, &t, &len)) {
        size_t e = doc_end(text, n, off, fmt->doc_bytes);
        ok = len == e - off && !memcmp(t, text + off, len);
        if (!ok) fprintf(stderr, "  document %zu at %zu: %zu bytes streamed, %zu expected\n", ndoc, off, len, e - off);
        off = e;
        ndoc++;
    }
    CHECK(ok);
    CHECK_EQ_INT(off, n);
    CHECK(ndoc > 10 || fmt->doc_bytes == 0 || fmt->doc_bytes > 100000);
    docs_close(ds);
}

TEST(data_formats_stream_matches_whole_file) {
    char path[700];
    snprintf(path, sizeof path, "%s/stream.txt", test_tmpdir());
    size_t n = 3500000;
    for (int tagged = 0; tagged < 2; tagged++) {
        char *s = make_text(n, tagged, 0, 7 + (uint64_t)tagged);
        FILE *f = fopen(path, "wb");
        fwrite(s, 1, n, f);
        fclose(f);
        size_t m = tagged ? strip_pos_tags(s, n) : n;
        size_t sizes[] = {0, 1, 100, 5000, 65536, 400000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            DocFormat fmt = {.mode = DOC_TEXT, .doc_bytes = sizes[i], .strip_tags = tagged};
            stream_matches(path, s, m, &fmt);
        }
        free(s);
    }
    // Separator documents: split the file in memory at "%" lines, blank ones dropped.
    char *s = make_text(n, 0, 1, 11);
    FILE *f = fopen(path, "wb");
    fwrite(s, 1, n, f);
    fclose(f);
    DocFormat fmt = {.mode = DOC_SEP, .sep = "%"};
    DocStream *ds = docs_open(path, &fmt);
    const char *t;
    size_t len, start = 0, ndoc = 0, bad = 0;
    for (size_t i = 0; i <= n; i++) {
        int at_sep = i + 1 < n && (i == 0 || s[i - 1] == '\n') && s[i] == '%' && (s[i + 1] == '\n' || (s[i + 1] == '\r' && s[i + 2] == '\n'));
        if (!at_sep && i < n) continue;
        size_t k = start;
        while (k < i && strchr(" \t\r\n", s[k])) k++;
        if (k < i) {
            ndoc++;
            if (!docs_next(ds, &t, &len) || len != i - start || memcmp(t, s + start, len)) bad++;
        }
        if (i < n) start = i + (s[i + 1] == '\r' ? 3 : 2), i = start - 1;
    }
    CHECK(!docs_next(ds, &t, &len));
    CHECK_EQ_INT(bad, 0);
    CHECK(ndoc > 1000);
    docs_close(ds);
    free(s);
}

TEST(data_formats_val_split_matches_dense_shuffle) {
    uint64_t cases[][3] = {{1, 0, 1}, {2, 1, 1}, {10, 3, 5}, {1000, 50, 1}, {1000, 999, 2}, {100000, 5000, 9}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t n = cases[c][0], n_val = cases[c][1];
        unsigned char *bits = pick_val_docs(n, n_val, cases[c][2]);
        uint64_t *perm = malloc(n * sizeof *perm);
        unsigned char *dense = calloc(n, 1);
        for (uint64_t i = 0; i < n; i++) perm[i] = i;
        Rng r;
        rng_seed(&r, cases[c][2]);
        for (uint64_t i = 0; i < n_val; i++) {
            uint64_t j = i + rng_below(&r, n - i), x = perm[i];
            perm[i] = perm[j]; perm[j] = x;
            dense[perm[i]] = 1;
        }
        uint64_t diff = 0, count = 0;
        for (uint64_t d = 0; d < n; d++) { diff += (uint64_t)(IS_VAL(bits, d) != dense[d]); count += IS_VAL(bits, d); }
        CHECK_EQ_INT(diff, 0);
        CHECK_EQ_INT(count, n_val);
        free(bits); free(perm); free(dense);
    }
}

// test_data_cli.c — `aoe prepare` and `aoe tokenize` end to end: outputs, round trips through the
// CLI, seeded split, and every bad-input case: one line naming the file (and byte offset), exit
// code 2, no partial output left behind.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "util/common.h"

static void put_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(buf, 1, n, f);
    fclose(f);
}
static void put_text(const char *path, const char *s) { put_file(path, s, strlen(s)); }

#define aoe aoe_run

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

#define LATIN1 "Caf\xe9 cr\xe8" "me br\xfb" "l\xe9" "e, na\xef" "ve fa\xe7" "ade.\r\n"

// A small corpus: a few documents' worth of shipped text plus a Latin-1 file.
static const char *corpus(void) {
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s/corpus", test_tmpdir());
    mkdir_p(dir);
    size_t len;
    char *s = read_file("data/text/tinyshakespeare/input.txt", &len), p[600];
    snprintf(p, sizeof p, "%s/a.txt", dir); put_file(p, s, 60000);
    snprintf(p, sizeof p, "%s/b.txt", dir); put_file(p, s + 60000, 30000);
    snprintf(p, sizeof p, "%s/c.txt", dir); put_text(p, LATIN1);
    snprintf(p, sizeof p, "%s/notes.md", dir); put_text(p, "a walk takes every regular file, whatever its name\n");
    free(s);
    return dir;
}

TEST(data_cli_prepare_and_tokenize_roundtrip) {
    const char *tmp = test_tmpdir();
    char *out, *err;
    int rc = aoe(&out, &err, "prepare --out %s/p1 --vocab 600 --doc-bytes 5000 --val-frac 0.1 --seed 3 %s", tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "train: 1 shard(s)");
    CHECK_STR_CONTAINS(out, "vocab 600");
    free(out); free(err);
    char p[600];
    snprintf(p, sizeof p, "%s/p1/tokenizer.bpe", tmp); CHECK(file_exists(p));
    snprintf(p, sizeof p, "%s/p1/train-00000.shard", tmp); CHECK(file_exists(p));
    snprintf(p, sizeof p, "%s/p1/val-00000.shard", tmp); CHECK(file_exists(p));
    rc = aoe(&out, &err, "prepare --check '%s/p1/*.shard' --tokenizer %s/p1/tokenizer.bpe", tmp, tmp);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(count_lines(out), 2);
    CHECK_STR_CONTAINS(out, "val-00000.shard: ok: vocab 600 (16-bit tokens)");
    free(out); free(err);
    // --ids output feeds --decode, which must give back the exact bytes.
    rc = aoe(&out, &err, "tokenize %s/p1/tokenizer.bpe --text 'First Citizen: we know'\"'\"'t!' --ids", tmp);
    CHECK_EQ_INT(rc, 0);
    out[strcspn(out, "\n")] = 0;
    char *dec, *err2;
    rc = aoe(&dec, &err2, "tokenize %s/p1/tokenizer.bpe --decode %s", tmp, out);
    CHECK_EQ_INT(rc, 0);
    CHECK(!strcmp(dec, "First Citizen: we know't!"));
    free(out); free(err); free(dec); free(err2);
    // Non-UTF-8 file round trip through the CLI.
    rc = aoe(&out, &err, "tokenize %s/p1/tokenizer.bpe --file %s/c.txt --ids", tmp, corpus());
    out[strcspn(out, "\n")] = 0;
    rc |= aoe(&dec, &err2, "tokenize %s/p1/tokenizer.bpe --decode %s", tmp, out);
    CHECK_EQ_INT(rc, 0);
    CHECK(!strcmp(dec, LATIN1));
    free(out); free(err); free(dec); free(err2);
    // The piece view and the training-window view.
    rc = aoe(&out, &err, "tokenize %s/p1/tokenizer.bpe --text 'the king'", tmp);
    CHECK_EQ_INT(rc, 0);
    const char *sum = out ? strstr(out, " tokens for 8 bytes") : NULL;
    REQUIRE(sum);
    while (sum > out && sum[-1] != '\n') sum--;
    CHECK_EQ_INT(count_lines(out), atoi(sum) + 1);  // one line per token, then the summary
    CHECK_STR_CONTAINS(out, "\"ing\"");
    free(out); free(err);
    rc = aoe(&out, &err, "tokenize %s/p1/tokenizer.bpe --data %s/p1/train-00000.shard --seq-len 16 --window 2", tmp, tmp);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(count_lines(out), 1 + 17);
    free(out); free(err);
    rc = aoe(&out, &err, "tokenize --data '%s/p1/train-*.shard' --seq-len 32 --batch 4 --scan --shuffle", tmp);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "peak RSS");
    free(out); free(err);
}

TEST(data_cli_prepare_split_is_seeded) {
    const char *tmp = test_tmpdir();
    char *out, *err;
    int rc = 0;
    rc |= aoe(NULL, NULL, "prepare --out %s/s1 --vocab 400 --doc-bytes 3000 --seed 5 %s", tmp, corpus());
    rc |= aoe(NULL, NULL, "prepare --out %s/s2 --vocab 400 --doc-bytes 3000 --seed 5 %s", tmp, corpus());
    rc |= aoe(NULL, NULL, "prepare --out %s/s3 --vocab 400 --doc-bytes 3000 --seed 6 %s", tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    char a[600], b[600];
    snprintf(a, sizeof a, "cmp -s %s/s1/val-00000.shard %s/s2/val-00000.shard", tmp, tmp);
    CHECK_EQ_INT(run_capture(a, NULL, NULL), 0);  // byte-identical outputs for the same seed
    snprintf(a, sizeof a, "cmp -s %s/s1/val-00000.shard %s/s3/val-00000.shard", tmp, tmp);
    CHECK(run_capture(a, NULL, NULL) != 0);       // another seed holds out other documents
    snprintf(a, sizeof a, "cmp -s %s/s1/tokenizer.bpe %s/s2/tokenizer.bpe", tmp, tmp);
    CHECK_EQ_INT(run_capture(a, NULL, NULL), 0);  // training is deterministic
    snprintf(a, sizeof a, "cmp -s %s/s1/tokenizer.bpe %s/s3/tokenizer.bpe", tmp, tmp);
    CHECK(run_capture(a, NULL, NULL) != 0);       // it learns from the training documents only
    // Re-encoding with an existing tokenizer, in several shards; old extra shards are removed.
    rc = aoe(&out, &err, "prepare --out %s/s1 --tokenizer %s/s2/tokenizer.bpe --shard-tokens 5000 --doc-bytes 3000 --seed 5 %s", tmp,
             tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    rc = aoe(&out, &err, "prepare --out %s/s4 --vocab 300 --train-bytes 2000 %s", tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(err, "learned from 0.0 MB");  // 2000 bytes
    free(out); free(err);
    snprintf(a, sizeof a, "%s/s1/train-00003.shard", tmp);
    CHECK(file_exists(a));
    rc = aoe(&out, &err, "prepare --out %s/s1 --tokenizer %s/s2/tokenizer.bpe --doc-bytes 3000 --seed 5 %s", tmp, tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    CHECK(!file_exists(a));
    snprintf(b, sizeof b, "cmp -s %s/s1/train-00000.shard %s/s2/train-00000.shard", tmp, tmp);
    CHECK_EQ_INT(run_capture(b, NULL, NULL), 0);
    free(out); free(err);
}

TEST(data_cli_prepare_strip_pos_tags) {
    const char *tmp = test_tmpdir();
    char p[600];
    snprintf(p, sizeof p, "%s/brown-ca01", tmp);
    put_text(p, "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at 1/2/cd ./.\n");
    char *out, *err;
    int rc = aoe(&out, &err, "prepare --out %s/pb --vocab 257 --val-frac 0 --strip-pos-tags %s", tmp, p);
    CHECK_EQ_INT(rc, 0);
    // "\n\n\tThe Fulton County said `` no 1/2 .\n" is 38 bytes: with no merges, 38 tokens + EOT.
    CHECK_STR_CONTAINS(out, "-> 39 tokens");
    free(out); free(err);
    rc = aoe(&out, &err, "tokenize %s/pb/tokenizer.bpe --data %s/pb/train-00000.shard --seq-len 38 --window 0", tmp, tmp);
    CHECK_EQ_INT(rc, 0);
    int slashes = 0;  // only the one inside "1/2" survives (the last /part of a token is the tag)
    for (const char *q = out; (q = strstr(q, "\"/\"")); q++) slashes++;
    CHECK_EQ_INT(slashes, 1);
    CHECK_STR_CONTAINS(out, "<|endoftext|>");
    free(out); free(err);
}

// Each bad input: exit 2, one line naming the file (and offset), and nothing written.
static void expect_bad(const char *args, const char *needle1, const char *needle2) {
    char *out, *err;
    int rc = aoe(&out, &err, "%s", args);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, needle1);
    CHECK_STR_CONTAINS(err, needle2);
    CHECK_EQ_INT(count_lines(err), 1);
    if (count_lines(err) != 1 || rc != 2) fprintf(stderr, "  (command: aoe %s)\n  stderr: %s", args, err);
    free(out); free(err);
}

TEST(data_cli_prepare_bad_inputs) {
    const char *tmp = test_tmpdir();
    char empty[600], bin[600], nodir[600], args[4096], outdir[600];
    snprintf(empty, sizeof empty, "%s/empty.txt", tmp);
    put_file(empty, "", 0);
    snprintf(bin, sizeof bin, "%s/image.txt", tmp);
    put_file(bin, "GIF89a\0\1\2", 9);
    snprintf(nodir, sizeof nodir, "%s/no-text-here", tmp);
    mkdir_p(nodir);
    snprintf(outdir, sizeof outdir, "%s/never", tmp);
    // The good corpus comes first: the bad file is still caught before anything is written.
    snprintf(args, sizeof args, "prepare --out %s %s %s", outdir, corpus(), empty);
    expect_bad(args, empty, "empty file");
    snprintf(args, sizeof args, "prepare --out %s %s %s", outdir, corpus(), bin);
    expect_bad(args, bin, "byte offset 6: NUL byte");
    snprintf(args, sizeof args, "prepare --out %s %s/missing.txt", outdir, tmp);
    expect_bad(args, "missing.txt", "cannot open");
    snprintf(args, sizeof args, "prepare --out %s %s", outdir, nodir);
    expect_bad(args, nodir, "directory has no regular files");
    snprintf(args, sizeof args, "prepare --out %s --tokenizer %s %s", outdir, nodir, corpus());
    expect_bad(args, nodir, "is a directory");
    snprintf(args, sizeof args, "prepare --out %s --vocab 100 %s", outdir, corpus());
    expect_bad(args, "--vocab", "expected an integer in [257, 1048576], got '100'");
    CHECK(!file_exists(outdir));
    // Unknown options and --help.
    char *out, *err;
    CHECK_EQ_INT(aoe(&out, &err, "prepare --frobnicate x"), 2);
    CHECK_STR_CONTAINS(err, "unknown option --frobnicate");
    CHECK_STR_CONTAINS(err, "usage: aoe prepare");
    free(out); free(err);
    CHECK_EQ_INT(aoe(&out, &err, "prepare --help"), 0);
    CHECK_STR_CONTAINS(out, "--val-frac");
    free(out); free(err);
    CHECK_EQ_INT(aoe(&out, &err, "tokenize --bogus"), 2);
    CHECK_STR_CONTAINS(err, "usage: aoe tokenize");
    free(out); free(err);
    CHECK_EQ_INT(aoe(&out, &err, "tokenize --help"), 0);
    CHECK_STR_CONTAINS(out, "--decode");
    free(out); free(err);
}

// Copies src to dst with `n` bytes at `off` replaced (or the file cut at `cut` when cut >= 0).
static void mutate(const char *src, const char *dst, long off, const void *bytes, size_t n, long cut) {
    size_t len;
    char *b = read_file(src, &len);
    if (bytes) memcpy(b + off, bytes, n);
    put_file(dst, b, cut >= 0 ? (size_t)cut : len);
    free(b);
}

TEST(data_cli_corrupt_shards_and_tokenizers) {
    const char *tmp = test_tmpdir();
    char *out, *err, args[4096], good[600], bad[600], tok[600], tok2[600];
    int rc = aoe(&out, &err, "prepare --out %s/c1 --vocab 500 --doc-bytes 4000 --chunk-tokens 1024 %s", tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    rc = aoe(&out, &err, "prepare --out %s/c2 --vocab 520 --doc-bytes 4000 %s", tmp, corpus());
    CHECK_EQ_INT(rc, 0);
    free(out); free(err);
    snprintf(good, sizeof good, "%s/c1/train-00000.shard", tmp);
    snprintf(bad, sizeof bad, "%s/bad.shard", tmp);
    snprintf(tok, sizeof tok, "%s/c1/tokenizer.bpe", tmp);
    snprintf(tok2, sizeof tok2, "%s/c2/tokenizer.bpe", tmp);
    struct stat st;
    stat(good, &st);
    long size = (long)st.st_size;
    snprintf(args, sizeof args, "prepare --check %s", bad);

    mutate(good, bad, 0, NULL, 0, size - 10);  // truncated
    char want[128];
    snprintf(want, sizeof want, "truncated at byte offset %ld", size - 10);
    expect_bad(args, bad, want);
    mutate(good, bad, 0, NULL, 0, 60);  // truncated inside the header
    expect_bad(args, bad, "truncated at byte offset 60: expected a 128-byte header");
    mutate(good, bad, 0, "XXXX", 4, -1);  // wrong magic
    expect_bad(args, bad, "byte offset 0: expected magic \"AOESHARD\"");
    mutate(good, bad, 8, "\7\0\0\0", 4, -1);  // wrong version
    expect_bad(args, bad, "byte offset 8: shard version 7; this build reads version 1");
    mutate(good, bad, 33, "\xff", 1, -1);  // header field changed: header CRC
    expect_bad(args, bad, "byte offset 124: header CRC mismatch");
    mutate(good, bad, 128 + 100, "\x5a\xa5", 2, -1);  // flipped bits in chunk 0
    expect_bad(args, bad, "byte offset 128: chunk 0 CRC mismatch");
    size_t glen;
    unsigned char *g = (unsigned char *)read_file(good, &glen);
    long index_at = 0;
    for (int i = 7; i >= 0; i--) index_at = index_at << 8 | g[64 + i];
    free(g);
    mutate(good, bad, index_at + 30, "\x01\x02", 2, -1);  // inside the chunk index
    snprintf(want, sizeof want, "byte offset %ld: chunk index CRC mismatch", index_at);
    expect_bad(args, bad, want);
    mutate(good, bad, size - 1, "\x7f", 1, -1);  // last byte: in the document table
    expect_bad(args, bad, "document table CRC mismatch");
    put_file(bad, "", 0);
    expect_bad(args, bad, "empty file");
    snprintf(args, sizeof args, "prepare --check %s/c1", tmp);  // a directory where a file is expected
    expect_bad(args, "c1", "is a directory; expected a shard file");
    snprintf(args, sizeof args, "prepare --check '%s/c1/nothing-*.shard'", tmp);
    expect_bad(args, "nothing-*.shard", "no files match");
    // Vocab / tokenizer mismatch: shards of c1 with the c2 tokenizer.
    snprintf(args, sizeof args, "tokenize %s --data %s --seq-len 8", tok2, good);
    expect_bad(args, good, "shard vocab 500 does not match the model's vocab 520");
    snprintf(args, sizeof args, "prepare --check %s --tokenizer %s", good, tok2);
    expect_bad(args, good, "byte offset 24: made with tokenizer");
    // Mixed shards in one spec.
    snprintf(args, sizeof args, "tokenize --data %s,%s/c2/train-00000.shard --seq-len 8", good, tmp);
    expect_bad(args, "c2/train-00000.shard", "all shards must come from one tokenizer");
    // Tokenizer files.
    snprintf(bad, sizeof bad, "%s/bad.bpe", tmp);
    snprintf(args, sizeof args, "tokenize %s --text hi", bad);
    stat(tok, &st);
    size = (long)st.st_size;
    mutate(tok, bad, 0, NULL, 0, size - 3);
    snprintf(want, sizeof want, "truncated at byte offset %ld", size - 3);
    expect_bad(args, bad, want);
    mutate(tok, bad, 0, "NOTATOKN", 8, -1);
    expect_bad(args, bad, "byte offset 0: expected magic \"AOETOKEN\"");
    mutate(tok, bad, 8, "\2\0\0\0", 4, -1);
    expect_bad(args, bad, "byte offset 8: tokenizer version 2");
    mutate(tok, bad, 40, "\1", 1, -1);
    snprintf(want, sizeof want, "byte offset %ld: CRC mismatch", size - 4);
    expect_bad(args, bad, want);
    put_file(bad, "", 0);
    expect_bad(args, bad, "empty file");
    snprintf(args, sizeof args, "tokenize %s/c1 --text hi", tmp);
    expect_bad(args, "c1", "is a directory");
    snprintf(args, sizeof args, "tokenize %s --decode 1,2,99999", tok);
    expect_bad(args, "--decode", "id 99999 (item 3) is outside the vocabulary [0, 500)");
}

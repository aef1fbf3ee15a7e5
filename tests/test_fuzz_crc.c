// test_fuzz_crc.c — the fuzzers' CRC fixer (tests/fuzz/fuzz_crc.h) against real files: fixing a
// valid checkpoint or shard changes no byte (the fixer, written from docs/formats.md, agrees with
// the writers), and a file with a changed payload byte is refused before fixing and passes the
// integrity checks after it (what lets the fuzzers reach the parsing behind the CRCs).
#include "fuzz/fuzz_crc.h"
#include "test.h"

static unsigned char *slurp_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void write_file(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n);
    fclose(f);
}

// cmd is run on the file at path: refused (exit 2) with the flipped byte, accepted after fixing.
static void check_fix(const char *src, void (*fix)(uint8_t *, size_t), size_t flip_at, const char *cmd) {
    size_t n = 0;
    unsigned char *b = slurp_file(src, &n), *orig = malloc(n);
    CHECK(b != NULL && n > flip_at);
    memcpy(orig, b, n);
    fix(b, n);
    CHECK(memcmp(b, orig, n) == 0);
    char path[512];
    snprintf(path, sizeof path, "%s/crcfix-%s", test_tmpdir(), strrchr(src, '/') + 1);
    b[flip_at] ^= 0x01;
    write_file(path, b, n);
    CHECK_EQ_INT(aoe_run(NULL, NULL, cmd, path), 2);
    fix(b, n);
    write_file(path, b, n);
    char *err = NULL;
    int rc = aoe_run(NULL, &err, cmd, path);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(rc, 0);
    free(err); free(b); free(orig);
}

TEST(fuzz_crc_fixer_agrees_with_the_writers) {
    const char *run = test_tiny_run();
    CHECK(run != NULL);
    char ck[512], sh[512];
    snprintf(ck, sizeof ck, "%s/ckpt-4.aoec", run);
    snprintf(sh, sizeof sh, "%s/train-00000.shard", test_tiny_data());
    // checkpoint: a byte of the last float of the last state array (payload, raw); shard: a byte
    // of chunk 0's stored CRC (a changed chunk would need recompressing to stay inflatable)
    size_t n = 0;
    unsigned char *b = slurp_file(ck, &n);
    free(b);
    check_fix(ck, fuzz_fix_ckpt, n - 2, "inspect %s");
    b = slurp_file(sh, &n);
    size_t idx = (size_t)fz_get(b + 64, 8);
    free(b);
    check_fix(sh, fuzz_fix_shard, idx + 16, "prepare --check %s");
}

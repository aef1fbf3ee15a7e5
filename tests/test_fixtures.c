// test_fixtures.c — data shared by tests that drive `aoe train` end to end (no TESTs here).
#include <stdlib.h>

#include "test.h"
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

// test_layout.c — tools/check-includes.sh (run by `make test` on src/) on hand-made source trees:
// a tree that follows the layer order passes; an arrow back up, a circle, two files with one
// name and a folder missing from the order are each named and fail (exit 1); --warn only reports.
#include <stdlib.h>
#include <string.h>

#include "test.h"

// Writes files given as {path, text, path, text, ..., NULL} under root.
static void put_tree(const char *root, const char *const *files) {
    for (; *files; files += 2) {
        char p[1024], cmd[1200];
        snprintf(p, sizeof p, "%s/%s", root, files[0]);
        snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname %s)\"", p);
        if (system(cmd)) return;
        FILE *f = fopen(p, "w");
        if (!f) return;
        fputs(files[1], f);
        fclose(f);
    }
}

static int check(const char *root, const char *opt, char **out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "tools/check-includes.sh %s %s", opt, root);
    return run_capture(cmd, out, NULL);
}

TEST(layout_check_includes) {
    char root[600], cmd[700], *out = NULL;
    snprintf(root, sizeof root, "%s/layout/src", test_tmpdir());
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    REQUIRE(system(cmd) == 0);
    put_tree(root, (const char *const[]){
        "main.c", "#include \"report/report.h\"\n#include \"cli.h\"\n", "cli.h", "int cmd(void);\n",
        "util/common.h", "#include <stdio.h>\n",
        "model/model.h", "#include \"config/config.h\"\n#include \"select/select.h\"\n#include \"util/common.h\"\n",
        "config/config.c", "#include \"config/config.h\"\n#include \"cli.h\"\n", "config/config.h", "",
        "select/select.h", "#include \"config/config.h\"\n",
        "train/train.c", "#include \"ckpt/ckpt.h\"\n#include \"model/model.h\"\n",
        "ckpt/ckpt.h", "#include \"model/model.h\"\n", "report/report.c", "  #  include \"eval/x.h\"\n", NULL});
    CHECK_EQ_INT(check(root, "", &out), 0);
    CHECK_STR_CONTAINS(out, "src/ folders follow the layer order");
    free(out);

    put_tree(root, (const char *const[]){"ckpt/ckpt.h", "#include \"model/model.h\"\n#include \"train/optim.h\"\n",  // ckpt <-> train
                                         "config/config.c", "#include \"config/config.h\"\n\n#include \"select/select.h\"\n", NULL});
    CHECK_EQ_INT(check(root, "", &out), 1);
    CHECK_STR_CONTAINS(out, "src/ckpt/ckpt.h:2: includes train/optim.h — an arrow back up (ckpt may include: util dist config data select model ckpt)");
    CHECK_STR_CONTAINS(out, "src/config/config.c:3: includes select/select.h — an arrow back up");
    CHECK_STR_CONTAINS(out, "2 problem(s)");
    free(out);
    CHECK_EQ_INT(check(root, "--warn", &out), 0);
    CHECK_STR_CONTAINS(out, "src/ckpt/ckpt.h:2: includes train/optim.h");
    free(out);

    put_tree(root, (const char *const[]){"ckpt/ckpt.h", "#include \"model/model.h\"\n", "config/config.c",
                                         "#include \"config/config.h\"\n", "eval/report.c", "", "viz/plot.c", "", NULL});
    CHECK_EQ_INT(check(root, "", &out), 1);
    CHECK_STR_CONTAINS(out, "more than one src file is named report.c: src/eval/report.c src/report/report.c");
    CHECK_STR_CONTAINS(out, "src/viz/ is not in the layer list");
    free(out);
}

// test_eval_interop.c — eval outside the repository and its files for other tools: a registered
// task whose data is absent is reported "not available" and the other tasks still run.
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "test_eval_fixtures.h"
#include "util/common.h"

static const char *pair_jsonl = "{\"sentence_good\": \"The cat sat on the mat.\", \"sentence_bad\": \"The cat sat the on mat.\"}\n"
                                "{\"sentence_good\": \"The dog sat on the log.\", \"sentence_bad\": \"The dog on sat the log.\"}\n";

// A copy of the binary run from an empty directory has no data root holding piqa: piqa is
// reported with how to get it, the user's own task is still scored, exit 0.
TEST(eval_unavailable_task_reported_others_run) {
    char dir[400], ck[600], tok[600], cmd[3000], p[700];
    snprintf(dir, sizeof dir, "%s/eval_away", test_tmpdir());
    REQUIRE(eval_tiny_ckpt(dir, "dense", 3, ck, sizeof ck, tok, sizeof tok) == 0);
    snprintf(p, sizeof p, "%s/pairs.jsonl", dir);
    write_file_atomic(p, pair_jsonl, strlen(pair_jsonl));
    snprintf(cmd, sizeof cmd, "mkdir -p %s/bin && cp %s %s/bin/aoe", dir, aoe_bin(), dir);
    REQUIRE(system(cmd) == 0);
    char *out, *err;
    snprintf(cmd, sizeof cmd, "cd %s && ./bin/aoe eval %s --tasks piqa,pairs.jsonl --out res --threads 1", dir, ck);
    int rc = run_capture(cmd, &out, &err);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(err, "aoe eval: task piqa: not available: 'piqa/valid.jsonl' is under none of the data roots");
    CHECK_STR_CONTAINS(err, "--data-dir");
    CHECK_STR_CONTAINS(out, "| checkpoint | pairs (acc) | avg |");
    free(out); free(err);
    snprintf(cmd, sizeof cmd, "cd %s && ./bin/aoe eval %s --tasks piqa --out res2 --threads 1", dir, ck);
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 2);  // nothing left to run
    CHECK_STR_CONTAINS(err, "none of the tasks 'piqa' is available");
    free(out); free(err);
    // from the repository root every registered task is found in the shipped data/tasks
    snprintf(cmd, sizeof cmd, "%s eval --list-tasks", aoe_bin());
    CHECK_EQ_INT(run_capture(cmd, &out, &err), 0);
    CHECK(!strstr(out, "not available"));  // every registered task ships in data/tasks
    free(out); free(err);
}

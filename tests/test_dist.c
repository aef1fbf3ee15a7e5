// test_dist.c — training on several MPI ranks (mpirun -np 2 --oversubscribe, driven through the
// shell): data parallelism and expert parallelism give the losses of one process, load counts
// are identical, and a job that loses a rank to kill -9 resumes to the same final loss. Skipped
// (with the reason printed) only when mpirun is not installed.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/common.h"

#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpirun --oversubscribe -np %d "

static int have_mpirun(void) {
    if (!run_capture("command -v mpirun", NULL, NULL)) return 1;
    fprintf(stderr, "[skipped: mpirun not found; install openmpi-bin (make deps)] ");
    return 0;
}

// A tiny model on the test shards: 50 steps of batch 4 x 32 tokens, a line per step.
static int train(int np, const char *args, const char *run, const char *env, char **out, char **err) {
    const char *d = test_tiny_data();
    char cmd[4096], pre[256] = "";
    if (np) snprintf(pre, sizeof pre, MPIRUN, np);
    snprintf(cmd, sizeof cmd,
             "%s %s%s train configs/quickstart.json model.d_model=32 model.n_layer=2 model.n_head=2 model.seq_len=32 "
             "model.ffn.d_ff=64 model.ffn.n_experts=4 model.ffn.d_low=8 train.steps=50 train.batch_size=4 "
             "train.warmup=5 train.log_every=1 train.eval_every=25 train.eval_batches=2 train.threads=1 train.precision=fp32 "
             "data.train='%s/train-*.shard' data.val='%s/val-*.shard' data.tokenizer=%s/tokenizer.bpe "
             "run.out=%s/%s %s",
             env ? env : "", pre, aoe_bin(), d, d, d, test_tmpdir(), run, args);
    return run_capture(cmd, out, err);
}

// Values of "key": in order from a JSONL file of the test run directory.
static int read_key(const char *run, const char *file, const char *key, double *v, int cap) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s/%s", test_tmpdir(), run, file);
    return test_jsonl_numbers(path, key, v, cap);
}

// The "counts":[...] arrays of load.jsonl, concatenated.
static char *read_counts(const char *run) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s/load.jsonl", test_tmpdir(), run);
    size_t len;
    if (!file_exists(path)) return xcalloc(1, 1);
    char *s = read_file(path, &len), *o = xcalloc(len + 1, 1), *q = o;
    for (char *p = s; (p = strstr(p, "\"counts\":[")); p++) {
        char *e = strchr(p, ']');
        memcpy(q, p, e - p + 1);
        q += e - p + 1;
    }
    free(s);
    return o;
}

// Max relative difference of the per-step losses of two runs; both must have `steps` lines.
static double loss_diff(const char *a, const char *b, int steps, int *identical) {
    double x[128], y[128], m = 0;
    int nx = read_key(a, "metrics.jsonl", "loss", x, 128), ny = read_key(b, "metrics.jsonl", "loss", y, 128);
    CHECK_EQ_INT(nx, steps);
    CHECK_EQ_INT(ny, steps);
    *identical = 0;
    for (int i = 0; i < nx && i < ny; i++) {
        m = fmax(m, fabs(x[i] - y[i]) / fabs(x[i]));
        *identical += x[i] == y[i];
    }
    return nx == ny && nx ? m : INFINITY;
}

// The end-of-run line: measured bytes per step against the formulas. The all-reduce carries the
// gradient (ring formula) plus a few batch statistics; the all-to-all depends on the routing, so
// it is checked against the uniform-routing formula within a factor (the balancing loss keeps
// the load near uniform).
static void check_comm_line(const char *out, int ep, int np) {
    char head[96];
    snprintf(head, sizeof head, "communication per step (rank 0 of %d): all-reduce ", np);
    const char *p = out ? strstr(out, head) : NULL;
    CHECK(p != NULL);
    if (!p) return;
    double ar, ar_f, a2a, a2a_f;
    const char *q = strstr(p, "= "), *w = strstr(p, "all-to-all "), *u = strstr(p, "formula ");
    REQUIRE(q && w && (u = strstr(w, "formula ")));
    ar = atof(p + strlen(head));
    ar_f = atof(q + 2);
    a2a = atof(w + strlen("all-to-all "));
    a2a_f = atof(u + strlen("formula "));
    fprintf(stderr, "[bytes: all-reduce %.3f MB vs %.3f, all-to-all %.3f vs %.3f] ", ar, ar_f, a2a, a2a_f);
    CHECK(ar >= ar_f && ar <= 1.02 * ar_f + 0.001);
    if (ep) CHECK(a2a > 0.5 * a2a_f && a2a < 1.5 * a2a_f);
    else CHECK(a2a == 0 && a2a_f == 0);
}

// Expert parallelism holds only this rank's experts: the start-up line's parameter floats of this
// rank are the model's minus the other rank's expert slices (E = 2: as many as this rank's own,
// which the end-of-run line counts).
static void check_shard_line(const char *out) {
    const char *q = out ? strstr(out, "expert parallel 2 (") : NULL, *x = out ? strstr(out, " expert parameters of this rank") : NULL;
    const char *p = q ? strstr(q, "experts per sparse layer: ") : NULL;
    REQUIRE(p && x);
    double held = atof(p + strlen("experts per sparse layer: ")), whole = atof(strstr(p, "of the ") + 7);
    const char *e = x;
    while (e > out && e[-1] != ' ') e--;
    double mine = atof(e);
    fprintf(stderr, "[rank 0 holds %.0f of %.0f floats, experts %.0f] ", held, whole, mine);
    CHECK(mine > 0.3 * whole && held == whole - mine);
}

// type and `both` for the one process and the N ranks, `extra` for the N ranks only.
static void compare_with(const char *type, const char *both, const char *extra, int np) {
    char one[64], two[64], args[256], *err = NULL;
    int ep = strstr(extra, "expert_parallel") != NULL;
    static int runs;  // a fresh run directory per comparison
    snprintf(one, sizeof one, "d1-%s-%d", type, runs);
    snprintf(two, sizeof two, "d2-%s-%d", type, runs++);
    snprintf(args, sizeof args, "model.ffn.type=%s %s", type, both);
    int rc = train(0, args, one, NULL, NULL, &err);  // one process: no expert parallelism
    snprintf(args, sizeof args, "model.ffn.type=%s %s %s", type, both, extra);
    if (rc) fprintf(stderr, "  %s\n", err);
    free(err);
    REQUIRE(rc == 0);
    char *out = NULL;
    rc = train(np, args, two, NULL, &out, &err);
    if (rc) fprintf(stderr, "  %s\n", err);
    free(err);
    REQUIRE(rc == 0);
    check_comm_line(out, ep, np);
    if (ep) check_shard_line(out);
    free(out);
    int same;
    double d = loss_diff(one, two, 50, &same);
    fprintf(stderr, "[%s%s%s%s%s N=%d: max rel %.1e, %d/50 equal] ", type, both[0] ? " " : "", both, extra[0] ? " " : "",
            extra, np, d, same);
    CHECK(d <= 1e-5);
    if (strcmp(type, "dense")) {
        char *a = read_counts(one), *b = read_counts(two);
        CHECK(strlen(a) > 0 && !strcmp(a, b));
        free(a); free(b);
    }
}

static void compare(const char *type, const char *extra, int np) { compare_with(type, "", extra, np); }

// N = 2 data-parallel with global batch B gives the losses of one process with batch B. Each rank
// updates its part of the parameters (a ring reduce-scatter of the gradient, the weights
// all-gathered); N = 4 (one sequence per rank) runs that ring over three steps.
TEST(dist_data_parallel_matches_one_process) {
    if (!have_mpirun()) return;
    compare("dense", "", 2);
    compare("moe", "", 2);
    compare("aoe", "", 2);
    compare("moe", "", 4);
    // expert choice ranks the tokens of the whole global batch: the ranks pool their candidates
    compare_with("moe", "model.ffn.select=expert_choice", "", 2);
    compare_with("aoe", "model.ffn.select=expert_choice", "", 2);
    // ETR's expert side (capacity, τ mass) and its locality loss are batch-wide in the same way
    compare_with("moe", "model.ffn.select=etr model.ffn.top_k=1 model.ffn.etr_loc_coef=0.1", "", 2);
    compare_with("moe", "model.ffn.select=etr model.ffn.top_k=1 model.ffn.etr_tau=0.6", "", 2);
    compare_with("moe", "model.ffn.select=etr_ecr", "", 2);
    // the gradient summed block by block while the backward runs (MPI_Iallreduce): the same sums
    compare("moe", "train.overlap_grads=true", 2);
}

// src/dist's ring (reduce-scatter by MPI_Sendrecv, all-gather) gives exact sums on 2 and 3 ranks,
// with parts of unequal length (tools/mpi-collectives.c checks every element; make test builds it
// and names it in AOE_MPI_COLLECTIVES).
TEST(dist_ring_sums_are_exact) {
    if (!have_mpirun()) return;
    const char *bin = getenv("AOE_MPI_COLLECTIVES");
    if (!bin || !*bin) { fprintf(stderr, "[skipped: AOE_MPI_COLLECTIVES not set; run through make test] "); return; }
    for (int np = 2; np <= 3; np++) {
        char cmd[1024], *out = NULL, *err = NULL;
        snprintf(cmd, sizeof cmd, MPIRUN "%s 100003", np, bin);
        int rc = run_capture(cmd, &out, &err);
        if (rc) fprintf(stderr, "  %s\n", err);
        CHECK_EQ_INT(rc, 0);
        CHECK_STR_CONTAINS(out, "results exact");
        free(out); free(err);
    }
}

// Commands that do not split their work refuse several ranks instead of writing N copies.
TEST(dist_other_commands_refuse_ranks) {
    if (!have_mpirun()) return;
    char cmd[1024], *err = NULL;
    snprintf(cmd, sizeof cmd, MPIRUN "%s inspect configs/moe.json", 2, aoe_bin());
    CHECK(run_capture(cmd, NULL, &err) != 0);
    CHECK_STR_CONTAINS(err, "aoe inspect: runs on one process; start it without mpirun");
    free(err);
}

// Expert parallelism E = 2 on 2 ranks (each runs 2 of the 4 experts; tokens travel by
// MPI_Alltoallv) gives the losses and load counts of one process.
TEST(dist_expert_parallel_matches_one_process) {
    if (!have_mpirun()) return;
    compare("moe", "train.expert_parallel=2", 2);
    compare("aoe", "train.expert_parallel=2", 2);
    compare("moe", "train.expert_parallel=2 train.overlap_grads=true", 2);
    compare_with("aoe", "model.ffn.select=expert_choice", "train.expert_parallel=2", 2);
}

// kill -9 of rank 1 at step 37 (checkpoint every 10): the job stops with a message, and `mpirun ...
// --resume` ends with the final loss of an uninterrupted run (bit-identical: same ranks, same
// sums); resuming on one process from a 2-rank checkpoint works too and says so.
static void kill_resume(const char *args, const char *tag) {
    char full[64], cut[64], cut1[64], *err = NULL;
    snprintf(full, sizeof full, "k-full-%s", tag);
    snprintf(cut, sizeof cut, "k-cut-%s", tag);
    snprintf(cut1, sizeof cut1, "k-cut1-%s", tag);
    int rc = train(2, args, full, NULL, NULL, &err);
    free(err);
    REQUIRE(rc == 0);
    rc = train(2, args, cut, "AOE_TEST_KILL_AT_STEP=37 AOE_TEST_KILL_RANK=1", NULL, &err);
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(err, "rank 1");  // mpirun names the dead rank
    CHECK_STR_CONTAINS(err, "aoe: rank 0 of 2: stop signal while waiting");  // and rank 0 says what to do
    free(err);
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, MPIRUN "%s train --resume %s/%s", 2, aoe_bin(), test_tmpdir(), cut);
    rc = run_capture(cmd, &out, &err);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK(rc == 0);
    CHECK_STR_CONTAINS(out, "resumed from");
    free(out); free(err);
    double a[128], b[128];
    int na = read_key(full, "metrics.jsonl", "loss", a, 128), nb = read_key(cut, "metrics.jsonl", "loss", b, 128);
    REQUIRE(na == 50 && nb == 50);
    fprintf(stderr, "[%s: final %.6f vs %.6f] ", tag, a[49], b[49]);
    CHECK(a[49] == b[49]);
    // the same cut, resumed by one process: same global batch, so the same run within rounding
    rc = train(2, args, cut1, "AOE_TEST_KILL_AT_STEP=37 AOE_TEST_KILL_RANK=0", NULL, &err);
    CHECK(rc != 0);
    free(err);
    rc = aoe_run(&out, &err, "train --resume %s/%s train.expert_parallel=1", test_tmpdir(), cut1);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK(rc == 0);
    CHECK_STR_CONTAINS(out, "resuming on 1 MPI rank; the checkpoint was written by 2");
    free(out); free(err);
    nb = read_key(cut1, "metrics.jsonl", "loss", b, 128);
    REQUIRE(nb == 50);
    fprintf(stderr, "[N=2 -> 1: final %.6f] ", b[49]);
    CHECK(fabs(a[49] - b[49]) <= 1e-5 * fabs(a[49]));
}

TEST(dist_rank_killed_then_resume) {
    if (!have_mpirun()) return;
    // AoE with expert parallelism: the checkpoints gather the experts from both ranks
    kill_resume("model.ffn.type=aoe train.ckpt_every=10 train.expert_parallel=2", "ep");
    // MoE, data parallel only: each rank updates its part, the checkpoints gather the optimizer state
    kill_resume("model.ffn.type=moe train.ckpt_every=10", "dp");
}

// The memory estimate of --dry-run with train.expert_parallel = 2 (no mpirun: one rank of a run on
// 2) counts half of the expert parameters, gradients and optimizer state, and half the batch.
static double estimate_part(const char *err, const char *what) {
    const char *p = err ? strstr(err, what) : NULL;
    if (!p) return -1;
    char unit[8] = "";
    double v = 0;
    if (sscanf(p + strlen(what), "%lf %7s", &v, unit) != 2) return -1;
    return v * (unit[0] == 'G' ? 1 << 30 : unit[0] == 'M' ? 1 << 20 : unit[0] == 'K' ? 1 << 10 : 1);
}

TEST(dist_expert_parallel_dry_run_counts_one_rank) {
    char *err1 = NULL, *err2 = NULL;
    CHECK_EQ_INT(train(0, "model.ffn.type=moe model.d_model=64 model.ffn.d_ff=256 --dry-run", "dry1", NULL, NULL, &err1), 0);
    CHECK_EQ_INT(train(0, "model.ffn.type=moe model.d_model=64 model.ffn.d_ff=256 train.expert_parallel=2 --dry-run",
                       "dry2", NULL, NULL, &err2), 0);
    CHECK_STR_CONTAINS(err2, "memory estimate per rank of 2 (2 sequences each, expert parallel 2)");
    double p1 = estimate_part(err1, "(parameters "), p2 = estimate_part(err2, "(parameters ");
    double o1 = estimate_part(err1, "optimizer state "), o2 = estimate_part(err2, "optimizer state ");
    // experts: 2 sparse layers x 4 experts x 3 x 64 x 256 floats; the other rank holds half of them
    double half = 2 * 2 * 3 * 64 * 256 * 4.0;
    fprintf(stderr, "[parameters %.0f -> %.0f bytes, optimizer %.0f -> %.0f] ", p1, p2, o1, o2);
    CHECK(p1 > 0 && fabs(p1 - p2 - half) < 0.01 * p1);
    CHECK(o1 > 0 && fabs(o1 - o2 - 2 * half) < 0.01 * o1);
    free(err1); free(err2);
}

// The memory check before a run counts every rank on the machine: a machine with room for 1.5
// ranks' allocations refuses 2 ranks, naming the per-rank estimate and the rank count.
TEST(dist_memory_check_counts_the_ranks_on_the_machine) {
    if (!have_mpirun()) return;
    char *err = NULL, env[64];
    CHECK_EQ_INT(train(2, "model.ffn.type=moe --dry-run", "mem-dry", NULL, NULL, &err), 0);
    // what a rank will add: its estimate less what the process already holds
    double per = estimate_part(err, "expert parallel 1): ") - estimate_part(err, "process so far ");
    fprintf(stderr, "[per rank %.0f bytes] ", per);
    free(err);
    REQUIRE(per > 0);
    snprintf(env, sizeof env, "AOE_TEST_MEM_AVAILABLE=%.0f", 1.5 * per);
    CHECK(train(2, "model.ffn.type=moe", "mem-2", env, NULL, &err) != 0);
    CHECK_STR_CONTAINS(err, " per rank, times 2 ranks on this machine, but only ");
    free(err);
}

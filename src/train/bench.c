// bench.c — `aoe bench`: training-step speed of the bench configs against the ceiling of the
// precision's matrix product (fp32: BLIS sgemm, bf16: oneDNN bf16 matmul) measured in the same process, with a per-phase breakdown and peak RSS. Each (config, threads)
// runs in its own child process so peak RSS and BLIS thread settings do not leak between runs.
// Tokens are random: the bench measures the step, not learning.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "config/config.h"
#include "dist/dist.h"
#include "model/kernels.h"
#include "model/moe_ep.h"
#include "model/model.h"
#include "train/dp.h"
#include "train/optim.h"
#include "util/common.h"
#include "util/prof.h"

typedef struct {
    double tok_s, gflops, ceiling, step_s, phase_s[PROF_N], rss_mb;
    double params, active, flops_tok;
    double comm_s, allreduce_b, alltoall_b, ring_b, a2a_b;  // per step, this rank (MPI only)
    int threads, steps, ranks;
    Precision prec;
    char arch[32], impl[64];
} BenchResult;

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe bench [CONFIG.json ...] [--threads 1,2] [--precision fp32,bf16] [--steps N] [--json]\n\n"
            "Times full training steps (forward, backward, clip, AdamW) on random tokens.\n"
            "  CONFIG.json     configs to time (default: configs/bench-{dense,moe,aoe}.json)\n"
            "  --threads LIST  thread counts to run (default 1,2)\n"
            "  --precision LIST  product precisions to run: fp32, bf16, auto (default auto: bf16 where\n"
            "                  the CPU has native bf16 dot products, else fp32)\n"
            "  --steps N       timed steps after 2 warm-up steps (default 5)\n"
            "  --json          one JSON object per run on stdout instead of the table\n"
            "Under mpirun every rank runs its share (train.batch_size is the global batch; the config's\n"
            "train.expert_parallel applies), tokens/s are global, the slowest rank's step counts, and the\n"
            "line adds the time in MPI and the bytes per step against their formulas.\n"
            "Reports tokens/s, achieved GFLOP/s (3 x forward FLOPs per token) as a fraction of the\n"
            "ceiling measured in the same process (one 1024^3 product, best of ~1 s: BLIS sgemm for fp32,\n"
            "oneDNN bf16 matmul on bf16 operands for bf16), phase shares and peak RSS.\n");
}

static void run_one(const char *path, int threads, Precision prec, int steps, BenchResult *r) {
    Config c;
    config_defaults(&c);
    config_load_file(&c, path);
    model_validate_config(&c, path);
    const char *arch = kernels_init(threads);
    memset(r, 0, sizeof *r);
    snprintf(r->arch, sizeof r->arch, "%s", arch);
    r->threads = kernels_threads();
    r->steps = steps;
    r->prec = prec;
    kernels_set_precision(prec);
    r->ceiling = prec == PREC_BF16 ? kernels_bf16_gflops(1024, 1.0) : kernels_sgemm_gflops(1024, 1.0);
    int N = dist_size(), V = c.vocab_size ? c.vocab_size : 8192, B = dp_setup(&c), S = c.seq_len, T = B * S;
    Model *m = model_create(&c, V, B, c.seed);
    dp_bind(&m->P);
    model_count(&c, V, &r->params, &r->active, &r->flops_tok);
    Optim opt;
    optim_init(&opt, optim_for_config(&c, path), &m->P);
    Rng rng;
    rng_seed(&rng, 42);
    int32_t *x = xmalloc(sizeof(int32_t) * T), *y = xmalloc(sizeof(int32_t) * T);
    double t_total = 0;
    for (int s = -2; s < steps; s++) {
        for (int i = 0; i < T; i++) { x[i] = (int32_t)rng_below(&rng, V); y[i] = (int32_t)rng_below(&rng, V); }
        if (s == 0) { prof_enabled = 1; prof_reset(); dist_stats_reset(); }
        dist_barrier();  // ranks start each step together: the step time is the slowest rank's
        double t0 = now_sec();
        params_zero_grad(&m->P);
        model_forward(m, x, y, B, S, NULL, 1, &rng);
        dp_overlap_next_backward(m, c.overlap_grads);
        model_backward(m, y, 1.0f / N);
        dp_sum_grads(&m->P);
        double to = prof_begin();
        dp_optim_step(&opt, &m->P, &c, c.lr, clip_scale(dp_grad_norm(&m->P), c.grad_clip));
        prof_end(PROF_OPT, to);
        if (s >= 0) t_total += now_sec() - t0;
    }
    r->step_s = dist_max_d(t_total) / steps;
    r->tok_s = (double)T * N / r->step_s;  // global
    DistStats ds;
    dist_stats(&ds);
    r->ranks = N;
    r->comm_s = ds.sec / steps;
    r->allreduce_b = ds.allreduce_bytes / steps;
    r->alltoall_b = ds.alltoall_bytes / steps;
    r->ring_b = dp_ring_bytes(m->P.total);
    r->a2a_b = moe_ep_uniform_bytes(&c, c.expert_parallel, T);
    r->gflops = 3 * r->flops_tok * r->tok_s / 1e9;
    for (int p = 0; p < PROF_N; p++) r->phase_s[p] = prof_acc[p] / steps;
    r->rss_mb = peak_rss_kb() / 1024.0;
    snprintf(r->impl, sizeof r->impl, "%s", prec == PREC_BF16 ? kernels_bf16_impl() : "blis");
    free(x); free(y);
    optim_free(&opt);
    model_free(m);
}

// Runs one measurement in a child process; the result comes back through a pipe.
static int run_child(const char *path, int threads, Precision prec, int steps, BenchResult *r) {
    if (dist_mpi()) {  // no fork after MPI_Init: every rank runs it in process, together
        run_one(path, threads, prec, steps, r);
        return 0;
    }
    int fd[2];
    if (pipe(fd)) die("bench: pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("bench: fork: %s", strerror(errno));
    if (pid == 0) {
        close(fd[0]);
        run_one(path, threads, prec, steps, r);
        ssize_t w = write(fd[1], r, sizeof *r);
        _exit(w == (ssize_t)sizeof *r ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], r, sizeof *r);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof *r || !WIFEXITED(st) || WEXITSTATUS(st)) return WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1;
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    const char *cfgs[32];
    int n_cfg = 0, steps = 5, json = 0, thr[8] = {1, 2}, n_thr = 2, prec[4], n_prec = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            n_thr = 0;
            for (char *s = argv[++i]; *s && n_thr < 8; s = strchr(s, ',') ? strchr(s, ',') + 1 : s + strlen(s))
                thr[n_thr++] = atoi(s);
        } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            for (char *s = strtok(argv[++i], ","); s; s = strtok(NULL, ",")) {
                int p = precision_parse(s);
                if (p < 0 || n_prec == 4) die_input("bench: --precision: expected a list of fp32, bf16, auto, got '%s'", s);
                prec[n_prec++] = p;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "aoe bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (n_cfg < 32) cfgs[n_cfg++] = argv[i];
    }
    if (steps < 1) die_input("bench: --steps must be >= 1");
    if (!n_prec) prec[n_prec++] = precision_parse("auto");
    if (!n_cfg) {
        static const char *def[] = {"configs/bench-dense.json", "configs/bench-moe.json", "configs/bench-aoe.json"};
        for (int i = 0; i < 3; i++) cfgs[n_cfg++] = def[i];
    }
    for (int i = 0; i < n_cfg; i++) {  // check every config before spending minutes on the first
        Config c;
        config_defaults(&c);
        config_load_file(&c, cfgs[i]);
        model_validate_config(&c, cfgs[i]);
    }
    if (!json) {
        printf("%-26s %4s %3s %9s %8s %7s %6s %8s  phases (attn/expert/dispatch/elem/head/opt %%)\n", "config", "prec", "thr",
               "tok/s", "GFLOP/s", "ceiling", "ratio", "RSS MB");
    }
    for (int i = 0; i < n_cfg; i++)
        for (int t = 0; t < n_thr; t++)
            for (int q = 0; q < n_prec; q++) {  // precisions alternate, so machine load hits both alike
                BenchResult r;
                int rc = run_child(cfgs[i], thr[t], prec[q], steps, &r);
                if (rc) return rc;
                double ph = 0;
                for (int p = 0; p < PROF_N; p++) ph += r.phase_s[p];
                if (json) {
                    printf("{\"config\":\"%s\",\"threads\":%d,\"precision\":\"%s\",\"blis_arch\":\"%s\","
                           "\"matmul_impl\":\"%s\",\"tokens_per_s\":%.1f,\"gflops\":%.2f,"
                           "\"%s_ceiling_gflops\":%.2f,\"ratio\":%.4f,\"step_s\":%.5f,\"peak_rss_mb\":%.1f,"
                           "\"params\":%.0f,\"active_params\":%.0f,\"flops_per_token_fwd\":%.0f,\"phases_s\":{",
                           cfgs[i], r.threads, precision_name(r.prec), r.arch, r.impl, r.tok_s, r.gflops,
                           r.prec == PREC_BF16 ? "bf16" : "sgemm", r.ceiling, r.gflops / r.ceiling, r.step_s,
                           r.rss_mb, r.params, r.active, r.flops_tok);
                    for (int p = 0; p < PROF_N; p++) printf("%s\"%s\":%.5f", p ? "," : "", prof_name(p), r.phase_s[p]);
                    printf("}");
                    if (r.ranks > 1)
                        printf(",\"ranks\":%d,\"comm_s\":%.5f,\"allreduce_bytes\":%.0f,\"allreduce_formula_bytes\":%.0f,"
                               "\"alltoall_bytes\":%.0f,\"alltoall_uniform_formula_bytes\":%.0f", r.ranks, r.comm_s,
                               r.allreduce_b, r.ring_b, r.alltoall_b, r.a2a_b);
                    printf("}\n");
                } else {
                    printf("%-26s %4s %3d %9.0f %8.1f %7.1f %5.1f%% %8.0f  ", cfgs[i], precision_name(r.prec), r.threads,
                           r.tok_s, r.gflops, r.ceiling, 100 * r.gflops / r.ceiling, r.rss_mb);
                    for (int p = 0; p < PROF_N; p++) printf("%s%.0f", p ? "/" : "", ph > 0 ? 100 * r.phase_s[p] / ph : 0);
                    if (r.ranks > 1)
                        printf("  | %d ranks: MPI %.0f%% of the step, all-reduce %.2f MB (formula %.2f), all-to-all %.2f MB "
                               "(uniform formula %.2f)", r.ranks, 100 * r.comm_s / r.step_s, r.allreduce_b / 1e6,
                               r.ring_b / 1e6, r.alltoall_b / 1e6, r.a2a_b / 1e6);
                    printf("\n");
                }
                fflush(stdout);
            }
    return 0;
}

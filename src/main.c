// main.c — `aoe <command> [args]`: dispatch to the command table. Every command prints its own
// usage for --help; an unknown command prints the list on stderr and exits 2.
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dist/dist.h"

typedef struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
} Command;

// One line per command, in data-flow order.
static const Command commands[] = {
    {"prepare", "train a BPE tokenizer and encode text into zlib token shards", cmd_prepare},
    {"tokenize", "encode or decode a string with a tokenizer", cmd_tokenize},
    {"train", "train a dense / MoE / AoE decoder from a JSON config", cmd_train},
    {"stats", "summarise load-distribution statistics of a run, with plots", cmd_stats},
    {"report", "compare runs: table (seeds grouped), CSV and plots of loss, scores, load entropy", cmd_report},
    {"eval", "score checkpoints on perplexity and lm-eval-style benchmarks; comparison report", cmd_eval},
    {"analyze", "post-hoc analyses of a checkpoint: expert-router coupling (erc), expert clusters", cmd_analyze},
    {"sample", "generate text from a checkpoint (temperature, top-k, seed)", cmd_sample},
    {"inspect", "verify a checkpoint or shard and show its header, tables and statistics", cmd_inspect},
    {"export", "write a checkpoint's parameters as safetensors (for PyTorch: tools/aoe_torch.py)", cmd_export},
    {"bench", "time training steps against the sgemm ceiling measured in the same process", cmd_bench},
};
static const int n_commands = sizeof commands / sizeof commands[0];

static void usage(FILE *f) {
    fprintf(f, "usage: aoe <command> [args]   (aoe <command> --help for details)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

static int run(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    // Only train and bench split their work over MPI ranks; N copies of another command would
    // write the same files.
    if (dist_size() > 1 && strcmp(argv[1], "train") && strcmp(argv[1], "bench")) {
        if (!dist_rank()) fprintf(stderr, "aoe %s: runs on one process; start it without mpirun (only train and bench "
                                  "use several ranks)\n", argv[1]);
        return 2;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "aoe: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

// MPI starts only under mpirun (dist.h); the command runs the same either way.
int main(int argc, char **argv) {
    // Over a file-size limit (ulimit -f) writes fail with EFBIG, which every writer reports like a
    // full disk (temp file removed, message, exit 1), instead of SIGXFSZ killing the process.
    signal(SIGXFSZ, SIG_IGN);
    dist_init(&argc, &argv);
    int rc = run(argc, argv);
    dist_finalize();
    return rc;
}

// train.c — `aoe train CONFIG.json [key.path=value ...]`: resolve the config, open the shards,
// build the model, run optimizer steps with warmup+cosine, log progress, metrics.jsonl and
// load.jsonl, evaluate on validation shards. All inputs are checked before anything is written.
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config/config.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "dist/dist.h"
#include "model/kernels.h"
#include "model/moe_ep.h"
#include "model/model.h"
#include "train/dp.h"
#include "train/optim.h"
#include "train/run.h"
#include "train/train.h"
#include "util/common.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe train CONFIG.json [key.path=value ...] [--dry-run]\n"
            "       aoe train --resume RUN_DIR [key.path=value ...]\n\n"
            "Trains a decoder LM (dense, MoE or AoE feed-forward) on token shards.\n"
            "  CONFIG.json        JSON config; every key and default is in docs/config.md\n"
            "  key.path=value     override one key, e.g. model.ffn.d_low=128 train.seed=2\n"
            "  --dry-run          print the resolved config as JSON and (on stderr) the memory estimate, exit\n"
            "  --resume RUN_DIR   continue from RUN_DIR's latest checkpoint with RUN_DIR/config.json;\n"
            "                     overrides only for train.steps, log/eval/ckpt intervals, keep_ckpts,\n"
            "                     threads, run.ckpt_compress, data.val, train.skip_nonfinite\n"
            "  --keys             print every config key (type, default, range, meaning) as Markdown\n"
            "  -h, --help         this help\n\n"
            "Writes <run.out>/config.json, metrics.jsonl (one JSON object per log interval),\n"
            "load.jsonl (expert load statistics of sparse layers), ckpt-<step>.aoec every\n"
            "train.ckpt_every steps and at the end (the newest train.keep_ckpts are kept; `latest`\n"
            "names the newest) and a copy of the tokenizer; paths in config.json are absolute.\n"
            "SIGINT/SIGTERM: finish the step, save a checkpoint, exit 75; more signals within 3 s are\n"
            "the same request (Ctrl-C plus a wrapper's SIGTERM), a later one stops at once.\n"
            "One aoe train per run directory (lock file <run.out>/lock). A NaN/inf loss or gradient\n"
            "norm stops training unsaved (exit 1) unless train.skip_nonfinite=true. A run whose\n"
            "memory estimate exceeds MemAvailable / the cgroup limit stops before allocating (exit 2).\n"
            "Threads: train.threads, else OMP_NUM_THREADS, else all cores.\n");
}

// Parses argv into a validated config. Returns 0, or exits 2 with a clear message.
void train_parse_args(int argc, char **argv, Config *c, int *dry_run, const char **resume) {
    const char *file = NULL;
    *dry_run = 0;
    if (resume) *resume = NULL;
    config_defaults(c);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run")) *dry_run = 1;
        else if (resume && !strcmp(argv[i], "--resume")) {
            if (i + 1 >= argc) die_input("--resume needs a run directory");
            *resume = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "aoe train: unknown option '%s'\n", argv[i]);
            usage(stderr);
            exit(2);
        } else if (strchr(argv[i], '=')) {
            if (!file && !(resume && *resume)) die_input("train: the config file must come before overrides ('%s')", argv[i]);
        } else if (!file) {
            file = argv[i];
        } else {
            fprintf(stderr, "aoe train: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            exit(2);
        }
    }
    if (!file && !(resume && *resume)) { usage(stderr); exit(2); }
    if (file) config_load_file(c, file);
    for (int i = 0; i < argc; i++)
        if (argv[i][0] != '-' && strchr(argv[i], '=') && !(i > 0 && !strcmp(argv[i - 1], "--resume")))
            config_set(c, argv[i], "command line");
    model_validate_config(c, file ? file : "command line");
    optim_for_config(c, file ? file : "command line");
}

// Batches of a validation pass: train.eval_batches, at most the data holds (each rank scores
// B/N sequences of every batch).
static int val_batches(const Config *c, const Loader *val) {
    uint64_t avail = loader_n_windows(val) / (c->batch_size / dist_size());
    return avail > 0 && (uint64_t)c->eval_batches > avail ? (int)avail : c->eval_batches;
}

// Mean validation loss over cfg.eval_batches batches from the start of the validation shards.
double evaluate(Model *m, Loader *val, int32_t *x, int32_t *y) {
    const Config *c = &m->cfg;
    LoaderPos start = {.epoch = 0, .cursor = 0, .seed = c->seed};
    loader_set_pos(val, &start);
    DistStats comm;  // the per-step communication counters cover training steps only
    dist_stats(&comm);
    double sum = 0;
    int n = val_batches(c, val), B = c->batch_size / dist_size();
    for (int i = 0; i < n; i++) {
        loader_next(val, x, y);
        sum += model_forward(m, x, y, B, c->seq_len, NULL, 0, NULL);
    }
    dist_sum_d(&sum, 1);  // under MPI every rank scored B/N sequences of each batch
    dist_stats_restore(&comm);
    return n ? sum / n / dist_size() : NAN;
}

// ,"key":value with fmt, or null when v is NaN or infinite (JSON has no such numbers).
static void jnum(FILE *f, const char *key, const char *fmt, double v) {
    fprintf(f, ",\"%s\":", key);
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);
}

static FILE *open_append(const char *dir, const char *name) {
    char path[CFG_STR + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "a");
    if (!f) die("%s: cannot open for writing: %s", path, strerror(errno));
    return f;
}

int cmd_train(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    if (argc == 1 && !strcmp(argv[0], "--keys")) { config_print_doc(); return 0; }
    Config c;
    int dry;
    const char *resume = NULL;
    train_parse_args(argc, argv, &c, &dry, &resume);
    if (resume) run_resume_config(argc, argv, resume, &c);
    run_absolute_paths(&c);  // config.json names files that exist from any directory
    if (!resume && c.init_from[0]) {  // record the checkpoint file itself, not a run directory
        char *p = is_directory(c.init_from) ? ckpt_latest(c.init_from) : file_exists(c.init_from) ? xstrdup(c.init_from) : NULL;
        if (!p) die_input("train.init_from: %s: %s", c.init_from, is_directory(c.init_from) ? "no complete checkpoint in this run directory" : "no such checkpoint");
        snprintf(c.init_from, CFG_STR, "%s", p);
        free(p);
    }
    // config.json (and --dry-run) record the precision chosen, not "auto"
    int prec = precision_parse(c.precision);  // the config check allows auto|fp32|bf16 only
    snprintf(c.precision, sizeof c.precision, "%s", precision_name(prec));
    if (dry) {
        char *js = config_to_json(&c);
        printf("%s\n", js);
        free(js);
        fflush(stdout);
        int V = c.vocab_size;
        if (!V && file_exists(c.tokenizer)) {
            Tokenizer *t = tok_load(c.tokenizer);
            V = tok_vocab_size(t);
            tok_free(t);
        }
        if (V) {
            double tot, act, fl;
            model_count(&c, V, &tot, &act, &fl);
            fprintf(stderr, "parameters: %.0f total (%.2fM), %.0f active per token (%.2fM), vocab %d\n", tot, tot / 1e6,
                    act, act / 1e6, V);
            // one rank's share: of the mpirun ranks, or without mpirun of a run on E ranks
            int ranks = dist_size() > 1 ? dist_size() : c.expert_parallel;
            if (!dist_rank()) train_mem_check(&c, V, ranks, 1, 1);
        } else {
            fprintf(stderr, "parameters and memory estimate: need the vocabulary size (model.vocab_size, or the "
                    "tokenizer %s)\n", c.tokenizer);
        }
        return 0;
    }
    const char *arch = kernels_init(c.threads);
    kernels_set_precision(prec);  // stops here if oneDNN cannot do bf16 on this CPU at all
    if (prec == PREC_BF16 && !kernels_cpu_has_bf16())
        warnf("train.precision bf16: this CPU has no native bf16 dot products (AVX512_BF16/AMX-BF16); "
              "oneDNN emulates them, slowly");
    int R = dist_rank(), N = dist_size(), B = dp_setup(&c);  // B: this rank's share of the batch

    // Inputs first: nothing is written until the tokenizer and shards check out.
    // A resumed run that was moved to another machine may find its tokenizer only in its own copy.
    char *tok_copy = path_join(c.out, RUN_TOKENIZER);
    Tokenizer *tok = tok_load(resume && !file_exists(c.tokenizer) && file_exists(tok_copy) ? tok_copy : c.tokenizer);
    int V = tok_vocab_size(tok);
    if (c.vocab_size && c.vocab_size != V)
        die_input("model.vocab_size (%d) does not match tokenizer %s (vocab %d)", c.vocab_size, c.tokenizer, V);
    Loader *tr = loader_open(c.train_path, c.seq_len, B, c.seed, 1, R, N);
    Loader *val = c.val_path[0] ? loader_open(c.val_path, c.seq_len, B, c.seed, 0, R, N) : NULL;
    Loader *lds[2] = {tr, val};
    const char *specs[2] = {c.train_path, c.val_path};
    for (int i = 0; i < 2; i++) {
        if (!lds[i]) continue;
        if (loader_vocab(lds[i]) != V)
            die_input("%s: shards have vocabulary size %d, the tokenizer %s has %d; re-run `aoe prepare` with it "
                      "or set data.tokenizer to the one the shards were made with", specs[i], loader_vocab(lds[i]),
                      c.tokenizer, V);
        if (loader_tok_hash(lds[i]) != tok_hash(tok))
            die_input("%s: shards were encoded with tokenizer hash %016llx, %s hashes to %016llx (same vocabulary "
                      "size %d, different merges); re-run `aoe prepare` with it or set data.tokenizer to the one the "
                      "shards were made with", specs[i], (unsigned long long)loader_tok_hash(lds[i]), c.tokenizer,
                      (unsigned long long)tok_hash(tok), V);
        if (loader_n_windows(lds[i]) < (uint64_t)B)
            die_input("%s: too few tokens for one batch of %d x %d", specs[i], c.batch_size, c.seq_len + 1);
    }
    // Bytes per target token of exactly the windows a validation pass scores: each val_loss is
    // logged with its bits per byte, so `aoe report` never reopens shards or the tokenizer.
    double val_bpt = val ? loader_bytes_per_token(val, tok, (uint64_t)val_batches(&c, val) * c.batch_size) : NAN;
    train_mem_check(&c, V, N, dist_local_size(), 0);  // before anything big is allocated or anything is written
    // rank 0 alone writes the run directory (every rank reads it: shared or identical paths)
    if (!R && mkdir_p(c.out)) die("%s: cannot create run directory: %s", c.out, strerror(errno));
    if (!R) run_lock(c.out);  // before looking at checkpoints: another live writer is named first
    char *ckpt_from = resume ? ckpt_latest(resume) : NULL;
    if (resume && !ckpt_from) die_input("%s: no checkpoint to resume from (no `latest` pointer or ckpt-<step>.aoec)", resume);
    if (!resume && (ckpt_from = ckpt_latest(c.out)))
        die_input("%s: this run directory already holds checkpoints (%s); continue it with --resume %s or choose "
                  "another run.out", c.out, ckpt_from, c.out);
    if (!R && (!resume || !file_exists(tok_copy))) run_copy_tokenizer(c.out, c.tokenizer);
    free(tok_copy);
    char path[CFG_STR + 64];
    char *js = config_to_json(&c);
    snprintf(path, sizeof path, "%s/config.json", c.out);
    if (!resume && !R) {
        write_file_atomic(path, js, strlen(js));  // a resume rewrites it once the checkpoint loaded
        run_trim_logs(c.out, 0);  // logs of an earlier attempt that never checkpointed start over
    }

    Model *m = model_create(&c, V, B, c.seed);
    dp_bind(&m->P);
    double tot, act, fl;
    model_count(&c, V, &tot, &act, &fl);
    printf("aoe train: BLIS kernels %s, %d threads, precision %s (%s)\n", arch, kernels_threads(), c.precision,
           prec == PREC_BF16 ? "oneDNN bf16 products, fp32 accumulation and master weights" : "BLIS sgemm");
    printf("model: %s ffn, %d layers, d_model %d, vocab %d: %.2fM parameters (%.2fM active per token), "
           "%.1f MFLOPs/token forward (%.1f train)\n",
           c.ffn.type, c.n_layer, c.d_model, V, tot / 1e6, act / 1e6, fl / 1e6, 3 * fl / 1e6);
    if (dist_mpi()) {
        printf("MPI: %d ranks x %d threads, %d of the %d sequences per micro-batch on each rank, expert parallel %d "
               "(each rank holds %d of %d experts per sparse layer: %zu of the %zu parameter floats)", N,
               kernels_threads(), B, c.batch_size, c.expert_parallel, c.ffn.n_experts / c.expert_parallel,
               c.ffn.n_experts, m->P.total, m->P.gtotal);
        if (dp_optim_share()) printf("; optimizer step split over the ranks, %zu floats on rank 0", dp_optim_share());
        printf("\n");
    }
    fflush(stdout);
    if (!R) {  // model.json: what `aoe report` shows of the model without opening the tokenizer or a checkpoint
        char mj[256], mp[CFG_STR + 64];
        int n = snprintf(mj, sizeof mj, "{\"vocab_size\": %d, \"params_total\": %.0f, \"params_active\": %.0f, "
                         "\"flops_per_token\": %.0f}\n", V, tot, act, fl);
        snprintf(mp, sizeof mp, "%s/model.json", c.out);
        write_file_atomic(mp, mj, (size_t)n);
    }

    Optim opt;
    optim_init(&opt, optim_ops_for(c.optimizer), &m->P);
    Rng rng;
    rng_seed(&rng, c.seed ^ 0x5eedULL);
    TrainMeta meta = {0};
    if (resume) {  // parameters, moments, step, RNG, loader position and the open log interval
        run_ckpt_load(ckpt_from, m, &opt, &meta);
        if (meta.tok_hash != tok_hash(tok))
            die_input("%s: written with a different tokenizer than %s (hash %016llx vs %016llx)", ckpt_from, c.tokenizer,
                      (unsigned long long)meta.tok_hash, (unsigned long long)tok_hash(tok));
        loader_set_pos(tr, &meta.pos);
        rng = meta.rng;
        if (!R) {
            write_file_atomic(path, js, strlen(js));  // records the overrides of this resume
            run_clean_tmp(c.out);
            run_trim_logs(c.out, meta.step);
        }
        printf("resumed from %s at step %ld\n", ckpt_from, meta.step);
        if (meta.ranks != N)  // same global batch and data order; sums in another order
            printf("resuming on %d MPI rank%s; the checkpoint was written by %d (same global batch of %d, each rank "
                   "now takes %d sequences)\n", N, N > 1 ? "s" : "", meta.ranks, c.batch_size, B);
        if (meta.step >= c.steps) {
            printf("done: the run already has %ld of %d steps\n", meta.step, c.steps);
            return 0;
        }
    }
    free(ckpt_from);
    free(js);
    if (!resume && c.init_from[0]) run_init_from(&c, m, &opt, tok_hash(tok));
    run_install_stop_handlers();
    char hint[2 * CFG_STR + 128];
    snprintf(hint, sizeof hint, "Continue from the last complete checkpoint in %s with: mpirun ... aoe train --resume %s",
             c.out, c.out);
    dist_watch_stop(run_stop_requested, hint);  // names a dead peer instead of hanging silently
    int T = B * c.seq_len;  // this rank's tokens per micro-batch
    int32_t *x = xmalloc(sizeof(int32_t) * T), *y = xmalloc(sizeof(int32_t) * T);
    FILE *metrics = R ? NULL : open_append(c.out, "metrics.jsonl"), *load = R ? NULL : open_append(c.out, "load.jsonl");
    dist_stats_reset();
    DistStats comm0 = {0};
    double t_start = now_sec();
    double t0 = now_sec() - meta.elapsed, t_log = now_sec(), loss_acc = meta.loss_acc, aux_acc = meta.aux_acc;
    long steps_run = 0, tok_log = meta.tok_log, n_acc = meta.n_acc, skipped = meta.skipped;
    int stopped = 0;
    for (long step = meta.step; step < c.steps; step++) {
        params_zero_grad(&m->P);
        model_set_progress(m, c.steps > 1 ? (float)step / (c.steps - 1) : 0.0f);  // schedules (ETR capacity)
        double loss = 0, aux = 0;
        for (int a = 0; a < c.grad_accum; a++) {
            loader_next(tr, x, y);
            loss += model_forward(m, x, y, B, c.seq_len, NULL, 1, &rng) / c.grad_accum;
            aux += m->aux / c.grad_accum;
            dp_overlap_next_backward(m, c.overlap_grads && a == c.grad_accum - 1);  // train.overlap_grads
            model_backward(m, y, 1.0f / c.grad_accum / N);  // the ranks' gradients are summed
        }
        dp_sum_grads(&m->P);
        steps_run++;
        dp_step_stats(&loss, &aux);  // the same loss and aux on every rank
        float lr = lr_at(&c, step);
        run_test_nan_hook(step + 1, &m->P);
        double gn = dp_grad_norm(&m->P);
        if (isfinite(loss) && isfinite(gn)) {
            dp_optim_step(&opt, &m->P, &c, lr, clip_scale(gn, c.grad_clip));
            loss_acc += loss; aux_acc += aux; n_acc++;
        } else if (c.skip_nonfinite) {
            skipped++;  // no update: the weights and optimizer state stay those of the step before
        } else {
            char *l = ckpt_latest(c.out);
            die("step %ld: non-finite %s (loss %g, gradient norm %g): training stopped without updating or saving; "
                "%s%s (lower train.lr, or resume with train.skip_nonfinite=true to skip such steps)", step + 1,
                isfinite(loss) ? "gradient norm" : "loss", loss, gn, l ? "latest still names " : "no checkpoint was written",
                l ? l : "");
        }
        if (dp_kill_hook_applies()) run_test_kill_hook(step + 1);
        run_test_pause_hook(step + 1);
        tok_log += (long)T * N * c.grad_accum;
        int last = step + 1 == c.steps;
        double vloss = NAN;
        if (val && ((c.eval_every && (step + 1) % c.eval_every == 0) || last)) vloss = evaluate(m, val, x, y);
        if ((step + 1) % c.log_every == 0 || last || !isnan(vloss)) {
            double now = now_sec(), tps = tok_log / (now - t_log);
            double eta = (c.steps - step - 1) * (now - t0) / (step + 1);
            DistStats cs;  // communication since the last line (global tokens/s above)
            dist_stats(&cs);
            double comm_s = cs.sec - comm0.sec, comm_b = cs.allreduce_bytes + cs.alltoall_bytes + cs.gather_bytes -
                                                         comm0.allreduce_bytes - comm0.alltoall_bytes - comm0.gather_bytes;
            comm0 = cs;
            printf("step %5ld/%d | loss %.4f | aux %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %.0fs",
                   step + 1, c.steps, loss_acc / n_acc, aux_acc / n_acc, lr, gn, tps, eta);
            if (N > 1) printf(" | comm %.0f%% %.1f MB/step", 100 * comm_s / (now - t_log), comm_b / 1e6 / n_acc);
            if (!isnan(vloss)) printf(" | val %.4f", vloss);
            printf("\n");
            fflush(stdout);
            if (metrics) {  // rank 0
                fprintf(metrics, "{\"step\":%ld", step + 1);  // numbers: null when not finite (valid JSON)
                jnum(metrics, "loss", "%.6f", loss_acc / n_acc); jnum(metrics, "aux_loss", "%.6g", aux_acc / n_acc);
                jnum(metrics, "lr", "%.6g", lr); jnum(metrics, "grad_norm", "%.6g", gn);
                fprintf(metrics, ",\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,\"tokens\":%ld,\"elapsed_s\":%.3f", tps,
                        peak_rss_kb() / 1024.0, (step + 1) * (long)T * N * c.grad_accum, now - t0);
                if (N > 1) fprintf(metrics, ",\"ranks\":%d,\"comm_s\":%.4f,\"comm_bytes_per_step\":%.0f", N, comm_s,
                                   comm_b / n_acc);
                if (c.skip_nonfinite) fprintf(metrics, ",\"skipped_nonfinite\":%ld", skipped);
                if (!isnan(vloss)) jnum(metrics, "val_loss", "%.6f", vloss);
                if (!isnan(vloss) && !isnan(val_bpt)) jnum(metrics, "val_bpb", "%.6f", vloss / log(2.0) / val_bpt);
                fprintf(metrics, ",\"precision\":\"%s\"}\n", c.precision);
                if (fflush(metrics) || ferror(metrics))
                    die("%s/metrics.jsonl: write failed: %s; training stopped at step %ld (continue with: aoe train --resume %s)",
                        c.out, strerror(errno), step + 1, c.out);
            }
            model_write_stats(m, load, step + 1);  // collective: counts summed over ranks
            if (load) fflush(load);
            loss_acc = aux_acc = 0; n_acc = 0; tok_log = 0; t_log = now;
        }
        int stop = dp_stop_agree(run_stop_requested());  // every rank stops after the same step
        if ((c.ckpt_every && (step + 1) % c.ckpt_every == 0) || last || stop) {
            meta = (TrainMeta){.step = step + 1, .rng = rng, .tok_hash = tok_hash(tok), .loss_acc = loss_acc,
                               .aux_acc = aux_acc, .n_acc = n_acc, .tok_log = tok_log, .elapsed = now_sec() - t0,
                               .skipped = skipped, .ranks = N};
            loader_get_pos(tr, &meta.pos);
            // `latest` never names non-finite weights (each rank checks what it holds)
            const char *bad = run_nonfinite_param(&m->P);
            if (bad) die("step %ld: parameters of %s are not finite: not saved, training stopped; the last checkpoint is "
                         "intact (lower train.lr)", step + 1, bad);
            char err[CFG_STR + 256];
            dp_optim_gather(&opt);  // a split optimizer step: rank 0 collects the whole state
            if (!R && run_save(c.out, m, &opt, &meta, c.ckpt_compress, c.keep_ckpts, err, sizeof err))
                die("%s; training stopped at step %ld (continue with: aoe train --resume %s)", err, step + 1, c.out);
            if (R) dp_ckpt_send(&m->P, &opt);  // expert parallelism: rank 0's group sends its experts
        }
        if (stop && !last) {
            printf("stopped by %s after step %ld: saved %s/ckpt-%ld.aoec (continue with: aoe train --resume %s); "
                   "exit status %d\n", stop == SIGINT ? "SIGINT" : "SIGTERM", step + 1, c.out, step + 1, c.out,
                   EXIT_STOPPED);
            stopped = 1;
            break;
        }
    }
    if (!stopped)
        printf("done: %d steps in %.1fs, peak RSS %.0f MB\n", c.steps, now_sec() - t0, peak_rss_kb() / 1024.0);
    dp_report_comm(&c, m->P.total, T, steps_run, now_sec() - t_start);
    if (metrics) fclose(metrics);
    if (load) fclose(load);
    free(x); free(y);
    optim_free(&opt);
    model_free(m);
    loader_close(tr);
    if (val) loader_close(val);
    tok_free(tok);
    return stopped ? EXIT_STOPPED : 0;
}

// test_ckpt.c — checkpoints: bit-exact save/load round trip (raw and zlib), every corruption case
// (truncation, bit flips, wrong magic / version, mismatched config) rejected with exit 2 and a
// message naming the file and byte offset, injected write failures that leave the previous
// checkpoint intact, SIGKILL at several points + --resume giving the same final parameters as an
// uninterrupted run, SIGTERM stopping cleanly, and `aoe inspect` on checkpoints and shards.
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_format.h"
#include "test.h"
#include "test_runs.h"
#include "train/run.h"
#include "util/common.h"

// ---------------------------------------------------------------- helpers
static Model *tiny_model(Config *c, uint64_t seed) {
    config_defaults(c);
    config_set(c, "model.d_model=16", "t");
    config_set(c, "model.n_layer=2", "t");
    config_set(c, "model.n_head=2", "t");
    config_set(c, "model.seq_len=8", "t");
    config_set(c, "model.ffn.d_ff=24", "t");
    config_set(c, "model.tie_embeddings=false", "t");
    return model_create(c, 300, 1, seed);
}

static void fill(float *p, size_t n, Rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = rng_normal(r);
}

// Saves a checkpoint of a random model/optimizer state; returns the model and state used.
static Model *make_ckpt(const char *path, int compress, Optim *opt, TrainMeta *mt) {
    Config c;
    Model *m = tiny_model(&c, 7);
    optim_init(opt, optim_ops_for("adamw"), &m->P);
    Rng r;
    rng_seed(&r, 99);
    fill(m->P.w, m->P.total, &r); fill(opt->s[0], m->P.total, &r); fill(opt->s[1], m->P.total, &r);
    opt->t = 123;
    memset(mt, 0, sizeof *mt);
    mt->step = 123;
    rng_seed(&mt->rng, 5);
    mt->pos = (LoaderPos){.epoch = 3, .cursor = 77, .seed = 11, .n_windows = 1000};
    mt->tok_hash = 0x1234567890abcdefULL;
    mt->loss_acc = 1.25; mt->aux_acc = 0.5; mt->elapsed = 3.5; mt->n_acc = 2; mt->tok_log = 64;
    char err[512];
    int rc = run_ckpt_save(path, m, opt, mt, compress, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    return m;
}

// ---------------------------------------------------------------- round trip
static void roundtrip(int compress) {
    Optim o1, o2;
    TrainMeta m1, m2;
    const char *path = rt_tmp_path(compress ? "rt-z.aoec" : "rt.aoec");
    Model *a = make_ckpt(path, compress, &o1, &m1);
    Config c;
    Model *b = tiny_model(&c, 8);  // different init, overwritten by the load
    optim_init(&o2, optim_ops_for("adamw"), &b->P);
    run_ckpt_load(path, b, &o2, &m2);
    size_t bytes = a->P.total * sizeof(float);
    CHECK(!memcmp(a->P.w, b->P.w, bytes));
    CHECK(!memcmp(o1.s[0], o2.s[0], bytes));
    CHECK(!memcmp(o1.s[1], o2.s[1], bytes));
    CHECK_EQ_INT(o2.t, 123);
    CHECK_EQ_INT(m2.step, 123);
    CHECK(!memcmp(&m1.rng, &m2.rng, sizeof(Rng)));
    CHECK(!memcmp(&m1.pos, &m2.pos, sizeof(LoaderPos)));
    CHECK(m2.tok_hash == m1.tok_hash);
    CHECK(m2.loss_acc == 1.25 && m2.aux_acc == 0.5 && m2.elapsed == 3.5 && m2.n_acc == 2 && m2.tok_log == 64);
    CkptMeta m3;
    Model *e = ckpt_load_model(path, 2, &m3);  // inference load: config from the file
    CHECK_EQ_INT(e->V, 300);
    CHECK_EQ_INT(e->cfg.d_model, 16);
    CHECK(!memcmp(a->P.w, e->P.w, bytes));
    CHECK_EQ_INT(ckpt_meta_i64(&m3, "step", 0, 1000), 123);
    model_free(e);
    optim_free(&o1); optim_free(&o2);
    model_free(a); model_free(b);
}

TEST(ckpt_roundtrip_raw) { roundtrip(0); }
TEST(ckpt_roundtrip_zlib) { roundtrip(1); }

// ---------------------------------------------------------------- corruption
// `aoe inspect` on a damaged copy: exit 2, one line naming the file, the byte offset and `want`.
static void expect_bad(const char *name, const char *img, size_t n, const char *want) {
    const char *p = rt_tmp_path(name);
    rt_spit(p, img, n);
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), p);
    int rc = rt_sh(cmd, &out, &err);
    CHECK_EQ_INT(rc, 2);
    CHECK_STR_CONTAINS(err, p);
    CHECK_STR_CONTAINS(err, "byte ");
    CHECK_STR_CONTAINS(err, want);
    if (rc != 2 || !strstr(err, want)) fprintf(stderr, "  (%s) stderr: %s\n", name, err);
    free(out); free(err);
}

static void corruption(int compress) {
    Optim o;
    TrainMeta mt;
    const char *path = rt_tmp_path(compress ? "c-z.aoec" : "c.aoec");
    Model *m = make_ckpt(path, compress, &o, &mt);
    size_t n;
    char *img = rt_slurp(path, &n), *bad = malloc(n);
    REQUIRE(img && n > 4096);
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), path);
    CHECK_EQ_INT(rt_sh(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "layers.1.ffn.w_out");
    CHECK_STR_CONTAINS(out, ": ok");
    free(out); free(err);

    expect_bad("trunc.aoec", img, n - 1000, "truncated");
    expect_bad("trunc-hdr.aoec", img, 60, "truncated inside the header");
    memcpy(bad, img, n); bad[0] = 'X';
    expect_bad("magic.aoec", bad, n, "bad magic");
    memcpy(bad, img, n); bad[8] = 3;
    expect_bad("version.aoec", bad, n, "unsupported checkpoint version 3 (this aoe reads versions 1 and 2)");
    memcpy(bad, img, n); bad[20] ^= 1;  // file_size field: caught by the header CRC
    expect_bad("hdr.aoec", bad, n, "CRC mismatch in header");
    memcpy(bad, img, n); bad[CKPT_HEADER_BYTES + 20] ^= 4;
    expect_bad("cfg.aoec", bad, n, "CRC mismatch in config section");
    memcpy(bad, img, n); bad[n - 100] ^= 0x10;  // payload bit flip
    expect_bad("flip.aoec", bad, n, "CRC mismatch in");
    if (!compress) {  // a flip in a known tensor is reported at its own offset
        const TensorInfo *t = params_find(&m->P, "layers.0.attn.wq");
        uint64_t p0 = n - (uint64_t)3 * m->P.total * 4, at = p0 + t->off * 4 + 8;
        memcpy(bad, img, n); bad[at] ^= 0x20;
        char want[128];
        snprintf(want, sizeof want, "byte %llu: CRC mismatch in tensor layers.0.attn.wq (expected 0x",
                 (unsigned long long)(p0 + t->off * 4));
        expect_bad("flip-wq.aoec", bad, n, want);
    }
    free(img); free(bad);
    optim_free(&o);
    model_free(m);
}

TEST(ckpt_corrupt_raw) { corruption(0); }
TEST(ckpt_corrupt_zlib) { corruption(1); }

TEST(ckpt_inspect_unknown_file) {
    const char *p = rt_tmp_path("junk.bin");
    rt_spit(p, "hello world, not a checkpoint", 29);
    char cmd[1024], *err;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), p);
    CHECK_EQ_INT(rt_sh(cmd, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "unknown file type");
    free(err);
}

// ---------------------------------------------------------------- CLI: data and runs
// Payload (parameters and moments) of a checkpoint: the tail after the header and sections.
static int same_payload(const char *a, const char *b) {
    CkptFile fa, fb;
    ckpt_file_open(&fa, a);
    ckpt_file_open(&fb, b);
    size_t na, nb;
    char *ia = rt_slurp(a, &na), *ib = rt_slurp(b, &nb);
    int same = fa.h.len[SEC_PAYLOAD] == fb.h.len[SEC_PAYLOAD] && fa.meta.n == fb.meta.n &&
               !memcmp(ia + fa.h.off[SEC_PAYLOAD], ib + fb.h.off[SEC_PAYLOAD], fa.h.len[SEC_PAYLOAD]);
    for (int i = 0; same && i < fa.meta.n; i++)  // every meta entry but the wall-clock time
        same = !strcmp(fa.meta.it[i].name, fb.meta.it[i].name) &&
               (!strcmp(fa.meta.it[i].name, "elapsed") || fa.meta.it[i].bits == fb.meta.it[i].bits);
    free(ia); free(ib);
    ckpt_file_close(&fa); ckpt_file_close(&fb);
    return same;
}

// metrics.jsonl without the timing and memory fields (tokens_per_s, peak_rss_mb, elapsed_s).
static char *losses(const char *run) {
    size_t n;
    char *t = rt_slurp(rt_tmp_path(run), &n), *o = calloc(n + 1, 1);
    if (!t) return o;
    size_t k = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        char *tp = strstr(line, ",\"tokens_per_s\"");
        char *tk = strstr(line, ",\"tokens\":"), *el = strstr(line, ",\"elapsed_s\"");
        if (tp && tk && el) {
            char *after = strchr(el + 1, ',');
            k += sprintf(o + k, "%.*s%.*s%s\n", (int)(tp - line), line, (int)(el - tk), tk, after ? after : "}");
        } else k += sprintf(o + k, "%s\n", line);
    }
    free(t);
    return o;
}

TEST(ckpt_kill_resume_identical) {
    REQUIRE(rt_fresh_run("ref", NULL) == 0);
    char args[1200], *out, *err;
    snprintf(args, sizeof args, "%s run.out=kill", rt_config_file());
    // Killed after steps 7 (mid interval), 13, 20 (a checkpoint step, before its save), then in
    // the middle of writing the step-25 checkpoint; each time resumed until the run completes.
    CHECK_EQ_INT(rt_train("AOE_TEST_KILL_AT_STEP=7", args, NULL, NULL), 128 + SIGKILL);
    CHECK_EQ_INT(rt_train("AOE_TEST_KILL_AT_STEP=13", "--resume kill", NULL, NULL), 128 + SIGKILL);
    CHECK_EQ_INT(rt_train("AOE_TEST_KILL_AT_STEP=20", "--resume kill", NULL, NULL), 128 + SIGKILL);
    CHECK_EQ_INT(rt_train("AOE_TEST_KILL_AT_STEP=24", "--resume kill", NULL, NULL), 128 + SIGKILL);
    char *l = ckpt_latest(rt_tmp_path("kill"));
    CHECK_STR_CONTAINS(l, "ckpt-20.aoec");
    free(l);
    CHECK_EQ_INT(rt_train("AOE_TEST_KILL_IN_WRITE=5000", "--resume kill", NULL, NULL), 128 + SIGKILL);  // writing ckpt-25
    l = ckpt_latest(rt_tmp_path("kill"));
    CHECK_STR_CONTAINS(l, "ckpt-20.aoec");
    free(l);
    int rc = rt_train(NULL, "--resume kill", &out, &err);
    CHECK_EQ_INT(rc, 0);
    CHECK_STR_CONTAINS(out, "resumed from");
    if (rc) fprintf(stderr, "  %s\n", err);
    free(out); free(err);
    CHECK(same_payload(rt_rel("ref", "ckpt-30.aoec"), rt_rel("kill", "ckpt-30.aoec")));
    char *a = losses("ref/metrics.jsonl"), *b = losses("kill/metrics.jsonl");
    CHECK(strlen(a) > 100);
    CHECK(!strcmp(a, b));
    if (strcmp(a, b)) fprintf(stderr, "  metrics differ:\n%s---\n%s", a, b);
    free(a); free(b);
    CHECK(!file_exists(rt_rel("kill", "ckpt-20.aoec")));  // keep_ckpts = 2
    CHECK(file_exists(rt_rel("kill", "ckpt-25.aoec")));
    // A finished run resumes to "done" without touching anything.
    CHECK_EQ_INT(rt_train(NULL, "--resume kill", &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "already has 30 of 30 steps");
    free(out);
}

// The same for sparse layers (router MoE with balancing + z-loss, AoE): selection, gates and
// auxiliary losses must resume exactly too. Killed mid-interval, resumed once.
static void sparse_resume(const char *type, const char *ffn) {
    char ref[64], kill[64], args[1400];
    snprintf(ref, sizeof ref, "ref-%s", type);
    snprintf(kill, sizeof kill, "kill-%s", type);
    REQUIRE(rt_fresh_run(ref, ffn) == 0);
    snprintf(args, sizeof args, "%s run.out=%s %s", rt_config_file(), kill, ffn);
    CHECK_EQ_INT(rt_train("AOE_TEST_KILL_AT_STEP=13", args, NULL, NULL), 128 + SIGKILL);
    snprintf(args, sizeof args, "--resume %s", kill);
    CHECK_EQ_INT(rt_train(NULL, args, NULL, NULL), 0);
    CHECK(same_payload(rt_rel(ref, "ckpt-30.aoec"), rt_rel(kill, "ckpt-30.aoec")));
    char pa[128], pb[128];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", ref);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", kill);
    char *a = losses(pa), *b = losses(pb);
    CHECK(strlen(a) > 100 && !strcmp(a, b));
    free(a); free(b);
}
// A second optimizer (SGD with momentum: one file, src/train/sgd.c, and one table line) is saved
// and resumed bit-identically like AdamW; its checkpoint names its one state array, and a resume
// with another optimizer is refused by name.
TEST(ckpt_kill_resume_identical_sgd) {
    sparse_resume("sgd", "train.optimizer=sgd train.lr=0.05 train.beta1=0.9");
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), rt_rel("kill-sgd", "ckpt-30.aoec"));
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "arrays (2, each");
    CHECK_STR_CONTAINS(out, " params sgd.momentum");
    free(out);
    // the run's config edited to another optimizer: the checkpoint's config says sgd
    size_t n;
    char *js = rt_slurp(rt_rel("kill-sgd", "config.json"), &n), *p = strstr(js, "\"sgd\"");
    REQUIRE(p);
    char *js2 = malloc(n + 8);
    int k = snprintf(js2, n + 8, "%.*s\"adamw\"%s", (int)(p - js), js, p + 5);
    rt_spit(rt_rel("kill-sgd", "config.json"), js2, k);
    CHECK_EQ_INT(rt_train(NULL, "--resume kill-sgd train.steps=40", NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "config mismatch: train.optimizer is \"sgd\" in the checkpoint but \"adamw\"");
    free(err); free(js); free(js2);
    snprintf(cmd, sizeof cmd, "%s train x.json train.optimizer=lion", aoe_bin());
    CHECK_EQ_INT(rt_sh(cmd, NULL, &err), 2);
    free(err);
    char args[1200];
    snprintf(args, sizeof args, "%s run.out=bad-opt train.optimizer=lion", rt_config_file());
    CHECK_EQ_INT(rt_train(NULL, args, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "train.optimizer: unknown optimizer 'lion' (expected adamw|sgd)");
    free(err);
}

// A version-1 checkpoint (written by aoe before the format named its arrays and meta entries:
// tests/data/ckpt-v1.aoec, zlib payload, known contents) still loads, for inference and to resume.
TEST(ckpt_reads_version_1) {
    const char *path = "tests/data/ckpt-v1.aoec";
    CkptMeta cm;
    Model *m = ckpt_load_model(path, 1, &cm);
    CHECK_EQ_INT(m->V, 64);
    CHECK_EQ_INT(m->cfg.d_model, 8);
    Optim o;
    optim_init(&o, optim_ops_for("adamw"), &m->P);
    TrainMeta mt;
    run_ckpt_load(path, m, &o, &mt);
    int ok = 1;
    for (size_t i = 0; i < m->P.total; i++)
        ok &= m->P.w[i] == (float)((int)(i % 97) - 48) / 64.0f && o.s[0][i] == (float)i * 1e-3f &&
              o.s[1][i] == (float)(i % 13) * 1e-4f;
    CHECK(ok);
    CHECK_EQ_INT(o.t, 45);
    CHECK_EQ_INT(mt.step, 123);
    CHECK(mt.rng.s[0] == 1 && mt.rng.s[1] == 2 && mt.rng.s[2] == 3 && mt.rng.s[3] == 4);
    CHECK(mt.pos.epoch == 3 && mt.pos.cursor == 77 && mt.pos.seed == 11 && mt.pos.n_windows == 1000);
    CHECK(mt.tok_hash == 0x1234567890abcdefULL);
    CHECK(mt.loss_acc == 1.25 && mt.aux_acc == 0.5 && mt.elapsed == 3.5 && mt.n_acc == 2 && mt.tok_log == 64);
    optim_free(&o);
    model_free(m);
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), path);
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "version 1");
    CHECK_STR_CONTAINS(out, "params adamw.m adamw.v");
    CHECK_STR_CONTAINS(out, "step 123 of");
    free(out);
}

TEST(ckpt_kill_resume_identical_sparse) {
    sparse_resume("moe", "model.ffn.type=moe model.ffn.n_experts=4 model.ffn.top_k=2 model.ffn.d_ff=32 model.ffn.z_loss=0.001");
    sparse_resume("aoe", "model.ffn.type=aoe model.ffn.n_experts=4 model.ffn.top_k=2 model.ffn.d_ff=32 model.ffn.d_low=8");
}

// bf16 products (train.precision=bf16: oneDNN, bf16 weight copies derived after each step and
// after loading): two runs with the same seed are bit-identical, and so is kill -9 + --resume.
TEST(ckpt_kill_resume_identical_bf16) {
    REQUIRE(rt_fresh_run("ref2-bf16-dense", "train.precision=bf16") == 0);
    sparse_resume("bf16-dense", "train.precision=bf16");
    CHECK(same_payload(rt_rel("ref2-bf16-dense", "ckpt-30.aoec"), rt_rel("ref-bf16-dense", "ckpt-30.aoec")));
    size_t n;
    char *js = rt_slurp(rt_rel("kill-bf16-dense", "config.json"), &n), *mt = rt_slurp(rt_rel("kill-bf16-dense", "metrics.jsonl"), &n);
    CHECK_STR_CONTAINS(js, "\"precision\":\t\"bf16\"");
    CHECK_STR_CONTAINS(mt, "\"precision\":\"bf16\"");
    free(js); free(mt);
    sparse_resume("bf16-moe", "train.precision=bf16 model.ffn.type=moe model.ffn.n_experts=4 model.ffn.top_k=2 model.ffn.d_ff=32");
    sparse_resume("bf16-aoe", "train.precision=bf16 model.ffn.type=aoe model.ffn.n_experts=4 model.ffn.top_k=2 model.ffn.d_ff=32 model.ffn.d_low=8");
}

TEST(ckpt_resume_refusals) {
    REQUIRE(rt_fresh_run("refuse", "train.steps=10") == 0);
    char *err, args[1200];
    size_t n0, n1;
    char *before = rt_slurp(rt_rel("refuse", "ckpt-10.aoec"), &n0);
    // model / data-order keys cannot be overridden on resume
    CHECK_EQ_INT(rt_train(NULL, "--resume refuse model.d_model=64", NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "model.d_model may not change on resume");
    free(err);
    // a fresh run into a directory with checkpoints is refused
    snprintf(args, sizeof args, "%s run.out=refuse", rt_config_file());
    CHECK_EQ_INT(rt_train(NULL, args, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "already holds checkpoints");
    free(err);
    // run config edited on disk: the checkpoint's config differs in a model key
    size_t n;
    char *js = rt_slurp(rt_rel("refuse", "config.json"), &n);
    char *p = strstr(js, "\"d_ff\":\t64");
    REQUIRE(p);
    memcpy(p + 8, "48", 2);
    rt_spit(rt_rel("refuse", "config.json"), js, n);
    CHECK_EQ_INT(rt_train(NULL, "--resume refuse train.steps=20", NULL, &err), 2);
    CHECK_STR_CONTAINS(err, "ckpt-10.aoec: byte 128: config mismatch: model.ffn.d_ff is 64 in the checkpoint but 48");
    free(err);
    size_t n2;
    char *js2 = rt_slurp(rt_rel("refuse", "config.json"), &n2);
    CHECK(n2 == n && !memcmp(js, js2, n));  // the run's config.json is not rewritten by a refused resume
    free(js); free(js2);
    char *after = rt_slurp(rt_rel("refuse", "ckpt-10.aoec"), &n1);
    CHECK(n0 == n1 && !memcmp(before, after, n0));  // nothing overwritten
    CHECK(!file_exists(rt_rel("refuse", "ckpt-20.aoec")));
    free(before); free(after);
}

TEST(ckpt_write_failure_keeps_previous) {
    REQUIRE(rt_fresh_run("fault", "train.steps=10 run.ckpt_compress=true") == 0);
    size_t n0, n1;
    char *before = rt_slurp(rt_rel("fault", "ckpt-10.aoec"), &n0), *out, *err;
    int rc = rt_train("AOE_FAULT_WRITE_AFTER=3000", "--resume fault train.steps=15", &out, &err);
    CHECK_EQ_INT(rc, 1);
    CHECK_STR_CONTAINS(err, "ckpt-15.aoec: write failed after 3000 bytes: No space left on device (previous checkpoint left intact)");
    CHECK_STR_CONTAINS(err, "--resume");
    free(out); free(err);
    char *l = ckpt_latest(rt_tmp_path("fault"));
    CHECK_STR_CONTAINS(l, "ckpt-10.aoec");
    free(l);
    char *after = rt_slurp(rt_rel("fault", "ckpt-10.aoec"), &n1);
    CHECK(n0 == n1 && !memcmp(before, after, n0));
    free(before); free(after);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s/fault | grep -c tmp", test_tmpdir());
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 1);  // grep found nothing: no temp file left behind
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect --quiet %s", aoe_bin(), rt_rel("fault", "ckpt-10.aoec"));
    CHECK_EQ_INT(rt_sh(cmd, NULL, NULL), 0);
    CHECK_EQ_INT(rt_train(NULL, "--resume fault train.steps=15", NULL, NULL), 0);  // and it resumes
    CHECK(file_exists(rt_rel("fault", "ckpt-15.aoec")));
}

TEST(ckpt_sigterm_saves_and_exits_75) {
    char cmd[PATH_MAX + 4096], *out, *err;
    snprintf(cmd, sizeof cmd,
             "cd %s && (OMP_NUM_THREADS=1 %s train %s run.out=term train.steps=1000000 train.ckpt_every=0 train.eval_every=0 "
             "train.log_every=1 > term.out 2>&1 & pid=$!; "
             "for i in $(seq 200); do [ -s term/metrics.jsonl ] && break; sleep 0.05; done; "
             "kill -TERM $pid; wait $pid; echo rc=$?; cat term.out)",
             test_tmpdir(), rt_abs_bin(), rt_config_file());
    CHECK_EQ_INT(rt_sh(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "rc=75");
    CHECK_STR_CONTAINS(out, "stopped by SIGTERM after step");
    free(out); free(err);
    char *l = ckpt_latest(rt_tmp_path("term"));
    REQUIRE(l);
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), l);
    CHECK_EQ_INT(rt_sh(cmd, &out, NULL), 0);
    CHECK_STR_CONTAINS(out, "of 1000000");
    free(out); free(l);
}

TEST(ckpt_inspect_shard) {
    char cmd[1024], *out, *err, path[700];
    snprintf(path, sizeof path, "%s/train-00000.shard", rt_data_dir());
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), path);
    CHECK_EQ_INT(rt_sh(cmd, &out, &err), 0);
    CHECK_STR_CONTAINS(out, "token statistics");
    CHECK_STR_CONTAINS(out, ": ok");
    free(out); free(err);
    size_t n;
    char *img = rt_slurp(path, &n);
    REQUIRE(img && n > 400);
    img[n / 2] ^= 0x40;
    const char *bad = rt_tmp_path("bad.shard");
    rt_spit(bad, img, n);
    snprintf(cmd, sizeof cmd, "%s inspect %s", aoe_bin(), bad);
    CHECK_EQ_INT(rt_sh(cmd, NULL, &err), 2);
    CHECK_STR_CONTAINS(err, bad);
    free(err); free(img);
}

// Malformed-file harness: every single-bit flip anywhere in the file and every truncation is
// caught (each byte is covered by a CRC), with exit 2 — never a crash or a silent load.
TEST(ckpt_fuzz_flips_and_truncations) {
    for (int compress = 0; compress < 2; compress++) {
        Optim o;
        TrainMeta mt;
        const char *path = rt_tmp_path("fz.aoec");
        Model *m = make_ckpt(path, compress, &o, &mt);
        size_t n;
        char *img = rt_slurp(path, &n), *bad = malloc(n);
        REQUIRE(img);
        Rng r;
        rng_seed(&r, 17 + compress);
        const char *p = rt_tmp_path("fz-bad.aoec");
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s inspect --quiet %s", aoe_bin(), p);
        for (int i = 0; i < 30; i++) {
            memcpy(bad, img, n);
            size_t len = n;
            // first flips hit the header and the sections before the payload, then anywhere
            size_t at = i < 12 ? rng_below(&r, 128 + 1340 + 160 + 1024) % n : rng_below(&r, n);
            if (i % 5 == 4) len = rng_below(&r, n);  // truncation
            else bad[at] ^= (char)(1 << rng_below(&r, 8));
            rt_spit(p, bad, len);
            int rc = rt_sh(cmd, NULL, NULL);
            CHECK_EQ_INT(rc, 2);
            if (rc != 2) fprintf(stderr, "  compress %d: %s at byte %zu (len %zu)\n", compress, len < n ? "truncated" : "flip", at, len);
        }
        free(img); free(bad);
        optim_free(&o);
        model_free(m);
    }
}

// A checkpoint whose config passes its CRC but breaks a model rule (written here by saving a
// model whose cfg was changed after it was built) is refused at read time with exit 2 naming the
// config section and the rule, not by a layer's internal assert.
TEST(ckpt_config_rules_checked_on_read) {
    Config c;
    config_defaults(&c);
    c.d_model = 16; c.n_layer = 1; c.n_head = 2; c.seq_len = 8; c.ffn.d_ff = 16;
    Model *m = model_create(&c, 300, 1, 1);
    m->cfg.n_head = 3;  // 16 is not divisible by 3
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/badcfg.aoec", test_tmpdir());
    CkptMeta meta = {0};
    ckpt_meta_put_i64(&meta, "step", 1);
    REQUIRE(ckpt_save(path, m, NULL, &meta, 0, err, sizeof err) == 0);
    model_free(m);
    char *e = NULL;
    CHECK_EQ_INT(aoe_run(NULL, &e, "inspect %s", path), 2);
    CHECK_STR_CONTAINS(e, "config section: model.d_model (16) must be divisible by model.n_head (3)");
    free(e);
}

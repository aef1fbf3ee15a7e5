// inspect.c — `aoe inspect FILE...`: the checker for aoe's own binary files. A checkpoint shows its
// header, config, training state and tensor table and has every CRC verified; a shard shows its
// header, is fully verified (src/data/shard.h) and gets token statistics. Exit 0 when every file
// is intact, 2 on the first corrupt or unknown file (message: file, byte offset, expectation).
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt_format.h"
#include "cli.h"
#include "data/shard.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aoe inspect FILE... [--quiet]\n\n"
            "Checks aoe checkpoints (*.aoec) and token shards and prints what they hold.\n"
            "  checkpoint: header, resolved config, meta (step, RNG, loader position, ...), tensor\n"
            "              table with CRC32 verification of the parameters and every state array\n"
            "  shard:      header, full CRC verification, token statistics\n"
            "  a run directory is read through its `latest` pointer\n"
            "  --quiet     only verify; print one line per file\n"
            "  -h, --help  this help\n\n"
            "Exit status: 0 all files intact, 2 corrupt or unreadable (file, byte offset, expectation).\n");
}

static void shape_str(char *b, size_t n, const uint32_t *shape, uint32_t ndim) {
    size_t k = 0;
    b[0] = 0;
    for (uint32_t i = 0; i < ndim && k < n; i++) k += snprintf(b + k, n - k, "%s%u", i ? "x" : "", shape[i]);
}

// One meta entry as "name value" (u64 in hex when it is an identity or RNG state).
static void print_meta(const CkptMetaItem *it) {
    double d;
    switch (it->type) {
    case CKPT_I64: printf("  %-16s %lld\n", it->name, (long long)it->bits); break;
    case CKPT_F64: memcpy(&d, &it->bits, 8); printf("  %-16s %.17g\n", it->name, d); break;
    default:
        if (!strncmp(it->name, "rng.", 4) || strstr(it->name, "hash")) printf("  %-16s %016llx\n", it->name, (unsigned long long)it->bits);
        else printf("  %-16s %llu\n", it->name, (unsigned long long)it->bits);
    }
}

static int inspect_ckpt(const char *path, int quiet) {
    CkptFile cf;
    ckpt_file_open(&cf, path);  // exits 2 on a structural problem
    const CkptHeader *h = &cf.h;
    const Config *c = &cf.cfg;
    float *w = falloc(cf.total);
    if (!quiet) {
        printf("%s: aoe checkpoint, version %u, %llu bytes\n", path, h->version, (unsigned long long)h->file_size);
        printf("sections: header 0+%d, config %llu+%llu, meta %llu+%llu, table %llu+%llu, payload %llu+%llu (%s",
               CKPT_HEADER_BYTES, (unsigned long long)h->off[SEC_CONFIG], (unsigned long long)h->len[SEC_CONFIG],
               (unsigned long long)h->off[SEC_META], (unsigned long long)h->len[SEC_META], (unsigned long long)h->off[SEC_TABLE],
               (unsigned long long)h->len[SEC_TABLE], (unsigned long long)h->off[SEC_PAYLOAD], (unsigned long long)h->len[SEC_PAYLOAD],
               (h->flags & CKPT_FLAG_ZLIB) ? "zlib" : "raw");
        if (h->flags & CKPT_FLAG_ZLIB)
            printf(", %llu bytes inflated, ratio %.3f", (unsigned long long)h->payload_raw,
                   (double)h->len[SEC_PAYLOAD] / (double)(h->payload_raw ? h->payload_raw : 1));
        printf(")\nheader, config, meta and table CRCs: ok\n");
        printf("arrays (%d, each %llu floats):", cf.n_arrays, (unsigned long long)cf.total);
        for (int a = 0; a < cf.n_arrays; a++) printf(" %s", cf.array_name[a]);
        printf("\n");
        if (ckpt_meta_has(&cf.meta, "step"))  // printed as stored; no arithmetic on unchecked values
            printf("step %ld of %d\n", ckpt_meta_step(&cf.meta), c->steps);
        printf("vocab %d, model %s ffn, %d layers, d_model %d\nmeta (%d):\n", cf.V, c->ffn.type, c->n_layer, c->d_model, cf.meta.n);
        for (int i = 0; i < cf.meta.n; i++) print_meta(&cf.meta.it[i]);
        printf("config:\n%s\n", cf.config_json);
    }
    float *dst[CKPT_MAX_ARRAYS] = {w};
    ckpt_file_read_payload(&cf, dst, NULL, 1, 1);  // every array, every CRC; failures listed
    if (!quiet) {
        double nparam = 0;
        printf("tensors (%u, fp32; offsets in floats into each payload array; CRCs per array):\n", h->n_tensors);
        printf("  %-36s %-14s %10s %10s %10s   %s\n", "name", "shape", "offset", "elements", "rms", "crc per array");
        for (uint32_t i = 0; i < h->n_tensors; i++) {
            const CkptTensor *t = &cf.t[i];
            char sh[64];
            shape_str(sh, sizeof sh, t->shape, t->ndim);
            double ss = 0;
            for (uint64_t j = 0; j < t->n; j++) ss += (double)w[t->off + j] * w[t->off + j];
            uint32_t got = ckpt_crc(0, w + t->off, t->n * 4);
            printf("  %-36s %-14s %10llu %10llu %10.4g  ", t->name, sh, (unsigned long long)t->off, (unsigned long long)t->n,
                   t->n ? sqrt(ss / t->n) : 0.0);
            for (int a = 0; a < cf.n_arrays; a++) printf(" %08x", t->crc[a]);
            printf("%s\n", got == t->crc[0] ? "" : " BAD");
            nparam += t->n;
        }
        printf("parameters: %.0f (%.3fM)\n", nparam, nparam / 1e6);
    }
    unsigned nt = h->n_tensors;
    int na = cf.n_arrays;
    free(w);
    if (cf.n_bad) ckpt_fail(path, cf.bad_off, "%s; %d CRC failure(s) in all, the checkpoint is corrupt", cf.bad_msg, cf.n_bad);
    ckpt_file_close(&cf);
    printf("%s: ok (all %u x %d tensor CRCs and the payload CRC match)\n", path, nt, na);
    return 0;
}

typedef struct { uint64_t n; int id; } IdCount;
static int cmp_count(const void *a, const void *b) {
    const IdCount *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : x->id - y->id;
}

static int inspect_shard(const char *path, int quiet) {
    Shard *s = shard_open(path);  // exits 2 on a bad header or index
    shard_verify(s);              // every chunk CRC, the document table; exits 2 on corruption
    if (!quiet) {
        printf("%s: aoe shard, %llu bytes\n", path, (unsigned long long)s->file_size);
        printf("vocab %u, tokenizer hash %016llx, EOT id %u, %u-byte tokens\n", s->vocab, (unsigned long long)s->tok_hash,
               s->eot, s->token_bytes);
        printf("tokens %llu, documents %llu, chunks %llu of up to %u tokens (index at %llu, documents at %llu)\n",
               (unsigned long long)s->n_tokens, (unsigned long long)s->n_docs, (unsigned long long)s->n_chunks,
               s->chunk_tokens, (unsigned long long)s->index_offset, (unsigned long long)s->docs_offset);
        uint64_t *hist = xcalloc(s->vocab, sizeof(uint64_t)), comp = 0;
        unsigned char *cb = xmalloc(shard_max_comp(s)), *rb = xmalloc((size_t)s->chunk_tokens * s->token_bytes);
        int32_t *ids = xmalloc(sizeof(int32_t) * s->chunk_tokens);
        for (uint64_t ch = 0; ch < s->n_chunks; ch++) {
            shard_read_chunk(s, ch, cb, rb, ids);
            comp += s->chunks[ch].comp_bytes;
            for (uint32_t j = 0; j < s->chunks[ch].n_tokens; j++) hist[ids[j]]++;
        }
        double H = 0, N = (double)s->n_tokens;
        int used = 0;
        IdCount *top = xmalloc(sizeof(IdCount) * s->vocab);
        for (uint32_t i = 0; i < s->vocab; i++) {
            top[i] = (IdCount){hist[i], (int)i};
            if (hist[i]) { used++; H -= hist[i] / N * log2(hist[i] / N); }
        }
        qsort(top, s->vocab, sizeof(IdCount), cmp_count);
        printf("token statistics: %d of %u ids used, unigram entropy %.3f bits/token, mean document %.1f tokens, "
               "compressed %.2f bytes/token\n", used, s->vocab, H, s->n_docs ? N / s->n_docs : 0.0, N ? comp / N : 0.0);
        printf("most frequent ids:");
        for (uint32_t i = 0; i < s->vocab && i < 10 && top[i].n; i++)
            printf(" %d (%.2f%%)", top[i].id, 100.0 * top[i].n / N);
        printf("\n");
        free(hist); free(cb); free(rb); free(ids); free(top);
    }
    printf("%s: ok (all %llu chunk CRCs and the document table verified)\n", path, (unsigned long long)s->n_chunks);
    shard_close(s);
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    if (wants_help(argc, argv)) { usage(stdout); return 0; }
    int quiet = 0, nfiles = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) quiet = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "aoe inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else nfiles++;
    }
    if (!nfiles) { usage(stderr); return 2; }
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        char *path = NULL;
        if (is_directory(argv[i])) {  // a run directory: its newest checkpoint
            path = ckpt_latest(argv[i]);
            if (!path) die_input("%s: no checkpoint in this run directory (expected a `latest` file or ckpt-<step>.aoec)", argv[i]);
        } else path = xstrdup(argv[i]);
        FILE *f = fopen(path, "rb");
        if (!f) die_input("%s: cannot open: %s", path, strerror(errno));
        char magic[8] = {0};
        size_t got = fread(magic, 1, 8, f);
        fclose(f);
        if (got == 8 && !memcmp(magic, "AOESHARD", 8)) inspect_shard(path, quiet);
        else if (got == 8 && !memcmp(magic, CKPT_MAGIC, 8)) inspect_ckpt(path, quiet);
        else {
            char shown[9] = {0};
            for (size_t k = 0; k < got; k++) shown[k] = magic[k] >= 32 && magic[k] < 127 ? magic[k] : '.';
            die_input("%s: byte 0: bad magic \"%s\": unknown file type (expected \"AOECKPT\\0\" for a checkpoint or "
                      "\"AOESHARD\" for a shard)", path, shown);
        }
        if (!quiet && i + 1 < argc) printf("\n");
        free(path);
    }
    return 0;
}

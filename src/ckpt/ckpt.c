// ckpt.c — checkpoint writer and reader, and the run-directory bookkeeping (ckpt-<step>.aoec,
// the `latest` pointer, pruning). Layout: docs/formats.md, "Checkpoint"; constants in
// ckpt_format.h. The writer goes through AtomicFile (temp + fsync + rename), so a crash or a
// failed write never touches the previous checkpoint. The reader validates the header, the file
// size and each section's CRC before trusting a field, and names the byte offset of the first
// problem. Not here: deciding when to save (train.c) and printing (inspect.c).
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt/ckpt_format.h"
#include "model/kernels.h"

// ---------------------------------------------------------------- little-endian helpers
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t dbits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static double bitsd(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

uint32_t ckpt_crc(uint32_t crc, const void *p, uint64_t n) {
    const unsigned char *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k; n -= k;
    }
    return crc;
}

// LoaderPos <-> four u64 slots of the meta section.
static void pos_pack(const LoaderPos *p, uint64_t s[4]) {
    s[0] = p->epoch; s[1] = p->cursor; s[2] = p->seed; s[3] = p->n_windows;
}
static void pos_unpack(LoaderPos *p, const uint64_t s[4]) {
    memset(p, 0, sizeof *p);
    p->epoch = s[0]; p->cursor = s[1]; p->seed = s[2]; p->n_windows = s[3];
}

// ---------------------------------------------------------------- writer
typedef struct {
    FILE *f;
    uint64_t written, fault_after, kill_after;
    int fault, kill;
} Out;

static uint64_t env_u64(const char *name, int *set) {
    const char *s = getenv(name);
    *set = s && *s;
    return *set ? strtoull(s, NULL, 10) : 0;
}

// fwrite with the test hooks; returns 0 or -1 with errno set.
static int out_write(Out *o, const void *p, size_t n) {
    const char *b = p;
    while (n) {
        size_t k = n;
        if (o->fault && o->written + k > o->fault_after) k = o->fault_after > o->written ? o->fault_after - o->written : 0;
        if (o->kill && o->written + k > o->kill_after) k = o->kill_after > o->written ? o->kill_after - o->written : 0;
        if (k && fwrite(b, 1, k, o->f) != k) { if (!errno) errno = EIO; return -1; }
        o->written += k; b += k; n -= k;
        if (!n) break;
        if (o->kill && o->written >= o->kill_after) { fflush(o->f); raise(SIGKILL); }
        if (o->fault && o->written >= o->fault_after) { errno = ENOSPC; return -1; }
    }
    return 0;
}

static void header_encode(unsigned char *b, const CkptHeader *h) {
    memset(b, 0, CKPT_HEADER_BYTES);
    memcpy(b, CKPT_MAGIC, 8);
    put32(b + 8, h->version); put32(b + 12, h->flags);
    put64(b + 16, h->file_size);
    for (int s = 0; s < N_SEC; s++) { put64(b + 24 + 16 * s, h->off[s]); put64(b + 32 + 16 * s, h->len[s]); }
    put64(b + 88, h->payload_raw);
    put32(b + 96, h->n_tensors);
    for (int s = 0; s < N_SEC; s++) put32(b + 100 + 4 * s, h->crc[s]);
    put32(b + 124, ckpt_crc(0, b, 124));
}

static void meta_encode(unsigned char *b, const TrainMeta *mt, long adam_t, int V, uint64_t total) {
    uint64_t s[CKPT_META_BYTES / 8] = {0};
    s[0] = (uint64_t)mt->step; s[1] = (uint64_t)adam_t;
    for (int i = 0; i < 4; i++) s[2 + i] = mt->rng.s[i];
    s[6] = mt->tok_hash; s[7] = (uint64_t)V; s[8] = total;
    pos_pack(&mt->pos, s + 9);
    s[13] = dbits(mt->loss_acc); s[14] = dbits(mt->aux_acc);
    s[15] = (uint64_t)mt->n_acc; s[16] = (uint64_t)mt->tok_log; s[17] = dbits(mt->elapsed);
    for (int i = 0; i < CKPT_META_BYTES / 8; i++) put64(b + 8 * i, s[i]);
}

static void entry_encode(unsigned char *b, const TensorInfo *t, const float *arr[N_ARR]) {
    memset(b, 0, CKPT_ENTRY_BYTES);
    snprintf((char *)b, CKPT_NAME, "%s", t->name);
    put32(b + 64, 0);  // dtype 0 = fp32
    put32(b + 68, (uint32_t)t->ndim);
    for (int i = 0; i < 4; i++) put32(b + 72 + 4 * i, i < t->ndim ? (uint32_t)t->shape[i] : 0);
    put64(b + 88, t->off); put64(b + 96, t->n);
    for (int a = 0; a < N_ARR; a++) put32(b + 104 + 4 * a, ckpt_crc(0, arr[a] + t->off, t->n * 4));
}

// Writes the payload (w, m, v), raw or deflated; *len and *crc describe the stored bytes.
static int write_payload(Out *o, const float *arr[N_ARR], uint64_t total, int compress, uint64_t *len, uint32_t *crc) {
    uint64_t start = o->written;
    *crc = 0;
    if (!compress) {
        for (int a = 0; a < N_ARR; a++) {
            const char *p = (const char *)arr[a];
            for (uint64_t left = total * 4; left;) {
                size_t k = left > (64u << 20) ? (64u << 20) : (size_t)left;
                *crc = ckpt_crc(*crc, p, k);
                if (out_write(o, p, k)) return -1;
                p += k; left -= k;
            }
        }
        *len = o->written - start;
        return 0;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit(&z, 1) != Z_OK) { errno = ENOMEM; return -1; }
    size_t cap = 1 << 20;
    unsigned char *buf = xmalloc(cap);
    int rc = 0;
    for (int a = 0; a <= N_ARR && !rc; a++) {
        const unsigned char *p = a < N_ARR ? (const unsigned char *)arr[a] : NULL;
        uint64_t left = a < N_ARR ? total * 4 : 0;
        do {
            uInt k = left > (1u << 30) ? (1u << 30) : (uInt)left;
            z.next_in = (Bytef *)p; z.avail_in = k;
            int flush = (a == N_ARR) ? Z_FINISH : Z_NO_FLUSH, zr;
            do {
                z.next_out = buf; z.avail_out = (uInt)cap;
                zr = deflate(&z, flush);
                size_t got = cap - z.avail_out;
                *crc = ckpt_crc(*crc, buf, got);
                if (got && out_write(o, buf, got)) { rc = -1; break; }
            } while (z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
            if (p) p += k;
            left -= k;
        } while (left && !rc);
    }
    deflateEnd(&z);
    free(buf);
    *len = o->written - start;
    return rc;
}

int ckpt_save(const char *path, const Model *m, const AdamW *opt, const TrainMeta *meta, int compress,
              char *err, int errlen) {
    const Params *P = &m->P;
    AtomicFile af;
    if (atomic_open(&af, path)) {
        snprintf(err, errlen, "%s: cannot create temporary file: %s", path, strerror(errno));
        return -1;
    }
    Out o = {.f = af.f};
    o.fault_after = env_u64("AOE_FAULT_WRITE_AFTER", &o.fault);
    o.kill_after = env_u64("AOE_TEST_KILL_IN_WRITE", &o.kill);
    CkptHeader h = {.version = CKPT_VERSION, .flags = compress ? CKPT_FLAG_ZLIB : 0, .n_tensors = (uint32_t)P->n};
    const float *arr[N_ARR] = {P->w, opt->m, opt->v};
    char *js = config_to_json(&m->cfg);
    unsigned char hb[CKPT_HEADER_BYTES], mb[CKPT_META_BYTES];
    unsigned char *tb = xcalloc((size_t)P->n, CKPT_ENTRY_BYTES);
    for (int i = 0; i < P->n; i++) entry_encode(tb + (size_t)i * CKPT_ENTRY_BYTES, &P->t[i], arr);
    meta_encode(mb, meta, opt->t, m->V, P->total);
    const void *sec[3] = {js, mb, tb};
    uint64_t slen[3] = {strlen(js), CKPT_META_BYTES, (uint64_t)P->n * CKPT_ENTRY_BYTES};
    memset(hb, 0, sizeof hb);
    int rc = out_write(&o, hb, sizeof hb);  // placeholder, rewritten last
    for (int s = 0; s < 3 && !rc; s++) {
        h.off[s] = o.written; h.len[s] = slen[s];
        h.crc[s] = ckpt_crc(0, sec[s], slen[s]);
        rc = out_write(&o, sec[s], slen[s]);
    }
    if (!rc) {
        h.off[SEC_PAYLOAD] = o.written;
        h.payload_raw = (uint64_t)N_ARR * P->total * 4;
        rc = write_payload(&o, arr, P->total, compress, &h.len[SEC_PAYLOAD], &h.crc[SEC_PAYLOAD]);
    }
    if (!rc) {
        h.file_size = o.written;
        header_encode(hb, &h);
        if (fseek(af.f, 0, SEEK_SET) || fwrite(hb, 1, sizeof hb, af.f) != sizeof hb) rc = -1;
    }
    free(js); free(tb);
    if (rc) {
        int e = errno ? errno : EIO;
        atomic_abort(&af);
        snprintf(err, errlen, "%s: write failed after %llu bytes: %s (previous checkpoint left intact)", path,
                 (unsigned long long)o.written, strerror(e));
        return -1;
    }
    if (atomic_commit(&af)) {
        snprintf(err, errlen, "%s: write failed: %s (previous checkpoint left intact)", path, strerror(errno));
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------- reader
void ckpt_fail(const char *path, uint64_t off, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    die_input("%s: byte %llu: %s", path, (unsigned long long)off, msg);
}

static void read_at(CkptFile *cf, uint64_t off, void *buf, uint64_t n, const char *what) {
    if (fseeko(cf->f, (off_t)off, SEEK_SET) || fread(buf, 1, n, cf->f) != n)
        ckpt_fail(cf->path, off, "cannot read %s (%llu bytes): %s", what, (unsigned long long)n,
                  ferror(cf->f) ? strerror(errno) : "unexpected end of file");
}

static void check_crc(CkptFile *cf, int s, const void *buf, const char *what) {
    uint32_t got = ckpt_crc(0, buf, cf->h.len[s]);
    if (got != cf->h.crc[s])
        ckpt_fail(cf->path, cf->h.off[s], "CRC mismatch in %s section (expected 0x%08x, got 0x%08x)", what, cf->h.crc[s], got);
}

void ckpt_file_open(CkptFile *cf, const char *path) {
    memset(cf, 0, sizeof *cf);
    cf->path = path;
    if (is_directory(path)) die_input("%s: is a directory, expected a checkpoint file (for a run, use %s/latest)", path, path);
    cf->f = fopen(path, "rb");
    if (!cf->f) die_input("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(cf->f), &st)) die("%s: cannot stat: %s", path, strerror(errno));
    cf->size = (uint64_t)st.st_size;
    unsigned char hb[CKPT_HEADER_BYTES];
    size_t got = fread(hb, 1, sizeof hb, cf->f);
    if (got >= 8 && memcmp(hb, CKPT_MAGIC, 8))
        ckpt_fail(path, 0, "bad magic (expected \"AOECKPT\\0\", got \"%.7s\"): not an aoe checkpoint", (const char *)hb);
    if (got < sizeof hb)
        ckpt_fail(path, got, "file truncated inside the header (expected at least %d bytes, got %zu)", CKPT_HEADER_BYTES, got);
    CkptHeader *h = &cf->h;
    h->version = get32(hb + 8);
    if (h->version != CKPT_VERSION)
        ckpt_fail(path, 8, "unsupported checkpoint version %u (expected %d)", h->version, CKPT_VERSION);
    uint32_t hcrc = ckpt_crc(0, hb, 124);
    if (hcrc != get32(hb + 124))
        ckpt_fail(path, 124, "CRC mismatch in header (expected 0x%08x, got 0x%08x)", get32(hb + 124), hcrc);
    h->flags = get32(hb + 12);
    h->file_size = get64(hb + 16);
    for (int s = 0; s < N_SEC; s++) { h->off[s] = get64(hb + 24 + 16 * s); h->len[s] = get64(hb + 32 + 16 * s); }
    h->payload_raw = get64(hb + 88);
    h->n_tensors = get32(hb + 96);
    for (int s = 0; s < N_SEC; s++) h->crc[s] = get32(hb + 100 + 4 * s);
    if (cf->size != h->file_size)
        ckpt_fail(path, cf->size < h->file_size ? cf->size : h->file_size, "file is %llu bytes but the header says %llu (%s)",
                  (unsigned long long)cf->size, (unsigned long long)h->file_size,
                  cf->size < h->file_size ? "truncated" : "trailing garbage");
    if (h->flags & ~CKPT_FLAG_ZLIB) ckpt_fail(path, 12, "unknown flags 0x%x (expected 0 or 1)", h->flags);
    // Sections are contiguous, in order, and end exactly at the end of the file.
    uint64_t at = CKPT_HEADER_BYTES;
    static const char *names[N_SEC] = {"config", "meta", "table", "payload"};
    for (int s = 0; s < N_SEC; s++) {
        if (h->off[s] != at || h->len[s] > h->file_size - at)
            ckpt_fail(path, 24 + 16 * s, "%s section at %llu+%llu does not fit (expected offset %llu within %llu bytes)", names[s],
                      (unsigned long long)h->off[s], (unsigned long long)h->len[s], (unsigned long long)at,
                      (unsigned long long)h->file_size);
        at += h->len[s];
    }
    if (at != h->file_size) ckpt_fail(path, at, "%llu bytes after the payload", (unsigned long long)(h->file_size - at));
    if (h->len[SEC_META] != CKPT_META_BYTES)
        ckpt_fail(path, 48, "meta section is %llu bytes (expected %d)", (unsigned long long)h->len[SEC_META], CKPT_META_BYTES);
    if (h->len[SEC_TABLE] != (uint64_t)h->n_tensors * CKPT_ENTRY_BYTES)
        ckpt_fail(path, 64, "table section is %llu bytes (expected %u tensors x %d)", (unsigned long long)h->len[SEC_TABLE],
                  h->n_tensors, CKPT_ENTRY_BYTES);
    if (h->len[SEC_CONFIG] > (16u << 20)) ckpt_fail(path, 32, "config section of %llu bytes (expected < 16 MiB)", (unsigned long long)h->len[SEC_CONFIG]);

    // config
    cf->config_json = xmalloc(h->len[SEC_CONFIG] + 1);
    read_at(cf, h->off[SEC_CONFIG], cf->config_json, h->len[SEC_CONFIG], "config");
    cf->config_json[h->len[SEC_CONFIG]] = 0;
    check_crc(cf, SEC_CONFIG, cf->config_json, "config");
    char err[160];
    if (config_from_json_text(&cf->cfg, cf->config_json, path, err, sizeof err))
        ckpt_fail(path, h->off[SEC_CONFIG], "config section: %s", err);
    // meta
    unsigned char mb[CKPT_META_BYTES];
    read_at(cf, h->off[SEC_META], mb, CKPT_META_BYTES, "meta");
    check_crc(cf, SEC_META, mb, "meta");
    uint64_t s[CKPT_META_BYTES / 8];
    for (int i = 0; i < CKPT_META_BYTES / 8; i++) s[i] = get64(mb + 8 * i);
    TrainMeta *mt = &cf->meta;
    mt->step = (long)s[0]; cf->adam_t = (long)s[1];
    for (int i = 0; i < 4; i++) mt->rng.s[i] = s[2 + i];
    mt->tok_hash = s[6]; cf->V = (int)s[7]; cf->total = s[8];
    pos_unpack(&mt->pos, s + 9);
    mt->loss_acc = bitsd(s[13]); mt->aux_acc = bitsd(s[14]);
    mt->n_acc = (long)s[15]; mt->tok_log = (long)s[16]; mt->elapsed = bitsd(s[17]);
    if (s[7] < 1 || s[7] > (1u << 20)) ckpt_fail(path, h->off[SEC_META] + 56, "vocabulary size %llu (expected 1..%d)", (unsigned long long)s[7], 1 << 20);
    if (h->payload_raw / (N_ARR * 4) != cf->total || h->payload_raw % (N_ARR * 4))
        ckpt_fail(path, 88, "payload size %llu (expected 3 arrays of %llu floats)", (unsigned long long)h->payload_raw, (unsigned long long)cf->total);
    if (!(h->flags & CKPT_FLAG_ZLIB) && h->len[SEC_PAYLOAD] != h->payload_raw)
        ckpt_fail(path, h->off[SEC_PAYLOAD], "payload is %llu bytes (expected %llu)", (unsigned long long)h->len[SEC_PAYLOAD], (unsigned long long)h->payload_raw);
    // table
    unsigned char *tb = xmalloc(h->len[SEC_TABLE] + 1);
    read_at(cf, h->off[SEC_TABLE], tb, h->len[SEC_TABLE], "tensor table");
    check_crc(cf, SEC_TABLE, tb, "tensor table");
    cf->t = xcalloc(h->n_tensors + 1, sizeof(CkptTensor));
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const unsigned char *e = tb + (size_t)i * CKPT_ENTRY_BYTES;
        uint64_t eo = h->off[SEC_TABLE] + (uint64_t)i * CKPT_ENTRY_BYTES;
        CkptTensor *t = &cf->t[i];
        memcpy(t->name, e, CKPT_NAME);
        if (!memchr(t->name, 0, CKPT_NAME)) ckpt_fail(path, eo, "tensor %u: name not NUL-terminated", i);
        t->dtype = get32(e + 64); t->ndim = get32(e + 68);
        for (int k = 0; k < 4; k++) t->shape[k] = get32(e + 72 + 4 * k);
        t->off = get64(e + 88); t->n = get64(e + 96);
        for (int a = 0; a < N_ARR; a++) t->crc[a] = get32(e + 104 + 4 * a);
        if (t->dtype != 0) ckpt_fail(path, eo + 64, "tensor %s: dtype %u (expected 0 = fp32)", t->name, t->dtype);
        if (t->ndim < 1 || t->ndim > 4) ckpt_fail(path, eo + 68, "tensor %s: %u dimensions (expected 1..4)", t->name, t->ndim);
        uint64_t n = 1;
        for (uint32_t k = 0; k < t->ndim; k++) n *= t->shape[k];
        if (n != t->n || t->off > cf->total || t->n > cf->total - t->off)
            ckpt_fail(path, eo + 88, "tensor %s: %llu elements at %llu (expected the product of its shape, %llu, within %llu)",
                      t->name, (unsigned long long)t->n, (unsigned long long)t->off, (unsigned long long)n,
                      (unsigned long long)cf->total);
    }
    free(tb);
}

void ckpt_file_close(CkptFile *cf) {
    if (cf->f) fclose(cf->f);
    free(cf->config_json); free(cf->t);
    memset(cf, 0, sizeof *cf);
}

void ckpt_file_check_table(const CkptFile *cf, const Params *P) {
    uint64_t t0 = cf->h.off[SEC_TABLE];
    if ((int)cf->h.n_tensors != P->n || cf->total != P->total)
        ckpt_fail(cf->path, t0, "tensor table has %u tensors / %llu floats (expected %d / %zu for this config)",
                  cf->h.n_tensors, (unsigned long long)cf->total, P->n, P->total);
    for (int i = 0; i < P->n; i++) {
        const CkptTensor *c = &cf->t[i];
        const TensorInfo *t = &P->t[i];
        int same = !strcmp(c->name, t->name) && (int)c->ndim == t->ndim && c->off == t->off && c->n == t->n;
        for (int k = 0; same && k < t->ndim; k++) same = (int)c->shape[k] == t->shape[k];
        if (!same)
            ckpt_fail(cf->path, t0 + (uint64_t)i * CKPT_ENTRY_BYTES, "tensor %d is %s (%llu elements at %llu), expected %s (%zu at %zu)",
                      i, c->name, (unsigned long long)c->n, (unsigned long long)c->off, t->name, t->n, t->off);
    }
}

static void tensor_crcs(CkptFile *cf, int a, const float *arr, int report) {
    static const char *an[N_ARR] = {"", " (AdamW m)", " (AdamW v)"};
    int zip = cf->h.flags & CKPT_FLAG_ZLIB;
    for (uint32_t i = 0; i < cf->h.n_tensors; i++) {
        const CkptTensor *t = &cf->t[i];
        uint32_t got = ckpt_crc(0, arr + t->off, t->n * 4);
        if (got == t->crc[a]) continue;
        uint64_t raw = ((uint64_t)a * cf->total + t->off) * 4;
        if (!report && !zip)
            ckpt_fail(cf->path, cf->h.off[SEC_PAYLOAD] + raw, "CRC mismatch in tensor %s%s (expected 0x%08x, got 0x%08x)",
                      t->name, an[a], t->crc[a], got);
        if (!report)
            ckpt_fail(cf->path, cf->h.off[SEC_PAYLOAD], "CRC mismatch in tensor %s%s at byte %llu of the inflated payload (expected 0x%08x, got 0x%08x)",
                      t->name, an[a], (unsigned long long)raw, t->crc[a], got);
        printf("  BAD  %s%s: CRC expected 0x%08x, got 0x%08x (%s byte %llu)\n", t->name, an[a], t->crc[a], got,
               zip ? "inflated payload" : "file", (unsigned long long)(zip ? raw : cf->h.off[SEC_PAYLOAD] + raw));
        if (!cf->n_bad++) {
            cf->bad_off = zip ? cf->h.off[SEC_PAYLOAD] : cf->h.off[SEC_PAYLOAD] + raw;
            snprintf(cf->bad_msg, sizeof cf->bad_msg, "CRC mismatch in tensor %s%s (expected 0x%08x, got 0x%08x)%s", t->name,
                     an[a], t->crc[a], got, zip ? " in the inflated payload" : "");
        }
    }
}

static void payload_bad(CkptFile *cf, int report, uint64_t off, const char *msg) {
    if (!report) ckpt_fail(cf->path, off, "%s", msg);
    printf("  BAD  payload: byte %llu: %s\n", (unsigned long long)off, msg);
    if (!cf->n_bad++) {
        cf->bad_off = off;
        snprintf(cf->bad_msg, sizeof cf->bad_msg, "%s", msg);
    }
}

void ckpt_file_read_payload(CkptFile *cf, float *w, float *m, float *v, int verify_all, int report) {
    float *dst[N_ARR] = {w, m, v}, *scratch = NULL;
    uint64_t bytes = cf->total * 4, p0 = cf->h.off[SEC_PAYLOAD];
    int zip = cf->h.flags & CKPT_FLAG_ZLIB;
    uint32_t crc = 0;
    char msg[200];
    if (!zip) {
        int all = verify_all || (w && m && v);  // the payload CRC needs every array
        for (int a = 0; a < N_ARR; a++) {
            if (!dst[a] && !verify_all) continue;
            float *p = dst[a] ? dst[a] : (scratch = scratch ? scratch : falloc(cf->total));
            read_at(cf, p0 + (uint64_t)a * bytes, p, bytes, "payload");
            crc = ckpt_crc(crc, p, bytes);
            tensor_crcs(cf, a, p, report);
        }
        if (all && crc != cf->h.crc[SEC_PAYLOAD]) {
            snprintf(msg, sizeof msg, "CRC mismatch in payload (expected 0x%08x, got 0x%08x)", cf->h.crc[SEC_PAYLOAD], crc);
            payload_bad(cf, report, p0, msg);
        }
        free(scratch);
        return;
    }
    // Compressed: the stored-bytes CRC is checked as the stream is read; then every tensor CRC.
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) die("out of memory starting zlib");
    if (fseeko(cf->f, (off_t)p0, SEEK_SET)) ckpt_fail(cf->path, p0, "cannot seek: %s", strerror(errno));
    size_t cap = 1 << 20;
    unsigned char *in = xmalloc(cap);
    uint64_t left_in = cf->h.len[SEC_PAYLOAD];
    int zr = Z_OK, broken = 0;
    for (int a = 0; a < N_ARR && !broken; a++) {
        float *p = dst[a] ? dst[a] : (scratch = scratch ? scratch : falloc(cf->total));
        unsigned char *o = (unsigned char *)p;
        uint64_t left_out = bytes;
        while (left_out && !broken) {
            if (z.avail_in == 0 && left_in) {
                size_t k = left_in < cap ? (size_t)left_in : cap;
                if (fread(in, 1, k, cf->f) != k) ckpt_fail(cf->path, p0 + z.total_in, "cannot read payload: unexpected end of file");
                crc = ckpt_crc(crc, in, k);
                left_in -= k;
                z.next_in = in; z.avail_in = (uInt)k;
            }
            uInt k = left_out > (1u << 30) ? (1u << 30) : (uInt)left_out;
            z.next_out = o; z.avail_out = k;
            zr = inflate(&z, Z_NO_FLUSH);
            o += k - z.avail_out; left_out -= k - z.avail_out;
            if (zr == Z_STREAM_END && left_out) zr = Z_DATA_ERROR;
            if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && left_in)) broken = 1;
            if (zr == Z_BUF_ERROR && !left_in && !z.avail_in) broken = 1;
        }
        if (!broken) tensor_crcs(cf, a, p, report);
    }
    while (left_in) {  // finish the stored-bytes CRC
        size_t k = left_in < cap ? (size_t)left_in : cap;
        if (fread(in, 1, k, cf->f) != k) break;
        crc = ckpt_crc(crc, in, k);
        left_in -= k;
    }
    if (crc != cf->h.crc[SEC_PAYLOAD]) {
        snprintf(msg, sizeof msg, "CRC mismatch in compressed payload (expected 0x%08x, got 0x%08x)", cf->h.crc[SEC_PAYLOAD], crc);
        payload_bad(cf, report, p0, msg);
    } else if (broken) {
        snprintf(msg, sizeof msg, "corrupt compressed payload (zlib: %s)", z.msg ? z.msg : "stream ended early");
        payload_bad(cf, report, p0 + z.total_in, msg);
    }
    inflateEnd(&z);
    free(in); free(scratch);
}

// ---------------------------------------------------------------- loading
static void read_into_model(CkptFile *cf, Model *m, AdamW *opt) {
    if (cf->V != m->V)
        ckpt_fail(cf->path, cf->h.off[SEC_META] + 56, "vocabulary size %d (expected %d, the run's tokenizer)", cf->V, m->V);
    ckpt_file_check_table(cf, &m->P);
    ckpt_file_read_payload(cf, m->P.w, opt ? opt->m : NULL, opt ? opt->v : NULL, 0, 0);
    kernels_weights_changed(m->P.w);  // bf16 weight copies are derived, never stored
}

Model *ckpt_load_model(const char *path, int max_B, TrainMeta *meta_out) {
    CkptFile cf;
    ckpt_file_open(&cf, path);
    Model *m = model_create(&cf.cfg, cf.V, max_B, cf.cfg.seed);
    read_into_model(&cf, m, NULL);
    if (meta_out) *meta_out = cf.meta;
    ckpt_file_close(&cf);
    return m;
}

void ckpt_load_train(const char *path, Model *m, AdamW *opt, TrainMeta *meta) {
    CkptFile cf;
    ckpt_file_open(&cf, path);
    // The model, and what gives the saved loader position and RNG their meaning.
    static const char *const keys[] = {"model.", "train.seed", "train.batch_size", "train.grad_accum"};
    char buf[400];
    for (int i = 0; i < 4; i++)
        if (ckpt_config_diff(&cf.cfg, "the checkpoint", &m->cfg, "the run config", keys[i], buf, sizeof buf))
            ckpt_fail(path, cf.h.off[SEC_CONFIG], "config mismatch: %s", buf);
    read_into_model(&cf, m, opt);
    opt->t = cf.adam_t;
    *meta = cf.meta;
    ckpt_file_close(&cf);
}

// Walks two resolved-config JSON trees in parallel (same schema, same key order).
static const char *json_diff(const cJSON *a, const cJSON *b, const char *path, const char *prefix, char *buf, int n,
                             const char *an, const char *bn) {
    for (const cJSON *x = a->child; x; x = x->next) {
        char p[256];
        snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", x->string);
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
        size_t lp = strlen(p), lq = strlen(prefix);
        if (strncmp(p, prefix, lp < lq ? lp : lq)) continue;  // outside the prefix
        if (cJSON_IsObject(x) && y && cJSON_IsObject(y)) {
            const char *r = json_diff(x, y, p, prefix, buf, n, an, bn);
            if (r) return r;
            continue;
        }
        char *sx = cJSON_PrintUnformatted(x), *sy = y ? cJSON_PrintUnformatted(y) : xstrdup("(missing)");
        int differ = strcmp(sx, sy) != 0;
        if (differ) snprintf(buf, n, "%s is %s in %s but %s in %s", p, sx, an, sy, bn);
        free(sx); free(sy);
        if (differ) return buf;
    }
    return NULL;
}

const char *ckpt_config_diff(const Config *a, const char *an, const Config *b, const char *bn, const char *prefix,
                             char *buf, int buflen) {
    char *ja = config_to_json(a), *jb = config_to_json(b);
    cJSON *xa = cJSON_Parse(ja), *xb = cJSON_Parse(jb);
    const char *r = json_diff(xa, xb, "", prefix, buf, buflen, an, bn);
    cJSON_Delete(xa); cJSON_Delete(xb);
    free(ja); free(jb);
    return r;
}

// ---------------------------------------------------------------- run directory
// Step number of "ckpt-<digits>.aoec", or -1.
static long ckpt_name_step(const char *name) {
    if (strncmp(name, "ckpt-", 5)) return -1;
    char *end;
    errno = 0;
    long s = strtol(name + 5, &end, 10);
    if (end == name + 5 || errno || strcmp(end, ".aoec") || s < 0) return -1;
    return s;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Sorted (descending) steps of the complete checkpoints in run_dir.
static int list_ckpts(const char *run_dir, long **steps) {
    DIR *d = opendir(run_dir);
    int n = 0, cap = 0;
    *steps = NULL;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));) {
        long s = ckpt_name_step(e->d_name);
        if (s < 0) continue;
        if (n == cap) *steps = xrealloc(*steps, sizeof(long) * (cap = cap ? 2 * cap : 16));
        (*steps)[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)  // insertion sort, newest first
        for (int j = i; j > 0 && (*steps)[j] > (*steps)[j - 1]; j--) { long t = (*steps)[j]; (*steps)[j] = (*steps)[j - 1]; (*steps)[j - 1] = t; }
    return n;
}

char *ckpt_latest(const char *run_dir) {
    char *lp = join(run_dir, "latest");
    FILE *f = fopen(lp, "r");
    free(lp);
    char name[256] = "";
    if (f) {
        if (!fgets(name, sizeof name, f)) name[0] = 0;
        fclose(f);
        name[strcspn(name, "\r\n")] = 0;
        if (ckpt_name_step(name) >= 0) {
            char *p = join(run_dir, name);
            if (file_exists(p)) return p;
            free(p);
        }
    }
    // No usable pointer (crash between the checkpoint's rename and the pointer's): every
    // ckpt-<step>.aoec is complete (it only appears by rename), so take the newest.
    long *steps;
    int n = list_ckpts(run_dir, &steps);
    char *p = NULL;
    if (n) {
        snprintf(name, sizeof name, "ckpt-%ld.aoec", steps[0]);
        p = join(run_dir, name);
    }
    free(steps);
    return p;
}

int ckpt_save_run(const char *run_dir, const Model *m, const AdamW *opt, const TrainMeta *meta, int compress, int keep,
                  char *err, int errlen) {
    char name[64];
    snprintf(name, sizeof name, "ckpt-%ld.aoec", meta->step);
    char *path = join(run_dir, name), *lp = join(run_dir, "latest");
    int rc = ckpt_save(path, m, opt, meta, compress, err, errlen);
    if (!rc) {
        AtomicFile af;
        char line[80];
        int n = snprintf(line, sizeof line, "%s\n", name);
        if (atomic_open(&af, lp) || fwrite(line, 1, n, af.f) != (size_t)n || atomic_commit(&af)) {
            int e = errno;
            if (af.f) atomic_abort(&af);
            snprintf(err, errlen, "%s: cannot update the latest pointer: %s (%s was written)", lp, strerror(e), path);
            rc = -1;
        }
    }
    if (!rc) {  // prune: keep the newest `keep` (the one just written is always among them)
        long *steps;
        int n = list_ckpts(run_dir, &steps), kept = 0;
        for (int i = 0; i < n; i++) {
            if (steps[i] == meta->step || (steps[i] < meta->step && kept < keep - 1)) {
                if (steps[i] != meta->step) kept++;
                continue;
            }
            if (steps[i] > meta->step) continue;  // newer files from an abandoned branch: leave them
            snprintf(name, sizeof name, "ckpt-%ld.aoec", steps[i]);
            char *old = join(run_dir, name);
            if (unlink(old)) warnf("%s: cannot delete old checkpoint: %s", old, strerror(errno));
            free(old);
        }
        free(steps);
    }
    free(path); free(lp);
    return rc;
}

void ckpt_clean_tmp(const char *run_dir) {
    DIR *d = opendir(run_dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (!t || (strncmp(e->d_name, "ckpt-", 5) && strncmp(e->d_name, "latest.", 7))) continue;
        char *p = join(run_dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

// ckpt_write.c — the checkpoint writer (version 2, docs/formats.md "Checkpoint") and the meta
// table helpers. The writer goes through AtomicFile (temp + fsync + rename), so a crash or a failed
// write never touches the previous file at the path. Test hooks: AOE_FAULT_WRITE_AFTER,
// AOE_TEST_KILL_IN_WRITE, AOE_TEST_HOLD_IN_WRITE (ckpt.h).
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "ckpt/ckpt_format.h"

uint32_t ckpt_crc(uint32_t crc, const void *p, uint64_t n) {
    const unsigned char *b = p;
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, b, k);
        b += k; n -= k;
    }
    return crc;
}

// ---------------------------------------------------------------- meta table (building)
static void meta_put(CkptMeta *m, const char *name, uint32_t type, uint64_t bits) {
    if (strlen(name) >= CKPT_META_NAME) die("checkpoint meta name '%s' longer than %d bytes", name, CKPT_META_NAME - 1);
    int i = 0;
    while (i < m->n && strcmp(m->it[i].name, name)) i++;  // replace an existing entry
    if (i == m->n) {
        if (m->n == CKPT_MAX_META) die("checkpoint meta: more than %d entries", CKPT_MAX_META);
        m->n++;
    }
    memset(&m->it[i], 0, sizeof m->it[i]);
    snprintf(m->it[i].name, CKPT_META_NAME, "%s", name);
    m->it[i].type = type;
    m->it[i].bits = bits;
}
void ckpt_meta_put_u64(CkptMeta *m, const char *name, uint64_t v) { meta_put(m, name, CKPT_U64, v); }
void ckpt_meta_put_i64(CkptMeta *m, const char *name, int64_t v) { meta_put(m, name, CKPT_I64, (uint64_t)v); }
void ckpt_meta_put_f64(CkptMeta *m, const char *name, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    meta_put(m, name, CKPT_F64, u);
}

// ---------------------------------------------------------------- writer
typedef struct {
    FILE *f;
    uint64_t written, fault_after, kill_after, hold_after;
    int fault, kill, hold;
} Out;

static uint64_t env_u64(const char *name, int *set) {
    const char *s = getenv(name);
    *set = s && *s;
    return *set ? strtoull(s, NULL, 10) : 0;
}

// Bytes of a k-byte write that fit before a hook armed at byte `at`.
static size_t upto(int armed, uint64_t at, uint64_t written, size_t k) {
    if (!armed || written + k <= at) return k;
    return at > written ? (size_t)(at - written) : 0;
}

// Test hook AOE_TEST_HOLD_IN_WRITE: a disk that stalls mid-write. The bytes so far reach the temp
// file; the writer sleeps (signals do not end the hold) for at most 30 s, then goes on.
static void hold_write(Out *o) {
    o->hold = 0;
    fflush(o->f);
    fprintf(stderr, "holding the checkpoint write after %llu bytes\n", (unsigned long long)o->written);
    for (int i = 0; i < 3000; i++) {
        struct timespec t = {0, 10000000};
        nanosleep(&t, NULL);
    }
}

// fwrite with the test hooks; returns 0 or -1 with errno set.
static int out_write(Out *o, const void *p, size_t n) {
    const char *b = p;
    while (n) {
        size_t k = upto(o->fault, o->fault_after, o->written, n);
        k = upto(o->kill, o->kill_after, o->written, k);
        k = upto(o->hold, o->hold_after, o->written, k);
        if (k && fwrite(b, 1, k, o->f) != k) { if (!errno) errno = EIO; return -1; }
        o->written += k; b += k; n -= k;
        if (o->hold && o->written >= o->hold_after) hold_write(o);
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
    put32(b + 116, h->n_arrays);
    put32(b + 120, h->n_meta);
    put32(b + 124, ckpt_crc(0, b, 124));
}

// Table section: the array names, then one entry per tensor (whole-model shape and offset) with
// a CRC per array (crc [P->n·na], tensor-major; zeros while the placeholder is written).
static unsigned char *table_encode(const Params *P, int na, const char *const *names, const uint32_t *crc, uint64_t *len) {
    uint64_t eb = CKPT_ENTRY_BYTES(na);
    *len = (uint64_t)na * CKPT_ARRAY_NAME + (uint64_t)P->n * eb;
    unsigned char *tb = xcalloc(*len, 1), *b = tb;
    for (int a = 0; a < na; a++, b += CKPT_ARRAY_NAME) {
        if (strlen(names[a]) >= CKPT_ARRAY_NAME) die("checkpoint array name '%s' too long", names[a]);
        memcpy(b, names[a], strlen(names[a]));
    }
    for (int i = 0; i < P->n; i++, b += eb) {
        const TensorInfo *t = &P->t[i];
        snprintf((char *)b, CKPT_NAME, "%s", t->name);
        put32(b + 64, 0);  // dtype 0 = fp32
        put32(b + 68, (uint32_t)t->ndim);
        for (int k = 0; k < 4; k++) put32(b + 72 + 4 * k, k < t->ndim ? (uint32_t)t->shape[k] : 0);
        put64(b + 88, t->goff); put64(b + 96, t->gn);
        for (int a = 0; a < na; a++) put32(b + 104 + 4 * a, crc[(size_t)i * na + a]);
    }
    return tb;
}

// The payload's bytes as they are produced: stored raw, or through one zlib stream; *crc is over
// the stored bytes.
typedef struct {
    Out *o;
    z_stream *z;
    unsigned char *buf;
    size_t cap;
    uint32_t crc;
} Sink;

static int sink_write(Sink *s, const void *p, uint64_t n, int finish) {
    if (!s->z) {
        for (const char *b = p; n;) {
            size_t k = n > (64u << 20) ? (64u << 20) : (size_t)n;
            s->crc = ckpt_crc(s->crc, b, k);
            if (out_write(s->o, b, k)) return -1;
            b += k; n -= k;
        }
        return 0;
    }
    z_stream *z = s->z;
    const unsigned char *b = p;
    do {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        z->next_in = (Bytef *)b; z->avail_in = k;
        int flush = finish && k == n ? Z_FINISH : Z_NO_FLUSH, zr;
        do {
            z->next_out = s->buf; z->avail_out = (uInt)s->cap;
            zr = deflate(z, flush);
            size_t got = s->cap - z->avail_out;
            s->crc = ckpt_crc(s->crc, s->buf, got);
            if (got && out_write(s->o, s->buf, got)) return -1;
        } while (z->avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
        if (b) b += k;
        n -= k;
    } while (n);
    return 0;
}

// Writes the payload arrays tensor by tensor in the whole-model layout (zeros in the alignment
// gaps), raw or as one zlib stream, and fills crc [P->n·na] with each tensor's CRC per array. A
// sharded tensor comes whole from gather (into one tensor's scratch). *len and *pcrc describe the
// stored bytes.
static int write_payload(Out *o, const Params *P, int na, const float *const *arr, CkptGatherFn gather,
                         int compress, uint32_t *crc, uint64_t *len, uint32_t *pcrc) {
    uint64_t start = o->written;
    z_stream z;
    memset(&z, 0, sizeof z);
    Sink s = {.o = o, .z = compress ? &z : NULL, .cap = 1 << 20};
    if (compress && deflateInit(&z, 1) != Z_OK) { errno = ENOMEM; return -1; }
    if (compress) s.buf = xmalloc(s.cap);
    size_t big = 0;
    for (int i = 0; i < P->n; i++)
        if (tensor_sharded(&P->t[i]) && P->t[i].gn > big) big = P->t[i].gn;
    float *scratch = big ? falloc(big) : NULL;
    static const float zeros[16];
    int rc = 0;
    for (int a = 0; a < na && !rc; a++)
        for (int i = 0; i < P->n && !rc; i++) {
            const TensorInfo *t = &P->t[i];
            const float *p = arr[a] + t->off;
            if (tensor_sharded(t)) {
                if (!gather) die("internal: checkpoint of a sharded tensor %s without a gather", t->name);
                gather(arr[a], t, scratch);
                p = scratch;
            }
            crc[(size_t)i * na + a] = ckpt_crc(0, p, t->gn * 4);
            uint64_t end = i + 1 < P->n ? P->t[i + 1].goff : P->gtotal;
            rc = sink_write(&s, p, t->gn * 4, 0) || sink_write(&s, zeros, (end - t->goff - t->gn) * 4, 0);
        }
    if (!rc && compress) rc = sink_write(&s, NULL, 0, 1);
    if (compress) deflateEnd(&z);
    free(s.buf);
    free(scratch);
    *len = o->written - start;
    *pcrc = s.crc;
    return rc;
}

int ckpt_save(const char *path, const Model *m, const CkptState *st, const CkptMeta *meta, int compress, char *err,
              int errlen) {
    return ckpt_save_gather(path, m, st, meta, compress, NULL, err, errlen);
}

int ckpt_save_gather(const char *path, const Model *m, const CkptState *st, const CkptMeta *meta, int compress,
                     CkptGatherFn gather, char *err, int errlen) {
    const Params *P = &m->P;
    int na = 1 + (st ? st->n : 0);
    const char *names[CKPT_MAX_ARRAYS] = {CKPT_PARAMS};
    const float *arr[CKPT_MAX_ARRAYS] = {P->w};
    for (int a = 1; a < na; a++) { names[a] = st->name[a - 1]; arr[a] = st->data[a - 1]; }
    CkptMeta mt = meta ? *meta : (CkptMeta){0};
    ckpt_meta_put_u64(&mt, "vocab", (uint64_t)m->V);
    AtomicFile af;
    if (atomic_open(&af, path)) {
        snprintf(err, errlen, "%s: cannot create temporary file: %s", path, strerror(errno));
        return -1;
    }
    Out o = {.f = af.f};
    o.fault_after = env_u64("AOE_FAULT_WRITE_AFTER", &o.fault);
    o.kill_after = env_u64("AOE_TEST_KILL_IN_WRITE", &o.kill);
    o.hold_after = env_u64("AOE_TEST_HOLD_IN_WRITE", &o.hold);
    CkptHeader h = {.version = CKPT_VERSION, .flags = compress ? CKPT_FLAG_ZLIB : 0, .n_tensors = (uint32_t)P->n,
                    .n_arrays = (uint32_t)na, .n_meta = (uint32_t)mt.n};
    char *js = config_to_json(&m->cfg);
    unsigned char hb[CKPT_HEADER_BYTES], mb[CKPT_MAX_META * CKPT_META_ENTRY];
    memset(mb, 0, sizeof mb);
    for (int i = 0; i < mt.n; i++) {
        unsigned char *e = mb + i * CKPT_META_ENTRY;
        memcpy(e, mt.it[i].name, strlen(mt.it[i].name));
        put32(e + 20, mt.it[i].type);
        put64(e + 24, mt.it[i].bits);
    }
    // the table holds each tensor's CRCs, known once the payload is written: a placeholder first
    uint32_t *tcrc = xcalloc((size_t)P->n * na + 1, sizeof(uint32_t));
    uint64_t tlen;
    unsigned char *tb = table_encode(P, na, names, tcrc, &tlen);
    const void *sec[3] = {js, mb, tb};
    uint64_t slen[3] = {strlen(js), (uint64_t)mt.n * CKPT_META_ENTRY, tlen};
    memset(hb, 0, sizeof hb);
    int rc = out_write(&o, hb, sizeof hb);  // placeholder, rewritten last
    for (int s = 0; s < 3 && !rc; s++) {
        h.off[s] = o.written; h.len[s] = slen[s];
        h.crc[s] = ckpt_crc(0, sec[s], slen[s]);
        rc = out_write(&o, sec[s], slen[s]);
    }
    if (!rc) {
        h.off[SEC_PAYLOAD] = o.written;
        h.payload_raw = (uint64_t)na * P->gtotal * 4;
        rc = write_payload(&o, P, na, arr, gather, compress, tcrc, &h.len[SEC_PAYLOAD], &h.crc[SEC_PAYLOAD]);
    }
    if (!rc) {
        free(tb);
        tb = table_encode(P, na, names, tcrc, &tlen);
        h.crc[SEC_TABLE] = ckpt_crc(0, tb, tlen);
        h.file_size = o.written;
        header_encode(hb, &h);
        if (fseeko(af.f, (off_t)h.off[SEC_TABLE], SEEK_SET) || fwrite(tb, 1, tlen, af.f) != tlen ||
            fseek(af.f, 0, SEEK_SET) || fwrite(hb, 1, sizeof hb, af.f) != sizeof hb)
            rc = -1;
    }
    free(js); free(tb); free(tcrc);
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

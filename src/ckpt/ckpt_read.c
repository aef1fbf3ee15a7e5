// ckpt_read.c — the checkpoint reader: validates the header, the file size and each section's CRC
// before trusting a field, names the byte offset of the first problem, and presents version 1
// files (fixed arrays params / AdamW m / AdamW v, fixed meta slots) like version 2 ones.
// Layout: docs/formats.md, "Checkpoint"; constants in ckpt_format.h.
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ckpt/ckpt_format.h"

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

static void meta_add(CkptFile *cf, const char *name, uint32_t type, uint64_t bits, uint64_t at) {
    CkptMetaItem *it = &cf->meta.it[cf->meta.n++];
    snprintf(it->name, CKPT_META_NAME, "%s", name);
    it->type = type; it->bits = bits; it->at = at;
}

// Version 1: 160 bytes of fixed u64 slots (docs/formats.md lists them), turned into named entries.
static void meta_v1(CkptFile *cf, const unsigned char *mb) {
    static const struct { int slot; const char *name; uint32_t type; } v1[] = {
        {0, "step", CKPT_I64}, {1, "opt.t", CKPT_I64}, {2, "rng.0", CKPT_U64}, {3, "rng.1", CKPT_U64},
        {4, "rng.2", CKPT_U64}, {5, "rng.3", CKPT_U64}, {6, "tok_hash", CKPT_U64}, {7, "vocab", CKPT_U64},
        {9, "loader.epoch", CKPT_U64}, {10, "loader.cursor", CKPT_U64}, {11, "loader.seed", CKPT_U64},
        {12, "loader.windows", CKPT_U64}, {13, "log.loss", CKPT_F64}, {14, "log.aux", CKPT_F64},
        {15, "log.steps", CKPT_I64}, {16, "log.tokens", CKPT_I64}, {17, "elapsed", CKPT_F64},
    };
    for (size_t i = 0; i < sizeof v1 / sizeof *v1; i++)
        meta_add(cf, v1[i].name, v1[i].type, get64(mb + 8 * v1[i].slot), cf->h.off[SEC_META] + 8 * v1[i].slot);
    cf->total = get64(mb + 64);
    if (cf->h.payload_raw / (3 * 4) != cf->total || cf->h.payload_raw % (3 * 4))
        ckpt_fail(cf->path, 88, "payload size %llu (expected 3 arrays of %llu floats)", (unsigned long long)cf->h.payload_raw,
                  (unsigned long long)cf->total);
}

static void meta_v2(CkptFile *cf, const unsigned char *mb) {
    for (uint32_t i = 0; i < cf->h.n_meta; i++) {
        const unsigned char *e = mb + (size_t)i * CKPT_META_ENTRY;
        uint64_t at = cf->h.off[SEC_META] + (uint64_t)i * CKPT_META_ENTRY;
        char name[CKPT_META_NAME];
        memcpy(name, e, CKPT_META_NAME);
        if (!memchr(name, 0, CKPT_META_NAME) || !name[0]) ckpt_fail(cf->path, at, "meta entry %u: name empty or not NUL-terminated", i);
        for (int k = 0; k < cf->meta.n; k++)
            if (!strcmp(cf->meta.it[k].name, name)) ckpt_fail(cf->path, at, "meta entry %s appears twice", name);
        uint32_t type = get32(e + 20);
        if (type > CKPT_F64) ckpt_fail(cf->path, at + 20, "meta %s: type %u (expected 0 u64, 1 i64, 2 f64)", name, type);
        meta_add(cf, name, type, get64(e + 24), at);
    }
}

// Header fields and section bounds (after magic, version and header CRC).
static void header_decode(CkptFile *cf, const unsigned char *hb) {
    CkptHeader *h = &cf->h;
    const char *path = cf->path;
    h->flags = get32(hb + 12);
    h->file_size = get64(hb + 16);
    for (int s = 0; s < N_SEC; s++) { h->off[s] = get64(hb + 24 + 16 * s); h->len[s] = get64(hb + 32 + 16 * s); }
    h->payload_raw = get64(hb + 88);
    h->n_tensors = get32(hb + 96);
    for (int s = 0; s < N_SEC; s++) h->crc[s] = get32(hb + 100 + 4 * s);
    h->n_arrays = h->version == 1 ? 3 : get32(hb + 116);
    h->n_meta = h->version == 1 ? 0 : get32(hb + 120);
    if (cf->size != h->file_size)
        ckpt_fail(path, cf->size < h->file_size ? cf->size : h->file_size, "file is %llu bytes but the header says %llu (%s)",
                  (unsigned long long)cf->size, (unsigned long long)h->file_size,
                  cf->size < h->file_size ? "truncated" : "trailing garbage");
    if (h->flags & ~CKPT_FLAG_ZLIB) ckpt_fail(path, 12, "unknown flags 0x%x (expected 0 or 1)", h->flags);
    if (h->n_arrays < 1 || h->n_arrays > CKPT_MAX_ARRAYS) ckpt_fail(path, 116, "%u arrays (expected 1..%d)", h->n_arrays, CKPT_MAX_ARRAYS);
    if (h->n_meta > CKPT_MAX_META) ckpt_fail(path, 120, "%u meta entries (expected at most %d)", h->n_meta, CKPT_MAX_META);
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
    uint64_t meta_len = h->version == 1 ? CKPT_V1_META_BYTES : (uint64_t)h->n_meta * CKPT_META_ENTRY;
    if (h->len[SEC_META] != meta_len)
        ckpt_fail(path, 48, "meta section is %llu bytes (expected %llu)", (unsigned long long)h->len[SEC_META], (unsigned long long)meta_len);
    cf->n_arrays = (int)h->n_arrays;
    cf->entry_bytes = h->version == 1 ? CKPT_V1_ENTRY_BYTES : CKPT_ENTRY_BYTES(h->n_arrays);
    uint64_t names_len = h->version == 1 ? 0 : (uint64_t)h->n_arrays * CKPT_ARRAY_NAME;
    if (h->len[SEC_TABLE] != names_len + (uint64_t)h->n_tensors * cf->entry_bytes)
        ckpt_fail(path, 64, "table section is %llu bytes (expected %llu for %u arrays and %u tensors)",
                  (unsigned long long)h->len[SEC_TABLE], (unsigned long long)(names_len + (uint64_t)h->n_tensors * cf->entry_bytes),
                  h->n_arrays, h->n_tensors);
    if (h->len[SEC_CONFIG] > (16u << 20)) ckpt_fail(path, 32, "config section of %llu bytes (expected < 16 MiB)", (unsigned long long)h->len[SEC_CONFIG]);
}

// Array names (v2) and tensor entries.
static void table_decode(CkptFile *cf, const unsigned char *tb) {
    const CkptHeader *h = &cf->h;
    const char *path = cf->path;
    uint64_t t0 = h->off[SEC_TABLE];
    if (h->version == 1) {
        static const char *v1[3] = {CKPT_PARAMS, "adamw.m", "adamw.v"};
        for (int a = 0; a < 3; a++) snprintf(cf->array_name[a], CKPT_ARRAY_NAME, "%s", v1[a]);
    } else {
        for (int a = 0; a < cf->n_arrays; a++, tb += CKPT_ARRAY_NAME) {
            char *nm = cf->array_name[a];
            memcpy(nm, tb, CKPT_ARRAY_NAME);
            if (!memchr(nm, 0, CKPT_ARRAY_NAME) || !nm[0]) ckpt_fail(path, t0 + a * CKPT_ARRAY_NAME, "array %d: name empty or not NUL-terminated", a);
            if (a == 0 && strcmp(nm, CKPT_PARAMS)) ckpt_fail(path, t0, "array 0 is \"%s\" (expected \"%s\")", nm, CKPT_PARAMS);
            for (int b = 0; b < a; b++)
                if (!strcmp(cf->array_name[b], nm)) ckpt_fail(path, t0 + a * CKPT_ARRAY_NAME, "array name %s appears twice", nm);
        }
        t0 += (uint64_t)cf->n_arrays * CKPT_ARRAY_NAME;
    }
    cf->t = xcalloc(h->n_tensors + 1, sizeof(CkptTensor));
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const unsigned char *e = tb + (size_t)i * cf->entry_bytes;
        uint64_t eo = t0 + (uint64_t)i * cf->entry_bytes;
        CkptTensor *t = &cf->t[i];
        memcpy(t->name, e, CKPT_NAME);
        if (!memchr(t->name, 0, CKPT_NAME)) ckpt_fail(path, eo, "tensor %u: name not NUL-terminated", i);
        t->dtype = get32(e + 64); t->ndim = get32(e + 68);
        for (int k = 0; k < 4; k++) t->shape[k] = get32(e + 72 + 4 * k);
        t->off = get64(e + 88); t->n = get64(e + 96);
        for (int a = 0; a < cf->n_arrays; a++) t->crc[a] = get32(e + 104 + 4 * a);
        if (t->dtype != 0) ckpt_fail(path, eo + 64, "tensor %s: dtype %u (expected 0 = fp32)", t->name, t->dtype);
        if (t->ndim < 1 || t->ndim > 4) ckpt_fail(path, eo + 68, "tensor %s: %u dimensions (expected 1..4)", t->name, t->ndim);
        uint64_t n = 1;
        for (uint32_t k = 0; k < t->ndim; k++) n = t->shape[k] && n > UINT64_MAX / t->shape[k] ? 0 : n * t->shape[k];
        if (n != t->n || t->off > cf->total || t->n > cf->total - t->off)
            ckpt_fail(path, eo + 88, "tensor %s: %llu elements at %llu (expected the product of its shape, %llu, within %llu)",
                      t->name, (unsigned long long)t->n, (unsigned long long)t->off, (unsigned long long)n,
                      (unsigned long long)cf->total);
        // the reader streams tensors in table order (writers append them)
        uint64_t prev_end = i ? cf->t[i - 1].off + cf->t[i - 1].n : 0;
        if (t->off < prev_end)
            ckpt_fail(path, eo + 88, "tensor %s at %llu overlaps or precedes the tensor before it (expected offset >= %llu)",
                      t->name, (unsigned long long)t->off, (unsigned long long)prev_end);
    }
}

void ckpt_file_open(CkptFile *cf, const char *path) {
    memset(cf, 0, sizeof *cf);
    cf->path = path;
    cf->meta.path = path;
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
    if (h->version != 1 && h->version != CKPT_VERSION)
        ckpt_fail(path, 8, "unsupported checkpoint version %u (this aoe reads versions 1 and %d)", h->version, CKPT_VERSION);
    uint32_t hcrc = ckpt_crc(0, hb, 124);
    if (hcrc != get32(hb + 124))
        ckpt_fail(path, 124, "CRC mismatch in header (expected 0x%08x, got 0x%08x)", get32(hb + 124), hcrc);
    header_decode(cf, hb);

    cf->config_json = xmalloc(h->len[SEC_CONFIG] + 1);
    read_at(cf, h->off[SEC_CONFIG], cf->config_json, h->len[SEC_CONFIG], "config");
    cf->config_json[h->len[SEC_CONFIG]] = 0;
    check_crc(cf, SEC_CONFIG, cf->config_json, "config");
    char err[160];
    if (config_from_json_text(&cf->cfg, cf->config_json, path, err, sizeof err))
        ckpt_fail(path, h->off[SEC_CONFIG], "config section: %s", err);
    // the model rules training checked (model_validate_config): a config that passes its CRC but
    // not these is refused here, not by a layer's internal assert
    char why[512];
    const char *bad = model_check_config(&cf->cfg, why, sizeof why);
    if (bad) ckpt_fail(path, h->off[SEC_CONFIG], "config section: %s", bad);

    unsigned char *mb = xmalloc(h->len[SEC_META] + 1);
    read_at(cf, h->off[SEC_META], mb, h->len[SEC_META], "meta");
    check_crc(cf, SEC_META, mb, "meta");
    if (h->version == 1) meta_v1(cf, mb);
    else {
        meta_v2(cf, mb);
        uint64_t per = (uint64_t)cf->n_arrays * 4;
        cf->total = h->payload_raw / per;
        if (h->payload_raw % per)
            ckpt_fail(path, 88, "payload size %llu (expected a multiple of %d arrays x 4 bytes)", (unsigned long long)h->payload_raw, cf->n_arrays);
    }
    free(mb);
    cf->V = (int)ckpt_meta_u64(&cf->meta, "vocab", 1, 1u << 20);
    ckpt_meta_step(&cf->meta);  // range-checked here so that no reader computes with a wild step
    if (!(h->flags & CKPT_FLAG_ZLIB) && h->len[SEC_PAYLOAD] != h->payload_raw)
        ckpt_fail(path, h->off[SEC_PAYLOAD], "payload is %llu bytes (expected %llu)", (unsigned long long)h->len[SEC_PAYLOAD], (unsigned long long)h->payload_raw);

    unsigned char *tb = xmalloc(h->len[SEC_TABLE] + 1);
    read_at(cf, h->off[SEC_TABLE], tb, h->len[SEC_TABLE], "tensor table");
    check_crc(cf, SEC_TABLE, tb, "tensor table");
    table_decode(cf, tb);
    free(tb);
}

void ckpt_file_close(CkptFile *cf) {
    if (cf->f) fclose(cf->f);
    free(cf->config_json); free(cf->t);
    memset(cf, 0, sizeof *cf);
}

void ckpt_file_check_table(const CkptFile *cf, const Params *P) {
    uint64_t t0 = cf->h.off[SEC_TABLE] + (cf->h.version == 1 ? 0 : (uint64_t)cf->n_arrays * CKPT_ARRAY_NAME);
    if ((int)cf->h.n_tensors != P->n || cf->total != P->gtotal)
        ckpt_fail(cf->path, t0, "tensor table has %u tensors / %llu floats (expected %d / %zu for this config)",
                  cf->h.n_tensors, (unsigned long long)cf->total, P->n, P->gtotal);
    for (int i = 0; i < P->n; i++) {
        const CkptTensor *c = &cf->t[i];
        const TensorInfo *t = &P->t[i];
        int same = !strcmp(c->name, t->name) && (int)c->ndim == t->ndim && c->off == t->goff && c->n == t->gn;
        for (int k = 0; same && k < t->ndim; k++) same = (int)c->shape[k] == t->shape[k];
        if (!same)
            ckpt_fail(cf->path, t0 + (uint64_t)i * cf->entry_bytes, "tensor %d is %s (%llu elements at %llu), expected %s (%zu at %zu)",
                      i, c->name, (unsigned long long)c->n, (unsigned long long)c->off, t->name, t->gn, t->goff);
    }
}

// Records one CRC failure: exits 2 (report = 0) or prints it and counts it (inspect).
static void bad(CkptFile *cf, int report, uint64_t off, const char *msg) {
    if (!report) ckpt_fail(cf->path, off, "%s", msg);
    printf("  BAD  byte %llu: %s\n", (unsigned long long)off, msg);
    if (!cf->n_bad++) {
        cf->bad_off = off;
        snprintf(cf->bad_msg, sizeof cf->bad_msg, "%s", msg);
    }
}

static void tensor_crc(CkptFile *cf, int a, uint32_t i, const float *p, int report) {
    const CkptTensor *t = &cf->t[i];
    uint32_t got = ckpt_crc(0, p, t->n * 4);
    if (got == t->crc[a]) return;
    int zip = cf->h.flags & CKPT_FLAG_ZLIB;
    char label[CKPT_ARRAY_NAME + 4] = "", msg[300];
    if (a) snprintf(label, sizeof label, " (%s)", cf->array_name[a]);
    uint64_t raw = ((uint64_t)a * cf->total + t->off) * 4;
    if (zip)
        snprintf(msg, sizeof msg, "CRC mismatch in tensor %s%s at byte %llu of the inflated payload (expected 0x%08x, got 0x%08x)",
                 t->name, label, (unsigned long long)raw, t->crc[a], got);
    else
        snprintf(msg, sizeof msg, "CRC mismatch in tensor %s%s (expected 0x%08x, got 0x%08x)", t->name, label, t->crc[a], got);
    bad(cf, report, cf->h.off[SEC_PAYLOAD] + (zip ? 0 : raw), msg);
}

// The payload as a stream of (inflated) bytes, read in order; crc is over the stored bytes.
typedef struct {
    CkptFile *cf;
    int zip, broken;
    z_stream z;
    unsigned char *in;
    size_t cap;
    uint64_t left_in;
    uint32_t crc;
} Src;

// n bytes into p (NULL: read and drop them). Returns 0, or -1 once a compressed stream is broken.
static int src_read(Src *s, void *p, uint64_t n) {
    static float sink[4096];
    CkptFile *cf = s->cf;
    if (!p) {
        for (; n && !s->broken; ) {
            uint64_t k = n < sizeof sink ? n : sizeof sink;
            if (src_read(s, sink, k)) return -1;
            n -= k;
        }
        return s->broken ? -1 : 0;
    }
    if (!s->zip) {
        off_t at = ftello(cf->f);
        if (n && fread(p, 1, n, cf->f) != n)
            ckpt_fail(cf->path, (uint64_t)at, "cannot read payload (%llu bytes): %s", (unsigned long long)n,
                      ferror(cf->f) ? strerror(errno) : "unexpected end of file");
        s->crc = ckpt_crc(s->crc, p, n);
        return 0;
    }
    z_stream *z = &s->z;
    unsigned char *o = p;
    while (n && !s->broken) {
        if (z->avail_in == 0 && s->left_in) {
            size_t k = s->left_in < s->cap ? (size_t)s->left_in : s->cap;
            if (fread(s->in, 1, k, cf->f) != k)
                ckpt_fail(cf->path, cf->h.off[SEC_PAYLOAD] + z->total_in, "cannot read payload: unexpected end of file");
            s->crc = ckpt_crc(s->crc, s->in, k);
            s->left_in -= k;
            z->next_in = s->in; z->avail_in = (uInt)k;
        }
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        z->next_out = o; z->avail_out = k;
        int zr = inflate(z, Z_NO_FLUSH);
        o += k - z->avail_out; n -= k - z->avail_out;
        if (zr == Z_STREAM_END && n) zr = Z_DATA_ERROR;
        if (zr != Z_OK && zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && s->left_in)) s->broken = 1;
        if (zr == Z_BUF_ERROR && !s->left_in && !z->avail_in) s->broken = 1;
    }
    return s->broken ? -1 : 0;
}

void ckpt_file_read_payload(CkptFile *cf, float *const *dst, const Params *P, int verify_all, int report) {
    uint64_t bytes = cf->total * 4, p0 = cf->h.off[SEC_PAYLOAD], big = 0;
    int all = verify_all;
    if (!all) { all = 1; for (int a = 0; a < cf->n_arrays; a++) all &= dst[a] != NULL; }  // the payload CRC needs every array
    for (uint32_t i = 0; i < cf->h.n_tensors; i++) big = cf->t[i].n > big ? cf->t[i].n : big;
    float *scratch = NULL;  // one whole tensor: read only to be checked, or of which P keeps slices
    Src s = {.cf = cf, .zip = cf->h.flags & CKPT_FLAG_ZLIB, .cap = 1 << 20, .left_in = cf->h.len[SEC_PAYLOAD]};
    if (s.zip) {
        if (inflateInit(&s.z) != Z_OK) die("out of memory starting zlib");
        if (fseeko(cf->f, (off_t)p0, SEEK_SET)) ckpt_fail(cf->path, p0, "cannot seek: %s", strerror(errno));
        s.in = xmalloc(s.cap);
    }
    // Tensor by tensor in file order (table_decode checked the order), so a sharded model never
    // holds more than one whole tensor besides its own slices.
    for (int a = 0; a < cf->n_arrays && !s.broken; a++) {
        if (!s.zip) {
            if (!dst[a] && !verify_all) continue;
            if (fseeko(cf->f, (off_t)(p0 + (uint64_t)a * bytes), SEEK_SET)) ckpt_fail(cf->path, p0, "cannot seek: %s", strerror(errno));
        }
        uint64_t at = 0;  // floats of this array read so far
        for (uint32_t i = 0; i <= cf->h.n_tensors; i++) {
            const CkptTensor *t = &cf->t[i];
            uint64_t off = i < cf->h.n_tensors ? t->off : cf->total;
            // the alignment gap before tensor i goes where the same gap is in dst's layout
            const TensorInfo *pt = P && i < cf->h.n_tensors ? &P->t[i] : NULL, *pp = P && i ? &P->t[i - 1] : NULL;
            uint64_t lo_at = pp ? pp->off + pp->n : at, lo_next = P ? (pt ? pt->off : P->total) : off;
            int keep = dst[a] && lo_next - lo_at == off - at && !(pp && tensor_sharded(pp));
            if (src_read(&s, keep ? dst[a] + lo_at : NULL, (off - at) * 4) || i == cf->h.n_tensors) break;
            int slice = dst[a] && pt && tensor_sharded(pt);
            float *p = dst[a] && !slice ? dst[a] + (pt ? pt->off : t->off) : (scratch ? scratch : (scratch = falloc(big)));
            if (src_read(&s, p, t->n * 4)) break;
            tensor_crc(cf, a, i, p, report);
            if (slice) memcpy(dst[a] + pt->off, p + t->n / pt->shape[0] * pt->slice0, pt->n * sizeof(float));
            at = off + t->n;
        }
    }
    char msg[200];
    if (!s.zip) {
        if (all && s.crc != cf->h.crc[SEC_PAYLOAD]) {
            snprintf(msg, sizeof msg, "CRC mismatch in payload (expected 0x%08x, got 0x%08x)", cf->h.crc[SEC_PAYLOAD], s.crc);
            bad(cf, report, p0, msg);
        }
        free(scratch);
        return;
    }
    while (s.left_in) {  // finish the stored-bytes CRC
        size_t k = s.left_in < s.cap ? (size_t)s.left_in : s.cap;
        if (fread(s.in, 1, k, cf->f) != k) break;
        s.crc = ckpt_crc(s.crc, s.in, k);
        s.left_in -= k;
    }
    if (s.crc != cf->h.crc[SEC_PAYLOAD]) {
        snprintf(msg, sizeof msg, "CRC mismatch in compressed payload (expected 0x%08x, got 0x%08x)", cf->h.crc[SEC_PAYLOAD], s.crc);
        bad(cf, report, p0, msg);
    } else if (s.broken) {
        snprintf(msg, sizeof msg, "corrupt compressed payload (zlib: %s)", s.z.msg ? s.z.msg : "stream ended early");
        bad(cf, report, p0 + s.z.total_in, msg);
    }
    inflateEnd(&s.z);
    free(s.in); free(scratch);
}

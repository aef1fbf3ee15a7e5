// kernels_bf16.c — the bf16 path of kernels.h: oneDNN matmul on bf16 operands with fp32
// accumulation and an fp32 C, the bf16 copies of registered weight blocks, the CPU check.
//
// Primitives, created on first use and kept for the process, come in two kinds. Tiles whose
// dimensions are all multiples of 64 with at most 256 rows (attention's row blocks) get one per
// shape: oneDNN's brgemm ("brg:avx512_core_bf16"), fastest on small products. Every other
// product runs on a primitive whose dimensions and leading dimensions are given at execution
// (DNNL_RUNTIME_DIM_VAL), one per (transposes, alpha, beta, threads): oneDNN 2.6 serves those
// with its gemm kernels ("gemm:jit", within a few % of brgemm from 128 rows up). Expert products
// have other row counts every step (and their weight gradients other reduction lengths): one
// primitive per shape would grow without bound, each with its own JIT code. Which kind runs is a
// function of the call's shape only, so results are reproducible and resumable.
//
// Threads: oneDNN (Debian build) uses the same GNU OpenMP runtime as BLIS and the layers; a
// product from serial code runs on the configured threads, one from inside a parallel loop
// (matmul_st) on its calling thread only (the thread's OpenMP thread count is set to 1 around
// creation and execution), so cores are never oversubscribed.
#include <cpuid.h>
#include <dnnl.h>
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/kernels.h"
#include "util/common.h"
#include "util/mem.h"

enum { TILE = 64, TILE_MAX_M = 256, MAX_SHADOWS = 64, MAX_OPERANDS = 16, MAX_ACTS = 1024, MAX_PRIMS = 4096 };
#define CONVERT_MAX (1L << 21)  // elements of an operand rounded per call (4 MB of bf16)

// Round to nearest even, NaN kept quiet, denormal inputs flushed to signed zero: exactly what
// AVX512-BF16's VCVTNEPS2BF16 does, so the vector path below and this one agree bit for bit.
uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    if (!(u & 0x7f800000u)) return (uint16_t)((u >> 16) & 0x8000);            // zero, denormal
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void round_row(uint16_t *d, const float *s, long n) {
    long j = 0;
#ifdef __AVX512BF16__
    for (; j + 16 <= n; j += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + j));
        _mm256_storeu_si256((__m256i *)(d + j), (__m256i)h);
    }
#endif
#pragma omp simd
    for (long k = j; k < n; k++) d[k] = bf16_round(s[k]);
}

// rows x cols of src (row stride ld) into dst (row stride dld); on all threads when parallel
static void to_bf16(uint16_t *dst, long dld, const float *src, long ld, long rows, long cols, int parallel) {
    if (rows == 1 && parallel && cols > 65536) {  // one long row (a whole block): split it
        long nt = kernels_threads();
#pragma omp parallel for schedule(static)
        for (long t = 0; t < nt; t++) round_row(dst + cols * t / nt, src + cols * t / nt, cols * (t + 1) / nt - cols * t / nt);
        return;
    }
#pragma omp parallel for schedule(static) if (parallel && rows * cols > 65536)
    for (long i = 0; i < rows; i++) round_row(dst + i * dld, src + i * ld, cols);
}

// ---- CPU ----
int kernels_cpu_has_bf16(void) {
    const char *fake = getenv("AOE_TEST_NO_BF16");  // tests only: a CPU without native bf16
    if (fake && *fake && strcmp(fake, "0")) return 0;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    int avx512_bf16 = (a >> 5) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return avx512_bf16;
    int amx_bf16 = (d >> 22) & 1;
    return avx512_bf16 || amx_bf16;
}

// ---- bf16 copies: weight blocks (for the process) and operand blocks (for a scope) ----
typedef struct {
    const float *w;  // NULL = free slot
    size_t n, cap;
    uint16_t *h;     // bf16 copy (NULL for weights in fp32 precision); operand slots keep it for reuse
} Copy;
static Copy weights[MAX_SHADOWS], operands[MAX_OPERANDS];

void kernels_weights_register(const float *w, size_t n) {
    for (int i = 0; i < MAX_SHADOWS; i++)
        if (!weights[i].w) {
            weights[i] = (Copy){w, n, 0, NULL};
            kernels_weights_changed(w);
            return;
        }
    // all slots taken: this block is converted on every call instead (same results, slower)
}

void kernels_weights_unregister(const float *w) {
    if (!w) return;
    for (int i = 0; i < MAX_SHADOWS; i++)
        if (weights[i].w == w) { free(weights[i].h); weights[i] = (Copy){0}; }
}

void kernels_weights_changed(const float *w) {
    for (int i = 0; i < MAX_SHADOWS; i++) {
        Copy *s = &weights[i];
        if (!s->w || (w && s->w != w)) continue;
        if (kernels_precision() != PREC_BF16) { free(s->h); s->h = NULL; continue; }
        if (!s->h) s->h = xmalloc(sizeof(uint16_t) * (s->n ? s->n : 1));
        to_bf16(s->h, 0, s->w, 0, 1, (long)s->n, 1);
    }
}

void kernels_operand_begin(const float *x, size_t n) {
    if (kernels_precision() != PREC_BF16 || act_is_bf16(x)) return;  // an activation block is bf16 already
    Copy *s = NULL;
    for (int i = 0; i < MAX_OPERANDS && !s; i++)  // a free slot, one whose buffer fits first
        if (!operands[i].w && operands[i].cap >= n) s = &operands[i];
    for (int i = 0; i < MAX_OPERANDS && !s; i++)
        if (!operands[i].w) s = &operands[i];
    if (!s) die("internal: more than %d operand blocks at once", MAX_OPERANDS);
    if (s->cap < n) { free(s->h); s->h = xmalloc(sizeof(uint16_t) * n); s->cap = n; }
    s->w = x;
    s->n = n;
    to_bf16(s->h, 0, x, 0, 1, (long)n, 1);
}

void kernels_operand_end(const float *x) {
    for (int i = 0; i < MAX_OPERANDS; i++)
        if (operands[i].w == x) { operands[i].w = NULL; return; }
}

// ---- activation blocks (kernels.h): handle [key, key + n) -> bf16 storage h ----
typedef struct {
    float *key;
    size_t n;
    uint16_t *h;
} Act;
static Act acts[MAX_ACTS];
static int n_acts;  // slots in use are acts[0 .. n_acts)

static const Act *act_find(const float *p) {
    for (int i = 0; i < n_acts; i++)
        if (p >= acts[i].key && p < acts[i].key + acts[i].n) return &acts[i];
    return NULL;
}

float *act_alloc(size_t n) {
    if (kernels_precision() != PREC_BF16 || !n || n_acts == MAX_ACTS) return falloc(n);
    void *key = mmap(NULL, n * sizeof(float), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (key == MAP_FAILED) return falloc(n);  // fp32 storage: same results, more memory
    // falloc: zeroed, 64-byte aligned, and counted by the memory estimate (util/mem.h)
    acts[n_acts++] = (Act){key, n, (uint16_t *)falloc((n + 1) / 2)};
    return key;
}

void act_free(float *a) {
    for (int i = 0; i < n_acts; i++)
        if (acts[i].key == a) {
            munmap(a, acts[i].n * sizeof(float));
            free(acts[i].h);
            acts[i] = acts[--n_acts];
            return;
        }
    free(a);
}

int act_is_bf16(const float *p) { return n_acts && act_find(p); }

float *act_out(float *a, float *scratch) { return act_is_bf16(a) ? scratch : a; }

void act_store(float *a, const float *src, size_t n) {
    const Act *s = n_acts ? act_find(a) : NULL;
    if (!s) {
        if (a != src) memcpy(a, src, sizeof(float) * n);
    } else if (n > 65536 && !omp_in_parallel()) {
        to_bf16(s->h + (a - s->key), 0, src, 0, 1, (long)n, 1);
    } else {  // rows stored one by one inside parallel loops: no OpenMP region per call
        round_row(s->h + (a - s->key), src, (long)n);
    }
}

static const uint16_t *copy_of(const float *p) {
    const Act *a = n_acts ? act_find(p) : NULL;
    if (a) return a->h + (p - a->key);
    for (int i = 0; i < MAX_OPERANDS; i++) {
        const Copy *s = &operands[i];
        if (s->w && p >= s->w && p < s->w + s->n) return s->h + (p - s->w);
    }
    for (int i = 0; i < MAX_SHADOWS; i++) {
        const Copy *s = &weights[i];
        if (s->h && p >= s->w && p < s->w + s->n) return s->h + (p - s->w);
    }
    return NULL;
}

// ---- oneDNN primitives ----
typedef struct {
    int M, N, K, lda, ldb, ldc, ta, tb, nthr;  // M = N = K = lda = ldb = ldc = -1: given at execution
    float alpha, beta;
} Key;
typedef struct {
    Key k;
    dnnl_primitive_t p;
    size_t scratch;  // bytes of user scratchpad
} Prim;

static dnnl_engine_t engine;
static Prim *prims;
static int n_prims, cap_prims;
static omp_lock_t prim_lock;
static char last_impl[64] = "none";

#define DNNL_OK(call) do { dnnl_status_t st_ = (call); \
    if (st_ != dnnl_success) die("oneDNN: %s failed (status %d)", #call, (int)st_); } while (0)

static void md_init(dnnl_memory_desc_t *md, long rows, long cols, long ld, int t, dnnl_data_type_t dt);

// Whether oneDNN can build a bf16 matmul on this CPU at all: natively (AVX512_BF16, AMX-BF16) or
// emulated on AVX512; below that (or with ONEDNN_MAX_CPU_ISA capping it) it cannot, and the run
// stops here with one line instead of at its first product.
static void bf16_probe(void) {
    dnnl_memory_desc_t a, b, c;
    md_init(&a, 16, 16, 16, 0, dnnl_bf16);
    md_init(&b, 16, 16, 16, 0, dnnl_bf16);
    md_init(&c, 16, 16, 16, 0, dnnl_f32);
    dnnl_matmul_desc_t desc;
    DNNL_OK(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c));
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL);
    if (st == dnnl_unimplemented) {
        const dnnl_version_t *v = dnnl_version();
        die_input("bf16 precision: oneDNN %d.%d has no bf16 matrix product on this CPU (it needs AVX512_BF16 or "
                  "AMX-BF16, or AVX512 to emulate them); use fp32 (train.precision=fp32, or --precision fp32 for "
                  "eval, sample and bench)", v->major, v->minor);
    }
    DNNL_OK(st);
    dnnl_primitive_desc_destroy(pd);
}

void kernels_bf16_init(void) {
    if (engine) return;
    DNNL_OK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    omp_init_lock(&prim_lock);
    if (!mem_dry) bf16_probe();  // a memory estimate runs no product
}

// Row-major [rows, cols] with leading dimension ld, stored transposed when t (as [cols, rows]);
// negative values: given at execution.
static void md_init(dnnl_memory_desc_t *md, long rows, long cols, long ld, int t, dnnl_data_type_t dt) {
    long R = DNNL_RUNTIME_DIM_VAL;
    rows = rows < 0 ? R : rows; cols = cols < 0 ? R : cols; ld = ld < 0 ? R : ld;
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {t ? 1 : ld, t ? ld : 1};
    DNNL_OK(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides));
}

static Prim *prim_get(const Key *k) {
    omp_set_lock(&prim_lock);
    for (int i = 0; i < n_prims; i++)
        if (!memcmp(&prims[i].k, k, sizeof *k)) { omp_unset_lock(&prim_lock); return &prims[i]; }
    // pointers into prims are handed out: grow by a fresh block only when full (never realloc)
    if (n_prims == cap_prims) {  // bounded by the tile rule above; never reached in practice
        if (cap_prims) die("internal: more than %d oneDNN primitives", cap_prims);
        cap_prims = MAX_PRIMS;
        prims = xcalloc(cap_prims, sizeof *prims);
    }
    dnnl_memory_desc_t a, b, c;
    md_init(&a, k->M, k->K, k->lda, k->ta, dnnl_bf16);
    md_init(&b, k->K, k->N, k->ldb, k->tb, dnnl_bf16);
    md_init(&c, k->M, k->N, k->ldc, 0, dnnl_f32);
    dnnl_matmul_desc_t desc;
    DNNL_OK(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c));
    dnnl_primitive_attr_t attr;
    DNNL_OK(dnnl_primitive_attr_create(&attr));
    DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (k->alpha != 1.0f) DNNL_OK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha));
    if (k->beta != 0.0f) {
        dnnl_post_ops_t po;
        DNNL_OK(dnnl_post_ops_create(&po));
        DNNL_OK(dnnl_post_ops_append_sum(po, k->beta));
        DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    dnnl_primitive_desc_t pd;
    DNNL_OK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    Prim *p = &prims[n_prims];
    p->k = *k;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(last_impl, sizeof last_impl, "%s", impl);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->scratch = smd ? dnnl_memory_desc_get_size(smd) : 0;
    DNNL_OK(dnnl_primitive_create(&p->p, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    n_prims++;
    omp_unset_lock(&prim_lock);
    return p;
}

const char *kernels_bf16_impl(void) { return last_impl; }

// Per-thread buffers: converted operands and oneDNN's scratchpad.
static __thread void *tbuf[3];
static __thread size_t tcap[3];
static void *tscratch(int i, size_t bytes) {
    if (bytes > tcap[i]) {
        free(tbuf[i]);
        tcap[i] = bytes + bytes / 4 + 4096;
        tbuf[i] = xmalloc(tcap[i]);
    }
    return tbuf[i];
}
static __thread dnnl_stream_t tstream;

// Executes prim on A (bf16 [M,K] or transposed), B (bf16), C (fp32).
static void prim_run(const Prim *p, int M, int N, int K, int lda, int ldb, int ldc, const uint16_t *A,
                     const uint16_t *B, float *C) {
    const Key *k = &p->k;
    if (!tstream) DNNL_OK(dnnl_stream_create(&tstream, engine, dnnl_stream_default_flags));
    dnnl_memory_desc_t a, b, c, s;
    md_init(&a, M, K, lda, k->ta, dnnl_bf16);
    md_init(&b, K, N, ldb, k->tb, dnnl_bf16);
    md_init(&c, M, N, ldc, 0, dnnl_f32);
    dnnl_dims_t sd = {(long)(p->scratch ? p->scratch : 1)};
    DNNL_OK(dnnl_memory_desc_init_by_tag(&s, 1, sd, dnnl_u8, dnnl_a));
    dnnl_memory_t ma, mb, mc, ms;
    DNNL_OK(dnnl_memory_create(&ma, &a, engine, (void *)A));
    DNNL_OK(dnnl_memory_create(&mb, &b, engine, (void *)B));
    DNNL_OK(dnnl_memory_create(&mc, &c, engine, C));
    DNNL_OK(dnnl_memory_create(&ms, &s, engine, tscratch(2, p->scratch ? p->scratch : 1)));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_SCRATCHPAD, ms}};
    DNNL_OK(dnnl_primitive_execute(p->p, tstream, 4, args));
    DNNL_OK(dnnl_stream_wait(tstream));
    dnnl_memory_destroy(ma); dnnl_memory_destroy(mb); dnnl_memory_destroy(mc); dnnl_memory_destroy(ms);
}

// An fp32 operand op(X) of rows x cols (stored transposed when t) as bf16: the weight copy when
// X lies in a registered block, else converted into per-thread buffer `slot` (leading dimension
// compacted). *ld gets the leading dimension of what is returned.
static const uint16_t *operand(const float *X, int ldx, int rows, int cols, int t, int slot, int serial, int *ld) {
    const uint16_t *h = copy_of(X);
    if (h) { *ld = ldx; return h; }
    long r = t ? cols : rows, c = t ? rows : cols;  // stored shape
    uint16_t *buf = tscratch(slot, sizeof(uint16_t) * (size_t)r * c);
    to_bf16(buf, c, X, ldx, r, c, serial);
    *ld = (int)c;
    return buf;
}

// C = alpha op(A)·op(B) + beta C with bf16 operands, fp32 accumulation; serial = 1: the calling
// code is serial and the product may use all threads.
void matmul_bf16(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                 int M, int N, int K, int ta, int tb, float alpha, float beta, int serial) {
    if (!engine) die("internal: bf16 product before kernels_set_precision");
    // An operand rounded per call is rounded into a per-thread buffer: keep those small (peak RSS)
    // by splitting a large product into row blocks of C (large A) or column blocks (large B).
    if ((long)M * K > CONVERT_MAX && M > 32 && !copy_of(A)) {
        int mc = (int)(CONVERT_MAX / K) & ~15;
        mc = mc < 16 ? 16 : mc;
        for (int i = 0; i < M; i += mc)
            matmul_bf16(C + (long)i * ldc, ldc, A + (ta ? i : (long)i * lda), lda, B, ldb, M - i < mc ? M - i : mc, N, K,
                        ta, tb, alpha, beta, serial);
        return;
    }
    if ((long)K * N > CONVERT_MAX && N > 32 && !copy_of(B)) {
        int nc = (int)(CONVERT_MAX / K) & ~15;
        nc = nc < 16 ? 16 : nc;
        for (int j = 0; j < N; j += nc)
            matmul_bf16(C + j, ldc, A, lda, B + (tb ? (long)j * ldb : j), ldb, M, N - j < nc ? N - j : nc, K,
                        ta, tb, alpha, beta, serial);
        return;
    }
    int la, lb;
    const uint16_t *a = operand(A, lda, M, K, ta, 0, serial, &la);
    const uint16_t *b = operand(B, ldb, K, N, tb, 1, serial, &lb);
    int saved = omp_get_max_threads();
    if (!serial) omp_set_num_threads(1);
    int nthr = serial ? kernels_threads() : 1;
    int tile = M <= TILE_MAX_M && M % TILE == 0 && N % TILE == 0 && K % TILE == 0;
    Key k = tile ? (Key){M, N, K, la, lb, ldc, ta, tb, nthr, alpha, beta}
                 : (Key){-1, -1, -1, -1, -1, -1, ta, tb, nthr, alpha, beta};
    prim_run(prim_get(&k), M, N, K, la, lb, ldc, a, b, C);
    if (!serial) omp_set_num_threads(saved);
}

// The ceiling: one n^3 product of operands already in bf16 (no rounding) on oneDNN's brgemm,
// best of ~seconds.
double kernels_bf16_gflops(int n, double seconds) {
    kernels_bf16_init();
    size_t nn = (size_t)n * n;
    uint16_t *a = xmalloc(2 * nn), *b = xmalloc(2 * nn);
    float *c = falloc(nn);
    for (size_t i = 0; i < nn; i++) a[i] = b[i] = bf16_round((float)((long)(i % 7) - 3) * 0.1f);
    Key k = {n, n, n, n, n, n, 0, 0, kernels_threads(), 1.0f, 0.0f};
    const Prim *p = prim_get(&k);
    prim_run(p, n, n, n, n, n, n, a, b, c);  // warm up
    double best = 0, t_end = now_sec() + seconds;
    do {
        double t = now_sec();
        prim_run(p, n, n, n, n, n, n, a, b, c);
        double g = 2.0 * n * n * n / (now_sec() - t) / 1e9;
        if (g > best) best = g;
    } while (now_sec() < t_end);
    free(a); free(b); free(c);
    return best;
}

// kernels.c — see kernels.h.
//
// Why aoe picks the BLIS kernel family: Debian's BLIS 0.9 does not recognise AMD Zen 4/5 and
// falls back to its generic kernels (~40 instead of ~100 GFLOP/s per core here). BLIS reads
// BLIS_ARCH_TYPE (a numeric arch id) at its first call, so we set it from the CPU's features first.
// AVX-512 CPUs get the skx kernels, except AMD family 19h (Zen 4): it executes a 512-bit FMA as
// two 256-bit halves, so the haswell (AVX2) kernels have the same peak there, and they are faster
// in practice: BLIS 0.9 has no float packing kernel for skx's 32-row micro-panel (it packs with a
// scalar loop) and no float "sup" kernels for skx. Measured on this project's bench shapes
// (docs/performance.md): sgemm 1024^3 +5%, large products +5-14%, attention core -30% time.
#include "model/kernels.h"

#include <blis.h>
#include <cpuid.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

static Precision precision = PREC_FP32;
static rntm_t rntm_all, rntm_one, rntm_all_nosup, rntm_one_nosup;
static int n_threads = 1;

// CPU family of an AMD processor, -1 on other vendors.
static int amd_family(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d) || b != 0x68747541 || d != 0x69746e65 || c != 0x444d4163) return -1;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return -1;
    int fam = (a >> 8) & 0xf;
    return fam == 0xf ? fam + (int)((a >> 20) & 0xff) : fam;
}

const char *kernels_init(int threads) {
    if (threads <= 0) threads = omp_get_max_threads();
    n_threads = threads;
    omp_set_num_threads(threads);
    if (!getenv("BLIS_ARCH_TYPE")) {
        __builtin_cpu_init();
        int id = -1;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
            id = amd_family() == 0x19 ? BLIS_ARCH_HASWELL : BLIS_ARCH_SKX;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) id = BLIS_ARCH_HASWELL;
        if (id >= 0) {
            char buf[16];
            snprintf(buf, sizeof buf, "%d", id);
            setenv("BLIS_ARCH_TYPE", buf, 1);
        }
    }
    bli_rntm_init(&rntm_all);
    bli_rntm_set_num_threads(threads, &rntm_all);
    bli_rntm_init(&rntm_one);
    bli_rntm_set_num_threads(1, &rntm_one);
    rntm_all_nosup = rntm_all;
    bli_rntm_set_l3_sup(0, &rntm_all_nosup);
    rntm_one_nosup = rntm_one;
    bli_rntm_set_l3_sup(0, &rntm_one_nosup);
    bli_thread_set_num_threads(threads);
    return bli_arch_string(bli_arch_query_id());
}

int kernels_threads(void) { return n_threads; }

void kernels_set_precision(Precision p) {
    if (p == PREC_BF16) kernels_bf16_init();
    precision = p;
    kernels_weights_changed(NULL);  // make (or drop) the weight copies
}
Precision kernels_precision(void) { return precision; }
const char *precision_name(Precision p) { return p == PREC_BF16 ? "bf16" : "fp32"; }
int precision_parse(const char *s) {
    if (!strcmp(s, "fp32")) return PREC_FP32;
    if (!strcmp(s, "bf16")) return PREC_BF16;
    if (!strcmp(s, "auto")) return kernels_cpu_has_bf16() ? PREC_BF16 : PREC_FP32;
    return -1;
}

// The one entry of every product: by precision, BLIS (rt: its threading) or oneDNN.
static void gemm(rntm_t *rt, float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                 int M, int N, int K, int ta, int tb, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // only scales C; done here so beta == 0 also clears NaNs
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0 ? 0 : beta * C[(long)i * ldc + j];
        return;
    }
    if (precision == PREC_BF16) {
        matmul_bf16(C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta, rt == &rntm_all || rt == &rntm_all_nosup);
        return;
    }
    if (act_is_bf16(A) || act_is_bf16(B))  // an activation block allocated in bf16 precision has no fp32 form
        die("internal: fp32 product on a bf16 activation block (precision changed after the model was built)");
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 M, N, K, &alpha, (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, rt);
}

// BLIS's "sup" path (unpacked kernels, taken when a dimension is under ~200) pays off for the
// haswell family only when B is not transposed and K is not the smallest dimension; otherwise the
// packed path was faster on every bench shape measured (A·B^T with K=64: 61% vs 84% of the
// ceiling; X^T·dY over 100 rows: 75% vs 96%). The skx family has no float sup kernels.
static int use_sup(int M, int N, int K, int tb) { return !tb && K >= (M < N ? M : N); }

void matmul(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
            int M, int N, int K, int ta, int tb, float alpha, float beta) {
    gemm(use_sup(M, N, K, tb) ? &rntm_all : &rntm_all_nosup, C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
}

void matmul_st(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
               int M, int N, int K, int ta, int tb, float alpha, float beta) {
    gemm(use_sup(M, N, K, tb) ? &rntm_one : &rntm_one_nosup, C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
}

// The triple loop both naive twins share; rb = 1 rounds every operand to bf16 first.
static void naive(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                  int M, int N, int K, int ta, int tb, float alpha, float beta, int rb) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                if (rb) { a = bf16_to_float(bf16_round(a)); b = bf16_to_float(bf16_round(b)); }
                s += (double)a * b;
            }
            float *c = &C[(long)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0 ? 0 : beta * *c));
        }
}

void matmul_naive(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                  int M, int N, int K, int ta, int tb, float alpha, float beta) {
    naive(C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta, 0);
}

void matmul_bf16_naive(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                       int M, int N, int K, int ta, int tb, float alpha, float beta) {
    naive(C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta, 1);
}

double kernels_sgemm_gflops(int n, double seconds) {
    float *a = falloc((size_t)n * n), *b = falloc((size_t)n * n), *c = falloc((size_t)n * n);
    for (long i = 0; i < (long)n * n; i++) a[i] = b[i] = (float)((i % 7) - 3) * 0.1f;
    matmul(c, n, a, n, b, n, n, n, n, 0, 0, 1, 0);  // warm up
    double best = 0, t_end = now_sec() + seconds;
    do {
        double t = now_sec();
        matmul(c, n, a, n, b, n, n, n, n, 0, 0, 1, 0);
        double g = 2.0 * n * n * n / (now_sec() - t) / 1e9;
        if (g > best) best = g;
    } while (now_sec() < t_end);
    free(a); free(b); free(c);
    return best;
}

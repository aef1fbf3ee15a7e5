// kernels.c — see kernels.h.
//
// Why aoe picks the BLIS kernel family: Debian's BLIS 0.9 does not recognise AMD Zen 4/5 and
// falls back to its generic kernels (~40 instead of ~190 GFLOP/s per core here). BLIS reads
// BLIS_ARCH_TYPE (a numeric arch id) at its first call, so we set it from the CPU's features first.
#include "model/kernels.h"

#include <blis.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/common.h"

static rntm_t rntm_all, rntm_one;
static int n_threads = 1;

const char *kernels_init(int threads) {
    if (threads <= 0) threads = omp_get_max_threads();
    n_threads = threads;
    omp_set_num_threads(threads);
    if (!getenv("BLIS_ARCH_TYPE")) {
        __builtin_cpu_init();
        int id = -1;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) id = BLIS_ARCH_SKX;
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
    bli_thread_set_num_threads(threads);
    return bli_arch_string(bli_arch_query_id());
}

int kernels_threads(void) { return n_threads; }

static void gemm(rntm_t *rt, float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                 int M, int N, int K, int ta, int tb, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // BLIS would only scale C; do it here so beta == 0 also clears NaNs
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0 ? 0 : beta * C[(long)i * ldc + j];
        return;
    }
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 M, N, K, &alpha, (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, rt);
}

void matmul(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
            int M, int N, int K, int ta, int tb, float alpha, float beta) {
    gemm(&rntm_all, C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
}

void matmul_st(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
               int M, int N, int K, int ta, int tb, float alpha, float beta) {
    gemm(&rntm_one, C, ldc, A, lda, B, ldb, M, N, K, ta, tb, alpha, beta);
}

void matmul_naive(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                  int M, int N, int K, int ta, int tb, float alpha, float beta) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(long)k * lda + i] : A[(long)i * lda + k];
                float b = tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                s += (double)a * b;
            }
            float *c = &C[(long)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0 ? 0 : beta * *c));
        }
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

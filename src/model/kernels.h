// kernels.h — matrix products (BLIS) with their naive twins, and the BLIS kernel-family choice.
// Row-major throughout. Every fast kernel here has a *_naive version that is the test oracle.
#ifndef AOE_KERNELS_H
#define AOE_KERNELS_H

// C[M,N] = alpha * op(A)·op(B) + beta * C, all row-major with leading dimensions (row strides).
// op(A) is [M,K]: A is [M,K] (ta=0, lda>=K) or [K,M] (ta=1, lda>=M); op(B) is [K,N] likewise.
// Uses all configured threads; call from serial code.
void matmul(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
            int M, int N, int K, int ta, int tb, float alpha, float beta);
// The same on one thread, for use inside an OpenMP parallel loop (no nested oversubscription).
void matmul_st(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
               int M, int N, int K, int ta, int tb, float alpha, float beta);
// The specification: triple loop, double accumulation.
void matmul_naive(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                  int M, int N, int K, int ta, int tb, float alpha, float beta);

// Chooses the BLIS kernel family for this CPU (unless BLIS_ARCH_TYPE is set) and the thread
// count for both OpenMP and BLIS. Must run before any other BLIS call. Returns the family name.
const char *kernels_init(int threads);
int kernels_threads(void);
// Measures single-call sgemm GFLOP/s at n x n x n on the configured threads (the "ceiling").
double kernels_sgemm_gflops(int n, double seconds);

#endif

// kernels.h — matrix products with their naive twins, the BLIS kernel-family choice and the
// product precision. Row-major throughout. Every fast kernel here has a *_naive version that is
// the test oracle. The layers call matmul/matmul_st only; the precision set here decides what
// runs: fp32 = BLIS sgemm, bf16 = oneDNN matmul on bf16 operands with fp32 accumulation.
#ifndef AOE_KERNELS_H
#define AOE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

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

// The bf16 twin: operands rounded to bf16 (as the bf16 precision does), double accumulation.
void matmul_bf16_naive(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                       int M, int N, int K, int ta, int tb, float alpha, float beta);

// Precision of every matmul/matmul_st product. bf16: both operands rounded to bfloat16 (round to
// nearest even), products accumulated in fp32, C stays fp32 (alpha and beta applied in fp32).
typedef enum { PREC_FP32 = 0, PREC_BF16 = 1 } Precision;
void kernels_set_precision(Precision p);  // after kernels_init; from serial code
Precision kernels_precision(void);
const char *precision_name(Precision p);
// 1 if this CPU has native bf16 dot products (AVX512_BF16 or AMX-BF16). Tests simulate a CPU
// without them with AOE_TEST_NO_BF16=1.
int kernels_cpu_has_bf16(void);
// The precision a setting names: "fp32", "bf16", or "auto" (bf16 if kernels_cpu_has_bf16()).
// Returns -1 for anything else.
int precision_parse(const char *setting);
// Weight blocks: a bf16 product whose operand lies in a registered fp32 block reads the block's
// bf16 copy instead of converting it on every call. The copy exists only in bf16 precision and
// is derived from the block: call kernels_weights_changed(w) after every write to it (optimizer
// step, checkpoint load, initialisation; NULL = all blocks). Register/unregister from serial code.
void kernels_weights_register(const float *w, size_t n);
void kernels_weights_unregister(const float *w);
void kernels_weights_changed(const float *w);
// Operand blocks: the same for an activation that several products read (attention's q, k, v):
// begin makes its bf16 copy (on all threads), end drops it; the block must not change between
// them. Serial code only; no-ops in fp32.
void kernels_operand_begin(const float *x, size_t n);
void kernels_operand_end(const float *x);
// Activation blocks: an activation that feeds only matrix products, in the forward and the
// backward (normed inputs of projections, attention's q/k/v/output, the experts' gathered inputs,
// SiLU(U)⊙V). Allocated in bf16 precision, it is stored as bf16 only — exactly what every
// product would round it to, so results do not change — and its fp32 form never exists: the
// returned float address is a handle, address space reserved but never backed (reading it as
// floats faults), which products resolve to the bf16 storage as they resolve weight copies.
// Otherwise (fp32 precision; or the table full) it is an ordinary zeroed float block. The
// storage is fixed at allocation: allocate after kernels_set_precision. Serial code only.
float *act_alloc(size_t n);
void act_free(float *a);
// 1 if p lies in a bf16-stored activation block.
int act_is_bf16(const float *p);
// Where to compute n values for a[0..n) in fp32: a itself when it is fp32, else scratch.
float *act_out(float *a, float *scratch);
// a[0..n) = src[0..n) (a may point inside a block): rounded into bf16 storage, copied into fp32
// storage, nothing when src == a. Uses all threads unless called inside a parallel region.
void act_store(float *a, const float *src, size_t n);
// fp32 -> bf16 rounding of every bf16 product: nearest even, NaN stays NaN, denormals flush to
// zero (as the AVX512-BF16 conversion instruction does).
uint16_t bf16_round(float f);
float bf16_to_float(uint16_t h);

// Chooses the BLIS kernel family for this CPU (unless BLIS_ARCH_TYPE is set) and the thread
// count for both OpenMP and BLIS. Must run before any other BLIS call. Returns the family name.
const char *kernels_init(int threads);
int kernels_threads(void);
// Measures single-call sgemm GFLOP/s at n x n x n on the configured threads (the "ceiling").
double kernels_sgemm_gflops(int n, double seconds);
// The same for the bf16 product (oneDNN, operands already bf16): the bf16 ceiling.
double kernels_bf16_gflops(int n, double seconds);
// oneDNN implementation name of the last primitive created ("none" before any).
const char *kernels_bf16_impl(void);

// Internal to kernels*.c: the oneDNN path (serial = 1: may use all threads).
void kernels_bf16_init(void);
void matmul_bf16(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                 int M, int N, int K, int ta, int tb, float alpha, float beta, int serial);

#endif

// layers.c — see layers.h. Matrix products go through kernels.h (BLIS); everything else is an
// OpenMP loop over tokens or (batch, head) pairs. Deterministic for a fixed thread count.
#include "model/layers.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/vmath.h"
#include "util/common.h"

void embedding_forward(float *out, const int32_t *tok, const float *wte, int T, int d) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) memcpy(out + (long)t * d, wte + (long)tok[t] * d, sizeof(float) * d);
}

void embedding_backward(float *dwte, const float *dout, const int32_t *tok, int T, int d, int V) {
    (void)V;
    // Parallel over feature columns: every thread walks all tokens in order, so each dwte entry
    // is summed in the same order whatever the thread count.
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int c0 = (int)((long)d * id / nt), c1 = (int)((long)d * (id + 1) / nt);
        for (int t = 0; t < T; t++) {
            float *g = dwte + (long)tok[t] * d;
            const float *s = dout + (long)t * d;
            for (int c = c0; c < c1; c++) g[c] += s[c];
        }
    }
}

void rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int T, int d, float eps) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        const float *xt = x + (long)t * d;
        float *yt = y + (long)t * d;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < d; i++) ss += xt[i] * xt[i];
        float r = 1.0f / sqrtf(ss / d + eps);
        rstd[t] = r;
#pragma omp simd
        for (int i = 0; i < d; i++) yt[i] = xt[i] * r * w[i];
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                      const float *rstd, int T, int d) {
    // y_i = x_i r w_i, r = (mean(x^2)+eps)^-1/2  =>  dx_i = r (w_i dy_i) - x_i r^3/d * sum_j w_j dy_j x_j
    // dw_i = sum_t dy_ti x_ti r_t: partial sums over fixed blocks of TB tokens (row-wise, in the same
    // pass as dx), then added in block order, so the result does not depend on the thread count.
    enum { TB = 32 };
    int nb = (T + TB - 1) / TB;
    float *part = xmalloc(sizeof(float) * (size_t)nb * d);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        float *pb = part + (size_t)b * d;
        int t1 = (b + 1) * TB < T ? (b + 1) * TB : T;
        for (int i = 0; i < d; i++) pb[i] = 0;
        for (int t = b * TB; t < t1; t++) {
            const float *xt = x + (long)t * d, *gt = dy + (long)t * d;
            float r = rstd[t], dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < d; i++) dot += w[i] * gt[i] * xt[i];
            float c = dot * r * r * r / d;
            float *dxt = dx + (long)t * d;
#pragma omp simd
            for (int i = 0; i < d; i++) {
                dxt[i] += r * w[i] * gt[i] - c * xt[i];
                pb[i] += gt[i] * xt[i] * r;
            }
        }
    }
    for (int b = 1; b < nb; b++)
#pragma omp simd
        for (int i = 0; i < d; i++) part[i] += part[(size_t)b * d + i];
#pragma omp simd
    for (int i = 0; i < d; i++) dw[i] += part[i];
    free(part);
}

void rope_tables(float *cosb, float *sinb, int S, int hd, float theta) {
    for (int s = 0; s < S; s++)
        for (int i = 0; i < hd / 2; i++) {
            double f = pow(theta, -2.0 * i / hd), a = s * f;
            cosb[s * (hd / 2) + i] = (float)cos(a);
            sinb[s * (hd / 2) + i] = (float)sin(a);
        }
}

void rope_apply(float *x, const float *cosb, const float *sinb, int B, int S, int H, int hd, int inverse) {
    float sg = inverse ? -1.0f : 1.0f;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int s = 0; s < S; s++)
            for (int h = 0; h < H; h++) {
                float *p = x + (((long)b * S + s) * H + h) * hd;
                const float *c = cosb + s * (hd / 2), *sn = sinb + s * (hd / 2);
                for (int i = 0; i < hd / 2; i++) {
                    float a = p[2 * i], b2 = p[2 * i + 1], si = sg * sn[i];
                    p[2 * i] = a * c[i] - b2 * si;
                    p[2 * i + 1] = a * si + b2 * c[i];
                }
            }
}

// Causal tiling: rows are processed in blocks of att_block; block [i0,i1) only needs key columns
// [0,i1), so the masked upper triangle outside the diagonal blocks is never computed (S=256,
// block 64: 10/16 of the full products). Entries of att/datt right of a row block's diagonal
// block are left unwritten and never read.
static int att_block = 64;
void attention_set_block(int rows) { att_block = rows > 0 ? rows : 64; }

// softmax of row[0..i] in place (exp_fast), zero on (i, n): the causal mask inside the block
static inline void softmax_causal_row(float *row, int i, int n) {
    float m = -INFINITY, sum = 0;
#pragma omp simd reduction(max : m)
    for (int j = 0; j <= i; j++) m = row[j] > m ? row[j] : m;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= i; j++) { float e = exp_fast(row[j] - m); row[j] = e; sum += e; }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j <= i; j++) row[j] *= inv;
    for (int j = i + 1; j < n; j++) row[j] = 0;
}

// Per (b,h), per row block [i0,i1): scores = q k^T / sqrt(hd) on columns [0,i1), softmax rows,
// out = P v.
void attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                       int B, int S, int H, int hd) {
    int C = H * hd, bs = att_block;
    float scale = 1.0f / sqrtf((float)hd);
    size_t n = (size_t)B * S * C;
    const float *ops[] = {q, k, v};  // each read by several products: one bf16 copy each
    for (int i = 0; i < 3; i++) kernels_operand_begin(ops[i], n);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            long base = (long)b * S * C + (long)h * hd;
            float *A = att + ((long)b * H + h) * S * S;
            for (int i0 = 0; i0 < S; i0 += bs) {
                int i1 = i0 + bs < S ? i0 + bs : S;
                float *Ab = A + (long)i0 * S;
                matmul_st(Ab, S, q + base + (long)i0 * C, C, k + base, C, i1 - i0, i1, hd, 0, 1, scale, 0);
                for (int i = i0; i < i1; i++) softmax_causal_row(A + (long)i * S, i, i1);
                matmul_st(out + base + (long)i0 * C, C, Ab, S, v + base, C, i1 - i0, hd, i1, 0, 0, 1, 0);
            }
        }
    for (int i = 0; i < 3; i++) kernels_operand_end(ops[i]);
}

void attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                        const float *q, const float *k, const float *v, const float *att,
                        int B, int S, int H, int hd) {
    int C = H * hd, bs = att_block;
    float scale = 1.0f / sqrtf((float)hd);
    size_t n = (size_t)B * S * C;
    const float *ops[] = {q, k, v, dout};
    for (int i = 0; i < 4; i++) kernels_operand_begin(ops[i], n);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            long base = (long)b * S * C + (long)h * hd;
            const float *A = att + ((long)b * H + h) * S * S;
            float *dA = datt + ((long)b * H + h) * S * S;
            for (int i0 = 0; i0 < S; i0 += bs) {
                int i1 = i0 + bs < S ? i0 + bs : S;
                // dv[i0:i1] = P[i0:S, i0:i1]^T dout[i0:S] (rows below the block's columns)
                matmul_st(dv + base + (long)i0 * C, C, A + (long)i0 * S + i0, S, dout + base + (long)i0 * C, C,
                          i1 - i0, hd, S - i0, 1, 0, 1, 0);
                // dP[i0:i1, 0:i1] = dout[i0:i1] v[0:i1]^T
                matmul_st(dA + (long)i0 * S, S, dout + base + (long)i0 * C, C, v + base, C, i1 - i0, i1, hd, 0, 1, 1, 0);
                // softmax backward per row: dz = P (dP - <P, dP>), scaled for the 1/sqrt(hd)
                for (int i = i0; i < i1; i++) {
                    const float *p = A + (long)i * S;
                    float *g = dA + (long)i * S, dot = 0;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j <= i; j++) dot += p[j] * g[j];
#pragma omp simd
                    for (int j = 0; j <= i; j++) g[j] = p[j] * (g[j] - dot) * scale;
                    for (int j = i + 1; j < i1; j++) g[j] = 0;
                }
                // dq[i0:i1] = dz[i0:i1, 0:i1] k[0:i1]
                matmul_st(dq + base + (long)i0 * C, C, dA + (long)i0 * S, S, k + base, C, i1 - i0, hd, i1, 0, 0, 1, 0);
            }
            // dk[i0:i1] = dz[i0:S, i0:i1]^T q[i0:S] (needs every row block's dz first)
            for (int i0 = 0; i0 < S; i0 += bs) {
                int i1 = i0 + bs < S ? i0 + bs : S;
                matmul_st(dk + base + (long)i0 * C, C, dA + (long)i0 * S + i0, S, q + base + (long)i0 * C, C,
                          i1 - i0, hd, S - i0, 1, 0, 1, 0);
            }
        }
    for (int i = 0; i < 4; i++) kernels_operand_end(ops[i]);
}

void attention_forward_naive(float *out, const float *q, const float *k, const float *v,
                             int B, int S, int H, int hd) {
    int C = H * hd;
    double *w = xmalloc(sizeof(double) * S);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < S; i++) {
                const float *qi = q + ((long)b * S + i) * C + h * hd;
                double m = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const float *kj = k + ((long)b * S + j) * C + h * hd;
                    double s = 0;
                    for (int c = 0; c < hd; c++) s += (double)qi[c] * kj[c];
                    w[j] = s / sqrt((double)hd);
                    if (w[j] > m) m = w[j];
                }
                for (int j = 0; j <= i; j++) { w[j] = exp(w[j] - m); sum += w[j]; }
                float *o = out + ((long)b * S + i) * C + h * hd;
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++) acc += w[j] / sum * v[((long)b * S + j) * C + h * hd + c];
                    o[c] = (float)acc;
                }
            }
    free(w);
}

double crossentropy_forward(float *logits, float *losses, const int32_t *targets, int T, int V) {
    double total = 0;
    int counted = 0;
#pragma omp parallel for reduction(+ : total, counted)
    for (int t = 0; t < T; t++) {
        float *row = logits + (long)t * V, m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int i = 0; i < V; i++) m = row[i] > m ? row[i] : m;
        float zt = targets[t] >= 0 ? row[targets[t]] : 0;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) { float e = exp_fast(row[i] - m); row[i] = e; sum += e; }
        float inv = (float)(1.0 / sum);
#pragma omp simd
        for (int i = 0; i < V; i++) row[i] *= inv;
        if (targets[t] < 0) { if (losses) losses[t] = 0; continue; }
        double l = m + log(sum) - zt;  // log-sum-exp form: exact even when p underflows
        if (losses) losses[t] = (float)l;
        total += l;
        counted++;
    }
    return counted ? total / counted : 0;
}

double crossentropy_loss(const float *logits, float *losses, const int32_t *targets, int T, int V) {
    double total = 0;
    int counted = 0;
#pragma omp parallel for reduction(+ : total, counted)
    for (int t = 0; t < T; t++) {
        const float *row = logits + (long)t * V;
        if (targets[t] < 0) { if (losses) losses[t] = 0; continue; }
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int i = 0; i < V; i++) m = row[i] > m ? row[i] : m;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) sum += exp_fast(row[i] - m);
        double l = m + log(sum) - row[targets[t]];
        if (losses) losses[t] = (float)l;
        total += l;
        counted++;
    }
    return counted ? total / counted : 0;
}

void crossentropy_backward(float *probs, const int32_t *targets, int T, int V, float scale) {
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        float *row = probs + (long)t * V;
        if (targets[t] < 0) { memset(row, 0, sizeof(float) * V); continue; }
        row[targets[t]] -= 1.0f;
        for (int i = 0; i < V; i++) row[i] *= scale;
    }
}

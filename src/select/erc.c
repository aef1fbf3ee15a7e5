// erc.c — the Expert-Router Coupling loss (ERC paper Eq.3, methods.md §2) for router MoE. It is
// not a selection method: it couples the router rows R_i with the experts' pre-SiLU gate
// projections W_g^j and leaves routing (which uses the clean R) alone, so it composes with every
// method. The driver (select.c) runs it whenever model.ffn.erc_coef > 0; AoE is refused (no router).
//
// Per layer and training forward (methods.md §2.5):
//   ε_i = min_{j≠i} ||R_i − R_j|| / (2||R_i||)     δ_i ~ U(1−ε_i, 1+ε_i)^d     (both no gradient)
//   R̃_i = δ_i ⊙ R_i,  a_ij = R̃_i·W_g^j [D],  M[i,j] = ||a_ij||
//   L = (1/n²) Σ_i Σ_{j≠i} relu(M[i,j] − α·M[i,i]) + relu(M[j,i] − α·M[i,i])
// The gradient reaches R through R̃ unless model.ffn.erc_detach_router (methods.md §2.4).
// Double-precision loops: the cost is n²·d·D, independent of the batch, and src/select does
// not depend on the model's kernels. Subgradient 0 at a hinge; M = 0 gives no gradient.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "select/select.h"

struct Erc {
    float coef, alpha;
    int detach;
    int n, d, D;       // sizes of the buffers (0 until the first call)
    double *eps;       // [n] noise bound per expert
    float *delta;      // [n,d] multiplicative noise
    double *Rt;        // [n,d] proxy tokens R̃ (router rows, noised)
    double *A;         // [n,n,D] a_ij = R̃_i·W_g^j
    double *M;         // [n,n]
    double *g;         // [n,n] dL/dM
};

Erc *erc_create(const FfnConfig *c) {
    Erc *e = xcalloc(1, sizeof *e);
    e->coef = c->erc_coef;
    e->alpha = c->erc_alpha;
    e->detach = c->erc_detach_router;
    return e;
}

void erc_free(Erc *e) {
    if (!e) return;
    free(e->eps); free(e->delta); free(e->Rt); free(e->A); free(e->M); free(e->g);
    free(e);
}

float erc_coef(const Erc *e) { return e->coef; }

// Buffers follow the layer's sizes, known only once its parameters are (SelectParams).
static void ensure(Erc *e, const SelectParams *v) {
    if (!v->R || !v->Wg) die("ERC loss: the layer has no router/W_g (model.ffn.erc_coef needs model.ffn.type moe)");
    if (e->n == v->n && e->d == v->d && e->D == v->D) return;
    free(e->eps); free(e->delta); free(e->Rt); free(e->A); free(e->M); free(e->g);
    e->n = v->n; e->d = v->d; e->D = v->D;
    size_t n = e->n, d = e->d;
    e->eps = xcalloc(n, sizeof(double));
    e->delta = falloc(n * d);
    e->Rt = xcalloc(n * d, sizeof(double));
    e->A = xcalloc(n * n * e->D, sizeof(double));
    e->M = xcalloc(n * n, sizeof(double));
    e->g = xcalloc(n * n, sizeof(double));
}

void erc_noise(Erc *e, const SelectParams *v, Rng *rng) {
    ensure(e, v);
    int n = e->n, d = e->d;
    const float *R = v->R;  // [d,n]: row i of the router is column i
    for (int i = 0; i < n; i++) {
        double ni = 0, best = INFINITY;
        for (int k = 0; k < d; k++) ni += (double)R[(size_t)k * n + i] * R[(size_t)k * n + i];
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            double s = 0;
            for (int k = 0; k < d; k++) {
                double u = (double)R[(size_t)k * n + i] - R[(size_t)k * n + j];
                s += u * u;
            }
            if (s < best) best = s;
        }
        // n = 1 (no other row) or a zero row: no noise
        e->eps[i] = n > 1 && ni > 0 ? sqrt(best) / (2 * sqrt(ni)) : 0;
        float *dl = e->delta + (size_t)i * d;
        for (int k = 0; k < d; k++)
            dl[k] = rng ? (float)(1 - e->eps[i] + 2 * e->eps[i] * rng_uniform(rng)) : 1.0f;
    }
}

double erc_eps_mean(const Erc *e) {
    double s = 0;
    for (int i = 0; i < e->n; i++) s += e->eps[i];
    return e->n ? s / e->n : 0;
}

static double hinge(const double *M, int n, double al, double *g);

double erc_loss(Erc *e, const SelectParams *v) {
    ensure(e, v);
    int n = e->n, d = e->d, D = e->D;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++)
            e->Rt[(size_t)i * d + k] = (double)e->delta[(size_t)i * d + k] * v->R[(size_t)k * n + i];
#pragma omp parallel for schedule(static) if ((long)n * n * d * D > 65536)
    for (int ij = 0; ij < n * n; ij++) {
        int i = ij / n, j = ij % n;
        double *a = e->A + (size_t)ij * D;
        const double *rt = e->Rt + (size_t)i * d;
        const float *W = v->Wg + (size_t)j * d * D;  // W_g^j [d,D]
        memset(a, 0, sizeof(double) * D);
        for (int k = 0; k < d; k++)
            for (int c = 0; c < D; c++) a[c] += rt[k] * W[(size_t)k * D + c];
        double s = 0;
        for (int c = 0; c < D; c++) s += a[c] * a[c];
        e->M[ij] = sqrt(s);
    }
    memset(e->g, 0, sizeof(double) * n * n);
    return hinge(e->M, n, e->alpha, e->g);
}

// The hinges of Eq.3 on M [n,n] at α; g [n,n] (NULL: loss only) += dL/dM (methods.md §2.4).
static double hinge(const double *M, int n, double al, double *g) {
    double L = 0, w = 1.0 / ((double)n * n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            double mii = M[(size_t)i * n + i], r = M[(size_t)i * n + j] - al * mii, c = M[(size_t)j * n + i] - al * mii;
            if (r > 0) L += r;
            if (c > 0) L += c;
            if (!g) continue;
            if (r > 0) { g[(size_t)i * n + j] += w; g[(size_t)i * n + i] -= al * w; }
            if (c > 0) { g[(size_t)j * n + i] += w; g[(size_t)i * n + i] -= al * w; }
        }
    return L * w;
}

double erc_loss_at(const Erc *e, double alpha) { return hinge(e->M, e->n, alpha, NULL); }
const double *erc_eps(const Erc *e) { return e->eps; }
const double *erc_matrix(const Erc *e) { return e->M; }

void erc_backward(const Erc *e, const SelectParams *v, float scale) {
    int n = e->n, d = e->d, D = e->D;
    // G_ij = g_ij·a_ij/M_ij [D];  dW_g^j += Σ_i R̃_i^T ⊗ G_ij;  dR̃_i = Σ_j G_ij·W_g^{jT}
#pragma omp parallel for schedule(static) if ((long)n * n * d * D > 65536)
    for (int j = 0; j < n; j++) {
        float *dW = v->dWg + (size_t)j * d * D;
        for (int i = 0; i < n; i++) {
            double m = e->M[(size_t)i * n + j], f = e->g[(size_t)i * n + j];
            if (f == 0 || m <= 0) continue;
            f *= scale / m;
            const double *a = e->A + ((size_t)i * n + j) * D, *rt = e->Rt + (size_t)i * d;
            for (int k = 0; k < d; k++) {
                double rk = f * rt[k];
                float *row = dW + (size_t)k * D;
                for (int c = 0; c < D; c++) row[c] += (float)(rk * a[c]);
            }
        }
    }
    if (e->detach || !v->dR) return;
    // dR_i (column i of dR [d,n]) += δ_i ⊙ dR̃_i; each i owns its column
#pragma omp parallel for schedule(static) if ((long)n * n * d * D > 65536)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double m = e->M[(size_t)i * n + j], f = e->g[(size_t)i * n + j];
            if (f == 0 || m <= 0) continue;
            f *= scale / m;
            const double *a = e->A + ((size_t)i * n + j) * D;
            const float *W = v->Wg + (size_t)j * d * D;
            for (int k = 0; k < d; k++) {
                double s = 0;
                for (int c = 0; c < D; c++) s += a[c] * W[(size_t)k * D + c];
                v->dR[(size_t)k * n + i] += (float)(f * s * e->delta[(size_t)i * d + k]);
            }
        }
}

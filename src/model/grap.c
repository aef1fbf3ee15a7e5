// grap.c — GrAP affinities (see grap.h): group sums in double, one pass over x per token.
#include "model/grap.h"

#include <math.h>
#include <stddef.h>

// ||x_t|| is floored so that a zero row gives δ = 0 instead of NaN (RMSNorm output never is).
#define GRAP_NORM_FLOOR 1e-12

void grap_forward(float *S, float *aff, float *xnorm, const float *x, int T, int d, int n, int cosine) {
    int m = d / n;
    double rm = sqrt((double)m);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        double ss = 0;
        for (int k = 0; k < d; k++) ss += (double)xt[k] * xt[k];
        double nx = fmax(sqrt(ss), GRAP_NORM_FLOOR);
        xnorm[t] = (float)nx;
        for (int i = 0; i < n; i++) {
            double g = 0;
            for (int k = i * m; k < (i + 1) * m; k++) g += xt[k];
            aff[(size_t)t * n + i] = (float)(g / (rm * nx));
            S[(size_t)t * n + i] = (float)(cosine ? g / (rm * nx) : g / m);
        }
    }
}

void grap_backward(float *dx, const float *dS, const float *aff, const float *xnorm, const float *x, int T,
                   int d, int n, int cosine) {
    int m = d / n;
    double rm = sqrt((double)m);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *ds = dS + (size_t)t * n, *xt = x + (size_t)t * d;
        float *o = dx + (size_t)t * d;
        if (!cosine) {
            for (int k = 0; k < d; k++) o[k] += ds[k / m] / m;
            continue;
        }
        double nx = xnorm[t], proj = 0;
        for (int i = 0; i < n; i++) proj += (double)ds[i] * aff[(size_t)t * n + i];
        for (int k = 0; k < d; k++) o[k] += (float)(ds[k / m] / (rm * nx) - xt[k] * proj / (nx * nx));
    }
}

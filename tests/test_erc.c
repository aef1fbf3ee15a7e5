// test_erc.c — the ERC loss on its own (methods.md §2): against a direct double-precision
// evaluation of the n×n hinge loss, the proxy noise within its bound, and central differences in
// the router rows R and W_g with the cached noise held fixed (detached or not). The loss wired
// through a router layer is tested in test_select.c.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/moe.h"
#include "test.h"

typedef struct {
    int n, d, D;
    float *R, *Wg, *dR, *dWg;
    SelectParams v;
} ErcFix;

static void erc_fix(ErcFix *e, int n, int d, int D, uint64_t seed) {
    e->n = n; e->d = d; e->D = D;
    e->R = test_randn((long)d * n, 1, seed);
    e->Wg = test_randn((long)n * d * D, 0.5f, seed + 1);
    e->dR = falloc((size_t)d * n);
    e->dWg = falloc((size_t)n * d * D);
    e->v = (SelectParams){.d = d, .n = n, .D = D, .R = e->R, .dR = e->dR, .Wg = e->Wg, .dWg = e->dWg};
}

static void erc_fix_free(ErcFix *e) { free(e->R); free(e->Wg); free(e->dR); free(e->dWg); }

// The loss written out directly (δ = 1); *margin gets min |M[i,j] − αM[i,i]| over the hinges.
static double erc_direct(const ErcFix *e, double alpha, double *margin) {
    int n = e->n, d = e->d, D = e->D;
    double *M = calloc((size_t)n * n, sizeof(double)), L = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int c = 0; c < D; c++) {
                double a = 0;
                for (int k = 0; k < d; k++) a += (double)e->R[k * n + i] * e->Wg[((size_t)j * d + k) * D + c];
                s += a * a;
            }
            M[i * n + j] = sqrt(s);
        }
    *margin = INFINITY;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (i == j) continue;
            double r = M[i * n + j] - alpha * M[i * n + i], c = M[j * n + i] - alpha * M[i * n + i];
            L += fmax(r, 0) + fmax(c, 0);
            *margin = fmin(*margin, fmin(fabs(r), fabs(c)));
        }
    free(M);
    return L / ((double)n * n);
}

// Central differences of erc_loss in R and W_g with the cached noise δ fixed.
static double erc_gradcheck(Erc *E, ErcFix *e, int detach, double *gmax_r) {
    memset(e->dR, 0, sizeof(float) * e->d * e->n);
    memset(e->dWg, 0, sizeof(float) * (size_t)e->n * e->d * e->D);
    erc_loss(E, &e->v);
    erc_backward(E, &e->v, 1.0f);
    double worst = 0;
    for (int pass = 0; pass < 2; pass++) {
        float *w = pass ? e->Wg : e->R, *g = pass ? e->dWg : e->dR;
        long nn = pass ? (long)e->n * e->d * e->D : (long)e->d * e->n;
        float *num = falloc(nn);
        double gmax = 0;
        for (long i = 0; i < nn; i++) {
            float w0 = w[i], wp = w0 + 1e-3f, wm = w0 - 1e-3f;
            w[i] = wp;
            double lp = erc_loss(E, &e->v);
            w[i] = wm;
            double lm = erc_loss(E, &e->v);
            w[i] = w0;
            num[i] = (float)((lp - lm) / ((double)wp - wm));
            gmax = fmax(gmax, fabs(g[i]));
        }
        if (!pass) *gmax_r = gmax;
        if (pass == 0 && detach) {  // the router gets nothing, although the loss depends on it
            double nmax = 0;
            for (long i = 0; i < nn; i++) nmax = fmax(nmax, fabs(num[i]));
            CHECK(gmax == 0 && nmax > 0);
        } else {
            CHECK(gmax > 0);
            double err = max_rel_err(g, num, nn, gmax * 1e-3);
            if (err > worst) worst = err;
        }
        free(num);
    }
    return worst;
}

TEST(select_erc_noise_bound_and_value) {
    // rows (1,0), (0,1), (2,0): ε = min dist / (2 |R_i|) = 1/2, √2/2, 1/4
    Config c;
    config_defaults(&c);
    c.ffn.erc_coef = 1;
    Erc *E = erc_create(&c.ffn);
    float R[6] = {1, 0, 2, 0, 1, 0}, Wg[3 * 2 * 1] = {1, 0, 0, 1, 1, 1};  // R [d=2,n=3]
    SelectParams v = {.d = 2, .n = 3, .D = 1, .R = R, .Wg = Wg};
    Rng rng;
    rng_seed(&rng, 3);
    erc_noise(E, &v, &rng);
    CHECK_NEAR(erc_eps_mean(E), (0.5 + sqrt(2) / 2 + 0.25) / 3, 1e-6);
    erc_free(E);
    // the value against the direct formula (no noise), for several α
    float alphas[] = {0, 0.5f, 1};
    for (int a = 0; a < 3; a++) {
        c.ffn.erc_alpha = alphas[a];
        ErcFix e;
        erc_fix(&e, 5, 7, 4, 81);
        E = erc_create(&c.ffn);
        erc_noise(E, &e.v, NULL);
        double margin, want = erc_direct(&e, alphas[a], &margin), got = erc_loss(E, &e.v);
        CHECK_NEAR(got, want, 1e-9 * fmax(1, want));
        CHECK(got > 0);
        erc_free(E);
        erc_fix_free(&e);
    }
}

TEST(select_gradcheck_erc) {
    Config c;
    config_defaults(&c);
    c.ffn.erc_coef = 1;
    c.ffn.erc_alpha = 0.8f;
    for (int noisy = 0; noisy < 2; noisy++)
        for (int detach = 0; detach < 2; detach++) {
            c.ffn.erc_detach_router = detach;
            ErcFix e;
            erc_fix(&e, 5, 7, 4, 91);
            double margin;
            erc_direct(&e, c.ffn.erc_alpha, &margin);
            CHECK(margin > 1e-2);  // FD steps of 1e-3 change M by far less: no hinge is crossed
            Erc *E = erc_create(&c.ffn);
            Rng rng;
            rng_seed(&rng, 17);
            erc_noise(E, &e.v, noisy ? &rng : NULL);
            double gr, err = erc_gradcheck(E, &e, detach, &gr);
            fprintf(stderr, "[%s%s %.1e] ", noisy ? "noisy" : "clean", detach ? "/detach" : "", err);
            CHECK(err < 1e-4);
            erc_free(E);
            erc_fix_free(&e);
        }
}

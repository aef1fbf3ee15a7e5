// vmath.h — a vectorisable expf for the elementwise loops of the training step (softmax,
// cross-entropy, SiLU). glibc's expf is a scalar call (the compiler only uses its vector
// variants under -ffast-math); this one is branch-free and inlines, so `#pragma omp simd` loops
// over it compile to AVX-512/AVX2 code. It is not a general libm replacement: inputs above 88
// saturate to exp(88) instead of +inf (every caller here feeds x <= 0 or divides by 1 + exp).
// The naive twin is expf itself; tests/test_model.c bounds the error over the whole range.
#ifndef AOE_VMATH_H
#define AOE_VMATH_H

#include <stdint.h>
#include <string.h>

// exp(x) = 2^n · e^r with n = round(x·log2 e) and r = x − n·ln2 (Cody–Waite, two constants,
// |r| <= ln2/2); e^r by the Cephes expf polynomial. Max relative error about 2 ulp on [-87.3, 88];
// 0 below -87.3 (where expf is subnormal or 0), NaN in -> NaN out.
static inline float exp_fast(float x) {
    float xc = x > 88.0f ? 88.0f : x;
    xc = xc < -87.3f ? -87.3f : xc;
    // round to nearest by adding 1.5·2^23: the low mantissa bits of t then hold n
    float t = xc * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t ti, e;  // unsigned: a NaN input reaches here and must not overflow a signed shift
    memcpy(&ti, &t, sizeof ti);
    e = (ti - 0x4B400000u + 127u) << 23;  // 2^n as float bits (n in [-126, 127])
    float s;
    memcpy(&s, &e, sizeof s);
    float y = p * s;
    y = x < -87.3f ? 0.0f : y;
    return x != x ? x : y;
}

#endif

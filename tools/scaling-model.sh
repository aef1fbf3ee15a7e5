#!/usr/bin/env bash
# scaling-model.sh — the data/expert-parallel scaling model of docs/distributed.md#scaling-model.
# Efficiency = compute / (compute + communication) per optimizer step, no overlap (as implemented):
#   compute  = T / rate                       T tokens per rank and step, rate = one rank's tokens/s
#   all-reduce = 4·(P − P_exp)·2(N−1)/N + 4·(P_exp/E)·2(R−1)/R bytes, R = N/E, + 2(N−1)·alpha
#   all-to-all = L·T·K·(E−1)/E·(4d + 2r)·4 bytes, + calls·L·(E−1)·alpha (calls: 4 MoE, 6 AoE)
# over a link of G Gbit/s (bytes / (G/8·1e9) seconds), alpha = 20 µs per message.
# Usage: tools/scaling-model.sh [RATE_FACTOR]   (rank speed = measured 1-core rate × RATE_FACTOR)
# The numbers in the table below (name P P_exp T rate K d r L n calls) come from: P, P_exp from the
# parameter table of each config (aoe train prints P), rate from `aoe bench --threads 1` (quiet
# run in docs/performance.md; the 100 M AoE rate is that run's GFLOP/s over its FLOPs per token).
f=${1:-1}
awk -v f="$f" 'BEGIN {
  alpha = 20e-6
  # name            P          P_exp     T     rate  K  d    r    L  n  calls
  cfg[1] = "bench-dense 11538944 0        2048  1309  2  512  0    4  1  0"
  cfg[2] = "bench-moe   33575424 25165824 2048  1044  2  512  0    4  8  4"
  cfg[3] = "bench-aoe   30413312 19398656 2048  975   2  512  160  4  8  6"
  cfg[4] = "aoe-100M    105394944 70778880 4096 281   2  768  192  8  8  6"
  split("4 16 64", Ns, " "); split("10 100", Gs, " ")
  printf "| config | rank tok/s | link | N=4 DP | N=4 best EP | N=16 DP | N=16 best EP | N=64 DP | N=64 best EP |\n"
  printf "|---|---:|---|---:|---:|---:|---:|---:|---:|\n"
  for (c = 1; c <= 4; c++) {
    split(cfg[c], v, " "); name = v[1]; P = v[2]; Pe = v[3]; T = v[4]; rate = v[5] * f
    K = v[6]; d = v[7]; r = v[8]; L = v[9]; n = v[10]; calls = v[11]
    tc = T / rate
    for (g = 1; g <= 2; g++) {
      bw = Gs[g] / 8 * 1e9
      printf "| %s | %.0f | %s Gbit/s |", name, rate, Gs[g]
      for (i = 1; i <= 3; i++) {
        N = Ns[i]; best = -1; bestE = 1
        for (E = 1; E <= N && E <= n; E *= 2) {
          if (N % E || n % E) continue
          R = N / E
          ar = 4 * (P - Pe) * 2 * (N - 1) / N + 4 * (Pe / E) * (R > 1 ? 2 * (R - 1) / R : 0)
          a2a = E > 1 ? L * T * K * (E - 1) / E * (4 * d + 2 * r) * 4 : 0
          t = ar / bw + 2 * (N - 1) * alpha + a2a / bw + (E > 1 ? calls * L * (E - 1) * alpha : 0)
          eff = tc / (tc + t)
          if (E == 1) dp = eff
          if (eff > best) { best = eff; bestE = E }
        }
        cell = "= DP"   # apart: a ">" among the printf arguments would redirect to a file
        if (bestE > 1) cell = sprintf("%.0f%% (E=%d)", 100 * best, bestE)
        printf " %.0f%% | %s |", 100 * dp, cell
      }
      printf "\n"
    }
  }
  # EP with E = N pays in bytes when the all-to-all is smaller than the expert all-reduce it
  # removes: T·K·(4d+2r)·4·L·(N−1)/N < 4·P_exp·2(N−1)/N  <=>  T < 2·P_exp / (K·(4d+2r)·L)
  printf "\nEP (E = N) moves fewer bytes than DP while tokens per rank and step T <\n"
  for (c = 2; c <= 4; c++) {
    split(cfg[c], v, " ")
    printf "  %-12s 2·P_exp/(K·(4d+2r)·L) = %.0f tokens (the model above uses T = %d)\n", v[1], 2 * v[3] / (v[6] * (4 * v[7] + 2 * v[8]) * v[9]), v[4]
  }
}'

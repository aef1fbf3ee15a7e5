#!/usr/bin/env bash
# ablate-aoe.sh — the AoE paper's ablations at this machine's scale (docs/results.md, "AoE"): the
# MoE rows of its Table 2 (± balancing loss, factorised W_g, large router), AoE at two ranks ±
# balancing loss, the norm that ranks experts (App. A: l1, linf), where it is taken (x·W_down, x·W_p,
# SiLU(x·W_down·W_up), SiLU(·)⊙x·W_p, the expert's output), then per finished run the
# expert-load analysis on held-out text (`aoe analyze load`, Fig. 3) and, for the router MoE, the
# router-free probe (`aoe eval --select-override norm`, §3.1) against its router and against
# experts drawn at random (`--select-override random`).
set -euo pipefail
# shellcheck disable=SC2034  # read by study-lib.sh
study_name=aoe
STEPS=${STEPS:-400} EVAL_TASKS=${EVAL_TASKS:-val} OUT=${OUT:-runs/ablate-aoe}
# shellcheck source=tools/study-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/study-lib.sh"
# shellcheck source=tools/ablate-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ablate-lib.sh"

# ranks for the small model (d_model 64: d/3 ≈ 21); ABLATE_FULL=1 uses configs/aoe.json's 48
if [[ ${ABLATE_FULL:-0} == 1 ]]; then R1=${R1:-48} R2=${R2:-96} D=128; else R1=${R1:-16} R2=${R2:-32} D=64; fi
N=8 H=$(((N * R1 * D + (D + N) / 2) / (D + N)))  # large router: n·r·d/(d+n) parameters like AoE's W_down
TEXT=${TEXT:-data/tasks/wikitext-2-tokens/test.txt} TEXT_TOKENS=${TEXT_TOKENS:-20000}
study_usage() {
    cat <<EOF
usage: tools/ablate-aoe.sh [options]

Runs (each at every seed; the small model of tools/ablate-lib.sh unless ABLATE_FULL=1) into
OUT/runs, then OUT/aoe/report.md (aoe report), OUT/aoe/analyze-load.md and OUT/aoe/probe.md:
  moe-nolb, moe-lb      configs/moe.json, balancing loss 0 / 0.01 (Table 2 rows 1-2)
  moe-lb-gaterank       + every W_g factorised at rank R1 = $R1, Eq.5 width (row 3)
  moe-lb-router         + two-layer router of hidden width $H = n·R1·d/(d+n) (row 4)
  aoe-nolb, aoe-lb      configs/aoe.json at d_low R1 and R2 = $R2, d_wide 0 (rows 5-12)
  aoe-lb-l1, aoe-lb-linf  AoE (d_low R1) ranking experts by the l1 / linf norm (App. A)
  aoe-lb-at             AoE (d_low R1 + lb) with the norm at aoe_norm_at = proj, silu, act,
                        output (aoe-lb at d_low R1 is the paper's x·W_down)
Each finished run gets RUN/analyze-load.md (aoe analyze load RUN --text TEXT --max-tokens
TEXT_TOKENS [$TEXT, $TEXT_TOKENS]); the router MoE runs also RUN/probe.md: validation bpb
(first PROBE_WINDOWS windows) with the router, with --select-override at each node, and with
--select-override random (K experts drawn uniformly per token, gates 1/K).
EOF
    study_usage_common
}
study_parse "$@"
[[ -f $TEXT ]] || study_die "$TEXT: no such text file (TEXT=...)"

study_run moe-nolb configs/moe.json "model.ffn.lb_coef=0"
study_run moe-lb configs/moe.json "model.ffn.lb_coef=0.01"
study_run moe-lb-gaterank configs/moe.json "model.ffn.lb_coef=0.01 model.ffn.gate_rank=$R1 model.ffn.d_wide=0"
study_run moe-lb-router configs/moe.json "model.ffn.lb_coef=0.01 model.ffn.router_hidden=$H"
study_run aoe-nolb configs/aoe.json "model.ffn.lb_coef=0 model.ffn.d_wide=0" "model.ffn.d_low=$R1,$R2"
study_run aoe-lb configs/aoe.json "model.ffn.lb_coef=0.01 model.ffn.d_wide=0" "model.ffn.d_low=$R1,$R2"
study_run aoe-lb-l1 configs/aoe.json "model.ffn.lb_coef=0.01 model.ffn.d_wide=0 model.ffn.d_low=$R1 model.ffn.aoe_norm=l1"
study_run aoe-lb-linf configs/aoe.json "model.ffn.lb_coef=0.01 model.ffn.d_wide=0 model.ffn.d_low=$R1 model.ffn.aoe_norm=linf"
study_run aoe-lb-at configs/aoe.json "model.ffn.lb_coef=0.01 model.ffn.d_wide=0 model.ffn.d_low=$R1" \
    "model.ffn.aoe_norm_at=proj,silu,act,output"
ablate_each analyze-load "$AOE" analyze load {} --text "$TEXT" --max-tokens "$TEXT_TOKENS"
ablate_table analyze-load "Expert load per layer on $TEXT ($TEXT_TOKENS tokens), mean ± std over seeds"
# the router-free probe (the paper's Table 1 nodes): the validation shards' first PROBE_WINDOWS
# windows, experts chosen by the router and by the norm of each node of every expert
PROBE_WINDOWS=${PROBE_WINDOWS:-100}
bpb() { sed -n 's/.*"bits_per_byte,none":[[:space:]]*\([0-9.]*\).*/\1/p' "$1/results.json" | head -1; }
probe() {
    local r=$1 val node row
    val=$(sed -n 's/.*"val":[[:space:]]*"\([^"]*\)".*/\1/p' "$r/config.json" | head -1)
    "$AOE" eval "$r" --tasks "shards:$val" --limit "$PROBE_WINDOWS" --out "$r/probe-router" >"$r/probe.log" 2>&1 || return 1
    row="| 0 | $(bpb "$r/probe-router") |"
    for node in norm norm_proj norm_silu norm_act norm_output random; do
        "$AOE" eval "$r" --tasks "shards:$val" --limit "$PROBE_WINDOWS" --select-override $node --out "$r/probe-$node" \
            >>"$r/probe.log" 2>&1 || return 1
        row+=" $(bpb "$r/probe-$node") |"
    done
    printf '| layer | router | x W_g | x W_p | SiLU(x W_g) | SiLU(x W_g) * x W_p | expert output | random |\n'
    printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n%s\n' "$row"
}
if ((!DRY)); then
    for r in "${study_runs[@]}"; do
        case $(basename "$r") in moe-nolb_* | moe-lb_*) ;; *) continue ;; esac
        [[ -f $r/train.done && ! -s $r/probe.md ]] || continue
        probe "$r" >"$r/probe.md.tmp" && mv "$r/probe.md.tmp" "$r/probe.md" || echo "$study_name: probe failed for $r" >&2
    done
fi
ablate_table probe "Router-free probe: validation bits per byte ($PROBE_WINDOWS windows) with the router, by the norm of each node and at random (--select-override)"
study_report

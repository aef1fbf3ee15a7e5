#!/usr/bin/env bash
# ablate-etr.sh — the ETR paper's ablation (its Table 1 rows: baseline, token choice only, expert
# choice only, both) plus the options the paper leaves open (τ, renormalised gates), at this
# machine's scale (docs/results.md, "ETR"); then, per finished run, the Calinski–Harabasz index
# of tokens grouped by expert on held-out text (`aoe analyze clusters`, the paper's Fig. 9).
set -euo pipefail
# shellcheck disable=SC2034  # read by study-lib.sh
study_name=etr
STEPS=${STEPS:-400} EVAL_TASKS=${EVAL_TASKS:-val} OUT=${OUT:-runs/ablate}
# shellcheck source=tools/study-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/study-lib.sh"
# shellcheck source=tools/ablate-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ablate-lib.sh"

TEXT=${TEXT:-data/tasks/wikitext-2-tokens/test.txt} TEXT_TOKENS=${TEXT_TOKENS:-20000}
study_usage() {
    cat <<EOF
usage: tools/ablate-etr.sh [options]

Runs (each at every seed; the small model of tools/ablate-lib.sh unless ABLATE_FULL=1) into
OUT/runs, then OUT/etr/report.md (aoe report) and OUT/etr/analyze-clusters.md:
  moe-top1-cap1.1  router MoE, top-1, capacity factor 1.1, balancing loss 0.01 (the baseline)
  etr-tcr          configs/etr-tcr.json: GrAP token choice only (capacity never binds)
  etr-ecr          configs/etr-ecr.json: expert choice over GrAP affinities only
  etr              configs/etr.json: token choice, then the expert-side capacity cut
  etr-tau0.9       configs/etr-tau.json: etr + expert-side threshold tau 0.9
  etr-renorm       configs/etr-renorm.json: etr with renormalised (top-1: unit) gates
Each finished run gets RUN/analyze-clusters.md: aoe analyze clusters RUN --text TEXT
--max-tokens TEXT_TOKENS [defaults $TEXT, $TEXT_TOKENS].
EOF
    study_usage_common
}
study_parse "$@"
[[ -f $TEXT ]] || study_die "$TEXT: no such text file (TEXT=...)"

study_run moe-top1-cap1.1 configs/moe.json "model.ffn.top_k=1 model.ffn.capacity=1.1 model.ffn.lb_coef=0.01"
study_run etr-tcr configs/etr-tcr.json ""
study_run etr-ecr configs/etr-ecr.json ""
study_run etr configs/etr.json ""
study_run etr-tau0.9 configs/etr-tau.json ""
study_run etr-renorm configs/etr-renorm.json ""
ablate_each analyze-clusters "$AOE" analyze clusters {} --text "$TEXT" --max-tokens "$TEXT_TOKENS"
ablate_table analyze-clusters "Calinski-Harabasz index per layer on $TEXT ($TEXT_TOKENS tokens), mean ± std over seeds"
study_report

#!/usr/bin/env bash
# check-includes.sh — the include graph between src/ folders follows the data flow, with no circle
# and no arrow back up, and no two files in src/ share a name. Layers, lowest first (a file in src/F/ may include headers of F and of the
# layers before F, never of a later one):
#
#   util  dist  config  data  select  model  ckpt  train  eval  report
#
# This is README's data flow (config → data → model → select → train → ckpt → eval → report) read
# as "who builds on whom", with two services moved below their callers: select (the FFN slot of
# model/ calls the selection method) and ckpt (a tensor-file module that train/ writes and eval/
# reads); util and dist (MPI) are plumbing every layer may use. Files directly in src/ (main.c,
# the command table cli.h) may be included and include anything. A strict order has no circles,
# so every circle shows up as at least one arrow back up.
#
# usage: tools/check-includes.sh [--warn] [SRC_DIR]   (default SRC_DIR: src next to tools/)
# Prints one line per offending #include (file:line, what it includes, what F may include) and
# per shared file name, and exits 1; with --warn it prints them and exits 0. A folder missing from the list is an error.
set -u
LAYERS=(util dist config data select model ckpt train eval report)
warn=0
if [[ ${1:-} == --warn ]]; then warn=1; shift; fi
src=${1:-$(dirname "$0")/../src}
[[ -d $src ]] || { echo "check-includes: $src: not a directory" >&2; exit 2; }

rank() {  # layer index of a folder, or -1
    local i
    for i in "${!LAYERS[@]}"; do [[ ${LAYERS[$i]} == "$1" ]] && { echo "$i"; return; }; done
    echo -1
}

bad=0
for dir in "$src"/*/; do
    f=$(basename "$dir")
    [[ $(rank "$f") -ge 0 ]] || { echo "check-includes: src/$f/ is not in the layer list of $0: add it where it belongs"; bad=$((bad + 1)); }
done
while IFS=: read -r file line inc; do
    from=${file#"$src"/}; from=${from%%/*}
    to=${inc#*\"}; to=${to%%\"*}
    [[ $to == */* ]] || continue                      # src/cli.h and friends: allowed
    to=${to%%/*}
    rf=$(rank "$from"); rt=$(rank "$to")
    if [[ $rf -ge 0 && $rt -gt $rf ]]; then
        echo "src/${file#"$src"/}:$line: includes ${to}/${inc#*\"${to}/} — an arrow back up ($from may include: ${LAYERS[*]:0:$((rf + 1))})" | tr -d '"'
        bad=$((bad + 1))
    fi
done < <(grep -rn --include='*.c' --include='*.h' -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$src"/*/ | sed -E 's/^([^:]*):([0-9]+):.*(#[[:space:]]*include[[:space:]]*)/\1:\2:/')

while read -r name; do  # "report.c" twice makes logs, debuggers and grep output ambiguous
    echo "check-includes: more than one src file is named $name:" $(cd "$src" && find . -name "$name" | sed 's|^\./|src/|' | sort)
    bad=$((bad + 1))
done < <(find "$src" -name '*.[ch]' -printf '%f\n' | sort | uniq -d)

if [[ $bad -gt 0 ]]; then
    echo "check-includes: $bad problem(s); layer order: ${LAYERS[*]}"
    [[ $warn == 1 ]] && exit 0 || exit 1
fi
echo "check-includes: src/ folders follow the layer order (${LAYERS[*]})"

# shellcheck shell=bash
# shellcheck disable=SC2154  # study_name, study_runs, OUT, AOE come from study-lib.sh
# ablate-lib.sh — sourced by tools/ablate-{aoe,erc,etr}.sh after study-lib.sh: the small default
# model of the paper ablations, post-hoc `aoe analyze` / `aoe eval` steps on every finished run
# of a study, and the table that groups their per-layer Markdown output by method (mean ± sample
# std over seeds). Not meant to be run on its own.

# The ablations' default size (docs/results.md): 2 layers of width 64, 8 experts of width 128,
# seq_len 64, batch 8. ABLATE_FULL=1 keeps the configs' own sizes (d_model 128, 4 layers, ...).
if [[ ${ABLATE_FULL:-0} != 1 ]]; then
    STUDY_SETS=(model.d_model=64 model.n_layer=2 model.n_head=2 model.seq_len=64 model.ffn.d_ff=128)
fi

# ablate_each NAME CMD...: for each finished run R of the study (R/train.done), runs
# `CMD... R` once, its stdout kept in R/NAME.md (written via a temp file; an existing one is kept,
# so a rerun continues). "{}" in CMD is replaced by R.
ablate_each() {
    ((DRY)) && return 0
    local name=$1 r a
    shift
    for r in "${study_runs[@]}"; do
        [[ -f $r/train.done && ! -s $r/$name.md ]] || continue
        local cmd=()
        for a in "$@"; do cmd+=("${a//\{\}/$r}"); done
        if "${cmd[@]}" >"$r/$name.md.tmp" 2>"$r/$name.log"; then mv "$r/$name.md.tmp" "$r/$name.md"
        else echo "$study_name: $name failed for $r (see $r/$name.log)" >&2; rm -f "$r/$name.md.tmp"; fi
    done
}

# ablate_table NAME TITLE: OUT/<study>/NAME.md from every run's NAME.md — the first Markdown
# table of each (first column an integer key, e.g. the layer), runs grouped by method (the run
# name without _seed-N): per method and key, each numeric column as mean ± sample std over the
# seeds ("a/b" cells count a), then a "mean" row over the keys. Non-numeric cells are skipped.
ablate_table() {
    ((DRY)) && return 0
    local name=$1 title=$2 r list=()
    for r in "${study_runs[@]}"; do
        [[ -s $r/$name.md ]] && list+=("$(basename "$r" | sed 's/_seed-[0-9]*$//')" "$r/$name.md")
    done
    ((${#list[@]})) || { echo "$study_name: no $name results to tabulate" >&2; return 0; }
    mkdir -p "$OUT/$study_name"
    printf '%s\n' "${list[@]}" | awk -v title="$title" '
    function num(s) { gsub(/^ +| +$/, "", s); if (s ~ /^[0-9]+\//) { sub(/\/.*/, "", s) }
                      return (s ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) ? s + 0 : "x" }
    NR % 2 == 1 { method = $0; if (!(method in seen)) { seen[method] = 1; order[++nm] = method }; next }
    {
        file = $0; intable = 0; runs[method]++
        while ((getline line < file) > 0) {
            if (line !~ /^\|/) { if (intable) break; continue }
            n = split(line, f, "|")
            if (f[2] ~ /^ *[a-z]/) { if (!hdr) { hdr = line; ncol = n }; intable = 1; continue }
            if (f[2] ~ /^-*:?-*:?$/ || f[2] ~ /^-+/) continue
            key = num(f[2]); if (key == "x") continue
            if (!((method, key) in kseen)) { kseen[method, key] = 1; keys[method, ++nk[method]] = key }
            for (c = 3; c < n; c++) { v = num(f[c]); if (v == "x") continue
                s[method, key, c] += v; q[method, key, c] += v * v; k[method, key, c]++ }
        }
        close(file)
    }
    function cell(m, key, c,   mu, sd) {
        if (!k[m, key, c]) return " – |"
        mu = s[m, key, c] / k[m, key, c]
        sd = k[m, key, c] > 1 ? sqrt((q[m, key, c] - k[m, key, c] * mu * mu) / (k[m, key, c] - 1) + 0) : 0
        if (sd != sd) sd = 0
        return sprintf(" %.4g ± %.2g |", mu, sd)
    }
    END {
        print "# " title "\n"
        split(hdr, h, "|"); line = "| method | seeds |"; sep = "|---|---:|"
        for (c = 2; c < ncol; c++) { g = h[c]; gsub(/^ +| +$/, "", g); line = line " " g " |"; sep = sep "---:|" }
        print line; print sep
        for (i = 1; i <= nm; i++) { m = order[i]
            for (j = 1; j <= nk[m]; j++) { key = keys[m, j]; line = "| " m " | " runs[m] " | " key " |"
                for (c = 3; c < ncol; c++) line = line cell(m, key, c); print line }
            # mean over keys: per seed-run sums are not kept, so this is the mean of the key means
            line = "| " m " | " runs[m] " | mean |"
            for (c = 3; c < ncol; c++) { t = 0; z = 0
                for (j = 1; j <= nk[m]; j++) { key = keys[m, j]; if (k[m, key, c]) { t += s[m, key, c] / k[m, key, c]; z++ } }
                line = line (z ? sprintf(" %.4g |", t / z) : " – |") }
            print line
        }
    }' >"$OUT/$study_name/$name.md"
    echo "$study_name: wrote $OUT/$study_name/$name.md"
}

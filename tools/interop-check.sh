#!/usr/bin/env bash
# interop-check.sh CKPT|RUN_DIR [OUT_DIR] — aoe eval against tools/aoe_torch.py on one checkpoint
# (docs/interop.md, "Measured agreement"): exports it as safetensors, compares the mean loss over
# every validation window of data/prepared/val-*.shard, then the per-choice log-likelihoods of
# four tasks (200 items each) from `aoe eval --log-samples`, aoe in fp32 (the PyTorch forward is fp32;
# a checkpoint trained in bf16 would otherwise be scored with bf16 products). Needs python3-torch.
set -euo pipefail
ck=$1 out=${2:-interop-out}
py=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"
./aoe export "$ck" --format safetensors --out "$out/model.safetensors"
./aoe eval "$ck" --precision fp32 --tasks 'shards:data/prepared/val-*.shard' --out "$out/val" --threads 1 >/dev/null 2>&1
"$py" -c "import json, math, sys; r = json.load(open(sys.argv[1]))['results']['shards']; \
print(json.dumps({'aoe_eval_mean_loss': math.log(r['token_perplexity,none'])}))" "$out/val/results.json"
"$py" tools/aoe_torch.py "$out/model.safetensors" --shards 'data/prepared/val-*.shard' --threads 1
tasks=copa,arc_easy,blimp_adjunct_island,lambada_openai
./aoe eval "$ck" --precision fp32 --tasks $tasks --limit 200 --log-samples --out "$out/mc" --threads 1 >/dev/null 2>&1
for t in ${tasks//,/ }; do
    printf '%s: ' "$t"
    "$py" tools/aoe_torch.py "$out/model.safetensors" --samples "$out/mc/samples_$t.jsonl" --threads 1
done

#!/usr/bin/python3
"""aoe_torch.py — aoe's model in PyTorch, loaded from `aoe export --format safetensors`.

A small, dependency-light reader (python3 + torch only; Debian: apt-get install python3-torch)
that reproduces aoe's forward for dense, router-MoE and AoE checkpoints (docs/interop.md):

    x = wte[tokens]
    per layer l:  h = x + Attn(RMSNorm(x))          (q,k,v = h·Wq, h·Wk, h·Wv; interleaved RoPE)
                  x = h + FFN(RMSNorm(h))            (SwiGLU; sparse: K experts per token)
    logits = RMSNorm(x) · wte^T  (tied)  or  · lm_head

Weights are row-major and used as y = x @ W (no transpose), exactly as stored. The sparse layers
implement model.ffn.select = "topk" without capacity (dropless token choice), gates
"topk_softmax" (softmax over the K chosen scores) or "softmax" (full softmax, not renormalised);
scores are router logits x·R (moe) or the AoE key norms ||x·W_down^e|| (aoe). Other selection
methods are refused rather than approximated.

Command line (both compare with aoe's own numbers):
    aoe_torch.py MODEL.safetensors --shards 'data/prepared/val-*.shard' [--limit N]
        mean next-token loss over the loader's validation windows (= `aoe eval --tasks shards:...`)
    aoe_torch.py MODEL.safetensors --samples eval-out/samples_piqa.jsonl
        recomputes every per-choice log-likelihood of an `aoe eval --log-samples` file from its
        token ids and prints the largest difference
"""
import argparse
import glob
import json
import math
import struct
import sys
import zlib

import torch
import torch.nn.functional as F


# ---- safetensors -------------------------------------------------------------------------------

def load_safetensors(path):
    """Returns ({name: tensor}, metadata dict). Supports F32 and BF16 (converted to float32)."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = bytearray(blob[base + b:base + e])
        if info["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32)
        elif info["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.bfloat16).to(torch.float32)
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']} not supported")
        out[name] = t.reshape(info["shape"]).clone()
    return out, meta


# ---- the model ---------------------------------------------------------------------------------

# Config keys this reader knows: those that shape the forward, and training-only ones (losses,
# ETR/ERC settings of methods it refuses anyway). Any other key may change the forward in a newer
# aoe, so the model is refused rather than silently computed the old way.
MODEL_KEYS = {"vocab_size", "d_model", "n_layer", "n_head", "seq_len", "tie_embeddings", "rope_theta",
              "norm_eps", "init_std", "ffn"}
FFN_KEYS = {"type", "d_ff", "n_experts", "top_k", "d_low", "d_wide", "every", "first", "gate", "select",
            "capacity", "lb_coef", "lb_div_k", "z_loss", "top_p", "topp_ent_coef", "erc_coef", "erc_alpha",
            "erc_detach_router", "erc_allow_alpha_gt1", "erc_log", "etr_cap_start", "etr_cap_end",
            "etr_loc_coef", "etr_groups", "etr_gate", "etr_tau", "etr_renorm",
            "aoe_norm", "aoe_norm_at", "gate_rank", "router_hidden", "score_override"}
# Of those, the ablation options (docs/select.md) are computed here only at these values.
FFN_ONLY = {"aoe_norm": "l2", "aoe_norm_at": "down", "gate_rank": 0, "router_hidden": 0, "score_override": "none"}

def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """x [B,S,H,hd]; pairs (2i, 2i+1) rotate by s * theta^(-2i/hd) (aoe's layers.c rope_apply)."""
    B, S, H, hd = x.shape
    i = torch.arange(hd // 2, dtype=torch.float64)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * torch.pow(theta, -2.0 * i / hd)[None, :]
    c = torch.cos(ang).to(x.dtype)[None, :, None, :]
    s = torch.sin(ang).to(x.dtype)[None, :, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def swiglu(x, wg, wp, wo):
    return (F.silu(x @ wg) * (x @ wp)) @ wo


class AoeModel(torch.nn.Module):
    def __init__(self, tensors, config):
        super().__init__()
        m, f = config["model"], config["model"]["ffn"]
        unknown = sorted(set(m) - MODEL_KEYS) + sorted("ffn." + k for k in set(f) - FFN_KEYS)
        if unknown:
            raise ValueError(f"config keys unknown to aoe_torch.py (they may change the forward): model.{unknown[0]}")
        self.cfg = config
        self.d, self.L, self.H = m["d_model"], m["n_layer"], m["n_head"]
        self.eps, self.theta, self.tied = m["norm_eps"], m["rope_theta"], m["tie_embeddings"]
        self.ffn_type = f["type"]
        if self.ffn_type != "dense":
            for k, v in FFN_ONLY.items():
                if f.get(k, v) != v:
                    raise ValueError(f"model.ffn.{k} {f[k]!r}: only {v!r} is implemented here")
            if f.get("select", "topk") != "topk":
                raise ValueError(f"model.ffn.select {f['select']!r}: only topk is implemented here")
            if f.get("capacity", 0) != 0:
                raise ValueError("model.ffn.capacity > 0 (token dropping) is not implemented here")
            if f.get("gate", "topk_softmax") not in ("topk_softmax", "softmax"):
                raise ValueError(f"model.ffn.gate {f['gate']!r} is not implemented here")
        self.K, self.gate = f.get("top_k", 1), f.get("gate", "topk_softmax")
        self.first, self.every = f.get("first", 0), f.get("every", 1)
        self.w = {k: torch.nn.Parameter(v, requires_grad=False) for k, v in tensors.items()}
        for k, v in self.w.items():
            self.register_parameter(k.replace(".", "__"), v)

    def sparse(self, l):
        return self.ffn_type != "dense" and l >= self.first and (l - self.first) % self.every == 0

    def moe(self, l, x):
        """x [T,d] -> [T,d]: scores, top-K (ties to the lower index), gates, gate-weighted experts."""
        p = f"layers.{l}.ffn."
        wp, wo = self.w[p + "w_proj"], self.w[p + "w_out"]          # [n,d,D], [n,D,d]
        n = wp.shape[0]
        if self.ffn_type == "aoe":
            wd, wu = self.w[p + "w_down"], self.w[p + "w_up"]       # [d,n*r], [n,r,D]
            r = wu.shape[1]
            C = (x @ wd).view(-1, n, r)                              # keys of every expert
            S = C.double().pow(2).sum(-1).sqrt().float()             # ||x·W_down^e|| (double sum, as aoe)
        else:
            S = x @ self.w[p + "router"]                             # [T,n]
        # stable sort keeps equal scores in index order: ties go to the lower index as in aoe
        idx = torch.sort(S, dim=-1, descending=True, stable=True).indices[:, :self.K]
        if self.gate == "softmax":
            g = torch.softmax(S, -1).gather(1, idx)
        else:
            g = torch.softmax(S.gather(1, idx).double(), -1).float()
        out = torch.zeros_like(x)
        for e in range(n):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            xe = x[tok]
            u = C[tok, e] @ wu[e] if self.ffn_type == "aoe" else xe @ self.w[p + "w_gate"][e]
            y = (F.silu(u) * (xe @ wp[e])) @ wo[e]
            out.index_add_(0, tok, g[tok, slot, None] * y)
        return out

    def forward(self, tokens):
        """tokens [B,S] (int64) -> logits [B,S,V] (float32)."""
        B, S = tokens.shape
        hd = self.d // self.H
        x = self.w["wte"][tokens]
        for l in range(self.L):
            p = f"layers.{l}."
            h = rmsnorm(x, self.w[p + "attn_norm"], self.eps)
            q = rope((h @ self.w[p + "attn.wq"]).view(B, S, self.H, hd), self.theta)
            k = rope((h @ self.w[p + "attn.wk"]).view(B, S, self.H, hd), self.theta)
            v = (h @ self.w[p + "attn.wv"]).view(B, S, self.H, hd)
            att = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) / math.sqrt(hd)
            mask = torch.ones(S, S, dtype=torch.bool).triu(1)
            att = torch.softmax(att.masked_fill(mask, float("-inf")), -1)
            y = (att @ v.transpose(1, 2)).transpose(1, 2).reshape(B, S, self.d)
            x = x + y @ self.w[p + "attn.wo"]
            h = rmsnorm(x, self.w[p + "ffn_norm"], self.eps)
            if self.sparse(l):
                f = self.moe(l, h.reshape(B * S, self.d)).view(B, S, self.d)
            else:
                f = swiglu(h, self.w[p + "ffn.w_gate"], self.w[p + "ffn.w_proj"], self.w[p + "ffn.w_out"])
            x = x + f
        x = rmsnorm(x, self.w["final_norm"], self.eps)
        return x @ (self.w["wte"].t() if self.tied else self.w["lm_head"])

    @torch.no_grad()
    def loglik(self, ids, ncont):
        """Sum of log p over the last ncont tokens of ids (ids[0] is EOT), and whether each was the argmax."""
        t = torch.tensor(ids[:-1], dtype=torch.long)[None]
        logp = torch.log_softmax(self.forward(t)[0].double(), -1)
        tgt = torch.tensor(ids[1:], dtype=torch.long)
        lp = logp[torch.arange(len(tgt)), tgt][-ncont:]
        greedy = bool((logp.argmax(-1)[-ncont:] == tgt[-ncont:]).all())
        return float(lp.sum()), greedy


def load(path):
    tensors, meta = load_safetensors(path)
    return AoeModel(tensors, json.loads(meta["aoe_config"]))


# ---- shards (docs/formats.md, "Shard") ---------------------------------------------------------

def read_shard(path):
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != b"AOESHARD":
        raise ValueError(f"{path}: not an aoe shard")
    width, = struct.unpack_from("<I", blob, 20)
    ntok, _, nchunks = struct.unpack_from("<QQQ", blob, 32)
    index_off, = struct.unpack_from("<Q", blob, 64)
    fmt = "<%d" + ("H" if width == 2 else "I")
    toks = []
    for c in range(nchunks):
        off, size, count, _, _ = struct.unpack_from("<QIIII", blob, index_off + 24 * c)
        toks.extend(struct.unpack(fmt % count, zlib.decompress(blob[off:off + size])))
    assert len(toks) == ntok
    return toks


def shard_loss(model, spec, limit=0, batch=8):
    """Mean NLL per token over the loader's windows (window j = tokens[j*S : j*S+S+1] of each shard)."""
    S = model.cfg["model"]["seq_len"]
    wins = []
    for path in sorted(p for s in spec.split(",") for p in glob.glob(s)):
        t = read_shard(path)
        wins += [t[j * S:j * S + S + 1] for j in range((len(t) - 1) // S)]
    if limit:
        wins = wins[:limit]
    nll, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(wins), batch):
            w = torch.tensor(wins[i:i + batch], dtype=torch.long)
            logits = model(w[:, :-1]).double()
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum"))
            n += w[:, 1:].numel()
    return nll / n, len(wins)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="safetensors file written by `aoe export`")
    ap.add_argument("--shards", help="comma-separated shard globs: mean loss over their windows")
    ap.add_argument("--limit", type=int, default=0, help="first N windows only")
    ap.add_argument("--samples", help="samples_<task>.jsonl of `aoe eval --log-samples`: compare log-likelihoods")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load(a.model)
    if a.shards:
        loss, n = shard_loss(model, a.shards, a.limit)
        print(json.dumps({"windows": n, "mean_loss": loss, "token_perplexity": math.exp(loss)}))
    if a.samples:
        worst, count, greedy_diff = 0.0, 0, 0
        with open(a.samples, encoding="utf-8") as f:
            for line in f:
                s = json.loads(line)
                for (ll_aoe, g_aoe), ids, nc in zip(s["filtered_resps"], s["token_ids"], s["continuation_tokens"]):
                    ll, g = model.loglik(ids, nc)
                    worst = max(worst, abs(ll - ll_aoe))
                    greedy_diff += g != g_aoe
                    count += 1
        print(json.dumps({"requests": count, "max_abs_ll_diff": worst, "greedy_mismatches": greedy_diff}))
    if not a.shards and not a.samples:
        ap.error("nothing to do: give --shards and/or --samples")


if __name__ == "__main__":
    sys.exit(main())

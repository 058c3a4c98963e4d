#!/usr/bin/env python3
# tessel: header-only (sparse) Hugging Face checkpoints of full-size models, for import benchmarks.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Write a Hugging Face checkpoint whose safetensors files hold complete headers but no data.

Usage:
    python3 bench/make_header_only_checkpoint.py CONFIG_DIR OUT_DIR [--dtype BF16]
                                                 [--max-shard-size 5GB] [--layers N] [--json]

CONFIG_DIR holds a config.json (e.g. models/configs/llama3-70b). OUT_DIR receives:
    config.json                               copied from CONFIG_DIR
    model-0000K-of-0000N.safetensors          one per ~5 GB shard (or model.safetensors when
                                              everything fits in one), each a valid
                                              safetensors file: 8-byte header length, JSON
                                              header, then a data section of the full logical
                                              size that is a hole (f.truncate), so it uses no
                                              disk and reads back as zeros
    model.safetensors.index.json              metadata.total_size (+ total_parameters) and
                                              weight_map, as save_pretrained writes it

The tensor list is what transformers' save_pretrained writes for the architecture: names,
shapes (out x in for linear weights) and state_dict order, split into shards with the
huggingface_hub algorithm (a tensor that would push a shard past the limit starts the next).
Supported model_type: llama, mistral, qwen2, mixtral, deepseek_v2, deepseek_v3.
Standard library only; takes well under a second per model and a few MB of disk.
"""

import argparse
import json
import os
import re
import shutil
import sys

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def parse_size(text):
    """'5GB' -> 5_000_000_000 (decimal units, like huggingface_hub's parse_size_to_int)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GB, 500MB)")
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    unit = (m.group(2) or "").upper()
    return int(float(m.group(1)) * units[unit])


class Tensors:
    """Ordered (name, shape, dtype) list in save_pretrained (state_dict) order."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.items = []

    def add(self, name, shape, dtype=None):
        assert all(isinstance(d, int) and d > 0 for d in shape), (name, shape)
        self.items.append((name, list(shape), dtype or self.dtype))


def head_dim_of(cfg):
    hd = cfg.get("head_dim")
    return hd if hd else cfg["hidden_size"] // cfg["num_attention_heads"]


def add_gated_mlp(t, prefix, hidden, inter, names=("gate_proj", "up_proj", "down_proj")):
    gate, up, down = names
    t.add(f"{prefix}{gate}.weight", [inter, hidden])
    t.add(f"{prefix}{up}.weight", [inter, hidden])
    t.add(f"{prefix}{down}.weight", [hidden, inter])


def add_gqa_attention(t, prefix, cfg, qkv_bias, o_bias):
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    hd = head_dim_of(cfg)
    for proj, out in (("q_proj", heads * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)):
        t.add(f"{prefix}{proj}.weight", [out, h])
        if qkv_bias:
            t.add(f"{prefix}{proj}.bias", [out])
    t.add(f"{prefix}o_proj.weight", [h, heads * hd])
    if o_bias:
        t.add(f"{prefix}o_proj.bias", [h])


def dense_family_tensors(cfg, dtype):
    """llama, mistral, qwen2, mixtral: embed, N x (attn, mlp or MoE, 2 norms), norm, head."""
    mt = cfg["model_type"]
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    t = Tensors(dtype)
    t.add("model.embed_tokens.weight", [v, h])
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        if mt == "qwen2":
            add_gqa_attention(t, p + "self_attn.", cfg, qkv_bias=True, o_bias=False)
        else:  # llama's attention_bias puts a bias on all four projections
            bias = bool(cfg.get("attention_bias", False))
            add_gqa_attention(t, p + "self_attn.", cfg, qkv_bias=bias, o_bias=bias)
        if mt == "mixtral":
            m = p + "block_sparse_moe."
            t.add(m + "gate.weight", [cfg["num_local_experts"], h])
            for e in range(cfg["num_local_experts"]):
                add_gated_mlp(t, f"{m}experts.{e}.", h, cfg["intermediate_size"],
                              names=("w1", "w3", "w2"))
        else:
            add_gated_mlp(t, p + "mlp.", h, cfg["intermediate_size"])
        t.add(p + "input_layernorm.weight", [h])
        t.add(p + "post_attention_layernorm.weight", [h])
    t.add("model.norm.weight", [h])
    if not cfg.get("tie_word_embeddings", False):
        t.add("lm_head.weight", [v, h])
    return t


def deepseek_tensors(cfg, dtype):
    """deepseek_v2 / deepseek_v3: MLA attention, dense MLP then routed + shared experts.

    The multi-token-prediction layers of DeepSeek-V3 (model.layers.61.*, from
    num_nextn_predict_layers) are not part of DeepseekV3ForCausalLM, so they are not written.
    """
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    q_lora = cfg.get("q_lora_rank")
    kv_lora = cfg["kv_lora_rank"]
    nope, rope, vhd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    experts = cfg.get("n_routed_experts")
    first_dense = cfg.get("first_k_dense_replace", 0) or 0
    freq = cfg.get("moe_layer_freq", 1) or 1
    default_method = "noaux_tc" if cfg["model_type"] == "deepseek_v3" else "greedy"
    correction_bias = cfg.get("topk_method", default_method) == "noaux_tc"
    t = Tensors(dtype)
    t.add("model.embed_tokens.weight", [v, h])
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        a = p + "self_attn."
        if q_lora:
            t.add(a + "q_a_proj.weight", [q_lora, h])
            t.add(a + "q_a_layernorm.weight", [q_lora])
            t.add(a + "q_b_proj.weight", [heads * (nope + rope), q_lora])
        else:
            t.add(a + "q_proj.weight", [heads * (nope + rope), h])
        t.add(a + "kv_a_proj_with_mqa.weight", [kv_lora + rope, h])
        t.add(a + "kv_a_layernorm.weight", [kv_lora])
        t.add(a + "kv_b_proj.weight", [heads * (nope + vhd), kv_lora])
        t.add(a + "o_proj.weight", [h, heads * vhd])
        m = p + "mlp."
        if experts and layer >= first_dense and layer % freq == 0:
            inter = cfg["moe_intermediate_size"]
            for e in range(experts):
                add_gated_mlp(t, f"{m}experts.{e}.", h, inter)
            t.add(m + "gate.weight", [experts, h])
            if correction_bias:  # a float32 buffer in every released checkpoint
                t.add(m + "gate.e_score_correction_bias", [experts], "F32")
            shared = cfg.get("n_shared_experts") or 0
            if shared:
                add_gated_mlp(t, m + "shared_experts.", h, inter * shared)
        else:
            add_gated_mlp(t, m, h, cfg["intermediate_size"])
        t.add(p + "input_layernorm.weight", [h])
        t.add(p + "post_attention_layernorm.weight", [h])
    t.add("model.norm.weight", [h])
    if not cfg.get("tie_word_embeddings", False):
        t.add("lm_head.weight", [v, h])
    return t


FAMILIES = {
    "llama": dense_family_tensors,
    "mistral": dense_family_tensors,
    "qwen2": dense_family_tensors,
    "mixtral": dense_family_tensors,
    "deepseek_v2": deepseek_tensors,
    "deepseek_v3": deepseek_tensors,
}


def nbytes(shape, dtype):
    n = DTYPE_BYTES[dtype]
    for d in shape:
        n *= d
    return n


def split_into_shards(items, max_shard_size):
    """huggingface_hub's split_state_dict_into_shards_factory, on (name, shape, dtype)."""
    shards, current, current_size = [], [], 0
    for item in items:
        size = nbytes(item[1], item[2])
        if size > max_shard_size:  # a tensor bigger than the limit gets a shard of its own
            shards.append([item])
            continue
        if current and current_size + size > max_shard_size:
            shards.append(current)
            current, current_size = [], 0
        current.append(item)
        current_size += size
    if current:
        shards.append(current)
    return shards


def write_sparse_safetensors(path, items):
    """A valid safetensors file: header as the safetensors library lays it out, data a hole.

    Data order follows the library (larger dtypes first, then by name); the header is compact
    JSON with __metadata__ first, padded with spaces to a multiple of 8 bytes.
    """
    ordered = sorted(items, key=lambda it: (-DTYPE_BYTES[it[2]], it[0]))
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype in ordered:
        size = nbytes(shape, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.truncate(8 + len(text) + offset)  # logical size; the data section is a hole
    return offset


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config_dir", help="directory with config.json")
    ap.add_argument("out_dir", help="checkpoint directory to write (created if missing)")
    ap.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="BF16",
                    help="dtype of the weights (default BF16; DeepSeek's "
                         "e_score_correction_bias stays F32)")
    ap.add_argument("--max-shard-size", type=parse_size, default=parse_size("5GB"),
                    help="shard size limit, decimal units like save_pretrained (default 5GB)")
    ap.add_argument("--layers", type=int, default=0,
                    help="keep only the first N decoder layers (num_hidden_layers = N in the "
                         "written config.json): a model's layers at real size on one GPU, "
                         "e.g. 8 layers of Llama-3-70B")
    ap.add_argument("--json", action="store_true",
                    help="print the summary as one JSON object instead of text")
    args = ap.parse_args(argv)

    config_path = os.path.join(args.config_dir, "config.json")
    with open(config_path) as f:
        cfg = json.load(f)
    if args.layers < 0 or args.layers > cfg.get("num_hidden_layers", 0):
        sys.exit(f"--layers {args.layers}: the model has {cfg.get('num_hidden_layers')} layers")
    if args.layers:
        cfg["num_hidden_layers"] = args.layers
        # DeepSeek: dense layers come first; keep their count within the stack.
        if "first_k_dense_replace" in cfg:
            cfg["first_k_dense_replace"] = min(cfg["first_k_dense_replace"], args.layers)
    mt = cfg.get("model_type")
    if mt not in FAMILIES:
        sys.exit(f"{config_path}: model_type {mt!r} not supported "
                 f"(supported: {', '.join(sorted(FAMILIES))})")
    tensors = FAMILIES[mt](cfg, args.dtype)
    names = [it[0] for it in tensors.items]
    assert len(names) == len(set(names)), "duplicate tensor names"

    os.makedirs(args.out_dir, exist_ok=True)
    # Remove what an earlier run left, so no stale shard can be picked up.
    for entry in os.listdir(args.out_dir):
        if re.fullmatch(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?", entry):
            os.remove(os.path.join(args.out_dir, entry))
    if args.layers:
        with open(os.path.join(args.out_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
    elif os.path.abspath(args.config_dir) != os.path.abspath(args.out_dir):
        shutil.copyfile(config_path, os.path.join(args.out_dir, "config.json"))

    shards = split_into_shards(tensors.items, args.max_shard_size)
    total_size = 0
    total_params = 0
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = ("model.safetensors" if len(shards) == 1
                 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
        total_size += write_sparse_safetensors(os.path.join(args.out_dir, fname), shard)
        for name, shape, dtype in shard:
            weight_map[name] = fname
            total_params += nbytes(shape, dtype) // DTYPE_BYTES[dtype]
    if len(shards) > 1:
        index = {"metadata": {"total_parameters": total_params, "total_size": total_size},
                 "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(args.out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")

    summary = {"model_type": mt, "tensors": len(names), "shards": len(shards),
               "total_size": total_size, "parameters": total_params, "out_dir": args.out_dir}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.out_dir}: {mt}, {len(names)} tensors, {total_params / 1e9:.2f}B parameters, "
              f"{len(shards)} shard(s), {total_size / 1e9:.1f} GB logical")


if __name__ == "__main__":
    main()

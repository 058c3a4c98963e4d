#!/usr/bin/env python3
# tessel: tiny GGUF files (llama.cpp conventions) converted from the tiny HF checkpoints.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Convert tiny HF checkpoints (made by make_tiny_checkpoints.py) into GGUF files.

Usage:
    python3 tests/models/make_tiny_gguf.py --tiny tests/models/tiny [--only llama_plain qwen2]

Writes, for each source case NAME (llama_plain -> arch llama, qwen2 -> arch qwen2):
    NAME.gguf                        the GGUF file
    NAME.gguf.json                   what is in it and which reference / tolerance applies
    NAME.gguf.reference_logits.npy   float32 [T, vocab]: HF logits with the GGUF's weights
                                     (Q8_0 tensors dequantized); only if torch+transformers exist

Conventions follow llama.cpp's convert_hf_to_gguf.py:
  * tensor names token_embd / blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,
    ffn_gate,ffn_up,ffn_down} / output_norm / output (+ attn_q/k/v.bias for qwen2);
  * numpy arrays are HF [out, in]; GGUF stores dims reversed (ne0 = in), as GGUFWriter does;
  * llama: attn_q / attn_k rows are PERMUTED (HF rotate-half layout -> interleaved pairs), exactly
    like convert_hf_to_gguf.py's LlamaModel.permute; the runtime (llama.cpp rope "NORM" mode)
    rotates adjacent pairs (2i, 2i+1). An importer that wants HF's rotate-half layout must
    un-permute: w.reshape(n_head, hd/2, 2, in).swapaxes(1, 2).reshape(out, in);
  * qwen2: no permutation (llama.cpp uses NEOX rope for qwen2);
  * tied embeddings (qwen2): no output.weight tensor; the runtime uses token_embd.weight;
  * 1-D tensors (norms, biases) F32; token_embd/output F32; layer Q8_LAYER's 2-D matrices Q8_0.
Needs numpy, safetensors, gguf; torch + transformers only for the dequantized reference logits.
"""

import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

import gguf

Q8_LAYER = 1  # the layer whose matrices are stored as Q8_0
SOURCES = {"llama_plain": "llama", "qwen2": "qwen2"}


def load_hf(case_dir):
    tensors = {}
    for fn in sorted(os.listdir(case_dir)):
        if fn.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(case_dir, fn)))
    with open(os.path.join(case_dir, "config.json")) as f:
        cfg = json.load(f)
    return cfg, tensors


def rope_theta(cfg):
    if "rope_parameters" in cfg and cfg["rope_parameters"]:
        return float(cfg["rope_parameters"]["rope_theta"])
    return float(cfg.get("rope_theta", 10000.0))


def permute(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (verbatim semantics)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_tensors(arch, cfg, hf):
    """Yield (gguf_name, hf_name, np.float32 array as written (permuted if llama), quantize?)."""
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    yield "token_embd.weight", "model.embed_tokens.weight", hf["model.embed_tokens.weight"], False
    for i in range(cfg["num_hidden_layers"]):
        for suffix, gname in HF_TO_GGUF.items():
            hname = f"model.layers.{i}.{suffix}"
            if hname not in hf:
                continue
            w = hf[hname].astype(np.float32)
            if arch == "llama" and suffix == "self_attn.q_proj.weight":
                w = permute(w, n_head, n_head)
            elif arch == "llama" and suffix == "self_attn.k_proj.weight":
                w = permute(w, n_head, n_kv)
            yield f"blk.{i}.{gname}", hname, w, (i == Q8_LAYER and w.ndim == 2)
    yield "output_norm.weight", "model.norm.weight", hf["model.norm.weight"], False
    if "lm_head.weight" in hf:
        yield "output.weight", "lm_head.weight", hf["lm_head.weight"], False


def write_gguf(path, arch, cfg, hf):
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    vocab = cfg["vocab_size"]

    w = gguf.GGUFWriter(path, arch)  # writes general.architecture
    w.add_name(f"tessel tiny {arch}")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)  # mixed F32 + Q8_0; informational only
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(rope_theta(cfg))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_vocab_size(vocab)

    # Minimal SentencePiece-style vocabulary so llama.cpp itself can load the file:
    # <unk> <s> </s>, the 256 byte tokens, then filler pieces.
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
             + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab - 259))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(vocab - 259)])
    w.add_token_types([int(t) for t in types])
    w.add_unk_token_id(0)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))
    w.add_add_bos_token(False)

    written = []
    for gname, hname, arr, quant in gguf_tensors(arch, cfg, hf):
        arr = np.ascontiguousarray(arr.astype(np.float32))
        if quant:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(gname, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(gname, arr)
        written.append({"gguf": gname, "hf": hname, "shape_hf": list(arr.shape),
                        "ggml_ne": list(reversed(arr.shape)),
                        "type": "Q8_0" if quant else "F32",
                        "permuted": arch == "llama" and gname.endswith(("attn_q.weight", "attn_k.weight"))})
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


def read_back(path, arch, cfg):
    """Read the GGUF, dequantize, undo the llama permutation: HF-named float32 weights."""
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    r = gguf.GGUFReader(path)
    inv = {f"blk.{i}.{g}": f"model.layers.{i}.{h}"
           for i in range(cfg["num_hidden_layers"]) for h, g in HF_TO_GGUF.items()}
    inv.update({"token_embd.weight": "model.embed_tokens.weight",
                "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"})
    out = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        a = a.reshape([int(x) for x in reversed(t.shape)])
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            a = unpermute(a, n_head)
        elif arch == "llama" and t.name.endswith("attn_k.weight"):
            a = unpermute(a, n_kv)
        out[inv[t.name]] = a
    return out


def llama_cpp_style_forward(path, arch, cfg, prompt):
    """Independent numpy forward over the GGUF tensors AS STORED (no un-permute), with the rope
    mode llama.cpp uses for the architecture: NORM (adjacent pairs 2i,2i+1) for llama, NEOX
    (pairs i, i+d/2) for qwen2. Matching HF proves the permutation convention end to end."""
    r = gguf.GGUFReader(path)
    t = {}
    for x in r.tensors:
        a = gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float64)
        t[x.name] = a.reshape([int(v) for v in reversed(x.shape)])
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    hd = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    eps = cfg["rms_norm_eps"]
    T = len(prompt)
    inv = rope_theta(cfg) ** (-np.arange(0, hd, 2) / hd)          # [hd/2]
    ang = np.arange(T)[:, None] * inv[None, :]                       # [T, hd/2]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):  # x [T, H, hd]
        if arch == "llama":   # NORM mode: rotate adjacent pairs
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
            return out
        a, b = x[..., : hd // 2], x[..., hd // 2:]  # NEOX mode
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def rms(x, wt):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * wt

    h = t["token_embd.weight"][prompt]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"blk.{i}."
        x = rms(h, t[p + "attn_norm.weight"])
        q = x @ t[p + "attn_q.weight"].T + t.get(p + "attn_q.bias", 0)
        k = x @ t[p + "attn_k.weight"].T + t.get(p + "attn_k.bias", 0)
        v = x @ t[p + "attn_v.weight"].T + t.get(p + "attn_v.bias", 0)
        q = rope(q.reshape(T, n_head, hd))
        k = np.repeat(rope(k.reshape(T, n_kv, hd)), n_head // n_kv, axis=1)
        v = np.repeat(v.reshape(T, n_kv, hd), n_head // n_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", s, v).reshape(T, n_head * hd)
        h = h + o @ t[p + "attn_output.weight"].T
        x = rms(h, t[p + "ffn_norm.weight"])
        g = x @ t[p + "ffn_gate.weight"].T
        h = h + ((g / (1 + np.exp(-g))) * (x @ t[p + "ffn_up.weight"].T)) @ t[p + "ffn_down.weight"].T
    h = rms(h, t["output_norm.weight"])
    return (h @ t.get("output.weight", t["token_embd.weight"]).T).astype(np.float32)


def hf_logits_with(case_dir, weights, prompt, new_tokens):
    """HF eager fp32 logits (and greedy ids) of the source model with `weights` swapped in."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
    except ImportError:
        return None
    kw = ({"dtype": torch.float32} if int(transformers.__version__.split(".")[0]) >= 5
          else {"torch_dtype": torch.float32})
    m = AutoModelForCausalLM.from_pretrained(case_dir, attn_implementation="eager", **kw)
    m.eval()
    sd = m.state_dict()
    with torch.no_grad():
        for k, v in weights.items():
            sd[k].copy_(torch.from_numpy(v))
        if "lm_head.weight" not in weights and m.config.tie_word_embeddings:
            assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
        logits = m(input_ids=torch.tensor([prompt]), use_cache=False).logits[0].float().numpy()
        seq = list(prompt)
        for _ in range(new_tokens):
            seq.append(int(m(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    return logits, seq[len(prompt):]


def make(tiny, name):
    arch = SOURCES[name]
    case_dir = os.path.join(tiny, name)
    cfg, hf = load_hf(case_dir)
    path = os.path.join(tiny, f"{name}.gguf")
    written = write_gguf(path, arch, cfg, hf)

    # Round trip: everything must come back bit-exact except the Q8_0 tensors.
    back = read_back(path, arch, cfg)
    roundtrip = {}
    for t in written:
        d = float(np.abs(back[t["hf"]] - hf[t["hf"]]).max())
        roundtrip[t["gguf"]] = d
        assert (d == 0.0) == (t["type"] == "F32"), (t, d)

    with open(os.path.join(case_dir, "reference.json")) as f:
        ref = json.load(f)
    ref_logits = np.load(os.path.join(case_dir, "reference_logits.npy"))
    meta = {
        "gguf": f"{name}.gguf",
        "source_case": name,
        "architecture": arch,
        "prompt_ids": ref["prompt_ids"],
        "reference_logits_hf_original": f"{name}/reference_logits.npy",
        "greedy_ids_hf_original": ref["greedy_ids"],
        "q_k_permuted_llama_cpp_style": arch == "llama",
        "tied_embeddings_no_output_tensor": "lm_head.weight" not in hf,
        "q8_0_layer": Q8_LAYER,
        "tensors": written,
        "roundtrip_max_abs_vs_hf_weights": roundtrip,
    }
    res = hf_logits_with(case_dir, back, ref["prompt_ids"], len(ref["greedy_ids"]))
    if res is not None:
        dq_logits, dq_greedy = res
        np.save(os.path.join(tiny, f"{name}.gguf.reference_logits.npy"), dq_logits.astype(np.float32))
        d_orig = float(np.abs(dq_logits - ref_logits).max())
        np_logits = llama_cpp_style_forward(path, arch, cfg, ref["prompt_ids"])
        d_np = float(np.abs(np_logits - dq_logits).max())
        assert d_np < 1e-3, f"llama.cpp-convention numpy forward disagrees with HF: {d_np}"
        meta["llama_cpp_convention_numpy_forward_max_abs_vs_dequantized"] = d_np
        meta.update({
            "reference_logits_dequantized": f"{name}.gguf.reference_logits.npy",
            "greedy_ids_dequantized": dq_greedy,
            "max_abs_dequantized_vs_original_logits": d_orig,
            "tolerance": {
                "vs_reference_logits_dequantized": 1e-4,
                "vs_reference_logits_hf_original": round(max(0.05, 4 * d_orig), 3),
                "note": ("An importer that dequantizes Q8_0 to f32 (or computes q8_0 dot products "
                         "exactly in f32) must match the dequantized reference to fp32 noise. The "
                         "original HF logits differ by the Q8_0 rounding of one layer "
                         f"({d_orig:.3g} max abs here); compare against them only with the loose "
                         "tolerance. Kernels that also quantize activations to q8 (as llama.cpp's "
                         "CPU backend does) need the loose tolerance even vs the dequantized one."),
            },
        })
    else:
        meta["tolerance"] = {"vs_reference_logits_hf_original": 0.05,
                             "note": "torch/transformers not available: dequantized reference not made"}
    with open(os.path.join(tiny, f"{name}.gguf.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    size = os.path.getsize(path)
    print(f"{name}.gguf  {size / 1e6:.3f} MB  tensors={len(written)}  "
          f"q8_0={sum(t['type'] == 'Q8_0' for t in written)}  "
          + (f"dequant-vs-original max abs {meta['max_abs_dequantized_vs_original_logits']:.3g}  "
             f"greedy same: {meta['greedy_ids_dequantized'] == ref['greedy_ids']}  "
             f"numpy llama.cpp-style forward vs HF(dequant) "
             f"{meta['llama_cpp_convention_numpy_forward_max_abs_vs_dequantized']:.2g}" if res else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny"),
                    help="directory holding the tiny HF cases (default: tests/models/tiny)")
    ap.add_argument("--only", nargs="+", choices=sorted(SOURCES))
    args = ap.parse_args()
    for name in args.only or list(SOURCES):
        make(args.tiny, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

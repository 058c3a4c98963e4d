#!/usr/bin/env python3
# tessel: tiny random-weight HF checkpoints + HF reference logits/greedy ids for importer tests.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Make tiny Hugging Face checkpoints of every supported family, with references.

Usage:
    python3 tests/models/make_tiny_checkpoints.py --out tests/models/tiny [--only NAME ...]

Each case directory gets:
    config.json, generation_config.json      as written by transformers' save_pretrained
    model.safetensors (or shards + model.safetensors.index.json)
    reference_logits.npy       float32 [T, vocab]: HF eager fp32 logits at every prompt position
    reference_full_logits.npy  float32 [T+N-1, vocab]: one no-cache forward over prompt + greedy
                               continuation (minus the last token); rows [:T] equal reference_logits
                               except for llama_dynamic (its rope base depends on the call's length)
    reference.json             prompt ids, greedy ids (new tokens only), versions, notes, checks

Needs torch, transformers (5.x preferred; 4.5x best effort), safetensors, numpy.
Everything runs on CPU in float32 with eager attention; no network access needed.
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

TF_MAJOR = int(transformers.__version__.split(".")[0])

VOCAB = 512
HIDDEN = 64
PROMPT_LEN = 24
NEW_TOKENS = 16
PROMPT_SEED = 1234
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SEED_TRIES = 24
TIED_EMBED_STD = 0.1
MIN_MARGIN = 0.05
MIN_DISTINCT = 8
DECODE_TOL = 5e-5  # fp32 noise on logits of magnitude ~10 is ~1e-5; real bugs are >1e-3


def prompt_ids():
    g = torch.Generator().manual_seed(PROMPT_SEED)
    # Avoid the special ids 0..2 so nothing looks like pad/bos/eos.
    return torch.randint(3, VOCAB, (PROMPT_LEN,), generator=g).tolist()


def rope_kwargs(theta, scaling=None):
    """Config kwargs for RoPE in the spelling of the installed transformers.

    transformers 5.x: rope_parameters={"rope_type": ..., "rope_theta": ..., <scaling keys>}
    transformers 4.x: rope_theta=..., rope_scaling={"rope_type": ..., <scaling keys>}
    """
    if TF_MAJOR >= 5:
        rp = {"rope_type": "default", "rope_theta": float(theta)}
        if scaling:
            rp.update(scaling)
        return {"rope_parameters": rp}
    kw = {"rope_theta": float(theta)}
    if scaling:
        kw["rope_scaling"] = dict(scaling)
    return kw


def common(**over):
    kw = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )
    kw.update(over)
    return kw


LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def cfg_llama3():
    from transformers import LlamaConfig
    return LlamaConfig(**common(**rope_kwargs(500000.0, LLAMA3_SCALING)))


def cfg_llama_plain():
    from transformers import LlamaConfig
    return LlamaConfig(**common(**rope_kwargs(10000.0)))


def cfg_smollm_tied():
    from transformers import LlamaConfig
    return LlamaConfig(**common(
        num_key_value_heads=4, head_dim=32, tie_word_embeddings=True,
        **rope_kwargs(10000.0, {"rope_type": "linear", "factor": 2.0})))


def cfg_llama_dynamic():
    from transformers import LlamaConfig
    # max_position_embeddings=16 < prompt length 24, so the prefill already uses the
    # NTK-scaled base (HF recomputes inv_freq from seq_len = max(position_ids)+1).
    return LlamaConfig(**common(
        max_position_embeddings=16,
        **rope_kwargs(10000.0, {"rope_type": "dynamic", "factor": 2.0})))


def cfg_llama_yarn():
    from transformers import LlamaConfig
    # max_position_embeddings = factor * original, as HF expects for YaRN.
    return LlamaConfig(**common(
        max_position_embeddings=128,
        **rope_kwargs(10000.0, {"rope_type": "yarn", "factor": 4.0,
                                "original_max_position_embeddings": 32})))


def cfg_mistral():
    from transformers import MistralConfig
    return MistralConfig(**common(sliding_window=8, **rope_kwargs(1000000.0)))


def cfg_qwen2():
    from transformers import Qwen2Config
    kw = common(tie_word_embeddings=True, use_sliding_window=False, sliding_window=None,
                max_window_layers=2, **rope_kwargs(1000000.0), rms_norm_eps=1e-6)
    kw.pop("head_dim")  # Qwen2 derives head_dim = hidden/heads = 16
    return Qwen2Config(**kw)


def cfg_mixtral():
    from transformers import MixtralConfig
    return MixtralConfig(**common(num_local_experts=4, num_experts_per_tok=2,
                                  sliding_window=None, router_jitter_noise=0.0,
                                  **rope_kwargs(1000000.0)))


def _deepseek_common(**over):
    kw = common(
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=128,        # dense MLP of layers < first_k_dense_replace
        moe_intermediate_size=32,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        n_group=4,
        topk_group=2,
        kv_lora_rank=32,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        rms_norm_eps=1e-6,
        max_position_embeddings=128,  # = yarn factor 4 * original 32
    )
    kw.pop("head_dim")
    kw.update(over)
    return kw


def cfg_deepseek_v2():
    from transformers import DeepseekV2Config
    # top-3 (not 2): with group score = max expert prob, top-2 experts always lie in the
    # top-2 groups, so group limiting would be a no-op; with top-3 it matters.
    return DeepseekV2Config(**_deepseek_common(
        q_lora_rank=None,
        num_experts_per_tok=3,
        topk_method="group_limited_greedy",
        scoring_func="softmax",
        norm_topk_prob=False,
        routed_scaling_factor=1.5,
        **rope_kwargs(10000.0, {"rope_type": "yarn", "factor": 4.0, "mscale": 0.707,
                                "mscale_all_dim": 0.707, "beta_fast": 32.0, "beta_slow": 1.0,
                                "original_max_position_embeddings": 32})))


def cfg_deepseek_v3():
    from transformers import DeepseekV3Config
    return DeepseekV3Config(**_deepseek_common(
        q_lora_rank=48,
        topk_method="noaux_tc",
        scoring_func="sigmoid",
        norm_topk_prob=True,
        routed_scaling_factor=2.5,
        **rope_kwargs(10000.0, {"rope_type": "yarn", "factor": 4.0, "mscale": 1.0,
                                "mscale_all_dim": 0.8, "beta_fast": 32.0, "beta_slow": 1.0,
                                "original_max_position_embeddings": 32})))


# name -> (config fn, family, weight-seed key, extra options, notes)
CASES = {
    "llama3": (cfg_llama3, "llama", "llama3", {"max_shard_size": "200KB"},
               "GQA 4q/2kv heads, head_dim 16, rope_theta 5e5, llama3 rope scaling "
               "(factor 8, low 1, high 4, original_max_position_embeddings 64: all three "
               "frequency bands occur), untied lm_head, SHARDED safetensors with index.json."),
    "llama3_rope_scaling_old": (cfg_llama3, "llama", "llama3", {"old_rope_style": True},
               "Same weights as llama3 (not sharded) but config.json rewritten to the "
               "transformers-4.x spelling: top-level rope_theta + rope_scaling {rope_type: llama3, ...}, "
               "no rope_parameters. HF reloads it to identical logits (checked)."),
    "llama_plain": (cfg_llama_plain, "llama", "llama_plain", {},
               "Plain llama: GQA 4/2, head_dim 16, default rope theta 1e4, untied, single "
               "safetensors file. Source of tiny/llama_plain.gguf."),
    "smollm_tied": (cfg_smollm_tied, "llama", "smollm_tied", {},
               "Llama, tie_word_embeddings=True (no lm_head.weight saved), MHA 4/4 heads, explicit "
               "head_dim 32 != hidden/heads (16): q/k/v project 64->128, o_proj 128->64; "
               "rope linear factor 2."),
    "llama_dynamic": (cfg_llama_dynamic, "llama", "llama_dynamic", {},
               "Llama with dynamic-NTK rope (factor 2) and max_position_embeddings 16 < prompt "
               "length 24: HF's prefill rescales base = theta*((factor*L/max_pos)-(factor-1))^(d/(d-2)) "
               "with L = max(position_ids)+1 of the CURRENT forward call. During cached decoding HF "
               "recomputes inv_freq every step but keeps cached keys rotated with older bases, so "
               "HF's cached generation is NOT equal to a full recompute (see checks in reference.json); "
               "greedy_ids are from generate() (cached), greedy_ids_recompute from no-cache full "
               "recompute."),
    "llama_yarn": (cfg_llama_yarn, "llama", "llama_yarn", {},
               "Llama with YaRN rope: factor 4, original_max_position_embeddings 32, beta_fast 32/"
               "beta_slow 1 (defaults), attention_factor = 0.1*ln(4)+1 multiplies cos and sin."),
    "mistral": (cfg_mistral, "mistral", "mistral", {},
               "Mistral, GQA 4/2, sliding_window 8: a query at position i attends to keys j with "
               "i-8 < j <= i (8 keys including itself), matters for the 24-token prompt; rope_theta 1e6."),
    "qwen2": (cfg_qwen2, "qwen2", "qwen2", {},
               "Qwen2: q/k/v biases (o_proj no bias), tied embeddings (as Qwen2.5-0.5B), "
               "use_sliding_window false, rope_theta 1e6, rms eps 1e-6, head_dim 16 derived."),
    "mixtral": (cfg_mixtral, "mixtral", "mixtral", {},
               "Mixtral: 4 experts, top-2, router softmax over all experts then top-k then "
               "renormalise the 2 weights to sum to 1; GQA 4/2; no sliding window."),
    "deepseek_v2": (cfg_deepseek_v2, "deepseek_v2", "deepseek_v2", {},
               "DeepSeek-V2(-Lite) style: MLA with q_lora_rank None (plain q_proj), kv_lora_rank 32, "
               "qk_nope 16, qk_rope 8, v_head 16, 4 heads; rope applied to interleaved pairs "
               "(complex-number convention); YaRN factor 4, mscale 0.707, mscale_all_dim 0.707, "
               "original 32: softmax scale = qk_head_dim^-0.5 * mscale(4,0.707)^2. Layer 0 dense MLP "
               "(first_k_dense_replace 1), layers 1-2 MoE: 8 routed experts, n_group 4 / "
               "topk_group 2 group_limited_greedy (group score = max expert prob), top-3 experts, softmax scoring, "
               "no renormalisation (norm_topk_prob false), weights * routed_scaling_factor 1.5, "
               "plus 1 shared expert (moe_intermediate 32)."),
    "deepseek_v3": (cfg_deepseek_v3, "deepseek_v3", "deepseek_v3", {},
               "DeepSeek-V3 style: MLA with q_lora_rank 48 (q_a_proj -> q_a_layernorm -> q_b_proj), "
               "kv_lora_rank 32, qk_nope 16, qk_rope 8, v_head 16, rope_interleave true; YaRN factor 4, "
               "mscale 1.0, mscale_all_dim 0.8 (so cos/sin are scaled by mscale(4,1)/mscale(4,0.8) != 1 "
               "and softmax scale by mscale(4,0.8)^2). Layer 0 dense, layers 1-2 MoE: sigmoid scores, "
               "e_score_correction_bias (random, nonzero, saved) added for selection only, group score "
               "= sum of top-2 biased scores per group, n_group 4 / topk_group 2, top-2 of 8, weights = "
               "unbiased sigmoid scores renormalised (norm_topk_prob) then * 2.5; 1 shared expert."),
}


def reinit_(model, seed):
    """Re-initialise every parameter/persistent buffer with a seeded, non-trivial distribution.

    2-D/3-D weights: N(0, 1/fan_in) (fan_in = last dim) so activations stay O(1);
    embeddings and lm_head N(0, (2.5/sqrt(hidden))^2) so logits are well spread (std ~2.5);
    MoE router weights N(0, (2/sqrt(fan_in))^2) so routing is decisive;
    norm weights 1 + N(0, 0.1^2); biases N(0, 0.1^2);
    e_score_correction_bias N(0, 0.1^2) (nonzero on purpose).
    Tied models: embeddings N(0, TIED_EMBED_STD^2), final norm weight scaled by 3.125.
    """
    g = torch.Generator().manual_seed(seed)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.dim() == 1:
                if "norm" in name:
                    p.copy_(1.0 + 0.1 * randn(p.shape))
                else:
                    p.copy_(0.1 * randn(p.shape))
            elif "embed_tokens" in name:  # same scale as lm_head so tied models look alike
                p.copy_(randn(p.shape) * (2.5 / math.sqrt(p.shape[-1])))
            elif "lm_head" in name:
                p.copy_(randn(p.shape) * (2.5 / math.sqrt(p.shape[-1])))
            elif name.endswith("gate.weight"):  # MoE routers: decisive but not degenerate
                p.copy_(randn(p.shape) * (2.0 / math.sqrt(p.shape[-1])))
            else:
                p.copy_(randn(p.shape) / math.sqrt(p.shape[-1]))
        if tied:
            # Tied embeddings: a small input embedding keeps the current token from dominating
            # the final hidden state (else greedy decoding just repeats the last token); the
            # final norm is scaled up to keep the logits spread as in the untied cases.
            emb = model.get_input_embeddings().weight
            emb.mul_(TIED_EMBED_STD / (2.5 / math.sqrt(emb.shape[-1])))
            model.model.norm.weight.mul_((2.5 / math.sqrt(emb.shape[-1])) / TIED_EMBED_STD)
        for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
            if "e_score_correction_bias" in name:
                b.copy_(0.1 * randn(b.shape))


def load(path):
    kw = {"dtype": torch.float32} if TF_MAJOR >= 5 else {"torch_dtype": torch.float32}
    m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", **kw)
    m.eval()
    return m


@torch.no_grad()
def forward_logits(model, ids):
    out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def incremental_check(model, ids, start=8):
    """Prefill ids[:start] then feed one token at a time; compare with a full prefill."""
    full = forward_logits(model, ids)
    out = model(input_ids=torch.tensor([ids[:start]]), use_cache=True)
    past = out.past_key_values
    diffs = [float((out.logits[0] - full[:start]).abs().max())]
    for t in range(start, len(ids)):
        out = model(input_ids=torch.tensor([[ids[t]]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        diffs.append(float((out.logits[0, -1] - full[t]).abs().max()))
    return max(diffs), diffs


@torch.no_grad()
def greedy(model, ids):
    gc = model.generation_config
    gc.eos_token_id = None
    gc.pad_token_id = PAD_ID
    gc.bos_token_id = BOS_ID
    out = model.generate(
        input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
        eos_token_id=None, pad_token_id=PAD_ID, return_dict_in_generate=True, output_logits=True,
        num_beams=1, use_cache=True)
    new = out.sequences[0, len(ids):].tolist()
    step_logits = torch.stack([l[0].float() for l in out.logits])  # [N, vocab]
    return new, step_logits


@torch.no_grad()
def greedy_recompute(fresh_model, ids):
    seq = list(ids)
    for _ in range(NEW_TOKENS):
        seq.append(int(forward_logits(fresh_model(), seq)[-1].argmax()))
    return seq[len(ids):]


def margins(logits):
    top2 = logits.topk(2, dim=-1).values
    return (top2[:, 0] - top2[:, 1])


ABLATIONS = {
    # case -> (what is switched off, how); the logits must change noticeably, which shows
    # the feature is really exercised by the reference (and an importer ignoring it fails).
    "llama3": "rope_default", "llama3_rope_scaling_old": "rope_default",
    "smollm_tied": "rope_default", "llama_dynamic": "rope_default", "llama_yarn": "rope_default",
    "deepseek_v2": "rope_default", "deepseek_v3": "rope_default",
    "mistral": "no_sliding_window",
}


@torch.no_grad()
def ablation_diffs(name, case_dir, ref, ids, logits):
    from transformers import AutoConfig
    out = {}

    def run(cfg, mutate=None):
        kw = {"dtype": torch.float32} if TF_MAJOR >= 5 else {"torch_dtype": torch.float32}
        cfg._attn_implementation = "eager"
        m = AutoModelForCausalLM.from_config(cfg, **kw)
        m.load_state_dict(ref.state_dict())
        m.eval()
        if mutate:
            mutate(m)
        return float((forward_logits(m, ids) - logits).abs().max())

    kind = ABLATIONS.get(name)
    if kind == "rope_default":
        cfg = AutoConfig.from_pretrained(case_dir)
        if TF_MAJOR >= 5:
            cfg.rope_parameters = {"rope_type": "default",
                                   "rope_theta": cfg.rope_parameters["rope_theta"]}
        else:
            cfg.rope_scaling = None
        out["without_rope_scaling_max_abs"] = run(cfg)
    elif kind == "no_sliding_window":
        cfg = AutoConfig.from_pretrained(case_dir)
        cfg.sliding_window = None
        out["without_sliding_window_max_abs"] = run(cfg)
    if name == "deepseek_v3":
        def zero_bias(m):
            for mod in m.modules():
                if hasattr(mod, "e_score_correction_bias"):
                    mod.e_score_correction_bias.zero_()
        out["without_e_score_correction_bias_max_abs"] = run(AutoConfig.from_pretrained(case_dir),
                                                             zero_bias)
    if name in ("deepseek_v2", "deepseek_v3"):
        cfg = AutoConfig.from_pretrained(case_dir)
        cfg.topk_group = cfg.n_group
        out["without_group_limit_max_abs"] = run(cfg)
        cfg = AutoConfig.from_pretrained(case_dir)
        cfg.routed_scaling_factor = 1.0
        out["routed_scaling_factor_1_max_abs"] = run(cfg)
    return out


def rewrite_old_rope(case_dir):
    p = os.path.join(case_dir, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters", None)
    if rp is None:  # transformers 4.x already wrote the old style
        rp = dict(cfg.get("rope_scaling") or {})
        rp["rope_theta"] = cfg["rope_theta"]
    rp = dict(rp)
    theta = rp.pop("rope_theta")
    cfg["rope_theta"] = theta
    cfg["rope_scaling"] = rp  # {"rope_type": "llama3", "factor": 8.0, ...}
    with open(p, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def weight_names(case_dir):
    from safetensors import safe_open
    names = {}
    for fn in sorted(os.listdir(case_dir)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(case_dir, fn), "pt") as f:
                for k in f.keys():
                    names[k] = list(f.get_slice(k).get_shape())
    return names


def make_case(name, out_root):
    cfg_fn, family, seed_key, opts, notes = CASES[name]
    case_dir = os.path.join(out_root, name)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    os.makedirs(case_dir)

    base_seed = sum((i + 1) * ord(c) for i, c in enumerate(seed_key))  # stable everywhere
    ids = prompt_ids()
    # Deterministic search over a few seeds for weights whose greedy continuation is robust
    # (top1-top2 logit margin >= MIN_MARGIN at every generated step) and not degenerate
    # (>= MIN_DISTINCT distinct new tokens); the first seed passing wins, else the best.
    best = None
    for attempt in range(SEED_TRIES):
        seed = base_seed + 1000 * attempt
        torch.manual_seed(seed)
        config = cfg_fn()
        config._attn_implementation = "eager"
        kw = {"dtype": torch.float32} if TF_MAJOR >= 5 else {"torch_dtype": torch.float32}
        model = AutoModelForCausalLM.from_config(config, **kw)
        reinit_(model, seed)
        model.eval()
        mem_logits = forward_logits(model, ids)  # before generate(): dynamic rope is stateful
        new, step_logits = greedy(model, ids)
        score = (min(float(margins(step_logits).min()), MIN_MARGIN), len(set(new)) >= MIN_DISTINCT)
        ok = score[0] >= MIN_MARGIN and score[1]
        if best is None or (score[1], score[0]) > (best[0][1], best[0][0]):
            best = (score, seed, model, mem_logits)
        if ok:
            break
    _, seed, model, mem_logits = best

    save_kw = {"safe_serialization": True}
    if "max_shard_size" in opts:
        save_kw["max_shard_size"] = opts["max_shard_size"]
    model.save_pretrained(case_dir, **save_kw)
    if opts.get("old_rope_style"):
        rewrite_old_rope(case_dir)

    checks = {}
    problems = []
    # Everything below uses the model as reloaded from disk: that is what an importer sees.
    # Each measurement gets a freshly loaded model: HF's dynamic-NTK rope keeps state
    # (inv_freq of the longest sequence seen so far) across forward calls.
    ref = load(case_dir)
    logits = forward_logits(ref, ids)
    d = float((logits - mem_logits).abs().max())
    checks["reload_vs_in_memory_max_abs"] = d
    if d > 1e-5:
        problems.append(f"reloaded checkpoint disagrees with in-memory model: {d:.3g}")

    if name == "llama3_rope_scaling_old":
        other = os.path.join(out_root, "llama3")
        if os.path.isfile(os.path.join(other, "reference_logits.npy")):
            d = float(np.abs(np.load(os.path.join(other, "reference_logits.npy")) - logits.numpy()).max())
            checks["vs_llama3_max_abs"] = d
            if d > 1e-5:
                problems.append(f"old-style rope config loads differently from llama3: {d:.3g}")

    inc_max, _ = incremental_check(load(case_dir), ids)
    checks["decode_vs_prefill_max_abs"] = inc_max
    if inc_max > DECODE_TOL:
        problems.append(f"HF incremental decode disagrees with prefill on the prompt: {inc_max:.3g}")

    new, step_logits = greedy(load(case_dir), ids)
    assert len(new) == NEW_TOKENS, (name, new)
    full_ids = ids + new[:-1]
    full_logits = forward_logits(load(case_dir), full_ids)
    # generate()'s step logits vs a no-cache forward over the whole sequence
    d = float((step_logits - full_logits[PROMPT_LEN - 1:]).abs().max())
    checks["generate_vs_full_forward_max_abs"] = d
    if d > 1e-4:
        problems.append(f"HF generate() (cached) step logits differ from full forward: {d:.3g}")
    rec = greedy_recompute(lambda: load(case_dir), ids)
    checks["greedy_matches_recompute"] = rec == new
    if rec != new:
        problems.append("HF cached greedy differs from no-cache recompute greedy")
    checks["feature_ablations"] = ablation_diffs(name, case_dir, ref, ids, logits)
    for k, v in checks["feature_ablations"].items():
        if v < 1e-3:
            problems.append(f"ablation {k} = {v:.3g}: feature barely affects the logits")
    checks["full_logits_prefix_equals_reference_logits"] = bool(
        (full_logits[:PROMPT_LEN] - logits).abs().max() <= 1e-5)
    checks["min_top1_top2_margin_prompt"] = float(margins(logits).min())
    checks["min_top1_top2_margin_greedy"] = float(margins(step_logits).min())
    checks["logits_std"] = float(logits.std())

    np.save(os.path.join(case_dir, "reference_logits.npy"), logits.numpy().astype(np.float32))
    np.save(os.path.join(case_dir, "reference_full_logits.npy"),
            full_logits.numpy().astype(np.float32))
    rec_json = {
        "case": name,
        "family": family,
        "prompt_ids": ids,
        "greedy_ids": new,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "attn_implementation": "eager",
        "notes": notes,
        "weights_seed": seed,
        "checks": checks,
        "problems": problems,
    }
    if rec != new:
        rec_json["greedy_ids_recompute"] = rec
    with open(os.path.join(case_dir, "reference.json"), "w") as f:
        json.dump(rec_json, f, indent=2)
        f.write("\n")

    for f in os.listdir(case_dir):
        os.chmod(os.path.join(case_dir, f), 0o644)
    size = sum(os.path.getsize(os.path.join(case_dir, f)) for f in os.listdir(case_dir)
               if f.endswith(".safetensors"))
    names = weight_names(case_dir)
    return {"case": name, "safetensors_bytes": size, "checks": checks, "problems": problems,
            "n_tensors": len(names), "names": names}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output root (e.g. tests/models/tiny)")
    ap.add_argument("--only", nargs="+", choices=sorted(CASES), help="make only these cases")
    ap.add_argument("--list-weights", action="store_true", help="print saved tensor names/shapes")
    args = ap.parse_args()

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(args.out, exist_ok=True)
    names = args.only or list(CASES)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    bad = 0
    for name in names:
        r = make_case(name, args.out)
        c = r["checks"]
        print(f"{name:26s} {r['safetensors_bytes'] / 1e6:6.3f} MB  tensors={r['n_tensors']:3d}  "
              f"reload={c['reload_vs_in_memory_max_abs']:.1e}  "
              f"decode={c['decode_vs_prefill_max_abs']:.1e}  "
              f"gen={c['generate_vs_full_forward_max_abs']:.1e}  "
              f"margin={c['min_top1_top2_margin_greedy']:.3f}  std={c['logits_std']:.2f}")
        for p in r["problems"]:
            print(f"    NOTE: {p}")
        if args.list_weights:
            for k, s in r["names"].items():
                print(f"      {k} {s}")
        if any("reloaded" in p or "old-style" in p for p in r["problems"]):
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# Makes checkpoints the tests never saw (other sizes, seeds, settings) with HF references.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: make_unseen_checkpoints.py --out DIR

The acceptance check of the CPU slice: checkpoints of supported families that no test was
written against, made by transformers itself (random weights, other sizes and seeds), with
the same reference files as tests/models/tiny. Then, for each:

  python3 tests/e2e/check_model.py --bin build/bin --case DIR/<name>

Needs torch and transformers (tests/models/README.md says how to install them).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
import make_tiny_checkpoints as tiny  # noqa: E402


def cfg_unseen_llama():
    from transformers import LlamaConfig
    return LlamaConfig(**tiny.common(
        hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
        **tiny.rope_kwargs(250000.0, {"rope_type": "llama3", "factor": 4.0,
                                      "low_freq_factor": 2.0, "high_freq_factor": 8.0,
                                      "original_max_position_embeddings": 128})))


def cfg_unseen_qwen2():
    from transformers import Qwen2Config
    kw = tiny.common(hidden_size=96, intermediate_size=192, num_hidden_layers=3,
                     num_attention_heads=6, num_key_value_heads=3, tie_word_embeddings=False,
                     use_sliding_window=False, sliding_window=None, max_window_layers=3,
                     rms_norm_eps=1e-6, **tiny.rope_kwargs(10000.0))
    kw.pop("head_dim")
    return Qwen2Config(**kw)


def cfg_unseen_deepseek_v3():
    from transformers import DeepseekV3Config
    return DeepseekV3Config(**tiny._deepseek_common(
        num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2, n_routed_experts=16, num_experts_per_tok=4,
        n_group=4, topk_group=3, first_k_dense_replace=2, q_lora_rank=24, kv_lora_rank=24,
        qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=24, topk_method="noaux_tc",
        scoring_func="sigmoid", norm_topk_prob=False, routed_scaling_factor=1.8,
        **tiny.rope_kwargs(20000.0, {"rope_type": "yarn", "factor": 2.0, "mscale": 0.9,
                                     "mscale_all_dim": 0.9, "beta_fast": 16.0,
                                     "beta_slow": 2.0,
                                     "original_max_position_embeddings": 64})))


UNSEEN = {
    "unseen_llama": (cfg_unseen_llama, "llama", "unseen_llama", {}, "GQA 6/2, 3 layers"),
    "unseen_qwen2": (cfg_unseen_qwen2, "qwen2", "unseen_qwen2", {}, "untied qwen2, 6/3 heads"),
    "unseen_deepseek_v3": (cfg_unseen_deepseek_v3, "deepseek_v3", "unseen_deepseek_v3", {},
                           "16 experts top-4, 2 dense layers, no renormalization"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", nargs="*", choices=sorted(UNSEEN), help="make only these")
    args = parser.parse_args()
    tiny.CASES.update(UNSEEN)
    for name in args.only or UNSEEN:
        tiny.make_case(name, args.out)
        print(f"wrote {os.path.join(args.out, name)}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# HF transformers decode peer for bench/gpu_decode.sh: eager and torch.compile (static cache)
# ms/step of a model built from config.json with random bf16 weights on the GPU.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: hf_decode_peer.py CONFIG_DIR [--prompt 128] [--steps 64] [--batch 1]
                         [--prefill-only TOKENS] [--attn eager|sdpa] [--compile-only]

Prints lines 'hf eager batch B: X ms/step' and 'hf compile batch B: X ms/step' (median of
--steps decode steps after warm-up, CUDA-synchronized per step)."""
import argparse
import statistics
import time

import torch
import transformers


def timed_steps(step, steps):
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def prefill_peer(model, config, a):
    """Prompt processing: one forward over --prefill-only tokens, eager and torch.compile."""
    n = a.prefill_only
    ids = torch.randint(0, config.vocab_size, (1, n), device="cuda")
    with torch.no_grad():
        def eager():
            model(input_ids=ids, use_cache=False)
        for _ in range(2):
            eager()
        tag = "" if a.attn == "eager" else f" ({a.attn})"
        print(f"hf eager{tag} prefill {n}: {timed_steps(eager, 5):.3f} ms", flush=True)
        if a.no_compile:
            return
        try:
            forward = torch.compile(model.forward, fullgraph=True)

            def compiled():
                forward(input_ids=ids, use_cache=False)
            for _ in range(3):
                compiled()
            print(f"hf compile{tag} prefill {n}: {timed_steps(compiled, 5):.3f} ms", flush=True)
        except Exception as e:  # report, do not hide
            print(f"hf compile prefill {n}: failed: {type(e).__name__}: {str(e)[:300]}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("config_dir")
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--compile-only", action="store_true", help="skip the eager decode timing")
    p.add_argument("--attn", choices=("eager", "sdpa"), default="eager",
                   help="HF attention implementation (the compiled peer is timed with both)")
    p.add_argument("--prefill-only", type=int, default=0,
                   help="time a forward pass over this many tokens (batch 1) instead of decode")
    a = p.parse_args()
    config = transformers.AutoConfig.from_pretrained(a.config_dir)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(
            config, torch_dtype=torch.bfloat16, attn_implementation=a.attn)
    model.eval()
    if a.prefill_only:
        prefill_peer(model, config, a)
        return
    ids = torch.randint(0, config.vocab_size, (a.batch, a.prompt), device="cuda")
    with torch.no_grad():
        # Eager, dynamic cache.
        out = model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        state = {"tok": tok, "cache": cache}

        def eager_step():
            o = model(input_ids=state["tok"], past_key_values=state["cache"], use_cache=True)
            state["tok"] = o.logits[:, -1:].argmax(-1)
            state["cache"] = o.past_key_values

        if not a.compile_only:
            for _ in range(3):
                eager_step()
            print(f"hf eager batch {a.batch}: {timed_steps(eager_step, a.steps):.3f} ms/step",
                  flush=True)
        if a.no_compile:
            return
        # torch.compile over a static cache (the recipe of the transformers docs).
        try:
            max_len = a.prompt + a.steps + 16
            static = transformers.StaticCache(config=config, max_cache_len=max_len)
            out = model(input_ids=ids, past_key_values=static, use_cache=True,
                        cache_position=torch.arange(a.prompt, device="cuda"))
            forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
            st = {"tok": out.logits[:, -1:].argmax(-1), "pos": a.prompt}

            def compiled_step():
                pos = torch.tensor([st["pos"]], device="cuda")
                o = forward(input_ids=st["tok"], past_key_values=static, use_cache=True,
                            cache_position=pos)
                st["tok"] = o.logits[:, -1:].argmax(-1)
                st["pos"] += 1

            for _ in range(4):
                compiled_step()
            steps = min(a.steps, max_len - st["pos"] - 1)
            tag = "" if a.attn == "eager" else f" ({a.attn})"
            print(f"hf compile{tag} batch {a.batch}: {timed_steps(compiled_step, steps):.3f} "
                  "ms/step", flush=True)
        except Exception as e:  # report, do not hide
            print(f"hf compile batch {a.batch}: failed: {type(e).__name__}: {str(e)[:300]}")


if __name__ == "__main__":
    main()

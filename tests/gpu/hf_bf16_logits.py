#!/usr/bin/env python3
# References for the CUDA executor's bf16 end-to-end check, made on the GPU from the tiny
# checkpoint: (1) the HF model with its weights rounded to bf16 (round to nearest even, as the
# CUDA executor uploads them) and run in f32 — the model the executor actually holds, computed
# exactly; (2) the same model run in bf16 by HF — HF's own bf16 error, printed as the floor.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: hf_bf16_logits.py CHECKPOINT_DIR PROMPT OUT_W16_F32.npy OUT_BF16.npy

PROMPT: a reference.json (its prompt_ids), or "random:N:SEED" for N ids drawn from the
vocabulary (written to OUT_W16_F32.ids as comma-separated text for tessel-run)."""
import json
import sys

import numpy as np
import torch
import transformers

ckpt, prompt, out_w16, out_bf16 = sys.argv[1:5]
model = transformers.AutoModelForCausalLM.from_pretrained(
    ckpt, torch_dtype=torch.float32, attn_implementation="eager").cuda().eval()
if prompt.startswith("random:"):
    _, n, seed = prompt.split(":")
    gen = torch.Generator().manual_seed(int(seed))
    ids = torch.randint(0, model.config.vocab_size, (int(n),), generator=gen).tolist()
    with open(out_w16[:-4] + ".ids" if out_w16.endswith(".npy") else out_w16 + ".ids", "w") as f:
        f.write(",".join(map(str, ids)))
else:
    ids = json.load(open(prompt))["prompt_ids"]
with torch.no_grad():
    for p in model.parameters():
        p.copy_(p.to(torch.bfloat16).to(torch.float32))
    # Checkpoint tensors kept as buffers (DeepSeek-V3's e_score_correction_bias) are bf16 in
    # the executor too; computed buffers (RoPE inv_freq) are not weights and stay f32.
    for name, b in model.named_buffers():
        if b.is_floating_point() and name.endswith("bias"):
            b.copy_(b.to(torch.bfloat16).to(torch.float32))
    x = torch.tensor([ids], device="cuda")
    # f32 math on the bf16 weights: TF32 off so the reference is f32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    np.save(out_w16, model(x).logits[0].float().cpu().numpy().astype(np.float32))
    model = model.to(torch.bfloat16)
    np.save(out_bf16, model(x).logits[0].float().cpu().numpy().astype(np.float32))

#!/usr/bin/env python3
# References for the CUDA executor's bf16 end-to-end check, made on the GPU from the tiny
# checkpoint: (1) the HF model with its weights rounded to bf16 (round to nearest even, as the
# CUDA executor uploads them) and run in f32 — the model the executor actually holds, computed
# exactly; (2) the same model run in bf16 by HF — HF's own bf16 error, printed as the floor;
# (3) for MoE models, the error that bf16-sized noise at the routers alone brings (routing
# flips at near-ties): the relative errors of 16 such runs and the positions where a run
# flipped a choice, in OUT_W16_F32 with .npy replaced by .routing_noise.npz (see
# routing_noise below).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: hf_bf16_logits.py CHECKPOINT_DIR PROMPT OUT_W16_F32.npy OUT_BF16.npy

PROMPT: a reference.json (its prompt_ids), or "random:N:SEED" for N ids drawn from the
vocabulary (written to OUT_W16_F32.ids as comma-separated text for tessel-run)."""
import copy
import json
import os
import sys

import numpy as np
import torch
import transformers



class Routers:
    """Forward hooks on the MoE routers (modules whose class name ends in "Router": Mixtral's
    and DeepSeek V2/V3's return (logits, weights, top-k indices)): each forward records the
    sorted top-k expert ids per token and the router's input; `noise` (one tensor per router,
    [tokens, 1]) when set adds Gaussian noise of that relative RMS to each token's input."""

    def __init__(self, model):
        self.modules = [m for m in model.modules() if type(m).__name__.endswith("Router")]
        self.routes, self.inputs, self.noise, self.generator = [], [], None, None
        for i, m in enumerate(self.modules):
            m.register_forward_pre_hook(lambda mod, args, i=i: self._perturb(i, args))
            m.register_forward_hook(lambda mod, args, out: self._record(args, out))

    def _perturb(self, i, args):
        if self.noise is None:
            return None
        h = args[0]
        flat = h.reshape(-1, h.shape[-1]).float()
        rms = flat.norm(dim=-1, keepdim=True) / flat.shape[-1] ** 0.5
        z = torch.randn(flat.shape, generator=self.generator, device="cpu").to(flat.device)
        return ((flat + self.noise[i] * rms * z).to(h.dtype).reshape(h.shape),) + args[1:]

    def _record(self, args, out):
        idx = out[-1]
        self.routes.append(torch.sort(idx.reshape(-1, idx.shape[-1]), dim=-1).values.cpu())
        h = args[0]
        self.inputs.append(h.reshape(-1, h.shape[-1]).float().cpu())

    def take(self):
        routes, inputs = self.routes, self.inputs
        self.routes, self.inputs = [], []
        return routes, inputs


def routing_noise(model, x, routers, routes_f32, inputs_f32, inputs_bf16, w16, runs=16):
    """The error that routing flips alone bring to a bf16 engine: `runs` runs of the
    f32-on-bf16-weights model with Gaussian noise added to every router's input (per router
    and token, of the relative RMS measured between HF bf16's router input and the f32 one: the
    error a bf16 engine brings to that decision). Returns each run's relative error by norm
    against w16 (the unperturbed logits) and the positions where some run flipped a choice.
    Expert choice is discontinuous: at a near-tie any bf16 engine may route a token to
    another expert, which moves that position's logits by 10-30% (and, through attention,
    later positions' a little) without an error of its own."""
    routers.noise = [((b - a).norm(dim=-1, keepdim=True) /
                      a.norm(dim=-1, keepdim=True).clamp_min(1e-30)).to(x.device)
                     for a, b in zip(inputs_f32, inputs_bf16)]
    routers.generator = torch.Generator().manual_seed(0)
    errors, flipped = [], torch.zeros(routes_f32[0].shape[0], dtype=torch.bool)
    for _ in range(runs):
        logits = model(x).logits[0].float().cpu().numpy()
        errors.append(np.linalg.norm(logits - w16) / np.linalg.norm(w16))
        for a, b in zip(routers.take()[0], routes_f32):
            flipped |= (a != b).any(dim=-1)
    routers.noise = None
    return np.array(errors), flipped.numpy()


DEVICE = os.environ.get("HF_DEVICE", "cuda")  # "cpu" to try it without a GPU
ckpt, prompt, out_w16, out_bf16 = sys.argv[1:5]
model = transformers.AutoModelForCausalLM.from_pretrained(
    ckpt, torch_dtype=torch.float32, attn_implementation="eager").to(DEVICE).eval()
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
    x = torch.tensor([ids], device=DEVICE)
    # f32 math on the bf16 weights: TF32 off so the reference is f32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    routers, routers16 = Routers(model), Routers(model16)
    w16 = model(x).logits[0].float().cpu().numpy().astype(np.float32)
    np.save(out_w16, w16)
    np.save(out_bf16, model16(x).logits[0].float().cpu().numpy().astype(np.float32))
    if routers.modules:
        routes_f32, inputs_f32 = routers.take()
        _, inputs_bf16 = routers16.take()
        errors, flipped = routing_noise(model, x, routers, routes_f32, inputs_f32, inputs_bf16,
                                        w16.astype(np.float64))
        np.savez((out_w16[:-4] if out_w16.endswith(".npy") else out_w16) + ".routing_noise.npz",
                 errors=errors, flipped=flipped)
        print(f"routing noise: relative errors {np.round(errors, 4).tolist()}; positions "
              f"flipped in some run {np.nonzero(flipped)[0].tolist()} of {len(ids)}")

#!/usr/bin/env python3
# The HF model of a tiny checkpoint run in bf16 on the GPU: the bf16 rounding floor that the
# CUDA executor's error vs the f32 reference is judged against (see compare_logits.py).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: hf_bf16_logits.py CHECKPOINT_DIR REFERENCE_JSON OUT.npy"""
import json
import sys

import numpy as np
import torch
import transformers

ckpt, ref_json, out = sys.argv[1:4]
ids = json.load(open(ref_json))["prompt_ids"]
model = transformers.AutoModelForCausalLM.from_pretrained(
    ckpt, torch_dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
with torch.no_grad():
    logits = model(torch.tensor([ids], device="cuda")).logits[0].float().cpu().numpy()
np.save(out, logits.astype(np.float32))

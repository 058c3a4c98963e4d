#!/usr/bin/env python3
# The pass/fail rules of compare_logits.py (the GPU end-to-end criterion), on synthetic logits:
# runs on any machine (ctest gpu_compare_logits_rules), so a change to the rules that lets a
# worse result pass fails here before it reaches the GPU.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng()  # fresh inputs each run


def run(ours, ref, w16=None, hf16=None, *flags):
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for name, a in (("ours", ours), ("ref", ref), ("w16", w16), ("hf16", hf16)):
            if a is None:
                continue
            p = os.path.join(d, name + ".npy")
            np.save(p, a.astype(np.float32))
            paths.append(p)
        r = subprocess.run([sys.executable, os.path.join(HERE, "compare_logits.py"), "t", *paths,
                            *flags], capture_output=True, text=True)
        return r.returncode == 0, r.stdout.strip()


def noisy(a, rel):
    n = rng.normal(size=a.shape)
    return a + n * rel * np.linalg.norm(a) / np.linalg.norm(n)


def flip(a, rows):
    b = a.copy()
    for i in rows:  # swap the top-2 of row i
        top = np.argsort(b[i])[-2:]
        b[i, top[0]], b[i, top[1]] = b[i, top[1]], b[i, top[0]]
    return b


failures = []
cases = 0


def expect(name, ok_expected, result):
    global cases
    cases += 1
    ok, line = result
    if ok != ok_expected:
        failures.append(f"{name}: expected {'PASS' if ok_expected else 'FAIL'}, got: {line}")


# A clear winner per row (margin ~20) so that noise alone never flips top-1.
ref = rng.normal(size=(200, 64)) * 3.0
ref[np.arange(200), rng.integers(0, 64, 200)] += 30.0
expect("identical", True, run(ref, ref))
expect("5e-3 noise", True, run(noisy(ref, 5e-3), ref))
expect("2e-2 noise", False, run(noisy(ref, 2e-2), ref))
nan = ref.copy()
nan[3, 5] = np.nan
expect("NaN", False, run(nan, ref))
expect("shape", False, run(ref[:, :10], ref))
# Criterion against the bf16-weight reference when given.
w16 = noisy(ref, 3e-2)
expect("vs w16 close", True, run(noisy(w16, 5e-3), ref, w16, noisy(w16, 8e-3)))
expect("vs w16 far", False, run(noisy(w16, 2e-2), ref, w16, noisy(w16, 8e-3)))
# Top-1 below 99%: fails unless --top1-decisive and the disagreements sit at margins within
# HF bf16's own noise. Rows 0-19 get a near tie (margin 0.01); HF bf16 is the reference plus
# noise of ~0.04 per logit (4 sigma ~0.15), so rows 0-19 are not decisive and the rest are.
ties = w16.copy()
for i in range(20):
    top = np.argsort(ties[i])[-2:]
    ties[i, top[0]] = ties[i, top[1]] - 0.01
hf16 = hf16_ties = noisy(ties, 8e-3)
ours = flip(ties, [1, 2, 3])                 # 98.5% of all, 100% of the decisive
ours_bad = flip(ties, [1, 2, 3, 100, 150])   # 97.5% of all, 98.9% of the decisive
expect("top1 98.5%", False, run(ours, ties, ties, hf16))
expect("top1 98.5% decisive", True, run(ours, ties, ties, hf16, "--top1-decisive"))
expect("top1 decisive flips", False, run(ours_bad, ties, ties, hf16, "--top1-decisive"))
expect("top1 decisive, exact HF", False,  # sigma 0 off the flipped rows: every row decisive
       run(ours, ties, ties, ties.copy(), "--top1-decisive"))
# Relative error above the bar fails; --routing-noise widens the bar by the largest error of
# the routing-noise runs (a routing flip's jump at one row passes when such runs show jumps
# that large, fails when they do not; NaN still fails).
ours = noisy(w16, 2e-2)
expect("rel 2e-2", False, run(ours, w16, w16, noisy(w16, 3e-2), "--top1-decisive"))
jump_row = int(rng.integers(0, w16.shape[0]))
ours = noisy(w16, 3e-3)
ours[jump_row] = noisy(w16[jump_row:jump_row + 1], 0.3)[0]  # ~2e-2 by norm over 200 rows
hf16 = noisy(w16, 1e-2)
with tempfile.TemporaryDirectory() as d:
    def noise(values, flipped_rows=()):
        path = os.path.join(d, f"noise{len(values)}-{values[0]}-{len(flipped_rows)}.npz")
        flipped = np.zeros(w16.shape[0], dtype=bool)
        flipped[list(flipped_rows)] = True
        np.savez(path, errors=np.array(values), flipped=flipped)
        return path
    expect("routing jump, no noise runs", False, run(ours, w16, w16, hf16, "--top1-decisive"))
    expect("routing jump, noise runs as large", True,
           run(ours, w16, w16, hf16, "--top1-decisive", "--routing-noise",
               noise([0.004, 0.03, 0.01])))
    expect("routing jump, noise runs small", False,
           run(ours, w16, w16, hf16, "--top1-decisive", "--routing-noise",
               noise([0.004, 0.005, 0.003])))
    nan = ours.copy()
    nan[jump_row, 0] = np.nan
    expect("NaN with noise runs", False,
           run(nan, w16, w16, hf16, "--top1-decisive", "--routing-noise", noise([0.5])))
    expect("missing noise file", False,
           run(ours, w16, w16, hf16, "--top1-decisive", "--routing-noise",
               os.path.join(d, "absent.npz")))
    expect("NaN noise runs", False,
           run(ours, w16, w16, hf16, "--top1-decisive", "--routing-noise", noise([np.nan])))
    # Top-1 flips at decisive margins (rows 100, 150 of `ties`): pass only where the noise
    # runs re-routed those positions. The noise runs' error is set above the flips' own
    # relative error (which depends on the random margins of those rows: with a fixed 0.1 it
    # exceeded the bar in about one run in a hundred), so that top-1 alone decides.
    flips_error = float(np.linalg.norm(ours_bad - ties) / np.linalg.norm(ties))
    rerouted = max(0.1, 1.5 * flips_error)
    expect("top1 flips at re-routed positions", True,
           run(ours_bad, ties, ties, hf16_ties, "--top1-decisive", "--routing-noise",
               noise([rerouted], [100, 150])))
    expect("top1 flips, not re-routed", False,
           run(ours_bad, ties, ties, hf16_ties, "--top1-decisive", "--routing-noise",
               noise([rerouted], [7])))
# --hf16-bar: the bar is the larger of 1e-2 and HF bf16's own error (long sequences); worse
# than HF bf16 still fails, and without HF's run the flag changes nothing.
hf16 = noisy(w16, 2e-2)
ours = noisy(w16, 1.5e-2)
expect("1.5e-2, HF bf16 at 2e-2, no flag", False, run(ours, w16, w16, hf16))
expect("1.5e-2, HF bf16 at 2e-2, --hf16-bar", True, run(ours, w16, w16, hf16, "--hf16-bar"))
expect("2.5e-2, HF bf16 at 2e-2, --hf16-bar", False,
       run(noisy(w16, 2.5e-2), w16, w16, hf16, "--hf16-bar"))
expect("1.5e-2, HF bf16 at 5e-3, --hf16-bar", False,
       run(ours, w16, w16, noisy(w16, 5e-3), "--hf16-bar"))
expect("1.5e-2, --hf16-bar without HF bf16", False, run(ours, w16, None, None, "--hf16-bar"))
if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"compare_logits rules: all {cases} cases as expected")

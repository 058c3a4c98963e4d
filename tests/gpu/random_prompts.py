#!/usr/bin/env python3
# Random prompts for a tiny model's vocabulary, one line of comma-separated ids each (the
# format of tessel-run --prompt-ids and --batch-prompt-ids), for the GPU check scripts.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: random_prompts.py MODEL_DIR SEQUENCES LENGTH [SEED]

MODEL_DIR holds config.json (its vocab_size bounds the ids); without SEED the ids are fresh
each run."""
import json
import os
import random
import sys


def main(argv):
    if len(argv) not in (4, 5):
        sys.exit(__doc__)
    with open(os.path.join(argv[1], "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    sequences, length = int(argv[2]), int(argv[3])
    rng = random.Random(int(argv[4])) if len(argv) == 5 else random.Random()
    for _ in range(sequences):
        print(",".join(str(rng.randrange(vocab)) for _ in range(length)))


if __name__ == "__main__":
    main(sys.argv)

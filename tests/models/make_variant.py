#!/usr/bin/env python3
# Makes a modified copy of a tiny test checkpoint, for the importer's lit tests.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: make_variant.py MODE SRC_DIR DST_DIR

Copies the checkpoint SRC_DIR (config.json + model.safetensors) to DST_DIR and applies
MODE. Standard library only, so the tests run anywhere.

Modes:
  old-rope          rope_parameters -> the older top-level rope_theta + rope_scaling
  unknown-type      model_type "gpt_neox_lol"
  bad-json          config.json cut in the middle of an object
  missing-tensor    drops model.norm.weight from the safetensors file
  extra-tensor      adds an unused tensor model.layers.0.extra.weight
  shape-mismatch    config hidden_size / intermediate_size that the tensors contradict
  dtype             model.norm.weight stored as I32
  truncated         the safetensors file cut in the middle of its data
  header-past-end   the header length prefix points past the end of the file
  overlap           two tensors' data_offsets overlap
"""
import json
import os
import shutil
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    return header, blob[8 + n:]


def write_safetensors(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)


def tensor_bytes(header, name, data):
    begin, end = header[name]["data_offsets"]
    return data[begin:end]


def rebuild(header, data, drop=(), add=None, retype=None):
    """Re-lays out the data section without `drop`, plus `add` = (name, entry, bytes)."""
    entries = []
    for name, entry in header.items():
        if name == "__metadata__" or name in drop:
            continue
        payload = tensor_bytes(header, name, data)
        if retype and name in retype:
            entry = dict(entry, dtype=retype[name])
        entries.append((name, entry, payload))
    if add:
        entries.append(add)
    new_header, chunks, offset = {}, [], 0
    if "__metadata__" in header:
        new_header["__metadata__"] = header["__metadata__"]
    for name, entry, payload in entries:
        new_header[name] = dict(entry, data_offsets=[offset, offset + len(payload)])
        chunks.append(payload)
        offset += len(payload)
    return new_header, b"".join(chunks)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    mode, src, dst = sys.argv[1:]
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    config_path = os.path.join(dst, "config.json")
    weights = os.path.join(dst, "model.safetensors")
    with open(config_path) as f:
        config = json.load(f)

    if mode == "old-rope":
        params = config.pop("rope_parameters", None)
        if params:
            config["rope_theta"] = params.pop("rope_theta", 10000.0)
            if params.get("rope_type", "default") != "default":
                config["rope_scaling"] = params
    elif mode == "unknown-type":
        config["model_type"] = "gpt_neox_lol"
    elif mode == "bad-json":
        text = json.dumps(config, indent=2)
        with open(config_path, "w") as f:
            f.write(text[: len(text) // 2])
        return
    elif mode == "shape-mismatch":
        config["intermediate_size"] = config["intermediate_size"] * 2
    elif mode in ("missing-tensor", "extra-tensor", "dtype"):
        header, data = read_safetensors(weights)
        if mode == "missing-tensor":
            header, data = rebuild(header, data, drop={"model.norm.weight"})
        elif mode == "extra-tensor":
            extra = ("model.layers.0.extra.weight", {"dtype": "F32", "shape": [4]}, bytes(16))
            header, data = rebuild(header, data, add=extra)
        else:
            header, data = rebuild(header, data, retype={"model.norm.weight": "I32"})
        write_safetensors(weights, header, data)
    elif mode == "truncated":
        size = os.path.getsize(weights)
        with open(weights, "r+b") as f:
            f.truncate(size // 2)
    elif mode == "header-past-end":
        size = os.path.getsize(weights)
        with open(weights, "r+b") as f:
            f.write(struct.pack("<Q", size * 4))
    elif mode == "overlap":
        header, data = read_safetensors(weights)
        names = sorted(n for n in header if n != "__metadata__")
        a, b = header[names[0]], header[names[1]]
        # Point b at a's bytes (same size when both are norms; otherwise a prefix of a).
        size = b["data_offsets"][1] - b["data_offsets"][0]
        start = a["data_offsets"][0]
        b["data_offsets"] = [start, start + size]
        write_safetensors(weights, header, data)
        return
    else:
        sys.exit(f"unknown mode '{mode}'\n" + __doc__)
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()

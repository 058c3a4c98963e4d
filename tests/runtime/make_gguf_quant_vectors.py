#!/usr/bin/env python3
# Regenerates the GGUF test data (dequantization vectors and tiny.gguf) from the gguf package.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Writes tests/runtime/data/{gguf_quant_vectors.bin,tiny.gguf} and the GGUF fuzz seeds.

The expected values come from gguf-py (`pip install gguf numpy`), whose numpy
dequantizers follow ggml's reference `dequantize_row_*`; gguf_test.cc checks that
tessel's DequantizeToF32 reproduces them bit for bit. The output is deterministic
(fixed seed), so rerunning the script must not change the committed files.

gguf_quant_vectors.bin, all integers little-endian:
  magic          4 bytes  b"TQV1"
  record_count   u32
  then record_count records:
    ggml_type      u32     ggml_type id (0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 12 Q4_K, 14 Q6_K, 30 BF16)
    element_count  u32
    byte_count     u32
    data           byte_count bytes, the blocks as stored in a GGUF tensor
    expected       element_count float32, gguf.quants.dequantize(data)

Block contents: for Q8_0, Q4_0 and Q4_1 half the blocks come from gguf.quants.quantize
of scaled normal samples and half are random bytes; Q4_K and Q6_K (which gguf-py can
dequantize but not quantize) are random bytes. Every f16 scale field is a random
finite f16 (normal, subnormal, zero, either sign) so all scale paths are covered.
F16 and BF16 records are random bit patterns plus edge values; F16 leaves out NaNs
because numpy's f16->f32 NaN quieting depends on the CPU (tested by hand instead).
"""

import argparse
import pathlib
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

SEED = 20240607
MAGIC = b"TQV1"


def random_finite_f16(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random f16 bit patterns that are not inf or NaN (exponent field below 0x1f)."""
    bits = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
    exponent = (bits >> 10) & 0x1F
    bits[exponent == 0x1F] &= np.uint16(0xBFFF)  # clear the exponent's top bit: finite
    return bits


def set_f16_fields(blocks: np.ndarray, offsets: list[int], rng: np.random.Generator) -> None:
    """Overwrites the f16 fields at byte `offsets` of every block with random finite values."""
    for offset in offsets:
        blocks[:, offset : offset + 2] = (
            random_finite_f16(rng, blocks.shape[0]).astype("<u2").view(np.uint8).reshape(-1, 2)
        )


def random_blocks(qtype: T, count: int, f16_offsets: list[int], rng) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(count, type_size), dtype=np.uint16).astype(np.uint8)
    set_f16_fields(blocks, f16_offsets, rng)
    return blocks


def quantized_blocks(qtype: T, count: int, rng) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    scales = np.exp(rng.uniform(-6, 3, size=(count, 1))).astype(np.float32)
    values = (rng.standard_normal((count, block_size)) * scales).astype(np.float32)
    return gguf.quants.quantize(values, qtype).reshape(count, type_size)


def make_records(rng: np.random.Generator) -> list[tuple[T, np.ndarray]]:
    records = []

    f32 = rng.standard_normal(240).astype(np.float32).view(np.uint32)
    edges = np.array([0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF,
                      0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC01234, 0x3F800000,
                      0xBF800000, 0x33800000, 0x477FE000, 0x4B000001], dtype=np.uint32)
    records.append((T.F32, np.concatenate([edges, f32]).astype("<u4").view(np.uint8)))

    f16_edges = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00,
                          0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x3555, 0x0200, 0x1400, 0x5140],
                         dtype=np.uint16)
    f16 = np.concatenate([f16_edges, random_finite_f16(rng, 496)])
    records.append((T.F16, f16.astype("<u2").view(np.uint8)))

    bf16_edges = np.array([0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0xBF80, 0x7F7F,
                           0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0x4049, 0xC2F7, 0x3DCD],
                          dtype=np.uint16)
    bf16 = rng.integers(0, 1 << 16, size=496, dtype=np.uint32).astype(np.uint16)
    records.append((T.BF16, np.concatenate([bf16_edges, bf16]).astype("<u2").view(np.uint8)))

    records.append((T.Q8_0, np.concatenate([quantized_blocks(T.Q8_0, 8, rng),
                                            random_blocks(T.Q8_0, 8, [0], rng)])))
    records.append((T.Q4_0, np.concatenate([quantized_blocks(T.Q4_0, 8, rng),
                                            random_blocks(T.Q4_0, 8, [0], rng)])))
    records.append((T.Q4_1, np.concatenate([quantized_blocks(T.Q4_1, 8, rng),
                                            random_blocks(T.Q4_1, 8, [0, 2], rng)])))
    # block_q4_K: d at 0, dmin at 2; block_q6_K: d at 208 (after ql, qh, scales).
    records.append((T.Q4_K, random_blocks(T.Q4_K, 6, [0, 2], rng)))
    records.append((T.Q6_K, random_blocks(T.Q6_K, 6, [208], rng)))
    return records


def write_vectors(path: pathlib.Path, rng: np.random.Generator) -> None:
    records = make_records(rng)
    out = bytearray(MAGIC + struct.pack("<I", len(records)))
    for qtype, data in records:
        data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        expected = gguf.quants.dequantize(data, qtype).astype("<f4").reshape(-1)
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        assert data.size % type_size == 0 and expected.size == data.size // type_size * block_size
        out += struct.pack("<III", int(qtype), expected.size, data.size)
        out += data.tobytes()
        out += expected.tobytes()
    path.write_bytes(bytes(out))
    print(f"wrote {path} ({len(out)} bytes, {len(records)} records)")


# --- tiny.gguf --------------------------------------------------------------------------------
# gguf_test.cc recomputes every tensor value below from the same closed-form formulas, so the
# file checks the reader end to end without depending on the vector file.


def tiny_f32() -> np.ndarray:  # shape (3, 4): value = row * 10 + col + 0.5
    return (np.arange(3)[:, None] * 10 + np.arange(4)[None, :] + 0.5).astype(np.float32)


def tiny_f16() -> np.ndarray:  # shape (8,): value = (i - 4) / 4, exact in f16
    return ((np.arange(8) - 4) / 4).astype(np.float16)


def tiny_q8_0() -> tuple[np.ndarray, np.ndarray]:
    """Shape (2, 64). q = 127 at each block start, else ((i * 7) % 255) - 127; value = q / 64.

    Each block's max |value| is 127/64, so ggml's scale d = 1/64 exactly and the round trip
    through Q8_0 is lossless.
    """
    i = np.arange(128)
    q = np.where(i % 32 == 0, 127, (i * 7) % 255 - 127)
    values = (q / 64).astype(np.float32).reshape(2, 64)
    quantized = gguf.quants.quantize(values, T.Q8_0)
    assert np.array_equal(gguf.quants.dequantize(quantized, T.Q8_0), values)
    return values, quantized


def pack_q4_k_scales(scales: list[int], mins: list[int]) -> bytes:
    """Packs eight 6-bit scales and mins the way ggml's get_scale_min_k4 unpacks them."""
    packed = bytearray(12)
    for j in range(8):
        if j < 4:
            packed[j] = scales[j]
            packed[j + 4] = mins[j]
        else:
            packed[j + 4] = (scales[j] & 0x0F) | ((mins[j] & 0x0F) << 4)
            packed[j - 4] |= (scales[j] >> 4) << 6
            packed[j] |= (mins[j] >> 4) << 6
    return bytes(packed)


def tiny_q4_k() -> tuple[np.ndarray, np.ndarray]:
    """Shape (2, 256): two super-blocks, d = 0.25, dmin = 0.5.

    In row r, sub-block j (32 elements) has scale 8 * j + 3 + r and min 7 * j + r (both
    exercise the 6-bit split for j >= 4); element l of a sub-block has q = (l + j + r) % 16.
    value = 0.25 * scale * q - 0.5 * min.
    """
    raw = bytearray()
    expected = np.zeros((2, 256), dtype=np.float32)
    for r in range(2):
        scales = [8 * j + 3 + r for j in range(8)]
        mins = [7 * j + r for j in range(8)]
        qs = bytearray(128)
        for j in range(8):
            for l in range(32):
                q = (l + j + r) % 16
                byte = (j // 2) * 32 + l
                qs[byte] |= q if j % 2 == 0 else q << 4
                expected[r, j * 32 + l] = np.float32(0.25 * scales[j]) * np.float32(q) - np.float32(
                    0.5 * mins[j])
        raw += np.array([0.25, 0.5], dtype="<f2").tobytes() + pack_q4_k_scales(scales, mins) + qs
    blocks = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(2, 144)
    assert np.array_equal(gguf.quants.dequantize(blocks, T.Q4_K), expected)
    return expected, blocks


def write_tiny_gguf(path: pathlib.Path) -> None:
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_name("tiny")
    writer.add_uint32("llama.block_count", 2)
    writer.add_uint64("llama.context_length", 4096)
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_float64("tessel.test.f64", -2.5)
    writer.add_int8("tessel.test.i8", -7)
    writer.add_bool("tessel.test.flag", True)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello", "\u2581world"])
    writer.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.5, -3.25])
    writer.add_array("tessel.test.nested", [[1, 2], [3]])
    writer.add_tensor("token_embd.weight", tiny_f32())
    writer.add_tensor("output_norm.weight", tiny_f16())
    _, q8 = tiny_q8_0()
    writer.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=T.Q8_0)
    _, q4k = tiny_q4_k()
    writer.add_tensor("blk.0.ffn_down.weight", q4k, raw_dtype=T.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {path} ({path.stat().st_size} bytes)")


# --- Fuzz seeds (tests/fuzz/corpus/gguf) ----------------------------------------------------


def write_fuzz_seeds(corpus_dir: pathlib.Path, tiny_gguf: pathlib.Path) -> None:
    """Three small valid files that between them reach every value type and tensor type."""
    rng = np.random.default_rng(SEED + 1)
    corpus_dir.mkdir(parents=True, exist_ok=True)

    path = corpus_dir / "metadata_all_types.gguf"
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -100)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4000000000)
    writer.add_int32("t.i32", -2000000000)
    writer.add_float32("t.f32", 1.5)
    writer.add_bool("t.bool", False)
    writer.add_uint64("t.u64", 1 << 63)
    writer.add_int64("t.i64", -(1 << 62))
    writer.add_float64("t.f64", -0.125)
    writer.add_array("t.strings", ["a", "bc", ""])
    writer.add_array("t.nested", [[[1, 2], [3]], [[4]]])
    writer.add_array("t.floats", [0.5, -1.0])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()

    path = corpus_dir / "tensors_align64.gguf"
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_custom_alignment(64)
    writer.add_tensor("f32", rng.standard_normal((2, 3)).astype(np.float32))
    writer.add_tensor("bf16", rng.integers(0, 256, size=(1, 16), dtype=np.uint16).astype(np.uint8),
                      raw_dtype=T.BF16)
    for qtype in (T.Q4_0, T.Q4_1, T.Q6_K):
        writer.add_tensor(qtype.name.lower(), random_blocks(qtype, 1, [], rng), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    (corpus_dir / "tiny.gguf").write_bytes(tiny_gguf.read_bytes())
    for seed in sorted(corpus_dir.iterdir()):
        print(f"wrote {seed} ({seed.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = pathlib.Path(__file__).resolve().parent / "data"
    default_corpus = pathlib.Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "gguf"
    parser.add_argument("--out-dir", type=pathlib.Path, default=default_dir)
    parser.add_argument("--corpus-dir", type=pathlib.Path, default=default_corpus)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_vectors(args.out_dir / "gguf_quant_vectors.bin", np.random.default_rng(SEED))
    write_tiny_gguf(args.out_dir / "tiny.gguf")
    write_fuzz_seeds(args.corpus_dir, args.out_dir / "tiny.gguf")


if __name__ == "__main__":
    main()

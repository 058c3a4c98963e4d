#!/usr/bin/env python3
# Prints the generated kernels of a plan.tsl (names, block sizes, images and their archs)
# and how many instructions of each entry point are Fused, for the tools tests.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: plan_kernels.py PLAN

Reads the FlatBuffers tables of runtime/schema/plan.fbs by hand (standard library only):
Plan.entry_points (3), Plan.kernels (7), Plan.kernel_images (9).
"""
import struct
import sys

FUSED = 29  # OpCode.Fused


class Table:
    def __init__(self, data, pos):
        self.data, self.pos = data, pos
        (delta,) = struct.unpack_from("<i", data, pos)
        self.vtable = pos - delta
        (self.vtable_size,) = struct.unpack_from("<H", data, self.vtable)

    def _field(self, index):
        at = 4 + 2 * index
        if at >= self.vtable_size:
            return 0
        (offset,) = struct.unpack_from("<H", self.data, self.vtable + at)
        return offset

    def scalar(self, index, fmt, default=0):
        offset = self._field(index)
        return struct.unpack_from(fmt, self.data, self.pos + offset)[0] if offset else default

    def _indirect(self, index):
        offset = self._field(index)
        if not offset:
            return None
        at = self.pos + offset
        return at + struct.unpack_from("<I", self.data, at)[0]

    def string(self, index):
        at = self._indirect(index)
        if at is None:
            return ""
        (n,) = struct.unpack_from("<I", self.data, at)
        return self.data[at + 4:at + 4 + n].decode()

    def vector_length(self, index):
        at = self._indirect(index)
        return 0 if at is None else struct.unpack_from("<I", self.data, at)[0]

    def tables(self, index):
        at = self._indirect(index)
        if at is None:
            return []
        (n,) = struct.unpack_from("<I", self.data, at)
        out = []
        for i in range(n):
            element = at + 4 + 4 * i
            out.append(Table(self.data, element + struct.unpack_from("<I", self.data, element)[0]))
        return out


def main():
    data = open(sys.argv[1], "rb").read()
    plan = Table(data, struct.unpack_from("<I", data, 0)[0])
    for entry in plan.tables(3):
        instructions = entry.tables(5)
        fused = [i for i in instructions if i.scalar(0, "<H") == FUSED]
        with_kernel = [i for i in fused if i.scalar(5, "<i", -1) >= 0]  # 3, 4: the attrs union
        print(f"entry {entry.string(0)}: {len(instructions)} instructions, {len(fused)} fused, "
              f"{len(with_kernel)} with a kernel")
    kernels = plan.tables(7)
    print(f"kernels: {len(kernels)}")
    for k in kernels:
        print(f"kernel {k.string(0)} threads {k.scalar(3, '<I')} "
              f"elements_per_block {k.scalar(4, '<Q')}")
    images = plan.tables(9)
    print(f"images: {len(images)}")
    for image in images:
        print(f"image {image.string(0)} {image.vector_length(1)} bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# Rewrites the major format version of a plan.tsl in place (for version-mismatch tests).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
"""Usage: set_plan_version.py PLAN MAJOR

Walks the FlatBuffers root table to field 0 (format_major, a uint32) and overwrites it.
Standard library only.
"""
import struct
import sys


def main():
    path, major = sys.argv[1], int(sys.argv[2])
    data = bytearray(open(path, "rb").read())
    (root,) = struct.unpack_from("<I", data, 0)
    (vtable_delta,) = struct.unpack_from("<i", data, root)
    vtable = root - vtable_delta
    (field0,) = struct.unpack_from("<H", data, vtable + 4)
    if field0 == 0:
        sys.exit("the plan stores no format_major field")
    struct.pack_into("<I", data, root + field0, major)
    open(path, "wb").write(bytes(data))


if __name__ == "__main__":
    main()

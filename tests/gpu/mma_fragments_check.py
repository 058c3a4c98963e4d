# Checks the lane address formulas of the mma.sync kernels (runtime/cuda/moe.cu, mla.cu) on the CPU.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Emulates ldmatrix (.x4, .trans) and mma.m16n8k16 with the PTX ISA fragment layouts, drives
# them with the same lane -> shared-memory address formulas the kernels use, and compares
# the tiles with numpy matmuls. No GPU needed: python3 tests/gpu/mma_fragments_check.py
import numpy as np
rng = np.random.default_rng(0)

def ldmatrix_x4(smem, addr, trans=False):
    # addr[lane] = flat element offset of a 16-byte row; returns regs[lane][j] = (v0, v1)
    regs = np.zeros((32, 4, 2))
    for lane in range(32):
        g, c = lane // 4, lane % 4
        for j in range(4):
            for i in range(2):
                if not trans:
                    regs[lane, j, i] = smem[addr[8 * j + g] + 2 * c + i]
                else:
                    regs[lane, j, i] = smem[addr[8 * j + 2 * c + i] + g]
    return regs

def mma(d, a, b0, b1):
    # d[lane][4], a[lane][4][2], b0/b1[lane][2]
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, c = lane // 4, lane % 4
        for i in range(2):
            A[g, 2*c+i] = a[lane, 0, i]; A[g+8, 2*c+i] = a[lane, 1, i]
            A[g, 2*c+8+i] = a[lane, 2, i]; A[g+8, 2*c+8+i] = a[lane, 3, i]
            B[2*c+i, g] = b0[lane, i]; B[2*c+8+i, g] = b1[lane, i]
    D = A @ B
    for lane in range(32):
        g, c = lane // 4, lane % 4
        for i in range(2):
            d[lane, i] += D[g, 2*c+i]; d[lane, 2+i] += D[g+8, 2*c+i]

def check_moe(BM):
    kStride, kBN, kBK = 72, 64, 64
    WM = BM // 16; WN = 4 // WM; WarpN = kBN // WN; F = WarpN // 8
    A = rng.standard_normal((BM, kBK)); Bm = rng.standard_normal((kBN, kBK))
    a_s = np.zeros(BM * kStride); b_s = np.zeros(kBN * kStride)
    # loading: chunk -> (r, kc)
    for chunk in range(BM * 8):
        r, kc = chunk // 8, (chunk % 8) * 8
        a_s[r*kStride+kc:r*kStride+kc+8] = A[r, kc:kc+8]
    for chunk in range(kBN * 8):
        n, kc = chunk // 8, (chunk % 8) * 8
        b_s[n*kStride+kc:n*kStride+kc+8] = Bm[n, kc:kc+8]
    C = np.full((BM, kBN), np.nan)
    for warp in range(4):
        wm, wn = warp // WN, warp % WN
        acc = np.zeros((F, 32, 4))
        lanes = np.arange(32)
        a_row = wm * 16 + (lanes & 15); a_col = (lanes >> 4) * 8
        b_row = wn * WarpN + (lanes & 7) + ((lanes >> 4) << 3); b_col = ((lanes >> 3) & 1) * 8
        for kk in range(0, kBK, 16):
            a = ldmatrix_x4(a_s, a_row * kStride + kk + a_col)
            for fp in range(F // 2):
                b = ldmatrix_x4(b_s, (b_row + fp * 16) * kStride + kk + b_col)
                mma(acc[2*fp], a, b[:, 0], b[:, 1]); mma(acc[2*fp+1], a, b[:, 2], b[:, 3])
        for half in range(2):
            for lane in range(32):
                r = wm * 16 + (lane >> 2) + 8 * half
                for f in range(F):
                    col = wn * WarpN + f * 8 + 2 * (lane & 3)
                    C[r, col] = acc[f, lane, 2*half]; C[r, col+1] = acc[f, lane, 2*half+1]
    ref = A @ Bm.T
    print("moe BM", BM, "max err", np.nanmax(np.abs(C - ref)), "nan", np.isnan(C).sum())
    assert not np.isnan(C).any() and np.abs(C - ref).max() < 1e-9

def check_mla():
    kRank, kWidth, kRowStride, kKeys, kPStride = 512, 576, 584, 32, 40
    Q = rng.standard_normal((16, kWidth)); K = rng.standard_normal((kKeys, kWidth))
    q_s = np.zeros(16 * kRowStride); k_s = np.zeros(kKeys * kRowStride)
    for r in range(16): q_s[r*kRowStride:r*kRowStride+kWidth] = Q[r]
    for r in range(kKeys): k_s[r*kRowStride:r*kRowStride+kWidth] = K[r]
    S = np.full((16, kKeys), np.nan)
    P = rng.standard_normal((16, kKeys))
    p_s = np.zeros(16 * kPStride)
    for r in range(16): p_s[r*kPStride:r*kPStride+kKeys] = P[r]
    O = np.full((16, kRank), np.nan)
    lanes = np.arange(32)
    a_row = lanes & 15; a_col = (lanes >> 4) * 8
    for warp in range(4):
        s_key = warp * 8 + (lanes & 7); s_col = (lanes >> 3) * 8
        v_key = (lanes & 7) + ((lanes >> 3) & 1) * 8; v_col = warp * 128 + (lanes >> 4) * 8
        s0 = np.zeros((32, 4)); s1 = np.zeros((32, 4))
        for kk in range(0, kWidth, 32):
            a0 = ldmatrix_x4(q_s, a_row * kRowStride + kk + a_col)
            a1 = ldmatrix_x4(q_s, a_row * kRowStride + kk + 16 + a_col)
            bk = ldmatrix_x4(k_s, s_key * kRowStride + kk + s_col)
            mma(s0, a0, bk[:, 0], bk[:, 1]); mma(s1, a1, bk[:, 2], bk[:, 3])
        for lane in range(32):
            g, c = lane >> 2, lane & 3
            key = warp * 8 + 2 * c
            S[g, key] = s0[lane, 0] + s1[lane, 0]; S[g, key+1] = s0[lane, 1] + s1[lane, 1]
            S[g+8, key] = s0[lane, 2] + s1[lane, 2]; S[g+8, key+1] = s0[lane, 3] + s1[lane, 3]
        o = np.zeros((16, 32, 4))
        for ks in range(0, kKeys, 16):
            a = ldmatrix_x4(p_s, a_row * kPStride + ks + a_col)
            for fp in range(8):
                bv = ldmatrix_x4(k_s, (ks + v_key) * kRowStride + v_col + fp * 16, trans=True)
                mma(o[2*fp], a, bv[:, 0], bv[:, 1]); mma(o[2*fp+1], a, bv[:, 2], bv[:, 3])
        for half in range(2):
            for lane in range(32):
                g, c = lane >> 2, lane & 3
                for f in range(16):
                    d = warp * 128 + 2 * c + f * 8
                    O[g + 8*half, d] = o[f, lane, 2*half]; O[g + 8*half, d+1] = o[f, lane, 2*half+1]
    print("mla S max err", np.nanmax(np.abs(S - Q @ K.T)), "nan", np.isnan(S).sum())
    print("mla O max err", np.nanmax(np.abs(O - P @ K[:, :kRank])), "nan", np.isnan(O).sum())
    assert not np.isnan(S).any() and np.abs(S - Q @ K.T).max() < 1e-9
    assert not np.isnan(O).any() and np.abs(O - P @ K[:, :kRank]).max() < 1e-9

if __name__ == "__main__":
    check_moe(16)
    check_moe(64)
    check_mla()

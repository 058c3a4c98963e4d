# Offline check of runtime/cuda/attention_prefill.cu's per-lane index math (no GPU needed).
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#
# Emulates one CTA of AttentionPrefillKernel lane by lane: ldmatrix (.x4, .trans) and
# mma.m16n8k16 act on fragments exactly as the PTX ISA defines them (section "Matrix
# Fragments for mma.m16n8k16", "ldmatrix"), while the shared-memory byte addresses, the
# fragment pairing, the masks, the online softmax and the epilogue are transcribed from the
# kernel. Outputs are compared with a float64 reference. Keep it in step with the kernel when
# its index math changes; a wrong lane address or fragment order gives errors of order 1.
# Also checks the wgmma shape's swizzled stores against its descriptors (see below).
# Usage: python3 tests/gpu/attention_prefill_layout_sim.py [seed]   (about 40 s)
import sys
import numpy as np

rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)


def bf16(x):
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def ldmatrix_x4(smem, byte_addrs, trans):
    out = [[None] * 4 for _ in range(32)]
    for i in range(4):
        rows = []
        for r in range(8):
            a = byte_addrs[8 * i + r]
            assert a % 16 == 0, "ldmatrix row address not 16-byte aligned"
            e = a // 2
            rows.append(smem[e:e + 8])
        M = np.array(rows)
        for l in range(32):
            if not trans:
                out[l][i] = (M[l // 4, 2 * (l % 4)], M[l // 4, 2 * (l % 4) + 1])
            else:
                out[l][i] = (M[2 * (l % 4), l // 4], M[2 * (l % 4) + 1, l // 4])
    return out


def mma(a, b0, b1, c):
    # a[l][reg] = (lo, hi); b0[l], b1[l] = (lo, hi); c[l] = [4 floats] -> new c
    A = np.full((16, 16), np.nan)
    B = np.full((16, 8), np.nan)
    C = np.full((16, 8), np.nan)
    for l in range(32):
        g, t = l // 4, l % 4
        for i in range(8):
            row = g if i in (0, 1, 4, 5) else g + 8
            col = 2 * t + (i & 1) + (8 if i >= 4 else 0)
            A[row, col] = a[l][i // 2][i % 2]
        for i in range(4):
            row = 2 * t + (i & 1) + (8 if i >= 2 else 0)
            B[row, g] = (b0 if i < 2 else b1)[l][i % 2]
        for i in range(4):
            C[g if i < 2 else g + 8, 2 * t + (i & 1)] = c[l][i]
    assert not np.isnan(A).any() and not np.isnan(B).any() and not np.isnan(C).any()
    Dm = A @ B + C
    return [[Dm[l // 4 + (8 if i >= 2 else 0), 2 * (l % 4) + (i & 1)] for i in range(4)]
            for l in range(32)]


VARIANTS = {64: [(8, 1, 64), (4, 2, 64)], 128: [(8, 1, 64), (4, 2, 32)], 256: [(8, 1, 32)]}


def visible(pos, kv_len, causal, window):
    hi = min(pos, kv_len - 1) if causal else kv_len - 1
    lo = max(0, pos - window + 1) if window > 0 else 0
    return lo, hi


def run_cta(q, k, v, positions, b, h, q_tile, D, heads, kv_heads, kv_len, seq, scale, causal,
            window, softcap, out, WARPS, MT, N):
    BM = WARPS * 16 * MT
    RPW = 16 * MT
    stride = D + 8
    q_elems = BM * stride
    kv_elems = N * stride
    smem = np.zeros(q_elems + 6 * kv_elems, dtype=np.float64)
    Q0, K0, V0 = 0, q_elems, q_elems + 3 * kv_elems
    kvh = h // (heads // kv_heads)
    s0 = q_tile * BM
    for r in range(BM):
        if s0 + r < seq:
            smem[Q0 + r * stride:Q0 + r * stride + D] = q[b, s0 + r, h]
    ul, uh, cl, ch = 2**31 - 1, -1, -2**31, 2**31 - 1
    row_keys = []
    for r in range(BM):
        lo, hi = 0, -1
        if s0 + r < seq:
            lo, hi = visible(positions[b, s0 + r], kv_len, causal, window)
            if hi >= lo:
                ul, uh = min(ul, lo), max(uh, hi)
            cl, ch = max(cl, lo), min(ch, hi)
        row_keys.append((lo, hi))
    transform = softcap > 0 or not scale > 0
    mult = 1.0 if transform else scale * np.log2(np.e)
    stage_bytes = kv_elems * 2
    row_bytes = stride * 2
    units = [(w, mt) for w in range(WARPS) for mt in range(MT)]
    warps = []
    for u in units:
        # Per lane: O accumulators [D/8][4], row max and row sum per half (rows g, g + 8).
        warps.append(dict(o=[[[0.0] * 4 for _ in range(D // 8)] for _ in range(32)],
                          m=[[-np.inf] * 2 for _ in range(32)], l=[[0.0] * 2 for _ in range(32)]))
    if uh >= ul:
        first, last = ul // N, uh // N
        for tile in range(first, last + 1):
            stage = (tile - first) % 3
            j0 = tile * N
            for r in range(N):
                key = j0 + r
                ok = ul <= key <= uh
                kb = K0 + stage * kv_elems + r * stride
                vb = V0 + stage * kv_elems + r * stride
                smem[kb:kb + D] = k[b, key, kvh] if ok else 0
                smem[vb:vb + D] = v[b, key, kvh] if ok else 0
            for ui, (w, mt) in enumerate(units):
                st = warps[ui]
                q_lane = [2 * (Q0 + (w * RPW + (l & 15)) * stride + (l >> 4) * 8) + mt * 16 * row_bytes for l in range(32)]
                k_lane = [2 * (K0 + ((l & 7) + (l >> 4) * 8) * stride + ((l >> 3) & 1) * 8) for l in range(32)]
                v_lane = [2 * (V0 + ((l & 7) + ((l >> 3) & 1) * 8) * stride + (l >> 4) * 8) for l in range(32)]
                s = [[[0.0] * 4 for _ in range(N // 8)] for _ in range(32)]
                for kk in range(D // 16):
                    a = ldmatrix_x4(smem, [x + kk * 32 for x in q_lane], False)
                    for np_ in range(N // 16):
                        bb = ldmatrix_x4(smem, [x + stage * stage_bytes + np_ * 16 * row_bytes + kk * 32 for x in k_lane], False)
                        c0 = mma(a, [bb[l][0] for l in range(32)], [bb[l][1] for l in range(32)], [s[l][2 * np_] for l in range(32)])
                        c1 = mma(a, [bb[l][2] for l in range(32)], [bb[l][3] for l in range(32)], [s[l][2 * np_ + 1] for l in range(32)])
                        for l in range(32):
                            s[l][2 * np_] = c0[l]
                            s[l][2 * np_ + 1] = c1[l]
                whole = j0 >= cl and j0 + N - 1 <= ch
                p = [None] * 32
                for l in range(32):
                    g, quad = l >> 2, l & 3
                    rng_ = [row_keys[w * RPW + mt * 16 + g + 8 * half] for half in range(2)]
                    for nt in range(N // 8):
                        for e in range(4):
                            if transform:
                                x = s[l][nt][e] * scale
                                if softcap > 0:
                                    x = softcap * np.tanh(x / softcap)
                                s[l][nt][e] = x * np.log2(np.e)
                            key = j0 + nt * 8 + 2 * quad + (e & 1)
                            lo, hi = rng_[e >> 1]
                            if not whole and not (lo <= key <= hi):
                                s[l][nt][e] = -np.inf
                # quad reductions
                for half in range(2):
                    for l0 in range(0, 32, 4):
                        mx = max(max(s[l][nt][2 * half], s[l][nt][2 * half + 1]) for l in range(l0, l0 + 4) for nt in range(N // 8))
                        for l in range(l0, l0 + 4):
                            m_old = st['m'][l][half]
                            m_new = max(m_old, mx)
                            base = 0.0 if m_new == -np.inf else m_new * mult
                            alpha = 2.0 ** (m_old * mult - base)
                            st['m'][l][half] = m_new
                            tot = 0.0
                            for nt in range(N // 8):
                                for e in (2 * half, 2 * half + 1):
                                    s[l][nt][e] = 2.0 ** (s[l][nt][e] * mult - base)
                                    tot += s[l][nt][e]
                            st['l'][l][half] = st['l'][l][half] * alpha + tot
                            for dt in range(D // 8):
                                st['o'][l][dt][2 * half] *= alpha
                                st['o'][l][dt][2 * half + 1] *= alpha
                for kk in range(N // 16):
                    pa = [[(bf16(s[l][2 * kk][0]), bf16(s[l][2 * kk][1])), (bf16(s[l][2 * kk][2]), bf16(s[l][2 * kk][3])),
                           (bf16(s[l][2 * kk + 1][0]), bf16(s[l][2 * kk + 1][1])), (bf16(s[l][2 * kk + 1][2]), bf16(s[l][2 * kk + 1][3]))]
                          for l in range(32)]
                    for dp in range(D // 16):
                        bb = ldmatrix_x4(smem, [x + stage * stage_bytes + kk * 16 * row_bytes + dp * 32 for x in v_lane], True)
                        c0 = mma(pa, [bb[l][0] for l in range(32)], [bb[l][1] for l in range(32)], [st['o'][l][2 * dp] for l in range(32)])
                        c1 = mma(pa, [bb[l][2] for l in range(32)], [bb[l][3] for l in range(32)], [st['o'][l][2 * dp + 1] for l in range(32)])
                        for l in range(32):
                            st['o'][l][2 * dp] = c0[l]
                            st['o'][l][2 * dp + 1] = c1[l]
    # epilogue: stage into q rows, then copy out
    for ui, (w, mt) in enumerate(units):
        st = warps[ui]
        for l0 in range(0, 32, 4):
            for half in range(2):
                tot = sum(st['l'][l][half] for l in range(l0, l0 + 4))
                for l in range(l0, l0 + 4):
                    st['l'][l][half] = tot
        out_rows = Q0 + w * RPW * stride
        for l in range(32):
            g, quad = l >> 2, l & 3
            for half in range(2):
                x = st['l'][l][half]
                inv = 1 / x if x > 0 else 0.0
                dst = out_rows + (mt * 16 + g + 8 * half) * stride + 2 * quad
                for dt in range(D // 8):
                    smem[dst + dt * 8] = bf16(st['o'][l][dt][2 * half] * inv)
                    smem[dst + dt * 8 + 1] = bf16(st['o'][l][dt][2 * half + 1] * inv)
    for w in range(WARPS):
        out_rows = Q0 + w * RPW * stride
        for i in range(RPW * (D // 8) // 32):
            for lane in range(32):
                idx = lane + 32 * i
                r, c = idx // (D // 8), (idx % (D // 8)) * 8
                sidx = s0 + w * RPW + r
                if sidx < seq:
                    out[b, sidx, h, c:c + 8] = smem[out_rows + r * stride + c:out_rows + r * stride + c + 8]


def reference(q, k, v, positions, kv_len, causal, window, softcap, scale, heads, kv_heads):
    B, S, H, D = q.shape
    out = np.zeros_like(q)
    for b in range(B):
        for s in range(S):
            lo, hi = visible(positions[b, s], kv_len, causal, window)
            if hi < lo:
                continue
            for h in range(H):
                kvh = h // (heads // kv_heads)
                sc = k[b, lo:hi + 1, kvh] @ q[b, s, h] * scale
                if softcap > 0:
                    sc = softcap * np.tanh(sc / softcap)
                p = np.exp(sc - sc.max())
                p /= p.sum()
                out[b, s, h] = p @ v[b, lo:hi + 1, kvh]
    return out


def case(name, batch, seq, heads, kv_heads, D, kv_len, firsts, window=0, softcap=0.0, causal=True,
         shuffle=False, scale_factor=1.0, ctas=None):
  for (WARPS, MT, N) in VARIANTS[D]:
      q = bf16(rng.standard_normal((batch, seq, heads, D))).astype(np.float64)
      k = bf16(rng.standard_normal((batch, kv_len, kv_heads, D))).astype(np.float64)
      v = bf16(rng.standard_normal((batch, kv_len, kv_heads, D))).astype(np.float64)
      positions = np.zeros((batch, seq), dtype=np.int64)
      for b in range(batch):
          f = firsts[min(b, len(firsts) - 1)]
          positions[b] = np.arange(f, f + seq)
          if shuffle:
              rng.shuffle(positions[b])
          if causal:
              k[b, f + seq:] = np.nan
              v[b, f + seq:] = np.nan
      scale = scale_factor / np.sqrt(D)
      out = np.full((batch, seq, heads, D), np.nan)
      BM = WARPS * MT * 16
      q_tiles = (seq + BM - 1) // BM
      hb = heads * batch
      for x in range(q_tiles * hb):
          q_tile = q_tiles - 1 - x // hb
          h, b = (x % hb) % heads, (x % hb) // heads
          if ctas is not None and (h, b) not in ctas:
              continue
          run_cta(q, k, v, positions, b, h, q_tile, D, heads, kv_heads, kv_len, seq, scale, causal,
                  window, softcap, out, WARPS, MT, N)
      ref = reference(q, k, v, positions, kv_len, causal, window, softcap, scale, heads, kv_heads)
      if ctas is not None:
          sel = np.zeros(out.shape, bool)
          for (h, b) in ctas:
              sel[b, :, h] = True
          out, ref = out[sel], ref[sel]
      err = np.sqrt(np.nansum((out - ref) ** 2) / np.sum(ref ** 2)) if np.isfinite(out).all() else np.inf
      print(f"{name} [{WARPS}x{MT}, N={N}]: rel error {err:.3e}", "OK" if err < 1e-2 else "FAIL", flush=True)


# --- wgmma shape: shared-memory stores vs descriptor reads -----------------------------------
# The kernel's 128-byte-swizzled stores (SwizzledOffset) read back through its descriptors
# (start address, LBO, SBO) under the canonical SW128 layouts (CUTLASS mma_sm90_desc /
# make_gmma_desc, units of 16 bytes): K-major ((8,m),(T,2)):((8T,SBO),(1,T)), MN-major
# ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)). Hardware semantics beyond that model (and the
# register fragment layouts of wgmma) are checked only by the GPU test.


def swz(addr):  # Swizzle<3,4,3> on byte addresses
    return addr ^ (((addr >> 7) & 7) << 4)


def swizzled_offset(row, col, atom_bytes):  # kernel's SwizzledOffset
    chunk = (col & 63) >> 3
    return (col >> 6) * atom_bytes + row * 128 + ((chunk ^ (row & 7)) << 4) + (col & 7) * 2


def read_kmajor(mem, start, rows, sbo):  # rows x 16 operand, K-major SW128
    out = np.zeros((rows, 16))
    for m in range(rows):
        for kx in range(16):
            a = start + (m // 8) * sbo + (m % 8) * 128 + (kx // 8) * 16 + (kx % 8) * 2
            out[m, kx] = mem[swz(a) // 2]
    return out


def read_mnmajor(mem, start, n, lbo, sbo):  # 16 x n operand (k rows), MN-major SW128
    out = np.zeros((16, n))
    for kx in range(16):
        for j in range(n):
            a = start + (j // 64) * lbo + (kx // 8) * sbo + (kx % 8) * 128 + ((j % 64) // 8) * 16 + (j % 8) * 2
            out[kx, j] = mem[swz(a) // 2]
    return out


def check_wgmma_layouts():
    for D in (64, 128):
        BM, BN, ST = 128, 64, 3
        atoms = D // 64
        qatom, kvatom = BM * 128, BN * 128
        qbytes, kvbytes = atoms * qatom, atoms * kvatom
        base = 0  # 1024-aligned
        mem = np.full((qbytes + 2 * ST * kvbytes) // 2, np.nan)
        Q = rng.standard_normal((BM, D)); K = rng.standard_normal((BN, D)); V = rng.standard_normal((BN, D))
        stage = 2
        for r in range(BM):
            for c in range(0, D, 8):
                for e in range(8):
                    mem[(swizzled_offset(r, c, qatom) + 2 * e) // 2] = Q[r, c + e]
        kbase = qbytes + stage * kvbytes
        vbase = qbytes + (ST + stage) * kvbytes
        for r in range(BN):
            for c in range(0, D, 8):
                for e in range(8):
                    mem[(kbase + swizzled_offset(r, c, kvatom) + 2 * e) // 2] = K[r, c + e]
                    mem[(vbase + swizzled_offset(r, c, kvatom) + 2 * e) // 2] = V[r, c + e]
        for wg in range(2):
            S = np.zeros((64, BN))
            for kk in range(D // 16):
                column = (kk & 3) * 32
                A = read_kmajor(mem, base + (kk >> 2) * qatom + wg * 64 * 128 + column, 64, 1024)
                B = read_kmajor(mem, kbase + (kk >> 2) * kvatom + column, BN, 1024)  # [n][k]
                S += A @ B.T
            ref = Q[64 * wg:64 * wg + 64] @ K.T
            err = np.abs(S - ref).max()
            print(f"wgmma D={D} warpgroup {wg}: S error {err:.1e}", "OK" if err < 1e-9 else "FAIL")
            P = rng.standard_normal((64, BN))
            O = np.zeros((64, D))
            for kk in range(BN // 16):
                B = read_mnmajor(mem, vbase + kk * 16 * 128, D, kvatom, 1024)
                O += P[:, 16 * kk:16 * kk + 16] @ B
            err = np.abs(O - P @ V).max()
            print(f"wgmma D={D} warpgroup {wg}: O error {err:.1e}", "OK" if err < 1e-9 else "FAIL")


if __name__ == "__main__":
    case("d64-seq17-gqa", 1, 17, 4, 2, 64, 17, [0])
    case("d128-seq100-cache", 1, 100, 2, 1, 128, 160, [0], ctas={(1, 0)})
    case("d64-chunk37-at50", 1, 37, 2, 1, 64, 128, [50])
    case("d64-window16-batch2", 2, 40, 2, 2, 64, 128, [0, 70], window=16)
    case("d256-seq40-shuffled", 1, 40, 2, 1, 256, 64, [10], shuffle=True, ctas={(0, 0)})
    case("d64-softcap-bidir", 1, 30, 2, 1, 64, 50, [5], softcap=20.0, causal=False)
    case("d64-negscale", 1, 20, 2, 1, 64, 20, [0], scale_factor=-1.0)
    case("d64-no-visible", 2, 17, 2, 1, 64, 64, [0, 60], window=8)
    case("d64-seq200-shuffled-window", 1, 200, 1, 1, 64, 256, [3], window=16, shuffle=True)
    case("d128-seq150-chunk-window", 2, 150, 2, 1, 128, 400, [100, 3], window=40, ctas={(0, 1), (1, 0)})
    case("d128-softcap-shuffled", 1, 140, 2, 2, 128, 140, [0], softcap=30.0, shuffle=True, ctas={(1, 0)})
    check_wgmma_layouts()

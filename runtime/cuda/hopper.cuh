// Hopper (sm_90a) device helpers: warpgroup MMA (wgmma) descriptors and fences, mbarriers,
// and TMA tensor copies. Every helper exists only in sm_90a machine code: callers guard
// their kernels with __CUDA_ARCH_FEAT_SM90_ALL and launch them only where DeviceIsSm90().
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// Shared-memory tiles are in the 128-byte swizzle that both wgmma and TMA know: a row of 64
// bf16 (128 bytes) per "atom row", 16-byte chunk c of row r stored at chunk c ^ (r % 8), 8-row
// groups 1024 bytes apart; tiles start at a 1024-byte aligned address (the swizzle pattern
// is computed from address bits, so the base offset must be zero).
#ifndef TESSEL_RUNTIME_CUDA_HOPPER_CUH_
#define TESSEL_RUNTIME_CUDA_HOPPER_CUH_

#include <cstdint>

#include "runtime/cuda/common.cuh"

namespace tessel::cuda {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// wgmma shared-memory descriptor: 128-byte swizzle, start address, LBO and SBO in 16-byte
// units (PTX ISA "Matrix Descriptor Format"). A K-major operand's k16 step s inside a
// 64-wide atom starts 32 s bytes further (the swizzle is applied to the final address).
__device__ __forceinline__ uint64_t WgmmaDescriptor(uint32_t address, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((address & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>((lbo & 0x3FFFF) >> 4) << 16) |
         (static_cast<uint64_t>((sbo & 0x3FFFF) >> 4) << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaWaitAll() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Makes the compiler treat `x` as produced here: accumulators written asynchronously by
// wgmma are read only after the wait.
__device__ __forceinline__ void FenceOperand(float& x) { asm volatile("" : "+f"(x)::"memory"); }
__device__ __forceinline__ void FenceOperand(uint32_t& x) {
  asm volatile("" : "+r"(x)::"memory");
}
// Orders this thread's generic-proxy shared-memory accesses before later async-proxy ones
// (wgmma operand reads, TMA writes).
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// --- mbarriers (shared-memory addresses) ---------------------------------------------------
__device__ __forceinline__ void MbarrierInit(uint32_t bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
// Makes initialized mbarriers visible to the async proxy (TMA) and the other threads (with
// a __syncthreads after it).
__device__ __forceinline__ void MbarrierInitFence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void MbarrierArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// One arrival that also announces `bytes` of asynchronous copies completing on the barrier.
__device__ __forceinline__ void MbarrierArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}
// Blocks until the phase with this parity has completed.
__device__ __forceinline__ void MbarrierWait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// --- TMA ------------------------------------------------------------------------------------
// Copies the box at (c0 = inner coordinate, c1) of a 2-D tensor map into shared memory,
// completing `bytes of the box` on the mbarrier. `tensor_map`: the generic address of a
// __grid_constant__ kernel parameter (or of global memory). Out-of-bounds elements are
// zero-filled and still counted.
__device__ __forceinline__ void TmaLoad2d(uint32_t dst, const void* tensor_map, uint32_t bar,
                                          int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
// As TmaLoad2d with an L2 cache policy (CreatePolicyEvictFirst).
__device__ __forceinline__ void TmaLoad2dHint(uint32_t dst, const void* tensor_map, uint32_t bar,
                                              int c0, int c1, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      ".L2::cache_hint [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tensor_map)), "r"(bar), "r"(c0), "r"(c1), "l"(policy)
      : "memory");
}
__device__ __forceinline__ uint64_t CreatePolicyEvictFirst() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// --- thread-block clusters ------------------------------------------------------------------
__device__ __forceinline__ uint32_t ClusterCtaRank() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}
// The address of the same shared-memory location in the CTA of rank `rank` of the cluster.
__device__ __forceinline__ uint32_t MapaShared(uint32_t address, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(address), "r"(rank));
  return remote;
}
__device__ __forceinline__ void StoreSharedCluster(uint32_t remote, float value) {
  asm volatile("st.shared::cluster.f32 [%0], %1;\n" ::"r"(remote), "f"(value) : "memory");
}
// The two halves of a cluster barrier for the start of a kernel: every thread arrives
// (relaxed: nothing to publish) once, early, and waits before its first access to another
// CTA's shared memory, which is then known to have started (CUDA programming guide,
// distributed shared memory); each thread waits before it arrives again.
__device__ __forceinline__ void ClusterArriveRelaxed() {
  asm volatile("barrier.cluster.arrive.relaxed;\n" ::: "memory");
}
__device__ __forceinline__ void ClusterWait() {
  asm volatile("barrier.cluster.wait;\n" ::: "memory");
}
// Every thread of every CTA of the cluster arrives (release) and waits (acquire): the
// distributed shared-memory writes before it are visible after it.
__device__ __forceinline__ void ClusterSync() {
  asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

}  // namespace tessel::cuda

#endif  // TESSEL_RUNTIME_CUDA_HOPPER_CUH_

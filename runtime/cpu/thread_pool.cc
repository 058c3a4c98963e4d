// The CPU executor's thread pool: fixed std::thread workers sharing ParallelFor chunks.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//
// One job at a time: ParallelFor publishes the job under the mutex, wakes the workers and
// then takes chunks itself; chunks are handed out by an atomic counter, so a slow thread
// never holds up the others. The caller returns once every chunk has been claimed and no
// worker is still inside the job, so the job may live on the caller's stack. Idle workers
// sleep on a condition variable (no spinning). A ParallelFor issued from inside a chunk
// (nested) or while another thread's job is running on this pool runs inline or waits its
// turn, never deadlocks.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/cpu/kernels.h"

namespace tessel::cpu {
namespace {

// The pool whose chunk the current thread is running, to run nested calls inline.
thread_local const void* current_pool = nullptr;

struct Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t chunk = 1;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
};

// Claims and runs chunks of `job` until none are left.
void RunChunks(Job& job) {
  while (true) {
    const int64_t index = job.next.fetch_add(1, std::memory_order_relaxed);
    if (index >= job.chunks) return;
    const int64_t begin = index * job.chunk;
    const int64_t end = std::min(job.n, begin + job.chunk);
    (*job.fn)(begin, end);
  }
}

}  // namespace

struct ThreadPool::Impl {
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable work_ready;
  std::condition_variable job_left;
  Job* job = nullptr;       // guarded by mutex
  uint64_t generation = 0;  // guarded by mutex; bumped per published job
  int workers_in_job = 0;   // guarded by mutex
  bool stopping = false;    // guarded by mutex
  std::mutex submit;        // serializes jobs from different caller threads

  void WorkerLoop(const void* pool) {
    current_pool = pool;
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex);
    while (true) {
      work_ready.wait(lock, [&] { return stopping || generation != seen; });
      if (stopping) return;
      seen = generation;
      Job* current = job;
      if (current == nullptr) continue;  // woke after the job was already finished
      ++workers_in_job;
      lock.unlock();
      RunChunks(*current);
      lock.lock();
      if (--workers_in_job == 0) job_left.notify_all();
    }
  }
};

ThreadPool::ThreadPool(int threads) : impl_(std::make_unique<Impl>()) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // The caller of ParallelFor is one of the threads.
  impl_->workers.reserve(threads - 1);
  for (int i = 0; i < threads - 1; ++i) {
    impl_->workers.emplace_back([this] { impl_->WorkerLoop(this); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->work_ready.notify_all();
  for (std::thread& worker : impl_->workers) worker.join();
}

int ThreadPool::size() const { return static_cast<int>(impl_->workers.size()) + 1; }

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = size();
  // A few chunks per thread balance uneven chunks without much claiming overhead.
  const int64_t target_chunks = std::max<int64_t>(1, std::min<int64_t>(n / grain, 4 * threads));
  if (target_chunks == 1 || threads == 1 || current_pool == this) {
    fn(0, n);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  job.chunk = (n + target_chunks - 1) / target_chunks;
  job.chunks = (n + job.chunk - 1) / job.chunk;

  std::lock_guard<std::mutex> submit_lock(impl_->submit);
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->job = &job;
    ++impl_->generation;
  }
  impl_->work_ready.notify_all();
  const void* previous = current_pool;
  current_pool = this;
  RunChunks(job);
  current_pool = previous;
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->job = nullptr;  // late wakers skip it
  impl_->job_left.wait(lock, [&] { return impl_->workers_in_job == 0; });
}

}  // namespace tessel::cpu

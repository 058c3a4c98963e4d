// tessel runtime C++ API: RAII wrappers over the C API of tessel.h
// (header-only, no exceptions). SPDX-License-Identifier: Apache-2.0 WITH
// LLVM-exception
#ifndef TESSEL_TESSEL_HPP_
#define TESSEL_TESSEL_HPP_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "tessel/tessel.h"

namespace tessel {

/// The outcome of a call: a code and a message; ok() for success. Owns nothing
/// of the C API.
class Status {
 public:
  Status() = default;
  /// Takes over (and releases) a C status.
  explicit Status(tessel_status_t status)
      : code_(tessel_status_code(status)),
        message_(tessel_status_message(status)) {
    tessel_status_release(status);
  }
  bool ok() const { return code_ == TESSEL_OK; }
  tessel_status_code_t code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  tessel_status_code_t code_ = TESSEL_OK;
  std::string message_;
};

/// A loaded model. Move-only; released on destruction.
class Model {
 public:
  Model() = default;
  Model(Model&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)) {}
  Model& operator=(Model&& other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  ~Model() { tessel_model_release(handle_); }

  /// Loads `artifact_dir` into *out. options may be null (defaults).
  static Status Load(const std::string& artifact_dir,
                     const tessel_model_options_t* options, Model* out) {
    tessel_model_t handle = nullptr;
    Status status(tessel_model_load(artifact_dir.c_str(), options, &handle));
    if (status.ok()) *out = Model(handle);
    return status;
  }
  Status GetInfo(tessel_model_info_t* out) const {
    return Status(tessel_model_get_info(handle_, out));
  }
  tessel_model_t handle() const { return handle_; }

 private:
  explicit Model(tessel_model_t handle) : handle_(handle) {}
  tessel_model_t handle_ = nullptr;
};

/// One sequence decoding with a model. Move-only; released on destruction.
class Session {
 public:
  Session() = default;
  Session(Session&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)) {}
  Session& operator=(Session&& other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  ~Session() { tessel_session_release(handle_); }

  /// options may be null (the model's context).
  static Status Create(const Model& model,
                       const tessel_session_options_t* options, Session* out) {
    tessel_session_t handle = nullptr;
    Status status(tessel_session_create(model.handle(), options, &handle));
    if (status.ok()) *out = Session(handle);
    return status;
  }
  Status Prefill(std::span<const int32_t> tokens) {
    return Status(
        tessel_session_prefill(handle_, tokens.data(), tokens.size()));
  }
  Status Decode(int32_t token) {
    return Status(tessel_session_decode(handle_, token));
  }
  /// The last call's logits as [*rows, *vocab] row-major.
  Status Logits(const float** logits, size_t* rows, size_t* vocab) const {
    return Status(tessel_session_get_logits(handle_, logits, rows, vocab));
  }
  Status Sample(const tessel_sampling_t& params, int32_t* token) {
    return Status(tessel_session_sample(handle_, &params, token));
  }
  Status Reset() { return Status(tessel_session_reset(handle_)); }
  Status Position(int64_t* position) const {
    return Status(tessel_session_position(handle_, position));
  }
  tessel_session_t handle() const { return handle_; }

 private:
  explicit Session(tessel_session_t handle) : handle_(handle) {}
  tessel_session_t handle_ = nullptr;
};

}  // namespace tessel

#endif  // TESSEL_TESSEL_HPP_

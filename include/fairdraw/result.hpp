// Errors as values at module edges: every refusal on the request path is an
// Error with a stable kind; the HTTP layer maps kinds to problem+json in one place.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace fairdraw {

// One value per problem `type` slug of DESIGN.md section 3 (plus internal).
enum class ErrorKind {
  invalid_request,
  clock_skew,
  invalid_token,
  method_not_allowed,
  request_timeout,
  uri_too_long,
  headers_too_large,
  unauthorized,
  forbidden,
  activity_not_found,
  draw_not_found,
  not_found,
  activity_not_active,
  request_in_flight,
  payload_too_large,
  unsupported_media_type,
  idempotency_key_reused,
  quota_exhausted,
  rate_limited,
  unavailable,
  internal,
};

struct Error {
  ErrorKind kind = ErrorKind::internal;
  std::string detail;  // human-readable, safe to show to the client (no secrets)
};

inline Error make_error(ErrorKind kind, std::string detail) { return Error{kind, std::move(detail)}; }

// A minimal expected<T, Error> (std::expected is C++23).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace fairdraw

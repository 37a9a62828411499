// The one place where errors become HTTP: ErrorKind -> status, type slug,
// title, and an RFC 9457 application/problem+json response.
#pragma once

#include <string_view>

#include "fairdraw/http/message.hpp"
#include "fairdraw/result.hpp"

namespace fairdraw::app {

struct ProblemInfo {
  int status;
  std::string_view type;   // stable slug, e.g. "quota_exhausted"
  std::string_view title;
};

ProblemInfo problem_info(ErrorKind kind);
// Adds Retry-After (seconds) for 503 and rate_limited.
http::Response problem_response(const Error& error, std::string_view instance = {});

}  // namespace fairdraw::app

// ErrorKind -> problem+json, in one table.
#include "fairdraw/app/problem.hpp"

#include <nlohmann/json.hpp>

namespace fairdraw::app {

ProblemInfo problem_info(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_request: return {400, "invalid_request", "Invalid request"};
    case ErrorKind::clock_skew: return {400, "clock_skew", "Client clock out of range"};
    case ErrorKind::invalid_token: return {400, "invalid_token", "Invalid draw token"};
    case ErrorKind::method_not_allowed: return {405, "method_not_allowed", "Method not allowed"};
    case ErrorKind::request_timeout: return {408, "request_timeout", "Request timeout"};
    case ErrorKind::uri_too_long: return {414, "uri_too_long", "URI too long"};
    case ErrorKind::headers_too_large: return {431, "headers_too_large", "Request headers too large"};
    case ErrorKind::unauthorized: return {401, "unauthorized", "Unauthorized"};
    case ErrorKind::forbidden: return {403, "forbidden", "Forbidden"};
    case ErrorKind::activity_not_found: return {404, "activity_not_found", "Activity not found"};
    case ErrorKind::draw_not_found: return {404, "draw_not_found", "Draw not found"};
    case ErrorKind::not_found: return {404, "not_found", "Not found"};
    case ErrorKind::activity_not_active: return {409, "activity_not_active", "Activity not active"};
    case ErrorKind::request_in_flight: return {409, "request_in_flight", "Request in flight"};
    case ErrorKind::payload_too_large: return {413, "payload_too_large", "Payload too large"};
    case ErrorKind::unsupported_media_type:
      return {415, "unsupported_media_type", "Unsupported media type"};
    case ErrorKind::idempotency_key_reused:
      return {422, "idempotency_key_reused", "Idempotency key reused"};
    case ErrorKind::quota_exhausted: return {429, "quota_exhausted", "Quota exhausted"};
    case ErrorKind::rate_limited: return {429, "rate_limited", "Rate limited"};
    case ErrorKind::unavailable: return {503, "unavailable", "Service unavailable"};
    case ErrorKind::internal: return {500, "internal", "Internal error"};
  }
  return {500, "internal", "Internal error"};
}

http::Response problem_response(const Error& error, std::string_view instance) {
  const ProblemInfo info = problem_info(error.kind);
  nlohmann::json body = {{"type", info.type},
                         {"title", info.title},
                         {"status", info.status},
                         {"detail", error.detail}};
  if (!instance.empty()) body["instance"] = instance;
  http::Response response;
  response.status = info.status;
  response.set_header("Content-Type", "application/problem+json");
  if (info.status == 503 || error.kind == ErrorKind::rate_limited) {
    response.set_header("Retry-After", "1");
  }
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

}  // namespace fairdraw::app

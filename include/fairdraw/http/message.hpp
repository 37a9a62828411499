// Plain request and response types: what the Beast session hands to the
// application and gets back. No Beast here, so handlers stay cheap to compile
// and testable without sockets.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fairdraw::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as received: path plus optional "?query"
  std::string path;    // target before '?', not percent-decoded
  std::string query;   // after '?', without it
  // Field names lower-cased; values as received (trimmed of surrounding blanks).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string request_id;   // X-Request-Id (client's if valid, else generated)
  std::string remote_addr;  // peer IP address
  bool keep_alive = true;

  // First value of a header (name is matched case-insensitively).
  std::optional<std::string_view> header(std::string_view name) const;
  // Percent-decoded value of a query parameter, if present.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // Content-Type included
  std::string body;

  void set_header(std::string name, std::string value);
  std::optional<std::string_view> header(std::string_view name) const;
};

// The application's entry point. It must call `respond` exactly once, from any
// thread, possibly after returning (asynchronous draws wait for durability).
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&&, Responder)>;

std::string percent_decode(std::string_view in);

}  // namespace fairdraw::http

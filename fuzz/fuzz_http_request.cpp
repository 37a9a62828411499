// libFuzzer target: raw bytes through Beast's request parser configured as src/http/server.cpp does, then each parsed request through Api::handle.
//
// server.cpp's Session (parser limits, check_header, on_parse_error, dispatch)
// lives in an anonymous namespace behind sockets, so its parser setup and
// checks are re-created here line for line; keep the two in step.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "fairdraw/http/server.hpp"
#include "fuzz_support.hpp"

namespace {

namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using fairdraw::fuzz::fail;

// The server's default limits (8 KiB header, 16 KiB body), taken from ServerOptions so they stay in step.
const std::size_t kMaxHeaderBytes = fairdraw::http::ServerOptions{}.max_header_bytes;
const std::size_t kMaxBodyBytes = fairdraw::http::ServerOptions{}.max_body_bytes;
// Pipelined requests answered per input; bounds the time of one input.
constexpr int kMaxRequests = 16;

fairdraw::fuzz::World* world = nullptr;

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

// The transport's own answers (server.cpp problem()); none reaches the Api,
// the connection closes after each. Only their statuses can be checked here.
void transport_refusal(int status) {
  fairdraw::fuzz::trace("transport refusal", status);
  if (!fairdraw::fuzz::allowed_status(status)) fail("transport status not in DESIGN.md", std::to_string(status));
}

using Parser = bhttp::request_parser<bhttp::string_body>;

// server.cpp Session::on_parse_error.
void on_parse_error(const Parser& parser, boost::system::error_code ec, std::string_view remaining) {
  if (ec == bhttp::error::header_limit) {
    const std::string_view head = remaining.substr(0, std::min(remaining.size(), kMaxHeaderBytes));
    const bool uri = parser.get().target().empty() && head.find('\n') == std::string_view::npos;
    return transport_refusal(uri ? 414 : 431);
  }
  if (ec == bhttp::error::body_limit) return transport_refusal(413);
  transport_refusal(400);
}

// server.cpp Session::check_header: framing a smuggler could disagree on, and
// Content-Length over the limit, refused before any body is read.
bool check_header(const Parser& parser) {
  const auto& h = parser.get();
  const auto te = h.find(bhttp::field::transfer_encoding);
  if (te != h.end()) {
    if (h.version() < 11 || h.count(bhttp::field::content_length) > 0 ||
        h.count(bhttp::field::transfer_encoding) > 1 || !iequals(trim(te->value()), "chunked")) {
      transport_refusal(400);
      return false;
    }
  }
  if (const auto length = parser.content_length(); length && *length > kMaxBodyBytes) {
    transport_refusal(413);
    return false;
  }
  return true;
}

bool is_tchar(char c) {
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         kExtra.find(c) != std::string_view::npos;
}

// What the parser plus check_header let through must be framed one way only
// (RFC 9112 section 6): one Content-Length of digits, or Transfer-Encoding
// exactly "chunked" and no Content-Length; no CR, LF or NUL left in any field.
// A request that passes with anything else could be split differently by a
// proxy in front: a smuggling gap in server.cpp's checks.
void check_framing(const bhttp::request<bhttp::string_body>& msg) {
  const auto cl = msg.count(bhttp::field::content_length);
  const auto te = msg.count(bhttp::field::transfer_encoding);
  // Repeated or listed Content-Length is allowed when every value is the same
  // (RFC 9110 section 8.6): both ends then agree on the length anyway.
  std::string length;
  for (auto [it, end] = msg.equal_range(bhttp::field::content_length); it != end; ++it) {
    std::string_view rest = it->value();
    while (true) {
      const auto comma = rest.find(',');
      const std::string_view v = trim(rest.substr(0, comma));
      if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        fail("accepted a Content-Length that is not digits", std::string(it->value()));
      }
      std::string_view digits = v;
      while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
      if (length.empty()) {
        length = std::string(digits);
      } else if (length != digits) {
        fail("accepted differing Content-Length values", std::string(it->value()));
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (te > 0 && (te > 1 || cl > 0 || !iequals(trim(msg[bhttp::field::transfer_encoding]), "chunked"))) {
    fail("accepted an ambiguous Transfer-Encoding framing");
  }
  // RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; the
  // connection must close after the answer, or a pipelined remainder is smuggled.
  if (te > 0 && msg.version() < 11 && msg.keep_alive() && !fairdraw::fuzz::ignored("http10-te-keepalive")) {
    fail("HTTP/1.0 request with Transfer-Encoding keeps the connection open [http10-te-keepalive]");
  }
  const std::string_view method = msg.method_string();
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_tchar)) {
    fail("accepted a method that is not a token", std::string(method));
  }
  const std::string_view target = msg.target();
  if (target.empty() || std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F;
      })) {
    fail("accepted a target with blanks or control characters", std::string(target));
  }
  for (const auto& field : msg) {
    const std::string_view name = field.name_string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar)) {
      fail("accepted a field name that is not a token", std::string(name));
    }
    const std::string_view value = field.value();
    if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; })) {
      fail("accepted a field value with CR, LF or NUL", std::string(name));
    }
  }
}

// server.cpp Session::dispatch: Beast message -> fairdraw::http::Request.
fairdraw::http::Request to_request(bhttp::request<bhttp::string_body>&& msg, int index) {
  fairdraw::http::Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  const auto q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  for (const auto& field : msg) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(), ascii_lower);
    req.headers.emplace_back(std::move(name), std::string(trim(field.value())));
  }
  req.body = std::move(msg.body());
  // Generated ids are random in the server; a fixed one keeps runs reproducible.
  if (auto id = msg["X-Request-Id"]; valid_request_id(id)) {
    req.request_id = std::string(id);
  } else {
    req.request_id = "fuzz-" + std::to_string(index);
  }
  req.remote_addr = "127.0.0.1";
  req.keep_alive = msg.keep_alive();
  return req;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  fairdraw::fuzz::init_process();
  // Admin token set, so PUT/DELETE /admin/... are reachable with the token from http.dict.
  world = new fairdraw::fuzz::World(std::string(fairdraw::fuzz::kAdminToken));
  std::atexit([] {
    delete world;
    world = nullptr;
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The connection's buffer: everything the client sent, pipelined requests included.
  std::string_view buffer(reinterpret_cast<const char*>(data), size);
  for (int index = 0; index < kMaxRequests; ++index) {
    // server.cpp Session::begin_request: a fresh parser per request.
    Parser parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(kMaxHeaderBytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(static_cast<std::uint64_t>(kMaxBodyBytes));
    bool header_checked = false;
    // server.cpp Session::parse_buffered; "read_more" means the input ran out:
    // the server would wait and answer 408, which involves no parsing.
    for (;;) {
      if (parser.is_done()) break;
      if (buffer.empty()) return 0;
      boost::system::error_code ec;
      const std::size_t used = parser.put(net::buffer(buffer.data(), buffer.size()), ec);
      if (used > buffer.size()) fail("parser consumed more than it was given");
      buffer.remove_prefix(used);
      if (ec == bhttp::error::need_more) return 0;
      if (ec) {
        on_parse_error(parser, ec, buffer);
        return 0;  // answered and closed
      }
      if (parser.is_header_done() && !header_checked) {
        header_checked = true;
        if (!check_header(parser)) return 0;
      }
      if (used == 0 && !parser.is_done()) return 0;
    }
    if (parser.get().body().size() > kMaxBodyBytes) fail("body over body_limit accepted");
    auto msg = parser.release();
    check_framing(msg);
    const bool keep_alive = msg.keep_alive();
    world->call(to_request(std::move(msg), index));
    if (!keep_alive) return 0;  // the server closes after this answer
  }
  return 0;
}

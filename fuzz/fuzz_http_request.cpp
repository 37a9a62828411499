// libFuzzer target: raw bytes of one connection through the server's own request reader
// (fairdraw::http::fuzzing::parse_stream, the RequestReader that Session uses), then each parsed
// request through Api::handle.
//
// The reader, its limits and refusals are the server's code, not a copy, so
// what is checked here is what serves requests. The checks are the transport's
// promises: a request comes out framed one way only, within the limits, with
// the fields Request documents; a refusal is one of the transport's statuses
// and ends the connection. A second pass feeds the same bytes in small reads
// and must see the same requests: how the bytes arrive must not change them.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/http/server.hpp"
#include "fuzz_support.hpp"

namespace {

namespace http = fairdraw::http;
using fairdraw::fuzz::fail;

// The server's default limits (8 KiB header, 16 KiB body).
const http::ServerOptions kLimits{};
// Pipelined requests answered per input; bounds the time of one input.
constexpr int kMaxRequests = 16;
// The second pass (pieces) only for inputs up to this size: it costs a parse of its own.
constexpr std::size_t kMaxPiecesInput = 4096;

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

bool is_tchar(char c) {
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         kExtra.find(c) != std::string_view::npos;
}

// The transport's own answers (server.cpp RequestReader); none reaches the Api
// and the connection closes after each.
void check_refusal(const http::fuzzing::Refusal& r) {
  fairdraw::fuzz::trace("transport refusal", r.status);
  if (r.status != 400 && r.status != 413 && r.status != 414 && r.status != 431) {
    fail("transport refusal status not 400/413/414/431", std::to_string(r.status));
  }
  const auto& types = fairdraw::fuzz::problem_types();
  const auto known = types.find(r.type);
  if (known == types.end() || known->second != r.status) {
    fail("transport refusal type does not match its status", r.type + " " + std::to_string(r.status));
  }
}

// What the reader lets through must be framed one way only (RFC 9112 section
// 6): one Content-Length of digits, or Transfer-Encoding exactly "chunked" and
// no Content-Length; no CR, LF or NUL left in any field. A request that passes
// with anything else could be split differently by a proxy in front: a
// smuggling gap in the reader's checks. Also the shape Request documents.
void check_request(const http::Request& req, unsigned version, bool head) {
  if (version != 10 && version != 11) fail("accepted an HTTP version other than 1.0/1.1", std::to_string(version));
  if (req.body.size() > kLimits.max_body_bytes) fail("body over max_body_bytes accepted");
  if (head != (req.method == "HEAD")) fail("head flag disagrees with the method", req.method);
  if (!req.request_id.empty() && !valid_request_id(req.request_id)) fail("invalid X-Request-Id kept", req.request_id);

  const std::string_view method = req.method;
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_tchar)) {
    fail("accepted a method that is not a token", req.method);
  }
  const std::string_view target = req.target;
  if (target.empty() || std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F;
      })) {
    fail("accepted a target with blanks or control characters", req.target);
  }
  // path is the target before the first '?', query after it.
  const auto q = target.find('?');
  if (req.path != target.substr(0, q) ||
      req.query != (q == std::string_view::npos ? std::string_view{} : target.substr(q + 1))) {
    fail("path/query inconsistent with the target", req.target + " -> " + req.path + " ? " + req.query);
  }

  std::size_t content_lengths = 0;
  std::size_t transfer_encodings = 0;
  std::string_view transfer_encoding;
  std::string length;  // the Content-Length, without leading zeros
  for (const auto& [name, value] : req.headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar)) {
      fail("accepted a field name that is not a token", name);
    }
    if (std::any_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      fail("field name not lower-cased", name);
    }
    if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; })) {
      fail("accepted a field value with CR, LF or NUL", name);
    }
    if (trim(value).size() != value.size()) fail("field value not trimmed", name + ": [" + value + "]");
    if (name == "transfer-encoding" && transfer_encodings++ == 0) transfer_encoding = value;
    if (name != "content-length") continue;
    ++content_lengths;
    // Repeated or listed Content-Length is allowed when every value is the same
    // (RFC 9110 section 8.6): both ends then agree on the length anyway.
    std::string_view rest = value;
    while (true) {
      const auto comma = rest.find(',');
      const std::string_view v = trim(rest.substr(0, comma));
      if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        fail("accepted a Content-Length that is not digits", value);
      }
      std::string_view digits = v;
      while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
      if (length.empty()) {
        length = std::string(digits);
      } else if (length != digits) {
        fail("accepted differing Content-Length values", value);
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (transfer_encodings > 0 &&
      (transfer_encodings > 1 || content_lengths > 0 || !iequals(transfer_encoding, "chunked"))) {
    fail("accepted an ambiguous Transfer-Encoding framing");
  }
  // RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; the
  // connection must close after the answer, or a pipelined remainder is smuggled.
  if (transfer_encodings > 0 && version < 11 && req.keep_alive && !fairdraw::fuzz::ignored("http10-te-keepalive")) {
    fail("HTTP/1.0 request with Transfer-Encoding keeps the connection open [http10-te-keepalive]");
  }
  if (!length.empty() && transfer_encodings == 0 && std::to_string(req.body.size()) != length) {
    fail("body length differs from Content-Length", length + " vs " + std::to_string(req.body.size()));
  }
}

// What one pass saw, to compare the two passes.
struct Seen {
  std::vector<std::string> requests;  // method, target, version, keep-alive and body of each
  int refusal = 0;                    // its status, 0 if none
  http::fuzzing::StreamEnd end = http::fuzzing::StreamEnd::incomplete;
};

std::string summary(const http::Request& req, unsigned version) {
  return req.method + " " + req.target + " " + std::to_string(version) + (req.keep_alive ? " ka " : " close ") +
         std::to_string(req.body.size()) + ":" + req.body;
}

std::string describe(const Seen& s) {
  std::string out;
  for (const auto& r : s.requests) out += r.substr(0, 200) + "\n";
  out += "refusal " + std::to_string(s.refusal) + ", end " + std::to_string(static_cast<int>(s.end));
  return out;
}

// One connection's worth of bytes through the reader. `open` decides per
// request whether the connection stays open (the Api's answer may close it).
Seen run(std::string_view bytes, std::size_t piece, const std::function<bool(http::Request&, int)>& open) {
  Seen seen;
  http::fuzzing::StreamCallbacks callbacks;
  callbacks.on_request = [&](http::Request& req, unsigned version, bool head) {
    if (seen.refusal != 0) fail("a request after a refusal");
    check_request(req, version, head);
    seen.requests.push_back(summary(req, version));
    return open(req, static_cast<int>(seen.requests.size()) - 1);
  };
  callbacks.on_refusal = [&](const http::fuzzing::Refusal& r) {
    if (seen.refusal != 0) fail("two refusals on one connection");
    check_refusal(r);
    seen.refusal = r.status;
  };
  seen.end = http::fuzzing::parse_stream(bytes, kLimits, callbacks, piece);
  if ((seen.end == http::fuzzing::StreamEnd::refused) != (seen.refusal != 0)) {
    fail("parse_stream's end disagrees with its refusal callback");
  }
  return seen;
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
  // Everything the client sent, pipelined requests included, arriving in one read.
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<bool> kept_open;  // per request: did the connection stay open after its answer
  const Seen whole = run(bytes, 0, [&](http::Request& req, int index) {
    // Generated ids are random in the server; a fixed one keeps runs reproducible.
    if (req.request_id.empty()) req.request_id = "fuzz-" + std::to_string(index);
    req.remote_addr = "127.0.0.1";
    // Moved, as Session hands it to the Handler: the next request reuses the object.
    const http::Response r = world->call(std::move(req));
    const auto connection = r.header("connection");
    const bool open = index + 1 < kMaxRequests && !(connection && iequals(trim(*connection), "close"));
    kept_open.push_back(open);
    return open;
  });
  if (size > kMaxPiecesInput) return 0;
  // The same bytes in small reads (1 to 64 bytes, by the input's size): the
  // same requests must come out, split at the same places. How a bad input
  // ends may differ: once Beast has asked for more header bytes it waits for
  // the blank line before it parses again, so a malformed header line that a
  // whole read refuses at once (400) is refused in small reads only at the
  // header limit (431), or never (the server would answer 408 on its read
  // timeout). Either way the connection ends without a request.
  const std::size_t piece = 1 + size % 64;
  const Seen pieces = run(bytes, piece, [&](http::Request&, int index) {
    if (static_cast<std::size_t>(index) >= kept_open.size()) return false;  // reported below
    return static_cast<bool>(kept_open[static_cast<std::size_t>(index)]);
  });
  const auto closed = [](const Seen& s) { return s.end == http::fuzzing::StreamEnd::closed; };
  if (whole.requests != pieces.requests || closed(whole) != closed(pieces)) {
    fail("reading in pieces of " + std::to_string(piece) + " bytes changes the requests",
         "whole:\n" + describe(whole) + "\npieces:\n" + describe(pieces));
  }
  return 0;
}

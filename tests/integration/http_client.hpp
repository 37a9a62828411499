// A small blocking HTTP/1.1 client over POSIX sockets for the integration tests: keep-alive, Content-Length (and chunked) bodies, bounded waits, raw-bytes mode.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace fairdraw::test {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;              // 0: no response, see `error`
  std::string error;           // transport problem when status == 0
  bool timed_out = false;      // no (complete) response within the client's timeout
  std::string reason;
  Headers headers;             // names lower-cased, values trimmed
  std::string body;

  // First value of a header, name matched case-insensitively.
  std::optional<std::string> header(std::string_view name) const;
  bool has_header(std::string_view name) const { return header(name).has_value(); }
  // The body as JSON; a discarded value when it is not JSON.
  nlohmann::json json() const;
  // Status line, headers and body, for assertion messages.
  std::string describe() const;
};

class HttpClient {
 public:
  explicit HttpClient(std::uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  ~HttpClient();
  HttpClient(HttpClient&& other) noexcept;
  HttpClient& operator=(HttpClient&& other) noexcept;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Opens the connection (closing any previous one). False on failure, see last_error().
  bool connect();
  void close();
  bool is_open() const { return fd_ >= 0; }
  // Receive/send timeout of every socket call (applies to the next connect too).
  void set_timeout(std::chrono::milliseconds timeout);
  void set_port(std::uint16_t port) { port_ = port; }
  std::uint16_t port() const { return port_; }
  const std::string& last_error() const { return error_; }
  // Received bytes not yet consumed by read_response().
  bool has_buffered_data() const { return !buffer_.empty(); }

  // One request on the kept-alive connection (connecting first if needed), then its response.
  // A body, when given, is sent with Content-Length; POST/PUT/DELETE without one send Content-Length: 0.
  HttpResponse request(std::string_view method, std::string_view target, const Headers& headers = {},
                       std::optional<std::string_view> body = std::nullopt);
  HttpResponse get(std::string_view target, const Headers& headers = {});
  // JSON body with Content-Type: application/json.
  HttpResponse post_json(std::string_view target, const nlohmann::json& body, Headers headers = {});
  HttpResponse put_json(std::string_view target, const nlohmann::json& body, Headers headers = {});
  HttpResponse del(std::string_view target, const Headers& headers = {});

  // Raw mode: writes the bytes as they are (connecting first if needed).
  bool send_raw(std::string_view bytes);
  // Reads one response from the connection (pipelining: call once per request sent).
  // `head_request`: the response has no body.
  HttpResponse read_response(bool head_request = false);
  // True when the peer closes (EOF or reset) within `wait`; bytes that arrive meanwhile are kept.
  bool wait_closed(std::chrono::milliseconds wait);

 private:
  enum class Fill { data, eof, timeout, error };
  Fill fill();

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::chrono::milliseconds timeout_;
  std::string buffer_;  // received, not yet consumed
  std::string error_;
};

}  // namespace fairdraw::test

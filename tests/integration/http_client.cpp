// The integration tests' blocking HTTP/1.1 client: one socket, SO_RCVTIMEO/SO_SNDTIMEO on every call, responses parsed from a byte buffer.
#include "http_client.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace fairdraw::test {
namespace {

constexpr std::size_t kMaxHeadBytes = 1024 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

bool has_token(std::string_view list, std::string_view token) {
  const std::string l = lower(list);
  std::size_t start = 0;
  while (start <= l.size()) {
    std::size_t end = l.find(',', start);
    if (end == std::string::npos) end = l.size();
    if (trim(std::string_view(l).substr(start, end - start)) == token) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  const std::string wanted = lower(name);
  for (const auto& [key, value] : headers) {
    if (key == wanted) return value;
  }
  return std::nullopt;
}

nlohmann::json HttpResponse::json() const { return nlohmann::json::parse(body, nullptr, false); }

std::string HttpResponse::describe() const {
  if (status == 0) return "no response: " + error + (timed_out ? " (timed out)" : "");
  std::string out = "HTTP " + std::to_string(status) + " " + reason + "\n";
  for (const auto& [key, value] : headers) out += key + ": " + value + "\n";
  constexpr std::size_t kMaxShown = 4000;
  out += "\n" + body.substr(0, kMaxShown);
  if (body.size() > kMaxShown) out += "... (" + std::to_string(body.size()) + " bytes)";
  return out;
}

HttpClient::HttpClient(std::uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout) {}

HttpClient::~HttpClient() { close(); }

HttpClient::HttpClient(HttpClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      port_(other.port_),
      timeout_(other.timeout_),
      buffer_(std::move(other.buffer_)),
      error_(std::move(other.error_)) {}

HttpClient& HttpClient::operator=(HttpClient&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    port_ = other.port_;
    timeout_ = other.timeout_;
    buffer_ = std::move(other.buffer_);
    error_ = std::move(other.error_);
  }
  return *this;
}

void HttpClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

void HttpClient::set_timeout(std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  if (fd_ >= 0) {
    const timeval tv = to_timeval(timeout_);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
}

bool HttpClient::connect() {
  close();
  error_.clear();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const timeval tv = to_timeval(timeout_);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() too on Linux
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    error_ = "connect to 127.0.0.1:" + std::to_string(port_) + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  fd_ = fd;
  return true;
}

HttpClient::Fill HttpClient::fill() {
  if (fd_ < 0) {
    error_ = "connection closed";
    return Fill::eof;
  }
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return Fill::data;
    }
    if (n == 0) {
      error_ = "connection closed by the server";
      return Fill::eof;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      error_ = "timed out after " + std::to_string(timeout_.count()) + " ms";
      return Fill::timeout;
    }
    error_ = std::string("recv: ") + std::strerror(errno);
    return Fill::error;
  }
}

bool HttpClient::send_raw(std::string_view bytes) {
  if (fd_ < 0 && !connect()) return false;
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

HttpResponse HttpClient::read_response(bool head_request) {
  HttpResponse r;
  // Closes the socket (its state is unknown) and reports why.
  auto failed = [this, &r](Fill why, const std::string& what) {
    r.status = 0;
    r.timed_out = why == Fill::timeout;
    r.error = what + ": " + error_;
    ::close(fd_);
    fd_ = -1;
    return r;
  };
  for (;;) {  // loops over 1xx interim responses
    std::size_t head_end = std::string::npos;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (buffer_.size() > kMaxHeadBytes) {
        error_ = "over " + std::to_string(kMaxHeadBytes) + " bytes";
        return failed(Fill::error, "response head too large");
      }
      const Fill f = fill();
      if (f != Fill::data) {
        return failed(f, buffer_.empty() ? "no response" : "incomplete response head (" +
                                                               std::to_string(buffer_.size()) + " bytes)");
      }
    }
    const std::string head = buffer_.substr(0, head_end);
    std::size_t pos = head_end + 4;
    // Status line.
    const std::size_t line_end = std::min(head.find("\r\n"), head.size());
    const std::string_view status_line = std::string_view(head).substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
      error_ = "'" + std::string(status_line) + "'";
      return failed(Fill::error, "bad status line");
    }
    int status = 0;
    std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
    r = HttpResponse{};
    r.status = status;
    r.reason = std::string(status_line.size() > 13 ? status_line.substr(13) : std::string_view());
    std::size_t at = line_end + 2;
    while (at < head.size()) {
      std::size_t end = head.find("\r\n", at);
      if (end == std::string::npos) end = head.size();
      const std::string_view line = std::string_view(head).substr(at, end - at);
      const std::size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        r.headers.emplace_back(lower(trim(line.substr(0, colon))),
                               std::string(trim(line.substr(colon + 1))));
      }
      at = end + 2;
    }
    if (status >= 100 && status < 200) {
      buffer_.erase(0, pos);
      continue;
    }
    const auto content_length = r.header("content-length");
    const auto transfer_encoding = r.header("transfer-encoding");
    const bool no_body = head_request || status == 204 || status == 304;
    if (no_body) {
      buffer_.erase(0, pos);
    } else if (transfer_encoding && has_token(*transfer_encoding, "chunked")) {
      std::string body;
      for (;;) {
        std::size_t crlf;
        while ((crlf = buffer_.find("\r\n", pos)) == std::string::npos) {
          if (const Fill f = fill(); f != Fill::data) return failed(f, "incomplete chunked body");
        }
        std::size_t size = 0;
        const auto [ptr, ec] = std::from_chars(buffer_.data() + pos, buffer_.data() + crlf, size, 16);
        if (ec != std::errc() || ptr == buffer_.data() + pos) {
          error_ = "bad chunk size";
          return failed(Fill::error, "bad chunked body");
        }
        pos = crlf + 2;
        if (size == 0) {
          // Trailers, then an empty line.
          for (;;) {
            while ((crlf = buffer_.find("\r\n", pos)) == std::string::npos) {
              if (const Fill f = fill(); f != Fill::data) return failed(f, "incomplete trailers");
            }
            const bool empty = crlf == pos;
            pos = crlf + 2;
            if (empty) break;
          }
          break;
        }
        while (buffer_.size() < pos + size + 2) {
          if (const Fill f = fill(); f != Fill::data) return failed(f, "incomplete chunk");
        }
        body.append(buffer_, pos, size);
        pos += size + 2;
      }
      r.body = std::move(body);
      buffer_.erase(0, pos);
    } else if (content_length) {
      std::size_t length = 0;
      const auto [ptr, ec] =
          std::from_chars(content_length->data(), content_length->data() + content_length->size(), length);
      if (ec != std::errc() || ptr != content_length->data() + content_length->size()) {
        error_ = "'" + *content_length + "'";
        return failed(Fill::error, "bad Content-Length");
      }
      while (buffer_.size() < pos + length) {
        if (const Fill f = fill(); f != Fill::data) {
          return failed(f, "incomplete body (" + std::to_string(buffer_.size() - pos) + " of " +
                               std::to_string(length) + " bytes)");
        }
      }
      r.body = buffer_.substr(pos, length);
      buffer_.erase(0, pos + length);
    } else {
      // Close-delimited body.
      for (;;) {
        const Fill f = fill();
        if (f == Fill::eof || f == Fill::error) break;
        if (f == Fill::timeout) return failed(f, "close-delimited body never ended");
      }
      r.body = buffer_.substr(pos);
      buffer_.clear();
      ::close(fd_);
      fd_ = -1;
    }
    if (const auto connection = r.header("connection"); connection && has_token(*connection, "close")) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
    return r;
  }
}

bool HttpClient::wait_closed(std::chrono::milliseconds wait) {
  if (fd_ < 0) return true;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const Fill f = fill();
    if (f == Fill::eof || f == Fill::error) {
      ::close(fd_);
      fd_ = -1;
      return true;
    }
  }
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target,
                                 const Headers& headers, std::optional<std::string_view> body) {
  std::string out;
  out.reserve(256 + (body ? body->size() : 0));
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  out.append("Host: 127.0.0.1:").append(std::to_string(port_)).append("\r\n");
  for (const auto& [key, value] : headers) out.append(key).append(": ").append(value).append("\r\n");
  if (body) {
    out.append("Content-Length: ").append(std::to_string(body->size())).append("\r\n");
  } else if (method == "POST" || method == "PUT" || method == "DELETE") {
    out.append("Content-Length: 0\r\n");
  }
  out.append("\r\n");
  if (body) out.append(*body);
  if (fd_ < 0 && !connect()) {
    HttpResponse r;
    r.error = error_;
    return r;
  }
  if (!send_raw(out)) {
    HttpResponse r;
    r.error = error_;
    close();
    return r;
  }
  return read_response(method == "HEAD");
}

HttpResponse HttpClient::get(std::string_view target, const Headers& headers) {
  return request("GET", target, headers);
}

HttpResponse HttpClient::post_json(std::string_view target, const nlohmann::json& body, Headers headers) {
  headers.emplace_back("Content-Type", "application/json");
  const std::string text = body.dump();
  return request("POST", target, headers, text);
}

HttpResponse HttpClient::put_json(std::string_view target, const nlohmann::json& body, Headers headers) {
  headers.emplace_back("Content-Type", "application/json");
  const std::string text = body.dump();
  return request("PUT", target, headers, text);
}

HttpResponse HttpClient::del(std::string_view target, const Headers& headers) {
  return request("DELETE", target, headers);
}

}  // namespace fairdraw::test

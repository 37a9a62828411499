// Request/Response helpers: case-insensitive header lookup, query parameters and
// percent-decoding. Plain string work, no Beast, so handlers can use it anywhere.
#include "fairdraw/http/message.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace fairdraw::http {
namespace {

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A '%' not followed by two hex digits is kept literally: lenient, and it
// never turns bad input into different bytes.
std::string decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '%' && i + 2 < in.size()) {
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

}  // namespace

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

// Query strings follow application/x-www-form-urlencoded (as URLSearchParams
// does): '+' is a space in both names and values; "a" alone is a = "".
std::optional<std::string> Request::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    const std::string_view key = part.substr(0, eq);
    if (decode(key, true) != name) continue;
    return eq == std::string_view::npos ? std::string{} : decode(part.substr(eq + 1), true);
  }
  return std::nullopt;
}

void Response::set_header(std::string name, std::string value) {
  if (iequals(name, "content-type")) content_type = {};
  auto same = [&name](const auto& h) { return iequals(h.first, name); };
  auto it = std::find_if(headers.begin(), headers.end(), same);
  if (it == headers.end()) {
    headers.emplace_back(std::move(name), std::move(value));
    return;
  }
  it->second = std::move(value);
  // Replacing means one value afterwards, even if duplicates had been pushed directly.
  headers.erase(std::remove_if(std::next(it), headers.end(), same), headers.end());
}

std::optional<std::string_view> Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return std::string_view(value);
  }
  if (!content_type.empty() && iequals(name, "content-type")) return content_type;
  return std::nullopt;
}

std::string percent_decode(std::string_view in) { return decode(in, false); }

namespace {
constexpr std::size_t kKeptBodyBuffers = 64;
constexpr std::size_t kKeptBodyBufferCapacity = 4096;  // larger ones are freed
thread_local std::vector<std::string> body_buffers;
}  // namespace

std::string take_body_buffer() {
  if (body_buffers.empty()) return {};
  std::string buffer = std::move(body_buffers.back());
  body_buffers.pop_back();
  return buffer;
}

void recycle_body_buffer(std::string&& buffer) {
  // Short strings live inside the string object: nothing to keep.
  if (buffer.capacity() <= std::string().capacity() || buffer.capacity() > kKeptBodyBufferCapacity) return;
  if (body_buffers.size() >= kKeptBodyBuffers) return;
  buffer.clear();
  body_buffers.push_back(std::move(buffer));
}

}  // namespace fairdraw::http

// A Redis reply as a plain value, deep-copied out of hiredis's redisReply so that
// nothing hiredis owns outlives the parse that produced it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fairdraw::redis {

struct RedisReply {
  enum class Type { string, status, error, integer, nil, array };

  Type type = Type::nil;
  std::string str;                  // string, status and error replies
  std::int64_t integer = 0;         // integer replies
  std::vector<RedisReply> elements;  // array replies

  bool is_string() const { return type == Type::string; }
  bool is_status() const { return type == Type::status; }
  // A Redis error reply ("-ERR ...", "-NOSCRIPT ..."): a value, not a failed call.
  bool is_error() const { return type == Type::error; }
  bool is_integer() const { return type == Type::integer; }
  bool is_nil() const { return type == Type::nil; }
  bool is_array() const { return type == Type::array; }

  // The error reply's first word ("ERR", "NOSCRIPT", "WRONGTYPE"); empty otherwise.
  std::string_view error_code() const {
    if (!is_error()) return {};
    const std::string_view s = str;
    return s.substr(0, s.find(' '));
  }
};

inline std::string_view to_string(RedisReply::Type type) {
  switch (type) {
    case RedisReply::Type::string: return "string";
    case RedisReply::Type::status: return "status";
    case RedisReply::Type::error: return "error";
    case RedisReply::Type::integer: return "integer";
    case RedisReply::Type::nil: return "nil";
    case RedisReply::Type::array: return "array";
  }
  return "unknown";
}

}  // namespace fairdraw::redis

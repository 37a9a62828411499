// API helpers: the Idempotency-Key header (bare or quoted) and the admin bearer-token check.
#include "fairdraw/app/api.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace fairdraw::app {
namespace {

struct KeyCase {
  std::string what;
  std::string header;
  std::optional<std::string> key;  // nullopt: refused
};

std::string show(const std::optional<std::string>& key) { return key ? "'" + *key + "'" : "refused"; }

TEST(ApiHelpersTest, ParseIdempotencyKey) {
  const std::string k128(128, 'k');
  const std::vector<KeyCase> cases = {
      // accepted
      {"bare", "abc", "abc"},
      {"bare, surrounding blanks trimmed", " \tabc \t", "abc"},
      {"bare, every visible ASCII class", "A-z_0.9~!#$%&'()*+,/:;<=>?@[]^`{|}", "A-z_0.9~!#$%&'()*+,/:;<=>?@[]^`{|}"},
      {"one character", "x", "x"},
      {"128 characters", k128, k128},
      {"quoted", "\"abc\"", "abc"},
      {"quoted, blanks around", "  \"abc\"\t", "abc"},
      {"quoted with \\\" escape", "\"a\\\"b\"", "a\"b"},
      {"quoted with \\\\ escape", "\"a\\\\b\"", "a\\b"},
      {"quoted 128 characters", "\"" + k128 + "\"", k128},
      {"ULID", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
      // refused
      {"empty", "", std::nullopt},
      {"only blanks", "  \t ", std::nullopt},
      {"empty quoted", "\"\"", std::nullopt},
      {"129 characters", k128 + "k", std::nullopt},
      {"quoted 129 characters", "\"" + k128 + "k\"", std::nullopt},
      {"control character", "a\x01z", std::nullopt},
      {"tab inside", "a\tz", std::nullopt},
      {"newline inside", "a\nz", std::nullopt},
      {"DEL", "abc\x7F", std::nullopt},
      {"non-ASCII byte", "caf\xC3\xA9", std::nullopt},
      {"space inside", "a b", std::nullopt},
      {"space inside quotes", "\"a b\"", std::nullopt},
      {"control character inside quotes", "\"a\x01z\"", std::nullopt},
      {"unterminated quote", "\"abc", std::nullopt},
      {"lone quote", "\"", std::nullopt},
      {"unescaped quote inside quotes", "\"a\"b\"", std::nullopt},
      {"unknown escape", "\"a\\nb\"", std::nullopt},
      {"dangling backslash", "\"abc\\\"", std::nullopt},
  };
  for (const KeyCase& c : cases) {
    SCOPED_TRACE(c.what + ": [" + c.header + "]");
    const auto got = parse_idempotency_key(c.header);
    EXPECT_EQ(got, c.key) << "expected " << show(c.key) << ", got " << show(got);
  }
}

struct TokenCase {
  std::string what;
  std::string authorization;
  std::string configured;
  bool matches;
};

TEST(ApiHelpersTest, AdminTokenMatches) {
  const std::string token = "s3cret-Token_42";
  const std::vector<TokenCase> cases = {
      {"right token", "Bearer " + token, token, true},
      {"scheme lower case", "bearer " + token, token, true},
      {"scheme upper case", "BEARER " + token, token, true},
      {"scheme mixed case", "bEaReR " + token, token, true},
      {"long token", "Bearer " + std::string(300, 't'), std::string(300, 't'), true},
      {"wrong token", "Bearer nope", token, false},
      {"token case matters", "Bearer S3CRET-TOKEN_42", token, false},
      {"prefix of the token", "Bearer s3cret", token, false},
      {"token plus a suffix", "Bearer " + token + "x", token, false},
      {"empty presented token", "Bearer ", token, false},
      {"scheme only, no space", "Bearer", token, false},
      {"wrong scheme", "Basic " + token, token, false},
      {"Token scheme", "Token " + token, token, false},
      {"no scheme", token, token, false},
      {"scheme glued to the token", "Bearer" + token, token, false},
      {"empty header", "", token, false},
      {"empty configured token, empty presented", "Bearer ", "", false},
      {"empty configured token, empty header", "", "", false},
      {"empty configured token, some token", "Bearer x", "", false},
  };
  for (const TokenCase& c : cases) {
    SCOPED_TRACE(c.what + ": [" + c.authorization + "] vs [" + c.configured + "]");
    EXPECT_EQ(admin_token_matches(c.authorization, c.configured), c.matches);
  }
}

}  // namespace
}  // namespace fairdraw::app

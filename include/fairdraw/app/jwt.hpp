// User authentication by JWT (RFC 7519 / 7515 compact form): HS256 and RS256 only, key bound to algorithm by configuration.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/result.hpp"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace fairdraw::app {

enum class JwtAlgorithm { hs256, rs256 };

// "HS256" / "RS256" (exact case, as in the JWS "alg" header); nullopt otherwise.
std::optional<JwtAlgorithm> parse_jwt_algorithm(std::string_view name);

struct JwtOptions {
  std::vector<JwtAlgorithm> algorithms;  // allowed; at least one
  std::string hs256_secret;              // required with HS256, >= 32 bytes
  std::string rs256_public_key_pem;      // required with RS256: "-----BEGIN PUBLIC KEY-----", RSA >= 2048 bits
  std::string issuer;                    // empty: "iss" not checked
  std::string audience;                  // empty: "aud" not checked
  std::int64_t leeway_s = 30;            // clock skew allowed on exp / nbf, 0..3600
  std::string user_claim = "sub";        // claim holding the user id
  std::size_t max_token_bytes = 8192;    // longer tokens are refused before any parsing
};

class JwtVerifier {
 public:
  // Refuses (invalid_request, naming the field) an unusable configuration:
  // no algorithm, short secret, unreadable or non-RSA or short public key.
  static Result<JwtVerifier> create(JwtOptions options);

  JwtVerifier(JwtVerifier&&) noexcept;
  JwtVerifier& operator=(JwtVerifier&&) noexcept;
  JwtVerifier(const JwtVerifier&) = delete;
  JwtVerifier& operator=(const JwtVerifier&) = delete;
  ~JwtVerifier();

  // The user id of a valid token at `now_s` (Unix seconds), else
  // Error{unauthorized, short reason}. The reason never contains the token or
  // any of its content. Thread-safe (const, no shared mutable state).
  Result<std::string> verify(std::string_view token, std::int64_t now_s) const;

  bool allows(JwtAlgorithm algorithm) const;

 private:
  struct KeyDeleter {
    void operator()(evp_pkey_st* key) const;
  };
  JwtVerifier() = default;

  JwtOptions options_;
  std::unique_ptr<evp_pkey_st, KeyDeleter> rsa_key_;
};

// The token of "Authorization: Bearer <token>" (scheme case-insensitive,
// token68 characters only); nullopt for anything else.
std::optional<std::string_view> bearer_token(std::string_view authorization);

}  // namespace fairdraw::app

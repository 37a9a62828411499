// JWT verification: strict compact parsing, configured algorithm-to-key binding, then claims.
#include "fairdraw/app/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <set>

#include <nlohmann/json.hpp>

namespace fairdraw::app {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxUserIdBytes = 256;
// Deeper nesting than any sane claim set; refused before nlohmann builds it.
constexpr int kMaxJsonDepth = 16;
constexpr std::size_t kHs256MinSecretBytes = 32;  // RFC 7518 3.2: at least the hash size
constexpr int kRsaMinBits = 2048;

// Reasons are fixed strings: nothing from the token ever reaches a response or a log.
Error unauthorized(const char* reason) { return make_error(ErrorKind::unauthorized, reason); }
Error bad_config(const char* what) { return make_error(ErrorKind::invalid_request, what); }

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// RFC 7515 base64url without padding. Only the canonical encoding is accepted
// ('=' , '+', '/', whitespace and non-zero trailing bits are refused), so one
// token has exactly one spelling.
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.empty() || in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    const int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFFU));
    }
  }
  if (bits > 0 && (acc & ((1U << bits) - 1U)) != 0) return std::nullopt;
  return out;
}

struct JsonRefused : std::exception {};

// A JSON object whose top-level names are unique. RFC 7515 4 allows either
// refusing duplicates or taking the last; refusing avoids disagreeing with
// whoever else reads the token about which "alg" or "sub" it carries.
std::optional<json> parse_object(const std::string& text) {
  std::set<std::string, std::less<>> names;
  const json::parser_callback_t guard = [&names](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw JsonRefused();
    }
    if (event == json::parse_event_t::key && depth == 1 &&
        !names.insert(parsed.get<std::string>()).second) {
      throw JsonRefused();
    }
    return true;
  };
  try {
    json value = json::parse(text, guard);
    if (!value.is_object()) return std::nullopt;
    return value;
  } catch (const std::exception&) {  // json::exception, JsonRefused, bad_alloc
    return std::nullopt;
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

// RFC 7519 NumericDate: a JSON number (integer or not), finite.
std::optional<double> numeric_date(const json& value) {
  if (!value.is_number()) return std::nullopt;
  const double d = value.get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

bool valid_user_id(std::string_view s) {
  // Same rule as the API's user_id, so a token's user can always draw.
  return !s.empty() && s.size() <= kMaxUserIdBytes && std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7F;
  });
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

std::optional<JwtAlgorithm> parse_jwt_algorithm(std::string_view name) {
  // Exact match: "none", "hs256", "HS256 " and friends are all refused.
  if (name == "HS256") return JwtAlgorithm::hs256;
  if (name == "RS256") return JwtAlgorithm::rs256;
  return std::nullopt;
}

void JwtVerifier::KeyDeleter::operator()(evp_pkey_st* key) const { EVP_PKEY_free(key); }

JwtVerifier::JwtVerifier(JwtVerifier&&) noexcept = default;
JwtVerifier& JwtVerifier::operator=(JwtVerifier&&) noexcept = default;

JwtVerifier::~JwtVerifier() {
  // Best effort: copies made by the caller's configuration are theirs to wipe.
  if (!options_.hs256_secret.empty()) OPENSSL_cleanse(options_.hs256_secret.data(), options_.hs256_secret.size());
}

bool JwtVerifier::allows(JwtAlgorithm algorithm) const {
  return std::find(options_.algorithms.begin(), options_.algorithms.end(), algorithm) != options_.algorithms.end();
}

Result<JwtVerifier> JwtVerifier::create(JwtOptions options) {
  JwtVerifier verifier;
  verifier.options_ = std::move(options);
  JwtOptions& o = verifier.options_;
  if (o.algorithms.empty()) return bad_config("jwt.algorithms: at least one of HS256, RS256");
  std::sort(o.algorithms.begin(), o.algorithms.end());
  o.algorithms.erase(std::unique(o.algorithms.begin(), o.algorithms.end()), o.algorithms.end());

  if (verifier.allows(JwtAlgorithm::hs256)) {
    if (o.hs256_secret.size() < kHs256MinSecretBytes) {
      return bad_config("jwt.hs256_secret: required with HS256, at least 32 bytes");
    }
    // A secret equal to the published key is the confusion attack by configuration.
    if (!o.rs256_public_key_pem.empty() && o.hs256_secret == o.rs256_public_key_pem) {
      return bad_config("jwt.hs256_secret: must not be the RS256 public key");
    }
  } else {
    // Not allowed: keep no secret around that could ever be used.
    OPENSSL_cleanse(o.hs256_secret.data(), o.hs256_secret.size());
    o.hs256_secret.clear();
  }

  if (verifier.allows(JwtAlgorithm::rs256)) {
    if (o.rs256_public_key_pem.empty() || o.rs256_public_key_pem.size() > 64 * 1024) {
      return bad_config("jwt.rs256_public_key_pem: required with RS256");
    }
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(o.rs256_public_key_pem.data(), static_cast<int>(o.rs256_public_key_pem.size())), &BIO_free);
    // The no-passphrase callback keeps OpenSSL from ever prompting on a terminal.
    pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
    EVP_PKEY* key = bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr) : nullptr;
    verifier.rsa_key_.reset(key);
    ERR_clear_error();
    if (!verifier.rsa_key_) {
      return bad_config("jwt.rs256_public_key_pem: not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    }
    // RS256 means PKCS#1 v1.5 with an RSA key; an EC or RSA-PSS key is a misconfiguration.
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) return bad_config("jwt.rs256_public_key_pem: not an RSA key");
    if (EVP_PKEY_get_bits(key) < kRsaMinBits) {
      return bad_config("jwt.rs256_public_key_pem: RSA key shorter than 2048 bits");
    }
  }
  o.rs256_public_key_pem.clear();  // parsed; the text is never consulted again

  if (o.leeway_s < 0 || o.leeway_s > 3600) return bad_config("jwt.leeway_s: must be between 0 and 3600");
  if (o.user_claim.empty() || o.user_claim.size() > 64) return bad_config("jwt.user_claim: 1-64 characters");
  if (o.max_token_bytes < 64 || o.max_token_bytes > 65536) {
    return bad_config("jwt.max_token_bytes: must be between 64 and 65536");
  }
  return verifier;
}

Result<std::string> JwtVerifier::verify(std::string_view token, std::int64_t now_s) const {
  if (token.empty()) return unauthorized("missing token");
  // Before anything else, so a huge header value costs nothing to refuse.
  if (token.size() > options_.max_token_bytes) return unauthorized("token too long");

  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return unauthorized("malformed token");  // not three parts (JWE has five; unsecured JWTs an empty third)
  }
  const auto header_text = base64url_decode(token.substr(0, dot1));
  const auto payload_text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  const auto signature = base64url_decode(token.substr(dot2 + 1));
  if (!header_text || !payload_text || !signature) return unauthorized("malformed token");

  const auto header = parse_object(*header_text);
  if (!header) return unauthorized("malformed token header");
  const auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()) return unauthorized("malformed token header");
  // The configuration, not the token, decides which algorithms exist and
  // which key each uses: HS256 only ever meets the HMAC secret and RS256 only
  // the RSA key, so an HS256 token keyed with the public key fails here or at
  // the MAC, and "none" never gets this far.
  const auto algorithm = parse_jwt_algorithm(alg->get_ref<const std::string&>());
  if (!algorithm || !allows(*algorithm)) return unauthorized("algorithm not allowed");
  if (const auto typ = header->find("typ"); typ != header->end()) {
    if (!typ->is_string() || !(iequals(typ->get_ref<const std::string&>(), "JWT") ||
                               iequals(typ->get_ref<const std::string&>(), "application/jwt"))) {
      return unauthorized("unsupported token type");
    }
  }
  // RFC 7515 4.1.11: extensions we do not implement must not be ignored.
  if (header->contains("crit")) return unauthorized("unsupported critical header");

  const std::string_view signing_input = token.substr(0, dot2);
  bool signature_ok = false;
  if (*algorithm == JwtAlgorithm::hs256) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int mac_len = 0;
    const auto& secret = options_.hs256_secret;
    if (signature->size() == 32 &&
        HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), bytes(signing_input),
             signing_input.size(), mac.data(), &mac_len) != nullptr &&
        mac_len == 32) {
      // Constant time: a byte-by-byte early exit would leak how much of a forged MAC was right.
      signature_ok = CRYPTO_memcmp(mac.data(), signature->data(), 32) == 0;
    }
  } else if (rsa_key_) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    signature_ok = ctx && static_cast<int>(signature->size()) == EVP_PKEY_get_size(rsa_key_.get()) &&
                   EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, rsa_key_.get()) == 1 &&
                   EVP_DigestVerify(ctx.get(), bytes(*signature), signature->size(), bytes(signing_input),
                                    signing_input.size()) == 1;
    ERR_clear_error();  // a failed verify leaves errors that would confuse later OpenSSL callers
  }
  if (!signature_ok) return unauthorized("bad signature");

  // Claims are read only once the signature says who wrote them.
  const auto claims = parse_object(*payload_text);
  if (!claims) return unauthorized("malformed token claims");
  const double now = static_cast<double>(now_s);
  const auto leeway = static_cast<double>(options_.leeway_s);

  const auto exp_claim = claims->find("exp");
  if (exp_claim == claims->end()) return unauthorized("token has no expiry");
  const auto exp = numeric_date(*exp_claim);
  if (!exp) return unauthorized("malformed exp claim");
  if (now >= *exp + leeway) return unauthorized("token expired");
  if (const auto nbf_claim = claims->find("nbf"); nbf_claim != claims->end()) {
    const auto nbf = numeric_date(*nbf_claim);
    if (!nbf) return unauthorized("malformed nbf claim");
    if (now + leeway < *nbf) return unauthorized("token not yet valid");
  }

  if (!options_.issuer.empty()) {
    const auto iss = claims->find("iss");
    if (iss == claims->end() || !iss->is_string() || iss->get_ref<const std::string&>() != options_.issuer) {
      return unauthorized("wrong issuer");
    }
  }
  if (!options_.audience.empty()) {
    const auto aud = claims->find("aud");
    bool match = false;
    if (aud != claims->end() && aud->is_string()) {
      match = aud->get_ref<const std::string&>() == options_.audience;
    } else if (aud != claims->end() && aud->is_array()) {
      // RFC 7519 4.1.3: an array of strings, one of which must be ours.
      const bool all_strings = std::all_of(aud->begin(), aud->end(), [](const json& v) { return v.is_string(); });
      match = all_strings && std::any_of(aud->begin(), aud->end(), [&](const json& v) {
                return v.get_ref<const std::string&>() == options_.audience;
              });
    }
    if (!match) return unauthorized("wrong audience");
  }

  const auto user = claims->find(options_.user_claim);
  if (user == claims->end() || !user->is_string() || !valid_user_id(user->get_ref<const std::string&>())) {
    return unauthorized("missing or invalid user claim");
  }
  return user->get<std::string>();
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() || !iequals(authorization.substr(0, kScheme.size()), kScheme) ||
      authorization[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  // RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
  const auto body_end = token.find_last_not_of('=');
  if (token.empty() || body_end == std::string_view::npos) return std::nullopt;
  const bool ok = std::all_of(token.begin(), token.begin() + static_cast<std::ptrdiff_t>(body_end) + 1, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~' || c == '+' || c == '/';
  });
  if (!ok) return std::nullopt;
  return token;
}

}  // namespace fairdraw::app

// JWT verifier: tokens are built here with OpenSSL (HMAC, RSA-2048) and each check is attacked one at a time.
#include "fairdraw/app/jwt.hpp"

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace fairdraw::app {
namespace {

using nlohmann::json;

constexpr std::int64_t kNow = 1'700'000'000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";

// ---- token construction ---------------------------------------------------

std::string b64url(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes(data), data.size(), mac.data(), &len);
  return std::string(reinterpret_cast<const char*>(mac.data()), len);
}

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Key generate_rsa(unsigned bits) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr),
                                                                  &EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), static_cast<int>(bits)) != 1 ||
      EVP_PKEY_generate(ctx.get(), &key) != 1) {
    ADD_FAILURE() << "RSA key generation failed";
  }
  return Key(key, &EVP_PKEY_free);
}

Key generate_ec() {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr),
                                                                  &EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") != 1 ||
      EVP_PKEY_generate(ctx.get(), &key) != 1) {
    ADD_FAILURE() << "EC key generation failed";
  }
  return Key(key, &EVP_PKEY_free);
}

std::string public_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_PUBKEY(bio.get(), key);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string rsa_sha256(EVP_PKEY* key, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::size_t len = 0;
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key), 1);
  EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, bytes(data), data.size()), 1);
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes(data), data.size()), 1);
  sig.resize(len);
  return sig;
}

// One RSA-2048 key for the whole suite: generation is the slow part.
EVP_PKEY* rsa_key() {
  static const Key key = generate_rsa(2048);
  return key.get();
}
const std::string& rsa_pem() {
  static const std::string pem = public_pem(rsa_key());
  return pem;
}

std::string sign_hs256(const std::string& header, const std::string& claims, std::string_view secret = kSecret) {
  const std::string input = b64url(header) + "." + b64url(claims);
  return input + "." + b64url(hmac_sha256(secret, input));
}
std::string sign_hs256(const json& header, const json& claims, std::string_view secret = kSecret) {
  return sign_hs256(header.dump(), claims.dump(), secret);
}
std::string sign_rs256(const json& header, const json& claims, EVP_PKEY* key = rsa_key()) {
  const std::string input = b64url(header.dump()) + "." + b64url(claims.dump());
  return input + "." + b64url(rsa_sha256(key, input));
}

json hs_header() { return {{"alg", "HS256"}, {"typ", "JWT"}}; }
json rs_header() { return {{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "k1"}}; }
json claims(std::string sub = "user-42") {
  return {{"sub", std::move(sub)}, {"iss", "https://auth.example"}, {"aud", "fairdraw"},
          {"iat", kNow - 10}, {"exp", kNow + 300}};
}

JwtOptions hs_options() {
  JwtOptions o;
  o.algorithms = {JwtAlgorithm::hs256};
  o.hs256_secret = kSecret;
  o.issuer = "https://auth.example";
  o.audience = "fairdraw";
  return o;
}
JwtOptions rs_options() {
  JwtOptions o;
  o.algorithms = {JwtAlgorithm::rs256};
  o.rs256_public_key_pem = rsa_pem();
  o.issuer = "https://auth.example";
  o.audience = "fairdraw";
  return o;
}

JwtVerifier make(JwtOptions o) {
  auto v = JwtVerifier::create(std::move(o));
  if (!v.ok()) {
    ADD_FAILURE() << v.error().detail;
    std::abort();
  }
  return std::move(v).value();
}

// A refusal: 401 with the expected reason, never echoing the token.
void expect_refused(const JwtVerifier& v, const std::string& token, std::string_view reason,
                    std::int64_t now = kNow) {
  const auto result = v.verify(token, now);
  ASSERT_FALSE(result.ok()) << "accepted: " << reason;
  EXPECT_EQ(result.error().kind, ErrorKind::unauthorized);
  EXPECT_EQ(result.error().detail, reason);
  if (token.size() >= 8) {
    EXPECT_EQ(result.error().detail.find(token.substr(0, 8)), std::string::npos);
  }
}

void expect_user(const JwtVerifier& v, const std::string& token, std::string_view user, std::int64_t now = kNow) {
  const auto result = v.verify(token, now);
  ASSERT_TRUE(result.ok()) << result.error().detail;
  EXPECT_EQ(*result, user);
}

// ---- valid tokens -----------------------------------------------------------

TEST(JwtTest, ValidHs256) {
  expect_user(make(hs_options()), sign_hs256(hs_header(), claims()), "user-42");
}

TEST(JwtTest, ValidRs256) {
  expect_user(make(rs_options()), sign_rs256(rs_header(), claims("ユーザー")), "ユーザー");
}

TEST(JwtTest, BothAlgorithmsAllowedEachWithItsOwnKey) {
  JwtOptions o = rs_options();
  o.algorithms = {JwtAlgorithm::rs256, JwtAlgorithm::hs256};
  o.hs256_secret = kSecret;
  const auto v = make(o);
  expect_user(v, sign_hs256(hs_header(), claims("a")), "a");
  expect_user(v, sign_rs256(rs_header(), claims("b")), "b");
}

TEST(JwtTest, TypIsOptionalAndCaseInsensitive) {
  const auto v = make(hs_options());
  expect_user(v, sign_hs256(json{{"alg", "HS256"}}, claims()), "user-42");
  expect_user(v, sign_hs256(json{{"alg", "HS256"}, {"typ", "jwt"}}, claims()), "user-42");
  expect_user(v, sign_hs256(json{{"alg", "HS256"}, {"typ", "application/JWT"}}, claims()), "user-42");
  expect_refused(v, sign_hs256(json{{"alg", "HS256"}, {"typ", "JWS"}}, claims()), "unsupported token type");
  expect_refused(v, sign_hs256(json{{"alg", "HS256"}, {"typ", 1}}, claims()), "unsupported token type");
}

TEST(JwtTest, IssuerAndAudienceNotCheckedWhenNotConfigured) {
  JwtOptions o = hs_options();
  o.issuer.clear();
  o.audience.clear();
  json c = claims();
  c.erase("iss");
  c.erase("aud");
  expect_user(make(o), sign_hs256(hs_header(), c), "user-42");
}

// ---- time -------------------------------------------------------------------

TEST(JwtTest, Expired) {
  const auto v = make(hs_options());  // leeway 30 s
  json c = claims();
  c["exp"] = kNow - 3600;
  expect_refused(v, sign_hs256(hs_header(), c), "token expired");
  expect_refused(make(hs_options()), sign_hs256(hs_header(), claims()), "token expired", kNow + 330);
}

TEST(JwtTest, ExpiryLeewayBoundary) {
  const auto v = make(hs_options());
  json c = claims();
  c["exp"] = kNow - 29;
  expect_user(v, sign_hs256(hs_header(), c), "user-42");
  c["exp"] = kNow - 30;  // valid only while now < exp + leeway
  expect_refused(v, sign_hs256(hs_header(), c), "token expired");
  JwtOptions strict = hs_options();
  strict.leeway_s = 0;
  c["exp"] = kNow;
  expect_refused(make(strict), sign_hs256(hs_header(), c), "token expired");
  c["exp"] = kNow + 1;
  expect_user(make(strict), sign_hs256(hs_header(), c), "user-42");
  c["exp"] = static_cast<double>(kNow) + 0.5;  // NumericDate may be fractional
  expect_user(make(strict), sign_hs256(hs_header(), c), "user-42");
}

TEST(JwtTest, NotYetValidAndLeeway) {
  const auto v = make(hs_options());
  json c = claims();
  c["nbf"] = kNow + 31;
  expect_refused(v, sign_hs256(hs_header(), c), "token not yet valid");
  c["nbf"] = kNow + 30;
  expect_user(v, sign_hs256(hs_header(), c), "user-42");
  c["nbf"] = kNow - 100;
  expect_user(v, sign_hs256(hs_header(), c), "user-42");
  JwtOptions strict = hs_options();
  strict.leeway_s = 0;
  c["nbf"] = kNow + 1;
  expect_refused(make(strict), sign_hs256(hs_header(), c), "token not yet valid");
}

TEST(JwtTest, ExpRequiredAndTimesMustBeNumbers) {
  const auto v = make(hs_options());
  json c = claims();
  c.erase("exp");
  expect_refused(v, sign_hs256(hs_header(), c), "token has no expiry");
  c["exp"] = std::to_string(kNow + 300);
  expect_refused(v, sign_hs256(hs_header(), c), "malformed exp claim");
  c["exp"] = true;
  expect_refused(v, sign_hs256(hs_header(), c), "malformed exp claim");
  c["exp"] = nullptr;
  expect_refused(v, sign_hs256(hs_header(), c), "malformed exp claim");
  c = claims();
  c["nbf"] = "0";
  expect_refused(v, sign_hs256(hs_header(), c), "malformed nbf claim");
  // 1e400 overflows a double: the JSON parser refuses it outright.
  const std::string overflow = R"({"sub":"u","iss":"https://auth.example","aud":"fairdraw","exp":1e400})";
  expect_refused(v, sign_hs256(hs_header().dump(), overflow), "malformed token claims");
  // Far-future integer beyond int64 is still just "not expired".
  c = claims();
  c["exp"] = std::numeric_limits<std::uint64_t>::max();
  expect_user(v, sign_hs256(hs_header(), c), "user-42");
}

// ---- issuer and audience ----------------------------------------------------

TEST(JwtTest, WrongIssuer) {
  const auto v = make(hs_options());
  json c = claims();
  c["iss"] = "https://evil.example";
  expect_refused(v, sign_hs256(hs_header(), c), "wrong issuer");
  c["iss"] = "https://auth.example/";
  expect_refused(v, sign_hs256(hs_header(), c), "wrong issuer");
  c["iss"] = json::array({"https://auth.example"});
  expect_refused(v, sign_hs256(hs_header(), c), "wrong issuer");
  c.erase("iss");
  expect_refused(v, sign_hs256(hs_header(), c), "wrong issuer");
}

TEST(JwtTest, WrongAudience) {
  const auto v = make(hs_options());
  json c = claims();
  c["aud"] = "other-service";
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
  c["aud"] = "Fairdraw";
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
  c.erase("aud");
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
  c["aud"] = 7;
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
}

TEST(JwtTest, AudienceArray) {
  const auto v = make(hs_options());
  json c = claims();
  c["aud"] = json::array({"billing", "fairdraw"});
  expect_user(v, sign_hs256(hs_header(), c), "user-42");
  c["aud"] = json::array({"billing", "reports"});
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
  c["aud"] = json::array();
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
  c["aud"] = json::array({"fairdraw", 1});  // not an array of strings
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
  c["aud"] = json::array({json::array({"fairdraw"})});
  expect_refused(v, sign_hs256(hs_header(), c), "wrong audience");
}

// ---- signatures and algorithms ---------------------------------------------

TEST(JwtTest, BadSignature) {
  const auto hs = make(hs_options());
  const std::string token = sign_hs256(hs_header(), claims());
  std::string flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'Q' : 'A';  // still canonical base64url for 32 bytes
  expect_refused(hs, flipped, "bad signature");
  expect_refused(hs, sign_hs256(hs_header(), claims(), "another-secret-another-secret-12345"), "bad signature");
  // Claims swapped under a valid signature.
  const auto dot1 = token.find('.');
  const auto dot2 = token.rfind('.');
  const std::string forged = token.substr(0, dot1 + 1) + b64url(claims("admin").dump()) + token.substr(dot2);
  expect_refused(hs, forged, "bad signature");
  // Truncated MAC.
  expect_refused(hs, token.substr(0, dot2 + 1) + b64url(hmac_sha256(kSecret, token.substr(0, dot2)).substr(0, 16)),
                 "bad signature");

  const auto rs = make(rs_options());
  static const Key other = generate_rsa(2048);
  expect_refused(rs, sign_rs256(rs_header(), claims(), other.get()), "bad signature");
  const std::string rs_token = sign_rs256(rs_header(), claims());
  const auto rs_dot2 = rs_token.rfind('.');
  expect_refused(rs, rs_token.substr(0, rs_dot2 + 1) + b64url(std::string(256, '\0')), "bad signature");
  expect_refused(rs, rs_token.substr(0, rs_dot2 + 1) + b64url(std::string(255, 'x')), "bad signature");
  const std::string rs_forged =
      rs_token.substr(0, rs_token.find('.') + 1) + b64url(claims("admin").dump()) + rs_token.substr(rs_dot2);
  expect_refused(rs, rs_forged, "bad signature");
}

TEST(JwtTest, AlgNoneAndUnknownAlgorithmsRefused) {
  const auto v = make(hs_options());
  const std::string body = b64url(claims().dump());
  // The classic unsecured JWT: empty signature part.
  expect_refused(v, b64url(R"({"alg":"none","typ":"JWT"})") + "." + body + ".", "malformed token");
  for (const char* alg : {"none", "None", "NONE", "hs256", "HS256 ", "HS384", "HS512", "RS512", "ES256", "PS256", ""}) {
    const std::string header = json{{"alg", alg}}.dump();
    expect_refused(v, b64url(header) + "." + body + "." + b64url("sig"), "algorithm not allowed");
    // Even signed with the right secret.
    expect_refused(v, sign_hs256(header, claims().dump()), "algorithm not allowed");
  }
  expect_refused(v, sign_hs256(R"({"typ":"JWT"})", claims().dump()), "malformed token header");
  expect_refused(v, sign_hs256(R"({"alg":null})", claims().dump()), "malformed token header");
  expect_refused(v, sign_hs256(R"({"alg":["HS256"]})", claims().dump()), "malformed token header");
}

// The RS256 public key is public: an attacker HMACs a token with its PEM text
// and sets alg HS256, hoping the verifier feeds "the key" to HMAC.
TEST(JwtTest, AlgorithmConfusionRefused) {
  const std::string confused = sign_hs256(hs_header(), claims("admin"), rsa_pem());
  expect_refused(make(rs_options()), confused, "algorithm not allowed");
  // Also with the PEM without its trailing newline, a common variant.
  std::string pem = rsa_pem();
  pem.pop_back();
  expect_refused(make(rs_options()), sign_hs256(hs_header(), claims("admin"), pem), "algorithm not allowed");

  // With both algorithms allowed, HS256 only ever uses the HMAC secret.
  JwtOptions both = rs_options();
  both.algorithms = {JwtAlgorithm::hs256, JwtAlgorithm::rs256};
  both.hs256_secret = kSecret;
  expect_refused(make(both), confused, "bad signature");

  // The other direction: an RS256 token against an HS256-only verifier.
  expect_refused(make(hs_options()), sign_rs256(rs_header(), claims()), "algorithm not allowed");
}

TEST(JwtTest, CriticalHeaderRefused) {
  expect_refused(make(hs_options()), sign_hs256(json{{"alg", "HS256"}, {"crit", {"exp"}}, {"exp", 1}}, claims()),
                 "unsupported critical header");
}

TEST(JwtTest, KeyMaterialInHeaderIgnored) {
  // jwk / jku / x5u name a key; the verifier never takes a key from the token.
  static const Key attacker = generate_rsa(2048);
  json header = rs_header();
  header["jwk"] = json{{"kty", "RSA"}, {"n", "AQAB"}, {"e", "AQAB"}};
  header["jku"] = "https://evil.example/keys";
  expect_refused(make(rs_options()), sign_rs256(header, claims("admin"), attacker.get()), "bad signature");
}

// ---- structure --------------------------------------------------------------

TEST(JwtTest, MalformedBase64) {
  const auto v = make(hs_options());
  const std::string token = sign_hs256(hs_header(), claims());
  const auto dot1 = token.find('.');
  const auto dot2 = token.rfind('.');
  const std::string h = token.substr(0, dot1);
  const std::string p = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string s = token.substr(dot2 + 1);
  auto join = [](const std::string& a, const std::string& b, const std::string& c) { return a + "." + b + "." + c; };
  expect_refused(v, join(h + "*", p, s), "malformed token");
  expect_refused(v, join(h, p + "+", s), "malformed token");       // standard base64, not url-safe
  expect_refused(v, join(h, p, s.substr(0, s.size() - 1) + "/"), "malformed token");
  expect_refused(v, join(h, " " + p, s), "malformed token");
  expect_refused(v, join(h, p, s + "\n"), "malformed token");
  ASSERT_EQ(h.size() % 4, 0U);
  expect_refused(v, join(h + "A", p, s), "malformed token");       // length % 4 == 1
  // 32 bytes end in 4 data bits + 2 zero bits: "...x" with non-zero low bits is
  // a second spelling of the same MAC and is refused.
  std::string non_canonical = s;
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  non_canonical.back() = alphabet[alphabet.find(s.back()) | 1];
  expect_refused(v, join(h, p, non_canonical), "malformed token");
  expect_refused(v, join(b64url("not json"), p, s), "malformed token header");
  expect_refused(v, join(b64url("[\"HS256\"]"), p, s), "malformed token header");
}

TEST(JwtTest, WrongNumberOfParts) {
  const auto v = make(hs_options());
  const std::string token = sign_hs256(hs_header(), claims());
  expect_refused(v, token + ".", "malformed token");
  expect_refused(v, token + "." + b64url("x"), "malformed token");
  expect_refused(v, token + ".a.b", "malformed token");  // JWE-shaped
  expect_refused(v, token.substr(0, token.rfind('.')), "malformed token");
  expect_refused(v, "abc", "malformed token");
  expect_refused(v, "..", "malformed token");
  expect_refused(v, "." + token.substr(token.find('.') + 1), "malformed token");
  expect_refused(v, "", "missing token");
}

TEST(JwtTest, PaddingRefused) {
  const auto v = make(hs_options());
  // Build a token whose parts need padding, then pad them.
  const std::string header = R"({"alg":"HS256"})";
  json c = claims();
  c["x"] = "ab";  // lengthened below until the claims' encoding would need padding
  std::string payload = c.dump();
  while (payload.size() % 3 == 0) {
    c["x"] = c["x"].get<std::string>() + "c";
    payload = c.dump();
  }
  const std::string input = b64url(header) + "." + b64url(payload);
  const std::string mac = b64url(hmac_sha256(kSecret, input));  // 32 bytes: one "=" in padded form
  expect_user(v, input + "." + mac, "user-42");
  expect_refused(v, input + "." + mac + "=", "malformed token");
  const std::string padded_payload = b64url(payload) + (payload.size() % 3 == 1 ? "==" : "=");
  const std::string padded_input = b64url(header) + "." + padded_payload;
  expect_refused(v, padded_input + "." + b64url(hmac_sha256(kSecret, padded_input)), "malformed token");
}

TEST(JwtTest, HugeTokenRefusedBeforeParsing) {
  const auto v = make(hs_options());
  json c = claims();
  c["filler"] = std::string(9000, 'a');
  const std::string token = sign_hs256(hs_header(), c);
  ASSERT_GT(token.size(), 8192U);
  expect_refused(v, token, "token too long");
  expect_refused(v, std::string(1 << 20, 'A'), "token too long");
  JwtOptions roomy = hs_options();
  roomy.max_token_bytes = 65536;
  expect_user(make(roomy), token, "user-42");
}

TEST(JwtTest, DuplicateNamesRefused) {
  const auto v = make(hs_options());
  // Two "alg" values: which one a reader believes must not be a question.
  expect_refused(v, sign_hs256(R"({"alg":"none","alg":"HS256"})", claims().dump()), "malformed token header");
  const std::string dup_sub = R"({"sub":"alice","sub":"admin","iss":"https://auth.example","aud":"fairdraw","exp":)" +
                              std::to_string(kNow + 60) + "}";
  expect_refused(v, sign_hs256(hs_header().dump(), dup_sub), "malformed token claims");
  // Duplicates nested deeper are not ambiguous for us.
  json c = claims();
  const std::string nested = c.dump().substr(0, c.dump().size() - 1) + R"(,"ext":{"a":1,"a":2}})";
  expect_user(v, sign_hs256(hs_header().dump(), nested), "user-42");
}

TEST(JwtTest, DeepNestingRefused) {
  const auto v = make(hs_options());
  json c = claims();
  std::string deep = c.dump();
  deep.pop_back();
  deep += R"(,"x":)" + std::string(2000, '[') + std::string(2000, ']') + "}";
  JwtOptions roomy = hs_options();
  roomy.max_token_bytes = 65536;
  expect_refused(make(roomy), sign_hs256(hs_header().dump(), deep), "malformed token claims");
  std::string ok = c.dump();
  ok.pop_back();
  ok += R"(,"x":)" + std::string(10, '[') + std::string(10, ']') + "}";
  expect_user(v, sign_hs256(hs_header().dump(), ok), "user-42");
}

TEST(JwtTest, ClaimsMustBeAnObject) {
  const auto v = make(hs_options());
  expect_refused(v, sign_hs256(hs_header().dump(), "[1,2]"), "malformed token claims");
  expect_refused(v, sign_hs256(hs_header().dump(), "\"sub\""), "malformed token claims");
  expect_refused(v, sign_hs256(hs_header().dump(), "{\"sub\":\"a\""), "malformed token claims");
  expect_refused(v, sign_hs256(hs_header().dump(), std::string("{\"sub\":\"\xff\"}")), "malformed token claims");
}

// ---- the user claim ----------------------------------------------------------

TEST(JwtTest, MissingOrInvalidUserClaim) {
  const auto v = make(hs_options());
  json c = claims();
  c.erase("sub");
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");
  c["sub"] = "";
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");
  c["sub"] = 42;
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");
  c["sub"] = json::array({"a"});
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");
  c["sub"] = std::string(257, 'u');
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");
  c["sub"] = "line\nbreak";
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");
  c["sub"] = std::string(256, 'u');
  expect_user(v, sign_hs256(hs_header(), c), std::string(256, 'u'));
}

TEST(JwtTest, CustomUserClaim) {
  JwtOptions o = hs_options();
  o.user_claim = "uid";
  const auto v = make(o);
  json c = claims();
  expect_refused(v, sign_hs256(hs_header(), c), "missing or invalid user claim");  // has sub, not uid
  c["uid"] = "u-7";
  expect_user(v, sign_hs256(hs_header(), c), "u-7");
}

TEST(JwtTest, RefusalsNeverEchoTokenContent) {
  const auto v = make(hs_options());
  json c = claims("secret-user-name");
  c["exp"] = kNow - 1000;
  const std::string token = sign_hs256(hs_header(), c);
  const auto result = v.verify(token, kNow);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().detail.find("secret-user-name"), std::string::npos);
  EXPECT_EQ(result.error().detail.find(token.substr(token.rfind('.') + 1)), std::string::npos);
  EXPECT_LT(result.error().detail.size(), 40U);
}

// ---- configuration -----------------------------------------------------------

TEST(JwtConfigTest, RefusesUnusableConfiguration) {
  auto refused = [](JwtOptions o, std::string_view field) {
    auto v = JwtVerifier::create(std::move(o));
    ASSERT_FALSE(v.ok()) << field;
    EXPECT_EQ(v.error().kind, ErrorKind::invalid_request);
    EXPECT_NE(v.error().detail.find(field), std::string::npos) << v.error().detail;
  };
  JwtOptions o = hs_options();
  o.algorithms.clear();
  refused(o, "jwt.algorithms");
  o = hs_options();
  o.hs256_secret = "short";
  refused(o, "jwt.hs256_secret");
  o = rs_options();
  o.rs256_public_key_pem.clear();
  refused(o, "jwt.rs256_public_key_pem");
  o = rs_options();
  o.rs256_public_key_pem = "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n";
  refused(o, "jwt.rs256_public_key_pem");
  o = rs_options();
  static const Key ec = generate_ec();
  o.rs256_public_key_pem = public_pem(ec.get());
  refused(o, "not an RSA key");
  o = rs_options();
  static const Key small = generate_rsa(1024);
  o.rs256_public_key_pem = public_pem(small.get());
  refused(o, "2048");
  o = rs_options();
  o.algorithms = {JwtAlgorithm::rs256, JwtAlgorithm::hs256};
  o.hs256_secret = rsa_pem();
  refused(o, "must not be the RS256 public key");
  o = hs_options();
  o.leeway_s = -1;
  refused(o, "jwt.leeway_s");
  o = hs_options();
  o.user_claim.clear();
  refused(o, "jwt.user_claim");
  o = hs_options();
  o.max_token_bytes = 10;
  refused(o, "jwt.max_token_bytes");
}

TEST(JwtConfigTest, ParsesAlgorithmNamesExactly) {
  EXPECT_EQ(parse_jwt_algorithm("HS256"), JwtAlgorithm::hs256);
  EXPECT_EQ(parse_jwt_algorithm("RS256"), JwtAlgorithm::rs256);
  EXPECT_FALSE(parse_jwt_algorithm("none").has_value());
  EXPECT_FALSE(parse_jwt_algorithm("hs256").has_value());
  EXPECT_FALSE(parse_jwt_algorithm("ES256").has_value());
}

TEST(JwtConfigTest, VerifierIsMovable) {
  JwtVerifier a = make(rs_options());
  JwtVerifier b = std::move(a);
  expect_user(b, sign_rs256(rs_header(), claims()), "user-42");
}

// ---- bearer header -------------------------------------------------------------

TEST(BearerTokenTest, ExtractsToken68) {
  EXPECT_EQ(bearer_token("Bearer abc.def-_~+/=="), "abc.def-_~+/==");
  EXPECT_EQ(bearer_token("bearer   abc "), "abc");
  EXPECT_EQ(bearer_token("BEARER x"), "x");
  EXPECT_FALSE(bearer_token("Bearer").has_value());
  EXPECT_FALSE(bearer_token("Bearer ").has_value());
  EXPECT_FALSE(bearer_token("Bearerabc").has_value());
  EXPECT_FALSE(bearer_token("Basic YWxhZGRpbjpvcGVuc2VzYW1l").has_value());
  EXPECT_FALSE(bearer_token("Bearer a b").has_value());
  EXPECT_FALSE(bearer_token("Bearer a=b").has_value());
  EXPECT_FALSE(bearer_token("Bearer ===").has_value());
  EXPECT_FALSE(bearer_token("Bearer a\"b").has_value());
}

// ---- concurrency ----------------------------------------------------------------

TEST(JwtTest, ConcurrentVerificationSharesOneVerifier) {
  JwtOptions o = rs_options();
  o.algorithms = {JwtAlgorithm::rs256, JwtAlgorithm::hs256};
  o.hs256_secret = kSecret;
  const auto v = make(o);
  const std::string rs = sign_rs256(rs_header(), claims("r"));
  const std::string hs = sign_hs256(hs_header(), claims("h"));
  std::string bad = rs;
  bad[bad.size() - 3] = bad[bad.size() - 3] == 'A' ? 'B' : 'A';
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        const auto a = v.verify(rs, kNow);
        const auto b = v.verify(hs, kNow);
        const auto c = v.verify(bad, kNow);
        if (!a.ok() || *a != "r" || !b.ok() || *b != "h" || c.ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace fairdraw::app

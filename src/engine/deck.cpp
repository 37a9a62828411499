// The fairness deck (DESIGN.md section 4): SHA-256 word stream, rejection sampling,
// Fisher-Yates shuffle of the weighted deck, and the hex commitment.
#include "fairdraw/engine/deck.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace fairdraw {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

std::uint64_t load_u64_be(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void put_u64_be(std::uint8_t* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<std::uint8_t>(v & 0xFFU);
    v >>= 8;
  }
}

[[noreturn]] void digest_failure() {
  std::fputs("fairdraw: SHA-256 failed in the deck stream\n", stderr);
  std::abort();
}

// SHA256() in OpenSSL 3 fetches the algorithm on every call (~4x slower than a reused
// context), and the deck stream hashes up to 2.5 million blocks, so each thread keeps one.
class StreamHasher {
 public:
  StreamHasher() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr) digest_failure();
  }
  ~StreamHasher() { EVP_MD_CTX_free(ctx_); }
  StreamHasher(const StreamHasher&) = delete;
  StreamHasher& operator=(const StreamHasher&) = delete;

  void hash(std::span<const std::uint8_t> in, std::span<std::uint8_t, SHA256_DIGEST_LENGTH> out) {
    unsigned int length = 0;
    if (EVP_DigestInit_ex2(ctx_, sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx_, in.data(), in.size()) != 1 ||
        EVP_DigestFinal_ex(ctx_, out.data(), &length) != 1 || length != out.size()) {
      digest_failure();
    }
  }

 private:
  static const EVP_MD* sha256() {
    static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (md == nullptr) digest_failure();
    return md;
  }
  EVP_MD_CTX* ctx_;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

DeckRng::DeckRng(const Seed& seed) : seed_(seed) {}

void DeckRng::refill() {
  std::array<std::uint8_t, 40> message{};
  std::copy(seed_.begin(), seed_.end(), message.begin());
  put_u64_be(message.data() + 32, block_++);
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  thread_local StreamHasher hasher;
  hasher.hash(message, digest);
  for (std::size_t w = 0; w < words_.size(); ++w) words_[w] = load_u64_be(digest.data() + 8 * w);
  next_ = 0;
}

std::uint64_t DeckRng::next_word() {
  if (next_ == words_.size()) refill();
  return words_[next_++];
}

std::uint64_t DeckRng::uniform(std::uint64_t bound) {
  if (bound == 0) return 0;
  // In uint64 arithmetic 0 - bound == 2^64 - bound, and (0 - bound) % bound == 2^64 mod bound.
  const std::uint64_t neg_bound = std::uint64_t{0} - bound;
  for (;;) {
    const std::uint64_t u = next_word();
    // 2^64 mod bound < bound, so every u <= 2^64 - bound is below the limit: this skips the
    // second division on almost every call.
    if (u <= neg_bound) return u % bound;
    const std::uint64_t rem = neg_bound % bound;
    // rem == 0 means the limit is 2^64 itself (bound a power of two, bound == 1 included).
    if (rem == 0 || u < std::uint64_t{0} - rem) return u % bound;
  }
}

std::vector<Card> build_deck(const Seed& seed, std::span<const std::uint32_t> weights,
                             std::uint32_t miss_weight) {
  // Prize indexes must stay distinct from kMissCard; validate_activity caps prizes far below.
  if (weights.size() >= kMissCard) return {};
  std::uint64_t total = miss_weight;
  for (std::uint32_t w : weights) total += w;

  std::vector<Card> deck(static_cast<std::size_t>(total), kMissCard);
  auto out = deck.begin();
  for (std::size_t p = 0; p < weights.size(); ++p) {
    out = std::fill_n(out, weights[p], static_cast<Card>(p));
  }
  if (deck.size() < 2) return deck;

  // The j values depend only on the seed, not on the deck, so a batch of them is drawn
  // first and their cache lines prefetched; the swaps then run in the specified order.
  constexpr std::size_t kBatch = 32;
  std::array<std::size_t, kBatch> js{};
  DeckRng rng(seed);
  Card* const cards = deck.data();
  std::size_t i = deck.size() - 1;
  while (i >= 1) {
    const std::size_t n = std::min(kBatch, i);
    for (std::size_t k = 0; k < n; ++k) {
      js[k] = static_cast<std::size_t>(rng.uniform(i - k + 1));
      __builtin_prefetch(cards + js[k], 1);
    }
    for (std::size_t k = 0; k < n; ++k) std::swap(cards[i - k], cards[js[k]]);
    i -= n;
  }
  return deck;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  std::string out(bytes.size() * 2, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0x0FU];
  }
  return out;
}

std::optional<Seed> seed_from_hex(std::string_view hex) {
  Seed seed{};
  if (hex.size() != seed.size() * 2) return std::nullopt;
  for (std::size_t i = 0; i < seed.size(); ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    seed[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return seed;
}

std::string commitment_hex(const Seed& seed) {
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(seed.data(), seed.size(), digest.data());
  return to_hex(digest);
}

}  // namespace fairdraw

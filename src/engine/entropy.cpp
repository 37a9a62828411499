// Entropy sources: the OS CSPRNG through OpenSSL, and a deterministic SHA-256 stream for tests.
#include "fairdraw/entropy.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>

namespace fairdraw {

namespace {

void put_u64_be(std::uint8_t* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<std::uint8_t>(v & 0xFFU);
    v >>= 8;
  }
}

}  // namespace

void CsprngEntropy::fill(std::span<std::uint8_t> out) {
  // Small requests (a ULID's 10 bytes, a token's 16, one per draw) come from a
  // per-thread block of CSPRNG output: each RAND_bytes call costs thousands of
  // instructions in OpenSSL's provider machinery whatever its length. Bytes
  // handed out are wiped from the block. Seeds (32 bytes) go to RAND_bytes.
  constexpr std::size_t kBlock = 512;
  constexpr std::size_t kSmall = 16;
  if (out.size() <= kSmall) {
    thread_local std::array<std::uint8_t, kBlock> block{};
    thread_local std::size_t used = kBlock;
    if (kBlock - used < out.size()) {
      if (RAND_bytes(block.data(), static_cast<int>(block.size())) != 1) {
        std::fputs("fairdraw: RAND_bytes failed; refusing to continue without a CSPRNG\n", stderr);
        std::abort();
      }
      used = 0;
    }
    std::copy_n(block.begin() + static_cast<std::ptrdiff_t>(used), out.size(), out.begin());
    OPENSSL_cleanse(block.data() + used, out.size());
    used += out.size();
    return;
  }
  // RAND_bytes takes an int length, so large requests go in chunks.
  constexpr std::size_t kChunk = 1U << 20;
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t n = std::min(out.size() - done, kChunk);
    if (RAND_bytes(out.data() + done, static_cast<int>(n)) != 1) {
      std::fputs("fairdraw: RAND_bytes failed; refusing to continue without a CSPRNG\n", stderr);
      std::abort();
    }
    done += n;
  }
}

void FixedEntropy::fill(std::span<std::uint8_t> out) {
  // Each call starts on a fresh block; the unused tail of its last block is dropped.
  std::lock_guard lock(mutex_);
  std::array<std::uint8_t, 16> message{};
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> block{};
  put_u64_be(message.data(), seed_);
  std::size_t done = 0;
  while (done < out.size()) {
    put_u64_be(message.data() + 8, counter_++);
    SHA256(message.data(), message.size(), block.data());
    const std::size_t n = std::min(out.size() - done, block.size());
    std::copy_n(block.begin(), n, out.begin() + static_cast<std::ptrdiff_t>(done));
    done += n;
  }
}

}  // namespace fairdraw

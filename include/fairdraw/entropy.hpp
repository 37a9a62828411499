// Randomness is injected: seeds, tokens and ULIDs come from an Entropy source.
// Production uses the OS CSPRNG through OpenSSL; tests may use a fixed stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>

namespace fairdraw {

class Entropy {
 public:
  virtual ~Entropy() = default;
  // Fills `out` with random bytes. Thread-safe. Aborts if the CSPRNG fails:
  // issuing a predictable seed or token would break fairness silently.
  virtual void fill(std::span<std::uint8_t> out) = 0;
};

// OpenSSL RAND_bytes (the OS CSPRNG behind it).
class CsprngEntropy final : public Entropy {
 public:
  void fill(std::span<std::uint8_t> out) override;
};

// Deterministic stream for tests: SHA-256(seed || counter). Thread-safe.
class FixedEntropy final : public Entropy {
 public:
  explicit FixedEntropy(std::uint64_t seed) : seed_(seed) {}
  void fill(std::span<std::uint8_t> out) override;

 private:
  std::uint64_t seed_;
  std::mutex mutex_;
  std::uint64_t counter_ = 0;  // guarded by mutex_
};

}  // namespace fairdraw

// Admin brute-force throttling: failed admin authentications are counted per
// client address in a fixed window; an address that reaches the limit is locked
// out (429) until its window ends. Bounded memory, thread-safe, no tokens kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace fairdraw::app {

struct AdminGuardOptions {
  std::int64_t max_failures = 10;       // failures within the window that lock the address; >= 1
  std::int64_t window_ms = 900'000;     // counted from the address's first failure; >= 1
  std::size_t max_addresses = 10'000;   // entries kept at most (least recently touched dropped); >= 1
};

class AdminGuard {
 public:
  struct Check {
    bool locked = false;
    std::int64_t retry_after_s = 0;  // when locked: until the window ends, >= 1
  };
  struct Failure {
    std::int64_t failures = 0;   // in the current window, this one included
    bool now_locked = false;     // this failure reached max_failures
    std::int64_t retry_after_s = 0;
  };

  // Options out of range are clamped to their minimum.
  explicit AdminGuard(AdminGuardOptions options);

  // Before the token is looked at: is this address locked out now?
  Check check(std::string_view address, std::int64_t now_ms);
  // A wrong or malformed admin token from this address.
  Failure record_failure(std::string_view address, std::int64_t now_ms);
  // A valid admin token: the address's count starts over.
  void record_success(std::string_view address);

  std::size_t tracked_addresses() const;
  const AdminGuardOptions& options() const { return options_; }

 private:
  struct Entry {
    std::int64_t window_start_ms = 0;
    std::int64_t failures = 0;
    std::list<std::string>::iterator lru;  // position in lru_ (front: most recent)
  };
  std::int64_t retry_after_s(const Entry& e, std::int64_t now_ms) const;
  bool expired(const Entry& e, std::int64_t now_ms) const;

  AdminGuardOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // under mu_
  std::list<std::string> lru_;                      // under mu_
};

}  // namespace fairdraw::app

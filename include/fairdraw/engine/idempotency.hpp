// Idempotency keys: one entry per (activity, key) moving Idle -> Drawing -> Done
// by CAS. Entries expire in ring order after the TTL: a fixed-size ring of
// recent keys bounds memory with no timer per key.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/sink/records.hpp"

namespace fairdraw {

enum class IdemState : std::uint8_t { idle, drawing, done };

struct IdemEntry {
  std::string scope_key;           // activity_id + '\n' + key
  std::uint64_t fingerprint = 0;   // hash of the request's identity (activity_id, user_id)
  std::int64_t created_ms = 0;
  std::atomic<IdemState> state{IdemState::idle};
  // Written by the claimant before the release-store of Done; read only after
  // an acquire-load sees Done.
  DrawRecord result;
};

class IdempotencyTable {
 public:
  struct Claim {
    enum class Kind {
      claimed,    // caller owns the entry (now Drawing) and must complete() or release()
      in_flight,  // another request with this key is drawing: 409
      done,       // finished before: entry->result is the stored outcome
      mismatch,   // same key, different fingerprint: 422
      full,       // ring full of in-flight entries: 503
    } kind;
    std::shared_ptr<IdemEntry> entry;
  };

  IdempotencyTable(std::size_t capacity, std::int64_t ttl_ms);
  ~IdempotencyTable();  // out of line: Shard is complete only in idempotency.cpp

  Claim claim(std::string_view activity_id, std::string_view key, std::uint64_t fingerprint,
              std::int64_t now_ms);
  // Drawing -> Done with the outcome (the entry keeps it until it expires).
  void complete(const std::shared_ptr<IdemEntry>& entry, DrawRecord result);
  // Drawing -> Idle: the draw was refused (nothing recorded); the key may be retried.
  void release(const std::shared_ptr<IdemEntry>& entry);
  // Recovery: a Done entry from the durable record.
  void restore(const DrawRecord& record, std::uint64_t fingerprint);

  // Drops entries older than the TTL, oldest first; returns how many.
  std::size_t expire(std::int64_t now_ms);

  // Done entries dropped before their TTL because the ring was full. After one,
  // a miss may be a key that was evicted early: the caller checks the durable record.
  bool maybe_evicted(std::int64_t now_ms) const;

  std::size_t size() const;
  std::uint64_t evicted_early() const;

 private:
  // Implementation-defined: sharded map + ring; see idempotency.cpp.
  struct Shard;
  Shard& shard_for(std::string_view scope_key) const;
  // Ring helpers: the caller holds ring_mutex_ (lock order: ring_mutex_, then a shard's mutex).
  bool push_locked(const std::shared_ptr<IdemEntry>& entry, std::int64_t now_ms);
  std::size_t expire_locked(std::int64_t now_ms);
  void pop_head_locked();
  // Removes the entry from its shard unless it is Drawing; false if it is Drawing.
  bool erase_unless_drawing(const std::shared_ptr<IdemEntry>& entry);
  // Removes the entry from its shard if the shard still maps its key to it.
  void erase_entry(const std::shared_ptr<IdemEntry>& entry);
  std::size_t capacity_;
  std::int64_t ttl_ms_;
  std::vector<std::unique_ptr<Shard>> shards_;
  mutable std::mutex ring_mutex_;
  std::vector<std::shared_ptr<IdemEntry>> ring_;  // guarded by ring_mutex_
  std::size_t ring_head_ = 0, ring_size_ = 0;     // guarded by ring_mutex_
  std::atomic<std::int64_t> newest_evicted_early_ms_{INT64_MIN};
  std::atomic<std::uint64_t> evicted_early_{0};
  std::atomic<std::size_t> size_{0};
};

// Fingerprint of a draw request's identity: FNV-1a 64 of activity_id '\n' user_id.
std::uint64_t draw_fingerprint(std::string_view activity_id, std::string_view user_id);

}  // namespace fairdraw

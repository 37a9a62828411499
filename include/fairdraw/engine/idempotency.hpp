// Idempotency keys: one entry per (activity, key) moving Idle -> Drawing -> Done
// by CAS. Entries expire in ring order after the TTL: a bounded FIFO of recent
// keys bounds memory with no timer per key.
//
// Memory: an entry is one heap block (a small header, the scope text, then the
// outcome packed into bytes), found through a per-shard open-addressing table
// of (hash, entry) slots, and chained into the expiry FIFO through the entry
// itself. Nothing is allocated up front for the ring's capacity.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/sink/records.hpp"

namespace fairdraw {

// unowned: idle, and the next claim takes the key whatever its fingerprint
// (release_unowned()).
enum class IdemState : std::uint8_t { idle, drawing, done, unowned };

// The fixed part of an entry; the scope text ("activity\nkey") and the outcome
// area follow it in the same block. Created and freed by IdempotencyTable only.
struct IdemEntry {
  IdemEntry* newer = nullptr;  // the expiry FIFO (guarded by the table's ring mutex)
  std::uint64_t fingerprint = 0;  // hash of the request's identity (activity_id, user_id)
  std::int64_t created_ms = 0;
  std::atomic<IdemState> state{IdemState::idle};
  // How the outcome is held (written by the claimant before the release-store
  // of Done; read only after an acquire-load sees Done).
  std::uint8_t outcome_form = 0;
  std::uint16_t outcome_capacity = 0;  // bytes of outcome area after the scope
  std::uint32_t scope_size = 0;        // activity_id + '\n' + key

  std::string_view scope() const {
    return {reinterpret_cast<const char*>(this + 1), scope_size};
  }
  unsigned char* outcome_area() { return reinterpret_cast<unsigned char*>(this + 1) + scope_size; }
  const unsigned char* outcome_area() const {
    return reinterpret_cast<const unsigned char*>(this + 1) + scope_size;
  }
};

class IdempotencyTable {
 public:
  struct Claim {
    enum class Kind {
      claimed,    // caller owns `entry` (now Drawing) and must complete() or release() it
      in_flight,  // another request with this key is drawing: 409
      done,       // finished before: `replay` is the stored outcome
      mismatch,   // same key, different fingerprint: 422
      full,       // ring full of in-flight entries: 503
    } kind;
    // Only for `claimed`. Valid until the caller's complete() or release(): an
    // entry is never freed while Drawing, and only the claimant leaves Drawing.
    IdemEntry* entry = nullptr;
    // Only for `done`: decoded under the shard's lock (replays are rare), so the
    // entry may expire at once without the caller noticing.
    std::optional<DrawRecord> replay;
  };

  // Hash of a scope's two parts. Tests pass a poor one to force collisions.
  using ScopeHash = std::uint64_t (*)(std::string_view activity_id, std::string_view key);

  IdempotencyTable(std::size_t capacity, std::int64_t ttl_ms, ScopeHash hash = nullptr);
  ~IdempotencyTable();
  IdempotencyTable(const IdempotencyTable&) = delete;
  IdempotencyTable& operator=(const IdempotencyTable&) = delete;

  // outcome_reserve: bytes kept in the entry for complete()'s outcome
  // (outcome_reserve_for()); an outcome that does not fit takes a second block.
  Claim claim(std::string_view activity_id, std::string_view key, std::uint64_t fingerprint,
              std::int64_t now_ms, std::size_t outcome_reserve = 0);
  // Drawing -> Done with the outcome (the entry keeps it until it expires).
  void complete(IdemEntry* entry, const DrawRecord& result);
  // Drawing -> Done with a draw found in the durable record (a key evicted or
  // left out of the ring), whose fingerprint the entry takes: the key stays its
  // owner's even if the claimant's body differed.
  void complete_from_record(IdemEntry* entry, const DrawRecord& record,
                            std::uint64_t fingerprint);
  // Drawing -> Idle: the draw was refused (nothing recorded); the key may be retried.
  void release(IdemEntry* entry);
  // Drawing -> Unowned: the claimant cannot tell whether the key is someone
  // else's (the durable record could not be read). Released with the
  // claimant's fingerprint, the key would refuse its owner (422) until it
  // expired; unowned, the next claim takes it whatever its fingerprint.
  void release_unowned(IdemEntry* entry);
  // Recovery: a Done entry from the durable record. It may run while claims
  // are served (set_restoring()): a key claimed meanwhile is left to its
  // claimant, and noted as left out unless it is Done already.
  void restore(const DrawRecord& record, std::uint64_t fingerprint);
  // Recovery: live keys up to created_ms exist in the durable record but were
  // not restored; until they expire a miss must look there (maybe_evicted()).
  void note_left_out(std::int64_t created_ms);
  // Recovery in the background: while on, any miss may be a key not restored
  // yet. The draw path loads restoring() BEFORE its claim: if it reads false,
  // every restore() happened before the claim, which therefore finds its key.
  void set_restoring(bool on);
  bool restoring() const;

  // Drops entries older than the TTL, oldest first; returns how many.
  std::size_t expire(std::int64_t now_ms);

  // Done entries dropped before their TTL because the ring was full. After one,
  // a miss may be a key that was evicted early: the caller checks the durable record.
  bool maybe_evicted(std::int64_t now_ms) const;

  std::size_t size() const;
  std::uint64_t evicted_early() const;

  // What a draw by this user that misses (ULID draw id, no prize) needs in the
  // outcome area: the claim's outcome_reserve on the draw path.
  static std::size_t outcome_reserve_for(std::string_view user_id);

 private:
  struct Shard;  // open-addressing table; see idempotency.cpp
  Shard& shard_for(std::uint64_t hash) const;
  std::uint64_t hash_of(std::string_view activity_id, std::string_view key) const;
  std::uint64_t hash_of(const IdemEntry& entry) const;  // from its stored scope
  // Ring helpers: the caller holds ring_mutex_ (lock order: ring_mutex_, then a shard's mutex).
  bool push_locked(IdemEntry* entry, std::int64_t now_ms);
  std::size_t expire_locked(std::int64_t now_ms);
  IdemEntry* pop_head_locked();
  void note_evicted_early_locked(std::int64_t created_ms);
  // Removes the entry from its shard unless it is Drawing; false if it is Drawing.
  bool erase_unless_drawing(IdemEntry* entry);
  // Removes an entry that is in its shard (any state).
  void erase_entry(IdemEntry* entry);

  std::size_t capacity_;
  std::int64_t ttl_ms_;
  ScopeHash hash_;
  std::vector<std::unique_ptr<Shard>> shards_;
  mutable std::mutex ring_mutex_;
  // Oldest and newest entry of the expiry FIFO, linked by IdemEntry::newer.
  IdemEntry* ring_head_ = nullptr;  // guarded by ring_mutex_
  IdemEntry* ring_tail_ = nullptr;  // guarded by ring_mutex_
  std::size_t ring_size_ = 0;       // guarded by ring_mutex_
  std::atomic<bool> restoring_{false};
  std::atomic<std::int64_t> newest_evicted_early_ms_{INT64_MIN};
  std::atomic<std::uint64_t> evicted_early_{0};
  std::atomic<std::size_t> size_{0};
};

// Fingerprint of a draw request's identity: FNV-1a 64 of activity_id '\n' user_id.
std::uint64_t draw_fingerprint(std::string_view activity_id, std::string_view user_id);

}  // namespace fairdraw

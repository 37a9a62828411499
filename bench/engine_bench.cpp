// Engine micro-benchmarks: deck shuffle by size, the idempotency table and the
// quota book under the draw path's access pattern.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "fairdraw/engine/deck.hpp"
#include "fairdraw/engine/idempotency.hpp"
#include "fairdraw/engine/quota.hpp"
#include "fairdraw/engine/ulid.hpp"
#include "fairdraw/entropy.hpp"

namespace {

void BM_build_deck(benchmark::State& state) {
  const auto size = static_cast<std::uint32_t>(state.range(0));
  const std::vector<std::uint32_t> weights = {size / 100, size / 20, size / 10};
  const std::uint32_t miss = size - weights[0] - weights[1] - weights[2];
  fairdraw::Seed seed{};
  seed[0] = 42;
  for (auto _ : state) {
    auto deck = fairdraw::build_deck(seed, weights, miss);
    benchmark::DoNotOptimize(deck.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(state.iterations() * state.range(0) *
                          static_cast<std::int64_t>(sizeof(fairdraw::Card)));
}
BENCHMARK(BM_build_deck)->RangeMultiplier(10)->Range(1000, 10'000'000)->Unit(benchmark::kMillisecond);

void BM_idempotency_claim_complete(benchmark::State& state) {
  static fairdraw::IdempotencyTable table(1 << 20, 3'600'000);
  static const fairdraw::DrawRecord outcome{};
  const std::size_t reserve = fairdraw::IdempotencyTable::outcome_reserve_for("user-1000000");
  std::int64_t i = state.thread_index() * 1'000'000'000LL;
  for (auto _ : state) {
    const std::string key = "key-" + std::to_string(i++);
    auto claim = table.claim("demo", key, 7, i / 1000, reserve);
    if (claim.kind == fairdraw::IdempotencyTable::Claim::Kind::claimed) {
      table.complete(claim.entry, outcome);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_idempotency_claim_complete)->Threads(1)->Threads(2);

void BM_quota_take(benchmark::State& state) {
  static fairdraw::QuotaBook book;
  std::int64_t i = state.thread_index() * 1'000'000'000LL;
  const fairdraw::QuotaBook::Limits limits{1'000'000, 1'000'000};
  for (auto _ : state) {
    benchmark::DoNotOptimize(book.take("user-" + std::to_string(i++ % 100000), 20000, limits));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_quota_take)->Threads(1)->Threads(2);

// Heap bytes in use (glibc), to measure what an entry costs: small blocks (uordblks) and
// the large ones glibc serves with mmap (hblkhd), such as the quota book's record chunks.
std::size_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Memory per user: 10^6 distinct users with one draw each, as a campaign's
// first day leaves them. User ids as clients send them ("user-" + 7 digits,
// 12 bytes, kept inside the record; a UUID's 36 bytes would go to the shard's arena).
void BM_quota_bytes_per_user(benchmark::State& state) {
  const auto users = static_cast<std::int64_t>(state.range(0));
  const fairdraw::QuotaBook::Limits limits{10, 10};
  double bytes = 0;
  for (auto _ : state) {
    const std::size_t before = heap_in_use();
    auto book = std::make_unique<fairdraw::QuotaBook>();
    for (std::int64_t u = 0; u < users; ++u) {
      benchmark::DoNotOptimize(book->take("user-" + std::to_string(1'000'000 + u), 20000, limits));
    }
    bytes = static_cast<double>(heap_in_use() - before) / static_cast<double>(users);
  }
  state.counters["bytes_per_user"] = bytes;
}
BENCHMARK(BM_quota_bytes_per_user)->Arg(1'000'000)->Iterations(1)->Unit(benchmark::kMillisecond);

// Memory per idempotency entry: a full ring of completed draws with
// UUID-sized keys and ULID draw ids, as the hot path leaves them (the claim
// reserves the outcome's room as DrawEngine::draw does).
// FAIRDRAW_BENCH_TEXT_DRAW_ID=1 uses a draw id that is not a valid ULID (kept as text).
void BM_idempotency_bytes_per_entry(benchmark::State& state) {
  const auto entries = static_cast<std::int64_t>(state.range(0));
  const bool text_draw_id = std::getenv("FAIRDRAW_BENCH_TEXT_DRAW_ID") != nullptr;
  double bytes = 0;
  for (auto _ : state) {
    const std::size_t before = heap_in_use();
    auto table = std::make_unique<fairdraw::IdempotencyTable>(static_cast<std::size_t>(entries), 3'600'000);
    for (std::int64_t i = 0; i < entries; ++i) {
      const std::string key = "7f1c2a9e-0000-4000-8000-" + std::to_string(100'000'000'000 + i);
      fairdraw::DrawRecord r;
      r.user_id = "user-" + std::to_string(1'000'000 + i);
      auto claim = table->claim("bench", key, 7, 1000,
                                fairdraw::IdempotencyTable::outcome_reserve_for(r.user_id));
      r.draw_id = text_draw_id ? "01JDRAWIDFROMTHERESPONSE00" : "01JDRAWXDFRZMTHERESPQNSE00";
      r.activity_id = "bench";
      r.idempotency_key = key;
      r.seq = i;
      table->complete(claim.entry, r);
    }
    bytes = static_cast<double>(heap_in_use() - before) / static_cast<double>(entries);
  }
  state.counters["bytes_per_entry"] = bytes;
}
BENCHMARK(BM_idempotency_bytes_per_entry)->Arg(262'144)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_ulid(benchmark::State& state) {
  fairdraw::CsprngEntropy entropy;
  std::int64_t now = 1'780'000'000'000;
  for (auto _ : state) benchmark::DoNotOptimize(fairdraw::make_ulid(now++, entropy));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ulid);

}  // namespace

BENCHMARK_MAIN();

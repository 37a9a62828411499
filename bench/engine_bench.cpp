// Engine micro-benchmarks: deck shuffle by size, the idempotency table and the
// quota book under the draw path's access pattern.
#include <benchmark/benchmark.h>

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
  std::int64_t i = state.thread_index() * 1'000'000'000LL;
  for (auto _ : state) {
    const std::string key = "key-" + std::to_string(i++);
    auto claim = table.claim("demo", key, 7, i / 1000);
    if (claim.kind == fairdraw::IdempotencyTable::Claim::Kind::claimed) {
      table.complete(claim.entry, fairdraw::DrawRecord{});
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

void BM_ulid(benchmark::State& state) {
  fairdraw::CsprngEntropy entropy;
  std::int64_t now = 1'780'000'000'000;
  for (auto _ : state) benchmark::DoNotOptimize(fairdraw::make_ulid(now++, entropy));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ulid);

}  // namespace

BENCHMARK_MAIN();

// RedisRouter: slot routing over RedisConnections, one small set per master. The slot map is
// a plain array slot -> node under a mutex held for a lookup only; it is replaced by each
// CLUSTER SLOTS answer and patched in place by MOVED (the slot's new owner is certain then).
#include "fairdraw/redis/cluster.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "redis_asio.hpp"

namespace fairdraw::redis {
namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr int kMaxRedirects = 5;
constexpr auto kRetryBackoffMin = 10ms;
constexpr auto kRetryBackoffMax = 200ms;
constexpr auto kRefreshInterval = 100ms;

// CRC16-CCITT, polynomial 0x1021, initial value 0 (XMODEM), as Redis Cluster uses.
constexpr std::array<std::uint16_t, 256> make_crc_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    auto crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[i] = crc;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

std::uint16_t crc16(std::string_view data) {
  std::uint16_t crc = 0;
  for (const char c : data) {
    const auto byte = static_cast<std::uint8_t>(c);
    crc = static_cast<std::uint16_t>((crc << 8) ^ kCrcTable[((crc >> 8) ^ byte) & 0xFF]);
  }
  return crc;
}

std::string name_of(const std::string& host, std::uint16_t port) { return host + ":" + std::to_string(port); }

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" -> slot, host, port.
struct Redirect {
  std::uint16_t slot = 0;
  std::string host;
  std::uint16_t port = 0;
};

std::optional<Redirect> parse_redirect(std::string_view text) {
  const auto first = text.find(' ');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = text.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  const std::string_view slot = text.substr(first + 1, second - first - 1);
  const std::string_view target = text.substr(second + 1);
  const auto colon = target.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  Redirect r;
  unsigned slot_value = 0;
  unsigned port_value = 0;
  const std::string_view port = target.substr(colon + 1);
  if (std::from_chars(slot.data(), slot.data() + slot.size(), slot_value).ec != std::errc() ||
      std::from_chars(port.data(), port.data() + port.size(), port_value).ec != std::errc() ||
      slot_value >= kClusterSlots || port_value == 0 || port_value > 65535) {
    return std::nullopt;
  }
  r.slot = static_cast<std::uint16_t>(slot_value);
  r.port = static_cast<std::uint16_t>(port_value);
  std::string_view host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  r.host = std::string(host);
  return r;
}

}  // namespace

std::uint16_t key_slot(std::string_view key) {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<std::uint16_t>(crc16(key) % kClusterSlots);
}

// One master (or the standalone server): its connections, used round-robin.
struct Node {
  std::string name;  // host:port
  RedisEndpoint endpoint;
  std::vector<std::shared_ptr<RedisConnection>> connections;
  std::atomic<std::size_t> next{0};

  RedisConnection& pick() { return *connections[next.fetch_add(1, std::memory_order_relaxed) % connections.size()]; }
};
using NodePtr = std::shared_ptr<Node>;

// One command on its way: formatted once, resent as redirects and retries require.
struct Request {
  SharedCommand formatted;  // shared with the connection's inbox: a resend copies nothing
  int slot = -1;  // -1: no key
  RedisCallback done;
  SteadyClock::time_point deadline;
  int redirects = 0;
  std::chrono::milliseconds backoff{0};
};
using RequestPtr = std::shared_ptr<Request>;

class RedisRouter::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(net::io_context& io, RedisOptions options, std::size_t per_node)
      : io_(io), options_(std::move(options)), per_node_(std::max<std::size_t>(1, per_node)) {
    seeds_ = options_.seeds;
    if (seeds_.empty()) seeds_.push_back(RedisEndpoint{options_.host, options_.port});
    slots_.resize(kClusterSlots);
  }

  void start() {
    {
      std::lock_guard lock(mutex_);
      default_node_ = node_locked(seeds_.front());
    }
    refresh();
  }

  const RedisOptions& options() const { return options_; }

  void command(int slot, std::vector<std::string> argv, RedisCallback done) {
    auto formatted = format_command(argv);
    if (!formatted.ok()) {
      auto request = std::make_shared<Request>();
      request->done = std::move(done);
      return fail_later(request, formatted.error());
    }
    command_formatted(slot, std::move(formatted.value()), std::move(done));
  }

  void command_formatted(int slot, std::string formatted, RedisCallback done) {
    command_shared(slot, std::make_shared<const std::string>(std::move(formatted)), std::move(done));
  }

  void command_shared(int slot, SharedCommand formatted, RedisCallback done) {
    auto request = std::make_shared<Request>();
    request->slot = slot;
    request->done = std::move(done);
    request->deadline = SteadyClock::now() + options_.command_timeout;
    request->formatted = std::move(formatted);
    send(request, nullptr, false);
  }

  void close() {
    std::vector<NodePtr> nodes;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      closed_ = true;
      for (auto& [name, node] : nodes_) nodes.push_back(node);
    }
    for (auto& node : nodes) {
      for (auto& connection : node->connections) connection->close();
    }
  }

  bool clustered() const { return clustered_.load(std::memory_order_relaxed); }

  std::string owner_of(std::uint16_t slot) const {
    std::lock_guard lock(mutex_);
    const NodePtr& node = slots_[slot];
    return node ? node->name : std::string();
  }

  RedisRouterStats stats() const {
    RedisRouterStats s;
    s.map_known = map_known_.load(std::memory_order_relaxed);
    s.clustered = clustered();
    s.moved = moved_.load(std::memory_order_relaxed);
    s.asked = asked_.load(std::memory_order_relaxed);
    s.retried = retried_.load(std::memory_order_relaxed);
    s.refreshes = refreshes_.load(std::memory_order_relaxed);
    std::lock_guard lock(mutex_);
    s.masters = masters_;
    return s;
  }

  // Asks for a fresh slot map: at most one CLUSTER SLOTS in flight, 100 ms apart at least;
  // a request meanwhile is remembered and served by one more refresh afterwards.
  void refresh() {
    std::vector<RedisEndpoint> candidates;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      if (refreshing_) {
        refresh_again_ = true;
        return;
      }
      refreshing_ = true;
      const auto wait = last_refresh_ + kRefreshInterval - SteadyClock::now();
      if (wait > SteadyClock::duration::zero()) {
        auto timer = std::make_shared<net::steady_timer>(io_, wait);
        timer->async_wait([self = shared_from_this(), timer](boost::system::error_code) {
          self->start_refresh(self->refresh_candidates());
        });
        return;
      }
    }
    start_refresh(refresh_candidates());
  }

 private:
  // Current masters first (they know the newest map), then the seeds.
  std::vector<RedisEndpoint> refresh_candidates() {
    std::lock_guard lock(mutex_);
    std::vector<RedisEndpoint> out;
    for (const NodePtr& node : masters_list_) out.push_back(node->endpoint);
    for (const RedisEndpoint& seed : seeds_) {
      if (std::find(out.begin(), out.end(), seed) == out.end()) out.push_back(seed);
    }
    return out;
  }

  void start_refresh(std::vector<RedisEndpoint> candidates, std::size_t i = 0) {
    NodePtr node;
    {
      std::lock_guard lock(mutex_);
      if (closed_ || i >= candidates.size()) {
        finish_refresh_locked();
        return;
      }
      node = node_locked(candidates[i]);
    }
    node->pick().command({"CLUSTER", "SLOTS"}, [self = shared_from_this(), node, candidates = std::move(candidates),
                                                i](Result<RedisReply> reply) mutable {
      if (self->apply_map(node, reply)) {
        std::lock_guard lock(self->mutex_);
        self->finish_refresh_locked();
        return;
      }
      self->start_refresh(std::move(candidates), i + 1);
    });
  }

  void finish_refresh_locked() {
    refreshing_ = false;
    last_refresh_ = SteadyClock::now();
    if (refresh_again_ && !closed_) {
      refresh_again_ = false;
      // Served after the interval by a timer, never by recursion under the lock.
      refreshing_ = true;
      auto timer = std::make_shared<net::steady_timer>(io_, kRefreshInterval);
      timer->async_wait([self = shared_from_this(), timer](boost::system::error_code) {
        self->start_refresh(self->refresh_candidates());
      });
    }
  }

  // True when `reply` settled the map: a slot table (cluster) or the refusal of a server
  // without cluster support (standalone: that server owns every slot).
  bool apply_map(const NodePtr& asked, const Result<RedisReply>& reply) {
    if (!reply.ok()) return false;
    if (reply->is_error()) {
      if (reply->str.find("cluster support disabled") == std::string::npos) return false;
      std::lock_guard lock(mutex_);
      std::fill(slots_.begin(), slots_.end(), asked);
      default_node_ = asked;
      masters_list_ = {asked};
      masters_ = 1;
      clustered_.store(false, std::memory_order_relaxed);
      map_known_.store(true, std::memory_order_relaxed);
      refreshes_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (!reply->is_array() || reply->elements.empty()) return false;  // no slots assigned yet
    std::lock_guard lock(mutex_);
    std::vector<NodePtr> fresh(kClusterSlots);
    std::vector<NodePtr> masters;
    for (const RedisReply& range : reply->elements) {
      if (!range.is_array() || range.elements.size() < 3 || !range.elements[0].is_integer() ||
          !range.elements[1].is_integer() || !range.elements[2].is_array()) {
        return false;
      }
      const auto& master = range.elements[2].elements;
      if (master.size() < 2 || !master[1].is_integer()) return false;
      const std::int64_t from = range.elements[0].integer;
      const std::int64_t to = range.elements[1].integer;
      const std::int64_t port = master[1].integer;
      if (from < 0 || to >= kClusterSlots || from > to || port <= 0 || port > 65535) return false;
      // An empty or "?" endpoint means "the address you reached me at".
      std::string host = master[0].str;
      if (host.empty() || host == "?") host = asked->endpoint.host;
      NodePtr node = node_locked(RedisEndpoint{host, static_cast<std::uint16_t>(port)});
      if (std::find(masters.begin(), masters.end(), node) == masters.end()) masters.push_back(node);
      for (std::int64_t s = from; s <= to; ++s) fresh[static_cast<std::size_t>(s)] = node;
    }
    slots_ = std::move(fresh);
    masters_list_ = masters;
    masters_ = masters.size();
    if (!masters.empty()) default_node_ = masters.front();
    clustered_.store(true, std::memory_order_relaxed);
    map_known_.store(true, std::memory_order_relaxed);
    refreshes_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // The node for an endpoint, created (with its connections) on first use. Under mutex_.
  NodePtr node_locked(const RedisEndpoint& endpoint) {
    const std::string name = name_of(endpoint.host, endpoint.port);
    auto& node = nodes_[name];
    if (!node) {
      node = std::make_shared<Node>();
      node->name = name;
      node->endpoint = endpoint;
      RedisOptions o = options_;
      o.host = endpoint.host;
      o.port = endpoint.port;
      o.seeds.clear();
      for (std::size_t i = 0; i < per_node_; ++i) node->connections.push_back(RedisConnection::create(io_, o));
      if (closed_) {
        for (auto& connection : node->connections) connection->close();
      }
    }
    return node;
  }

  NodePtr route(int slot) {
    std::lock_guard lock(mutex_);
    if (slot >= 0 && slots_[static_cast<std::size_t>(slot)]) return slots_[static_cast<std::size_t>(slot)];
    return default_node_;
  }

  void fail_later(const RequestPtr& request, Error error) {
    net::post(io_, [request, error = std::move(error)]() mutable { request->done(std::move(error)); });
  }

  void send(const RequestPtr& request, NodePtr node, bool asking) {
    if (!node) node = route(request->slot);
    node->pick().command_shared(
        request->formatted,
        [self = shared_from_this(), request](Result<RedisReply> reply) { self->on_reply(request, std::move(reply)); },
        asking);
  }

  void on_reply(const RequestPtr& request, Result<RedisReply> reply) {
    if (!reply.ok()) {
      // The node may be gone (failover, resharding): the map is worth reading again.
      if (reply.error().kind == ErrorKind::unavailable &&
          (clustered() || !map_known_.load(std::memory_order_relaxed))) {
        refresh();
      }
      return request->done(std::move(reply));
    }
    if (!reply->is_error()) return request->done(std::move(reply));
    const std::string_view code = reply->error_code();
    if (code == "MOVED" || code == "ASK") {
      const auto target = parse_redirect(reply->str);
      if (!target || ++request->redirects > kMaxRedirects) return request->done(std::move(reply));
      NodePtr node;
      {
        std::lock_guard lock(mutex_);
        if (closed_) return request->done(make_error(ErrorKind::unavailable, "redis: router closed"));
        node = node_locked(RedisEndpoint{target->host, target->port});
        // MOVED is the owner's own word: use it at once, before the full map comes back.
        if (code == "MOVED") slots_[target->slot] = node;
      }
      if (code == "MOVED") {
        moved_.fetch_add(1, std::memory_order_relaxed);
        refresh();
        return send(request, node, false);
      }
      asked_.fetch_add(1, std::memory_order_relaxed);
      return send(request, node, true);
    }
    if (code == "TRYAGAIN" || code == "CLUSTERDOWN") {
      request->backoff = request->backoff.count() == 0 ? std::chrono::milliseconds(kRetryBackoffMin)
                                                       : std::min<std::chrono::milliseconds>(
                                                             request->backoff * 2, kRetryBackoffMax);
      if (SteadyClock::now() + request->backoff >= request->deadline) return request->done(std::move(reply));
      retried_.fetch_add(1, std::memory_order_relaxed);
      // A fresh attempt: during a migration each one may take an ASK before its TRYAGAIN.
      request->redirects = 0;
      if (code == "CLUSTERDOWN") refresh();
      auto timer = std::make_shared<net::steady_timer>(io_, request->backoff);
      timer->async_wait([self = shared_from_this(), request, timer](boost::system::error_code) {
        self->send(request, nullptr, false);
      });
      return;
    }
    request->done(std::move(reply));
  }

  net::io_context& io_;
  const RedisOptions options_;
  const std::size_t per_node_;
  std::vector<RedisEndpoint> seeds_;

  mutable std::mutex mutex_;
  std::unordered_map<std::string, NodePtr> nodes_;  // every node ever used, by host:port
  std::vector<NodePtr> slots_;                      // slot -> owner; null: unknown
  std::vector<NodePtr> masters_list_;
  std::size_t masters_ = 0;
  NodePtr default_node_;  // keyless commands and unknown slots
  bool closed_ = false;
  bool refreshing_ = false;
  bool refresh_again_ = false;
  SteadyClock::time_point last_refresh_{};

  std::atomic<bool> clustered_{false};
  std::atomic<bool> map_known_{false};
  std::atomic<std::uint64_t> moved_{0}, asked_{0}, retried_{0}, refreshes_{0};
};

std::shared_ptr<RedisRouter> RedisRouter::create(boost::asio::io_context& io, RedisOptions options,
                                                 std::size_t connections_per_node) {
  auto impl = std::make_shared<Impl>(io, std::move(options), connections_per_node);
  impl->start();
  return std::shared_ptr<RedisRouter>(new RedisRouter(std::move(impl)));
}

RedisRouter::RedisRouter(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

RedisRouter::~RedisRouter() { impl_->close(); }

void RedisRouter::command(std::string_view key, std::vector<std::string> argv, RedisCallback done) {
  impl_->command(key_slot(key), std::move(argv), std::move(done));
}

void RedisRouter::command_formatted(std::string_view key, std::string formatted, RedisCallback done) {
  impl_->command_formatted(key_slot(key), std::move(formatted), std::move(done));
}

void RedisRouter::command_shared(std::string_view key, SharedCommand formatted, RedisCallback done) {
  impl_->command_shared(key_slot(key), std::move(formatted), std::move(done));
}

void RedisRouter::command_formatted_any(std::string formatted, RedisCallback done) {
  impl_->command_formatted(-1, std::move(formatted), std::move(done));
}

void RedisRouter::command_any(std::vector<std::string> argv, RedisCallback done) {
  impl_->command(-1, std::move(argv), std::move(done));
}

void RedisRouter::close() { impl_->close(); }

bool RedisRouter::clustered() const { return impl_->clustered(); }

std::string RedisRouter::owner_of(std::uint16_t slot) const { return impl_->owner_of(slot); }

void RedisRouter::refresh() { impl_->refresh(); }

RedisRouterStats RedisRouter::stats() const { return impl_->stats(); }

const RedisOptions& RedisRouter::options() const { return impl_->options(); }

}  // namespace fairdraw::redis

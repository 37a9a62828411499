// EVALSHA with SCRIPT LOAD on demand and one retry after NOSCRIPT.
#include "fairdraw/redis/script.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

namespace fairdraw::redis {

// Shared with in-flight calls, which may outlive the RedisScript.
// The SHA is written once (every SCRIPT LOAD of the source answers the same SHA1) and read
// without a lock on the hot path: `state` goes 0 (none) -> 1 (being written) -> 2 (set).
struct RedisScript::State {
  explicit State(std::string src) : source(std::move(src)) {}

  const std::string source;
  std::atomic<int> state{0};
  std::string sha;  // written once, before state becomes 2

  // Null until SCRIPT LOAD answered.
  const std::string* get_sha() const { return state.load(std::memory_order_acquire) == 2 ? &sha : nullptr; }
  void set_sha(const std::string& value) {
    int expected = 0;
    if (!state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return;
    sha = value;
    state.store(2, std::memory_order_release);
  }
};

namespace {

using State = RedisScript::State;

constexpr std::size_t kShaLength = 40;
constexpr std::string_view kShaHeader = "$40\r\n";

// Where a call goes: a connection, or a router by the first key (none: any master). Held
// weakly: a call must not keep a connection its owner has dropped, and a retry on a dropped
// one fails with unavailable.
struct Target {
  std::weak_ptr<RedisConnection> connection;
  std::weak_ptr<RedisRouter> router;
  bool via_router = false;
  std::optional<std::string> key;
};

// The EVALSHA is formatted once, with room for the SHA (kShaLength bytes after the first
// "$40\r\n", which is the SHA's own header: EVALSHA's comes first); the SHA is written in
// before each send, so a reload after NOSCRIPT resends the same bytes. They are sent as a
// SharedCommand aliasing the Call: nothing is copied per send.
struct Call {
  std::shared_ptr<State> state;
  Target target;
  std::string command;
  RedisCallback done;
};

void send(const std::shared_ptr<Call>& call, SharedCommand bytes, RedisCallback cb) {
  const Target& t = call->target;
  if (auto router = t.router.lock()) {
    if (t.key) return router->command_shared(*t.key, std::move(bytes), std::move(cb));
    return router->command_formatted_any(*bytes, std::move(cb));
  }
  if (auto connection = t.connection.lock()) return connection->command_shared(std::move(bytes), std::move(cb));
  cb(make_error(ErrorKind::unavailable, t.via_router ? "redis: router closed" : "redis: connection closed"));
}

void load_then_eval(std::shared_ptr<Call> call);

void eval(std::shared_ptr<Call> call, std::string_view sha, bool may_reload) {
  const std::size_t at = call->command.find(kShaHeader);
  if (sha.size() != kShaLength || at == std::string::npos || at + kShaHeader.size() + kShaLength > call->command.size()) {
    return call->done(make_error(ErrorKind::internal, "redis: unexpected script SHA '" + std::string(sha) + "'"));
  }
  call->command.replace(at + kShaHeader.size(), kShaLength, sha);
  SharedCommand bytes(call, &call->command);
  send(call, std::move(bytes), [call, may_reload](Result<RedisReply> reply) mutable {
    if (may_reload && reply.ok() && reply->error_code() == "NOSCRIPT") return load_then_eval(std::move(call));
    call->done(std::move(reply));
  });
}

void load_then_eval(std::shared_ptr<Call> call) {
  auto load = format_command({"SCRIPT", "LOAD", call->state->source});
  if (!load.ok()) return call->done(load.error());
  auto bytes = std::make_shared<const std::string>(std::move(load.value()));
  send(call, std::move(bytes), [call](Result<RedisReply> reply) mutable {
    if (!reply.ok() || reply->is_error()) return call->done(std::move(reply));
    if (!reply->is_string()) {
      return call->done(make_error(ErrorKind::internal, "redis: SCRIPT LOAD answered with a " +
                                                            std::string(to_string(reply->type)) + " reply"));
    }
    call->state->set_sha(reply->str);
    // Loaded just now on this connection: a NOSCRIPT now would be a real failure, not a race.
    const std::string sha = reply->str;
    eval(std::move(call), sha, false);
  });
}

CommandWriter begin_eval(std::size_t keys, std::size_t args, std::size_t reserve) {
  CommandWriter writer(3 + keys + args, reserve);
  writer.arg("EVALSHA").arg(std::string_view("0000000000000000000000000000000000000000", kShaLength));
  writer.arg(static_cast<std::int64_t>(keys));
  return writer;
}

Result<std::string> format_eval(const std::vector<std::string>& keys, const std::vector<std::string>& args) {
  std::size_t size = 96;
  for (const auto& k : keys) size += k.size() + 16;
  for (const auto& a : args) size += a.size() + 16;
  CommandWriter writer = begin_eval(keys.size(), args.size(), size);
  for (const auto& k : keys) writer.arg(k);
  for (const auto& a : args) writer.arg(a);
  return std::move(writer).take();
}

}  // namespace

RedisScript::RedisScript(std::string source) : state_(std::make_shared<State>(std::move(source))) {}

const std::string& RedisScript::source() const { return state_->source; }

std::optional<std::string> RedisScript::sha() const {
  const std::string* sha = state_->get_sha();
  if (sha == nullptr) return std::nullopt;
  return *sha;
}

namespace {

void start(const std::shared_ptr<State>& state, std::shared_ptr<Call> call) {
  const std::string* sha = state->get_sha();
  if (sha == nullptr) return load_then_eval(std::move(call));
  eval(std::move(call), *sha, true);
}

}  // namespace

CommandWriter RedisScript::begin(std::size_t keys, std::size_t args, std::size_t reserve) const {
  return begin_eval(keys, args, reserve);
}

void RedisScript::call(RedisConnection& connection, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisCallback done) const {
  auto command = format_eval(keys, args);
  if (!command.ok()) return done(command.error());
  Target target;
  target.connection = connection.weak_from_this();
  start(state_, std::make_shared<Call>(Call{state_, std::move(target), std::move(command.value()), std::move(done)}));
}

void RedisScript::call(RedisRouter& router, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisCallback done) const {
  auto command = format_eval(keys, args);
  if (!command.ok()) return done(command.error());
  Target target;
  target.router = router.weak_from_this();
  target.via_router = true;
  if (!keys.empty()) target.key = std::move(keys.front());
  start(state_, std::make_shared<Call>(Call{state_, std::move(target), std::move(command.value()), std::move(done)}));
}

void RedisScript::call(RedisRouter& router, std::string_view key, CommandWriter command, RedisCallback done) const {
  auto bytes = std::move(command).take();
  if (!bytes.ok()) return done(bytes.error());
  Target target;
  target.router = router.weak_from_this();
  target.via_router = true;
  target.key = std::string(key);
  start(state_, std::make_shared<Call>(Call{state_, std::move(target), std::move(bytes.value()), std::move(done)}));
}

}  // namespace fairdraw::redis

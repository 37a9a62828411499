// EVALSHA with SCRIPT LOAD on demand and one retry after NOSCRIPT.
#include "fairdraw/redis/script.hpp"

#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

namespace fairdraw::redis {

// Shared with in-flight calls, which may outlive the RedisScript.
struct RedisScript::State {
  explicit State(std::string src) : source(std::move(src)) {}

  const std::string source;
  mutable std::mutex mutex;
  std::string sha;  // guarded by mutex; empty until SCRIPT LOAD answered

  std::string get_sha() const {
    const std::lock_guard lock(mutex);
    return sha;
  }
  void set_sha(std::string value) {
    const std::lock_guard lock(mutex);
    sha = std::move(value);
  }
};

namespace {

using State = RedisScript::State;

constexpr std::size_t kShaLength = 40;
constexpr std::string_view kShaHeader = "$40\r\n";

// Sends one formatted command where the call goes (a connection, or a router by the first
// key); it holds its target weakly: a call must not keep a connection its owner has
// dropped, and a retry on a dropped one fails with unavailable.
using Sender = std::function<void(std::string, RedisCallback)>;

// The EVALSHA is formatted once, with room for the SHA (kShaLength bytes after the first
// "$40\r\n", which is the SHA's own header: EVALSHA's comes first); the SHA is written in
// before each send, so a reload after NOSCRIPT resends the same bytes.
struct Call {
  std::shared_ptr<State> state;
  Sender send;
  std::string command;
  RedisCallback done;
};

void load_then_eval(std::shared_ptr<Call> call);

void eval(std::shared_ptr<Call> call, const std::string& sha, bool may_reload) {
  const std::size_t at = call->command.find(kShaHeader);
  if (sha.size() != kShaLength || at == std::string::npos || at + kShaHeader.size() + kShaLength > call->command.size()) {
    return call->done(make_error(ErrorKind::internal, "redis: unexpected script SHA '" + sha + "'"));
  }
  call->command.replace(at + kShaHeader.size(), kShaLength, sha);
  std::string bytes = call->command;  // kept for a resend after NOSCRIPT
  call->send(std::move(bytes), [call, may_reload](Result<RedisReply> reply) {
    if (may_reload && reply.ok() && reply->error_code() == "NOSCRIPT") return load_then_eval(std::move(call));
    call->done(std::move(reply));
  });
}

void load_then_eval(std::shared_ptr<Call> call) {
  auto load = format_command({"SCRIPT", "LOAD", call->state->source});
  if (!load.ok()) return call->done(load.error());
  call->send(std::move(load.value()), [call](Result<RedisReply> reply) {
    if (!reply.ok() || reply->is_error()) return call->done(std::move(reply));
    if (!reply->is_string()) {
      return call->done(make_error(ErrorKind::internal, "redis: SCRIPT LOAD answered with a " +
                                                            std::string(to_string(reply->type)) + " reply"));
    }
    call->state->set_sha(reply->str);
    // Loaded just now on this connection: a NOSCRIPT now would be a real failure, not a race.
    eval(call, reply->str, false);
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
  std::string sha = state_->get_sha();
  if (sha.empty()) return std::nullopt;
  return sha;
}

namespace {

void start(const std::shared_ptr<State>& state, std::shared_ptr<Call> call) {
  const std::string sha = state->get_sha();
  if (sha.empty()) return load_then_eval(std::move(call));
  eval(std::move(call), sha, true);
}

Sender to_router(RedisRouter& router, std::optional<std::string> key) {
  return [weak = router.weak_from_this(), key = std::move(key)](std::string formatted, RedisCallback cb) {
    auto target = weak.lock();
    if (!target) return cb(make_error(ErrorKind::unavailable, "redis: router closed"));
    if (key) return target->command_formatted(*key, std::move(formatted), std::move(cb));
    target->command_formatted_any(std::move(formatted), std::move(cb));
  };
}

}  // namespace

CommandWriter RedisScript::begin(std::size_t keys, std::size_t args, std::size_t reserve) const {
  return begin_eval(keys, args, reserve);
}

void RedisScript::call(RedisConnection& connection, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisCallback done) const {
  auto command = format_eval(keys, args);
  if (!command.ok()) return done(command.error());
  Sender send = [weak = connection.weak_from_this()](std::string formatted, RedisCallback cb) {
    auto target = weak.lock();
    if (!target) return cb(make_error(ErrorKind::unavailable, "redis: connection closed"));
    target->command_formatted(std::move(formatted), std::move(cb));
  };
  start(state_, std::make_shared<Call>(Call{state_, std::move(send), std::move(command.value()), std::move(done)}));
}

void RedisScript::call(RedisRouter& router, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisCallback done) const {
  auto command = format_eval(keys, args);
  if (!command.ok()) return done(command.error());
  std::optional<std::string> key;
  if (!keys.empty()) key = std::move(keys.front());
  start(state_, std::make_shared<Call>(
                    Call{state_, to_router(router, std::move(key)), std::move(command.value()), std::move(done)}));
}

void RedisScript::call(RedisRouter& router, std::string_view key, CommandWriter command, RedisCallback done) const {
  auto bytes = std::move(command).take();
  if (!bytes.ok()) return done(bytes.error());
  start(state_, std::make_shared<Call>(
                    Call{state_, to_router(router, std::string(key)), std::move(bytes.value()), std::move(done)}));
}

}  // namespace fairdraw::redis

// EVALSHA with SCRIPT LOAD on demand and one retry after NOSCRIPT.
#include "fairdraw/redis/script.hpp"

#include <functional>
#include <mutex>
#include <optional>
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

// Sends one command where the call goes (a connection, or a router by the first key); it
// holds its target weakly: a call must not keep a connection its owner has dropped, and a
// retry on a dropped one fails with unavailable.
using Sender = std::function<void(std::vector<std::string>, RedisCallback)>;

struct Call {
  std::shared_ptr<State> state;
  Sender send;
  std::vector<std::string> keys;
  std::vector<std::string> args;
  RedisCallback done;
};

void load_then_eval(std::shared_ptr<Call> call);

void eval(std::shared_ptr<Call> call, std::string sha, bool may_reload) {
  std::vector<std::string> argv;
  argv.reserve(3 + call->keys.size() + call->args.size());
  argv.emplace_back("EVALSHA");
  argv.push_back(std::move(sha));
  argv.push_back(std::to_string(call->keys.size()));
  argv.insert(argv.end(), call->keys.begin(), call->keys.end());
  argv.insert(argv.end(), call->args.begin(), call->args.end());
  call->send(std::move(argv), [call, may_reload](Result<RedisReply> reply) {
    if (may_reload && reply.ok() && reply->error_code() == "NOSCRIPT") return load_then_eval(call);
    call->done(std::move(reply));
  });
}

void load_then_eval(std::shared_ptr<Call> call) {
  call->send({"SCRIPT", "LOAD", call->state->source}, [call](Result<RedisReply> reply) {
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
  std::string sha = state->get_sha();
  if (sha.empty()) return load_then_eval(std::move(call));
  eval(std::move(call), std::move(sha), true);
}

}  // namespace

void RedisScript::call(RedisConnection& connection, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisCallback done) const {
  Sender send = [weak = connection.weak_from_this()](std::vector<std::string> argv, RedisCallback cb) {
    auto target = weak.lock();
    if (!target) return cb(make_error(ErrorKind::unavailable, "redis: connection closed"));
    target->command(std::move(argv), std::move(cb));
  };
  start(state_, std::make_shared<Call>(
                    Call{state_, std::move(send), std::move(keys), std::move(args), std::move(done)}));
}

void RedisScript::call(RedisRouter& router, std::vector<std::string> keys, std::vector<std::string> args,
                       RedisCallback done) const {
  std::optional<std::string> key;
  if (!keys.empty()) key = keys.front();
  Sender send = [weak = router.weak_from_this(), key](std::vector<std::string> argv, RedisCallback cb) {
    auto target = weak.lock();
    if (!target) return cb(make_error(ErrorKind::unavailable, "redis: router closed"));
    if (key) return target->command(*key, std::move(argv), std::move(cb));
    target->command_any(std::move(argv), std::move(cb));
  };
  start(state_, std::make_shared<Call>(
                    Call{state_, std::move(send), std::move(keys), std::move(args), std::move(done)}));
}

}  // namespace fairdraw::redis

// The pipelined Redis connection: Asio owns the socket, timers and strand; hiredis only
// formats commands (redisFormatCommandArgv) and parses replies (redisReader).
#include "fairdraw/redis/connection.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <deque>
#include <mutex>
#include <utility>

#include "redis_asio.hpp"

namespace fairdraw::redis {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;
using Strand = net::strand<net::io_context::executor_type>;

constexpr std::size_t kReadChunk = 16384;
constexpr std::size_t kKeptReadBuffer = 256 * 1024;
constexpr std::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";

struct ReaderDeleter {
  void operator()(redisReader* reader) const { redisReaderFree(reader); }
};

// Replies are built by hiredis's parser straight into RedisReply values (custom reply
// object functions) instead of hiredis's own redisReply tree, which cost an allocation per
// element and per string and then a deep copy: a draw's reply has a dozen elements, a
// stream read thousands. A root is allocated by `new`; every child lives in its parent's
// `elements`, sized once by create_array and never resized, so the pointers handed back to
// hiredis stay valid until the root is taken (drain_replies) or freed (free_reply).
RedisReply* slot_for(const redisReadTask* task) {
  if (task->parent == nullptr) return new RedisReply();
  auto* parent = static_cast<RedisReply*>(task->parent->obj);
  return &parent->elements[static_cast<std::size_t>(task->idx)];
}

void* create_string(const redisReadTask* task, char* str, std::size_t len) {
  RedisReply* r = slot_for(task);
  switch (task->type) {
    case REDIS_REPLY_STATUS: r->type = RedisReply::Type::status; break;
    case REDIS_REPLY_ERROR: r->type = RedisReply::Type::error; break;
    default: r->type = RedisReply::Type::string; break;
  }
  r->str.assign(str, len);
  return r;
}

void* create_array(const redisReadTask* task, int elements) {
  RedisReply* r = slot_for(task);
  r->type = RedisReply::Type::array;
  r->elements.resize(static_cast<std::size_t>(std::max(elements, 0)));
  return r;
}

void* create_integer(const redisReadTask* task, long long value) {
  RedisReply* r = slot_for(task);
  r->type = RedisReply::Type::integer;
  r->integer = value;
  return r;
}

void* create_nil(const redisReadTask* task) { return slot_for(task); }

// Called by hiredis on roots only (an unfinished reply when the reader is freed or fails).
void free_reply(void* reply) { delete static_cast<RedisReply*>(reply); }

redisReplyObjectFunctions kReplyFunctions{create_string, create_array, create_integer, create_nil, free_reply};

redisReader* make_reader() {
  redisReader* reader = redisReaderCreateWithFunctions(&kReplyFunctions);
  // Keep the parser's buffer between reads unless a large reply (a stream read) grew it:
  // hiredis's default (16 KiB) freed and reallocated it on most reads of a busy pipeline.
  if (reader != nullptr) reader->maxbuf = kKeptReadBuffer;
  return reader;
}

}  // namespace

Result<std::string> format_command(const std::vector<std::string>& argv) {
  if (argv.empty()) return make_error(ErrorKind::internal, "redis: empty command");
  std::vector<const char*> args;
  std::vector<std::size_t> lengths;
  args.reserve(argv.size());
  lengths.reserve(argv.size());
  for (const auto& arg : argv) {
    args.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  char* raw = nullptr;
  const int length = redisFormatCommandArgv(&raw, static_cast<int>(argv.size()), args.data(), lengths.data());
  if (length < 0 || raw == nullptr) return make_error(ErrorKind::internal, "redis: cannot format command");
  std::string out(raw, static_cast<std::size_t>(length));
  redisFreeCommand(raw);
  return out;
}

CommandWriter::CommandWriter(std::size_t argc, std::size_t reserve) : left_(argc) {
  out_.reserve(reserve);
  out_ += '*';
  out_ += std::to_string(argc);
  out_ += "\r\n";
}

void CommandWriter::bulk_header(std::size_t length) {
  std::array<char, 24> digits{};
  const auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), length);
  out_ += '$';
  out_.append(digits.data(), end);
  out_ += "\r\n";
  --left_;  // wraps on too many arguments: take() refuses then
}

CommandWriter& CommandWriter::arg(std::string_view value) {
  bulk_header(value.size());
  out_ += value;
  out_ += "\r\n";
  return *this;
}

CommandWriter& CommandWriter::arg(std::string_view head, std::string_view tail) {
  bulk_header(head.size() + tail.size());
  out_ += head;
  out_ += tail;
  out_ += "\r\n";
  return *this;
}

CommandWriter& CommandWriter::arg(std::int64_t value) {
  std::array<char, 24> digits{};
  const auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), value);
  return arg(std::string_view(digits.data(), static_cast<std::size_t>(end - digits.data())));
}

Result<std::string> CommandWriter::take() && {
  if (left_ != 0) return make_error(ErrorKind::internal, "redis: command built with a wrong argument count");
  return std::move(out_);
}

namespace {

// One TCP connection attempt and everything tied to it. Handlers capture the Link as
// well as the Impl: a dropped link stays alive (its buffers included, which an aborted
// async_write may still reference) until its last handler has run, and a handler whose
// link is no longer the current one returns without touching anything. The fd is owned
// by the Asio socket only; hiredis never sees it.
struct Link {
  explicit Link(const Strand& strand) : socket(strand), resolver(strand) {}

  tcp::socket socket;
  tcp::resolver resolver;
  // A fresh parser per connection, so a half-read reply cannot leak into the next one.
  std::unique_ptr<redisReader, ReaderDeleter> reader{make_reader()};
  std::array<char, kReadChunk> read_buffer{};
  std::string writing;  // the bytes of the write in progress
  bool write_in_progress = false;
};

}  // namespace

// All members are touched on strand_ only. The Impl is kept alive by shared_from_this
// captured in each pending handler; RedisConnection's destructor only posts close().
class RedisConnection::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(net::io_context& io, RedisOptions options)
      : strand_(net::make_strand(io)),
        options_(std::move(options)),
        connect_timer_(strand_),
        backoff_timer_(strand_),
        command_timer_(strand_),
        backoff_(options_.reconnect_backoff_min),
        where_(options_.host + ":" + std::to_string(options_.port)) {}

  const RedisOptions& options() const { return options_; }

  void start() {
    net::post(strand_, [self = shared_from_this()] { self->start_connect(); });
  }

  // Commands from any thread land in the inbox; only the first one into an empty inbox posts
  // a drain to the strand. Under load a whole batch of commands then costs one handler, one
  // wake-up of the connection's thread and one socket write, instead of one each.
  void post_command(std::string formatted, SharedCommand shared, RedisCallback done, bool asking = false) {
    bool post = false;
    {
      const std::lock_guard lock(inbox_mutex_);
      inbox_.push_back(Incoming{std::move(formatted), std::move(shared), std::move(done), asking});
      post = !drain_posted_;
      drain_posted_ = true;
    }
    if (post) net::post(strand_, [self = shared_from_this()] { self->drain_inbox(); });
  }

  void post_failure(Error error, RedisCallback done) {
    net::post(strand_, [error = std::move(error), done = std::move(done)]() mutable { done(std::move(error)); });
  }

  void close() {
    net::post(strand_, [self = shared_from_this()] { self->on_close(); });
  }

 private:
  enum class State { connecting, handshaking, connected, backoff, closed };
  enum class Handshake { auth, select };

  struct Pending {
    RedisCallback done;
    Clock::time_point deadline;
  };

  Error unavailable(const std::string& what) const {
    return make_error(ErrorKind::unavailable, "redis " + where_ + ": " + what);
  }

  void start_connect() {
    if (state_ == State::closed) return;
    state_ = State::connecting;
    auto link = std::make_shared<Link>(strand_);
    link_ = link;

    connect_timer_.expires_after(options_.connect_timeout);
    connect_timer_.async_wait([self = shared_from_this(), link](error_code ec) {
      if (ec || link != self->link_ || self->state_ == State::connected) return;
      self->fail_link(self->unavailable("connect timed out after " +
                                        std::to_string(self->options_.connect_timeout.count()) + " ms"));
    });

    link->resolver.async_resolve(
        options_.host, std::to_string(options_.port),
        [self = shared_from_this(), link](error_code ec, const tcp::resolver::results_type& endpoints) {
          if (link != self->link_) return;
          if (ec) return self->fail_link(self->unavailable("cannot resolve host: " + ec.message()));
          net::async_connect(link->socket, endpoints, [self, link](error_code connect_ec, const tcp::endpoint&) {
            if (link != self->link_) return;
            if (connect_ec) return self->fail_link(self->unavailable("cannot connect: " + connect_ec.message()));
            self->on_connected(link);
          });
        });
  }

  // AUTH and SELECT go out alone, before any queued command: a command pipelined behind a
  // failing AUTH would get NOAUTH as its reply instead of a clear connection error.
  void on_connected(const std::shared_ptr<Link>& link) {
    error_code ignored;
    link->socket.set_option(tcp::no_delay(true), ignored);
    link->socket.set_option(net::socket_base::keep_alive(true), ignored);
    start_read(link);

    std::string handshake;
    if (!options_.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!options_.user.empty()) auth.push_back(options_.user);
      auth.push_back(options_.password);
      handshake += format_command(auth).value();
      handshake_.push_back(Handshake::auth);
    }
    if (options_.db != 0) {
      handshake += format_command({"SELECT", std::to_string(options_.db)}).value();
      handshake_.push_back(Handshake::select);
    }
    if (handshake_.empty()) return on_ready();
    state_ = State::handshaking;
    link->writing = std::move(handshake);
    start_write(link);
  }

  void on_ready() {
    state_ = State::connected;
    backoff_ = options_.reconnect_backoff_min;
    connect_timer_.cancel();
    flush();
  }

  // The command's bytes are `shared` when set, else `formatted`.
  struct Incoming {
    std::string formatted;
    SharedCommand shared;
    RedisCallback done;
    bool asking = false;
  };

  void drain_inbox() {
    {
      const std::lock_guard lock(inbox_mutex_);
      draining_.swap(inbox_);
      drain_posted_ = false;
    }
    for (Incoming& in : draining_) accept(in.shared ? *in.shared : in.formatted, std::move(in.done), in.asking);
    draining_.clear();  // keeps its capacity for the next batch
    flush();
  }

  // Queues one command (or fails it); the caller flushes.
  void accept(std::string_view formatted, RedisCallback done, bool asking) {
    switch (state_) {
      case State::closed:
        return done(unavailable("connection closed"));
      case State::backoff:
        return done(unavailable("connection down (" + last_error_ + "), reconnecting"));
      case State::connecting:
      case State::handshaking:
      case State::connected:
        break;
    }
    if (pending_.size() >= options_.max_pipeline) {
      return done(unavailable("pipeline full (" + std::to_string(options_.max_pipeline) + " commands)"));
    }
    const auto deadline = Clock::now() + options_.command_timeout;
    if (asking) {
      // Its +OK (or error) is swallowed: the command's own reply says what happened.
      pending_.push_back(Pending{RedisCallback([](Result<RedisReply>) {}), deadline});
      unsent_ += kAsking;
    }
    pending_.push_back(Pending{std::move(done), deadline});
    unsent_ += formatted;
    arm_command_timer();
  }

  // Batching: everything queued while a write was in progress goes out in the next one.
  void flush() {
    if (state_ != State::connected || !link_ || link_->write_in_progress || unsent_.empty()) return;
    link_->writing.swap(unsent_);
    unsent_.clear();
    start_write(link_);
  }

  void start_write(const std::shared_ptr<Link>& link) {
    link->write_in_progress = true;
    net::async_write(link->socket, net::buffer(link->writing), [self = shared_from_this(), link](error_code ec, std::size_t) {
      if (link != self->link_) return;
      link->write_in_progress = false;
      if (ec) return self->fail_link(self->unavailable("write failed: " + ec.message()));
      link->writing.clear();
      self->flush();
    });
  }

  void start_read(const std::shared_ptr<Link>& link) {
    link->socket.async_read_some(net::buffer(link->read_buffer), [self = shared_from_this(), link](error_code ec, std::size_t n) {
      if (link != self->link_) return;
      if (ec == net::error::eof) return self->fail_link(self->unavailable("connection closed by the server"));
      if (ec) return self->fail_link(self->unavailable("read failed: " + ec.message()));
      if (redisReaderFeed(link->reader.get(), link->read_buffer.data(), n) != REDIS_OK) {
        return self->fail_link(make_error(ErrorKind::internal, "redis " + self->where_ + ": cannot buffer reply"));
      }
      self->drain_replies(link);
      if (link == self->link_) self->start_read(link);
    });
  }

  void drain_replies(const std::shared_ptr<Link>& link) {
    while (link == link_) {
      void* raw = nullptr;
      if (redisReaderGetReply(link->reader.get(), &raw) != REDIS_OK) {
        return fail_link(make_error(ErrorKind::internal,
                                    "redis " + where_ + ": protocol error: " + link->reader->errstr));
      }
      if (raw == nullptr) return;
      const std::unique_ptr<RedisReply> owned(static_cast<RedisReply*>(raw));
      on_reply(std::move(*owned));
    }
  }

  void on_reply(RedisReply reply) {
    if (state_ == State::handshaking) {
      const Handshake step = handshake_.front();
      handshake_.pop_front();
      if (reply.is_error()) {
        return fail_link(unavailable(std::string(step == Handshake::auth ? "AUTH" : "SELECT") +
                                     " rejected: " + reply.str));
      }
      if (handshake_.empty()) on_ready();
      return;
    }
    if (pending_.empty()) {
      return fail_link(make_error(ErrorKind::internal, "redis " + where_ + ": reply without a pending command"));
    }
    // Popped before the call: callbacks may not re-enter (command() posts), but the
    // queue must be consistent whatever they do.
    RedisCallback done = std::move(pending_.front().done);
    pending_.pop_front();
    done(std::move(reply));
  }

  // One timer tracks the oldest unanswered command. Deadlines are set on acceptance in
  // FIFO order, so the front always has the earliest; the timer is re-armed lazily when
  // it fires rather than per reply, to keep the hot path free of timer cancellations.
  void arm_command_timer() {
    if (command_timer_armed_ || pending_.empty()) return;
    command_timer_armed_ = true;
    command_timer_.expires_at(pending_.front().deadline);
    command_timer_.async_wait([self = shared_from_this()](error_code ec) { self->on_command_timer(ec); });
  }

  void on_command_timer(error_code ec) {
    command_timer_armed_ = false;
    if (ec || state_ == State::closed || pending_.empty()) return;
    if (pending_.front().deadline <= Clock::now()) {
      const std::string what = "command timed out after " + std::to_string(options_.command_timeout.count()) + " ms";
      if (state_ == State::connected) {
        // A late reply could no longer be matched to its command: drop the connection.
        fail_link(unavailable(what));
      } else {
        // Still connecting: nothing was sent, so the queue can go and the attempt go on.
        fail_all(unavailable(what + " waiting for the connection"));
      }
    }
    arm_command_timer();
  }

  void drop_link() {
    if (!link_) return;
    error_code ignored;
    link_->resolver.cancel();
    link_->socket.close(ignored);
    link_.reset();
    handshake_.clear();
    connect_timer_.cancel();
  }

  void fail_link(Error error) {
    drop_link();
    last_error_ = error.detail;
    fail_all(error);
    if (state_ == State::closed) return;
    state_ = State::backoff;
    backoff_timer_.expires_after(backoff_);
    backoff_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec && self->state_ == State::backoff) self->start_connect();
    });
    backoff_ = std::min(backoff_ * 2, options_.reconnect_backoff_max);
  }

  void fail_all(const Error& error) {
    std::deque<Pending> failed;
    failed.swap(pending_);
    unsent_.clear();
    for (auto& pending : failed) pending.done(error);
  }

  void on_close() {
    if (state_ == State::closed) return;
    state_ = State::closed;
    drop_link();
    backoff_timer_.cancel();
    command_timer_.cancel();
    fail_all(unavailable("connection closed"));
  }

  Strand strand_;
  std::mutex inbox_mutex_;
  std::vector<Incoming> inbox_;  // guarded by inbox_mutex_
  bool drain_posted_ = false;    // guarded by inbox_mutex_: a drain_inbox is on its way
  std::vector<Incoming> draining_;  // strand only
  const RedisOptions options_;
  State state_ = State::connecting;
  std::shared_ptr<Link> link_;    // the current connection attempt or connection; null in backoff
  std::deque<Pending> pending_;   // accepted and unanswered, in issue order (= reply order)
  std::string unsent_;            // formatted commands at the tail of pending_ not yet written
  std::deque<Handshake> handshake_;
  net::steady_timer connect_timer_;
  net::steady_timer backoff_timer_;
  net::steady_timer command_timer_;
  bool command_timer_armed_ = false;
  std::chrono::milliseconds backoff_;
  std::string last_error_ = "not connected yet";
  const std::string where_;  // host:port for messages; never the password
};

RedisOptions make_redis_options(const RedisUrl& url) {
  RedisOptions options;
  options.host = url.host;
  options.port = url.port;
  options.user = url.user;
  options.password = url.password;
  options.db = url.db;
  options.seeds = url.nodes;
  return options;
}

std::shared_ptr<RedisConnection> RedisConnection::create(boost::asio::io_context& io, RedisOptions options) {
  auto impl = std::make_shared<Impl>(io, std::move(options));
  impl->start();
  return std::shared_ptr<RedisConnection>(new RedisConnection(std::move(impl)));
}

RedisConnection::RedisConnection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

RedisConnection::~RedisConnection() { impl_->close(); }

void RedisConnection::command(std::vector<std::string> argv, RedisCallback done) {
  // Formatting happens on the caller's thread so the strand only appends bytes.
  auto formatted = format_command(argv);
  if (!formatted) return impl_->post_failure(formatted.error(), std::move(done));
  impl_->post_command(std::move(formatted).value(), nullptr, std::move(done));
}

void RedisConnection::command_formatted(std::string formatted, RedisCallback done, bool asking) {
  impl_->post_command(std::move(formatted), nullptr, std::move(done), asking);
}

void RedisConnection::command_shared(SharedCommand formatted, RedisCallback done, bool asking) {
  impl_->post_command(std::string(), std::move(formatted), std::move(done), asking);
}

void RedisConnection::close() { impl_->close(); }

const RedisOptions& RedisConnection::options() const { return impl_->options(); }

}  // namespace fairdraw::redis

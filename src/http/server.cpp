// The HTTP/1.1 server on Beast/Asio: listener, per-connection sessions, timers and
// graceful shutdown. The only translation unit of the library that sees Beast.
#include "fairdraw/http/server.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

// GCC 12 reports a "potential null pointer dereference" inside Asio's scheduler
// after inlining, despite Boost being a system header; silenced for Boost only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/write.hpp>
#pragma GCC diagnostic pop

#include "fairdraw/block_pool.hpp"
#include "fairdraw/thread_name.hpp"

namespace fairdraw::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using steady_clock = std::chrono::steady_clock;

// How long a closing connection keeps draining what the client still sends, so
// that closing with unread bytes does not reset the connection (a RST can make
// the client drop the error response we just wrote).
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr std::chrono::milliseconds kShutdownLingerTime{200};
constexpr std::size_t kLingerBytes = 1 << 20;
constexpr std::chrono::milliseconds kAcceptBackoff{50};
constexpr std::size_t kReadChunk = 16384;
constexpr std::size_t kKeptBodyCapacity = 4096;
constexpr std::size_t kKeptBufferCapacity = 16384;
constexpr std::size_t kKeptTargetCapacity = 1024;
constexpr std::size_t kKeptHeaderFields = 32;
constexpr std::size_t kPooledExchanges = 32;  // per thread; twice as many shared
constexpr std::size_t kPooledSlots = 128;      // per thread; twice as many shared
constexpr unsigned kMaxSyncNesting = 8;

// splitmix64: request ids only need to be unique-ish and cheap, not secret.
// Writes into `id`, reusing its capacity (16 chars do not fit the small-string buffer).
void generate_request_id(std::string& id) {
  thread_local std::uint64_t state = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  static constexpr char kHex[] = "0123456789abcdef";
  id.resize(16);
  for (int i = 15; i >= 0; --i) {
    id[static_cast<std::size_t>(i)] = kHex[z & 0xF];
    z >>= 4;
  }
}

std::string generate_request_id() {
  std::string id;
  generate_request_id(id);
  return id;
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  static constexpr std::string_view kSeparators = "()<>@,;:\\\"/[]?={} \t";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return c > 0x20 && c < 0x7F && kSeparators.find(c) == std::string_view::npos;
  });
}

bool safe_header_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::string json_escape(std::string_view in) {
  std::string out;
  out.reserve(in.size() + 8);
  for (const char c : in) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xF];
          out += kHex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
  return out;
}

// The transport's own refusals, in the same shape as the application's problems.
Response problem(int status, std::string_view type, std::string_view title, std::string_view detail) {
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  if (status == 503) r.set_header("Retry-After", "1");
  r.body = "{\"type\":\"" + json_escape(type) + "\",\"title\":\"" + json_escape(title) +
           "\",\"status\":" + std::to_string(status) + ",\"detail\":\"" + json_escape(detail) + "\"}";
  return r;
}

std::string refusal_bytes() {
  const Response r = problem(503, "unavailable", "Service unavailable", "too many connections");
  std::string out = "HTTP/1.1 503 Service Unavailable\r\n";
  out += "Content-Type: " + std::string(r.content_type) + "\r\n";
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\r\n";
  out += "X-Request-Id: " + generate_request_id() + "\r\n";
  out += "Server: fairdraw\r\nConnection: close\r\nContent-Length: " + std::to_string(r.body.size()) +
         "\r\n\r\n" + r.body;
  return out;
}

struct Counters {
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> accepted_connections{0};
  std::atomic<std::uint64_t> refused_connections{0};
  std::atomic<std::uint64_t> refused_per_address{0};
  std::atomic<std::uint64_t> read_timeouts{0};
  std::atomic<std::uint64_t> idle_timeouts{0};
  std::atomic<std::uint64_t> write_timeouts{0};
  std::atomic<std::uint64_t> in_flight_requests{0};
  std::atomic<std::uint64_t> bad_requests{0};
  std::atomic<std::uint64_t> uri_too_long{0};
  std::atomic<std::uint64_t> headers_too_large{0};
  std::atomic<std::uint64_t> payload_too_large{0};
};

void bump(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

class Session;
class RepeatingTimer;

// A session's socket and timer name their strand's type: behind the generic
// any_io_executor, every asynchronous operation copied the executor into a
// heap-allocated box (two or three allocations per request).
using Strand = net::strand<net::io_context::executor_type>;
using StrandSocket = net::basic_stream_socket<tcp, Strand>;
using StrandTimer = net::basic_waitable_timer<steady_clock, net::wait_traits<steady_clock>, Strand>;

// The strand the acceptor gave the socket (a new one on `fallback` if it gave something else).
template <class PickIo>
Strand strand_of(tcp::socket& socket, PickIo&& fallback) {
  const net::any_io_executor executor = socket.get_executor();
  if (const auto* strand = executor.target<Strand>()) return *strand;
  return net::make_strand(fallback());
}

// Moves an accepted socket's descriptor under the typed strand.
StrandSocket adopt(const Strand& strand, tcp::socket& socket) {
  error_code ec;
  const auto protocol = socket.local_endpoint(ec).protocol();
  if (ec) return StrandSocket(strand);  // already dead: the first read fails and closes
  const auto fd = socket.release(ec);
  if (ec) return StrandSocket(strand);
  return StrandSocket(strand, protocol, fd);
}

// The session whose Handler call is running on this thread, if any.
thread_local const Session* tls_handling_session = nullptr;

// Everything the server shares with its sessions and timers.
// An io_context run by one thread (the concurrency hint), whose first phase of
// destruction can be run on its own (see ~Core).
class IoContext : public net::io_context {
 public:
  IoContext() : net::io_context(1) {}
  using net::io_context::shutdown;
};

std::vector<std::unique_ptr<IoContext>> make_io_contexts(unsigned n) {
  std::vector<std::unique_ptr<IoContext>> ios;
  for (unsigned i = 0; i < std::max(1U, n); ++i) ios.push_back(std::make_unique<IoContext>());
  return ios;
}

struct Core {
  Core(ServerOptions o, Handler h);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  Status listen();
  void run(std::function<void()> on_stopping);
  void shutdown();
  void do_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void refuse(tcp::socket& socket);
  void session_gone(Session* s);
  // Per-address connection cap (max_connections_per_address > 0): claim on
  // accept, release when the session is destroyed.
  bool claim_address(const std::string& address);
  void release_address(const std::string& address);

  // Declared before `ios` so that they outlive it: handlers destroyed inside
  // ~io_context (and ~Core) destroy sessions, whose destructors still report here.
  ServerOptions options;
  Handler handler;
  unsigned threads = 1;
  Counters counters;
  std::mutex mu;
  // Live sessions, linked through the sessions themselves (no allocation per
  // connection); under mu. A session unlinks itself in its destructor.
  Session* sessions = nullptr;
  std::vector<std::shared_ptr<Session>> live_sessions();  // takes mu
  std::vector<std::weak_ptr<RepeatingTimer>> timers;              // under mu
  std::function<void()> on_stopping;                              // under mu
  std::atomic<bool> stopping{false};
  std::atomic<bool> destroying{false};
  std::atomic<std::uint16_t> bound_port{0};
  std::mutex per_address_mu;
  std::unordered_map<std::string, std::size_t> per_address;  // open connections by peer IP, under per_address_mu
  bool listening = false;

  // One io_context per io thread, each run by its thread alone: a connection
  // stays on the context the acceptor gave it (round robin). With one context
  // shared by all threads, Asio's scheduler handed ready sockets from the
  // thread in epoll_wait to the others through a mutex and a futex wake-up
  // each time (3.3 futex calls per draw at 15,000 draws/s, 0.3-0.5 with a
  // context per thread; docs/PERFORMANCE.md). ios[0] also runs the control
  // strand and the server-wide timers.
  std::vector<std::unique_ptr<IoContext>> ios;
  std::atomic<unsigned> next_io{0};
  net::io_context& pick_io() {
    return *ios[next_io.fetch_add(1, std::memory_order_relaxed) % ios.size()];
  }
  unsigned lane_of(const net::execution_context& context) const {
    for (std::size_t i = 0; i < ios.size(); ++i) {
      if (ios[i].get() == &context) return static_cast<unsigned>(i);
    }
    return 0;
  }
  void stop_all() {
    for (auto& c : ios) c->stop();
  }
  // Acceptor, signals and server-wide timers live on one strand, since
  // shutdown() may be called from any thread.
  net::strand<net::io_context::executor_type> control;
  tcp::acceptor acceptor;
  net::steady_timer accept_retry;
  net::steady_timer grace;
  std::optional<net::signal_set> signals;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work;  // under mu
};

// Memory for the operations that carry work from one thread to another: a
// response onto its connection's strand (the strand's queue entry and, when the
// strand was idle, its wake-up) and Server::post (the sink's writer waking an io
// thread). Asio's own cache keeps one block per thread, which a connection's
// reads and timers keep taking, and a thread outside the io_context has none, so
// each of those allocated. A response's strand operation is ~200 bytes.
struct CrossThreadOpsTag {};
using CrossThreadOps = BlockPool<CrossThreadOpsTag, 256, 1024>;

// Memory for a connection's wait for readability, one per request. Asio's
// per-thread cache is often held by the other operations of the moment
// (timers, strand hops): with the server saturated the waits cost 0.6 of the
// 20.2 allocations per draw (docs/PERFORMANCE.md).
struct ReadWaitOpsTag {};
using ReadWaitOps = BlockPool<ReadWaitOpsTag, 256, 1024>;

// A handler whose operations take their memory from Pool.
template <class Pool, class F>
struct PooledHandler {
  using allocator_type = BlockPoolAllocator<void, Pool>;
  allocator_type get_allocator() const noexcept { return {}; }
  template <class... Args>
  void operator()(Args&&... args) {
    f(std::forward<Args>(args)...);
  }
  F f;
};
template <class F>
PooledHandler<CrossThreadOps, std::decay_t<F>> cross_thread(F&& f) {
  return {std::forward<F>(f)};
}
template <class F>
PooledHandler<ReadWaitOps, std::decay_t<F>> pooled_read_wait(F&& f) {
  return {std::forward<F>(f)};
}

// Free lists for objects that often come back on another thread than the one
// that took them (a connection's Exchange is taken where its request is read and
// given back where its answer is written). Each thread keeps up to kLocal, with
// no lock on the common path; a thread whose list is empty takes from, and one
// whose list is full gives to, a list shared by all threads. With per-thread
// lists alone, one ran dry while the other freed what did not fit: under load
// about one Exchange in three was new, and grew its strings and vectors again.
template <class T, std::size_t kLocal, std::size_t kShared>
class FreeList {
 public:
  static std::unique_ptr<T> take() {
    auto& local = local_list();
    if (!local.empty()) {
      std::unique_ptr<T> p = std::move(local.back());
      local.pop_back();
      return p;
    }
    Shared& shared = shared_list();
    {
      std::lock_guard lock(shared.mutex);
      if (!shared.items.empty()) {
        std::unique_ptr<T> p = std::move(shared.items.back());
        shared.items.pop_back();
        return p;
      }
    }
    return std::make_unique<T>();
  }

  static void give(std::unique_ptr<T> p) {
    auto& local = local_list();
    if (local.size() < kLocal) {
      local.push_back(std::move(p));  // capacity reserved: cannot throw
      return;
    }
    Shared& shared = shared_list();
    std::lock_guard lock(shared.mutex);
    if (shared.items.size() < kShared) shared.items.push_back(std::move(p));
  }

 private:
  struct Shared {
    std::mutex mutex;
    std::vector<std::unique_ptr<T>> items;  // guarded by mutex
  };

  static std::vector<std::unique_ptr<T>>& local_list() {
    thread_local std::vector<std::unique_ptr<T>> list = [] {
      std::vector<std::unique_ptr<T>> v;
      v.reserve(kLocal);
      return v;
    }();
    return list;
  }
  static Shared& shared_list() {
    static Shared* shared = [] {  // never deleted, as CrossThreadOps
      auto* s = new Shared;       // NOLINT(cppcoreguidelines-owning-memory)
      s->items.reserve(kShared);
      return s;
    }();
    return *shared;
  }
};

// Beast's HTTP/1.1 parser (framing, limits, chunked decoding) writing into our
// own Request: the request line, the fields and the body go straight into the
// connection's reused strings. Beast's request_parser kept each field in an
// allocation of its own, then we copied them all. It also notes the few facts
// about the header that check_header() decides on.
class RequestParser final : public bhttp::basic_parser<true> {
 public:
  RequestParser(Request& request, std::string& request_id) : request_(request), request_id_(request_id) {}

  bool got_request_line() const { return got_request_line_; }
  unsigned version() const { return version_; }
  bool is_head() const { return head_; }
  std::size_t transfer_encodings() const { return transfer_encodings_; }
  bool transfer_encoding_is_chunked() const { return transfer_encoding_is_chunked_; }
  std::size_t content_lengths() const { return content_lengths_; }
  bool expects_continue() const { return expects_continue_; }

 private:
  void on_request_impl(bhttp::verb method, std::string_view method_str, std::string_view target, int version,
                       error_code&) override {
    got_request_line_ = true;
    version_ = static_cast<unsigned>(version);
    head_ = method == bhttp::verb::head;
    request_.method.assign(method_str);
    request_.target.assign(target);
    const std::size_t q = target.find('?');
    request_.path.assign(target.substr(0, q));
    request_.query.assign(q == std::string_view::npos ? std::string_view{} : target.substr(q + 1));
    request_.body.clear();
    fields_ = 0;
  }

  void on_response_impl(int, std::string_view, int, error_code&) override {}

  // `value` may view a temporary buffer (folded lines): copied here.
  void on_field_impl(bhttp::field name, std::string_view name_string, std::string_view value,
                     error_code&) override {
    auto& headers = request_.headers;
    if (fields_ == headers.size()) headers.emplace_back();
    auto& [stored_name, stored_value] = headers[fields_++];
    stored_name.assign(name_string);
    std::transform(stored_name.begin(), stored_name.end(), stored_name.begin(), ascii_lower);
    stored_value.assign(trim(value));
    // The first of each, as basic_fields' operator[] answered it.
    switch (name) {
      case bhttp::field::transfer_encoding:
        if (transfer_encodings_++ == 0) transfer_encoding_is_chunked_ = iequals(trim(value), "chunked");
        break;
      case bhttp::field::content_length: ++content_lengths_; break;
      case bhttp::field::expect:
        if (!seen_expect_) expects_continue_ = iequals(trim(value), "100-continue");
        seen_expect_ = true;
        break;
      default:
        if (!seen_request_id_ && iequals(name_string, "x-request-id")) {
          seen_request_id_ = true;
          if (valid_request_id(value)) request_id_.assign(value);
        }
    }
  }

  void on_header_impl(error_code&) override { request_.headers.resize(fields_); }

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    if (length) request_.body.reserve(static_cast<std::size_t>(*length));  // within body_limit
  }

  std::size_t on_body_impl(std::string_view body, error_code&) override {
    request_.body.append(body);
    return body.size();
  }

  void on_chunk_header_impl(std::uint64_t, std::string_view, error_code&) override {}

  std::size_t on_chunk_body_impl(std::uint64_t, std::string_view body, error_code&) override {
    request_.body.append(body);
    return body.size();
  }

  void on_finish_impl(error_code&) override {}

  Request& request_;
  std::string& request_id_;
  std::size_t fields_ = 0;
  std::size_t transfer_encodings_ = 0;
  std::size_t content_lengths_ = 0;
  unsigned version_ = 11;
  bool got_request_line_ = false;
  bool head_ = false;
  bool transfer_encoding_is_chunked_ = false;
  bool seen_expect_ = false;
  bool expects_continue_ = false;
  bool seen_request_id_ = false;
};

// The socket-independent half of a connection's request cycle: feeds buffered
// bytes to a RequestParser and decides what the connection does next, refusals
// (400/413/414/431) included. Session drives it from its socket;
// fuzzing::parse_stream drives it from a byte string, so the fuzzer runs the
// very code that serves requests, not a copy of it.
class RequestReader {
 public:
  enum class Step {
    need_more,      // everything buffered is used: read more, then call read() again
    ready,          // a whole request is in the Request given to begin(); see parser()
    refused,        // answer refusal() and close: nothing more is read
    send_continue,  // Expect: 100-continue with an acceptable header: send 100, then call read() again
  };
  struct Refusal {
    int status = 0;
    std::string_view type;  // problem type and title: static strings
    std::string_view title;
    std::string detail;
  };

  // Starts a request; the parser writes it into `request` and `request_id`
  // (the client's X-Request-Id, when valid), which must outlive it.
  void begin(Request& request, std::string& request_id, const ServerOptions& options) {
    max_header_bytes_ = options.max_header_bytes;
    max_body_bytes_ = options.max_body_bytes;
    header_checked_ = false;
    parser_.emplace(request, request_id);
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(max_header_bytes_, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(static_cast<std::uint64_t>(max_body_bytes_));
  }
  bool started() const { return parser_.has_value(); }
  void reset() { parser_.reset(); }

  // The request line and header facts; valid once read() said ready.
  const RequestParser& parser() const { return *parser_; }
  const Refusal& refusal() const { return refusal_; }

  // Parses what `buffer` holds, consuming it, until the request is whole, more
  // bytes are needed, the request is refused or a 100 Continue is due.
  // Pipelined bytes after a whole request stay in the buffer for the next one.
  Step read(beast::flat_buffer& buffer) {
    RequestParser& parser = *parser_;
    for (;;) {
      if (parser.is_done()) return Step::ready;
      if (buffer.size() == 0) return Step::need_more;
      error_code ec;
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == bhttp::error::need_more) return Step::need_more;
      if (ec) return on_parse_error(ec, buffer);
      if (parser.is_header_done() && !header_checked_) {
        header_checked_ = true;
        if (!check_header()) return Step::refused;
        if (wants_continue()) return Step::send_continue;
      }
      if (used == 0 && !parser.is_done()) return Step::need_more;
    }
  }

 private:
  Step refuse(int status, std::string_view type, std::string_view title, std::string detail) {
    refusal_.status = status;
    refusal_.type = type;
    refusal_.title = title;
    refusal_.detail = std::move(detail);
    return Step::refused;
  }

  Step on_parse_error(error_code ec, const beast::flat_buffer& rest) {
    if (ec == bhttp::error::header_limit) {
      // The limit covers the request line too; if no line of it has ended
      // within the limit, it was the request line (the target) that was too long.
      const auto data = rest.data();
      const std::string_view head(static_cast<const char*>(data.data()), std::min(data.size(), max_header_bytes_));
      if (!parser_->got_request_line() && head.find('\n') == std::string_view::npos) {
        return refuse(414, "uri_too_long", "URI too long", "request line too long");
      }
      return refuse(431, "headers_too_large", "Request headers too large", "request headers too large");
    }
    if (ec == bhttp::error::body_limit) {
      return refuse(413, "payload_too_large", "Payload too large",
                    "body over " + std::to_string(max_body_bytes_) + " bytes");
    }
    return refuse(400, "invalid_request", "Invalid request", "malformed HTTP request: " + ec.message());
  }

  // Refusals that depend on the whole header, decided before any body is read.
  bool check_header() {
    const RequestParser& p = *parser_;
    // Beast refuses Content-Length with chunked, but not with other codings;
    // either way a request framed two ways is a smuggling shape.
    if (p.transfer_encodings() > 0) {
      // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing
      // (a 1.0 proxy in front would frame it differently): refuse and close.
      if (p.version() < 11 || p.content_lengths() > 0 || p.transfer_encodings() > 1 ||
          !p.transfer_encoding_is_chunked()) {
        refuse(400, "invalid_request", "Invalid request", "unsupported Transfer-Encoding framing");
        return false;
      }
    }
    if (const auto length = p.content_length(); length && *length > max_body_bytes_) {
      refuse(413, "payload_too_large", "Payload too large", "body over " + std::to_string(max_body_bytes_) + " bytes");
      return false;
    }
    return true;
  }

  bool wants_continue() const {
    const RequestParser& p = *parser_;
    return p.version() >= 11 && !p.is_done() && p.expects_continue();
  }

  std::optional<RequestParser> parser_;
  Refusal refusal_;
  std::size_t max_header_bytes_ = 0;
  std::size_t max_body_bytes_ = 0;
  bool header_checked_ = false;
};

// What a connection needs only while a request is in progress, from its first
// byte until its response is written: the read buffer, the parser, the request
// and the response bytes. A connection waiting for its next request returns it
// to a per-thread pool, so an idle connection holds none of it and a busy one
// reuses the strings' capacity from request to request.
struct Exchange {
  beast::flat_buffer buffer;  // pipelined bytes wait here (the Exchange stays while it holds any)
  RequestReader reader;
  Request request;
  std::string request_id;                 // X-Request-Id of the answer (the Handler may move request's)
  std::optional<Response> sync_response;  // answered during dispatch(); see post_response
  std::string out_head;                   // status line and headers of the response being written
  std::string out_body;                   // its body

  // Keeps capacities that a typical request reuses, frees the rest.
  void recycle() {
    reader.reset();
    sync_response.reset();
    if (buffer.capacity() > kKeptBufferCapacity) {
      buffer = beast::flat_buffer();
    } else {
      buffer.clear();
    }
    if (out_body.capacity() > kKeptBodyCapacity) std::string().swap(out_body);
    out_body.clear();
    // A long target, many fields or a large body are not kept in the pool.
    if (request.target.capacity() > kKeptTargetCapacity || request.headers.capacity() > kKeptHeaderFields ||
        request.body.capacity() > kKeptBodyCapacity) {
      request = Request();
    }
  }
};
using ExchangePool = FreeList<Exchange, kPooledExchanges, 2 * kPooledExchanges>;

// Where the Responder of a request answers to: its session, held weakly (a
// Responder that outlives the server must not keep sockets alive). Pooled.
class ResponseSlot final : public Responder::Target {
 public:
  void attach(std::weak_ptr<Session> session) {
    session_ = std::move(session);
    used_.store(false, std::memory_order_relaxed);
  }
  void deliver(Response response) override;
  void unreferenced() noexcept override;

 private:
  std::weak_ptr<Session> session_;
  std::atomic<bool> used_{false};
};
using SlotPool = FreeList<ResponseSlot, kPooledSlots, 2 * kPooledSlots>;  // freed where the last Responder goes

// Where a session is in its request cycle; timers and shutdown act by phase.
enum class Phase { idle, reading, continuing, handling, writing, lingering, closed };

// One connection. Its lifetime is the chain of its pending operations (each
// holds shared_from_this()), plus `self_` while the Handler owes a response.
// Everything except post_response() runs on the connection's strand. Between
// requests it holds only its socket and timer: it waits for readability
// without a buffer, and takes an Exchange when bytes arrive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Core& server, tcp::socket socket)
      : server_(server), executor_(strand_of(socket, [&server]() -> net::io_context& { return server.pick_io(); })), socket_(adopt(executor_, socket)), timer_(executor_) {
    bump(server_.counters.open_connections);
    error_code ec;
    // Each response goes out in one write; Nagle would only hold back the
    // next pipelined one until the client's delayed ACK.
    socket_.set_option(tcp::no_delay(true), ec);
    // Reads happen when the socket is readable, writes first without waiting
    // (see write_response): both never block.
    socket_.non_blocking(true, ec);
    const auto ep = socket_.remote_endpoint(ec);
    if (!ec) remote_addr_ = ep.address().to_string();
  }

  ~Session() {
    // Still waiting on the Handler: the shutdown grace ran out, or the server is being destroyed.
    if (phase_ == Phase::handling) server_.counters.in_flight_requests.fetch_sub(1, std::memory_order_relaxed);
    server_.counters.open_connections.fetch_sub(1, std::memory_order_relaxed);
    if (holds_address_) server_.release_address(remote_addr_);
    release_exchange();
    server_.session_gone(this);
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() {
    net::dispatch(executor_, [self = shared_from_this()] { self->begin_request(); });
  }

  // Called by the Responder on any thread; hops onto the strand.
  void post_response(Response response) {
    // Answered from inside dispatch(), on this strand: dispatch() writes it
    // when the Handler returns, without a trip through the scheduler.
    if (tls_handling_session == this) {
      x_->sync_response = std::move(response);
      return;
    }
    net::post(executor_, cross_thread([self = shared_from_this(), r = std::move(response)]() mutable {
      self->on_response(std::move(r));
    }));
  }

  void on_server_stopping() {
    net::post(executor_, [self = shared_from_this()] {
      // Idle keep-alive connections go now; the others close after their response.
      if (self->phase_ == Phase::idle) self->close_now();
    });
  }

  // Breaks the self-reference of a session whose Handler never answered; only
  // while no io thread runs (server destruction).
  void abandon() { self_.reset(); }

  // Core::sessions, under Core::mu.
  void link(Session*& head) {
    next_ = head;
    if (head != nullptr) head->prev_ = this;
    head = this;
  }
  void unlink(Session*& head) {
    if (prev_ != nullptr) prev_->next_ = next_;
    if (next_ != nullptr) next_->prev_ = prev_;
    if (head == this) head = next_;
    prev_ = next_ = nullptr;
  }
  Session* next() const { return next_; }

  // The peer address (remote_addr_) counts against the per-address cap until ~Session.
  void hold_address() { holds_address_ = true; }
  const std::string& remote_addr() const { return remote_addr_; }

 private:
  void begin_request() {
    if (server_.stopping.load()) return close_now();
    head_ = false;
    if (x_ && x_->buffer.size() > 0) {
      // Pipelined bytes are already here: the request has started arriving.
      // Its read_timeout starts if it needs another read (read_more).
      x_->reader.reset();
      x_->request_id.clear();
      phase_ = Phase::reading;
      read_armed_ = false;
      return parse_buffered();
    }
    release_exchange();
    phase_ = Phase::idle;
    // A new connection gets read_timeout for its whole first request, waiting
    // included; a keep-alive connection waits idle_timeout for the next one.
    read_armed_ = first_request_;
    arm(first_request_ ? server_.options.read_timeout : server_.options.idle_timeout);
    read_more();
  }

  Exchange& exchange() {
    if (!x_) {
      x_ = ExchangePool::take();
      x_->request_id.clear();
    }
    return *x_;
  }

  void release_exchange() {
    if (!x_) return;
    x_->recycle();
    ExchangePool::give(std::move(x_));
  }

  // Waits until the socket is readable, with no buffer: the bytes are read
  // when they are there (on_readable), into the Exchange's buffer.
  void read_more() {
    if (phase_ == Phase::reading) arm_read_deadline();
    socket_.async_wait(tcp::socket::wait_read,
                       pooled_read_wait([self = shared_from_this()](error_code ec) { self->on_readable(ec); }));
  }

  void on_readable(error_code ec) {
    if (phase_ == Phase::closed) return;
    if (timed_out_) {
      if (phase_ == Phase::idle) {
        bump(server_.counters.idle_timeouts);
        return close_now();
      }
      bump(server_.counters.read_timeouts);
      return send_problem(408, "request_timeout", "Request timeout", "request not received in time");
    }
    if (ec) return close_now();  // closed by shutdown
    auto& buffer = exchange().buffer;
    const std::size_t n = socket_.read_some(buffer.prepare(beast::read_size(buffer, kReadChunk)), ec);
    buffer.commit(n);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      if (phase_ == Phase::idle) release_exchange();  // a spurious wake-up
      return read_more();
    }
    if (ec) return close_now();  // EOF or reset: nobody to answer
    // A request has started. Its read_timeout is armed only if it needs
    // another read: most requests arrive whole in this one.
    if (phase_ == Phase::idle) phase_ = Phase::reading;
    parse_buffered();
  }

  // The parsing and its refusals are RequestReader's; this only acts on its verdict.
  void parse_buffered() {
    Exchange& x = exchange();
    if (!x.reader.started()) x.reader.begin(x.request, x.request_id, server_.options);
    switch (x.reader.read(x.buffer)) {
      case RequestReader::Step::need_more: return read_more();
      case RequestReader::Step::ready: return dispatch();
      case RequestReader::Step::send_continue: return send_continue();
      case RequestReader::Step::refused: return refuse(x.reader.refusal());
    }
  }

  void refuse(const RequestReader::Refusal& r) {
    switch (r.status) {
      case 413: bump(server_.counters.payload_too_large); break;
      case 414: bump(server_.counters.uri_too_long); break;
      case 431: bump(server_.counters.headers_too_large); break;
      default: bump(server_.counters.bad_requests); break;
    }
    send_problem(r.status, r.type, r.title, r.detail);
  }

  void send_continue() {
    arm_read_deadline();  // it covers this small write too
    phase_ = Phase::continuing;
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       if (ec || self->phase_ == Phase::closed) return self->close_now();
                       self->phase_ = Phase::reading;
                       if (self->timed_out_) {
                         bump(self->server_.counters.read_timeouts);
                         return self->send_problem(408, "request_timeout", "Request timeout",
                                                   "request not received in time");
                       }
                       self->parse_buffered();
                     });
  }

  void dispatch() {
    phase_ = Phase::handling;
    disarm();
    first_request_ = false;
    Exchange& x = *x_;
    const RequestParser& parsed = x.reader.parser();
    keep_alive_ = parsed.keep_alive();
    version_ = static_cast<std::uint8_t>(parsed.version());
    head_ = parsed.is_head();
    if (x.request_id.empty()) generate_request_id(x.request_id);
    // method, target, path, query, headers and body are the parser's.
    Request& req = x.request;
    req.request_id.assign(x.request_id);
    req.remote_addr.assign(remote_addr_);
    req.keep_alive = keep_alive_;
    req.io_lane = lane_;

    bump(server_.counters.in_flight_requests);
    // The Handler may answer later from any thread, or drop the Responder;
    // self_ keeps the session alive until the answer.
    self_ = shared_from_this();
    std::unique_ptr<ResponseSlot> slot = SlotPool::take();
    slot->attach(weak_from_this());
    Responder respond(*slot.release());  // owned by the Responders from here; see ResponseSlot
    tls_handling_session = this;
    try {
      server_.handler(std::move(req), respond);
    } catch (...) {
      respond(problem(500, "internal", "Internal error", "handler failed"));
    }
    respond = Responder();  // our reference: a Handler that kept none has answered 500 now
    tls_handling_session = nullptr;
    if (x.sync_response) {
      Response r = std::move(*x.sync_response);
      x.sync_response.reset();
      // A pipelined request answered synchronously nests the next one in this
      // call (write, begin_request, parse, dispatch): a long pipeline unwinds
      // through the scheduler now and then instead of growing the stack.
      if (sync_nesting_ >= kMaxSyncNesting) {
        return net::post(executor_, [self = shared_from_this(), r = std::move(r)]() mutable {
          self->on_response(std::move(r));
        });
      }
      ++sync_nesting_;
      on_response(std::move(r));
      --sync_nesting_;  // the caller's completion handler holds a reference: still alive
    }
  }

  void on_response(Response r) {
    if (phase_ != Phase::handling) return;
    // Keeps us alive through the call; the write's handler takes over after.
    const auto keep = std::move(self_);
    server_.counters.in_flight_requests.fetch_sub(1, std::memory_order_relaxed);
    bool close = !keep_alive_ || server_.stopping.load();
    if (auto c = r.header("Connection"); c && iequals(trim(*c), "close")) close = true;
    write_response(std::move(r), close);
  }

  void send_problem(int status, std::string_view type, std::string_view title, std::string detail) {
    std::string& id = exchange().request_id;
    if (id.empty()) generate_request_id(id);
    write_response(problem(status, type, title, detail), true);
  }

  // The response is serialised by hand into out_head, whose capacity stays
  // with the Exchange, and written with the body in one gathered write:
  // Beast's fields and serializer cost an allocation per header and most of
  // the instructions of a small response. The bytes are the ones Beast wrote
  // (same order: the handler's headers, Server, X-Request-Id, Content-Length,
  // Connection; values trimmed; reason phrases from Beast's table).
  void write_response(Response r, bool close) {
    phase_ = Phase::writing;
    disarm();
    close_after_write_ = close;
    Exchange& x = exchange();
    int status = r.status;
    if (status < 200 || status > 599) status = 500;  // 1xx would break the framing
    std::string& out = x.out_head;
    out.clear();
    char digits[24];
    out.append("HTTP/");
    out.push_back(static_cast<char>('0' + (version_ / 10) % 10));
    out.push_back('.');
    out.push_back(static_cast<char>('0' + version_ % 10));
    out.push_back(' ');
    out.append(digits, std::to_chars(digits, digits + sizeof digits, status).ptr);
    out.push_back(' ');
    const auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
    out.append(reason.data(), reason.size());
    out.append("\r\n");
    const auto named = [](std::string_view wanted) {
      return [wanted](const auto& h) { return iequals(h.first, wanted); };
    };
    if (!r.content_type.empty() && safe_header_value(r.content_type) &&
        std::none_of(r.headers.begin(), r.headers.end(), named("content-type"))) {
      out.append("Content-Type: ").append(trim(r.content_type)).append("\r\n");
    }
    for (const auto& [name, value] : r.headers) {
      if (!is_token(name) || !safe_header_value(value)) continue;
      if (iequals(name, "content-length") || iequals(name, "transfer-encoding") || iequals(name, "connection") ||
          iequals(name, "x-request-id") || iequals(name, "server")) {
        continue;  // framing and identity are ours
      }
      out.append(name).append(": ").append(trim(value)).append("\r\n");
    }
    out.append("Server: fairdraw\r\nX-Request-Id: ").append(x.request_id).append("\r\n");
    x.out_body.clear();
    if (status != 204 && status != 304) {
      out.append("Content-Length: ");
      out.append(digits, std::to_chars(digits, digits + sizeof digits, r.body.size()).ptr);
      out.append("\r\n");
      // The buffer of the body written before goes back for the next body built on this thread.
      if (!head_) recycle_body_buffer(std::exchange(x.out_body, std::move(r.body)));
    }
    // As Beast's keep_alive(): 1.1 says only close, 1.0 only keep-alive.
    if (version_ >= 11 && close) out.append("Connection: close\r\n");
    if (version_ < 11 && !close) out.append("Connection: keep-alive\r\n");
    out.append("\r\n");
    // Nearly every response fits the socket's send buffer: write it now, with
    // no asynchronous operation and no deadline to arm. Only a remainder waits
    // for the socket, under write_timeout.
    error_code ec;
    const std::size_t total = x.out_head.size() + x.out_body.size();
    const std::size_t written =
        socket_.write_some(std::array<net::const_buffer, 2>{net::buffer(x.out_head), net::buffer(x.out_body)}, ec);
    if (!ec && written == total) return on_write({});
    if (ec && ec != net::error::would_block && ec != net::error::try_again) return on_write(ec);
    if (!ec) {
      if (written < x.out_head.size()) {
        x.out_head.erase(0, written);
      } else {
        x.out_body.erase(0, written - x.out_head.size());
        x.out_head.clear();
      }
    }
    arm(server_.options.write_timeout);
    net::async_write(socket_, std::array<net::const_buffer, 2>{net::buffer(x.out_head), net::buffer(x.out_body)},
                     [self = shared_from_this()](error_code write_ec, std::size_t) { self->on_write(write_ec); });
  }

  void on_write(error_code ec) {
    if (ec && timed_out_ && phase_ == Phase::writing) bump(server_.counters.write_timeouts);
    if (ec || phase_ == Phase::closed) return close_now();
    if (close_after_write_) return linger_close();
    begin_request();
  }

  // Half-close and drain the client's leftovers for a moment, then close.
  void linger_close() {
    phase_ = Phase::lingering;
    release_exchange();  // what still comes is read into a scratch buffer and dropped
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close_now();
    // While shutting down, a client that keeps its end open must not hold up
    // the exit for long; what it sends after our FIN is most likely nothing.
    const auto linger = server_.stopping.load() ? kShutdownLingerTime : kLingerTime;
    arm(std::min(linger, server_.options.read_timeout));
    linger_wait();
  }

  void linger_wait() {
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
      if (ec || self->timed_out_ || self->phase_ == Phase::closed) return self->close_now();
      self->linger_drain();
    });
  }

  void linger_drain() {
    std::array<char, 4096> scratch;
    for (;;) {
      error_code ec;
      lingered_ += socket_.read_some(net::buffer(scratch), ec);
      if (ec == net::error::would_block || ec == net::error::try_again) return linger_wait();
      if (ec || lingered_ > kLingerBytes) return close_now();
    }
  }

  void close_now() {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::closed;
    disarm();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  // Deadlines (read, idle, write, linger) are one plain timer per connection,
  // handled lazily: arm() and disarm() only move deadline_, and the timer is
  // re-armed only when the new deadline is earlier than its pending wait. A
  // wait that fires early re-arms for deadline_; one that fires while disarmed
  // ends. So a keep-alive connection costs about one timer wait per timeout
  // period instead of several timer operations per request. On expiry the
  // pending socket operation is cancelled; the handlers decide by phase_ (a
  // timed-out request must still get its 408).
  void arm(std::chrono::milliseconds d) {
    timed_out_ = false;
    deadline_ = steady_clock::now() + d;
    if (!timer_waiting_ || timer_.expiry() > deadline_) start_wait(deadline_);
  }

  void disarm() {
    timed_out_ = false;
    deadline_ = steady_clock::time_point::max();
  }

  void arm_read_deadline() {
    if (read_armed_) return;
    read_armed_ = true;
    arm(server_.options.read_timeout);
  }

  void start_wait(steady_clock::time_point at) {
    timer_.expires_at(at);  // a pending wait completes as aborted and is ignored
    timer_waiting_ = true;
    const std::uint64_t generation = ++timer_generation_;
    timer_.async_wait([weak = weak_from_this(), generation](error_code ec) {
      auto self = weak.lock();
      if (!self || generation != self->timer_generation_) return;  // superseded by a later wait
      self->timer_waiting_ = false;
      if (ec) return;
      self->on_deadline();
    });
  }

  void on_deadline() {
    if (deadline_ == steady_clock::time_point::max()) return;  // disarmed
    if (deadline_ > steady_clock::now()) return start_wait(deadline_);
    if (phase_ != Phase::idle && phase_ != Phase::reading && phase_ != Phase::continuing &&
        phase_ != Phase::lingering && phase_ != Phase::writing) {
      return;
    }
    timed_out_ = true;
    error_code ec;
    socket_.cancel(ec);
  }

  Core& server_;
  const Strand executor_;  // the connection's strand; never changes, so any thread may post to it
  const unsigned lane_ = server_.lane_of(executor_.get_inner_executor().context());  // its io thread
  StrandSocket socket_;
  StrandTimer timer_;
  std::unique_ptr<Exchange> x_;  // while a request is in progress; see Exchange
  steady_clock::time_point deadline_ = steady_clock::time_point::max();  // see arm()
  std::uint64_t timer_generation_ = 0;  // identifies the latest wait
  std::shared_ptr<Session> self_;
  std::string remote_addr_;
  Session* prev_ = nullptr;  // in Core::sessions
  Session* next_ = nullptr;
  std::size_t lingered_ = 0;
  Phase phase_ = Phase::idle;
  std::uint8_t sync_nesting_ = 0;  // dispatch() frames answering synchronously
  std::uint8_t version_ = 11;
  bool timed_out_ = false;
  bool timer_waiting_ = false;  // a wait of timer_generation_ is pending
  bool read_armed_ = false;     // this request's read_timeout is running
  bool first_request_ = true;
  bool keep_alive_ = true;
  bool head_ = false;
  bool close_after_write_ = false;
  bool holds_address_ = false;  // counted in Core::per_address
};

void ResponseSlot::deliver(Response response) {
  if (used_.exchange(true)) return;  // a second call is ignored
  if (auto session = session_.lock()) session->post_response(std::move(response));
}

// The last Responder of a request is gone: answer 500 if nobody answered, then
// back to the pool (of whichever thread let go of it).
void ResponseSlot::unreferenced() noexcept {
  if (!used_.load()) deliver(problem(500, "internal", "Internal error", "no response produced"));
  session_.reset();
  SlotPool::give(std::unique_ptr<ResponseSlot>(this));
}

// every(): the state lives only in its pending operations, so it dies with the
// io_context even if the caller keeps the handle; the handle holds it weakly.
class RepeatingTimer : public std::enable_shared_from_this<RepeatingTimer> {
 public:
  RepeatingTimer(net::io_context& io, std::chrono::milliseconds period, std::function<void()> fn)
      : strand_(net::make_strand(io)), timer_(strand_), period_(period), fn_(std::move(fn)) {}

  void start() {
    net::post(strand_, [self = shared_from_this()] { self->arm(); });
  }

  void cancel() {
    cancelled_.store(true);
    net::post(strand_, [self = shared_from_this()] { self->timer_.cancel(); });
  }

 private:
  void arm() {
    if (cancelled_.load()) return;
    timer_.expires_after(period_);
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->cancelled_.load()) return;
      self->fn_();
      self->arm();
    });
  }

  Strand strand_;
  StrandTimer timer_;  // typed by its strand: a generic timer boxed the executor on each wait (two allocations a tick)
  std::chrono::milliseconds period_;
  std::function<void()> fn_;
  std::atomic<bool> cancelled_{false};
};

class TimerHandle final : public Timer {
 public:
  explicit TimerHandle(std::weak_ptr<RepeatingTimer> t) : timer_(std::move(t)) {}
  void cancel() override {
    if (auto t = timer_.lock()) t->cancel();
  }

 private:
  std::weak_ptr<RepeatingTimer> timer_;
};

Core::Core(ServerOptions o, Handler h)
    : options(std::move(o)),
      handler(std::move(h)),
      threads(options.threads != 0 ? options.threads : std::max(1U, std::thread::hardware_concurrency())),
      ios(make_io_contexts(threads)),
      control(net::make_strand(*ios[0])),
      acceptor(control),
      accept_retry(control),
      grace(control) {}

Core::~Core() {
  destroying.store(true);
  // No io thread runs now. Sessions still waiting on a Handler are held only by
  // their self-reference: release them while the io_context is intact.
  std::vector<std::shared_ptr<Session>> waiting = live_sessions();
  for (auto& s : waiting) s->abandon();
  waiting.clear();
  error_code ec;
  acceptor.close(ec);
  // As ~io_context does for one context, in two phases over all of them:
  // first every context destroys the handlers it still holds (which may own
  // sessions whose sockets belong to another context), then they are freed.
  for (auto& c : ios) c->shutdown();
}

Status Core::listen() {
  if (listening) return make_error(ErrorKind::internal, "server is already listening");
  const std::string where = options.host + ":" + std::to_string(options.port);
  error_code ec;
  tcp::endpoint endpoint;
  const auto address = net::ip::make_address(options.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, options.port);
  } else {
    tcp::resolver resolver(*ios[0]);
    const auto results = resolver.resolve(options.host, std::to_string(options.port),
                                          tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return make_error(ErrorKind::internal, "cannot resolve listen address " + where + ": " + ec.message());
    }
    endpoint = results.begin()->endpoint();
  }
  auto fail = [&](const char* what) {
    error_code ignored;
    acceptor.close(ignored);
    return make_error(ErrorKind::internal, std::string("cannot ") + what + " " + where + ": " + ec.message());
  };
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open socket for");
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("set SO_REUSEADDR on");
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  bound_port.store(acceptor.local_endpoint(ec).port());
  listening = true;
  net::post(control, [this] { do_accept(); });
  return ok_status();
}

void Core::do_accept() {
  if (stopping.load() || !acceptor.is_open()) return;
  acceptor.async_accept(net::make_strand(pick_io()),
                        [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
}

void Core::on_accept(error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
  if (stopping.load()) {
    error_code ignored;
    socket.close(ignored);
    return;
  }
  if (ec) {
    if (ec == net::error::connection_aborted) return do_accept();  // the client gave up; nothing wrong here
    // EMFILE, ENFILE, ENOBUFS...: the pending connection stays queued, so
    // retrying at once would spin. Wait for descriptors to free up.
    accept_retry.expires_after(kAcceptBackoff);
    accept_retry.async_wait([this](error_code wait_ec) {
      if (!wait_ec) do_accept();
    });
    return;
  }
  if (counters.open_connections.load() >= options.max_connections) {
    bump(counters.refused_connections);
    refuse(socket);
    return do_accept();
  }
  // One address may hold at most max_connections_per_address of the slots.
  std::string claimed;
  if (options.max_connections_per_address > 0) {
    error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    if (!peer_ec) {
      claimed = peer.address().to_string();
      if (!claim_address(claimed)) {
        bump(counters.refused_per_address);
        refuse(socket);
        return do_accept();
      }
    }
  }
  bump(counters.accepted_connections);
  auto session = std::make_shared<Session>(*this, std::move(socket));
  if (!claimed.empty()) {
    // The same text as the session's remote_addr(), which releases it.
    if (session->remote_addr() == claimed) {
      session->hold_address();
    } else {
      release_address(claimed);
    }
  }
  {
    std::lock_guard lock(mu);
    session->link(sessions);
  }
  session->start();
  do_accept();
}

// Over the connection limit: answer with a few bytes written without waiting
// and close; this must cost almost nothing, so no session is made.
void Core::refuse(tcp::socket& socket) {
  error_code ec;
  socket.non_blocking(true, ec);
  const std::string bytes = refusal_bytes();
  socket.write_some(net::buffer(bytes), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  // Drop what the client already sent, so close() does not turn into a RST.
  char sink[4096];
  for (int i = 0; i < 4; ++i) {
    if (socket.read_some(net::buffer(sink), ec) == 0 || ec) break;
  }
  socket.close(ec);
}

bool Core::claim_address(const std::string& address) {
  std::lock_guard lock(per_address_mu);
  std::size_t& open = per_address[address];
  if (open >= options.max_connections_per_address) return false;
  ++open;
  return true;
}

void Core::release_address(const std::string& address) {
  std::lock_guard lock(per_address_mu);
  const auto it = per_address.find(address);
  if (it == per_address.end()) return;
  if (--it->second == 0) per_address.erase(it);
}

std::vector<std::shared_ptr<Session>> Core::live_sessions() {
  std::vector<std::shared_ptr<Session>> live;
  std::lock_guard lock(mu);
  // One whose destructor is waiting for mu to unlink itself is expired: skipped.
  for (Session* s = sessions; s != nullptr; s = s->next()) {
    if (auto p = s->weak_from_this().lock()) live.push_back(std::move(p));
  }
  return live;
}

void Core::session_gone(Session* s) {
  bool last = false;
  {
    std::lock_guard lock(mu);
    s->unlink(sessions);
    last = sessions == nullptr;
  }
  // The last connection of a shutdown ends the wait for shutdown_grace.
  if (last && stopping.load() && !destroying.load()) stop_all();
}

void Core::run(std::function<void()> stopping_cb) {
  bool call_now = false;
  {
    std::lock_guard lock(mu);
    if (stopping.load()) {
      call_now = true;
    } else {
      on_stopping = std::move(stopping_cb);
      for (auto& c : ios) work.push_back(net::make_work_guard(c->get_executor()));
    }
  }
  if (call_now && stopping_cb) stopping_cb();

  signals.emplace(control, SIGINT, SIGTERM);
  signals->async_wait([this](error_code ec, int) {
    if (!ec) shutdown();
  });

  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([this, i] {
    name_this_thread("fd-io");
    ios[i]->run();
  });
  ios[0]->run();
  for (auto& t : pool) t.join();

  // No io thread runs any more: the control objects may be touched directly.
  error_code ec;
  acceptor.close(ec);
  signals.reset();  // restores the default dispositions
  std::lock_guard lock(mu);
  work.clear();
}

void Core::shutdown() {
  if (stopping.exchange(true)) return;
  std::function<void()> cb;
  std::vector<std::shared_ptr<RepeatingTimer>> live_timers;
  {
    std::lock_guard lock(mu);
    cb = std::move(on_stopping);
    work.clear();
    for (auto& t : timers) {
      if (auto p = t.lock()) live_timers.push_back(std::move(p));
    }
    timers.clear();
  }
  std::vector<std::shared_ptr<Session>> open_sessions = live_sessions();
  if (cb) cb();

  net::post(control, [this] {
    error_code ec;
    acceptor.close(ec);  // new connections are refused by the kernel from here on
    accept_retry.cancel();
    if (signals) signals->cancel(ec);
    grace.expires_after(options.shutdown_grace);
    grace.async_wait([this](error_code wait_ec) {
      if (!wait_ec) stop_all();  // in-flight requests ran out of time
    });
  });
  for (auto& t : live_timers) t->cancel();
  for (auto& s : open_sessions) s->on_server_stopping();
  // Sessions gone before we looked will not report again: nothing to wait for.
  // (Dropping our references below may also end the last one, which stops io.)
  if (open_sessions.empty()) stop_all();
}

}  // namespace

struct Server::Impl {
  Impl(ServerOptions options, Handler handler) : core(std::move(options), std::move(handler)) {}
  Core core;
};

Server::Server(ServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

Server::~Server() = default;

Status Server::listen() { return impl_->core.listen(); }

std::uint16_t Server::port() const { return impl_->core.bound_port.load(); }

void Server::run(std::function<void()> on_stopping) { impl_->core.run(std::move(on_stopping)); }

void Server::shutdown() { impl_->core.shutdown(); }

void Server::post(std::function<void()> fn) { net::post(impl_->core.pick_io(), cross_thread(std::move(fn))); }

void Server::post_to(unsigned lane, std::function<void()> fn) {
  auto& ios = impl_->core.ios;
  net::post(*ios[lane % ios.size()], cross_thread(std::move(fn)));
}

std::shared_ptr<Timer> Server::every(std::chrono::milliseconds period, std::function<void()> fn) {
  auto timer = std::make_shared<RepeatingTimer>(*impl_->core.ios[0], period, std::move(fn));
  bool stopped = false;
  {
    std::lock_guard lock(impl_->core.mu);
    stopped = impl_->core.stopping.load();
    if (!stopped) {
      auto& list = impl_->core.timers;
      list.erase(std::remove_if(list.begin(), list.end(), [](const auto& w) { return w.expired(); }), list.end());
      list.push_back(timer);
    }
  }
  if (!stopped) timer->start();
  return std::make_shared<TimerHandle>(timer);
}

ServerStats Server::stats() const {
  const Counters& c = impl_->core.counters;
  auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
  ServerStats s;
  s.open_connections = get(c.open_connections);
  s.accepted_connections = get(c.accepted_connections);
  s.refused_connections = get(c.refused_connections);
  s.refused_per_address = get(c.refused_per_address);
  s.read_timeouts = get(c.read_timeouts);
  s.idle_timeouts = get(c.idle_timeouts);
  s.write_timeouts = get(c.write_timeouts);
  s.in_flight_requests = get(c.in_flight_requests);
  s.bad_requests = get(c.bad_requests);
  s.uri_too_long = get(c.uri_too_long);
  s.headers_too_large = get(c.headers_too_large);
  s.payload_too_large = get(c.payload_too_large);
  return s;
}

unsigned Server::thread_count() const { return impl_->core.threads; }

namespace fuzzing {

// Session's reading loop (begin_request, on_readable, parse_buffered, dispatch)
// without the socket, timers and Handler: the same RequestReader, the same
// buffer handling (pipelined bytes stay buffered for the next request), the
// same reused Request.
StreamEnd parse_stream(std::string_view bytes, const ServerOptions& limits, const StreamCallbacks& callbacks,
                       std::size_t piece) {
  beast::flat_buffer buffer;
  Request request;
  std::string request_id;
  RequestReader reader;
  // One "read": the next piece of the input arrives in the buffer.
  const auto receive = [&] {
    const std::size_t n = piece == 0 ? bytes.size() : std::min(piece, bytes.size());
    const auto space = buffer.prepare(n);
    std::copy_n(bytes.data(), n, static_cast<char*>(space.data()));
    buffer.commit(n);
    bytes.remove_prefix(n);
  };
  for (;;) {
    request_id.clear();
    reader.begin(request, request_id, limits);
    for (bool whole = false; !whole;) {
      switch (reader.read(buffer)) {
        case RequestReader::Step::need_more:
          if (bytes.empty()) return StreamEnd::incomplete;  // the server would wait, then answer 408
          receive();
          break;
        case RequestReader::Step::send_continue:
          if (callbacks.on_continue) callbacks.on_continue();
          break;
        case RequestReader::Step::refused: {
          const auto& r = reader.refusal();
          if (callbacks.on_refusal) callbacks.on_refusal(Refusal{r.status, std::string(r.type), r.detail});
          return StreamEnd::refused;
        }
        case RequestReader::Step::ready: whole = true; break;
      }
    }
    // As Session::dispatch, except that no id is generated (ids are random).
    const RequestParser& parsed = reader.parser();
    const bool keep_alive = parsed.keep_alive();
    request.keep_alive = keep_alive;
    request.request_id.assign(request_id);
    request.remote_addr.clear();
    const bool open = callbacks.on_request(request, parsed.version(), parsed.is_head());
    if (!keep_alive || !open) return StreamEnd::closed;
    if (buffer.size() == 0 && bytes.empty()) return StreamEnd::incomplete;  // waiting for the next request
  }
}

}  // namespace fuzzing

}  // namespace fairdraw::http

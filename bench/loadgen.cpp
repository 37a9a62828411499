// fairdraw_loadgen: open-loop HTTP/1.1 load generator for fairdraw on loopback. Fixed-rate schedule,
// latency measured from each request's scheduled send time, log-linear (HDR-style) histogram.
//
//   fairdraw_loadgen --url http://127.0.0.1:8080 --rate 5000 --connections 1000 --duration 20
//   fairdraw_loadgen --url http://127.0.0.1:8080 --hold-connections 16384 --duration 10
//
// Why open loop: a closed-loop client (wrk, ab) sends the next request only after the previous
// answer, so when the server stalls the client stops asking and the stall shows up as one slow
// request instead of the hundreds that real users, who do not wait for each other, would have
// seen ("coordinated omission"). Here request j of the run is due at t0 + j / rate whatever
// happens, and its latency is counted from that due time: a request that had to wait for a busy
// connection carries the wait in its latency, and is reported as late. Nothing is dropped.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

// GCC 12 at -O2 reports -Wnull-dereference inside Asio's own headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#pragma GCC diagnostic pop

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;
using error_code = boost::system::error_code;

// ---------------------------------------------------------------------------------------------
// Latency histogram.

// Log-linear histogram in the manner of HdrHistogram, values in nanoseconds: values below 256 are
// kept exactly and each power-of-two range above is split into 128 linear sub-buckets, so every
// value is stored with a relative error below 1/128 (two significant digits) from 1 us up to
// 60 s; larger values are clamped to 60 s (and the exact maximum is kept aside).
class latency_histogram {
 public:
  static constexpr std::int64_t max_trackable_ns = 60'000'000'000;

  void record(std::int64_t ns) {
    ns = std::clamp<std::int64_t>(ns, 0, max_trackable_ns);
    ++counts_[index_of(static_cast<std::uint64_t>(ns))];
    ++total_;
    max_ = std::max(max_, ns);
  }

  void merge(const latency_histogram& other) {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t total() const { return total_; }
  std::int64_t max() const { return max_; }

  // The value at percentile `pct` (0..100]: the upper edge of the bucket holding the
  // ceil(pct% * total)-th smallest value, never above the largest value recorded.
  std::int64_t value_at(double pct) const {
    if (total_ == 0) return 0;
    const double want = std::ceil(pct / 100.0 * static_cast<double>(total_) - 1e-9);
    const auto target = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(std::max(want, 1.0)), 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= target) return std::min(highest_equivalent(i), max_);
    }
    return max_;
  }

 private:
  static constexpr int sub_bits = 7;                                // 128 sub-buckets per octave
  static constexpr std::uint64_t linear_limit = 2u << sub_bits;     // 256: exact below this
  static constexpr int top_msb = 35;                                // 2^35 ns < 60 s < 2^36 ns
  static constexpr std::size_t bucket_count =
      linear_limit + static_cast<std::size_t>(top_msb - sub_bits) * (1u << sub_bits);

  static std::size_t index_of(std::uint64_t v) {
    if (v < linear_limit) return static_cast<std::size_t>(v);
    const int msb = static_cast<int>(std::bit_width(v)) - 1;  // >= 8
    const int shift = msb - sub_bits;
    const std::uint64_t sub = (v >> shift) - (1u << sub_bits);  // 0..127
    return static_cast<std::size_t>(linear_limit + static_cast<std::uint64_t>(msb - sub_bits - 1) * (1u << sub_bits) + sub);
  }

  static std::int64_t highest_equivalent(std::size_t i) {
    if (i < linear_limit) return static_cast<std::int64_t>(i);
    const std::size_t j = i - linear_limit;
    const int msb = static_cast<int>(j >> sub_bits) + sub_bits + 1;
    const int shift = msb - sub_bits;
    const std::uint64_t sub = (j & ((1u << sub_bits) - 1)) + (1u << sub_bits);
    return static_cast<std::int64_t>(((sub + 1) << shift) - 1);
  }

  std::vector<std::uint64_t> counts_ = std::vector<std::uint64_t>(bucket_count);
  std::uint64_t total_ = 0;
  std::int64_t max_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Options.

struct options {
  std::string url = "http://127.0.0.1:8080";
  std::string host_header;
  asio::ip::address address;
  std::uint16_t port = 80;
  std::string path = "/draw";
  std::string method = "POST";
  bool path_given = false;
  double rate = 1000;
  std::size_t connections = 64;
  double duration_s = 10;
  double warmup_s = 2;
  unsigned threads = 1;
  std::string activity = "bench";
  std::uint64_t activities = 1;  // > 1: activity_id is <activity>-<n mod activities>
  double timeout_s = 5;
  std::size_t hold_connections = 0;
  bool random_keys = false;
  std::uint64_t users = 0;  // > 0: user_id from a population of this many, keys still unique
  bool json = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "fairdraw_loadgen: %s (see --help)\n", message.c_str());
  std::exit(2);
}

void print_help() {
  std::puts(
      "fairdraw_loadgen: open-loop HTTP/1.1 load on loopback, latency from the scheduled send time\n"
      "  --url http://HOST:PORT    target (HOST: 127.0.0.0/8, localhost or [::1] only)\n"
      "  --path P                  request path (default /draw; /healthz implies --method GET)\n"
      "  --method GET|POST         (default POST)\n"
      "  --rate R                  requests per second, all connections together (default 1000)\n"
      "  --connections N           keep-alive connections (default 64)\n"
      "  --duration S              measured seconds (default 10)\n"
      "  --warmup S                seconds run before measuring, not recorded (default 2)\n"
      "  --threads T               io threads (default 1)\n"
      "  --activity ID             activity_id of POST /draw (default bench)\n"
      "  --activities N            spread draws over N activities: ID-0 .. ID-(N-1), request n\n"
      "                            going to ID-(n mod N) (default 1: ID itself)\n"
      "  --timeout S               per-request (and connect) timeout in seconds (default 5)\n"
      "  --keys sequential|random  Idempotency-Key and user_id of POST /draw: lg-<pid>-<n> with n\n"
      "                            the request's number (default), or random: 32 hex digits in\n"
      "                            a UUID's shape scrambled from n and the run (unique, in no\n"
      "                            order, no shared prefix: like clients' UUIDs)\n"
      "  --users N                 user_id from a population of N users (u-<16 hex digits>\n"
      "                            scrambled from n mod N), so each draws again and again;\n"
      "                            keys stay unique (default 0: one user per request)\n"
      "  --hold-connections N      instead: open N connections, one GET /healthz on each, then keep\n"
      "                            them idle for --duration seconds; prints 'ready ...' on stderr\n"
      "                            once they are all open\n"
      "  --json                    machine-readable summary on stdout");
}

double parse_number(const std::string& name, const std::string& text, double lo, double hi) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
    usage_error(name + ": expected a number in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                "], got \"" + text + "\"");
  }
  return v;
}

bool is_loopback(const asio::ip::address& a) {
  if (a.is_v4()) return (a.to_v4().to_uint() >> 24) == 127;
  return a.to_v6().is_loopback();
}

// Accepts http://HOST[:PORT][/] with HOST an IPv4 address in 127.0.0.0/8, localhost or [::1].
void parse_url(options& o) {
  const std::string_view prefix = "http://";
  std::string_view rest = o.url;
  if (rest.substr(0, prefix.size()) != prefix) usage_error("--url must start with http://");
  rest.remove_prefix(prefix.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) usage_error("--url takes no path; use --path");
  std::string host;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) usage_error("--url: unterminated [IPv6] host");
    host = std::string(rest.substr(1, close - 1));
    const auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') usage_error("--url: bad port");
      port_text = after.substr(1);
    }
  } else {
    const auto colon = rest.rfind(':');
    host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (!port_text.empty()) {
    unsigned p = 0;
    const auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || p == 0 || p > 65535) {
      usage_error("--url: bad port");
    }
    o.port = static_cast<std::uint16_t>(p);
  }
  error_code ec;
  if (host == "localhost") {
    o.address = asio::ip::make_address("127.0.0.1");
  } else {
    o.address = asio::ip::make_address(host, ec);
    if (ec) usage_error("--url: host must be a loopback address or localhost, got \"" + host + "\"");
  }
  // Load goes to this machine only: anything off loopback is refused, not just discouraged.
  if (!is_loopback(o.address)) usage_error("--url: refusing non-loopback host " + host);
  o.host_header = std::string(rest);
}

options parse_options(int argc, char** argv) {
  options o;
  bool method_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const auto eq = arg.find('=');
    const bool is_flag = arg == "--json" || arg == "--help" || arg == "-h";
    if (!is_flag) {
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg.resize(eq);
      } else {
        if (i + 1 >= argc) usage_error(arg + " needs a value");
        value = argv[++i];
      }
    }
    if (arg == "--help" || arg == "-h") {
      print_help();
      std::exit(0);
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--url") {
      o.url = value;
    } else if (arg == "--path") {
      if (value.empty() || value.front() != '/' || value.find_first_of(" \r\n") != std::string::npos) {
        usage_error("--path must start with / and hold no spaces");
      }
      o.path = value;
      o.path_given = true;
    } else if (arg == "--method") {
      if (value != "GET" && value != "POST") usage_error("--method: GET or POST");
      o.method = value;
      method_given = true;
    } else if (arg == "--rate") {
      o.rate = parse_number(arg, value, 0.001, 10'000'000);
    } else if (arg == "--connections") {
      o.connections = static_cast<std::size_t>(parse_number(arg, value, 1, 100'000));
    } else if (arg == "--duration") {
      o.duration_s = parse_number(arg, value, 0.001, 3600);
    } else if (arg == "--warmup") {
      o.warmup_s = parse_number(arg, value, 0, 600);
    } else if (arg == "--threads") {
      o.threads = static_cast<unsigned>(parse_number(arg, value, 1, 64));
    } else if (arg == "--activity") {
      const bool ok = !value.empty() && value.size() <= 128 &&
                      std::all_of(value.begin(), value.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' ||
                               c == '~' || c == '-';
                      });
      if (!ok) usage_error("--activity: 1..128 chars of [A-Za-z0-9._~-]");
      o.activity = value;
    } else if (arg == "--activities") {
      o.activities = static_cast<std::uint64_t>(parse_number(arg, value, 1, 10'000'000));
    } else if (arg == "--timeout") {
      o.timeout_s = parse_number(arg, value, 0.001, 600);
    } else if (arg == "--keys") {
      if (value != "sequential" && value != "random") usage_error("--keys: sequential or random");
      o.random_keys = value == "random";
    } else if (arg == "--users") {
      o.users = static_cast<std::uint64_t>(parse_number(arg, value, 1, 1e12));
    } else if (arg == "--hold-connections") {
      o.hold_connections = static_cast<std::size_t>(parse_number(arg, value, 1, 1'000'000));
    } else {
      usage_error("unknown option " + arg);
    }
  }
  parse_url(o);
  if (!method_given && o.path != "/draw" && o.path_given) o.method = "GET";
  return o;
}

// Raises the soft open-files limit to the hard one; warns when `needed` descriptors won't fit.
void raise_fd_limit(std::size_t needed) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed + 32) {
    std::fprintf(stderr, "fairdraw_loadgen: warning: open-files limit %llu is below the %zu connections asked for\n",
                 static_cast<unsigned long long>(lim.rlim_cur), needed);
  }
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 response parser: status code, Content-Length body, keep-alive. Chunked
// bodies and bodies delimited by close are not supported (fairdraw and nginx send neither here).

struct response_head {
  int status = 0;
  std::size_t head_size = 0;        // status line + headers + blank line
  std::size_t content_length = 0;
  bool keep_alive = true;
};

enum class parse_result { incomplete, complete, bad };

constexpr std::size_t max_head_bytes = 64 * 1024;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool contains_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

parse_result parse_head(std::string_view buf, response_head& out) {
  const auto end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return buf.size() > max_head_bytes ? parse_result::bad : parse_result::incomplete;
  }
  out = response_head{};
  out.head_size = end + 4;
  std::string_view head = buf.substr(0, end + 2);
  const auto line_end = head.find("\r\n");
  const std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ') {
    return parse_result::bad;
  }
  const bool http10 = status_line[7] == '0';
  out.keep_alive = !http10;
  const auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, out.status);
  if (ec != std::errc() || ptr != status_line.data() + 12 || out.status < 100 || out.status > 599) {
    return parse_result::bad;
  }
  bool have_length = false;
  head.remove_prefix(line_end + 2);
  while (!head.empty()) {
    const auto eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return parse_result::bad;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      std::size_t n = 0;
      const auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (e != std::errc() || p != value.data() + value.size()) return parse_result::bad;
      out.content_length = n;
      have_length = true;
    } else if (iequals(name, "connection")) {
      if (contains_token(value, "close")) out.keep_alive = false;
      if (contains_token(value, "keep-alive")) out.keep_alive = true;
    } else if (iequals(name, "transfer-encoding")) {
      return parse_result::bad;  // chunked: not needed for the targets measured here
    }
  }
  const bool no_body = out.status < 200 || out.status == 204 || out.status == 304;
  if (!have_length && !no_body) return parse_result::bad;
  return parse_result::complete;
}

// ---------------------------------------------------------------------------------------------
// Open-loop run.

// SplitMix64's finaliser: a bijection on 64-bit words, so distinct n give distinct keys.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct run_stats {
  latency_histogram latency;
  std::vector<std::uint64_t> status = std::vector<std::uint64_t>(600);
  std::uint64_t completed = 0;       // responses to requests scheduled inside the window
  std::uint64_t late = 0;            // due while their connection was still busy
  std::uint64_t connect_errors = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t io_errors = 0;       // reset or closed by the server mid-request
  std::uint64_t protocol_errors = 0; // unparsable response
  std::uint64_t unfinished = 0;      // scheduled inside the window, not answered by the hard stop
  std::uint64_t initial_connect_failures = 0;
  time_point last_done{};

  void merge(const run_stats& o) {
    latency.merge(o.latency);
    for (std::size_t i = 0; i < status.size(); ++i) status[i] += o.status[i];
    completed += o.completed;
    late += o.late;
    connect_errors += o.connect_errors;
    timeouts += o.timeouts;
    io_errors += o.io_errors;
    protocol_errors += o.protocol_errors;
    unfinished += o.unfinished;
    initial_connect_failures += o.initial_connect_failures;
    last_done = std::max(last_done, o.last_done);
  }
};

// The schedule, fixed before the first request: global request j is due at t0 + j * interval and
// goes to connection j mod N, so connection c sends its k-th request at t0 + (c + k N) interval.
struct run_plan {
  time_point t0{};
  time_point warm_end{};
  time_point end{};        // requests due at or after this are not sent
  time_point hard_stop{};  // whatever is still unanswered now is abandoned and reported
  double interval_ns = 0;
};

struct shared_run {
  const options* opts = nullptr;
  tcp::endpoint endpoint;
  run_plan plan;
  std::chrono::nanoseconds timeout{};
  std::string id_prefix;  // "lg-<pid>-"
  std::uint64_t seed = 0;  // per run: random keys of two runs differ
  std::atomic<std::size_t> pending_initial{0};
  std::mutex mutex;
  std::condition_variable initial_done;
};

class worker;

class connection {
 public:
  connection(worker& w, std::size_t id);
  void initial_connect();
  void start();
  void sweep(time_point now);

 private:
  enum class outcome { ok, connect_error, timeout, io_error, protocol_error };

  time_point scheduled(std::uint64_t k) const;
  bool in_window(time_point t) const;
  void schedule_next();
  void begin_request();
  void write_request();
  void read_more();
  void on_read(const error_code& ec, std::size_t n);
  void end_request(outcome result, int status);
  void fail(outcome result);
  void finish();
  void build_request();

  worker& worker_;
  shared_run& run_;
  std::size_t id_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::uint64_t k_ = 0;
  time_point due_{};
  time_point op_started_{};
  bool initial_pending_ = false;
  bool started_ = false;
  bool in_flight_ = false;
  bool waiting_ = false;
  bool timed_out_ = false;
  bool stopping_ = false;
  bool done_ = false;
  bool keep_alive_ = true;
  std::string out_;
  std::string in_;
  std::size_t in_len_ = 0;
  response_head head_;
  bool have_head_ = false;
};

class worker {
 public:
  explicit worker(shared_run& run) : run_(run), sweeper_(io_) {}

  void add(std::size_t id) { connections_.push_back(std::make_unique<connection>(*this, id)); }
  asio::io_context& io() { return io_; }
  shared_run& run() { return run_; }
  run_stats& stats() { return stats_; }
  std::size_t size() const { return connections_.size(); }

  void launch() {
    active_ = connections_.size();
    thread_ = std::thread([this] {
      asio::post(io_, [this] {
        for (auto& c : connections_) c->initial_connect();
        arm_sweeper();
      });
      io_.run();
    });
  }
  void start() {
    asio::post(io_, [this] {
      started_ = true;
      for (auto& c : connections_) c->start();
    });
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  bool started() const { return started_; }
  void connection_done() {
    if (--active_ == 0) sweeper_.cancel();
  }

 private:
  // One timer per thread enforces timeouts and the hard stop, instead of one timer per request.
  void arm_sweeper() {
    sweeper_.expires_after(std::chrono::milliseconds(20));
    sweeper_.async_wait([this](const error_code& ec) {
      if (ec || active_ == 0) return;
      const auto now = clock_type::now();
      for (auto& c : connections_) c->sweep(now);
      if (active_ > 0) arm_sweeper();
    });
  }

  shared_run& run_;
  asio::io_context io_{1};
  asio::steady_timer sweeper_;
  std::vector<std::unique_ptr<connection>> connections_;
  run_stats stats_;
  std::size_t active_ = 0;
  bool started_ = false;
  std::thread thread_;
};

connection::connection(worker& w, std::size_t id)
    : worker_(w), run_(w.run()), id_(id), socket_(w.io()), timer_(w.io()) {
  in_.resize(4096);
}

time_point connection::scheduled(std::uint64_t k) const {
  const double j = static_cast<double>(id_) + static_cast<double>(k) * static_cast<double>(run_.opts->connections);
  return run_.plan.t0 + std::chrono::nanoseconds(std::llround(j * run_.plan.interval_ns));
}

bool connection::in_window(time_point t) const { return t >= run_.plan.warm_end && t < run_.plan.end; }

// Connections are opened before the schedule starts so the first requests don't pay for it.
void connection::initial_connect() {
  initial_pending_ = true;
  in_flight_ = true;
  op_started_ = clock_type::now();
  socket_.async_connect(run_.endpoint, [this](const error_code& ec) {
    in_flight_ = false;
    initial_pending_ = false;
    if (ec || timed_out_) {
      error_code ignored;
      socket_.close(ignored);
      ++worker_.stats().initial_connect_failures;
      timed_out_ = false;
    } else {
      error_code ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
    }
    if (--run_.pending_initial == 0) {
      std::lock_guard lock(run_.mutex);
      run_.initial_done.notify_all();
    }
    if (started_) schedule_next();
  });
}

void connection::start() {
  started_ = true;
  if (!initial_pending_) schedule_next();
}

void connection::sweep(time_point now) {
  if (done_) return;
  if (in_flight_ && !timed_out_ && now - op_started_ > run_.timeout) {
    timed_out_ = true;
    error_code ignored;
    socket_.close(ignored);  // the pending operation completes with an error and sees timed_out_
  }
  if (worker_.started() && !stopping_ && now >= run_.plan.hard_stop) {
    stopping_ = true;
    error_code ignored;
    if (waiting_) timer_.cancel();
    if (in_flight_) socket_.close(ignored);
  }
}

void connection::schedule_next() {
  if (stopping_) return finish();
  due_ = scheduled(k_);
  if (due_ >= run_.plan.end) return finish();
  if (clock_type::now() >= due_) return begin_request();
  waiting_ = true;
  timer_.expires_at(due_);
  timer_.async_wait([this](const error_code& ec) {
    waiting_ = false;
    if (ec || stopping_) return finish();
    begin_request();
  });
}

void connection::begin_request() {
  in_flight_ = true;
  timed_out_ = false;
  op_started_ = clock_type::now();
  if (socket_.is_open()) return write_request();
  socket_.async_connect(run_.endpoint, [this](const error_code& ec) {
    if (ec) return fail(outcome::connect_error);
    error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    write_request();
  });
}

void connection::build_request() {
  out_.clear();
  const auto& o = *run_.opts;
  out_ += o.method;
  out_ += ' ';
  out_ += o.path;
  out_ += " HTTP/1.1\r\nHost: ";
  out_ += o.host_header;
  out_ += "\r\n";
  if (o.method == "GET") {
    out_ += "\r\n";
    return;
  }
  // Unique per request across the run (and across runs, by pid): a fresh draw, never a replay.
  // n is the request's number in the global schedule. Sequential keys of consecutive requests sit
  // next to each other in the server's key indexes, like wrk_draw.lua's; random ones land all
  // over them, as real clients' UUIDs would.
  const std::uint64_t n = id_ + k_ * o.connections;
  char num[32];
  std::string id;
  if (o.random_keys) {
    // A UUID's shape, no shared prefix: the first word is unique per request within the run
    // (splitmix64 is a bijection), the second mixes in the run's seed so runs don't collide.
    const std::uint64_t words[2] = {splitmix64(n), splitmix64(n ^ run_.seed)};
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; ++i) {
      if (i == 8 || i == 12 || i == 16 || i == 20) id += '-';
      id += hex[(words[i / 16] >> (60 - 4 * (i % 16))) & 0xf];
    }
  } else {
    id = run_.id_prefix;
    const auto r = std::to_chars(num, num + sizeof num, n);
    id.append(num, r.ptr);
  }
  std::string body = "{\"activity_id\":\"";
  body += o.activity;
  if (o.activities > 1) {
    const auto a = std::to_chars(num, num + sizeof num, n % o.activities);
    body += '-';
    body.append(num, a.ptr);
  }
  body += "\",\"user_id\":\"";
  if (o.users > 0) {
    // A bounded population: the server's per-user state stops growing once all have drawn.
    const std::uint64_t u = splitmix64(n % o.users);
    static constexpr char hex[] = "0123456789abcdef";
    body += "u-";
    for (int shift = 60; shift >= 0; shift -= 4) body += hex[(u >> shift) & 0xf];
  } else {
    body += id;
  }
  body += "\"}";
  out_ += "Content-Type: application/json\r\nIdempotency-Key: ";
  out_ += id;
  out_ += "\r\nContent-Length: ";
  const auto r = std::to_chars(num, num + sizeof num, body.size());
  out_.append(num, r.ptr);
  out_ += "\r\n\r\n";
  out_ += body;
}

void connection::write_request() {
  build_request();
  asio::async_write(socket_, asio::buffer(out_), [this](const error_code& ec, std::size_t) {
    if (ec) return fail(outcome::io_error);
    in_len_ = 0;
    have_head_ = false;
    read_more();
  });
}

void connection::read_more() {
  if (in_len_ == in_.size()) in_.resize(in_.size() * 2);
  socket_.async_read_some(asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
                          [this](const error_code& ec, std::size_t n) { on_read(ec, n); });
}

void connection::on_read(const error_code& ec, std::size_t n) {
  if (ec) return fail(outcome::io_error);
  in_len_ += n;
  if (!have_head_) {
    switch (parse_head(std::string_view(in_.data(), in_len_), head_)) {
      case parse_result::incomplete:
        return read_more();
      case parse_result::bad:
        return fail(outcome::protocol_error);
      case parse_result::complete:
        have_head_ = true;
        if (head_.head_size + head_.content_length > in_.size()) in_.resize(head_.head_size + head_.content_length);
        break;
    }
  }
  const std::size_t want = head_.head_size + head_.content_length;
  if (in_len_ < want) return read_more();
  if (in_len_ > want) return fail(outcome::protocol_error);  // we never pipeline
  keep_alive_ = head_.keep_alive;
  end_request(outcome::ok, head_.status);
}

void connection::fail(outcome result) {
  if (stopping_) return finish();
  end_request(timed_out_ ? outcome::timeout : result, 0);
}

void connection::end_request(outcome result, int status) {
  in_flight_ = false;
  const auto now = clock_type::now();
  auto& st = worker_.stats();
  if (in_window(due_)) {
    switch (result) {
      case outcome::ok:
        // From the due time, not the send time: waiting for a busy connection is part of it.
        st.latency.record(std::chrono::duration_cast<std::chrono::nanoseconds>(now - due_).count());
        ++st.status[static_cast<std::size_t>(status)];
        ++st.completed;
        st.last_done = std::max(st.last_done, now);
        break;
      case outcome::connect_error: ++st.connect_errors; break;
      case outcome::timeout: ++st.timeouts; break;
      case outcome::io_error: ++st.io_errors; break;
      case outcome::protocol_error: ++st.protocol_errors; break;
    }
  }
  if (result != outcome::ok || !keep_alive_) {
    error_code ignored;
    socket_.close(ignored);
    keep_alive_ = true;
  }
  timed_out_ = false;
  ++k_;
  const auto next = scheduled(k_);
  if (next < now && in_window(next)) ++st.late;  // it was due while this one was still running
  schedule_next();
}

void connection::finish() {
  if (done_) return;
  done_ = true;
  if (stopping_) {
    // Everything due inside the window that never got an answer counts, so nothing vanishes.
    for (std::uint64_t k = k_;; ++k) {
      const auto t = scheduled(k);
      if (t >= run_.plan.end) break;
      if (in_window(t)) ++worker_.stats().unfinished;
    }
  }
  error_code ignored;
  socket_.close(ignored);
  worker_.connection_done();
}

double to_ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

int run_open_loop(const options& o) {
  raise_fd_limit(o.connections);
  shared_run run;
  run.opts = &o;
  run.endpoint = tcp::endpoint(o.address, o.port);
  run.timeout = std::chrono::nanoseconds(std::llround(o.timeout_s * 1e9));
  run.id_prefix = "lg-" + std::to_string(getpid()) + "-";
  run.seed = splitmix64(static_cast<std::uint64_t>(getpid()) ^
                        static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
  run.pending_initial = o.connections;

  std::vector<std::unique_ptr<worker>> workers;
  const unsigned nthreads = static_cast<unsigned>(std::min<std::size_t>(o.threads, o.connections));
  for (unsigned t = 0; t < nthreads; ++t) workers.push_back(std::make_unique<worker>(run));
  for (std::size_t c = 0; c < o.connections; ++c) workers[c % nthreads]->add(c);
  for (auto& w : workers) w->launch();

  {
    std::unique_lock lock(run.mutex);
    run.initial_done.wait_for(lock, run.timeout + std::chrono::seconds(1),
                              [&] { return run.pending_initial.load() == 0; });
  }
  // The plan is written before start() is posted; the post orders it before any use.
  const auto t0 = clock_type::now() + std::chrono::milliseconds(20);
  run.plan.t0 = t0;
  run.plan.interval_ns = 1e9 / o.rate;
  run.plan.warm_end = t0 + std::chrono::nanoseconds(std::llround(o.warmup_s * 1e9));
  run.plan.end = run.plan.warm_end + std::chrono::nanoseconds(std::llround(o.duration_s * 1e9));
  run.plan.hard_stop = run.plan.end + run.timeout;
  for (auto& w : workers) w->start();
  for (auto& w : workers) w->join();

  run_stats total;
  for (auto& w : workers) total.merge(w->stats());
  const double window_s =
      std::max(o.duration_s, std::chrono::duration<double>(total.last_done - run.plan.warm_end).count());
  const double achieved = total.completed > 0 ? static_cast<double>(total.completed) / window_s : 0.0;
  const auto expected = static_cast<std::uint64_t>(std::llround(o.rate * o.duration_s));
  const std::uint64_t errors =
      total.connect_errors + total.timeouts + total.io_errors + total.protocol_errors + total.unfinished;
  const auto& h = total.latency;
  const double pcts[] = {50, 90, 99, 99.9, 99.99};
  const char* names[] = {"p50", "p90", "p99", "p99_9", "p99_99"};

  if (o.json) {
    std::printf("{\n  \"mode\": \"open_loop\",\n  \"method\": \"%s\",\n  \"path\": \"%s\",\n", o.method.c_str(),
                o.path.c_str());
    std::printf("  \"target_rate\": %.3f,\n  \"achieved_rate\": %.3f,\n", o.rate, achieved);
    std::printf("  \"connections\": %zu,\n  \"threads\": %u,\n  \"duration_s\": %.3f,\n  \"warmup_s\": %.3f,\n",
                o.connections, nthreads, o.duration_s, o.warmup_s);
    std::printf("  \"scheduled\": %llu,\n  \"completed\": %llu,\n  \"late\": %llu,\n",
                static_cast<unsigned long long>(expected), static_cast<unsigned long long>(total.completed),
                static_cast<unsigned long long>(total.late));
    std::printf("  \"status\": {");
    bool first = true;
    for (std::size_t s = 0; s < total.status.size(); ++s) {
      if (total.status[s] == 0) continue;
      std::printf("%s\"%zu\": %llu", first ? "" : ", ", s, static_cast<unsigned long long>(total.status[s]));
      first = false;
    }
    std::printf("},\n");
    std::printf(
        "  \"errors\": {\"connect\": %llu, \"timeout\": %llu, \"io\": %llu, \"protocol\": %llu, \"unfinished\": %llu, "
        "\"initial_connect\": %llu},\n",
        static_cast<unsigned long long>(total.connect_errors), static_cast<unsigned long long>(total.timeouts),
        static_cast<unsigned long long>(total.io_errors), static_cast<unsigned long long>(total.protocol_errors),
        static_cast<unsigned long long>(total.unfinished),
        static_cast<unsigned long long>(total.initial_connect_failures));
    std::printf("  \"latency_ms\": {");
    for (std::size_t i = 0; i < std::size(pcts); ++i) {
      std::printf("\"%s\": %.3f, ", names[i], to_ms(h.value_at(pcts[i])));
    }
    std::printf("\"max\": %.3f}\n}\n", to_ms(h.max()));
  } else {
    std::printf("fairdraw_loadgen: open loop, %s %s at %.1f req/s, %zu connections, %u thread(s), %.1f s (+%.1f s warmup)\n",
                o.method.c_str(), o.path.c_str(), o.rate, o.connections, nthreads, o.duration_s, o.warmup_s);
    std::printf("achieved:  %.1f req/s (%llu of %llu scheduled answered)\n", achieved,
                static_cast<unsigned long long>(total.completed), static_cast<unsigned long long>(expected));
    std::printf("status:   ");
    for (std::size_t s = 0; s < total.status.size(); ++s) {
      if (total.status[s] != 0) std::printf(" %zu=%llu", s, static_cast<unsigned long long>(total.status[s]));
    }
    std::printf("\nerrors:    connect=%llu timeout=%llu io=%llu protocol=%llu unfinished=%llu (initial connect failures %llu)\n",
                static_cast<unsigned long long>(total.connect_errors), static_cast<unsigned long long>(total.timeouts),
                static_cast<unsigned long long>(total.io_errors), static_cast<unsigned long long>(total.protocol_errors),
                static_cast<unsigned long long>(total.unfinished),
                static_cast<unsigned long long>(total.initial_connect_failures));
    std::printf("late:      %llu (due while their connection was still busy; their wait is in the latency)\n",
                static_cast<unsigned long long>(total.late));
    std::printf("latency from the scheduled send time (ms):\n ");
    for (std::size_t i = 0; i < std::size(pcts); ++i) std::printf(" %s=%.3f", names[i], to_ms(h.value_at(pcts[i])));
    std::printf(" max=%.3f\n", to_ms(h.max()));
  }
  return errors == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Hold mode: many idle keep-alive connections, to measure what they cost the server.

class hold_run {
 public:
  explicit hold_run(const options& o) : opts_(o), endpoint_(o.address, o.port), deadline_(io_), hold_timer_(io_) {}

  int run() {
    raise_fd_limit(opts_.hold_connections);
    request_ = "GET /healthz HTTP/1.1\r\nHost: " + opts_.host_header + "\r\n\r\n";
    conns_.resize(opts_.hold_connections);
    started_at_ = clock_type::now();
    // Connecting is paced (a bounded number in progress) so the listen backlog never overflows.
    for (std::size_t i = 0; i < max_in_progress && next_ < conns_.size(); ++i) launch_next();
    deadline_.expires_after(std::chrono::nanoseconds(std::llround(std::max(opts_.timeout_s, 30.0) * 1e9)));
    deadline_.async_wait([this](const error_code& ec) {
      if (ec || ready_) return;
      // Setup took too long: whatever is not open by now counts as failed.
      const std::size_t launched = next_;
      next_ = conns_.size();
      failed_ += conns_.size() - launched;
      for (std::size_t i = 0; i < launched; ++i) {
        if (!conns_[i]->settled) give_up(i);
      }
      on_all_settled();
    });
    io_.run();
    const double setup_s = std::chrono::duration<double>(ready_at_ - started_at_).count();
    if (opts_.json) {
      std::printf(
          "{\n  \"mode\": \"hold\",\n  \"requested\": %zu,\n  \"opened\": %zu,\n  \"failed\": %zu,\n"
          "  \"closed_by_server_while_held\": %zu,\n  \"setup_s\": %.3f,\n  \"held_s\": %.3f\n}\n",
          conns_.size(), opened_, failed_, closed_by_peer_, setup_s, opts_.duration_s);
    } else {
      std::printf("fairdraw_loadgen: hold %zu connections: %zu opened (GET /healthz 200 on each), %zu failed, "
                  "%zu closed by the server while held; setup %.2f s, held %.1f s\n",
                  conns_.size(), opened_, failed_, closed_by_peer_, setup_s, opts_.duration_s);
    }
    return failed_ == 0 && closed_by_peer_ == 0 ? 0 : 1;
  }

 private:
  static constexpr std::size_t max_in_progress = 256;

  struct held {
    explicit held(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    std::string in = std::string(4096, '\0');
    std::size_t len = 0;
    bool settled = false;
  };

  void launch_next() {
    const std::size_t i = next_++;
    conns_[i] = std::make_unique<held>(io_);
    conns_[i]->socket.async_connect(endpoint_, [this, i](const error_code& ec) {
      if (ec) return give_up(i);
      asio::async_write(conns_[i]->socket, asio::buffer(request_), [this, i](const error_code& wec, std::size_t) {
        if (wec) return give_up(i);
        read_response(i);
      });
    });
  }

  void read_response(std::size_t i) {
    auto& c = *conns_[i];
    c.socket.async_read_some(asio::buffer(c.in.data() + c.len, c.in.size() - c.len),
                             [this, i](const error_code& ec, std::size_t n) {
                               if (ec) return give_up(i);
                               auto& h = *conns_[i];
                               h.len += n;
                               response_head head;
                               const auto r = parse_head(std::string_view(h.in.data(), h.len), head);
                               if (r == parse_result::bad || (r == parse_result::incomplete && h.len == h.in.size())) {
                                 return give_up(i);
                               }
                               if (r == parse_result::incomplete || h.len < head.head_size + head.content_length) {
                                 return read_response(i);
                               }
                               if (head.status != 200 || !head.keep_alive) return give_up(i);
                               ++opened_;
                               settle(i);
                               watch_idle(i);
                             });
  }

  // An idle connection has a read pending: if the server closes it, we learn here.
  void watch_idle(std::size_t i) {
    auto& c = *conns_[i];
    c.socket.async_read_some(asio::buffer(c.in.data(), c.in.size()), [this](const error_code& ec, std::size_t) {
      if (closing_) return;
      if (ec) ++closed_by_peer_;
      // Anything else (unsolicited bytes) is ignored; the connection stays counted as open.
    });
  }

  void give_up(std::size_t i) {
    auto& c = *conns_[i];
    if (c.settled) return;
    error_code ignored;
    c.socket.close(ignored);
    ++failed_;
    settle(i);
  }

  void settle(std::size_t i) {
    conns_[i]->settled = true;
    if (ready_) return;
    ++settled_count_;
    if (next_ < conns_.size()) launch_next();
    if (settled_count_ == conns_.size()) on_all_settled();
  }

  void on_all_settled() {
    if (ready_) return;
    ready_ = true;
    ready_at_ = clock_type::now();
    deadline_.cancel();
    std::fprintf(stderr, "ready opened=%zu failed=%zu\n", opened_, failed_);
    std::fflush(stderr);
    hold_timer_.expires_after(std::chrono::nanoseconds(std::llround(opts_.duration_s * 1e9)));
    hold_timer_.async_wait([this](const error_code&) {
      closing_ = true;
      error_code ignored;
      for (auto& c : conns_) {
        if (c) c->socket.close(ignored);
      }
    });
  }

  const options& opts_;
  asio::io_context io_{1};
  tcp::endpoint endpoint_;
  asio::steady_timer deadline_;
  asio::steady_timer hold_timer_;
  std::string request_;
  std::vector<std::unique_ptr<held>> conns_;
  std::size_t next_ = 0;
  std::size_t settled_count_ = 0;
  std::size_t opened_ = 0;
  std::size_t failed_ = 0;
  std::size_t closed_by_peer_ = 0;
  bool ready_ = false;
  bool closing_ = false;
  time_point started_at_{};
  time_point ready_at_{};
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse_options(argc, argv);
  if (o.hold_connections > 0) {
    hold_run h(o);
    return h.run();
  }
  return run_open_loop(o);
}

// Helpers for the hostile-client tests: raw connections, honest load, probes, report.
#include "hostile_support.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace fairdraw::test::hostile {

using namespace std::chrono_literals;

bool clustered_run() {
  const char* mode = std::getenv("FAIRDRAW_TEST_MODE");
  return mode != nullptr && std::string_view(mode) == "clustered";
}

std::size_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  return static_cast<std::size_t>(lim.rlim_cur);
}

RawConn::~RawConn() { close(); }

RawConn::RawConn(RawConn&& other) noexcept
    : fd_(other.fd_), peer_closed_(other.peer_closed_), received_(std::move(other.received_)) {
  other.fd_ = -1;
}

RawConn& RawConn::operator=(RawConn&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    peer_closed_ = other.peer_closed_;
    received_ = std::move(other.received_);
    other.fd_ = -1;
  }
  return *this;
}

bool RawConn::connect(std::uint16_t port, int source_octet, int rcvbuf) {
  close();
  peer_closed_ = false;
  received_.clear();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds the blocking connect
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_port = 0;
  src.sin_addr.s_addr = htonl(0x7F000000U | static_cast<std::uint32_t>(source_octet & 0xFF));
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0 ||
      ::connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0) {
    ::close(fd);
    return false;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  fd_ = fd;
  return true;
}

long RawConn::send_some(std::string_view bytes) {
  if (fd_ < 0 || peer_closed_) return -1;
  const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return static_cast<long>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
  peer_closed_ = true;
  return -1;
}

bool RawConn::poll_closed() {
  if (fd_ < 0) return true;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      // Keep the beginning only: enough to see what the server answered.
      if (received_.size() < 65536) received_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) {
      peer_closed_ = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) peer_closed_ = true;
    break;
  }
  return peer_closed_;
}

long RawConn::recv_some(std::string& out) {
  if (fd_ < 0 || peer_closed_) return -1;
  char buf[65536];
  long total = 0;
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      total += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      peer_closed_ = true;
      return total > 0 ? total : -1;
    }
    return total;
  }
}

void RawConn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::vector<RawConn> open_many(std::uint16_t port, std::size_t count, int first_octet, std::size_t per_address) {
  std::vector<RawConn> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const int octet = first_octet + static_cast<int>(i / std::max<std::size_t>(1, per_address));
    RawConn c;
    if (c.connect(port, octet)) out.push_back(std::move(c));
  }
  return out;
}

HonestLoad::HonestLoad(std::uint16_t port, std::string activity_id, int threads, std::chrono::milliseconds pause)
    : samples_(static_cast<std::size_t>(threads)),
      failures_(static_cast<std::size_t>(threads), 0),
      first_failure_(static_cast<std::size_t>(threads)) {
  for (int t = 0; t < threads; ++t) {
    threads_.emplace_back([this, port, activity_id, pause, t] {
      const auto slot = static_cast<std::size_t>(t);
      HttpClient client(port, 5000ms);
      for (std::size_t i = 0; !stop_.load(); ++i) {
        const auto started = std::chrono::steady_clock::now();
        const HttpResponse r =
            post_draw(client, activity_id, "honest-" + std::to_string(t) + "-" + std::to_string(i));
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
        samples_[slot].push_back(ms);
        if (ms > 300 && std::getenv("FAIRDRAW_HOSTILE_DEBUG") != nullptr) {
          std::fprintf(stderr, "[hostile] slow honest draw: thread %d #%zu %.1f ms (status %d) at +%lld ms\n", t, i, ms,
                       r.status,
                       static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  started.time_since_epoch()).count() % 100000));
        }
        if (r.status != 200) {
          if (failures_[slot]++ == 0) first_failure_[slot] = r.describe().substr(0, 600);
          client.close();
        }
        std::this_thread::sleep_for(pause);
      }
    });
  }
}

HonestLoad::~HonestLoad() { stop(); }

LatencyStats HonestLoad::stop() {
  LatencyStats s;
  if (!stopped_) {
    stop_.store(true);
    for (auto& t : threads_) t.join();
    stopped_ = true;
  }
  std::vector<double> all;
  for (std::size_t i = 0; i < samples_.size(); ++i) {
    all.insert(all.end(), samples_[i].begin(), samples_[i].end());
    s.failures += failures_[i];
    if (s.first_failure.empty()) s.first_failure = first_failure_[i];
  }
  s.requests = all.size();
  if (all.empty()) return s;
  std::sort(all.begin(), all.end());
  auto at = [&all](double q) {
    const auto i = static_cast<std::size_t>(q * static_cast<double>(all.size() - 1) + 0.5);
    return all[std::min(i, all.size() - 1)];
  };
  s.p50_ms = at(0.50);
  s.p99_ms = at(0.99);
  s.max_ms = all.back();
  return s;
}

nlohmann::json honest_activity() {
  return activity_json("honest", 9, {prize_json("p", 1, 100'000'000)});
}

nlohmann::json hostile_config(nlohmann::json overrides) {
  nlohmann::json config = {{"activities", {{"honest", honest_activity()}}}};
  config.merge_patch(overrides);
  return config;
}

std::optional<double> metric_value(const std::string& text, std::string_view prefix) {
  std::size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const std::size_t end = text.find('\n', pos);
      const std::string line = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      const std::size_t space = line.rfind(' ');
      if (space != std::string::npos) {
        try {
          return std::stod(line.substr(space + 1));
        } catch (...) {
          return std::nullopt;
        }
      }
    }
    pos += prefix.size();
  }
  return std::nullopt;
}

std::optional<double> state_metric(std::uint16_t port, std::string_view name) {
  HttpClient c(port, 5000ms);
  const HttpResponse r = c.get("/metrics");
  if (r.status != 200) return std::nullopt;
  return metric_value(r.body, "fairdraw_state{name=\"" + std::string(name) + "\"}");
}

std::size_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return static_cast<std::size_t>(std::strtoull(line.c_str() + 6, nullptr, 10));
  }
  return 0;
}

double p99_bound_ms() {
  if (const char* v = std::getenv("FAIRDRAW_HOSTILE_P99_MS"); v != nullptr && *v != '\0') {
    const double d = std::strtod(v, nullptr);
    if (d > 0) return d;
  }
  return 500.0;
}

void report(std::string_view attack, const LatencyStats& stats, std::string_view extra) {
  char line[512];
  std::snprintf(line, sizeof line, "[hostile] %-28.*s honest n=%zu failed=%zu p50=%.1fms p99=%.1fms max=%.1fms %.*s\n",
                static_cast<int>(attack.size()), attack.data(), stats.requests, stats.failures, stats.p50_ms,
                stats.p99_ms, stats.max_ms, static_cast<int>(extra.size()), extra.data());
  std::fputs(line, stdout);
  std::fflush(stdout);
  if (const char* path = std::getenv("FAIRDRAW_HOSTILE_REPORT"); path != nullptr && *path != '\0') {
    std::ofstream(path, std::ios::app) << line;
  }
  ::testing::Test::RecordProperty("honest_p99_ms", std::to_string(stats.p99_ms));
}

::testing::AssertionResult honest_kept_up(const LatencyStats& stats, std::size_t min_requests) {
  if (stats.failures > 0) {
    return ::testing::AssertionFailure() << stats.failures << " of " << stats.requests
                                         << " honest draws failed; first: " << stats.first_failure;
  }
  if (stats.requests < min_requests) {
    return ::testing::AssertionFailure() << "only " << stats.requests << " honest draws completed (expected at least "
                                         << min_requests << "): the server was starved";
  }
  if (stats.p99_ms > p99_bound_ms()) {
    return ::testing::AssertionFailure() << "honest p99 " << stats.p99_ms << " ms over the bound of " << p99_bound_ms()
                                         << " ms (FAIRDRAW_HOSTILE_P99_MS)";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace fairdraw::test::hostile

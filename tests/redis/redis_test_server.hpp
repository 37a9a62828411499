// Test fixtures for the Redis client: a private redis-server on a free loopback port
// (fork+exec, killed in the destructor) and an io_context run on two threads.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#pragma GCC diagnostic pop

#include <gtest/gtest.h>

namespace fairdraw::redis::test {

inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

inline bool redis_server_available() { return ::access(kRedisServer, X_OK) == 0; }

// Polls `done` every 10 ms until true or `timeout`; a last look at the deadline.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// Binds port 0 and lets it go: the port is then free unless someone races us for it.
inline std::uint16_t pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

class RedisTestServer {
 public:
  // extra_args e.g. {"--requirepass", "secret"}.
  explicit RedisTestServer(std::vector<std::string> extra_args = {})
      : port_(pick_free_port()), extra_args_(std::move(extra_args)) {
    start();
  }
  ~RedisTestServer() { kill(); }
  RedisTestServer(const RedisTestServer&) = delete;
  RedisTestServer& operator=(const RedisTestServer&) = delete;

  std::uint16_t port() const { return port_; }
  bool running() const { return pid_ > 0; }

  // Starts redis-server on port() and waits (at most 5 s) until it answers PING.
  bool start() {
    if (pid_ > 0 || port_ == 0) return pid_ > 0;
    std::vector<std::string> args{kRedisServer, "--port",     std::to_string(port_), "--bind", "127.0.0.1",
                                  "--save",     "",           "--appendonly",        "no",     "--daemonize",
                                  "no",         "--enable-debug-command", "local"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    // Everything the child needs is prepared before fork: other threads may hold locks,
    // so the child only does async-signal-safe calls until exec.
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      const int null_fd = ::open("/dev/null", O_RDWR);
      if (null_fd >= 0) {
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(null_fd, STDOUT_FILENO);
        ::dup2(null_fd, STDERR_FILENO);
      }
      ::execv(kRedisServer, argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (answers_ping()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill();
    return false;
  }

  // SIGKILL: the server gets no chance to close connections gracefully.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

 private:
  // PONG, or NOAUTH from a server with --requirepass: either way it is serving.
  bool answers_ping() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    timeval tv{0, 200000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
      char buf[64];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      ok = n > 0 && (buf[0] == '+' || buf[0] == '-');
    }
    ::close(fd);
    return ok;
  }

  std::uint16_t port_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = 0;
};

// An io_context on two threads. The destructor lets pending work drain (bounded: 3 s,
// then it stops the context and fails the test) and joins.
class IoThreads {
 public:
  IoThreads() : guard_(boost::asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) {
      threads_.emplace_back([this] {
        io_.run();
        ++finished_;
      });
    }
  }
  ~IoThreads() {
    guard_.reset();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (finished_.load() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (finished_.load() < 2) {
      ADD_FAILURE() << "io_context did not drain after close()";
      io_.stop();
    }
    for (auto& t : threads_) t.join();
  }
  IoThreads(const IoThreads&) = delete;
  IoThreads& operator=(const IoThreads&) = delete;

  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
  std::atomic<int> finished_{0};
};

}  // namespace fairdraw::redis::test

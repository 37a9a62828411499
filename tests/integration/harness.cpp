// The fairdraw process harness: fork+exec with a generated config and environment, bounded readiness and exit waits, log capture.
#include "harness.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

extern char** environ;

namespace fairdraw::test {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

namespace {

using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Runs a shell command; its standard output in `out`; true when it exited 0.
bool run_capture(const std::string& command, std::string& out) {
  out.clear();
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return false;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Forks and execs argv with stdout and stderr appended to log_path; -1 on failure.
pid_t spawn(const std::vector<std::string>& args, const std::string& log_path, const std::string& cwd) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return -1;
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(127);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return child;
}

// Is a complete RESP value at buf[pos...]? Advances pos past it.
bool resp_complete(const std::string& buf, std::size_t& pos) {
  if (pos >= buf.size()) return false;
  const std::size_t eol = buf.find("\r\n", pos);
  if (eol == std::string::npos) return false;
  const char type = buf[pos];
  const long long n = std::strtoll(buf.c_str() + pos + 1, nullptr, 10);
  pos = eol + 2;
  if (type == '$') {
    if (n < 0) return true;
    if (buf.size() < pos + static_cast<std::size_t>(n) + 2) return false;
    pos += static_cast<std::size_t>(n) + 2;
    return true;
  }
  if (type == '*') {
    for (long long i = 0; i < n; ++i) {
      if (!resp_complete(buf, pos)) return false;
    }
  }
  return true;
}

std::string pg_bin_dir() {
  std::string found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (::access((entry.path() / "bin/psql").c_str(), X_OK) == 0) {
      const std::string dir = (entry.path() / "bin").string();
      if (found.empty() || dir > found) found = dir;
    }
  }
  return found;
}

}  // namespace

bool clustered_mode() {
  const char* mode = std::getenv("FAIRDRAW_TEST_MODE");
  return mode != nullptr && std::string_view(mode) == "clustered";
}

// ---- RedisProcess -------------------------------------------------------------------------

RedisProcess::RedisProcess(std::string dir, std::vector<std::string> extra_args)
    : dir_(std::move(dir)), extra_args_(std::move(extra_args)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
}

RedisProcess::~RedisProcess() { kill9(); }

bool RedisProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

::testing::AssertionResult RedisProcess::start(std::chrono::milliseconds wait) {
  if (running()) return ::testing::AssertionFailure() << "redis-server is already running";
  if (::access("/usr/bin/redis-server", X_OK) != 0) {
    return ::testing::AssertionFailure() << "/usr/bin/redis-server is missing (apt-get install redis-server)";
  }
  // The port is chosen once: a restart must come back where the clients reconnect.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (port_ == 0 || attempt > 0) port_ = pick_free_port();
    std::vector<std::string> args = {"/usr/bin/redis-server", "--port", std::to_string(port_),
                                     "--bind", "127.0.0.1", "--dir", dir_, "--save", "",
                                     "--appendonly", "no", "--daemonize", "no",
                                     "--logfile", dir_ + "/redis.log"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    pid_ = spawn(args, dir_ + "/redis.out", dir_);
    if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline && running()) {
      // PONG; a server still loading its AOF answers -LOADING: wait for PONG.
      if (command({"PING"}, 500ms) == "+PONG\r\n") return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(20ms);
    }
    const bool died = !running();
    kill9();
    if (!died) break;  // alive but silent: another attempt would not help
  }
  return ::testing::AssertionFailure() << "redis-server did not answer PING on port " << port_ << ":\n"
                                       << read_file(dir_ + "/redis.log");
}

int RedisProcess::stop_sigterm(std::chrono::milliseconds wait) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return decode_wait_status(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  kill9();
  return -1;
}

void RedisProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string RedisProcess::command(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    std::string request = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) request += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (;;) {
        std::size_t pos = 0;
        if (resp_complete(reply, pos)) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
          reply.clear();
          break;
        }
        reply.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return reply;
}

// ---- the PostgreSQL of the run -----------------------------------------------------------

namespace pg {
namespace {

const std::string kScript = FAIRDRAW_SOURCE_DIR "/scripts/pg-test-server.sh";

struct State {
  std::mutex mutex;
  std::string dir;       // the cluster's directory
  std::string root;      // our temp dir when we own the server, else ""
  std::string log;       // the script's output
  std::uint16_t port = 0;
  bool up = false;
  std::string url;
  int schemas = 0;

  ~State() {
    if (root.empty()) return;  // shared (ctest fixture): stopped by the fixture
    std::string ignored;
    run_capture("timeout 60 bash " + shell_quote(kScript) + " stop " + shell_quote(dir) + " >>" +
                    shell_quote(log) + " 2>&1",
                ignored);
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }

  // The port of a server already running in `dir` (postmaster.pid line 4), or 0.
  std::uint16_t running_port() const {
    std::ifstream in(dir + "/data/postmaster.pid");
    std::string line;
    for (int i = 0; i < 4 && std::getline(in, line); ++i) {
    }
    const long value = std::strtol(line.c_str(), nullptr, 10);
    return value > 1024 && value < 65536 ? static_cast<std::uint16_t>(value) : 0;
  }

  ::testing::AssertionResult start_locked() {
    if (dir.empty()) {
      if (const char* shared = std::getenv("FAIRDRAW_TEST_PG_DIR"); shared != nullptr && *shared != '\0') {
        dir = shared;
        log = dir + ".log";
      } else {
        char tmpl[] = "/tmp/fairdraw-itpg-XXXXXX";
        const char* made = ::mkdtemp(tmpl);
        if (made == nullptr) return ::testing::AssertionFailure() << "mkdtemp failed";
        root = made;
        ::chmod(made, 0711);  // as root, the server runs as `postgres` and must reach root/pg
        dir = root + "/pg";
        log = root + "/script.out";
      }
    }
    std::string out;
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (attempt > 0 || port == 0) port = running_port();
      if (port == 0 || attempt > 0) {
        do {
          port = pick_free_port();
        } while (port != 0 && (port < 1024 || port == 5432));
      }
      if (run_capture("timeout 150 bash " + shell_quote(kScript) + " start " + shell_quote(dir) + " " +
                          std::to_string(port) + " >>" + shell_quote(log) + " 2>&1",
                      out)) {
        run_capture("bash " + shell_quote(kScript) + " url " + shell_quote(dir) + " " + std::to_string(port), url);
        up = url.rfind("postgresql://", 0) == 0;
        if (up) return ::testing::AssertionSuccess();
      }
    }
    return ::testing::AssertionFailure() << "scripts/pg-test-server.sh start " << dir << " failed:\n"
                                         << read_file(log);
  }
};

State& state() {
  static State s;
  return s;
}

}  // namespace

::testing::AssertionResult ensure() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  if (s.up) return ::testing::AssertionSuccess();
  if (pg_bin_dir().empty()) return ::testing::AssertionFailure() << "no PostgreSQL under /usr/lib/postgresql";
  return s.start_locked();
}

std::string base_url() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  return s.url;
}

bool query(const std::string& url, const std::string& sql, std::string& out) {
  return run_capture("timeout 30 " + pg_bin_dir() + "/psql -X -q -tA -v ON_ERROR_STOP=1 " + shell_quote(url) +
                         " -c " + shell_quote(sql) + " 2>&1",
                     out);
}

::testing::AssertionResult new_schema(std::string& url) {
  if (auto up = ensure(); !up) return up;
  State& s = state();
  std::string name;
  {
    std::lock_guard lock(s.mutex);
    name = "it_" + std::to_string(::getpid()) + "_" + std::to_string(++s.schemas);
  }
  const std::string base = base_url();
  std::string out;
  if (!query(base, "CREATE SCHEMA " + name, out)) {
    return ::testing::AssertionFailure() << "CREATE SCHEMA " << name << ": " << out;
  }
  url = base + "?options=-csearch_path%3D" + name;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult stop() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  std::string out;
  if (!run_capture("timeout 60 bash " + shell_quote(kScript) + " stop " + shell_quote(s.dir) + " 2>&1", out)) {
    return ::testing::AssertionFailure() << "pg-test-server.sh stop: " << out;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult start() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  std::string out;
  if (!run_capture("timeout 150 bash " + shell_quote(kScript) + " start " + shell_quote(s.dir) + " " +
                       std::to_string(s.port) + " 2>&1",
                   out)) {
    return ::testing::AssertionFailure() << "pg-test-server.sh start: " << out;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pg

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint16_t pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

Headers admin_headers() { return {{"Authorization", "Bearer " + std::string(kAdminToken)}}; }

// Clustered mode: the Redis and the PostgreSQL schema of one cluster (shared by its instances).
struct FairdrawServer::Backend {
  std::unique_ptr<RedisProcess> redis;
  std::string db_url;
};

FairdrawServer::FairdrawServer(nlohmann::json config, std::map<std::string, std::string> env)
    : config_(std::move(config)), env_(std::move(env)) {
  char tmpl[] = "/tmp/fairdraw-it-XXXXXX";
  if (const char* made = ::mkdtemp(tmpl)) dir_ = made;
  log_path_ = dir_ + "/server.log";
  // A test that sets up its own Redis (FAIRDRAW_REDIS_URL) manages its cluster itself.
  want_clustered_ = clustered_mode() && env_.count("FAIRDRAW_REDIS_URL") == 0;
}

void FairdrawServer::force_clustered(std::vector<std::string> redis_args) {
  want_clustered_ = true;
  redis_args_ = std::move(redis_args);
}

void FairdrawServer::share_backend(const FairdrawServer& other) {
  want_clustered_ = true;
  backend_ = other.backend_;
}

RedisProcess* FairdrawServer::redis() const { return backend_ ? backend_->redis.get() : nullptr; }

std::string FairdrawServer::database_url() const { return backend_ ? backend_->db_url : std::string(); }

::testing::AssertionResult FairdrawServer::prepare_backend() {
  auto backend = std::make_shared<Backend>();
  if (auto made = pg::new_schema(backend->db_url); !made) return made;
  backend->redis = std::make_unique<RedisProcess>(dir_ + "/redis", redis_args_);
  if (auto up = backend->redis->start(); !up) return up;
  backend_ = std::move(backend);
  return ::testing::AssertionSuccess();
}

FairdrawServer::~FairdrawServer() {
  if (pid_ > 0) kill9();
  if (::testing::Test::HasFailure()) {
    std::string text = log();
    constexpr std::size_t kTail = 20000;
    if (text.size() > kTail) text = "...\n" + text.substr(text.size() - kTail);
    std::fprintf(stderr, "---- fairdraw log (%s, kept) ----\n%s\n---- end of log ----\n", dir_.c_str(),
                 text.c_str());
  } else if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string FairdrawServer::log() const { return read_file(log_path_); }

std::optional<int> FairdrawServer::try_reap() {
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  const pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done != pid_) return std::nullopt;
  pid_ = -1;
  return decode_wait_status(status);
}

bool FairdrawServer::running() { return pid_ > 0 && !try_reap(); }

::testing::AssertionResult FairdrawServer::start(std::chrono::milliseconds wait) {
  if (dir_.empty()) return ::testing::AssertionFailure() << "mkdtemp failed";
  if (running()) return ::testing::AssertionFailure() << "the server is already running";
  port_ = pick_free_port();
  if (port_ == 0) return ::testing::AssertionFailure() << "no free port";
  ++starts_;

  if (want_clustered_ && !backend_) {
    if (auto ready = prepare_backend(); !ready) return ready;
  }

  const std::string listen = "127.0.0.1:" + std::to_string(port_);
  const std::string db_url = backend_ ? backend_->db_url : "sqlite:" + dir_ + "/fd.db";
  nlohmann::json config = {{"listen", listen},
                           {"admin_token", std::string(kAdminToken)},
                           {"log_level", "warn"},
                           {"database", {{"url", db_url}}}};
  // Entries a killed instance left pending are claimed after 2 s (default 30 s), so a test that
  // kill -9s and restarts sees its record complete soon after.
  if (backend_) config["redis"] = {{"url", backend_->redis->url()}, {"claim_idle_ms", 2000}};
  config.merge_patch(config_);
  const std::string config_path = dir_ + "/config.json";
  std::ofstream(config_path, std::ios::binary | std::ios::trunc) << config.dump(2) << "\n";

  // Environment: ours, without any FAIRDRAW_* of the test's own environment.
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos || text.rfind("FAIRDRAW_", 0) == 0) continue;
    env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  env["FAIRDRAW_LISTEN"] = listen;
  env["FAIRDRAW_DATABASE_URL"] = db_url;
  env["FAIRDRAW_ADMIN_TOKEN"] = std::string(kAdminToken);
  env["FAIRDRAW_LOG_LEVEL"] = "warn";
  if (backend_) env["FAIRDRAW_REDIS_URL"] = backend_->redis->url();
  for (const auto& [key, value] : env_) env[key] = value;
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string bin = FAIRDRAW_BIN;
  std::string flag = "--config";
  std::string path_arg = config_path;
  std::vector<char*> argv = {bin.data(), flag.data(), path_arg.data(), nullptr};

  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ::testing::AssertionFailure() << "cannot open " << log_path_;
  write_all(log_fd, "==== harness: start #" + std::to_string(starts_) + " on " + listen + " ====\n");

  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(log_fd);
    return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
  }
  if (child == 0) {
    // Async-signal-safe calls only from here on.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (::chdir(dir_.c_str()) != 0) ::_exit(127);
    ::execve(argv[0], argv.data(), envp.data());
    constexpr char kMsg[] = "harness: execve failed\n";
    [[maybe_unused]] const ssize_t ignored = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  pid_ = child;

  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (const auto status = try_reap()) {
      return ::testing::AssertionFailure()
             << "fairdraw exited with status " << *status << " before it was ready; log:\n"
             << log();
    }
    HttpClient probe(port_, 500ms);
    const HttpResponse r = probe.get("/healthz");
    if (r.status == 200) return ::testing::AssertionSuccess();
    last = r.describe();
    std::this_thread::sleep_for(50ms);
  }
  kill9();
  return ::testing::AssertionFailure() << "GET /healthz did not answer 200 within " << wait.count()
                                       << " ms (last: " << last << "); log:\n"
                                       << log();
}

int FairdrawServer::stop_sigterm(std::chrono::milliseconds wait) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < deadline) {
    if (const auto status = try_reap()) return *status;
    std::this_thread::sleep_for(10ms);
  }
  kill9();
  return -1;
}

void FairdrawServer::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::optional<double> metric(const FairdrawServer& server, const std::string& series) {
  HttpClient c = server.client(5000ms);
  const HttpResponse r = c.get("/metrics");
  if (r.status != 200) return std::nullopt;
  const std::string prefix = series + " ";
  std::size_t pos = 0;
  while ((pos = r.body.find(prefix, pos)) != std::string::npos) {
    if (pos == 0 || r.body[pos - 1] == '\n') return std::strtod(r.body.c_str() + pos + prefix.size(), nullptr);
    pos += prefix.size();
  }
  return std::nullopt;
}

std::int64_t pg_int(const FairdrawServer& server, const std::string& sql) {
  std::string out;
  if (!pg::query(server.database_url(), sql, out)) return -1;
  return std::strtoll(out.c_str(), nullptr, 10);
}

::testing::AssertionResult is_problem(const HttpResponse& r, int status, std::string_view type,
                                      bool require_instance) {
  auto fail = [&r](const std::string& what) {
    return ::testing::AssertionFailure() << what << "\nresponse:\n" << r.describe();
  };
  if (r.status != status) {
    return fail("expected status " + std::to_string(status) + " (" + std::string(type) + "), got " +
                std::to_string(r.status));
  }
  const auto content_type = r.header("content-type");
  if (!content_type || content_type->rfind("application/problem+json", 0) != 0) {
    return fail("Content-Type is not application/problem+json");
  }
  const nlohmann::json body = r.json();
  if (!body.is_object()) return fail("the body is not a JSON object");
  if (!body.contains("type") || body["type"] != type) {
    return fail("expected type \"" + std::string(type) + "\"");
  }
  if (!body.contains("title") || !body["title"].is_string()) return fail("title: missing or not a string");
  if (!body.contains("status") || body["status"] != status) return fail("status field differs");
  if (!body.contains("detail") || !body["detail"].is_string()) return fail("detail: missing or not a string");
  if (require_instance && (!body.contains("instance") || !body["instance"].is_string())) {
    return fail("instance: missing or not a string");
  }
  if (const auto id = r.header("x-request-id"); !id || id->empty()) return fail("no X-Request-Id");
  return ::testing::AssertionSuccess();
}

nlohmann::json prize_json(const std::string& id, std::int64_t weight, std::int64_t stock) {
  return {{"id", id}, {"name", id + " prize"}, {"weight", weight}, {"stock", stock}};
}

nlohmann::json activity_json(const std::string& name, std::int64_t miss_weight,
                             std::vector<nlohmann::json> prizes) {
  return {{"name", name}, {"miss_weight", miss_weight}, {"prizes", std::move(prizes)}};
}

HttpResponse post_draw(HttpClient& client, const std::string& activity_id, const std::string& user_id,
                       const std::optional<std::string>& key) {
  Headers headers;
  if (key) headers.emplace_back("Idempotency-Key", *key);
  return client.post_json("/draw", {{"activity_id", activity_id}, {"user_id", user_id}}, std::move(headers));
}

::testing::AssertionResult fetch_audit_trail(HttpClient& client, const std::string& activity_id,
                                             std::vector<nlohmann::json>& items, int page_size) {
  items.clear();
  std::optional<std::int64_t> after;
  for (int pages = 0; pages < 100000; ++pages) {
    std::string target = "/activities/" + activity_id + "/draws?limit=" + std::to_string(page_size);
    if (after) target += "&after_seq=" + std::to_string(*after);
    const HttpResponse r = client.get(target);
    if (r.status != 200) return ::testing::AssertionFailure() << "GET " << target << ":\n" << r.describe();
    const nlohmann::json body = r.json();
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array() || !body.contains("next")) {
      return ::testing::AssertionFailure() << "GET " << target << ": not {items, next}:\n" << r.describe();
    }
    for (const auto& item : body["items"]) items.push_back(item);
    if (body["next"].is_null()) return ::testing::AssertionSuccess();
    if (!body["next"].is_number_integer()) {
      return ::testing::AssertionFailure() << "GET " << target << ": next is not an integer:\n" << r.describe();
    }
    const std::int64_t next = body["next"].get<std::int64_t>();
    if (after && next <= *after) {
      return ::testing::AssertionFailure() << "GET " << target << ": next does not advance:\n" << r.describe();
    }
    after = next;
  }
  return ::testing::AssertionFailure() << "audit trail of " << activity_id << ": too many pages";
}

}  // namespace fairdraw::test

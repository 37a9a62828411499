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
#include <sstream>
#include <thread>

extern char** environ;

namespace fairdraw::test {
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

}  // namespace

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

FairdrawServer::FairdrawServer(nlohmann::json config, std::map<std::string, std::string> env)
    : config_(std::move(config)), env_(std::move(env)) {
  char tmpl[] = "/tmp/fairdraw-it-XXXXXX";
  if (const char* made = ::mkdtemp(tmpl)) dir_ = made;
  log_path_ = dir_ + "/server.log";
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

  const std::string listen = "127.0.0.1:" + std::to_string(port_);
  const std::string db_url = "sqlite:" + dir_ + "/fd.db";
  nlohmann::json config = {{"listen", listen},
                           {"admin_token", std::string(kAdminToken)},
                           {"log_level", "warn"},
                           {"database", {{"url", db_url}}}};
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

// The container setup, as far as it can be tested without a Docker engine: the compose files
// parse (Debian's docker-compose), the image starts fairdraw the way the tests do
// (`fairdraw --config FILE`, FILE shipped from config/ and valid), and the shipped configs serve.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "http_client.hpp"

namespace fairdraw::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string kSource = FAIRDRAW_SOURCE_DIR;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Runs a shell command: exit status and combined output.
int run(const std::string& command, std::string& out) {
  out.clear();
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string find_docker_compose() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    const std::string path = std::string(dir) + "/docker-compose";
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// The JSON array after `INSTRUCTION` on its own line of the Dockerfile (exec form).
json dockerfile_exec_form(const std::string& dockerfile, const std::string& instruction) {
  std::istringstream lines(dockerfile);
  std::string line;
  json found;
  while (std::getline(lines, line)) {
    if (line.rfind(instruction + " ", 0) == 0) found = json::parse(line.substr(instruction.size() + 1), nullptr, false);
  }
  return found;
}

// `fairdraw --check-config --config FILE` with only the given FAIRDRAW_* variables.
int check_config(const std::string& file, const std::map<std::string, std::string>& env, std::string& out) {
  std::string command = "env";
  for (const char* name : {"FAIRDRAW_LISTEN", "FAIRDRAW_DATABASE_URL", "FAIRDRAW_REDIS_URL", "FAIRDRAW_ADMIN_TOKEN",
                           "FAIRDRAW_THREADS", "FAIRDRAW_TEST_MODE", "FAIRDRAW_TEST_PG_DIR"}) {
    command += std::string(" -u ") + name;
  }
  for (const auto& [key, value] : env) command += " " + key + "='" + value + "'";
  return run(command + " " FAIRDRAW_BIN " --check-config --config '" + file + "'", out);
}

// The environment the clustered compose file gives fairdraw (its defaults).
std::map<std::string, std::string> compose_env() {
  return {{"FAIRDRAW_DATABASE_URL", "postgresql://fairdraw:fairdraw@postgres:5432/fairdraw"},
          {"FAIRDRAW_REDIS_URL", "redis://redis:6379/0"},
          {"FAIRDRAW_ADMIN_TOKEN", "change-me-admin-token"},
          {"FAIRDRAW_LISTEN", "0.0.0.0:8080"}};
}

TEST(DockerTest, ComposeFilesParse) {
  const std::string compose = find_docker_compose();
  if (compose.empty()) GTEST_SKIP() << "docker-compose is not installed (apt-get install docker-compose)";
  for (const char* file : {"docker-compose.yml", "docker-compose.clustered.yml"}) {
    std::string out;
    EXPECT_EQ(run("timeout 60 " + compose + " -f '" + kSource + "/docker/" + file + "' config -q", out), 0)
        << file << ":\n"
        << out;
  }
  std::string services;
  ASSERT_EQ(run("timeout 60 " + compose + " -f '" + kSource + "/docker/docker-compose.clustered.yml' config --services",
                services),
            0)
      << services;
  for (const char* service : {"redis", "postgres", "fairdraw1", "fairdraw2", "nginx"}) {
    EXPECT_NE(services.find(service), std::string::npos) << service << " missing:\n" << services;
  }
  // The resolved file: health-checked start order and Redis with AOF.
  std::string resolved;
  ASSERT_EQ(run("timeout 60 " + compose + " -f '" + kSource + "/docker/docker-compose.clustered.yml' config", resolved),
            0);
  std::size_t healthy = 0;
  for (std::size_t pos = 0; (pos = resolved.find("condition: service_healthy", pos)) != std::string::npos; ++pos) {
    ++healthy;
  }
  EXPECT_EQ(healthy, 6u) << "fairdraw1/2 wait for redis and postgres, nginx for fairdraw1/2:\n" << resolved;
  EXPECT_NE(resolved.find("appendonly"), std::string::npos) << resolved;
}

// The image runs `fairdraw --config /etc/fairdraw/X` (ENTRYPOINT + CMD, or the compose file's
// command), the command the harness runs; X is copied from config/X, which passes --check-config
// with the environment the container gets.
TEST(DockerTest, ContainerStartCommandIsTheTestedCommand) {
  const std::string dockerfile = slurp(kSource + "/docker/Dockerfile");
  ASSERT_FALSE(dockerfile.empty());
  EXPECT_EQ(dockerfile_exec_form(dockerfile, "ENTRYPOINT"), json::array({"/usr/local/bin/fairdraw"}));
  const json cmd = dockerfile_exec_form(dockerfile, "CMD");
  ASSERT_TRUE(cmd.is_array() && cmd.size() == 2 && cmd[0] == "--config") << cmd.dump();

  // The clustered compose file's command, in flow (JSON) form.
  const std::string compose = slurp(kSource + "/docker/docker-compose.clustered.yml");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(compose, m, std::regex(R"(\n\s*command:\s*(\[\s*"--config"[^\]]*\]))")))
      << "no fairdraw command in docker-compose.clustered.yml";
  const json compose_cmd = json::parse(m[1].str(), nullptr, false);
  ASSERT_TRUE(compose_cmd.is_array() && compose_cmd.size() == 2) << m[1].str();

  for (const auto& [args, env] : {std::pair{cmd, std::map<std::string, std::string>{{"FAIRDRAW_LISTEN", "0.0.0.0:8080"},
                                                 {"FAIRDRAW_DATABASE_URL", "sqlite:/var/lib/fairdraw/fairdraw.db"}}},
                                  std::pair{compose_cmd, compose_env()}}) {
    const std::string in_image = args[1].get<std::string>();
    ASSERT_EQ(in_image.rfind("/etc/fairdraw/", 0), 0u) << in_image;
    const std::string name = in_image.substr(std::string("/etc/fairdraw/").size());
    EXPECT_NE(dockerfile.find("COPY config/" + name + " " + in_image), std::string::npos)
        << "the Dockerfile does not ship config/" << name << " as " << in_image;
    const std::string file = kSource + "/config/" + name;
    ASSERT_EQ(::access(file.c_str(), R_OK), 0) << file;
    std::string out;
    EXPECT_EQ(check_config(file, env, out), 0) << name << ":\n" << out;
  }
}

TEST(DockerTest, WorkerSettingsAreConfigFieldsWithLimits) {
  const std::string file = kSource + "/config/fairdraw.clustered.json";
  auto env = compose_env();
  std::string out;
  ASSERT_EQ(check_config(file, env, out), 0) << out;
  EXPECT_NE(out.find("stream_batch"), std::string::npos) << out;
  EXPECT_NE(out.find("claim_idle_ms"), std::string::npos) << out;
  env["FAIRDRAW_REDIS_STREAM_BATCH"] = "0";
  EXPECT_EQ(check_config(file, env, out), 2) << out;
  EXPECT_NE(out.find("FAIRDRAW_REDIS_STREAM_BATCH"), std::string::npos) << out;
  env.erase("FAIRDRAW_REDIS_STREAM_BATCH");
  env["FAIRDRAW_REDIS_CLAIM_IDLE_MS"] = "99";
  EXPECT_EQ(check_config(file, env, out), 2) << out;
  EXPECT_NE(out.find("FAIRDRAW_REDIS_CLAIM_IDLE_MS"), std::string::npos) << out;
}

// The shipped config files serve as they are (the harness only replaces the addresses: listen,
// and in clustered mode the database and Redis URLs, through the environment as a container would).
TEST(DockerTest, ShippedConfigsServeTheDemoActivity) {
  std::vector<std::string> files = {"fairdraw.json"};
  if (clustered_mode()) files.push_back("fairdraw.clustered.json");
  for (const std::string& name : files) {
    SCOPED_TRACE(name);
    json config = json::parse(slurp(kSource + "/config/" + name), nullptr, false);
    ASSERT_TRUE(config.is_object());
    config.erase("listen");
    config.erase("admin_token");
    config.erase("database");
    config.erase("redis");
    FairdrawServer server(config);
    ASSERT_TRUE(server.start());
    HttpClient c = server.client();
    const HttpResponse r = c.get("/activities/demo");
    ASSERT_EQ(r.status, 200) << r.describe();
    const HttpResponse d = post_draw(c, "demo", "docker-user", std::string("docker-key-1"));
    EXPECT_EQ(d.status, 200) << d.describe();
    EXPECT_EQ(server.stop_sigterm(), 0);
  }
}

}  // namespace
}  // namespace fairdraw::test

// Test support: drive scripts/pg-test-server.sh and run one-off SQL against the
// PostgreSQL it starts (shared by the sink and stream-worker tests).
#pragma once

#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#ifndef FAIRDRAW_SOURCE_DIR
#error "FAIRDRAW_SOURCE_DIR must name the repository root"
#endif

namespace fairdraw::test {

// Debian 12's PostgreSQL: the tests that start their own server skip when it is missing.
inline constexpr const char* kInitdb = "/usr/lib/postgresql/15/bin/initdb";

// A port in 55432..59999 that binds on loopback right now (0: none found).
inline int pick_pg_port() {
  std::mt19937 rng(static_cast<unsigned>(::getpid()) ^
                   static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::uniform_int_distribution<int> dist(55432, 59999);
  for (int i = 0; i < 200; ++i) {
    const int port = dist(rng);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) continue;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    if (free) return port;
  }
  return 0;
}

// Runs the test-server script (bounded by timeout(1)); its output is appended to out_file.
inline bool run_pg_script(const std::string& args, const std::string& out_file) {
  const std::string cmd = "timeout 150 bash '" FAIRDRAW_SOURCE_DIR "/scripts/pg-test-server.sh' " +
                          args + " >>'" + out_file + "' 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// The script's standard output, trailing newline removed.
inline std::string pg_script_output(const std::string& args) {
  const std::string cmd = "timeout 30 bash '" FAIRDRAW_SOURCE_DIR "/scripts/pg-test-server.sh' " + args;
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

inline std::string read_text_file(const std::string& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  return text;
}

// One statement on its own connection: the first column of the first row as an
// integer, or -1 on any failure.
inline std::int64_t pg_query_int(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  std::int64_t value = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
      value = std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10);
    }
    PQclear(r);
  }
  PQfinish(c);
  return value;
}

inline bool pg_exec(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  bool ok = PQstatus(c) == CONNECTION_OK;
  if (ok) {
    PGresult* r = PQexec(c, sql.c_str());
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
  }
  PQfinish(c);
  return ok;
}

}  // namespace fairdraw::test

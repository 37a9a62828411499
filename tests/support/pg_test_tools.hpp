// Test support: drive scripts/pg-test-server.sh and run one-off SQL against the
// PostgreSQL it starts (shared by the sink and stream-worker tests).
#pragma once

#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#ifndef FAIRDRAW_SOURCE_DIR
#error "FAIRDRAW_SOURCE_DIR must name the repository root"
#endif

namespace fairdraw::test {

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

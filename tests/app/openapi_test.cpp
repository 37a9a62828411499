// docs/openapi.yaml documents exactly the route table: the same (method, path) pairs, both ways.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "fairdraw/app/router.hpp"

#ifndef FAIRDRAW_SOURCE_DIR
#error "FAIRDRAW_SOURCE_DIR must name the repository root"
#endif

namespace fairdraw::app {
namespace {

// One operation found under `paths:`.
struct Operation {
  std::string method;  // upper case, as in the route table
  std::string path;
  int line = 0;        // 1-based line of the method key
  bool has_security = false;
};

struct PathsSection {
  std::vector<Operation> operations;
  std::vector<std::string> problems;  // malformed or duplicate entries, with line numbers
  bool found = false;
};

std::size_t indentation(std::string_view line) {
  std::size_t n = 0;
  while (n < line.size() && line[n] == ' ') ++n;
  return n;
}

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "key:" or "key: value" -> "key" (quotes removed); a list item or a plain scalar -> "".
std::string key_of(std::string_view text) {
  text = trim_right(text);
  if (text.empty() || text.front() == '-') return {};
  std::string_view key;
  std::string_view rest;
  if (text.front() == '\'' || text.front() == '"') {
    const std::size_t close = text.find(text.front(), 1);
    if (close == std::string_view::npos) return {};
    key = text.substr(1, close - 1);
    rest = text.substr(close + 1);
  } else {
    std::size_t colon = text.find(':');
    while (colon != std::string_view::npos && colon + 1 < text.size() && text[colon + 1] != ' ') {
      colon = text.find(':', colon + 1);
    }
    if (colon == std::string_view::npos) return {};
    key = text.substr(0, colon);
    rest = text.substr(colon);
  }
  if (rest.empty() || rest.front() != ':' || (rest.size() > 1 && rest[1] != ' ')) return {};
  return std::string(key);
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// A small line-based reader for the `paths:` section (no YAML library here): path keys are
// indented 2 spaces, HTTP methods 4 spaces, an operation's own keys 6 spaces.
PathsSection read_paths(std::istream& in) {
  static const std::set<std::string> kMethods = {"get", "put", "post", "delete", "patch",
                                                 "head", "options", "trace"};
  PathsSection out;
  std::string raw;
  int number = 0;
  bool inside = false;
  std::string path;
  Operation* operation = nullptr;
  std::set<std::string> paths_seen;
  std::set<std::pair<std::string, std::string>> operations_seen;
  while (std::getline(in, raw)) {
    ++number;
    const std::string_view line = trim_right(raw);
    const std::size_t indent = indentation(line);
    const std::string_view text = line.substr(indent);
    const std::string where = "line " + std::to_string(number) + ": ";
    if (text.empty() || text.front() == '#') continue;
    if (text.front() == '\t') {
      out.problems.push_back(where + "tab in indentation (YAML allows spaces only)");
      continue;
    }
    if (indent == 0) {
      inside = trim_right(text) == "paths:";
      out.found = out.found || inside;
      path.clear();
      operation = nullptr;
      continue;
    }
    if (!inside) continue;
    if (indent == 2) {
      path = key_of(text);
      operation = nullptr;
      if (path.empty() || path.front() != '/') {
        out.problems.push_back(where + "expected a path key like '/draw:', got '" + std::string(text) + "'");
        path.clear();
      } else if (!paths_seen.insert(path).second) {
        out.problems.push_back(where + "path " + path + " is listed twice");
      }
    } else if (indent == 4 && !path.empty()) {
      const std::string key = key_of(text);
      operation = nullptr;
      if (!kMethods.count(key)) continue;  // description, parameters, summary, ...
      Operation op{upper(key), path, number, false};
      if (!operations_seen.insert({op.method, op.path}).second) {
        out.problems.push_back(where + op.method + " " + op.path + " is listed twice");
        continue;
      }
      out.operations.push_back(op);
      operation = &out.operations.back();
    } else if (indent == 6 && operation) {
      if (key_of(text) == "security") operation->has_security = true;
    } else if (indent < 4 && indent != 2) {
      out.problems.push_back(where + "unexpected indentation " + std::to_string(indent));
    }
  }
  return out;
}

PathsSection read_paths(const std::string& text) {
  std::istringstream in(text);
  return read_paths(in);
}

std::string openapi_path() { return std::string(FAIRDRAW_SOURCE_DIR) + "/docs/openapi.yaml"; }

// ---- the reader itself ------------------------------------------------------------------------

TEST(OpenApiTest, ReaderFindsMethodsUnderPaths) {
  const std::string yaml =
      "openapi: 3.1.0\n"
      "info:\n"
      "  title: x\n"
      "  get:\n"                      // not under paths: ignored
      "paths:\n"
      "  # a comment\n"
      "\n"
      "  /draw:\n"
      "    description: 'Other methods: 405'\n"
      "    post:\n"
      "      summary: one\n"
      "      responses:\n"
      "        '200':\n"
      "          description: ok\n"
      "  '/activities/{id}':\n"
      "    parameters:\n"
      "      - name: id\n"
      "    get:\n"
      "      security:\n"
      "        - adminToken: []\n"
      "    delete:\n"
      "      responses: {}\n"
      "components:\n"
      "  /not-a-path:\n"
      "    put:\n";
  const PathsSection section = read_paths(yaml);
  EXPECT_TRUE(section.found);
  EXPECT_TRUE(section.problems.empty()) << section.problems.front();
  ASSERT_EQ(section.operations.size(), 3U);
  const std::vector<std::tuple<std::string, std::string, bool>> expected = {
      {"POST", "/draw", false}, {"GET", "/activities/{id}", true}, {"DELETE", "/activities/{id}", false}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(section.operations[i].method, std::get<0>(expected[i]));
    EXPECT_EQ(section.operations[i].path, std::get<1>(expected[i]));
    EXPECT_EQ(section.operations[i].has_security, std::get<2>(expected[i]));
  }
}

TEST(OpenApiTest, ReaderReportsDuplicatesAndStrayKeys) {
  const std::string yaml =
      "paths:\n"
      "  /draw:\n"
      "    post: {}\n"
      "    post: {}\n"
      "  /draw:\n"
      "  draw:\n";
  const PathsSection section = read_paths(yaml);
  EXPECT_EQ(section.problems.size(), 3U) << "duplicate method, duplicate path, key without '/'";
}

// ---- the real document ------------------------------------------------------------------------

TEST(OpenApiTest, DocumentMatchesRouteTable) {
  std::ifstream file(openapi_path());
  ASSERT_TRUE(file) << "cannot open " << openapi_path();
  const PathsSection doc = read_paths(file);
  ASSERT_TRUE(doc.found) << openapi_path() << " has no top-level 'paths:' section";
  for (const std::string& problem : doc.problems) ADD_FAILURE() << "docs/openapi.yaml " << problem;
  ASSERT_FALSE(doc.operations.empty()) << "no operations found under 'paths:'";

  std::map<std::pair<std::string, std::string>, const Operation*> documented;
  for (const Operation& op : doc.operations) documented[{op.method, op.path}] = &op;
  std::set<std::pair<std::string, std::string>> routed;
  for (const Route& route : routes()) {
    const std::pair<std::string, std::string> key{std::string(route.method), std::string(route.pattern)};
    routed.insert(key);
    if (!documented.count(key)) {
      ADD_FAILURE() << "route " << key.first << " " << key.second << " (" << route.name
                    << ") is in src/app/router.cpp but not in docs/openapi.yaml: add '  "
                    << key.second << ":' with '    " << lower(key.first) << ":' under paths";
    }
  }
  for (const auto& [key, op] : documented) {
    if (!routed.count(key)) {
      ADD_FAILURE() << "docs/openapi.yaml line " << op->line << " documents " << key.first << " "
                    << key.second << ", which src/app/router.cpp does not route "
                    << "(paths must be spelled exactly as the route patterns)";
    }
  }
  EXPECT_EQ(documented.size(), routes().size());
}

TEST(OpenApiTest, AdminOperationsDeclareSecurity) {
  std::ifstream file(openapi_path());
  ASSERT_TRUE(file) << "cannot open " << openapi_path();
  const PathsSection doc = read_paths(file);
  std::map<std::pair<std::string, std::string>, bool> admin;
  for (const Route& route : routes()) admin[{std::string(route.method), std::string(route.pattern)}] = route.admin;
  for (const Operation& op : doc.operations) {
    const auto it = admin.find({op.method, op.path});
    if (it == admin.end()) continue;  // reported by DocumentMatchesRouteTable
    EXPECT_EQ(op.has_security, it->second)
        << op.method << " " << op.path << " (line " << op.line << "): "
        << (it->second ? "an admin route needs 'security: [adminToken]'" : "a public route needs no security");
  }
}

}  // namespace
}  // namespace fairdraw::app

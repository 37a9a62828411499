// Route table and matching: every route matches with decoded params, 404 vs 405 (Allow), admin paths, strict segments.
#include "fairdraw/app/router.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fairdraw::app {
namespace {

using Kind = RouteMatch::Kind;

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::found: return "found";
    case Kind::not_found: return "not_found";
    case Kind::method_not_allowed: return "method_not_allowed";
  }
  return "?";
}

// One request and what the router must make of it.
struct MatchCase {
  std::string method;
  std::string path;
  Endpoint endpoint;
  std::vector<std::string> params;
};

TEST(RouterTest, EveryRouteMatchesWithDecodedParams) {
  const std::vector<MatchCase> cases = {
      {"POST", "/draw", Endpoint::draw, {}},
      {"POST", "/tokens", Endpoint::issue_token, {}},
      {"GET", "/activities", Endpoint::list_activities, {}},
      {"GET", "/activities/spring-2024", Endpoint::get_activity, {"spring-2024"}},
      {"GET", "/activities/a%20b", Endpoint::get_activity, {"a b"}},
      {"GET", "/activities/a%2Fb/fairness", Endpoint::fairness, {"a/b"}},
      {"GET", "/activities/x.y_z~1/draws", Endpoint::audit_trail, {"x.y_z~1"}},
      {"GET", "/draws/01ARZ3NDEKTSV4RRFFQ69G5FAV", Endpoint::get_draw, {"01ARZ3NDEKTSV4RRFFQ69G5FAV"}},
      {"GET", "/users/%E2%9C%93/draws", Endpoint::user_draws, {"\xE2\x9C\x93"}},
      {"GET", "/users/a+b/draws", Endpoint::user_draws, {"a+b"}},  // '+' is not a space in paths
      {"GET", "/users/100%25/draws", Endpoint::user_draws, {"100%"}},
      {"GET", "/users/bad%zz/draws", Endpoint::user_draws, {"bad%zz"}},  // malformed escape kept
      {"PUT", "/admin/activities/act%3A1", Endpoint::put_activity, {"act:1"}},
      {"DELETE", "/admin/activities/act1", Endpoint::delete_activity, {"act1"}},
      {"GET", "/healthz", Endpoint::healthz, {}},
      {"GET", "/readyz", Endpoint::readyz, {}},
      {"GET", "/metrics", Endpoint::metrics, {}},
  };
  std::set<Endpoint> covered;
  for (const MatchCase& c : cases) {
    SCOPED_TRACE(c.method + " " + c.path);
    const RouteMatch m = match_route(c.method, c.path);
    ASSERT_EQ(m.kind, Kind::found) << "got " << kind_name(m.kind);
    ASSERT_NE(m.route, nullptr);
    EXPECT_EQ(m.route->endpoint, c.endpoint) << "matched pattern " << m.route->pattern;
    EXPECT_EQ(m.route->method, c.method);
    EXPECT_EQ(m.params, c.params);
    covered.insert(c.endpoint);
  }
  EXPECT_EQ(covered.size(), routes().size()) << "the cases above must cover every route";
}

// Replaces each "{name}" segment of a pattern with `value`.
std::string instantiate(std::string_view pattern, std::string_view value) {
  std::string out;
  std::size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] == '{') {
      const std::size_t close = pattern.find('}', i);
      out += value;
      i = close + 1;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

TEST(RouterTest, EachTableRouteFindsItself) {
  for (const Route& route : routes()) {
    SCOPED_TRACE(std::string(route.method) + " " + std::string(route.pattern));
    const std::string path = instantiate(route.pattern, "p%41");
    const RouteMatch m = match_route(route.method, path);
    ASSERT_EQ(m.kind, Kind::found) << "path " << path << " got " << kind_name(m.kind);
    EXPECT_EQ(m.route, &route);
    for (const std::string& p : m.params) EXPECT_EQ(p, "pA") << "params are percent-decoded";
    EXPECT_EQ(m.admin_path, route.admin);
  }
}

TEST(RouterTest, TableIsConsistent) {
  std::set<std::string_view> names;
  std::set<Endpoint> endpoints;
  std::set<std::pair<std::string_view, std::string_view>> keys;
  for (const Route& route : routes()) {
    SCOPED_TRACE(std::string(route.method) + " " + std::string(route.pattern));
    EXPECT_TRUE(names.insert(route.name).second) << "duplicate metrics name " << route.name;
    EXPECT_TRUE(endpoints.insert(route.endpoint).second) << "endpoint routed twice";
    EXPECT_TRUE(keys.insert({route.method, route.pattern}).second) << "duplicate route";
    ASSERT_FALSE(route.pattern.empty());
    EXPECT_EQ(route.pattern.front(), '/');
    EXPECT_NE(route.pattern.back(), '/') << "patterns have no trailing slash";
    EXPECT_EQ(route.admin, route.pattern.starts_with("/admin/"))
        << "admin flag must follow the /admin/ prefix";
  }
}

// A known path with another method: 405 and the Allow list.
struct NotAllowedCase {
  std::string method;
  std::string path;
  std::string allow;
  bool admin_path;
};

TEST(RouterTest, KnownPathOtherMethodIs405WithAllow) {
  const std::vector<NotAllowedCase> cases = {
      {"GET", "/draw", "POST", false},
      {"PUT", "/draw", "POST", false},
      {"GET", "/tokens", "POST", false},
      {"POST", "/activities", "GET", false},
      {"DELETE", "/activities/a", "GET", false},
      {"POST", "/activities/a/fairness", "GET", false},
      {"PUT", "/activities/a/draws", "GET", false},
      {"DELETE", "/draws/01ARZ3NDEKTSV4RRFFQ69G5FAV", "GET", false},
      {"POST", "/users/u/draws", "GET", false},
      {"GET", "/admin/activities/a", "PUT, DELETE", true},
      {"POST", "/admin/activities/a", "PUT, DELETE", true},
      {"OPTIONS", "/admin/activities/a", "PUT, DELETE", true},
      {"OPTIONS", "/draw", "POST", false},
      {"HEAD", "/healthz", "GET", false},
      {"POST", "/readyz", "GET", false},
      {"POST", "/metrics", "GET", false},
      {"get", "/healthz", "GET", false},  // methods are case-sensitive
  };
  for (const NotAllowedCase& c : cases) {
    SCOPED_TRACE(c.method + " " + c.path);
    const RouteMatch m = match_route(c.method, c.path);
    EXPECT_EQ(m.kind, Kind::method_not_allowed) << "got " << kind_name(m.kind);
    EXPECT_EQ(m.route, nullptr);
    EXPECT_TRUE(m.params.empty());
    EXPECT_EQ(m.allow, c.allow);
    EXPECT_EQ(m.admin_path, c.admin_path);
  }
}

TEST(RouterTest, FoundRouteAlsoReportsAllow) {
  const RouteMatch put = match_route("PUT", "/admin/activities/a");
  ASSERT_EQ(put.kind, Kind::found);
  EXPECT_EQ(put.allow, "PUT, DELETE") << "preflight needs every method of the path";
  EXPECT_TRUE(put.admin_path);
  const RouteMatch draw = match_route("POST", "/draw");
  ASSERT_EQ(draw.kind, Kind::found);
  EXPECT_EQ(draw.allow, "POST");
  EXPECT_FALSE(draw.admin_path);
}

TEST(RouterTest, UnknownPathsAre404) {
  const std::vector<std::string> paths = {
      "",
      "/",
      "draw",                        // no leading slash
      "/nope",
      "/draws",                      // only /draws/{draw_id}
      "/admin",
      "/admin/activities",           // only /admin/activities/{id}
      "/activities/a/b",
      "/activities/a/draws/extra",
      "/users/u",
      "/users/u/draws/1",
      "/DRAW",                       // literal segments are case-sensitive
      "/dr%61w",                     // literal segments are not decoded
      // trailing slashes
      "/draw/",
      "/activities/",
      "/activities/a/",
      "/activities/a/draws/",
      "/admin/activities/a/",
      "/healthz/",
      // empty segments
      "//draw",
      "/activities//draws",
      "/activities//fairness",
      "/users//draws",
      "/draws/",
      "/admin//activities/a",
      "/admin/activities/",
  };
  for (const std::string& path : paths) {
    for (const std::string_view method : {"GET", "POST", "PUT", "DELETE"}) {
      SCOPED_TRACE(std::string(method) + " '" + path + "'");
      const RouteMatch m = match_route(method, path);
      EXPECT_EQ(m.kind, Kind::not_found) << "got " << kind_name(m.kind) << " allow '" << m.allow << "'";
      EXPECT_EQ(m.route, nullptr);
      EXPECT_TRUE(m.allow.empty());
      EXPECT_FALSE(m.admin_path);
    }
  }
}

TEST(RouterTest, QueryIsNotPartOfThePath) {
  // The server strips "?query" into Request::query; a path that still carries it is not a route.
  EXPECT_EQ(match_route("GET", "/activities?limit=1").kind, Kind::not_found);
}

}  // namespace
}  // namespace fairdraw::app

// Route matching over the route table; segments of "{name}" match one path segment.
#include "fairdraw/app/router.hpp"

#include <array>
#include <cstdlib>

#include "fairdraw/http/message.hpp"

namespace fairdraw::app {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  if (path.empty() || path.front() != '/') return parts;
  std::size_t start = 1;
  while (start <= path.size()) {
    const std::size_t end = path.find('/', start);
    const std::size_t stop = end == std::string_view::npos ? path.size() : end;
    parts.push_back(path.substr(start, stop - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

// A request path split in place, without allocating: it runs on every request.
// A path with more segments than any pattern matches nothing (too_long).
struct PathParts {
  static constexpr std::size_t kMax = 4;
  std::array<std::string_view, kMax> parts;
  std::size_t size = 0;
  bool too_long = false;

  explicit PathParts(std::string_view path) {
    if (path.empty() || path.front() != '/') return;
    std::size_t start = 1;
    while (start <= path.size()) {
      if (size == kMax) {
        too_long = true;
        return;
      }
      const std::size_t end = path.find('/', start);
      const std::size_t stop = end == std::string_view::npos ? path.size() : end;
      parts[size++] = path.substr(start, stop - start);
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
  }
};

// `wanted` is a pattern split once (see split_patterns); params are decoded
// only for a route that matches.
bool matches(const std::vector<std::string_view>& wanted, const PathParts& path, std::vector<std::string>* params) {
  if (path.too_long || wanted.size() != path.size) return false;
  const auto& parts = path.parts;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    const bool is_param = wanted[i].size() > 1 && wanted[i].front() == '{';
    if (is_param ? parts[i].empty() : wanted[i] != parts[i]) return false;
  }
  if (params) {
    params->clear();
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      if (wanted[i].size() > 1 && wanted[i].front() == '{') params->push_back(http::percent_decode(parts[i]));
    }
  }
  return true;
}

const std::vector<std::vector<std::string_view>>& split_patterns();

}  // namespace

const std::vector<Route>& routes() {
  static const std::vector<Route> table = {
      {"POST", "/draw", Endpoint::draw, "draw", false},
      {"POST", "/tokens", Endpoint::issue_token, "tokens", false},
      {"GET", "/activities", Endpoint::list_activities, "activities", false},
      {"GET", "/activities/{id}", Endpoint::get_activity, "activity", false},
      {"GET", "/activities/{id}/fairness", Endpoint::fairness, "fairness", false},
      {"GET", "/activities/{id}/draws", Endpoint::audit_trail, "audit_trail", false},
      {"GET", "/draws/{draw_id}", Endpoint::get_draw, "draw_by_id", false},
      {"GET", "/users/{user_id}/draws", Endpoint::user_draws, "user_draws", false},
      {"PUT", "/admin/activities/{id}", Endpoint::put_activity, "admin_put_activity", true},
      {"DELETE", "/admin/activities/{id}", Endpoint::delete_activity, "admin_delete_activity", true},
      {"GET", "/healthz", Endpoint::healthz, "healthz", false},
      {"GET", "/readyz", Endpoint::readyz, "readyz", false},
      {"GET", "/metrics", Endpoint::metrics, "metrics", false},
  };
  return table;
}

RouteMatch match_route(std::string_view method, std::string_view path) {
  RouteMatch result;
  const PathParts parts(path);
  const auto& table = routes();
  const auto& patterns = split_patterns();
  std::vector<std::string> params;
  for (std::size_t r = 0; r < table.size(); ++r) {
    const Route& route = table[r];
    if (!matches(patterns[r], parts, &params)) continue;
    result.admin_path = result.admin_path || route.admin;
    if (!result.allow.empty()) result.allow += ", ";
    result.allow += route.method;
    if (route.method == method && !result.route) {
      result.route = &route;
      result.params = std::move(params);
    }
  }
  if (result.route) {
    result.kind = RouteMatch::Kind::found;
  } else if (!result.allow.empty()) {
    result.kind = RouteMatch::Kind::method_not_allowed;
  }
  return result;
}

namespace {
// The route table's patterns, split once: matching runs on every request.
const std::vector<std::vector<std::string_view>>& split_patterns() {
  static const std::vector<std::vector<std::string_view>> patterns = [] {
    std::vector<std::vector<std::string_view>> out;
    for (const Route& route : routes()) {
      out.push_back(split_path(route.pattern));
      if (out.back().size() > PathParts::kMax) std::abort();  // PathParts::kMax must cover every pattern
    }
    return out;
  }();
  return patterns;
}
}  // namespace

}  // namespace fairdraw::app

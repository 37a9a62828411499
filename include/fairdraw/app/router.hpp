// The route table: method + path pattern -> endpoint. Data, so it can be
// listed (the OpenAPI document is checked against it) and so 404 and 405
// (with Allow) fall out of one lookup.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fairdraw::app {

enum class Endpoint {
  draw,
  issue_token,
  list_activities,
  get_activity,
  fairness,
  audit_trail,
  get_draw,
  user_draws,
  put_activity,
  delete_activity,
  healthz,
  readyz,
  metrics,
};

struct Route {
  std::string_view method;
  std::string_view pattern;  // "/activities/{id}/draws"
  Endpoint endpoint;
  std::string_view name;     // metrics label, e.g. "draw"
  bool admin;                // behind the admin token, never CORS
};

const std::vector<Route>& routes();

struct RouteMatch {
  enum class Kind { found, not_found, method_not_allowed } kind = Kind::not_found;
  const Route* route = nullptr;
  std::vector<std::string> params;  // percent-decoded path parameters, in order
  std::string allow;                // "GET, PUT" for 405 and preflight
  bool admin_path = false;          // the path is an admin route (any method)
};

RouteMatch match_route(std::string_view method, std::string_view path);

}  // namespace fairdraw::app

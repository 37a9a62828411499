// The endpoints. Each handler turns a Request into a Response (or, for a
// draw, into a Store call whose completion responds); every refusal goes
// through problem_response().
#include "fairdraw/app/api.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <memory>

#include "fairdraw/app/admin_guard.hpp"
#include "fairdraw/app/json_codec.hpp"
#include "fairdraw/app/log.hpp"
#include "fairdraw/app/problem.hpp"
#include "fairdraw/app/router.hpp"
#include "fairdraw/block_pool.hpp"
#include "fairdraw/engine/ulid.hpp"

namespace fairdraw::app {

using nlohmann::json;

namespace {

constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;
constexpr std::size_t kMaxUserIdBytes = 256;
constexpr std::size_t kMaxKeyLength = 128;

http::Response json_response(int status, const json& body) {
  http::Response response;
  response.status = status;
  response.content_type = "application/json";
  response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

Error bad_request(std::string detail) {
  return make_error(ErrorKind::invalid_request, std::move(detail));
}

bool is_json_media_type(std::string_view content_type) {
  // Compared in place, case-insensitively: this runs on every draw.
  const std::size_t semi = content_type.find(';');
  std::string_view type = content_type.substr(0, semi);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  auto iequal = [](std::string_view a, std::string_view lower) {
    return a.size() == lower.size() && std::equal(a.begin(), a.end(), lower.begin(), [](char x, char y) {
             return static_cast<char>(std::tolower(static_cast<unsigned char>(x))) == y;
           });
  };
  constexpr std::string_view kApplication = "application/";
  return iequal(type, "application/json") ||
         (type.size() > kApplication.size() && iequal(type.substr(0, kApplication.size()), kApplication) &&
          type.size() > 5 && iequal(type.substr(type.size() - 5), "+json"));
}

Result<json> parse_json_body(const http::Request& request) {
  const auto content_type = request.header("content-type");
  if (!content_type || !is_json_media_type(*content_type)) {
    return make_error(ErrorKind::unsupported_media_type,
                      "the body must be JSON (Content-Type: application/json)");
  }
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) return bad_request("the body is not valid JSON");
  if (!body.is_object()) return bad_request("the body must be a JSON object");
  return body;
}

// One field of a draw body, as the validation below needs it.
struct BodyField {
  enum class Kind { absent, null, string, integer, other } kind = Kind::absent;
  std::string_view text;    // kind == string (views the body or the parsed json)
  std::int64_t number = 0;  // kind == integer
};

struct DrawFields {
  BodyField activity_id;
  BodyField user_id;
  BodyField ts_ms;
  BodyField request_id;

  BodyField* named(std::string_view key) {
    if (key == "activity_id") return &activity_id;
    if (key == "user_id") return &user_id;
    if (key == "ts_ms") return &ts_ms;
    if (key == "request_id") return &request_id;
    return nullptr;
  }
};

// From the full parser's result; returns the first unknown key (in the
// parser's order, as the error message has always named it), if any.
std::optional<std::string> draw_fields_from_json(const json& body, DrawFields& out) {
  for (const auto& [key, value] : body.items()) {
    BodyField* field = out.named(key);
    if (field == nullptr) return key;
    if (value.is_null()) {
      field->kind = BodyField::Kind::null;
    } else if (value.is_string()) {
      field->kind = BodyField::Kind::string;
      field->text = value.get_ref<const std::string&>();
    } else if (value.is_number_integer()) {
      field->kind = BodyField::Kind::integer;
      field->number = value.get<std::int64_t>();
    } else {
      field->kind = BodyField::Kind::other;
    }
  }
  return std::nullopt;
}

// The fast path of every draw: a flat JSON object whose keys are the known
// ones, each at most once, and whose values are plain printable-ASCII strings
// without escapes, integers that fit in 63 bits, or null — what clients send.
// Reads it in place, with no allocation. Anything else (escapes, other types,
// duplicates, unknown keys, malformed JSON, another media type) returns false,
// and the full parser decides with its usual errors; so both paths agree.
bool scan_draw_body(const http::Request& request, DrawFields& out) {
  const auto content_type = request.header("content-type");
  if (!content_type || !is_json_media_type(*content_type)) return false;
  const std::string_view s = request.body;
  std::size_t i = 0;
  auto skip_ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  };
  auto plain_string = [&](std::string_view& text) {
    if (i >= s.size() || s[i] != '"') return false;
    const std::size_t start = ++i;
    while (i < s.size() && s[i] != '"') {
      if (s[i] < 0x20 || s[i] > 0x7E || s[i] == '\\') return false;
      ++i;
    }
    if (i >= s.size()) return false;
    text = s.substr(start, i - start);
    ++i;
    return true;
  };
  skip_ws();
  if (i >= s.size() || s[i] != '{') return false;
  ++i;
  skip_ws();
  if (i < s.size() && s[i] == '}') {
    ++i;
  } else {
    for (;;) {
      std::string_view key;
      if (!plain_string(key)) return false;
      BodyField* field = out.named(key);
      if (field == nullptr || field->kind != BodyField::Kind::absent) return false;
      skip_ws();
      if (i >= s.size() || s[i] != ':') return false;
      ++i;
      skip_ws();
      if (i >= s.size()) return false;
      if (s[i] == '"') {
        if (!plain_string(field->text)) return false;
        field->kind = BodyField::Kind::string;
      } else if (s.substr(i, 4) == "null") {
        i += 4;
        field->kind = BodyField::Kind::null;
      } else {
        // -?(0|[1-9][0-9]*), at most 18 digits, so it cannot overflow.
        const bool negative = s[i] == '-';
        if (negative) ++i;
        const std::size_t digits_start = i;
        std::int64_t value = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - digits_start < 18) {
          value = value * 10 + (s[i] - '0');
          ++i;
        }
        const std::size_t digits = i - digits_start;
        if (digits == 0 || (digits > 1 && s[digits_start] == '0')) return false;
        if (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != ',' &&
            s[i] != '}') {
          return false;  // a fraction, an exponent, more digits: the full parser's business
        }
        field->kind = BodyField::Kind::integer;
        field->number = negative ? -value : value;
      }
      skip_ws();
      if (i >= s.size()) return false;
      if (s[i] == ',') {
        ++i;
        skip_ws();
        continue;
      }
      if (s[i] != '}') return false;
      ++i;
      break;
    }
  }
  skip_ws();
  return i == s.size();
}

Result<std::size_t> parse_limit(const http::Request& request) {
  const auto value = request.query_param("limit");
  if (!value) return kDefaultLimit;
  std::size_t limit = 0;
  const auto* end = value->data() + value->size();
  auto [ptr, ec] = std::from_chars(value->data(), end, limit);
  if (ec != std::errc() || ptr != end || limit < 1 || limit > kMaxLimit) {
    return bad_request("limit: must be an integer between 1 and " + std::to_string(kMaxLimit));
  }
  return limit;
}

Result<std::int64_t> parse_int_param(const http::Request& request, std::string_view name,
                                     std::int64_t fallback) {
  const auto value = request.query_param(name);
  if (!value) return fallback;
  std::int64_t out = 0;
  const auto* end = value->data() + value->size();
  auto [ptr, ec] = std::from_chars(value->data(), end, out);
  if (ec != std::errc() || ptr != end) {
    return bad_request(std::string(name) + ": must be an integer");
  }
  return out;
}

bool is_visible_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7E; });
}

// A user id: 1..256 bytes, no control characters.
bool is_valid_user_id(std::string_view s) {
  return !s.empty() && s.size() <= kMaxUserIdBytes &&
         std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; });
}

// Metric labels must come from a closed set: a client could otherwise mint a
// new time series with every made-up method name.
std::string_view method_label(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
  for (std::string_view known : kKnown) {
    if (method == known) return known;
  }
  return "OTHER";
}

json page_json(json items, const std::optional<std::string>& next) {
  return {{"items", std::move(items)}, {"next", next ? json(*next) : json(nullptr)}};
}

}  // namespace

std::optional<std::string> parse_idempotency_key(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  std::string key;
  if (!value.empty() && value.front() == '"') {
    // Starts as a quoted string: it must be a complete one.
    if (value.size() < 2 || value.back() != '"') return std::nullopt;
    // Structured-field string (the IETF Idempotency-Key draft): \" and \\ escapes.
    const std::string_view inner = value.substr(1, value.size() - 2);
    for (std::size_t i = 0; i < inner.size(); ++i) {
      char c = inner[i];
      if (c == '\\') {
        if (i + 1 >= inner.size() || (inner[i + 1] != '"' && inner[i + 1] != '\\')) {
          return std::nullopt;
        }
        c = inner[++i];
      } else if (c == '"') {
        return std::nullopt;
      }
      key.push_back(c);
    }
  } else {
    key.assign(value);
  }
  if (key.empty() || key.size() > kMaxKeyLength || !is_visible_ascii(key)) return std::nullopt;
  return key;
}

bool admin_token_matches(std::string_view authorization, std::string_view admin_token) {
  constexpr std::string_view kScheme = "Bearer ";
  if (admin_token.empty() || authorization.size() < kScheme.size()) return false;
  std::string scheme(authorization.substr(0, kScheme.size()));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme != "bearer ") return false;
  const std::string_view presented = authorization.substr(kScheme.size());
  // Compare digests, so neither the content nor the length leaks through timing.
  unsigned char a[SHA256_DIGEST_LENGTH];
  unsigned char b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a);
  SHA256(reinterpret_cast<const unsigned char*>(admin_token.data()), admin_token.size(), b);
  return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

// What answering a request needs, whenever that happens (see finish()). For
// an answer given while handle() runs it views the request; a draw's
// PendingDraw points it at its own copies.
struct Api::Answer {
  http::Responder respond;
  std::chrono::steady_clock::time_point started;
  std::string_view route_name;    // a constant from the route table
  std::string_view method;        // method_label(): a constant
  std::string_view path;
  std::string_view request_id;
  std::string_view allow_origin;  // empty: no CORS headers
};

// A draw waiting for its outcome; whoever flips `answered` first responds. It
// outlives the request, so it keeps copies of what its Answer views (the
// request id, at most 128 bytes from the server, inline: no allocation).
struct Api::PendingDraw {
  std::atomic<bool> answered{false};
  std::chrono::steady_clock::time_point deadline;
  Answer answer;
  std::string path;
  std::string allow_origin;
  std::array<char, 128> request_id{};
  unsigned lane = 0;  // the connection's io thread

  void keep(Answer&& a) {
    answer = std::move(a);
    path.assign(answer.path);
    allow_origin.assign(answer.allow_origin);
    const std::size_t id_size = std::min(answer.request_id.size(), request_id.size());
    std::copy_n(answer.request_id.data(), id_size, request_id.data());
    answer.path = path;
    answer.allow_origin = allow_origin;
    answer.request_id = std::string_view(request_id.data(), id_size);
  }

  static std::shared_ptr<PendingDraw> make();

  // Answers once; the Responder goes with the answer, on this io thread.
  void finish(Api& api, http::Response response) {
    api.finish(answer, std::move(response));
    answer.respond = http::Responder();
  }
};

// A PendingDraw and its shared_ptr control block in one pooled block: one was
// allocated per draw. It is made on the io thread that reads the request and
// freed where the deadline list drops its weak_ptr, hence a pool shared by all
// threads. 1024 blocks cover ~200 ms of draws at 5000/s (expire_deadlines
// frees them every 20 ms).
std::shared_ptr<Api::PendingDraw> Api::PendingDraw::make() {
  struct Tag {};
  using Blocks = BlockPool<Tag, sizeof(PendingDraw) + 64, 1024>;
  return std::allocate_shared<PendingDraw>(BlockPoolAllocator<PendingDraw, Blocks>());
}

Api::Api(ApiContext context) : ctx_(std::move(context)) {
  if (const AuthConfig& a = ctx_.config.auth; a.admin_max_failures > 0) {
    admin_guard_ = std::make_shared<AdminGuard>(
        AdminGuardOptions{a.admin_max_failures, a.admin_lockout_s * 1000, a.admin_guard_max_addresses});
  }
}

void Api::expire_deadlines() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<PendingDraw>> late;
  {
    std::lock_guard lock(pending_mutex_);
    while (!pending_.empty()) {
      auto draw = pending_.front().lock();
      if (draw && draw->deadline > now) break;
      pending_.pop_front();
      if (draw) late.push_back(std::move(draw));
    }
  }
  for (auto& draw : late) {
    if (draw->answered.exchange(true)) continue;
    ctx_.metrics.count_draw("deadline_exceeded");
    draw->finish(*this, problem_response(
                            make_error(ErrorKind::unavailable,
                                       "the draw did not complete within the request deadline; retry with "
                                       "the same Idempotency-Key to get its outcome"),
                            draw->path));
  }
}

// Runs where the store completes the draw (the sink's writer thread), once per
// draw. The answer is queued for the io thread of the draw's connection, and
// only the draw that finds that queue empty posts to it, so the acks of one
// group commit share one post per io thread, and each response is written by
// the thread that builds it. The outcome waits here, not in the PendingDraw:
// the deadline list's weak_ptr keeps a PendingDraw's memory until its
// deadline, long after the answer.
void Api::queue_answer(const std::shared_ptr<PendingDraw>& draw, Result<DrawOutcome> outcome) {
  const unsigned lane = draw->lane % kAnswerLanes;
  AnswerQueue& queue = answer_lanes_[lane];
  bool wake = false;
  {
    std::lock_guard lock(queue.mutex);
    wake = queue.answers.empty();
    queue.answers.push_back(DrawAnswer{draw, std::move(outcome)});
  }
  if (!wake) return;
  if (ctx_.post_to) {
    ctx_.post_to(draw->lane, [this, lane] { answer_draws(lane); });
  } else {
    ctx_.post([this, lane] { answer_draws(lane); });
  }
}

// On an io thread: answers every draw queued so far. The queue's storage goes
// round between answers_, the batch and spare_answers_, so a steady load
// allocates none of it.
void Api::answer_draws(unsigned lane) {
  AnswerQueue& queue = answer_lanes_[lane];
  std::vector<DrawAnswer> batch;
  {
    std::lock_guard lock(queue.mutex);
    batch.swap(queue.answers);
    queue.answers.swap(queue.spare);
  }
  for (auto& [pending, outcome] : batch) {
    if (pending->answered.exchange(true)) continue;  // the deadline answered already
    if (!outcome.ok()) {
      ctx_.metrics.count_draw(problem_info(outcome.error().kind).type);
      pending->finish(*this, problem_response(outcome.error(), pending->path));
      continue;
    }
    const DrawOutcome& o = outcome.value();
    ctx_.metrics.count_draw(o.replayed ? "replayed" : (o.record.won ? "won" : "miss"));
    http::Response response;
    response.status = 200;
    response.content_type = "application/json";
    if (o.replayed) response.headers.emplace_back("Idempotent-Replayed", "true");
    response.body = draw_body(o.record);
    pending->finish(*this, std::move(response));
  }
  batch.clear();
  std::lock_guard lock(queue.mutex);
  if (queue.spare.capacity() < batch.capacity()) queue.spare.swap(batch);
}

// Decorates the response (CORS), records the request's metrics and log line,
// and hands the response to the Responder.
void Api::finish(const Answer& answer, http::Response response) {
  if (!answer.allow_origin.empty()) {
    response.set_header("Access-Control-Allow-Origin", std::string(answer.allow_origin));
    if (answer.allow_origin != "*") response.set_header("Vary", "Origin");
    response.set_header("Access-Control-Expose-Headers",
                        "X-Request-Id, Idempotent-Replayed, Retry-After, RateLimit, RateLimit-Policy");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - answer.started).count();
  ctx_.metrics.observe_request(answer.route_name, answer.method, response.status, seconds);
  if (response.status >= 500) {
    log::warn("request failed", {{"request_id", answer.request_id},
                                 {"method", answer.method},
                                 {"route", answer.route_name},
                                 {"status", response.status},
                                 {"detail", response.body}});
  } else if (log::debug_enabled()) {
    log::debug("request", {{"request_id", answer.request_id},
                           {"method", answer.method},
                           {"path", answer.path},
                           {"status", response.status},
                           {"seconds", seconds}});
  }
  answer.respond(std::move(response));
}

// The request is only read, never moved from: the server reuses its strings
// for the connection's next request. Nothing here may view it after
// returning; a draw's PendingDraw copies what its answer needs.
void Api::handle(http::Request&& request, http::Responder respond) {
  const auto started = std::chrono::steady_clock::now();
  const http::Request& req = request;
  const RouteMatch match = match_route(req.method, req.path);
  const std::string_view route_name = match.route ? match.route->name : "unmatched";

  // CORS: public routes only, origins from config.
  std::string_view allow_origin;
  if (const auto origin = req.header("origin"); origin && !match.admin_path) {
    const auto& allowed = ctx_.config.cors.allowed_origins;
    if (std::find(allowed.begin(), allowed.end(), "*") != allowed.end()) {
      allow_origin = "*";
    } else if (std::find(allowed.begin(), allowed.end(), *origin) != allowed.end()) {
      allow_origin = *origin;
    }
  }

  Answer answer{std::move(respond), started, route_name, method_label(req.method), req.path, req.request_id,
                allow_origin};
  auto finish = [this, &answer](http::Response response) { this->finish(answer, std::move(response)); };
  auto fail = [&finish, &req](const Error& error) { finish(problem_response(error, req.path)); };

  // CORS preflight.
  if (req.method == "OPTIONS" && match.kind != RouteMatch::Kind::not_found && !match.admin_path &&
      req.header("access-control-request-method")) {
    http::Response response;
    response.status = 204;
    if (!allow_origin.empty()) {
      response.set_header("Access-Control-Allow-Methods", match.allow);
      response.set_header("Access-Control-Allow-Headers",
                          "Content-Type, Idempotency-Key, X-Request-Id, Authorization");
      response.set_header("Access-Control-Max-Age", std::to_string(ctx_.config.cors.max_age_s));
    }
    return finish(std::move(response));
  }
  if (match.kind == RouteMatch::Kind::not_found) {
    return fail(make_error(ErrorKind::not_found, "no route for " + req.path));
  }
  if (match.kind == RouteMatch::Kind::method_not_allowed) {
    auto response = problem_response(
        make_error(ErrorKind::method_not_allowed, req.method + " is not allowed here"), req.path);
    response.set_header("Allow", match.allow);
    return finish(std::move(response));
  }
  const Route& route = *match.route;
  if (route.admin) {
    // Brute-force throttling per client address: a locked address gets 429
    // whatever it sends, so guessing on gains nothing (docs/SECURITY.md 6).
    std::string guard_key;
    if (admin_guard_) {
      static const TrustedProxies kNoProxies;
      guard_key = address_rate_key(client_address(req.remote_addr, req.header("x-forwarded-for"),
                                                   ctx_.trusted_proxies ? *ctx_.trusted_proxies : kNoProxies));
      if (const auto lock = admin_guard_->check(guard_key, ctx_.clock.now_ms()); lock.locked) {
        auto response = problem_response(
            make_error(ErrorKind::rate_limited,
                       "too many failed admin authentications from this address; retry after the indicated time"),
            req.path);
        response.set_header("Retry-After", std::to_string(lock.retry_after_s));
        return finish(std::move(response));
      }
    }
    const auto authorization = req.header("authorization");
    if (!authorization) {
      auto response = problem_response(
          make_error(ErrorKind::unauthorized, "admin calls need Authorization: Bearer <token>"),
          req.path);
      response.set_header("WWW-Authenticate", "Bearer");
      return finish(std::move(response));
    }
    bool admitted = admin_token_matches(*authorization, ctx_.config.admin_token);
    for (const std::string& token : ctx_.config.auth.admin_tokens) {
      admitted = admin_token_matches(*authorization, token) || admitted;  // no early exit: constant work
    }
    if (!admitted) {
      if (admin_guard_) {
        const auto failure = admin_guard_->record_failure(guard_key, ctx_.clock.now_ms());
        // The client address and the count only: never the token.
        log::info("admin authentication failed",
                  {{"request_id", req.request_id}, {"client", guard_key}, {"failures", failure.failures}});
        if (failure.now_locked) {
          log::warn("admin authentication locked out",
                    {{"request_id", req.request_id}, {"client", guard_key},
                     {"failures", failure.failures}, {"retry_after_s", failure.retry_after_s}});
        }
      }
      return fail(make_error(ErrorKind::forbidden, "the admin token is not valid"));
    }
    if (admin_guard_) admin_guard_->record_success(guard_key);
  }

  const std::int64_t now = ctx_.clock.now_ms();
  // Rate limits: per client address on the routes that write, per user on /draw.
  auto limited = [&](RateLimiter& limiter, std::string_view key) -> bool {
    const RateLimiter::Decision decision = limiter.take(key, now);
    if (decision.allowed) return false;
    auto response = problem_response(
        make_error(ErrorKind::rate_limited, "too many requests; retry after the indicated time"),
        req.path);
    response.set_header("Retry-After", std::to_string(std::max<std::int64_t>(1, decision.retry_after_s)));
    response.set_header("RateLimit-Policy", limiter.policy_header());
    response.set_header("RateLimit", limiter.limit_header(decision));
    ctx_.metrics.count_draw("rate_limited");
    finish(std::move(response));
    return true;
  };
  if (ctx_.address_limiter &&
      (route.endpoint == Endpoint::draw || route.endpoint == Endpoint::issue_token)) {
    static const TrustedProxies kNoProxies;
    const std::string address = client_address(
        req.remote_addr, req.header("x-forwarded-for"),
        ctx_.trusted_proxies ? *ctx_.trusted_proxies : kNoProxies);
    if (limited(*ctx_.address_limiter, address_rate_key(address))) return;
  }
  switch (route.endpoint) {
    case Endpoint::draw: {
      DrawFields fields;
      json parsed;  // owns what `fields` views when the body took the full parser
      if (!scan_draw_body(req, fields)) {
        fields = DrawFields{};
        auto body = parse_json_body(req);
        if (!body.ok()) {
          ctx_.metrics.count_draw(problem_info(body.error().kind).type);
          return fail(body.error());
        }
        parsed = std::move(body.value());
        if (auto unknown = draw_fields_from_json(parsed, fields)) {
          return fail(bad_request(*unknown + ": unknown field"));
        }
      }
      DrawCommand command;
      command.now_ms = now;
      const BodyField& activity = fields.activity_id;
      if (activity.kind != BodyField::Kind::string || !is_valid_id(activity.text)) {
        return fail(bad_request("activity_id: required, 1-128 characters of [A-Za-z0-9._~-]"));
      }
      // The user: from the frontend's JWT when one is configured and sent, so
      // nobody can draw as someone else; a body user_id must then agree.
      std::optional<std::string> token_user;
      if (ctx_.jwt) {
        const auto authorization = req.header("authorization");
        const auto token = authorization ? bearer_token(*authorization) : std::nullopt;
        if (token) {
          auto verified = ctx_.jwt->verify(*token, now / 1000);
          if (!verified.ok()) {
            auto response = problem_response(verified.error(), req.path);
            response.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
            return finish(std::move(response));
          }
          token_user = std::move(verified.value());
        } else if (ctx_.config.auth.require_user_token) {
          auto response = problem_response(
              make_error(ErrorKind::unauthorized, "draws need Authorization: Bearer <user token>"),
              req.path);
          response.set_header("WWW-Authenticate", "Bearer");
          return finish(std::move(response));
        }
      }
      const BodyField& user = fields.user_id;
      const bool has_user = user.kind != BodyField::Kind::absent && user.kind != BodyField::Kind::null;
      if (has_user && (user.kind != BodyField::Kind::string || !is_valid_user_id(user.text))) {
        return fail(bad_request("user_id: 1-256 bytes without control characters"));
      }
      if (token_user && has_user && user.text != *token_user) {
        return fail(make_error(ErrorKind::forbidden, "user_id differs from the user of the token"));
      }
      if (!token_user && !has_user) {
        return fail(bad_request("user_id: required, 1-256 bytes without control characters"));
      }
      command.activity_id = activity.text;
      command.user_id = token_user ? std::move(*token_user) : std::string(user.text);
      if (ctx_.user_limiter && limited(*ctx_.user_limiter, command.activity_id + '\n' + command.user_id)) {
        return;
      }
      if (const BodyField& ts = fields.ts_ms;
          ts.kind != BodyField::Kind::absent && ts.kind != BodyField::Kind::null) {
        if (ts.kind != BodyField::Kind::integer) return fail(bad_request("ts_ms: must be an integer"));
        const std::int64_t skew = now - ts.number;
        if (skew > ctx_.config.draw.max_clock_skew_ms || -skew > ctx_.config.draw.max_clock_skew_ms) {
          ctx_.metrics.count_draw("clock_skew");
          return fail(make_error(ErrorKind::clock_skew,
                                 "ts_ms is " + std::to_string(skew) + " ms from the server clock (max " +
                                     std::to_string(ctx_.config.draw.max_clock_skew_ms) + ")"));
        }
      }
      std::optional<std::string> key;
      if (const auto header = req.header("idempotency-key")) {
        key = parse_idempotency_key(*header);
        if (!key) {
          return fail(bad_request("Idempotency-Key: 1-128 visible ASCII characters, bare or quoted"));
        }
      }
      if (const BodyField& rid = fields.request_id;
          rid.kind != BodyField::Kind::absent && rid.kind != BodyField::Kind::null) {
        if (rid.kind != BodyField::Kind::string) return fail(bad_request("request_id: must be a string"));
        auto body_key = parse_idempotency_key(rid.text);
        if (!body_key) return fail(bad_request("request_id: 1-128 visible ASCII characters"));
        if (key && *key != *body_key) {
          return fail(bad_request("request_id: differs from the Idempotency-Key header"));
        }
        key = std::move(body_key);
      }
      if (!key) {
        if (ctx_.config.draw.require_token) {
          return fail(make_error(ErrorKind::invalid_token,
                                 "an Idempotency-Key issued by POST /tokens is required"));
        }
        // No key: a one-off draw, which no retry can match.
        static thread_local CsprngEntropy entropy;
        key = "auto-" + make_ulid(now, entropy);
      }
      command.idempotency_key = std::move(*key);
      auto pending = PendingDraw::make();
      pending->deadline = started + std::chrono::milliseconds(ctx_.config.http.request_timeout_ms);
      pending->keep(std::move(answer));  // `finish` and `fail` are not used from here on
      pending->lane = request.io_lane;
      {
        std::lock_guard lock(pending_mutex_);
        pending_.push_back(pending);
      }
      ctx_.store.draw(std::move(command), [this, pending](Result<DrawOutcome> outcome) {
        // Completions arrive on the sink's writer thread: the JSON is done on an io thread.
        queue_answer(pending, std::move(outcome));
      });
      return;
    }
    case Endpoint::issue_token: {
      auto token = ctx_.store.issue_token(now);
      if (!token.ok()) return fail(token.error());
      return finish(json_response(
          201, {{"token", token->token}, {"expires_at_ms", token->expires_at_ms}}));
    }
    case Endpoint::list_activities: {
      auto limit = parse_limit(req);
      if (!limit.ok()) return fail(limit.error());
      const auto cursor = req.query_param("cursor");
      json items = json::array();
      std::optional<std::string> next;
      for (const ActivityView& view : ctx_.store.list_activities(now)) {
        if (cursor && view.id <= *cursor) continue;
        if (items.size() == limit.value()) {
          next = items.back()["id"].get<std::string>();
          break;
        }
        items.push_back(activity_view_json(view));
      }
      return finish(json_response(200, page_json(std::move(items), next)));
    }
    case Endpoint::get_activity: {
      auto view = ctx_.store.get_activity(match.params[0], now);
      if (!view.ok()) return fail(view.error());
      return finish(json_response(200, activity_view_json(view.value())));
    }
    case Endpoint::fairness: {
      auto epochs = ctx_.store.fairness(match.params[0]);
      if (!epochs.ok()) return fail(epochs.error());
      return finish(json_response(200, fairness_json(match.params[0], epochs.value())));
    }
    case Endpoint::audit_trail: {
      if (auto view = ctx_.store.get_activity(match.params[0], now); !view.ok()) {
        return fail(view.error());
      }
      auto limit = parse_limit(req);
      if (!limit.ok()) return fail(limit.error());
      auto after = parse_int_param(req, "after_seq", -1);
      if (!after.ok()) return fail(after.error());
      auto page = ctx_.sink.activity_draws(match.params[0], after.value(), limit.value());
      if (!page.ok()) return fail(page.error());
      json items = json::array();
      for (const DrawRecord& r : page->items) items.push_back(audit_json(r));
      json out = {{"items", std::move(items)}, {"next", nullptr}};
      if (page->next && !page->items.empty()) out["next"] = page->items.back().seq;
      return finish(json_response(200, out));
    }
    case Endpoint::get_draw: {
      const std::string& id = match.params[0];
      auto found = is_valid_ulid(id) ? ctx_.sink.find_draw(id)
                                     : Result<std::optional<DrawRecord>>(std::nullopt);
      if (!found.ok()) return fail(found.error());
      if (!found.value()) return fail(make_error(ErrorKind::draw_not_found, "no draw " + id));
      return finish(json_response(200, draw_json(*found.value(), true)));
    }
    case Endpoint::user_draws: {
      auto limit = parse_limit(req);
      if (!limit.ok()) return fail(limit.error());
      const auto activity = req.query_param("activity_id");
      const auto cursor = req.query_param("cursor");
      auto page = ctx_.sink.user_draws(
          match.params[0],
          activity ? std::optional<std::string_view>(*activity) : std::nullopt,
          cursor ? std::optional<std::string_view>(*cursor) : std::nullopt, limit.value());
      if (!page.ok()) return fail(page.error());
      json items = json::array();
      for (const DrawRecord& r : page->items) items.push_back(draw_json(r, true));
      return finish(json_response(200, page_json(std::move(items), page->next)));
    }
    case Endpoint::put_activity: {
      auto body = parse_json_body(req);
      if (!body.ok()) return fail(body.error());
      if (auto id = body->find("id"); id != body->end() && *id != json(match.params[0])) {
        return fail(bad_request("id: differs from the id in the path"));
      }
      auto config = parse_activity(body.value());
      if (!config.ok()) return fail(config.error());
      auto created = ctx_.store.put_activity(match.params[0], std::move(config.value()), now);
      if (!created.ok()) return fail(created.error());
      log::info(created.value() ? "activity created" : "activity replaced",
                {{"request_id", req.request_id}, {"activity_id", match.params[0]}});
      auto view = ctx_.store.get_activity(match.params[0], now);
      if (!view.ok()) return fail(view.error());
      return finish(json_response(created.value() ? 201 : 200, activity_view_json(view.value())));
    }
    case Endpoint::delete_activity: {
      if (auto ended = ctx_.store.end_activity(match.params[0], now); !ended.ok()) {
        return fail(ended.error());
      }
      log::info("activity ended", {{"request_id", req.request_id}, {"activity_id", match.params[0]}});
      auto view = ctx_.store.get_activity(match.params[0], now);
      if (!view.ok()) return fail(view.error());
      return finish(json_response(200, activity_view_json(view.value())));
    }
    case Endpoint::healthz: {
      // A constant: liveness probes and load balancers call this often.
      http::Response response;
      response.content_type = "application/json";
      response.body = R"({"status":"ok"})";
      return finish(std::move(response));
    }
    case Endpoint::readyz: {
      if (draining_.load()) return fail(make_error(ErrorKind::unavailable, "shutting down"));
      if (!ctx_.store.ready()) {
        return fail(make_error(ErrorKind::unavailable, "the draw store or record is not available"));
      }
      return finish(json_response(200, {{"status", "ready"}}));
    }
    case Endpoint::metrics: {
      http::Response response;
      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      response.body = ctx_.render_metrics();
      return finish(std::move(response));
    }
  }
  fail(make_error(ErrorKind::internal, "unhandled route"));
}

}  // namespace fairdraw::app

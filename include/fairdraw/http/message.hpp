// Plain request and response types: what the Beast session hands to the
// application and gets back. No Beast here, so handlers stay cheap to compile
// and testable without sockets.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace fairdraw::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as received: path plus optional "?query"
  std::string path;    // target before '?', not percent-decoded
  std::string query;   // after '?', without it
  // Field names lower-cased; values as received (trimmed of surrounding blanks).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string request_id;   // X-Request-Id (client's if valid, else generated)
  std::string remote_addr;  // peer IP address
  bool keep_alive = true;
  unsigned io_lane = 0;  // the io thread whose connection this is (Server::post_to runs work there)

  // First value of a header (name is matched case-insensitively).
  std::optional<std::string_view> header(std::string_view name) const;
  // Percent-decoded value of a query parameter, if present.
  std::optional<std::string> query_param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // Content-Type included, or see content_type
  std::string body;
  // A constant Content-Type (it is viewed: static storage only), written
  // before `headers`: the common answers then allocate no header. One set in
  // `headers` takes precedence; set_header("Content-Type", ...) clears this.
  std::string_view content_type;

  void set_header(std::string name, std::string value);
  std::optional<std::string_view> header(std::string_view name) const;
};

// Response bodies built where the response will be written (a draw's answer
// is built on its connection's io thread) can reuse the buffers of bodies
// already written there: the server gives each written body's buffer back to
// its thread's short list, and take_body_buffer() hands one out (empty, with
// its capacity), so a steady load allocates no body. Per thread, no lock.
std::string take_body_buffer();
void recycle_body_buffer(std::string&& buffer);

// Delivers a request's one Response. It may be copied, moved to another thread
// and called from any thread, also after the Handler has returned. Copies
// share one Target, reference counted: the server's answers the first call
// only, and answers 500 when the last copy is dropped uncalled. The server
// takes its Targets from a pool, so handing a request its Responder allocates
// nothing (a std::function holding a shared state allocated twice).
class Responder {
 public:
  class Target {
   public:
    virtual void deliver(Response response) = 0;
    // The last Responder is gone: the Target may be reused or freed.
    virtual void unreferenced() noexcept = 0;

   protected:
    Target() = default;
    virtual ~Target() = default;

   private:
    friend class Responder;
    std::atomic<std::uint32_t> references_{0};
  };

  Responder() noexcept = default;
  explicit Responder(Target& target) noexcept : target_(&target) { acquire(); }
  // Any callable taking a Response (tests, tools): called on every call,
  // nothing happens on drop. Allocates its Target.
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Responder> &&
                                              std::is_invocable_v<std::decay_t<F>&, Response>>>
  Responder(F&& f)  // NOLINT(google-explicit-constructor): a lambda converts, as to std::function
      : Responder(*new CallableTarget<std::decay_t<F>>(std::forward<F>(f))) {}

  Responder(const Responder& other) noexcept : target_(other.target_) { acquire(); }
  Responder(Responder&& other) noexcept : target_(std::exchange(other.target_, nullptr)) {}
  Responder& operator=(Responder other) noexcept {
    std::swap(target_, other.target_);
    return *this;
  }
  ~Responder() {
    if (target_ && target_->references_.fetch_sub(1, std::memory_order_acq_rel) == 1) target_->unreferenced();
  }

  void operator()(Response response) const {
    if (target_) target_->deliver(std::move(response));
  }
  explicit operator bool() const noexcept { return target_ != nullptr; }

 private:
  template <class F>
  struct CallableTarget final : Target {
    explicit CallableTarget(F fn) : f(std::move(fn)) {}
    void deliver(Response response) override { f(std::move(response)); }
    void unreferenced() noexcept override { delete this; }
    F f;
  };

  void acquire() noexcept {
    if (target_) target_->references_.fetch_add(1, std::memory_order_relaxed);
  }

  Target* target_ = nullptr;
};

// The application's entry point. It must call `respond` exactly once, from any
// thread, possibly after returning (asynchronous draws wait for durability).
// The Request lives in the connection and is reused for its next request: it
// may be moved from, but is valid only until the Handler returns, so an
// asynchronous answer copies what it still needs.
using Handler = std::function<void(Request&&, Responder)>;

std::string percent_decode(std::string_view in);

}  // namespace fairdraw::http

// Wiring: config -> sink -> store (with recovery) -> API -> HTTP server, plus
// the scheduler. create() does all start-up work and reports the first
// failure as a value; run() serves until SIGTERM/SIGINT and drains.
#pragma once

#include <cstdint>
#include <memory>

#include "fairdraw/app/config.hpp"
#include "fairdraw/result.hpp"

namespace fairdraw::app {

class Service {
 public:
  static Result<std::unique_ptr<Service>> create(Config config);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Serves until shutdown; returns the process exit code.
  int run();
  std::uint16_t port() const;

  struct Impl;  // public so the start-up helpers in service.cpp can fill it

 private:
  Service();
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairdraw::app

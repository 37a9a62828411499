// The Boost.Asio headers the Redis client uses, in one place for the warning workaround below.
#pragma once

// GCC 12 reports a "potential null pointer dereference" inside Asio's scheduler
// after inlining, despite Boost being a system header; silenced for Boost only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#pragma GCC diagnostic pop

// ULIDs for draw ids: 48-bit millisecond time + 80 random bits, Crockford
// base32, 26 characters, sortable by time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fairdraw/entropy.hpp"

namespace fairdraw {

std::string make_ulid(std::int64_t unix_ms, Entropy& entropy);
bool is_valid_ulid(std::string_view text);

}  // namespace fairdraw

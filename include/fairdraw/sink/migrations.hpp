// Versioned schema migrations, embedded at build time from src/sink/migrations/.
#pragma once

#include <string_view>
#include <vector>

namespace fairdraw {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// src/sink/migrations/sqlite/NNN_*.sql, in version order.
const std::vector<Migration>& sqlite_migrations();
// src/sink/migrations/postgres/NNN_*.sql, in version order.
const std::vector<Migration>& postgres_migrations();

}  // namespace fairdraw

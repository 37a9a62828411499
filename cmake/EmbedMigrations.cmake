# Turns the versioned migration files (NNN_name.sql) of one directory into a C++
# source with a sorted table {version, name, sql}, so the binary carries its schema.
# Usage: cmake -DMIGRATIONS_DIR=... -DOUTPUT=... -DSYMBOL=... -P EmbedMigrations.cmake
file(GLOB files "${MIGRATIONS_DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f IN LISTS files)
  get_filename_component(name "${f}" NAME_WE)
  string(REGEX MATCH "^[0-9]+" version "${name}")
  file(READ "${f}" sql)
  string(APPEND body "  {${version}, \"${name}\", R\"fdsql(${sql})fdsql\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${MIGRATIONS_DIR} by cmake/EmbedMigrations.cmake. Do not edit.\n"
"#include \"fairdraw/sink/migrations.hpp\"\n"
"namespace fairdraw {\n"
"const std::vector<Migration>& ${SYMBOL}() {\n"
"  static const std::vector<Migration> table = {\n${body}  };\n"
"  return table;\n}\n}  // namespace fairdraw\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)

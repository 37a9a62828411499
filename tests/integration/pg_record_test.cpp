// Clustered mode's durable record in PostgreSQL holds what an auditor needs without Redis:
// every draw, every activity with each admin change, and every epoch with its commitment and,
// once the epoch is over, its seed (whose SHA-256 is the commitment). Clustered-only: in
// embedded mode the record is the SQLite file (restart_test and fairness_test cover it).
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "http_client.hpp"

namespace fairdraw::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::string pg_text(const FairdrawServer& server, const std::string& sql) {
  std::string out;
  return pg::query(server.database_url(), sql, out) ? out : "error: " + out;
}

TEST(PgRecordTest, ActivitiesChangesAndEpochsAreCopiedToPostgres) {
  if (!clustered_mode()) GTEST_SKIP() << "clustered-mode test: runs as clustered.PgRecordTest.*";
  FairdrawServer server;
  ASSERT_TRUE(server.start());
  HttpClient c = server.client();
  // W = 10: twelve draws fill epoch 0 (its seed is revealed) and start epoch 1.
  json body = activity_json("Audit", 5, {prize_json("a", 2, 100000), prize_json("b", 3, 100000)});
  ASSERT_EQ(c.put_json("/admin/activities/au", body, admin_headers()).status, 201);
  for (int i = 0; i < 12; ++i) {
    ASSERT_EQ(post_draw(c, "au", "u" + std::to_string(i), "au-" + std::to_string(i)).status, 200);
  }
  // An admin change of the deck ends epoch 1; DELETE ends the activity and its last epoch.
  body["prizes"][0]["weight"] = 4;
  ASSERT_EQ(c.put_json("/admin/activities/au", body, admin_headers()).status, 200);
  ASSERT_EQ(post_draw(c, "au", "late", std::string("au-late")).status, 200);
  ASSERT_EQ(c.del("/admin/activities/au", admin_headers()).status, 200);
  const HttpResponse fairness = c.get("/activities/au/fairness");
  ASSERT_EQ(fairness.status, 200) << fairness.describe();
  const json epochs = fairness.json()["epochs"];
  ASSERT_GE(epochs.size(), 3u) << fairness.body;

  // The mirror runs every second.
  ASSERT_TRUE(wait_until(
      [&] {
        return pg_int(server, "SELECT count(*) FROM activities WHERE id = 'au' AND ended") == 1 &&
               pg_int(server, "SELECT count(*) FROM epochs WHERE activity_id = 'au' AND seed IS NOT NULL") >=
                   static_cast<std::int64_t>(epochs.size()) - 1;
      },
      10s))
      << pg_text(server, "SELECT id, ended FROM activities") << "\n"
      << pg_text(server, "SELECT epoch, commitment, seed IS NULL, first_seq, revealed_at FROM epochs");
  EXPECT_EQ(pg_text(server, "SELECT string_agg((config_json LIKE '%\"weight\":4%')::text || '/' || ended::text, ','"
                            " ORDER BY changed_at_ms) FROM activity_changes WHERE activity_id = 'au'"),
            "false/false,true/false,true/true")
      << "the rows: created (weight 2), replaced (weight 4), ended\n"
      << pg_text(server, "SELECT * FROM activity_changes");

  // Every epoch the API shows is in PostgreSQL with the same commitment; a revealed seed
  // hashes to it, and one never revealed is absent (NULL), never a made-up value.
  for (const json& e : epochs) {
    const std::string where =
        " FROM epochs WHERE activity_id = 'au' AND epoch = " + std::to_string(e["epoch"].get<std::int64_t>());
    EXPECT_EQ(pg_text(server, "SELECT commitment" + where), e["commitment"].get<std::string>()) << e.dump();
    if (e["seed"].is_string()) {
      EXPECT_EQ(pg_text(server, "SELECT encode(seed, 'hex')" + where), e["seed"].get<std::string>()) << e.dump();
      EXPECT_EQ(pg_int(server, "SELECT count(*)" + where + " AND encode(sha256(seed), 'hex') = commitment"), 1)
          << e.dump();
    } else {
      EXPECT_EQ(pg_int(server, "SELECT count(*)" + where + " AND seed IS NULL"), 1) << e.dump();
    }
  }
  // Every draw is in PostgreSQL, each in an epoch PostgreSQL knows.
  ASSERT_TRUE(wait_until([&] { return pg_int(server, "SELECT count(*) FROM draws WHERE activity_id = 'au'") == 13; },
                         10s));
  EXPECT_EQ(pg_int(server, "SELECT count(*) FROM draws d LEFT JOIN epochs e ON e.activity_id = d.activity_id"
                           " AND e.epoch = d.epoch WHERE d.activity_id = 'au' AND e.epoch IS NULL"),
            0);
  EXPECT_EQ(server.stop_sigterm(), 0);
}

}  // namespace
}  // namespace fairdraw::test

-- Initial schema of the clustered record: draws, activities and fairness epochs (DESIGN.md section 6).
-- Identifiers use COLLATE "C": byte order, as in SQLite, whatever the database's locale, so
-- orderings and the user_draws cursor behave the same in both sinks (and compare faster).

CREATE TABLE draws (
  draw_id         TEXT COLLATE "C" PRIMARY KEY,
  activity_id     TEXT COLLATE "C" NOT NULL,
  seq             BIGINT  NOT NULL,
  epoch           BIGINT  NOT NULL,
  slot            BIGINT  NOT NULL,
  user_id         TEXT COLLATE "C" NOT NULL,
  idempotency_key TEXT COLLATE "C" NOT NULL,
  candidate_id    TEXT COLLATE "C" NULL,
  prize_id        TEXT COLLATE "C" NULL,
  prize_name      TEXT    NULL,
  won             BOOLEAN NOT NULL,
  drawn_at_ms     BIGINT  NOT NULL,
  UNIQUE (activity_id, seq)
);

-- Replays after the in-memory idempotency ring dropped a key.
CREATE INDEX draws_by_idempotency_key ON draws (activity_id, idempotency_key, seq);

-- A user's draws newest first; (drawn_at_ms, seq, draw_id) is the keyset cursor.
CREATE INDEX draws_by_user ON draws (user_id, drawn_at_ms, seq, draw_id);

-- Recovery: live idempotency keys and today's per-user counts.
CREATE INDEX draws_by_time ON draws (activity_id, drawn_at_ms, seq);

CREATE TABLE activities (
  id            TEXT COLLATE "C" PRIMARY KEY,
  config_json   TEXT    NOT NULL,
  ended         BOOLEAN NOT NULL,
  created_at_ms BIGINT,
  updated_at_ms BIGINT
);

-- The seed stays secret until revealed_at is set; the HTTP layer never shows it before.
CREATE TABLE epochs (
  activity_id TEXT COLLATE "C" NOT NULL,
  epoch       BIGINT  NOT NULL,
  seed        BYTEA   NOT NULL,
  commitment  TEXT    NOT NULL,
  prizes_json TEXT    NOT NULL,
  miss_weight BIGINT  NOT NULL,
  epoch_size  BIGINT  NOT NULL,
  first_seq   BIGINT  NULL,
  revealed_at BIGINT  NULL,
  PRIMARY KEY (activity_id, epoch)
);

-- Initial schema of the embedded record: draws, activities and fairness epochs (DESIGN.md section 6).

CREATE TABLE draws (
  draw_id         TEXT    PRIMARY KEY,
  activity_id     TEXT    NOT NULL,
  seq             INTEGER NOT NULL,
  epoch           INTEGER NOT NULL,
  slot            INTEGER NOT NULL,
  user_id         TEXT    NOT NULL,
  idempotency_key TEXT    NOT NULL,
  candidate_id    TEXT    NULL,
  prize_id        TEXT    NULL,
  prize_name      TEXT    NULL,
  won             INTEGER NOT NULL,
  drawn_at_ms     INTEGER NOT NULL,
  UNIQUE (activity_id, seq)
);

-- Replays after the in-memory idempotency ring dropped a key.
CREATE INDEX draws_by_idempotency_key ON draws (activity_id, idempotency_key, seq);

-- A user's draws newest first; (drawn_at_ms, seq, draw_id) is the keyset cursor.
CREATE INDEX draws_by_user ON draws (user_id, drawn_at_ms, seq, draw_id);

-- Recovery: live idempotency keys and today's per-user counts.
CREATE INDEX draws_by_time ON draws (activity_id, drawn_at_ms, seq);

CREATE TABLE activities (
  id            TEXT    PRIMARY KEY,
  config_json   TEXT    NOT NULL,
  ended         INTEGER NOT NULL,
  created_at_ms INTEGER,
  updated_at_ms INTEGER
);

-- The seed stays secret until revealed_at is set; the HTTP layer never shows it before.
CREATE TABLE epochs (
  activity_id TEXT    NOT NULL,
  epoch       INTEGER NOT NULL,
  seed        BLOB    NOT NULL,
  commitment  TEXT    NOT NULL,
  prizes_json TEXT    NOT NULL,
  miss_weight INTEGER NOT NULL,
  epoch_size  INTEGER NOT NULL,
  first_seq   INTEGER NULL,
  revealed_at INTEGER NULL,
  PRIMARY KEY (activity_id, epoch)
);

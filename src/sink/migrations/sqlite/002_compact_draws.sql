-- Cheaper rows to index: the two lookups by random values (idempotency key, user id) go through
-- 64-bit hashes instead of the text.
--
-- Keys and user ids from real clients are random: every row lands on a random leaf of those two
-- indexes, and each commit writes every leaf it touched to the WAL (a leaf that splits, two
-- and their parent); a checkpoint then copies each distinct one into the file. Indexing 8-byte
-- hashes instead of (activity_id, key, seq) and (user_id, drawn_at_ms, seq, draw_id) makes
-- those two trees less than half as large: fewer distinct leaves for the same rows, fewer
-- splits, more of them in the writer's page cache. Queries match the hash and then the real
-- columns, so a collision costs a row read, never a wrong answer.
--
-- The hash (SqliteSink's hash64(), and fairdraw_hash64() here) keeps some of the text's order:
-- its top 24 bits are FNV-1a 64 of the first 8 bytes, its low 40 bits FNV-1a 64 of the whole
-- string, stored as a signed integer. Ids that share a prefix (numbered keys, time-ordered
-- ULIDs, one client's run) stay next to each other as their text did; random ones (UUIDs)
-- spread evenly.
--
-- The table stays a rowid table: rows arrive in seq order and SQLite appends to a rowid
-- table's last page without splitting it in half (a WITHOUT ROWID table clustered on
-- (activity_id, seq) was tried: its appends split pages evenly, which wrote more pages per
-- row than the separate UNIQUE index it saves).
--
-- fairdraw_hash64() exists only on SqliteSink's writer connection (registered before
-- migrations run); nothing in the schema refers to it afterwards, so any SQLite client can read
-- and write the file, provided it fills key_hash and user_hash the same way.

CREATE TABLE draws_v2 (
  draw_id         TEXT    NOT NULL PRIMARY KEY,
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
  key_hash        INTEGER NOT NULL,  -- fairdraw_hash64(idempotency_key)
  user_hash       INTEGER NOT NULL,  -- fairdraw_hash64(user_id)
  UNIQUE (activity_id, seq)
);

-- In the old table's insertion order, so an activity's rows stay in seq order on disk.
INSERT INTO draws_v2 (draw_id, activity_id, seq, epoch, slot, user_id, idempotency_key,
                      candidate_id, prize_id, prize_name, won, drawn_at_ms, key_hash, user_hash)
SELECT draw_id, activity_id, seq, epoch, slot, user_id, idempotency_key, candidate_id, prize_id,
       prize_name, won, drawn_at_ms, fairdraw_hash64(idempotency_key), fairdraw_hash64(user_id)
FROM draws ORDER BY rowid;

DROP TABLE draws;
ALTER TABLE draws_v2 RENAME TO draws;

-- Replays after the in-memory idempotency ring dropped a key.
CREATE INDEX draws_by_key_hash ON draws (key_hash);

-- A user's draws newest first. The keyset cursor is (drawn_at_ms, seq, draw_id); its last
-- tiebreak only matters between draws with the same time and seq, sorted after the lookup.
CREATE INDEX draws_by_user_hash ON draws (user_hash, drawn_at_ms, seq);

-- Recovery: live idempotency keys and today's per-user counts.
CREATE INDEX draws_by_time ON draws (activity_id, drawn_at_ms, seq);

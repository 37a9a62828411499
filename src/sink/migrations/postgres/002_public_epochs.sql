-- Clustered mode: the epochs' secret seeds live in Redis until revealed, and PostgreSQL gets a
-- copy of every epoch as the public sees it (service.cpp's mirror, PgSink::save_public_epoch):
-- the commitment from the start, the seed once the epoch is over. So an epoch's seed may be
-- NULL here (not yet revealed); a stored seed is never replaced by NULL.
ALTER TABLE epochs ALTER COLUMN seed DROP NOT NULL;

-- Each activity's config as every admin change left it (the activities table holds the latest),
-- so an auditor can follow the changes from PostgreSQL alone. Written by the same mirror.
CREATE TABLE activity_changes (
  activity_id   TEXT COLLATE "C" NOT NULL,
  changed_at_ms BIGINT  NOT NULL,
  config_json   TEXT    NOT NULL,
  ended         BOOLEAN NOT NULL,
  PRIMARY KEY (activity_id, changed_at_ms, config_json, ended)
);

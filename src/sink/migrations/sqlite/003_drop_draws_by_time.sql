-- One B-tree less for every row written: draws_by_time (activity_id, drawn_at_ms, seq) goes.
--
-- No API lookup uses it. It served recovery's per-user day counts and the newest live draw
-- before the restored keys; the first is now counted from the one scan of the activity's rows
-- (Sink::load_totals), the second walks the (activity_id, seq) index over the older seqs instead
-- (about 0.1 s per 10^6 rows, on the restore thread, after the service is ready). Every commit
-- wrote at least one page of it: without it, the WAL gets 4 to 16% fewer bytes per row and an
-- insert ~8% less CPU (one row per commit: the most; large commits: the least).
DROP INDEX IF EXISTS draws_by_time;

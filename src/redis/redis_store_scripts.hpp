// The Lua scripts of RedisStore. Each runs atomically on the server, which is what makes a
// draw (or an admin change, or an epoch's creation) all-or-nothing across any number of
// instances. Rule in every writing script: all checks and reads first, writes after, so a
// refusal or a script error leaves nothing behind (Redis does not roll scripts back).
#pragma once

namespace fairdraw::redis::scripts {

// One draw.
// KEYS: 1 cfg, 2 seq, 3 wins, 4 users, 5 day:<local day>, 6 idem:<key>, 7 stream, 8 chain,
//       9 unpersisted, 10 unpersisted:byuser (9 and 10 optional: the read index of draws not
//       yet persisted, see kFindUnpersisted)
// ARGV: 1 user_id, 2 now_ms, 3 draw_id (ULID made by the client), 4 cfg version the client's
//       local day was computed with, 5 token ('0' not required, '1' taken, '2' not a live token),
//       6 idempotency TTL ms, 7 activity_id, 8 idempotency key, 9 key prefix "fd:{A}:"
// Returns {'ok', field, value, ...} | {'replay', field, value, ...} | {'not_found'} |
//   {'mismatch'} | {'invalid_token'} | {'not_active', status} | {'stale'} | {'quota'} |
//   {'need_epoch', e} | {'corrupt', why}
inline constexpr const char* kDraw = R"lua(
local function fmt(n) return string.format('%d', n) end

local cfg = redis.call('HMGET', KEYS[1], 'version', 'ended', 'starts_at_ms', 'ends_at_ms',
                       'max_draws_per_user', 'max_draws_per_user_per_day')
if not cfg[1] then return {'not_found'} end

-- Idempotency first: a key that already drew returns that very result, whatever happened to
-- the activity since (ended, quota used up), and never a second draw. "Same body" is the
-- same user (the activity is the key's scope). The result is stored as one string, the
-- MessagePack of the reply {'ok', field, value, ...} (one SET with its TTL: one command for
-- the AOF, instead of a 20-argument HSET and a PEXPIRE); results stored by earlier versions
-- as a hash of the fields are still read (GET then fails with WRONGTYPE) until they expire.
local stored = redis.pcall('GET', KEYS[6])
if type(stored) == 'table' and stored.err then
  local fields = redis.call('HGETALL', KEYS[6])
  stored = {'ok'}
  for i = 1, #fields do stored[i + 1] = fields[i] end
elseif stored then
  stored = cmsgpack.unpack(stored)
end
if stored then
  for i = 2, #stored, 2 do
    if stored[i] == 'user_id' and stored[i + 1] ~= ARGV[1] then return {'mismatch'} end
  end
  stored[1] = 'replay'
  return stored
end
if ARGV[5] == '2' then return {'invalid_token'} end

-- Status from the stored config, so an end or a window change applies to the very next draw.
local now = tonumber(ARGV[2])
if cfg[2] == '1' then return {'not_active', 'ended'} end
if cfg[3] and now < tonumber(cfg[3]) then return {'not_active', 'scheduled'} end
if cfg[4] and now >= tonumber(cfg[4]) then return {'not_active', 'ended'} end

-- The client computed the local day with its copy of the config (time zone): it must be the
-- current one, else it reloads and retries.
if cfg[1] ~= ARGV[4] then return {'stale'} end

-- Quotas: checked here, counted only below once the draw is certain, so a refused draw
-- takes no sequence number and no quota.
if cfg[5] and tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') >= tonumber(cfg[5]) then
  return {'quota'}
end
if cfg[6] and tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0') >= tonumber(cfg[6]) then
  return {'quota'}
end

-- The seq this draw would take, its epoch and slot. Read with GET, not INCR: when the
-- epoch's deck is not in Redis yet, the client prepares it and retries, and the seq must
-- not be consumed meanwhile (seqs stay contiguous, each one gets exactly one record).
local chain = redis.call('HMGET', KEYS[8], 'first_epoch', 'origin_seq', 'size')
if not chain[1] then return {'corrupt', 'no epoch chain'} end
local first_epoch, origin, size = tonumber(chain[1]), tonumber(chain[2]), tonumber(chain[3])
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n < origin then return {'corrupt', 'sequence behind the epoch chain'} end
local epoch = first_epoch + math.floor((n - origin) / size)
local slot = (n - origin) % size
local deck_key = ARGV[9] .. 'deck:' .. fmt(epoch)
-- Offsets below 2 * 10^7 (W <= 10^7): exact as Lua numbers and as Redis formats them.
local cell = redis.call('GETRANGE', deck_key, 2 * slot, 2 * slot + 1)
if string.len(cell) ~= 2 then return {'need_epoch', fmt(epoch)} end

local card = string.byte(cell, 1) * 256 + string.byte(cell, 2)
local prize = false
local wins = 0
if card ~= 65535 then
  prize = redis.call('HMGET', KEYS[1], 'prize_id:' .. card, 'prize_stock:' .. card,
                     'prize_name:' .. card)
  if not prize[1] or not prize[2] then return {'corrupt', 'card beyond the prize list'} end
  wins = tonumber(redis.call('HGET', KEYS[3], prize[1]) or '0')
end

-- Writes. Nothing below can refuse.
redis.call('INCR', KEYS[2])
-- The reply, {'ok', field, value, ...}; also what the stream entry and the stored result hold.
local rec = {'ok', 'draw_id', ARGV[3], 'user_id', ARGV[1], 'seq', fmt(n), 'epoch', fmt(epoch),
             'slot', fmt(slot), 'drawn_at_ms', ARGV[2]}
local won = '0'
if prize then
  rec[#rec + 1] = 'candidate_id'
  rec[#rec + 1] = prize[1]
  -- Stock: the candidate is won only while wins < stock, in the same atomic step as the
  -- increment, so no prize is ever oversold whatever the number of instances.
  if wins < tonumber(prize[2]) then
    redis.call('HINCRBY', KEYS[3], prize[1], 1)
    won = '1'
    rec[#rec + 1] = 'prize_id'
    rec[#rec + 1] = prize[1]
    rec[#rec + 1] = 'prize_name'
    rec[#rec + 1] = prize[3] or ''
  end
end
rec[#rec + 1] = 'won'
rec[#rec + 1] = won

redis.call('SET', KEYS[6], cmsgpack.pack(rec), 'PX', ARGV[6])
-- The durable record's way out: in the same script as the seq, so every taken seq has its
-- entry. No MAXLEN: trimming could drop entries the worker has not persisted yet.
local entry = redis.call('XADD', KEYS[7], '*', 'activity_id', ARGV[7], 'idempotency_key', ARGV[8], unpack(rec, 2))
-- Until the worker has persisted it, the draw is found by id and by user through these
-- (the worker removes both entries once the row is committed).
-- The users' index is one sorted set per activity, members '<user>\0<draw_id>' (user ids hold
-- no control characters; a draw id is a ULID whose first 10 characters are drawn_at_ms, so the
-- members of a user sort by time): no key is created and deleted per draw, and the worker
-- removes a whole round's members with one ZREM. Versions before 2026-11-25 kept a sorted set
-- per user (unpersisted:u:<user>), still read and cleaned.
if KEYS[10] then
  redis.call('HSET', KEYS[9], ARGV[3], entry)
  redis.call('ZADD', KEYS[10], 0, ARGV[1] .. '\0' .. ARGV[3])
end
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
-- The day's counts live two days from the day's first new user (the key is created by a
-- user's first draw of the day, so it always has its TTL; NX: later new users neither write
-- nor log a new TTL). A local day is at most 25 hours long, so the key outlives its day.
if redis.call('HINCRBY', KEYS[5], ARGV[1], 1) == 1 then redis.call('EXPIRE', KEYS[5], 172800, 'NX') end
if slot == 0 then redis.call('HSET', ARGV[9] .. 'epoch:' .. fmt(epoch), 'first_seq', fmt(n)) end
-- The epoch's last slot: its seed may be published from now on, and its deck is no longer
-- needed (no draw can reach it again: seqs only grow).
if slot == size - 1 then
  redis.call('HSET', ARGV[9] .. 'epoch:' .. fmt(epoch), 'revealed_at_ms', ARGV[2])
  redis.call('DEL', deck_key)
end
return rec
)lua";

// Ends the current chain of epochs at `boundary` (the next seq): epochs already started get
// their first_seq and are revealed; epochs prepared ahead but never started are voided
// (revealed, first_seq stays null); their decks go. Epochs before the boundary's own epoch
// were exhausted, hence revealed by their last draw already. Shared by kPut and kEnd;
// `ch` is {first_epoch, origin_seq, size, last_epoch} as read by the caller.
inline constexpr const char* kCloseChain = R"lua(
local function fmt(n) return string.format('%d', n) end
local function close_chain(prefix, ch, boundary, now)
  local first_epoch, origin, size, last = tonumber(ch[1]), tonumber(ch[2]), tonumber(ch[3]),
                                          tonumber(ch[4])
  local from = math.max(first_epoch, first_epoch + math.floor((boundary - origin) / size) - 1)
  for e = from, last do
    local epoch_key = prefix .. 'epoch:' .. fmt(e)
    local state = redis.call('HMGET', epoch_key, 'seed', 'revealed_at_ms')
    if state[1] and not state[2] then
      local first = origin + (e - first_epoch) * size
      if first < boundary then redis.call('HSET', epoch_key, 'first_seq', fmt(first)) end
      redis.call('HSET', epoch_key, 'revealed_at_ms', now)
    end
    redis.call('DEL', prefix .. 'deck:' .. fmt(e))
  end
  return last + 1
end
)lua";

// Creates or replaces an activity.
// KEYS: 1 cfg, 2 chain, 3 seq
// ARGV: 1 expected version ('0': create), 2 now_ms, 3 key prefix, 4 new deck ('1'/'0'),
//       5 seed hex, 6 commitment, 7 prizes JSON, 8 miss_weight, 9 W, 10 deck bytes,
//       11 prize count, 12.. config field/value pairs (json, window, quotas, prizes)
// Returns {'ok', version} | {'conflict'} | {'ended'} | {'corrupt', why}
inline constexpr const char* kPut = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'version', 'ended', 'deck_version', 'prize_count')
local creating = ARGV[1] == '0'
-- Optimistic concurrency: the client decided "same deck or not" from the version it read;
-- if another admin call got in between, it reads again.
if creating then
  if cur[1] then return {'conflict'} end
else
  if cur[1] ~= ARGV[1] then return {'conflict'} end
  if cur[2] == '1' then return {'ended'} end
end
local new_deck = creating or ARGV[4] == '1'
local ch = redis.call('HMGET', KEYS[2], 'first_epoch', 'origin_seq', 'size', 'last_epoch')
if new_deck and not creating and not (ch[1] and ch[4]) then
  return {'corrupt', 'no epoch chain'}
end

local version = tonumber(cur[1] or '0') + 1
local deck_version = tonumber(cur[3] or '0')
redis.call('HDEL', KEYS[1], 'starts_at_ms', 'ends_at_ms', 'max_draws_per_user',
           'max_draws_per_user_per_day')
for i = tonumber(ARGV[11]), tonumber(cur[4] or '0') - 1 do
  redis.call('HDEL', KEYS[1], 'prize_id:' .. i, 'prize_stock:' .. i, 'prize_name:' .. i)
end
for i = 12, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'version', fmt(version), 'updated_at_ms', ARGV[2],
           'prize_count', ARGV[11])
if creating then redis.call('HSET', KEYS[1], 'created_at_ms', ARGV[2], 'ended', '0') end

if new_deck then
  -- The boundary is fixed inside the script, so it is exact with respect to draws: seqs
  -- below it used the old deck, the next one is slot 0 of the new chain's first epoch, whose
  -- seed and deck are written here, before any draw can reach it.
  local boundary = tonumber(redis.call('GET', KEYS[3]) or '0')
  local epoch = 0
  if not creating then epoch = close_chain(ARGV[3], ch, boundary, ARGV[2]) end
  deck_version = deck_version + 1
  redis.call('HSET', ARGV[3] .. 'epoch:' .. fmt(epoch), 'seed', ARGV[5], 'commitment', ARGV[6],
             'prizes', ARGV[7], 'miss_weight', ARGV[8], 'size', ARGV[9],
             'deck_version', fmt(deck_version))
  redis.call('SET', ARGV[3] .. 'deck:' .. fmt(epoch), ARGV[10])
  redis.call('HSET', KEYS[2], 'first_epoch', fmt(epoch), 'origin_seq', fmt(boundary),
             'size', ARGV[9], 'deck_version', fmt(deck_version), 'last_epoch', fmt(epoch))
  redis.call('HSET', KEYS[1], 'deck_version', fmt(deck_version))
end
return {'ok', fmt(version)}
)lua";

// Ends an activity for good. KEYS: 1 cfg, 2 chain, 3 seq. ARGV: 1 now_ms, 2 key prefix.
// Returns 'ok' | 'not_found'.
inline constexpr const char* kEnd = R"lua(
local cur = redis.call('HMGET', KEYS[1], 'version', 'ended')
if not cur[1] then return 'not_found' end
if cur[2] == '1' then return 'ok' end
local ch = redis.call('HMGET', KEYS[2], 'first_epoch', 'origin_seq', 'size', 'last_epoch')
local boundary = tonumber(redis.call('GET', KEYS[3]) or '0')
if ch[1] and ch[4] then close_chain(ARGV[2], ch, boundary, ARGV[1]) end
redis.call('HSET', KEYS[1], 'ended', '1', 'version', fmt(tonumber(cur[1]) + 1),
           'updated_at_ms', ARGV[1])
-- Without a chain no epoch can be created or drawn from any more; last_epoch stays for
-- the fairness document.
redis.call('HDEL', KEYS[2], 'first_epoch', 'origin_seq', 'size', 'deck_version')
return 'ok'
)lua";

// Creates epoch e of the current chain if absent; the first instance to get here decides
// the seed, every other one reads it back.
// KEYS: 1 chain, 2 epoch:<e>. ARGV: 1 deck_version, 2 e, 3 seed hex, 4 commitment,
//       5 prizes JSON, 6 miss_weight, 7 W
// Returns {'created'} | {'exists', seed, commitment, revealed '0'/'1', corrupt '0'/'1'} |
//   {'stale'} (the chain changed: the client's config is old) | {'gap'}
inline constexpr const char* kCreateEpoch = R"lua(
local ch = redis.call('HMGET', KEYS[1], 'deck_version', 'first_epoch', 'last_epoch')
-- Only the current chain may grow: after a deck change or an end, an instance still working
-- from the old config cannot add an epoch to a chain that is over.
if ch[1] ~= ARGV[1] then return {'stale'} end
local e = tonumber(ARGV[2])
if e < tonumber(ch[2]) then return {'stale'} end
local ex = redis.call('HMGET', KEYS[2], 'seed', 'commitment', 'revealed_at_ms', 'corrupt')
if ex[1] then
  return {'exists', ex[1], ex[2] or '', ex[3] and '1' or '0', ex[4] and '1' or '0'}
end
-- Epoch numbers stay contiguous: the fairness document lists 0..last_epoch.
if e > tonumber(ch[3]) + 1 then return {'gap'} end
redis.call('HSET', KEYS[2], 'seed', ARGV[3], 'commitment', ARGV[4], 'prizes', ARGV[5],
           'miss_weight', ARGV[6], 'size', ARGV[7], 'deck_version', ARGV[1])
if e > tonumber(ch[3]) then redis.call('HSET', KEYS[1], 'last_epoch', ARGV[2]) end
return {'created'}
)lua";

// Stores epoch e's deck, or compares it with the stored one; or marks the epoch corrupt.
// KEYS: 1 epoch:<e>, 2 deck:<e>. ARGV: 1 'store' | 'corrupt', 2 deck_version, 3 deck bytes
// Returns 'stored' | 'same' | 'revealed' | 'stale' | 'corrupt'
inline constexpr const char* kStoreDeck = R"lua(
local ep = redis.call('HMGET', KEYS[1], 'deck_version', 'revealed_at_ms', 'corrupt')
if ep[1] ~= ARGV[2] then return 'stale' end
-- A deck that does not follow from its seed (or a seed that does not match its commitment)
-- would make draws no one can verify: the epoch is refused for good, and its deck removed
-- so no draw reads it (draws then ask for the epoch and get the refusal).
if ARGV[1] == 'corrupt' or ep[3] then
  redis.call('HSET', KEYS[1], 'corrupt', '1')
  redis.call('DEL', KEYS[2])
  return 'corrupt'
end
-- Over already (exhausted or ended): its deck must not come back.
if ep[2] then return 'revealed' end
local cur = redis.call('GET', KEYS[2])
if not cur then
  redis.call('SET', KEYS[2], ARGV[3])
  return 'stored'
end
if cur == ARGV[3] then return 'same' end
redis.call('HSET', KEYS[1], 'corrupt', '1')
redis.call('DEL', KEYS[2])
return 'corrupt'
)lua";

// An activity's config, counters and stock, as one consistent snapshot.
// KEYS: 1 cfg, 2 seq, 3 wins. Returns {} | {json, version, ended, deck_version, seq, {wins...}}
inline constexpr const char* kReadActivity = R"lua(
local c = redis.call('HMGET', KEYS[1], 'json', 'version', 'ended', 'deck_version')
if not c[1] then return {} end
return {c[1], c[2], c[3] or '0', c[4] or '0', redis.call('GET', KEYS[2]) or '0',
        redis.call('HGETALL', KEYS[3])}
)lua";

// Where the chain stands, for epoch preparation.
// KEYS: 1 cfg, 2 chain, 3 seq. Returns {} | {version, ended, deck_version, first_epoch,
//   origin_seq, size, last_epoch, seq} (chain fields '' when there is no chain).
inline constexpr const char* kChainState = R"lua(
local c = redis.call('HMGET', KEYS[1], 'version', 'ended', 'deck_version')
if not c[1] then return {} end
local ch = redis.call('HMGET', KEYS[2], 'first_epoch', 'origin_seq', 'size', 'last_epoch')
return {c[1], c[2] or '0', c[3] or '0', ch[1] or '', ch[2] or '', ch[3] or '', ch[4] or '',
        redis.call('GET', KEYS[3]) or '0'}
)lua";

// Every epoch of an activity. An epoch's seed leaves Redis only once it is revealed.
// KEYS: 1 cfg, 2 chain. ARGV: 1 key prefix. Returns {'not_found'} | {'ok', {field, value...}...}
inline constexpr const char* kFairness = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local last = tonumber(redis.call('HGET', KEYS[2], 'last_epoch') or '-1')
local out = {'ok'}
for e = 0, last do
  local h = redis.call('HGETALL', ARGV[1] .. 'epoch:' .. string.format('%d', e))
  local revealed = false
  for i = 1, #h, 2 do
    if h[i] == 'revealed_at_ms' then revealed = true end
  end
  local kept = {'epoch', string.format('%d', e)}
  for i = 1, #h, 2 do
    if h[i] ~= 'seed' or revealed then
      kept[#kept + 1] = h[i]
      kept[#kept + 1] = h[i + 1]
    end
  end
  out[#out + 1] = kept
end
return out
)lua";

// Draws not yet persisted, by id or by user: `fd:{A}:unpersisted` maps draw_id -> stream entry
// id and `fd:{A}:unpersisted:byuser` holds '<user>\0<draw_id>' (all scores 0, so ordered by
// user, then by the draw id's ULID time), both written by the draw script and cleaned by the
// stream worker after its XACK. Versions before 2026-11-25 wrote `fd:{A}:unpersisted:u:<user>`
// (the user's draw ids scored by drawn_at_ms) instead: read here too. An index entry whose stream
// entry is gone (trimmed after a cleanup that failed) is dropped here.
// A user's: every draw at the cursor's millisecond (ARGV 3, '' for none), then the newest n
// before it, plus every draw sharing the n-th one's millisecond, so that whatever ranks among
// the next n after the cursor in any order within a millisecond (the caller orders by seq and
// draw_id too) is returned; from each layout.
// KEYS: 1 unpersisted, 2 stream, 3 unpersisted:u:<user>, 4 unpersisted:byuser (3 and 4: user only)
// ARGV: 1 'id' | 'user', 2 draw_id (id) or n (user), 3 cursor's drawn_at_ms or '' (user),
//       4 user_id (user)
// Returns a list of stream entry field lists ({field, value, ...}).
inline constexpr const char* kFindUnpersisted = R"lua(
-- The first 10 characters of a ULID made at `ms` (Crockford base32 of the 48-bit time).
local function ulid_time(ms)
  local alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  ms = math.max(0, math.min(ms, 281474976710655))
  local out = {}
  for i = 9, 0, -1 do
    local d = math.floor(ms / 32 ^ i) % 32
    out[#out + 1] = string.sub(alphabet, d + 1, d + 1)
  end
  return table.concat(out)
end

local ids = {}
local member = {}  -- draw_id -> its member in KEYS[4] (absent: from the per-user set)
if ARGV[1] == 'id' then
  ids = {ARGV[2]}
else
  local n = tonumber(ARGV[2])
  -- The per-user set of earlier versions.
  local upper = '+inf'
  if ARGV[3] ~= '' then
    ids = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[3], ARGV[3])
    upper = '(' .. ARGV[3]
  end
  local older = redis.call('ZREVRANGEBYSCORE', KEYS[3], upper, '-inf', 'LIMIT', 0, n)
  local have = {}
  for _, id in ipairs(older) do
    ids[#ids + 1] = id
    have[id] = true
  end
  if #older == n then
    local s = redis.call('ZSCORE', KEYS[3], older[n])
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], s, s)) do
      if not have[id] then ids[#ids + 1] = id end
    end
  end
  -- The activity's set: the same by lexical ranges over '<user>\0<ULID>'.
  local p = ARGV[4] .. '\0'
  local function add(m)
    local id = string.sub(m, #p + 1)
    if string.len(id) == 26 and not member[id] then
      ids[#ids + 1] = id
      member[id] = m
    end
  end
  local top = '(' .. p .. '\255'
  if ARGV[3] ~= '' then
    local at = p .. ulid_time(tonumber(ARGV[3]))
    for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], '[' .. at, '(' .. at .. '\255')) do add(m) end
    top = '(' .. at
  end
  local newest = redis.call('ZREVRANGEBYLEX', KEYS[4], top, '[' .. p, 'LIMIT', 0, n)
  for _, m in ipairs(newest) do add(m) end
  if #newest == n then
    local at = string.sub(newest[n], 1, #p + 10)
    for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], '[' .. at, '(' .. at .. '\255')) do add(m) end
  end
end
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[1], id)
  local found = false
  if entry then
    local items = redis.call('XRANGE', KEYS[2], entry, entry)
    if items[1] then
      out[#out + 1] = items[1][2]
      found = true
    else
      redis.call('HDEL', KEYS[1], id)
    end
  end
  if not found then
    if member[id] then
      redis.call('ZREM', KEYS[4], member[id])
    elseif KEYS[3] then
      redis.call('ZREM', KEYS[3], id)
    end
  end
end
return out
)lua";

// The worker's cleanup of the read index once draws are persisted (committed to the database):
// two commands per round in the usual case. When ZREM removes fewer members than it was given,
// some draws were indexed by a version before 2026-11-25, in a set of their user's: the users'
// sets of that chunk are cleaned too (a ZREM of an absent member or key changes nothing).
// KEYS: 1 unpersisted, 2 unpersisted:byuser.
// ARGV: 1 earlier versions' user index prefix 'fd:{A}:unpersisted:u:', then draw_id, user_id pairs.
// The per-user keys are not declared: they share the activity's hash tag, hence its slot.
inline constexpr const char* kForgetPersisted = R"lua(
local ids, members = {}, {}
for i = 2, #ARGV - 1, 2 do
  ids[#ids + 1] = ARGV[i]
  members[#members + 1] = ARGV[i + 1] .. '\0' .. ARGV[i]
end
for i = 1, #ids, 1000 do
  local j = math.min(i + 999, #ids)
  if redis.call('ZREM', KEYS[2], unpack(members, i, j)) < j - i + 1 then
    for k = i, j do redis.call('ZREM', ARGV[1] .. ARGV[2 * k + 1], ids[k]) end
  end
  redis.call('HDEL', KEYS[1], unpack(ids, i, j))
end
return 0
)lua";

}  // namespace fairdraw::redis::scripts

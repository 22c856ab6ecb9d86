//! The Lua scripts the Redis backend runs server-side (see `docs/store.md`, "Redis layout").
//!
//! Members of a history sorted set are `desc(event) ++ desc(created)` (16 bytes, every score
//! 0), so lexicographic order is newest first, as RocksDB's keys are. Lua compares strings with
//! the server's collation, so byte order is compared by hand.

/// Writes the rows of several entities of one view. `KEYS` = per entity `history, values,
/// newest`; `ARGV[1]` = the retention cutoff member (`""`: keep everything), then per entity
/// its row count followed by `(times, row)` pairs. Per entity: every row lands in history,
/// rows older than the cutoff are trimmed, and the newest key is set to the newest member and
/// its row (dropped with the rest when nothing is left).
pub(super) const WRITE: &str = r"
local cutoff = ARGV[1]
local a = 2
for k = 1, #KEYS, 3 do
  local h, v, n = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local c = tonumber(ARGV[a])
  a = a + 1
  for j = 1, c do
    redis.call('ZADD', h, 0, ARGV[a])
    redis.call('HSET', v, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  if cutoff ~= '' then
    local old = redis.call('ZRANGEBYLEX', h, '[' .. cutoff, '+')
    if #old > 0 then
      redis.call('ZREMRANGEBYLEX', h, '[' .. cutoff, '+')
      for i = 1, #old, 1000 do
        redis.call('HDEL', v, unpack(old, i, math.min(i + 999, #old)))
      end
    end
  end
  local top = redis.call('ZRANGE', h, 0, 0)
  if #top == 0 then
    redis.call('DEL', h, v, n)
  else
    redis.call('SET', n, top[1] .. redis.call('HGET', v, top[1]))
  end
end
return #KEYS / 3
";

/// Trims one entity's history to the retention cutoff (`KEYS` = history, values, newest;
/// `ARGV[1]` = the cutoff member): what compaction does on RocksDB.
pub(super) const TRIM: &str = r"
local h, v, n = KEYS[1], KEYS[2], KEYS[3]
local old = redis.call('ZRANGEBYLEX', h, '[' .. ARGV[1], '+')
if #old == 0 then return 0 end
redis.call('ZREMRANGEBYLEX', h, '[' .. ARGV[1], '+')
for i = 1, #old, 1000 do
  redis.call('HDEL', v, unpack(old, i, math.min(i + 999, #old)))
end
local top = redis.call('ZRANGE', h, 0, 0)
if #top == 0 then
  redis.call('DEL', h, v, n)
else
  redis.call('SET', n, top[1] .. redis.call('HGET', v, top[1]))
end
return #old
";

/// The newest row at or before a time: `KEYS` = history, values; `ARGV[1]` = the first
/// member to consider (`desc(bound) ++ desc(max)`), `ARGV[2]` = `desc(created cutoff)` or
/// `""`. Returns `{member, row}` or nil.
pub(super) const LATEST: &str = r"
local function at_least(a, b)
  for i = 1, #b do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return true
end
local start, cut = '[' .. ARGV[1], ARGV[2]
local off = 0
while true do
  local ms = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', off, 64)
  if #ms == 0 then return false end
  for _, m in ipairs(ms) do
    if cut == '' or at_least(string.sub(m, 9, 16), cut) then
      return {m, redis.call('HGET', KEYS[2], m)}
    end
  end
  off = off + #ms
end
";

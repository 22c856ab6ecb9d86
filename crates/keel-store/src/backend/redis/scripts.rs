//! The one Lua script the Redis backend runs server-side (see `docs/store.md`, "Redis
//! layout"): writes, online reads, history and retention are plain commands.
//!
//! Members of an entity's sorted set are `desc(event) ++ desc(created) ++ row` (every score
//! 0), so lexicographic order is newest first, as RocksDB's keys are. Lua compares strings
//! with the server's collation, so byte order is compared by hand.

/// The newest row at or before a time: `KEYS[1]` = the entity's sorted set; `ARGV[1]` = the
/// first member to consider (`desc(bound) ++ desc(max)`), `ARGV[2]` = `desc(created cutoff)`
/// or `""`. Returns the member (times and row) or nil.
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
      return m
    end
  end
  off = off + #ms
end
";

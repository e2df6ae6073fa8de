//! The only code that changes a global quota bucket in Redis: two Lua scripts, each atomic.
//!
//! A bucket is a hash with `r` and `t` (the RPM and TPM levels, floats, negative while in debt)
//! and `ts` (Redis `TIME` of the last refill, in microseconds). An absent bucket is full. Each
//! script refills by the elapsed Redis time (`limit` per 60 s, capped at the limit), applies its
//! change and sets the key to expire once it would be full again (then absent = full).
use redis::Script;

use crate::state::redis_link::Conn;
use spillway_core::QuotaLimits;

/// Shared by both scripts: `level(cap, h, i, elapsed)` and `store(key, cap, level, now)`.
const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local h = redis.call('HMGET', KEYS[1], 'r', 't', 'ts')
local elapsed = now - (tonumber(h[3]) or now)
if elapsed < 0 then elapsed = 0 end
local level = {0, 0}
for i = 1, 2 do
  if cap[i] >= 0 then
    local l = tonumber(h[i]) or cap[i]
    l = l + cap[i] * elapsed / 60000000
    if l > cap[i] then l = cap[i] end
    level[i] = l
  end
end
local function store()
  local fields = {'ts', string.format('%.17g', now)}
  local names = {'r', 't'}
  local ms = 0
  for i = 1, 2 do
    if cap[i] >= 0 then
      fields[#fields + 1] = names[i]
      fields[#fields + 1] = string.format('%.17g', level[i])
      if cap[i] > 0 then
        local m = (cap[i] - level[i]) * 60000 / cap[i]
        if m > ms then ms = m end
      end
    end
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], math.ceil(ms) + 1000)
end
"#;

/// ARGV: cap_r, cap_t (-1: unlimited), want_r, want_t, need_r, need_t. Grants between `need`
/// and `want` of each (as much of `want` as the bucket holds), or nothing.
/// Returns {granted 1/0, got_r, got_t, retry_after_ms (-1: never fits)}.
const TAKE: &str = r#"
local want = {tonumber(ARGV[3]), tonumber(ARGV[4])}
local need = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local wait = 0
for i = 1, 2 do
  if cap[i] >= 0 and need[i] > level[i] and wait >= 0 then
    if need[i] > cap[i] then
      wait = -1
    else
      local w = math.ceil((need[i] - level[i]) * 60000 / cap[i])
      if w < 1 then w = 1 end
      if w > wait then wait = w end
    end
  end
end
if wait ~= 0 then
  store()
  return {0, 0, 0, wait}
end
local got = {0, 0}
for i = 1, 2 do
  if cap[i] >= 0 then
    local g = math.floor(level[i])
    if g > want[i] then g = want[i] end
    if g < need[i] then g = need[i] end
    level[i] = level[i] - g
    got[i] = g
  end
end
store()
return {1, got[1], got[2], 0}
"#;

/// ARGV: cap_r, cap_t (-1: unlimited), give_r, give_t (negative: a debt). Returns 1.
const GIVE: &str = r#"
local give = {tonumber(ARGV[3]), tonumber(ARGV[4])}
for i = 1, 2 do
  if cap[i] >= 0 then
    level[i] = level[i] + give[i]
    if level[i] > cap[i] then level[i] = cap[i] end
  end
end
store()
return 1
"#;

pub(super) struct Scripts {
    take: Script,
    give: Script,
}

fn cap(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            take: Script::new(&format!("{PRELUDE}{TAKE}")),
            give: Script::new(&format!("{PRELUDE}{GIVE}")),
        }
    }

    /// Take between `need` and `want` (requests, tokens) from the bucket at `key`.
    pub(super) async fn take(
        &self,
        conn: &mut Conn,
        key: &str,
        limits: QuotaLimits,
        want: (u64, u64),
        need: (u64, u64),
    ) -> redis::RedisResult<(i64, i64, i64, i64)> {
        let mut inv = self.take.prepare_invoke();
        inv.key(key)
            .arg(cap(limits.rpm))
            .arg(cap(limits.tpm))
            .arg(want.0)
            .arg(want.1)
            .arg(need.0)
            .arg(need.1);
        inv.invoke_async(conn).await
    }

    /// Give back `r` requests and `t` tokens (`t` negative: charge a debt).
    pub(super) async fn give(
        &self,
        conn: &mut Conn,
        key: &str,
        limits: QuotaLimits,
        r: u64,
        t: i64,
    ) -> redis::RedisResult<()> {
        let mut inv = self.give.prepare_invoke();
        inv.key(key)
            .arg(cap(limits.rpm))
            .arg(cap(limits.tpm))
            .arg(r)
            .arg(t);
        inv.invoke_async::<i64>(conn).await.map(|_| ())
    }
}

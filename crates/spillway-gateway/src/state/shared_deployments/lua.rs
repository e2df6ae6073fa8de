//! The only code that changes deployment state in Redis: two Lua scripts, each atomic, each on
//! the keys of one deployment (one hash tag, so one Cluster slot). Times are Redis's own `TIME`
//! in milliseconds; what crosses to an instance is always relative ("for 700 ms", "cleared
//! 40 ms ago"), so the instances' clocks never need to agree.
//!
//! * `load` hash: field = instance id, value = `"<expires_ms> <in_flight> <requests> <tokens>"`.
//! * `health` hash: `eject` (ejected until, ms; `0`: cleared by a recovery), `cool` (cooling
//!   down until, ms), `at` (when `eject` last changed, ms). It expires 10 s after the later of
//!   the two, so a recovery stays visible for that long.
use redis::Script;

use crate::state::redis_link::Conn;
use spillway_core::Load;

/// KEYS: load, health. ARGV: instance, ttl_ms, in_flight, requests, tokens.
/// Writes this instance's load (alive for `ttl_ms`), drops the entries whose instance stopped
/// heart-beating, and returns the others' sums with the health record:
/// `{in_flight, requests, tokens, eject_left_ms, cool_left_ms, cleared_ago_ms (-1: none)}`.
const SYNC: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1],
  string.format('%.0f %s %s %s', now + ttl, ARGV[3], ARGV[4], ARGV[5]))
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local all = redis.call('HGETALL', KEYS[1])
local sum = {0, 0, 0}
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local e, a, b, c = string.match(all[i + 1], '^(%d+) (%d+) (%d+) (%d+)$')
    if e == nil or tonumber(e) <= now then
      redis.call('HDEL', KEYS[1], all[i])
    else
      sum[1] = sum[1] + tonumber(a)
      sum[2] = sum[2] + tonumber(b)
      sum[3] = sum[3] + tonumber(c)
    end
  end
end
local h = redis.call('HMGET', KEYS[2], 'eject', 'cool', 'at')
local function left(x)
  local v = tonumber(x)
  if v == nil or v <= now then return 0 end
  return v - now
end
local cleared = -1
if tonumber(h[1]) == 0 and tonumber(h[3]) ~= nil then
  cleared = math.max(0, now - tonumber(h[3]))
end
return {sum[1], sum[2], sum[3], left(h[1]), left(h[2]), cleared}
"#;

/// KEYS: health. ARGV: kind (`eject`, `cool`, `clear`, `recovered`), ms (how long from now, for
/// `eject` and `cool`; how long ago the recovery happened, for `recovered`). An ejection or
/// cooldown only ever extends what is there; `clear` (a recovery now) replaces the ejection on
/// record (running, or ended less than 10 s ago: the others may still be half-open) with a
/// tombstone saying when. `recovered` (a recovery seen while Redis was unreachable, republished)
/// does the same only if the ejection on record began no later than the recovery, and also
/// leaves a tombstone where there is no record (a restarted Redis), for the instances that
/// learned the ejection before the outage. Returns 1 if the record changed.
const HEALTH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'eject', 'cool', 'at')
local eject = tonumber(h[1]) or 0
local cool = tonumber(h[2]) or 0
local at = tonumber(h[3]) or now
local kind = ARGV[1]
local changed = false
if kind == 'eject' then
  local u = now + tonumber(ARGV[2])
  if u > eject then eject = u; at = now; changed = true end
elseif kind == 'cool' then
  local u = now + tonumber(ARGV[2])
  if u > cool then cool = u; changed = true end
elseif kind == 'clear' then
  if eject > 0 then eject = 0; at = now; changed = true end
elseif kind == 'recovered' then
  local when = now - tonumber(ARGV[2])
  if (eject > 0 and at <= when) or h[1] == false then
    eject = 0; at = when; changed = true
  end
end
if not changed then return 0 end
redis.call('HSET', KEYS[1], 'eject', string.format('%.0f', eject),
  'cool', string.format('%.0f', cool), 'at', string.format('%.0f', at))
redis.call('PEXPIRE', KEYS[1], math.max(eject, cool, now) - now + 10000)
return 1
"#;

/// What [`Scripts::sync`] answered for one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Synced {
    /// The other live instances' load.
    pub(super) remote: Load,
    /// Ejected for this long from now (0: not ejected).
    pub(super) eject_left_ms: u64,
    /// Cooling down for this long from now (0: not).
    pub(super) cool_left_ms: u64,
    /// A recovery ended the last ejection this long ago.
    pub(super) cleared_ago_ms: Option<u64>,
}

/// A health change to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Eject {
        ms: u64,
    },
    Cool {
        ms: u64,
    },
    /// A recovery, now.
    Clear,
    /// A recovery `ago_ms` ago, seen while Redis was unreachable.
    Recovered {
        ago_ms: u64,
    },
}

pub(super) struct Scripts {
    sync: Script,
    health: Script,
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            sync: Script::new(SYNC),
            health: Script::new(HEALTH),
        }
    }

    /// Publish `own` load (alive for `ttl_ms`) and read the others' and the health record.
    pub(super) async fn sync(
        &self,
        conn: &mut Conn,
        keys: &super::Keys,
        instance: &str,
        ttl_ms: u64,
        own: Load,
    ) -> redis::RedisResult<Synced> {
        let mut inv = self.sync.prepare_invoke();
        inv.key(&keys.load)
            .key(&keys.health)
            .arg(instance)
            .arg(ttl_ms)
            .arg(own.in_flight)
            .arg(own.requests)
            .arg(own.tokens);
        let v: Vec<i64> = inv.invoke_async(conn).await?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Ok(Synced {
            remote: Load {
                in_flight: u32::try_from(at(0)).unwrap_or(if at(0) > 0 { u32::MAX } else { 0 }),
                requests: unsigned(at(1)),
                tokens: unsigned(at(2)),
            },
            eject_left_ms: unsigned(at(3)),
            cool_left_ms: unsigned(at(4)),
            cleared_ago_ms: (at(5) >= 0 && v.len() > 5).then(|| unsigned(at(5))),
        })
    }

    /// Publish one health change.
    pub(super) async fn publish(
        &self,
        conn: &mut Conn,
        health_key: &str,
        change: Change,
    ) -> redis::RedisResult<()> {
        let (kind, ms) = match change {
            Change::Eject { ms } => ("eject", ms),
            Change::Cool { ms } => ("cool", ms),
            Change::Clear => ("clear", 0),
            Change::Recovered { ago_ms } => ("recovered", ago_ms),
        };
        let mut inv = self.health.prepare_invoke();
        inv.key(health_key).arg(kind).arg(ms);
        inv.invoke_async::<i64>(conn).await.map(|_| ())
    }

    /// Withdraw this instance's load (graceful shutdown).
    pub(super) async fn leave(
        &self,
        conn: &mut Conn,
        load_key: &str,
        instance: &str,
    ) -> redis::RedisResult<()> {
        redis::cmd("HDEL")
            .arg(load_key)
            .arg(instance)
            .query_async::<i64>(conn)
            .await
            .map(|_| ())
    }
}

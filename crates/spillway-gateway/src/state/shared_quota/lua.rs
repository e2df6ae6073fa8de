//! The only code that changes a global quota bucket in Redis: three Lua scripts, each atomic.
//!
//! A bucket is a hash with `r` and `t` (the RPM and TPM levels, floats, negative while in debt)
//! and `ts` (Redis `TIME` of the last refill, in microseconds). An absent bucket is full. Each
//! script refills by the elapsed Redis time (`limit` per 60 s, capped at the limit), applies its
//! change and sets the key to expire once it would be full again (then absent = full).
//!
//! Every change carries an operation id, recorded in the same script as `<quota>:op:<id>` (same
//! hash tag, so the same Cluster slot) for [`OP_TTL`]: what a take granted (`"<r> <t>"`; a give
//! or a refused take records `"0 0"`). A script finding its id already recorded changes nothing
//! and answers "duplicate". [`RESOLVE`] settles an operation whose answer never reached the
//! instance: recorded, it gives back what the take granted and marks the id `done`; not
//! recorded, it marks the id `void`, so that the operation, should it still arrive, does
//! nothing. Either way the operation has then happened exactly once or not at all, and the
//! instance knows which.
use std::time::Duration;

use redis::Script;

use crate::state::redis_link::Conn;
use spillway_core::QuotaLimits;

/// How long an operation id is remembered in Redis.
pub(super) const OP_TTL: Duration = Duration::from_secs(120);

/// Shared by every script: `level` (refilled), `store()` and `credit(amounts)`.
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
local function credit(amounts)
  for i = 1, 2 do
    if cap[i] >= 0 then
      level[i] = level[i] + amounts[i]
      if level[i] > cap[i] then level[i] = cap[i] end
    end
  end
end
"#;

/// KEYS: bucket, op. ARGV: cap_r, cap_t (-1: unlimited), give_r, give_t, want_r, want_t, need_r,
/// need_t, ttl_s. First gives back `give` (the instance's pending refunds; `give_t` negative: a
/// debt), then grants between `need` and `want` of each (as much of `want` as the bucket holds),
/// or nothing. Returns {granted 1/0 (-1: duplicate op), got_r, got_t, retry_after_ms (-1: never
/// fits)}.
const TAKE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0, 0, 0} end
credit({tonumber(ARGV[3]), tonumber(ARGV[4])})
local want = {tonumber(ARGV[5]), tonumber(ARGV[6])}
local need = {tonumber(ARGV[7]), tonumber(ARGV[8])}
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
  redis.call('SET', KEYS[2], '0 0', 'EX', ARGV[9])
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
redis.call('SET', KEYS[2], string.format('%d %d', got[1], got[2]), 'EX', ARGV[9])
return {1, got[1], got[2], 0}
"#;

/// KEYS: bucket, op. ARGV: cap_r, cap_t (-1: unlimited), give_r, give_t (negative: a debt),
/// ttl_s. Returns 1 (-1: duplicate op).
const GIVE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
credit({tonumber(ARGV[3]), tonumber(ARGV[4])})
store()
redis.call('SET', KEYS[2], '0 0', 'EX', ARGV[5])
return 1
"#;

/// KEYS: bucket, op. ARGV: cap_r, cap_t (-1: unlimited), ttl_s. Returns 1 if the operation ran
/// (what it took is back in the bucket now), 0 if it did not and never will.
const RESOLVE: &str = r#"
local v = redis.call('GET', KEYS[2])
if not v then
  redis.call('SET', KEYS[2], 'void', 'EX', ARGV[3])
  return 0
end
if v == 'void' then return 0 end
if v == 'done' then return 1 end
local r, tk = string.match(v, '^(%S+) (%S+)$')
local back = {tonumber(r) or 0, tonumber(tk) or 0}
if back[1] ~= 0 or back[2] ~= 0 then
  credit(back)
  store()
end
redis.call('SET', KEYS[2], 'done', 'EX', ARGV[3])
return 1
"#;

/// The Redis keys of one quota: its bucket and the prefix of its operation ids.
pub(super) struct QuotaKeys {
    /// `<prefix>:{q:…}` (the hash tag included).
    pub base: String,
}

impl QuotaKeys {
    pub fn bucket(&self) -> String {
        format!("{}:b", self.base)
    }

    pub fn op(&self, id: &str) -> String {
        format!("{}:op:{id}", self.base)
    }
}

/// What a take asks for: pending refunds to give first, then between `need` and `want`
/// (requests, tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TakeArgs {
    pub give: (u64, i64),
    pub want: (u64, u64),
    pub need: (u64, u64),
}

pub(super) struct Scripts {
    take: Script,
    give: Script,
    resolve: Script,
}

fn cap(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            take: Script::new(&format!("{PRELUDE}{TAKE}")),
            give: Script::new(&format!("{PRELUDE}{GIVE}")),
            resolve: Script::new(&format!("{PRELUDE}{RESOLVE}")),
        }
    }

    /// Give back `args.give`, then take between `args.need` and `args.want`, as operation `id`.
    pub(super) async fn take(
        &self,
        conn: &mut Conn,
        keys: &QuotaKeys,
        id: &str,
        limits: QuotaLimits,
        args: TakeArgs,
    ) -> redis::RedisResult<(i64, i64, i64, i64)> {
        let mut inv = self.take.prepare_invoke();
        inv.key(keys.bucket())
            .key(keys.op(id))
            .arg(cap(limits.rpm))
            .arg(cap(limits.tpm))
            .arg(args.give.0)
            .arg(args.give.1)
            .arg(args.want.0)
            .arg(args.want.1)
            .arg(args.need.0)
            .arg(args.need.1)
            .arg(OP_TTL.as_secs());
        inv.invoke_async(conn).await
    }

    /// Give back `r` requests and `t` tokens (`t` negative: charge a debt), as operation `id`.
    /// `false`: the id was already recorded (nothing changed now).
    pub(super) async fn give(
        &self,
        conn: &mut Conn,
        keys: &QuotaKeys,
        id: &str,
        limits: QuotaLimits,
        (r, t): (u64, i64),
    ) -> redis::RedisResult<bool> {
        let mut inv = self.give.prepare_invoke();
        inv.key(keys.bucket())
            .key(keys.op(id))
            .arg(cap(limits.rpm))
            .arg(cap(limits.tpm))
            .arg(r)
            .arg(t)
            .arg(OP_TTL.as_secs());
        inv.invoke_async::<i64>(conn).await.map(|v| v == 1)
    }

    /// Settle operation `id`, whose answer was lost: `true` if it ran (what it took is back in
    /// the bucket), `false` if it did not and never will.
    pub(super) async fn resolve(
        &self,
        conn: &mut Conn,
        keys: &QuotaKeys,
        id: &str,
        limits: QuotaLimits,
    ) -> redis::RedisResult<bool> {
        let mut inv = self.resolve.prepare_invoke();
        inv.key(keys.bucket())
            .key(keys.op(id))
            .arg(cap(limits.rpm))
            .arg(cap(limits.tpm))
            .arg(OP_TTL.as_secs());
        inv.invoke_async::<i64>(conn).await.map(|v| v == 1)
    }
}

/// The scripts against a real `redis-server` (started per test on a free port, no persistence;
/// as the end-to-end tests, they need the binary on `PATH`).
#[cfg(test)]
mod tests {
    use super::*;
    use redis::AsyncCommands;
    use std::process::{Child, Command, Stdio};

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn redis() -> (Server, Conn) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install -y redis-server)");
        let server = Server(child);
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        for _ in 0..200 {
            if let Ok(c) = redis::aio::ConnectionManager::new(client.clone()).await {
                return (server, Conn::Single(c));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not answer on port {port}");
    }

    const LIMITS: QuotaLimits = QuotaLimits {
        rpm: None,
        tpm: Some(600),
    };

    fn keys() -> QuotaKeys {
        QuotaKeys {
            base: "t:{q:a:m:r:x}".into(),
        }
    }

    fn take_args(give: i64, need: u64) -> TakeArgs {
        TakeArgs {
            give: (0, give),
            want: (0, need),
            need: (0, need),
        }
    }

    /// The bucket's token level (absent: full), to the token: the refill between two calls of a
    /// test is a few hundredths of a token at 600 a minute.
    async fn level(c: &mut Conn) -> i64 {
        let t: Option<f64> = c.hget(keys().bucket(), "t").await.expect("HGET");
        t.map_or(600, |v| v.floor() as i64)
    }

    #[tokio::test]
    async fn a_take_whose_answer_was_lost_is_given_back_once_by_resolve() {
        let (_server, mut c) = redis().await;
        let s = Scripts::new();
        let got = s
            .take(&mut c, &keys(), "op1", LIMITS, take_args(0, 100))
            .await;
        assert_eq!(got.expect("take"), (1, 0, 100, 0));
        assert_eq!(level(&mut c).await, 500);
        // Its answer is lost: resolving finds it ran and gives back what it took, once.
        assert!(
            s.resolve(&mut c, &keys(), "op1", LIMITS)
                .await
                .expect("resolve")
        );
        assert_eq!(
            level(&mut c).await,
            600,
            "back (the level is capped at the limit)"
        );
        let _ = s
            .take(&mut c, &keys(), "op2", LIMITS, take_args(0, 300))
            .await;
        assert!(
            s.resolve(&mut c, &keys(), "op1", LIMITS)
                .await
                .expect("again")
        );
        assert_eq!(level(&mut c).await, 300, "not given back twice");
        // Delivered again (a client retry): nothing changes, and the answer says so.
        let dup = s
            .take(&mut c, &keys(), "op1", LIMITS, take_args(0, 100))
            .await;
        assert_eq!(dup.expect("duplicate"), (-1, 0, 0, 0));
        assert_eq!(level(&mut c).await, 300);
    }

    #[tokio::test]
    async fn a_take_resolved_before_it_arrives_never_runs() {
        let (_server, mut c) = redis().await;
        let s = Scripts::new();
        assert!(
            !s.resolve(&mut c, &keys(), "late", LIMITS)
                .await
                .expect("resolve")
        );
        let late = s
            .take(&mut c, &keys(), "late", LIMITS, take_args(50, 100))
            .await;
        assert_eq!(late.expect("late take"), (-1, 0, 0, 0));
        assert_eq!(level(&mut c).await, 600, "nothing taken");
        assert!(
            !s.resolve(&mut c, &keys(), "late", LIMITS)
                .await
                .expect("again")
        );
    }

    #[tokio::test]
    async fn a_take_gives_back_what_is_owed_before_it_decides() {
        let (_server, mut c) = redis().await;
        let s = Scripts::new();
        let all = s
            .take(&mut c, &keys(), "a", LIMITS, take_args(0, 600))
            .await;
        assert_eq!(all.expect("take all").0, 1);
        // Empty: 165 fits only with the 300 owed, given back in the same call.
        let no = s
            .take(&mut c, &keys(), "b", LIMITS, take_args(0, 165))
            .await;
        assert_eq!(no.expect("refused").0, 0);
        let yes = s
            .take(&mut c, &keys(), "c", LIMITS, take_args(300, 165))
            .await;
        assert_eq!(yes.expect("granted"), (1, 0, 165, 0));
        assert_eq!(level(&mut c).await, 135);
        // A refused take still gave back what it carried.
        let refused = s
            .take(&mut c, &keys(), "d", LIMITS, take_args(10, 400))
            .await;
        assert_eq!(refused.expect("refused").0, 0);
        assert_eq!(level(&mut c).await, 145);
        assert!(
            s.resolve(&mut c, &keys(), "d", LIMITS)
                .await
                .expect("resolve")
        );
        assert_eq!(level(&mut c).await, 145, "it took nothing");
    }

    #[tokio::test]
    async fn a_give_delivered_twice_counts_once() {
        let (_server, mut c) = redis().await;
        let s = Scripts::new();
        let _ = s
            .take(&mut c, &keys(), "t", LIMITS, take_args(0, 500))
            .await;
        assert!(
            s.give(&mut c, &keys(), "g", LIMITS, (0, 200))
                .await
                .expect("give")
        );
        assert!(
            !s.give(&mut c, &keys(), "g", LIMITS, (0, 200))
                .await
                .expect("again")
        );
        assert_eq!(level(&mut c).await, 300);
        // A debt is a negative give.
        assert!(
            s.give(&mut c, &keys(), "debt", LIMITS, (0, -50))
                .await
                .expect("debt")
        );
        assert_eq!(level(&mut c).await, 250);
        assert!(
            s.resolve(&mut c, &keys(), "g", LIMITS)
                .await
                .expect("resolve")
        );
        assert_eq!(level(&mut c).await, 250);
    }
}

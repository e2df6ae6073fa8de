//! Cache affinity across gateway instances: where each instance sent which prompt, shared
//! through Redis (`[state] kind = "redis"`), so that every instance's estimate of the regions'
//! prefix caches ([`spillway_core::PrefixIndex`]) covers the prompts the others routed too.
//!
//! # Design
//!
//! Nothing on a request's path waits on Redis (the lease idea of the quotas): the core logs the
//! prompts it records ([`Router::log_prefixes`]), and a background task, every [`TICK`],
//!
//! * takes the log and appends it, per deployment, as one entry of that deployment's Redis
//!   stream `{prefix}:{d:<model>:<region>}:prefix` (`XADD … MAXLEN ~` [`STREAM_LEN`]; the
//!   entry names this instance and packs the prompts' block hashes), and
//! * reads what was appended to each stream since its last read (`XREAD`), skips its own
//!   entries, and teaches the core the others' prompts ([`Router::learn_prefix`]), each dated
//!   by its entry id against Redis's clock now (this instance's own new entry's id, or `TIME`
//!   when it sent none: one call, and only when there is something to date), so that old
//!   entries expire with the estimate's time to live as the sender's own do.
//!
//! An instance that starts reads each stream from its beginning: it learns the recent routing
//! of the others (at most [`STREAM_LEN`] entries a deployment) instead of starting cold.
//!
//! # Redis unavailable
//!
//! The log is taken and dropped while the link is down, and nothing is read: each instance then
//! routes on what it recorded itself and learned before, which is cache-aware for its own
//! traffic and blind to the others' since then, and the estimate's time to live ages out what
//! it learned. When the link comes back the streams are read on from the last entry seen.
//!
//! # Bounds
//!
//! A prompt routed by one instance is known to the others within `TICK + 2 × RTT` (about
//! 0.1 s on a LAN; the tests assert < 2 s). Redis holds at most [`STREAM_LEN`] entries per
//! deployment (approximately: `MAXLEN ~` trims whole nodes), each at most [`LOG_CAP`] prompts
//! of at most [`SHARED_BLOCKS`] blocks (their leading ones).
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::Value;
use spillway_core::prefix::LOG_CAP;
use spillway_core::{DeploymentIx, Router};

use crate::config::Config;
use crate::state::lock;
use crate::state::redis_link::{RedisLink, escape};
use crate::state::routing::RouterCell;

/// How often the log is published and the others' entries read.
pub const TICK: Duration = Duration::from_millis(100);
/// Entries kept per deployment's stream: about a minute of one instance's ticks.
pub const STREAM_LEN: usize = 512;
/// Leading blocks of a prompt that are shared (64 K tokens): what routing weighs most, and a
/// bound on an entry's size.
pub const SHARED_BLOCKS: usize = 128;
/// Entries read per stream and call.
const READ_COUNT: usize = 512;

/// The streams and where this instance is in each.
pub struct SharedPrefix {
    link: Arc<RedisLink>,
    instance: String,
    /// Per deployment: its stream's key, when it models a prefix cache.
    streams: Vec<Option<String>>,
    /// Per deployment: the id of the last entry read.
    last: Mutex<Vec<String>>,
    /// Entries older than this are not learned (`[routing] prefix_cache_ttl_secs`).
    ttl: Duration,
}

impl SharedPrefix {
    /// `None` when no deployment models a prefix cache: nothing to share.
    pub fn new(cfg: &Config, link: Arc<RedisLink>, instance: &str) -> Option<SharedPrefix> {
        let streams: Vec<Option<String>> = cfg
            .deployments
            .iter()
            .map(|d| {
                (d.prefix_cache_blocks > 0).then(|| {
                    format!(
                        "{}:{{d:{}:{}}}:prefix",
                        link.cfg.key_prefix,
                        escape(&cfg.models[d.model].id),
                        escape(cfg.region_name(d.region)),
                    )
                })
            })
            .collect();
        streams.iter().any(Option::is_some).then(|| SharedPrefix {
            last: Mutex::new(vec!["0-0".to_string(); streams.len()]),
            link,
            instance: instance.to_string(),
            streams,
            ttl: cfg.prefix_cache_ttl,
        })
    }

    /// Start the background task on `router`, whose clock is the time since `epoch`; it stops
    /// when the router is dropped.
    pub fn start(this: &Arc<SharedPrefix>, router: Weak<Mutex<RouterCell>>, epoch: Instant) {
        if let Some(cell) = router.upgrade() {
            lock(&cell).router.log_prefixes(true);
        }
        tokio::spawn(background(this.clone(), router, epoch));
    }
}

async fn background(sp: Arc<SharedPrefix>, router: Weak<Mutex<RouterCell>>, epoch: Instant) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cell) = router.upgrade() else {
            return;
        };
        let log = lock(&cell).router.take_prefix_log();
        if !sp.link.is_up() {
            continue;
        }
        let Some(sent_ms) = publish(&sp, log).await else {
            continue;
        };
        let read = read(&sp).await;
        if read.is_empty() {
            continue;
        }
        // Redis's clock now: our new entry's id, or asked for when there was nothing to send.
        let now_ms = match sent_ms {
            0 => redis_now_ms(&sp).await,
            ms => Some(ms),
        };
        let Some(now_ms) = now_ms else { continue };
        let learned = read.into_iter().map(|(d, ms, blocks)| {
            let ago = Duration::from_millis(now_ms.saturating_sub(ms));
            (d, ago, blocks)
        });
        let now = epoch.elapsed();
        let router: &mut Router = &mut lock(&cell).router;
        for (d, ago, blocks) in learned.filter(|(_, ago, _)| *ago <= sp.ttl) {
            router.learn_prefix(d, &blocks, now.saturating_sub(ago));
        }
    }
}

/// Append each deployment's prompts as one stream entry; `None` if Redis did not take them,
/// else the newest entry's time (Redis's clock, ms; 0 when nothing was sent).
async fn publish(sp: &SharedPrefix, log: Vec<(DeploymentIx, Vec<u64>)>) -> Option<u64> {
    let mut by_deployment: Vec<Vec<&[u64]>> = vec![Vec::new(); sp.streams.len()];
    for (d, blocks) in &log {
        if let Some(list) = by_deployment.get_mut(d.0 as usize) {
            list.push(&blocks[..blocks.len().min(SHARED_BLOCKS)]);
        }
    }
    let mut sent_ms = 0;
    for (d, prompts) in by_deployment.iter().enumerate() {
        let Some(key) = sp.streams[d].as_deref().filter(|_| !prompts.is_empty()) else {
            continue;
        };
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LEN)
            .arg("*")
            .arg("i")
            .arg(&sp.instance)
            .arg("p")
            .arg(pack(prompts));
        let id = sp
            .link
            .call(async |c| cmd.query_async::<String>(c).await)
            .await
            .ok()?;
        sent_ms = sent_ms.max(id_ms(&id));
    }
    Some(sent_ms)
}

/// Redis's clock (`TIME`), in milliseconds.
async fn redis_now_ms(sp: &SharedPrefix) -> Option<u64> {
    let cmd = redis::cmd("TIME");
    let (secs, micros): (u64, u64) = sp
        .link
        .call(async |c| cmd.query_async(c).await)
        .await
        .ok()?;
    Some(secs * 1_000 + micros / 1_000)
}

/// The others' prompts appended since the last read: (deployment, when its entry was appended
/// by Redis's clock in ms, blocks).
async fn read(sp: &SharedPrefix) -> Vec<(DeploymentIx, u64, Vec<u64>)> {
    let mut out = Vec::new();
    for (d, key) in sp.streams.iter().enumerate() {
        let Some(key) = key else { continue };
        let from = lock(&sp.last)[d].clone();
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS")
            .arg(key)
            .arg(&from);
        let Ok(reply) = sp
            .link
            .call(async |c| cmd.query_async::<Value>(c).await)
            .await
        else {
            break;
        };
        for (id, instance, packed) in entries(&reply) {
            lock(&sp.last)[d] = id.clone();
            if instance == sp.instance {
                continue;
            }
            for blocks in unpack(&packed) {
                out.push((DeploymentIx(d as u32), id_ms(&id), blocks));
            }
        }
    }
    out
}

/// `(id, instance, packed prompts)` of each entry of an `XREAD` reply (one stream).
fn entries(reply: &Value) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let streams = match reply {
        Value::Array(s) => s.as_slice(),
        Value::Map(m) => return m.iter().flat_map(|(_, v)| stream_entries(v)).collect(),
        _ => return out,
    };
    for stream in streams {
        if let Value::Array(pair) = stream
            && let Some(list) = pair.get(1)
        {
            out.extend(stream_entries(list));
        }
    }
    out
}

fn stream_entries(list: &Value) -> Vec<(String, String, Vec<u8>)> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Array(entry) = item else { continue };
        let (Some(id), Some(Value::Array(fields))) = (entry.first().and_then(text), entry.get(1))
        else {
            continue;
        };
        let (mut instance, mut packed) = (None, None);
        for kv in fields.chunks(2) {
            match (kv.first().and_then(text).as_deref(), kv.get(1)) {
                (Some("i"), Some(v)) => instance = text(v),
                (Some("p"), Some(Value::BulkString(b))) => packed = Some(b.clone()),
                _ => {}
            }
        }
        if let (Some(i), Some(p)) = (instance, packed) {
            out.push((id, i, p));
        }
    }
    out
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The milliseconds of a stream id (`<ms>-<seq>`).
fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Prompts as bytes: per prompt a little-endian `u16` count, then its block hashes as
/// little-endian `u64`s (prompts of more than 65,535 blocks keep their first 65,535).
fn pack(prompts: &[&[u64]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prompts.iter().map(|p| 2 + 8 * p.len()).sum());
    for p in prompts.iter().take(LOG_CAP) {
        let n = p.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(n as u16).to_le_bytes());
        for b in &p[..n] {
            out.extend_from_slice(&b.to_le_bytes());
        }
    }
    out
}

/// The inverse of [`pack`]; a truncated tail is dropped.
fn unpack(bytes: &[u8]) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((n, tail)) = rest.split_first_chunk::<2>() {
        let n = usize::from(u16::from_le_bytes(*n));
        let Some((body, tail)) = tail.split_at_checked(8 * n) else {
            break;
        };
        out.push(
            body.chunks_exact(8)
                .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
                .collect(),
        );
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_pack_and_unpack() {
        let a = [1u64, u64::MAX, 3];
        let b: [u64; 0] = [];
        let c = [42u64];
        let packed = pack(&[&a, &b, &c]);
        assert_eq!(unpack(&packed), vec![a.to_vec(), vec![], c.to_vec()]);
        // A truncated tail is dropped, not misread.
        assert_eq!(
            unpack(&packed[..packed.len() - 3]),
            vec![a.to_vec(), vec![]]
        );
        assert!(unpack(&[7]).is_empty());
    }

    #[test]
    fn ids_give_their_milliseconds() {
        assert_eq!(id_ms("1733540000123-4"), 1_733_540_000_123);
        assert_eq!(id_ms("junk"), 0);
    }
}

//! Application profiles in Redis: the truth with `[state] kind = "redis"`.
//!
//! Four keys, all with the hash tag `{ap}` (one Cluster slot, so each script's keys are
//! together): `<prefix>:{ap}:p` (hash: id → the profile as JSON), `:n` (hash: tenant `\n` name →
//! id, names are unique per tenant), `:t` (hash: tenant `\n` clientRequestToken → id) and `:v`
//! (a version, seeded at random and incremented by every change, so an instance refreshes its
//! cache only when something changed, and a Redis restarted empty is noticed). Create, delete
//! and the snapshot are one Lua script each; fetching one profile is one `HGET`.
//!
//! Every call writes what it learnt into the shared cache (create and fetch insert, delete and
//! a missing fetch remove, the snapshot replaces it whole); one gate per instance orders those
//! writes so an older answer never overwrites a newer one. [`background`] refreshes the cache
//! every [`REFRESH`] so that deletes made through other instances reach it within the bound the
//! parent module states.
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use redis::Script;
use serde::{Deserialize, Serialize};

use super::{
    AppProfile, CopySource, NewAppProfile, Pending, ProfileStore, SharedCache, TagEdit,
    already_used, lock, name_taken,
};
use crate::config::{Config, TenantIx};
use crate::error::EdgeError;
use crate::state::redis_link::RedisLink;

mod tags;

/// How often each instance refreshes its cache from Redis.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Ids remembered as missing at most (then the memory is cleared).
const MISSING_CAP: usize = 10_000;

/// KEYS: p, n, t, v. ARGV: id, tenant, name, token ('' = none), record, version seed.
/// Returns {0, record} created, {1, record} the token's earlier profile, {2, ''} the name is
/// taken, {3, ''} the id is taken.
const CREATE: &str = r#"
local nk = ARGV[2] .. '\n' .. ARGV[3]
local tk = nil
if ARGV[4] ~= '' then
  tk = ARGV[2] .. '\n' .. ARGV[4]
  local old = redis.call('HGET', KEYS[3], tk)
  if old then
    local rec = redis.call('HGET', KEYS[1], old)
    if rec then return {1, rec} end
  end
end
if redis.call('HEXISTS', KEYS[2], nk) == 1 then return {2, ''} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {3, ''} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[2], nk, ARGV[1])
if tk then redis.call('HSET', KEYS[3], tk, ARGV[1]) end
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SET', KEYS[4], ARGV[6]) end
redis.call('INCR', KEYS[4])
return {0, ARGV[5]}
"#;

/// KEYS: p, n, t, v. ARGV: id, tenant, version seed. Returns 1 deleted, 0 no such profile of
/// this tenant.
const DELETE: &str = r#"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
local r = cjson.decode(rec)
if r.tenant ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local nk = r.tenant .. '\n' .. r.name
if redis.call('HGET', KEYS[2], nk) == ARGV[1] then redis.call('HDEL', KEYS[2], nk) end
if type(r.token) == 'string' then
  local tk = r.tenant .. '\n' .. r.token
  if redis.call('HGET', KEYS[3], tk) == ARGV[1] then redis.call('HDEL', KEYS[3], tk) end
end
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SET', KEYS[4], ARGV[3]) end
redis.call('INCR', KEYS[4])
return 1
"#;

/// KEYS: p, v. ARGV: the version the caller has ('' = none). Returns {version, 0, {}} if it
/// is current, else {version, 1, {id, record, ...}}.
const SNAPSHOT: &str = r#"
local v = redis.call('GET', KEYS[2]) or '0'
if v == ARGV[1] then return {v, 0, {}} end
return {v, 1, redis.call('HGETALL', KEYS[1])}
"#;

/// A profile as stored: names, not this instance's indices (instances may order their
/// configuration differently).
#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    arn: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    tenant: String,
    region: String,
    source: Source,
    tags: Vec<(String, String)>,
    created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Source {
    Model { model: String, region: String },
    Profile { profile: String },
}

pub(super) struct RedisStore {
    cfg: Arc<Config>,
    link: Arc<RedisLink>,
    cache: SharedCache,
    keys: [String; 4],
    create: Script,
    delete: Script,
    /// [`tags::REPLACE`].
    replace: Script,
    snapshot: Script,
    /// Serialises this instance's calls that change the cache from Redis, so an older answer
    /// never overwrites a newer one.
    gate: tokio::sync::Mutex<()>,
}

fn unavailable() -> EdgeError {
    EdgeError::Unavailable(
        "Application inference profiles are kept in the shared state (Redis), which is unreachable; \
         try again later."
            .into(),
    )
}

fn seed() -> u64 {
    // Random, below 2^52: a Redis restarted empty starts from another version.
    (uuid::Uuid::new_v4().as_u128() as u64) >> 12
}

impl RedisStore {
    pub(super) fn new(cfg: Arc<Config>, link: Arc<RedisLink>, cache: SharedCache) -> RedisStore {
        let prefix = &link.cfg.key_prefix;
        let keys = ["p", "n", "t", "v"].map(|k| format!("{prefix}:{{ap}}:{k}"));
        RedisStore {
            cfg,
            link,
            cache,
            keys,
            create: Script::new(CREATE),
            delete: Script::new(DELETE),
            replace: Script::new(tags::REPLACE),
            snapshot: Script::new(SNAPSHOT),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    fn encode(&self, p: &AppProfile) -> Record {
        let cfg = &self.cfg;
        Record {
            id: p.id.clone(),
            arn: p.arn.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            tenant: cfg.tenants[p.tenant].name.clone(),
            region: cfg.region_name(p.region).to_string(),
            source: match p.source {
                CopySource::Model { model, region } => Source::Model {
                    model: cfg.models[model].id.clone(),
                    region: cfg.region_name(region).to_string(),
                },
                CopySource::Profile(ix) => Source::Profile {
                    profile: cfg.profiles[ix].id.clone(),
                },
            },
            tags: p.tags.clone(),
            created_ms: p
                .created_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            token: p.client_request_token.clone(),
        }
    }

    /// A stored profile as this instance sees it; `None` if its configuration lacks the
    /// tenant, region, model or profile (or the JSON is not a profile).
    fn decode(&self, json: &str) -> Option<AppProfile> {
        let cfg = &self.cfg;
        let r: Record = serde_json::from_str(json).ok()?;
        let tenant = TenantIx::nth(cfg.tenants.iter().position(|t| t.name == r.tenant)?);
        let source = match &r.source {
            Source::Model { model, region } => CopySource::Model {
                model: cfg.model_ix(model)?,
                region: cfg.region_ix(region)?,
            },
            Source::Profile { profile } => CopySource::Profile(cfg.profile_ix(profile)?),
        };
        Some(AppProfile {
            region: cfg.region_ix(&r.region)?,
            id: r.id,
            arn: r.arn,
            name: r.name,
            description: r.description,
            tenant,
            source,
            tags: r.tags,
            created_at: SystemTime::UNIX_EPOCH + Duration::from_millis(r.created_ms),
            client_request_token: r.token,
        })
    }

    async fn create(&self, new: NewAppProfile) -> Result<AppProfile, EdgeError> {
        if !self.link.is_up() {
            return Err(unavailable());
        }
        let _gate = self.gate.lock().await;
        let (name, source) = (new.name.clone(), new.source);
        let tenant = self.cfg.tenants[new.tenant].name.clone();
        let token = new.client_request_token.clone().unwrap_or_default();
        let mut profile = new.build(super::random_id());
        for _ in 0..8 {
            let json = serde_json::to_string(&self.encode(&profile))
                .map_err(|e| EdgeError::Unavailable(format!("cannot encode the profile: {e}")))?;
            let (keys, script) = (&self.keys, &self.create);
            let (code, rec): (i64, String) = self
                .link
                .call(async |c| {
                    let mut inv = script.prepare_invoke();
                    inv.key(&keys[..]).arg(&profile.id).arg(&tenant);
                    inv.arg(&name).arg(&token).arg(&json).arg(seed());
                    inv.invoke_async(c).await
                })
                .await
                .map_err(|_| unavailable())?;
            match code {
                0 => {
                    let mut cache = lock(&self.cache);
                    cache.missing.remove(&profile.id);
                    cache.by_id.insert(profile.id.clone(), profile.clone());
                    return Ok(profile);
                }
                1 => {
                    let earlier = self.decode(&rec).ok_or_else(already_used)?;
                    if earlier.name != name || earlier.source != source {
                        return Err(already_used());
                    }
                    lock(&self.cache)
                        .by_id
                        .insert(earlier.id.clone(), earlier.clone());
                    return Ok(earlier);
                }
                2 => return Err(name_taken(&name)),
                _ => profile.id = super::random_id(),
            }
            profile.arn = match profile.arn.rsplit_once('/') {
                Some((head, _)) => format!("{head}/{}", profile.id),
                None => profile.arn.clone(),
            };
        }
        Err(unavailable())
    }

    async fn delete(&self, tenant: TenantIx, id: &str) -> Result<bool, EdgeError> {
        if !self.link.is_up() {
            return Err(unavailable());
        }
        let _gate = self.gate.lock().await;
        let name = self.cfg.tenants[tenant].name.as_str();
        let (keys, script) = (&self.keys, &self.delete);
        let deleted: i64 = self
            .link
            .call(async |c| {
                let mut inv = script.prepare_invoke();
                inv.key(&keys[..]).arg(id).arg(name).arg(seed());
                inv.invoke_async(c).await
            })
            .await
            .map_err(|_| unavailable())?;
        let mut cache = lock(&self.cache);
        if deleted == 1 || cache.by_id.get(id).is_some_and(|p| p.tenant == tenant) {
            cache.by_id.remove(id);
        }
        Ok(deleted == 1)
    }

    /// Fetch one profile into the cache (or drop it from the cache: deleted elsewhere). No-op
    /// while Redis does not answer: the cache serves.
    async fn fetch(&self, id: &str) {
        if !self.link.is_up() {
            return;
        }
        let _gate = self.gate.lock().await;
        let key = &self.keys[0];
        let got = self
            .link
            .call(async |c| {
                redis::cmd("HGET")
                    .arg(key)
                    .arg(id)
                    .query_async::<Option<String>>(c)
                    .await
            })
            .await;
        let Ok(got) = got else {
            return;
        };
        let profile = got.as_deref().and_then(|json| self.decode(json));
        let mut cache = lock(&self.cache);
        match profile {
            Some(p) => {
                cache.missing.remove(id);
                cache.by_id.insert(id.to_string(), p);
            }
            None => {
                cache.by_id.remove(id);
                if cache.missing.len() >= MISSING_CAP {
                    cache.missing.clear();
                }
                cache.missing.insert(id.to_string(), Instant::now());
            }
        }
    }

    /// [`RedisStore::fetch`] an id this instance does not know, unless it was asked for less than
    /// [`REFRESH`] ago.
    async fn fetch_if_unknown(&self, id: &str) {
        {
            let cache = lock(&self.cache);
            if cache.by_id.contains_key(id)
                || cache.missing.get(id).is_some_and(|t| t.elapsed() < REFRESH)
            {
                return;
            }
        }
        self.fetch(id).await;
    }

    /// Reload the cache if anything changed in Redis since it was loaded.
    async fn refresh(&self) {
        if !self.link.is_up() {
            return;
        }
        let _gate = self.gate.lock().await;
        let known = lock(&self.cache).version.clone().unwrap_or_default();
        let (keys, script) = (&self.keys, &self.snapshot);
        let snap = self
            .link
            .call(async |c| {
                let mut inv = script.prepare_invoke();
                inv.key(&keys[0]).key(&keys[3]).arg(&known);
                inv.invoke_async::<(String, i64, Vec<String>)>(c).await
            })
            .await;
        let Ok((version, changed, flat)) = snap else {
            return;
        };
        if changed == 0 {
            return;
        }
        let mut by_id = HashMap::new();
        for pair in flat.chunks_exact(2) {
            match self.decode(&pair[1]) {
                Some(p) => {
                    by_id.insert(pair[0].clone(), p);
                }
                None => tracing::debug!(
                    id = %pair[0],
                    "application profile in Redis not usable with this configuration; skipped"
                ),
            }
        }
        let mut cache = lock(&self.cache);
        cache.by_id = by_id;
        cache.version = Some(version);
        cache.missing.clear();
    }
}

// The trait's methods call the inherent ones of the same name (a path names the inherent
// method first).
impl ProfileStore for RedisStore {
    fn create(&self, new: NewAppProfile) -> Pending<'_, Result<AppProfile, EdgeError>> {
        Box::pin(RedisStore::create(self, new))
    }

    fn delete<'a>(&'a self, tenant: TenantIx, id: &'a str) -> Pending<'a, Result<bool, EdgeError>> {
        Box::pin(RedisStore::delete(self, tenant, id))
    }

    fn edit_tags<'a>(
        &'a self,
        tenant: TenantIx,
        id: &'a str,
        edit: TagEdit,
    ) -> Pending<'a, Result<Option<AppProfile>, EdgeError>> {
        Box::pin(RedisStore::edit_tags(self, tenant, id, edit))
    }

    fn fetch<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(RedisStore::fetch(self, id))
    }

    fn fetch_if_unknown<'a>(&'a self, id: &'a str) -> Pending<'a, ()> {
        Box::pin(RedisStore::fetch_if_unknown(self, id))
    }

    fn refresh(&self) -> Pending<'_, ()> {
        Box::pin(RedisStore::refresh(self))
    }

    /// Refresh the cache every [`REFRESH`] until the store is dropped.
    fn start(self: Arc<Self>) {
        tokio::spawn(background(Arc::downgrade(&self)));
    }
}

/// Every [`REFRESH`] while Redis answers: reload the cache if anything changed.
async fn background(weak: Weak<RedisStore>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = weak.upgrade() else {
            return;
        };
        store.refresh().await;
    }
}

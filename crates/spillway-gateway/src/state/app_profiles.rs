//! Application inference profiles (`POST /inference-profiles`): created by a tenant from a
//! foundation model ARN or a system profile ARN, carrying tags for cost allocation. A profile
//! belongs to its tenant (others get 404), lives in its home region (the listener it was created
//! on), and routes like what it copies.
//!
//! # Two backends, one cache
//!
//! Where the truth is kept is a `ProfileStore`, picked once when [`AppProfiles`] is built
//! (DESIGN §2.1): the request and control-plane code never asks which one it has.
//!
//! * `memory::MemoryStore` (`[state] kind = "memory"`): the profiles live in this process
//!   only; create checks name uniqueness and `clientRequestToken` idempotency per tenant under
//!   the cache's lock, and there is nothing to fetch or refresh.
//! * `redis_store::RedisStore` (`[state] kind = "redis"`): Redis is the truth. Create and
//!   delete are one atomic Lua script each (name uniqueness and token idempotency hold across
//!   instances) and write through to the cache; while Redis does not answer they fail with 503
//!   `ServiceUnavailableException` rather than diverge, and known profiles keep resolving from
//!   the cache.
//!
//! Both backends fill one cache, owned here and lent to the store. Resolving a model id on a
//! request (the hot path, [`AppProfiles::get`]) reads only that cache: no I/O, no future, no
//! call through the trait, whichever backend holds the truth. With the memory backend the cache
//! *is* the truth (the store has nothing else to keep); with Redis it is this instance's copy,
//! which the store keeps current.
//!
//! # Staleness bound (Redis)
//!
//! The control-plane reads (get, list, delete's lookup) ask Redis first, so they see every
//! other instance's creates and deletes at once. A request naming a profile this instance does
//! not know fetches it from Redis before resolving (at most once per id per refresh interval),
//! so a profile created on one instance is callable on all at once. The cache is refreshed from
//! Redis every `redis_store::REFRESH` (1 s; one small script call, which returns only a
//! version number unless something changed): a profile deleted through another instance stops
//! resolving here within `REFRESH + OP_TIMEOUT` (1.3 s) while Redis answers. While it does not,
//! nothing can be created or deleted, so the cache cannot go stale except by an instance that
//! still reaches Redis in a partition; it catches up within 1 s of Redis answering again.
//!
//! Profiles are kept in Redis without expiry: run it with persistence, or a Redis restarted
//! empty loses them (every instance's cache follows within 1 s).
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use spillway_core::RegionIx;

use crate::config::{Config, ModelIx, ProfileIx, TenantIx};
use crate::error::EdgeError;
use crate::state::lock;
use crate::state::redis_link::RedisLink;

mod memory;
mod redis_store;

/// What an application profile routes like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopySource {
    /// A foundation model in one region: served there only (in-region quota).
    Model { model: ModelIx, region: RegionIx },
    /// A system profile: its destination set (cross-region quota).
    Profile(ProfileIx),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppProfile {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub description: Option<String>,
    pub tenant: TenantIx,
    pub region: RegionIx,
    pub source: CopySource,
    pub tags: Vec<(String, String)>,
    pub created_at: SystemTime,
    pub client_request_token: Option<String>,
}

/// What a create call asks for.
pub struct NewAppProfile {
    pub name: String,
    pub description: Option<String>,
    pub tenant: TenantIx,
    pub account_id: String,
    pub region: RegionIx,
    pub region_name: String,
    pub source: CopySource,
    pub tags: Vec<(String, String)>,
    pub client_request_token: Option<String>,
}

impl NewAppProfile {
    fn build(self, id: String) -> AppProfile {
        AppProfile {
            arn: format!(
                "arn:aws:bedrock:{}:{}:application-inference-profile/{id}",
                self.region_name, self.account_id
            ),
            id,
            name: self.name,
            description: self.description,
            tenant: self.tenant,
            region: self.region,
            source: self.source,
            tags: self.tags,
            created_at: now_ms(),
            client_request_token: self.client_request_token,
        }
    }
}

/// The most tags an application profile carries (Bedrock's limit per resource).
pub const MAX_TAGS: usize = 50;

/// A change to a profile's tags (TagResource, UntagResource).
#[derive(Debug, Clone, PartialEq)]
pub enum TagEdit {
    /// Add these tags; a key the profile has already gets the new value.
    Add(Vec<(String, String)>),
    /// Remove the tags with these keys (keys it does not have are ignored).
    Remove(Vec<String>),
}

impl TagEdit {
    /// Apply to `tags`; an addition that would leave more than [`MAX_TAGS`] is refused with
    /// `TooManyTagsException` and changes nothing.
    pub fn apply(&self, tags: &[(String, String)]) -> Result<Vec<(String, String)>, EdgeError> {
        let mut out = tags.to_vec();
        match self {
            TagEdit::Add(add) => {
                for (k, v) in add {
                    match out.iter_mut().find(|(key, _)| key == k) {
                        Some(slot) => slot.1 = v.clone(),
                        None => out.push((k.clone(), v.clone())),
                    }
                }
                if out.len() > MAX_TAGS {
                    return Err(EdgeError::TooManyTags(format!(
                        "The request would leave the resource with {} tags; a resource carries at most {MAX_TAGS}.",
                        out.len()
                    )));
                }
            }
            TagEdit::Remove(keys) => out.retain(|(k, _)| !keys.contains(k)),
        }
        Ok(out)
    }
}

/// The profiles this instance knows.
#[derive(Default)]
struct Cache {
    by_id: HashMap<String, AppProfile>,
    /// The Redis version the cache reflects (`None`: not loaded yet; always with memory).
    version: Option<String>,
    /// Ids asked of Redis and not found there, and when (asked again after
    /// `redis_store::REFRESH`; always empty with memory).
    missing: HashMap<String, Instant>,
}

impl Cache {
    /// The tenant's profiles in `region`, oldest first (ties by id, so the order is the same
    /// on every instance).
    fn list(&self, tenant: TenantIx, region: RegionIx) -> Vec<AppProfile> {
        let mut v: Vec<AppProfile> = self
            .by_id
            .values()
            .filter(|p| p.tenant == tenant && p.region == region)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }
}

/// The cache every backend fills and [`AppProfiles::get`] reads.
type SharedCache = Arc<Mutex<Cache>>;

/// A `ProfileStore` call in flight.
type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the truth about application profiles is kept. Every method leaves the shared cache
/// reflecting what it learnt, so the callers answer from the cache afterwards.
trait ProfileStore: Send + Sync {
    /// Create, or return the profile an earlier call with the same client request token made
    /// (if it asked for the same name and source); the result is in the cache.
    fn create(&self, new: NewAppProfile) -> Pending<'_, Result<AppProfile, EdgeError>>;

    /// Delete the tenant's profile (and drop it from the cache); `Ok(false)`: there is none
    /// with this id.
    fn delete<'a>(&'a self, tenant: TenantIx, id: &'a str) -> Pending<'a, Result<bool, EdgeError>>;

    /// Change the tags of the tenant's profile `id` (atomically with respect to every other
    /// change to it) and leave the result in the cache; `Ok(None)`: there is no such profile.
    fn edit_tags<'a>(
        &'a self,
        tenant: TenantIx,
        id: &'a str,
        edit: TagEdit,
    ) -> Pending<'a, Result<Option<AppProfile>, EdgeError>>;

    /// Bring the cache's entry for `id` up to date (the control plane's reads), if the truth
    /// answers.
    fn fetch<'a>(&'a self, id: &'a str) -> Pending<'a, ()>;

    /// [`ProfileStore::fetch`] for the request path: only an id the cache does not know, and
    /// at most once per id per refresh interval.
    fn fetch_if_unknown<'a>(&'a self, id: &'a str) -> Pending<'a, ()>;

    /// Bring the whole cache up to date (before listing), if the truth answers.
    fn refresh(&self) -> Pending<'_, ()>;

    /// Start background upkeep, if any; it stops when the store is dropped.
    fn start(self: Arc<Self>);
}

#[derive(Clone)]
pub struct AppProfiles {
    cache: SharedCache,
    /// The truth, picked once: memory or Redis.
    store: Arc<dyn ProfileStore>,
}

impl Default for AppProfiles {
    fn default() -> AppProfiles {
        AppProfiles::memory()
    }
}

fn already_used() -> EdgeError {
    EdgeError::Conflict("The client request token was already used for a different request.".into())
}

fn name_taken(name: &str) -> EdgeError {
    EdgeError::Conflict(format!("An inference profile named {name} already exists."))
}

impl AppProfiles {
    /// Kept in this process only (the memory state backend).
    pub fn memory() -> AppProfiles {
        let cache = SharedCache::default();
        AppProfiles {
            store: Arc::new(memory::MemoryStore::new(cache.clone())),
            cache,
        }
    }

    /// Shared through Redis when `link` is given, else kept in this process.
    pub fn new(cfg: Arc<Config>, link: Option<Arc<RedisLink>>) -> AppProfiles {
        let Some(link) = link else {
            return AppProfiles::memory();
        };
        let cache = SharedCache::default();
        AppProfiles {
            store: Arc::new(redis_store::RedisStore::new(cfg, link, cache.clone())),
            cache,
        }
    }

    /// Start the store's background upkeep (the Redis refresh); it stops when `self` is
    /// dropped.
    pub fn start(&self) {
        self.store.clone().start();
    }

    /// Create, or return the profile an earlier call with the same client request token made.
    pub async fn create(&self, new: NewAppProfile) -> Result<AppProfile, EdgeError> {
        self.store.create(new).await
    }

    /// The tenant's profile with this id, from this instance's cache (the hot path: no I/O);
    /// another tenant's profile is not found.
    pub fn get(&self, tenant: TenantIx, id: &str) -> Option<AppProfile> {
        lock(&self.cache)
            .by_id
            .get(id)
            .filter(|p| p.tenant == tenant)
            .cloned()
    }

    /// Before resolving `model_id` (as received, maybe percent-encoded): if it is an
    /// application profile ARN this instance does not know, fetch it from the store (with
    /// Redis at most once per id per refresh interval; a no-op with memory).
    pub async fn prefetch(&self, model_id: &str) {
        if !model_id.contains("application-inference-profile") {
            return;
        }
        if let Ok(spillway_proto::bedrock::ModelRef::ApplicationProfileArn { id, .. }) =
            spillway_proto::bedrock::parse_model_ref(model_id)
        {
            self.store.fetch_if_unknown(&id).await;
        }
    }

    /// Like [`AppProfiles::get`] for the control plane: asks the store first (Redis, if it
    /// answers).
    pub async fn lookup(&self, tenant: TenantIx, id: &str) -> Option<AppProfile> {
        self.store.fetch(id).await;
        self.get(tenant, id)
    }

    /// Delete the tenant's profile; `Ok(false)`: there is none with this id.
    pub async fn delete(&self, tenant: TenantIx, id: &str) -> Result<bool, EdgeError> {
        self.store.delete(tenant, id).await
    }

    /// Change the tags of the tenant's profile; `Ok(None)`: there is none with this id.
    pub async fn edit_tags(
        &self,
        tenant: TenantIx,
        id: &str,
        edit: TagEdit,
    ) -> Result<Option<AppProfile>, EdgeError> {
        self.store.edit_tags(tenant, id, edit).await
    }

    /// The tenant's profiles in `region`, oldest first (with Redis: refreshed first, if it
    /// answers).
    pub async fn list(&self, tenant: TenantIx, region: RegionIx) -> Vec<AppProfile> {
        self.store.refresh().await;
        lock(&self.cache).list(tenant, region)
    }
}

/// Now, to the millisecond (as stored in Redis, so every instance shows the same `createdAt`).
fn now_ms() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(0))
}

/// Twelve lowercase letters and digits, like Bedrock's application profile ids (from a random
/// UUID's hex digits).
fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

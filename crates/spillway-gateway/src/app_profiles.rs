//! Application inference profiles (`POST /inference-profiles`): created by a tenant from a
//! foundation model ARN or a system profile ARN, carrying tags for cost allocation. A profile
//! belongs to its tenant (others get 404), lives in its home region (the listener it was created
//! on), and routes like what it copies.
//!
//! # Where they live
//!
//! Every instance keeps the profiles it knows in memory: resolving a model id on a request
//! (the hot path, [`AppProfiles::get`]) reads only that cache. With the memory state backend the
//! cache is the truth. With `[state] kind = "redis"` Redis is ([`store`]): create and delete
//! are one atomic Lua script each (name uniqueness and `clientRequestToken` idempotency per
//! tenant hold across instances) and write through to the cache; while Redis does not answer
//! they fail with 503 `ServiceUnavailableException` rather than diverge, and known profiles
//! keep resolving from the cache.
//!
//! # Staleness bound
//!
//! The control-plane reads (get, list, delete's lookup) ask Redis first, so they see every
//! other instance's creates and deletes at once. A request naming a profile this instance does
//! not know fetches it from Redis before resolving (at most once per id per refresh interval),
//! so a profile created on one instance is callable on all at once. The cache is refreshed from
//! Redis every [`store::REFRESH`] (1 s; one small script call, which returns only a version
//! number unless something changed): a profile deleted through another instance stops resolving
//! here within `REFRESH + OP_TIMEOUT` (1.3 s) while Redis answers. While it does not, nothing
//! can be created or deleted, so the cache cannot go stale except by an instance that still
//! reaches Redis in a partition; it catches up within 1 s of Redis answering again.
//!
//! Profiles are kept in Redis without expiry: run it with persistence, or a Redis restarted
//! empty loses them (every instance's cache follows within 1 s).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use spillway_core::RegionIx;

use crate::config::{Config, ModelIx, ProfileIx, TenantIx};
use crate::error::EdgeError;
use crate::redis_link::RedisLink;

mod store;

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

/// The profiles this instance knows.
#[derive(Default)]
struct Cache {
    by_id: HashMap<String, AppProfile>,
    /// The Redis version the cache reflects (`None`: not loaded yet).
    version: Option<String>,
    /// Ids asked of Redis and not found there, and when (asked again after [`store::REFRESH`]).
    missing: HashMap<String, Instant>,
}

#[derive(Default)]
pub struct AppProfiles {
    cache: Arc<Mutex<Cache>>,
    /// Redis, the truth with `[state] kind = "redis"`.
    store: Option<Arc<store::Store>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        AppProfiles::default()
    }

    /// Shared through Redis when `link` is given, else kept in this process.
    pub fn new(cfg: Arc<Config>, link: Option<Arc<RedisLink>>) -> AppProfiles {
        let cache = Arc::new(Mutex::new(Cache::default()));
        AppProfiles {
            store: link.map(|l| Arc::new(store::Store::new(cfg, l, cache.clone()))),
            cache,
        }
    }

    /// Start the background refresh (Redis only); it stops when `self` is dropped.
    pub fn start(&self) {
        if let Some(s) = &self.store {
            tokio::spawn(store::background(Arc::downgrade(s)));
        }
    }

    /// Create, or return the profile an earlier call with the same client request token made.
    pub async fn create(&self, new: NewAppProfile) -> Result<AppProfile, EdgeError> {
        match &self.store {
            Some(s) => s.create(new).await,
            None => self.create_local(new),
        }
    }

    fn create_local(&self, new: NewAppProfile) -> Result<AppProfile, EdgeError> {
        let mut cache = lock(&self.cache);
        let map = &mut cache.by_id;
        if let Some(token) = &new.client_request_token
            && let Some(p) = map
                .values()
                .find(|p| p.tenant == new.tenant && p.client_request_token.as_ref() == Some(token))
        {
            return if p.name == new.name && p.source == new.source {
                Ok(p.clone())
            } else {
                Err(already_used())
            };
        }
        if map
            .values()
            .any(|p| p.tenant == new.tenant && p.name == new.name)
        {
            return Err(name_taken(&new.name));
        }
        let id = loop {
            let id = random_id();
            if !map.contains_key(&id) {
                break id;
            }
        };
        let profile = new.build(id.clone());
        map.insert(id, profile.clone());
        Ok(profile)
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
    /// application profile ARN this instance does not know, fetch it from Redis (at most once
    /// per id per refresh interval; no-op without Redis).
    pub async fn prefetch(&self, model_id: &str) {
        let Some(s) = &self.store else {
            return;
        };
        if !model_id.contains("application-inference-profile") {
            return;
        }
        if let Ok(spillway_proto::bedrock::ModelRef::ApplicationProfileArn { id, .. }) =
            spillway_proto::bedrock::parse_model_ref(model_id)
        {
            s.fetch_if_unknown(&id).await;
        }
    }

    /// Like [`AppProfiles::get`] for the control plane: asks Redis first (if it answers).
    pub async fn lookup(&self, tenant: TenantIx, id: &str) -> Option<AppProfile> {
        if let Some(s) = &self.store {
            s.fetch(id).await;
        }
        self.get(tenant, id)
    }

    /// Delete the tenant's profile; `Ok(false)`: there is none with this id.
    pub async fn delete(&self, tenant: TenantIx, id: &str) -> Result<bool, EdgeError> {
        if let Some(s) = &self.store {
            return s.delete(tenant, id).await;
        }
        let mut cache = lock(&self.cache);
        if cache.by_id.get(id).is_some_and(|p| p.tenant == tenant) {
            cache.by_id.remove(id);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The tenant's profiles in `region`, oldest first (with Redis: refreshed first, if it
    /// answers).
    pub async fn list(&self, tenant: TenantIx, region: RegionIx) -> Vec<AppProfile> {
        if let Some(s) = &self.store {
            s.refresh().await;
        }
        let cache = lock(&self.cache);
        let mut v: Vec<AppProfile> = cache
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

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str, token: Option<&str>) -> NewAppProfile {
        NewAppProfile {
            name: name.into(),
            description: None,
            tenant: 0,
            account_id: "123456789012".into(),
            region: RegionIx(0),
            region_name: "us-east-1".into(),
            source: CopySource::Profile(0),
            tags: vec![("team".into(), "search".into())],
            client_request_token: token.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn create_is_idempotent_on_the_token_and_names_are_unique() {
        let store = AppProfiles::memory();
        let a = store.create(new("a", Some("t1"))).await.unwrap();
        assert!(
            a.arn.starts_with(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/"
            )
        );
        assert_eq!(store.create(new("a", Some("t1"))).await.unwrap(), a);
        assert!(matches!(
            store.create(new("a", None)).await,
            Err(EdgeError::Conflict(_))
        ));
        assert!(matches!(
            store.create(new("b", Some("t1"))).await,
            Err(EdgeError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn profiles_belong_to_their_tenant() {
        let store = AppProfiles::memory();
        let a = store.create(new("a", None)).await.unwrap();
        assert!(store.get(1, &a.id).is_none());
        assert!(!store.delete(1, &a.id).await.unwrap());
        assert!(store.delete(0, &a.id).await.unwrap());
        assert!(store.get(0, &a.id).is_none());
    }
}

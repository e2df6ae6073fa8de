//! Application profiles kept in this process only: the memory state backend.
//!
//! The shared cache is the truth, so this store is the cache plus the rules a create and a
//! delete must keep, checked under the cache's lock (one process, so the lock is enough): a
//! name is unique per tenant, a `clientRequestToken` makes one profile per tenant (repeating the
//! call returns it; reusing the token for another name or source is a conflict), and a tenant
//! deletes only its own profiles. There is nothing to fetch, refresh or keep up in the
//! background, so those calls are ready at once.
use std::future::ready;
use std::sync::Arc;

use super::{
    AppProfile, NewAppProfile, Pending, ProfileStore, SharedCache, TagEdit, already_used, lock,
    name_taken, random_id,
};
use crate::config::TenantIx;
use crate::error::EdgeError;

pub(super) struct MemoryStore {
    cache: SharedCache,
}

impl MemoryStore {
    pub(super) fn new(cache: SharedCache) -> MemoryStore {
        MemoryStore { cache }
    }

    fn create_now(&self, new: NewAppProfile) -> Result<AppProfile, EdgeError> {
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

    fn edit_tags_now(
        &self,
        tenant: TenantIx,
        id: &str,
        edit: &TagEdit,
    ) -> Result<Option<AppProfile>, EdgeError> {
        let mut cache = lock(&self.cache);
        let Some(p) = cache.by_id.get_mut(id).filter(|p| p.tenant == tenant) else {
            return Ok(None);
        };
        p.tags = edit.apply(&p.tags)?;
        Ok(Some(p.clone()))
    }

    fn delete_now(&self, tenant: TenantIx, id: &str) -> bool {
        let mut cache = lock(&self.cache);
        if cache.by_id.get(id).is_some_and(|p| p.tenant == tenant) {
            cache.by_id.remove(id);
            true
        } else {
            false
        }
    }
}

impl ProfileStore for MemoryStore {
    fn create(&self, new: NewAppProfile) -> Pending<'_, Result<AppProfile, EdgeError>> {
        Box::pin(ready(self.create_now(new)))
    }

    fn delete<'a>(&'a self, tenant: TenantIx, id: &'a str) -> Pending<'a, Result<bool, EdgeError>> {
        Box::pin(ready(Ok(self.delete_now(tenant, id))))
    }

    fn edit_tags<'a>(
        &'a self,
        tenant: TenantIx,
        id: &'a str,
        edit: TagEdit,
    ) -> Pending<'a, Result<Option<AppProfile>, EdgeError>> {
        Box::pin(ready(self.edit_tags_now(tenant, id, &edit)))
    }

    fn fetch<'a>(&'a self, _id: &'a str) -> Pending<'a, ()> {
        Box::pin(ready(()))
    }

    fn fetch_if_unknown<'a>(&'a self, _id: &'a str) -> Pending<'a, ()> {
        Box::pin(ready(()))
    }

    fn refresh(&self) -> Pending<'_, ()> {
        Box::pin(ready(()))
    }

    fn start(self: Arc<Self>) {}
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use spillway_core::RegionIx;

    use super::super::{AppProfiles, CopySource};
    use super::*;
    use crate::config::ProfileIx;

    fn new(tenant: TenantIx, name: &str, token: Option<&str>) -> NewAppProfile {
        NewAppProfile {
            name: name.into(),
            description: None,
            tenant,
            account_id: "123456789012".into(),
            region: RegionIx(0),
            region_name: "us-east-1".into(),
            source: CopySource::Profile(ProfileIx(0)),
            tags: vec![("team".into(), "search".into())],
            client_request_token: token.map(str::to_string),
        }
    }

    fn conflict(r: Result<AppProfile, EdgeError>) -> String {
        match r {
            Err(EdgeError::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn create_without_a_token_makes_a_new_profile_each_time() {
        let profiles = AppProfiles::memory();
        let a = profiles.create(new(TenantIx(0), "a", None)).await.unwrap();
        assert_eq!(a.id.len(), 12);
        assert_eq!(
            a.arn,
            format!(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/{}",
                a.id
            )
        );
        assert_eq!(
            (a.name.as_str(), a.tenant, a.region),
            ("a", TenantIx(0), RegionIx(0))
        );
        assert_eq!(a.client_request_token, None);
        assert_eq!(profiles.get(TenantIx(0), &a.id), Some(a.clone()));
        let b = profiles.create(new(TenantIx(0), "b", None)).await.unwrap();
        assert_ne!(a.id, b.id);
    }

    #[tokio::test]
    async fn create_with_a_token_is_idempotent() {
        let profiles = AppProfiles::memory();
        let a = profiles
            .create(new(TenantIx(0), "a", Some("t1")))
            .await
            .unwrap();
        assert_eq!(a.client_request_token.as_deref(), Some("t1"));
        assert_eq!(
            profiles
                .create(new(TenantIx(0), "a", Some("t1")))
                .await
                .unwrap(),
            a
        );
        assert_eq!(profiles.list(TenantIx(0), RegionIx(0)).await, vec![a]);
    }

    #[tokio::test]
    async fn a_name_is_unique_per_tenant() {
        let profiles = AppProfiles::memory();
        profiles.create(new(TenantIx(0), "a", None)).await.unwrap();
        assert_eq!(
            conflict(profiles.create(new(TenantIx(0), "a", None)).await),
            "An inference profile named a already exists."
        );
        // A new token does not make a taken name free.
        assert!(
            profiles
                .create(new(TenantIx(0), "a", Some("t2")))
                .await
                .is_err()
        );
        // Another tenant may use the name.
        assert!(profiles.create(new(TenantIx(1), "a", None)).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_reused_for_another_request_is_a_conflict() {
        let profiles = AppProfiles::memory();
        profiles
            .create(new(TenantIx(0), "a", Some("t1")))
            .await
            .unwrap();
        let used = "The client request token was already used for a different request.";
        assert_eq!(
            conflict(profiles.create(new(TenantIx(0), "b", Some("t1"))).await),
            used
        );
        let mut other_source = new(TenantIx(0), "a", Some("t1"));
        other_source.source = CopySource::Profile(ProfileIx(1));
        assert_eq!(conflict(profiles.create(other_source).await), used);
        // Tokens are per tenant too.
        let theirs = profiles
            .create(new(TenantIx(1), "b", Some("t1")))
            .await
            .unwrap();
        assert_eq!(theirs.tenant, TenantIx(1));
        assert_eq!(profiles.list(TenantIx(0), RegionIx(0)).await.len(), 1);
    }

    #[tokio::test]
    async fn delete_frees_the_name_and_the_token() {
        let profiles = AppProfiles::memory();
        let a = profiles
            .create(new(TenantIx(0), "a", Some("t1")))
            .await
            .unwrap();
        assert!(profiles.delete(TenantIx(0), &a.id).await.unwrap());
        assert_eq!(profiles.get(TenantIx(0), &a.id), None);
        assert_eq!(profiles.lookup(TenantIx(0), &a.id).await, None);
        assert!(
            !profiles.delete(TenantIx(0), &a.id).await.unwrap(),
            "already gone"
        );
        let again = profiles
            .create(new(TenantIx(0), "a", Some("t1")))
            .await
            .unwrap();
        assert_ne!(again.id, a.id, "a new profile, not the deleted one");
    }

    #[tokio::test]
    async fn another_tenants_profile_is_not_found() {
        let profiles = AppProfiles::memory();
        let a = profiles.create(new(TenantIx(0), "a", None)).await.unwrap();
        assert_eq!(profiles.get(TenantIx(1), &a.id), None);
        assert_eq!(profiles.lookup(TenantIx(1), &a.id).await, None);
        assert!(profiles.list(TenantIx(1), RegionIx(0)).await.is_empty());
        assert!(!profiles.delete(TenantIx(1), &a.id).await.unwrap());
        assert_eq!(profiles.lookup(TenantIx(0), &a.id).await, Some(a));
    }

    #[tokio::test]
    async fn tags_are_edited_on_the_tenants_profile_only() {
        let profiles = AppProfiles::memory();
        let a = profiles.create(new(TenantIx(0), "a", None)).await.unwrap();
        let add = TagEdit::Add(vec![
            ("team".into(), "ads".into()),
            ("cost".into(), "42".into()),
        ]);
        let edited = profiles
            .edit_tags(TenantIx(0), &a.id, add.clone())
            .await
            .unwrap()
            .unwrap();
        let want = vec![
            ("team".to_string(), "ads".to_string()),
            ("cost".to_string(), "42".to_string()),
        ];
        assert_eq!(edited.tags, want, "an existing key takes the new value");
        assert_eq!(profiles.get(TenantIx(0), &a.id).unwrap().tags, want);
        assert_eq!(
            profiles.edit_tags(TenantIx(1), &a.id, add).await.unwrap(),
            None
        );
        let removed = profiles
            .edit_tags(
                TenantIx(0),
                &a.id,
                TagEdit::Remove(vec!["team".into(), "x".into()]),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(removed.tags, vec![("cost".to_string(), "42".to_string())]);
        let many: Vec<(String, String)> =
            (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        let e = profiles
            .edit_tags(TenantIx(0), &a.id, TagEdit::Add(many))
            .await
            .unwrap_err();
        assert_eq!(e.bedrock_type().1, "TooManyTagsException");
        assert_eq!(
            profiles.get(TenantIx(0), &a.id).unwrap().tags.len(),
            1,
            "unchanged"
        );
    }

    #[tokio::test]
    async fn list_is_oldest_first_then_by_id_and_per_region() {
        let profiles = AppProfiles::memory();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // (id, name, created, region), inserted out of order.
        let rows = [
            ("ccc", "c", t0, 0),
            ("bbb", "b", t0 + Duration::from_millis(5), 0),
            ("aaa", "a", t0 + Duration::from_millis(5), 0),
            ("ddd", "d", t0 - Duration::from_millis(1), 1),
        ];
        for (id, name, created, region) in rows {
            let mut p = new(TenantIx(0), name, None);
            p.region = RegionIx(region);
            let mut profile = p.build(id.into());
            profile.created_at = created;
            lock(&profiles.cache).by_id.insert(id.into(), profile);
        }
        let ids = |v: Vec<AppProfile>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(
            ids(profiles.list(TenantIx(0), RegionIx(0)).await),
            ["ccc", "aaa", "bbb"]
        );
        assert_eq!(ids(profiles.list(TenantIx(0), RegionIx(1)).await), ["ddd"]);
        let e = profiles.create(new(TenantIx(0), "e", None)).await.unwrap();
        assert_eq!(
            ids(profiles.list(TenantIx(0), RegionIx(0)).await),
            ["ccc", "aaa", "bbb", e.id.as_str()]
        );
    }
}

//! Application inference profiles (`POST /inference-profiles`): created by a tenant from a
//! foundation model ARN or a system profile ARN, carrying tags for cost allocation. A profile
//! belongs to its tenant (others get 404), lives in its home region (the listener it was created
//! on), and routes like what it copies. The memory state backend keeps them in this process.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use spillway_core::RegionIx;

use crate::config::{ModelIx, ProfileIx, TenantIx};
use crate::error::EdgeError;

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

#[derive(Default)]
pub struct AppProfiles {
    by_id: Mutex<HashMap<String, AppProfile>>,
}

impl AppProfiles {
    /// Create, or return the profile an earlier call with the same client request token made.
    pub fn create(&self, new: NewAppProfile) -> Result<AppProfile, EdgeError> {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(token) = &new.client_request_token
            && let Some(p) = map
                .values()
                .find(|p| p.tenant == new.tenant && p.client_request_token.as_ref() == Some(token))
        {
            return if p.name == new.name && p.source == new.source {
                Ok(p.clone())
            } else {
                Err(EdgeError::Conflict(
                    "The client request token was already used for a different request.".into(),
                ))
            };
        }
        if map
            .values()
            .any(|p| p.tenant == new.tenant && p.name == new.name)
        {
            return Err(EdgeError::Conflict(format!(
                "An inference profile named {} already exists.",
                new.name
            )));
        }
        let id = loop {
            let id = random_id();
            if !map.contains_key(&id) {
                break id;
            }
        };
        let profile = AppProfile {
            arn: format!(
                "arn:aws:bedrock:{}:{}:application-inference-profile/{id}",
                new.region_name, new.account_id
            ),
            id: id.clone(),
            name: new.name,
            description: new.description,
            tenant: new.tenant,
            region: new.region,
            source: new.source,
            tags: new.tags,
            created_at: SystemTime::now(),
            client_request_token: new.client_request_token,
        };
        map.insert(id, profile.clone());
        Ok(profile)
    }

    /// The tenant's profile with this id; another tenant's profile is not found.
    pub fn get(&self, tenant: TenantIx, id: &str) -> Option<AppProfile> {
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|p| p.tenant == tenant).cloned()
    }

    pub fn delete(&self, tenant: TenantIx, id: &str) -> bool {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(id).is_some_and(|p| p.tenant == tenant) {
            map.remove(id);
            true
        } else {
            false
        }
    }

    /// The tenant's profiles in `region`, oldest first.
    pub fn list(&self, tenant: TenantIx, region: RegionIx) -> Vec<AppProfile> {
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<AppProfile> = map
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

    #[test]
    fn create_is_idempotent_on_the_token_and_names_are_unique() {
        let store = AppProfiles::default();
        let a = store.create(new("a", Some("t1"))).unwrap();
        assert!(
            a.arn.starts_with(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/"
            )
        );
        assert_eq!(store.create(new("a", Some("t1"))).unwrap(), a);
        assert!(matches!(
            store.create(new("a", None)),
            Err(EdgeError::Conflict(_))
        ));
        assert!(matches!(
            store.create(new("b", Some("t1"))),
            Err(EdgeError::Conflict(_))
        ));
    }

    #[test]
    fn profiles_belong_to_their_tenant() {
        let store = AppProfiles::default();
        let a = store.create(new("a", None)).unwrap();
        assert!(store.get(1, &a.id).is_none());
        assert!(!store.delete(1, &a.id));
        assert!(store.delete(0, &a.id));
        assert!(store.get(0, &a.id).is_none());
    }
}

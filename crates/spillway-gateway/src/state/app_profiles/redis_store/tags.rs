//! Tags of a profile in Redis: TagResource and UntagResource read the profile's record, edit
//! its tags, and write it back with a compare-and-set script, so two instances editing one
//! profile at once never lose an edit (the loser reads the winner's record and edits again).
use super::{AppProfile, EdgeError, RedisStore, TagEdit, TenantIx, lock, seed, unavailable};

/// KEYS: p, v. ARGV: id, the record the caller read, the record to write, version seed.
/// Returns {1, ''} written, {0, ''} no such profile, {2, record} the record changed meanwhile
/// (the current one is returned, to edit again).
pub(super) const REPLACE: &str = r#"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return {0, ''} end
if rec ~= ARGV[2] then return {2, rec} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[4]) end
redis.call('INCR', KEYS[2])
return {1, ''}
"#;

impl RedisStore {
    /// Edit a profile's tags: read its record, edit, and write it back only if nobody changed
    /// it meanwhile (compare-and-set in one script; a lost race reads again, a few times).
    pub(super) async fn edit_tags(
        &self,
        tenant: TenantIx,
        id: &str,
        edit: TagEdit,
    ) -> Result<Option<AppProfile>, EdgeError> {
        if !self.link.is_up() {
            return Err(unavailable());
        }
        let _gate = self.gate.lock().await;
        let key = &self.keys[0];
        let mut current: Option<String> = self
            .link
            .call(async |c| {
                redis::cmd("HGET")
                    .arg(key)
                    .arg(id)
                    .query_async::<Option<String>>(c)
                    .await
            })
            .await
            .map_err(|_| unavailable())?;
        for _ in 0..8 {
            let Some(old) = current.take() else {
                return Ok(None);
            };
            let Some(mut profile) = self.decode(&old).filter(|p| p.tenant == tenant) else {
                return Ok(None);
            };
            profile.tags = edit.apply(&profile.tags)?;
            let json = serde_json::to_string(&self.encode(&profile))
                .map_err(|e| EdgeError::Unavailable(format!("cannot encode the profile: {e}")))?;
            let (keys, script) = (&self.keys, &self.replace);
            let (code, rec): (i64, String) = self
                .link
                .call(async |c| {
                    let mut inv = script.prepare_invoke();
                    inv.key(&keys[0]).key(&keys[3]);
                    inv.arg(id).arg(&old).arg(&json).arg(seed());
                    inv.invoke_async(c).await
                })
                .await
                .map_err(|_| unavailable())?;
            match code {
                1 => {
                    lock(&self.cache)
                        .by_id
                        .insert(id.to_string(), profile.clone());
                    return Ok(Some(profile));
                }
                2 => current = Some(rec),
                _ => {
                    lock(&self.cache).by_id.remove(id);
                    return Ok(None);
                }
            }
        }
        Err(unavailable())
    }
}

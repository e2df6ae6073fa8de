//! Validation of tenants (API keys, SigV4 access keys, quotas, denied regions) and prices.
use std::collections::HashMap;

use spillway_core::{QuotaLimits, RegionIx};

use super::raw::{RawApiKey, RawPrice, RawTenant};
use super::validate::{Ctx, DEMO_ACCESS_KEY_ID, DEMO_API_KEY, sha256};
use super::{ConfigError, ModelIx, Price, Secret, Tenant, TenantIx};

type RegionLookup<'a> = dyn Fn(&str, &str) -> Result<RegionIx, ConfigError> + 'a;
type ModelLookup<'a> = dyn Fn(&str, &str) -> Result<ModelIx, ConfigError> + 'a;

pub(super) struct Tenants {
    pub tenants: Vec<Tenant>,
    pub tenant_by_key: HashMap<[u8; 32], TenantIx>,
    pub tenant_by_access_key: HashMap<String, (TenantIx, Secret)>,
    /// The documented demo key is configured (listeners must then be on loopback).
    pub demo_key_in_use: bool,
}

pub(super) fn validate(
    cx: &Ctx<'_>,
    raw: &[RawTenant],
    n_regions: usize,
    region_ix: &RegionLookup<'_>,
    model_ix: &ModelLookup<'_>,
) -> Result<Tenants, ConfigError> {
    let mut out = Tenants {
        tenants: Vec::new(),
        tenant_by_key: HashMap::new(),
        tenant_by_access_key: HashMap::new(),
        demo_key_in_use: false,
    };
    cx.each(raw, |i, t| {
            let key = format!("tenants[{i}]");
            if t.name.is_empty() || out.tenants.iter().any(|x: &Tenant| x.name == t.name) {
                return Err(cx.err(
                    format!("{key}.name"),
                    format!("expected a unique, non-empty tenant name, got {:?}", t.name),
                ));
            }
            if t.api_keys.is_empty() && t.access_keys.is_empty() {
                return Err(cx.err(
                    format!("{key}.api_keys"),
                    "expected at least one API key ({ sha256 = \"<hex>\" } or { env = \"VAR\" }) or access key pair",
                ));
            }
            let key_hashes = out.api_keys(cx, &key, &t.api_keys)?;
            let multiplier = t.cross_region_multiplier.unwrap_or(2.0);
            if !(multiplier.is_finite() && (1.0..=100.0).contains(&multiplier)) {
                return Err(cx.err(
                    format!("{key}.cross_region_multiplier"),
                    format!("expected a factor between 1.0 and 100, got {multiplier}"),
                ));
            }
            let mut denied_regions = Vec::new();
            for (j, r) in t.denied_regions.iter().enumerate() {
                denied_regions.push(region_ix(&format!("{key}.denied_regions[{j}]"), r)?);
            }
            let quotas = quotas(cx, &key, t, n_regions, region_ix, model_ix)?;
            out.access_keys(cx, &key, t)?;
            let account_id = t
                .account_id
                .clone()
                .unwrap_or_else(|| "000000000000".to_string());
            if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(cx.err(
                    format!("{key}.account_id"),
                    format!("expected 12 digits, got {account_id:?}"),
                ));
            }
            out.tenants.push(Tenant {
                name: t.name.clone(),
                key_hashes,
                cross_region_multiplier: multiplier,
                denied_regions,
                quotas,
                account_id,
            });
            Ok(())
        })?;
    Ok(out)
}

impl Tenants {
    /// The hashes of the next tenant's API keys, each registered for it (a key given to two
    /// tenants, or twice, is an error).
    fn api_keys(
        &mut self,
        cx: &Ctx<'_>,
        key: &str,
        raw: &[RawApiKey],
    ) -> Result<Vec<[u8; 32]>, ConfigError> {
        let demo_hash = sha256(DEMO_API_KEY.as_bytes());
        let mut key_hashes = Vec::new();
        for (j, k) in raw.iter().enumerate() {
            let kkey = format!("{key}.api_keys[{j}]");
            let hash = api_key_hash(cx, &kkey, k)?;
            self.demo_key_in_use |= hash == demo_hash;
            if self
                .tenant_by_key
                .insert(hash, TenantIx::nth(self.tenants.len()))
                .is_some()
            {
                return Err(cx.err(
                    kkey,
                    "this key is already given to another tenant (or twice)",
                ));
            }
            key_hashes.push(hash);
        }
        Ok(key_hashes)
    }

    /// Registers the next tenant's SigV4 access keys.
    fn access_keys(&mut self, cx: &Ctx<'_>, key: &str, t: &RawTenant) -> Result<(), ConfigError> {
        for (j, k) in t.access_keys.iter().enumerate() {
            let kkey = format!("{key}.access_keys[{j}]");
            if k.id.len() < 16
                || k.id.len() > 128
                || !k.id.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(cx.err(
                    format!("{kkey}.id"),
                    format!(
                        "expected an access key id of 16 to 128 letters and digits, got {:?}",
                        k.id
                    ),
                ));
            }
            let secret = match (&k.secret, &k.secret_env) {
                (Some(s), None) if !s.is_empty() => s.clone(),
                (None, Some(var)) => env_value(cx, &format!("{kkey}.secret_env"), var)?,
                _ => return Err(cx.err(kkey, "expected exactly one of `secret` or `secret_env`")),
            };
            self.demo_key_in_use |= k.id == DEMO_ACCESS_KEY_ID;
            if self
                .tenant_by_access_key
                .insert(
                    k.id.clone(),
                    (TenantIx::nth(self.tenants.len()), Secret(secret)),
                )
                .is_some()
            {
                return Err(cx.err(
                    format!("{kkey}.id"),
                    "this access key id is already configured",
                ));
            }
        }
        Ok(())
    }
}

/// The value of environment variable `var`, an error at `key` if it is unset or empty.
fn env_value(cx: &Ctx<'_>, key: &str, var: &str) -> Result<String, ConfigError> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            cx.err(
                key,
                format!("environment variable {var} is not set or empty"),
            )
        })
}

/// The SHA-256 of an API key: given as hex, or hashed from an environment variable.
fn api_key_hash(cx: &Ctx<'_>, kkey: &str, k: &RawApiKey) -> Result<[u8; 32], ConfigError> {
    match k {
        RawApiKey::Sha256(hex_str) => {
            let bytes = hex::decode(hex_str)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    cx.err(
                        format!("{kkey}.sha256"),
                        "expected 64 hex digits (the SHA-256 of the key)",
                    )
                })?;
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes);
            Ok(h)
        }
        RawApiKey::Env(var) => {
            let v = env_value(cx, &format!("{kkey}.env"), var)?;
            Ok(sha256(v.as_bytes()))
        }
    }
}

/// A tenant's in-region limits per (model, source region); a region-specific entry wins over an
/// all-regions one, whatever the order.
fn quotas(
    cx: &Ctx<'_>,
    key: &str,
    t: &RawTenant,
    n_regions: usize,
    region_ix: &RegionLookup<'_>,
    model_ix: &ModelLookup<'_>,
) -> Result<HashMap<(ModelIx, RegionIx), QuotaLimits>, ConfigError> {
    let mut quotas = HashMap::new();
    for (j, q) in t.quotas.iter().enumerate() {
        let qkey = format!("{key}.quotas[{j}]");
        let model = model_ix(&format!("{qkey}.model"), &q.model)?;
        if q.rpm == Some(0) || q.tpm == Some(0) {
            return Err(cx.err(qkey, "expected positive rpm/tpm (omit a key for no limit)"));
        }
        let limits = QuotaLimits {
            rpm: q.rpm,
            tpm: q.tpm,
        };
        let sources: Vec<RegionIx> = match &q.region {
            Some(r) => vec![region_ix(&format!("{qkey}.region"), r)?],
            None => (0..n_regions).map(|i| RegionIx(i as u16)).collect(),
        };
        for s in sources {
            if q.region.is_some() || !quotas.contains_key(&(model, s)) {
                quotas.insert((model, s), limits);
            }
        }
    }
    Ok(quotas)
}

/// Per-region prices; a price for a region without that model is allowed (it is the source
/// region's price that bills, and a source need not serve the model itself).
pub(super) fn prices(
    cx: &Ctx<'_>,
    raw: &[RawPrice],
    region_ix: &RegionLookup<'_>,
    model_ix: &ModelLookup<'_>,
) -> Result<HashMap<(ModelIx, RegionIx), Price>, ConfigError> {
    let mut out = HashMap::new();
    cx.each(raw, |i, p| {
        let key = format!("prices[{i}]");
        let m = model_ix(&format!("{key}.model"), &p.model)?;
        let r = region_ix(&format!("{key}.region"), &p.region)?;
        for (k, v) in [
            ("input_per_mtok", p.input_per_mtok),
            ("output_per_mtok", p.output_per_mtok),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(cx.err(
                    format!("{key}.{k}"),
                    format!("expected a non-negative price, got {v}"),
                ));
            }
        }
        let price = Price {
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
        };
        if out.insert((m, r), price).is_some() {
            return Err(cx.err(
                key,
                format!("a second price for {:?} in {:?}", p.model, p.region),
            ));
        }
        Ok(())
    })?;
    Ok(out)
}

//! Reading the TOML file into a [`RawConfig`] with **every** mistake reported, not only the
//! first one serde meets.
//!
//! `toml::from_str` into `deny_unknown_fields` structs stops at the first unknown key or wrong
//! type. Here the document is parsed once (syntax errors end the reading: nothing after one
//! can be trusted), then each top-level table and each element of each top-level array is
//! deserialized on its own. Within one piece, a key that is unknown or of the wrong type is
//! reported and removed, and the piece is tried again, so every such key of the piece is
//! reported.
//!
//! * A piece whose only mistakes are unknown keys is kept without them: the rest of it is
//!   validated as usual.
//! * A piece with a wrong type or a missing key is left out, and its section is marked
//!   *failed*: validation ([`super::validate`]) skips the sections that depend on a failed one,
//!   so that a dropped region does not come back as "unknown region" from every entry naming it.
//! * A `missing field` error is not reported when it follows from the piece's own mistake: the
//!   missing key was the one removed (wrong type), or an unknown key sits beside it (most likely
//!   its misspelling).
//!
//! Element indices in every error are the file's, and each error carries the line of the key it
//! names when that key is in the file.
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::ConfigError;
use super::raw::RawConfig;

/// Past this many mistakes in one piece, the rest of it is not looked at.
const MAX_PER_PIECE: usize = 32;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// `regions[1].typo_field`; a key other than letters, digits and `_` is quoted
/// (`sources."us-east-1"`).
pub(super) fn key_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Index(i) => out += &format!("[{i}]"),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out += k;
                } else {
                    out += &format!("{k:?}");
                }
            }
        }
    }
    out
}

/// The steps of a key path as validation errors write it (`profiles[0].sources."us-east-1"[1]`).
fn parse_key_path(key: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if let Some(r) = rest.strip_prefix('[') {
            let Some((n, after)) = r.split_once(']') else {
                break;
            };
            let Ok(i) = n.parse() else { break };
            segs.push(Seg::Index(i));
            rest = after;
        } else if let Some(r) = rest.strip_prefix('"') {
            let Some((k, after)) = r.split_once('"') else {
                break;
            };
            segs.push(Seg::Key(k.to_string()));
            rest = after;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segs.push(Seg::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    segs
}

/// The span of the deepest value along `segs` that is in the document.
fn span_at(doc: &Spanned<DeTable<'_>>, segs: &[Seg]) -> Range<usize> {
    let mut span = doc.span();
    let mut table = Some(doc.get_ref());
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for s in segs {
        let next = match (s, table, value.map(|v| v.get_ref())) {
            (Seg::Key(k), Some(t), _) => t.get(k.as_str()),
            (Seg::Key(k), None, Some(DeValue::Table(t))) => t.get(k.as_str()),
            (Seg::Index(i), None, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        value = Some(next);
        table = None;
    }
    span
}

/// 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Removes the key at `segs` (its last step must be a key); false when it is not there.
fn remove(table: &mut DeTable<'_>, segs: &[Seg]) -> bool {
    let Some((Seg::Key(last), parents)) = segs.split_last() else {
        return false;
    };
    table_at(table, parents).is_some_and(|t| t.remove(last.as_str()).is_some())
}

/// The table at `segs` under `table`.
fn table_at<'a, 'i>(table: &'a mut DeTable<'i>, segs: &[Seg]) -> Option<&'a mut DeTable<'i>> {
    let Some((first, rest)) = segs.split_first() else {
        return Some(table);
    };
    let Seg::Key(k) = first else { return None };
    value_table_at(table.get_mut(k.as_str())?, rest)
}

/// The table at `segs` under the value `v`.
fn value_table_at<'a, 'i>(
    v: &'a mut Spanned<DeValue<'i>>,
    segs: &[Seg],
) -> Option<&'a mut DeTable<'i>> {
    match (segs.split_first(), v.get_mut()) {
        (None, DeValue::Table(t)) => Some(t),
        (Some((Seg::Key(_), _)), DeValue::Table(t)) => table_at(t, segs),
        (Some((Seg::Index(i), rest)), DeValue::Array(a)) => value_table_at(a.get_mut(*i)?, rest),
        _ => None,
    }
}

/// The key named in serde's "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split_once('`'))
        .map(|(k, _)| k)
}

/// The key named in serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
        .map(|(k, _)| k)
}

/// A mistake found in one piece, before its file, line and indices are filled in.
struct Found {
    segs: Vec<Seg>,
    message: String,
    span: Option<Range<usize>>,
    /// An unknown key (reported, then ignored: the rest of the piece may still be good).
    unknown_key: bool,
}

/// Deserializes `piece` (a document with one top-level key) until it goes through, removing
/// each unknown or mistyped key; every mistake found, none if it is fine.
/// The piece as it went through (its unknown and mistyped keys removed) comes back when it
/// did.
fn check_piece<'i>(
    mut piece: DeTable<'i>,
    whole: &Range<usize>,
) -> (Vec<Found>, Option<DeTable<'i>>) {
    let mut found: Vec<Found> = Vec::new();
    // Where each removed key sat: (its parent's path, its name, unknown or mistyped).
    let mut removed: Vec<(Vec<Seg>, String, bool)> = Vec::new();
    for _ in 0..MAX_PER_PIECE {
        let de = toml::de::Deserializer::from(Spanned::new(whole.clone(), piece.clone()));
        let Err(e) = serde_path_to_error::deserialize::<_, RawConfig>(de) else {
            return (found, Some(piece));
        };
        let mut segs: Vec<Seg> = Vec::new();
        let mut navigable = true;
        for s in e.path() {
            match s {
                serde_path_to_error::Segment::Seq { index } => segs.push(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                _ => navigable = false,
            }
        }
        let inner = e.into_inner();
        let message = inner.message().to_string();
        if let Some(name) = missing_field(&message) {
            let follows = removed
                .iter()
                .any(|(at, k, unknown)| *at == segs && (*unknown || k == name));
            if !follows {
                found.push(Found {
                    segs,
                    message,
                    span: inner.span(),
                    unknown_key: false,
                });
            }
            return (found, None);
        }
        // The path of an unknown key ends at the key itself (serde_path_to_error's), except
        // where serde buffered the map (the `kind`-tagged upstream): there it is added.
        let unknown = unknown_field(&message).map(str::to_string);
        if let Some(k) = &unknown
            && segs.last() != Some(&Seg::Key(k.clone()))
        {
            segs.push(Seg::Key(k.clone()));
        }
        found.push(Found {
            segs: segs.clone(),
            message,
            span: inner.span(),
            unknown_key: unknown.is_some(),
        });
        let Some((Seg::Key(name), parent)) = segs.split_last() else {
            return (found, None);
        };
        if !navigable || !remove(&mut piece, &segs) {
            return (found, None);
        }
        removed.push((parent.to_vec(), name.clone(), unknown.is_some()));
    }
    (found, None)
}

/// A TOML syntax error, with its line and column.
fn syntax_error(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let why = e.message().trim_end().replace('\n', "; ");
    let start = e.span().map(|s| s.start);
    let message = match start {
        Some(s) => {
            let line_start = text
                .get(..s)
                .and_then(|t| t.rfind('\n'))
                .map_or(0, |n| n + 1);
            let column = s.saturating_sub(line_start) + 1;
            let line = line_of(text, s);
            format!("TOML parse error at line {line}, column {column}: {why}")
        }
        None => format!("TOML parse error: {why}"),
    };
    ConfigError::Parse {
        file: file.to_string(),
        line: start.map(|s| line_of(text, s)),
        message,
    }
}

/// The document read: what parsed, the mistakes, and what validation must know.
pub(super) struct Read {
    pub raw: RawConfig,
    pub errors: Vec<ConfigError>,
    /// Top-level keys with a piece left out.
    pub failed: Vec<String>,
    /// Per top-level array: the file's index of each element kept.
    kept: HashMap<String, Vec<usize>>,
}

impl Read {
    /// A validation error's key with the file's element index (validation saw only the kept
    /// elements), and its line.
    pub(super) fn locate(
        &self,
        doc: &Spanned<DeTable<'_>>,
        text: &str,
        e: ConfigError,
    ) -> ConfigError {
        let ConfigError::Invalid {
            file,
            key,
            message,
            line,
        } = e
        else {
            return e;
        };
        let mut segs = parse_key_path(&key);
        if let [Seg::Key(section), Seg::Index(i), ..] = segs.as_mut_slice()
            && let Some(kept) = self.kept.get(section.as_str())
            && let Some(original) = kept.get(*i)
        {
            *i = *original;
        }
        let key = if parse_key_path(&key) == segs {
            key
        } else {
            key_path(&segs)
        };
        let line =
            line.or_else(|| (!segs.is_empty()).then(|| line_of(text, span_at(doc, &segs).start)));
        ConfigError::Invalid {
            file,
            key,
            message,
            line,
        }
    }
}

/// The document being read, for messages.
struct Doc<'a, 'i> {
    text: &'a str,
    file: &'a str,
    doc: &'a Spanned<DeTable<'i>>,
}

impl Read {
    /// Reads one top-level key: each element of an array of tables, or the value, on its
    /// own; what reads (unknown keys aside) goes into `good`.
    fn section<'i>(
        &mut self,
        d: &Doc<'_, 'i>,
        key: &Spanned<Cow<'i, str>>,
        value: &Spanned<DeValue<'i>>,
        good: &mut DeTable<'i>,
    ) {
        let elements = match value.get_ref() {
            DeValue::Array(a) if a.iter().all(|e| e.get_ref().is_table()) => Some(a),
            _ => None,
        };
        let pieces: Vec<(Option<usize>, Spanned<DeValue<'i>>)> = match elements {
            Some(a) => a
                .iter()
                .enumerate()
                .map(|(i, e)| (Some(i), e.clone()))
                .collect(),
            None => vec![(None, value.clone())],
        };
        let mut kept_elements = DeArray::new();
        let mut kept_ix = Vec::new();
        for (ix, piece_value) in pieces {
            let piece_value = match ix {
                Some(_) => {
                    let mut one = DeArray::new();
                    one.push(piece_value.clone());
                    Spanned::new(value.span(), DeValue::Array(one))
                }
                None => piece_value.clone(),
            };
            let mut piece = DeTable::new();
            piece.insert(key.clone(), piece_value);
            let (found, cleaned) = check_piece(piece, &d.doc.span());
            if let Some(cleaned) = cleaned
                && found.iter().all(|f| f.unknown_key)
            {
                // Read in full, unknown keys aside: kept, without them (an unknown top-level
                // key leaves nothing to keep).
                match (
                    ix,
                    cleaned
                        .get(key.get_ref().as_ref())
                        .cloned()
                        .map(Spanned::into_inner),
                ) {
                    (Some(i), Some(DeValue::Array(one))) => {
                        for e in one.iter() {
                            kept_elements.push(e.clone());
                        }
                        kept_ix.push(i);
                    }
                    (_, Some(other)) => {
                        good.insert(key.clone(), Spanned::new(value.span(), other));
                    }
                    (_, None) => {}
                }
            } else if !self.failed.iter().any(|f| f == key.get_ref().as_ref()) {
                self.failed.push(key.get_ref().to_string());
            }
            self.report(d, ix, found);
        }
        if elements.is_some() {
            good.insert(
                key.clone(),
                Spanned::new(value.span(), DeValue::Array(kept_elements)),
            );
            self.kept.insert(key.get_ref().to_string(), kept_ix);
        }
    }

    /// Records the mistakes of one piece (element `ix` of its array, if one).
    fn report(&mut self, d: &Doc<'_, '_>, ix: Option<usize>, found: Vec<Found>) {
        for f in found {
            let mut segs = f.segs;
            if let (Some(i), Some(Seg::Index(first))) = (ix, segs.get_mut(1)) {
                *first = i;
            }
            let at = span_at(d.doc, &segs);
            let start = if segs.is_empty() {
                f.span.map_or(at.start, |s| s.start)
            } else {
                at.start
            };
            self.errors.push(ConfigError::Invalid {
                file: d.file.to_string(),
                key: key_path(&segs),
                message: f.message,
                line: Some(line_of(d.text, start)),
            });
        }
    }
}

/// Parses `text`; Err only for TOML syntax errors (all of them). The document is returned for
/// [`Read::locate`].
pub(super) fn read<'i>(
    text: &'i str,
    file: &str,
) -> Result<(Read, Spanned<DeTable<'i>>), ConfigError> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let errors = syntax.iter().map(|e| syntax_error(text, file, e)).collect();
        return Err(ConfigError::gather(errors)
            .err()
            .unwrap_or(ConfigError::Several(Vec::new())));
    }
    let mut read = Read {
        raw: RawConfig::default(),
        errors: Vec::new(),
        failed: Vec::new(),
        kept: HashMap::new(),
    };
    let mut good = DeTable::new();
    let whole = doc.span();
    for (key, value) in doc.get_ref().iter() {
        read.section(
            &Doc {
                text,
                file,
                doc: &doc,
            },
            key,
            value,
            &mut good,
        );
    }
    // In the file's order.
    read.errors.sort_by_key(|e| match e {
        ConfigError::Invalid { line, .. } => *line,
        _ => None,
    });
    let de = toml::de::Deserializer::from(Spanned::new(whole, good));
    match RawConfig::deserialize(de) {
        Ok(raw) => read.raw = raw,
        // Every piece went through alone; together they must too. If not, say so plainly.
        Err(e) => read.errors.push(ConfigError::Parse {
            file: file.to_string(),
            line: None,
            message: e.message().to_string(),
        }),
    }
    Ok((read, doc))
}

/// Read and validate `text`: the config, or every mistake (reading's, then validation's in
/// what was read, each with the file's indices and its line).
pub(super) fn parse(text: &str, file: &str) -> Result<super::Config, ConfigError> {
    let (mut read, doc) = read(text, file)?;
    let raw = std::mem::take(&mut read.raw);
    let failed: Vec<&str> = read.failed.iter().map(String::as_str).collect();
    let checked = super::validate::from_raw_skipping(raw, file, &failed);
    let mut errors = std::mem::take(&mut read.errors);
    match checked {
        Ok(cfg) if errors.is_empty() => return Ok(cfg),
        Ok(_) => {}
        Err(e) => errors.extend(
            e.into_each()
                .into_iter()
                .map(|e| read.locate(&doc, text, e)),
        ),
    }
    ConfigError::gather(errors)?;
    Err(ConfigError::Parse {
        file: file.to_string(),
        line: None,
        message: "a section was left out without an error (a bug: please report it)".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "read_tests.rs"]
mod tests;

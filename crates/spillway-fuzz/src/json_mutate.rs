//! Structure-aware mutations of JSON inputs: byte mutations break JSON syntax in ~98% of cases
//! (measured on the request corpora), so the request parsers and conversions behind the syntax
//! would barely be reached. These keep the input valid JSON and change its shape instead: a
//! node replaced by another type or an extreme value, keys removed or added (from the target's
//! dictionary), array elements dropped or repeated, subtrees grafted from other corpus entries.
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};

/// Applies one mutation at a random node of `root`. `donors` are the corpus entries that parse
/// as JSON; `dictionary` tokens written as JSON strings (`"role"`) are used as keys.
pub fn mutate(rng: &mut SmallRng, root: &mut Value, donors: &[Value], dictionary: &[&[u8]]) {
    let donor = pick_subtree(rng, donors);
    let key = pick_key(rng, dictionary);
    let node = pick_node(rng, root);
    match rng.random_range(0..8) {
        0 => *node = scalar(rng, &key),
        1 => {
            *node = if rng.random_bool(0.5) {
                json!([])
            } else {
                json!({})
            }
        }
        2 => *node = donor,
        3 => {
            let inner = std::mem::take(node);
            *node = if rng.random_bool(0.5) {
                json!([inner])
            } else {
                json!({ key: inner })
            };
        }
        _ => match node {
            Value::Object(map) => mutate_object(rng, map, key, donor),
            Value::Array(items) => mutate_array(rng, items, donor),
            Value::String(s) => mutate_string(rng, s, &key),
            other => *other = scalar(rng, &key),
        },
    }
}

/// A node of `root`: descends into a random child while there is one, stopping on the way
/// with probability 0.3 at each level.
fn pick_node<'v>(rng: &mut SmallRng, root: &'v mut Value) -> &'v mut Value {
    let mut node = root;
    loop {
        let len = match &*node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if len == 0 || rng.random_bool(0.3) {
            return node;
        }
        let i = rng.random_range(0..len);
        let key = match &*node {
            Value::Object(m) => m.keys().nth(i).cloned(),
            _ => None,
        };
        // Both indexings are in range: `key` is one of the object's keys, `i` < the array's length.
        node = match key {
            Some(k) => &mut node[k.as_str()],
            None => &mut node[i],
        };
    }
}

fn pick_subtree(rng: &mut SmallRng, donors: &[Value]) -> Value {
    if donors.is_empty() {
        return Value::Null;
    }
    let mut donor = donors[rng.random_range(0..donors.len())].clone();
    pick_node(rng, &mut donor).clone()
}

fn pick_key(rng: &mut SmallRng, dictionary: &[&[u8]]) -> String {
    let keys: Vec<&[u8]> = dictionary
        .iter()
        .filter_map(|t| t.strip_prefix(b"\"")?.strip_suffix(b"\""))
        .collect();
    if keys.is_empty() || rng.random_bool(0.1) {
        return ["", "x", "\u{0}", "é"][rng.random_range(0..4)].to_owned();
    }
    String::from_utf8_lossy(keys[rng.random_range(0..keys.len())]).into_owned()
}

/// An extreme or type-changing scalar.
fn scalar(rng: &mut SmallRng, key: &str) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1.5e308),
        7 => json!(u32::MAX as u64 + 1),
        8 => json!(""),
        9 => json!(key),
        10 => json!("x".repeat(rng.random_range(1..300))),
        _ => json!("\u{0}\u{ffff}\u{1F600}\\\""),
    }
}

fn mutate_object(rng: &mut SmallRng, map: &mut Map<String, Value>, key: String, donor: Value) {
    if !map.is_empty() && rng.random_bool(0.4) {
        let i = rng.random_range(0..map.len());
        if let Some(k) = map.keys().nth(i).cloned() {
            map.remove(&k);
        }
    } else {
        let value = if rng.random_bool(0.5) {
            donor
        } else {
            scalar(rng, &key)
        };
        map.insert(key, value);
    }
}

fn mutate_array(rng: &mut SmallRng, items: &mut Vec<Value>, donor: Value) {
    match rng.random_range(0..3) {
        0 if !items.is_empty() => {
            items.remove(rng.random_range(0..items.len()));
        }
        1 if !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            let copies = rng.random_range(1..=4);
            for _ in 0..copies {
                items.insert(i, items[i].clone());
            }
        }
        _ => items.insert(rng.random_range(0..=items.len()), donor),
    }
}

fn mutate_string(rng: &mut SmallRng, s: &mut String, key: &str) {
    match rng.random_range(0..4) {
        0 => s.clear(),
        1 => s.push_str(key),
        2 => s.push_str("\u{0}\n\r\u{1F600}"),
        _ => {
            let cut = s.char_indices().map(|(i, _)| i).nth(s.chars().count() / 2);
            s.truncate(cut.unwrap_or(0));
        }
    }
}

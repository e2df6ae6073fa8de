//! The dashboard's memory of recent requests: a ring of one-second slots, totals since start,
//! and the last stream first-byte times, all of a fixed size.
//!
//! Memory is bounded whatever the traffic: [`SLOTS`] slots, names interned up to [`MAX_NAMES`]
//! (regions and tenants come from the configuration, so the cap is only reached across many
//! reloads that rename them; past it, figures go under [`OVERFLOW`]), and at most [`MAX_TTFT`]
//! first-byte samples. Recording is a few map updates under one short lock; nothing here
//! allocates on the request path once a name has been seen.
use std::collections::{HashMap, VecDeque};

/// Seconds of history kept (flow and rate figures look at the last [`super::RATE_SECS`]).
pub const SLOTS: usize = 60;
/// Distinct region and tenant names remembered.
pub const MAX_NAMES: usize = 1024;
/// The name figures go under once [`MAX_NAMES`] is reached.
pub const OVERFLOW: &str = "(other)";
/// Stream first-byte samples kept (the most recent ones within [`SLOTS`] seconds).
pub const MAX_TTFT: usize = 4096;

/// An interned name.
pub type NameId = u16;

/// Per source region, in one slot or in the totals.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SourceFigures {
    pub requests: u64,
    pub served: u64,
    /// Refused by the tenant's quota at the edge.
    pub throttled_quota: u64,
    /// Refused because no region of the destination set had room (or all were throttled).
    pub throttled_capacity: u64,
    /// Other refusals and failures (bad input, upstream errors, timeouts, broken streams).
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// At the source region's price, US dollars.
    pub cost: f64,
}

/// One source → destination flow, in one slot or in the totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlowFigures {
    /// Spilled (`spill:capacity`, `spill:unhealthy`).
    pub spill: u64,
    /// Failed over after an attempt failed (`failover:*`).
    pub failover: u64,
}

/// Per tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct TenantFigures {
    pub requests: u64,
    pub throttled: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
}

/// Everything counted in one second (or since start, for the totals).
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub sources: HashMap<NameId, SourceFigures>,
    /// Requests served, by serving region.
    pub served_in: HashMap<NameId, u64>,
    pub flows: HashMap<(NameId, NameId), FlowFigures>,
    pub tenants: HashMap<NameId, TenantFigures>,
}

impl Figures {
    fn clear(&mut self) {
        self.sources.clear();
        self.served_in.clear();
        self.flows.clear();
        self.tenants.clear();
    }

    /// Add `other` into `self`.
    pub fn absorb(&mut self, other: &Figures) {
        for (k, v) in &other.sources {
            let s = self.sources.entry(*k).or_default();
            s.requests += v.requests;
            s.served += v.served;
            s.throttled_quota += v.throttled_quota;
            s.throttled_capacity += v.throttled_capacity;
            s.errors += v.errors;
            s.input_tokens += v.input_tokens;
            s.output_tokens += v.output_tokens;
            s.cost += v.cost;
        }
        for (k, v) in &other.served_in {
            *self.served_in.entry(*k).or_default() += v;
        }
        for (k, v) in &other.flows {
            let f = self.flows.entry(*k).or_default();
            f.spill += v.spill;
            f.failover += v.failover;
        }
        for (k, v) in &other.tenants {
            let t = self.tenants.entry(*k).or_default();
            t.requests += v.requests;
            t.throttled += v.throttled;
            t.input_tokens += v.input_tokens;
            t.output_tokens += v.output_tokens;
            t.cost += v.cost;
        }
    }
}

/// How a request ended, as the dashboard classes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Served,
    ThrottledQuota,
    ThrottledCapacity,
    Error,
}

/// How a served request got to its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Local,
    Spill,
    Failover,
}

/// One ended request, with names already interned.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub source: NameId,
    pub served_in: Option<(NameId, Route)>,
    pub tenant: Option<NameId>,
    pub class: Class,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    /// A stream's time to first byte, milliseconds.
    pub ttft_ms: Option<f64>,
}

/// A stream's first-byte time, with when and where it was served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtftSample {
    pub second: u64,
    pub region: NameId,
    pub ms: f64,
}

/// The ring of slots, the totals and the samples.
#[derive(Debug)]
pub struct Window {
    names: Vec<String>,
    ids: HashMap<String, NameId>,
    /// `(second, figures)`; slot `second % SLOTS`.
    slots: Vec<(u64, Figures)>,
    pub totals: Figures,
    ttft: VecDeque<TtftSample>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            names: Vec::new(),
            ids: HashMap::new(),
            slots: (0..SLOTS).map(|_| (u64::MAX, Figures::default())).collect(),
            totals: Figures::default(),
            ttft: VecDeque::with_capacity(MAX_TTFT),
        }
    }
}

impl Window {
    /// The id of `name`, interning it if new (up to [`MAX_NAMES`], then [`OVERFLOW`]).
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let name = if self.names.len() + 1 >= MAX_NAMES {
            OVERFLOW
        } else {
            name
        };
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as NameId;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// The id of `name`, if it has been seen.
    pub fn id_of(&self, name: &str) -> Option<NameId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: NameId) -> &str {
        self.names.get(usize::from(id)).map_or("", String::as_str)
    }

    /// Count `e` in `second` (seconds since the dashboard started).
    pub fn record(&mut self, second: u64, e: &Entry) {
        let slot = &mut self.slots[(second % SLOTS as u64) as usize];
        if slot.0 != second {
            slot.0 = second;
            slot.1.clear();
        }
        add(&mut slot.1, e);
        add(&mut self.totals, e);
        if let (Some(ms), Some((region, _))) = (e.ttft_ms, e.served_in) {
            if self.ttft.len() == MAX_TTFT {
                self.ttft.pop_front();
            }
            self.ttft.push_back(TtftSample { second, region, ms });
        }
    }

    /// The figures of the `n` whole seconds before `now_second` (the running second excluded).
    pub fn recent(&self, now_second: u64, n: u64) -> Figures {
        let mut sum = Figures::default();
        let from = now_second.saturating_sub(n);
        for (second, figures) in &self.slots {
            if *second >= from && *second < now_second {
                sum.absorb(figures);
            }
        }
        sum
    }

    /// Stream first-byte samples of the last [`SLOTS`] seconds.
    pub fn ttft_since(&self, since_second: u64) -> impl Iterator<Item = &TtftSample> {
        self.ttft.iter().filter(move |s| s.second >= since_second)
    }
}

fn add(f: &mut Figures, e: &Entry) {
    let s = f.sources.entry(e.source).or_default();
    s.requests += 1;
    match e.class {
        Class::Served => s.served += 1,
        Class::ThrottledQuota => s.throttled_quota += 1,
        Class::ThrottledCapacity => s.throttled_capacity += 1,
        Class::Error => s.errors += 1,
    }
    s.input_tokens += e.input_tokens;
    s.output_tokens += e.output_tokens;
    s.cost += e.cost;
    if let Some((region, route)) = e.served_in {
        *f.served_in.entry(region).or_default() += 1;
        if region != e.source {
            let flow = f.flows.entry((e.source, region)).or_default();
            match route {
                Route::Failover => flow.failover += 1,
                Route::Local | Route::Spill => flow.spill += 1,
            }
        }
    }
    if let Some(t) = e.tenant {
        let tf = f.tenants.entry(t).or_default();
        tf.requests += 1;
        if matches!(e.class, Class::ThrottledQuota | Class::ThrottledCapacity) {
            tf.throttled += 1;
        }
        tf.input_tokens += e.input_tokens;
        tf.output_tokens += e.output_tokens;
        tf.cost += e.cost;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn served(w: &mut Window, from: &str, to: &str, route: Route) -> Entry {
        Entry {
            source: w.intern(from),
            served_in: Some((w.intern(to), route)),
            tenant: Some(w.intern("acme")),
            class: Class::Served,
            input_tokens: 10,
            output_tokens: 5,
            cost: 0.5,
            ttft_ms: Some(20.0),
        }
    }

    #[test]
    fn slots_roll_over_and_recent_excludes_the_running_second() {
        let mut w = Window::default();
        let local = served(&mut w, "a", "a", Route::Local);
        let spill = served(&mut w, "a", "b", Route::Spill);
        w.record(5, &local);
        w.record(6, &spill);
        w.record(7, &spill);
        let recent = w.recent(7, 10);
        let (a, b) = (w.id_of("a").unwrap(), w.id_of("b").unwrap());
        assert_eq!(recent.sources[&a].requests, 2, "seconds 5 and 6, not 7");
        assert_eq!(recent.flows[&(a, b)].spill, 1);
        assert_eq!(w.totals.sources[&a].requests, 3);
        assert_eq!(w.totals.flows[&(a, b)].spill, 2);
        assert!((w.totals.tenants[&w.id_of("acme").unwrap()].cost - 1.5).abs() < 1e-9);
        // A whole ring later, second 5's slot holds second 65 only.
        w.record(65, &local);
        let recent = w.recent(66, 10);
        assert_eq!(recent.sources[&a].requests, 1);
        assert!(!recent.flows.contains_key(&(a, b)));
    }

    #[test]
    fn memory_is_bounded() {
        let mut w = Window::default();
        for i in 0..(MAX_NAMES + 50) {
            w.intern(&format!("tenant-{i}"));
        }
        assert!(w.names.len() <= MAX_NAMES);
        let late = w.intern("tenant-99999");
        assert_eq!(w.name(late), OVERFLOW);
        let e = served(&mut w, "a", "a", Route::Local);
        for s in 0..(MAX_TTFT as u64 + 100) {
            w.record(s, &e);
        }
        assert_eq!(w.ttft.len(), MAX_TTFT);
        assert_eq!(w.slots.len(), SLOTS);
    }
}

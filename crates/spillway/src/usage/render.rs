//! The report as a table (for people), CSV (for spreadsheets) or JSON (for programs). Each has
//! one row per group, in sorted order, then the total.
use serde_json::{Map, Value, json};

use super::aggregate::{Report, Totals};

/// The figure columns, after the group columns.
const FIGURES: [&str; 5] = [
    "requests",
    "served",
    "input_tokens",
    "output_tokens",
    "cost_usd",
];

fn figures(t: &Totals) -> [String; 5] {
    [
        t.requests.to_string(),
        t.served.to_string(),
        t.input_tokens.to_string(),
        t.output_tokens.to_string(),
        format!("{:.6}", t.cost),
    ]
}

/// Header, group rows, and the total row (`TOTAL` in the first column).
fn rows(r: &Report) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = r.group_by.iter().map(|g| g.name()).collect();
    header.extend(FIGURES.iter().map(|s| s.to_string()));
    let mut rows: Vec<Vec<String>> = r
        .groups
        .iter()
        .map(|(key, t)| key.iter().cloned().chain(figures(t)).collect())
        .collect();
    let mut total = vec![String::new(); r.group_by.len()];
    total[0] = "TOTAL".into();
    total.extend(figures(&r.total));
    rows.push(total);
    (header, rows)
}

/// Aligned columns: text left, figures right.
pub fn table(r: &Report) -> String {
    let (header, rows) = rows(r);
    let groups = r.group_by.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < groups {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(&header) + "\n";
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let last = rows.len() - 1;
    for (i, row) in rows.iter().enumerate() {
        if i == last {
            out += &(rule.join("  ") + "\n");
        }
        out += &(line(row) + "\n");
    }
    out
}

/// RFC 4180 CSV with a header row.
pub fn csv(r: &Report) -> Result<String, csv::Error> {
    let (header, rows) = rows(r);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for row in &rows {
        w.write_record(row)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `{"groupBy", "from", "to", "groups": [{"key": {...}, figures…}], "total", "malformedLines"}`;
/// cost as a number (USD), not rounded.
pub fn json(r: &Report, from: Option<String>, to: Option<String>) -> Value {
    let names: Vec<String> = r.group_by.iter().map(|g| g.name()).collect();
    let groups: Vec<Value> = r
        .groups
        .iter()
        .map(|(key, t)| {
            let key: Map<String, Value> = names
                .iter()
                .cloned()
                .zip(key.iter().map(|v| Value::String(v.clone())))
                .collect();
            let mut row = json!({ "key": key });
            if let (Some(row), Value::Object(fig)) = (row.as_object_mut(), json!(t)) {
                row.extend(fig);
            }
            row
        })
        .collect();
    json!({
        "groupBy": names,
        "from": from,
        "to": to,
        "currency": super::record::CURRENCY,
        "groups": groups,
        "total": r.total,
        "malformedLines": r.malformed_count,
        "outsideWindow": r.outside_window,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::aggregate::Window;
    use super::super::record::parse_group_by;
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new(
            parse_group_by("tenant,tag:team").unwrap(),
            Window::default(),
        );
        let t = Totals {
            requests: 3,
            served: 2,
            input_tokens: 30,
            output_tokens: 12,
            cost: 0.000_125,
        };
        r.groups.insert(vec!["acme, inc".into(), "-".into()], t);
        r.total = t;
        r
    }

    #[test]
    fn csv_quotes_and_ends_with_the_total() {
        let text = csv(&sample()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "tenant,tag:team,requests,served,input_tokens,output_tokens,cost_usd",
                "\"acme, inc\",-,3,2,30,12,0.000125",
                "TOTAL,,3,2,30,12,0.000125",
            ]
        );
    }

    #[test]
    fn table_aligns_and_json_keeps_the_keys() {
        let text = table(&sample());
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("tenant     tag:team  requests"),
            "{text}"
        );
        assert!(text.lines().last().unwrap().starts_with("TOTAL"), "{text}");
        let v = json(&sample(), None, Some("2025-01-01T00:00:00Z".into()));
        assert_eq!(v["groups"][0]["key"]["tenant"], "acme, inc");
        assert_eq!(v["groups"][0]["inputTokens"], 30);
        assert_eq!(v["total"]["served"], 2);
        assert_eq!(v["to"], "2025-01-01T00:00:00Z");
    }
}

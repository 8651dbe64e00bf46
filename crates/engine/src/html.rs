//! A self-contained HTML rendering of a diff report.

use crate::report::{DiffReport, row_object};

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one HTML page: a summary, then per node pair a table of
/// each node's differing rows.
pub fn render(report: &DiffReport) -> String {
    let s = &report.summary;
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    html.push_str(&format!(
        "<title>ACE table-diff {}.{}</title>",
        escape(&s.schema),
        escape(&s.table)
    ));
    html.push_str(
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}\
         td,th{border:1px solid #999;padding:2px 6px;font-family:monospace}\
         th{background:#eee}.null{color:#999}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>table-diff {}.{}</h1><p>nodes: {} &middot; primary key: {} &middot; {} &middot; {}</p>",
        escape(&s.schema),
        escape(&s.table),
        escape(&s.nodes.join(", ")),
        escape(&s.primary_key.join(", ")),
        escape(&s.start_time),
        escape(&s.time_taken)
    ));
    if report.matches() {
        html.push_str("<p><strong>Tables match.</strong></p>");
    }
    for (pair, rows) in &report.diffs {
        let count = s.diff_rows_count.get(pair).copied().unwrap_or(0);
        html.push_str(&format!("<h2>{} ({count} rows)</h2>", escape(pair)));
        for (node, list) in &rows.rows {
            html.push_str(&format!("<h3>{}</h3><table><tr>", escape(node)));
            for column in &report.columns {
                html.push_str(&format!("<th>{}</th>", escape(&column.name)));
            }
            html.push_str("</tr>");
            for row in list {
                html.push_str("<tr>");
                for value in row_object(&report.columns, row).values() {
                    match value {
                        serde_json::Value::Null => html.push_str("<td class=\"null\">NULL</td>"),
                        serde_json::Value::String(text) => {
                            html.push_str(&format!("<td>{}</td>", escape(text)));
                        }
                        other => html.push_str(&format!("<td>{}</td>", escape(&other.to_string()))),
                    }
                }
                html.push_str("</tr>");
            }
            html.push_str("</table>");
        }
    }
    html.push_str("</body></html>\n");
    html
}

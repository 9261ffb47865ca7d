//! The call graph drawn as SVG, with a layout computed here.
//!
//! Columns are call depth (a service is one column right of its deepest
//! caller, cycles capped), rows are grouped into one band per trust domain,
//! edges are cubic curves from the right side of the caller to the left
//! side of the target with their counts at the middle.

use std::fmt::Write as _;

use super::{CallGraph, edge_label, edge_style, xml_text};

const MARGIN: f64 = 24.0;
const NODE_H: f64 = 34.0;
const ROW_H: f64 = 58.0;
const BAND_HEAD: f64 = 30.0;
const BAND_GAP: f64 = 18.0;
const COL_GAP: f64 = 190.0;
const CHAR_W: f64 = 7.4;
const LEGEND_H: f64 = 44.0;

/// The column of each node: the longest path to it from a node nobody
/// calls, over the edges that remain once a depth-first search from each
/// node in turn has dropped the edges that close a cycle.
fn depths(graph: &CallGraph) -> Vec<usize> {
    let n = graph.nodes.len();
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &graph.edges {
        if e.from != e.to {
            out_edges[e.from].push(e.to);
        }
    }
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; n];
    let mut forward: Vec<(usize, usize)> = Vec::new();
    let mut has_caller = vec![false; n];
    for e in &graph.edges {
        if e.from != e.to {
            has_caller[e.to] = true;
        }
    }
    let starts: Vec<usize> = (0..n).filter(|&i| !has_caller[i]).chain(0..n).collect();
    for start in starts {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = out_edges[node].get(*next) {
                *next += 1;
                match state[to] {
                    0 => {
                        forward.push((node, to));
                        state[to] = 1;
                        stack.push((to, 0));
                    }
                    2 => forward.push((node, to)),
                    // On the stack: this edge closes a cycle.
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    let mut depth = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for &(from, to) in &forward {
            if depth[to] < depth[from] + 1 {
                depth[to] = depth[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

struct Place {
    x: f64,
    y: f64,
    w: f64,
}

pub(super) fn render(graph: &CallGraph) -> String {
    let n = graph.nodes.len();
    let depth = depths(graph);
    let widths: Vec<f64> = graph
        .nodes
        .iter()
        .map(|node| (node.label.chars().count() as f64 * CHAR_W + 28.0).max(120.0))
        .collect();
    let col_w = widths.iter().copied().fold(120.0, f64::max) + COL_GAP;
    let columns = depth.iter().copied().max().map_or(1, |d| d + 1);

    let groups = graph.groups();
    let mut places: Vec<Place> = (0..n)
        .map(|_| Place {
            x: 0.0,
            y: 0.0,
            w: 0.0,
        })
        .collect();
    let mut bands = Vec::new();
    let mut y = MARGIN;
    for (group, members) in &groups {
        let mut members = members.clone();
        members.sort_by(|a, b| graph.nodes[*a].label.cmp(&graph.nodes[*b].label));
        let mut rows_in_column = vec![0usize; columns];
        for &i in &members {
            let column = depth[i];
            let row = rows_in_column[column];
            rows_in_column[column] += 1;
            places[i] = Place {
                x: MARGIN + 16.0 + column as f64 * col_w,
                y: y + BAND_HEAD + row as f64 * ROW_H,
                w: widths[i],
            };
        }
        let rows = rows_in_column.iter().copied().max().unwrap_or(1).max(1);
        let height = BAND_HEAD + rows as f64 * ROW_H - (ROW_H - NODE_H) + 16.0;
        bands.push((*group, y, height));
        y += height + BAND_GAP;
    }
    let width = MARGIN * 2.0 + 32.0 + (columns as f64 - 1.0) * col_w + col_w - COL_GAP;
    let width = width.max(520.0);
    let height = y + LEGEND_H;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\" \
         font-size=\"13\">"
    );
    out.push_str("  <title>Observed calls (from zt audit records)</title>\n");
    out.push_str("  <defs>\n");
    for (name, color) in [
        ("ok", "#2e7d32"),
        ("would", "#e08600"),
        ("denied", "#c62828"),
    ] {
        let _ = writeln!(
            out,
            "    <marker id=\"arrow-{name}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
             markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{color}\"/></marker>"
        );
    }
    out.push_str("  </defs>\n");
    let _ = writeln!(
        out,
        "  <rect x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>"
    );
    for (group, top, h) in &bands {
        let _ = writeln!(
            out,
            "  <g class=\"group\">\n    <rect x=\"{MARGIN}\" y=\"{top:.1}\" width=\"{:.1}\" \
             height=\"{h:.1}\" rx=\"10\" fill=\"#f7f8fb\" stroke=\"#c5cad6\"/>\n    \
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\" \
             fill=\"#5a6275\">{}</text>\n  </g>",
            width - 2.0 * MARGIN,
            MARGIN + 12.0,
            top + 19.0,
            xml_text(group)
        );
    }
    for edge in &graph.edges {
        let (color, dash) = edge_style(edge);
        let marker = if edge.denied > 0 {
            "denied"
        } else if edge.would_deny > 0 {
            "would"
        } else {
            "ok"
        };
        let from = &places[edge.from];
        let to = &places[edge.to];
        let (d, lx, ly) = if edge.from == edge.to {
            let (x, y) = (from.x + from.w * 0.5, from.y);
            (
                format!(
                    "M{:.1},{y:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{y:.1}",
                    x - 18.0,
                    x - 40.0,
                    y - 42.0,
                    x + 40.0,
                    y - 42.0,
                    x + 18.0
                ),
                x,
                y - 38.0,
            )
        } else if to.x <= from.x {
            // Back to the same or an earlier column: an arc below, from
            // the caller's bottom to the target's bottom.
            let (sx, sy) = (from.x + from.w * 0.5, from.y + NODE_H);
            let (tx, ty) = (to.x + to.w * 0.5, to.y + NODE_H);
            let low = sy.max(ty) + 22.0;
            (
                format!("M{sx:.1},{sy:.1} C{sx:.1},{low:.1} {tx:.1},{low:.1} {tx:.1},{ty:.1}"),
                (sx + tx) / 2.0,
                low - 2.0,
            )
        } else {
            let (sx, sy) = (from.x + from.w, from.y + NODE_H / 2.0);
            let (tx, ty) = (to.x, to.y + NODE_H / 2.0);
            let bend = ((tx - sx).abs() / 2.0).max(70.0);
            let (c1x, c2x) = (sx + bend, tx - bend);
            // An edge that skips columns arches over the nodes between.
            let skipped = ((tx - sx) / col_w).floor();
            let lift = if skipped >= 1.0 { 44.0 } else { 0.0 };
            let (c1y, c2y) = (sy - lift, ty - lift);
            // The label sits a third of the way along, nearer the caller,
            // so the labels of edges converging on one target stay apart.
            let at = |p0: f64, p1: f64, p2: f64, p3: f64| {
                let t: f64 = 0.3;
                let u = 1.0 - t;
                u * u * u * p0 + 3.0 * u * u * t * p1 + 3.0 * u * t * t * p2 + t * t * t * p3
            };
            (
                format!("M{sx:.1},{sy:.1} C{c1x:.1},{c1y:.1} {c2x:.1},{c2y:.1} {tx:.1},{ty:.1}"),
                at(sx, c1x, c2x, tx),
                at(sy, c1y, c2y, ty) - 6.0,
            )
        };
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let label = edge_label(edge);
        let _ = writeln!(
            out,
            "  <g class=\"edge\">\n    <title>{} → {}: {}</title>\n    <path d=\"{d}\" \
             fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\"{dash_attr} \
             marker-end=\"url(#arrow-{marker})\"/>\n    <text x=\"{lx:.1}\" y=\"{ly:.1}\" \
             text-anchor=\"middle\" font-size=\"11\" fill=\"{color}\" stroke=\"#ffffff\" \
             stroke-width=\"3\" paint-order=\"stroke\">{}</text>\n  </g>",
            xml_text(&graph.nodes[edge.from].id),
            xml_text(&graph.nodes[edge.to].id),
            xml_text(&label),
            xml_text(&label)
        );
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let p = &places[i];
        let _ = writeln!(
            out,
            "  <g class=\"node\">\n    <title>{}</title>\n    <rect x=\"{:.1}\" y=\"{:.1}\" \
             width=\"{:.1}\" height=\"{NODE_H}\" rx=\"8\" fill=\"#e8eefc\" stroke=\"#3d5a99\" \
             stroke-width=\"1.2\"/>\n    <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             fill=\"#1d2a4d\">{}</text>\n  </g>",
            xml_text(&node.id),
            p.x,
            p.y,
            p.w,
            p.x + p.w / 2.0,
            p.y + NODE_H / 2.0 + 4.5,
            xml_text(&node.label)
        );
    }
    let ly = height - LEGEND_H / 2.0;
    let mut lx = MARGIN;
    for (text, color, dash) in [
        ("allowed", "#2e7d32", ""),
        ("would-deny (dry run)", "#e08600", "2 3"),
        ("denied", "#c62828", "6 4"),
    ] {
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let _ = writeln!(
            out,
            "  <line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" \
             stroke-width=\"1.8\"{dash_attr}/>\n  <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" \
             fill=\"#5a6275\">{text}</text>",
            lx + 28.0,
            lx + 34.0,
            ly + 4.0
        );
        lx += 34.0 + text.len() as f64 * 6.4 + 24.0;
    }
    out.push_str("</svg>\n");
    out
}

//! SVG building blocks: XML escaping, compact number formatting and "nice"
//! axis ticks (steps of 1, 2 or 5 times a power of ten, in the manner of
//! Heckbert's "Nice numbers for graph labels", Graphics Gems, 1990).

use std::fmt::Write as _;

/// Escapes text for XML character data and attribute values (both quote
/// kinds), dropping characters XML 1.0 does not allow.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Shortens text to at most `max` characters, ending with an ellipsis.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A coordinate with at most two decimals, without trailing zeros.
pub(super) fn coord(value: f64) -> String {
    let mut text = format!("{:.2}", value);
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    if text == "-0" {
        text = "0".into();
    }
    text
}

/// Axis ticks: `values` run from `lo` to `hi` in steps of `step`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ticks {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) step: f64,
    pub(super) values: Vec<f64>,
    decimals: usize,
}

/// A "nice" number near `x` > 0: 1, 2, 5 or 10 times a power of ten,
/// rounded to the nearest (`round`) or the next one up.
fn nice(x: f64, round: bool) -> f64 {
    let exponent = x.log10().floor();
    let power = 10f64.powf(exponent);
    let fraction = x / power;
    let nice_fraction = if round {
        if fraction < 1.5 {
            1.0
        } else if fraction < 3.0 {
            2.0
        } else if fraction < 7.0 {
            5.0
        } else {
            10.0
        }
    } else if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice_fraction * power
}

/// About `target` ticks covering `[min, max]` (widened when min == max).
pub(super) fn nice_ticks(min: f64, max: f64, target: usize) -> Ticks {
    let (mut min, mut max) = if min <= max { (min, max) } else { (max, min) };
    if !(min.is_finite() && max.is_finite()) {
        (min, max) = (0.0, 1.0);
    }
    if min == max {
        let pad = if min == 0.0 { 1.0 } else { min.abs() * 0.1 };
        min -= pad;
        max += pad;
    }
    let range = nice(max - min, false);
    let step = nice(range / (target.max(2) - 1) as f64, true);
    let lo = (min / step).floor() * step;
    let hi = (max / step).ceil() * step;
    let first = (lo / step).round();
    let count = ((hi - lo) / step).round() as usize;
    let values = (0..=count)
        .map(|k| {
            let v = (first + k as f64) * step;
            if v.abs() < step * 1e-9 { 0.0 } else { v }
        })
        .collect();
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    Ticks {
        lo,
        hi,
        step,
        values,
        decimals: decimals.min(12),
    }
}

impl Ticks {
    /// A tick label: fixed decimals suited to the step, or scientific
    /// notation for very large or very small magnitudes.
    pub(super) fn label(&self, value: f64) -> String {
        let magnitude = value.abs();
        if value != 0.0 && (magnitude >= 1e7 || self.step < 1e-6) {
            return format!("{value:e}");
        }
        let text = format!("{:.*}", self.decimals, value);
        if text
            .trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
        {
            return text.trim_start_matches('-').to_owned();
        }
        text
    }
}

/// A number as a short label (categories given as numbers).
pub(super) fn number_label(value: f64) -> String {
    let mut text = String::new();
    let _ = write!(text, "{value}");
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::float_cmp)]

    use super::*;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("<&>\"'"), "&lt;&amp;&gt;&quot;&apos;");
        assert_eq!(escape("a\u{1}b\tc"), "ab\tc");
    }

    #[test]
    fn nice_ticks_hand_checked() {
        // 0..97, about 6 ticks: range nice(97) = 100, step nice(20) = 20.
        let t = nice_ticks(0.0, 97.0, 6);
        assert_eq!((t.lo, t.hi, t.step), (0.0, 100.0, 20.0));
        assert_eq!(t.values, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        // 0.13..0.87: range nice(0.74) = 1, step nice(0.2) = 0.2.
        let t = nice_ticks(0.13, 0.87, 6);
        assert_eq!(t.step, 0.2);
        assert_eq!(t.values.len(), 6);
        assert_eq!(t.label(t.values[0]), "0.0");
        assert_eq!(t.label(t.values[5]), "1.0");
        // Negative range crossing zero: -3.2..7.9: range nice(11.1) = 20,
        // step nice(4) = 5, so -5..10.
        let t = nice_ticks(-3.2, 7.9, 6);
        assert_eq!((t.lo, t.hi, t.step), (-5.0, 10.0, 5.0));
        assert_eq!(t.label(0.0), "0");
        // A single value is widened.
        let t = nice_ticks(5.0, 5.0, 6);
        assert!(t.lo < 5.0 && t.hi > 5.0);
    }

    #[test]
    fn coordinates_are_compact() {
        assert_eq!(coord(12.0), "12");
        assert_eq!(coord(12.345), "12.35");
        assert_eq!(coord(-0.001), "0");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}

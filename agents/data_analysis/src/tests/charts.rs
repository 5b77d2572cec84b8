use serde_json::{Value, json};

use super::LogicError;
use super::visualization;

/// Parses the SVG (failing on malformed XML) and returns the document text.
fn render(input: Value) -> (Value, String) {
    let out = visualization(&input).unwrap();
    let svg = out["svg"].as_str().unwrap().to_owned();
    assert_eq!(out["bytes"], svg.len());
    assert_eq!(out["content_type"], "image/svg+xml");
    roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("malformed SVG: {e}\n{svg}"));
    (out, svg)
}

fn series_groups(svg: &str) -> Vec<(String, usize, Vec<String>)> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("series"))
        .map(|g| {
            let shapes: Vec<String> = g
                .children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name().to_owned())
                .collect();
            (
                g.attribute("data-series").unwrap_or("").to_owned(),
                shapes.len(),
                shapes,
            )
        })
        .collect()
}

fn texts(svg: &str, class: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some(class))
        .flat_map(|g| {
            g.descendants()
                .filter(|t| t.has_tag_name("text"))
                .map(|t| t.text().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn line_chart_with_two_series_and_escaped_text() {
    let (out, svg) = render(json!({
        "chart": "line",
        "title": "Sales <&> \"Q1\" 'draft'",
        "x_label": "month & day",
        "y_label": "units <k>",
        "series": [
            {"name": "north <n>", "x": [1, 2, 3, 4], "y": [10, 12, null, 17]},
            {"name": "south & co", "x": [1, 2, 3, 4], "y": [8, 9, 11, 15]},
        ],
    }));
    assert_eq!(out["series_count"], 2);
    assert_eq!(
        (out["width"].as_u64(), out["height"].as_u64()),
        (Some(800), Some(480))
    );
    let groups = series_groups(&svg);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].0, "north <n>");
    assert_eq!(groups[1].0, "south & co");
    // One path per series; the gap at the null splits it into two subpaths.
    assert_eq!(groups[0].2.iter().filter(|t| *t == "path").count(), 1);
    assert_eq!(groups[0].2.iter().filter(|t| *t == "circle").count(), 3);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let path = doc.descendants().find(|n| n.has_tag_name("path")).unwrap();
    assert_eq!(path.attribute("d").unwrap().matches('M').count(), 2);
    let title = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("title"))
        .unwrap();
    assert_eq!(title.text(), Some("Sales <&> \"Q1\" 'draft'"));
    assert!(svg.contains("Sales &lt;&amp;&gt; &quot;Q1&quot; &apos;draft&apos;"));
    let svg_title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
    assert_eq!(svg_title.text(), Some("Sales <&> \"Q1\" 'draft'"));
    let y_label = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("y-label"))
        .unwrap();
    assert_eq!(y_label.text(), Some("units <k>"));
    assert_eq!(texts(&svg, "legend"), ["north <n>", "south & co"]);
    // y from 8 to 17: range nice(9) = 10, step nice(2) = 2 -> ticks 8..18.
    assert_eq!(
        texts(&svg, "axis y-axis"),
        ["8", "10", "12", "14", "16", "18"]
    );
    // x from 1 to 4 with 8 target ticks: range nice(3) = 5, step
    // nice(5/7 = 0.71) = 1 (7.1 rounds to 10 times 0.1).
    assert_eq!(texts(&svg, "axis x-axis"), ["1", "2", "3", "4"]);
    let root = doc.root_element();
    assert_eq!(root.attribute("version"), Some("1.1"));
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
}

#[test]
fn bar_chart_groups_categories() {
    let (out, svg) = render(json!({
        "chart": "bar",
        "series": [
            {"name": "2023", "x": ["Q1", "Q2", "Q3"], "y": [5, -2, 7]},
            {"name": "2024", "x": ["Q1", "Q2", "Q3"], "y": [6, 3, 9]},
            {"name": "2025", "x": ["Q1", "Q3"], "y": [4, 1]},
        ],
        "width": 600,
        "height": 300,
    }));
    assert_eq!(out["series_count"], 3);
    let groups = series_groups(&svg);
    assert_eq!(groups.iter().map(|g| g.1).collect::<Vec<_>>(), [3, 3, 2]);
    assert!(groups.iter().all(|g| g.2.iter().all(|t| t == "rect")));
    assert_eq!(texts(&svg, "axis x-axis"), ["Q1", "Q2", "Q3"]);
    // The axis includes zero and the negative bar: -2..9: range nice(11) =
    // 20, step nice(4) = 5, so -5..10.
    assert_eq!(texts(&svg, "axis y-axis"), ["-5", "0", "5", "10"]);
    assert!(svg.contains("width=\"600\" height=\"300\""));
}

#[test]
fn scatter_and_histogram() {
    let (_, svg) = render(json!({
        "chart": "scatter",
        "series": [{"name": "pts", "x": [0.5, 1.5, 2.5], "y": [3, 1, 2]}],
    }));
    assert_eq!(
        series_groups(&svg),
        [("pts".to_owned(), 3, vec!["circle".to_owned(); 3])]
    );

    // 16 values -> Sturges: ceil(log2 16) + 1 = 5 bins over [0, 10], width 2:
    // [0,2) 0 1 1.5 -> 3; [2,4) 2 3 3 -> 3; [4,6) 4 5 5 5 -> 4; [6,8) 6 7 -> 2;
    // [8,10] 8 9 9.5 10 -> 4 (last bin closed).
    let values = [
        0.0, 1.0, 1.5, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 7.0, 8.0, 9.0, 9.5, 10.0,
    ];
    let (out, svg) = render(json!({"chart": "histogram", "series": [{"name": "h", "y": values}]}));
    assert_eq!(out["bin_edges"], json!([0.0, 2.0, 4.0, 6.0, 8.0, 10.0]));
    let groups = series_groups(&svg);
    assert_eq!(groups[0].1, 5);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let heights: Vec<f64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("series"))
        .flat_map(|g| {
            g.children()
                .filter(|c| c.is_element())
                .map(|r| r.attribute("height").unwrap().parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    // Heights are proportional to the counts 3 3 4 2 4.
    let unit = heights[3] / 2.0;
    for (h, count) in heights.iter().zip([3.0, 3.0, 4.0, 2.0, 4.0]) {
        assert!((h - unit * count).abs() < 0.02, "{heights:?}");
    }
    let (out, _) =
        render(json!({"chart": "histogram", "bins": 2, "series": [{"y": values}, {"y": [1, 2]}]}));
    assert_eq!(out["bin_edges"], json!([0.0, 5.0, 10.0]));
    assert_eq!(out["series_count"], 2);
}

#[test]
fn data_and_columns_form() {
    let (out, svg) = render(json!({
        "chart": "line",
        "data": [{"day": "mon", "a": 1, "b": 2}, {"day": "tue", "a": 3, "b": 1}, {"day": "wed", "a": 2, "b": null}],
        "x": "day",
        "columns": ["a", "b"],
    }));
    assert_eq!(out["series_count"], 2);
    let groups = series_groups(&svg);
    assert_eq!(
        groups.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(texts(&svg, "axis x-axis"), ["mon", "tue", "wed"]);
    // Columns default to every numeric column but x.
    let (out, _) = render(
        json!({"chart": "bar", "data": {"k": ["x", "y"], "v": [1, 2], "w": [3, 4]}, "x": "k"}),
    );
    assert_eq!(out["series_count"], 2);
}

#[test]
fn chart_errors_and_guards() {
    let message = |input: Value| match visualization(&input) {
        Err(LogicError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert!(
        message(json!({"chart": "pie", "series": [{"y": [1]}]}))
            .starts_with("chart: unknown variant `pie`")
    );
    assert_eq!(
        message(json!({"chart": "line", "series": [{"y": [1, "a"]}]})),
        "series[0].y[1]: expected a number or null, found a string"
    );
    assert_eq!(
        message(json!({"chart": "line", "series": [{"x": [1], "y": [1, 2]}]})),
        "series[0].x: 1 values but y has 2"
    );
    assert_eq!(
        message(json!({"chart": "scatter", "series": [{"x": ["a"], "y": [1]}]})),
        "series[0].x: a scatter chart needs numeric x values"
    );
    assert_eq!(
        message(json!({"chart": "line", "series": []})),
        "series: at least one series is required"
    );
    assert_eq!(
        message(json!({"chart": "line", "series": [{"y": [1]}], "width": 50})),
        "width: must be between 200 and 4000 pixels, got 50"
    );
    assert_eq!(
        message(json!({"chart": "line", "data": {"s": ["a"]}})),
        "columns: no numeric column to plot"
    );
    let big: Vec<u32> = (0..10_001).collect();
    let err = visualization(&json!({"chart": "line", "series": [{"y": big}]})).unwrap_err();
    assert!(matches!(err, LogicError::TooLarge(_)), "{err:?}");
}

#[test]
fn control_characters_and_empty_series_still_make_valid_svg() {
    let (_, svg) = render(json!({
        "chart": "line",
        "title": "bell\u{7} and \u{1b}escape",
        "series": [{"name": "nothing", "y": []}, {"name": "\u{0}", "y": [null]}],
    }));
    assert_eq!(series_groups(&svg).len(), 2);
    let (_, svg) =
        render(json!({"chart": "histogram", "series": [{"name": "one", "y": [4, 4, 4]}]}));
    assert_eq!(series_groups(&svg)[0].1, 1);
}

use serde_json::{Value, json};

use super::LogicError;
use super::data_processing;

const SALES: &str = "region,product,units,price,date,active
north,apple,10,1.5,2024-01-05,true
south,pear,NA,2.25,2024-01-06,false
north,pear,7,2.0,2024-02-01T10:00:00Z,true
east,apple,3,,2024-02-03,TRUE
south,apple,12,1.75,2024-03-01,false
";

fn column<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn message(input: Value) -> String {
    match data_processing(&input) {
        Err(LogicError::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn csv_types_missing_and_distinct() {
    let out = data_processing(&json!({"format": "csv", "data": SALES})).unwrap();
    let names: Vec<&str> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["region", "product", "units", "price", "date", "active"]
    );
    assert_eq!(
        column(&out, "region"),
        &json!({"name": "region", "type": "string", "missing": 0, "distinct": 3})
    );
    assert_eq!(
        column(&out, "units"),
        &json!({"name": "units", "type": "integer", "missing": 1, "distinct": 4})
    );
    assert_eq!(column(&out, "price")["type"], "number");
    assert_eq!(column(&out, "price")["missing"], 1);
    assert_eq!(column(&out, "date")["type"], "datetime");
    assert_eq!(column(&out, "active")["type"], "boolean");
    assert_eq!(column(&out, "active")["distinct"], 2);
    assert_eq!(out["row_count"], 5);
    assert_eq!(out["input_rows"], 5);
    assert_eq!(
        out["rows"][0],
        json!({"region": "north", "product": "apple", "units": 10,
        "price": 1.5, "date": "2024-01-05", "active": true})
    );
    assert_eq!(out["rows"][1]["units"], Value::Null);
    assert_eq!(out["rows"][3]["active"], true);
    assert_eq!(out["truncated"], false);
    assert!(out.get("groups").is_none());
}

#[test]
fn filters_group_and_aggregate() {
    let out = data_processing(&json!({
        "data": SALES,
        "filter": [{"column": "units", "op": "ge", "value": 5}, {"column": "date", "op": "lt", "value": "2024-03-01"}],
    }))
    .unwrap();
    // units >= 5 keeps rows 1, 3, 5 (NA never passes a comparison); date < March drops row 5.
    assert_eq!(out["row_count"], 2);
    assert_eq!(out["filtered_rows"], 3);
    assert_eq!(out["rows"][1]["product"], "pear");

    let out = data_processing(&json!({
        "data": SALES,
        "group_by": ["product"],
        "aggregates": [
            {"fn": "count"},
            {"column": "units", "fn": "sum"},
            {"column": "units", "fn": "mean"},
            {"column": "price", "fn": "max", "as": "top_price"},
            {"column": "units", "fn": "median"},
            {"column": "units", "fn": "std"},
            {"column": "date", "fn": "min"},
        ],
        "limit": 2,
    }))
    .unwrap();
    // `limit` caps both the rows and the groups listed.
    assert_eq!(out["rows"].as_array().unwrap().len(), 2);
    assert_eq!(out["truncated"], true);
    assert_eq!(out["group_count"], 2);
    // apple: units 10, 3, 12 -> sum 25, mean 25/3, median 10,
    // std sqrt(((5/3)² + (16/3)² + (11/3)²) / 2) = sqrt((402/9) / 2) = sqrt(67/3).
    let apple = &out["groups"][0];
    assert_eq!(apple["key"], json!({"product": "apple"}));
    assert_eq!(apple["count"], 3);
    assert_eq!(apple["values"]["count"], 3);
    assert_eq!(apple["values"]["sum_units"], 25);
    super::close(super::f(apple, "/values/mean_units"), 25.0 / 3.0, 1e-15);
    assert_eq!(apple["values"]["median_units"], 10.0);
    super::close(
        super::f(apple, "/values/std_units"),
        (67.0f64 / 3.0).sqrt(),
        1e-15,
    );
    assert_eq!(apple["values"]["top_price"], 1.75);
    assert_eq!(apple["values"]["min_date"], "2024-01-05");
    // pear: units NA, 7 -> one value: std undefined.
    let pear = &out["groups"][1];
    assert_eq!(pear["values"]["sum_units"], 7);
    assert_eq!(pear["values"]["std_units"], Value::Null);
}

#[test]
fn missing_value_strategies() {
    let out = data_processing(&json!({"data": SALES, "missing": "drop"})).unwrap();
    assert_eq!(out["dropped_rows"], 2);
    assert_eq!(out["row_count"], 3);
    let out = data_processing(&json!({"data": SALES, "missing": "fill_mean"})).unwrap();
    // units mean of 10, 7, 3, 12 = 8 (integral, stays an integer);
    // price mean of 1.5, 2.25, 2.0, 1.75 = 1.875.
    assert_eq!(out["rows"][1]["units"], 8);
    assert_eq!(out["rows"][3]["price"], 1.875);
    assert_eq!(column(&out, "units")["missing"], 1);
    let out = data_processing(&json!({"data": SALES, "missing": "fill_zero"})).unwrap();
    assert_eq!(out["rows"][1]["units"], 0);
    assert_eq!(out["rows"][3]["price"], 0.0);
}

#[test]
fn json_records_and_options() {
    let out = data_processing(&json!({
        "format": "json",
        "data": [{"n": 1, "s": "a"}, {"n": 2.5, "s": null, "flag": false}, {"n": null, "s": "NA"}],
        "filter": [{"column": "s", "op": "is_null"}],
    }))
    .unwrap();
    assert_eq!(column(&out, "n")["type"], "number");
    assert_eq!(column(&out, "flag")["type"], "boolean");
    assert_eq!(column(&out, "flag")["missing"], 2);
    assert_eq!(column(&out, "s")["missing"], 2);
    assert_eq!(out["row_count"], 2);
    // JSON given as text also works, and semicolon CSV without a header.
    let out = data_processing(&json!({"format": "json", "data": "[{\"a\": 1}]"})).unwrap();
    assert_eq!(out["rows"], json!([{"a": 1}]));
    let out = data_processing(
        &json!({"data": "1;x\n2;y\n", "delimiter": ";", "has_header": false,
        "filter": [{"column": "column_2", "op": "contains", "value": "y"}]}),
    )
    .unwrap();
    assert_eq!(out["rows"], json!([{"column_1": 2, "column_2": "y"}]));
}

#[test]
fn limit_truncates_rows() {
    let csv: String = std::iter::once("v\n".to_string())
        .chain((0..2500).map(|i| format!("{i}\n")))
        .collect();
    let out = data_processing(&json!({"data": csv})).unwrap();
    assert_eq!(out["row_count"], 2500);
    assert_eq!(out["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(out["truncated"], true);
}

#[test]
fn clear_errors() {
    assert_eq!(
        message(json!({"data": "a,b\n1,2\n3\n4,5\n"})),
        "data: CSV line 3 has 1 fields, expected 2"
    );
    assert_eq!(
        message(json!({"data": SALES, "filter": [{"column": "colour", "op": "eq", "value": 1}]})),
        "filter[0].column: unknown column `colour` (columns: region, product, units, price, date, active)"
    );
    assert_eq!(
        message(json!({"data": SALES, "group_by": ["nope"]})),
        "group_by: unknown column `nope` (columns: region, product, units, price, date, active)"
    );
    assert_eq!(
        message(
            json!({"data": SALES, "filter": [{"column": "units", "op": "gt", "value": "many"}]})
        ),
        "filter[0].value: column `units` is integer; expected a number, got \"many\""
    );
    assert_eq!(
        message(json!({"data": SALES, "filter": [{"column": "units", "op": "gt"}]})),
        "filter[0].value: required for op `gt`"
    );
    assert!(
        message(json!({"data": SALES, "filter": [{"column": "units", "op": "like", "value": 1}]}))
            .starts_with("filter[0].op: unknown variant `like`")
    );
    assert_eq!(
        message(json!({"data": SALES, "aggregates": [{"column": "region", "fn": "sum"}]})),
        "aggregates[0].column: column `region` is string; `sum` needs a numeric column"
    );
    assert_eq!(
        message(json!({"data": "a,a\n1,2\n"})),
        "data: duplicate column name `a` in the CSV header (columns 1 and 2)"
    );
    assert_eq!(
        message(json!({"format": "csv", "data": [1]})),
        "data: format `csv` expects CSV text (a string), found an array"
    );
    assert!(
        message(json!({"data": SALES, "delimiter": "::"}))
            .starts_with("delimiter: expected a single ASCII character")
    );
    assert_eq!(
        message(json!({"data": [1, 2]})),
        "data[0]: expected an object, found a number"
    );
}

#[test]
fn cell_guard() {
    let row = "1,2,3,4,5,6,7,8,9,10\n";
    let csv = row.repeat(100_001);
    let err = data_processing(&json!({"data": csv, "has_header": false})).unwrap_err();
    assert_eq!(
        err,
        LogicError::TooLarge("data: more than 1000000 cells".into())
    );
}

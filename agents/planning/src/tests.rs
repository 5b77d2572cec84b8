#![allow(clippy::unwrap_used, clippy::float_cmp)]

use serde_json::{Value, json};

use super::*;

/// (id, ES, EF, LS, LF, slack, critical) of one schedule entry.
fn row(out: &Value, id: &str) -> (f64, f64, f64, f64, f64, bool) {
    let entry = out["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap();
    let f = |k: &str| entry[k].as_f64().unwrap();
    (
        f("earliest_start_h"),
        f("earliest_finish_h"),
        f("latest_start_h"),
        f("latest_finish_h"),
        f("slack_h"),
        entry["critical"].as_bool().unwrap(),
    )
}

fn start_finish(out: &Value, id: &str) -> (f64, f64) {
    let entry = out["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap();
    (
        entry["start_h"].as_f64().unwrap(),
        entry["finish_h"].as_f64().unwrap(),
    )
}

fn ids(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn project_one_two_equal_critical_chains() {
    // Hand computation (hours):
    //   task dur deps   ES EF | LS LF | slack
    //   A    3   -       0  3 |  0  3 | 0
    //   B    2   A       3  5 |  3  5 | 0
    //   C    4   A       3  7 |  3  7 | 0
    //   D    2   B       5  7 |  5  7 | 0
    //   E    3   C,D     7 10 |  7 10 | 0
    //   F    1   E      10 11 | 10 11 | 0
    // Two zero-slack chains of length 11: A-B-D-E-F and A-C-E-F. At E both
    // C and D carry 7 h of chain; the tie goes to the smaller id, C.
    let out = plan_tasks(&json!({"tasks": [
        {"id": "A", "duration_h": 3},
        {"id": "B", "duration_h": 2, "depends_on": ["A"]},
        {"id": "C", "duration_h": 4, "depends_on": ["A"]},
        {"id": "D", "duration_h": 2, "depends_on": ["B"]},
        {"id": "E", "duration_h": 3, "depends_on": ["C", "D"]},
        {"id": "F", "duration_h": 1, "depends_on": ["E"]},
    ]}))
    .unwrap();
    assert_eq!(out["total_duration_h"], 11.0);
    assert_eq!(out["cpm_duration_h"], 11.0);
    assert_eq!(row(&out, "A"), (0.0, 3.0, 0.0, 3.0, 0.0, true));
    assert_eq!(row(&out, "B"), (3.0, 5.0, 3.0, 5.0, 0.0, true));
    assert_eq!(row(&out, "C"), (3.0, 7.0, 3.0, 7.0, 0.0, true));
    assert_eq!(row(&out, "D"), (5.0, 7.0, 5.0, 7.0, 0.0, true));
    assert_eq!(row(&out, "E"), (7.0, 10.0, 7.0, 10.0, 0.0, true));
    assert_eq!(row(&out, "F"), (10.0, 11.0, 10.0, 11.0, 0.0, true));
    assert_eq!(ids(&out["critical_path"]), ["A", "C", "E", "F"]);
    assert_eq!(out["levelled"], false);
    assert_eq!(out["warnings"], json!([]));
    // Schedule entries keep the input order.
    let order: Vec<&str> = out["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["A", "B", "C", "D", "E", "F"]);
}

#[test]
fn project_two_branch_with_slack() {
    // Hand computation:
    //   task dur deps  ES EF | LS LF | slack
    //   a    2   -      0  2 |  0  2 | 0
    //   b    4   a      2  6 |  2  6 | 0
    //   c    1   a      2  3 |  3  4 | 1
    //   d    2   c      3  5 |  4  6 | 1
    //   e    2   b,d    6  8 |  6  8 | 0
    //   f    5   -      0  5 |  3  8 | 3
    //   g    1   e,f    8  9 |  8  9 | 0
    // Critical path a-b-e-g, project 9 h.
    let out = plan_tasks(&json!({"tasks": [
        {"id": "g", "duration_h": 1, "depends_on": ["e", "f"]},
        {"id": "a", "duration_h": 2},
        {"id": "b", "duration_h": 4, "depends_on": ["a"]},
        {"id": "c", "duration_h": 1, "depends_on": ["a"]},
        {"id": "d", "duration_h": 2, "depends_on": ["c"]},
        {"id": "e", "duration_h": 2, "depends_on": ["b", "d"]},
        {"id": "f", "duration_h": 5, "name": "Order steel"},
    ]}))
    .unwrap();
    assert_eq!(out["total_duration_h"], 9.0);
    assert_eq!(row(&out, "a"), (0.0, 2.0, 0.0, 2.0, 0.0, true));
    assert_eq!(row(&out, "b"), (2.0, 6.0, 2.0, 6.0, 0.0, true));
    assert_eq!(row(&out, "c"), (2.0, 3.0, 3.0, 4.0, 1.0, false));
    assert_eq!(row(&out, "d"), (3.0, 5.0, 4.0, 6.0, 1.0, false));
    assert_eq!(row(&out, "e"), (6.0, 8.0, 6.0, 8.0, 0.0, true));
    assert_eq!(row(&out, "f"), (0.0, 5.0, 3.0, 8.0, 3.0, false));
    assert_eq!(row(&out, "g"), (8.0, 9.0, 8.0, 9.0, 0.0, true));
    assert_eq!(ids(&out["critical_path"]), ["a", "b", "e", "g"]);
    assert_eq!(out["schedule"][6]["name"], "Order steel");
    // Without resources and weather the schedule is the early-start one.
    assert_eq!(start_finish(&out, "d"), (3.0, 5.0));
}

#[test]
fn project_three_release_time_starts_the_chain() {
    // Hand computation (s2 may not start before hour 5):
    //   task dur deps    ES EF | LS LF | slack
    //   s1   4   -        0  4 |  1  5 | 1
    //   s2   2   - (r5)   5  7 |  5  7 | 0
    //   m    3   s1,s2    7 10 |  7 10 | 0
    //   x    6   s1       4 10 |  5 11 | 1
    //   end  1   m       10 11 | 10 11 | 0
    // The zero-slack chain starts at s2's release: s2-m-end.
    let out = plan_tasks(&json!({"tasks": [
        {"id": "s1", "duration_h": 4},
        {"id": "s2", "duration_h": 2, "earliest_start_h": 5},
        {"id": "m", "duration_h": 3, "depends_on": ["s1", "s2"]},
        {"id": "x", "duration_h": 6, "depends_on": ["s1"]},
        {"id": "end", "duration_h": 1, "depends_on": ["m"]},
    ]}))
    .unwrap();
    assert_eq!(out["total_duration_h"], 11.0);
    assert_eq!(row(&out, "s1"), (0.0, 4.0, 1.0, 5.0, 1.0, false));
    assert_eq!(row(&out, "s2"), (5.0, 7.0, 5.0, 7.0, 0.0, true));
    assert_eq!(row(&out, "m"), (7.0, 10.0, 7.0, 10.0, 0.0, true));
    assert_eq!(row(&out, "x"), (4.0, 10.0, 5.0, 11.0, 1.0, false));
    assert_eq!(row(&out, "end"), (10.0, 11.0, 10.0, 11.0, 0.0, true));
    assert_eq!(ids(&out["critical_path"]), ["s2", "m", "end"]);
}

#[test]
fn fractional_hours_are_reported_rounded() {
    let out = plan_tasks(&json!({"tasks": [
        {"id": "a", "duration_h": 0.1},
        {"id": "b", "duration_h": 0.2, "depends_on": ["a"]},
        {"id": "c", "duration_h": 0.3},
    ]}))
    .unwrap();
    // 0.1 + 0.2 = 0.30000000000000004 in binary; c (0.3 h) is still critical.
    assert_eq!(out["total_duration_h"], 0.3);
    assert!(row(&out, "c").5);
    assert_eq!(ids(&out["critical_path"]), ["a", "b"]);
}

#[test]
fn cycle_is_named_in_precedence_order() {
    let err = plan_tasks(&json!({"tasks": [
        {"id": "a", "duration_h": 1, "depends_on": ["c"]},
        {"id": "b", "duration_h": 1, "depends_on": ["a"]},
        {"id": "c", "duration_h": 1, "depends_on": ["b"]},
        {"id": "d", "duration_h": 1, "depends_on": ["a"]},
        {"id": "e", "duration_h": 1},
    ]}))
    .unwrap_err();
    assert_eq!(
        err,
        LogicError::Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(err.to_string(), "invalid input: cycle: a -> b -> c -> a");
    assert_eq!(err.code(), "cycle");

    // A cycle reached through a task outside it, listed from its smallest id:
    // x depends on w, y on x, w on y, so w precedes x precedes y precedes w.
    let err = plan_tasks(&json!({"tasks": [
        {"id": "z", "duration_h": 1, "depends_on": ["y"]},
        {"id": "y", "duration_h": 1, "depends_on": ["x"]},
        {"id": "x", "duration_h": 1, "depends_on": ["w"]},
        {"id": "w", "duration_h": 1, "depends_on": ["y"]},
    ]}))
    .unwrap_err();
    assert_eq!(err.to_string(), "invalid input: cycle: w -> x -> y -> w");

    let err =
        plan_tasks(&json!({"tasks": [{"id": "self", "duration_h": 1, "depends_on": ["self"]}]}))
            .unwrap_err();
    assert_eq!(err, LogicError::Cycle(vec!["self".into(), "self".into()]));
}

fn invalid_message(input: Value) -> String {
    match plan_tasks(&input) {
        Err(LogicError::InvalidInput(message)) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn bad_input_names_the_field() {
    let m = invalid_message(json!({"tasks": [
        {"id": "a", "duration_h": 1, "depends_on": ["nope"]}]}));
    assert_eq!(m, "tasks[0].depends_on: unknown task id `nope`");
    let m = invalid_message(json!({"tasks": [
        {"id": "a", "duration_h": 1}, {"id": "a", "duration_h": 2}]}));
    assert_eq!(m, "tasks[1].id: duplicate id `a` (first used by tasks[0])");
    let m = invalid_message(json!({"tasks": [{"id": "a", "duration_h": -2}]}));
    assert_eq!(m, "tasks[0].duration_h: must be a number > 0, got -2");
    let m = invalid_message(json!({"tasks": [{"id": "a", "duration_h": 0}]}));
    assert!(
        m.starts_with("tasks[0].duration_h: must be a number > 0"),
        "{m}"
    );
    let m = invalid_message(json!({"tasks": [{"id": "a"}]}));
    assert_eq!(m, "tasks[0]: missing field `duration_h`");
    let m = invalid_message(json!({"tasks": [{"id": "a", "duration_h": "3"}]}));
    assert!(
        m.starts_with("tasks[0].duration_h: invalid type: string"),
        "{m}"
    );
    let m = invalid_message(json!({"tasks": [{"id": "a", "duration_h": 1, "colour": "red"}]}));
    assert!(
        m.starts_with("tasks[0].colour: unknown field `colour`"),
        "{m}"
    );
    let m = invalid_message(json!({"tasks": []}));
    assert_eq!(m, "tasks: at least one task is required");
    let m = invalid_message(json!({"tasks": [{"id": "a", "duration_h": 1}], "start": "tomorrow"}));
    assert!(
        m.starts_with("start: expected an RFC 3339 date-time"),
        "{m}"
    );
    let m = invalid_message(json!({
        "tasks": [{"id": "a", "duration_h": 1, "resources": {"crane": 2}}],
        "resources": {"crane": 1}}));
    assert_eq!(
        m,
        "tasks[0].resources.crane: demand 2 exceeds the capacity 1 of resource `crane`"
    );
    let m =
        invalid_message(json!({"tasks": [{"id": "a", "duration_h": 1, "earliest_start_h": -1}]}));
    assert_eq!(
        m,
        "tasks[0].earliest_start_h: must be a number >= 0, got -1"
    );
    let m = invalid_message(json!([1, 2]));
    assert_eq!(m, "input: expected an object, found an array");
}

#[test]
fn levelling_with_a_single_crane() {
    // CPM (no capacity): A 0-2, B 0-3, C 2-3, D 3-5; LS: A 2, B 0, C 4, D 3.
    // A and B both need the crane (capacity 1) at hours 0-2: levelling.
    // Serial schedule, priority = least LS:
    //   ready {A(LS 2), B(LS 0)} -> B at 0-3 (crane)
    //   ready {A(2), D(3)}       -> A: crane busy until 3 -> 3-5
    //   ready {D(3), C(4)}       -> D after B: 3-5 (no crane)
    //   ready {C(4)}             -> C after A, crane free at 5 -> 5-6
    // Makespan 6 h (CPM 5 h); CPM critical path stays B-D.
    let out = plan_tasks(&json!({
        "tasks": [
            {"id": "A", "duration_h": 2, "resources": {"crane": 1}},
            {"id": "B", "duration_h": 3, "resources": {"crane": 1}},
            {"id": "C", "duration_h": 1, "resources": {"crane": 1}, "depends_on": ["A"]},
            {"id": "D", "duration_h": 2, "depends_on": ["B"]},
        ],
        "resources": {"crane": 1},
    }))
    .unwrap();
    assert_eq!(out["levelled"], true);
    assert_eq!(out["total_duration_h"], 6.0);
    assert_eq!(out["cpm_duration_h"], 5.0);
    assert_eq!(start_finish(&out, "B"), (0.0, 3.0));
    assert_eq!(start_finish(&out, "A"), (3.0, 5.0));
    assert_eq!(start_finish(&out, "D"), (3.0, 5.0));
    assert_eq!(start_finish(&out, "C"), (5.0, 6.0));
    assert_eq!(ids(&out["critical_path"]), ["B", "D"]);
    assert_eq!(
        out["resources"]["crane"],
        json!({"capacity": 1.0, "peak": 1.0})
    );
}

#[test]
fn no_levelling_when_capacity_suffices() {
    let out = plan_tasks(&json!({
        "tasks": [
            {"id": "A", "duration_h": 2, "resources": {"crew": 2}},
            {"id": "B", "duration_h": 3, "resources": {"crew": 2, "van": 1}},
        ],
        "resources": {"crew": 4},
    }))
    .unwrap();
    assert_eq!(out["levelled"], false);
    assert_eq!(out["total_duration_h"], 3.0);
    assert_eq!(out["resources"]["crew"]["peak"], 4.0);
    assert_eq!(out["resources"]["van"]["capacity"], Value::Null);
    assert_eq!(
        ids(&out["warnings"]),
        [
            "resource `van` is used by tasks but has no capacity in `resources`; treated as unlimited"
        ]
    );
}

fn forecast(start: &str, probabilities: &[u32]) -> Value {
    // Hourly local times from `start` (YYYY-MM-DDTHH:00, same day or next).
    let date = &start[..10];
    let first: usize = start[11..13].parse().unwrap();
    let time: Vec<String> = (0..probabilities.len())
        .map(|h| {
            let hour = first + h;
            assert!(hour < 24);
            format!("{date}T{hour:02}:00")
        })
        .collect();
    json!({"hourly": {"time": time, "precipitation_probability": probabilities}})
}

#[test]
fn outdoor_tasks_avoid_wet_hours() {
    // Wet (> 50 %) hours: 2, 3, 4 and 12. prep 0-2; pour (outdoor, 3 h) could
    // start at 2 but hours 2-4 are wet: it moves to 5-8, cure follows 8-9.
    // fence (outdoor, 0-2) is dry. paint (outdoor, 4 h, not before hour 10)
    // would overlap hour 12: it moves to 13-17. shed (indoor) ignores rain.
    let mut p = vec![10; 24];
    for h in [2, 3, 4, 12] {
        p[h] = 80;
    }
    p[6] = 50; // exactly the threshold is still dry
    let out = plan_tasks(&json!({
        "tasks": [
            {"id": "prep", "duration_h": 2},
            {"id": "pour", "duration_h": 3, "depends_on": ["prep"], "outdoor": true},
            {"id": "cure", "duration_h": 1, "depends_on": ["pour"]},
            {"id": "fence", "duration_h": 2, "outdoor": true},
            {"id": "paint", "duration_h": 4, "earliest_start_h": 10, "outdoor": true},
            {"id": "shed", "duration_h": 3, "earliest_start_h": 2},
        ],
        "start": "2025-06-01T00:00:00Z",
        "weather": {"forecast": forecast("2025-06-01T00:00", &p)},
    }))
    .unwrap();
    assert_eq!(start_finish(&out, "pour"), (5.0, 8.0));
    assert_eq!(start_finish(&out, "cure"), (8.0, 9.0));
    assert_eq!(start_finish(&out, "fence"), (0.0, 2.0));
    assert_eq!(start_finish(&out, "paint"), (13.0, 17.0));
    assert_eq!(start_finish(&out, "shed"), (2.0, 5.0));
    assert_eq!(ids(&out["weather_adjusted"]), ["pour", "paint"]);
    assert_eq!(out["total_duration_h"], 17.0);
    // CPM figures ignore the weather.
    assert_eq!(out["cpm_duration_h"], 14.0);
    assert_eq!(out["weather"]["wet_hours"], 4);
    assert_eq!(out["warnings"], json!([]));
    let pour = &out["schedule"][1];
    assert_eq!(pour["start"], "2025-06-01T05:00:00Z");
    assert_eq!(pour["finish"], "2025-06-01T08:00:00Z");
    assert_eq!(out["finish"], "2025-06-01T17:00:00Z");
}

#[test]
fn forecast_offsets_align_with_the_project_start() {
    // Project starts 08:00 at +02:00 = 06:00 UTC. The forecast is in UTC
    // (Open-Meteo default) from 05:00: index 2 (07:00 UTC) is project hour 1.
    let mut p = vec![0; 10];
    p[2] = 90;
    let mut fc = forecast("2025-06-01T05:00", &p);
    fc["utc_offset_seconds"] = json!(0);
    let out = plan_tasks(&json!({
        "tasks": [{"id": "roof", "duration_h": 1.5, "outdoor": true}],
        "start": "2025-06-01T08:00:00+02:00",
        "weather": {"forecast": fc, "max_precipitation_probability": 40},
    }))
    .unwrap();
    // Hour 0-1.5 overlaps the wet hour 1-2: moved to 2-3.5.
    assert_eq!(start_finish(&out, "roof"), (2.0, 3.5));
    assert_eq!(out["schedule"][0]["start"], "2025-06-01T10:00:00+02:00");
    assert_eq!(out["schedule"][0]["finish"], "2025-06-01T11:30:00+02:00");
    assert_eq!(out["start"], "2025-06-01T08:00:00+02:00");
    assert_eq!(out["weather"]["horizon_start_h"], -1.0);

    // Without utc_offset_seconds the local times are read in start's offset:
    // 05:00 local is then project hour -3 and the wet slot is hour -1.
    let out = plan_tasks(&json!({
        "tasks": [{"id": "roof", "duration_h": 1.5, "outdoor": true}],
        "start": "2025-06-01T08:00:00+02:00",
        "weather": {"forecast": forecast("2025-06-01T05:00", &p), "max_precipitation_probability": 40},
    }))
    .unwrap();
    assert_eq!(start_finish(&out, "roof"), (0.0, 1.5));
}

#[test]
fn no_dry_window_in_the_horizon_warns() {
    let out = plan_tasks(&json!({
        "tasks": [{"id": "dig", "duration_h": 2, "outdoor": true}],
        "weather": {"forecast": forecast("2025-06-01T00:00", &[90, 90, 20, 90, 90, 90])},
    }))
    .unwrap();
    // Hour 2 is the only dry hour, too short for 2 h: placed after the horizon.
    assert_eq!(start_finish(&out, "dig"), (6.0, 8.0));
    assert_eq!(ids(&out["weather_adjusted"]), ["dig"]);
    assert_eq!(
        ids(&out["warnings"]),
        [
            "task `dig`: no dry window of 2 h within the forecast horizon (ends at hour 6); \
          placed at hour 6, where the weather is unknown"
        ]
    );
}

#[test]
fn weather_input_errors() {
    let m = invalid_message(json!({
        "tasks": [{"id": "a", "duration_h": 1}],
        "weather": {"forecast": {"hourly": {"time": ["2025-06-01T00:00"], "precipitation_probability": [1, 2]}}},
    }));
    assert_eq!(
        m,
        "weather.forecast.hourly.precipitation_probability: 2 entries but time has 1"
    );
    let m = invalid_message(json!({
        "tasks": [{"id": "a", "duration_h": 1}],
        "weather": {"forecast": {"hourly": {"time": ["soon"], "precipitation_probability": [1]}}},
    }));
    assert!(
        m.starts_with("weather.forecast.hourly.time[0]: expected"),
        "{m}"
    );
    let m = invalid_message(json!({
        "tasks": [{"id": "a", "duration_h": 1}],
        "weather": {"forecast": {"hourly": {"time": ["2025-06-01T00:00"], "precipitation_probability": [120]}}},
    }));
    assert!(
        m.starts_with("weather.forecast.hourly.precipitation_probability[0]"),
        "{m}"
    );
}

#[test]
fn levelling_and_weather_together() {
    // One crew (capacity 1). wall (outdoor, 2 h) and floor (indoor, 2 h) both
    // need it; hour 0 is wet. Without the capacity, wall would move to 1-3 and
    // overlap floor 0-2: levelling. Both have LS 0; the tie goes to the id:
    // floor first at 0-2, then wall: crew free and dry at 2, so 2-4.
    let out = plan_tasks(&json!({
        "tasks": [
            {"id": "wall", "duration_h": 2, "outdoor": true, "resources": {"crew": 1}},
            {"id": "floor", "duration_h": 2, "resources": {"crew": 1}},
        ],
        "resources": {"crew": 1},
        "weather": {"forecast": forecast("2025-06-01T00:00", &[80, 0, 0, 0, 0, 0])},
    }))
    .unwrap();
    assert_eq!(out["levelled"], true);
    assert_eq!(start_finish(&out, "floor"), (0.0, 2.0));
    assert_eq!(start_finish(&out, "wall"), (2.0, 4.0));
    // The crew alone would also have pushed wall to 2: not a weather shift.
    assert_eq!(ids(&out["weather_adjusted"]), Vec::<&str>::new());
}

/// Checks a plan against its input: dependencies, releases, capacities and
/// wet hours for outdoor tasks.
fn assert_feasible(input: &Value, out: &Value) {
    let tasks = input["tasks"].as_array().unwrap();
    let schedule = out["schedule"].as_array().unwrap();
    assert_eq!(tasks.len(), schedule.len());
    let tol = 1e-6;
    let find = |id: &str| schedule.iter().find(|e| e["id"] == id).unwrap();
    for (task, entry) in tasks.iter().zip(schedule) {
        assert_eq!(task["id"], entry["id"]);
        let s = entry["start_h"].as_f64().unwrap();
        let f = entry["finish_h"].as_f64().unwrap();
        assert!((f - s - task["duration_h"].as_f64().unwrap()).abs() < tol);
        assert!(s + tol >= entry["earliest_start_h"].as_f64().unwrap());
        for dep in task["depends_on"].as_array().unwrap() {
            let pf = find(dep.as_str().unwrap())["finish_h"].as_f64().unwrap();
            assert!(s + tol >= pf, "{} starts before {dep} finishes", task["id"]);
        }
    }
    // Capacities: check usage at every start instant.
    let caps = input["resources"].as_object().unwrap();
    for (resource, cap) in caps {
        let cap = cap.as_f64().unwrap();
        for entry in schedule {
            let t = entry["start_h"].as_f64().unwrap();
            let used: f64 = tasks
                .iter()
                .zip(schedule)
                .filter(|(_, e)| {
                    e["start_h"].as_f64().unwrap() <= t + tol
                        && e["finish_h"].as_f64().unwrap() > t + tol
                })
                .map(|(task, _)| task["resources"][resource].as_f64().unwrap_or(0.0))
                .sum();
            assert!(used <= cap + tol, "{resource} over capacity at {t}: {used}");
        }
    }
}

#[test]
fn thousand_task_benchmark_project_is_feasible_and_deterministic() {
    let input = benchmark_input(1000);
    let out = plan_tasks(&input).unwrap();
    assert_eq!(out["levelled"], true);
    assert_feasible(&input, &out);
    assert_eq!(out["resources"]["crane"]["peak"], 1.0);
    assert!(out["total_duration_h"].as_f64().unwrap() >= out["cpm_duration_h"].as_f64().unwrap());
    assert!(!out["critical_path"].as_array().unwrap().is_empty());
    assert!(!out["weather_adjusted"].as_array().unwrap().is_empty());
    assert_eq!(plan_tasks(&input).unwrap(), out);
    assert!(benchmark_plan(200).is_ok());
}

#[test]
fn accepts_the_weather_forecast_capability_output() {
    // The shape `weather_forecast` returns: local times, offset under
    // `location`. Tokyo (+09:00): 09:00 local is 00:00 UTC, project hour 0.
    let forecast = json!({
        "location": {"name": "Tokyo", "timezone": "Asia/Tokyo", "utc_offset_seconds": 32400,
                     "latitude": 35.69, "longitude": 139.69},
        "units": {"precipitation_probability": "%"},
        "daily": [],
        "hourly": {
            "time": ["2025-06-01T09:00", "2025-06-01T10:00", "2025-06-01T11:00", "2025-06-01T12:00"],
            "precipitation_probability": [70, 10, 10, null],
            "temperature": [20.1, 21.0, 21.5, 22.0],
        },
        "source": "api.open-meteo.com",
        "fixture": false,
    });
    let out = plan_tasks(&json!({
        "tasks": [{"id": "garden", "duration_h": 2, "outdoor": true}],
        "start": "2025-06-01T00:00:00Z",
        "weather": {"forecast": forecast},
    }))
    .unwrap();
    assert_eq!(start_finish(&out, "garden"), (1.0, 3.0));
    assert_eq!(out["schedule"][0]["start"], "2025-06-01T01:00:00Z");
    assert_eq!(out["weather"]["wet_hours"], 1);
}

#[test]
fn fractional_random_projects_stay_feasible() {
    // Durations in tenths of an hour (not exact in binary), three resources,
    // release times: every plan must respect dependencies and capacities.
    let mut state: u64 = 7;
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) % m
    };
    for round in 0..20 {
        let n = 30 + round * 5;
        let tasks: Vec<Value> = (0..n)
            .map(|i| {
                let deps: Vec<String> = (0..next(3))
                    .filter(|_| i > 0)
                    .map(|_| format!("t{}", next(i as u64)))
                    .collect();
                json!({
                    "id": format!("t{i}"),
                    "duration_h": (1 + next(25)) as f64 / 10.0,
                    "depends_on": deps,
                    "earliest_start_h": if next(5) == 0 { next(30) as f64 / 10.0 } else { 0.0 },
                    "resources": {"a": next(3) as f64 * 0.5, "b": next(2), "c": 0.3},
                })
            })
            .collect();
        let input = json!({"tasks": tasks, "resources": {"a": 1.0, "b": 1, "c": 0.9}});
        let out = plan_tasks(&input).unwrap();
        assert_feasible(&input, &out);
        assert!(
            out["total_duration_h"].as_f64().unwrap() + 1e-9
                >= out["cpm_duration_h"].as_f64().unwrap()
        );
    }
}

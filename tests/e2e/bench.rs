//! The benchmark cannot rot: `agentry bench --embedded` runs every mode
//! (and `--backlog`) on a few requests and prints its figures. No timing is
//! asserted; the counts are. The embedded system is a private dev-mode server
//! (no accounts), which is what the bench measures.

use agentry_tests::bin;
use serde_json::Value;

/// Runs `agentry --json bench --embedded <args>`, asserts it exits 0 and returns its JSON.
fn bench(args: &[&str]) -> Value {
    let out = std::process::Command::new(bin("agentry"))
        .args(["--json", "bench", "--embedded"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("agentry bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agentry bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON figures in the output of {args:?}: {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// Every load mode, compared with raw, completes all its requests without
/// errors and reports throughput, latency and CPU per process.
#[test]
fn bench_embedded_dev_mode_prints_figures_in_every_mode() {
    for mode in ["task", "direct", "workflow"] {
        let v = bench(&[
            "--mode",
            mode,
            "--compare",
            "raw",
            "-n",
            "40",
            "-c",
            "8",
            "--warmup",
            "5",
        ]);
        let reports = v["reports"].as_array().unwrap();
        assert_eq!(reports.len(), 2, "{mode}: {v}");
        for (r, want) in reports.iter().zip([mode, "raw"]) {
            assert_eq!(r["mode"], want, "{v}");
            assert_eq!(r["requests"], 40, "{mode}: {r}");
            assert_eq!(r["errors"], 0, "{mode}: {r}");
            assert!(r["throughput"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
        }
        assert!(
            v["ratio"]["throughput_ratio"].as_f64().unwrap() > 0.0,
            "{v}"
        );
        let procs: Vec<&str> = v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["process"].as_str())
            .collect();
        for name in ["agentry-engine", "agentry-agent", "agentry-monitor"] {
            assert!(procs.contains(&name), "{mode}: no figures for {name}: {v}");
        }
    }
}

/// `--backlog` queues with the agent stopped, then drains: every request is
/// answered exactly once, in every mode, and the drain rate is reported.
#[test]
fn bench_embedded_dev_mode_backlog_drains_every_request_once() {
    for (mode, n) in [("task", 300), ("direct", 300), ("workflow", 30)] {
        let v = bench(&[
            "--mode",
            mode,
            "--compare",
            "raw",
            "--backlog",
            &n.to_string(),
        ]);
        let reports = v["backlog"].as_array().unwrap();
        assert_eq!(reports.len(), 2, "{mode}: {v}");
        for (r, want) in reports.iter().zip([mode, "raw"]) {
            assert_eq!(r["mode"], want, "{v}");
            assert_eq!(r["queued"], n, "{r}");
            assert_eq!(r["results"], n, "{mode}: {r}");
            assert_eq!(r["failed"], 0, "{mode}: {r}");
            assert_eq!(r["duplicates"], 0, "{mode}: {r}");
            assert!(r["drain_rate"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
}

/// `--suite` (what `make bench` runs) measures every figure of the README's
/// table against raw, each on a fresh system, and judges the targets; here
/// at a small fraction of its request counts.
#[test]
fn bench_suite_reports_every_figure_with_its_target() {
    let v = bench(&["--suite", "--suite-scale", "0.002", "--suite-rounds", "2"]);
    assert_eq!(v["rounds"], 2, "{v}");
    let rows = v["suite"].as_array().unwrap();
    let figures: Vec<&str> = rows.iter().filter_map(|r| r["figure"].as_str()).collect();
    assert_eq!(
        figures,
        [
            "task, 256 in flight",
            "direct, 256 in flight",
            "workflow (3 echo steps)",
            "task p50, 1 in flight",
            "task backlog 10,000",
            "task backlog 200,000"
        ],
        "{v}"
    );
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        // Both rounds' ratios, lowest first; the row is the median round's.
        let ratios: Vec<f64> = r["round_ratios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(ratios.len(), 2, "{r}");
        assert!(ratios[0] <= ratios[1], "{r}");
        assert!(ratios.contains(&r["ratio"].as_f64().unwrap()), "{r}");
        assert!(r["agentry"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["raw"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
        let cpu: Vec<&str> = r["cpu"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["process"].as_str())
            .collect();
        for name in [
            "agentry-engine",
            "agentry-agent",
            "nats-server",
            "agentry (client)",
        ] {
            assert!(cpu.contains(&name), "no CPU figure for {name}: {r}");
        }
    }
    // The four load figures have a target and a verdict; the backlogs have neither.
    for (r, judged) in rows.iter().zip([true, true, true, true, false, false]) {
        assert_eq!(r["met"].is_boolean(), judged, "{r}");
    }
    assert_eq!(rows[4]["requests"], 20, "{v}");
    assert_eq!(rows[5]["requests"], 400, "{v}");
}

/// The pids of the processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                // "pid (comm) state ppid ...": the comm may hold spaces.
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.to_owned()))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// SIGTERM to a running `agentry bench --embedded` stops what it started:
/// it exits 130 and its nats-server and components are gone, not left
/// running as orphans.
#[test]
fn sigterm_stops_the_embedded_system() {
    // A ChildProc: killed on drop should the test fail before the signal.
    let mut bench = agentry_tests::ChildProc::spawn(
        "agentry",
        &["bench", "--embedded", "--mode", "task", "-n", "100000000"],
        &[("RUST_LOG", "warn")],
    );
    let pid = bench.pid();
    // The server and the three components, once the load runs.
    let mut started = Vec::new();
    agentry_tests::wait_until(std::time::Duration::from_secs(60), || {
        started = children_of(pid);
        started.len() >= 4
    });
    bench.signal("TERM");
    let status = bench.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    for p in started {
        let alive = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        assert!(!alive, "process {p} of the bench outlived it");
    }
}

//! The README is tested: every command of its shell blocks runs, in order,
//! against `agentry up --offline` (dev mode: what `make up ARGS=--offline`
//! runs, no accounts), and must exit and print as its comment documents.
//!
//! A command's trailing comment documents it as `... exit <code>[: <shape>]`:
//! - `{...}`: stdout is one JSON document containing this one (objects
//!   compared key by key, recursively; other values must be equal);
//! - `table A B C`: the first stdout line has these column names, in order;
//! - `sections A, B`: these lines appear in stdout, in order;
//! - `lines X`: at least one stdout line, and every one contains `X`;
//! - `nothing on stdout`.
//!
//! A comment with `until Ctrl-C` marks a live command: it runs in the
//! background (a second terminal), the block goes on, and at the end it gets
//! SIGINT and is then checked. Lines without an `exit` run as shell commands
//! that must succeed. Commands that cannot run here are listed in [`SKIP`]
//! with the reason; anything else unknown fails the test.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentry_tests::up::Up;
use agentry_tests::{bin, repo_root};
use serde_json::Value;

/// Command prefixes that are documented but not run here, and why.
const SKIP: &[(&str, &str)] = &[
    (
        "make up",
        "make up = release build + `agentry up`; this test starts `agentry up --offline` itself",
    ),
    ("make test", "this test is part of `make test`"),
    (
        "nats ",
        "the nats CLI (Go) is not installed here; tests/e2e/inspect.rs and runtime/ make the same JetStream API calls",
    ),
];

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Any,
    Json(Value),
    Table(Vec<String>),
    Sections(Vec<String>),
    Lines(String),
    Empty,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Documented, not run: the reason.
    Skip(&'static str),
    /// A plain shell line (no `exit` documented): must exit 0.
    Shell,
    Check {
        exit: i32,
        shape: Shape,
        background: bool,
    },
}

#[derive(Debug, Clone)]
struct Line {
    command: String,
    step: Step,
}

/// The commands of every ```sh block, continuation lines joined.
fn shell_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for raw in readme.lines() {
        let t = raw.trim_end();
        if !in_block {
            in_block = matches!(t.trim(), "```sh" | "```bash" | "```shell");
            continue;
        }
        if t.trim() == "```" {
            in_block = false;
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let line = std::mem::take(&mut pending);
        if !line.trim().is_empty() {
            out.push(line.trim().to_owned());
        }
    }
    out
}

/// Splits `cmd   # comment` at the first `#` outside quotes that follows
/// whitespace.
fn split_comment(line: &str) -> (String, Option<String>) {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => {
                return (
                    line[..i].trim().to_owned(),
                    Some(line[i + 1..].trim().to_owned()),
                );
            }
            _ => {}
        }
        prev = c;
    }
    (line.trim().to_owned(), None)
}

fn parse_shape(text: &str) -> Result<Shape, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Shape::Any);
    }
    if text.starts_with('{') {
        let end = text.rfind('}').ok_or("unclosed JSON shape")?;
        return serde_json::from_str(&text[..=end])
            .map(Shape::Json)
            .map_err(|e| format!("JSON shape {text:?}: {e}"));
    }
    if let Some(cols) = text.strip_prefix("table ") {
        return Ok(Shape::Table(
            cols.split_whitespace().map(str::to_owned).collect(),
        ));
    }
    if let Some(s) = text.strip_prefix("sections ") {
        return Ok(Shape::Sections(
            s.split(',').map(|p| p.trim().to_owned()).collect(),
        ));
    }
    if let Some(l) = text.strip_prefix("lines ") {
        let token = l.split_whitespace().next().ok_or("`lines` needs a text")?;
        return Ok(Shape::Lines(token.to_owned()));
    }
    if text == "nothing on stdout" {
        return Ok(Shape::Empty);
    }
    Err(format!("unknown output shape {text:?}"))
}

fn parse_line(line: &str) -> Result<Line, String> {
    let (command, comment) = split_comment(line);
    if let Some((_, why)) = SKIP.iter().find(|(p, _)| command.starts_with(p)) {
        return Ok(Line {
            command,
            step: Step::Skip(why),
        });
    }
    let comment = comment.unwrap_or_default();
    let step = match comment.find("exit ") {
        None if mentions_agentry(&command) => {
            return Err(format!(
                "README command {command:?} documents no exit code (`# exit N: <shape>`)"
            ));
        }
        None => Step::Shell,
        Some(at) => {
            let rest = &comment[at + "exit ".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let exit = digits
                .parse()
                .map_err(|_| format!("{command:?}: `exit` without a code"))?;
            let shape = rest[digits.len()..]
                .strip_prefix(':')
                .map(parse_shape)
                .transpose()?
                .unwrap_or(Shape::Any);
            Step::Check {
                exit,
                shape,
                background: comment.contains("until Ctrl-C"),
            }
        }
    };
    Ok(Line { command, step })
}

fn mentions_agentry(command: &str) -> bool {
    command
        .split('|')
        .any(|part| part.trim_start().starts_with("agentry "))
}

/// `want` is contained in `got`: objects key by key, the rest equal.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        _ => got == want,
    }
}

/// Checks one finished command against its documentation.
fn check(
    command: &str,
    exit: i32,
    shape: &Shape,
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<(), String> {
    let show = || format!("\n  command: {command}\n  stdout: {stdout}\n  stderr: {stderr}");
    if code != Some(exit) {
        return Err(format!(
            "exited {code:?}, README says exit {exit}{}",
            show()
        ));
    }
    // Quiet by default: no log lines, no colour; a successful command says nothing on stderr.
    if stderr.contains(" INFO ") || stderr.contains('\u{1b}') || (exit == 0 && !stderr.is_empty()) {
        return Err(format!("unexpected stderr output{}", show()));
    }
    let ok = match shape {
        Shape::Any => true,
        Shape::Empty => stdout.trim().is_empty(),
        Shape::Json(want) => serde_json::from_str::<Value>(stdout)
            .map(|got| contains(&got, want))
            .unwrap_or(false),
        Shape::Table(cols) => stdout.lines().next().is_some_and(|head| {
            let words: Vec<&str> = head.split_whitespace().collect();
            let mut at = 0;
            cols.iter()
                .all(|c| match words[at..].iter().position(|w| w == c) {
                    Some(p) => {
                        at += p + 1;
                        true
                    }
                    None => false,
                })
        }),
        Shape::Sections(names) => {
            let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
            let mut at = 0;
            names
                .iter()
                .all(|n| match lines[at..].iter().position(|l| l == n) {
                    Some(p) => {
                        at += p + 1;
                        true
                    }
                    None => false,
                })
        }
        Shape::Lines(text) => {
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
            !lines.is_empty() && lines.iter().all(|l| l.contains(text.as_str()))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("output is not the documented {shape:?}{}", show()))
    }
}

/// A `bash -c` for a README line in the work folder, `agentry` on PATH.
fn shell(up: &Up, command: &str) -> Command {
    let bin_dir = bin("agentry").parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("exec {command}"))
        .current_dir(up.workdir())
        .env("PATH", path)
        .env_remove("AGENTRY_NATS_URL")
        .env_remove("NATS_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn readme_lines() -> Vec<Line> {
    let text = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    shell_commands(&text)
        .iter()
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("README: {e}")))
        .collect()
}

/// Every README shell command runs in order against `agentry up --offline`
/// and exits and prints as documented (dev mode, as `make up` runs it).
#[test]
fn readme_commands_run_as_documented_against_dev_mode_up() {
    let lines = readme_lines();
    let runnable = lines
        .iter()
        .filter(|l| !matches!(l.step, Step::Skip(_)))
        .count();
    assert!(
        runnable >= 10,
        "only {runnable} runnable README commands found"
    );
    let mut up = Up::start(&["--offline"], &[]);
    // The examples read repository files by relative path, as from a clone.
    std::os::unix::fs::symlink(repo_root().join("schemas"), up.workdir().join("schemas")).unwrap();

    let mut background = Vec::new();
    let mut failures = Vec::new();
    for line in &lines {
        match &line.step {
            Step::Skip(why) => eprintln!("skip  {}  ({why})", line.command),
            Step::Shell => {
                let out = shell(&up, &line.command).output().unwrap();
                if !out.status.success() {
                    failures.push(format!(
                        "{}: exited {:?}: {}",
                        line.command,
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            Step::Check {
                exit,
                shape,
                background: true,
            } => {
                // RUST_LOG=info only to learn when it is subscribed; its stdout stays checked.
                let mut child = shell(&up, &line.command)
                    .env("RUST_LOG", "info")
                    .spawn()
                    .unwrap();
                let mut err = child.stderr.take().unwrap();
                let mut seen = Vec::new();
                let start = Instant::now();
                let mut buf = [0u8; 256];
                while !String::from_utf8_lossy(&seen).contains("watching") {
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "{} never started",
                        line.command
                    );
                    let n = err.read(&mut buf).unwrap();
                    assert!(n > 0, "{} ended early", line.command);
                    seen.extend_from_slice(&buf[..n]);
                }
                // Kept open: a closed stderr would end it with SIGPIPE on its next log line.
                background.push((line.clone(), child, *exit, shape.clone(), err));
            }
            Step::Check { exit, shape, .. } => {
                let out = shell(&up, &line.command).output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                eprintln!("ran   {}  -> {:?}", line.command, out.status.code());
                if let Err(e) = check(
                    &line.command,
                    *exit,
                    shape,
                    out.status.code(),
                    &stdout,
                    &stderr,
                ) {
                    failures.push(e);
                }
            }
        }
    }
    for (line, mut child, exit, shape, _stderr) in background {
        Command::new("kill")
            .arg("-INT")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = child.wait().unwrap();
        eprintln!(
            "ran   {}  -> {:?} (after Ctrl-C)",
            line.command,
            status.code()
        );
        // Its stderr carried the info log we asked for; only stdout and the code are checked.
        if let Err(e) = check(&line.command, exit, &shape, status.code(), &stdout, "") {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "README commands not as documented:\n{}",
        failures.join("\n")
    );
    // Ctrl-C as a terminal sends it (to the whole process group, server included).
    up.ctrl_c();
    let status = up.wait(Duration::from_secs(60));
    let (out, err) = (up.out(), up.err());
    assert!(
        status.success(),
        "agentry up after Ctrl-C: {status}\n{out}\n{err}"
    );
    // Ordered shutdown: agents, then engine and monitor, then the server.
    let order = [
        "stopping      agents",
        "stopping      engine and monitor",
        "stopping      nats-server",
        "stopped",
    ];
    let at: Vec<Option<usize>> = order.iter().map(|l| out.find(l)).collect();
    assert!(
        at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
        "shutdown not in order {order:?}:\n{out}"
    );
    let last_deregistered = err.rfind("agent deregistered").expect("agents deregister");
    let engine_closed = err
        .find("nats connection closed connection=agentry-engine")
        .expect("engine closes its connection");
    assert!(
        last_deregistered < engine_closed,
        "engine stopped before the agents:\n{err}"
    );
    // No component saw the server go away under it.
    for noise in ["disconnected", "reconnect"] {
        assert!(!err.contains(noise), "shutdown logged {noise:?}:\n{err}");
    }
}

/// The checker catches a wrong exit code, a wrong shape and a noisy stderr.
#[test]
fn readme_checker_rejects_what_the_readme_does_not_say() {
    let l = parse_line(
        r##"agentry submit echo --input '{"a":"#"}'   # note: exit 0: {"type": "io.agentry.task.completed"}"##,
    )
    .unwrap();
    assert_eq!(l.command, r##"agentry submit echo --input '{"a":"#"}'"##);
    let Step::Check {
        exit,
        shape,
        background,
    } = l.step
    else {
        panic!("not a check: {:?}", l.step)
    };
    assert_eq!((exit, background), (0, false));
    let done = r#"{"type":"io.agentry.task.completed","data":{}}"#;
    assert!(check("c", exit, &shape, Some(0), done, "").is_ok());
    assert!(check("c", exit, &shape, Some(1), done, "").is_err());
    let failed = r#"{"type":"io.agentry.task.failed"}"#;
    assert!(check("c", exit, &shape, Some(0), failed, "").is_err());
    assert!(
        check(
            "c",
            exit,
            &shape,
            Some(0),
            done,
            "2026 INFO nats connected\n"
        )
        .is_err()
    );
    assert!(
        parse_line("agentry agents").is_err(),
        "an undocumented agentry command is refused"
    );
    assert_eq!(parse_line("echo hi > f").unwrap().step, Step::Shell);
    assert!(matches!(
        parse_line("nats stream ls").unwrap().step,
        Step::Skip(_)
    ));
    let table = parse_shape("table ID KIND STATUS").unwrap();
    assert!(
        check(
            "c",
            0,
            &table,
            Some(0),
            "ID  KIND  CAPS  STATUS\nx y z\n",
            ""
        )
        .is_ok()
    );
    assert!(check("c", 0, &table, Some(0), "ID  STATUS  KIND\n", "").is_err());
}

#!/usr/bin/env python3
"""Drives the agentry web console in headless Chromium (Debian's `chromium`
and `chromium-driver`, Python `selenium`), for tests/e2e/console.

Usage: browser.py URL TOKEN SHOTS_DIR SCENARIO

The Rust test starts the system and reads this script's stdout, one line
per step: `STEP <name>` when a step is done (the test may act on it, then
answers with a line on stdin where the script waits), `FAIL <why>` before
exiting non-zero. Screenshots go to SHOTS_DIR.

Scenarios:
  agents-submit  log in; Agents page goes live; (test starts an echo agent)
                 the agent's row appears without a reload; Submit page, echo
                 form, a message containing <script> is submitted; the result
                 page reaches `completed` and shows the markup as text.
  run            log in; Runs page, start echo_diamond with {"n": 3}; the run
                 page reloads itself until `completed`, with 6 completed
                 steps drawn in the SVG graph and the hand-computed output.
  dlq            log in; DLQ page, reason task_failed, the one letter's
                 headers and body; Replay; prints the new request id.
  signal-cancel  log in; start console_wait twice from the Runs page; on the
                 first run page, once step `hold` waits, send signal `go`
                 with a payload and see the run complete with it as output
                 and its events end in run.completed; on the second, Cancel
                 with a reason and see `cancelled`.
  queues         log in; Queues page goes live; echo has 5 pending tasks, no
                 live agent and a sparkline of 3+ samples that reached 5; (test starts an
                 echo agent) without a reload the queue drains to 0 with a
                 live agent.
"""

import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# Generous: the tests share a loaded 2-core machine.
WAIT = 60


def step(name):
    print(f"STEP {name}", flush=True)


def wait_for_test():
    """Blocks until the test writes a line (it acted on the last step)."""
    sys.stdin.readline()


def driver():
    opts = Options()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)


def login(d, url, token):
    d.get(f"{url}/console/agents")
    # No cookie yet: the console sends us to its login form.
    WebDriverWait(d, WAIT).until(lambda d: "/console/login" in d.current_url)
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.ID, "login").click()
    WebDriverWait(d, WAIT).until(lambda d: d.current_url.endswith("/console/agents"))


def agents_submit(d, url, token, shots):
    login(d, url, token)
    WebDriverWait(d, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "[data-live-state]").text == "live")
    step("agents-live")
    wait_for_test()
    WebDriverWait(d, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-agent^='echo']"))
    row = d.find_element(By.CSS_SELECTOR, "tr[data-agent^='echo']").text
    if "echo" not in row or "live" not in row:
        raise AssertionError(f"echo row without its capability or status: {row!r}")
    d.save_screenshot(f"{shots}/agents.png")
    step("agent-seen")

    d.find_element(By.LINK_TEXT, "Submit").click()
    WebDriverWait(d, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "a[data-capability='echo']"))
    d.find_element(By.CSS_SELECTOR, "a[data-capability='echo']").click()
    WebDriverWait(d, WAIT).until(lambda d: d.find_elements(By.ID, "in.message"))
    payload = "<script>window.__pwned = 1</script>hello from the browser"
    d.find_element(By.ID, "in.message").send_keys(payload)
    d.find_element(By.ID, "in.counter_key").send_keys("console-browser")
    d.find_element(By.ID, "submit").click()
    WebDriverWait(d, WAIT).until(lambda d: "/console/results/" in d.current_url)
    WebDriverWait(d, WAIT).until(
        lambda d: d.find_element(By.ID, "result-status").text == "completed")
    shown = d.find_element(By.ID, "result").text
    if payload not in shown:
        raise AssertionError(f"the result does not show the payload as text: {shown!r}")
    if d.execute_script("return window.__pwned === undefined") is not True:
        raise AssertionError("a <script> from the payload ran")
    step("result " + d.current_url.rsplit("/", 1)[-1])


def run_page(d, url, token, shots):
    login(d, url, token)
    d.find_element(By.LINK_TEXT, "Runs").click()
    WebDriverWait(d, WAIT).until(lambda d: d.find_elements(By.ID, "start-workflow"))
    d.find_element(By.CSS_SELECTOR, "#start-workflow option[value='echo_diamond']").click()
    box = d.find_element(By.ID, "start-input")
    box.clear()
    box.send_keys('{"n": 3}')
    d.find_element(By.ID, "start").click()
    WebDriverWait(d, WAIT).until(lambda d: "/console/runs/" in d.current_url)
    # The page reloads itself while the run is going.
    WebDriverWait(d, WAIT).until(lambda d: run_status(d) == "completed")
    # Once the final event is listed the page stops reloading.
    types = events_until(d, "io.agentry.run.completed")
    steps = d.find_elements(By.CSS_SELECTOR, "svg#dag g.step")
    statuses = sorted(s.get_attribute("data-status") for s in steps)
    if statuses != ["completed"] * 6:
        raise AssertionError(f"expected 6 completed steps drawn, got {statuses}")
    output = d.find_element(By.ID, "run-output").text
    if '"total": 19' not in output:
        raise AssertionError(f"run output: {output!r}")
    if types[0] != "io.agentry.run.started":
        raise AssertionError(f"events do not start with run.started: {types}")
    if types.count("io.agentry.step.completed") != 6:
        raise AssertionError(f"expected 6 step.completed events: {types}")
    full_page_shot(d, f"{shots}/run.png")
    step("run " + d.current_url.rsplit("/", 1)[-1])


def full_page_shot(d, path):
    """A screenshot of the whole page (the window grown to its height)."""
    for _ in range(3):  # the window's own frame takes part of its height
        missing = d.execute_script(
            "return document.documentElement.scrollHeight - window.innerHeight")
        if missing <= 0:
            break
        size = d.get_window_size()
        d.set_window_size(1280, min(size["height"] + missing + 20, 4000))
    d.save_screenshot(path)
    d.set_window_size(1280, 900)


def events_until(d, last_type):
    """The run page's event types in order, reloading until the last one is
    `last_type` (events are published just after the run state is stored).
    Checks the sequence numbers ascend."""
    def loaded(d):
        # Read in one script: the page may be reloading itself meanwhile.
        rows = d.execute_script("""
            return Array.from(document.querySelectorAll("#run-events tbody tr[data-type]"))
                .map((r) => [Number(r.dataset.seq), r.dataset.type]);""")
        if rows and rows[-1][1] == last_type:
            return rows
        if not d.find_elements(By.CSS_SELECTOR, "[data-reload]"):
            d.refresh()
        return False
    rows = WebDriverWait(d, WAIT).until(loaded)
    seqs = [seq for seq, _ in rows]
    if seqs != sorted(seqs):
        raise AssertionError(f"events out of order: {seqs}")
    return [ty for _, ty in rows]


def fill_form(d, fields):
    """Types into a form of a page that reloads itself. Focusing a form
    stops the reload (console.js); a reload that came first is retried."""
    def attempt(d):
        try:
            d.execute_script("window.__filling = 1")
            for fid, text in fields:
                el = d.find_element(By.ID, fid)
                el.click()
                el.clear()
                el.send_keys(text)
            same = d.execute_script(
                "return window.__filling === 1 && document.body.dataset.reloadPaused === '1'")
            return same and all(
                d.find_element(By.ID, fid).get_attribute("value") == text for fid, text in fields)
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    WebDriverWait(d, WAIT).until(attempt)


def start_run(d, url, workflow, input_json):
    d.get(f"{url}/console/runs")
    WebDriverWait(d, WAIT).until(lambda d: d.find_elements(By.ID, "start-workflow"))
    d.find_element(By.CSS_SELECTOR, f"#start-workflow option[value='{workflow}']").click()
    box = d.find_element(By.ID, "start-input")
    box.clear()
    box.send_keys(input_json)
    d.find_element(By.ID, "start").click()
    WebDriverWait(d, WAIT).until(lambda d: "/console/runs/" in d.current_url)
    return d.current_url.rsplit("/", 1)[-1]


def step_status(d, step_id):
    try:
        return d.find_element(By.CSS_SELECTOR, f"svg#dag g.step[data-step='{step_id}']").get_attribute("data-status")
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def run_status(d):
    try:
        return d.find_element(By.ID, "run-status").text
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def signal_cancel(d, url, token, shots):
    login(d, url, token)
    signalled = start_run(d, url, "console_wait", "{}")
    # The page reloads itself until the step waits for its signal.
    WebDriverWait(d, WAIT).until(lambda d: step_status(d, "hold") == "waiting")
    fill_form(d, [("signal-name", "go"), ("signal-payload", '{"said": "<b>go</b> now"}')])
    d.find_element(By.ID, "signal").click()
    WebDriverWait(d, WAIT).until(lambda d: run_status(d) == "completed")
    types = events_until(d, "io.agentry.run.completed")
    output = d.find_element(By.ID, "run-output").text
    if "<b>go</b> now" not in output:
        raise AssertionError(f"the signal's payload is not the output: {output!r}")
    if "io.agentry.step.completed" not in types:
        raise AssertionError(f"no step.completed event for the signalled step: {types}")
    step("signalled " + signalled)

    cancelled = start_run(d, url, "console_wait", "{}")
    WebDriverWait(d, WAIT).until(lambda d: step_status(d, "hold") == "waiting")
    fill_form(d, [("cancel-reason", "not needed any more")])
    d.find_element(By.ID, "cancel").click()
    WebDriverWait(d, WAIT).until(lambda d: run_status(d) == "cancelled")
    events_until(d, "io.agentry.run.cancelled")
    step("cancelled " + cancelled)


def dlq_replay(d, url, token, shots):
    login(d, url, token)
    d.find_element(By.LINK_TEXT, "DLQ").click()
    WebDriverWait(d, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "a[data-reason='task_failed']"))
    d.find_element(By.CSS_SELECTOR, "a[data-reason='task_failed']").click()
    WebDriverWait(d, WAIT).until(lambda d: "reason=task_failed" in d.current_url)
    rows = d.find_elements(By.CSS_SELECTOR, "table.dlq tbody tr")
    if len(rows) != 1:
        raise AssertionError(f"expected one task_failed letter, got {len(rows)}")
    rows[0].find_element(By.TAG_NAME, "a").click()
    WebDriverWait(d, WAIT).until(lambda d: d.find_elements(By.ID, "replay"))
    body = d.find_element(By.ID, "dlq-body").text
    if "retryable" not in body:
        raise AssertionError(f"the letter's body is not shown: {body!r}")
    d.save_screenshot(f"{shots}/dlq.png")
    d.find_element(By.ID, "replay").click()
    WebDriverWait(d, WAIT).until(lambda d: d.find_elements(By.ID, "replayed"))
    step("replayed " + d.find_element(By.ID, "new-request").text)


def queue_state(d, cap):
    """The queue row of `cap` as a dict, read in one script (the rows are
    replaced on every sample), or None."""
    return d.execute_script("""
        const row = document.querySelector(`tbody#queues tr[data-capability='${arguments[0]}']`);
        if (!row) return null;
        const spark = row.querySelector("svg.spark");
        return {pending: row.dataset.pending, ack: row.dataset.ackPending, live: row.dataset.live,
                max: Number(spark.dataset.max), samples: Number(spark.dataset.samples)};
    """, cap)


def queues(d, url, token, shots):
    login(d, url, token)
    d.find_element(By.LINK_TEXT, "Queues").click()
    WebDriverWait(d, WAIT).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "[data-live-state]").text == "live")
    # Marks this document: a reload would lose the mark.
    d.execute_script("window.__samePage = 1")

    def backlog(d):
        q = queue_state(d, "echo")
        # A few samples, so the ring is seen to grow (and the line shows).
        return (q is not None and q["pending"] == "5" and q["live"] == "0"
                and q["max"] >= 5 and q["samples"] >= 3)
    WebDriverWait(d, WAIT).until(backlog)
    step("queued")
    wait_for_test()

    def drained(d):
        q = queue_state(d, "echo")
        return (q is not None and q["pending"] == "0" and q["ack"] == "0"
                and q["live"] not in ("0", None)) and q
    q = WebDriverWait(d, WAIT).until(drained)
    if d.execute_script("return window.__samePage === 1") is not True:
        raise AssertionError("the Queues page reloaded instead of updating live")
    if q["max"] < 5:
        raise AssertionError(f"the sparkline lost the backlog of 5: {q}")
    d.save_screenshot(f"{shots}/queues.png")
    step("drained")


SCENARIOS = {"agents-submit": agents_submit, "run": run_page, "dlq": dlq_replay,
             "queues": queues, "signal-cancel": signal_cancel}


def main():
    url, token, shots, scenario = sys.argv[1:5]
    d = driver()
    try:
        SCENARIOS[scenario](d, url, token, shots)
    except Exception as e:  # reported to the test, which fails with it
        try:
            d.save_screenshot(f"{shots}/failure-{scenario}.png")
        except Exception:
            pass
        print(f"FAIL {type(e).__name__}: {e}".replace("\n", " "), flush=True)
        print(f"PAGE {d.current_url} {d.page_source[:2000]!r}", flush=True)
        sys.exit(1)
    finally:
        d.quit()
    step("done")


if __name__ == "__main__":
    main()

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
"""

import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30


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
    WebDriverWait(d, WAIT).until(
        lambda d: d.find_element(By.ID, "run-status").text == "completed")
    steps = d.find_elements(By.CSS_SELECTOR, "svg#dag g.step")
    statuses = sorted(s.get_attribute("data-status") for s in steps)
    if statuses != ["completed"] * 6:
        raise AssertionError(f"expected 6 completed steps drawn, got {statuses}")
    output = d.find_element(By.ID, "run-output").text
    if '"total": 19' not in output:
        raise AssertionError(f"run output: {output!r}")
    d.save_screenshot(f"{shots}/run.png")
    step("run " + d.current_url.rsplit("/", 1)[-1])


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


SCENARIOS = {"agents-submit": agents_submit, "run": run_page, "dlq": dlq_replay}


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

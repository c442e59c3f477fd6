"""Drives the proxy's browser console (/console) in a real headless Chromium, as a person would.

Usage: console_e2e.py BASE_URL TOPIC GROUP SCREENSHOT.png [--basic USER:PASSWORD | --token TOKEN]

BASE_URL is the proxy (http://127.0.0.1:PORT), TOPIC an existing one-partition topic. The
script produces three records through the form, a bad one (an error frame) and one holding
HTML; subscribes in a second tab with autoCommit off, checks the table, commits one record
with its button and waits until the independent Kafka client (kafka_tool.py) sees the group's
offset move; pauses and resumes; shows 3,000 more records with the table capped; checks the
page made no request outside its own origin and ran no script from a record; runs the Learn
section's Python snippet as copied. It saves a screenshot and prints one JSON line per checked step,
the last one {"ok": true, ...}. With --basic it only checks that Basic authentication works
from the browser (page and both sockets); with --token, that the page loads without a token and
its sockets open with the one typed into its "Access token" field (OpenID Connect).
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

XSS = "<img src=x onerror=alert(1)>"
WAIT = 60  # seconds: a loaded 2-core machine, a consumer group joining


def step(name, **facts):
    print(json.dumps({"step": name, **facts}), flush=True)


def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("WSPROXY_TEST_CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1500", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps", "--disable-sync"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(os.environ.get("WSPROXY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def wait_for(driver, what, predicate, timeout=WAIT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}") from e


def produce(driver, key, value, value_format="string", submit_with_enter=False, headers=""):
    """Fills the produce form and sends it; returns the log row's answer cell text once answered."""
    before = len(driver.find_elements(By.CSS_SELECTOR, "#produce-log tbody tr"))
    Select(driver.find_element(By.ID, "p-value-format")).select_by_value(value_format)
    for field, text in (("p-key", key), ("p-value", value), ("p-headers", headers)):
        el = driver.find_element(By.ID, field)
        el.clear()
        el.send_keys(text)
    if submit_with_enter:
        driver.find_element(By.ID, "p-key").send_keys(Keys.ENTER)  # the keyboard, no mouse
    else:
        driver.find_element(By.XPATH, "//form[@id='produce-form']//button[normalize-space()='Produce']").click()
    wait_for(driver, f"the answer to {value!r}", lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "#produce-log tbody tr")) > before and d.find_element(
        By.CSS_SELECTOR, "#produce-log tbody tr:first-child td:nth-child(2)").text.strip())
    return driver.find_element(By.CSS_SELECTOR, "#produce-log tbody tr:first-child td:nth-child(2)").text


def subscribe(driver, topic, group, auto_commit):
    driver.find_element(By.ID, "c-topic").clear()
    driver.find_element(By.ID, "c-topic").send_keys(topic)
    driver.find_element(By.ID, "c-group").clear()
    driver.find_element(By.ID, "c-group").send_keys(group)
    Select(driver.find_element(By.ID, "c-reset")).select_by_value("earliest")
    box = driver.find_element(By.ID, "c-auto-commit")
    if box.is_selected() != auto_commit:
        box.click()
    driver.find_element(By.XPATH, "//button[normalize-space()='Subscribe']").click()


def rows(driver):
    """The records table as dicts (text as the user sees it)."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#records tbody tr')].map(r => ({
          partition: r.cells[0].textContent, offset: r.cells[1].textContent,
          key: r.cells[3].textContent, value: r.cells[4].textContent, headers: r.cells[5].textContent}));""")


def committed(group, topic):
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kafka_tool.py")
    out = subprocess.run([sys.executable, tool, "committed", group, topic], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def check_layout(driver):
    """The produce form comes first and is visible; every control has a visible label."""
    facts = driver.execute_script("""
        const labels = [...document.querySelectorAll('label')];
        const first = (t) => labels.find(l => l.textContent.trim() === t);
        const buttons = [...document.querySelectorAll('button')];
        const controls = [...document.querySelectorAll('input, select, textarea')];
        const unlabeled = controls.filter(c => {
          const l = document.querySelector(`label[for="${c.id}"]`);
          return !l || !l.textContent.trim() || l.getClientRects().length === 0;
        }).map(c => c.id || c.outerHTML);
        const topic = first('Topic'), value = first('Value');
        return {
          firstForm: document.forms[0].id,
          topicIn: topic && topic.closest('form') && topic.closest('form').id,
          valueIn: value && value.closest('form') && value.closest('form').id,
          produceButtons: buttons.filter(b => b.textContent.trim() === 'Produce').length,
          namelessButtons: buttons.filter(b => !b.textContent.trim()).length,
          keyFormat: document.getElementById('p-key-format').value,
          valueFormat: document.getElementById('p-value-format').value,
          formTop: document.getElementById('produce-form').getBoundingClientRect().top,
          formBottom: document.getElementById('produce-form').getBoundingClientRect().bottom,
          viewport: window.innerHeight,
          unlabeled,
          recordsIsTable: document.getElementById('records').tagName,
        };""")
    assert facts["firstForm"] == "produce-form", facts
    assert facts["topicIn"] == "produce-form" and facts["valueIn"] == "produce-form", facts
    assert facts["produceButtons"] == 1, facts
    assert facts["namelessButtons"] == 0, facts
    assert facts["keyFormat"] == "string" and facts["valueFormat"] == "string", facts
    assert 0 <= facts["formTop"] and facts["formBottom"] <= facts["viewport"], f"produce form not visible on load: {facts}"
    assert facts["unlabeled"] == [], facts
    assert facts["recordsIsTable"] == "TABLE", facts
    step("layout", **facts)


def no_alert(driver):
    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        return
    raise AssertionError(f"a record ran a script: an alert says {text!r}")


def requests_made(driver):
    """Every URL the browser asked for (pages, assets, sockets), from the performance log."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
        elif msg["method"] == "Network.webSocketCreated":
            urls.append(msg["params"]["url"])
    return urls


def authenticated(base, topic, group, basic=None, token=None):
    """Basic: the browser's own credentials (as after its prompt) open the page and both
    sockets. Token: the page loads without one; its sockets are refused until the token is in
    the "Access token" field, then open with it."""
    driver = browser()
    value = "through basic auth" if basic else "through a token"
    try:
        parts = urlsplit(base)
        driver.get(f"{parts.scheme}://{basic}@{parts.netloc}/console" if basic else f"{base}/console")
        wait_for(driver, "the page's script", lambda d: d.execute_script(
            "return document.getElementById('p-key-format').options.length > 0"))
        driver.find_element(By.ID, "p-topic").send_keys(topic)
        if token:
            refused = produce(driver, "k", "without a token")
            assert refused.startswith("No answer: the proxy refused the socket"), refused
            step("refused without a token", answer=refused)
            driver.find_element(By.ID, "token").send_keys(token)
            learn = driver.find_element(By.ID, "learn-js").text
            assert "access_token=YOUR_TOKEN" in learn and token not in learn, learn
        answer = produce(driver, "k", value)
        assert answer.startswith("partition 0, offset 0"), answer
        # Two records per frame: one JSON array frame, answered with one array frame.
        count = driver.find_element(By.ID, "p-count")
        count.clear()
        count.send_keys("2")
        pair = produce(driver, "k", "in an array")
        assert pair == "partition 0, offset 1; partition 0, offset 2", pair
        sent = driver.find_element(By.CSS_SELECTOR, "#produce-log tbody tr:first-child td:first-child").text
        assert sent.startswith("[{") and sent.count('"messageId"') == 2, sent
        subscribe(driver, topic, group, auto_commit=True)
        wait_for(driver, "the record in the table", lambda d: any(r["value"] == value for r in rows(d)))
        sockets = [u for u in requests_made(driver) if u.startswith("ws")]
        if token:
            assert sockets and all(u.endswith(f"access_token={token}") for u in sockets[1:]), sockets
        step("authenticated", answer=answer, sockets=len(sockets))
        print(json.dumps({"ok": True}), flush=True)
    finally:
        driver.quit()


def main(base, topic, group, screenshot, *auth):
    if auth:
        kind, secret = auth
        return authenticated(base, topic, group, **{kind.lstrip("-"): secret})
    origin = base.rstrip("/")
    ws_origin = "ws" + origin[len("http"):]
    driver = browser()
    try:
        driver.get(f"{origin}/console")
        wait_for(driver, "the page's script", lambda d: d.execute_script(
            "return document.getElementById('p-key-format').options.length > 0"))
        check_layout(driver)

        # Tab 1: produce three records, a bad one and one holding HTML.
        driver.find_element(By.ID, "p-topic").send_keys(topic)
        answers = [produce(driver, f"k{i}", f"v{i}", headers=f"source=console, n={i}") for i in (1, 2, 3)]
        assert answers == [f"partition 0, offset {i}" for i in range(3)], answers
        step("produced three", answers=answers)
        bad = produce(driver, "bad", "not a number", value_format="int")
        assert bad.startswith("Error INVALID_VALUE:"), bad
        assert "error" in driver.find_element(By.CSS_SELECTOR, "#produce-log tbody tr:first-child").get_attribute("class")
        step("error frame shown", answer=bad)
        xss = produce(driver, "html", XSS, submit_with_enter=True)
        assert xss == "partition 0, offset 3", xss
        step("produced html", answer=xss)
        learn = driver.find_element(By.ID, "learn-js").text
        assert f"/socket/in?clientId=my-producer&topic={topic}" in learn, learn
        assert "new WebSocket(" in learn and "websocat" in driver.find_element(By.ID, "learn-sh").text
        step("learn snippets follow the form")
        tab1 = driver.current_window_handle

        # Tab 2: subscribe with autoCommit off and see the records in the table.
        driver.switch_to.new_window("tab")
        driver.get(f"{origin}/console")
        wait_for(driver, "the page's script", lambda d: d.execute_script(
            "return document.getElementById('p-key-format').options.length > 0"))
        subscribe(driver, topic, group, auto_commit=False)
        wait_for(driver, "four records in the table", lambda d: len(rows(d)) >= 4)
        table = rows(driver)
        assert sorted(r["value"] for r in table) == sorted(["v1", "v2", "v3", XSS]), table
        assert {r["offset"] for r in table} == {"0", "1", "2", "3"}, table
        assert [r["headers"] for r in table if r["key"] == "k2"] == ["source=console, n=2"], table
        step("consumed", rows=table)

        # The HTML record is text: no element made from it, no script run, no request for "x".
        html_cell = driver.find_element(By.XPATH, "//table[@id='records']//tr[@data-offset='3']/td[5]")
        assert html_cell.text == XSS and html_cell.get_attribute("innerHTML") == "&lt;img src=x onerror=alert(1)&gt;"
        assert driver.find_elements(By.CSS_SELECTOR, "#records img") == []
        no_alert(driver)
        step("html shown as text")

        # Commit the second record (offset 1) with its button: the group's offset becomes 2.
        button = driver.find_element(By.XPATH, "//table[@id='records']//tr[@data-offset='1']//button[normalize-space()='Commit']")
        button.send_keys(Keys.ENTER)  # keyboard, like a person tabbing to it
        wait_for(driver, "the button to say it was sent", lambda d: button.text == "Commit sent")
        deadline = time.monotonic() + WAIT
        while (seen := committed(group, topic)).get("0") != 2:
            assert time.monotonic() < deadline, f"group {group} offsets stay {seen}, expected partition 0 at 2"
            time.sleep(0.5)
        step("committed", offsets=seen)

        # Pause holds new records out of the table; Resume shows them.
        driver.find_element(By.XPATH, "//button[normalize-space()='Pause']").click()
        driver.find_element(By.ID, "p-topic").send_keys(topic)
        produce(driver, "k5", "produced while paused")
        wait_for(driver, "the held record to be counted", lambda d: "paused (1 held)" in d.find_element(By.ID, "record-count").text)
        assert len(rows(driver)) == 4
        driver.find_element(By.XPATH, "//button[normalize-space()='Resume']").click()
        wait_for(driver, "the held record in the table", lambda d: len(rows(d)) == 5)
        step("pause and resume", count=driver.find_element(By.ID, "record-count").text)

        time.sleep(1.5)  # one more tick of the records/s chart before the picture
        width, bottom = driver.execute_script(
            "return [document.documentElement.clientWidth,"
            " document.getElementById('records').getBoundingClientRect().bottom + window.scrollY + 24]")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": bottom, "scale": 1}})
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        step("screenshot", path=screenshot)

        # Thousands of records (written by the independent client): the table keeps the newest
        # 500, the counter counts them all, and the page still answers.
        many = 3000
        tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kafka_tool.py")
        lines = "".join(json.dumps({"value": {"format": "string", "value": f"bulk {i}"}}) + "\n" for i in range(many))
        subprocess.run([sys.executable, tool, "produce", topic], input=lines, check=True, capture_output=True,
                       text=True, timeout=120)
        started = time.monotonic()
        wait_for(driver, f"{5 + many} records counted", lambda d: d.find_element(
            By.ID, "record-count").text == f"{5 + many} records received")
        shown = len(rows(driver))
        assert shown == 500 and rows(driver)[0]["value"] == f"bulk {many - 1}", (shown, rows(driver)[0])
        t0 = time.monotonic()
        driver.execute_script("return document.title")
        step("thousands", records=5 + many, shown=shown, seconds=round(time.monotonic() - started, 2),
             script_roundtrip_ms=round((time.monotonic() - t0) * 1000, 1))

        no_alert(driver)
        driver.switch_to.window(tab1)
        no_alert(driver)
        urls = requests_made(driver)
        outside = [u for u in urls if not (u.startswith(origin + "/") or u.startswith(ws_origin + "/"))]
        assert f"{origin}/console/app.js" in urls and any(u.startswith(f"{ws_origin}/socket/out") for u in urls), urls
        assert outside == [], f"requests outside the page's origin: {outside}"
        assert not [u for u in urls if u.endswith("/x")], f"the HTML record was loaded as an image: {urls}"
        problems = [e["message"] for e in driver.get_log("browser")
                    if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert problems == [], problems
        step("network", requests=urls, outside=outside)

        # The Learn tab's Python snippet, copied as is, produces and consumes too.
        snippet = driver.find_element(By.ID, "learn-py").text
        run = subprocess.Popen([sys.executable, "-c", snippet], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        guard = threading.Timer(WAIT, run.kill)  # a hung snippet ends the test instead of hanging it
        guard.start()
        try:
            printed = [run.stdout.readline() for _ in range(2)]
        finally:
            guard.cancel()
            run.kill()
            run.wait()
        assert '"offset":3005' in printed[0] and "'wsProxyMessageId'" in printed[1], (printed, run.stderr.read())
        step("learn python snippet runs", printed=printed)
        print(json.dumps({"ok": True, "offsets": seen}), flush=True)
    except BaseException:
        try:
            driver.save_screenshot(screenshot.replace(".png", "-failed.png"))
        except Exception:
            pass
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])

//! A real headless Chromium for the browser console's tests: `tests/support/console_e2e.py`
//! (Selenium) drives it with the venv's Python.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use super::{bootstrap, project_root};

/// Where Chromium and chromedriver are, or None (the browser tests are then skipped, loudly).
pub fn chromium() -> Option<(PathBuf, PathBuf)> {
    let browser = PathBuf::from(std::env::var("WSPROXY_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let driver =
        PathBuf::from(std::env::var("WSPROXY_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()));
    if browser.exists() && driver.exists() {
        return Some((browser, driver));
    }
    eprintln!(
        "\n*** WARNING: {} or {} is missing: the headless Chromium console test is SKIPPED.\n\
         *** Install them with: apt-get install -y chromium chromium-driver (scripts/test does when root).\n",
        browser.display(),
        driver.display()
    );
    None
}

/// Runs `tests/support/console_e2e.py` with the venv's Python; returns its JSON lines.
pub fn drive(browser: &(PathBuf, PathBuf), args: &[&str]) -> Vec<Value> {
    let root = project_root();
    let python =
        std::env::var("WSPROXY_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| root.join(".venv/bin/python"));
    let started = Instant::now();
    let out = Command::new(&python)
        .arg(root.join("tests/support/console_e2e.py"))
        .args(args)
        .env("KAFKA_BOOTSTRAP", bootstrap())
        .env("WSPROXY_TEST_CHROMIUM", &browser.0)
        .env("WSPROXY_TEST_CHROMEDRIVER", &browser.1)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console_e2e.py {args:?} failed after {:?}:\n{stdout}\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("console_e2e.py {args:?} passed in {:?}:\n{stdout}", started.elapsed());
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

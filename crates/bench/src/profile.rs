//! `--perf-dir DIR`: records our proxy with `perf record` while a produce or consume run
//! measures it (after the warm-up, until the last record), into `DIR/<scenario>.perf.data`.
//! `scripts/flamegraph` turns those into flame graphs.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{Kind, Proxy};

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Records every measured run of our proxy from now on into `dir`.
pub fn enable(dir: PathBuf) {
    let _ = std::fs::create_dir_all(&dir);
    let _ = DIR.set(dir);
}

pub struct Recording(tokio::process::Child);

/// Starts `perf record` on our proxy when profiling is on (a later run of the same scenario
/// overwrites the earlier one's data).
pub async fn attach(proxy: &Proxy, scenario: &str) -> Option<Recording> {
    let dir = DIR.get()?;
    if proxy.kind != Kind::Ours {
        return None;
    }
    let out = dir.join(format!("{scenario}.perf.data"));
    // DWARF unwinding: the release build keeps no frame pointers, so `-g` alone (frame
    // pointers) would cut every stack at the first Rust or librdkafka frame.
    let child = tokio::process::Command::new("perf")
        .args(["record", "-g", "--call-graph", "dwarf,16384", "-F", "499", "-p", &proxy.pid().to_string(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| eprintln!("perf record: {e}"))
        .ok()?;
    // perf needs a moment to attach to every thread.
    tokio::time::sleep(Duration::from_millis(700)).await;
    eprintln!("   perf record -> {}", out.display());
    Some(Recording(child))
}

/// Stops the recording (SIGINT, as Ctrl-C: perf then writes its file) within 60 s.
pub async fn detach(recording: Option<Recording>) {
    let Some(Recording(mut child)) = recording else { return };
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().await;
    }
    if tokio::time::timeout(Duration::from_secs(60), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

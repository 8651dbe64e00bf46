//! `ace-admin demo`, run as a user would run it: the built binary against
//! real PostgreSQL servers. Checks its exit status and "tables match", that
//! nothing it started is left running, and that the curl steps it prints
//! work when pasted into a shell.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ace-admin");

/// A temporary directory the `postgres` OS user can enter (tempfile makes
/// them 0700, closed to it when the tests run as root).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ace-demo-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run_demo(args: &[&str]) -> Output {
    Command::new(BIN).arg("demo").args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every process whose command line mentions `dir` (servers, watchdogs,
/// the kept API server), as `pid: command line`.
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = text(&raw).replace('\0', " ");
        if line.contains(&needle) {
            found.push(format!("{pid}: {line}"));
        }
    }
    found
}

/// Runs `<dir>/stop.sh` when dropped, so a failing test leaves nothing
/// running.
struct StopOnDrop(PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let script = self.0.join("stop.sh");
        if script.exists() {
            let _ = Command::new("/bin/sh").arg(&script).output();
        }
    }
}

#[test]
fn demo_on_two_nodes_ends_with_tables_match_and_stops_everything() {
    let temp = open_tempdir();
    let dir = temp.path().join("demo");
    let out = run_demo(&[
        "--nodes",
        "2",
        "--rows",
        "20000",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(
        stdout.contains("tables match: public.accounts is identical on n1, n2"),
        "{stdout}"
    );
    // The drift was found (8 rows between n1 and n2), repaired from n1,
    // and the revoked client refused.
    assert!(stdout.contains(r#"{"n1/n2":8}"#), "{stdout}");
    assert!(
        stdout.contains("n2: repaired (2 inserted, 4 updated, 2 deleted)"),
        "{stdout}"
    );
    assert!(stdout.contains("refused: "), "{stdout}");
    assert!(stdout.contains(&format!("{}/pki/ca.crt", dir.display())));

    // Nothing is left running; the directory remains, with the files the
    // demo wrote.
    let left = processes_under(&dir);
    assert!(left.is_empty(), "still running: {left:#?}");
    for file in ["ace.yaml", "pg_service.conf", "pki/crl.pem", "ace_tasks.db"] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    assert!(!dir.join("stop.sh").exists());
    assert!(!dir.join("nodes/n1/data/postmaster.pid").exists());
}

#[test]
fn kept_demo_curl_steps_work_when_pasted_and_stop_script_stops_everything() {
    let temp = open_tempdir();
    let dir = temp.path().join("demo");
    let _stop = StopOnDrop(dir.clone());
    let out = run_demo(&[
        "--nodes",
        "2",
        "--rows",
        "2000",
        "--keep",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains("tables match"), "{stdout}");
    let running = processes_under(&dir);
    assert!(
        running.iter().any(|p| p.contains("--serve-api")),
        "{running:#?}"
    );
    assert_eq!(
        running.iter().filter(|p| p.contains("postgres -D")).count(),
        2,
        "{running:#?}"
    );

    // The printed steps, exactly as printed, in a shell.
    let begin = stdout.find("# ---- 8< ----").expect("curl steps printed");
    let end = stdout[begin..].find("# ---- >8 ----").unwrap() + begin;
    let steps = &stdout[begin..end];
    let shell = Command::new("bash")
        .args(["-c", steps])
        .current_dir(temp.path())
        .output()
        .unwrap();
    let shown = text(&shell.stdout);
    assert!(
        shell.status.success(),
        "curl steps failed:\n{steps}\n{shown}\n{}",
        text(&shell.stderr)
    );
    for task in ["table-diff", "table-repair", "table-rerun"] {
        assert!(shown.contains(&format!("{task} task ")), "{shown}");
    }
    assert_eq!(
        shown.matches(r#""status":"COMPLETED""#).count(),
        3,
        "{shown}"
    );
    if steps.contains("psql") {
        // The new drift (one row on n2) is found and repaired.
        assert!(
            shown.contains(r#""diff_rows_count":{"n1/n2":1}"#),
            "{shown}"
        );
        assert!(shown.contains(r#""updated":1"#), "{shown}");
    }
    assert!(shown.contains(r#""diff_rows_count":{}"#), "{shown}");
    assert!(
        shown.contains("revoked certificate refused, as expected"),
        "{shown}"
    );

    // The stop script stops the API server and every node.
    let stop = Command::new("/bin/sh")
        .arg(dir.join("stop.sh"))
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let left = processes_under(&dir);
    assert!(left.is_empty(), "still running: {left:#?}");
}

/// Killing the demo outright (SIGKILL, no clean-up code runs) still stops
/// every node it started: the watchdogs see their pipe close.
#[test]
fn killed_demo_leaves_no_server_running() {
    let temp = open_tempdir();
    let dir = temp.path().join("demo");
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(["--nodes", "2", "--rows", "200000", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // ace.yaml is written once every node is up.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.join("ace.yaml").exists() {
        assert!(child.try_wait().unwrap().is_none(), "demo ended early");
        assert!(Instant::now() < deadline, "nodes never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let servers = processes_under(&dir);
    assert!(
        servers.iter().any(|p| p.contains("postgres -D")),
        "{servers:#?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = processes_under(&dir);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn demo_refuses_a_directory_in_use() {
    let temp = open_tempdir();
    std::fs::write(temp.path().join("something"), "x").unwrap();
    let out = run_demo(&["--dir", temp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(temp.path()).unwrap().count(),
        1,
        "nothing written"
    );
}

//! The real Python clients the tests drive (tests/clients/requirements.txt): the system's when
//! it has them (CI installs them), else installed once into `target/python-clients` by the
//! first test that needs them, so `cargo nextest run` alone runs every test on a fresh machine.
//! A client that cannot be had fails its test: nothing is skipped and counted as passed.

use std::path::PathBuf;
use std::process::Command;

const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/requirements.txt"
);

/// `python3` able to import `module`, installing the requirements first if it cannot.
pub fn python_with(module: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("python3");
    if let Some(dir) = provisioned_for(module) {
        cmd.env("PYTHONPATH", dir);
    }
    cmd
}

/// `None` when the system's Python imports `module`; else the directory that provides it.
fn provisioned_for(module: &str) -> Option<PathBuf> {
    if imports(module, None) {
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/python-clients");
    std::fs::create_dir_all(&dir).unwrap();
    // One installer at a time across the test processes; the others wait, then find it done.
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if !imports(module, Some(&dir)) {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .args(["-r", REQUIREMENTS])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "installing the Python clients of {REQUIREMENTS} failed (this test needs `{module}`; \
             `python3 -m pip install -r tests/clients/requirements.txt` installs them for the system):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            imports(module, Some(&dir)),
            "`{module}` is still not importable after installing {REQUIREMENTS}"
        );
    }
    Some(dir)
}

fn imports(module: &str, path: Option<&PathBuf>) -> bool {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &format!("import {module}")]);
    if let Some(dir) = path {
        cmd.env("PYTHONPATH", dir);
    }
    cmd.output().is_ok_and(|o| o.status.success())
}

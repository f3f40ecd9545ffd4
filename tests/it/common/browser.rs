//! Running a browser script (`tests/js/web/*.mjs`, playwright-core driving Debian's
//! Chromium) against the test's servers: it must end with `all steps passed`. A script
//! may print `control: COMMAND` lines; the test answers each on the script's standard
//! input with what `control` returns (`ok`, or why not).

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

/// The node process, killed if the test ends (or panics) before it exits.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `node script args…`, which must print `all steps passed` and exit 0.
pub fn run_browser_script(script: &str, args: &[&str]) {
    run_controlled_script(script, args, |other| {
        format!("unknown control line: {other}")
    });
}

/// [`run_browser_script`], answering the script's `control:` lines with `control`.
pub fn run_controlled_script(script: &str, args: &[&str], mut control: impl FnMut(&str) -> String) {
    super::require_browser();
    let mut node = Script(
        Command::new("node")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node (install Node.js)"),
    );
    let mut answers = node.0.stdin.take().expect("node's stdin");
    let stdout = node.0.stdout.take().expect("node's stdout");
    let stderr = node.0.stderr.take().expect("node's stderr");
    // Standard error on its own thread, so a full pipe never stalls the script.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut output = String::new();
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        println!("node: {line}");
        output.push_str(&line);
        output.push('\n');
        if let Some(command) = line.strip_prefix("control: ") {
            let answer = control(command.trim());
            writeln!(answers, "{answer}")
                .and_then(|()| answers.flush())
                .expect("answer the script");
        }
    }
    let status = node.0.wait().expect("wait for node");
    let stderr = errors.join().unwrap_or_default();
    assert!(
        status.success() && output.contains("all steps passed"),
        "the browser test {script} failed\n--- stdout\n{output}\n--- stderr\n{stderr}"
    );
}

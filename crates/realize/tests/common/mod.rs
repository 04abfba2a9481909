//! Helpers shared by the real-lab tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A packet capture running in a namespace until stopped.
pub struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// Capture decoded lines (`tcpdump -e -nn -l`) into `file` until stopped.
    pub fn start(ns: &str, dev: &str, filter: &str, file: std::path::PathBuf) -> Capture {
        let out = std::fs::File::create(&file).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", dev, "-e", "-nn", "-l"])
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Traffic may start once tcpdump says it is listening (at most 10 s).
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        let _ = rx.recv_timeout(Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        Capture { child, file }
    }

    /// Stop and return the captured lines.
    pub fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let lines: Vec<String> = std::fs::read_to_string(&self.file).unwrap_or_default().lines().map(String::from).collect();
        let _ = std::fs::remove_file(&self.file);
        lines
    }
}

//! `dvr demo --html` in a real browser: Debian's headless Chromium loads the
//! report with no console messages, finds all nine path sections in the DOM,
//! and takes a screenshot that is not blank. Each check has a positive
//! control (a page that must fail it). Needs `chromium` (scripts/test
//! installs it); without it the test fails and says how to install it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh").args(["-c", &format!("command -v {c}")]).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("the HTML report test needs a browser: apt-get install -y chromium fonts-dejavu-core (scripts/test does)");
}

/// Run headless Chromium on a local file with a fresh profile and no network
/// (every host name resolves to nothing); returns (stdout, stderr).
fn browse(dir: &Path, file: &Path, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", file.display()))
        .output()
        .expect("run chromium");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Console messages the page produced (Chromium logs them as `…:CONSOLE:…`).
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// References that would make the browser fetch something.
fn external_refs(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pat in ["src=\"", "href=\"", "url(", "@import", "<link", "<script", "<iframe"] {
        for (i, _) in html.match_indices(pat) {
            let rest = &html[i + pat.len()..];
            let local = pat == "href=\"" && rest.starts_with('#');
            if !local {
                found.push(html[i..(i + 40).min(html.len())].to_string());
            }
        }
    }
    found
}

/// (share of non-white pixels, distinct colours seen on a sample grid).
fn ink(png_file: &Path) -> (f64, usize) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_file).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    let total = px.len() / bpp;
    let inked = px.chunks(bpp).filter(|p| p[..3].iter().any(|&c| c < 240)).count();
    let colours: std::collections::BTreeSet<&[u8]> = px.chunks(bpp).step_by(97).map(|p| &p[..3]).collect();
    (inked as f64 / total as f64, colours.len())
}

#[test]
fn the_report_loads_cleanly_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_dvr")).args(["demo", "--summary-only", "--html"]).arg(&report).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();

    // Self-contained: nothing to fetch.
    assert!(external_refs(&html).is_empty(), "{:?}", external_refs(&html));
    assert!(!external_refs("<img src=\"x.png\">").is_empty(), "positive control: a fetch is found");

    // Loads with no console messages; the DOM holds the nine path sections.
    let (dom, stderr) = browse(dir.path(), &report, &["--dump-dom"]);
    assert!(console_messages(&stderr).is_empty(), "{:?}", console_messages(&stderr));
    let sections = dom.matches("<section class=\"path\"").count();
    assert_eq!(sections, 9, "all nine paths of the seed lab");
    for p in ["vm1 -&gt; vm5", "vm2 -&gt; ext1", "ext1 -&gt; 10.100.0.7", "vm3 -&gt; 169.254.169.254"] {
        assert!(dom.contains(&format!("data-path=\"{p}\"")), "{p}");
    }
    assert_eq!(dom.matches("<svg").count(), 10, "the deployment and one picture per path");
    let control = dir.path().join("control.html");
    std::fs::write(&control, "<!DOCTYPE html><html><body><script>console.error('control')</script></body></html>").unwrap();
    let (_, stderr) = browse(dir.path(), &control, &["--dump-dom"]);
    assert_eq!(console_messages(&stderr).len(), 1, "positive control: a console error is seen:\n{stderr}");

    // The screenshot is not blank; a blank page is.
    let shot = dir.path().join("report.png");
    browse(dir.path(), &report, &[&format!("--screenshot={}", shot.display()), "--window-size=1400,1800"]);
    let (share, colours) = ink(&shot);
    assert!(share > 0.05 && colours > 20, "report screenshot looks blank: {share:.3} inked, {colours} colours");
    eprintln!("report screenshot: {:.1}% inked, {colours} colours", 100.0 * share);
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_shot = dir.path().join("blank.png");
    browse(dir.path(), &blank, &[&format!("--screenshot={}", blank_shot.display()), "--window-size=400,300"]);
    let (share, colours) = ink(&blank_shot);
    assert!(share < 0.01 && colours < 3, "positive control: a blank page is blank ({share:.3}, {colours})");
}

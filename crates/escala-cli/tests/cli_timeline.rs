//! Timelines end to end: `escala demo --events/--timeline`, `escala timeline`, and the
//! picture as a person sees it, rendered by headless Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn escala(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_escala")).args(args).output().expect("the escala binary runs")
}

fn text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs a short demo that writes its events and its timeline.
fn demo(dir: &Path) -> (PathBuf, PathBuf) {
    let (events, svg) = (dir.join("demo.jsonl"), dir.join("demo.svg"));
    let o = escala(&[
        "demo",
        "--seconds",
        "0.2",
        "--events",
        events.to_str().unwrap(),
        "--timeline",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    (events, svg)
}

#[test]
fn demo_draws_one_ok_bar_per_unit_and_the_event_log_redraws_the_same_picture() {
    let dir = tempfile::tempdir().unwrap();
    let (events, svg) = demo(dir.path());
    let picture = text(&svg);
    assert!(picture.starts_with("<svg"), "{picture}");
    assert_eq!(picture.matches("class=\"bar ok\"").count(), 6, "six units, all ok:\n{picture}");
    for unit in ["Hilo 1", "Proceso 1", "Demonio 1", "Concurrencia 0", "Concurrencia 1", "Concurrencia 2"] {
        assert!(picture.contains(unit), "{unit} is drawn");
    }
    let log = text(&events);
    assert!(log.lines().count() >= 12, "a start and a finish per unit:\n{log}");

    let again = dir.path().join("again.svg");
    let o = escala(&[
        "timeline",
        events.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
        "--title",
        "escala demo: the seed's units",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(text(&again), picture, "the event log holds everything the picture shows");
}

#[test]
fn a_bad_event_log_is_a_one_line_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"event\":\"started\"}\n").unwrap();
    let out = dir.path().join("x.svg");
    let o = escala(&["timeline", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("escala: error: ") && err.contains("bad.jsonl:1: not an escala event"), "{err}");
    assert!(!out.exists());

    let o = escala(&["timeline", dir.path().join("missing.jsonl").to_str().unwrap(), "-o", "x.svg"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open"), "{o:?}");
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    })
}

#[test]
fn chromium_renders_the_timeline_with_bars_in_the_ok_colour() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium on PATH (apt-get install chromium); .ci/run installs it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, svg) = demo(dir.path());
    let png = dir.path().join("shot.png");
    let o = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,300"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("chromium runs");
    assert!(png.exists(), "no screenshot: {o:?}");

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1000, 300));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    // The "ok" colour #2e7d32, give or take anti-aliasing, must cover a real area: six bars.
    let green = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p[0].abs_diff(0x2e) < 8 && p[1].abs_diff(0x7d) < 8 && p[2].abs_diff(0x32) < 8)
        .count();
    assert!(green > 6 * 500, "only {green} pixels of bar colour in the screenshot");
}

//! `htlcgate replay` and `htlcgate corpus` end to end, through the binary: per-HTLC
//! verdicts and the summary on a fixed corpus (tests/fixtures/corpus-40.jsonl,
//! printed once by `htlcgate corpus --count 40 --seed 42`), the `--against` diff,
//! an audit log written by a live gate read back, bad input named by file:line,
//! and the production journal never touched.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use htlcgate::audit::{AuditConfig, AuditLine, AuditLog};
use htlcgate::chain::Chain;
use htlcgate::config::Config;
use htlcgate::corpus::CorpusLine;
use htlcgate::gate::{Gate, GateOptions};
use htlcgate::journal::Journal;
use htlcgate::mock_lnd::{MockLnd, MockOptions};
use htlcgate::record::HtlcRecord;
use htlcgate::replay::percentile;
use htlcgate::wasm::engine::Sandbox;
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus-40.jsonl")
}

fn corpus(path: &Path) -> Vec<HtlcRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<CorpusLine>(l).unwrap().htlc)
        .collect()
}

/// A chain's policy: max-htlc `max_msat`, then fee-floor `base_msat` + `ppm`.
#[derive(Clone, Copy, Debug)]
struct Policy {
    max_msat: u64,
    base_msat: u64,
    ppm: u64,
}

const A: Policy = Policy {
    max_msat: 5_000_000_000,
    base_msat: 1000,
    ppm: 100,
};
const B: Policy = Policy {
    max_msat: 1_000_000_000,
    base_msat: 0,
    ppm: 1000,
};

impl Policy {
    /// The config file for this policy, written to `dir/name`, with a production
    /// journal and audit log configured beside it.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let plugins = common::plugins_dir();
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[journal]\npath = \"prod.journal\"\n\n[audit]\npath = \"prod-audit.jsonl\"\n\n\
                 [[plugin]]\nname = \"max-htlc\"\npath = \"{}\"\n[plugin.config]\nmax_msat = {}\n\n\
                 [[plugin]]\nname = \"fee-floor\"\npath = \"{}\"\n[plugin.config]\nbase_msat = {}\nppm = {}\n",
                plugins.join("max-htlc.wasm").display(),
                self.max_msat,
                plugins.join("fee-floor.wasm").display(),
                self.base_msat,
                self.ppm
            ),
        )
        .unwrap();
        path
    }

    /// (deciding plugin, verdict) for an HTLC, in plain Rust.
    fn decide(&self, h: &HtlcRecord) -> (&'static str, &'static str) {
        if h.outgoing_amount_msat > self.max_msat {
            return ("max-htlc", "fail");
        }
        let final_hop = h.outgoing_requested_chan_id == 0 && h.outgoing_requested_node_id.is_none();
        let floor = u128::from(self.base_msat)
            + u128::from(self.ppm) * u128::from(h.outgoing_amount_msat) / 1_000_000;
        if !final_hop && (h.fee_msat() < 0 || (h.fee_msat() as u128) < floor) {
            return ("fee-floor", "fail");
        }
        ("default", "resume")
    }
}

/// (deciding plugin, verdict).
type Decided<'a> = (&'a str, &'a str);

/// Runs `htlcgate ARGS`: (success, stdout, stderr).
fn htlcgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        stderr,
    )
}

/// `replay --json`: the per-HTLC objects and the summary.
fn replay_json(args: &[&str]) -> (Vec<Value>, Value) {
    let mut all = vec!["replay", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = htlcgate(&all);
    assert!(ok, "replay failed: {err}");
    let mut lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    (lines, summary["summary"].clone())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn replay_gives_each_htlc_its_verdict_deciding_plugin_fuel_and_time_then_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let htlcs = corpus(&fixture());
    let (lines, summary) = replay_json(&["--config", s(&a), s(&fixture())]);
    assert_eq!(lines.len(), htlcs.len(), "one line per HTLC");
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut fuels = Vec::new();
    for (i, (line, h)) in lines.iter().zip(&htlcs).enumerate() {
        assert_eq!(line["line"], i as u64 + 1);
        assert_eq!(line["key"], format!("{}:{}", h.chan_id, h.htlc_id));
        assert_eq!(line["scid_in"], h.scid_in().to_string());
        assert!(line["scid_in"].as_str().unwrap().split('x').count() == 3);
        let (by, verdict) = A.decide(h);
        assert_eq!(
            (
                line["decided_by"].as_str().unwrap(),
                line["verdict"].as_str().unwrap()
            ),
            (by, verdict),
            "line {}",
            i + 1
        );
        // Every HTLC reaches max-htlc; fuel is the sum of the plugins' fuel.
        let plugins = line["plugins"].as_array().unwrap();
        assert_eq!(plugins[0]["plugin"], "max-htlc");
        let sum: u64 = plugins.iter().map(|p| p["fuel"].as_u64().unwrap()).sum();
        assert!(sum > 0);
        assert_eq!(line["fuel"].as_u64().unwrap(), sum);
        assert!(line["us"].is_u64());
        *verdicts.entry(verdict.to_owned()).or_default() += 1;
        fuels.push(sum);
    }
    assert_eq!(summary["htlcs"], htlcs.len() as u64);
    assert_eq!(
        serde_json::from_value::<BTreeMap<String, u64>>(summary["verdicts"].clone()).unwrap(),
        verdicts
    );
    assert!(
        verdicts.len() == 2,
        "the corpus has both verdicts: {verdicts:?}"
    );
    fuels.sort_unstable();
    assert_eq!(summary["fuel_p50"], percentile(&fuels, 50));
    assert_eq!(summary["fuel_p99"], percentile(&fuels, 99));
    assert_eq!(summary["fuel_max"], *fuels.last().unwrap());

    // The same in text: a line per HTLC with its key and SCIDs, and the summary.
    let (ok, out, err) = htlcgate(&["replay", "--config", s(&a), s(&fixture())]);
    assert!(ok, "{err}");
    for h in &htlcs {
        let key = format!("{}:{}", h.chan_id, h.htlc_id);
        let line = out
            .lines()
            .find(|l| l.contains(&format!(" {key} ")))
            .unwrap_or_else(|| panic!("no line for {key}:\n{out}"));
        assert!(
            line.contains(&format!("{} → {}", h.scid_in(), h.scid_out())),
            "{line}"
        );
        let (by, verdict) = A.decide(h);
        assert!(
            line.contains(&format!(" {verdict} ")) && line.contains(&format!(" by {by} ")),
            "{line}"
        );
        assert!(line.contains(" fuel ") && line.contains(" µs"), "{line}");
    }
    assert!(
        out.contains(&format!(
            "{} HTLCs; verdicts: fail {}, resume {}",
            htlcs.len(),
            verdicts["fail"],
            verdicts["resume"]
        )),
        "{out}"
    );
    assert!(out.contains("fuel per HTLC: p50 "), "{out}");
}

#[test]
fn against_shows_exactly_the_htlcs_whose_verdicts_differ() {
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let b = B.write(dir.path(), "b.toml");
    let htlcs = corpus(&fixture());
    let want: BTreeMap<String, (Decided, Decided)> = htlcs
        .iter()
        .filter(|h| A.decide(h).1 != B.decide(h).1)
        .map(|h| (h.key().to_string(), (A.decide(h), B.decide(h))))
        .collect();
    assert!(
        !want.is_empty() && want.len() < htlcs.len(),
        "a useful corpus"
    );

    let (lines, summary) = replay_json(&["--config", s(&a), "--against", s(&b), s(&fixture())]);
    let got: BTreeMap<String, (Decided, Decided)> = lines
        .iter()
        .map(|l| {
            fn o(x: &Value) -> (&str, &str) {
                (
                    x["decided_by"].as_str().unwrap(),
                    x["verdict"].as_str().unwrap(),
                )
            }
            (
                l["key"].as_str().unwrap().to_owned(),
                (o(&l["a"]), o(&l["b"])),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(summary["differ"], want.len() as u64);
    assert_eq!(summary["htlcs"], htlcs.len() as u64);
    assert_eq!(summary["a"]["config"], s(&a));
    assert_eq!(summary["b"]["config"], s(&b));

    let (ok, out, err) = htlcgate(&[
        "replay",
        "--config",
        s(&a),
        "--against",
        s(&b),
        s(&fixture()),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "{} of {} verdicts differ",
            want.len(),
            htlcs.len()
        )),
        "{out}"
    );
    for (key, ((by_a, _), (by_b, _))) in &want {
        let line = out
            .lines()
            .find(|l| l.contains(key.as_str()))
            .unwrap_or_else(|| panic!("{key}:\n{out}"));
        assert!(
            line.contains(&format!("by {by_a}")) && line.contains(&format!("by {by_b}")),
            "{line}"
        );
    }
    // The same config against itself differs nowhere.
    let (_, summary) = replay_json(&["--config", s(&a), "--against", s(&a), s(&fixture())]);
    assert_eq!(summary["differ"], 0);
}

/// Sends `htlcs` through a live gate (the mock LND over TLS) deciding with
/// `config`'s chain, and waits for their audit lines in `dir/audit.jsonl`:
/// returns the file and its lines by key.
async fn live_audit_log(
    dir: &Path,
    config: &Path,
    htlcs: &[HtlcRecord],
) -> (PathBuf, HashMap<String, AuditLine>) {
    let cfg = Config::load(config).unwrap();
    let audit_path = dir.join("audit.jsonl");
    let log = AuditLog::open(
        &AuditConfig {
            path: audit_path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
            queue: 1024,
        },
        None,
    )
    .unwrap();
    let mock = MockLnd::start(MockOptions::new(dir.join("lnd")))
        .await
        .unwrap();
    let sandbox = Sandbox::new(&cfg.sandbox).unwrap();
    let chain = Chain::load(&sandbox, &cfg.plugins, cfg.chain.default_verdict.verdict()).unwrap();
    let gate = Gate::with_options(
        chain,
        cfg.chain.clone(),
        Journal::in_memory(),
        GateOptions {
            audit: Some(log.clone()),
            ..GateOptions::default()
        },
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(htlcgate::lnd::stream::run(mock.endpoint(), gate, stop_rx));
    mock.wait_connected(PATIENCE).await.unwrap();
    for h in htlcs {
        mock.send_htlc(h.to_request());
    }
    mock.wait_resolved(htlcs.len(), PATIENCE).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let l = log.clone();
        assert!(tokio::task::spawn_blocking(move || l.flush(PATIENCE))
            .await
            .unwrap());
        let n = std::fs::read_to_string(&audit_path)
            .unwrap()
            .lines()
            .count();
        if n >= htlcs.len() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} audit lines");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let recorded = std::fs::read_to_string(&audit_path)
        .unwrap()
        .lines()
        .map(|l| {
            let line: AuditLine = serde_json::from_str(l).unwrap();
            (line.key.clone(), line)
        })
        .collect();
    (audit_path, recorded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_written_by_a_live_gate_replays_to_the_same_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let b = B.write(dir.path(), "b.toml");
    let htlcs = corpus(&fixture());
    let (audit_path, recorded) = live_audit_log(dir.path(), &a, &htlcs).await;

    // The same chain re-decides every line as it was decided live.
    let audit = s(&audit_path).to_owned();
    let a_path = s(&a).to_owned();
    let b_path = s(&b).to_owned();
    let (lines, summary) =
        tokio::task::spawn_blocking(move || replay_json(&["--config", &a_path, &audit]))
            .await
            .unwrap();
    assert_eq!(lines.len(), htlcs.len());
    for l in &lines {
        let rec = &recorded[l["key"].as_str().unwrap()];
        assert_eq!(l["verdict"], rec.verdict.as_str());
        assert_eq!(l["recorded"], rec.verdict.as_str());
        assert_eq!(l["decided_by"], rec.decided_by.as_str());
        assert_eq!(l["fuel"].as_u64().unwrap() > 0, rec.fuel > 0);
    }
    assert_eq!(summary["recorded_compared"], htlcs.len() as u64);
    assert_eq!(summary["recorded_differ"], 0);

    // Another chain over the same log: the recorded verdicts it would change.
    let audit = s(&audit_path).to_owned();
    let (_, summary) =
        tokio::task::spawn_blocking(move || replay_json(&["--config", &b_path, &audit]))
            .await
            .unwrap();
    let changed = htlcs
        .iter()
        .filter(|h| A.decide(h).1 != B.decide(h).1)
        .count();
    assert_eq!(summary["recorded_differ"], changed as u64);
}

#[test]
fn a_key_seen_twice_gets_its_first_verdict_as_lnds_replays_do() {
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let text = std::fs::read_to_string(fixture()).unwrap();
    let first = text.lines().next().unwrap();
    let input = dir.path().join("twice.jsonl");
    std::fs::write(&input, format!("{first}\n\n{first}\n")).unwrap();
    let (lines, summary) = replay_json(&["--config", s(&a), s(&input)]);
    assert_eq!(lines.len(), 2, "the blank line is skipped");
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["verdict"], lines[0]["verdict"]);
    assert_eq!(lines[1]["decided_by"], "replay");
    assert_eq!(lines[1]["source"], "replay");
    assert_eq!(
        summary["decided_by"]["replay"].as_object().unwrap().len(),
        1
    );
}

#[test]
fn bad_input_is_named_by_file_and_line_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let text = std::fs::read_to_string(fixture()).unwrap();
    let good: Vec<&str> = text.lines().take(2).collect();

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{}\n{{\"htlc\": {{\"chan_id\": \"x\"}}}}\n",
            good[0], good[1]
        ),
    )
    .unwrap();
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&a), s(&bad)]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:3", bad.display())), "{err}");
    assert!(
        err.contains("`htlc` object") && err.contains("htlcgate corpus"),
        "{err}"
    );

    let not_json = dir.path().join("notjson.jsonl");
    std::fs::write(&not_json, format!("{}\nhello\n", good[0])).unwrap();
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&a), s(&not_json)]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:2", not_json.display())), "{err}");

    let no_htlc = dir.path().join("nohtlc.jsonl");
    std::fs::write(&no_htlc, "{\"key\": \"1:2\"}\n").unwrap();
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&a), s(&no_htlc)]);
    assert!(!ok);
    assert!(err.contains(":1") && err.contains("htlc"), "{err}");

    // A log cut off mid-line (htlcgate killed while writing): the last line is
    // skipped with a warning, the rest replayed.
    let torn = dir.path().join("torn.jsonl");
    std::fs::write(
        &torn,
        format!("{}\n{}", good[0], &good[1][..good[1].len() / 2]),
    )
    .unwrap();
    let (ok, out, err) = htlcgate(&["replay", "--config", s(&a), s(&torn)]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("{}:2", torn.display())) && err.contains("cut off"),
        "{err}"
    );
    assert!(out.contains("1 HTLCs"), "{out}");
    // The same line cut short in the middle of a file (the audit log ends a cut
    // line when it reopens the file after a crash or a full disk): skipped too.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(
        &cut,
        format!(
            "{}\n{}\n{}\n",
            good[0],
            &good[1][..good[1].len() / 2],
            good[1]
        ),
    )
    .unwrap();
    let (ok, out, err) = htlcgate(&["replay", "--config", s(&a), s(&cut)]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("{}:2", cut.display())) && err.contains("cut"),
        "{err}"
    );
    assert!(out.contains("2 HTLCs"), "{out}");

    let missing = dir.path().join("missing.jsonl");
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&a), s(&missing)]);
    assert!(!ok);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("htlcgate corpus"),
        "{err}"
    );

    let (ok, _, err) = htlcgate(&[
        "replay",
        "--config",
        s(&dir.path().join("nope.toml")),
        s(&fixture()),
    ]);
    assert!(!ok);
    assert!(
        err.contains("nope.toml") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn replay_never_touches_the_production_journal_or_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let b = B.write(dir.path(), "b.toml");
    let (ok, _, err) = htlcgate(&[
        "replay",
        "--config",
        s(&a),
        "--against",
        s(&b),
        s(&fixture()),
    ]);
    assert!(ok, "{err}");
    let left: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        BTreeSet::from(["a.toml".to_owned(), "b.toml".to_owned()])
    );
}

#[test]
fn corpus_is_deterministic_for_a_seed_and_replays() {
    let (ok, one, err) = htlcgate(&["corpus", "--count", "25", "--seed", "9"]);
    assert!(ok, "{err}");
    let (_, two, _) = htlcgate(&["corpus", "--count", "25", "--seed", "9"]);
    let (_, other, _) = htlcgate(&["corpus", "--count", "25", "--seed", "10"]);
    assert_eq!(one, two);
    assert_ne!(one, other);
    assert_eq!(one.lines().count(), 25);
    for l in one.lines() {
        let line: CorpusLine = serde_json::from_str(l).unwrap();
        assert_eq!(line.key, line.htlc.key().to_string());
        assert_eq!(line.scid_in, line.htlc.scid_in().to_string());
    }
    // The checked-in fixture is what `corpus --count 40 --seed 42` prints.
    let (_, fixture_now, _) = htlcgate(&["corpus", "--count", "40", "--seed", "42"]);
    assert!(
        fixture_now == std::fs::read_to_string(fixture()).unwrap(),
        "the generator changed: regenerate the fixture with `htlcgate corpus --count 40 --seed 42 > tests/fixtures/corpus-40.jsonl`"
    );

    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let input = dir.path().join("c.jsonl");
    std::fs::write(&input, &one).unwrap();
    let (_, summary) = replay_json(&["--config", s(&a), s(&input)]);
    assert_eq!(summary["htlcs"], 25);
}

/// A config of one plugin `name` with `grants` and `config` (TOML inline table
/// body), written to `dir/file`.
fn one_plugin_config(dir: &Path, file: &str, name: &str, grants: &str, config: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ngrants = [{grants}]\nconfig = {{ {config} }}\n",
            common::plugins_dir().join(format!("{name}.wasm")).display(),
        ),
    )
    .unwrap();
    path
}

/// An audit-log line for `htlc`, answered at `time` with `verdict` by `by`.
fn audit_line(time: &str, htlc: &HtlcRecord, verdict: &str, by: &str) -> String {
    serde_json::json!({
        "time": time,
        "key": htlc.key().to_string(),
        "verdict": verdict,
        "decided_by": by,
        "htlc": htlc,
    })
    .to_string()
}

/// Plugins read the clock a line recorded, not the replay's: two HTLCs on one
/// channel ten minutes apart both pass a limit of one per minute, as they did.
#[test]
fn plugins_read_the_time_an_audit_line_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_plugin_config(
        dir.path(),
        "rate.toml",
        "rate-limit",
        "\"kv\"",
        "max_htlcs = \"1\", window_secs = \"60\"",
    );
    let first = corpus(&fixture())[0].clone();
    let mut second = first.clone();
    second.htlc_id += 1;
    let input = dir.path().join("audit.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n",
            audit_line("2026-03-01T10:00:00.000000Z", &first, "resume", "default"),
            audit_line("2026-03-01T10:10:00.000000Z", &second, "resume", "default"),
        ),
    )
    .unwrap();
    let (lines, summary) = replay_json(&["--config", s(&cfg), s(&input)]);
    assert_eq!(lines[0]["verdict"], "resume", "{lines:?}");
    assert_eq!(lines[1]["verdict"], "resume", "{lines:?}");
    assert_eq!(summary["recorded_differ"], 0);

    // The same two a second apart: the limit holds.
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n",
            audit_line("2026-03-01T10:00:00.000000Z", &first, "resume", "default"),
            audit_line("2026-03-01T10:00:01.000000Z", &second, "fail", "rate-limit"),
        ),
    )
    .unwrap();
    let (lines, summary) = replay_json(&["--config", s(&cfg), s(&input)]);
    assert_eq!(lines[1]["verdict"], "fail", "{lines:?}");
    assert_eq!(lines[1]["decided_by"], "rate-limit");
    assert_eq!(summary["recorded_differ"], 0);
}

/// A plugin's monotonic clock (`std::time::Instant`) and its randomness come from
/// the record, not the machine: HTLCs a minute apart by the record are a minute
/// apart for a plugin timing them with `Instant` however fast replay reads them;
/// random draws are the same on every run and for both configs of `--against`;
/// a plugin that read randomness while deciding is named in the summary.
#[test]
fn plugins_monotonic_clock_and_randomness_come_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let gap = one_plugin_config(
        dir.path(),
        "gap.toml",
        "instant-gap",
        "",
        "min_gap_ms = \"10000\"",
    );
    let htlcs = corpus(&fixture());
    let input = dir.path().join("audit.jsonl");
    let lines = |seconds_apart: u64| {
        htlcs[..5]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let t = i as u64 * seconds_apart;
                let time = format!("2026-03-01T10:{:02}:{:02}.000000Z", t / 60, t % 60);
                audit_line(&time, h, "resume", "default") + "\n"
            })
            .collect::<String>()
    };
    std::fs::write(&input, lines(60)).unwrap();
    let (out, summary) = replay_json(&["--config", s(&gap), s(&input)]);
    let verdicts: Vec<&str> = out.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["resume"; 5], "a minute apart by the record");
    assert_eq!(summary["cannot_reproduce"], serde_json::json!([]));
    std::fs::write(&input, lines(1)).unwrap();
    let (out, _) = replay_json(&["--config", s(&gap), s(&input)]);
    let verdicts: Vec<&str> = out.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["resume", "fail", "fail", "fail", "fail"]);

    let coin = one_plugin_config(
        dir.path(),
        "coin.toml",
        "instant-gap",
        "",
        "coin = \"true\"",
    );
    let run = || {
        let (out, summary) = replay_json(&["--config", s(&coin), s(&fixture())]);
        let verdicts: Vec<String> = out
            .iter()
            .map(|l| l["verdict"].as_str().unwrap().to_owned())
            .collect();
        (verdicts, summary)
    };
    let (first, summary) = run();
    assert_eq!(first.len(), htlcs.len());
    assert!(first.iter().any(|v| v == "fail") && first.iter().any(|v| v == "resume"));
    assert_eq!(run().0, first, "the same draws on every run");
    let named = summary["cannot_reproduce"].as_array().unwrap();
    assert_eq!(named.len(), 1, "{summary}");
    let named = named[0].as_str().unwrap();
    assert!(
        named.starts_with("instant-gap: ")
            && named.contains(&format!("randomness in {} decisions", htlcs.len())),
        "{named}"
    );
    let (_, summary) = replay_json(&["--config", s(&coin), "--against", s(&coin), s(&fixture())]);
    assert_eq!(summary["differ"], 0, "both configs draw the same");
}

/// A config whose chain starts with the hold fixture (holding `holds` times for
/// `hold_ms` each), then `A`'s policy, with `[chain] max_hold_ms`.
fn holding_config(dir: &Path, file: &str, holds: u32, hold_ms: u32, max_hold_ms: u64) -> PathBuf {
    let a = std::fs::read_to_string(A.write(dir, "policy.toml")).unwrap();
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "[chain]\nmax_hold_ms = {max_hold_ms}\n\n[[plugin]]\nname = \"hold-fixture\"\npath = \"{}\"\ngrants = [\"kv\"]\nconfig = {{ holds = \"{holds}\", hold_ms = \"{hold_ms}\" }}\n\n{}",
            common::plugins_dir().join("hold-fixture.wasm").display(),
            a.split_once("[[plugin]]").map(|(_, rest)| format!("[[plugin]]{rest}")).unwrap(),
        ),
    )
    .unwrap();
    path
}

/// A plugin's hold is asked again on replay's simulated clock, as the daemon asks
/// it again after the hold: HTLCs the fixture holds twice and then passes get the
/// verdicts they got live, and so do holds that run into `max_hold_ms` (the
/// fixture's `on_hold_expiry`, labelled as such).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_htlcs_replay_to_the_verdicts_a_live_gate_gave_them() {
    let dir = tempfile::tempdir().unwrap();
    let passes = holding_config(dir.path(), "passes.toml", 2, 10, 10_000);
    let htlcs = corpus(&fixture());
    let (audit_path, recorded) = live_audit_log(dir.path(), &passes, &htlcs).await;
    assert!(
        recorded.values().all(|l| l.decided_by != "hold-fixture"),
        "the fixture passes after its holds"
    );
    let (audit, cfg) = (s(&audit_path).to_owned(), s(&passes).to_owned());
    let (lines, summary) =
        tokio::task::spawn_blocking(move || replay_json(&["--config", &cfg, &audit]))
            .await
            .unwrap();
    for l in &lines {
        let rec = &recorded[l["key"].as_str().unwrap()];
        assert_eq!(l["decided_by"], rec.decided_by.as_str(), "{l}");
        assert_eq!(l["attempt"], 3, "asked three times: {l}");
    }
    assert_eq!(summary["recorded_compared"], htlcs.len() as u64);
    assert_eq!(summary["recorded_differ"], 0);

    // Held until the cap: on_hold_expiry (fail), by the fixture, in both.
    let dir = tempfile::tempdir().unwrap();
    let forever = holding_config(dir.path(), "forever.toml", u32::MAX, 20, 100);
    let (audit_path, recorded) = live_audit_log(dir.path(), &forever, &htlcs[..3]).await;
    assert!(recorded
        .values()
        .all(|l| l.decided_by == "hold-fixture" && l.source == "on_hold_expiry"));
    let (audit, cfg) = (s(&audit_path).to_owned(), s(&forever).to_owned());
    let (lines, summary) =
        tokio::task::spawn_blocking(move || replay_json(&["--config", &cfg, &audit]))
            .await
            .unwrap();
    for l in &lines {
        assert_eq!(l["decided_by"], "hold-fixture", "{l}");
        assert_eq!(l["source"], "on_hold_expiry", "{l}");
        // Asked at 0, 20, 40, 60 and 80 ms; the next ask would be at the cap.
        assert_eq!(l["attempt"], 5, "{l}");
    }
    assert_eq!(summary["recorded_differ"], 0);
    let (ok, text, err) = htlcgate(&["replay", "--config", s(&forever), s(&audit_path)]);
    assert!(ok, "{err}");
    assert!(text.contains("by hold-fixture (on_hold_expiry)"), "{text}");
}

/// Replay has no LND: a plugin with the `node` grant or one that listens to
/// outcomes (circuitbreaker has both) is named at the start, on stderr and in the
/// JSON summary, with what replay cannot give it; a plugin needing neither
/// (fee-floor, whose `outcome` is the SDK's default that ignores outcomes) is not.
#[test]
fn plugins_replay_cannot_feed_are_named_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let breaker = one_plugin_config(
        dir.path(),
        "breaker.toml",
        "circuitbreaker",
        "\"kv\", \"node\"",
        "max_pending = \"3\"",
    );
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&breaker), s(&fixture())]);
    assert!(ok, "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("circuitbreaker"))
        .unwrap_or_else(|| panic!("no warning naming circuitbreaker: {err}"));
    assert!(
        warning.contains("warning")
            && warning.contains("`node` grant")
            && warning.contains("outcomes"),
        "{warning}"
    );
    let (_, summary) = replay_json(&["--config", s(&breaker), s(&fixture())]);
    let named = summary["cannot_reproduce"].as_array().unwrap();
    assert_eq!(named.len(), 1, "{summary}");
    assert!(named[0].as_str().unwrap().starts_with("circuitbreaker: "));

    let fee = one_plugin_config(
        dir.path(),
        "fee.toml",
        "fee-floor",
        "",
        "base_msat = \"1000\"",
    );
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&fee), s(&fixture())]);
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let (_, summary) = replay_json(&["--config", s(&fee), s(&fixture())]);
    assert_eq!(summary["cannot_reproduce"], serde_json::json!([]));
}

/// Input that is not a regular file is read: `/dev/stdin` (a pipe here), as
/// process substitution (`<(zcat log.gz)`) gives. A directory and a missing path
/// are refused, each with its own message.
#[test]
fn replay_reads_a_pipe_by_its_path_and_refuses_a_directory_as_such() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["replay", "--json", "--config", s(&a), "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(fixture()).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&text);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["htlcs"], corpus(&fixture()).len() as u64);

    let (ok, _, err) = htlcgate(&["replay", "--config", s(&a), s(dir.path())]);
    assert!(!ok);
    assert!(
        err.contains(&dir.path().display().to_string())
            && err.contains("is a directory")
            && !err.contains("no such file"),
        "{err}"
    );
    let missing = dir.path().join("missing.jsonl");
    let (ok, _, err) = htlcgate(&["replay", "--config", s(&a), s(&missing)]);
    assert!(!ok);
    assert!(err.contains("no such file"), "{err}");
}

/// `replay ... | head -1`: once the reader is gone, replay stops reading and
/// exits, even while its input goes on (here an endless pipe).
#[test]
fn replay_stops_when_its_reader_goes_away() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let a = A.write(dir.path(), "a.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(["replay", "--config", s(&a), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let template = corpus(&fixture())[0].clone();
    let mut stdin = child.stdin.take().unwrap();
    // Endless input, until replay is gone (the write fails).
    let feeder = std::thread::spawn(move || {
        let mut h = template;
        loop {
            h.htlc_id += 1;
            let line = serde_json::to_string(&CorpusLine::new(h.clone())).unwrap();
            if writeln!(stdin, "{line}").is_err() {
                return;
            }
        }
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("replaying with"), "{first}");
    // The reader (stdout's pipe) is dropped here.
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replay went on reading after its reader was gone");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    feeder.join().unwrap();
}

/// Found in review: replay loaded and ran its chains on the async runtime's own
/// thread, where wasmtime-wasi's waiting host calls (a sleep, a write that
/// waits, as Go's runtime and Rust's `println!` reach) panic ("Cannot start a
/// runtime from within a runtime"); the daemon runs plugins off the runtime.
#[test]
fn plugins_that_wait_in_wasi_replay_as_they_run_in_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = one_plugin_config(
        dir.path(),
        "sleep.toml",
        "sleep",
        "",
        "init_ms = \"5\", decide_ms = \"1\"",
    );
    let (ok, out, err) = htlcgate(&["replay", "--json", "--config", s(&cfg), s(&fixture())]);
    assert!(ok, "stdout: {out}\nstderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

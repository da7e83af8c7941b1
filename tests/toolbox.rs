//! The plugin author's toolbox through the `htlcgate` binary: `componentize`
//! names what does not fit the world, `check` reports a plugin's verdicts and
//! costs, and `plugin new` writes projects that build and pass their own tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn htlcgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_htlcgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// `htlcgate componentize CORE -o OUT`.
fn componentize(core: &str, out: &str) -> Output {
    htlcgate(&["componentize", core, "-o", out])
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `go` on PATH, or the machine's /usr/local/go/bin (as scripts/setup does).
fn path_with_go() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{path}:/usr/local/go/bin")
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", path_with_go())
        .env("GOTOOLCHAIN", "local")
        .env("HTLCGATE", env!("CARGO_BIN_EXE_htlcgate"))
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

#[test]
fn componentize_names_a_stray_import_and_the_asc_flag_that_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(
        &core,
        wat::parse_str(
            r#"(module
                (import "env" "abort" (func (param i32 i32 i32 i32)))
                (memory (export "memory") 1)
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8))
                (func (export "init") (param i32 i32) (result i32) (i32.const 0))
                (func (export "decide") (param i32) (result i32) (i32.const 16)))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let out_path = dir.path().join("plugin.wasm");
    let out = componentize(core.to_str().unwrap(), out_path.to_str().unwrap());
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("`env`.`abort`")
            && msg.contains("`--use abort=~lib/htlcgate-sdk/assembly/abort/abort`"),
        "{msg}"
    );
    assert!(!out_path.exists(), "wrote a component anyway");
}

#[test]
fn componentize_names_an_outcome_export_of_the_wrong_shape_and_the_sdk_import_that_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(
        &core,
        wat::parse_str(
            r#"(module
                (memory (export "memory") 1)
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8))
                (func (export "init") (param i32 i32) (result i32) (i32.const 0))
                (func (export "decide") (param i32) (result i32) (i32.const 16))
                (func (export "outcome") (param i32)))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let out_path = dir.path().join("plugin.wasm");
    let out = componentize(core.to_str().unwrap(), out_path.to_str().unwrap());
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("export `outcome` is func (i32)")
            && msg.contains("htlcgate.dev/sdk/go/outcome")
            && msg.contains("htlcgate-sdk/assembly/outcome-glue"),
        "{msg}"
    );
    assert!(!out_path.exists(), "wrote a component anyway");
}

/// A core module with the world's exports and nothing else.
fn minimal_core() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8))
            (func (export "init") (param i32 i32) (result i32) (i32.const 0))
            (func (export "decide") (param i32) (result i32) (i32.const 16)))"#,
    )
    .unwrap()
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn componentize_into_a_directory_fails_saying_o_is_a_file_path_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, minimal_core()).unwrap();
    // `-o` names a directory (with an extension, and without one).
    for target in ["plugin.wasm", "plugins"] {
        let target = dir.path().join(target);
        std::fs::create_dir(&target).unwrap();
        let out = componentize(core.to_str().unwrap(), target.to_str().unwrap());
        let msg = text(&out);
        assert!(!out.status.success(), "{msg}");
        let left: Vec<String> = names_in(dir.path())
            .into_iter()
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
        assert!(
            msg.contains(&target.display().to_string())
                && msg.contains("is a directory")
                && msg.contains("-o"),
            "{msg}"
        );
        assert!(target.is_dir(), "{msg}");
        assert_eq!(names_in(&target), Vec::<String>::new(), "{msg}");
    }
    assert_eq!(
        names_in(dir.path()),
        ["core.wasm", "plugin.wasm", "plugins"],
        "a temporary file was left behind"
    );
}

#[test]
fn componentize_into_a_missing_directory_names_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, minimal_core()).unwrap();
    let target = dir.path().join("no-such-dir/plugin.wasm");
    let out = componentize(core.to_str().unwrap(), target.to_str().unwrap());
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains(&target.display().to_string()) && msg.contains("-o"),
        "{msg}"
    );
    assert_eq!(names_in(dir.path()), ["core.wasm"]);
}

#[test]
fn componentize_turns_the_go_and_assemblyscript_core_modules_into_loadable_plugins() {
    let core_dir = common::plugins_dir().join("core");
    let dir = tempfile::tempdir().unwrap();
    // The 0.2.0 demonstrations (imports kv and channel, exports outcome) need
    // grants to load; `componentize` itself takes them as they are.
    for name in ["go-peer-hold", "as-peer-hold"] {
        let core = core_dir.join(format!("{name}.core.wasm"));
        let out_path = dir.path().join(format!("{name}.wasm"));
        let out = componentize(core.to_str().unwrap(), out_path.to_str().unwrap());
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("htlcgate:plugin@0.2.0"),
            "{}",
            text(&out)
        );
    }
    for name in ["go-fee-floor", "as-fee-floor"] {
        let core = core_dir.join(format!("{name}.core.wasm"));
        let out_path = dir.path().join(format!("{name}.wasm"));
        let out = componentize(core.to_str().unwrap(), out_path.to_str().unwrap());
        assert!(out.status.success(), "{}", text(&out));
        let check = htlcgate(&["check", out_path.to_str().unwrap(), "--repeat", "3"]);
        assert!(check.status.success(), "{}", text(&check));
    }
}

#[test]
fn check_tells_a_plugin_that_ignores_outcomes_from_one_that_listens() {
    let breaker_args: &[&str] = &[
        "--grant",
        "kv",
        "--grant",
        "node",
        "--config",
        "max_pending=2",
    ];
    for (plugin, extra, says) in [
        // The SDK's default `Plugin::outcome`.
        ("fee-floor", &[][..], "outcome: exported but ignored"),
        (
            "circuitbreaker",
            breaker_args,
            "outcome: exported and listening",
        ),
    ] {
        let path = common::plugins_dir().join(format!("{plugin}.wasm"));
        let mut args = vec!["check", path.to_str().unwrap(), "--repeat", "1"];
        args.extend_from_slice(extra);
        let out = htlcgate(&args);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(says), "{plugin}: {}", text(&out));
    }
}

#[test]
fn check_shows_imports_exports_and_each_sample_verdict_with_its_fuel() {
    let plugin = common::plugins_dir().join("go-fee-floor.wasm");
    let out = htlcgate(&[
        "check",
        plugin.to_str().unwrap(),
        "--config",
        "base_msat=1000",
        "--config",
        "ppm=100",
        "--repeat",
        "5",
    ]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    for needle in [
        "imports:",
        "func     log",
        "exports:",
        "func     decide",
        "init: ok with config {base_msat=1000, ppm=100}",
        "median fuel",
    ] {
        assert!(report.contains(needle), "missing `{needle}` in:\n{report}");
    }
    // fee 1,100 on 1,000,000 is exactly the floor: next; fee 0: fail.
    let line = |label: &str| {
        report
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{report}"))
            .to_owned()
    };
    assert!(line("fee 1,100").contains(" next "), "{report}");
    assert!(
        line("fee 0").contains("fail(TemporaryChannelFailure)"),
        "{report}"
    );
}

#[test]
fn check_refuses_a_bad_config_with_the_plugins_message_and_a_core_module_with_the_fix() {
    let plugins = common::plugins_dir();
    let plugin = plugins.join("as-fee-floor.wasm");
    let out = htlcgate(&["check", plugin.to_str().unwrap(), "--config", "ppm=lots"]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("config key `ppm`: expected an unsigned integer, got `lots`"),
        "{msg}"
    );
    let core = plugins.join("core/as-fee-floor.core.wasm");
    let out = htlcgate(&["check", core.to_str().unwrap()]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(msg.contains("htlcgate componentize"), "{msg}");
}

fn new_project(dir: &Path, name: &str, lang: &str) -> PathBuf {
    let out = htlcgate(&[
        "plugin",
        "new",
        name,
        "--lang",
        lang,
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    dir.join(name)
}

#[test]
fn a_new_go_plugin_passes_its_test_builds_and_decides() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_project(dir.path(), "min-fee", "go");
    let test = run_in(&project, "go", &["test", "./..."]);
    assert!(test.status.success(), "{}", text(&test));
    let build = run_in(&project, "./build.sh", &[]);
    assert!(build.status.success(), "{}", text(&build));
    let wasm = project.join("min-fee.wasm");
    let check = htlcgate(&[
        "check",
        wasm.to_str().unwrap(),
        "--config",
        "min_fee_msat=500",
        "--repeat",
        "2",
    ]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn a_new_go_plugin_whose_sdk_path_has_a_space_gets_a_go_mod_that_go_reads() {
    // A checkout at a path with a space (its sdk/ linked to this one's).
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("htlcgate checkout");
    std::fs::create_dir(&checkout).unwrap();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(repo.join("sdk"), checkout.join("sdk")).unwrap();
    let out = htlcgate(&[
        "plugin",
        "new",
        "min-fee",
        "--lang",
        "go",
        "--dir",
        dir.path().to_str().unwrap(),
        "--sdk",
        checkout.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let project = dir.path().join("min-fee");
    let edit = run_in(&project, "go", &["mod", "edit", "-json"]);
    assert!(edit.status.success(), "{}", text(&edit));
    let json: serde_json::Value = serde_json::from_slice(&edit.stdout).unwrap();
    let sdk_go = checkout.canonicalize().unwrap().join("sdk/go");
    assert_eq!(
        json["Replace"][0]["New"]["Path"].as_str(),
        sdk_go.to_str(),
        "{json}"
    );
    let test = run_in(&project, "go", &["test", "./..."]);
    assert!(test.status.success(), "{}", text(&test));
}

#[test]
fn a_new_assemblyscript_plugin_passes_its_test_and_builds() {
    // The SDK's node_modules (scripts/setup) must exist for an offline install.
    common::plugins_dir();
    let dir = tempfile::tempdir().unwrap();
    let project = new_project(dir.path(), "min-fee", "assemblyscript");
    let install = run_in(
        &project,
        "npm",
        &["install", "--no-audit", "--no-fund", "--prefer-offline"],
    );
    assert!(install.status.success(), "{}", text(&install));
    let test = run_in(&project, "npm", &["test"]);
    assert!(test.status.success(), "{}", text(&test));
    let build = run_in(&project, "npm", &["run", "build"]);
    assert!(build.status.success(), "{}", text(&build));
    let check = htlcgate(&[
        "check",
        project.join("min-fee.wasm").to_str().unwrap(),
        "--repeat",
        "2",
    ]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn a_new_rust_plugin_passes_its_test() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_project(dir.path(), "min-fee", "rust");
    // Shares the plugins' target dir, where the SDK's dependencies are built.
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/plugins");
    let test = Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", text(&test));
}

#[test]
fn the_go_and_assemblyscript_sdks_pass_their_own_tests() {
    // build-plugins (via plugins_dir) installs the AssemblyScript compiler.
    common::plugins_dir();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in ["sdk/go", "plugins/go-fee-floor", "plugins/go-peer-hold"] {
        let out = run_in(&repo.join(dir), "go", &["test", "./..."]);
        assert!(out.status.success(), "{dir}: {}", text(&out));
    }
    let out = run_in(&repo.join("sdk/assemblyscript"), "npm", &["test"]);
    assert!(out.status.success(), "sdk/assemblyscript: {}", text(&out));
}

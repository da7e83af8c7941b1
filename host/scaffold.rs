//! `htlcgate plugin new NAME --lang rust|go|assemblyscript`: a plugin project that
//! builds, with a README, a build command and a test that runs it on sample HTLCs.
//!
//! Each template is a small minimum-fee policy (fail forwards paying less than
//! `min_fee_msat`), the same in every language, so a new author starts from code
//! that compiles and a test that passes, and changes the policy from there. The
//! project points at this checkout's SDK (`sdk/rust`, `sdk/go`,
//! `sdk/assemblyscript`) by path; `--sdk` names another checkout.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// `htlcgate plugin ...`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum PluginCommand {
    /// Create a plugin project that builds and tests.
    New(NewArgs),
}

/// The plugin's language.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Rust with sdk/rust (wasm32-wasip2; no componentize step).
    Rust,
    /// Go with sdk/go (GOOS=wasip1, then `htlcgate componentize`).
    Go,
    /// AssemblyScript with sdk/assemblyscript (asc, then `htlcgate componentize`).
    #[value(name = "assemblyscript", alias = "as")]
    AssemblyScript,
}

/// Arguments of `htlcgate plugin new`.
#[derive(clap::Args, Debug, Clone)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-` (also the directory).
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the project directory (default: the current directory).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// An htlcgate checkout whose sdk/ the project uses (default: the one this
    /// binary was built from).
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// Runs `htlcgate plugin ...`.
pub fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::New(args) => {
            let dir = new_project(&args)?;
            println!("created {} ({:?} plugin)", dir.display(), args.lang);
            println!("next: read {}/README.md", dir.display());
            Ok(())
        }
    }
}

/// Checks a plugin name: it becomes a directory, a crate, a Go module and an npm
/// package name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("`{name}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter (e.g. `min-fee`)");
    }
    Ok(())
}

/// The checkout the SDK paths point into.
fn sdk_root(arg: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let root = match arg {
        Some(p) => p.clone(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    let root = root.canonicalize().with_context(|| {
        format!(
            "SDK checkout {} not found; pass --sdk PATH to an htlcgate checkout",
            root.display()
        )
    })?;
    if !root.join("sdk/go/go.mod").is_file() || !root.join("sdk/rust/Cargo.toml").is_file() {
        bail!(
            "{} has no sdk/rust and sdk/go; pass --sdk PATH to an htlcgate checkout",
            root.display()
        );
    }
    Ok(root)
}

/// Creates the project; returns its directory.
pub fn new_project(args: &NewArgs) -> anyhow::Result<PathBuf> {
    check_name(&args.name)?;
    let sdk = sdk_root(&args.sdk)?;
    let dir = args.dir.join(&args.name);
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or --dir",
            dir.display()
        );
    }
    let files = match args.lang {
        Lang::Rust => rust_files(&args.name, &sdk),
        Lang::Go => go_files(&args.name, &sdk),
        Lang::AssemblyScript => as_files(&args.name, &sdk),
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(dir)
}

/// Fills a template's placeholders: `{{name}}`, `{{name_snake}}`, `{{sdk}}` (the
/// checkout's path as text) and `{{sdk_go_quoted}}` (its `sdk/go` as a quoted
/// go.mod string, so that a path with a space or a quote stays one token).
fn fill(template: &str, name: &str, sdk: &Path) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{name_snake}}", &name.replace('-', "_"))
        .replace("{{sdk_go_quoted}}", &go_quoted(&sdk.join("sdk/go")))
        .replace("{{sdk}}", &sdk.display().to_string())
}

/// `path` as a Go interpreted string literal, which go.mod accepts wherever a
/// path goes. JSON's escapes (`\"`, `\\`, `\n`, `\u00XX`, ...) are all valid in
/// Go string literals, and a JSON string is never written with others.
fn go_quoted(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).expect("a string serializes")
}

fn rust_files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("Cargo.toml", fill(RUST_CARGO, name, sdk)),
        ("src/lib.rs", fill(RUST_LIB, name, sdk)),
        ("README.md", fill(RUST_README, name, sdk)),
        (".gitignore", "/target\n*.wasm\n".into()),
    ]
}

fn go_files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("go.mod", fill(GO_MOD, name, sdk)),
        ("main.go", fill(GO_MAIN, name, sdk)),
        ("main_test.go", fill(GO_TEST, name, sdk)),
        ("build.sh", fill(GO_BUILD, name, sdk)),
        ("README.md", fill(GO_README, name, sdk)),
        (".gitignore", "*.wasm\n".into()),
    ]
}

fn as_files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("package.json", fill(AS_PACKAGE, name, sdk)),
        ("assembly/index.ts", fill(AS_INDEX, name, sdk)),
        ("tests/decide.test.mjs", fill(AS_TEST, name, sdk)),
        ("README.md", fill(AS_README, name, sdk)),
        (".gitignore", "node_modules/\nbuild/\n*.wasm\n".into()),
    ]
}

const RUST_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
htlcgate-sdk = { path = "{{sdk}}/sdk/rust" }

# A project of its own, even inside another workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#;

const RUST_LIB: &str = r#"//! `{{name}}`: fails forwards that pay this node less than `min_fee_msat`.
//!
//! Config: `min_fee_msat` (default 0).

use htlcgate_sdk::{export_plugin, Config, Htlc, Plugin, Verdict};

/// The configured minimum fee.
pub struct MinFee {
    /// Minimum fee in msat.
    min_fee_msat: u64,
}

impl Plugin for MinFee {
    fn init(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["min_fee_msat"])?;
        Ok(MinFee {
            min_fee_msat: config.parse_or("min_fee_msat", 0)?,
        })
    }

    fn decide(&mut self, htlc: &Htlc) -> Verdict {
        if htlc.is_final_hop() || htlc.fee_msat() >= i128::from(self.min_fee_msat) {
            return Verdict::next(); // no opinion: later plugins decide
        }
        Verdict::fail_temporary()
    }
}

export_plugin!(MinFee);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(min: &str) -> MinFee {
        MinFee::init(&Config::from_pairs([("min_fee_msat", min)])).unwrap()
    }

    #[test]
    fn fees_below_the_minimum_fail_and_the_rest_pass() {
        let mut p = plugin("1000");
        let htlc = |fee: u64| Htlc::builder().amounts_msat(1_000_000 + fee, 1_000_000).build();
        assert_eq!(p.decide(&htlc(999)), Verdict::fail_temporary());
        assert_eq!(p.decide(&htlc(1000)), Verdict::next());
        let to_us = Htlc::builder().amounts_msat(5, 5).final_hop().build();
        assert_eq!(p.decide(&to_us), Verdict::next());
    }

    #[test]
    fn a_misspelt_key_refuses_the_load() {
        assert!(MinFee::init(&Config::from_pairs([("min_fee", "1")])).is_err());
    }
}
"#;

const RUST_README: &str = r#"# {{name}}

An [htlcgate](file://{{sdk}}) policy plugin in Rust: fails forwards that pay less
than `min_fee_msat`.

```sh
cargo test                                            # unit tests on sample HTLCs
cargo build --release --target wasm32-wasip2          # the component
htlcgate check target/wasm32-wasip2/release/{{name_snake}}.wasm --config min_fee_msat=1000
```

(`rustup target add wasm32-wasip2` once.) Then add it to `htlcgate.toml`:

```toml
[[plugin]]
name = "{{name}}"
path = "target/wasm32-wasip2/release/{{name_snake}}.wasm"
[plugin.config]
min_fee_msat = 1000
```

Limits per call: `fuel` (10 M), `timeout_ms` (50), `memory_mb` (64).
"#;

const GO_MOD: &str = r#"module example.com/{{name}}

go 1.24

require htlcgate.dev/sdk/go v0.0.0

replace htlcgate.dev/sdk/go => {{sdk_go_quoted}}
"#;

const GO_MAIN: &str = r#"// Command {{name}} is an htlcgate policy plugin: it fails forwards that pay this
// node less than min_fee_msat. Config: min_fee_msat (default 0).
package main

import htlcgate "htlcgate.dev/sdk/go"

// minFee is the configured minimum fee.
type minFee struct {
	// minFeeMsat is the minimum fee in msat.
	minFeeMsat uint64
}

// Decide fails forwards below the minimum and has no opinion on the rest.
func (p *minFee) Decide(h *htlcgate.Htlc) htlcgate.Verdict {
	if h.IsFinalHop() || h.FeeAtLeast(p.minFeeMsat) {
		return htlcgate.Next() // no opinion: later plugins decide
	}
	return htlcgate.FailTemporary()
}

func newMinFee(cfg htlcgate.Config) (htlcgate.Decider, error) {
	if err := cfg.DenyUnknown("min_fee_msat"); err != nil {
		return nil, err
	}
	min, err := cfg.Uint64Or("min_fee_msat", 0)
	if err != nil {
		return nil, err
	}
	return &minFee{minFeeMsat: min}, nil
}

func init() { htlcgate.Register(newMinFee) }

// main is required by Go and never called: a plugin is a reactor.
func main() {}
"#;

const GO_TEST: &str = r#"package main

import (
	"testing"

	htlcgate "htlcgate.dev/sdk/go"
)

func TestFeesBelowTheMinimumFailAndTheRestPass(t *testing.T) {
	p, err := newMinFee(htlcgate.NewConfig("min_fee_msat", "1000"))
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Decide(htlcgate.NewForward(1_000_999, 1_000_000)); !v.Equal(htlcgate.FailTemporary()) {
		t.Fatalf("fee 999: got %v", v)
	}
	if v := p.Decide(htlcgate.NewForward(1_001_000, 1_000_000)); !v.IsNext() {
		t.Fatalf("fee 1000: got %v", v)
	}
	toUs := htlcgate.NewForward(5, 5)
	toUs.OutgoingChan = htlcgate.FinalHop
	if v := p.Decide(toUs); !v.IsNext() {
		t.Fatalf("payment to this node: got %v", v)
	}
}

func TestAMisspeltKeyRefusesTheLoad(t *testing.T) {
	if _, err := newMinFee(htlcgate.NewConfig("min_fee", "1")); err == nil {
		t.Fatal("accepted")
	}
}
"#;

const GO_BUILD: &str = r#"#!/usr/bin/env bash
# Builds {{name}}.wasm: Go writes a WASI reactor core module, htlcgate turns it
# into a component of the plugin world. Set HTLCGATE to the binary if it is not
# on PATH.
set -euo pipefail
cd "$(dirname "$0")"
GOTOOLCHAIN=local GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o {{name}}.core.wasm .
"${HTLCGATE:-htlcgate}" componentize {{name}}.core.wasm -o {{name}}.wasm
"#;

const GO_README: &str = r#"# {{name}}

An htlcgate policy plugin in Go (standard library only): fails forwards that pay
less than `min_fee_msat`.

```sh
go test ./...                                   # unit tests on sample HTLCs
./build.sh                                      # {{name}}.wasm (Go >= 1.24, htlcgate on PATH)
htlcgate check {{name}}.wasm --config min_fee_msat=1000
```

The SDK (`{{sdk}}/sdk/go`) is wired in with a `replace` in go.mod. Register the
plugin from a Go `init` function: a plugin's `main` never runs. Limits per call:
`fuel` (10 M; a Go decide uses ~5-20 k), `timeout_ms` (50), `memory_mb` (64; the
Go runtime takes a few MiB). Instantiation starts the Go runtime under
`init_fuel` / `init_timeout_ms`.

Beyond a verdict (see the SDK's README): `htlcgate.Hold(ms)` asks again later
(`h.Attempt` counts the asks); `KVGet`/`KVSet`/`KVDelete` keep state (grant `kv`);
`Channel(scid)` tells who is behind a channel (grant `node`); `BlockHeight()`
needs no grant; a Decider with an `Outcome(*htlcgate.Outcome)` method hears how
its HTLCs went on once main.go has `import _ "htlcgate.dev/sdk/go/outcome"`.
Grants go in the plugin's `[[plugin]]` entry: `grants = ["kv", "node"]`.
"#;

const AS_PACKAGE: &str = r#"{
  "name": "{{name}}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {
    "asbuild": "asc assembly/index.ts --runtime node_modules/htlcgate-sdk/runtime/per-call --use abort=~lib/htlcgate-sdk/assembly/abort/abort -O3 -o build/core.wasm",
    "build": "npm run asbuild && ${HTLCGATE:-htlcgate} componentize build/core.wasm -o {{name}}.wasm",
    "test": "npm run asbuild && node --test tests/"
  },
  "devDependencies": {
    "assemblyscript": "0.28.20",
    "htlcgate-sdk": "file:{{sdk}}/sdk/assemblyscript"
  }
}
"#;

const AS_INDEX: &str = r#"// {{name}}: an htlcgate policy plugin that fails forwards paying this node
// less than min_fee_msat. Config: min_fee_msat (default 0).

import { Config, Decider, Htlc, Verdict, register } from "htlcgate-sdk";
export * from "htlcgate-sdk/assembly/glue";

class MinFee extends Decider {
  constructor(private minFeeMsat: u64) {
    super();
  }

  decide(htlc: Htlc): Verdict {
    if (htlc.isFinalHop() || htlc.feeAtLeast(this.minFeeMsat)) return Verdict.next();
    return Verdict.failTemporary();
  }
}

function init(config: Config): Decider {
  config.denyUnknown(["min_fee_msat"]);
  return new MinFee(config.u64Or("min_fee_msat", 0));
}

register(init);
"#;

const AS_TEST: &str = r#"// Runs the plugin's core module on sample HTLCs through the SDK's harness (the
// same canonical ABI htlcgate uses). `npm test` builds it first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadPlugin, forward } from "htlcgate-sdk/harness";

test("fees below the minimum fail and the rest pass", async () => {
  const p = await loadPlugin("build/core.wasm", { min_fee_msat: "1000" });
  assert.deepEqual(p.decide(forward(1_000_999n, 1_000_000n)), { kind: "fail", code: "temporary-channel-failure" });
  assert.deepEqual(p.decide(forward(1_001_000n, 1_000_000n)), { kind: "next" });
  const toUs = forward(5n, 5n);
  toUs.outgoingChanId = 0n;
  assert.deepEqual(p.decide(toUs), { kind: "next" });
});

test("a misspelt key refuses the load", async () => {
  await assert.rejects(loadPlugin("build/core.wasm", { min_fee: "1" }), /min_fee/);
});
"#;

const AS_README: &str = r#"# {{name}}

An htlcgate policy plugin in AssemblyScript: fails forwards that pay less than
`min_fee_msat`.

```sh
npm install          # assemblyscript and the SDK ({{sdk}}/sdk/assemblyscript)
npm test             # builds build/core.wasm and runs it on sample HTLCs
npm run build        # {{name}}.wasm (htlcgate on PATH, or HTLCGATE=/path/to/htlcgate)
htlcgate check {{name}}.wasm --config min_fee_msat=1000
```

Memory is reset after every `decide` (the SDK's runtime): keep numbers in your
Decider's fields, or allocate containers in `init` and only write into them; an
object created during `decide` is gone after it. Limits per call: `fuel` (10 M),
`timeout_ms` (50), `memory_mb` (64).

Beyond a verdict (see the SDK's README): `Verdict.hold(ms)` asks again later
(`htlc.attempt` counts the asks); `kvGet`/`kvSet`/`kvDelete` keep state (grant
`kv`); `channel(scid)` tells who is behind a channel (grant `node`);
`blockHeight()` needs no grant; a Decider that extends `Observer` hears how its
HTLCs went on once `assembly/index.ts` also has
`export * from "htlcgate-sdk/assembly/outcome-glue";`. Grants go in the plugin's
`[[plugin]]` entry: `grants = ["kv", "node"]`.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_lowercase_words() {
        assert!(check_name("min-fee").is_ok());
        assert!(check_name("fee2").is_ok());
        for bad in ["", "Fee", "2fee", "fee_floor", "../x", "fee floor"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("lowercase"), "{bad}: {err}");
        }
    }

    #[test]
    fn go_mod_paths_are_quoted_go_strings() {
        assert_eq!(
            go_quoted(Path::new("/home/a b/\"x\"\\y/sdk/go")),
            r#""/home/a b/\"x\"\\y/sdk/go""#
        );
        let go_mod = fill(GO_MOD, "p", Path::new("/a b"));
        assert!(
            go_mod.contains(r#"replace htlcgate.dev/sdk/go => "/a b/sdk/go""#),
            "{go_mod}"
        );
    }

    #[test]
    fn every_language_gets_a_readme_a_build_and_a_test() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, files) in [
            (Lang::Rust, &["Cargo.toml", "src/lib.rs", "README.md"][..]),
            (
                Lang::Go,
                &["go.mod", "main.go", "main_test.go", "build.sh", "README.md"][..],
            ),
            (
                Lang::AssemblyScript,
                &[
                    "package.json",
                    "assembly/index.ts",
                    "tests/decide.test.mjs",
                    "README.md",
                ][..],
            ),
        ] {
            let name = format!("p-{lang:?}").to_lowercase();
            let args = NewArgs {
                name: name.clone(),
                lang,
                dir: dir.path().to_owned(),
                sdk: None,
            };
            let project = new_project(&args).unwrap();
            for f in files {
                let text = std::fs::read_to_string(project.join(f)).unwrap();
                assert!(!text.contains("{{"), "{f} has an unfilled placeholder");
            }
            let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
            assert!(
                readme.contains(&name) && readme.contains("htlcgate check"),
                "{readme}"
            );
            // A second time is refused rather than overwriting.
            assert!(new_project(&args)
                .unwrap_err()
                .to_string()
                .contains("already exists"));
        }
    }
}

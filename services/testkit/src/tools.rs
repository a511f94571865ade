//! The tools and services a test may find missing, in one table ([`TOOLS`]), and the one thing
//! a test does when one is: [`require_tool`] / [`require_service`].
//!
//! - `CXRFLOW_REQUIRE_TOOLS=1` (scripts/test.sh, after scripts/prereqs.sh installed everything,
//!   and CI): a missing tool that the project installs fails the test, naming the tool and how
//!   to install it.
//! - Otherwise (a plain `cargo nextest run`, or `CXRFLOW_REQUIRE_TOOLS=0`): the test is skipped.
//!   It passes (nextest has no runtime skip), says so on stderr and appends a line to the skip
//!   log, which scripts/test.sh prints at the end of the run.
//! - A service the project cannot install here ([`Install::NotHere`]: ScyllaDB) skips in both
//!   modes, and is listed in the skip log all the same.
//!
//! The skip log is `$CXRFLOW_SKIP_LOG`, else `<target dir>/cxrflow-skipped-tests.tsv`: one line
//! per skip, `test<TAB>tool<TAB>reason`.
//!
//! `CXRFLOW_HIDE_TOOLS=moto_server,chromium` makes the named tools count as missing, to see
//! what a run without them does.
//!
//! Tools not in the table never skip: the broker (tansu), ONNX Runtime, DCMTK and the tools
//! venv's Python are needed by most of the suite, and a test that lacks one fails
//! ([`crate::run_tool`], the broker's start, `require_ort`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A tool or service some test needs.
pub struct Tool {
    /// The name tests ask for and the skip log shows.
    pub name: &'static str,
    pub find: Find,
    /// What the tests use it for.
    pub used_for: &'static str,
    pub install: Install,
}

pub enum Find {
    /// An executable on `PATH`.
    Program(&'static str),
    /// An environment variable naming a reachable server.
    Env(&'static str),
    /// Something the test itself tries (a permission): [`require_capability`].
    Capability,
}

pub enum Install {
    /// Installed by scripts/prereqs.sh (how): missing only where prereqs did not run.
    Prereqs(&'static str),
    /// Cannot be installed on the machines the project runs on (why, and how to run it anyway).
    NotHere(&'static str),
}

/// Every tool or service whose absence skips a test.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "chromium",
        find: Find::Program("chromium"),
        used_for: "the worklist page in a real browser (cxrflow-triage::browser)",
        install: Install::Prereqs("Debian package chromium (apt-get install chromium)"),
    },
    Tool {
        name: "chromedriver",
        find: Find::Program("chromedriver"),
        used_for: "driving Chromium in the worklist browser test (cxrflow-triage::browser)",
        install: Install::Prereqs(
            "Debian package chromium-driver (apt-get install chromium-driver)",
        ),
    },
    Tool {
        name: "moto_server",
        find: Find::Program("moto_server"),
        used_for: "an S3-compatible server for the S3 ingest test (cxrflow-ingest::s3)",
        install: Install::Prereqs(
            "pip install 'moto[server]==5.2.5' into $CXRFLOW_TOOLS/moto-venv, linked into \
             $CXRFLOW_TOOLS/bin (scripts/prereqs.sh, then `. scripts/env.sh`)",
        ),
    },
    Tool {
        name: "strace",
        find: Find::Program("strace"),
        used_for: "reading the gateway's fsyncs and renames from its real syscalls \
                   (cxrflow-gateway::durability)",
        install: Install::Prereqs("Debian package strace (apt-get install strace)"),
    },
    Tool {
        name: "gdcmconv",
        find: Find::Program("gdcmconv"),
        used_for: "GDCM's own encoders (JPEG 2000, JPEG, JPEG-LS, RLE) writing the \
                   files preprocess must decode (cxrflow-preprocess::encoders)",
        install: Install::Prereqs("Debian package libgdcm-tools (apt-get install libgdcm-tools)"),
    },
    Tool {
        name: "opj_compress",
        find: Find::Program("opj_compress"),
        used_for: "OpenJPEG's encoder with the options modalities use (tiles, progression \
                   orders, precincts, code-block modes, layers) (cxrflow-preprocess::encoders)",
        install: Install::Prereqs(
            "Debian package libopenjp2-tools (apt-get install libopenjp2-tools)",
        ),
    },
    Tool {
        name: "ojph_compress",
        find: Find::Program("ojph_compress"),
        used_for: "OpenJPH's HTJ2K encoder and decoder (ojph_expand) writing and checking the \
                   HTJ2K files preprocess must decode (cxrflow-preprocess::encoders)",
        install: Install::Prereqs("Debian package openjph-tools (apt-get install openjph-tools)"),
    },
    Tool {
        name: "tmpfs",
        find: Find::Capability,
        used_for: "a real full disk: a 1 MiB tmpfs mounted under the gateway's store \
                   (cxrflow-gateway::durability)",
        install: Install::Prereqs(
            "permission to mount: run the tests as root or with CAP_SYS_ADMIN, as \
             scripts/test.sh and CI do",
        ),
    },
    Tool {
        name: "scylladb",
        find: Find::Env("CXRFLOW_SCYLLA_URI"),
        used_for: "the study-store suite against ScyllaDB (cxrflow-feedback store::suite)",
        install: Install::NotHere(
            "no ScyllaDB server can be installed on these machines; to run the suite, point \
             CXRFLOW_SCYLLA_URI=scylla://host:9042/keyspace at a node",
        ),
    },
];

/// The tool's path when it is on `PATH`; else fails the test or skips it (returns `None`) as
/// the module documentation says. `name` is a [`TOOLS`] entry found as a program.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let tool = tool(name);
    let Find::Program(program) = tool.find else {
        panic!("{name} is not a program: use require_service");
    };
    let found = if hidden(name) {
        None
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    };
    found.or_else(|| {
        missing(tool, &format!("`{program}` not on PATH"));
        None
    })
}

/// The service's address (its environment variable's value) when set; else fails the test or
/// skips it (returns `None`). `name` is a [`TOOLS`] entry found through an environment variable.
pub fn require_service(name: &str) -> Option<String> {
    let tool = tool(name);
    let Find::Env(var) = tool.find else {
        panic!("{name} is not a service: use require_tool");
    };
    let found = if hidden(name) {
        None
    } else {
        std::env::var(var).ok().filter(|v| !v.is_empty())
    };
    found.or_else(|| {
        missing(tool, &format!("{var} not set"));
        None
    })
}

/// `tried` is what the test got when it tried the capability (`Err`: why not); `true` when it
/// is there, else fails the test or skips it (returns `false`) as for a missing tool. `name` is
/// a [`TOOLS`] entry found as a capability.
pub fn require_capability(name: &str, tried: Result<(), String>) -> bool {
    let tool = tool(name);
    let Find::Capability = tool.find else {
        panic!("{name} is not a capability");
    };
    let tried = if hidden(name) {
        Err("hidden by CXRFLOW_HIDE_TOOLS".into())
    } else {
        tried
    };
    match tried {
        Ok(()) => true,
        Err(why) => {
            missing(tool, &why);
            false
        }
    }
}

fn tool(name: &str) -> &'static Tool {
    TOOLS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} is not in cxrflow_testkit::tools::TOOLS: add it there"))
}

fn hidden(name: &str) -> bool {
    std::env::var("CXRFLOW_HIDE_TOOLS").is_ok_and(|v| v.split(',').any(|h| h.trim() == name))
}

fn missing(tool: &Tool, what: &str) {
    let required = std::env::var("CXRFLOW_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    on_missing(tool, what, required, &test_id(), &skip_log());
}

/// Fails (`required` and the project installs the tool) or records the skip in `log`.
fn on_missing(tool: &Tool, what: &str, required: bool, test: &str, log: &Path) {
    let reason = match tool.install {
        Install::Prereqs(how) => {
            if required {
                panic!(
                    "{test} needs {} for {}: {what}. Install: {how}. \
                     (CXRFLOW_REQUIRE_TOOLS=1, set by scripts/test.sh and CI, makes a missing \
                     tool a failure; CXRFLOW_REQUIRE_TOOLS=0 skips the test instead.)",
                    tool.name, tool.used_for
                );
            }
            format!("{what}; install: {how}")
        }
        Install::NotHere(why) => format!("{what}; {why}"),
    };
    eprintln!(
        "\n*** SKIPPED {test}: needs {} for {}: {reason} ***\n",
        tool.name, tool.used_for
    );
    let line = format!(
        "{test}\t{}\t{}\n",
        tool.name,
        reason.replace(['\t', '\n'], " ")
    );
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One short write per line in append mode: parallel tests' lines do not interleave.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        panic!("{test}: cannot record its skip in {}: {e}", log.display());
    }
}

/// The test as nextest names it (`cxrflow-ingest::s3 an_s3_reference_...`); under `cargo test`,
/// the package and the test thread's name.
fn test_id() -> String {
    match (
        std::env::var("NEXTEST_BINARY_ID"),
        std::env::var("NEXTEST_TEST_NAME"),
    ) {
        (Ok(binary), Ok(test)) => format!("{binary} {test}"),
        _ => format!(
            "{} {}",
            std::env::var("CARGO_PKG_NAME").unwrap_or_default(),
            std::thread::current().name().unwrap_or("?")
        ),
    }
}

/// `$CXRFLOW_SKIP_LOG`, else `cxrflow-skipped-tests.tsv` in the target directory.
pub fn skip_log() -> PathBuf {
    if let Some(p) = std::env::var_os("CXRFLOW_SKIP_LOG") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(t) if t.is_absolute() => t,
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    };
    target.join("cxrflow-skipped-tests.tsv")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(log: &Path) -> Vec<Vec<String>> {
        std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }

    #[test]
    fn a_missing_installed_tool_is_logged_as_a_skip_when_not_required() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sub/skips.tsv");
        on_missing(
            tool("moto_server"),
            "`moto_server` not on PATH",
            false,
            "a t1",
            &log,
        );
        on_missing(
            tool("chromium"),
            "`chromium` not on PATH",
            false,
            "b t2",
            &log,
        );
        let got = lines(&log);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0][..2], ["a t1", "moto_server"]);
        assert!(
            got[0][2].contains("not on PATH; install: pip install"),
            "{got:?}"
        );
        assert_eq!(got[1][..2], ["b t2", "chromium"]);
    }

    #[test]
    #[should_panic(expected = "a t1 needs moto_server for an S3-compatible server")]
    fn a_missing_installed_tool_fails_the_test_when_required() {
        let dir = tempfile::tempdir().unwrap();
        on_missing(
            tool("moto_server"),
            "`moto_server` not on PATH",
            true,
            "a t1",
            &dir.path().join("skips.tsv"),
        );
    }

    #[test]
    fn a_service_that_cannot_be_installed_skips_even_when_required() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.tsv");
        on_missing(
            tool("scylladb"),
            "CXRFLOW_SCYLLA_URI not set",
            true,
            "f s",
            &log,
        );
        let got = lines(&log);
        assert_eq!(got[0][..2], ["f s", "scylladb"]);
        assert!(
            got[0][2].contains("no ScyllaDB server can be installed"),
            "{got:?}"
        );
    }

    #[test]
    fn every_tool_has_a_distinct_name() {
        let mut names: Vec<_> = TOOLS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TOOLS.len());
    }
}

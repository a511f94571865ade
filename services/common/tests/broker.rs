//! The embedded broker lives and dies with the process that started it, and a start that cannot
//! give a working broker of its own fails with the reason instead of carrying on.

use std::io::BufRead;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cxrflow_common::broker::{BrokerError, EmbeddedBroker};
use cxrflow_testkit::free_port;

/// Env var that turns the helper below into a process that starts a broker and is then killed.
const OWNER_ENV: &str = "CXRFLOW_TEST_BROKER_OWNER_DIR";

fn alive(pid: u32) -> bool {
    // A zombie has closed its port and files: as good as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Not a test on its own: with `CXRFLOW_TEST_BROKER_OWNER_DIR=<dir>` it starts a broker there
/// from a short-lived thread (as `cxrflow up` does from tokio's blocking pool), prints
/// `BROKER <pid>` and waits to be killed. Without it, it returns at once.
#[test]
fn broker_owner() {
    let Ok(dir) = std::env::var(OWNER_ENV) else {
        return;
    };
    let b = std::thread::spawn(move || EmbeddedBroker::start(Path::new(&dir), free_port()))
        .join()
        .unwrap()
        .unwrap();
    let pid =
        std::fs::read_to_string(Path::new(&std::env::var(OWNER_ENV).unwrap()).join("tansu.pid"))
            .unwrap();
    println!("BROKER {}", pid.trim());
    std::thread::sleep(Duration::from_secs(120));
    drop(b);
}

fn start_owner(dir: &Path) -> (std::process::Child, u32) {
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["broker_owner", "--exact", "--nocapture"])
        .env(OWNER_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(owner.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("BROKER "))
        .expect("the owner started a broker");
    let pid: u32 = line["BROKER ".len()..].parse().unwrap();
    (owner, pid)
}

#[test]
fn a_sigkilled_owner_takes_its_broker_along() {
    let dir = tempfile::tempdir().unwrap();
    let (mut owner, broker) = start_owner(dir.path());
    // The thread that started the broker ended long ago; the broker must still be there.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(broker),
        "the broker outlives the thread that started it"
    );
    owner.kill().unwrap(); // SIGKILL: no destructor runs
    owner.wait().unwrap();
    assert!(
        wait_gone(broker, Duration::from_secs(10)),
        "broker {broker} outlived its SIGKILLed owner"
    );
    // The data dir is free again: a new owner starts a broker on it at once.
    let b = EmbeddedBroker::start(dir.path(), free_port()).unwrap();
    drop(b);
}

#[test]
fn a_port_taken_by_something_else_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = EmbeddedBroker::start(dir.path(), port)
        .err()
        .expect("no broker on a taken port");
    assert!(matches!(e, BrokerError::PortTaken { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn a_data_dir_in_use_by_a_live_broker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedBroker::start(dir.path(), free_port()).unwrap();
    let e = EmbeddedBroker::start(dir.path(), free_port())
        .err()
        .expect("two brokers on one storage");
    assert!(matches!(e, BrokerError::InUse { .. }), "{e}");
}

#[test]
fn a_broker_that_exits_at_start_is_reported_with_its_own_words() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-tansu");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'storage: cannot open sqlite://tansu.db: disk on fire' >&2\nexit 0\n",
    )
    .unwrap();
    let mut mode = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&fake, mode).unwrap();
    // One test per process (nextest): setting the variable touches no other test.
    std::env::set_var("CXRFLOW_TANSU", &fake);
    let e = EmbeddedBroker::start(&dir.path().join("broker"), free_port())
        .err()
        .expect("a broker that exited");
    std::env::remove_var("CXRFLOW_TANSU");
    assert!(matches!(e, BrokerError::Exited { .. }), "{e}");
    assert!(e.to_string().contains("disk on fire"), "{e}");
}

#[test]
fn a_broker_left_over_in_the_data_dir_is_replaced_knowingly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("tcp://127.0.0.1:{}", free_port());
    // As an older cxrflow (no parent-death signal) would have left it: running, pid on file.
    let mut leftover = Command::new(cxrflow_common::broker::tansu_binary())
        .current_dir(dir.path())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Whatever the outcome, no broker outlives the test.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _reap = Reap(leftover.id());
    std::fs::write(dir.path().join("tansu.pid"), leftover.id().to_string()).unwrap();
    // Until it has exec'd, the forked child is still this test binary, which no start would
    // (or should) kill as a broker.
    let cmdline = format!("/proc/{}/cmdline", leftover.id());
    let end = Instant::now() + Duration::from_secs(10);
    while !std::fs::read(&cmdline)
        .map(|c| String::from_utf8_lossy(&c).contains("tansu"))
        .unwrap_or(false)
    {
        assert!(Instant::now() < end, "the leftover broker never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let b = EmbeddedBroker::start(dir.path(), free_port()).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while leftover.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the leftover broker still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(b);
}

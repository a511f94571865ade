//! What the gateway's success answer promises a sender, against a real full disk and the real
//! syscalls: with its `file://` store on a tmpfs filled to the last byte, a C-STORE is answered
//! out of resources (0xA700: the sender keeps the instance) and a STOW-RS upload 503, nothing
//! is left in the store (no staged or partial object at the content address) and no scan event
//! is published; once space is freed DCMTK's storescu resends the instance and it is stored
//! whole, and strace shows the object written durably before the answer: the staged file
//! fsynced, renamed to its content address, its directory fsynced.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxrflow_common::blob::sha256_hex;
use support::*;

/// A tmpfs of `size` mounted on `dir`, unmounted when dropped (also when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file the gateway still holds open does not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the file system says it is full (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x5au8; 4096];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // What the page cache still holds must hit the full disk too.
    match f.sync_all() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(28) => {}
        Err(e) => panic!("syncing the filler: {e}"),
    }
    written
}

/// strace attached to this test process (every thread, the gateway's included), recording the
/// syscalls that make a write durable, with file descriptors shown as paths (`-y`).
struct Strace {
    child: Child,
    out: PathBuf,
}

impl Strace {
    fn attach(strace: &Path, out: PathBuf) -> Strace {
        let mut child = Command::new(strace)
            .args([
                "-f",
                "-y",
                "-qq",
                "-e",
                "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat",
                "-o",
            ])
            .arg(&out)
            .arg("-p")
            .arg(std::process::id().to_string())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strace");
        // Attached once every thread of this process shows strace as its tracer (threads
        // started later are followed: -f).
        let traced = |pid: u32| {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .all(|task| {
                    std::fs::read_to_string(task.path().join("status"))
                        .ok()
                        .and_then(|status| {
                            status
                                .lines()
                                .find_map(|l| l.strip_prefix("TracerPid:"))
                                .and_then(|v| v.trim().parse::<u32>().ok())
                        })
                        // A thread that ended while we looked is no thread to miss.
                        .is_none_or(|tracer| tracer == pid)
                })
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if traced(child.id()) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                for line in BufReader::new(child.stderr.take().unwrap()).lines() {
                    err.push_str(&line.unwrap_or_default());
                    err.push('\n');
                }
                panic!("strace could not attach ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "strace did not attach in {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Strace { child, out }
    }

    /// Detaches (strace leaves the traced process running on SIGTERM) and returns the trace.
    fn finish(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_is_answered_out_of_resources_leaves_nothing_and_the_resend_is_stored_durably()
{
    cxrflow_testkit::init_logs();
    let Some(strace) = cxrflow_testkit::tools::require_tool("strace") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // config() puts the gateway's file store at DIR/dicom.
    let store = dir.path().join("dicom");
    let mounted = Tmpfs::mount(&store, "1m");
    let tmpfs = match mounted {
        Ok(t) => t,
        Err(why) => {
            assert!(!cxrflow_testkit::tools::require_capability(
                "tmpfs",
                Err(why)
            ));
            return;
        }
    };
    let broker = cxrflow_testkit::Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let gw = Running::start(config(&kafka, dir.path())).await;

    let filler = store.join("filler");
    let filled = fill(&filler);
    assert!(filled > 0 && filled <= 1 << 20, "filled {filled} bytes");
    let f = fixture(1, Kind::Dx16);
    let bytes = f.dataset_bytes(EXPLICIT_LE);

    // A full disk is out of resources.
    let assoc = c_store_out_of_resources(&gw, &f, &bytes, "blob_store_unavailable").await;
    assert_eq!(
        files_under(&store),
        vec![filler.clone()],
        "no staged or partial object left in the store"
    );
    let _ = assoc.release().await;
    // STOW-RS, the same instance: 503 (nothing stored, a retry may succeed).
    let boundary = "cxrflow-durability-boundary";
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(&f.part10(EXPLICIT_LE));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let stow = reqwest::Client::new()
        .post(gw.stow_url("/studies"))
        .header(
            "content-type",
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header("accept", "application/dicom+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(stow.status().as_u16(), 503, "STOW-RS on a full disk");
    assert_eq!(gw.rejected("blob_store_unavailable").await, 2.0);
    assert_eq!(files_under(&store), vec![filler.clone()]);

    // An operator frees space; the sender resends, as another program: DCMTK's storescu with
    // the instance as a Part 10 file, while strace watches the gateway's write.
    std::fs::remove_file(&filler).unwrap();
    let file = f.write(dir.path(), EXPLICIT_LE);
    let trace = Strace::attach(&strace, dir.path().join("strace.txt"));
    let (ok, out) = run_tool({
        let mut c = storescu(gw.dicom);
        c.arg(&file);
        c
    })
    .await;
    let lines = trace.finish();
    assert!(ok, "storescu's resend is stored: {out}");

    // Exactly one object, whole, at its content address; one scan event, for the resend.
    let stored = files_under(&store);
    assert_eq!(stored.len(), 1, "one object in the store: {stored:?}");
    let object = &stored[0];
    let sha = object.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        sha256_hex(&std::fs::read(object).unwrap()),
        sha,
        "the object is whole"
    );
    let events = scan_events(&kafka, &codec, 2, Duration::from_millis(1500)).await;
    assert_eq!(
        events.len(),
        1,
        "the refused C-STORE published no event; the resend one"
    );
    assert_eq!(events[0].1.study.sop_instance_uid, f.sop);

    // Durable before the answer: the staged file (object_store names it OBJECT#N) fsynced, then
    // renamed (or linked) to OBJECT, then the directory holding OBJECT fsynced.
    let object = object.to_str().unwrap();
    let parent = Path::new(object).parent().unwrap().to_str().unwrap();
    let staged = format!("{object}#");
    let position = |what: &str, pred: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| pred(l))
            .unwrap_or_else(|| panic!("no {what} in the gateway's syscalls:\n{}", lines.join("\n")))
    };
    let file_sync = position("fsync of the staged object", &|l| {
        (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains(&staged)
    });
    let publish = position("rename or link of the staged object to its address", &|l| {
        (l.contains("rename") || l.contains("link"))
            && l.contains(&staged)
            && l.contains(&format!("\"{object}\""))
    });
    let dir_sync = position("fsync of the object's directory", &|l| {
        (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains(&format!("<{parent}>"))
    });
    assert!(
        file_sync < publish && publish < dir_sync,
        "fsync {file_sync}, rename {publish}, directory fsync {dir_sync}:\n{}",
        lines.join("\n")
    );

    gw.stop().await;
    drop(tmpfs);
}

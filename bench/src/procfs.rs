//! What /proc says about the machine and about processes: peak and current resident memory,
//! CPU time, whole-machine busy time, and the machine description that goes into the report.

use std::path::Path;

use serde::Serialize;

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on every Linux we run).
const TICKS_PER_S: f64 = 100.0;

/// Resident memory of a process, in MiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Peak resident set size (VmHWM).
    pub peak_rss_mib: f64,
    /// Resident set size now (VmRSS).
    pub rss_mib: f64,
}

fn status_kib(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
}

/// VmHWM and VmRSS of `pid`; `None` once the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        peak_rss_mib: status_kib(&text, "VmHWM:")? / 1024.0,
        rss_mib: status_kib(&text, "VmRSS:")? / 1024.0,
    })
}

/// `pid` and every process below it (uvicorn's worker processes under its supervisor).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
                .filter_map(|p| {
                    let ppid = stat_fields(&p.to_string())?.get(1)?.parse().ok()?;
                    Some((p, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

/// [`memory`] summed over `pid`'s process tree (the sum of each process's peak: an upper bound
/// of the tree's peak).
pub fn tree_memory(pid: u32) -> Option<Memory> {
    let each: Vec<Memory> = process_tree(pid).into_iter().filter_map(memory).collect();
    (!each.is_empty()).then(|| Memory {
        peak_rss_mib: each.iter().map(|m| m.peak_rss_mib).sum(),
        rss_mib: each.iter().map(|m| m.rss_mib).sum(),
    })
}

/// The fields of /proc/<pid>/stat after the command name (which may hold spaces).
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// User + system CPU seconds `pid` has used so far ("self" for this process, "thread-self" for
/// the calling thread).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let f = stat_fields(pid)?;
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let user: f64 = f.get(11)?.parse().ok()?;
    let system: f64 = f.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_S)
}

/// CPU time the calling thread has run, in nanoseconds (/proc/thread-self/schedstat: exact,
/// where /proc's stat counts 10 ms ticks).
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Children of this process whose command name is `comm` (the embedded broker's tansu).
pub fn children_named(comm: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            name.trim() == comm
                && stat_fields(&pid.to_string()).is_some_and(|f| f.get(1) == Some(&me))
        })
        .collect()
}

/// Busy and total CPU time of the whole machine so far, in ticks (from /proc/stat).
pub fn machine_ticks() -> Option<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
    Some((total - idle, total))
}

/// Share of the machine's CPU time that was busy between two [`machine_ticks`] readings.
pub fn busy_share(before: Option<(f64, f64)>, after: Option<(f64, f64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    (t1 > t0).then(|| (b1 - b0) / (t1 - t0))
}

/// The machine the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs this process may run on.
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub onnxruntime_library: String,
    pub onnxruntime_version: String,
}

/// `libonnxruntime.so.1.31.1` → `1.31.1` (through symlinks).
fn ort_version(lib: &Path) -> String {
    let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.to_path_buf());
    real.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .unwrap_or("unknown")
        .to_string()
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let lib = cxrflow_inference::session::locate_runtime(None).unwrap_or_default();
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: status_kib(&meminfo, "MemTotal:").unwrap_or(0.0) / 1024.0 / 1024.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        onnxruntime_version: ort_version(&lib),
        onnxruntime_library: lib.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.peak_rss_mib >= m.rss_mib && m.rss_mib > 0.0);
        assert!(cpu_seconds("self").is_some());
        assert!(cpu_seconds("thread-self").is_some());
        // Spinning, the thread's CPU time grows (by nanoseconds, not 10 ms ticks), however
        // busy the machine is.
        let a = thread_cpu_ns().unwrap();
        let spin = std::time::Instant::now();
        while thread_cpu_ns().unwrap() - a < 5_000_000 {
            assert!(spin.elapsed() < std::time::Duration::from_secs(30));
        }
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?}");
        let (mut child, me) = (child, memory(std::process::id()).unwrap());
        assert!(tree_memory(std::process::id()).unwrap().rss_mib >= me.rss_mib);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(machine_ticks().is_some());
        assert_eq!(
            ort_version(Path::new("/x/libonnxruntime.so.1.2.3")),
            "1.2.3"
        );
    }
}

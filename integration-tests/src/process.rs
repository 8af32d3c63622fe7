//! Child processes that cannot outlive their owner.
//!
//! Each child's stdout and stderr go to a log file. It is killed (SIGKILL)
//! and reaped on `Drop`; and because a test process can itself be killed
//! (a timeout, Ctrl-C), every child is also started with
//! `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it when the thread
//! that spawned it dies. Spawn from a thread that lives as long as the
//! child should (a test's own thread, `main`), not from a pooled worker.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `command`, appending its output to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open log {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if still running after `grace`.
    pub fn stop(&mut self, grace: std::time::Duration) {
        if let Some(pid) = self.pid() {
            signal(pid, libc::SIGTERM);
            let until = std::time::Instant::now() + grace;
            while std::time::Instant::now() < until {
                if self.exited().is_some() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// The last `bytes` of the log, for error messages.
    pub fn log_tail(&self, bytes: u64) -> String {
        tail(&self.log, bytes)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `bytes` of a file, lossily decoded.
pub fn tail(path: &Path, bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the
    // parent; this is the documented use of pre_exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// `TCP_NODELAY` of each of process `pid`'s TCP sockets whose peer port is
/// `port` (IPv4), as (its fd in that process, the option): each socket is
/// copied out of the process with `pidfd_getfd` (root, or its tracer) and
/// asked with `getsockopt`, since nothing in `/proc` shows the option.
#[allow(unsafe_code)]
pub fn tcp_nodelay_of_sockets_to(pid: u32, port: u16) -> Vec<(i32, bool)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let owned = |r: libc::c_long| -> Option<OwnedFd> {
        let fd = i32::try_from(r).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: a successful pidfd_open/pidfd_getfd returns a new fd
        // that nothing else owns.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: plain syscalls without memory arguments; results checked.
    let pidfd = owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).expect("pidfd_open");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's fds")
        .flatten()
    {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Ok(n) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: as above; the copy closes when `fd` drops.
        let Some(fd) = owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), n, 0) }) else {
            continue;
        };
        // SAFETY: sockaddr_in is plain data; getpeername writes at most
        // `len` bytes into it.
        let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>()).expect("small");
        let named = unsafe { libc::getpeername(fd.as_raw_fd(), (&raw mut peer).cast(), &raw mut len) };
        if named != 0 || i32::from(peer.sin_family) != libc::AF_INET || u16::from_be(peer.sin_port) != port {
            continue;
        }
        let mut on: libc::c_int = 0;
        let mut size = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("small");
        // SAFETY: an int-sized option read into an int.
        let read = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut on).cast(),
                &raw mut size,
            )
        };
        assert_eq!(read, 0, "getsockopt(TCP_NODELAY) on fd {n} of process {pid}");
        found.push((n, on != 0));
    }
    found
}

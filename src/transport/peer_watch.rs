//! Noticing that a client hung up on a stream nobody reads from.
//!
//! An SSE response is written, never read: hyper does not read the socket
//! while the body streams, so a client that closes its end is noticed only
//! when a write fails — up to two keep-alives later — while its session
//! holds a connection place. Here one thread watches those sockets for a
//! peer's hang-up (`EPOLLRDHUP`) in an epoll set of its own, so a departed
//! client ends its session at once, for one descriptor in all (the epoll's;
//! the sockets are hyper's, watched, not duplicated).
//!
//! Each watch is one-shot and carries the watcher's own id, not the fd: a
//! socket closed by hyper leaves the set by itself, and a number reused by a
//! later socket never wakes an old watcher.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

struct PeerWatch {
    epoll: OwnedFd,
    watchers: Mutex<HashMap<u64, Arc<Notify>>>,
    next_id: AtomicU64,
}

/// A socket being watched; stops watching when dropped.
pub struct Watch {
    id: u64,
    hung_up: Arc<Notify>,
}

impl Watch {
    /// Completes once the peer has hung up.
    pub async fn hung_up(&self) {
        self.hung_up.notified().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(w) = watcher() {
            w.watchers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
        }
    }
}

/// Watches `fd` (a connected socket that stays open while the watch is
/// wanted). `None` if the watching thread could not be started: the session
/// then learns of a hang-up from its writes, as before.
pub fn watch(fd: RawFd) -> Option<Watch> {
    let w = watcher()?;
    let id = w.next_id.fetch_add(1, Ordering::Relaxed);
    let hung_up = Arc::new(Notify::new());
    w.watchers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, hung_up.clone());
    let mut event = libc::epoll_event {
        events: (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLONESHOT) as u32,
        u64: id,
    };
    // SAFETY: plain syscalls on descriptors we hold; `event` outlives the call.
    let added = unsafe {
        libc::epoll_ctl(w.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) == 0
            || (std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST)
                // The socket carried an earlier stream (keep-alive): re-arm it for us.
                && libc::epoll_ctl(w.epoll.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut event) == 0)
    };
    added.then_some(Watch { id, hung_up })
}

fn watcher() -> Option<&'static PeerWatch> {
    static WATCHER: OnceLock<Option<PeerWatch>> = OnceLock::new();
    WATCHER.get_or_init(start).as_ref()
}

fn start() -> Option<PeerWatch> {
    // SAFETY: epoll_create1 returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        crate::warn!(
            "cannot watch streams for hang-ups: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
    let epfd = epoll.as_raw_fd();
    let started = std::thread::Builder::new()
        .name("peer-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || run(epfd));
    if let Err(e) = started {
        crate::warn!("cannot watch streams for hang-ups: {e}");
        return None;
    }
    Some(PeerWatch {
        epoll,
        watchers: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    })
}

fn run(epfd: RawFd) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        // SAFETY: `events` is a valid buffer of 64 entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let Some(w) = watcher() else { return };
        let watchers = w.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for e in &events[..n as usize] {
            let id = e.u64;
            if let Some(hung_up) = watchers.get(&id) {
                hung_up.notify_one();
            }
        }
    }
}

//! SIGPIPE. tokio writes to sockets with `writev`, which raises SIGPIPE when the peer has gone
//! (rustls' TLS records go out that way, and `writev` has no MSG_NOSIGNAL); its default action
//! terminates the process. Rust, Python, Node and the JVM ignore SIGPIPE at start-up, so their
//! agents only see the write fail (EPIPE) and core handles that; a C program usually has not,
//! and would die whenever a peer or the registry went away mid-write.

use std::sync::Once;

/// Ignores SIGPIPE if it still has its default action. A disposition the host chose (its own
/// handler, or ignoring it already) is left alone and never replaced, not even for a moment:
/// the disposition is read first, and changed only when it is SIG_DFL.
#[cfg(unix)]
pub(crate) fn ignore_if_default() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value of the plain C struct; it is only
        // filled in by the kernel here.
        let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a NULL new action makes this a pure query; `current` is valid for writing.
        if unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut current) } != 0 {
            return;
        }
        if current.sa_sigaction != libc::SIG_DFL {
            return;
        }
        // SAFETY: as above, then filled in field by field: SIG_IGN runs no code, the empty mask
        // and no flags are what `signal(SIGPIPE, SIG_IGN)` installs.
        let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
        ignore.sa_sigaction = libc::SIG_IGN;
        // SAFETY: `ignore.sa_mask` is valid for writing.
        unsafe { libc::sigemptyset(&mut ignore.sa_mask) };
        // SAFETY: `ignore` is a complete action; a NULL old action is allowed. A host that
        // installs its own handler between the query and this call (racing its own start-up
        // against toolmesh's) would see it replaced; a host that cares sets it before starting.
        unsafe { libc::sigaction(libc::SIGPIPE, &ignore, std::ptr::null_mut()) };
    });
}

#[cfg(not(unix))]
pub(crate) fn ignore_if_default() {}

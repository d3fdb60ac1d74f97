//! SIGPIPE. tokio writes to sockets with `writev`, which raises SIGPIPE when the peer has gone;
//! its default action terminates the process. Rust, Python, Node and the JVM ignore SIGPIPE at
//! start-up, so their agents only see the write fail (EPIPE) and core handles that; a C program
//! usually has not, and would die whenever a peer or the registry went away mid-write.

use std::sync::Once;

/// Ignores SIGPIPE if it still has its default action. A disposition the host chose (its own
/// handler, or ignoring it already) is left alone.
#[cfg(unix)]
pub(crate) fn ignore_if_default() {
    // The same numbers on Linux, macOS and the BSDs; std has no binding for `signal`.
    const SIGPIPE: std::ffi::c_int = 13;
    const SIG_DFL: usize = 0;
    const SIG_IGN: usize = 1;
    extern "C" {
        fn signal(signum: std::ffi::c_int, handler: usize) -> usize;
    }
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `signal` with SIG_IGN installs no code; the previous disposition it returns
        // (SIG_DFL, SIG_IGN or the host's handler) is put back unchanged unless it was SIG_DFL.
        unsafe {
            let previous = signal(SIGPIPE, SIG_IGN);
            if previous != SIG_DFL {
                signal(SIGPIPE, previous);
            }
        }
    });
}

#[cfg(not(unix))]
pub(crate) fn ignore_if_default() {}

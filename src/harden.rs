//! Keeps the tokens in this process's memory to this process: no core dump (a `SIGQUIT` core
//! of the proxy once held six copies of a token) and, on Linux, not dumpable, which also keeps
//! a process of the same user from attaching with ptrace or reading `/proc/<pid>/mem`.
//!
//! On Linux the mark does not pass to programs tokenkeeper runs (`exec` runs the agent as an
//! ordinary process): the kernel resets "dumpable" on execve. Elsewhere the soft core-size
//! limit is set to 0 (the hard one is kept, so a child may raise it). What this does not stop: a process of the same user can still run
//! `tokenkeeper get` itself; a sandbox needs another user or a proxy it cannot call.

use tracing::debug;

/// Applies the mark; a failure is logged and ignored (a platform may not have it).
pub fn process() {
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        debug!(error = %err, "could not mark the process non-dumpable");
    }
    #[cfg(not(target_os = "linux"))]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let turned_off = getrlimit(Resource::RLIMIT_CORE)
            .and_then(|(_, hard)| setrlimit(Resource::RLIMIT_CORE, 0, hard));
        if let Err(err) = turned_off {
            debug!(error = %err, "could not turn core dumps off");
        }
    }
}

/// Whether this process is marked as not dumpable (always true where there is no such mark).
pub fn is_protected() -> bool {
    #[cfg(target_os = "linux")]
    return nix::sys::prctl::get_dumpable().is_ok_and(|dumpable| !dumpable);
    #[cfg(not(target_os = "linux"))]
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_is_marked() {
        super::process();
        assert!(super::is_protected());
    }
}

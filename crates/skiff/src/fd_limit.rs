//! The open-file limit of a long-running `skiff server` or `skiff agent`: the soft
//! `RLIMIT_NOFILE` is raised to the hard one at start, as the Go runtime does for
//! kube-apiserver and the kubelet. systemd and most shells start services with a soft limit of
//! 1024 (hard 524288); at 1024 a thousand idle or slow-loris connections exhaust the
//! descriptors, `accept` fails and every client — kubectl included — waits in the backlog until
//! the idle timeout frees some. The connection cap (`ServeLimits::max_connections`) is meant to
//! be the limit, not the descriptor table.

/// Raises the soft open-file limit to the hard limit; returns `(old, new)` soft limits, or
/// `None` when the limits cannot be read or set (the process goes on with what it has).
pub(crate) fn raise_nofile() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let old = limit.rlim_cur;
        if old >= limit.rlim_max {
            return Some((old, old));
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return None;
        }
        Some((old, limit.rlim_cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (_, new) = raise_nofile().expect("read and set RLIMIT_NOFILE");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit into a valid struct.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(new, limit.rlim_cur);
    }
}

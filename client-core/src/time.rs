//! Clocks: wall time in unix milliseconds, and the calling thread's CPU time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now()) as i64
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The calling thread's CPU time. Work that runs without an await in
/// between stays on one thread, so a difference of two readings is what
/// that work cost.
pub(crate) fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a
        // constant every unix libc defines.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

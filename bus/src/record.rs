//! Reading the records consumers' BPF programs send to user space: their
//! times (CLOCK_BOOTTIME, what BPF can read) as wall-clock times, and their
//! fixed-size C strings.

use std::os::raw::c_char;
use std::time::{Duration, SystemTime};

/// Turns boot-clock nanoseconds into wall-clock times (the offset taken once).
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    boot_offset: Duration,
}

impl Default for BootClock {
    fn default() -> Self {
        BootClock::new()
    }
}

impl BootClock {
    pub fn new() -> BootClock {
        // SAFETY: a zeroed timespec is valid; clock_gettime fills it.
        let boot = unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts);
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        BootClock {
            boot_offset: now.saturating_sub(boot),
        }
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + self.boot_offset + Duration::from_nanos(boot_ns)
    }
}

/// A NUL-terminated (or full) C string field; invalid UTF-8 replaced.
pub fn c_string(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_times_become_todays() {
        let c = BootClock::new();
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot_now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        let skew = c
            .wall(boot_now)
            .duration_since(SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(1), "{skew:?}");
    }

    #[test]
    fn c_strings_stop_at_the_nul_or_the_end() {
        let raw = [b'a' as c_char, b'b' as c_char, 0, b'c' as c_char];
        assert_eq!(c_string(&raw), "ab");
        assert_eq!(c_string(&raw[..2]), "ab");
        assert_eq!(c_string(&[0xff_u8 as c_char]), "\u{fffd}");
    }
}

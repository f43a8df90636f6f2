//! Keeping the feeder's resident memory near what it uses. glibc gives each
//! thread that allocates an arena of its own and keeps freed pages mapped;
//! after a burst (a full listing of a node's pods is tens of MB of JSON read
//! through) that shows up as resident memory nobody uses. So: few arenas,
//! and freed pages handed back after a burst.

/// Arenas for the whole process; call first thing in `main`.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; M_ARENA_MAX takes a count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed threshold: glibc otherwise raises it to the size of each
        // large block freed, and the next pages of a pod listing land in the
        // heap between long-lived entries, where they cannot be given back.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Return freed heap pages to the kernel (after a burst of work).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! How the process's memory allocator treats the tensors a CPU run frees.
//!
//! glibc's malloc serves every block above its mmap threshold (128 KiB, rising as it goes) from
//! fresh pages of the OS and returns them when freed, so each training step faulted in and zeroed
//! its activations and gradients anew: 18 % of an `mnist-cpu` step at batch 64 on burn-flex
//! (`bench/profile_cpu.py train`). Raised thresholds keep freed blocks in the heap for the next
//! step's tensors of the same sizes.

/// Keeps freed blocks of up to 32 MiB (glibc's largest mmap threshold) in the heap and the heap
/// from shrinking. Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's thresholds; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

//! Fuzzing on a small stack, so recursion bombs are found.
//!
//! Why: the service runs this code on tokio's worker threads (2 MiB stacks), and libFuzzer calls the
//! target on the main thread (8 MiB). A condition of 100,000 nested parentheses overflowed 2 MiB; on
//! 8 MiB the old code needed tens of thousands of levels, far past what a fuzzer grows inputs to in
//! minutes. That is one reason the config target never found the overflow; the bounds now stop it long
//! before any stack does, and these targets check that they still fit a quarter of a worker's stack.
//!
//! How: the main thread's stack may grow only 256 KiB past what it uses when the first input arrives
//! (`RLIMIT_STACK`, which the kernel checks each time the main stack grows). The target stays on the
//! main thread because libFuzzer's stack-depth feature (inputs that recurse deeper are kept) reads a
//! thread-local the instrumentation updates: on another thread libFuzzer would never see depth, and
//! would not steer towards bombs.
//!
//! An overflow must also be *reported*. libFuzzer owns `main`, so Rust's own overflow handler is never
//! installed, and libFuzzer's SIGSEGV handler ran on the stack the overflow had used up: the process died
//! with a bare SIGSEGV, no report and no saved input. So the main thread gets an alternate signal stack
//! and libFuzzer's handlers are re-installed to run on it.

use std::sync::Once;

/// How far the main thread's stack may grow past its use when fuzzing starts.
const HEADROOM: u64 = 256 * 1024;
/// Room for libFuzzer's crash handler (it formats a report and writes the input to a file).
const SIGNAL_STACK: usize = 256 * 1024;

static SMALL_STACK: Once = Once::new();

/// The size of the main thread's stack mapping now (`[stack]` in `/proc/self/maps`).
fn main_stack_in_use() -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
    let range = line.split_whitespace().next()?;
    let (start, end) = range.split_once('-')?;
    Some(u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?)
}

/// Limits the main thread's stack and makes crashes on it reportable; once, on the main thread.
fn set_up() {
    SMALL_STACK.call_once(|| {
        let in_use = main_stack_in_use().expect("the main thread's stack is in /proc/self/maps");
        let limit = libc::rlimit { rlim_cur: in_use + HEADROOM, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: setrlimit reads the struct given.
        let limited = unsafe { libc::setrlimit(libc::RLIMIT_STACK, &limit) };
        assert_eq!(limited, 0, "RLIMIT_STACK could not be lowered");
        // The alternate signal stack lives as long as the process.
        let memory: &'static mut [u8] = Box::leak(vec![0u8; SIGNAL_STACK].into_boxed_slice());
        let stack = libc::stack_t { ss_sp: memory.as_mut_ptr().cast(), ss_flags: 0, ss_size: SIGNAL_STACK };
        // SAFETY: `memory` is leaked, so the signal stack stays valid for good.
        unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) };
        for signal in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: reads the current action (libFuzzer's) and sets it again with one more flag.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut action) == 0 {
                    action.sa_flags |= libc::SA_ONSTACK;
                    libc::sigaction(signal, &action, std::ptr::null_mut());
                }
            }
        }
    });
}

/// Runs `f` on the main thread, whose stack may grow only [`HEADROOM`] past its use when fuzzing started;
/// a stack overflow is reported by libFuzzer as a crash (`deadly signal`) with the input saved.
pub fn on_small_stack<T>(f: impl FnOnce() -> T) -> T {
    set_up();
    f()
}

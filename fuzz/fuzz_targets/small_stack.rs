//! Why the targets run on a small stack: the service runs this code on tokio's worker threads (2 MiB
//! stacks) and libFuzzer calls the target on the main thread (8 MiB). A recursion bomb that needs 200 KB
//! of input to overflow 2 MiB would need 800 KB to overflow 8 MiB: far past what a fuzzer grows inputs
//! to in minutes, which is why the config target never found the 100,000-parenthesis condition. On 256
//! KiB the same bomb overflows at a few kilobytes, which the fuzzer reaches in seconds, while everything
//! the project's bounds let through still fits (the bounds' own tests run their worst cases on 256 KiB).

/// Runs `f` on a thread with a 256 KiB stack and returns what it returns; a stack overflow there aborts
/// the process, which libFuzzer reports as a crash with the input.
pub fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("a fuzzing thread starts")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

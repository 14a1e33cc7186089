//! `honua serve` as a child process: a free port, readiness, and a guard that kills it.

/// A child process (a `honua serve` replica) killed and reaped however the test ends.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `honua serve` at `url` answers `/readyz`.
pub async fn wait_ready(client: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("honua serve did not become ready at {url}");
}

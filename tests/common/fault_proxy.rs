//! A TCP fault proxy: sits between a client and a server on loopback and, on command, delays the
//! bytes, resets connections, swallows them (a blackhole: connected, nothing answers) or dribbles them
//! out a few bytes at a time. The faults are the network's, below HTTP, so whatever speaks through the
//! proxy (octocrab, reqwest, libgit2, sqlx) meets them as it would in production.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Bytes pass untouched.
    Pass,
    /// Every chunk waits this long before it is passed on, in both directions.
    Latency(Duration),
    /// Open connections are reset (RST) and new ones are reset as soon as they connect, as a server
    /// that is restarting or a firewall rejecting.
    Reset,
    /// Nothing passes either way on a connection made or used while it holds: its bytes are dropped for
    /// good, as when a firewall or a NAT silently loses the flow. Only the ends' timeouts get them out;
    /// connections made after it is lifted work.
    Blackhole,
    /// Bytes pass `chunk` at a time, one chunk every `every`.
    Slow { chunk: usize, every: Duration },
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Bumped to reset every open connection.
    cuts: watch::Sender<u64>,
    /// Connections accepted so far: a test can see the traffic really went through the proxy.
    accepted: Arc<AtomicUsize>,
    /// `true` while the port is closed (connections refused).
    down: watch::Sender<bool>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, _) = watch::channel(Fault::Pass);
        let (cuts, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let (down, mut is_down) = watch::channel(false);
        let (faults, cut_signal, count) = (fault.clone(), cuts.clone(), accepted.clone());
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(open) = &listener else {
                    // Closed: the port refuses connections until it is bound again.
                    if is_down.wait_for(|d| !*d).await.is_err() {
                        return;
                    }
                    listener = Some(TcpListener::bind(addr).await.expect("the proxy's port is free again"));
                    continue;
                };
                tokio::select! {
                    accepted = open.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(relay(client, upstream, faults.subscribe(), cut_signal.subscribe()));
                    }
                    changed = is_down.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if *is_down.borrow_and_update() {
                            listener = None;
                        }
                    }
                }
            }
        });
        FaultProxy { addr, fault, cuts, accepted, down }
    }

    /// The proxy standing in for `url` (`scheme://host:port/...`): same scheme and path, the proxy's port.
    pub async fn for_url(url: &str) -> FaultProxy {
        let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
        let upstream = tokio::net::lookup_host(authority).await.unwrap().next().unwrap();
        FaultProxy::start(upstream).await
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn rewrite(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let userinfo = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
        let slash = if rest.contains('/') { "/" } else { "" };
        format!("{scheme}://{userinfo}{}{slash}{path}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        if fault == Fault::Reset {
            self.cut();
        }
        self.fault.send_replace(fault);
    }

    /// Resets every open connection now.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// A server restart: open connections reset, the port closed (connections refused) for `down`, then
    /// open again.
    pub async fn restart(&self, down: Duration) {
        self.down.send_replace(true);
        self.cut();
        tokio::time::sleep(down).await;
        self.down.send_replace(false);
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Closes with RST rather than FIN: the peer sees "connection reset", not an orderly end.
fn reset(stream: &TcpStream) {
    #[allow(deprecated)] // a zero linger does not block, which is what the deprecation is about
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    mut cuts: watch::Receiver<u64>,
) {
    cuts.mark_unchanged();
    let dead = AtomicBool::new(false);
    match *fault.borrow_and_update() {
        Fault::Reset => return reset(&client),
        Fault::Blackhole => dead.store(true, Ordering::SeqCst),
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return reset(&client) };
    let (from_client, mut to_client) = client.into_split();
    let (from_server, mut to_server) = server.into_split();
    let cut = tokio::select! {
        _ = async {
            tokio::join!(
                pump(from_client, &mut to_server, fault.clone(), &dead),
                pump(from_server, &mut to_client, fault.clone(), &dead),
            )
        } => false,
        _ = cuts.changed() => true,
    };
    if cut {
        reset(to_client.as_ref());
        reset(to_server.as_ref());
    }
}

async fn pump(mut from: OwnedReadHalf, to: &mut OwnedWriteHalf, fault: watch::Receiver<Fault>, dead: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let now = fault.borrow().clone();
        if now == Fault::Blackhole {
            dead.store(true, Ordering::SeqCst);
        }
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        let written = match now {
            Fault::Latency(d) => {
                tokio::time::sleep(d).await;
                to.write_all(&buf[..n]).await
            }
            Fault::Slow { chunk, every } => {
                let mut result = Ok(());
                for piece in buf[..n].chunks(chunk.max(1)) {
                    result = to.write_all(piece).await;
                    if result.is_err() {
                        break;
                    }
                    tokio::time::sleep(every).await;
                }
                result
            }
            _ => to.write_all(&buf[..n]).await,
        };
        if written.is_err() {
            return;
        }
    }
}

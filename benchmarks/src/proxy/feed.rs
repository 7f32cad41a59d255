//! The upstream of `proxy_fanout`: a jsonrpsee 0.26 websocket server (the
//! same kind and settings as the benchmarks' server, one worker thread)
//! with one subscription, `subscribe_feed` with `[m]`: accepted at once
//! and counted, it waits for the start signal, then sends `feed`
//! notifications with results 1..=m as fast as the connection's queue
//! takes them, then stays open until unsubscribed (at most 120 s).
//!
//! Every subscription starts on the same signal, so subscribers that joined
//! at different times all see the whole feed, and the upstream's count
//! shows how many subscriptions the proxy made.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, Result};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::server::{RpcModule, Server, ServerConfig};
use jsonrpsee::SubscriptionMessage;
use tokio::sync::{oneshot, watch};

use crate::server::MAX_MESSAGE;

pub const SUBSCRIBE: &str = "subscribe_feed";
pub const UNSUBSCRIBE: &str = "unsubscribe_feed";
pub const NOTIFICATION: &str = "feed";

/// No subscription outlives this, waiting or done.
const HOLD: Duration = Duration::from_secs(120);

/// What the feed server tells the benchmark, and the start signal.
pub struct FeedState {
    /// Subscriptions accepted since the last [`FeedState::reset`].
    made: AtomicU64,
    /// Subscriptions open now.
    open: AtomicU64,
    start: watch::Sender<bool>,
}

impl FeedState {
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Acquire)
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    /// Counts from 0 again; subscriptions wait for [`FeedState::start`].
    pub fn reset(&self) {
        self.start.send_replace(false);
        self.made.store(0, Ordering::Release);
    }

    /// Every subscription, open or to come, sends its items.
    pub fn start(&self) {
        self.start.send_replace(true);
    }
}

/// One open subscription, counted while it lives.
struct Open(Arc<FeedState>);

impl Open {
    fn new(state: &Arc<FeedState>) -> Open {
        state.made.fetch_add(1, Ordering::AcqRel);
        state.open.fetch_add(1, Ordering::AcqRel);
        Open(Arc::clone(state))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The feed server on a thread of its own; stopped (bounded) on drop.
pub struct FeedServer {
    pub url: String,
    pub state: Arc<FeedState>,
    stop: Option<oneshot::Sender<()>>,
    ended: mpsc::Receiver<()>,
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            self.ended.recv_timeout(Duration::from_secs(10))
        {
            eprintln!("warning: the feed server did not stop within 10 s (left behind)");
        }
    }
}

impl FeedServer {
    pub fn start() -> Result<FeedServer> {
        let state = Arc::new(FeedState {
            made: AtomicU64::new(0),
            open: AtomicU64::new(0),
            start: watch::channel(false).0,
        });
        let (ready_tx, ready_rx) = mpsc::channel::<Result<SocketAddr>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ended_tx, ended) = mpsc::channel::<()>();
        let server_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("bench-feed".into())
            .spawn(move || {
                let _ended = ended_tx;
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("bench-feed-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let handle = match serve(server_state).await {
                        Ok((addr, handle)) => {
                            let _ = ready_tx.send(Ok(addr));
                            handle
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = stop_rx.await;
                    let _ = handle.stop();
                    let _ = tokio::time::timeout(Duration::from_secs(2), handle.stopped()).await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(15))
            .map_err(|_| anyhow!("the feed server did not start"))??;
        Ok(FeedServer {
            url: format!("ws://{addr}"),
            state,
            stop: Some(stop_tx),
            ended,
        })
    }
}

async fn serve(state: Arc<FeedState>) -> Result<(SocketAddr, jsonrpsee::server::ServerHandle)> {
    let config = ServerConfig::builder()
        .ws_only()
        .max_request_body_size(MAX_MESSAGE)
        .max_response_body_size(MAX_MESSAGE)
        .max_connections(20_000)
        // The jsonrpsee proxy makes every downstream's subscription on its
        // one upstream connection.
        .max_subscriptions_per_connection(100_000)
        .set_tcp_no_delay(true)
        .build();
    let server = Server::builder()
        .set_config(config)
        .build("127.0.0.1:0")
        .await?;
    let addr = server.local_addr()?;
    let mut module = RpcModule::from_arc(state);
    module.register_subscription(
        SUBSCRIBE,
        NOTIFICATION,
        UNSUBSCRIBE,
        |params, pending, state: Arc<FeedState>, _| async move {
            let n: u64 = match params.one() {
                Ok(n) => n,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            let sink = pending.accept().await?;
            let _open = Open::new(&state);
            let mut start = state.start.subscribe();
            tokio::select! {
                started = start.wait_for(|go| *go) => {
                    if started.is_err() {
                        return Ok(());
                    }
                }
                () = sink.closed() => return Ok(()),
                () = tokio::time::sleep(HOLD) => return Ok(()),
            }
            let (method, id) = (sink.method_name(), sink.subscription_id());
            for k in 1..=n {
                sink.send(SubscriptionMessage::new(method, id.clone(), &k)?)
                    .await?;
            }
            let _ = tokio::time::timeout(HOLD, sink.closed()).await;
            SubscriptionResult::Ok(())
        },
    )?;
    Ok((addr, server.start(module)))
}

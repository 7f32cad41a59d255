//! The two proxies under test, each on ONE thread of its own, in front of
//! the same upstream:
//!
//! - **ours**: actix-web (`HttpServer`, one worker) serving
//!   `proxy::resource("/")` (a `POST` is JSON-RPC over HTTP, an upgrade a
//!   websocket session) with one [`Forward`] over one upstream
//!   `RpcConnection`. The connection is made by an `App::data_factory`, so
//!   its actor runs on the worker's thread too.
//! - **jsonrpsee**: a jsonrpsee 0.26 server (HTTP and websocket on one
//!   port) on a tokio runtime with one worker, whose RPC middleware forwards
//!   every call and notification over one shared jsonrpsee `WsClient` to the
//!   upstream: the request's params go on as the `RawValue` the server
//!   already holds (not parsed again) and the result comes back as a
//!   `Box<RawValue>`. The subscribe method is a registered subscription
//!   that makes an upstream subscription of its own and passes its items
//!   on, which is how a jsonrpsee server proxies one.
//!
//! Both threads count their allocations (`alloc::count_this_thread`), and a
//! [`Prober`] reads each one's CPU time and live heap on that thread.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use anyhow::{anyhow, Context as _, Result};
use jsonrpc_websocket::proxy::{self, Forward, ProxyConfig, Upstreams};
use jsonrpc_websocket::{Overflow, RpcConnection};
use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, Request, RpcServiceT};
use jsonrpsee::core::server::BatchResponseBuilder;
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::core::ClientError;
use jsonrpsee::server::middleware::rpc::RpcServiceBuilder;
use jsonrpsee::server::{RpcModule, Server, ServerConfig};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{MethodResponse, ResponsePayload};
use jsonrpsee_core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee_ws_client::{WsClient, WsClientBuilder};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::feed::{NOTIFICATION, SUBSCRIBE, UNSUBSCRIBE};
use crate::alloc::{self, Snapshot};
use crate::server::MAX_MESSAGE;

/// The error code both proxies answer with when the upstream gave no
/// answer (the library's `proxy::codes::UPSTREAM_UNAVAILABLE`).
const UPSTREAM_UNAVAILABLE: i32 = -32002;
/// How long a proxy may take to start or to stop.
const START_LIMIT: Duration = Duration::from_secs(15);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// What the proxies are told that differs between scenarios.
#[derive(Clone, Copy, Debug)]
pub struct FrontOptions {
    /// Notifications queued per subscription before anything is dropped
    /// (ours: per downstream subscriber; jsonrpsee: per upstream
    /// subscription, its client's `max_buffer_capacity_per_subscription`).
    pub queue: usize,
}

impl Default for FrontOptions {
    /// 1,024: the default of both.
    fn default() -> Self {
        FrontOptions { queue: 1_024 }
    }
}

/// The CPU time and live heap of a proxy's thread at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub cpu: Duration,
    pub heap: Snapshot,
}

impl Probe {
    fn here() -> Probe {
        Probe {
            cpu: crate::cpu::thread_cpu(),
            heap: Snapshot::now(),
        }
    }
}

/// Reads a [`Probe`] on a proxy's thread; `None` for no proxy (direct).
#[derive(Clone)]
pub enum Prober {
    None,
    Arbiter(actix_rt::ArbiterHandle),
    Tokio(tokio::runtime::Handle),
}

impl Prober {
    pub async fn probe(&self) -> Result<Option<Probe>> {
        let (tx, rx) = oneshot::channel();
        let sent = match self {
            Prober::None => return Ok(None),
            Prober::Arbiter(arbiter) => arbiter.spawn_fn(move || {
                let _ = tx.send(Probe::here());
            }),
            // One worker: whichever runs it is the proxy's thread.
            Prober::Tokio(runtime) => {
                runtime.spawn(async move {
                    let _ = tx.send(Probe::here());
                });
                true
            }
        };
        anyhow::ensure!(sent, "the proxy's thread is gone");
        let probe = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .context("the proxy's thread did not answer a probe in 5 s")??;
        Ok(Some(probe))
    }
}

/// A running proxy; stopped (bounded) on drop.
pub struct Front {
    pub addr: SocketAddr,
    pub prober: Prober,
    name: &'static str,
    stop: Option<Box<dyn FnOnce() + Send>>,
    /// Disconnected when the proxy's thread has ended.
    ended: mpsc::Receiver<()>,
}

impl Front {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.ended.recv_timeout(STOP_LIMIT) {
            eprintln!(
                "warning: the {} proxy did not stop within {STOP_LIMIT:?} (left behind)",
                self.name
            );
        }
    }
}

/// Our proxy in front of `upstream`.
pub fn start_ours(upstream: &str, options: FrontOptions) -> Result<Front> {
    let upstream = upstream.to_owned();
    let config = ProxyConfig::new()
        .max_body(MAX_MESSAGE as usize)
        .timeout(Duration::from_secs(60))
        // Above the deepest window (256): never a -32005.
        .per_client_in_flight(1_024)
        .subscription(SUBSCRIBE, UNSUBSCRIBE)
        .subscriber_queue(options.queue, Overflow::DropOldest);
    let (ready_tx, ready_rx) =
        mpsc::channel::<Result<(SocketAddr, actix_web::dev::ServerHandle)>>();
    let (worker_tx, worker_rx) = mpsc::channel::<Result<actix_rt::ArbiterHandle, String>>();
    let (ended_tx, ended) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("proxy-ours".into())
        .spawn(move || {
            let _ended = ended_tx;
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let (upstream, config, worker_tx) =
                        (upstream.clone(), config.clone(), worker_tx.clone());
                    App::new()
                        .data_factory(move || {
                            let (upstream, config, worker_tx) =
                                (upstream.clone(), config.clone(), worker_tx.clone());
                            async move {
                                alloc::count_this_thread();
                                let connected = RpcConnection::builder(&upstream)
                                    .max_message_size(MAX_MESSAGE as usize)
                                    .request_timeout(Duration::from_secs(60))
                                    .max_in_flight(20_000)
                                    .connect()
                                    .await;
                                let _ = worker_tx.send(match &connected {
                                    Ok(_) => Ok(actix_rt::Arbiter::current()),
                                    Err(e) => Err(format!("upstream: {e}")),
                                });
                                let client = connected?;
                                Ok::<_, jsonrpc_websocket::Error>(
                                    Forward::new(Upstreams::new([client])).config(config),
                                )
                            }
                        })
                        .service(proxy::resource("/"))
                })
                .workers(1)
                .tcp_nodelay(true)
                .disable_signals()
                .shutdown_timeout(1);
                let server = match server.bind(("127.0.0.1", 0)) {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let addr = server.addrs()[0];
                let server = server.run();
                let _ = ready_tx.send(Ok((addr, server.handle())));
                let _ = server.await;
            });
        })?;
    let (addr, handle) = ready_rx
        .recv_timeout(START_LIMIT)
        .map_err(|_| anyhow!("our proxy did not start"))??;
    let stop = move || {
        // Sent at once; the future only waits for the workers.
        drop(handle.stop(false));
    };
    let mut front = Front {
        addr,
        prober: Prober::None,
        name: "ours",
        stop: Some(Box::new(stop)),
        ended,
    };
    let worker = worker_rx
        .recv_timeout(START_LIMIT)
        .map_err(|_| anyhow!("our proxy's worker did not start"))?
        .map_err(|e| anyhow!(e))?;
    front.prober = Prober::Arbiter(worker);
    Ok(front)
}

/// The jsonrpsee client behind the jsonrpsee proxy: the benchmarks'
/// jsonrpsee client settings.
async fn upstream_client(url: &str, queue: usize) -> Result<WsClient> {
    Ok(WsClientBuilder::new()
        .max_request_size(MAX_MESSAGE)
        .max_response_size(MAX_MESSAGE)
        .max_concurrent_requests(20_000)
        .max_buffer_capacity_per_subscription(queue)
        .request_timeout(Duration::from_secs(60))
        .set_tcp_no_delay(true)
        .build(url)
        .await?)
}

/// The jsonrpsee-based proxy in front of `upstream`.
pub fn start_jsonrpsee(upstream: &str, options: FrontOptions) -> Result<Front> {
    let upstream = upstream.to_owned();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(SocketAddr, tokio::runtime::Handle)>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ended_tx, ended) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("proxy-jsonrpsee".into())
        .spawn(move || {
            let _ended = ended_tx;
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("proxy-jsonrpsee-worker")
                .on_thread_start(alloc::count_this_thread)
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
                let started = async {
                    let client = Arc::new(upstream_client(&upstream, options.queue).await?);
                    let mut module = RpcModule::from_arc(Arc::clone(&client));
                    module.register_subscription(
                        SUBSCRIBE,
                        NOTIFICATION,
                        UNSUBSCRIBE,
                        |params, pending, client: Arc<WsClient>, _| async move {
                            let params = params
                                .as_str()
                                .map(|p| RawValue::from_string(p.to_owned()))
                                .transpose()?;
                            let subscribed: Result<Subscription<Box<RawValue>>, _> = client
                                .subscribe(SUBSCRIBE, RawParams(params), UNSUBSCRIBE)
                                .await;
                            let mut upstream = match subscribed {
                                Ok(sub) => sub,
                                Err(e) => {
                                    pending.reject(upstream_error(e)).await;
                                    return Ok(());
                                }
                            };
                            let sink = pending.accept().await?;
                            loop {
                                tokio::select! {
                                    item = upstream.next() => match item {
                                        Some(Ok(item)) => {
                                            if sink.send(item).await.is_err() {
                                                break;
                                            }
                                        }
                                        Some(Err(e)) => return Err(e.into()),
                                        None => break,
                                    },
                                    () = sink.closed() => break,
                                }
                            }
                            let _ = upstream.unsubscribe().await;
                            Ok(())
                        },
                    )?;
                    let config = ServerConfig::builder()
                        .max_request_body_size(MAX_MESSAGE)
                        .max_response_body_size(MAX_MESSAGE)
                        .max_connections(20_000)
                        .set_tcp_no_delay(true)
                        .build();
                    let middleware = RpcServiceBuilder::new().layer_fn(move |inner| Forwarder {
                        inner,
                        upstream: Arc::clone(&client),
                    });
                    let server = Server::builder()
                        .set_config(config)
                        .set_rpc_middleware(middleware)
                        .build("127.0.0.1:0")
                        .await?;
                    let addr = server.local_addr()?;
                    Ok::<_, anyhow::Error>((addr, server.start(module)))
                };
                let handle = match started.await {
                    Ok((addr, handle)) => {
                        let _ = ready_tx.send(Ok((addr, tokio::runtime::Handle::current())));
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
    let (addr, runtime) = ready_rx
        .recv_timeout(START_LIMIT)
        .map_err(|_| anyhow!("the jsonrpsee proxy did not start"))??;
    Ok(Front {
        addr,
        prober: Prober::Tokio(runtime),
        name: "jsonrpsee",
        stop: Some(Box::new(move || {
            let _ = stop_tx.send(());
        })),
        ended,
    })
}

/// Params passed on as the raw JSON the server already holds.
struct RawParams(Option<Box<RawValue>>);

impl ToRpcParams for RawParams {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(self.0)
    }
}

/// An upstream failure as the error object the downstream gets: the
/// upstream's own error, or -32002.
fn upstream_error(e: ClientError) -> ErrorObjectOwned {
    match e {
        ClientError::Call(error) => error,
        other => ErrorObjectOwned::owned(UPSTREAM_UNAVAILABLE, other.to_string(), None::<()>),
    }
}

/// The jsonrpsee proxy's catch-all: every call and notification goes
/// upstream, except the subscription methods, which the module's
/// registered subscription handles.
#[derive(Clone)]
struct Forwarder<S> {
    inner: S,
    upstream: Arc<WsClient>,
}

impl<S> RpcServiceT for Forwarder<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(
        &self,
        req: Request<'a>,
    ) -> impl std::future::Future<Output = MethodResponse> + Send + 'a {
        let (inner, upstream) = (self.inner.clone(), Arc::clone(&self.upstream));
        async move {
            if req.method == SUBSCRIBE || req.method == UNSUBSCRIBE {
                return inner.call(req).await;
            }
            let Request {
                id,
                method,
                params,
                extensions,
                ..
            } = req;
            let params = RawParams(params.map(Cow::into_owned));
            let answer = upstream.request::<Box<RawValue>, _>(&method, params).await;
            match answer {
                Ok(result) => MethodResponse::response(
                    id,
                    ResponsePayload::success(result),
                    MAX_MESSAGE as usize,
                ),
                Err(e) => MethodResponse::error(id, upstream_error(e)),
            }
            .with_extensions(extensions)
        }
    }

    fn batch<'a>(
        &self,
        batch: Batch<'a>,
    ) -> impl std::future::Future<Output = MethodResponse> + Send + 'a {
        let this = self.clone();
        async move {
            let mut answers = BatchResponseBuilder::new_with_limit(MAX_MESSAGE as usize);
            for entry in batch {
                let answer = match entry {
                    Ok(BatchEntry::Call(req)) => this.call(req).await,
                    Ok(BatchEntry::Notification(n)) => {
                        this.notification(n).await;
                        continue;
                    }
                    Err(e) => {
                        let (error, id) = e.into_parts();
                        MethodResponse::error(id, error)
                    }
                };
                if let Err(too_big) = answers.append(answer) {
                    return too_big;
                }
            }
            if answers.is_empty() {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(answers.finish())
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl std::future::Future<Output = MethodResponse> + Send + 'a {
        let upstream = Arc::clone(&self.upstream);
        async move {
            let params = RawParams(n.params.map(Cow::into_owned));
            if let Err(e) = upstream.notification(&n.method, params).await {
                eprintln!("jsonrpsee proxy: a notification could not go upstream: {e}");
            }
            MethodResponse::notification().with_extensions(n.extensions)
        }
    }
}

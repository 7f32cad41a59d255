//! This crate, two ways: through [`Client`] and through the actor's address
//! with `Addr::send(Call)`. Both run inside an actix `System` on the client
//! thread.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use jsonrpc_websocket::{
    params, Batch, Call, Client, ErrorObject, Notify, Params, RpcConnection, ServerRequest, Slot,
    Subscribe, Subscription, SubscriptionItem,
};
use serde_json::Value;

use crate::scenarios::{
    check_echo, server_request_sample, Env, Measure, Plan, RpcBench, Sample, Ticks, BATCH,
};
use crate::server::MAX_MESSAGE;

/// The same settings for every connection (a macro, so the builder's type
/// need not be named).
macro_rules! builder {
    ($url:expr) => {
        RpcConnection::builder($url)
            .max_message_size(MAX_MESSAGE as usize)
            .request_timeout(Duration::from_secs(60))
            .max_in_flight(20_000)
    };
}

/// Calls through [`Client`].
pub struct OursClient(Client);

/// Calls through `client.addr().send(Call::new(..))`.
pub struct OursAddr(Client);

/// `subscribe_ticks` with a queue of `n` items (so nothing is dropped).
fn subscribe_ticks(n: u64) -> Subscribe {
    Subscribe::new("subscribe_ticks", params![n], "unsubscribe_ticks").capacity(n as usize)
}

/// A subscription of either kind: its stream, decoded as `u64`.
pub struct OursTicks(Subscription<u64>);

impl Ticks for OursTicks {
    async fn next_tick(&mut self) -> Result<Option<u64>> {
        match self.0.next().await {
            Some(SubscriptionItem::Item(tick)) => Ok(Some(tick)),
            Some(other) => bail!("unexpected subscription item {other:?}"),
            None => bail!("the subscription ended: {:?}", self.0.close_reason()),
        }
    }

    async fn unsubscribe(self) -> Result<()> {
        let answer = self.0.unsubscribe().await?;
        ensure!(answer == Value::Bool(true), "unsubscribe answered {answer}");
        Ok(())
    }
}

/// `batch100`'s slots: all `echo`, results taken as `Value` and checked.
fn check_batch(
    mut results: jsonrpc_websocket::BatchResults,
    slots: Vec<Slot<Value>>,
) -> Result<()> {
    ensure!(results.len() == BATCH as usize, "{} results", results.len());
    for slot in slots {
        check_echo(&results.take(slot)?)?;
    }
    Ok(())
}

impl RpcBench for OursClient {
    type Ticks = OursTicks;

    async fn connect(url: &str) -> Result<Self> {
        Ok(OursClient(builder!(url).connect().await?))
    }

    async fn echo(&self) -> Result<()> {
        let v: Value = self.0.call("echo", params!["bench", 42]).await?;
        check_echo(&v)
    }

    async fn blob(&self) -> Result<usize> {
        let s: String = self.0.call("blob", Params::none()).await?;
        Ok(s.len())
    }

    async fn upload(&self, data: &str) -> Result<u64> {
        Ok(self.0.call("upload", params![data]).await?)
    }

    async fn note(&self) -> Result<()> {
        Ok(self.0.notify("note", params![1]).await?)
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.0.call("count", Params::none()).await?)
    }

    async fn hold(&self) -> Result<u64> {
        Ok(self.0.call("hold", Params::none()).await?)
    }

    async fn close(self) -> Result<()> {
        Ok(self.0.close().await?)
    }

    /// `client.subscribe_with(..)`, then the handle's stream.
    async fn subscribe_ticks(&self, n: u64) -> Result<OursTicks> {
        let subscription = self.0.subscribe_with(subscribe_ticks(n)).await?;
        Ok(OursTicks(subscription.typed()))
    }

    /// `client.batch()`: 100 `call`s, `send`, `take` each slot.
    async fn batch100(&self) -> Result<()> {
        let mut batch = self.0.batch();
        let slots = (0..BATCH)
            .map(|_| batch.call::<Value>("echo", params!["bench", 42]))
            .collect();
        check_batch(batch.send().await?, slots)
    }

    /// Dropping the last handle closes the connection with code 1000 and
    /// completes the closing handshake in the background, as dropping a
    /// jsonrpsee client does. (`ours-addr` awaits `close()` instead.)
    async fn end(self) -> Result<()> {
        drop(self.0);
        Ok(())
    }
}

impl OursAddr {
    async fn call(&self, method: &'static str, params: Params) -> Result<Value> {
        Ok(self.0.addr().send(Call::new(method, params)).await??)
    }
}

impl RpcBench for OursAddr {
    type Ticks = OursTicks;

    async fn connect(url: &str) -> Result<Self> {
        Ok(OursAddr(builder!(url).connect().await?))
    }

    async fn echo(&self) -> Result<()> {
        check_echo(&self.call("echo", params!["bench", 42]).await?)
    }

    async fn blob(&self) -> Result<usize> {
        let v = self.call("blob", Params::none()).await?;
        Ok(v.as_str()
            .ok_or_else(|| anyhow!("blob is not a string"))?
            .len())
    }

    async fn upload(&self, data: &str) -> Result<u64> {
        let v = self.call("upload", params![data]).await?;
        v.as_u64().ok_or_else(|| anyhow!("upload result {v}"))
    }

    async fn note(&self) -> Result<()> {
        Ok(self
            .0
            .addr()
            .send(Notify::new("note", params![1]))
            .await??)
    }

    async fn count(&self) -> Result<u64> {
        let v = self.call("count", Params::none()).await?;
        v.as_u64().ok_or_else(|| anyhow!("count result {v}"))
    }

    async fn hold(&self) -> Result<u64> {
        let v = self.call("hold", Params::none()).await?;
        v.as_u64().ok_or_else(|| anyhow!("hold result {v}"))
    }

    /// `addr.send(Subscribe::new(..))`, then the handle's stream.
    async fn subscribe_ticks(&self, n: u64) -> Result<OursTicks> {
        let subscription = self.0.addr().send(subscribe_ticks(n)).await??;
        Ok(OursTicks(subscription.typed()))
    }

    /// `addr.send(Batch)`: 100 `call`s, `take` each slot.
    async fn batch100(&self) -> Result<()> {
        let mut batch = Batch::new();
        let slots = (0..BATCH)
            .map(|_| batch.call::<Value>("echo", params!["bench", 42]))
            .collect();
        check_batch(self.0.addr().send(batch).await??, slots)
    }

    async fn close(self) -> Result<()> {
        Ok(self.0.close().await?)
    }
}

/// `server_request`: the raw server sends `bench.ping` requests; our handler
/// answers with the params.
pub async fn server_request(env: &Env, plan: &Plan) -> Result<Sample> {
    let result = env.sreq.start(plan.warmup, plan.count, plan.limit);
    let measure = Measure::start();
    let client = builder!(env.sreq_url.as_str())
        .register_fn("bench.ping", |req: ServerRequest| async move {
            Ok::<Value, ErrorObject>(req.params)
        })
        .connect()
        .await?;
    let started = Instant::now();
    let outcome = tokio::time::timeout(plan.limit * 3 + Duration::from_secs(30), result)
        .await
        .map_err(|_| anyhow!("server_request did not finish in {:?}", started.elapsed()))?
        .map_err(|_| anyhow!("server_request server dropped the job"))?
        .map_err(|e| anyhow!("server side: {e}"))?;
    // The server closes the connection when done; closing again may fail.
    let _ = client.close().await;
    server_request_sample(outcome, &measure, plan)
}

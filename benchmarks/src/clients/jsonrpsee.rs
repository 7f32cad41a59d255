//! jsonrpsee's WebSocket client (on a current-thread tokio runtime, so its
//! background task runs on the client thread too).

use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use jsonrpsee_core::client::{BatchResponse, ClientT, Subscription, SubscriptionClientT};
use jsonrpsee_core::params::BatchRequestBuilder;
use jsonrpsee_core::rpc_params;
use jsonrpsee_ws_client::{WsClient, WsClientBuilder};
use serde_json::Value;

use crate::scenarios::{check_echo, RpcBench, Ticks, BATCH};
use crate::server::MAX_MESSAGE;

pub struct Jsonrpsee(WsClient);

fn builder() -> WsClientBuilder {
    WsClientBuilder::new()
        .max_request_size(MAX_MESSAGE)
        .max_response_size(MAX_MESSAGE)
        .max_concurrent_requests(20_000)
        .request_timeout(Duration::from_secs(60))
        .set_tcp_no_delay(true)
}

/// `subscribe_ticks` through `SubscriptionClientT::subscribe`.
pub struct JsonrpseeTicks(Subscription<u64>);

impl Ticks for JsonrpseeTicks {
    async fn next_tick(&mut self) -> Result<Option<u64>> {
        match self.0.next().await {
            Some(tick) => Ok(Some(tick?)),
            None => Err(anyhow!(
                "the subscription ended: {:?}",
                self.0.close_reason()
            )),
        }
    }

    async fn unsubscribe(self) -> Result<()> {
        Ok(self.0.unsubscribe().await?)
    }
}

impl RpcBench for Jsonrpsee {
    type Ticks = JsonrpseeTicks;

    async fn connect(url: &str) -> Result<Self> {
        Ok(Jsonrpsee(builder().build(url).await?))
    }

    /// jsonrpsee sizes subscription queues per client
    /// (`max_buffer_capacity_per_subscription`, 1,024 by default; a full
    /// queue closes the subscription).
    async fn connect_subscriber(url: &str, capacity: u64) -> Result<Self> {
        let client = builder()
            .max_buffer_capacity_per_subscription(capacity as usize)
            .build(url)
            .await?;
        Ok(Jsonrpsee(client))
    }

    async fn subscribe_ticks(&self, n: u64) -> Result<JsonrpseeTicks> {
        let subscription = self
            .0
            .subscribe("subscribe_ticks", rpc_params![n], "unsubscribe_ticks")
            .await?;
        Ok(JsonrpseeTicks(subscription))
    }

    /// `BatchRequestBuilder` + `ClientT::batch_request`.
    async fn batch100(&self) -> Result<()> {
        let mut batch = BatchRequestBuilder::new();
        for _ in 0..BATCH {
            batch.insert("echo", rpc_params!["bench", 42])?;
        }
        let response: BatchResponse<Value> = self.0.batch_request(batch).await?;
        ensure!(
            response.len() == BATCH as usize && response.num_successful_calls() == BATCH as usize,
            "{} results, {} failed",
            response.len(),
            response.num_failed_calls()
        );
        for result in response
            .into_ok()
            .map_err(|errors| anyhow!("batch errors: {:?}", errors.collect::<Vec<_>>()))?
        {
            check_echo(&result)?;
        }
        Ok(())
    }

    async fn echo(&self) -> Result<()> {
        let v: Value = self.0.request("echo", rpc_params!["bench", 42]).await?;
        check_echo(&v)
    }

    async fn blob(&self) -> Result<usize> {
        let s: String = self.0.request("blob", rpc_params![]).await?;
        Ok(s.len())
    }

    async fn upload(&self, data: &str) -> Result<u64> {
        Ok(self.0.request("upload", rpc_params![data]).await?)
    }

    async fn note(&self) -> Result<()> {
        Ok(self.0.notification("note", rpc_params![1]).await?)
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.0.request("count", rpc_params![]).await?)
    }

    async fn hold(&self) -> Result<u64> {
        Ok(self.0.request("hold", rpc_params![]).await?)
    }

    /// jsonrpsee has no close call: dropping the client stops its background
    /// task, which closes the connection without being awaited.
    async fn close(self) -> Result<()> {
        drop(self.0);
        Ok(())
    }
}

//! jsonrpsee's WebSocket client (on a current-thread tokio runtime, so its
//! background task runs on the client thread too).

use std::time::Duration;

use anyhow::Result;
use jsonrpsee_core::client::ClientT;
use jsonrpsee_core::rpc_params;
use jsonrpsee_ws_client::{WsClient, WsClientBuilder};
use serde_json::Value;

use crate::scenarios::{check_echo, RpcBench};
use crate::server::MAX_MESSAGE;

pub struct Jsonrpsee(WsClient);

impl RpcBench for Jsonrpsee {
    async fn connect(url: &str) -> Result<Self> {
        let client = WsClientBuilder::new()
            .max_request_size(MAX_MESSAGE)
            .max_response_size(MAX_MESSAGE)
            .max_concurrent_requests(20_000)
            .request_timeout(Duration::from_secs(60))
            .set_tcp_no_delay(true)
            .build(url)
            .await?;
        Ok(Jsonrpsee(client))
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

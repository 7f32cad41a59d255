//! The five clients, each run on a fresh dedicated thread with its own
//! runtime: an actix `System` for ours and raw-awc, a current-thread tokio
//! runtime for jsonrpsee and raw-tungstenite.

pub mod jsonrpsee;
pub mod ours;
pub mod raw;
pub mod raw_awc;

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::scenarios::{self, ClientKind, Env, Plan, Sample, Scenario};

/// Run one scenario once with one client, on its own thread, bounded in time.
pub fn run_once(kind: ClientKind, scenario: Scenario, plan: &Plan, env: &Env) -> Result<Sample> {
    let (plan, env) = (plan.clone(), env.clone());
    // Async hang guard inside the runtime; the channel below guards the rest.
    let guard = plan.limit * 4 + Duration::from_secs(60);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("bench-{}", kind.name()))
        .spawn(move || {
            if scenario == Scenario::Memory {
                crate::alloc::count_this_thread();
            }
            let bounded = async {
                tokio::time::timeout(guard, body(kind, scenario, &plan, &env))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("run did not finish in {guard:?}")))
            };
            let result = match kind {
                ClientKind::OursClient | ClientKind::OursAddr | ClientKind::RawAwc => {
                    actix_rt::System::new().block_on(bounded)
                }
                ClientKind::Jsonrpsee | ClientKind::Raw => {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(bounded),
                        Err(e) => Err(e.into()),
                    }
                }
            };
            let _ = tx.send(result);
        })?;
    rx.recv_timeout(guard + Duration::from_secs(10))
        .map_err(|_| anyhow!("client thread hung (left behind)"))?
}

async fn body(kind: ClientKind, scenario: Scenario, plan: &Plan, env: &Env) -> Result<Sample> {
    if scenario == Scenario::Idle {
        return Err(anyhow!("idle runs in child processes (see idle.rs)"));
    }
    if !scenario.clients().contains(&kind) {
        return Err(anyhow!(
            "{} does not take part in {}",
            kind.name(),
            scenario.name()
        ));
    }
    match (kind, scenario) {
        (ClientKind::OursClient, Scenario::ServerRequest) => ours::server_request(env, plan).await,
        (ClientKind::OursClient, _) => {
            scenarios::run::<ours::OursClient>(scenario, plan, env).await
        }
        (ClientKind::OursAddr, _) => scenarios::run::<ours::OursAddr>(scenario, plan, env).await,
        (ClientKind::Jsonrpsee, _) => {
            scenarios::run::<jsonrpsee::Jsonrpsee>(scenario, plan, env).await
        }
        (ClientKind::Raw, _) => raw::run(scenario, plan, env).await,
        (ClientKind::RawAwc, _) => raw_awc::run(scenario, plan, env).await,
    }
}

//! The actix thread this crate starts for connections made outside an actix
//! `System` (from `#[tokio::main]`, another executor, a plain thread, or the
//! [`blocking`](crate::blocking) client).
//!
//! One thread for the whole process, started by the first such connection
//! and shared by all that follow (see docs/decisions.md, "One background
//! thread for connections made outside actix"). It runs an actix `System`
//! until the process exits; being an ordinary thread, it never keeps the
//! process from exiting. A connection on it ends as any connection does
//! (closed, lost, or its last handle dropped), and then holds nothing there.

use std::sync::{Mutex, MutexGuard};

use actix::ArbiterHandle;

use crate::error::Error;

/// The background thread's name (short enough for Linux's 15-byte limit,
/// so tools show it whole).
pub(crate) const THREAD_NAME: &str = "jsonrpc-ws-bg";

/// The background thread's arbiter, once started.
static BACKGROUND: Mutex<Option<ArbiterHandle>> = Mutex::new(None);

/// Whether this thread runs inside an actix `System`, where connections
/// start on the current arbiter as they always have: a `System` is
/// registered on the thread and a tokio runtime is entered (a thread that
/// once made a `System` but is not running it counts as outside).
pub(crate) fn inside_actix() -> bool {
    actix::System::try_current().is_some() && tokio::runtime::Handle::try_current().is_ok()
}

/// The kind of async runtime this thread is inside, if any: where the
/// [`blocking`](crate::blocking) client must not block.
pub(crate) fn async_runtime() -> Option<&'static str> {
    if actix::System::try_current().is_some() {
        Some("an actix System")
    } else if tokio::runtime::Handle::try_current().is_ok() {
        Some("a tokio runtime")
    } else {
        None
    }
}

/// Runs `job` on the background thread, starting the thread first if it is
/// not running.
///
/// # Errors
///
/// [`Error::Transport`] when the thread cannot be spawned.
pub(crate) fn run(job: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    let mut background = lock();
    let arbiter = match background.as_ref() {
        Some(arbiter) if arbiter.alive() => arbiter,
        // Not started yet, or its System was stopped by code that ran on
        // it (`System::current().stop()` in a handler): start another.
        _ => background.insert(start()?),
    };
    // NOTE: `false` only if the thread died between `alive()` and here; the
    // job is dropped with its reply sender, and its caller is told so.
    let _ = arbiter.spawn_fn(job);
    Ok(())
}

fn lock() -> MutexGuard<'static, Option<ArbiterHandle>> {
    // The guarded value is a handle: a panic elsewhere cannot leave it half-written.
    BACKGROUND.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns the thread and returns its arbiter.
fn start() -> Result<ArbiterHandle, Error> {
    let (ready, arbiter) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            let system = actix::System::new();
            let _ = ready.send(actix::System::current().arbiter().clone());
            if let Err(err) = system.run() {
                log::error!("the {THREAD_NAME} thread's actix System failed: {err}");
            }
        });
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Transport {
        context: format!("could not start the {THREAD_NAME} thread"),
        source,
    };
    spawned.map_err(|err| failed(Box::new(err)))?;
    arbiter
        .recv()
        .map_err(|_| failed("the thread ended before its actix System started".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_thread_is_outside_any_runtime() {
        assert!(!inside_actix());
        assert_eq!(async_runtime(), None);
    }

    #[actix_rt::test]
    async fn an_actix_system_is_inside() {
        assert!(inside_actix());
        assert_eq!(async_runtime(), Some("an actix System"));
    }

    #[tokio::test]
    async fn a_tokio_runtime_is_async_but_not_actix() {
        assert!(!inside_actix());
        assert_eq!(async_runtime(), Some("a tokio runtime"));
    }

    #[test]
    fn jobs_run_on_one_named_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            run(move || {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((name, inside_actix(), std::thread::current().id()));
            })
            .unwrap();
        }
        let seen: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        for (name, inside, thread) in &seen {
            assert_eq!(name.as_deref(), Some(THREAD_NAME));
            assert!(inside, "jobs run inside the thread's System");
            assert_eq!(*thread, seen[0].2);
        }
    }
}

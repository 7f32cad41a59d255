//! The thread each fake server runs on: started with a bounded wait for it
//! to be ready, joined (bounded) when the server is dropped, and its panic —
//! or a panic recorded inside it — re-raised in the test.

use std::any::Any;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::{SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT};

/// A server's own thread.
pub(crate) struct ServerThread {
    name: String,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends, even by panic.
    done: mpsc::Receiver<()>,
}

impl ServerThread {
    /// Runs `body` on a new thread named `name`; `body` hands back a `T`
    /// (an address, a handle) once the server is ready to accept. Panics if
    /// that does not happen within [`STARTUP_TIMEOUT`], with the thread's
    /// own panic when it died.
    pub fn spawn<T, F>(name: String, body: F) -> (ServerThread, T)
    where
        T: Send + 'static,
        F: FnOnce(mpsc::Sender<T>) + Send + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _done = done_tx; // dropped when this thread ends, even by panic
                body(ready_tx);
            })
            .unwrap_or_else(|err| panic!("{name}: spawning its thread failed: {err}"));
        let mut server = ServerThread {
            name,
            thread: Some(thread),
            done,
        };
        match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(ready) => (server, ready),
            Err(_) => {
                // Died (or hung) before becoming ready: surface its panic.
                server.join();
                panic!("{}: not ready within {STARTUP_TIMEOUT:?}", server.name);
            }
        }
    }

    /// Waits (bounded) for the thread to end, re-raising its panic unless
    /// this thread is already panicking.
    pub fn join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        match self.done.recv_timeout(SHUTDOWN_TIMEOUT) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!(
                    "warning: {} did not stop within {SHUTDOWN_TIMEOUT:?}; leaking its thread",
                    self.name
                );
            }
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Err(payload) = thread.join() {
                    raise(format!(
                        "{} panicked: {}",
                        self.name,
                        panic_message(payload.as_ref())
                    ));
                }
            }
        }
    }

    /// Re-raises panics recorded inside the server (its handler, its scripts).
    pub fn raise_recorded(&self, panics: Vec<String>) {
        if !panics.is_empty() {
            raise(format!(
                "{}: {} panic(s) inside: {panics:?}",
                self.name,
                panics.len()
            ));
        }
    }
}

/// Panics with `message`, or prints it when already panicking.
fn raise(message: String) {
    if std::thread::panicking() {
        eprintln!("{message}");
    } else {
        panic!("{message}");
    }
}

/// Best-effort text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

//! Close codes and reasons are validated, never changed silently.

use std::time::Duration;

use jsonrpc_websocket::{Close, Error};

use crate::support::{assert_no_pending, connect, standard, within, TestServer};

#[test]
fn invalid_codes_and_reasons_are_refused_with_a_clear_error() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let err = Close::with_reason(code, "x").unwrap_err();
        assert!(matches!(err, Error::InvalidClose { .. }), "{code}: {err:?}");
        assert!(err.to_string().contains(&format!("code {code}")), "{err}");
    }
    let err = Close::with_reason(4000, "é".repeat(62)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid close frame: the reason is 124 bytes long; a close frame carries at most 123"
    );
    let fits = Close::with_reason(4000, "r".repeat(123)).unwrap();
    assert_eq!(fits.reason().len(), 123);
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        assert_eq!(Close::with_reason(code, "").unwrap().code(), code);
    }
}

#[actix_rt::test]
async fn a_valid_code_reaches_the_server_unchanged() {
    for (code, reason) in [(1001, "going away"), (4000, "custom"), (3999, "")] {
        let server = TestServer::start(standard);
        let client = connect(&server.url()).await;
        let close = Close::with_reason(code, reason).unwrap();
        within("close", client.close_with(close))
            .await
            .expect("a clean close");
        let closes = server
            .wait_client_closes_async(1, crate::support::BOUND)
            .await;
        assert_eq!(closes[0], Some((code, reason.to_owned())));
        let end = client.closed().await;
        assert_eq!((end.code, end.clean), (Some(code), true), "{end}");
        assert_no_pending(&client);
    }
}

#[actix_rt::test]
async fn client_close_and_actor_close_end_the_same_way() {
    // A server that never answers our close frame: both report the timeout.
    for via_addr in [false, true] {
        let server = crate::support::silent_peer();
        let client = connect(&server.url()).await;
        let close = Close::new().timeout(Duration::from_millis(100));
        let outcome = if via_addr {
            within("close", client.addr().send(close)).await.unwrap()
        } else {
            within("close", client.close_with(close)).await
        };
        assert!(
            matches!(outcome, Err(Error::CloseTimeout { after }) if after == Duration::from_millis(100)),
            "via_addr {via_addr}: {outcome:?}"
        );
        assert_no_pending(&client);
    }
}

#[actix_rt::test]
async fn a_close_that_does_not_wait_returns_once_our_frame_is_written() {
    let server = crate::support::silent_peer();
    let client = connect(&server.url()).await;
    // The server never answers; not waiting for it is a success.
    within(
        "close",
        client.close_with(Close::new().timeout(Duration::ZERO)),
    )
    .await
    .expect("ours was written");
    let end = client.closed().await;
    assert_eq!((end.code, end.clean), (Some(1000), false), "{end}");
    assert_no_pending(&client);
}

//! A batch built apart from the client (`Batch`) and its results: slots
//! count calls only, each outcome can be taken once, and the rest come out
//! as JSON values in submission order.

use jsonrpc_websocket::{params, Batch, Error, RpcConnection};
use test_support::{assert_no_pending, connect_with, json, standard, within, TestServer, Value};

#[actix_rt::test]
async fn a_slot_is_taken_once_and_the_rest_come_out_as_values() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;

    let mut batch = Batch::new();
    let first = batch.call::<Vec<i64>>("echo", params![1]);
    batch.notify("echo", params![0]);
    let second = batch.call::<Value>("add", params![2, 3]);
    let third = batch.call::<Value>("no.such.method", params![]);
    assert_eq!(batch.len(), 4, "the notification is an entry too");
    // Slots are copies that name the call's place among the calls.
    let copy = second;
    assert_eq!(
        (first.index(), copy.index(), third.index()),
        (0, 1, 2),
        "notifications are not counted"
    );
    assert_eq!(format!("{second:?}"), "Slot(1)");

    let mut results = within("batch", client.send_batch(batch)).await.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results.take(first).unwrap(), vec![1]);
    let again = results.take(first).unwrap_err();
    assert!(
        matches!(&again, Error::InvalidConfig { reason }
            if reason == "batch slot 0 was taken already or belongs to another batch"),
        "{again:?}"
    );

    let rest = results.into_values();
    assert_eq!(rest.len(), 2, "the taken outcome is not repeated");
    assert_eq!(rest[0].as_ref().unwrap(), &json!(5));
    let err = rest[1].as_ref().unwrap_err();
    assert_eq!(err.rpc_error().map(|e| e.code), Some(-32601), "{err}");
    assert_no_pending(&client);
}

//! Encoding and decoding of JSON-RPC messages, without sockets: the part of
//! each call's cost that is ours alone. Run with `cargo bench`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jsonrpc_websocket::__bench::{encode_request, encode_result_response, parse, Inbound, Message};
use jsonrpc_websocket::{params, Id, Params};
use serde::Deserialize;
use serde_json::{json, Value};
use std::hint::black_box;

const MIB: usize = 1024 * 1024;

fn small_object() -> Value {
    json!({"user": "ann", "ids": [1, 2, 3], "active": true})
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode request");
    group.bench_function("small: params! + encode", |b| {
        b.iter(|| {
            let p = params![black_box(42), black_box("hello")];
            encode_request(Some(black_box(7)), "math.add", p.to_json())
        })
    });
    let big = "x".repeat(MIB);
    group.throughput(Throughput::Bytes(MIB as u64));
    group.bench_function("1 MiB string param: params! + encode", |b| {
        b.iter(|| {
            let p = params![black_box(&big)];
            encode_request(Some(7), "upload", p.to_json())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("encode response");
    let result = small_object().to_string();
    group.bench_function("small result", |b| {
        b.iter(|| encode_result_response(&Id::from(black_box(7)), black_box(&result)))
    });
    group.finish();
}

#[derive(Deserialize)]
struct User {
    #[allow(dead_code)]
    user: String,
    #[allow(dead_code)]
    ids: Vec<u32>,
}

fn result_text(inbound: Inbound<'_>) -> &str {
    match inbound {
        Inbound::Single(Message::Response(r)) => r.outcome.expect("a result"),
        _ => panic!("not a response"),
    }
}

fn decode(c: &mut Criterion) {
    let small = encode_result_response(&Id::from(7), &small_object().to_string());
    let big = encode_result_response(&Id::from(7), &Value::from("y".repeat(MIB)).to_string());
    let mut group = c.benchmark_group("decode response");
    for (name, text) in [("small", &small), ("1 MiB", &big)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("classify (raw result)", name),
            text,
            |b, text| b.iter(|| result_text(parse(black_box(text)))),
        );
        group.bench_with_input(
            BenchmarkId::new("classify + Value", name),
            text,
            |b, text| b.iter(|| serde_json::from_str::<Value>(result_text(parse(text))).unwrap()),
        );
    }
    // What `batch100` and `sub_ticks` read: a batch answer of 100 echo
    // results, and one subscription notification (jsonrpsee's shapes).
    let batch: String = format!(
        "[{}]",
        (1..=100)
            .map(|id| format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":["bench",42]}}"#,
                1_000 + id
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    group.throughput(Throughput::Elements(100));
    group.bench_function("classify batch answer/100 results", |b| {
        b.iter(|| match parse(black_box(&batch)) {
            Inbound::Batch(messages) => messages.len(),
            _ => panic!("not a batch"),
        })
    });
    let tick = r#"{"jsonrpc":"2.0","method":"ticks","params":{"subscription":4242424242424242,"result":12345}}"#;
    group.throughput(Throughput::Elements(1));
    group.bench_function("classify notification/subscription tick", |b| {
        b.iter(|| match parse(black_box(tick)) {
            Inbound::Single(Message::Notification(n)) => n.params.map(str::len),
            _ => panic!("not a notification"),
        })
    });
    group.bench_function("Id::from_json/integer", |b| {
        b.iter(|| Id::from_json(black_box("4242424242424242")))
    });
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("classify + typed struct/small", |b| {
        b.iter(|| serde_json::from_str::<User>(result_text(parse(black_box(&small)))).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("params");
    group.bench_function("named from json! object", |b| {
        b.iter(|| Params::from(black_box(small_object())))
    });
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);

//! Criterion micro-benchmarks of the hot paths: frame codec, request parse, response encode, histograms, compute.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use hdrhistogram::Histogram;
use threadcenter::protocol::message::{encode_error, encode_pong, encode_request, encode_result};
use threadcenter::protocol::{
    compute, frame, parse_request, parse_response, Command, ErrorCode, FrameReader,
};

const REQUEST: &[u8] =
    br#"{"id":"3f2a9c4e-8d1b-4c5e-9a7f-0b6d2e1c4a8f","cmd":"compute","n":500000}"#;

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            frame::encode(black_box(REQUEST), &mut out);
            black_box(&out);
        })
    });
    // 1000 frames back to back, decoded through the same reader the server uses.
    let mut wire = Vec::new();
    for _ in 0..1000 {
        frame::encode(REQUEST, &mut wire);
    }
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_x1000", |b| {
        b.iter(|| {
            let mut reader = FrameReader::new(&wire[..], frame::DEFAULT_MAX_FRAME);
            let mut count = 0;
            while let Some(p) = reader.next_frame().unwrap() {
                count += p.len();
            }
            black_box(count)
        })
    });
    g.finish();
}

fn messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_request_compute", |b| {
        b.iter(|| black_box(parse_request(black_box(REQUEST), 1_000_000_000).unwrap()))
    });
    g.bench_function("parse_request_bad_json", |b| {
        b.iter(|| black_box(parse_request(black_box(b"{\"id\":1,\"cmd\""), 10).unwrap_err()))
    });
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode_result", |b| {
        b.iter(|| {
            out.clear();
            encode_result(
                &mut out,
                black_box(br#""3f2a9c4e-8d1b-4c5e-9a7f-0b6d2e1c4a8f""#),
                869_502_129,
            );
            black_box(&out);
        })
    });
    g.bench_function("encode_pong", |b| {
        b.iter(|| {
            out.clear();
            encode_pong(&mut out, black_box(b"12345"));
            black_box(&out);
        })
    });
    g.bench_function("encode_error", |b| {
        b.iter(|| {
            out.clear();
            encode_error(
                &mut out,
                b"7",
                ErrorCode::BadRequest,
                black_box("`n` must be >= 0, got -1"),
            );
            black_box(&out);
        })
    });
    g.bench_function("client_encode_request", |b| {
        b.iter(|| {
            out.clear();
            encode_request(
                &mut out,
                black_box(123_456),
                &Command::Compute { n: 500_000 },
            );
            black_box(&out);
        })
    });
    let resp = br#"{"id":123456,"result":869502129}"#;
    g.bench_function("client_parse_response", |b| {
        b.iter(|| black_box(parse_response(black_box(resp)).unwrap()))
    });
    g.finish();
}

fn histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram");
    g.throughput(Throughput::Elements(1));
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    let mut v = 12_345u64;
    g.bench_function("record", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record(black_box(1_000 + (v >> 40))).unwrap();
        })
    });
    let mut parts: Vec<Histogram<u64>> = (0..16)
        .map(|i| {
            let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
            for k in 0..10_000u64 {
                h.record(10_000 + (k * 7919 + i * 104_729) % 5_000_000)
                    .unwrap();
            }
            h
        })
        .collect();
    g.throughput(Throughput::Elements(16));
    g.bench_function("merge_16_threads", |b| {
        b.iter_batched(
            || Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap(),
            |mut total| {
                for p in &parts {
                    total.add(p).unwrap();
                }
                total
            },
            BatchSize::SmallInput,
        )
    });
    parts.clear();
    g.finish();
}

/// What stage timing adds to each compute answer: one clock read and one recording of
/// four stages into the thread's own histograms (an uncontended lock).
fn stage_timing(c: &mut Criterion) {
    use threadcenter::server::stages::{mono_ns, StageTimings};
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(1));
    let timings = StageTimings::new(true);
    let rec = timings.recorder();
    let mut v = 12_345u64;
    g.bench_function("clock_and_record", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let received = 1_000_000 + (v >> 44);
            let sent = mono_ns();
            rec.record(
                received,
                received + 20_000,
                received + 40_000,
                black_box(sent),
            );
        })
    });
    g.finish();
}

fn compute_steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("compute");
    for n in [1_000u64, 100_000] {
        // Throughput in steps: criterion reports time per step.
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| compute(black_box(n)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    frames,
    messages,
    histograms,
    stage_timing,
    compute_steps
);
criterion_main!(benches);

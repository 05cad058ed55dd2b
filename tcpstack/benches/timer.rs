//! `TimerWheel` costs with 100 000 pending timers (one per connection):
//!
//! - `schedule_cancel`: schedule a timer at a random deadline within the
//!   hour and cancel it (a retransmission timer armed and disarmed by an ACK);
//! - `reschedule`: move a random pending timer to a new random deadline
//!   (every `poll_at` change);
//! - `advance_1ms_steady`: the worker loop's tick. 100 000 timers spread
//!   over the next 60 s (≈ 1.7 due per ms); each iteration advances the
//!   clock 1 ms and re-arms every fired timer 1..60 s ahead, so the load is
//!   steady. Time per iteration = per-ms cost of the wheel including firing;
//! - `advance_1ms_idle`: the same tick with 100 000 timers all days away
//!   (nothing fires; only the occasional cascade).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use zerohop_tcpstack::rng::Rng;
use zerohop_tcpstack::{TimerHandle, TimerWheel};

const PENDING: usize = 100_000;
const HOUR: u64 = 3_600_000;

fn wheel(spread: u64, offset: u64) -> (TimerWheel<u32>, Vec<TimerHandle>, Rng) {
    let mut rng = Rng(1);
    let mut w = TimerWheel::new(0, PENDING as u32 + 1).expect("capacity");
    let handles = (0..PENDING as u32)
        .map(|i| {
            w.schedule(i, offset + 1 + rng.below(spread))
                .expect("capacity")
        })
        .collect();
    (w, handles, rng)
}

fn ops(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer");
    {
        let (mut w, _, mut rng) = wheel(HOUR, 0);
        group.bench_function("schedule_cancel/100k", |b| {
            b.iter(|| {
                let h = w.schedule(u32::MAX, 1 + rng.below(HOUR)).expect("capacity");
                black_box(w.cancel(h))
            })
        });
    }
    {
        let (mut w, handles, mut rng) = wheel(HOUR, 0);
        group.bench_function("reschedule/100k", |b| {
            b.iter(|| {
                let h = handles[rng.below(PENDING as u64) as usize];
                black_box(w.reschedule(h, 1 + rng.below(HOUR)))
            })
        });
    }
    {
        let (mut w, _, mut rng) = wheel(60_000, 0);
        let mut now = 0;
        let mut fired = Vec::with_capacity(1024);
        let mut total = 0u64;
        let mut ticks = 0u64;
        group.bench_function("advance_1ms_steady/100k", |b| {
            b.iter(|| {
                now += 1;
                w.advance(now, |v| fired.push(v));
                total += fired.len() as u64;
                ticks += 1;
                for v in fired.drain(..) {
                    w.schedule(v, now + 1 + rng.below(60_000))
                        .expect("capacity");
                }
            })
        });
        eprintln!(
            "advance_1ms_steady: {:.2} timers fired per tick on average",
            total as f64 / ticks.max(1) as f64
        );
    }
    {
        let (mut w, _, _) = wheel(HOUR, 30 * 24 * HOUR);
        let mut now = 0;
        group.bench_function("advance_1ms_idle/100k", |b| {
            b.iter(|| {
                now += 1;
                black_box(w.advance(now, |_| {}))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);

//! The kernel twins' pump: a thread on the control side that carries frames
//! between the workers and the twins' tap queues.
//!
//! Handing a frame to a tap is a system call in which the kernel runs its
//! whole stack for it (and answers, often at once): tens of microseconds.
//! On a worker that would be forwarding time lost, so a worker only puts
//! what is for the kernel on its ring up (a few cycles; full ring: counted,
//! freed), and this thread does the system calls. What the kernel sends comes
//! back down through a ring to worker 0, which transmits it on the port the
//! frame is marked with. Both rings are bounded and their buffers budgeted
//! (`budget`); the rate of the way up is bounded by the workers' token
//! buckets.
//!
//! The thread sleeps when there is nothing to carry (50 us, doubling up to
//! 1 ms while idle), so an idle twin costs next to nothing and a busy one
//! waits at most a millisecond.

use crate::dpdk::{Mbuf, RingConsumer, RingProducer, RxQueue, TxQueue, BURST};
use arrayvec::ArrayVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Slots of each ring between a worker and the pump (usable: one less).
pub const RING_SIZE: u32 = 512;
/// Bursts taken from one tap per round at most.
const TAP_BURSTS: usize = 8;
const NAP_MIN: Duration = Duration::from_micros(50);
const NAP_MAX: Duration = Duration::from_millis(1);

/// The pump's queues on one twin.
pub struct TwinQueues {
    /// The data port the twin stands for.
    pub data_port: u16,
    /// What the host kernel sends.
    pub rx: RxQueue,
    /// What goes up to the host kernel.
    pub tx: TxQueue,
}

/// The pump's ends of one worker's rings.
pub struct WorkerRings {
    /// Frames the worker hands up (each marked with its data port).
    pub up: RingConsumer,
    /// Frames from the kernel for the worker to send; Some for worker 0.
    pub down: Option<RingProducer>,
}

/// The running pump; stopped and joined on drop.
pub struct TwinPump {
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl TwinPump {
    /// Starts the pump thread. `dropped` counts frames lost on the way
    /// (the kernel refused them, or worker 0's ring was full).
    pub fn start(
        twins: Vec<TwinQueues>,
        workers: Vec<WorkerRings>,
        dropped: Arc<AtomicU64>,
    ) -> std::io::Result<TwinPump> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let join = thread::Builder::new()
            .name("sluice-twins".into())
            .spawn(move || run(twins, workers, &dropped, &flag))?;
        Ok(TwinPump {
            stop,
            join: Some(join),
        })
    }
}

impl Drop for TwinPump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn run(
    mut twins: Vec<TwinQueues>,
    mut workers: Vec<WorkerRings>,
    dropped: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    // One buffer per twin for the way up, one for the way down.
    let mut up: Vec<ArrayVec<Mbuf, BURST>> = twins.iter().map(|_| ArrayVec::new()).collect();
    let mut down: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut nap = NAP_MIN;
    while !stop.load(Ordering::Relaxed) {
        let mut moved = 0;
        for w in workers.iter_mut() {
            while w.up.dequeue(&mut burst) > 0 {
                moved += burst.len();
                for m in burst.drain(..) {
                    let Some(i) = twins.iter().position(|t| t.data_port == m.port()) else {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if up[i].is_full() {
                        flush_up(&mut twins[i], &mut up[i], dropped);
                    }
                    let _ = up[i].try_push(m);
                }
            }
        }
        for (t, buf) in twins.iter_mut().zip(up.iter_mut()) {
            flush_up(t, buf, dropped);
        }
        let worker0 = workers.first_mut().and_then(|w| w.down.as_mut());
        if let Some(ring) = worker0 {
            for t in twins.iter_mut() {
                for _ in 0..TAP_BURSTS {
                    if t.rx.burst(&mut down) == 0 {
                        break;
                    }
                    moved += down.len();
                    for m in down.iter_mut() {
                        m.set_port(t.data_port);
                    }
                    ring.enqueue(&mut down);
                    dropped.fetch_add(down.len() as u64, Ordering::Relaxed);
                    down.clear();
                }
            }
        }
        if moved == 0 {
            thread::sleep(nap);
            nap = (nap * 2).min(NAP_MAX);
        } else {
            nap = NAP_MIN;
        }
    }
}

/// Writes what is buffered for a twin into its tap; what the kernel does
/// not take is freed and counted.
fn flush_up(twin: &mut TwinQueues, buf: &mut ArrayVec<Mbuf, BURST>, dropped: &AtomicU64) {
    if buf.is_empty() {
        return;
    }
    twin.tx.burst(buf);
    dropped.fetch_add(buf.len() as u64, Ordering::Relaxed);
    buf.clear();
}

//! Output lines formatted on worker threads and written in the order they were pushed.
//!
//! Tracking is one sequence of packets through one table, so it stays on one thread; what a
//! replay writes about each packet (a JSON verdict line, an event line) depends only on the
//! record the tracker made, so formatting it can run beside the tracking. Records go out in
//! numbered batches, any worker formats a batch, and one writer puts the batches back in
//! order: the bytes written are the same whatever the number of threads.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Records a batch holds: large enough that handing it over costs little against
/// formatting it, small enough to keep the workers busy early.
const BATCH: usize = 2048;

/// Where records pushed go.
pub struct Lines<'a, T> {
    sink: Sink<'a, T>,
}

enum Sink<'a, T> {
    /// Nothing is written: records are not even wanted.
    Off,
    /// One thread: each record formatted and written as it comes.
    Inline {
        format: &'a (dyn Fn(&T, &mut String) + Sync),
        out: &'a mut (dyn Write + Send),
        buf: String,
    },
    /// Batches for the workers.
    Pool {
        batch: Vec<T>,
        seq: u64,
        jobs: SyncSender<(u64, Vec<T>)>,
    },
}

impl<T> Lines<'_, T> {
    /// True when records are written: a caller can skip building them otherwise.
    pub fn wanted(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Hands one record over.
    pub fn push(&mut self, item: T) -> io::Result<()> {
        match &mut self.sink {
            Sink::Off => Ok(()),
            Sink::Inline { format, out, buf } => {
                buf.clear();
                format(&item, buf);
                out.write_all(buf.as_bytes())
            }
            Sink::Pool { batch, seq, jobs } => {
                batch.push(item);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
                    // A closed channel means the writer failed: its error is reported when
                    // the pool is joined, so the records are dropped here.
                    let _ = jobs.send((*seq, full));
                    *seq += 1;
                }
                Ok(())
            }
        }
    }

    fn finish(self) {
        if let Sink::Pool { batch, seq, jobs } = self.sink {
            if !batch.is_empty() {
                let _ = jobs.send((seq, batch));
            }
        }
    }
}

/// Runs `body` with a [`Lines`] that formats records with `format` and writes them to
/// `out`, on `threads` threads in all (1: inline, no thread started). Without `out`,
/// records are not wanted. Returns what `body` returned and the writer, to be flushed.
pub fn with_lines<T, W, R>(
    threads: usize,
    out: Option<W>,
    format: &(dyn Fn(&T, &mut String) + Sync),
    body: impl FnOnce(&mut Lines<'_, T>) -> anyhow::Result<R>,
) -> anyhow::Result<(R, Option<W>)>
where
    T: Send,
    W: Write + Send,
{
    let Some(mut out) = out else {
        let r = body(&mut Lines { sink: Sink::Off })?;
        return Ok((r, None));
    };
    if threads <= 1 {
        let mut lines = Lines {
            sink: Sink::Inline {
                format,
                out: &mut out,
                buf: String::new(),
            },
        };
        let r = body(&mut lines)?;
        return Ok((r, Some(out)));
    }
    // The tracking thread is one of the threads; the others format. The writer only copies
    // finished text out and is not counted.
    let workers = threads - 1;
    std::thread::scope(|s| {
        let (jobs, job_rx) = sync_channel::<(u64, Vec<T>)>(workers * 2);
        // Shared by the workers and dropped with the last of them, so that a push after the
        // writer failed finds the channel closed instead of waiting for ever.
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done, done_rx) = sync_channel::<(u64, String)>(workers * 2);
        for _ in 0..workers {
            let (job_rx, done) = (Arc::clone(&job_rx), done.clone());
            s.spawn(move || format_batches(&job_rx, &done, format));
        }
        drop((job_rx, done));
        let writer = s.spawn(move || write_in_order(done_rx, out));
        let mut lines = Lines {
            sink: Sink::Pool {
                batch: Vec::with_capacity(BATCH),
                seq: 0,
                jobs,
            },
        };
        let r = body(&mut lines);
        lines.finish();
        let out = writer.join().expect("the writer thread does not panic")?;
        Ok((r?, Some(out)))
    })
}

fn format_batches<T>(
    jobs: &Mutex<Receiver<(u64, Vec<T>)>>,
    done: &SyncSender<(u64, String)>,
    format: &(dyn Fn(&T, &mut String) + Sync),
) {
    loop {
        let job = jobs
            .lock()
            .map_err(|_| ())
            .and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok((seq, items)) = job else { return };
        let mut text = String::with_capacity(items.len() * 128);
        for item in &items {
            format(item, &mut text);
        }
        if done.send((seq, text)).is_err() {
            return;
        }
    }
}

fn write_in_order<W: Write>(done: Receiver<(u64, String)>, mut out: W) -> io::Result<W> {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for (seq, text) in done {
        waiting.insert(seq, text);
        while let Some(text) = waiting.remove(&next) {
            out.write_all(text.as_bytes())?;
            next += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(threads: usize, n: u32) -> Vec<u8> {
        let format = |x: &u32, s: &mut String| {
            use std::fmt::Write;
            // Uneven work, so batches finish out of order.
            let spin = if x.is_multiple_of(3) { 2000 } else { 1 };
            let v = (0..spin).fold(*x, |a, b| a.wrapping_mul(31).wrapping_add(b));
            let _ = writeln!(s, "{x} {}", v % 7);
        };
        let (_, out) = with_lines(threads, Some(Vec::new()), &format, |lines| {
            for i in 0..n {
                lines.push(i)?;
            }
            Ok(())
        })
        .expect("writes to memory");
        out.expect("a writer was given")
    }

    #[test]
    fn any_number_of_threads_writes_the_same_bytes() {
        let one = run(1, 10_000);
        assert_eq!(one.iter().filter(|&&b| b == b'\n').count(), 10_000);
        for threads in [2, 3, 5] {
            assert_eq!(run(threads, 10_000), one, "{threads} threads");
        }
        assert_eq!(run(4, 0), Vec::<u8>::new());
    }

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_is_an_error_not_a_hang() {
        let format = |x: &u32, s: &mut String| s.push_str(&format!("{x}\n"));
        for threads in [1, 3] {
            let r = with_lines(threads, Some(Failing), &format, |lines| {
                for i in 0..100_000 {
                    lines.push(i)?;
                }
                Ok(())
            });
            let err = r.err().expect("the write fails").to_string();
            assert!(err.contains("disk full"), "{err}");
        }
    }
}

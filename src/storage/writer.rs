//! The one writer. Requests queue on a channel; the writer thread takes everything queued,
//! runs it in one write transaction, commits durably once, and only then answers each
//! request. While one commit is syncing to disk the next batch gathers, so throughput grows
//! with concurrency while every answer still means "on disk".

use super::{finish_batch, EventSink, Retention, StoreError, Tx};
use crate::model::Event;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::Mutex;

type Completion = Box<dyn FnOnce(Commit) + Send>;
type Job = Box<dyn FnOnce(&Tx) -> Completion + Send>;

/// Handle to the writer thread. Cloning is cheap; when the last handle is dropped the
/// thread finishes the work queued so far and is joined, so the database file is closed
/// (and its lock released) by the time the drop returns.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

/// How a job's batch ended.
#[derive(Clone)]
enum Commit {
    /// Durable.
    Done,
    /// The commit failed; the job's own error, if it had one, is its answer.
    Failed(StoreError),
    /// No write transaction could be opened: the job ran against a read snapshot only to
    /// be answered, so its own error (a refused write) says nothing and this one is the
    /// answer.
    NotRun(StoreError),
}

/// What runs after a commit with its events.
pub type EventHook = Box<dyn Fn(Vec<Event>) + Send + Sync>;

/// What runs after a commit that queued outbox work.
pub type QueuedHook = Box<dyn Fn() + Send + Sync>;

/// The hooks run after a commit.
#[derive(Default)]
struct Hooks {
    events: Mutex<Option<EventHook>>,
    queued: Mutex<Option<QueuedHook>>,
}

struct Shared {
    jobs: Option<async_channel::Sender<Job>>,
    hook: Arc<Hooks>,
    commit_times: Arc<crate::metrics::Histogram>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Writer {
    /// Starts the writer thread for `db`, committing at most `max_batch` requests at once.
    pub fn start(db: Arc<redb::Database>, max_batch: usize, retention: Retention) -> Writer {
        let (jobs, queue) = async_channel::unbounded::<Job>();
        let max_batch = max_batch.max(1);
        let hook = Arc::new(Hooks::default());
        let thread_hook = hook.clone();
        let commit_times = Arc::new(crate::metrics::Histogram::default());
        let thread_times = commit_times.clone();
        let thread = std::thread::Builder::new()
            .name("hearth-writer".into())
            .spawn(move || run(db, queue, max_batch, retention, thread_hook, thread_times))
            .unwrap_or_else(|e| panic!("cannot start the database writer thread: {e}"));
        Writer {
            shared: Arc::new(Shared {
                jobs: Some(jobs),
                hook,
                commit_times,
                thread: Some(thread),
            }),
        }
    }

    /// How long group commits took, from the start of the write transaction to its
    /// durable end (the time a request waits on the disk).
    pub fn commit_times(&self) -> &crate::metrics::Histogram {
        &self.shared.commit_times
    }

    /// Sets the hook that receives each commit's events.
    pub fn on_events(&self, hook: EventHook) {
        *self
            .shared
            .hook
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Sets the hook told of each commit that queued outbox work.
    pub fn on_queued(&self, hook: QueuedHook) {
        *self
            .shared
            .hook
            .queued
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Queues `f` and waits until its commit is durable.
    pub async fn submit<R, E>(
        &self,
        f: impl FnOnce(&Tx) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = async_channel::bounded::<Result<R, E>>(1);
        let job: Job = Box::new(move |tx: &Tx| {
            let result = f(tx);
            Box::new(move |commit: Commit| {
                let outcome = match (result, commit) {
                    (_, Commit::NotRun(e)) => Err(E::from(e)),
                    (Err(e), _) => Err(e),
                    (Ok(_), Commit::Failed(e)) => Err(E::from(e)),
                    (Ok(value), Commit::Done) => Ok(value),
                };
                let _ = reply.try_send(outcome);
            })
        });
        let jobs = self
            .shared
            .jobs
            .as_ref()
            .ok_or_else(|| E::from(StoreError::WriterGone))?;
        jobs.send(job)
            .await
            .map_err(|_| E::from(StoreError::WriterGone))?;
        answer
            .recv()
            .await
            .map_err(|_| E::from(StoreError::WriterGone))?
    }
}

fn run(
    db: Arc<redb::Database>,
    queue: async_channel::Receiver<Job>,
    max_batch: usize,
    retention: Retention,
    hook: Arc<Hooks>,
    commit_times: Arc<crate::metrics::Histogram>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    while let Ok(first) = queue.recv_blocking() {
        batch.push(first);
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = std::time::Instant::now();
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let error = StoreError::from(e);
                for job in batch.drain(..) {
                    // The job never ran; answer it with the error through a throwaway
                    // read of nothing: run it against a failed commit.
                    fail_job(job, &db, error.clone());
                }
                continue;
            }
        };
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut panicked = false;
        let sink = EventSink::default();
        let tx = Tx::Write(&txn, &sink);
        for job in batch.drain(..) {
            match catch_unwind(AssertUnwindSafe(|| job(&tx))) {
                Ok(done) => completions.push(done),
                Err(_) => panicked = true,
            }
        }
        let finished = finish_batch(&tx, retention);
        let commit = if let Err(e) = finished {
            let _ = txn.abort();
            Err(e)
        } else if panicked {
            // A request handler panicked halfway: its partial writes must not land.
            let _ = txn.abort();
            Err(StoreError::Database(
                "a write request failed internally".into(),
            ))
        } else {
            txn.commit().map_err(StoreError::from)
        };
        if commit.is_ok() {
            commit_times.observe(began.elapsed());
        }
        let events = sink.take();
        // Events go out before the answers, so when a request returns its event is
        // already queued for every live connection.
        if commit.is_ok() && !events.is_empty() {
            if let Some(hook) = hook
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                hook(events);
            }
        }
        // The outbox worker is woken before the answers too, so a request that queued a
        // call returns with its delivery already under way.
        if commit.is_ok() && sink.queued() {
            if let Some(hook) = hook
                .queued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                hook();
            }
        }
        let commit = match commit {
            Ok(()) => Commit::Done,
            Err(e) => Commit::Failed(e),
        };
        for done in completions {
            done(commit.clone());
        }
    }
}

/// Answers a job that could not run because no transaction could be opened.
fn fail_job(job: Job, db: &redb::Database, error: StoreError) {
    use redb::ReadableDatabase;
    if let Ok(snapshot) = db.begin_read() {
        let done = job(&Tx::Read(&snapshot));
        done(Commit::NotRun(error));
    }
}

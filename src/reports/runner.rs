//! The report-job runner: one loop on the HTTP server's arbiter that queues due schedules' runs,
//! starts queued jobs (at most `reports.max_running_jobs` at once, oldest first), emails a
//! scheduled job's file when it ends, and removes expired files. Woken when a job is queued or
//! ends; otherwise it looks every [`TICK`].

use std::time::Duration;

use super::jobs::{self, JobQueue};
use super::schedules;

/// How often the runner looks for work and expired files, besides being woken.
pub const TICK: Duration = Duration::from_secs(2);

/// Starts the runner on the current arbiter.
pub fn start(queue: JobQueue) {
    tokio::task::spawn_local(async move {
        if let Err(err) = jobs::requeue_interrupted(&queue).await {
            tracing::warn!(error = %err, "report jobs: cannot requeue interrupted jobs");
        }
        loop {
            if let Err(err) = schedules::run_due(&queue).await {
                tracing::warn!(error = %err, "report schedules: cannot run");
            }
            if let Err(err) = start_due(&queue).await {
                tracing::warn!(error = %err, "report jobs: cannot read the queue");
            }
            if let Err(err) = jobs::remove_expired(&queue).await {
                tracing::warn!(error = %err, "report jobs: cannot remove expired files");
            }
            tokio::select! {
                () = queue.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

/// Starts every job there is room for, each on its own task once claimed.
async fn start_due(queue: &JobQueue) -> Result<(), sea_orm::DbErr> {
    for job in jobs::due(queue).await? {
        if !jobs::claim(queue, &job).await? {
            continue;
        }
        let queue = queue.clone();
        tokio::task::spawn_local(async move {
            let id = job.id;
            let outcome = jobs::run(&queue, &job).await;
            let finished = match jobs::finish(&queue, job, outcome).await {
                Ok(finished) => schedules::email_finished(&queue, &finished).await,
                Err(err) => Err(err),
            };
            if let Err(err) = finished {
                tracing::warn!(job = %id, error = %err, "report jobs: cannot record the outcome");
            }
            queue.wake.notify_one();
        });
    }
    Ok(())
}

//! Scheduled reports: a report definition sent by email daily, weekly or monthly at an hour
//! (UTC). Each run covers the period just ended (the day, the seven days, or the month before
//! the run), is generated as a report job, and is emailed as an attachment through the same
//! outbox as alerts. A platform that was down runs a missed schedule once, then keeps to the
//! calendar.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};
use insa_domain::notification::{Attachment, ReportEvent, ReportNotification, ReportSummary};
use insa_domain::{Action, Channel, DeliveryStatus, NotificationPayload};
use insa_entities::{report_jobs as jobs, report_schedules as schedules};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::jobs::JobQueue;
use super::{Format, Kind, ReportQuery};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Daily,
    /// On a weekday, 1 (Monday) to 7 (Sunday).
    Weekly(u32),
    /// On a day of the month, 1 to 28.
    Monthly(u32),
}

impl Frequency {
    pub fn from_model(schedule: &schedules::Model) -> Frequency {
        match schedule.frequency.as_str() {
            "weekly" => Frequency::Weekly(schedule.weekday.unwrap_or(1).clamp(1, 7) as u32),
            "monthly" => Frequency::Monthly(schedule.day.unwrap_or(1).clamp(1, 28) as u32),
            _ => Frequency::Daily,
        }
    }

    /// The first run strictly after `after`, at `hour`:00 UTC.
    pub fn next_run(self, hour: u32, after: DateTime<Utc>) -> DateTime<Utc> {
        let at = |date: NaiveDate| {
            Utc.from_utc_datetime(&date.and_hms_opt(hour.min(23), 0, 0).unwrap_or_default())
        };
        let today = after.date_naive();
        match self {
            Frequency::Daily => {
                let run = at(today);
                if run > after {
                    run
                } else {
                    at(today + Duration::days(1))
                }
            }
            Frequency::Weekly(weekday) => {
                let ahead = (7 + weekday as i64 - today.weekday().number_from_monday() as i64) % 7;
                let run = at(today + Duration::days(ahead));
                if run > after {
                    run
                } else {
                    run + Duration::days(7)
                }
            }
            Frequency::Monthly(day) => {
                let this_month = today.with_day(day).unwrap_or(today);
                let run = at(this_month);
                if run > after {
                    run
                } else {
                    at(this_month + Months::new(1))
                }
            }
        }
    }

    /// The period a run at `run` covers: the day, week or month before it.
    pub fn period(self, run: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = match self {
            Frequency::Daily => run - Duration::days(1),
            Frequency::Weekly(_) => run - Duration::days(7),
            Frequency::Monthly(_) => run
                .checked_sub_months(Months::new(1))
                .unwrap_or(run - Duration::days(30)),
        };
        (start, run)
    }
}

/// Queues a job for `schedule` covering the period that ends at `run`; the job's finish emails
/// it to the recipients.
pub async fn queue_run(
    queue: &JobQueue,
    schedule: &schedules::Model,
    run: DateTime<Utc>,
) -> Result<jobs::Model, sea_orm::DbErr> {
    let (start, end) = Frequency::from_model(schedule).period(run);
    let mut query: ReportQuery = serde_json::from_value(schedule.query.clone()).unwrap_or_default();
    query.start = Some(start);
    query.end = Some(end);
    query.format = Some(Format::parse(&schedule.format).unwrap_or(Format::Xlsx));
    let kind = Kind::parse(&schedule.kind).unwrap_or(Kind::Telemetry);
    queue
        .add(kind, &query, None, schedule.created_by, Some(schedule.id))
        .await
}

/// Runs every schedule that is due (once each), and moves it to its next run.
pub async fn run_due(queue: &JobQueue) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let due = schedules::Entity::find()
        .filter(schedules::Column::Enabled.eq(true))
        .filter(schedules::Column::NextRunAt.lte(now))
        .all(&queue.db)
        .await?;
    for schedule in due {
        let frequency = Frequency::from_model(&schedule);
        let next = frequency.next_run(schedule.hour as u32, now.max(schedule.next_run_at));
        // Claimed by moving its next run: a schedule runs once per slot.
        let claimed = schedules::Entity::update_many()
            .col_expr(schedules::Column::NextRunAt, next.into())
            .col_expr(schedules::Column::LastRunAt, now.into())
            .filter(schedules::Column::Id.eq(schedule.id))
            .filter(schedules::Column::NextRunAt.eq(schedule.next_run_at))
            .exec(&queue.db)
            .await?;
        if claimed.rows_affected == 1 {
            let job = queue_run(queue, &schedule, schedule.next_run_at).await?;
            schedules::Entity::update_many()
                .col_expr(schedules::Column::LastJobId, job.id.into())
                .filter(schedules::Column::Id.eq(schedule.id))
                .exec(&queue.db)
                .await?;
            tracing::info!(schedule = %schedule.name, job = %job.id, "scheduled report queued");
        }
    }
    Ok(())
}

/// The outbox row that emails a finished scheduled job's file to the schedule's recipients, or,
/// when it failed, why there is no report this time.
pub async fn email_finished(queue: &JobQueue, job: &jobs::Model) -> Result<(), sea_orm::DbErr> {
    let Some(schedule_id) = job.schedule_id else {
        return Ok(());
    };
    let Some(schedule) = schedules::Entity::find_by_id(schedule_id)
        .one(&queue.db)
        .await?
    else {
        return Ok(());
    };
    let to: Vec<String> = serde_json::from_value(schedule.recipients.clone()).unwrap_or_default();
    let query: ReportQuery = serde_json::from_value(job.query.clone()).unwrap_or_default();
    let format = Format::parse(&job.format).unwrap_or(Format::Xlsx);
    let failed = job.status == "failed";
    let payload = ReportNotification {
        event: if failed {
            ReportEvent::ReportFailed
        } else {
            ReportEvent::Report
        },
        error: job.error.clone(),
        report: ReportSummary {
            schedule_id: schedule.id,
            schedule: schedule.name.clone(),
            job_id: job.id,
            kind: job.kind.clone(),
            start: query.start,
            end: query.end,
            period: match (query.start, query.end) {
                (Some(start), Some(end)) => format!(
                    "{} to {}",
                    start.format("%Y-%m-%d %H:%M UTC"),
                    end.format("%Y-%m-%d %H:%M UTC")
                ),
                _ => String::new(),
            },
            rows: job.rows,
        },
        attachment: Attachment {
            path: queue.file(job.id).to_string_lossy().into_owned(),
            name: job.file_name.clone(),
            content_type: format.content_type().to_string(),
        },
        action: Action::Email { to: to.clone() },
    };
    let now = Utc::now();
    insa_entities::notification_deliveries::ActiveModel {
        id: Set(Uuid::new_v4()),
        alert_id: Set(None),
        channel: Set(Channel::Email),
        target: Set(to.join(", ")),
        payload: Set(NotificationPayload::Report(payload)),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(None),
        last_error: Set(None),
        sent_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&queue.db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn daily_runs_come_at_the_hour_after_now() {
        let daily = Frequency::Daily;
        assert_eq!(
            daily.next_run(6, t("2026-11-27T05:59:00Z")),
            t("2026-11-27T06:00:00Z")
        );
        assert_eq!(
            daily.next_run(6, t("2026-11-27T06:00:00Z")),
            t("2026-11-28T06:00:00Z")
        );
        assert_eq!(
            daily.period(t("2026-11-28T06:00:00Z")),
            (t("2026-11-27T06:00:00Z"), t("2026-11-28T06:00:00Z"))
        );
    }

    #[test]
    fn weekly_runs_come_on_their_weekday() {
        // 2026-11-27 is a Friday.
        let mondays = Frequency::Weekly(1);
        assert_eq!(
            mondays.next_run(7, t("2026-11-27T10:00:00Z")),
            t("2026-11-30T07:00:00Z")
        );
        assert_eq!(
            mondays.next_run(7, t("2026-11-30T07:00:00Z")),
            t("2026-12-07T07:00:00Z")
        );
        let fridays = Frequency::Weekly(5);
        assert_eq!(
            fridays.next_run(12, t("2026-11-27T10:00:00Z")),
            t("2026-11-27T12:00:00Z")
        );
        assert_eq!(
            fridays.period(t("2026-11-27T12:00:00Z")).0,
            t("2026-11-20T12:00:00Z")
        );
    }

    #[test]
    fn monthly_runs_come_on_their_day_and_cover_the_month_before() {
        let firsts = Frequency::Monthly(1);
        assert_eq!(
            firsts.next_run(0, t("2026-11-27T10:00:00Z")),
            t("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            firsts.next_run(0, t("2026-12-31T23:00:00Z")),
            t("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            firsts.period(t("2026-12-01T00:00:00Z")),
            (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z"))
        );
        let late = Frequency::Monthly(28);
        assert_eq!(
            late.next_run(6, t("2027-02-28T07:00:00Z")),
            t("2027-03-28T06:00:00Z")
        );
    }
}

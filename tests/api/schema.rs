use insa_migration::{Migrator, MigratorTrait, SchemaManager};

use crate::helpers::spawn_app;

const TABLES: [&str; 12] = [
    "telemetry_latest",
    "devices",
    "telemetry",
    "alerts",
    "rules",
    "api_keys",
    "users",
    "refresh_tokens",
    "notification_deliveries",
    "audit_log",
    "report_jobs",
    "report_schedules",
];

#[actix_web::test]
async fn start_up_creates_every_table_and_migrations_roll_back_and_reapply() {
    let app = spawn_app().await;
    let manager = SchemaManager::new(&app.db);
    for table in TABLES {
        assert!(
            manager.has_table(table).await.expect("query"),
            "{table} missing"
        );
    }
    for (table, column) in [
        ("devices", "connection_string"),
        ("telemetry", "quality"),
        ("alerts", "acknowledged_by"),
        ("api_keys", "rate_limit"),
    ] {
        assert!(
            manager.has_column(table, column).await.expect("query"),
            "{table}.{column}"
        );
    }
    assert!(Migrator::get_pending_migrations(&app.db)
        .await
        .expect("status")
        .is_empty());

    Migrator::down(&app.db, None).await.expect("roll back");
    for table in TABLES {
        assert!(
            !manager.has_table(table).await.expect("query"),
            "{table} left behind"
        );
    }
    Migrator::up(&app.db, None).await.expect("re-apply");
    for table in TABLES {
        assert!(
            manager.has_table(table).await.expect("query"),
            "{table} missing again"
        );
    }
}

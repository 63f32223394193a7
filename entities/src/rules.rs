//! Threshold rules evaluated by device actors.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// Target: one device, or every device of a type and/or area.
    pub device_id: Option<Uuid>,
    pub device_type: Option<String>,
    pub area: Option<String>,
    pub key: String,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`, `between`, `outside`.
    pub condition: String,
    pub threshold: Option<f64>,
    /// Upper bound for `between` / `outside`.
    pub threshold_high: Option<f64>,
    /// The condition must hold this long before an alert is raised.
    pub for_seconds: i32,
    /// How far back past the threshold a value must go before the alert clears.
    pub hysteresis: f64,
    pub severity: String,
    /// `[{"type":"email","to":[...]}, {"type":"webhook","url":..,"secret":..}, {"type":"mqtt",...}]`.
    pub actions: Json,
    pub auto_resolve: bool,
    pub enabled: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::devices::Entity",
        from = "Column::DeviceId",
        to = "super::devices::Column::Id",
        on_delete = "Cascade"
    )]
    Device,
}

impl Related<super::devices::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Device.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

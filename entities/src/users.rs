//! People who log in: engineers, operators, viewers and administrators.
use sea_orm::entity::prelude::*;

use crate::Role;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Stored lower-cased so logins are case-insensitive.
    #[sea_orm(unique)]
    pub email: String,
    /// argon2id PHC string; never leaves the server.
    pub password_hash: String,
    pub role: Role,
    pub name: Option<String>,
    /// A disabled user cannot log in and their tokens stop working.
    pub is_active: bool,
    pub last_login_at: Option<DateTimeUtc>,
    pub password_changed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::refresh_tokens::Entity")]
    RefreshTokens,
}

impl Related<super::refresh_tokens::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RefreshTokens.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

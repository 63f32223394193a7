//! The values insa-iiot is about, each parsed once where it enters and typed from there on. Pure:
//! no I/O, no HTTP, no database connection; the API, the actors and the storage all speak it
//! (the tables store these types as they are: string enums and JSON columns).
//!
//! - [`rule`]: [`Rule`] (what device actors evaluate), its [`Target`], and [`RuleDefinition`]
//!   (a rule as people define it), parsed with every problem at once
//! - [`condition`]: [`Condition`], carrying its thresholds: breach, clear (hysteresis), message,
//!   stored columns
//! - [`action`]: [`Action`] (email, webhook, MQTT command), its parsing, masked secrets and the
//!   command-topic rule; [`Channel`]
//! - [`alert`]: [`Severity`], [`AlertStatus`], [`AlertEvent`]
//! - [`notification`]: [`NotificationPayload`], what the outbox holds and the notifier sends;
//!   [`DeliveryStatus`]
//! - [`device`]: [`DeviceStatus`]; [`role`]: [`Role`]
//! - [`problems`]: [`FieldProblem`] and [`Problems`], what is wrong with an input, field by field
//! - [`text`]: text the databases can store (no NUL), the one length check of named fields, the
//!   email check

pub mod action;
pub mod alert;
pub mod condition;
pub mod device;
pub mod notification;
pub mod problems;
pub mod role;
pub mod rule;
pub mod text;

pub use action::{Action, Actions, Channel};
pub use alert::{AlertEvent, AlertStatus, Severity};
pub use condition::{Condition, Thresholds};
pub use device::DeviceStatus;
pub use notification::{DeliveryStatus, NotificationPayload};
pub use problems::{FieldProblem, Problems};
pub use role::Role;
pub use rule::{Rule, RuleDefinition, RuleParts, Target};

//! What is wrong with input, field by field. Checks collect every problem at once (a client
//! fixes a form in one round trip); the web layer answers them as 422 `validation_failed` with
//! `details.fields`.

/// One field's problem: the field's path as the client wrote it (`name`, `actions[0].url`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

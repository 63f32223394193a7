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
    /// The problem `message` with `field`.
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

/// Why an input was refused: every field problem found, in the order found (never empty). The
/// value a parse returns instead of what it would have built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<FieldProblem>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

//! Syntax checks that services and the configuration share.

use crate::error::FieldError;

/// Trims and lower-cases an email address and checks its syntax.
pub fn normalize_email(email: &str) -> Result<String, FieldError> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
        return Err(FieldError::new(
            "email",
            "invalid",
            "Not a valid email address.",
        ));
    }
    Ok(email)
}

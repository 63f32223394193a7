//! HS256 access and refresh tokens.
//!
//! Both kinds carry `typ`; decoding pins HS256 and the expected kind, so an access token is never
//! accepted as a refresh token nor the reverse. `sid` names the login session (the refresh-token
//! family): logging out ends it, and access tokens of an ended session stop working.

use std::path::Path;

use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::settings::{AuthSettings, RunMode, Secret};

const ISSUER: &str = "insa-iiot";

/// Which kind of token this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user's id.
    pub sub: Uuid,
    pub typ: TokenKind,
    /// The login session (refresh-token family).
    pub sid: Uuid,
    /// Unique per token; for refresh tokens, the `refresh_tokens` row id.
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// The role when the token was issued (informational: the server reads the current role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Signing keys and lifetimes.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], settings: &AuthSettings) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl_secs: settings.access_token_ttl_secs,
            refresh_ttl_secs: settings.refresh_token_ttl_secs,
        }
    }

    /// Signs a token of `kind` for `user`, in session `sid`, with id `jti`.
    pub fn issue(
        &self,
        kind: TokenKind,
        user: Uuid,
        sid: Uuid,
        jti: Uuid,
        role: Option<&str>,
    ) -> Result<String, TokenError> {
        let now = Utc::now().timestamp();
        let ttl = match kind {
            TokenKind::Access => self.access_ttl_secs,
            TokenKind::Refresh => self.refresh_ttl_secs,
        };
        let claims = Claims {
            iss: ISSUER.into(),
            sub: user,
            typ: kind,
            sid,
            jti,
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            role: role.map(str::to_string),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|err| TokenError::Signing(err.to_string()))
    }

    /// Verifies signature, expiry, issuer and kind.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        let claims = decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?
            .claims;
        if claims.typ != kind {
            return Err(TokenError::WrongKind(kind));
        }
        Ok(claims)
    }
}

/// Why a token was not issued or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp` (401 `token_expired`: the client may refresh).
    #[error("the token has expired")]
    Expired,
    /// Not signed by this platform, malformed, or of another issuer (401 `invalid_token`).
    #[error("the token is not valid")]
    Invalid,
    /// A valid token of the other kind (401 `invalid_token`).
    #[error("this endpoint needs {}", match .0 {
        TokenKind::Access => "an access token",
        TokenKind::Refresh => "a refresh token",
    })]
    WrongKind(TokenKind),
    /// Signing failed: unexpected.
    #[error("token signing: {0}")]
    Signing(String),
}

/// Errors finding the signing secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write the JWT secret file `{path}`: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("auth.jwt_secret is required when INSA_ENV=production")]
    Missing,
}

/// The configured secret; in development, one generated on first start and kept in
/// `<data_dir>/jwt_secret` so tokens survive restarts.
pub fn load_or_create_secret(
    configured: Option<&Secret>,
    mode: RunMode,
    data_dir: &Path,
) -> Result<Vec<u8>, SecretError> {
    if let Some(secret) = configured {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    if mode == RunMode::Production {
        return Err(SecretError::Missing);
    }
    let path = data_dir.join("jwt_secret");
    let file_error = |source| SecretError::File {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 32 => {
            return Ok(existing.trim().as_bytes().to_vec())
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(file_error(err)),
    }
    std::fs::create_dir_all(data_dir).map_err(file_error)?;
    let secret = format!(
        "{}{}",
        super::api_keys::generate_key(),
        super::api_keys::generate_key()
    );
    write_private(&path, &secret).map_err(file_error)?;
    tracing::info!(path = %path.display(), "generated a JWT secret for development");
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        let settings = crate::settings::Settings::defaults().expect("defaults");
        JwtKeys::new(&[7u8; 32], &settings.auth)
    }

    #[test]
    fn a_token_verifies_only_as_its_own_kind() {
        let keys = keys();
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let access = keys
            .issue(TokenKind::Access, user, sid, Uuid::new_v4(), Some("admin"))
            .expect("issue");
        let claims = keys.verify(&access, TokenKind::Access).expect("valid");
        assert_eq!((claims.sub, claims.sid), (user, sid));
        let err = keys
            .verify(&access, TokenKind::Refresh)
            .expect_err("wrong kind");
        assert!(
            matches!(err, TokenError::WrongKind(TokenKind::Refresh)),
            "{err}"
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let settings = crate::settings::Settings::defaults().expect("defaults");
        let other = JwtKeys::new(&[9u8; 32], &settings.auth);
        let token = other
            .issue(
                TokenKind::Access,
                Uuid::new_v4(),
                Uuid::new_v4(),
                Uuid::new_v4(),
                None,
            )
            .expect("issue");
        assert!(matches!(
            keys().verify(&token, TokenKind::Access),
            Err(TokenError::Invalid)
        ));
    }

    #[test]
    fn the_development_secret_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_secret(None, RunMode::Development, dir.path()).expect("create");
        let second = load_or_create_secret(None, RunMode::Development, dir.path()).expect("reuse");
        assert_eq!(first, second);
        assert!(first.len() >= 32);
        assert!(load_or_create_secret(None, RunMode::Production, dir.path()).is_err());
    }
}

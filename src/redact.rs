//! What logs and error messages may show of a URL that can hold a password (the database's):
//! the password of its userinfo and every secret-naming query parameter become `***`.

/// Query parameters whose value is a secret (`?password=...`, `?sslpassword=...`).
const SECRET_PARAMS: [&str; 7] = [
    "password",
    "sslpassword",
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
];

/// The URL with any password replaced by `***`, for logs and error messages: the userinfo's
/// password and the value of every query parameter that names a secret.
pub fn redact_url(url: &str) -> String {
    // The userinfo first: its password may hold a `?`.
    let url = redact_userinfo(url);
    match url.split_once('?') {
        None => url,
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
                    _ => param.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS
        .iter()
        .any(|secret| name == *secret || name.ends_with(&format!("_{secret}")))
        || name.contains("password")
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // userinfo ends at the last '@' before the first '/'.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_from_urls() {
        assert_eq!(
            redact_url("postgres://iiot:s3cr@t@db.local:5432/insa"),
            "postgres://iiot:***@db.local:5432/insa"
        );
        assert_eq!(
            redact_url("postgres://iiot@db.local/insa"),
            "postgres://iiot@db.local/insa"
        );
        assert_eq!(
            redact_url("sqlite://data/insa-iiot.db?mode=rwc"),
            "sqlite://data/insa-iiot.db?mode=rwc"
        );
    }

    #[test]
    fn secret_query_parameters_are_hidden_from_urls() {
        assert_eq!(
            redact_url("postgres://db.local/insa?user=iiot&password=s3cr%40t&sslmode=require"),
            "postgres://db.local/insa?user=iiot&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:p@db/insa?sslpassword=x&PASSWORD=y&api_token=z&keepalives=1"),
            "postgres://u:***@db/insa?sslpassword=***&PASSWORD=***&api_token=***&keepalives=1"
        );
        assert_eq!(
            redact_url("postgres://db/insa?password"),
            "postgres://db/insa?password"
        );
    }
}

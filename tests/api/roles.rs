//! The whole caller x operation matrix of the platform's access rules (docs/API.md,
//! "Authentication": the roles table): every operation of the OpenAPI document, listed once in
//! [`OPERATIONS`] with the least caller allowed, called by nobody, a device key and a person of
//! each role.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{eventually, read, seed_device, seed_reading, spawn_app, As, TestApp};
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD};

/// The roles, each allowed everything the ones before it are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Viewer,
    Operator,
    Engineer,
    Admin,
}

/// The least caller an operation lets in.
#[derive(Clone, Copy, Debug)]
enum Least {
    /// Anyone, without credentials.
    Public,
    /// A person of this role or above.
    Person(Role),
    /// A person of this role or above, or a device key (with the permission it needs).
    PersonOrKey(Role),
}

use Least::{Person, PersonOrKey, Public};
use Role::{Admin, Engineer, Operator, Viewer};

/// Every operation of `GET /api/v1/openapi.json`, as the document spells it, with the least
/// caller allowed. A person refreshes with a refresh token of the role (`/auth/refresh`).
const OPERATIONS: &[(&str, &str, Least)] = &[
    ("GET", "/health", Public),
    ("GET", "/api/v1/status", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/refresh", Person(Viewer)),
    ("POST", "/api/v1/auth/logout", Person(Viewer)),
    ("GET", "/api/v1/auth/me", Person(Viewer)),
    ("POST", "/api/v1/auth/password", Person(Viewer)),
    ("GET", "/api/v1/users", Person(Admin)),
    ("POST", "/api/v1/users", Person(Admin)),
    ("GET", "/api/v1/users/{id}", Person(Admin)),
    ("PUT", "/api/v1/users/{id}", Person(Admin)),
    ("DELETE", "/api/v1/users/{id}", Person(Admin)),
    ("GET", "/api/v1/devices", Person(Viewer)),
    ("POST", "/api/v1/devices", Person(Engineer)),
    ("GET", "/api/v1/devices/{id}", PersonOrKey(Viewer)),
    ("PUT", "/api/v1/devices/{id}", Person(Engineer)),
    ("DELETE", "/api/v1/devices/{id}", Person(Engineer)),
    ("GET", "/api/v1/api-keys", Person(Engineer)),
    ("POST", "/api/v1/api-keys", Person(Engineer)),
    ("GET", "/api/v1/api-keys/{id}", Person(Engineer)),
    ("DELETE", "/api/v1/api-keys/{id}", Person(Engineer)),
    ("GET", "/api/v1/ca", Public),
    ("GET", "/api/v1/devices/{id}/certificates", Person(Engineer)),
    (
        "POST",
        "/api/v1/devices/{id}/certificates",
        Person(Engineer),
    ),
    (
        "DELETE",
        "/api/v1/devices/{id}/certificates/{cert_id}",
        Person(Engineer),
    ),
    ("POST", "/api/v1/telemetry", PersonOrKey(Engineer)),
    ("GET", "/api/v1/telemetry", PersonOrKey(Viewer)),
    ("GET", "/api/v1/telemetry/latest", PersonOrKey(Viewer)),
    ("GET", "/api/v1/rules", Person(Viewer)),
    ("POST", "/api/v1/rules", Person(Engineer)),
    ("GET", "/api/v1/rules/{id}", Person(Viewer)),
    ("PUT", "/api/v1/rules/{id}", Person(Engineer)),
    ("DELETE", "/api/v1/rules/{id}", Person(Engineer)),
    ("GET", "/api/v1/alerts", Person(Viewer)),
    ("GET", "/api/v1/alerts/{id}", Person(Viewer)),
    ("POST", "/api/v1/alerts/{id}/acknowledge", Person(Operator)),
    ("POST", "/api/v1/alerts/{id}/resolve", Person(Operator)),
    ("GET", "/api/v1/notifications", Person(Viewer)),
    ("POST", "/api/v1/notifications/{id}/retry", Person(Operator)),
    ("GET", "/api/v1/reports/telemetry", Person(Viewer)),
    ("GET", "/api/v1/reports/alerts", Person(Viewer)),
    ("POST", "/api/v1/reports", Person(Viewer)),
    ("GET", "/api/v1/reports", Person(Viewer)),
    ("GET", "/api/v1/reports/{id}", Person(Viewer)),
    ("GET", "/api/v1/reports/{id}/download", Person(Viewer)),
    ("GET", "/api/v1/report-schedules", Person(Viewer)),
    ("POST", "/api/v1/report-schedules", Person(Engineer)),
    ("GET", "/api/v1/report-schedules/{id}", Person(Viewer)),
    ("PUT", "/api/v1/report-schedules/{id}", Person(Engineer)),
    ("DELETE", "/api/v1/report-schedules/{id}", Person(Engineer)),
    (
        "POST",
        "/api/v1/report-schedules/{id}/run",
        Person(Engineer),
    ),
    ("GET", "/api/v1/audit-log", Person(Admin)),
    ("POST", "/api/v1/ws/ticket", Person(Viewer)),
];

/// Who calls.
enum Caller {
    Nobody,
    /// A read and write key of the matrix's device.
    Key(String),
    Person {
        role: Role,
        email: String,
        password: String,
        token: String,
    },
}

impl Caller {
    fn name(&self) -> String {
        match self {
            Self::Nobody => "nobody".into(),
            Self::Key(_) => "a device key".into(),
            Self::Person { role, .. } => format!("{role:?}").to_lowercase(),
        }
    }

    fn allowed(&self, least: Least) -> bool {
        match (least, self) {
            (Public, _) => true,
            (Person(least) | PersonOrKey(least), Self::Person { role, .. }) => *role >= least,
            (PersonOrKey(_), Self::Key(_)) => true,
            _ => false,
        }
    }
}

/// What the matrix acts on, created once. Operations that delete have a resource of their own,
/// so the others keep theirs.
struct Fixtures {
    device: String,
    doomed_device: String,
    key: String,
    doomed_key: String,
    doomed_certificate: String,
    user: String,
    doomed_user: String,
    rule: String,
    doomed_rule: String,
    alert: String,
    delivery: String,
    job: String,
    schedule: String,
    doomed_schedule: String,
}

/// The operations of the OpenAPI document: (METHOD, path).
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item");
            methods
                .keys()
                .filter(|m| ["get", "put", "post", "delete", "patch", "head"].contains(&m.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A minimal valid request for the operation: the path with its ids, and the body.
fn request(method: &str, path: &str, f: &Fixtures, caller: &Caller) -> (String, Option<Value>) {
    let device = &f.device;
    match (method, path) {
        ("POST", "/api/v1/auth/login") => (
            path.into(),
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        ),
        // A valid change would end the caller's other sessions, which the rest of the matrix
        // uses: a new password too short is refused (422) after the caller is let in.
        ("POST", "/api/v1/auth/password") => {
            let current = match caller {
                Caller::Person { password, .. } => password.as_str(),
                _ => "not-a-person",
            };
            (
                path.into(),
                Some(json!({"current_password": current, "new_password": "short"})),
            )
        }
        ("POST", "/api/v1/users") => (
            path.into(),
            Some(json!({"email": "new@insa.com", "password": "new-password", "role": "viewer"})),
        ),
        ("GET", "/api/v1/users/{id}") => (format!("/api/v1/users/{}", f.user), None),
        ("PUT", "/api/v1/users/{id}") => (
            format!("/api/v1/users/{}", f.user),
            Some(json!({"name": "Target"})),
        ),
        ("DELETE", "/api/v1/users/{id}") => (format!("/api/v1/users/{}", f.doomed_user), None),
        ("POST", "/api/v1/devices") => (
            path.into(),
            Some(json!({"name": "Matrix device", "type": "flow"})),
        ),
        ("GET", "/api/v1/devices/{id}") => (format!("/api/v1/devices/{device}"), None),
        ("PUT", "/api/v1/devices/{id}") => (
            format!("/api/v1/devices/{device}"),
            Some(json!({"location": "Zone C"})),
        ),
        ("DELETE", "/api/v1/devices/{id}") => {
            (format!("/api/v1/devices/{}", f.doomed_device), None)
        }
        ("POST", "/api/v1/api-keys") => (
            path.into(),
            Some(json!({"name": "matrix", "device_id": device})),
        ),
        ("GET", "/api/v1/api-keys/{id}") => (format!("/api/v1/api-keys/{}", f.key), None),
        ("DELETE", "/api/v1/api-keys/{id}") => (format!("/api/v1/api-keys/{}", f.doomed_key), None),
        ("GET", "/api/v1/devices/{id}/certificates") => {
            (format!("/api/v1/devices/{device}/certificates"), None)
        }
        ("POST", "/api/v1/devices/{id}/certificates") => (
            format!("/api/v1/devices/{device}/certificates"),
            Some(json!({"valid_days": 30})),
        ),
        ("DELETE", "/api/v1/devices/{id}/certificates/{cert_id}") => (
            format!(
                "/api/v1/devices/{device}/certificates/{}",
                f.doomed_certificate
            ),
            None,
        ),
        ("POST", "/api/v1/telemetry") => (
            path.into(),
            Some(json!({"device_id": device, "telemetry": {"flow": 12.5}})),
        ),
        ("GET", "/api/v1/telemetry" | "/api/v1/telemetry/latest") => {
            (format!("{path}?device_id={device}"), None)
        }
        ("POST", "/api/v1/rules") => (
            path.into(),
            Some(
                json!({"name": "Matrix rule", "device_id": device, "key": "flow",
                        "condition": ">", "threshold": 1000}),
            ),
        ),
        ("GET", "/api/v1/rules/{id}") => (format!("/api/v1/rules/{}", f.rule), None),
        ("PUT", "/api/v1/rules/{id}") => (
            format!("/api/v1/rules/{}", f.rule),
            Some(json!({"severity": "critical"})),
        ),
        ("DELETE", "/api/v1/rules/{id}") => (format!("/api/v1/rules/{}", f.doomed_rule), None),
        ("GET", "/api/v1/alerts/{id}") => (format!("/api/v1/alerts/{}", f.alert), None),
        ("POST", "/api/v1/alerts/{id}/acknowledge") => {
            (format!("/api/v1/alerts/{}/acknowledge", f.alert), None)
        }
        ("POST", "/api/v1/alerts/{id}/resolve") => {
            (format!("/api/v1/alerts/{}/resolve", f.alert), None)
        }
        ("POST", "/api/v1/notifications/{id}/retry") => {
            (format!("/api/v1/notifications/{}/retry", f.delivery), None)
        }
        ("GET", "/api/v1/reports/telemetry") => (format!("{path}?device_id={device}"), None),
        ("POST", "/api/v1/reports") => (
            path.into(),
            Some(json!({"kind": "telemetry", "device_id": [device]})),
        ),
        ("GET", "/api/v1/reports/{id}") => (format!("/api/v1/reports/{}", f.job), None),
        ("GET", "/api/v1/reports/{id}/download") => {
            (format!("/api/v1/reports/{}/download", f.job), None)
        }
        ("POST", "/api/v1/report-schedules") => (path.into(), Some(schedule("Matrix", device))),
        ("GET", "/api/v1/report-schedules/{id}") => {
            (format!("/api/v1/report-schedules/{}", f.schedule), None)
        }
        ("PUT", "/api/v1/report-schedules/{id}") => (
            format!("/api/v1/report-schedules/{}", f.schedule),
            Some(json!({"hour": 7})),
        ),
        ("DELETE", "/api/v1/report-schedules/{id}") => (
            format!("/api/v1/report-schedules/{}", f.doomed_schedule),
            None,
        ),
        ("POST", "/api/v1/report-schedules/{id}/run") => {
            (format!("/api/v1/report-schedules/{}/run", f.schedule), None)
        }
        (_, path) if !path.contains('{') => (path.into(), None),
        _ => panic!("no request written for {method} {path}"),
    }
}

/// A daily telemetry report of `device` by email.
fn schedule(name: &str, device: &str) -> Value {
    json!({"name": name, "kind": "telemetry", "device_id": [device],
           "frequency": "daily", "recipients": ["ops@example.com"]})
}

/// Sends a request and answers its status and JSON body (`Null` for a file or no body).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    who: As<'_>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let response = app
        .request(method, path, who, body)
        .send()
        .await
        .expect("request sent");
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let reply = read(response).await;
        (reply.status, reply.body)
    } else {
        (response.status(), Value::Null)
    }
}

/// Creates `body` at `path` as the admin; its id.
async fn created(app: &TestApp, admin: &str, path: &str, body: Value) -> String {
    let reply = app.post(path, As::Bearer(admin), &body).await;
    assert!(reply.status.is_success(), "POST {path}: {reply:?}");
    reply.body["id"].as_str().expect("id").to_string()
}

async fn fixtures(app: &TestApp, admin: &str) -> (Fixtures, String) {
    let device = app.create_device_id(admin, seed_device()).await;
    let doomed_device = app
        .create_device_id(admin, json!({"name": "Doomed", "type": "flow"}))
        .await;
    let (secret, key) = app
        .create_api_key(
            admin,
            json!({"name": "matrix device", "device_id": device,
                   "permissions": {"read": true, "write": true}}),
        )
        .await;
    let (_, doomed_key) = app
        .create_api_key(admin, json!({"name": "doomed", "device_id": device}))
        .await;
    let user = created(
        app,
        admin,
        "/api/v1/users",
        json!({"email": "target@insa.com", "password": "target-password", "role": "viewer"}),
    )
    .await;
    let doomed_user = created(
        app,
        admin,
        "/api/v1/users",
        json!({"email": "doomed@insa.com", "password": "doomed-password", "role": "viewer"}),
    )
    .await;
    // Raises an alert at the next reading, and a webhook to an internal address (refused: the
    // delivery fails at once) to have a delivery.
    let rule = created(
        app,
        admin,
        "/api/v1/rules",
        json!({"name": "Warm", "device_id": device, "key": "temperature", "condition": ">",
               "threshold": 20, "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]}),
    )
    .await;
    let doomed_rule = created(
        app,
        admin,
        "/api/v1/rules",
        json!({"name": "Doomed", "device_id": device, "key": "flow", "condition": ">",
               "threshold": 1000}),
    )
    .await;
    app.send_reading(admin, &device, seed_reading(&device)["telemetry"].clone())
        .await;
    let alerts = format!("/api/v1/alerts?device_id={device}");
    let alert = eventually(std::time::Duration::from_secs(10), "the alert", || async {
        let reply = app.get(&alerts, As::Bearer(admin)).await;
        reply.body["alerts"][0]["id"].as_str().map(String::from)
    })
    .await;
    let delivery = eventually(
        std::time::Duration::from_secs(10),
        "the failed delivery",
        || async {
            let reply = app.get("/api/v1/notifications", As::Bearer(admin)).await;
            let delivery = &reply.body["notifications"][0];
            let failed = delivery["status"] == "failed";
            delivery["id"].as_str().filter(|_| failed).map(String::from)
        },
    )
    .await;
    let job = created(
        app,
        admin,
        "/api/v1/reports",
        json!({"kind": "telemetry", "device_id": [device]}),
    )
    .await;
    let schedule = created(
        app,
        admin,
        "/api/v1/report-schedules",
        self::schedule("Daily", &device),
    )
    .await;
    let doomed_schedule = created(
        app,
        admin,
        "/api/v1/report-schedules",
        self::schedule("Doomed", &device),
    )
    .await;
    let doomed_certificate = created(
        app,
        admin,
        &format!("/api/v1/devices/{device}/certificates"),
        json!({}),
    )
    .await;
    let fixtures = Fixtures {
        doomed_certificate,
        device,
        doomed_device,
        key: key["id"].as_str().expect("key id").to_string(),
        doomed_key: doomed_key["id"].as_str().expect("key id").to_string(),
        user,
        doomed_user,
        rule,
        doomed_rule,
        alert,
        delivery,
        job,
        schedule,
        doomed_schedule,
    };
    (fixtures, secret)
}

#[actix_web::test]
async fn every_operation_lets_in_exactly_the_callers_it_should() {
    let app = spawn_app().await;

    // The table and the document name the same operations.
    let document = app.get("/api/v1/openapi.json", As::Nobody).await;
    assert_eq!(document.status, StatusCode::OK);
    let documented = documented(&document.body);
    let listed: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(listed.len(), OPERATIONS.len(), "an operation listed twice");
    let missing: Vec<_> = documented.difference(&listed).collect();
    assert!(missing.is_empty(), "not in OPERATIONS: {missing:?}");
    let unknown: Vec<_> = listed.difference(&documented).collect();
    assert!(unknown.is_empty(), "not in the document: {unknown:?}");

    let admin = app.admin_token().await;
    let (fixtures, key) = fixtures(&app, &admin).await;
    let mut callers = vec![Caller::Nobody, Caller::Key(key)];
    for (role, name) in [
        (Viewer, "viewer"),
        (Operator, "operator"),
        (Engineer, "engineer"),
    ] {
        let (email, password, token) = app.user_with_role(&admin, name).await;
        callers.push(Caller::Person {
            role,
            email,
            password,
            token,
        });
    }
    callers.push(Caller::Person {
        role: Admin,
        email: ADMIN_EMAIL.into(),
        password: ADMIN_PASSWORD.into(),
        token: admin.clone(),
    });

    let mut checked = 0;
    for (method, template, least) in OPERATIONS {
        for caller in &callers {
            let (path, body) = request(method, template, &fixtures, caller);
            // Logging out ends the session, refreshing takes a refresh token: a person does
            // both with a session of its own.
            let own;
            let who = match caller {
                Caller::Nobody => As::Nobody,
                Caller::Key(key) => As::ApiKey(key),
                Caller::Person {
                    email,
                    password,
                    token,
                    ..
                } => match *template {
                    "/api/v1/auth/logout" | "/api/v1/auth/refresh" => {
                        let session = app.login(email, password).await;
                        let kind = if *template == "/api/v1/auth/logout" {
                            "access_token"
                        } else {
                            "refresh_token"
                        };
                        own = session.body[kind].as_str().expect("token").to_string();
                        As::Bearer(&own)
                    }
                    _ => As::Bearer(token),
                },
            };
            let (status, reply) = call(&app, method, &path, who, body.as_ref()).await;
            let label = format!("{method} {path} as {}: {status} {reply}", caller.name());
            if caller.allowed(*least) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{label}: should be let in"
                );
                assert!(!status.is_server_error(), "{label}");
            } else {
                match caller {
                    Caller::Person { .. } => {
                        assert_eq!(status, StatusCode::FORBIDDEN, "{label}");
                        assert_eq!(reply["error"]["code"], "forbidden", "{label}");
                    }
                    _ => {
                        assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}");
                        assert_eq!(reply["error"]["code"], "missing_credentials", "{label}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, OPERATIONS.len() * 6);
}

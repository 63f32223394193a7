//! Throw-away certificate authorities made with the `openssl` command, for the tests of HTTPS
//! and of the platform's TLS links (SMTP, PostgreSQL, MQTT): server certificates for
//! 127.0.0.1/localhost (or any name), and client certificates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// How a test key is written: the three PEM forms the platform reads.
#[derive(Clone, Copy)]
pub enum KeyForm {
    Pkcs8,
    Sec1,
    Rsa,
}

/// The extensions of a server certificate for 127.0.0.1 and localhost.
pub const SERVER_LOCALHOST: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
     basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
     extendedKeyUsage=serverAuth\n";

/// The extensions of a client certificate (its identity is the subject's CN).
pub const CLIENT: &str = "basicConstraints=CA:FALSE\n\
     keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";

/// How a Mosquitto client (`mosquitto_pub`, `mosquitto_sub`) logs in over TLS.
pub enum Login<'a> {
    /// The certificate `{name}.pem` and key `{name}.key` in the folder.
    Certificate(&'a Path, &'a str),
    /// Username and password (an API key's id and the key).
    Key(&'a str, &'a str),
    Nothing,
}

/// Mosquitto client arguments: 127.0.0.1:`port` over TLS trusting `ca`, the login, the client id
/// (`None`: the client picks one), then `rest`.
pub fn mosquitto_args(
    port: u16,
    ca: &Path,
    login: Login,
    client_id: Option<&str>,
    rest: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "--cafile".into(),
        ca.display().to_string(),
    ];
    if let Some(client_id) = client_id {
        args.extend(["-i".into(), client_id.into()]);
    }
    match login {
        Login::Certificate(dir, name) => args.extend([
            "--cert".into(),
            dir.join(format!("{name}.pem")).display().to_string(),
            "--key".into(),
            dir.join(format!("{name}.key")).display().to_string(),
        ]),
        Login::Key(user, password) => {
            args.extend(["-u".into(), user.into(), "-P".into(), password.into()])
        }
        Login::Nothing => {}
    }
    args.extend(rest.iter().map(|a| a.to_string()));
    args
}

/// A CA (`ca.pem`, `ca.key`, subject CN `insa test CA`) in a temporary directory, issuing
/// certificates into it.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// Whether `tool` runs here; where it is missing, a failure when `required_by` (an environment
/// variable) is `required`, as `.ci/run` sets, else a message and `false` (the test skips).
pub fn tool_available(tool: &str, required_by: &str) -> bool {
    let found = Command::new(tool)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        missing(&format!("`{tool}`"), required_by);
    }
    found
}

/// A test needs `what`, which is missing here: a failure where it is required (`required_by`
/// set to `required`, as `.ci/run` sets), else a skip with a message.
pub fn missing(what: &str, required_by: &str) {
    assert!(
        std::env::var(required_by).as_deref() != Ok("required"),
        "{what} is required here ({required_by}=required) but missing"
    );
    eprintln!("skipped: {what} is missing");
}

/// Whether python3 can import `module`; else as [`missing`] says.
pub fn python_module_available(module: &str, required_by: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        missing(
            &format!("python3 with {module} (scripts/ensure-python-peers.sh)"),
            required_by,
        );
    }
    found
}

impl Pki {
    /// `None` (and a message) when the `openssl` or `curl` command is missing; a failure instead
    /// where they must be there (`INSA_TLS_CLIENTS=required`, as `.ci/run` sets).
    pub fn new() -> Option<Self> {
        if !tool_available("curl", "INSA_TLS_CLIENTS") {
            return None;
        }
        Self::requiring("INSA_TLS_CLIENTS")
    }

    /// A CA when the `openssl` command runs; else as [`tool_available`] says for `required_by`.
    pub fn requiring(required_by: &str) -> Option<Self> {
        if !tool_available("openssl", required_by) {
            return None;
        }
        let pki = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=insa test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Some(pki)
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding the files, for programs that must read them (made world-readable:
    /// Mosquitto started as root drops to its own user).
    pub fn share(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the PKI folder");
        for entry in std::fs::read_dir(self.dir.path()).expect("list the PKI folder") {
            let path = entry.expect("a PKI file").path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .expect("chmod a PKI file");
        }
    }

    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Issues `<name>.pem` (subject CN `name`, serial `serial`), a server certificate for
    /// 127.0.0.1 and localhost, and its key `<name>.key`.
    pub fn issue(&self, name: &str, serial: u32, form: KeyForm) {
        self.issue_with(name, serial, form, SERVER_LOCALHOST);
    }

    /// Issues `<name>.pem` (subject CN `name`) with the X.509 extensions `extensions` (an
    /// `openssl x509 -extfile`), and its key `<name>.key`.
    pub fn issue_with(&self, name: &str, serial: u32, form: KeyForm, extensions: &str) {
        let key = format!("{name}.key");
        match form {
            KeyForm::Pkcs8 => self.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ]),
            KeyForm::Sec1 => self.openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key,
            ]),
            KeyForm::Rsa => self.openssl(&["genrsa", "-traditional", "-out", &key, "2048"]),
        }
        let ext = format!("{name}.ext");
        std::fs::write(self.path(&ext), extensions).expect("write extensions");
        let csr = format!("{name}.csr");
        let subject = format!("/CN={name}");
        self.openssl(&["req", "-new", "-key", &key, "-out", &csr, "-subj", &subject]);
        let serial = serial.to_string();
        let pem = format!("{name}.pem");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ]);
    }

    /// The DER of `<name>.pem`, as a TLS peer presents it.
    pub fn der(&self, name: &str) -> Vec<u8> {
        let pem = std::fs::read(self.path(&format!("{name}.pem"))).expect("read certificate");
        CertificateDer::from_pem_slice(&pem)
            .expect("a PEM certificate")
            .to_vec()
    }

    /// Copies `<from>.pem`/`.key` over `<to>.pem`/`.key`, the files the platform serves.
    pub fn replace(&self, from: &str, to: &str) {
        for ext in ["key", "pem"] {
            std::fs::copy(
                self.path(&format!("{from}.{ext}")),
                self.path(&format!("{to}.{ext}")),
            )
            .expect("replace a certificate file");
        }
    }
}

//! Where and how a replica connects to PostgreSQL: `--store`'s URL with libpq's TLS parameters
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), and the rule that the mesh's trust (entities,
//! revocations, the auto-TLS CA key) crosses a network only to a server whose certificate was
//! verified.
//!
//! `sslmode` defaults to `verify-full` for a server on another machine — the store holds what
//! decides who belongs to the mesh, so a server that is not proven to be the right one must not
//! be given it — and to `disable` on a Unix socket or loopback address, where no network is
//! crossed. `disable` and `require` (encrypted, unverified) are refused off this machine; libpq's
//! opportunistic `allow` and `prefer` are refused everywhere.

use super::pg_tls::{Check, PgTls, PgTlsStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, Connection, Socket};
use toolmesh_core::{Error, ErrorKind, Result};

/// A PostgreSQL server and how to reach it.
pub struct Target {
    pub config: Config,
    pub tls: PgTls,
    /// `postgres://user@host:port/database?sslmode=...`, without the password, for messages.
    pub described: String,
}

/// A server's connection settings and the TLS its connections use: what every connection of
/// a store (operations, listeners, shared registrations) opens with.
#[derive(Clone)]
pub struct Server {
    pub config: Config,
    pub tls: PgTls,
}

impl Server {
    pub async fn connect(&self) -> std::result::Result<(Client, Connection<Socket, PgTlsStream<Socket>>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS parameters of a URL, taken out of it (tokio-postgres knows only some of them).
#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl Target {
    /// Parses `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...]`), reads the
    /// certificate files it names and applies the rule above.
    pub fn parse(url: &str) -> Result<Target> {
        let (rest, params) = take_tls_params(url)?;
        let mut config: Config = rest.parse().map_err(|e| {
            invalid(format!(
                "--store '{}' is not a PostgreSQL URL ({e}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem]",
                redact(url)
            ))
        })?;
        let local = on_this_machine(&config);
        // As libpq has it: the system's CAs vouch for names, so they are only used with the name checked.
        let system_roots = params.sslrootcert.as_deref() == Some("system");
        let mode = match params.sslmode.as_deref() {
            None | Some("verify-full") if system_roots => Mode::VerifyFull,
            Some(other) if system_roots => {
                return Err(invalid(format!(
                    "--store '{}': sslrootcert=system takes sslmode=verify-full only (the system's CAs vouch for host names,                      so the name must be checked), not sslmode={other}; drop sslmode or set it to verify-full",
                    redact(url)
                )))
            }
            None if local => Mode::Disable,
            None => Mode::VerifyFull,
            Some("disable") => Mode::Disable,
            Some("require") => Mode::Require,
            Some("verify-ca") => Mode::VerifyCa,
            Some("verify-full") => Mode::VerifyFull,
            Some(other) => {
                return Err(invalid(format!(
                    "--store '{}': sslmode={other} is not one toolmesh takes; give verify-full (the default for a server on another \
                     machine), verify-ca, or on this machine require or disable",
                    redact(url)
                )))
            }
        };
        if !local && matches!(mode, Mode::Disable | Mode::Require) {
            let how = if mode == Mode::Disable { "in plaintext" } else { "to a server whose certificate nobody checked" };
            return Err(invalid(format!(
                "--store '{}' names a PostgreSQL server on another machine with sslmode={}: the entities, revocations and the mesh \
                 CA's key would cross the network {how}; add sslmode=verify-full&sslrootcert=/path/to/ca.pem (the CA that issued \
                 the server's certificate), or connect through a Unix socket or a loopback address",
                redact(url),
                mode.name()
            )));
        }
        let tls = match mode {
            Mode::Disable => PgTls::plaintext(),
            Mode::Require => PgTls::new(Check::Nothing, None, client_identity(&params, url)?)?,
            Mode::VerifyCa | Mode::VerifyFull => {
                let Some(path) = params.sslrootcert.as_deref() else {
                    return Err(invalid(format!(
                        "--store '{}' verifies the PostgreSQL server's certificate (sslmode={}) but names no CA: add \
                         sslrootcert=/path/to/ca.pem, the PEM file of the CA that issued the server's certificate",
                        redact(url),
                        mode.name()
                    )));
                };
                let check = if mode == Mode::VerifyCa { Check::Chain } else { Check::ChainAndName };
                let roots = if system_roots { roots_of_the_system()? } else { roots(path)? };
                PgTls::new(check, Some((path, roots)), client_identity(&params, url)?)?
            }
        };
        config.ssl_mode(if mode == Mode::Disable { SslMode::Disable } else { SslMode::Require });
        let described = describe(&config, mode);
        Ok(Target { config, tls, described })
    }
}

/// Splits the TLS parameters off `url`'s query, leaving the rest for tokio-postgres.
fn take_tls_params(url: &str) -> Result<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), params));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sslmode" => &mut params.sslmode,
            "sslrootcert" => &mut params.sslrootcert,
            "sslcert" => &mut params.sslcert,
            "sslkey" => &mut params.sslkey,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        *slot = Some(
            percent_decode(value)
                .ok_or_else(|| invalid(format!("--store '{}': the value of {key} is not valid percent-encoded UTF-8", redact(url))))?,
        );
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, params))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn roots(path: &str) -> Result<RootCertStore> {
    let pem = std::fs::read(path).map_err(|e| {
        invalid(format!(
            "cannot read sslrootcert={path} ({e}); give the PEM file of the CA that issued the PostgreSQL server's certificate"
        ))
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| invalid(format!("sslrootcert={path} is not PEM ({e})")))?;
        roots.add(cert).map_err(|e| invalid(format!("sslrootcert={path} holds a certificate that is not a CA's ({e})")))?;
    }
    if roots.is_empty() {
        return Err(invalid(format!(
            "sslrootcert={path} holds no certificate; give the PEM file of the CA that issued the server's certificate"
        )));
    }
    Ok(roots)
}

/// `sslrootcert=system`: the CAs the operating system trusts (its bundle, or the files
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` name).
fn roots_of_the_system() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
        return Err(invalid(format!(
            "sslrootcert=system: this machine trusts no CA certificate{why}; install its CA bundle (Debian: ca-certificates),              point SSL_CERT_FILE at one, or give sslrootcert=/path/to/ca.pem"
        )));
    }
    Ok(roots)
}

/// `sslcert` and `sslkey`, both or neither: the certificate the replica presents to a server
/// that authenticates clients by certificate (pg_hba `hostssl ... cert`).
fn client_identity(params: &TlsParams, url: &str) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let (cert, key) = match (&params.sslcert, &params.sslkey) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(invalid(format!(
                "--store '{}': give sslcert and sslkey together (the client certificate and its key)",
                redact(url)
            )))
        }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("cannot read sslcert={cert} ({e}); give a PEM certificate file")))?;
    if chain.is_empty() {
        return Err(invalid(format!("sslcert={cert} holds no certificate")));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("cannot read sslkey={key} ({e}); give the PEM private key of sslcert")))?;
    Ok(Some((chain, key)))
}

/// Whether every host the URL names is this machine: a Unix socket, `localhost` or a loopback
/// address (and any `hostaddr` loopback too).
fn on_this_machine(config: &Config) -> bool {
    let local = |host: &Host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
    };
    config.get_hosts().iter().all(local) && config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
}

fn describe(config: &Config, mode: Mode) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{}@{host}:{port}/{}?sslmode={}", config.get_user().unwrap_or(""), config.get_dbname().unwrap_or(""), mode.name())
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    let authority_end = url.find('?').unwrap_or(url.len());
    match (url.find("://"), url[..authority_end].rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidConfig, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_off_this_machine_defaults_to_verify_full_and_needs_a_ca() {
        let refused = Target::parse("postgres://u:secret@db.example.com/toolmesh").err().expect("refused");
        assert!(refused.message().contains("sslmode=verify-full") && refused.message().contains("sslrootcert="), "{refused}");
        assert!(!refused.message().contains("secret"), "{refused}");
    }

    #[test]
    fn plaintext_and_unverified_tls_are_refused_off_this_machine_and_taken_on_it() {
        for mode in ["disable", "require"] {
            let refused = Target::parse(&format!("postgres://u:secret@10.0.0.5/toolmesh?sslmode={mode}")).err().expect("refused");
            assert!(refused.message().contains(&format!("sslmode={mode}")) && refused.message().contains("verify-full"), "{refused}");
            assert!(!refused.message().contains("secret"), "{refused}");
            // A name that resolves here is still another machine's when hostaddr is not loopback.
            assert!(Target::parse(&format!("postgres://u@localhost/toolmesh?hostaddr=10.0.0.5&sslmode={mode}")).is_err());
            let local = Target::parse(&format!("postgres://u@127.0.0.1:5433/toolmesh?sslmode={mode}")).expect("loopback");
            assert_eq!(local.described, format!("postgres://u@127.0.0.1:5433/toolmesh?sslmode={mode}"));
        }
        assert!(Target::parse("postgres://u@127.0.0.1/toolmesh").expect("loopback").described.ends_with("sslmode=disable"));
        assert!(Target::parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/toolmesh").is_ok(), "a Unix socket");
    }

    #[test]
    fn opportunistic_modes_and_half_a_client_identity_are_refused() {
        for mode in ["prefer", "allow", "verify_full"] {
            let refused = Target::parse(&format!("postgres://u@127.0.0.1/toolmesh?sslmode={mode}")).err().expect("refused");
            assert!(refused.message().contains(&format!("sslmode={mode} is not one toolmesh takes")), "{refused}");
        }
        let refused = Target::parse("postgres://u@127.0.0.1/toolmesh?sslmode=require&sslcert=/x.pem").err().expect("refused");
        assert!(refused.message().contains("sslcert and sslkey together"), "{refused}");
        let refused = Target::parse("postgres://u@db.example.com/toolmesh?sslrootcert=/nonexistent/ca.pem").err().expect("refused");
        assert!(refused.message().contains("cannot read sslrootcert=/nonexistent/ca.pem"), "{refused}");
    }

    #[test]
    fn other_parameters_reach_tokio_postgres_and_tls_ones_are_decoded() {
        let (rest, params) =
            take_tls_params("postgres://u@h/d?application_name=mesh&sslrootcert=%2Ftmp%2Fca%20x.pem&sslmode=verify-ca").expect("parsed");
        assert_eq!(rest, "postgres://u@h/d?application_name=mesh");
        assert_eq!(params.sslrootcert.as_deref(), Some("/tmp/ca x.pem"));
        assert_eq!(params.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(redact("postgres://u:p@ss@h/d?x=a@b"), "postgres://u:***@h/d?x=a@b");
    }
}

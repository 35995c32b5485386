//! The cluster secret: one self-signed certificate and its private key,
//! shared by every member of a cluster.
//!
//! Holding the secret file is membership. Every worker and client presents
//! the same certificate and pins it as the only trusted root, so a TLS 1.3
//! handshake with mutual authentication succeeds exactly when both sides hold
//! the same key (the `CertificateVerify` message proves possession). There is
//! no per-node identity; rotating the secret means a new cluster.
//!
//! The file is PEM: a `CERTIFICATE` section, then a PKCS#8 `PRIVATE KEY`
//! section, in a file of mode 0600. The certificate is a leaf, not a CA
//! (`CA:FALSE`), for the DNS name [`SERVER_NAME`], with the server and client
//! extended key usages; every connection uses that name whatever the address.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::error::{NetError, Result};

/// The fixed server name every connection uses, whatever the address.
pub const SERVER_NAME: &str = "mempool.internal";

/// The ALPN protocol of mempool connections; both sides require it.
pub(crate) const ALPN: &[u8] = b"mempool/1";

/// The largest secret file `load` reads; a real one is under 1 KiB.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What `from_pem` names as the "path" in its errors.
const IN_MEMORY: &str = "<PEM text>";

/// What to tell a user whose secret file cannot be used at all.
const HINT: &str = "run `mempool cluster up` or pass --cluster-file";

/// A cluster's shared secret: one self-signed leaf certificate (for
/// [`SERVER_NAME`], not a CA) and its private key.
///
/// Every member presents this certificate and trusts only it, so holding the
/// secret is membership. Cloning is cheap (the DER is shared). Its `Debug`
/// output shows the certificate's SHA-256 fingerprint, never the key.
#[derive(Clone)]
pub struct ClusterSecret {
    inner: Arc<Inner>,
}

struct Inner {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ClusterSecret {
    /// Generates a new secret: a fresh ECDSA P-256 key and a self-signed
    /// certificate for it (`CA:FALSE`, DNS name [`SERVER_NAME`], extended key
    /// usages server and client authentication).
    ///
    /// # Errors
    ///
    /// [`NetError::Endpoint`] if key generation or signing fails.
    pub fn generate() -> Result<Self> {
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let failed =
            |e: rcgen::Error| NetError::Endpoint(format!("cannot generate a cluster secret: {e}"));
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(failed)?;
        // A name of its own per cluster, so that a certificate of another
        // cluster fails as "unknown issuer", not as a bad signature.
        let id = sha256_hex(key.public_key_raw());
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mempool cluster {}", &id[..16]));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key).map_err(failed)?;
        let cert = cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        // The same checks as a loaded secret: what we write, we can load.
        Self::from_der(cert, key).map_err(|reason| {
            NetError::Endpoint(format!("generated a bad cluster secret: {reason}"))
        })
    }

    /// Writes the secret to a new file at `path`, as PEM (certificate, then
    /// PKCS#8 key), with mode 0600 from its creation, and syncs it (and its
    /// directory) to disk.
    ///
    /// # Errors
    ///
    /// [`NetError::Secret`] if the file already exists (it is never
    /// overwritten) or cannot be created, written or synced. A file that was
    /// created but not completely written is removed.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                let reason = if e.kind() == io::ErrorKind::AlreadyExists {
                    "already exists; refusing to overwrite a cluster secret \
                     (use it, or delete it first to start a new cluster)"
                        .to_owned()
                } else {
                    format!("cannot create it: {e}")
                };
                secret_error(path, reason)
            })?;
        let written = file
            .write_all(self.to_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write it: {e}"));
        drop(file);
        if let Err(reason) = written {
            // Best effort: a partial file would only block the next attempt.
            let _ = std::fs::remove_file(path);
            return Err(secret_error(path, reason));
        }
        sync_parent_dir(path)
            .map_err(|e| secret_error(path, format!("written, but cannot sync its directory: {e}")))
    }

    /// Generates a new secret and writes it to a new file at `path` (see
    /// [`generate`](Self::generate) and [`write`](Self::write)).
    ///
    /// # Errors
    ///
    /// Those of [`generate`](Self::generate) and [`write`](Self::write); an
    /// existing file is never overwritten.
    pub fn create(path: &Path) -> Result<Self> {
        let secret = Self::generate()?;
        secret.write(path)?;
        Ok(secret)
    }

    /// Reads the secret file at `path`.
    ///
    /// # Errors
    ///
    /// [`NetError::Secret`] if the file does not exist or cannot be read, is
    /// not a regular file, is accessible to its group or others (it must be
    /// mode 0600: `chmod 600 <path>`), or does not hold exactly one
    /// certificate and one PKCS#8 private key that belongs to it, the
    /// certificate being a valid non-CA leaf for [`SERVER_NAME`].
    pub fn load(path: &Path) -> Result<Self> {
        // Non-blocking, so that a FIFO given by mistake fails the regular-file
        // check below instead of blocking the open forever.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                let reason = if e.kind() == io::ErrorKind::NotFound {
                    format!("does not exist; {HINT}")
                } else {
                    format!("cannot open it: {e}; {HINT}")
                };
                secret_error(path, reason)
            })?;
        let meta = file
            .metadata()
            .map_err(|e| secret_error(path, format!("cannot stat it: {e}; {HINT}")))?;
        if !meta.is_file() {
            return Err(secret_error(path, format!("is not a regular file; {HINT}")));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(secret_error(
                path,
                format!(
                    "is accessible to its group or others (mode {mode:04o}) but holds the \
                     cluster's private key; run `chmod 600 {}`",
                    path.display()
                ),
            ));
        }
        let mut pem = Vec::new();
        (&mut file)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut pem)
            .map_err(|e| secret_error(path, format!("cannot read it: {e}; {HINT}")))?;
        if pem.len() as u64 > MAX_FILE_BYTES {
            return Err(secret_error(
                path,
                format!("is larger than {MAX_FILE_BYTES} bytes; not a cluster secret"),
            ));
        }
        Self::parse(&pem).map_err(|reason| secret_error(path, reason))
    }

    /// The secret as PEM text: the `CERTIFICATE` section, then the PKCS#8
    /// `PRIVATE KEY` section. This contains the private key.
    pub fn to_pem(&self) -> String {
        let mut pem = pem_section("CERTIFICATE", self.inner.cert.as_ref());
        pem.push_str(&pem_section(
            "PRIVATE KEY",
            self.inner.key.secret_pkcs8_der(),
        ));
        pem
    }

    /// Parses a secret from PEM text, with the checks of
    /// [`load`](Self::load) that are not about the file.
    ///
    /// # Errors
    ///
    /// [`NetError::Secret`] (whose path reads `<PEM text>`) if the text does
    /// not hold exactly one certificate and one PKCS#8 private key that
    /// belongs to it, the certificate being a valid non-CA leaf for
    /// [`SERVER_NAME`].
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::parse(pem.as_bytes()).map_err(|reason| secret_error(Path::new(IN_MEMORY), reason))
    }

    /// The QUIC server configuration of a cluster member: TLS 1.3 only, ALPN
    /// `mempool/1`, presents this certificate, and requires a client
    /// certificate that verifies against it as the only root.
    pub(crate) fn server_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| tls_error("client verifier", e))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("server TLS", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.inner.cert.clone()], self.key())
            .map_err(|e| tls_error("server certificate", e))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // Clients never resume (see `client_config`): tickets would be waste.
        tls.send_tls13_tickets = 0;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| tls_error("server QUIC", e))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(transport);
        Ok(config)
    }

    /// The QUIC client configuration of a cluster member: TLS 1.3 only, ALPN
    /// `mempool/1`, trusts only this certificate, and presents it (with its
    /// key) as the client certificate. Connect with [`SERVER_NAME`].
    pub(crate) fn client_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("client TLS", e))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.inner.cert.clone()], self.key())
            .map_err(|e| tls_error("client certificate", e))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // Every member has the same server name, so a ticket from one worker
        // would be offered to the next; a full handshake each time is simpler
        // and re-authenticates both sides on every connection.
        tls.resumption = rustls::client::Resumption::disabled();
        let quic = QuicClientConfig::try_from(tls).map_err(|e| tls_error("client QUIC", e))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport);
        Ok(config)
    }

    /// The root store holding only the pinned certificate.
    fn roots(&self) -> Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.inner.cert.clone())
            .map_err(|e| tls_error("root certificate", e))?;
        Ok(Arc::new(roots))
    }

    /// The key of the same-host socket's proof of membership: HMAC-SHA256
    /// keyed by the SHA-256 of the secret's private key (DER). A hash, so
    /// that the key itself is never used for anything but TLS.
    pub(crate) fn local_key(&self) -> ring::hmac::Key {
        let d = ring::digest::digest(&ring::digest::SHA256, self.inner.key.secret_pkcs8_der());
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, d.as_ref())
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.inner.key.clone_key())
    }

    /// Parses PEM bytes; on error, says what is wrong (without the path).
    fn parse(pem: &[u8]) -> Result<Self, String> {
        let mut cert = None;
        let mut key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|e| format!("not valid PEM: {e}; {HINT}"))?;
            match kind {
                SectionKind::Certificate if cert.is_none() => {
                    cert = Some(CertificateDer::from(der));
                }
                SectionKind::Certificate => {
                    return Err(
                        "holds more than one certificate; a cluster secret holds one \
                                CERTIFICATE and one PRIVATE KEY"
                            .to_owned(),
                    );
                }
                SectionKind::PrivateKey if key.is_none() => {
                    key = Some(PrivatePkcs8KeyDer::from(der));
                }
                SectionKind::PrivateKey => {
                    return Err(
                        "holds more than one private key; a cluster secret holds one \
                                CERTIFICATE and one PRIVATE KEY"
                            .to_owned(),
                    );
                }
                other => {
                    return Err(format!(
                        "holds an unexpected {other:?} section; a cluster secret holds one \
                         CERTIFICATE and one PKCS#8 PRIVATE KEY"
                    ));
                }
            }
        }
        match (cert, key) {
            (None, None) => Err(format!(
                "not a cluster secret (no PEM certificate or private key in it); {HINT}"
            )),
            (None, Some(_)) => Err(format!("holds no certificate; {HINT}")),
            (Some(_), None) => Err(format!("holds no PKCS#8 private key; {HINT}")),
            (Some(cert), Some(key)) => Self::from_der(cert, key),
        }
    }

    /// Checks that `key` belongs to `cert` and that `cert` verifies as
    /// both server ([`SERVER_NAME`]) and client certificate with itself as
    /// the only root: exactly what the endpoints will require.
    fn from_der(
        cert: CertificateDer<'static>,
        key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<Self, String> {
        let provider = provider();
        let signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(key.clone_key()))
            .map_err(|e| format!("the private key is not usable: {e}"))?;
        CertifiedKey::new(vec![cert.clone()], signing_key)
            .keys_match()
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the private key does not belong to the certificate (files of two \
                     clusters mixed up?)"
                        .to_owned()
                }
                e => format!("cannot check that the private key belongs to the certificate: {e}"),
            })?;

        let secret = Self {
            inner: Arc::new(Inner { cert, key }),
        };
        let bad_cert = |e: rustls::Error| format!("the certificate is not usable: {e}");
        let roots = secret.roots().map_err(|e| e.to_string())?;
        let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
        let now = UnixTime::now();
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| e.to_string())?
            .verify_server_cert(&secret.inner.cert, &[], &name, &[], now)
            .map_err(bad_cert)?;
        WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| e.to_string())?
            .verify_client_cert(&secret.inner.cert, &[], now)
            .map_err(bad_cert)?;
        Ok(secret)
    }

    /// SHA-256 of the certificate's DER, as hex.
    fn fingerprint(&self) -> String {
        sha256_hex(self.inner.cert.as_ref())
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecret")
            .field("cert_sha256", &self.fingerprint())
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// The one crypto provider of this crate (see NET-NOTES §0: never the
/// provider-less builders).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of `data` as lowercase hex, by the ring provider's hash.
fn sha256_hex(data: &[u8]) -> String {
    let hash = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .map(|suite| suite.common.hash_provider.hash(data));
    match hash {
        Some(digest) => digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        None => "0".repeat(64), // unreachable: that suite is TLS 1.3
    }
}

fn secret_error(path: &Path, reason: String) -> NetError {
    NetError::Secret {
        path: PathBuf::from(path),
        reason,
    }
}

fn tls_error(what: &str, e: impl fmt::Display) -> NetError {
    NetError::Endpoint(format!("{what}: {e}"))
}

/// Syncs the directory holding `path`, so that the new entry is durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// One PEM section, laid out as rcgen (the `pem` crate) writes it: base64
/// in lines of 64 characters, LF line ends. Parsing stays with
/// `rustls::pki_types::pem`; only this encoding is done here.
fn pem_section(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 is ASCII, so any byte split is a char boundary.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Standard base64 (RFC 4648 §4) with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextet = |i: u32| char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
        out.push(sextet(0));
        out.push(sextet(1));
        out.push(if chunk.len() > 1 { sextet(2) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(3) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::net::SocketAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    /// Bound on every wait in the QUIC tests.
    const WAIT: Duration = Duration::from_secs(5);

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn reason(err: NetError) -> String {
        match err {
            NetError::Secret { reason, .. } => reason,
            other => panic!("expected NetError::Secret, got {other:?}"),
        }
    }

    fn transport() -> Arc<quinn::TransportConfig> {
        Arc::new(quinn::TransportConfig::default())
    }

    #[test]
    fn write_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.pem");
        let secret = ClusterSecret::create(&path).unwrap();
        let loaded = ClusterSecret::load(&path).unwrap();
        assert_eq!(loaded.inner.cert, secret.inner.cert);
        assert_eq!(
            loaded.inner.key.secret_pkcs8_der(),
            secret.inner.key.secret_pkcs8_der()
        );
        assert_eq!(loaded.to_pem(), secret.to_pem());
        assert_eq!(fs::read_to_string(&path).unwrap(), secret.to_pem());
        let again = ClusterSecret::from_pem(&secret.to_pem()).unwrap();
        assert_eq!(again.inner.cert, secret.inner.cert);
    }

    #[test]
    fn file_is_created_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.pem");
        let secret = ClusterSecret::create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");

        let before = fs::read(&path).unwrap();
        let other = ClusterSecret::generate().unwrap();
        let msg = reason(other.write(&path).unwrap_err());
        assert!(msg.contains("already exists"), "{msg}");
        assert!(ClusterSecret::create(&path).is_err());
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(
            ClusterSecret::load(&path).unwrap().inner.cert,
            secret.inner.cert
        );
    }

    #[test]
    fn load_refuses_a_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.pem");
        ClusterSecret::create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let msg = reason(ClusterSecret::load(&path).unwrap_err());
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        assert!(msg.contains("0644"), "{msg}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(ClusterSecret::load(&path).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        ClusterSecret::load(&path).unwrap();
    }

    #[test]
    fn load_of_a_missing_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.pem");
        let err = ClusterSecret::load(&path).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        let msg = reason(err);
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(msg.contains("mempool cluster up"), "{msg}");
        assert!(msg.contains("--cluster-file"), "{msg}");
    }

    #[test]
    fn load_of_a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let msg = reason(ClusterSecret::load(dir.path()).unwrap_err());
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn load_of_a_fifo_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        match std::process::Command::new("mkfifo").arg(&path).status() {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("skipped: mkfifo is not available here ({other:?})");
                return;
            }
        }
        // A blocking open of a FIFO with no writer would never return.
        let msg = reason(ClusterSecret::load(&path).unwrap_err());
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.pem");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(b"this is not a cluster secret\n\x00\xff\xfe binary too")
            .unwrap();
        drop(f);
        let msg = reason(ClusterSecret::load(&path).unwrap_err());
        assert!(msg.contains("not a cluster secret"), "{msg}");

        for bad in [
            "",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        ] {
            assert!(ClusterSecret::from_pem(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_or_extra_sections_are_refused() {
        let secret = ClusterSecret::generate().unwrap();
        let cert = pem_section("CERTIFICATE", secret.inner.cert.as_ref());
        let key = pem_section("PRIVATE KEY", secret.inner.key.secret_pkcs8_der());

        let msg = reason(ClusterSecret::from_pem(&cert).unwrap_err());
        assert!(msg.contains("no PKCS#8 private key"), "{msg}");
        let msg = reason(ClusterSecret::from_pem(&key).unwrap_err());
        assert!(msg.contains("no certificate"), "{msg}");
        let msg = reason(ClusterSecret::from_pem(&format!("{cert}{cert}{key}")).unwrap_err());
        assert!(msg.contains("more than one certificate"), "{msg}");
        let msg = reason(ClusterSecret::from_pem(&format!("{cert}{key}{key}")).unwrap_err());
        assert!(msg.contains("more than one private key"), "{msg}");
        let msg = reason(
            ClusterSecret::from_pem(&format!(
                "{cert}{}",
                pem_section("EC PRIVATE KEY", b"whatever")
            ))
            .unwrap_err(),
        );
        assert!(msg.contains("unexpected"), "{msg}");
        // A garbled key is refused, not just a mismatched one.
        let msg = reason(
            ClusterSecret::from_pem(&format!("{cert}{}", pem_section("PRIVATE KEY", b"junk")))
                .unwrap_err(),
        );
        assert!(msg.contains("not usable"), "{msg}");
        // Order does not matter; the text around the sections is ignored.
        ClusterSecret::from_pem(&format!("comment\n{key}\n{cert}")).unwrap();
    }

    #[test]
    fn key_of_another_secret_is_refused() {
        let a = ClusterSecret::generate().unwrap();
        let b = ClusterSecret::generate().unwrap();
        let mixed = format!(
            "{}{}",
            pem_section("CERTIFICATE", a.inner.cert.as_ref()),
            pem_section("PRIVATE KEY", b.inner.key.secret_pkcs8_der())
        );
        let msg = reason(ClusterSecret::from_pem(&mixed).unwrap_err());
        assert!(msg.contains("does not belong"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed.pem");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(mixed.as_bytes()).unwrap();
        drop(f);
        let msg = reason(ClusterSecret::load(&path).unwrap_err());
        assert!(msg.contains("does not belong"), "{msg}");
    }

    #[test]
    fn a_ca_certificate_is_refused() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let msg = reason(ClusterSecret::from_pem(&pem).unwrap_err());
        assert!(msg.contains("certificate is not usable"), "{msg}");
    }

    #[test]
    fn pem_encoding_matches_rcgen() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(pem_section("CERTIFICATE", cert.der()), cert.pem());
        assert_eq!(
            pem_section("PRIVATE KEY", &key.serialize_der()),
            key.serialize_pem()
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let secret = ClusterSecret::generate().unwrap();
        let debug = format!("{secret:?}");
        let pem = secret.to_pem();
        let key_b64 = base64(secret.inner.key.secret_pkcs8_der());
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains(&key_b64[..16]), "{debug}");
        assert!(!debug.contains(&pem[..40]), "{debug}");
        assert!(pem.contains("PRIVATE KEY"));
    }

    // --- the acceptance matrix, over real QUIC on loopback ---

    /// What the server saw of one incoming connection.
    #[derive(Debug)]
    #[allow(dead_code)] // the payloads are for assertion messages
    enum Accepted {
        /// The handshake failed: no connection, hence no stream.
        Refused(quinn::ConnectionError),
        /// The handshake succeeded and a stream was echoed.
        Echoed,
        /// The handshake succeeded but no stream came.
        NoStream(String),
    }

    /// A server endpoint on loopback that accepts one connection and echoes
    /// one bi stream on it; the task says what it saw.
    fn serve(config: quinn::ServerConfig) -> (SocketAddr, tokio::task::JoinHandle<Accepted>) {
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        (addr, tokio::spawn(accept_and_echo(endpoint)))
    }

    async fn accept_and_echo(endpoint: quinn::Endpoint) -> Accepted {
        let incoming = timeout(WAIT, endpoint.accept())
            .await
            .expect("no connection attempt reached the server")
            .expect("endpoint closed");
        let conn = match timeout(WAIT, incoming).await {
            Err(_) => panic!("server handshake did not finish"),
            Ok(Err(e)) => return Accepted::Refused(e),
            Ok(Ok(conn)) => conn,
        };
        let (mut send, mut recv) = match timeout(WAIT, conn.accept_bi()).await {
            Err(_) => return Accepted::NoStream("timed out".into()),
            Ok(Err(e)) => return Accepted::NoStream(e.to_string()),
            Ok(Ok(s)) => s,
        };
        let data = timeout(WAIT, recv.read_to_end(1024))
            .await
            .unwrap()
            .unwrap();
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
        // Wait for the client to close, so the reply is not cut off.
        let _ = timeout(WAIT, conn.closed()).await;
        Accepted::Echoed
    }

    /// How far a client got.
    #[derive(Debug)]
    #[allow(dead_code)] // the payloads are for assertion messages
    enum Outcome {
        /// Its own handshake failed.
        ConnectFailed(String),
        /// Its handshake finished, but the echo failed (the server refused
        /// it after checking its certificate).
        EchoFailed(String),
        /// It got its echo back.
        Echoed,
    }

    /// Connects to `addr` as [`SERVER_NAME`] and echoes one bi stream; every
    /// wait is bounded.
    async fn connect_and_echo(config: quinn::ClientConfig, addr: SocketAddr) -> Outcome {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connecting = endpoint.connect_with(config, addr, SERVER_NAME).unwrap();
        let conn = match timeout(WAIT, connecting)
            .await
            .expect("client handshake hung")
        {
            Err(e) => return Outcome::ConnectFailed(e.to_string()),
            Ok(conn) => conn,
        };
        let echo = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(b"hello, cluster")
                .await
                .map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            recv.read_to_end(1024).await.map_err(|e| e.to_string())
        };
        let outcome = match timeout(WAIT, echo).await.expect("echo hung") {
            Err(e) => Outcome::EchoFailed(e),
            Ok(reply) => {
                assert_eq!(reply, b"hello, cluster");
                Outcome::Echoed
            }
        };
        conn.close(0u32.into(), b"done");
        outcome
    }

    /// Runs one client against one server; returns what each saw.
    fn run(server: quinn::ServerConfig, client: quinn::ClientConfig) -> (Outcome, Accepted) {
        runtime().block_on(async {
            let (addr, accepted) = serve(server);
            let outcome = connect_and_echo(client, addr).await;
            let accepted = timeout(WAIT, accepted)
                .await
                .expect("server task hung")
                .expect("server task panicked");
            (outcome, accepted)
        })
    }

    /// Presents a fixed certificate and key (or none), whatever is asked:
    /// lets the tests build peers that break the rules.
    #[derive(Debug)]
    struct Present(Option<Arc<CertifiedKey>>);

    impl rustls::client::ResolvesClientCert for Present {
        fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            self.0.clone()
        }

        fn has_certs(&self) -> bool {
            self.0.is_some()
        }
    }

    impl rustls::server::ResolvesServerCert for Present {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            self.0.clone()
        }
    }

    /// `cert_of`'s certificate with `key_of`'s private key (no match check).
    fn certified(cert_of: &ClusterSecret, key_of: &ClusterSecret) -> Arc<CertifiedKey> {
        let key = provider()
            .key_provider
            .load_private_key(key_of.key())
            .unwrap();
        Arc::new(CertifiedKey::new(vec![cert_of.inner.cert.clone()], key))
    }

    /// A client that trusts `trusts`' certificate (it is public: servers
    /// send it) and presents `presents`.
    fn intruder(
        trusts: &ClusterSecret,
        presents: Option<Arc<CertifiedKey>>,
    ) -> quinn::ClientConfig {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(trusts.roots().unwrap())
            .with_client_cert_resolver(Arc::new(Present(presents)));
        tls.alpn_protocols = vec![ALPN.to_vec()];
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()))
    }

    /// A server that presents `presents` and admits any client.
    fn impostor(presents: Arc<CertifiedKey>) -> quinn::ServerConfig {
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Present(Some(presents))));
        tls.alpn_protocols = vec![ALPN.to_vec()];
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()))
    }

    /// Asserts the server refused the handshake (so no stream was ever
    /// accepted) for a reason containing `why`, and the client got nothing.
    fn assert_server_refused((client, server): (Outcome, Accepted), why: &str) {
        match server {
            Accepted::Refused(e) => assert!(e.to_string().contains(why), "{why:?} not in: {e}"),
            other => panic!("the server admitted the client: {other:?} (client: {client:?})"),
        }
        assert!(!matches!(client, Outcome::Echoed), "{client:?}");
    }

    /// Asserts the client refused the server's certificate for a reason
    /// containing `why`.
    fn assert_client_refused((client, server): (Outcome, Accepted), why: &str) {
        match client {
            Outcome::ConnectFailed(e) => assert!(e.contains(why), "{why:?} not in: {e}"),
            other => panic!("the client accepted the server: {other:?} (server: {server:?})"),
        }
        assert!(matches!(server, Accepted::Refused(_)), "{server:?}");
    }

    #[test]
    fn same_secret_connects_and_echoes() {
        let secret = ClusterSecret::generate().unwrap();
        // Each side built from its own copy of the file.
        let copy = ClusterSecret::from_pem(&secret.to_pem()).unwrap();
        let (client, server) = run(
            secret.server_config(transport()).unwrap(),
            copy.client_config(transport()).unwrap(),
        );
        assert!(matches!(client, Outcome::Echoed), "{client:?}");
        assert!(matches!(server, Accepted::Echoed), "{server:?}");
    }

    #[test]
    fn alpn_is_mempool_1() {
        let secret = ClusterSecret::generate().unwrap();
        runtime().block_on(async {
            let (addr, accepted) = serve(secret.server_config(transport()).unwrap());
            let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            let config = secret.client_config(transport()).unwrap();
            let conn = timeout(
                WAIT,
                endpoint.connect_with(config, addr, SERVER_NAME).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
            let data = conn.handshake_data().unwrap();
            let data = data
                .downcast::<quinn::crypto::rustls::HandshakeData>()
                .unwrap();
            assert_eq!(data.protocol.as_deref(), Some(ALPN));
            conn.close(0u32.into(), b"done");
            accepted.abort();
        });
    }

    #[test]
    fn client_of_another_cluster_is_refused_by_the_server() {
        let ours = ClusterSecret::generate().unwrap();
        let theirs = ClusterSecret::generate().unwrap();
        let server = || ours.server_config(transport()).unwrap();

        // Another cluster's member, as it is configured.
        let result = run(server(), theirs.client_config(transport()).unwrap());
        assert!(matches!(result.1, Accepted::Refused(_)), "{result:?}");
        assert!(!matches!(result.0, Outcome::Echoed), "{result:?}");

        // One that trusts our certificate, so only the server's check stands
        // between it and the cluster: with its own certificate...
        let result = run(server(), intruder(&ours, Some(certified(&theirs, &theirs))));
        assert_server_refused(result, "UnknownIssuer");
        // ...with no certificate...
        let result = run(server(), intruder(&ours, None));
        assert_server_refused(result, "no certificates");
        // ...with our certificate but not our key.
        let result = run(server(), intruder(&ours, Some(certified(&ours, &theirs))));
        assert_server_refused(result, "BadSignature");
    }

    #[test]
    fn server_of_another_cluster_is_refused_by_the_client() {
        let ours = ClusterSecret::generate().unwrap();
        let theirs = ClusterSecret::generate().unwrap();
        let client = || ours.client_config(transport()).unwrap();

        // Another cluster's member, as it is configured.
        let result = run(theirs.server_config(transport()).unwrap(), client());
        assert_client_refused(result, "UnknownIssuer");

        // Servers that admit anyone, so only the client's check stands:
        // with another certificate...
        let result = run(impostor(certified(&theirs, &theirs)), client());
        assert_client_refused(result, "UnknownIssuer");
        // ...with our certificate but not our key.
        let result = run(impostor(certified(&ours, &theirs)), client());
        assert_client_refused(result, "BadSignature");
    }
}

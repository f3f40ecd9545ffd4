//! TLS for a box on a LAN: no public CA can vouch for `hearth.local`, so the server makes a
//! self-signed certificate at first start (or uses the owner's own) for the names and
//! addresses it is reached at ([`super::names`]), makes it again with the same key when
//! they change, publishes its SHA-256 fingerprint (log, `/.well-known/hearth`, mDNS), and
//! clients pin the certificate and its key they first saw per origin and refuse another
//! key. Rustls with the ring provider on both ends.

use super::names::CertificateNames;
use futures_lite::{AsyncRead, AsyncWrite};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The ring crypto provider, shared by every config.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a certificate's DER, lowercase hex: how fingerprints are written everywhere.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fingerprint in the colon-separated upper-case form people compare by eye.
pub fn display_fingerprint(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// The server's TLS identity.
pub struct ServerTls {
    /// Wraps accepted connections.
    pub acceptor: futures_rustls::TlsAcceptor,
    /// SHA-256 of the leaf certificate, lowercase hex.
    pub fingerprint: String,
    /// Where the certificate came from (a path), for the log.
    pub source: PathBuf,
    /// The leaf certificate (DER), whose names are origins the server serves.
    pub leaf_der: Vec<u8>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing the certificate or key failed.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error("{0}")]
    Invalid(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ServerTls {
    /// Loads the owner's certificate and key when configured, else the self-signed pair
    /// in `data_dir/tls/`: made on first start for `names`, and made again with the same
    /// key when it does not cover them all (the box was renamed on the LAN, or has a new
    /// address).
    pub fn load_or_make(
        config: &crate::config::TlsConfig,
        data_dir: &Path,
        names: &CertificateNames,
    ) -> Result<ServerTls, TlsError> {
        let (cert_path, key_path) = match (&config.cert_file, &config.key_file) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            (None, None) => {
                let dir = data_dir.join("tls");
                let cert = dir.join("cert.pem");
                let key = dir.join("key.pem");
                finish_interrupted_upload(&dir)?;
                if !cert.exists() || !key.exists() {
                    make_self_signed(&dir, &cert, &key, names, None)?;
                } else if !is_uploaded(data_dir) {
                    // An administrator's own certificate is served as it is: only the
                    // self-signed one follows the box's names.
                    renew_if_names_changed(&dir, &cert, &key, names)?;
                }
                (cert, key)
            }
            _ => {
                return Err(TlsError::Invalid(
                    "[tls] cert_file and key_file go together: give both or neither".into(),
                ))
            }
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert_path.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert_path.display())))?;
        let Some(leaf) = certs.first() else {
            return Err(TlsError::Invalid(format!(
                "{}: no certificate in the file",
                cert_path.display()
            )));
        };
        let fingerprint = fingerprint(leaf.as_ref());
        let leaf_der = leaf.as_ref().to_vec();
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| TlsError::Invalid(format!("{}: {e}", key_path.display())))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Invalid(format!("certificate and key: {e}")))?;
        Ok(ServerTls {
            acceptor: futures_rustls::TlsAcceptor::from(Arc::new(server)),
            fingerprint,
            source: cert_path,
            leaf_der,
        })
    }
}

/// What an administrator reads about a certificate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertInfo {
    /// SHA-256 of the leaf certificate, lowercase hex.
    pub fingerprint: String,
    /// Its DNS names and IP addresses (subject alternative names).
    pub names: Vec<String>,
    /// The end of its validity, Unix seconds.
    pub not_after: i64,
    /// The start of its validity, Unix seconds.
    pub not_before: i64,
    /// Its issuer, as text.
    pub issuer: String,
}

/// Reads a leaf certificate (DER).
pub fn cert_info(der: &[u8]) -> Result<CertInfo, TlsError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Invalid(format!("the certificate does not parse: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(alt)) = cert.subject_alternative_name() {
        for name in &alt.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.extend(
                        <[u8; 4]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                    ),
                    16 => names.extend(
                        <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        fingerprint: fingerprint(der),
        names,
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
        issuer: cert.issuer().to_string(),
    })
}

/// The certificate file the server loads at its next start: the configured one, else
/// `data_dir/tls/cert.pem`.
pub fn certificate_path(config: &crate::config::TlsConfig, data_dir: &Path) -> PathBuf {
    config
        .cert_file
        .clone()
        .unwrap_or_else(|| data_dir.join("tls").join("cert.pem"))
}

/// Reads the leaf certificate of a PEM file.
pub fn read_leaf(path: &Path) -> Result<CertInfo, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::Invalid(format!("{}: no certificate", path.display())))?;
    cert_info(leaf.as_ref())
}

/// Largest PEM text taken for a certificate chain or a key, bytes.
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// Checks an uploaded certificate chain and key (PEM): both parse, the key is the leaf's,
/// and the leaf has not expired at `now` (Unix seconds). Its start is not checked: a Pi
/// without a clock battery may boot with a time before it.
pub fn check_pair(cert_pem: &str, key_pem: &str, now: i64) -> Result<CertInfo, TlsError> {
    if cert_pem.len() > MAX_PEM_BYTES || key_pem.len() > MAX_PEM_BYTES {
        return Err(TlsError::Invalid(format!(
            "a certificate chain or key is at most {MAX_PEM_BYTES} bytes of PEM"
        )));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("the certificate chain does not parse: {e}")))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::Invalid(
            "no certificate (PEM \"BEGIN CERTIFICATE\") in the chain".into(),
        ));
    };
    let info = cert_info(leaf.as_ref())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Invalid(format!("the private key does not parse: {e}")))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Invalid(format!("the private key is not usable: {e}")))?;
    rustls::sign::CertifiedKey::new(certs, signing)
        .keys_match()
        .map_err(|_| {
            TlsError::Invalid("the private key does not belong to the certificate".into())
        })?;
    if info.not_after <= now {
        return Err(TlsError::Invalid(format!(
            "the certificate expired (not after {})",
            info.not_after
        )));
    }
    Ok(info)
}

/// Puts an uploaded pair (already checked with [`check_pair`]) in `data_dir/tls/`, where
/// the next start loads it. Both files are written under `.new` names and synced first;
/// renaming the key is the commit point, and a start that finds the certificate's `.new`
/// left without the key's finishes the swap (see [`finish_interrupted_upload`]), so a
/// power cut never leaves a key beside another key's certificate.
pub fn install_uploaded(data_dir: &Path, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (cert_new, key_new) = (dir.join("cert.pem.new"), dir.join("key.pem.new"));
    write_private(&key_new, key_pem.as_bytes())?;
    write_private(&cert_new, cert_pem.as_bytes())?;
    // The mark names the uploaded leaf, so it only counts while that leaf is in place.
    let leaf = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| TlsError::Invalid("no certificate in the chain".into()))?;
    let mark = dir.join(UPLOADED_MARK);
    let mark_tmp = mark.with_extension("tmp");
    write_private(&mark_tmp, fingerprint(leaf.as_ref()).as_bytes())?;
    std::fs::rename(&mark_tmp, &mark).map_err(io_error(&mark))?;
    sync_dir(&dir);
    std::fs::rename(&key_new, &key).map_err(io_error(&key))?;
    sync_dir(&dir);
    std::fs::rename(&cert_new, &cert).map_err(io_error(&cert))?;
    sync_dir(&dir);
    Ok(())
}

/// The file in `data_dir/tls/` naming (by fingerprint) the certificate an administrator
/// uploaded: the start must serve that one as it is, never make a self-signed one in its
/// place.
pub const UPLOADED_MARK: &str = "uploaded";

/// Whether `data_dir/tls/cert.pem` is a certificate an administrator uploaded.
pub fn is_uploaded(data_dir: &Path) -> bool {
    let dir = data_dir.join("tls");
    let Ok(marked) = std::fs::read_to_string(dir.join(UPLOADED_MARK)) else {
        return false;
    };
    read_leaf(&dir.join("cert.pem")).is_ok_and(|leaf| leaf.fingerprint == marked.trim())
}

/// Completes or rolls back an upload a power cut interrupted: with the key's `.new`
/// still there, the swap never began (both `.new` files go); with only the
/// certificate's, the key is in place and the certificate follows it.
fn finish_interrupted_upload(dir: &Path) -> Result<(), TlsError> {
    let (cert_new, key_new) = (dir.join("cert.pem.new"), dir.join("key.pem.new"));
    if key_new.exists() {
        let _ = std::fs::remove_file(&key_new);
        let _ = std::fs::remove_file(&cert_new);
    } else if cert_new.exists() {
        let cert = dir.join("cert.pem");
        std::fs::rename(&cert_new, &cert).map_err(io_error(&cert))?;
        sync_dir(dir);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Makes a self-signed certificate for `names` with `key` (PEM), or with a fresh P-256 key
/// written beside it, readable by the owner only.
fn make_self_signed(
    dir: &Path,
    cert: &Path,
    key: &Path,
    names: &CertificateNames,
    existing_key: Option<&str>,
) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let invalid = |e: rcgen::Error| TlsError::Invalid(format!("making a certificate: {e}"));
    let signing_key = match existing_key {
        Some(pem) => rcgen::KeyPair::from_pem(pem).map_err(invalid)?,
        None => rcgen::KeyPair::generate().map_err(invalid)?,
    };
    let mut params = rcgen::CertificateParams::new(names.dns.clone()).map_err(invalid)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Hearth self-signed certificate");
    params
        .subject_alt_names
        .extend(names.ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let made = params.self_signed(&signing_key).map_err(invalid)?;
    if existing_key.is_none() {
        let key_tmp = key.with_extension("pem.tmp");
        write_private(&key_tmp, signing_key.serialize_pem().as_bytes())?;
        std::fs::rename(&key_tmp, key).map_err(io_error(key))?;
    }
    // Both files are synced before they take their names, so a power cut right after
    // the first start leaves either no certificate (made again) or a whole one.
    let cert_tmp = cert.with_extension("pem.tmp");
    write_private(&cert_tmp, made.pem().as_bytes())?;
    std::fs::rename(&cert_tmp, cert).map_err(io_error(cert))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes the self-signed certificate again, with its key, when it lacks one of `names`.
/// Clients and peers that pinned it on first use keep trusting it: they pin its key too
/// (see [`Pins`]); a browser asks again, as for any new self-signed certificate.
fn renew_if_names_changed(
    dir: &Path,
    cert: &Path,
    key: &Path,
    names: &CertificateNames,
) -> Result<(), TlsError> {
    let pem = std::fs::read(cert).map_err(io_error(cert))?;
    let Some(leaf) = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
    else {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    };
    let present = certificate_names(leaf.as_ref())
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert.display())))?;
    if names.covered_by(&present) {
        return Ok(());
    }
    let key_pem = std::fs::read_to_string(key).map_err(io_error(key))?;
    let old = fingerprint(leaf.as_ref());
    make_self_signed(dir, cert, key, names, Some(&key_pem))?;
    let missing: Vec<String> = names
        .dns
        .iter()
        .filter(|d| !present.dns.contains(d))
        .cloned()
        .chain(
            names
                .ips
                .iter()
                .filter(|ip| !present.ips.contains(ip))
                .map(|ip| ip.to_string()),
        )
        .collect();
    log::warn!(
        "TLS certificate made again with the same key, to cover {} (was SHA-256 {}); \
         clients and peers that pinned its key keep trusting it, browsers ask again",
        missing.join(", "),
        display_fingerprint(&old)
    );
    Ok(())
}

/// The DNS names and IP addresses a certificate (DER) names.
pub fn certificate_names(der: &[u8]) -> Result<CertificateNames, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = CertificateNames::default();
    let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(names);
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => names.add_dns(dns),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => names.add_ip(IpAddr::from(
                    <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                )),
                16 => names.add_ip(IpAddr::from(
                    <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                )),
                _ => {}
            },
            _ => {}
        }
    }
    Ok(names)
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo (its key), lowercase hex.
pub fn key_fingerprint(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(fingerprint(cert.public_key().raw))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// This machine's host name (`hearth` on the image).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "hearth".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "hearth".into()
    } else {
        name
    }
}

// ---- the client side: trust on first use, then pinned ----

/// Fingerprints pinned per origin (`https://host:port`), shared by a client's connections;
/// optionally kept in a file (the server's pins of its peers), like SSH's `known_hosts`.
///
/// A pin is the SHA-256 of the certificate and, once a connection saw it, of the
/// certificate's key (its SubjectPublicKeyInfo): a server that makes its certificate
/// again with the same key (for a new name or address) is still trusted, and the pin
/// follows the new certificate. A pin without the key (pinned from a fingerprint that was
/// read out, or by an older version) is matched against the certificate alone, and gains
/// the key on its first match.
#[derive(Clone, Debug, Default)]
pub struct Pins {
    inner: Arc<Mutex<HashMap<String, PinnedTls>>>,
    file: Option<Arc<PathBuf>>,
}

/// One origin's pin.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PinnedTls {
    /// SHA-256 of the certificate, lowercase hex.
    certificate: String,
    /// SHA-256 of its key (SubjectPublicKeyInfo), once known.
    key: Option<String>,
}

impl Pins {
    /// Pins kept in `file` (one `origin fingerprint` per line), loaded now.
    pub fn in_file(file: PathBuf) -> Pins {
        let mut map = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&file) {
            // `origin certificate-sha256 [key-sha256]`
            for line in text.lines() {
                let mut fields = line.split_whitespace();
                if let (Some(origin), Some(certificate)) = (fields.next(), fields.next()) {
                    let pin = PinnedTls {
                        certificate: certificate.to_string(),
                        key: fields.next().map(str::to_string),
                    };
                    map.insert(origin.to_string(), pin);
                }
            }
        }
        Pins {
            inner: Arc::new(Mutex::new(map)),
            file: Some(Arc::new(file)),
        }
    }

    /// The pinned fingerprint of `origin`.
    pub fn get(&self, origin: &str) -> Option<String> {
        self.lock().get(origin).map(|pin| pin.certificate.clone())
    }

    /// The pinned fingerprint of the key of `origin`'s certificate, once known.
    pub fn key(&self, origin: &str) -> Option<String> {
        self.lock().get(origin).and_then(|pin| pin.key.clone())
    }

    /// Pins `fingerprint` (lowercase hex SHA-256 of a certificate) for `origin`,
    /// replacing any pin.
    pub fn set(&self, origin: &str, fingerprint: &str) {
        let mut map = self.lock();
        let pin = PinnedTls {
            certificate: fingerprint.to_ascii_lowercase(),
            key: None,
        };
        map.insert(origin.to_string(), pin);
        self.save(&map);
    }

    /// Forgets the pin of `origin` (the owner confirmed a new certificate).
    pub fn remove(&self, origin: &str) {
        let mut map = self.lock();
        if map.remove(origin).is_some() {
            self.save(&map);
        }
    }

    /// Every pin, to save and restore.
    pub fn all(&self) -> HashMap<String, String> {
        self.lock()
            .iter()
            .map(|(origin, pin)| (origin.clone(), pin.certificate.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PinnedTls>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the pins to their file, if they have one (atomically, synced: pins are
    /// rare and must survive a power cut).
    fn save(&self, map: &HashMap<String, PinnedTls>) {
        let Some(file) = &self.file else {
            return;
        };
        let mut lines: Vec<String> = map
            .iter()
            .map(|(origin, pin)| match &pin.key {
                Some(key) => format!("{origin} {} {key}\n", pin.certificate),
                None => format!("{origin} {}\n", pin.certificate),
            })
            .collect();
        lines.sort();
        let tmp = file.with_extension("tmp");
        let written = (|| -> std::io::Result<()> {
            use std::io::Write;
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(lines.concat().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, file.as_ref())
        })();
        if let Err(e) = written {
            log::error!("cannot save TLS pins to {}: {e}", file.display());
        }
    }
}

/// Accepts the certificate pinned for one origin, or any certificate the first time (and
/// pins it); refuses a different one, remembering what it saw for the error.
#[derive(Debug)]
struct PinningVerifier {
    origin: String,
    pins: Pins,
    refused: Mutex<Option<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = PinnedTls {
            certificate: fingerprint(end_entity.as_ref()),
            key: key_fingerprint(end_entity.as_ref()),
        };
        let mut pins = self.pins.lock();
        let pinned = pins.get(&self.origin).cloned();
        match pinned {
            Some(pinned) if pinned == seen => Ok(ServerCertVerified::assertion()),
            // The pinned certificate, first seen with its key (a pin read out by a person
            // or made by an older version), or the pinned key in a new certificate (the
            // server made it again for another name): the pin follows.
            Some(pinned)
                if pinned.certificate == seen.certificate
                    || (pinned.key.is_some() && pinned.key == seen.key) =>
            {
                if pinned.certificate != seen.certificate {
                    log::info!(
                        "{}: a new TLS certificate with the pinned key; the pin follows it",
                        self.origin
                    );
                }
                pins.insert(self.origin.clone(), seen);
                self.pins.save(&pins);
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen.certificate);
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
            None => {
                pins.insert(self.origin.clone(), seen);
                self.pins.save(&pins);
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a TLS connection was not made.
#[derive(Debug)]
pub enum ConnectError {
    /// The server presented another certificate than the one pinned for it.
    Changed {
        /// The pinned fingerprint.
        pinned: String,
        /// The one presented.
        presented: String,
    },
    /// Any other failure.
    Other(String),
}

/// Opens a TLS connection to `origin` over `tcp`, checking the server against `pins`.
pub async fn connect(
    origin: &str,
    host: &str,
    tcp: smol::net::TcpStream,
    pins: &Pins,
) -> Result<futures_rustls::client::TlsStream<smol::net::TcpStream>, ConnectError> {
    let provider = provider();
    let verifier = Arc::new(PinningVerifier {
        origin: origin.to_string(),
        pins: pins.clone(),
        refused: Mutex::new(None),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Other(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| ConnectError::Other(format!("server name {host}: {e}")))?;
    let connector = futures_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(name, tcp).await {
        Ok(stream) => Ok(stream),
        Err(e) => {
            let refused = verifier
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match refused {
                Some(presented) => Err(ConnectError::Changed {
                    pinned: pins.get(origin).unwrap_or_default(),
                    presented,
                }),
                None => Err(ConnectError::Other(e.to_string())),
            }
        }
    }
}

/// A stream shared by clones: async-h1 wants a `Clone` connection (it keeps one for
/// upgrades), which a TLS stream is not. Each poll takes the lock only for that poll, so a
/// reader waiting for data does not block a writer.
pub struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S> Shared<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Shared<S> {
        Shared(Arc::new(Mutex::new(stream)))
    }

    /// Runs `f` on the stream.
    pub fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Shared<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Shared<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *inner).poll_close(cx)
    }
}

/// A client connection, plain or TLS.
#[derive(Clone)]
pub enum ClientStream {
    /// `http://`.
    Plain(smol::net::TcpStream),
    /// `https://`, pinned.
    Tls(Shared<futures_rustls::client::TlsStream<smol::net::TcpStream>>),
}

impl ClientStream {
    /// Whether the peer has sent something or closed while the connection sat idle (for
    /// TLS, a close_notify or any record), so it must not be reused.
    pub async fn idle_poisoned(&self) -> bool {
        let tcp = match self {
            ClientStream::Plain(tcp) => tcp.clone(),
            ClientStream::Tls(shared) => shared.with(|s| s.get_ref().0.clone()),
        };
        let mut probe = [0u8; 1];
        futures_lite::future::poll_once(tcp.peek(&mut probe))
            .await
            .is_some()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_close(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// Connects to `origin` (`http://` or `https://`), pinning per `pins`.
pub async fn connect_origin(origin: &str, pins: &Pins) -> Result<ClientStream, ConnectError> {
    let url =
        url::Url::parse(origin).map_err(|_| ConnectError::Other(format!("bad URL {origin}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| ConnectError::Other(format!("no host in {origin}")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = smol::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    match url.scheme() {
        "https" | "wss" => Ok(ClientStream::Tls(Shared::new(
            connect(origin, &host, tcp, pins).await?,
        ))),
        _ => Ok(ClientStream::Plain(tcp)),
    }
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    fn pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["box.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_checked_pair_is_installed_and_marked_as_uploaded() {
        let data = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let now = crate::system::now() as i64;
        let info = check_pair(&cert, &key, now).unwrap();
        assert_eq!(info.names, vec!["box.example".to_string()]);
        assert!(check_pair(&cert, &other_key, now).is_err());
        assert!(check_pair(&cert, &key, info.not_after + 1).is_err());
        assert!(check_pair("", &key, now).is_err());
        assert!(!is_uploaded(data.path()));
        install_uploaded(data.path(), &cert, &key).unwrap();
        let dir = data.path().join("tls");
        assert_eq!(
            read_leaf(&dir.join("cert.pem")).unwrap().fingerprint,
            info.fingerprint
        );
        assert!(is_uploaded(data.path()));
        // Another certificate in its place is not the uploaded one.
        let (other, _) = pair();
        std::fs::write(dir.join("cert.pem"), other).unwrap();
        assert!(!is_uploaded(data.path()));
    }

    #[test]
    fn an_interrupted_upload_is_finished_or_dropped_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("cert.pem"), "old cert").unwrap();
        std::fs::write(d.join("key.pem"), "old key").unwrap();
        // Cut before the key's rename: the swap never began.
        std::fs::write(d.join("cert.pem.new"), "new cert").unwrap();
        std::fs::write(d.join("key.pem.new"), "new key").unwrap();
        finish_interrupted_upload(d).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("cert.pem")).unwrap(),
            "old cert"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("key.pem")).unwrap(),
            "old key"
        );
        assert!(!d.join("cert.pem.new").exists() && !d.join("key.pem.new").exists());
        // Cut after it: the certificate follows its key.
        std::fs::write(d.join("key.pem"), "new key").unwrap();
        std::fs::write(d.join("cert.pem.new"), "new cert").unwrap();
        finish_interrupted_upload(d).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("cert.pem")).unwrap(),
            "new cert"
        );
        assert!(!d.join("cert.pem.new").exists());
    }
}

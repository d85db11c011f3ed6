//! Certificates with rcgen: the CAs (created once, then only ever loaded),
//! leaf certs (issued, checked against what is wanted, re-issued when not),
//! and bare key pairs (the service-account key).

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{ExtendedKeyUsage, GeneralName, ParsedExtension};
use x509_parser::oid_registry::{Oid, OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME};

use super::files::{read_optional, write_atomic, write_if_changed, PUBLIC, SECRET};
use super::PkiError;

/// How long certificates live and when they are renewed (tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub ca: Duration,
    pub leaf: Duration,
    /// A leaf with less than this left is re-issued.
    pub renew_before: Duration,
}

/// Tests only: leaves live this many days (1 to 365) and are renewed in
/// their second half; see the module doc of [`super`].
pub const LEAF_DAYS_ENV: &str = "K8S_CERT_LEAF_DAYS";

impl Lifetimes {
    /// k3s's: CAs 10 years, leaves 1 year, renewed in their last 120 days.
    pub const DEFAULT: Lifetimes =
        Lifetimes { ca: Duration::days(3650), leaf: Duration::days(365), renew_before: Duration::days(120) };

    /// [`Self::DEFAULT`], or the leaves of [`LEAF_DAYS_ENV`] when it is set.
    pub fn from_env() -> Result<Lifetimes, PkiError> {
        match std::env::var_os(LEAF_DAYS_ENV) {
            None => Ok(Lifetimes::DEFAULT),
            Some(value) => Lifetimes::with_leaf_days(&value.to_string_lossy()),
        }
    }

    /// Leaves of `value` days, renewed in their second half: a test sees a
    /// renewal within days, and a leaf never starts inside its own window.
    /// The CAs keep their 10 years (they are never renewed).
    pub fn with_leaf_days(value: &str) -> Result<Lifetimes, PkiError> {
        let days = value.trim().parse::<i64>().ok().filter(|days| (1..=365).contains(days)).ok_or_else(|| {
            let problem = format!("{value:?} is not a whole number of days from 1 to 365 (a test setting; unset it)");
            PkiError::params(LEAF_DAYS_ENV, problem)
        })?;
        Ok(Lifetimes { leaf: Duration::days(days), renew_before: Duration::hours(days * 12), ..Lifetimes::DEFAULT })
    }
}

/// Certificates start an hour in the past so a node whose clock is a little
/// behind the server's does not reject them as "not yet valid".
const BACKDATE: Duration = Duration::hours(1);

/// What the CA's restore advice says (used where a CA file is bad or missing).
const CA_FIX: &str = "restore the CA from a backup (or from another server of this cluster); it is never \
                      regenerated because every certificate and kubeconfig of the cluster depends on it";

/// A CA loaded from disk, ready to sign.
pub struct Ca {
    /// Rebuilt from the file for rcgen's signing API (same subject and key id, not the file's bytes).
    cert: Certificate,
    key: KeyPair,
    /// The file's text, embedded in kubeconfigs.
    pub pem: String,
    /// The file's subject DER: what an issued cert's issuer must equal byte for byte.
    subject: Vec<u8>,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Both: etcd members serve clients and dial each other with one cert.
    Peer,
}

/// The wanted content of a leaf certificate.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub common_name: String,
    pub organization: Option<String>,
    pub sans: Vec<SanType>,
    pub usage: Usage,
}

impl LeafSpec {
    pub fn client(common_name: &str, organization: Option<&str>) -> LeafSpec {
        LeafSpec {
            common_name: common_name.to_string(),
            organization: organization.map(str::to_string),
            sans: Vec::new(),
            usage: Usage::Client,
        }
    }

    pub fn server(common_name: &str, sans: Vec<SanType>) -> LeafSpec {
        LeafSpec { sans, usage: Usage::Server, ..LeafSpec::client(common_name, None) }
    }

    pub fn peer(common_name: &str, sans: Vec<SanType>) -> LeafSpec {
        LeafSpec { sans, usage: Usage::Peer, ..LeafSpec::client(common_name, None) }
    }

    /// For logs and errors.
    pub fn describe(&self) -> String {
        format!("the certificate for CN={}", self.common_name)
    }

    /// Everything but validity and serial; an existing cert is compared with it by
    /// [`Self::subject_matches`], [`Self::usage_matches`] and its SANs.
    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, self.common_name.as_str());
        if let Some(org) = &self.organization {
            params.distinguished_name.push(DnType::OrganizationName, org.as_str());
        }
        params.subject_alt_names = self.sans.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match self.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Peer => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params
    }

    /// Whether `cert`'s subject is exactly what [`Self::params`] writes: CN, then O if any.
    fn subject_matches(&self, cert: &X509Certificate) -> bool {
        let mut want: Vec<(Oid, Option<&str>)> = vec![(OID_X509_COMMON_NAME, Some(&self.common_name))];
        want.extend(self.organization.as_deref().map(|org| (OID_X509_ORGANIZATION_NAME, Some(org))));
        let have: Vec<(Oid, Option<&str>)> =
            cert.subject().iter_attributes().map(|attr| (attr.attr_type().clone(), attr.as_str().ok())).collect();
        have == want
    }

    /// Whether `cert`'s extended key usage is exactly the one of [`Self::params`].
    fn usage_matches(&self, cert: &X509Certificate) -> bool {
        let want = ExtendedKeyUsage {
            server_auth: matches!(self.usage, Usage::Server | Usage::Peer),
            client_auth: matches!(self.usage, Usage::Client | Usage::Peer),
            any: false,
            code_signing: false,
            email_protection: false,
            time_stamping: false,
            ocsp_signing: false,
            other: Vec::new(),
        };
        matches!(cert.extended_key_usage(), Ok(Some(eku)) if *eku.value == want)
    }
}

/// Parses SANs: an IP literal becomes an IP SAN, anything else a DNS name.
/// Duplicates are dropped (keeping the first), so re-ordering nothing changes.
pub fn parse_sans(values: &[String], field: &str) -> Result<Vec<SanType>, PkiError> {
    let mut sans: Vec<SanType> = Vec::new();
    for value in values.iter().map(|v| v.trim()) {
        let san = match value.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if value.is_empty() || value.contains(char::is_whitespace) => {
                return Err(PkiError::params(field, format!("{value:?} is not a DNS name or IP address")))
            }
            Err(_) => SanType::DnsName(value.try_into().map_err(|_| {
                PkiError::params(field, format!("{value:?} is not a DNS name (only ASCII is allowed)"))
            })?),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    if sans.is_empty() {
        return Err(PkiError::params(field, "is empty; give at least the node's IP address or hostname".into()));
    }
    Ok(sans)
}

/// Loads the CA at `cert_path`/`key_path`, creating it only when neither exists.
/// `name` prefixes the CN, which gets the creation time (like k3s's
/// `k3s-server-ca@<unix>`) so people can tell CAs apart; code tells them
/// apart by key id (see [`stale_reason`]), as two CAs made in the same second
/// share a subject.
pub fn ensure_ca(cert_path: &Path, key_path: &Path, name: &str, lt: &Lifetimes) -> Result<Ca, PkiError> {
    match (read_optional(cert_path)?, read_optional(key_path)?) {
        (Some(cert), Some(key)) => {
            write_if_changed(key_path, key.as_bytes(), SECRET)?; // only corrects the mode
            write_if_changed(cert_path, cert.as_bytes(), PUBLIC)?;
            let ca = parse_ca(cert_path, cert, key_path, &key)?;
            warn_if_expiring(cert_path, &ca, lt);
            Ok(ca)
        }
        (Some(_), None) => {
            Err(PkiError::invalid(key_path, format!("is missing but {} exists", cert_path.display()), CA_FIX))
        }
        // Only the key: creation was interrupted between the two writes (the key goes first).
        (None, Some(key)) => create_ca(cert_path, key_path, name, load_key(key_path, &key, CA_FIX)?, lt),
        (None, None) => {
            let key = generate_key(name)?;
            write_atomic(key_path, key.serialize_pem().as_bytes(), SECRET)?;
            create_ca(cert_path, key_path, name, key, lt)
        }
    }
}

/// Loads an existing CA; a missing one is an error (only `ensure` creates CAs).
pub fn load_ca(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
    let fix = "run `k8s server` once so it creates the cluster CA, or restore the CA from a backup";
    let missing = |path: &Path| PkiError::invalid(path, "is missing".into(), fix);
    let cert = read_optional(cert_path)?.ok_or_else(|| missing(cert_path))?;
    let key = read_optional(key_path)?.ok_or_else(|| missing(key_path))?;
    parse_ca(cert_path, cert, key_path, &key)
}

fn create_ca(cert_path: &Path, key_path: &Path, name: &str, key: KeyPair, lt: &Lifetimes) -> Result<Ca, PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("{name}@{}", now.unix_timestamp()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + lt.ca;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).map_err(|e| PkiError::generate(name, e))?;
    write_atomic(cert_path, cert.pem().as_bytes(), PUBLIC)?;
    tracing::info!(cert = %cert_path.display(), "created a new certificate authority");
    parse_ca(cert_path, cert.pem(), key_path, &key.serialize_pem())
}

fn parse_ca(cert_path: &Path, pem: String, key_path: &Path, key_pem: &str) -> Result<Ca, PkiError> {
    let key = load_key(key_path, key_pem, CA_FIX)?;
    // x509-parser reads the file's exact bytes; rcgen's params are what it signs with.
    let der = cert_der(&pem);
    let (Some(x509), Ok(params)) = (der.as_deref().and_then(parse_der), CertificateParams::from_ca_cert_pem(&pem))
    else {
        return Err(PkiError::invalid(cert_path, "is not a PEM certificate rcgen can read".into(), CA_FIX));
    };
    if !matches!(params.is_ca, IsCa::Ca(_)) {
        return Err(PkiError::invalid(cert_path, "is not a CA certificate (no CA basic constraint)".into(), CA_FIX));
    }
    if x509.public_key().raw != key.public_key_der() {
        let problem = format!("does not belong to {} (different public key)", cert_path.display());
        return Err(PkiError::invalid(key_path, problem, CA_FIX));
    }
    let subject = x509.subject().as_raw().to_vec();
    let cert = params.self_signed(&key).map_err(|e| PkiError::generate(&cert_path.display().to_string(), e))?;
    Ok(Ca { cert, key, pem, subject })
}

/// A CA is never renewed automatically; say so loudly while there is time to act.
fn warn_if_expiring(cert_path: &Path, ca: &Ca, lt: &Lifetimes) {
    let not_after = ca.cert.params().not_after;
    if not_after - OffsetDateTime::now_utc() < lt.leaf {
        tracing::warn!(cert = %cert_path.display(), %not_after, "certificate authority expires soon; rotate it");
    }
}

/// Makes sure `cert_path`/`key_path` hold a current leaf for `spec` signed by
/// `ca`; re-issues it (keeping a valid key, so only the cert file changes) when
/// it is missing, different from `spec`, from another CA or expiring.
/// Returns whether it was (re-)issued.
pub fn ensure_leaf(
    ca: &Ca,
    spec: &LeafSpec,
    cert_path: &Path,
    key_path: &Path,
    lt: &Lifetimes,
) -> Result<bool, PkiError> {
    let key_pem = read_optional(key_path)?;
    let key = key_pem.as_deref().and_then(|pem| KeyPair::from_pem(pem).ok());
    let cert_pem = read_optional(cert_path)?;
    let reason = match (&key, &cert_pem) {
        (Some(key), Some(cert)) => stale_reason(ca, spec, cert, key, lt),
        (None, _) if key_pem.is_some() => Some("its key cannot be parsed".into()),
        _ => Some("it does not exist".into()),
    };
    let Some(reason) = reason else {
        write_if_changed(key_path, key_pem.unwrap_or_default().as_bytes(), SECRET)?; // only corrects modes
        write_if_changed(cert_path, cert_pem.unwrap_or_default().as_bytes(), PUBLIC)?;
        return Ok(false);
    };
    let key = match key {
        Some(key) => key,
        None => {
            let key = generate_key(&spec.describe())?;
            write_atomic(key_path, key.serialize_pem().as_bytes(), SECRET)?;
            key
        }
    };
    write_atomic(cert_path, issue(ca, spec, &key, lt)?.as_bytes(), PUBLIC)?;
    tracing::info!(cert = %cert_path.display(), %reason, "issued {}", spec.describe());
    Ok(true)
}

/// Why an existing leaf cert no longer fits (`None`: it does).
pub fn stale_reason(ca: &Ca, spec: &LeafSpec, cert_pem: &str, key: &KeyPair, lt: &Lifetimes) -> Option<String> {
    let der = cert_der(cert_pem);
    let Some(cert) = der.as_deref().and_then(parse_der) else {
        return Some("it cannot be parsed".into());
    };
    let not_after = cert.validity().not_after.to_datetime();
    if cert.public_key().raw != key.public_key_der() {
        Some("it does not match its key".into())
    } else if cert.issuer().as_raw() != ca.subject || authority_key_id(&cert) != Some(&ca.cert.key_identifier()[..]) {
        Some("it was issued by another CA".into())
    } else if !spec.subject_matches(&cert) || !spec.usage_matches(&cert) {
        Some("its subject or usage changed".into())
    } else if sans(&cert) != Some(spec.sans.iter().cloned().collect()) {
        Some("its SANs changed".into())
    } else if not_after - OffsetDateTime::now_utc() < lt.renew_before {
        Some(format!("it expires on {}", not_after.date()))
    } else {
        None
    }
}

/// Signs a new certificate for `key`; returns its PEM.
pub fn issue(ca: &Ca, spec: &LeafSpec, key: &KeyPair, lt: &Lifetimes) -> Result<String, PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut params = spec.params();
    params.not_before = now - BACKDATE;
    params.not_after = now + lt.leaf;
    // rcgen's default serial is a hash of the public key: a re-issue with the
    // same key would repeat it, and serials must be unique per CA.
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(key, &ca.cert, &ca.key).map_err(|e| PkiError::generate(&spec.describe(), e))?;
    Ok(cert.pem())
}

/// A key pair that lives for the cluster's life (the service-account signing
/// key: a new one would invalidate every token); `pub_path` is derived from it.
pub fn ensure_key_pair(key_path: &Path, pub_path: &Path) -> Result<(), PkiError> {
    let key = match read_optional(key_path)? {
        Some(pem) => {
            write_if_changed(key_path, pem.as_bytes(), SECRET)?; // only corrects the mode
            let fix = "restore it from a backup; a new key would invalidate every service-account token";
            load_key(key_path, &pem, fix)?
        }
        None => {
            let key = generate_key("the service-account key")?;
            write_atomic(key_path, key.serialize_pem().as_bytes(), SECRET)?;
            key
        }
    };
    write_if_changed(pub_path, key.public_key_pem().as_bytes(), PUBLIC)?;
    Ok(())
}

/// A fresh ECDSA P-256 key (rcgen's default algorithm).
pub fn generate_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate().map_err(|e| PkiError::generate(what, e))
}

fn load_key(path: &Path, pem: &str, fix: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| {
        PkiError::invalid(path, format!("is not a PKCS#8 private key PEM (\"BEGIN PRIVATE KEY\"): {e}"), fix)
    })
}

/// The DER of a PEM certificate: its first block, the one rcgen reads too.
pub fn cert_der(pem: &str) -> Option<Vec<u8>> {
    pem::parse(pem).ok().filter(|block| block.tag() == "CERTIFICATE").map(pem::Pem::into_contents)
}

/// What `k8s certs check` shows of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The subject's common name ("" when it has none).
    pub subject_cn: String,
    pub issuer_cn: String,
    pub not_after: OffsetDateTime,
    /// A CA (basic constraints): never renewed by `ensure`.
    pub ca: bool,
}

/// The first certificate of a PEM text, summarized (`None`: not one we can read).
pub fn summarize(pem: &str) -> Option<Summary> {
    let der = cert_der(pem)?;
    let cert = parse_der(&der)?;
    let cn = |name: &x509_parser::x509::X509Name| {
        name.iter_common_name().next().and_then(|attr| attr.as_str().ok()).unwrap_or_default().to_string()
    };
    Some(Summary {
        subject_cn: cn(cert.subject()),
        issuer_cn: cn(cert.issuer()),
        not_after: cert.validity().not_after.to_datetime(),
        ca: cert.is_ca(),
    })
}

/// The authority key id of the first certificate of a PEM text: which CA
/// key signed it (`None`: unreadable, or it names none).
pub fn issuer_key_id(pem: &str) -> Option<Vec<u8>> {
    let der = cert_der(pem)?;
    authority_key_id(&parse_der(&der)?).map(<[u8]>::to_vec)
}

/// x509-parser's reading of a DER certificate (`None`: malformed).
pub fn parse_der(der: &[u8]) -> Option<X509Certificate<'_>> {
    x509_parser::parse_x509_certificate(der).ok().map(|(_, cert)| cert)
}

/// The keyIdentifier of the authorityKeyIdentifier extension: names the
/// signing CA's key, which tells two CAs apart even when their subjects match.
pub fn authority_key_id<'a>(cert: &X509Certificate<'a>) -> Option<&'a [u8]> {
    cert.iter_extensions().find_map(|ext| match ext.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|id| id.0),
        _ => None,
    })
}

/// The cert's SANs in rcgen's terms (`None`: a kind we never write, so no match).
fn sans(cert: &X509Certificate) -> Option<HashSet<SanType>> {
    let Some(ext) = cert.subject_alternative_name().ok()? else {
        return Some(HashSet::new());
    };
    let san = |name: &GeneralName| match *name {
        GeneralName::DNSName(dns) => dns.to_string().try_into().ok().map(SanType::DnsName),
        GeneralName::IPAddress([a, b, c, d]) => Some(SanType::IpAddress(IpAddr::from([*a, *b, *c, *d]))),
        GeneralName::IPAddress(ip) => <[u8; 16]>::try_from(ip).ok().map(|ip| SanType::IpAddress(ip.into())),
        _ => None,
    };
    ext.value.general_names.iter().map(san).collect()
}

/// 128 random bits, positive (top bit clear) as DER INTEGER serials must be.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| PkiError::io(Path::new("/dev/urandom"), "read", e))?;
    bytes[0] = bytes[0] & 0x7f | 0x40; // also keep the full 16 bytes (no leading zero)
    Ok(SerialNumber::from_slice(&bytes))
}

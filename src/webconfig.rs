//! `--web.config.file`: the Prometheus exporter-toolkit web configuration (YAML). TLS through
//! rustls, basic auth with bcrypt hashes, and extra response headers from a fixed allow-list.
//!
//! Differences from exporter-toolkit, all refused with a clear error rather than ignored:
//! TLS 1.0/1.1, `RequestClientCert`/`RequireAnyClientCert` (rustls only accepts verified client
//! certificates) and cipher suites or curves rustls does not implement. The file is read once at
//! start; the toolkit re-reads it per request.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted for compatibility; storwatch serves HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// Headers exporter-toolkit lets a web config set.
pub const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// The loaded configuration: what the server needs per connection and per request.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .field("headers", &self.headers)
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks the file; every error names the file and the key at fault.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Relative certificate paths are taken from `base`, the file's directory (as the toolkit does).
    pub fn parse(text: &str, base: &Path) -> Result<WebConfig, String> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        let tls = match file.tls_server_config {
            Some(t) => Some(Arc::new(tls_config(t, base)?)),
            None => None,
        };
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => Some(Arc::new(BasicAuth::new(users)?)),
            _ => None,
        };
        let mut headers = Vec::new();
        for (name, value) in file.http_server_config.and_then(|h| h.headers).unwrap_or_default() {
            let Some(allowed) = ALLOWED_HEADERS.iter().find(|a| a.eq_ignore_ascii_case(&name)) else {
                return Err(format!(
                    "http_server_config.headers: {name:?} may not be set (allowed: {})",
                    ALLOWED_HEADERS.join(", ")
                ));
            };
            let value = hyper::header::HeaderValue::from_str(&value)
                .map_err(|_| format!("http_server_config.headers.{name}: invalid value"))?;
            headers.push((hyper::header::HeaderName::from_static(lower(allowed)), value));
        }
        Ok(WebConfig { tls, auth, headers })
    }
}

fn lower(header: &'static str) -> &'static str {
    match header {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn tls_config(t: TlsFile, base: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
        return Err("tls_server_config: cert_file and key_file are both required".into());
    };
    let version = |v: &Option<String>, default: u8| match v.as_deref() {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(format!("TLS version {other:?} is not supported (TLS12 or TLS13)")),
    };
    let (min, max) = (version(&t.min_version, 12)?, version(&t.max_version, 13)?);
    let (cert, key) = (base.join(cert), base.join(key));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect())
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("tls_server_config.cert_file {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", key.display()))?;

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        // As in Go, the list governs TLS 1.2; the TLS 1.3 suites are always on.
        let mut keep = Vec::new();
        for name in names {
            let suite = provider
                .cipher_suites
                .iter()
                .find(|s| format!("{:?}", s.suite()) == *name)
                .ok_or_else(|| format!("tls_server_config.cipher_suites: {name:?} is not supported"))?;
            keep.push(*suite);
        }
        provider.cipher_suites.retain(|s| s.version() == &rustls::version::TLS13 || keep.contains(s));
    }
    if let Some(names) = &t.curve_preferences {
        let mut groups = Vec::new();
        for name in names {
            let wanted = match name.as_str() {
                "X25519" => rustls::NamedGroup::X25519,
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                _ => return Err(format!("tls_server_config.curve_preferences: {name:?} is not supported")),
            };
            let g = provider.kx_groups.iter().find(|g| g.name() == wanted).copied();
            groups.extend(g);
        }
        provider.kx_groups = groups;
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verify = match auth_type {
        "" | "NoClientCert" => None,
        "VerifyClientCertIfGiven" => Some(true),
        "RequireAndVerifyClientCert" => Some(false),
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type: {auth_type} (unverified client certificates) is not supported"
            ));
        }
        other => return Err(format!("tls_server_config.client_auth_type: unknown value {other:?}")),
    };
    let builder = match (verify, &t.client_ca_file) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(_)) => {
            return Err("tls_server_config: client_ca_file is set without a client_auth_type".into());
        }
        (Some(_), None) => {
            return Err(format!("tls_server_config: client_auth_type {auth_type} needs client_ca_file"));
        }
        (Some(optional), Some(ca)) => {
            let ca = base.join(ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca)
                .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if optional { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(
                v.build().map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?,
            )
        }
    };
    let _ = t.prefer_server_cipher_suites;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Basic-auth users and their bcrypt hashes, with results cached per (user, hash, password).
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// SHA-256 of user, hash and password -> whether they matched. The passwords are not kept.
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// One bcrypt at a time, as in exporter-toolkit: a flood of guesses uses one core, not all.
    bcrypt: Mutex<()>,
}

/// A cost-10 hash of a random password nobody knows: unknown users are checked against it so the
/// answer takes as long as for a known user.
const FAKE_HASH: &str = "$2y$10$a.SjCKzDP9esgYe935G9sOXYC0XlqFTXGCkqcHh2.aZ5BJiqcrEfG";
const CACHE_MAX: usize = 4096;

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, String> {
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!("basic_auth_users: user name {user:?} contains ':'"));
            }
            // Parsing is cheap; a malformed hash would lock its user out silently.
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("basic_auth_users.{user}: not a bcrypt hash ({e})"))?;
        }
        Ok(BasicAuth { users, cache: Mutex::default(), bcrypt: Mutex::default() })
    }

    /// Whether the `Authorization` header value grants access. Blocking (bcrypt): call it off the
    /// async threads.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else { return false };
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.as_str(), true),
            None => (FAKE_HASH, false),
        };
        let key = {
            let mut d = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [user.as_bytes(), hash.as_bytes(), &password] {
                d.update(&(part.len() as u64).to_le_bytes());
                d.update(part);
            }
            let mut k = [0u8; 32];
            k.copy_from_slice(d.finish().as_ref());
            k
        };
        if let Some(&ok) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return ok && known;
        }
        let ok = {
            let _one = self.bcrypt.lock().unwrap_or_else(|e| e.into_inner());
            bcrypt::verify(&password, hash).unwrap_or(false)
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, ok);
        ok && known
    }
}

/// `Basic <base64(user:password)>` into its parts; None for anything else. Never panics.
pub fn parse_basic(header: &[u8]) -> Option<(String, Vec<u8>)> {
    let rest = header.strip_prefix(b"Basic ").or_else(|| header.strip_prefix(b"basic "))?;
    let decoded = base64_decode(rest.trim_ascii())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding (RFC 4648 §4); None on any other input.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let chunks = input.len() / 4;
    for (i, chunk) in input.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode(b"dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(base64_decode(b"YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        for bad in [&b"YQ="[..], b"Y===", b"YQ==YQ==", b"dXN*cjpw", b"YQ=a"] {
            assert!(base64_decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn basic_header_parts() {
        assert_eq!(parse_basic(b"Basic dXNlcjpwYTpzcw=="), Some(("user".into(), b"pa:ss".to_vec())));
        assert_eq!(parse_basic(b"Bearer dXNlcjpwYXNz"), None);
        assert_eq!(parse_basic(b"Basic bm9jb2xvbg=="), None); // "nocolon"
    }

    #[test]
    fn auth_known_unknown_and_cached() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new([("alice".to_owned(), hash)].into()).unwrap();
        let header = |s: &str| format!("Basic {}", encode(s.as_bytes()));
        assert!(auth.check(Some(header("alice:secret").as_bytes())));
        assert!(auth.check(Some(header("alice:secret").as_bytes())), "cached answer");
        assert!(!auth.check(Some(header("alice:wrong").as_bytes())));
        assert!(!auth.check(Some(header("bob:secret").as_bytes())));
        assert!(!auth.check(None));
        assert_eq!(auth.cache.lock().unwrap().len(), 3);
        // The fake hash is a well-formed cost-10 hash, so unknown users cost a real bcrypt.
        assert_eq!(FAKE_HASH.parse::<bcrypt::HashParts>().unwrap().get_cost(), 10);
    }

    fn encode(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n =
                (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    #[test]
    fn config_errors_are_clear() {
        let base = Path::new("/nonexistent");
        let cases = [
            ("basic_auth_users:\n  a: notahash\n", "not a bcrypt hash"),
            ("http_server_config:\n  headers:\n    Server: x\n", "may not be set"),
            ("tls_server_config:\n  cert_file: c\n", "both required"),
            ("tls_srever_config: {}\n", "unknown field"),
        ];
        for (yaml, want) in cases {
            let e = WebConfig::parse(yaml, base).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let ok =
            WebConfig::parse("http_server_config:\n  headers:\n    x-frame-options: deny\n", base).unwrap();
        assert_eq!(ok.headers[0].0.as_str(), "x-frame-options");
        assert!(WebConfig::parse("", base).unwrap().tls.is_none());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = base64_decode(&bytes);
            let _ = parse_basic(&bytes);
            let mut h = b"Basic ".to_vec();
            h.extend_from_slice(&bytes);
            let _ = parse_basic(&h);
            let _ = WebConfig::parse(&String::from_utf8_lossy(&bytes), Path::new("/nonexistent"));
        }
    }
}

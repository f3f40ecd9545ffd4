//! DPoP (RFC 9449) against a real server: every §4.3 check of a resource request's proof,
//! replay, key binding, token expiry, the token endpoint's grants, devices, logout and
//! revocation, login rate limits, the device-certificate grant and key-backup recovery.

use crate::common::*;
use hearth::auth::device_cert::{issue_device_certificate, user_id_from_public, DeviceCertificate};
use hearth::auth::dpop::make_proof;
use hearth::auth::jose::{b64u, sha256_b64u, SigningKey};
use hearth::client::{Client, ClientError, Response};
use serde_json::{json, Map, Value};
use std::time::Duration;

const ME: &str = "/api/v1/users/@me";
/// The password `common::user` registers with.
const PASSWORD: &str = "password-of-some-length";
const INVALID_PROOF: &str = "invalid_dpop_proof";
const USE_NONCE: &str = "use_dpop_nonce";

fn now() -> u64 {
    hearth::system::now()
}

fn random_b64u() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random bytes");
    b64u(&bytes)
}

/// A DPoP proof taken apart, to be tampered with and then signed.
#[derive(Clone)]
struct Proof {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl Proof {
    /// A correct proof for `method url`: typ, jwk, jti, htm, htu, iat, and ath / nonce when
    /// given.
    fn new(
        key: &SigningKey,
        method: &str,
        url: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> Proof {
        let mut header = Map::new();
        header.insert("typ".into(), json!("dpop+jwt"));
        header.insert("jwk".into(), key.public_jwk().to_json());
        let mut claims = Map::new();
        claims.insert("jti".into(), json!(random_b64u()));
        claims.insert("htm".into(), json!(method));
        claims.insert("htu".into(), json!(url));
        claims.insert("iat".into(), json!(now()));
        if let Some(token) = token {
            claims.insert("ath".into(), json!(sha256_b64u(token.as_bytes())));
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        Proof { header, claims }
    }

    fn claim(mut self, name: &str, value: Value) -> Proof {
        self.claims.insert(name.into(), value);
        self
    }

    fn without_claim(mut self, name: &str) -> Proof {
        self.claims.remove(name);
        self
    }

    fn header(mut self, name: &str, value: Value) -> Proof {
        self.header.insert(name.into(), value);
        self
    }

    fn without_header(mut self, name: &str) -> Proof {
        self.header.remove(name);
        self
    }

    /// Signed by `key` with its own algorithm.
    fn signed(&self, key: &SigningKey) -> String {
        key.sign_jws(self.header.clone(), &Value::Object(self.claims.clone()))
    }

    /// A compact JWS with the given `alg` and signature bytes, made by hand.
    fn with_alg(&self, alg: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let mut header = self.header.clone();
        header.insert("alg".into(), json!(alg));
        let input = format!(
            "{}.{}",
            b64u(Value::Object(header).to_string().as_bytes()),
            b64u(Value::Object(self.claims.clone()).to_string().as_bytes())
        );
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64u(&signature))
    }
}

/// A signed-in user ready for hand-made requests to `GET /api/v1/users/@me`.
struct Session {
    client: Client,
    key: SigningKey,
    token: String,
    url: String,
    nonce: String,
}

impl Session {
    async fn new(server: &TestServer, client: Client) -> Session {
        let token = client
            .access_token(&server.origin)
            .expect("signed in: access token");
        let nonce = client.fetch_nonce(&server.origin).await.expect("nonce");
        Session {
            key: client.device_key().clone(),
            client,
            token,
            url: server.url(ME),
            nonce,
        }
    }

    /// A correct proof for this session's request, to tamper with.
    fn proof(&self) -> Proof {
        Proof::new(
            &self.key,
            "GET",
            &self.url,
            Some(&self.token),
            Some(&self.nonce),
        )
    }

    fn valid(&self) -> String {
        self.proof().signed(&self.key)
    }

    /// `GET /api/v1/users/@me` with `Authorization: DPoP <token>` and the given proofs.
    async fn get_me(&self, proofs: &[String]) -> Response {
        self.send("DPoP", &self.token, proofs).await
    }

    async fn send(&self, scheme: &str, token: &str, proofs: &[String]) -> Response {
        let mut headers = vec![("Authorization", format!("{scheme} {token}"))];
        headers.extend(proofs.iter().map(|p| ("DPoP", p.clone())));
        self.client
            .raw(&self.url, "GET", &headers, Vec::new())
            .await
            .expect("the server answers")
    }
}

fn body_of(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// A refused resource request: 401, `WWW-Authenticate: DPoP error="<error>"`, and a JSON
/// body `{"error": <error>, "message": ...}` whose message names `reason`.
#[track_caller]
fn assert_refused(case: &str, r: &Response, error: &str, reason: &str) {
    assert_eq!(r.status, 401, "{case}: status (body {})", body_of(r));
    let challenge = r
        .header("WWW-Authenticate")
        .unwrap_or_else(|| panic!("{case}: no WWW-Authenticate header"));
    assert!(
        challenge.starts_with("DPoP "),
        "{case}: challenge {challenge}"
    );
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{case}: challenge {challenge} should carry error=\"{error}\""
    );
    let body = r
        .json()
        .unwrap_or_else(|e| panic!("{case}: body is not JSON: {e}"));
    assert_eq!(body["error"], error, "{case}: body {body}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no message in {body}"));
    assert!(
        message.contains(reason),
        "{case}: message {message:?} should say {reason:?}"
    );
    if error == USE_NONCE {
        let fresh = r.header("DPoP-Nonce");
        assert!(
            fresh.is_some_and(|n| !n.is_empty()),
            "{case}: use_dpop_nonce without a DPoP-Nonce header"
        );
    }
}

/// An accepted `GET /api/v1/users/@me`.
#[track_caller]
fn assert_me(case: &str, r: &Response, name: &str) {
    assert_eq!(r.status, 200, "{case}: status (body {})", body_of(r));
    let body = r.json().expect("JSON");
    assert_eq!(body["name"], name, "{case}: {body}");
}

/// An error of the token endpoint (RFC 6749 §5.2): 400, `error`, and the text under both
/// `message` and `error_description`.
#[track_caller]
fn assert_oauth_error(case: &str, r: &Response, status: u16, error: &str) {
    assert_eq!(r.status, status, "{case}: status (body {})", body_of(r));
    let body = r
        .json()
        .unwrap_or_else(|e| panic!("{case}: body is not JSON: {e}"));
    assert_eq!(body["error"], error, "{case}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: no message in {body}"
    );
    assert!(
        body["error_description"].is_string(),
        "{case}: no error_description in {body}"
    );
}

/// `POST /oauth/token` with a form and, when `key` is given, a DPoP proof by that key
/// carrying the server's current nonce.
async fn token_request(
    client: &Client,
    server: &TestServer,
    key: Option<&SigningKey>,
    form: &[(&str, &str)],
) -> Response {
    let url = server.url("/oauth/token");
    let mut headers = vec![(
        "Content-Type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    if let Some(key) = key {
        let nonce = client.fetch_nonce(&server.origin).await.expect("nonce");
        headers.push((
            "DPoP",
            make_proof(key, "POST", &url, None, Some(&nonce), now()),
        ));
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    client
        .raw(&url, "POST", &headers, body.into_bytes())
        .await
        .expect("the server answers")
}

type Maker = Box<dyn Fn(&Session) -> Vec<String>>;

fn one(f: impl Fn(&Session) -> String + 'static) -> Maker {
    Box::new(move |s| vec![f(s)])
}

#[test]
fn every_proof_check_of_rfc9449_section_4_3_is_made() {
    let server = TestServer::start();
    let other_server = TestServer::start();
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        let foreign_nonce = Client::new()
            .fetch_nonce(&other_server.origin)
            .await
            .expect("nonce of another server");
        let stranger = SigningKey::generate_es256();
        let (host_port, port) = (server.addr.to_string(), server.addr.port().to_string());

        // Proofs the server must accept: without them the refusals below prove nothing.
        let accepted: Vec<(&str, Maker)> = vec![
            ("a correct proof", one(|s| s.valid())),
            // (11) The nonce dates the proof (RFC 9449 §4.3: "a server managed timestamp
            // via the nonce claim"): a client clock hours from the server's, as after a
            // power cut of a Pi without RTC on a LAN without NTP, is no reason to refuse.
            (
                "iat 3 h ago, with a current nonce",
                one(|s| {
                    s.proof()
                        .claim("iat", json!(now() - 3 * 3600))
                        .signed(&s.key)
                }),
            ),
            (
                "iat 3 h ahead, with a current nonce",
                one(|s| {
                    s.proof()
                        .claim("iat", json!(now() + 3 * 3600))
                        .signed(&s.key)
                }),
            ),
            (
                "htu with a query and fragment, which are ignored",
                one(|s| {
                    let htu = format!("{}?x=1#top", s.url);
                    s.proof().claim("htu", json!(htu)).signed(&s.key)
                }),
            ),
            (
                "htu with an upper-case scheme",
                one(move |s| {
                    let htu = s.url.replace("http://", "HTTP://");
                    s.proof().claim("htu", json!(htu)).signed(&s.key)
                }),
            ),
        ];
        for (case, make) in &accepted {
            let r = s.get_me(&make(&s)).await;
            assert_me(case, &r, "alice");
        }

        let missing_claims = ["jti", "htm", "htu", "iat", "ath"];
        let mut refused: Vec<(String, Maker, &str, String)> = Vec::new();
        let mut row = |case: &str, make: Maker, error: &'static str, reason: &str| {
            refused.push((case.to_string(), make, error, reason.to_string()));
        };

        // (1) exactly one DPoP header.
        row(
            "(1) two DPoP headers",
            Box::new(|s| vec![s.valid(), s.valid()]),
            INVALID_PROOF,
            "more than one DPoP proof",
        );
        row(
            "(1) no DPoP header",
            Box::new(|_| vec![]),
            INVALID_PROOF,
            "missing DPoP proof",
        );
        // (2) a well-formed JWT.
        for (case, text) in [
            ("(2) not a JWT", "not-a-jwt"),
            ("(2) three parts of garbage", "a.b.c"),
            ("(2) empty signature part", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30."),
        ] {
            row(
                case,
                one(move |_| text.to_string()),
                INVALID_PROOF,
                "not a well-formed JWT",
            );
        }
        row(
            "(2) four parts",
            one(|s| format!("{}.AAAA", s.valid())),
            INVALID_PROOF,
            "not a well-formed JWT",
        );
        row(
            "(2) header that is not JSON",
            one(|s| {
                let valid = s.valid();
                let rest = valid.split_once('.').expect("compact JWS").1.to_string();
                format!("{}.{rest}", b64u(b"{not json"))
            }),
            INVALID_PROOF,
            "not a well-formed JWT",
        );
        // (3) every required claim and header parameter.
        for claim in missing_claims {
            row(
                &format!("(3) no {claim} claim"),
                one(move |s| s.proof().without_claim(claim).signed(&s.key)),
                INVALID_PROOF,
                &format!("missing {claim} claim"),
            );
        }
        row(
            "(3) no nonce claim",
            one(|s| s.proof().without_claim("nonce").signed(&s.key)),
            USE_NONCE,
            "nonce required",
        );
        for param in ["typ", "jwk"] {
            row(
                &format!("(3) no {param} header"),
                one(move |s| s.proof().without_header(param).signed(&s.key)),
                INVALID_PROOF,
                &format!("missing {param} header"),
            );
        }
        row(
            "(3) empty jti",
            one(|s| s.proof().claim("jti", json!("")).signed(&s.key)),
            INVALID_PROOF,
            "invalid jti claim",
        );
        row(
            "(3) iat that is not a number",
            one(|s| {
                s.proof()
                    .claim("iat", json!(now().to_string()))
                    .signed(&s.key)
            }),
            INVALID_PROOF,
            "invalid iat claim",
        );
        // (4) typ.
        for typ in ["JWT", "at+jwt"] {
            row(
                &format!("(4) typ {typ}"),
                one(move |s| s.proof().header("typ", json!(typ)).signed(&s.key)),
                INVALID_PROOF,
                "typ is not dpop+jwt",
            );
        }
        // (5) an asymmetric algorithm the server supports.
        row(
            "(5) alg none with an empty signature",
            one(|s| s.proof().with_alg("none", |_| Vec::new())),
            INVALID_PROOF,
            "not a well-formed JWT",
        );
        row(
            "(5) alg none",
            one(|s| s.proof().with_alg("none", |_| b"x".to_vec())),
            INVALID_PROOF,
            "unsupported alg",
        );
        row(
            "(5) HS256 keyed with the public key",
            one(|s| {
                use hmac::Mac;
                let secret = s.key.public_jwk().to_json().to_string();
                s.proof().with_alg("HS256", |input| {
                    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                        .expect("any key length");
                    mac.update(input);
                    mac.finalize().into_bytes().to_vec()
                })
            }),
            INVALID_PROOF,
            "unsupported alg",
        );
        row(
            "(5) RS256",
            one(|s| s.proof().with_alg("RS256", |_| vec![7; 256])),
            INVALID_PROOF,
            "unsupported alg",
        );
        row(
            "(5) EdDSA claimed for a P-256 key",
            one(|s| s.proof().with_alg("EdDSA", |_| vec![7; 64])),
            INVALID_PROOF,
            "alg does not match jwk",
        );
        // (6) the signature, by the key in the header.
        row(
            "(6) a flipped signature byte",
            one(|s| {
                let valid = s.valid();
                let (input, sig) = valid.rsplit_once('.').expect("compact JWS");
                let mut sig = hearth::auth::jose::b64u_decode(sig).expect("signature");
                sig[10] ^= 1;
                format!("{input}.{}", b64u(&sig))
            }),
            INVALID_PROOF,
            "invalid signature",
        );
        row(
            "(6) signed by another key than the jwk",
            one(move |s| s.proof().signed(&SigningKey::generate_es256())),
            INVALID_PROOF,
            "invalid signature",
        );
        row(
            "(6) claims changed after signing",
            one(|s| {
                let valid = s.valid();
                let parts: Vec<&str> = valid.split('.').collect();
                let mut claims = s.proof().claims;
                claims.insert("htu".into(), json!(s.url.clone()));
                claims.insert("jti".into(), json!("changed"));
                let forged = b64u(Value::Object(claims).to_string().as_bytes());
                format!("{}.{forged}.{}", parts[0], parts[2])
            }),
            INVALID_PROOF,
            "invalid signature",
        );
        // (7) a public key without private parts.
        row(
            "(7) jwk with the private key d",
            one(|s| {
                let mut jwk = s.key.public_jwk().to_json();
                jwk["d"] = json!(b64u(&s.key.to_bytes()[1..]));
                s.proof().header("jwk", jwk).signed(&s.key)
            }),
            INVALID_PROOF,
            "jwk contains a private key",
        );
        row(
            "(7) jwk that is not a curve point",
            one(|s| {
                let mut jwk = s.key.public_jwk().to_json();
                jwk["y"] = json!(b64u(&[7u8; 32]));
                s.proof().header("jwk", jwk).signed(&s.key)
            }),
            INVALID_PROOF,
            "invalid jwk",
        );
        // (8) htm.
        for htm in ["POST", "get", "HEAD"] {
            row(
                &format!("(8) htm {htm}"),
                one(move |s| s.proof().claim("htm", json!(htm)).signed(&s.key)),
                INVALID_PROOF,
                "htm mismatch",
            );
        }
        // (9) htu.
        let other_host = format!("http://hearth.example:{port}{ME}");
        let other_port = format!("http://127.0.0.1:1{ME}");
        let https = format!("https://{host_port}{ME}");
        let other_path = format!("http://{host_port}{ME}/guilds");
        for (case, htu) in [
            ("(9) htu of another path", other_path),
            ("(9) htu of another host", other_host),
            ("(9) htu of another port", other_port),
            ("(9) htu with https", https),
            ("(9) htu that is not a URL", "users/@me".to_string()),
        ] {
            row(
                case,
                one(move |s| s.proof().claim("htu", json!(htu)).signed(&s.key)),
                INVALID_PROOF,
                "htu mismatch",
            );
        }
        // (10) nonce: made by this server, recently.
        row(
            "(10) a made-up nonce",
            one(|s| s.proof().claim("nonce", json!("made-up")).signed(&s.key)),
            USE_NONCE,
            "invalid nonce",
        );
        row(
            "(10) another server's nonce",
            one(move |s| {
                s.proof()
                    .claim("nonce", json!(foreign_nonce))
                    .signed(&s.key)
            }),
            USE_NONCE,
            "invalid nonce",
        );
        row(
            "(10) a nonce that is not a string",
            one(|s| s.proof().claim("nonce", json!(12345)).signed(&s.key)),
            USE_NONCE,
            "invalid nonce",
        );
        // (11) creation time: with nonces required, the nonce's epoch dates the proof;
        // `a_stale_nonce_is_refused_and_the_fresh_one_works` is its refusal, and the
        // accepted list shows that iat alone is not compared with the server's clock.
        // (12) ath and the key binding of the access token.
        row(
            "(12) ath of another token",
            one(|s| {
                let ath = sha256_b64u(format!("{}x", s.token).as_bytes());
                s.proof().claim("ath", json!(ath)).signed(&s.key)
            }),
            INVALID_PROOF,
            "ath mismatch",
        );
        row(
            "(12) ath as the token itself, unhashed",
            one(|s| {
                s.proof()
                    .claim("ath", json!(s.token.clone()))
                    .signed(&s.key)
            }),
            INVALID_PROOF,
            "ath mismatch",
        );
        row(
            "(12) a proof by another key than the token's cnf.jkt",
            one(move |s| {
                Proof::new(&stranger, "GET", &s.url, Some(&s.token), Some(&s.nonce))
                    .signed(&stranger)
            }),
            INVALID_PROOF,
            "signed by another key",
        );

        for (case, make, error, reason) in &refused {
            let r = s.get_me(&make(&s)).await;
            assert_refused(case, &r, error, reason);
        }
        // After all of that the session still works.
        assert_me(
            "a correct proof at the end",
            &s.get_me(&[s.valid()]).await,
            "alice",
        );
    });
}

#[test]
fn a_use_dpop_nonce_answer_carries_the_nonce_to_retry_with() {
    let server = TestServer::start();
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        let r = s
            .get_me(&[s.proof().without_claim("nonce").signed(&s.key)])
            .await;
        assert_refused("no nonce", &r, USE_NONCE, "nonce required");
        let nonce = r.header("DPoP-Nonce").expect("nonce").to_string();
        let retry = s
            .get_me(&[s.proof().claim("nonce", json!(nonce)).signed(&s.key)])
            .await;
        assert_me("retry with the given nonce", &retry, "alice");
    });
}

#[test]
fn a_stale_nonce_is_refused_and_the_fresh_one_works() {
    let server = TestServer::start_with(|c| c.auth.dpop_nonce_secs = 1);
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        let old = s.client.fetch_nonce(&server.origin).await.expect("nonce");
        // The current and the previous nonce are accepted; two epochs on, this one is not.
        std::thread::sleep(Duration::from_millis(2300));
        let r = s
            .get_me(&[s.proof().claim("nonce", json!(old)).signed(&s.key)])
            .await;
        assert_refused("nonce 2 epochs old", &r, USE_NONCE, "stale nonce");
        let fresh = r.header("DPoP-Nonce").expect("nonce").to_string();
        assert_ne!(fresh, old, "the server should hand out a new nonce");
        let retry = s
            .get_me(&[s.proof().claim("nonce", json!(fresh)).signed(&s.key)])
            .await;
        assert_me("retry with the fresh nonce", &retry, "alice");
    });
}

#[test]
fn a_proof_is_accepted_once() {
    let server = TestServer::start();
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        let proof = s.valid();
        assert_me(
            "first use",
            &s.get_me(std::slice::from_ref(&proof)).await,
            "alice",
        );
        let r = s.get_me(&[proof]).await;
        assert_refused("replayed proof", &r, INVALID_PROOF, "jti already used");

        // The same jti in an otherwise new proof is a replay too.
        let jti = random_b64u();
        let first = s.proof().claim("jti", json!(jti)).signed(&s.key);
        assert_me("jti first seen", &s.get_me(&[first]).await, "alice");
        let again = s
            .proof()
            .claim("jti", json!(jti))
            .claim("iat", json!(now() - 1))
            .signed(&s.key);
        let r = s.get_me(&[again]).await;
        assert_refused(
            "jti reused in a new proof",
            &r,
            INVALID_PROOF,
            "jti already used",
        );

        // A refused proof does not use up its jti.
        let jti = random_b64u();
        let wrong = s
            .proof()
            .claim("jti", json!(jti))
            .claim("htm", json!("POST"))
            .signed(&s.key);
        assert_refused(
            "refused proof",
            &s.get_me(&[wrong]).await,
            INVALID_PROOF,
            "htm mismatch",
        );
        let right = s.proof().claim("jti", json!(jti)).signed(&s.key);
        assert_me("jti of a refused proof", &s.get_me(&[right]).await, "alice");

        // jtis are per key: another user may pick the same one.
        let bob = Session::new(&server, user(&server, "bob").await).await;
        let bobs = bob.proof().claim("jti", json!(jti)).signed(&bob.key);
        assert_me("same jti, other key", &bob.get_me(&[bobs]).await, "bob");
    });
}

#[test]
fn a_token_is_refused_with_another_clients_key() {
    let server = TestServer::start();
    block_on(async {
        let alice = Session::new(&server, user(&server, "alice").await).await;
        let bob = Session::new(&server, user(&server, "bob").await).await;
        // Bob holds alice's token and signs a perfect proof for it with his own key.
        let proof = Proof::new(
            &bob.key,
            "GET",
            &alice.url,
            Some(&alice.token),
            Some(&bob.nonce),
        )
        .signed(&bob.key);
        let r = bob.send("DPoP", &alice.token, &[proof]).await;
        assert_refused("alice's token, bob's key", &r, INVALID_PROOF, "another key");
        // And the client library's own proof for it fails the same way.
        let proof = bob
            .client
            .proof("GET", &alice.url, Some(&alice.token))
            .expect("proof");
        let r = bob.send("DPoP", &alice.token, &[proof]).await;
        assert_refused("via Client::proof", &r, INVALID_PROOF, "another key");
        // Both still work with their own keys.
        assert_me("alice", &alice.get_me(&[alice.valid()]).await, "alice");
        assert_me("bob", &bob.get_me(&[bob.valid()]).await, "bob");
    });
}

#[test]
fn an_expired_access_token_is_refused() {
    let server = TestServer::start_with(|c| c.auth.access_token_secs = 1);
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        std::thread::sleep(Duration::from_millis(2100));
        let r = s.get_me(&[s.valid()]).await;
        assert_refused("expired token", &r, "invalid_token", "expired");
        // The client library refreshes and gets through.
        let me = s.client.get(&s.url).await.expect("request");
        assert_me("after refresh", &me, "alice");
        let new_token = s.client.access_token(&server.origin).expect("token");
        assert_ne!(new_token, s.token);
    });
}

#[test]
fn only_the_dpop_scheme_is_accepted() {
    let server = TestServer::start();
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        let r = s.send("Bearer", &s.token, &[s.valid()]).await;
        assert_refused("Bearer scheme", &r, "invalid_token", "DPoP");
        let r = s.send("Bearer", &s.token, &[]).await;
        assert_refused("Bearer scheme, no proof", &r, "invalid_token", "DPoP");
        let r = s.send("DPoP", "not-a-token", &[s.valid()]).await;
        assert_refused("garbage token", &r, "invalid_token", "malformed");

        // No credentials at all: a challenge without an error code (RFC 6750 §3.1).
        let r = s
            .client
            .raw(&s.url, "GET", &[], Vec::new())
            .await
            .expect("answer");
        assert_eq!(r.status, 401, "{}", body_of(&r));
        let challenge = r.header("WWW-Authenticate").expect("challenge");
        assert!(challenge.starts_with("DPoP"), "{challenge}");
        assert!(!challenge.contains("error="), "{challenge}");
        assert!(r.json().expect("JSON")["error"].is_string());
    });
}

#[test]
fn token_endpoint_errors() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let key = SigningKey::generate_es256();
        let password = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];

        let r = token_request(&alice, &server, None, &password).await;
        assert_oauth_error("no DPoP proof", &r, 400, INVALID_PROOF);

        // RFC 9449 §8: no nonce → use_dpop_nonce with the nonce to use; the retry works.
        let url = server.url("/oauth/token");
        let form = "grant_type=password&username=alice&password=password-of-some-length";
        let form_header = (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        );
        let proof = make_proof(&key, "POST", &url, None, None, now());
        let r = alice
            .raw(
                &url,
                "POST",
                &[form_header.clone(), ("DPoP", proof)],
                form.into(),
            )
            .await
            .expect("answer");
        assert_oauth_error("no nonce", &r, 400, USE_NONCE);
        let nonce = r.header("DPoP-Nonce").expect("DPoP-Nonce").to_string();
        let proof = make_proof(&key, "POST", &url, None, Some(&nonce), now());
        let r = alice
            .raw(&url, "POST", &[form_header, ("DPoP", proof)], form.into())
            .await
            .expect("answer");
        assert_eq!(r.status, 200, "{}", body_of(&r));

        let wrong = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "not-the-password"),
        ];
        let r = token_request(&alice, &server, Some(&key), &wrong).await;
        assert_oauth_error("wrong password", &r, 400, "invalid_grant");
        let wrong_message = r.json().expect("JSON")["message"].clone();
        let nobody = [
            ("grant_type", "password"),
            ("username", "nobody"),
            ("password", PASSWORD),
        ];
        let r = token_request(&alice, &server, Some(&key), &nobody).await;
        assert_oauth_error("unknown user", &r, 400, "invalid_grant");
        assert_eq!(
            r.json().expect("JSON")["message"],
            wrong_message,
            "an unknown user and a wrong password should look the same"
        );

        let r = token_request(
            &alice,
            &server,
            Some(&key),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_oauth_error("unsupported grant", &r, 400, "unsupported_grant_type");
        let r = token_request(&alice, &server, Some(&key), &[("username", "alice")]).await;
        assert_oauth_error("no grant_type", &r, 400, "invalid_request");
        let r = token_request(
            &alice,
            &server,
            Some(&key),
            &[("grant_type", "password"), ("grant_type", "password")],
        )
        .await;
        assert_oauth_error("repeated parameter", &r, 400, "invalid_request");
        let r = token_request(
            &alice,
            &server,
            Some(&key),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "made-up"),
            ],
        )
        .await;
        assert_oauth_error("unknown refresh token", &r, 400, "invalid_grant");
    });
}

#[test]
fn refresh_tokens_are_bound_to_their_key() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let refresh = alice.refresh_token(&server.origin).expect("refresh token");
        let form = [("grant_type", "refresh_token"), ("refresh_token", &refresh)];

        let other = SigningKey::generate_es256();
        let r = token_request(&alice, &server, Some(&other), &form).await;
        assert_oauth_error("refresh with another key", &r, 400, "invalid_grant");
        // Not even with the key of another device signed in to the same account.
        let phone = Client::new();
        phone
            .login_password(&server.origin, "alice", PASSWORD)
            .await
            .expect("second device");
        let r = token_request(&alice, &server, Some(phone.device_key()), &form).await;
        assert_oauth_error(
            "refresh with another device's key",
            &r,
            400,
            "invalid_grant",
        );

        let r = token_request(&alice, &server, Some(alice.device_key()), &form).await;
        assert_eq!(r.status, 200, "refresh with the right key: {}", body_of(&r));
        let grant = r.json().expect("JSON");
        assert_eq!(grant["token_type"], "DPoP");
        assert_eq!(grant["user_id"], alice.user_id(&server.origin).unwrap());
        let expires_in = grant["expires_in"].as_u64().expect("expires_in");
        assert!((1..=900).contains(&expires_in), "expires_in {expires_in}");
        let token = grant["access_token"].as_str().expect("access_token");
        let claims = hearth::auth::jose::Jws::parse(token).expect("a JWT").claims;
        assert_eq!(claims["cnf"]["jkt"], alice.device_thumbprint());

        let s = Session {
            token: token.to_string(),
            ..Session::new(&server, alice.clone()).await
        };
        assert_me(
            "the refreshed token",
            &s.get_me(&[s.valid()]).await,
            "alice",
        );
        // The client library's refresh works too.
        alice.refresh(&server.origin).await.expect("refresh");
    });
}

#[test]
fn devices_are_listed_and_a_removed_device_is_out_at_once() {
    let server = TestServer::start();
    block_on(async {
        let first = Session::new(&server, user(&server, "alice").await).await;
        let second = Client::new();
        second
            .login_password(&server.origin, "alice", PASSWORD)
            .await
            .expect("second device signs in");

        let list = second
            .get(&server.url("/api/v1/users/@me/devices"))
            .await
            .expect("request")
            .ok()
            .expect("device list")
            .json()
            .expect("JSON");
        let list = list.as_array().expect("array");
        assert_eq!(list.len(), 2, "{list:?}");
        let find = |id: &str| {
            list.iter()
                .find(|d| d["id"] == id)
                .unwrap_or_else(|| panic!("device {id} not in {list:?}"))
        };
        let one = find(&first.client.device_thumbprint());
        assert_eq!(one["current"], false);
        assert_eq!(one["certified"], true, "registered with a certificate");
        let two = find(&second.device_thumbprint());
        assert_eq!(two["current"], true);
        assert_eq!(two["certified"], false, "signed in with a password only");

        let refresh = first
            .client
            .refresh_token(&server.origin)
            .expect("refresh token");
        let r = second
            .delete(&server.url(&format!(
                "/api/v1/users/@me/devices/{}",
                first.client.device_thumbprint()
            )))
            .await
            .expect("request");
        assert_eq!(r.status, 204, "{}", body_of(&r));

        let r = first.get_me(&[first.valid()]).await;
        assert_refused("removed device", &r, "invalid_token", "signed out");
        let r = token_request(
            &first.client,
            &server,
            Some(&first.key),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_oauth_error("refresh of a removed device", &r, 400, "invalid_grant");

        let r = second
            .delete(&server.url("/api/v1/users/@me/devices/no-such-device"))
            .await
            .expect("request");
        assert_eq!(r.status, 404, "{}", body_of(&r));
        let list = second
            .get(&server.url("/api/v1/users/@me/devices"))
            .await
            .expect("request")
            .json()
            .expect("JSON");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
        assert_eq!(list[0]["id"], second.device_thumbprint());
    });
}

#[test]
fn logout_ends_the_session_at_once() {
    let server = TestServer::start();
    block_on(async {
        let s = Session::new(&server, user(&server, "alice").await).await;
        let refresh = s.client.refresh_token(&server.origin).expect("refresh");
        let r = s
            .client
            .post(&server.url("/api/v1/auth/logout"), json!({}))
            .await
            .expect("request");
        assert_eq!(r.status, 204, "{}", body_of(&r));
        let r = s.get_me(&[s.valid()]).await;
        assert_refused("after logout", &r, "invalid_token", "signed out");
        let r = token_request(
            &s.client,
            &server,
            Some(&s.key),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_oauth_error("refresh after logout", &r, 400, "invalid_grant");
        // A password login makes the device usable again.
        s.client
            .login_password(&server.origin, "alice", PASSWORD)
            .await
            .expect("sign in again");
        let me = s.client.get(&s.url).await.expect("request");
        assert_me("signed in again", &me, "alice");
    });
}

#[test]
fn a_revoked_refresh_token_stops_working() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let refresh = alice.refresh_token(&server.origin).expect("refresh");
        let revoke = |token: String| {
            let alice = alice.clone();
            let url = server.url("/oauth/revoke");
            async move {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", &token)
                    .finish();
                alice
                    .raw(
                        &url,
                        "POST",
                        &[(
                            "Content-Type",
                            "application/x-www-form-urlencoded".to_string(),
                        )],
                        body.into_bytes(),
                    )
                    .await
                    .expect("answer")
            }
        };
        let r = revoke(refresh.clone()).await;
        assert_eq!(r.status, 200, "{}", body_of(&r));
        let r = token_request(
            &alice,
            &server,
            Some(alice.device_key()),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_oauth_error("revoked refresh token", &r, 400, "invalid_grant");
        // RFC 7009 §2.2: an unknown token is not an error.
        let r = revoke("never-issued".into()).await;
        assert_eq!(r.status, 200, "{}", body_of(&r));
        let r = alice
            .raw(
                &server.url("/oauth/revoke"),
                "POST",
                &[(
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_string(),
                )],
                b"nothing=here".to_vec(),
            )
            .await
            .expect("answer");
        assert_oauth_error("no token parameter", &r, 400, "invalid_request");
    });
}

#[track_caller]
fn assert_rate_limited(case: &str, r: &Response) {
    assert_eq!(r.status, 429, "{case}: status (body {})", body_of(r));
    let after: u64 = r
        .header("Retry-After")
        .unwrap_or_else(|| panic!("{case}: no Retry-After"))
        .parse()
        .unwrap_or_else(|e| panic!("{case}: Retry-After is not seconds: {e}"));
    assert!((1..=60).contains(&after), "{case}: Retry-After {after}");
    let body = r.json().expect("JSON");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
}

#[test]
fn failed_logins_are_limited_per_account() {
    let server = TestServer::start_with(|c| c.auth.login_failures_per_account = 3);
    block_on(async {
        let alice = user(&server, "alice").await;
        let _bob = user(&server, "bob").await;
        let key = SigningKey::generate_es256();
        let wrong = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "not-the-password"),
        ];
        for i in 0..3 {
            let r = token_request(&alice, &server, Some(&key), &wrong).await;
            assert_oauth_error(&format!("failure {i}"), &r, 400, "invalid_grant");
        }
        let r = token_request(&alice, &server, Some(&key), &wrong).await;
        assert_rate_limited("fourth failure", &r);
        // The account is locked for the minute, even with the right password.
        let right = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        let r = token_request(&alice, &server, Some(&key), &right).await;
        assert_rate_limited("right password while locked", &r);
        // Other accounts are not affected.
        let bob = [
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", PASSWORD),
        ];
        let r = token_request(&alice, &server, Some(&key), &bob).await;
        assert_eq!(r.status, 200, "bob: {}", body_of(&r));
        // Signed-in sessions keep working.
        let me = alice.get(&server.url(ME)).await.expect("request");
        assert_me("existing session", &me, "alice");
    });
}

#[test]
fn login_attempts_are_limited_per_address() {
    // Registering alice signs her in once: that is the first attempt of this address.
    let server = TestServer::start_with(|c| c.auth.login_attempts_per_address = 4);
    block_on(async {
        let alice = user(&server, "alice").await;
        let key = SigningKey::generate_es256();
        for name in ["carol", "dave", "erin"] {
            let r = token_request(
                &alice,
                &server,
                Some(&key),
                &[
                    ("grant_type", "password"),
                    ("username", name),
                    ("password", PASSWORD),
                ],
            )
            .await;
            assert_oauth_error(name, &r, 400, "invalid_grant");
        }
        let right = [
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        let r = token_request(&alice, &server, Some(&key), &right).await;
        assert_rate_limited("fifth attempt from the address", &r);
    });
}

#[test]
fn the_device_certificate_grant() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let identity = alice.identity().expect("alice has K_id");

        let laptop = Client::new();
        laptop.set_identity(identity.clone());
        laptop
            .login_certificate(&server.origin)
            .await
            .expect("certificate grant");
        assert_eq!(
            laptop.user_id(&server.origin),
            alice.user_id(&server.origin)
        );
        let me = laptop.get(&server.url(ME)).await.expect("request");
        assert_me("certified device", &me, "alice");

        // A certificate for another key than the proof's.
        let form_for = |certificate: &str| {
            vec![
                (
                    "grant_type".to_string(),
                    hearth::auth::DEVICE_CERTIFICATE_GRANT.to_string(),
                ),
                ("device_certificate".to_string(), certificate.to_string()),
            ]
        };
        let certificate = |signer: &ed25519_dalek::SigningKey, sub: &str, jkt: String| {
            issue_device_certificate(
                signer,
                &DeviceCertificate {
                    sub: sub.to_string(),
                    jkt,
                    homeserver: server.origin.clone(),
                    iat: now(),
                    exp: now() + 3600,
                },
            )
        };
        let sub = user_id_from_public(&identity.verifying_key().to_bytes());
        let key = SigningKey::generate_es256();
        let someone_else = SigningKey::generate_es256().public_jwk().thumbprint();
        let forger = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        for (case, cert) in [
            (
                "certificate for another key",
                certificate(&identity, &sub, someone_else),
            ),
            (
                "certificate signed by another identity",
                certificate(&forger, &sub, key.public_jwk().thumbprint()),
            ),
        ] {
            let form = form_for(&cert);
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let r = token_request(&alice, &server, Some(&key), &pairs).await;
            assert_oauth_error(case, &r, 400, "invalid_grant");
        }
        // The control: the same request with a correct certificate for `key` succeeds.
        let form = form_for(&certificate(&identity, &sub, key.public_jwk().thumbprint()));
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = token_request(&alice, &server, Some(&key), &pairs).await;
        assert_eq!(r.status, 200, "correct certificate: {}", body_of(&r));
    });
}

#[test]
fn the_identity_key_is_recovered_from_its_backup() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let original = alice.identity().expect("K_id").to_bytes();

        let phone = Client::new();
        phone
            .login_password(&server.origin, "alice", PASSWORD)
            .await
            .expect("password login");
        assert!(phone.identity().is_none());
        phone
            .recover_identity(&server.origin, PASSWORD)
            .await
            .expect("recover with the password");
        assert_eq!(
            phone.identity().expect("recovered K_id").to_bytes(),
            original,
            "the recovered identity key is the registered one"
        );
        // The recovered key certifies the new device.
        phone
            .login_certificate(&server.origin)
            .await
            .expect("certificate grant with the recovered key");
        let devices = phone
            .get(&server.url("/api/v1/users/@me/devices"))
            .await
            .expect("request")
            .json()
            .expect("JSON");
        let mine = devices
            .as_array()
            .and_then(|l| l.iter().find(|d| d["current"] == true))
            .cloned()
            .unwrap_or_default();
        assert_eq!(mine["certified"], true, "{devices}");

        let tablet = Client::new();
        tablet
            .login_password(&server.origin, "alice", PASSWORD)
            .await
            .expect("password login");
        let wrong = tablet
            .recover_identity(&server.origin, "not-the-password")
            .await;
        assert!(
            matches!(wrong, Err(ClientError::Key(_))),
            "a wrong password must not unwrap the backup: {wrong:?}"
        );
        assert!(tablet.identity().is_none());
    });
}

#[test]
fn both_proof_algorithms_work() {
    let server = TestServer::start();
    block_on(async {
        let ed = Client::with_device_key(SigningKey::generate_ed25519());
        ed.register(&server.origin, "edna", PASSWORD)
            .await
            .expect("register with an EdDSA device key");
        let s = Session::new(&server, ed).await;
        assert_me("EdDSA proof", &s.get_me(&[s.valid()]).await, "edna");
        let r = s
            .get_me(&[s.proof().with_alg("ES256", |_| vec![7; 64])])
            .await;
        assert_refused(
            "ES256 claimed for an Ed25519 key",
            &r,
            INVALID_PROOF,
            "alg does not match jwk",
        );
    });
}

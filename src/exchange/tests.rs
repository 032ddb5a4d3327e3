//! The exchange through its client, against a local HTTP server: what is posted, which
//! answers are retried, how refusals and faults are reported.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::retry::backoff;
use super::*;
use crate::jose::SigningError;
use crate::kind::{HasKind, Kind};
use crate::netsuite::{ClientAssertion, PERMANENT_CODES, Scopes, TokenUrl};

/// A request as the test server saw it.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: String,
}

/// A minimal HTTP/1.1 responder: one connection per request, answers from `script` in order
/// (the last one repeated).
async fn serve(script: Vec<String>) -> (TokenUrl, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        for i in 0.. {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let request = read_request(&mut sock).await;
            log.lock().unwrap().push(request);
            let answer = &script[i.min(script.len() - 1)];
            let _ = sock.write_all(answer.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url.parse().unwrap(), seen)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        assert!(n > 0, "connection closed before the request head");
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8(buf[head_end..].to_vec()).unwrap();
    Seen { head, body }
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

fn ok(body: &str) -> String {
    response("200 OK", &[("Content-Type", "application/json")], body)
}

fn refused(status: &str, code: &str) -> String {
    response(status, &[], &format!(r#"{{"error":"{code}"}}"#))
}

const TOKEN: &str = "eyJTOKEN.SECRET.PART";

fn good() -> String {
    ok(&format!(
        r#"{{"access_token":"{TOKEN}","expires_in":3600,"token_type":"Bearer"}}"#
    ))
}

fn ctx(token_url: TokenUrl) -> ExchangeContext {
    ExchangeContext {
        certificate_id: "kid-CERT-1".parse().unwrap(),
        client_id: "CLIENT1234".parse().unwrap(),
        account: Some("1234567_SB1".parse().unwrap()),
        scopes: Scopes::default(),
        token_url,
    }
}

fn client() -> TokenClient {
    TokenClient::new(ClientOptions {
        connect_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(10),
        max_attempts: 3,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(60),
        use_proxy: false,
        ca_file: None,
    })
    .unwrap()
}

/// Runs a fetch against `script`; returns the result, the assertions signed, and the
/// requests the server saw.
async fn run(script: Vec<String>) -> (Result<AccessToken, ExchangeError>, u32, Vec<Seen>) {
    let (url, seen) = serve(script).await;
    let mut signed = 0;
    let result = client()
        .fetch(&ctx(url), || {
            signed += 1;
            std::future::ready(Ok(ClientAssertion {
                jws: format!("hdr.claims{signed}.sig"),
                jti: format!("jti-{signed}"),
                expires_at: 0,
            }))
        })
        .await;
    let seen = seen.lock().unwrap().clone();
    (result, signed, seen)
}

#[tokio::test]
async fn success_posts_exactly_the_three_fields() {
    let (result, signed, seen) = run(vec![good()]).await;
    let token = result.unwrap();
    assert_eq!(token.expose_secret(), TOKEN);
    assert_eq!(token.token_type(), "Bearer");
    let left = token.expires_in(SystemTime::now());
    assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
    assert_eq!(signed, 1);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].head.starts_with("POST /token HTTP/1.1\r\n"));
    let head = seen[0].head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/x-www-form-urlencoded"));
    assert!(!head.contains("authorization"));
    assert_eq!(
        seen[0].body,
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=hdr.claims1.sig"
    );
}

#[tokio::test]
async fn expires_in_as_string_and_lowercase_bearer_are_accepted() {
    let body = format!(r#"{{"access_token":"{TOKEN}","expires_in":"1800","token_type":"bearer"}}"#);
    let token = run(vec![ok(&body)]).await.0.unwrap();
    assert!(token.expires_in(SystemTime::now()) <= Duration::from_secs(1800));
    assert_eq!(token.token_type(), "Bearer");
}

#[test]
fn debug_never_shows_the_token() {
    let token = parse_success(
        format!(r#"{{"access_token":"{TOKEN}","expires_in":60,"token_type":"Bearer"}}"#).as_bytes(),
        SystemTime::now(),
    )
    .unwrap();
    let shown = format!("{token:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("Bearer"));
}

#[tokio::test]
async fn each_netsuite_code_is_explained_with_the_ids_used() {
    for (code, hint) in [
        ("invalid_request", "three-field form"),
        ("invalid_client", "Manage Integrations"),
        ("invalid_grant", "certificate id"),
        (
            "unauthorized_client",
            "Client Credentials (Machine to Machine) Grant",
        ),
        ("invalid_scope", "ScopeMismatched"),
        ("server_error", "MissingKeyId"),
        ("something_new", "does not know"),
    ] {
        let (result, signed, _) = run(vec![refused("400 Bad Request", code)]).await;
        assert_eq!(signed, 1, "{code}: a 4xx is not retried");
        let err = result.unwrap_err();
        assert!(!err.is_retryable());
        let text = err.to_string();
        for needle in [
            code,
            hint,
            "CLIENT1234",
            "kid-CERT-1",
            "1234567_SB1",
            "restlets,rest_webservices",
            "Login Audit Trail",
        ] {
            assert!(
                text.contains(needle),
                "{code}: '{needle}' missing from:\n{text}"
            );
        }
        assert!(!text.contains("hdr.claims"), "{text}");
    }
}

#[test]
fn refusals_of_the_client_are_permanent_and_other_failures_are_not() {
    let url: TokenUrl = "http://127.0.0.1:9/token".parse().unwrap();
    let status = |status: StatusCode, code: Option<&str>, retry_after| {
        ExchangeError::Status(Box::new(StatusError {
            status,
            code: code.map(str::to_owned),
            description: None,
            clock_skew: None,
            retry_after,
            attempts: 1,
            context: ctx(url.clone()),
        }))
    };
    for code in PERMANENT_CODES {
        assert!(status(StatusCode::BAD_REQUEST, Some(code), None).is_permanent());
    }
    // NetSuite answers some malformed assertions with 500 invalid_grant: still a verdict.
    assert!(
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some("invalid_grant"),
            None
        )
        .is_permanent()
    );
    for code in [
        None,
        Some("server_error"),
        Some("invalid_request"),
        Some("new_code"),
    ] {
        assert!(!status(StatusCode::BAD_REQUEST, code, None).is_permanent());
    }
    let wait = Duration::from_secs(3600);
    let limited = status(StatusCode::TOO_MANY_REQUESTS, None, Some(wait));
    assert!(!limited.is_permanent());
    assert_eq!(limited.retry_after(), Some(wait));
    let ExchangeError::Status(last) = limited else {
        unreachable!()
    };
    let too_long = ExchangeError::RetryAfterTooLong {
        last,
        wait,
        limit: Duration::from_secs(60),
    };
    assert_eq!(too_long.retry_after(), Some(wait));
}

#[tokio::test]
async fn server_errors_are_retried_with_fresh_assertions() {
    let fail = refused("500 Internal Server Error", "server_error");
    let (result, signed, seen) = run(vec![fail.clone(), fail, good()]).await;
    assert_eq!(result.unwrap().expose_secret(), TOKEN);
    assert_eq!(signed, 3);
    let bodies: Vec<&str> = seen.iter().map(|s| s.body.as_str()).collect();
    assert_eq!(bodies.len(), 3);
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.ends_with(&format!("client_assertion=hdr.claims{}.sig", i + 1)));
    }
}

#[tokio::test]
async fn a_server_error_that_names_an_oauth_error_is_not_retried() {
    // NetSuite answers some malformed assertions with 500 invalid_grant: signing again
    // would not change the answer.
    let fail = refused("500 Internal Server Error", "invalid_grant");
    let (result, signed, seen) = run(vec![fail, good()]).await;
    let text = result.unwrap_err().to_string();
    assert_eq!((signed, seen.len()), (1, 1));
    assert!(text.contains("invalid_grant"), "{text}");
}

#[tokio::test]
async fn retries_stop_after_three_attempts() {
    let fail = response("503 Service Unavailable", &[], "");
    let (result, signed, seen) = run(vec![fail; 5]).await;
    let err = result.unwrap_err();
    assert_eq!((signed, seen.len()), (3, 3));
    let text = err.to_string();
    assert!(
        text.contains("503") && text.contains("after 3 attempts"),
        "{text}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let busy = response("429 Too Many Requests", &[("Retry-After", "1")], "");
    let (result, signed, _) = run(vec![busy, good()]).await;
    assert!(result.is_ok());
    assert_eq!(signed, 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_ends_the_retries() {
    let busy = response("429 Too Many Requests", &[("Retry-After", "3600")], "");
    let (result, signed, _) = run(vec![busy, good()]).await;
    let text = result.unwrap_err().to_string();
    assert_eq!(signed, 1);
    assert!(text.contains("wait 3600 s"), "{text}");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let big = "x".repeat(MAX_BODY + 1);
    let announced = ok(&big);
    // No Content-Length: the body ends when the connection closes, read incrementally.
    let unannounced = format!(
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}",
        "y".repeat(MAX_BODY * 4)
    );
    for answer in [announced, unannounced] {
        let err = run(vec![answer]).await.0.unwrap_err();
        assert!(matches!(err, ExchangeError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("64 KiB"), "{err}");
    }
}

#[tokio::test]
async fn a_truncated_body_is_malformed() {
    let cut = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"access_token\":\"eyJ";
    let err = run(vec![cut.to_owned()]).await.0.unwrap_err();
    assert!(matches!(err, ExchangeError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("cut short"), "{err}");
}

#[tokio::test]
async fn non_json_success_is_malformed() {
    let err = run(vec![ok("<html>portal</html>")]).await.0.unwrap_err();
    assert!(matches!(err, ExchangeError::Malformed { .. }), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: TokenUrl = format!("http://{}/token", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let mut signed = 0;
    let err = client()
        .fetch(&ctx(url), || {
            signed += 1;
            std::future::ready(Ok(ClientAssertion {
                jws: "a.b.c".into(),
                jti: "j".into(),
                expires_at: 0,
            }))
        })
        .await
        .unwrap_err();
    assert_eq!(signed, 3);
    assert!(
        matches!(err, ExchangeError::Connect { attempts: 3, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn clock_skew_is_reported() {
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(300));
    let answer = response(
        "400 Bad Request",
        &[("Date", &past)],
        r#"{"error":"invalid_grant"}"#,
    );
    let text = run(vec![answer]).await.0.unwrap_err().to_string();
    assert!(
        text.contains("clock differs from this machine's by 30"),
        "{text}"
    );
    assert!(text.contains("NTP"), "{text}");
    let now = httpdate::fmt_http_date(SystemTime::now());
    let answer = response(
        "400 Bad Request",
        &[("Date", &now)],
        r#"{"error":"invalid_grant"}"#,
    );
    let text = run(vec![answer]).await.0.unwrap_err().to_string();
    assert!(!text.contains("clock differs"), "{text}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let answer = response(
        "302 Found",
        &[("Location", "https://evil.example/steal?x=1")],
        "",
    );
    let (result, signed, seen) = run(vec![answer, good()]).await;
    let err = result.unwrap_err();
    assert_eq!((signed, seen.len()), (1, 1));
    let text = err.to_string();
    assert!(
        text.contains("evil.example") && !text.contains("steal"),
        "{text}"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("token unplugged")]
struct Unplugged;

impl HasKind for Unplugged {
    fn kind(&self) -> Kind {
        Kind::Token
    }
}

#[tokio::test]
async fn assertion_failure_stops_before_any_request() {
    let (url, seen) = serve(vec![good()]).await;
    let err = client()
        .fetch(&ctx(url), || {
            std::future::ready(Err(SigningError::new(Unplugged)))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::Assertion(_)));
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn backoff_grows_and_is_capped() {
    let options = ClientOptions::default();
    let first = backoff(&options, 1);
    assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
    let late = backoff(&options, 30);
    assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10));
}

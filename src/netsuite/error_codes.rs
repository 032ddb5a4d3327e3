//! NetSuite's error codes at its token endpoint, explained: the likely causes of each refusal
//! and the checks that tell them apart (netsuite-m2m.md's table), which codes no retry can
//! change, and where NetSuite itself says why.

use http::StatusCode;

/// Where users find NetSuite's precise reason for a refusal.
pub(crate) const AUDIT_TRAIL: &str = "see Setup > Users/Roles > View Login Audit Trail (add the 'Detail' column) for NetSuite's precise reason";

/// Likely causes of a refusal and the checks that tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Explanation {
    /// What usually produces this answer.
    pub causes: &'static str,
    /// How to find out which cause it is.
    pub checks: &'static str,
}

/// The explanation of NetSuite's error `code` (netsuite-m2m.md's table), or of the bare HTTP
/// status when the body carried no code.
pub(crate) fn explain(code: Option<&str>, status: StatusCode) -> Explanation {
    let (causes, checks) = match code {
        Some("invalid_request") => (
            "the request was not the three-field form NetSuite expects: a field missing or repeated, a wrong Content-Type, or a second client authentication method",
            "suitekey sends exactly grant_type, client_assertion_type and client_assertion; look for a proxy (HTTPS_PROXY) that rewrites requests or adds an Authorization header",
        ),
        Some("invalid_client") => (
            "the client id is unknown in this account, or its integration record is disabled or blocked",
            "in Setup > Integration > Manage Integrations of this account, find the record with this client id (consumer key) and check its State is Enabled; a client id from another account (production vs sandbox) is unknown here; the audit trail says IntegrationBlocked for a blocked record",
        ),
        Some("invalid_grant") => (
            "NetSuite rejected the assertion: an unknown or revoked certificate id (kid), a signature that does not verify against the uploaded certificate, a wrong aud, an assertion expired or from the future (clock skew), RS256, or exp more than 3600 s after iat",
            "compare the certificate id with Setup > Integration > Manage Authentication > OAuth 2.0 Client Credentials (M2M) Setup of this account (mappings are per account, and a sandbox refresh erases them); 'suitekey check --cert FILE --key URI' tells whether key and certificate match; the audit trail says MissingKey, SignatureValidation, TokenExpired, TokenNotAcceptable or UnsupportedAlgo",
        ),
        Some("unauthorized_client") => (
            "the integration record does not allow the client credentials (machine to machine) grant",
            "edit the integration record: under OAuth 2.0, 'Client Credentials (Machine to Machine) Grant' must be checked",
        ),
        Some("invalid_scope") => (
            "a requested scope is not enabled on the integration record, or no scope was sent",
            "compare the scopes below with those checked on the integration record and request only those (--scope); the audit trail says ScopeMismatched",
        ),
        Some("server_error") => (
            "a failure inside NetSuite; also seen for an assertion without a kid or one NetSuite cannot parse",
            "if it persists, the audit trail tells a NetSuite failure from an assertion problem (MissingKeyId); check NetSuite's status page",
        ),
        Some(_) => (
            "an error code suitekey does not know",
            "the audit trail entry for this request names the reason",
        ),
        None if status == StatusCode::TOO_MANY_REQUESTS => (
            "too many requests: NetSuite limits concurrent and frequent requests per account",
            "cache tokens (they live 60 minutes) instead of requesting one per call; try again later",
        ),
        None if status.is_server_error() => (
            "NetSuite, or a proxy or load balancer in front of it, failed",
            "try again later; if a proxy is configured (HTTPS_PROXY), try without it",
        ),
        None => (
            "the answer did not come from NetSuite's token endpoint, or the request never reached it",
            "check the token URL (--token-url, or the account id it is derived from) and any proxy (HTTPS_PROXY)",
        ),
    };
    Explanation { causes, checks }
}

/// NetSuite's error codes that say the client, its certificate or its scopes are refused:
/// the same request will be refused again until someone changes the setup.
pub(crate) const PERMANENT_CODES: [&str; 4] = [
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
];

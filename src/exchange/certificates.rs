//! The client of NetSuite's certificate management API: the integration's certificates
//! listed, one uploaded, one revoked, each call authorized by an access token of the
//! integration itself (`Authorization: Bearer`).
//!
//! The same HTTP rules as the token exchange: the trust of `--ca-file` or the system's roots,
//! the profile's timeout, no redirects followed, answers capped at [`MAX_BODY`] bytes. Nothing
//! is retried here: an upload must never be repeated blindly (the rotation looks at the list
//! first), and each step of a rotation is resumed as a whole.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::api_error::{ApiCall, ApiError};
use super::client::{ClientBuildError, Transport, http_client, redirect_host};
use super::options::ClientOptions;
use super::response::{BodyError, MAX_BODY, read_capped};
use super::token::AccessToken;
use crate::netsuite::{
    ApiErrorBody, CertificateId, CertificatesUrl, ClientId, ListedCertificate, Upload,
    certificates_path, parse_list, parse_upload_answer, revoke_path,
};

/// Calls the certificate management API of one integration record.
#[derive(Clone, Debug)]
pub struct CertificatesClient {
    http: reqwest::Client,
    base: CertificatesUrl,
    client_id: ClientId,
    options: ClientOptions,
}

impl CertificatesClient {
    /// A client for the integration `client_id`'s certificates at `base`, with the timeouts
    /// and trust of `options` (its retry settings are not used). A loopback `base` is never
    /// reached through a proxy; an https one through the environment's, if any.
    pub fn new(
        base: CertificatesUrl,
        client_id: ClientId,
        mut options: ClientOptions,
    ) -> Result<CertificatesClient, ClientBuildError> {
        options.use_proxy = !base.is_loopback();
        Ok(CertificatesClient {
            http: http_client(&options)?,
            base,
            client_id,
            options,
        })
    }

    /// Where the API is.
    pub fn base(&self) -> &CertificatesUrl {
        &self.base
    }

    /// The integration's certificates, revoked and expired ones included.
    pub async fn list(&self, token: &AccessToken) -> Result<Vec<ListedCertificate>, ApiError> {
        let url = self.base.join(&certificates_path(&self.client_id));
        let request = self.http.get(url.clone());
        let (status, body) = self.call(ApiCall::List, &url, request, token).await?;
        parse_list(&body).map_err(|reason| ApiError::Malformed {
            call: ApiCall::List,
            url: url.to_string(),
            status,
            reason,
        })
    }

    /// Uploads a certificate, mapping it to a role and entity; the id NetSuite answers with,
    /// when its answer names one (the list is the authority on what was uploaded).
    pub async fn upload(
        &self,
        token: &AccessToken,
        upload: &Upload<'_>,
    ) -> Result<Option<CertificateId>, ApiError> {
        let url = self.base.join(&certificates_path(&self.client_id));
        let body = serde_json::to_vec(upload).map_err(|e| ApiError::Malformed {
            call: ApiCall::Upload,
            url: url.to_string(),
            status: StatusCode::OK,
            reason: format!("the upload could not be encoded: {e}"),
        })?;
        let request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let (_, answer) = self.call(ApiCall::Upload, &url, request, token).await?;
        Ok(parse_upload_answer(&answer))
    }

    /// Revokes the certificate `id` (NetSuite answers `Successfully revoked` as text).
    pub async fn revoke(&self, token: &AccessToken, id: &CertificateId) -> Result<(), ApiError> {
        let url = self.base.join(&revoke_path(&self.client_id, id));
        let request = self.http.post(url.clone());
        self.call(ApiCall::Revoke, &url, request, token).await?;
        Ok(())
    }

    /// Sends `request` with the bearer token, and returns a success's status and body, or why
    /// there is none.
    async fn call(
        &self,
        call: ApiCall,
        url: &url::Url,
        request: reqwest::RequestBuilder,
        token: &AccessToken,
    ) -> Result<(StatusCode, Vec<u8>), ApiError> {
        let shown = url.to_string();
        tracing::debug!(url = %shown, "{call}");
        let mut response = request
            .header(ACCEPT, "application/json, text/plain")
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| self.transport_error(call, &shown, e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(ApiError::Redirect {
                call,
                url: shown,
                status,
                location: redirect_host(url, response.headers()),
            });
        }
        let body = read_capped(&mut response).await.map_err(|e| match e {
            BodyError::Read(e) => self.transport_error(call, &shown, e),
            BodyError::TooLarge => ApiError::Malformed {
                call,
                url: shown.clone(),
                status,
                reason: format!("the answer is larger than {} KiB", MAX_BODY / 1024),
            },
        })?;
        if !status.is_success() {
            return Err(ApiError::Refused {
                call,
                url: shown,
                status,
                body: ApiErrorBody::parse(&body),
            });
        }
        Ok((status, body.to_vec()))
    }

    fn transport_error(&self, call: ApiCall, url: &str, source: reqwest::Error) -> ApiError {
        let url = url.to_owned();
        match Transport::of(&source) {
            Transport::Tls(reason) => ApiError::Tls { call, url, reason },
            Transport::Connect => ApiError::Connect { call, url, source },
            Transport::Timeout => ApiError::Timeout {
                call,
                url,
                limit: self.options.total_timeout,
            },
            Transport::Other => ApiError::Http { call, url, source },
        }
    }
}

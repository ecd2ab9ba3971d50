//! The administration half of the REST API, for the desktop app: users and
//! roles, staff assignments, devices, the audit log, step-up. Users, devices
//! and the audit log are server-authoritative (not documents), so these are
//! plain requests with the session's access token; they need the server.

use serde_json::json;

use api_types::{
    AuditVerification, CreateUserRequest, Device, EventsRequest, Role, StepUpRequest,
    UpdateUserRequest, User,
};

use crate::account::{json_body, parse};
use crate::{Account, AccountError};

pub use api_types::{AuditFilter, AuditPage};

/// `?a=1&b=x` from the set pairs, escaped.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencoding(v))))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Percent-encoding of a query value (RFC 3986 unreserved characters kept).
fn urlencoding(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Account {
    pub async fn users(&self) -> Result<Vec<User>, AccountError> {
        parse(
            self.request(reqwest::Method::GET, "/api/users", None)
                .await?,
        )
    }

    /// A new account (`admin`, `staff` or `member`); a new admin needs a fresh step-up.
    pub async fn create_user(
        &self,
        email: &str,
        role: Role,
        password: &str,
    ) -> Result<User, AccountError> {
        let request = CreateUserRequest {
            email: email.to_owned(),
            role,
            password: password.to_owned(),
        };
        parse(
            self.request(
                reqwest::Method::POST,
                "/api/users",
                Some(json_body(&request)?),
            )
            .await?,
        )
    }

    /// Changes a role (needs a fresh step-up) and/or disables or enables the user.
    pub async fn update_user(
        &self,
        id: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<(), AccountError> {
        self.request(
            reqwest::Method::PATCH,
            &format!("/api/users/{}", urlencoding(id)),
            Some(json_body(&UpdateUserRequest { role, disabled })?),
        )
        .await?;
        Ok(())
    }

    /// The events a staff member works on (replaces the previous list).
    pub async fn set_user_events(&self, id: &str, events: &[String]) -> Result<(), AccountError> {
        self.request(
            reqwest::Method::PUT,
            &format!("/api/users/{}/events", urlencoding(id)),
            Some(json_body(&EventsRequest {
                events: events.to_vec(),
            })?),
        )
        .await?;
        Ok(())
    }

    pub async fn devices(&self) -> Result<Vec<Device>, AccountError> {
        parse(
            self.request(reqwest::Method::GET, "/api/devices", None)
                .await?,
        )
    }

    /// Ends the device's sessions and tells it to wipe its data.
    pub async fn revoke_device(&self, id: &str) -> Result<(), AccountError> {
        self.request(
            reqwest::Method::POST,
            &format!("/api/devices/{}/revoke", urlencoding(id)),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    pub async fn audit(&self, filter: &AuditFilter) -> Result<AuditPage, AccountError> {
        let path = format!(
            "/api/audit{}",
            query(&[
                ("after", Some(filter.after.to_string())),
                ("limit", filter.limit.map(|l| l.to_string())),
                ("action", filter.action.clone().filter(|s| !s.is_empty())),
                ("actor", filter.actor.clone().filter(|s| !s.is_empty())),
                ("result", filter.result.clone().filter(|s| !s.is_empty())),
                ("since", filter.since.clone().filter(|s| !s.is_empty())),
            ])
        );
        parse(self.request(reqwest::Method::GET, &path, None).await?)
    }

    /// The server's health: version, uptime, store, documents, connections,
    /// devices online, backups, the day's security alerts (administrators).
    pub async fn server_status(&self) -> Result<api_types::ServerStatus, AccountError> {
        parse(
            self.request(reqwest::Method::GET, "/api/status", None)
                .await?,
        )
    }

    /// Checks the audit log's hash chain on the server.
    pub async fn verify_audit(&self) -> Result<AuditVerification, AccountError> {
        parse(
            self.request(reqwest::Method::GET, "/api/audit/verify", None)
                .await?,
        )
    }

    /// The audit log as JSON lines (needs a fresh step-up).
    pub async fn export_audit(&self, since: Option<&str>) -> Result<String, AccountError> {
        let path = format!(
            "/api/audit/export{}",
            query(&[("since", since.map(str::to_owned))])
        );
        self.request_text(reqwest::Method::GET, &path).await
    }

    /// Confirms it is still the signed-in person (a TOTP code): unlocks
    /// role changes, new admins and audit exports for a few minutes.
    pub async fn step_up(&self, code: &str) -> Result<(), AccountError> {
        self.request(
            reqwest::Method::POST,
            "/api/auth/step-up",
            Some(json_body(&StepUpRequest {
                code: code.to_owned(),
            })?),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[
                ("since", Some("2026-11-21T00:00:00+01:00".into())),
                ("x", None),
                ("action", Some("auth.sign_in".into()))
            ]),
            "?since=2026-11-21T00%3A00%3A00%2B01%3A00&action=auth.sign_in"
        );
    }
}

//! The OAuth 2.0 scopes NetSuite knows, and the list a request asks for.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::Error;

/// A NetSuite OAuth 2.0 scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// RESTlets.
    Restlets,
    /// REST web services (record and query APIs).
    RestWebservices,
    /// SuiteAnalytics Connect.
    SuiteAnalytics,
}

impl Scope {
    const ALL: [Scope; 3] = [
        Scope::Restlets,
        Scope::RestWebservices,
        Scope::SuiteAnalytics,
    ];

    /// The scope as NetSuite spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Restlets => "restlets",
            Scope::RestWebservices => "rest_webservices",
            Scope::SuiteAnalytics => "suite_analytics",
        }
    }
}

/// A non-empty, duplicate-free list of scopes, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scopes(Vec<Scope>);

impl FromStr for Scopes {
    type Err = Error;

    /// Parses `restlets,rest_webservices` (commas or `+`, spaces ignored).
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut scopes = Vec::new();
        for name in s.split([',', '+']).map(str::trim).filter(|n| !n.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|sc| sc.as_str() == name)
                .ok_or_else(|| Error::Scope(name.to_owned()))?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            Err(Error::NoScope)
        } else {
            Ok(Scopes(scopes))
        }
    }
}

impl Scope {
    /// The scope NetSuite spells `name`, if any (exact, case-sensitive, as NetSuite compares).
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl Scopes {
    /// All three scopes NetSuite knows.
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.to_vec())
    }

    /// The scopes, in the order given.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// These scopes and `scope`, added at the end when it is not among them.
    pub fn with(mut self, scope: Scope) -> Scopes {
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
        self
    }
}

impl Default for Scopes {
    /// `restlets,rest_webservices`, the two scopes NetSuite's M2M examples enable.
    fn default() -> Self {
        Scopes(vec![Scope::Restlets, Scope::RestWebservices])
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

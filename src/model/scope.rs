//! The scopes of API keys (what a key may be used for beyond its owner's role) and their set.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Role;

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    JobsRead,
    JobsWrite,
    JobsClaim,
    EventsRead,
    EventsWrite,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::JobsRead,
        Scope::JobsWrite,
        Scope::JobsClaim,
        Scope::EventsRead,
        Scope::EventsWrite,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::JobsClaim => "jobs:claim",
            Scope::EventsRead => "events:read",
            Scope::EventsWrite => "events:write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// The lowest role whose keys the scope is worth anything on (and who may grant it).
    pub fn min_role(self) -> Role {
        match self {
            Scope::Admin => Role::Admin,
            _ => Role::User,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The allowed names, for messages.
    pub fn names() -> String {
        Scope::ALL.map(Scope::as_str).join(", ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The scope names, in canonical order.
const SCOPE_NAMES: [&str; 6] = [
    "jobs:read",
    "jobs:write",
    "jobs:claim",
    "events:read",
    "events:write",
    "admin",
];

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Scope::parse(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, &SCOPE_NAMES))
    }
}

/// In the API document: a string, one of the scope names.
impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(SCOPE_NAMES))
            .description(Some("What an API key may be used for"))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

/// A set of scopes (a small bit set, so principals stay `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const fn empty() -> Scopes {
        Scopes(0)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// The stored form: canonical order, comma-separated.
    pub fn to_db(self) -> String {
        self.names().join(",")
    }

    /// The stored form back. Names this version does not know grant nothing.
    pub fn from_db(s: &str) -> Scopes {
        s.split(',')
            .filter_map(|name| Scope::parse(name.trim()))
            .collect()
    }

    /// A comma-separated list (CLI, configuration): every entry must be a known scope and at
    /// least one must be given. The error names the offending entry's position (1-based).
    pub fn parse_csv(s: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::empty();
        for (i, name) in s.split(',').map(str::trim).enumerate() {
            if name.is_empty() {
                continue;
            }
            match Scope::parse(name) {
                Some(scope) => scopes.insert(scope),
                None => {
                    return Err(format!(
                        "scope {} is not a known scope (allowed: {})",
                        i + 1,
                        Scope::names()
                    ));
                }
            }
        }
        if scopes.is_empty() {
            return Err(format!(
                "at least one scope is required ({})",
                Scope::names()
            ));
        }
        Ok(scopes)
    }

    /// The first scope a user of `role` may not grant.
    pub fn beyond(self, role: Role) -> Option<Scope> {
        self.iter().find(|s| role < s.min_role())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Scopes::empty();
        for s in iter {
            scopes.insert(s);
        }
        scopes
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_db())
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn the_documented_names_are_the_scopes() {
        assert_eq!(Scope::ALL.map(Scope::as_str), SCOPE_NAMES);
    }
}

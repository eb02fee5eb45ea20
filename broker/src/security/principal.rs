//! Principals: who a call comes from, in Kafka's `Type:name` form.
//!
//! `User:NAME` comes from a password or a client certificate's CN, `Broker:ID` from a broker's
//! certificate (CN `Broker:ID`), and `User:ANONYMOUS` is every caller when authentication is
//! off. User names may not contain ':' so no user can pose as a broker.

/// Longest user name.
pub const MAX_USER_NAME_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Anonymous,
    User(String),
    Broker(i32),
}

/// How the principal was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticatedBy {
    None,
    Password,
    Mtls,
    BrokerCertificate,
}

impl AuthenticatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthenticatedBy::None => "none",
            AuthenticatedBy::Password => "password",
            AuthenticatedBy::Mtls => "mtls",
            AuthenticatedBy::BrokerCertificate => "broker-certificate",
        }
    }
}

/// What the authentication layer puts in each request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub by: AuthenticatedBy,
    pub tls: bool,
}

impl Principal {
    /// The principal a verified certificate's CN names: `Broker:ID` is a broker, anything
    /// else a user.
    pub fn from_common_name(cn: &str) -> Option<Principal> {
        if let Some(id) = cn.strip_prefix("Broker:") {
            return id.parse().ok().map(Principal::Broker);
        }
        validate_user_name(cn).ok()?;
        Some(Principal::User(cn.to_string()))
    }

    /// Parses `User:NAME` (as `--super-user` and `--principal` take it); returns the name.
    pub fn parse_user(s: &str) -> Result<String, String> {
        let Some(name) = s.strip_prefix("User:") else {
            return Err(format!("principal {s:?} is not valid; write it User:NAME"));
        };
        validate_user_name(name)?;
        Ok(name.to_string())
    }

    pub fn is_broker(&self) -> bool {
        matches!(self, Principal::Broker(_))
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("User:ANONYMOUS"),
            Principal::User(name) => write!(f, "User:{name}"),
            Principal::Broker(id) => write!(f, "Broker:{id}"),
        }
    }
}

/// User names: 1 to 128 characters of letters, digits and `._-@`, no ':'.
pub fn validate_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(format!(
            "user name {name:?} is not valid: it must have 1 to {MAX_USER_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
    {
        return Err(format!(
            "user name {name:?} is not valid: {c:?} is not allowed (use letters, digits and . _ - @)"
        ));
    }
    if name == "ANONYMOUS" {
        return Err("user name \"ANONYMOUS\" is reserved for unauthenticated callers".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_name_brokers_and_users_and_users_cannot_pose_as_brokers() {
        assert_eq!(
            Principal::from_common_name("Broker:3"),
            Some(Principal::Broker(3))
        );
        assert_eq!(
            Principal::from_common_name("alice"),
            Some(Principal::User("alice".into()))
        );
        assert_eq!(Principal::from_common_name("Broker:x"), None);
        assert_eq!(Principal::from_common_name("evil:Broker:1"), None);
        assert!(validate_user_name("Broker:1").is_err());
        assert!(validate_user_name("ANONYMOUS").is_err());
        assert!(validate_user_name("").is_err());
        assert_eq!(Principal::parse_user("User:bob").unwrap(), "bob");
        assert!(Principal::parse_user("bob")
            .unwrap_err()
            .contains("User:NAME"));
        assert_eq!(Principal::Broker(2).to_string(), "Broker:2");
        assert_eq!(Principal::Anonymous.to_string(), "User:ANONYMOUS");
    }
}

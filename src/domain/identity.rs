//! Identity rules without I/O: app slugs, external user ids, operator roles, and API keys —
//! their format, how they are generated, hashed, recognised and shown in logs.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// An app's (tenant's) slug: 2-63 characters of `a-z 0-9 -`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct AppSlug(String);

impl AppSlug {
    pub fn parse(s: &str) -> Result<AppSlug, String> {
        let ok = (2..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.ends_with('-');
        if ok {
            Ok(AppSlug(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not an app slug: 2-63 characters of a-z, 0-9 and '-', starting with a letter"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The app's own id for a user (an auth provider subject, a RevenueCat app_user_id, …):
/// 1-255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(s: &str) -> Result<ExternalId, String> {
        if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) || s.trim() != s {
            return Err(
                "a user's external id is 1-255 characters, without control characters or surrounding spaces"
                    .into(),
            );
        }
        Ok(ExternalId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an operator may do; each role includes the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read, and look up and help users.
    Support,
    /// Change apps, keys, users and jobs.
    Admin,
    /// Everything, including operators.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Support => "support",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "support" => Ok(Role::Support),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(format!(
                "unknown role {s:?}; expected owner, admin, support or viewer"
            )),
        }
    }
}

/// The three kinds of key, told apart by their visible prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A user key / license token: what a desktop or CLI client holds (`tg_user_…`).
    User,
    /// An app secret key: what the app's own server holds (`tg_app_…`).
    App,
    /// An operator token: a human running tollgate (`tg_op_…`).
    Operator,
}

impl KeyKind {
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::User => "tg_user_",
            KeyKind::App => "tg_app_",
            KeyKind::Operator => "tg_op_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::User => "user",
            KeyKind::App => "app",
            KeyKind::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<KeyKind> {
        [KeyKind::User, KeyKind::App, KeyKind::Operator]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Random characters after the tag that identify the key (stored in clear as its prefix).
const LOOKUP_LEN: usize = 8;
/// Random characters after those: the secret part (~190 bits).
const SECRET_LEN: usize = 32;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key as presented by a client, recognised but not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub kind: KeyKind,
    /// Tag + lookup characters: what finds the stored key.
    pub prefix: &'a str,
    pub secret: &'a str,
}

impl<'a> PresentedKey<'a> {
    /// Recognises `tg_<kind>_<8 lookup><32 secret>` (base62); anything else is malformed.
    pub fn parse(s: &'a str) -> Option<PresentedKey<'a>> {
        let kind = [KeyKind::User, KeyKind::App, KeyKind::Operator]
            .into_iter()
            .find(|k| s.starts_with(k.tag()))?;
        let rest = &s[kind.tag().len()..];
        if rest.len() != LOOKUP_LEN + SECRET_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        Some(PresentedKey {
            kind,
            prefix: &s[..kind.tag().len() + LOOKUP_LEN],
            secret: s,
        })
    }
}

/// A freshly generated key: the secret (shown once) and what is stored.
#[derive(Clone)]
pub struct NewKey {
    pub secret: String,
    pub prefix: String,
    pub last4: String,
    pub hash: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewKey({})", mask(&self.prefix, &self.last4))
    }
}

impl NewKey {
    /// Generates a key from the operating system's CSPRNG.
    pub fn generate(kind: KeyKind) -> NewKey {
        let random = random_base62(LOOKUP_LEN + SECRET_LEN);
        let secret = format!("{}{random}", kind.tag());
        NewKey {
            prefix: secret[..kind.tag().len() + LOOKUP_LEN].to_string(),
            last4: secret[secret.len() - 4..].to_string(),
            hash: hash_secret(&secret),
            secret,
        }
    }
}

/// SHA-256 of the whole key, hex. Keys carry ~190 random bits, so a fast hash is enough: no
/// dictionary to slow down.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// How a key appears in logs and listings: its prefix and last four characters.
pub fn mask(prefix: &str, last4: &str) -> String {
    format!("{prefix}…{last4}")
}

pub fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).expect("the operating system's random source works");
        // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() == n {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_lowercase_names() {
        for ok in ["ab", "my-app", "app2", &"a".repeat(63)] {
            assert!(AppSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "My-App",
            "2app",
            "app-",
            "a b",
            "app_1",
            &"a".repeat(64),
        ] {
            assert!(AppSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_ids_refuse_control_characters_and_padding() {
        assert!(ExternalId::parse("user_2NfX0abc|auth0").is_ok());
        for bad in ["", " x", "x ", "a\nb", &"x".repeat(256)] {
            assert!(ExternalId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_are_ordered_owner_admin_support_viewer() {
        assert!(
            Role::Owner > Role::Admin
                && Role::Admin > Role::Support
                && Role::Support > Role::Viewer
        );
        assert_eq!("support".parse::<Role>(), Ok(Role::Support));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn generated_keys_parse_back_and_hash_to_what_is_stored() {
        for kind in [KeyKind::User, KeyKind::App, KeyKind::Operator] {
            let key = NewKey::generate(kind);
            assert!(key.secret.starts_with(kind.tag()));
            assert_eq!(key.secret.len(), kind.tag().len() + 40);
            let presented = PresentedKey::parse(&key.secret).expect("a generated key parses");
            assert_eq!(presented.kind, kind);
            assert_eq!(presented.prefix, key.prefix);
            assert_eq!(hash_secret(presented.secret), key.hash);
            assert!(
                !format!("{key:?}").contains(&key.secret[key.prefix.len()..key.secret.len() - 4])
            );
        }
        assert_ne!(
            NewKey::generate(KeyKind::User).secret,
            NewKey::generate(KeyKind::User).secret
        );
    }

    #[test]
    fn malformed_keys_are_not_recognised() {
        let good = NewKey::generate(KeyKind::App).secret;
        for bad in [
            "",
            "tg_app_",
            "sk_live_abc",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replace(&good[10..11], "-"),
            &good.replacen("tg_app_", "tg_nope_", 1),
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn masks_show_prefix_and_last_four_only() {
        let key = NewKey::generate(KeyKind::User);
        let masked = mask(&key.prefix, &key.last4);
        assert_eq!(masked.chars().count(), key.prefix.len() + 1 + 4);
        assert!(masked.starts_with("tg_user_") && masked.ends_with(&key.last4));
    }
}

/// An app's settings, stored as JSON with the app (declared in the config file or set by an
/// operator).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Client compatibility rules by platform.
    #[serde(default)]
    pub compat: crate::domain::compat::CompatRules,
    /// Access tokens from the app's own identity provider.
    pub jwt: Option<JwtSettings>,
    /// Invite codes.
    #[serde(default)]
    pub invites: InviteSettings,
    /// Plans, the default plan and the USD → credit conversion.
    #[serde(default)]
    pub billing: std::sync::Arc<crate::domain::plans::BillingSettings>,
}

/// Whether new users need an invite code.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteSettings {
    /// When true, a user must redeem a code before paid or metered routes work.
    #[serde(default)]
    pub required: bool,
}

/// Where an app's JWT access tokens come from and for whom they are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Exact `iss` claim, e.g. `https://clerk.example.com`.
    pub issuer: String,
    /// Accepted `aud` value. Set it whenever the provider puts an audience in its tokens
    /// (Auth0 always does; WorkOS and Clerk when configured); unset, `aud` is not checked.
    pub audience: Option<String>,
    /// The issuer's JSON Web Key Set.
    pub jwks_url: String,
    /// Clock tolerance for `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_leeway() -> u64 {
    30
}

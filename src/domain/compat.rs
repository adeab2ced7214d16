//! Client compatibility: per app and platform, a minimum and a latest version. Versions are
//! dot-separated numbers (`1.2.3`, up to four parts, missing parts are 0) with an optional
//! pre-release suffix (`1.3.0-beta.2`), which sorts before the release.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A parsed client version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    parts: [u64; 4],
    pre: Option<String>,
    text: String,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, String> {
        let bad = || format!("{s:?} is not a version such as 1.2.3");
        let s = s.trim().trim_start_matches('v');
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, Some(p.to_string())),
            Some(_) => return Err(bad()),
            None => (s, None),
        };
        let nums: Vec<&str> = core.split('.').collect();
        if nums.is_empty() || nums.len() > 4 {
            return Err(bad());
        }
        let mut parts = [0u64; 4];
        for (i, n) in nums.iter().enumerate() {
            if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            parts[i] = n.parse().map_err(|_| bad())?;
        }
        Ok(Version {
            parts,
            pre,
            text: s.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts
            .cmp(&other.parts)
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One platform's rule, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatRule {
    pub min_version: Option<String>,
    pub latest_version: Option<String>,
    pub update_url: Option<String>,
}

/// Rules by platform (`desktop`, `ios`, `cli`, …).
pub type CompatRules = BTreeMap<String, CompatRule>;

/// Where a client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompatStatus {
    Ok,
    UpdateAvailable,
    UpdateRequired,
}

impl CompatRule {
    /// The status of `version` under this rule. Unparsable configured versions never block.
    pub fn status(&self, version: &Version) -> CompatStatus {
        let below = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| Version::parse(v).ok())
                .is_some_and(|v| *version < v)
        };
        if below(&self.min_version) {
            CompatStatus::UpdateRequired
        } else if below(&self.latest_version) {
            CompatStatus::UpdateAvailable
        } else {
            CompatStatus::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_compare_numerically_and_pre_releases_come_first() {
        assert!(v("1.10.0") > v("1.9.9"));
        assert_eq!(v("1.2").cmp(&v("1.2.0")), Ordering::Equal);
        assert!(v("1.3.0-beta.1") < v("1.3.0"));
        assert!(v("1.3.0-beta.1") > v("1.2.9"));
        assert_eq!(v("v2.0.0").as_str(), "2.0.0");
        for bad in ["", "1..2", "a.b", "1.2.3.4.5", "1.2-", "-1", "1.2.3 beta"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn below_min_is_required_between_min_and_latest_is_available() {
        let rule = CompatRule {
            min_version: Some("1.2.0".into()),
            latest_version: Some("1.5.0".into()),
            update_url: None,
        };
        assert_eq!(rule.status(&v("1.1.9")), CompatStatus::UpdateRequired);
        assert_eq!(rule.status(&v("1.2.0")), CompatStatus::UpdateAvailable);
        assert_eq!(rule.status(&v("1.4.99")), CompatStatus::UpdateAvailable);
        assert_eq!(rule.status(&v("1.5.0")), CompatStatus::Ok);
        assert_eq!(rule.status(&v("2.0.0")), CompatStatus::Ok);
    }
}

//! Naming a key: its id (a UUID, or a unique prefix of one, as snapshots are
//! named), or `alias/NAME`. An ambiguous prefix lists what it matches; an
//! unknown alias suggests the nearest one.

use uuid::Uuid;

use super::Keyring;
use crate::{Error, Result};

/// Edit distance (insertions, deletions, substitutions) of two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

impl Keyring {
    /// The alias nearest to `name`, if one is near enough to be a typo (or
    /// `name` is an alias written without `alias/`).
    fn near_alias(&self, name: &str) -> Option<&str> {
        let want = if name.starts_with("alias/") {
            name.to_string()
        } else {
            format!("alias/{name}")
        };
        let limit = (want.len() - "alias/".len()).div_ceil(3).clamp(1, 3);
        self.data
            .aliases
            .keys()
            .map(|a| (distance(&want, a), a.as_str()))
            .filter(|(d, _)| *d <= limit)
            .min()
            .map(|(_, a)| a)
    }

    fn suggestion(&self, name: &str) -> String {
        self.near_alias(name)
            .map(|a| format!(" (did you mean {a}?)"))
            .unwrap_or_default()
    }

    /// Resolves a key id (UUID), a unique prefix of one, or `alias/NAME` to
    /// the key id.
    pub fn resolve(&self, key: &str) -> Result<Uuid> {
        if key.starts_with("alias/") {
            return self
                .data
                .aliases
                .get(key)
                .copied()
                .ok_or_else(|| Error::Key {
                    message: format!(
                    "unknown alias {key} in the keyring {}{}; see the aliases with `envarc key \
                     list-aliases`",
                    self.label,
                    self.suggestion(key)
                ),
                });
        }
        if let Ok(id) = Uuid::try_parse(key) {
            if self.data.find(&id).is_none() {
                return Err(Error::Key {
                    message: format!(
                        "unknown key {key} in the keyring {} (deleted, or in another keyring); \
                         see the keys with `envarc key list`",
                        self.label
                    ),
                });
            }
            return Ok(id);
        }
        self.resolve_prefix(key)
    }

    fn resolve_prefix(&self, key: &str) -> Result<Uuid> {
        let digits: String = key
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Key {
                message: format!(
                    "no key '{key}'{}: name a key by its id (a UUID, or a unique prefix of one) \
                     or an alias (alias/NAME); see them with `envarc key list`",
                    self.suggestion(key)
                ),
            });
        }
        let matches: Vec<Uuid> = self
            .data
            .keys
            .iter()
            .map(|k| k.key_id)
            .filter(|id| id.simple().to_string().starts_with(&digits))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::Key {
                message: format!(
                    "no key id starts with '{key}' in the keyring {}{}; see the keys with \
                     `envarc key list`",
                    self.label,
                    self.suggestion(key)
                ),
            }),
            many => Err(Error::Usage(format!(
                "'{key}' is the start of {} key ids: {}; give more of the id",
                many.len(),
                many.iter()
                    .map(|id| self.data.label(id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("alias/backup", "alias/backup"), 0);
        assert_eq!(distance("alias/bakup", "alias/backup"), 1);
        assert_eq!(distance("alias/backpu", "alias/backup"), 2);
        assert_eq!(distance("", "abc"), 3);
    }
}

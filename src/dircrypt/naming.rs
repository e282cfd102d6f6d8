//! Output names, after the AWS Encryption CLI: encrypting appends a suffix
//! (`.encrypted` by default); decrypting removes it. Where the AWS CLI
//! appends `.decrypted` to every decrypted name (`a.txt.encrypted` becomes
//! `a.txt.encrypted.decrypted`), envarc gives back the original name
//! (`a.txt`) and appends `.decrypted` only to names that do not carry the
//! suffix, so such a file never takes the name of another one by accident.
//! Directories keep their names. Pure: no I/O.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// What encrypting appends and decrypting removes, unless `--suffix` says otherwise.
pub const DEFAULT_SUFFIX: &str = ".encrypted";
/// What decrypting appends to a name that does not end with the suffix
/// (the AWS Encryption CLI's suffix for decrypted files).
pub const DECRYPTED_SUFFIX: &str = ".decrypted";

/// Which way a tree is transformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Encrypt,
    Decrypt,
}

impl Direction {
    /// "encrypt" or "decrypt", for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Direction::Encrypt => "encrypt",
            Direction::Decrypt => "decrypt",
        }
    }
}

/// Refuses a suffix that would make names leave their folder or vanish.
pub fn check_suffix(suffix: &str) -> Result<(), String> {
    if suffix.contains('/') || suffix.contains('\0') {
        return Err(format!(
            "--suffix '{suffix}' contains '/' or a NUL byte; a suffix is part of one file name"
        ));
    }
    Ok(())
}

/// The output name of the input file `name` (one path component).
pub fn output_name(name: &OsStr, dir: Direction, suffix: &str) -> OsString {
    let bytes = name.as_bytes();
    let out = match dir {
        Direction::Encrypt => [bytes, suffix.as_bytes()].concat(),
        Direction::Decrypt if suffix.is_empty() => bytes.to_vec(),
        Direction::Decrypt => match bytes.strip_suffix(suffix.as_bytes()) {
            // "..encrypted" would become "."; such names get the other rule.
            Some(stem) if !stem.is_empty() && stem != b"." && stem != b".." => stem.to_vec(),
            _ => [bytes, DECRYPTED_SUFFIX.as_bytes()].concat(),
        },
    };
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, dir: Direction, suffix: &str) -> String {
        output_name(OsStr::new(name), dir, suffix)
            .into_string()
            .unwrap()
    }

    #[test]
    fn names_follow_the_aws_cli_with_the_suffix_removed_on_decrypt() {
        use Direction::*;
        let cases = [
            ("a.txt", Encrypt, DEFAULT_SUFFIX, "a.txt.encrypted"),
            (
                "a.txt.encrypted",
                Encrypt,
                DEFAULT_SUFFIX,
                "a.txt.encrypted.encrypted",
            ),
            ("a.txt", Encrypt, ".enc", "a.txt.enc"),
            ("a.txt", Encrypt, "", "a.txt"),
            ("a.txt.encrypted", Decrypt, DEFAULT_SUFFIX, "a.txt"),
            ("a.txt.enc", Decrypt, ".enc", "a.txt"),
            ("a.txt", Decrypt, DEFAULT_SUFFIX, "a.txt.decrypted"),
            (
                ".encrypted",
                Decrypt,
                DEFAULT_SUFFIX,
                ".encrypted.decrypted",
            ),
            (
                "..encrypted",
                Decrypt,
                DEFAULT_SUFFIX,
                "..encrypted.decrypted",
            ),
            (
                "...encrypted",
                Decrypt,
                DEFAULT_SUFFIX,
                "...encrypted.decrypted",
            ),
            ("x.encrypted", Decrypt, "", "x.encrypted"),
        ];
        for (name, dir, suffix, want) in cases {
            assert_eq!(out(name, dir, suffix), want, "{name} {dir:?} {suffix:?}");
        }
    }

    #[test]
    fn non_utf8_names_keep_their_bytes() {
        let name = OsStr::from_bytes(b"caf\xe9");
        let enc = output_name(name, Direction::Encrypt, DEFAULT_SUFFIX);
        assert_eq!(enc.as_bytes(), b"caf\xe9.encrypted");
        assert_eq!(
            output_name(&enc, Direction::Decrypt, DEFAULT_SUFFIX).as_bytes(),
            name.as_bytes()
        );
    }

    #[test]
    fn suffixes_with_a_slash_are_refused() {
        assert!(check_suffix("/x").is_err());
        assert!(check_suffix("a\0").is_err());
        assert!(check_suffix(".enc").is_ok());
        assert!(check_suffix("").is_ok());
    }
}

//! Several wrapping keys per message (`--key A --key B`): the data key is
//! wrapped under every member, so any one of them decrypts. This is the ESDK
//! multi-keyring: the first member generates the data key, each other member
//! wraps that same key (KMS `Encrypt`, a raw AES wrap, …), and the message
//! carries one EDK per member.
//!
//! Decrypt asks each member in turn (each picks the EDKs it can use) and stops
//! at the first that unwraps; when none does, the error lists what every
//! member tried and why it failed. Members are tried in the order given, so
//! put the cheap local key first when a remote one is also listed.

use crate::envelope::provider::describe_edks;
use crate::envelope::{DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError};

/// A key provider made of other providers; see the module docs.
pub struct MultiKeyProvider {
    members: Vec<Box<dyn KeyProvider>>,
}

impl MultiKeyProvider {
    /// The first member generates data keys; the others wrap them. `None`
    /// when `members` is empty.
    pub fn new(members: Vec<Box<dyn KeyProvider>>) -> Option<MultiKeyProvider> {
        (!members.is_empty()).then_some(MultiKeyProvider { members })
    }

    /// One provider for `members`: the member itself when there is one.
    pub fn boxed(mut members: Vec<Box<dyn KeyProvider>>) -> Option<Box<dyn KeyProvider>> {
        if members.len() == 1 {
            return members.pop();
        }
        Some(Box::new(MultiKeyProvider::new(members)?))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl KeyProvider for MultiKeyProvider {
    fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        let (first, rest) = self.members.split_first().expect("never empty");
        let (key, mut edks) = first.generate_data_key(ctx)?;
        // All or nothing: a message must never go out with fewer EDKs than
        // keys asked for, or a key the user relies on would not open it.
        for m in rest {
            edks.extend(m.wrap_data_key(&key, ctx)?);
        }
        Ok((key, edks))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let mut errors = Vec::with_capacity(self.members.len());
        for m in &self.members {
            match m.decrypt_data_key(edks, ctx) {
                Ok(k) => return Ok(k),
                Err(e) => errors.push(e),
            }
        }
        Err(combine_errors(edks, errors))
    }

    fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
        let mut edks = Vec::with_capacity(self.members.len());
        for m in &self.members {
            edks.extend(m.wrap_data_key(key, ctx)?);
        }
        Ok(edks)
    }

    fn max_in_flight(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.max_in_flight())
            .max()
            .unwrap_or(1)
    }
}

/// One error for the failures of several providers (the members, or keyless
/// decrypt's keyring, transit and KMS). Those that simply hold none
/// of the message's keys only add to the list of what was tried; the others
/// say why a key that should have worked did not. The exit code follows the
/// cause: only when every real failure is an unreachable service is the
/// result "unavailable" (exit 1) rather than a key problem (exit 5).
pub fn combine_errors(edks: &[EncryptedDataKey], errors: Vec<ProviderError>) -> ProviderError {
    let mut tried = Vec::new();
    let mut failures = Vec::new();
    for e in errors {
        match e {
            ProviderError::NoMatchingKey { tried: t, .. } => tried.push(t),
            other => failures.push(other),
        }
    }
    if failures.is_empty() {
        return ProviderError::NoMatchingKey {
            found: describe_edks(edks),
            tried: tried.join("; "),
        };
    }
    if failures.len() == 1 && tried.is_empty() {
        return failures.pop().expect("one failure");
    }
    let all_unavailable = failures
        .iter()
        .all(|e| matches!(e, ProviderError::Unavailable(_)));
    let mut parts: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
    if !tried.is_empty() {
        parts.push(format!("no matching key in {}", tried.join("; ")));
    }
    let message = format!(
        "no key could unwrap the data key (the message was wrapped by {}): {}",
        describe_edks(edks),
        parts.join("; ")
    );
    if all_unavailable {
        ProviderError::Unavailable(message)
    } else {
        ProviderError::KeyUnusable(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decrypt_to_vec, encrypt_to_vec, DecryptOptions, EncryptOptions};
    use crate::envelope::{RawAesKey, Suite};

    fn raw(name: &str, byte: u8) -> Box<dyn KeyProvider> {
        Box::new(RawAesKey::new("test", name, &[byte; 32]).unwrap())
    }

    /// A member whose service cannot be reached.
    struct Down;

    impl KeyProvider for Down {
        fn generate_data_key(
            &self,
            _: &EncryptionContext,
        ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
            Err(ProviderError::Unavailable("service down".into()))
        }
        fn decrypt_data_key(
            &self,
            _: &[EncryptedDataKey],
            _: &EncryptionContext,
        ) -> Result<DataKey, ProviderError> {
            Err(ProviderError::Unavailable("service down".into()))
        }
        fn wrap_data_key(
            &self,
            _: &DataKey,
            _: &EncryptionContext,
        ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
            Err(ProviderError::Unavailable("service down".into()))
        }
        fn max_in_flight(&self) -> usize {
            16
        }
    }

    fn opts() -> EncryptOptions {
        EncryptOptions {
            suite: Suite::Aes256GcmHkdfSha512Commit,
            frame_length: 4096,
            context: [("k".to_string(), "v".to_string())].into(),
        }
    }

    #[test]
    fn every_member_wraps_and_each_alone_decrypts() {
        let multi = MultiKeyProvider::new(vec![raw("a", 1), raw("b", 2), raw("c", 3)]).unwrap();
        let msg = encrypt_to_vec(&multi, &opts(), b"hello").unwrap();
        for (name, byte) in [("a", 1), ("b", 2), ("c", 3)] {
            let (h, plain) = decrypt_to_vec(raw(name, byte).as_ref(), &Default::default(), &msg)
                .unwrap_or_else(|e| panic!("key {name} alone: {e}"));
            assert_eq!(plain, b"hello");
            assert_eq!(h.edks.len(), 3);
        }
        // A member that holds none of the keys reports what it tried.
        let e = decrypt_to_vec(raw("z", 9).as_ref(), &DecryptOptions::default(), &msg);
        assert!(e.is_err());
    }

    #[test]
    fn decrypt_skips_a_failing_member() {
        let msg = encrypt_to_vec(raw("b", 2).as_ref(), &opts(), b"x").unwrap();
        let multi = MultiKeyProvider::new(vec![Box::new(Down), raw("b", 2)]).unwrap();
        assert_eq!(
            decrypt_to_vec(&multi, &Default::default(), &msg).unwrap().1,
            b"x"
        );
        assert_eq!(multi.max_in_flight(), 16);
    }

    #[test]
    fn a_failing_member_fails_the_encryption() {
        let multi = MultiKeyProvider::new(vec![raw("a", 1), Box::new(Down)]).unwrap();
        let err = encrypt_to_vec(&multi, &opts(), b"x").unwrap_err();
        assert!(err.to_string().contains("service down"), "{err}");
    }

    #[test]
    fn errors_name_every_key_tried() {
        let msg = encrypt_to_vec(raw("a", 1).as_ref(), &opts(), b"x").unwrap();
        // Two members, neither holds key a.
        let multi = MultiKeyProvider::new(vec![raw("b", 2), raw("c", 3)]).unwrap();
        let err = decrypt_to_vec(&multi, &Default::default(), &msg).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                crate::envelope::Error::Provider(ProviderError::NoMatchingKey { .. })
            ),
            "{text}"
        );
        assert!(text.contains("test:a"), "{text}");
        assert!(text.contains('b') && text.contains('c'), "{text}");
        // An unreachable member plus a non-matching one: the service is the cause.
        let multi = MultiKeyProvider::new(vec![raw("b", 2), Box::new(Down)]).unwrap();
        let err = decrypt_to_vec(&multi, &Default::default(), &msg).unwrap_err();
        assert!(
            matches!(
                err,
                crate::envelope::Error::Provider(ProviderError::Unavailable(_))
            ),
            "{err}"
        );
        assert!(err.to_string().contains("service down"), "{err}");
        // The wrong material under the right name is a key failure (exit 5).
        let wrong = MultiKeyProvider::new(vec![raw("a", 7), Box::new(Down)]).unwrap();
        let err = decrypt_to_vec(&wrong, &Default::default(), &msg).unwrap_err();
        assert!(
            matches!(
                err,
                crate::envelope::Error::Provider(ProviderError::KeyUnusable(_))
            ),
            "{err}"
        );
    }

    #[test]
    fn boxed_of_one_is_that_member() {
        assert!(MultiKeyProvider::boxed(Vec::new()).is_none());
        let one = MultiKeyProvider::boxed(vec![raw("a", 1)]).unwrap();
        let msg = encrypt_to_vec(one.as_ref(), &opts(), b"x").unwrap();
        let h = decrypt_to_vec(raw("a", 1).as_ref(), &Default::default(), &msg)
            .unwrap()
            .0;
        assert_eq!(h.edks.len(), 1);
    }
}

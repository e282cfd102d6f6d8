//! The encryption context: non-secret key/value pairs stored in clear in the
//! header and authenticated with it. Never put file names or secrets here.

use std::collections::BTreeMap;

use super::Error;

/// Sorted by key bytes, which is exactly the order the ESDK serialization needs
/// (UTF-8 byte order equals `String` order).
pub type EncryptionContext = BTreeMap<String, String>;

/// Serializes a context the ESDK way: pair count, then each key and value with a
/// 2-byte length. The empty context serializes to no bytes at all.
pub fn serialize(ctx: &EncryptionContext) -> Result<Vec<u8>, Error> {
    if ctx.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    push_u16(&mut out, ctx.len(), "encryption context pair count")?;
    for (k, v) in ctx {
        push_u16(&mut out, k.len(), "encryption context key")?;
        out.extend_from_slice(k.as_bytes());
        push_u16(&mut out, v.len(), "encryption context value")?;
        out.extend_from_slice(v.as_bytes());
    }
    if out.len() > u16::MAX as usize {
        return Err(Error::Invalid(
            "the encryption context is larger than 65535 bytes once serialized; use fewer or shorter pairs".into(),
        ));
    }
    Ok(out)
}

/// Parses the serialized form; rejects duplicate keys, unsorted order is accepted
/// (some writers do not sort) but duplicates are not.
pub fn parse(bytes: &[u8]) -> Result<EncryptionContext, Error> {
    let mut ctx = EncryptionContext::new();
    if bytes.is_empty() {
        return Ok(ctx);
    }
    let mut cur = super::header::Cursor::new(bytes);
    let count = cur.u16()?;
    if count == 0 {
        return Err(Error::Malformed(
            "encryption context has a length but zero pairs".into(),
        ));
    }
    for _ in 0..count {
        let k = cur.len16_bytes()?;
        let v = cur.len16_bytes()?;
        let k = String::from_utf8(k.to_vec())
            .map_err(|_| Error::Malformed("encryption context key is not UTF-8".into()))?;
        let v = String::from_utf8(v.to_vec())
            .map_err(|_| Error::Malformed("encryption context value is not UTF-8".into()))?;
        if ctx.insert(k, v).is_some() {
            return Err(Error::Malformed("encryption context repeats a key".into()));
        }
    }
    if cur.remaining() != 0 {
        return Err(Error::Malformed(
            "encryption context has bytes after its last pair".into(),
        ));
    }
    Ok(ctx)
}

fn push_u16(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), Error> {
    let n = u16::try_from(n)
        .map_err(|_| Error::Invalid(format!("{what} is longer than 65535 bytes")))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Parses `k=v` as given on the command line.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "'{s}' is not a KEY=VALUE pair; write it as -c purpose=backup"
        )),
    }
}

/// Keys starting with this prefix are reserved by the ESDK for its own use.
pub const RESERVED_PREFIX: &str = "aws-crypto-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_context_is_empty_bytes() {
        assert!(serialize(&EncryptionContext::new()).unwrap().is_empty());
    }

    #[test]
    fn round_trip_sorted() {
        let mut c = EncryptionContext::new();
        c.insert("b".into(), "2".into());
        c.insert("a".into(), "1".into());
        let s = serialize(&c).unwrap();
        assert_eq!(s, b"\x00\x02\x00\x01a\x00\x011\x00\x01b\x00\x012");
        assert_eq!(parse(&s).unwrap(), c);
    }

    #[test]
    fn duplicate_key_rejected() {
        let s = b"\x00\x02\x00\x01a\x00\x011\x00\x01a\x00\x012";
        assert!(parse(s).is_err());
    }
}

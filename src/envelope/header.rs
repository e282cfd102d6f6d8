//! The message header as pure functions over bytes: no I/O here, so the parser
//! can be fuzzed and the stream adapters decide how bytes arrive.
//!
//! Format 2 (written):
//! `version(1)=2 | suite(2) | message id(32) | aad len(2) | context | edk count(2) |
//!  edks | content type(1) | frame length(4) | commitment(32)` then the
//! authentication tag (16) over all of the above, with an all-zero IV.
//! Format 1 (legacy read): `version(1)=1 | type(1)=0x80 | suite(2) | message id(16) |
//! aad len(2) | context | edk count(2) | edks | content type(1) | reserved(4)=0 |
//! iv len(1)=12 | frame length(4)` then IV(12) and tag(16).

use super::suite::{COMMITMENT_LEN, IV_LEN, TAG_LEN};
use super::{context, CommitmentPolicy, EncryptionContext, Error, ReadLimits, Suite};

use super::signing::PUBLIC_KEY_CONTEXT_KEY;

/// The 32-byte message ID of a format-2 message (random per message).
pub type MessageId = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// 0x01: one AEAD over the whole content (read only).
    NonFramed,
    /// 0x02: a sequence of frames (always written).
    Framed,
}

/// One wrapped data key as stored in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedDataKey {
    pub provider_id: String,
    pub provider_info: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl EncryptedDataKey {
    /// A short, non-secret description for messages: provider and key name.
    pub fn describe(&self) -> String {
        let name = super::raw_aes::key_name_of(&self.provider_info)
            .or_else(|| std::str::from_utf8(&self.provider_info).ok())
            .unwrap_or("<binary provider info>");
        format!("{}:{}", self.provider_id, name)
    }
}

#[derive(Clone, Debug)]
pub struct Header {
    pub suite: Suite,
    /// 32 bytes in format 2, 16 in format 1.
    pub message_id: Vec<u8>,
    pub context: EncryptionContext,
    pub edks: Vec<EncryptedDataKey>,
    pub content_type: ContentType,
    /// Plaintext bytes per frame (0 for non-framed content).
    pub frame_length: u32,
    /// Format 2 only: the key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
    /// IV of the header authentication (all zero in format 2).
    pub auth_iv: [u8; IV_LEN],
    pub auth_tag: [u8; TAG_LEN],
}

/// A parsed header and where its parts end in the input.
pub struct Parsed {
    pub header: Header,
    /// Length of the bytes the header tag authenticates.
    pub authenticated_len: usize,
    /// Total header length, authentication included: the body starts here.
    pub total_len: usize,
}

impl Header {
    pub fn version(&self) -> u8 {
        self.suite.message_version()
    }

    /// The 32-byte ID of a format-2 message.
    pub fn message_id32(&self) -> Option<MessageId> {
        self.message_id.as_slice().try_into().ok()
    }

    /// Serializes every field the header tag covers (not the tag itself).
    pub fn serialize_authenticated(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(256);
        let v1 = self.version() == 1;
        out.push(self.version());
        if v1 {
            out.push(0x80);
        }
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        let ctx = context::serialize(&self.context)?;
        out.extend_from_slice(&(ctx.len() as u16).to_be_bytes());
        out.extend_from_slice(&ctx);
        let count = u16::try_from(self.edks.len())
            .map_err(|_| Error::Invalid("more than 65535 encrypted data keys".into()))?;
        if count == 0 {
            return Err(Error::Invalid(
                "a message needs at least one encrypted data key".into(),
            ));
        }
        out.extend_from_slice(&count.to_be_bytes());
        for edk in &self.edks {
            put_len16(&mut out, edk.provider_id.as_bytes(), "provider ID")?;
            put_len16(&mut out, &edk.provider_info, "provider info")?;
            put_len16(&mut out, &edk.ciphertext, "EDK ciphertext")?;
        }
        out.push(match self.content_type {
            ContentType::NonFramed => 1,
            ContentType::Framed => 2,
        });
        if v1 {
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.push(IV_LEN as u8);
        }
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        if !v1 {
            out.extend_from_slice(&self.commitment);
        }
        Ok(out)
    }

    /// The header authentication as stored after the authenticated fields.
    pub fn serialize_auth(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IV_LEN + TAG_LEN);
        if self.version() == 1 {
            out.extend_from_slice(&self.auth_iv);
        }
        out.extend_from_slice(&self.auth_tag);
        out
    }

    /// Parses a header from the start of `buf`. Returns `Error::Truncated` when
    /// `buf` holds only part of a header, so a streaming caller can read more.
    pub fn parse(
        buf: &[u8],
        policy: CommitmentPolicy,
        limits: &ReadLimits,
    ) -> Result<Parsed, Error> {
        let bounded = &buf[..buf.len().min(limits.max_header_size)];
        match parse_inner(bounded, policy, limits) {
            Err(Error::Truncated) if bounded.len() == limits.max_header_size => {
                Err(Error::HeaderTooLarge {
                    limit: limits.max_header_size,
                })
            }
            other => other,
        }
    }
}

fn parse_inner(buf: &[u8], policy: CommitmentPolicy, limits: &ReadLimits) -> Result<Parsed, Error> {
    let mut cur = Cursor::new(buf);
    let version = cur.u8()?;
    match version {
        2 => {}
        1 => {
            if cur.u8()? != 0x80 {
                return Err(Error::Malformed("format-1 message type is not 0x80".into()));
            }
        }
        // 0x80 as first byte would also make sense for old messages; anything else
        // is not an ESDK message at all.
        v => return Err(Error::UnsupportedVersion(v)),
    }
    let suite = Suite::from_id(cur.u16()?, policy)?;
    if suite.message_version() != version {
        return Err(Error::Malformed(format!(
            "suite {:#06x} cannot appear in a format-{version} message",
            suite.id()
        )));
    }
    let message_id = cur.take(if version == 2 { 32 } else { 16 })?.to_vec();
    let ctx_len = cur.u16()? as usize;
    let context = context::parse(cur.take(ctx_len)?)?;
    // A signing suite's public key lives in the context (checked as a point by
    // the reader); an unsigned suite with one was forged or mislabelled.
    match (suite.is_signed(), context.contains_key(PUBLIC_KEY_CONTEXT_KEY)) {
        (false, true) => {
            return Err(Error::Malformed(format!(
                "the encryption context holds '{PUBLIC_KEY_CONTEXT_KEY}' but suite {:#06x} does not sign",
                suite.id()
            )))
        }
        (true, false) => {
            return Err(Error::Malformed(format!(
                "suite {:#06x} signs its messages, but the encryption context holds no '{PUBLIC_KEY_CONTEXT_KEY}'",
                suite.id()
            )))
        }
        _ => {}
    }
    let count = cur.u16()? as usize;
    if count == 0 {
        return Err(Error::Malformed(
            "the header holds no encrypted data key".into(),
        ));
    }
    if count > limits.max_edks {
        return Err(Error::TooManyEdks {
            count,
            limit: limits.max_edks,
        });
    }
    let mut edks = Vec::with_capacity(count);
    for _ in 0..count {
        let provider_id = String::from_utf8(cur.len16_bytes()?.to_vec())
            .map_err(|_| Error::Malformed("provider ID is not UTF-8".into()))?;
        let provider_info = cur.len16_bytes()?.to_vec();
        let ciphertext = cur.len16_bytes()?.to_vec();
        edks.push(EncryptedDataKey {
            provider_id,
            provider_info,
            ciphertext,
        });
    }
    let content_type = match cur.u8()? {
        1 => ContentType::NonFramed,
        2 => ContentType::Framed,
        t => return Err(Error::Malformed(format!("unknown content type {t:#04x}"))),
    };
    if version == 1 {
        if cur.take(4)? != [0, 0, 0, 0] {
            return Err(Error::Malformed(
                "reserved header bytes are not zero".into(),
            ));
        }
        if cur.u8()? as usize != IV_LEN {
            return Err(Error::Malformed("IV length is not 12".into()));
        }
    }
    let frame_length = cur.u32()?;
    match content_type {
        ContentType::Framed if frame_length == 0 => {
            return Err(Error::Malformed(
                "framed content with a frame length of 0".into(),
            ))
        }
        ContentType::NonFramed if frame_length != 0 => {
            return Err(Error::Malformed(
                "non-framed content with a non-zero frame length".into(),
            ))
        }
        _ => {}
    }
    if frame_length > limits.max_frame_length {
        return Err(Error::FrameTooLong {
            length: frame_length.into(),
            limit: limits.max_frame_length.into(),
        });
    }
    let mut commitment = [0u8; COMMITMENT_LEN];
    if version == 2 {
        commitment.copy_from_slice(cur.take(COMMITMENT_LEN)?);
    }
    let authenticated_len = cur.pos;
    let mut auth_iv = [0u8; IV_LEN];
    if version == 1 {
        auth_iv.copy_from_slice(cur.take(IV_LEN)?);
    }
    let mut auth_tag = [0u8; TAG_LEN];
    auth_tag.copy_from_slice(cur.take(TAG_LEN)?);
    Ok(Parsed {
        header: Header {
            suite,
            message_id,
            context,
            edks,
            content_type,
            frame_length,
            commitment,
            auth_iv,
            auth_tag,
        },
        authenticated_len,
        total_len: cur.pos,
    })
}

fn put_len16(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), Error> {
    let n = u16::try_from(bytes.len())
        .map_err(|_| Error::Invalid(format!("{what} is longer than 65535 bytes")))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A bounds-checked reader over a byte slice; running past the end is
/// `Error::Truncated`.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.remaining() < n {
            return Err(Error::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn len16_bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(suite: Suite) -> Header {
        let mut context = EncryptionContext::new();
        context.insert("repo".into(), "r1".into());
        context.insert("kind".into(), "object".into());
        let edk = |n: u8| EncryptedDataKey {
            provider_id: "envarc".into(),
            provider_info: vec![n; 40],
            ciphertext: vec![n + 1; 48],
        };
        Header {
            suite,
            message_id: vec![7; if suite.message_version() == 2 { 32 } else { 16 }],
            context,
            edks: vec![edk(1), edk(2)],
            content_type: ContentType::Framed,
            frame_length: 4096,
            commitment: if suite.is_committing() {
                [5; COMMITMENT_LEN]
            } else {
                [0; COMMITMENT_LEN]
            },
            auth_iv: if suite.message_version() == 1 {
                [3; IV_LEN]
            } else {
                [0; IV_LEN]
            },
            auth_tag: [6; TAG_LEN],
        }
    }

    fn bytes(h: &Header) -> Vec<u8> {
        let mut b = h.serialize_authenticated().unwrap();
        b.extend_from_slice(&h.serialize_auth());
        b
    }

    fn same(a: &Header, b: &Header) {
        assert_eq!(a.suite, b.suite);
        assert_eq!(a.message_id, b.message_id);
        assert_eq!(a.context, b.context);
        assert_eq!(a.edks, b.edks);
        assert_eq!(a.content_type, b.content_type);
        assert_eq!(a.frame_length, b.frame_length);
        assert_eq!(a.commitment, b.commitment);
        assert_eq!(a.auth_iv, b.auth_iv);
        assert_eq!(a.auth_tag, b.auth_tag);
    }

    #[test]
    fn serialize_parse_round_trip_both_formats() {
        let limits = ReadLimits::default();
        for suite in [
            Suite::Aes256GcmHkdfSha512Commit,
            Suite::ChaCha20Poly1305HkdfSha512Commit,
            Suite::LegacyAes256GcmHkdfSha256,
        ] {
            let h = sample(suite);
            let mut b = bytes(&h);
            let header_len = b.len();
            b.extend_from_slice(b"body bytes follow");
            let p = Header::parse(&b, CommitmentPolicy::AllowLegacyRead, &limits).unwrap();
            same(&p.header, &h);
            assert_eq!(p.total_len, header_len);
            assert_eq!(
                p.authenticated_len,
                h.serialize_authenticated().unwrap().len()
            );
            assert_eq!(bytes(&p.header), b[..header_len]);
        }
    }

    /// A streaming reader relies on this: any prefix is "need more bytes".
    #[test]
    fn every_prefix_is_truncated() {
        let b = bytes(&sample(Suite::Aes256GcmHkdfSha512Commit));
        for n in 0..b.len() {
            assert!(
                matches!(
                    Header::parse(&b[..n], CommitmentPolicy::default(), &ReadLimits::default()),
                    Err(Error::Truncated)
                ),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn read_limits_are_enforced_with_their_errors() {
        let b = bytes(&sample(Suite::Aes256GcmHkdfSha512Commit));
        let policy = CommitmentPolicy::default();
        let at = |f: fn(&mut ReadLimits)| {
            let mut l = ReadLimits::default();
            f(&mut l);
            l
        };
        assert!(matches!(
            Header::parse(&b, policy, &at(|l| l.max_edks = 1)),
            Err(Error::TooManyEdks { count: 2, limit: 1 })
        ));
        assert!(Header::parse(&b, policy, &at(|l| l.max_edks = 2)).is_ok());
        assert!(matches!(
            Header::parse(&b, policy, &at(|l| l.max_frame_length = 4095)),
            Err(Error::FrameTooLong {
                length: 4096,
                limit: 4095
            })
        ));
        assert!(Header::parse(&b, policy, &at(|l| l.max_frame_length = 4096)).is_ok());
        let exact = ReadLimits {
            max_header_size: b.len(),
            ..Default::default()
        };
        assert!(Header::parse(&b, policy, &exact).is_ok());
        let short = ReadLimits {
            max_header_size: b.len() - 1,
            ..Default::default()
        };
        assert!(matches!(
            Header::parse(&b, policy, &short),
            Err(Error::HeaderTooLarge { limit }) if limit == b.len() - 1
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let limits = ReadLimits::default();
        let policy = CommitmentPolicy::default();
        let mut legacy = bytes(&sample(Suite::LegacyAes256GcmHkdfSha256));
        assert!(matches!(
            Header::parse(&legacy, policy, &limits),
            Err(Error::NonCommittingSuite(0x0178))
        ));
        legacy[1] = 0x81;
        assert!(matches!(
            Header::parse(&legacy, CommitmentPolicy::AllowLegacyRead, &limits),
            Err(Error::Malformed(_))
        ));

        let mut h = sample(Suite::Aes256GcmHkdfSha512Commit);
        h.context.insert(PUBLIC_KEY_CONTEXT_KEY.into(), "x".into());
        assert!(matches!(
            Header::parse(&bytes(&h), policy, &limits),
            Err(Error::Malformed(_))
        ));

        let mut h = sample(Suite::Aes256GcmHkdfSha512Commit);
        h.frame_length = 0;
        assert!(matches!(
            Header::parse(&bytes(&h), policy, &limits),
            Err(Error::Malformed(_))
        ));
        h.edks.clear();
        assert!(matches!(
            h.serialize_authenticated(),
            Err(Error::Invalid(_))
        ));

        let mut b = bytes(&sample(Suite::Aes256GcmHkdfSha512Commit));
        b[0] = 3;
        assert!(matches!(
            Header::parse(&b, policy, &limits),
            Err(Error::UnsupportedVersion(3))
        ));
    }
}

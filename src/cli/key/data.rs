//! Handlers of the data-plane `key` commands: data keys, small payloads, MACs.
//! Binary values go to files with `--output`, else they are printed in base64.

use std::io::Read;
use std::path::Path;

use base64::Engine;
use serde_json::json;
use zeroize::Zeroizing;

use super::super::fmt::context_of;
use super::super::keyspec::keyring_open::load_keyring;
use super::super::{GlobalArgs, Output};
use super::{DataKeyArgs, Pairs};
use envarc::error::exit;
use envarc::{Error, Result};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Inputs of these commands are small (≤ 4 KiB payloads, blobs, 32-byte keys).
const MAX_INPUT: u64 = 64 * 1024;

/// Reads a small input file ("-" is stdin) into zeroized memory.
pub fn read_input(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_INPUT as usize + 1));
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| Error::io(format!("reading the {what} {}", path.display()), e))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Error::Usage(format!(
            "the {what} {} is larger than {MAX_INPUT} bytes; these commands take small inputs",
            path.display()
        )));
    }
    Ok(buf)
}

/// Writes atomically; `secret` outputs get mode 0600.
fn write_output(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    envarc::fsutil::atomic_write(path, bytes, secret.then_some(0o600))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

pub fn generate_data_key(
    out: &Output,
    g: &GlobalArgs,
    a: DataKeyArgs,
    with_plaintext: bool,
) -> Result<i32> {
    let len = a
        .number_of_bytes
        .unwrap_or(if a.key_spec == "AES_128" { 16 } else { 32 });
    if !with_plaintext && a.plaintext_out.is_some() {
        return Err(Error::Usage(
            "generate-data-key-without-plaintext has no plaintext to write; drop --plaintext-out"
                .into(),
        ));
    }
    let kr = load_keyring(g)?;
    let dk = kr.generate_data_key(a.key.get(), len, &context_of(&a.context)?)?;
    if let Some(p) = &a.ciphertext_out {
        write_output(p, &dk.ciphertext_blob, false)?;
    }
    if let (true, Some(p)) = (with_plaintext, &a.plaintext_out) {
        write_output(p, &dk.plaintext, true)?;
    }
    let blob = B64.encode(&dk.ciphertext_blob);
    let plain = Zeroizing::new(B64.encode(&*dk.plaintext));
    out.say(format!(
        "Generated a {len}-byte data key under key {} (backing key v{})",
        dk.key_id, dk.version
    ));
    if a.ciphertext_out.is_none() {
        out.say(format!("CiphertextBlob: {blob}"));
    }
    if with_plaintext && a.plaintext_out.is_none() {
        out.say(format!("Plaintext: {}", *plain));
    }
    let mut v = json!({"KeyId": dk.key_id.to_string(), "CiphertextBlob": blob, "CurrentKeyVersion": dk.version});
    if with_plaintext {
        v["Plaintext"] = json!(*plain);
    }
    out.json(&v)?;
    Ok(exit::OK)
}

pub fn encrypt(
    out: &Output,
    g: &GlobalArgs,
    key: &str,
    input: &Path,
    ctx: &Pairs,
    output: Option<&Path>,
) -> Result<i32> {
    let plaintext = read_input(input, "plaintext file")?;
    let kr = load_keyring(g)?;
    let e = kr.encrypt(key, &plaintext, &context_of(ctx)?)?;
    if let Some(p) = output {
        write_output(p, &e.ciphertext_blob, false)?;
    }
    let blob = B64.encode(&e.ciphertext_blob);
    out.say(format!(
        "Encrypted {} bytes under key {} (backing key v{})",
        plaintext.len(),
        e.key_id,
        e.version
    ));
    if output.is_none() {
        out.say(format!("CiphertextBlob: {blob}"));
    }
    out.json(&json!({
        "KeyId": e.key_id.to_string(),
        "CiphertextBlob": blob,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "CurrentKeyVersion": e.version,
    }))?;
    Ok(exit::OK)
}

pub fn decrypt(
    out: &Output,
    g: &GlobalArgs,
    input: &Path,
    ctx: &Pairs,
    key_id: Option<&str>,
    output: Option<&Path>,
) -> Result<i32> {
    let blob = read_input(input, "ciphertext file")?;
    let kr = load_keyring(g)?;
    let d = kr.decrypt(&blob, &context_of(ctx)?, key_id)?;
    if let Some(p) = output {
        write_output(p, &d.plaintext, true)?;
    }
    let plain = Zeroizing::new(B64.encode(&*d.plaintext));
    out.say(format!(
        "Decrypted {} bytes with key {} (backing key v{})",
        d.plaintext.len(),
        d.key_id,
        d.version
    ));
    if output.is_none() {
        out.say(format!("Plaintext: {}", *plain));
    }
    out.json(&json!({
        "KeyId": d.key_id.to_string(),
        "Plaintext": *plain,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "KeyVersion": d.version,
    }))?;
    Ok(exit::OK)
}

pub fn re_encrypt(
    out: &Output,
    g: &GlobalArgs,
    input: &Path,
    ctx: &Pairs,
    dest: &str,
    dest_ctx: &Pairs,
    output: Option<&Path>,
) -> Result<i32> {
    let blob = read_input(input, "ciphertext file")?;
    let kr = load_keyring(g)?;
    let (src, src_v, e) = kr.re_encrypt(&blob, &context_of(ctx)?, dest, &context_of(dest_ctx)?)?;
    if let Some(p) = output {
        write_output(p, &e.ciphertext_blob, false)?;
    }
    let b64 = B64.encode(&e.ciphertext_blob);
    out.say(format!(
        "Re-encrypted from key {src} (v{src_v}) to key {} (v{})",
        e.key_id, e.version
    ));
    if output.is_none() {
        out.say(format!("CiphertextBlob: {b64}"));
    }
    out.json(&json!({
        "CiphertextBlob": b64,
        "SourceKeyId": src.to_string(),
        "KeyId": e.key_id.to_string(),
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "SourceKeyVersion": src_v,
        "CurrentKeyVersion": e.version,
    }))?;
    Ok(exit::OK)
}

pub fn generate_mac(out: &Output, g: &GlobalArgs, key: &str, message: &Path) -> Result<i32> {
    let msg = read_input(message, "message file")?;
    let kr = load_keyring(g)?;
    let (id, mac) = kr.generate_mac(key, &msg)?;
    let mac = B64.encode(mac);
    out.say(format!("HMAC-SHA-256 under key {id}: {mac}"));
    out.json(&json!({"KeyId": id.to_string(), "Mac": mac, "MacAlgorithm": "HMAC_SHA_256"}))?;
    Ok(exit::OK)
}

pub fn verify_mac(
    out: &Output,
    g: &GlobalArgs,
    key: &str,
    message: &Path,
    mac: &str,
) -> Result<i32> {
    let tag = B64.decode(mac.trim()).map_err(|_| {
        Error::Usage("--mac must be the base64 MAC that generate-mac printed".into())
    })?;
    let msg = read_input(message, "message file")?;
    let kr = load_keyring(g)?;
    let id = kr.verify_mac(key, &msg, &tag)?;
    out.say(format!("The MAC is valid (key {id})"));
    out.json(&json!({"KeyId": id.to_string(), "MacValid": true, "MacAlgorithm": "HMAC_SHA_256"}))?;
    Ok(exit::OK)
}

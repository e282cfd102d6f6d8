//! The data plane: data keys, small-payload encrypt/decrypt, re-encrypt.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;

use crate::cli_key::ring::*;

#[test]
fn data_plane_generate_encrypt_decrypt_re_encrypt() {
    let r = Ring::new();
    let k1 = r.create(&["--alias", "alias/one"]);
    let k2 = r.create(&[]);
    let dk = r.ok(&[
        "key",
        "generate-data-key",
        "alias/one",
        "-c",
        "purpose=test",
    ]);
    let plain = B64.decode(dk["Plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(plain.len(), 32);
    let blob = r.write(
        "dk.blob",
        &B64.decode(dk["CiphertextBlob"].as_str().unwrap()).unwrap(),
    );
    let d = r.ok(&[
        "key",
        "decrypt",
        "--ciphertext-file",
        &blob,
        "-c",
        "purpose=test",
    ]);
    assert_eq!(B64.decode(d["Plaintext"].as_str().unwrap()).unwrap(), plain);
    assert_eq!(d["KeyId"], k1.as_str());
    let e = r.fails(&["key", "decrypt", "--ciphertext-file", &blob], 4);
    assert!(e.contains("encryption context"), "{e}");
    let short = r.ok(&["key", "generate-data-key", &k1, "--key-spec", "AES_128"]);
    assert_eq!(
        B64.decode(short["Plaintext"].as_str().unwrap())
            .unwrap()
            .len(),
        16
    );
    let np = r.ok(&["key", "generate-data-key-without-plaintext", &k1]);
    assert!(np.get("Plaintext").is_none() && np["CiphertextBlob"].is_string());

    let input = r.write("small", &[7u8; 100]);
    r.ok(&[
        "key",
        "encrypt",
        &k1,
        "--plaintext-file",
        &input,
        "--output",
        "small.blob",
    ]);
    r.ok(&[
        "key",
        "decrypt",
        "--ciphertext-file",
        "small.blob",
        "--output",
        "small.out",
    ]);
    assert_eq!(fs::read(r.file("small.out")).unwrap(), vec![7u8; 100]);
    assert_eq!(
        fs::metadata(r.file("small.out"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let big = r.write("big", &[0u8; 4097]);
    r.fails(&["key", "encrypt", &k1, "--plaintext-file", &big], 2);

    let re = r.ok(&[
        "key",
        "re-encrypt",
        "--ciphertext-file",
        "small.blob",
        "--destination-key",
        &k2,
        "--output",
        "re.blob",
    ]);
    assert_eq!(
        (re["SourceKeyId"].as_str(), re["KeyId"].as_str()),
        (Some(k1.as_str()), Some(k2.as_str()))
    );
    let d = r.ok(&["key", "decrypt", "--ciphertext-file", "re.blob"]);
    assert_eq!(d["KeyId"], k2.as_str());
    assert_eq!(
        B64.decode(d["Plaintext"].as_str().unwrap()).unwrap(),
        vec![7u8; 100]
    );
    r.fails(
        &[
            "key",
            "decrypt",
            "--ciphertext-file",
            "re.blob",
            "--key-id",
            &k1,
        ],
        5,
    );

    r.ok(&["key", "rotate-on-demand", &k1]);
    assert_eq!(
        r.ok(&["key", "decrypt", "--ciphertext-file", "small.blob"])["KeyVersion"],
        1
    );
    assert_eq!(
        r.ok(&["key", "encrypt", &k1, "--plaintext-file", &input])["CurrentKeyVersion"],
        2
    );
    let mut bytes = fs::read(r.file("small.blob")).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let bad = r.write("bad.blob", &bytes);
    r.fails(&["key", "decrypt", "--ciphertext-file", &bad], 4);
    r.ok(&["key", "disable", &k1]);
    r.fails(&["key", "decrypt", "--ciphertext-file", "small.blob"], 5);
}

//! The signed suite 0x0578 across envarc and the Python SDK: Python's default
//! messages (raw AES keyring, and its AWS KMS keyring against a local moto)
//! decrypt in envarc, and envarc's 0x0578 messages in Python.

use envarc::envelope::{decrypt_to_vec, DecryptOptions, Suite};

use super::{cases, key_args, python, run_tool, s, Workspace, BIG, KEY_NAME};
#[cfg(feature = "aws-kms")]
use super::{run_tool_env, FRAME};
use crate::util;

/// Python's own default suite (0x0578, signed) through envarc, for every size
/// of `cases()`: the library reads them, and the large one also the CLI (file
/// and stdout).
#[test]
fn python_default_signed_messages_decrypt_in_envarc() {
    let Some(py) = python() else { return };
    let ws = Workspace {
        dir: util::tempdir(),
    };
    let all = cases();
    let mut jobs = Vec::new();
    for (i, case) in all.iter().enumerate() {
        std::fs::write(
            ws.path(format!("{i}.plain")),
            util::random_bytes(50 + i as u64, case.size),
        )
        .unwrap();
        let mut args = vec![
            "encrypt".to_string(),
            "--suite".into(),
            "sdk-default".into(),
        ];
        args.extend(key_args(&ws.key(case).0, case));
        args.extend(["--frame-length".into(), case.frame.to_string()]);
        args.extend(case.context_args());
        args.extend([
            s(&ws.path(format!("{i}.plain"))),
            s(&ws.path(format!("{i}.msg"))),
        ]);
        jobs.push(args);
    }
    for (i, (ok, text)) in run_tool(&py, &jobs).into_iter().enumerate() {
        let case = &all[i];
        assert!(ok, "Python failed to encrypt {}: {text}", case.label());
        let plaintext = std::fs::read(ws.path(format!("{i}.plain"))).unwrap();
        let message = std::fs::read(ws.path(format!("{i}.msg"))).unwrap();
        assert_eq!(
            &message[..3],
            b"\x02\x05\x78",
            "{}: the SDK's default is 0x0578",
            case.label()
        );
        let opts = DecryptOptions {
            expected_context: case.context(),
            ..Default::default()
        };
        let (header, back) = decrypt_to_vec(&ws.key(case).1, &opts, &message)
            .unwrap_or_else(|e| panic!("envarc cannot read Python's signed {}: {e}", case.label()));
        assert!(back == plaintext, "{}: plaintext differs", case.label());
        assert!(header.context.contains_key("aws-crypto-public-key"));
        if case.size == BIG {
            let (key_file, _) = ws.key(case);
            let cli = || {
                let mut c = util::envarc();
                c.args(["decrypt", "--key-namespace", case.namespace])
                    .args(util::raw_key_args(&key_file, KEY_NAME))
                    .args(case.context_args())
                    .arg(ws.path(format!("{i}.msg")));
                c
            };
            cli()
                .arg("-o")
                .arg(ws.path(format!("{i}.back")))
                .assert()
                .success();
            assert!(std::fs::read(ws.path(format!("{i}.back"))).unwrap() == plaintext);
            let out = cli().output().unwrap();
            assert!(
                out.status.success() && out.stdout == plaintext,
                "{}: to stdout",
                case.label()
            );
        }
    }
}

/// envarc's 0x0578 messages (library for the small ones, the CLI's
/// `--algorithm` for the large one) decrypt in Python.
#[test]
fn envarc_signed_messages_decrypt_in_python() {
    let Some(py) = python() else { return };
    let ws = Workspace {
        dir: util::tempdir(),
    };
    let all = cases();
    let signed = Suite::Aes256GcmHkdfSha512CommitEcdsaP384;
    let mut jobs = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let plaintext = util::random_bytes(70 + i as u64, case.size);
        // Kept for the comparison below.
        std::fs::write(ws.path(format!("{i}.plain")), &plaintext).unwrap();
        jobs.push(super::envarc_encrypts(
            &ws,
            case,
            i,
            Some(signed),
            &plaintext,
        ));
    }
    for (i, (ok, text)) in run_tool(&py, &jobs).into_iter().enumerate() {
        let case = &all[i];
        assert!(
            ok,
            "Python failed to decrypt envarc's signed {}: {text}",
            case.label()
        );
        assert!(
            std::fs::read(ws.path(format!("{i}.back"))).unwrap()
                == std::fs::read(ws.path(format!("{i}.plain"))).unwrap(),
            "{}: plaintext differs",
            case.label()
        );
        let header: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ws.path(format!("{i}.json"))).unwrap()).unwrap();
        assert_eq!(header["suite_id"], "0x0578", "{}", case.label());
    }
}

#[cfg(feature = "aws-kms")]
use crate::util::moto;

/// Python's default messages under its AWS KMS keyring (a key in a local
/// moto) decrypt with `envarc decrypt`, which finds the key in the EDK.
#[cfg(feature = "aws-kms")]
#[test]
fn python_default_kms_messages_decrypt_in_envarc() {
    let Some(py) = python() else { return };
    let Some(bin) = moto::find_moto("python_default_kms_messages_decrypt_in_envarc") else {
        return;
    };
    let server = moto::Moto::start(&bin);
    let arn = server.create_key("interop-default");
    let ws = Workspace {
        dir: util::tempdir(),
    };
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/envarc-test/config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/envarc-test/credentials",
        ),
    ];
    let sizes = [0, 1, FRAME - 1, FRAME, FRAME + 1, BIG];
    let jobs: Vec<Vec<String>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            std::fs::write(
                ws.path(format!("{i}.plain")),
                util::random_bytes(90 + i as u64, size),
            )
            .unwrap();
            [
                "encrypt",
                "--suite",
                "sdk-default",
                "--kms-key-arn",
                &arn,
                "--kms-endpoint",
                &server.url,
                "-c",
                "from=python",
            ]
            .iter()
            .map(|a| a.to_string())
            .chain([
                s(&ws.path(format!("{i}.plain"))),
                s(&ws.path(format!("{i}.msg"))),
            ])
            .collect()
        })
        .collect();
    for (i, (ok, text)) in run_tool_env(&py, &jobs, &env).into_iter().enumerate() {
        assert!(
            ok,
            "Python failed to encrypt {} bytes under KMS: {text}",
            sizes[i]
        );
        let message = std::fs::read(ws.path(format!("{i}.msg"))).unwrap();
        assert_eq!(&message[..3], b"\x02\x05\x78", "{} bytes: 0x0578", sizes[i]);
        let mut c = util::envarc();
        for v in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_KMS",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            c.env_remove(v);
        }
        c.envs(env)
            .env("HOME", ws.dir.path())
            .args([
                "decrypt",
                "--kms-endpoint",
                &server.url,
                "-c",
                "from=python",
            ])
            .arg(ws.path(format!("{i}.msg")))
            .arg("-o")
            .arg(ws.path(format!("{i}.back")))
            .assert()
            .success();
        assert!(
            std::fs::read(ws.path(format!("{i}.back"))).unwrap()
                == std::fs::read(ws.path(format!("{i}.plain"))).unwrap(),
            "{} bytes: plaintext differs",
            sizes[i]
        );
    }
}

//! The location parser as a table: what users write, what it means.

use super::*;

fn s3(endpoint: &str, bucket: &str, prefix: &str) -> Location {
    Location::S3(S3Location {
        endpoint: endpoint.into(),
        bucket: bucket.into(),
        prefix: prefix.into(),
    })
}

fn sftp(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> Location {
    Location::Sftp(SftpLocation {
        user: user.map(Into::into),
        host: host.into(),
        port,
        path: path.into(),
    })
}

fn local(p: &str) -> Location {
    Location::Local(PathBuf::from(p))
}

#[test]
fn accepted_spellings() {
    let cases: Vec<(&str, Location)> = vec![
        ("/srv/backup", local("/srv/backup")),
        ("repo", local("repo")),
        ("./odd:name", local("./odd:name")),
        ("/abs/with:colon", local("/abs/with:colon")),
        ("sub/dir:x", local("sub/dir:x")),
        ("local:/srv/backup", local("/srv/backup")),
        ("LOCAL:rel", local("rel")),
        (
            "s3:https://s3.example.com/bucket/pre/fix",
            s3("https://s3.example.com", "bucket", "pre/fix"),
        ),
        (
            "s3:http://127.0.0.1:8333/bkt/x",
            s3("http://127.0.0.1:8333", "bkt", "x"),
        ),
        (
            "s3:http://127.0.0.1:8333/bkt",
            s3("http://127.0.0.1:8333", "bkt", ""),
        ),
        (
            "s3:http://127.0.0.1:8333/bkt/",
            s3("http://127.0.0.1:8333", "bkt", ""),
        ),
        (
            "s3:s3.amazonaws.com/my-bucket/host-a",
            s3("https://s3.amazonaws.com", "my-bucket", "host-a"),
        ),
        (
            "S3:s3.eu-west-1.amazonaws.com/b.c-d/p/",
            s3("https://s3.eu-west-1.amazonaws.com", "b.c-d", "p"),
        ),
        (
            "s3:http://[::1]:9000/bkt/p",
            s3("http://[::1]:9000", "bkt", "p"),
        ),
        (
            "sftp:me@backup.example:/srv/repo",
            sftp(Some("me"), "backup.example", None, "/srv/repo"),
        ),
        (
            "sftp:backup.example:repo",
            sftp(None, "backup.example", None, "repo"),
        ),
        (
            "sftp:me@[::1]:/srv/repo/",
            sftp(Some("me"), "::1", None, "/srv/repo"),
        ),
        (
            "sftp://me@127.0.0.1:2222//srv/repo",
            sftp(Some("me"), "127.0.0.1", Some(2222), "/srv/repo"),
        ),
        (
            "sftp://127.0.0.1:2222/repo",
            sftp(None, "127.0.0.1", Some(2222), "repo"),
        ),
        (
            "sftp://host//srv/repo",
            sftp(None, "host", None, "/srv/repo"),
        ),
        (
            "sftp://me@corp@host//r",
            sftp(Some("me@corp"), "host", None, "/r"),
        ),
    ];
    for (url, want) in cases {
        match parse(url) {
            Ok(got) => assert_eq!(got, want, "{url}"),
            Err(e) => panic!("{url}: {e}"),
        }
    }
}

#[test]
fn refused_spellings_say_why() {
    let cases: [(&str, &str); 20] = [
        ("", "empty"),
        (
            "s4:http://127.0.0.1/bkt",
            "unknown scheme 's4:'; known schemes: local:, s3:, sftp:",
        ),
        ("b2:bucket/path", "'b2:' repositories are not supported"),
        ("rclone:remote:path", "not supported by envarc"),
        ("rest:http://host/", "not supported"),
        ("ftp://host/x", "unknown scheme 'ftp:'"),
        ("local:", "needs a folder"),
        ("s3:http://127.0.0.1:8333", "no bucket"),
        ("s3:http://127.0.0.1:8333/", "no bucket"),
        ("s3:http://127.0.0.1:8333/ab", "not a bucket name"),
        ("s3:http://127.0.0.1:8333/Upper", "not a bucket name"),
        ("s3:http://127.0.0.1:99999/bkt", "not a port number"),
        (
            "s3:https://AKIA:secret@host/bkt",
            "credentials do not belong",
        ),
        ("s3:ftp://host/bkt", "http:// or https://"),
        ("s3:http://h/bkt/a//b", "empty, '.' or '..' part"),
        ("sftp:me@host", "colon after the host"),
        ("sftp:me:pw@host:/srv", "passwords do not belong"),
        ("sftp:-oProxyCommand=x:/srv", "no host name"),
        ("sftp:host:/srv/../etc", "'..'"),
        ("sftp://host:0//srv", "not a port number"),
    ];
    for (url, want) in cases {
        match parse(url) {
            Ok(got) => panic!("{url}: accepted as {got:?}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(want), "{url}: {text}");
                assert_eq!(e.exit_code(), crate::error::exit::USAGE, "{url}");
            }
        }
    }
}

#[test]
fn refusals_never_echo_a_credential() {
    for url in [
        "s3:https://AKIA:s3cr3t@host/bkt",
        "sftp:me:s3cr3t@host:/srv",
    ] {
        let text = parse(url).unwrap_err().to_string();
        // The URL is named so the user knows which one; the password is cut.
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}

#[test]
fn locations_print_as_written() {
    for url in [
        "s3:http://127.0.0.1:8333/bkt/x/y",
        "s3:https://s3.amazonaws.com/bkt",
        "sftp:me@host:/srv/repo",
        "sftp:host:repo",
        "sftp://me@host:2222//srv/repo",
        "sftp://host:2222/repo",
        "sftp:me@[::1]:/srv/repo",
    ] {
        assert_eq!(parse(url).unwrap().to_string(), url);
    }
}

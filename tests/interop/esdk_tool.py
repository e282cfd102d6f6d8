#!/usr/bin/env python3
"""A small CLI around the official AWS Encryption SDK for Python, for interop tests.

envarc writes AWS Encryption SDK (ESDK) message format v2 messages; this tool
lets the Rust tests encrypt and decrypt with AWS's own implementation, using a
raw AES keyring from the Material Providers Library (MPL), so that each side can
check the other.

Subcommands (exit 0 on success; 1 on any encrypt/decrypt failure or context
mismatch, with a one-line "esdk_tool: error: ..." message on stderr; 2 on a usage
error, as argparse does):

  encrypt  --key-file F --namespace NS --name N [--frame-length BYTES] [--suite S]
           [-c k=v ...] IN OUT
  decrypt  --key-file F --namespace NS --name N [-c k=v ...] [--allow-legacy]
           [--header-json FILE] IN OUT
  encrypt|decrypt --kms-key-arn ARN [--kms-endpoint URL] ...   (AWS KMS keyring instead)
  vectors  DIR [--allow-legacy]    decrypt every test of an awses-decrypt manifest set
  selftest                         round-trip a few sizes to prove the install works

IN and OUT may be "-" for stdin/stdout. The key file holds the raw wrapping key:
exactly 16, 24 or 32 bytes, which selects AES-128/192/256-GCM wrapping.

With --kms-key-arn the MPL's AWS KMS keyring (create_aws_kms_keyring) wraps
and unwraps instead, through a boto3 KMS client in the ARN's region, pointed
at --kms-endpoint when given (a local KMS such as moto); credentials come
from the usual AWS environment.

Encrypt uses suite 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment) under the
commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT; --suite 0578 names the signed
suite 0x0578, --suite sdk-default passes no suite, so the SDK's default applies. --frame-length 0 writes a
non-framed message (content type 0x01); the default is the SDK's (4096 bytes).

Decrypt writes the plaintext to a temporary file beside OUT and renames it into
place only after the whole message (final frame included) has authenticated, so
a failed decrypt leaves no OUT (with OUT = "-", nothing is written to stdout
until then). Each -c k=v given to decrypt must be in the message's encryption
context with that value, else exit 1 before any plaintext is produced: the pairs
go to the SDK as the "reproduced encryption context", which it checks against
the stored context and, for pairs not stored in the header (the required-context
CMM's keys), through the header authentication and the data-key unwrap.
--header-json writes what the SDK parsed from the header (suite, message id,
stored encryption context, EDKs, framing) as JSON. --allow-legacy also accepts
non-committing suites (policy REQUIRE_ENCRYPT_ALLOW_DECRYPT).

The `vectors` subcommand prints "vectors: N passed, M failed" and exits 1 unless every
test matched: a 0x0478 test must decrypt to its expected plaintext (or fail, if
the manifest says so), and so must a 0x0578 one; a non-committing one must
fail unless --allow-legacy.
"""

import argparse
import base64
import io
import json
import logging
import os
import sys
import tempfile

# On a failed decrypt the SDK's stream __exit__ logs "Error on closing" with a
# full traceback at ERROR level (via logging's last-resort stderr handler). We
# report errors ourselves, in one line, so keep the SDK's log quiet.
logging.getLogger("aws_encryption_sdk").addHandler(logging.NullHandler())
logging.getLogger("aws_encryption_sdk").propagate = False


class ToolError(Exception):
    """A failure to report on stderr with exit status 1."""


def _sdk():
    """Imports the SDK lazily so that --help works without it."""
    try:
        import aws_encryption_sdk
        from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
        from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
        from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
        from aws_cryptographic_material_providers.mpl.models import (
            AesWrappingAlg,
            CreateRawAesKeyringInput,
        )
    except ImportError as exc:
        raise ToolError(
            "cannot import the AWS Encryption SDK with its MPL extra ({}); "
            "run .ci/setup-python.sh and use .venv/bin/python".format(exc)
        )
    return {
        "sdk": aws_encryption_sdk,
        "Algorithm": Algorithm,
        "CommitmentPolicy": CommitmentPolicy,
        "MPL": AwsCryptographicMaterialProviders,
        "MPLConfig": MaterialProvidersConfig,
        "AesWrappingAlg": AesWrappingAlg,
        "CreateRawAesKeyringInput": CreateRawAesKeyringInput,
    }


def make_keyring(namespace, name, key):
    """A raw AES keyring; the wrapping algorithm follows from the key length."""
    s = _sdk()
    algs = {
        16: s["AesWrappingAlg"].ALG_AES128_GCM_IV12_TAG16,
        24: s["AesWrappingAlg"].ALG_AES192_GCM_IV12_TAG16,
        32: s["AesWrappingAlg"].ALG_AES256_GCM_IV12_TAG16,
    }
    if len(key) not in algs:
        raise ToolError("wrapping key must be 16, 24 or 32 bytes, got {}".format(len(key)))
    mpl = s["MPL"](config=s["MPLConfig"]())
    return mpl.create_raw_aes_keyring(
        input=s["CreateRawAesKeyringInput"](
            key_namespace=namespace,
            key_name=name,
            wrapping_key=bytes(key),
            wrapping_alg=algs[len(key)],
        )
    )


def make_kms_keyring(arn, endpoint=None):
    """The MPL's AWS KMS keyring for one key ARN, with a boto3 client in its region."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or parts[2] != "kms":
        raise ToolError("--kms-key-arn {!r} is not a KMS key ARN".format(arn))
    try:
        import boto3
        from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsKeyringInput
    except ImportError as exc:
        raise ToolError("the KMS keyring needs boto3 and the MPL ({})".format(exc))
    s = _sdk()
    client = boto3.client("kms", region_name=parts[3], endpoint_url=endpoint)
    mpl = s["MPL"](config=s["MPLConfig"]())
    return mpl.create_aws_kms_keyring(
        input=CreateAwsKmsKeyringInput(kms_key_id=arn, kms_client=client)
    )


def keyring_of(args):
    """The keyring the arguments name: the KMS key, else the raw AES key file."""
    if args.kms_key_arn:
        return make_kms_keyring(args.kms_key_arn, args.kms_endpoint)
    return make_keyring(args.namespace, args.name, read_key_file(args.key_file))


def make_client(allow_legacy=False):
    s = _sdk()
    policy = s["CommitmentPolicy"].REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    if allow_legacy:
        policy = s["CommitmentPolicy"].REQUIRE_ENCRYPT_ALLOW_DECRYPT
    return s["sdk"].EncryptionSDKClient(commitment_policy=policy)


def read_key_file(path):
    try:
        with open(path, "rb") as f:
            key = f.read()
    except OSError as exc:
        raise ToolError("cannot read key file {}: {}".format(path, exc.strerror))
    if len(key) not in (16, 24, 32):
        raise ToolError(
            "key file {} holds {} bytes; it must hold exactly 16, 24 or 32 raw bytes".format(
                path, len(key)
            )
        )
    return key


def parse_context(pairs):
    """-c k=v pairs (split at the first '=') into a dict."""
    ctx = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ToolError("encryption context pair {!r} is not of the form key=value".format(pair))
        k, v = pair.split("=", 1)
        if not k:
            raise ToolError("encryption context pair {!r} has an empty key".format(pair))
        if k in ctx and ctx[k] != v:
            raise ToolError("encryption context key {!r} given twice".format(k))
        ctx[k] = v
    return ctx


def _open_in(path):
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ToolError("cannot open input {}: {}".format(path, exc.strerror))


class _AtomicOut:
    """Writes to a temporary file beside the target; rename on commit only."""

    def __init__(self, path):
        self.path = path
        self.tmp = None
        if path == "-":
            self.f = None
            self.buf = bytearray()  # stdout gets nothing until success
            return
        d = os.path.dirname(os.path.abspath(path))
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=".esdk_tool.", dir=d)
        except OSError as exc:
            raise ToolError("cannot create a temporary file in {}: {}".format(d, exc.strerror))
        self.f = os.fdopen(fd, "wb")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes it 0600; OUT should not be

    def write(self, data):
        if self.f is None:
            self.buf += data
        else:
            self.f.write(data)

    def commit(self):
        if self.f is None:
            sys.stdout.buffer.write(self.buf)
            sys.stdout.buffer.flush()
            return
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)
        self.tmp = None

    def abort(self):
        if self.f is not None:
            self.f.close()
            if self.tmp is not None:
                try:
                    os.unlink(self.tmp)
                except OSError:
                    pass


def _sdk_error(action, exc):
    return ToolError("{} failed: {}: {}".format(action, type(exc).__name__, exc))


def encrypt_stream(src, out, keyring, context, frame_length=None, suite="0478"):
    """suite: "0478", "0578", or "sdk-default" (no algorithm: the SDK picks 0x0578)."""
    s = _sdk()
    client = make_client()
    kwargs = dict(mode="e", source=src, keyring=keyring, encryption_context=context)
    if suite == "0478":
        kwargs["algorithm"] = s["Algorithm"].AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    elif suite == "0578":
        kwargs["algorithm"] = s["Algorithm"].AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    if frame_length is not None:
        kwargs["frame_length"] = frame_length
    with client.stream(**kwargs) as enc:
        for chunk in enc:
            out.write(chunk)


def header_summary(header):
    """What the SDK parsed from a header, as JSON-friendly values."""
    edks = []
    for edk in sorted(
        header.encrypted_data_keys,
        key=lambda e: (e.key_provider.provider_id, e.key_provider.key_info),
    ):
        info = edk.key_provider.key_info
        entry = {
            "provider_id": edk.key_provider.provider_id,
            "provider_info_hex": info.hex(),
            "ciphertext_len": len(edk.encrypted_data_key),
        }
        # Raw AES keyring provider info: key name || tag bits (u32) || IV len (u32) || IV.
        if len(info) >= 20 and edk.key_provider.provider_id != "aws-kms":
            entry["raw_aes_key_name"] = info[:-20].decode("utf-8", "replace")
        edks.append(entry)
    return {
        "version": header.version.value,
        "suite_id": "0x{:04X}".format(header.algorithm.algorithm_id),
        "suite": header.algorithm.name,
        "message_id_hex": header.message_id.hex(),
        "encryption_context": dict(header.encryption_context),
        "encrypted_data_keys": edks,
        "content_type": header.content_type.value,
        "frame_length": header.frame_length,
    }


def decrypt_stream(src, out, keyring, expect_context, allow_legacy=False):
    """Decrypts src into out and returns the parsed header.

    expect_context is handed to the SDK as the reproduced encryption context: a
    pair stored in the header must match it, and a pair not stored there must be
    part of the message's required (authenticated, unstored) context, or the data
    key does not unwrap. Either way the check happens before any plaintext.
    """
    client = make_client(allow_legacy)
    kwargs = dict(mode="d", source=src, keyring=keyring)
    if expect_context:
        kwargs["encryption_context"] = dict(expect_context)
    with client.stream(**kwargs) as dec:
        try:
            header = dec.header  # reads, authenticates the header, unwraps the data key
        except Exception as exc:
            if expect_context:
                raise ToolError(
                    "decrypt failed: {}: {} (is every -c pair in the message's encryption "
                    "context?)".format(type(exc).__name__, exc)
                )
            raise
        stored = header.encryption_context
        for k, v in expect_context.items():  # belt and braces over the SDK's own check
            if k in stored and stored[k] != v:
                raise ToolError(
                    "encryption context {!r} is {!r}, expected {!r}".format(k, stored[k], v)
                )
        for chunk in dec:
            out.write(chunk)
        # The with block swallows a "Footer not read" error on close; a message
        # cut short must fail, so ask the same question explicitly.
        if not hasattr(dec, "footer"):
            raise ToolError("decrypt failed: message ended before its final frame")
    # The SDK stops reading at the end of the message and ignores what follows;
    # envarc treats trailing bytes as an error, and so does this tool.
    if src.read(1):
        raise ToolError("decrypt failed: trailing bytes after the end of the message")
    return header


def cmd_encrypt(args):
    ctx = parse_context(args.context)
    if args.frame_length is not None and args.frame_length < 0:
        raise ToolError("--frame-length must be >= 0")
    keyring = keyring_of(args)
    src = _open_in(args.input)
    out = _AtomicOut(args.output)
    try:
        encrypt_stream(src, out, keyring, ctx, args.frame_length, args.suite)
        out.commit()
    except ToolError:
        out.abort()
        raise
    except Exception as exc:  # the SDK raises many kinds; report them all the same way
        out.abort()
        raise _sdk_error("encrypt", exc)
    return 0


def cmd_decrypt(args):
    ctx = parse_context(args.context)
    keyring = keyring_of(args)
    src = _open_in(args.input)
    out = _AtomicOut(args.output)
    try:
        header = decrypt_stream(src, out, keyring, ctx, args.allow_legacy)
        out.commit()
    except ToolError:
        out.abort()
        raise
    except Exception as exc:
        out.abort()
        raise _sdk_error("decrypt", exc)
    if args.header_json:
        with open(args.header_json, "w") as f:
            json.dump(header_summary(header), f, indent=2, sort_keys=True)
            f.write("\n")
    return 0


def _file_url(base, url):
    if not url.startswith("file://"):
        raise ToolError("unsupported URL in manifest: {}".format(url))
    return os.path.join(base, url[len("file://"):])


def _suite_of(ct):
    """Suite ID from the first bytes of a message (v2: 1-2, v1: 2-3)."""
    if len(ct) >= 3 and ct[0] == 2:
        return int.from_bytes(ct[1:3], "big")
    if len(ct) >= 4 and ct[0] == 1:
        return int.from_bytes(ct[2:4], "big")
    return None


def cmd_vectors(args):
    """Runs an awses-decrypt manifest set: every test must match its expected result.

    Under REQUIRE_DECRYPT a non-committing (v1 / 0x0178) message must fail, whatever
    the manifest says; with --allow-legacy it must decrypt as the manifest says.
    """
    base = args.dir
    with open(os.path.join(base, "manifest.json")) as f:
        manifest = json.load(f)
    with open(_file_url(base, manifest["keys"])) as f:
        keys = json.load(f)["keys"]
    passed = failed = 0
    for name, test in sorted(manifest["tests"].items()):
        mks = test["master-keys"]
        if len(mks) != 1 or mks[0]["type"] != "raw" or keys[mks[0]["key"]]["algorithm"] != "aes":
            print("skip {}: not a single raw AES key".format(name))
            continue
        mk = mks[0]
        kdesc = keys[mk["key"]]
        keyring = make_keyring(
            mk["provider-id"], kdesc["key-id"], base64.b64decode(kdesc["material"])
        )
        with open(_file_url(base, test["ciphertext"]), "rb") as f:
            ct = f.read()
        legacy = _suite_of(ct) not in (0x0478, 0x0578)  # committing: unsigned, signed
        expect_ok = "output" in test["result"] and (args.allow_legacy or not legacy)
        out = io.BytesIO()
        try:
            # In the vector framework the manifest's context is the reproduced context.
            ctx = test.get("encryption-context") or {}
            decrypt_stream(io.BytesIO(ct), out, keyring, ctx, args.allow_legacy)
            got = out.getvalue()
            err = None
        except Exception as exc:
            got, err = None, "{}: {}".format(type(exc).__name__, exc)
        if expect_ok:
            with open(_file_url(base, test["result"]["output"]["plaintext"]), "rb") as f:
                want = f.read()
            ok = err is None and got == want
            why = err or "plaintext differs"
        else:
            ok = err is not None
            why = "decrypted, but must fail"
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL {}: {}".format(name, why))
    print("vectors: {} passed, {} failed".format(passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


def cmd_selftest(_args):
    sizes = [0, 1, 15, 16, 4095, 4096, 4097, 65536, 65537, 300_000]
    failures = 0
    for key_len in (16, 24, 32):
        key = os.urandom(key_len)
        keyring = make_keyring("envarc", "selftest/v1", key)
        for size in sizes:
            for frame_length in (0, 4096, 65536):
                if frame_length == 0 and size > 65536:
                    continue
                pt = os.urandom(size)
                ctx = {"kind": "object", "repo": "selftest"}
                sink = io.BytesIO()
                encrypt_stream(io.BytesIO(pt), sink, keyring, ctx, frame_length)
                ct = sink.getvalue()
                back = io.BytesIO()
                header = decrypt_stream(io.BytesIO(ct), back, keyring, ctx)
                ok = (
                    ct[:3] == b"\x02\x04\x78"  # format v2, suite 0x0478
                    and back.getvalue() == pt
                    and header.frame_length == frame_length
                )
                # A flipped bit in the last tag, a cut-off message, or trailing bytes
                # must be rejected.
                for bad in (ct[:-1] + bytes([ct[-1] ^ 1]), ct[:-1], ct + b"\0"):
                    try:
                        decrypt_stream(io.BytesIO(bad), io.BytesIO(), keyring, {})
                        ok = False
                    except Exception:
                        pass
                if not ok:
                    failures += 1
                    print("FAIL key={} size={} frame={}".format(key_len * 8, size, frame_length))
    total = 3 * sum(2 if s > 65536 else 3 for s in sizes)
    print("selftest: {} passed, {} failed".format(total - failures, failures))
    return 0 if failures == 0 else 1


def build_parser():
    p = argparse.ArgumentParser(
        prog="esdk_tool.py",
        description="Encrypt/decrypt ESDK messages with the official Python SDK and a raw AES keyring.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    def keyring_args(sp):
        sp.add_argument("--key-file", help="raw 16/24/32-byte wrapping key")
        sp.add_argument("--namespace", help="raw AES keyring key namespace (provider ID)")
        sp.add_argument("--name", help="raw AES keyring key name")
        sp.add_argument("--kms-key-arn", metavar="ARN",
                        help="use the AWS KMS keyring with this key instead of a raw AES key")
        sp.add_argument("--kms-endpoint", metavar="URL", help="KMS endpoint URL (e.g. a local moto)")
        sp.add_argument(
            "-c", "--context", action="append", metavar="K=V", default=[],
            help="encryption context pair (repeatable)",
        )
        sp.add_argument("input", metavar="IN", help="input file, or - for stdin")
        sp.add_argument("output", metavar="OUT", help="output file, or - for stdout")

    e = sub.add_parser("encrypt", help="encrypt IN to OUT (suite 0x0478 unless --suite)")
    keyring_args(e)
    e.add_argument("--frame-length", type=int, default=None, metavar="BYTES",
                   help="frame length in bytes; 0 = non-framed (default: SDK's 4096)")
    e.add_argument("--suite", choices=("0478", "0578", "sdk-default"), default="0478",
                   help="0x0478 (default), 0x0578, or the SDK's own default (0x0578)")
    e.set_defaults(func=cmd_encrypt)

    d = sub.add_parser("decrypt", help="decrypt IN to OUT; -c pairs must be in the context")
    keyring_args(d)
    d.add_argument("--allow-legacy", action="store_true",
                   help="also accept non-committing suites (REQUIRE_ENCRYPT_ALLOW_DECRYPT)")
    d.add_argument("--header-json", metavar="FILE", help="write the parsed header as JSON")
    d.set_defaults(func=cmd_decrypt)

    v = sub.add_parser("vectors", help="run an awses-decrypt manifest set (raw AES keys)")
    v.add_argument("dir", metavar="DIR", help="folder holding manifest.json")
    v.add_argument("--allow-legacy", action="store_true")
    v.set_defaults(func=cmd_vectors)

    s = sub.add_parser("selftest", help="round-trip a few sizes")
    s.set_defaults(func=cmd_selftest)
    return p


def _reexec_with_sdk():
    """Run under an interpreter that has the SDK when this one lacks it.

    So `python3 tests/interop/esdk_tool.py ...` works after .ci/setup-python.sh:
    tries $ENVARC_ESDK_PYTHON, then the repository's .venv/bin/python.
    """
    try:
        import aws_encryption_sdk  # noqa: F401
        import aws_cryptographic_material_providers  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("ESDK_TOOL_REEXEC"):
        return  # already tried once; _sdk() reports the failure
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for py in (os.environ.get("ENVARC_ESDK_PYTHON"), os.path.join(root, ".venv", "bin", "python")):
        if py and os.access(py, os.X_OK) and os.path.abspath(py) != os.path.abspath(sys.executable):
            os.environ["ESDK_TOOL_REEXEC"] = "1"
            os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd in ("encrypt", "decrypt"):
        raw = (args.key_file, args.namespace, args.name)
        if args.kms_key_arn is None and None in raw:
            parser.error("{}: give --key-file, --namespace and --name (or --kms-key-arn)".format(args.cmd))
        if args.kms_key_arn is not None and any(v is not None for v in raw):
            parser.error("{}: --kms-key-arn replaces --key-file/--namespace/--name".format(args.cmd))
    if argv is None:
        _reexec_with_sdk()
    try:
        return args.func(args)
    except ToolError as exc:
        print("esdk_tool: error: {}".format(exc), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Config precedence (file < env < flags), the plaintext rule, and the tokens file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.frontend.auth import load_tokens
from service.frontend.config import load_config
from service.frontend.errors import AuthError, ConfigError

pytestmark = pytest.mark.unit


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    f = tmp_path / "fe.yaml"
    f.write_text("port: 1111\nmax_payload_bytes: 2000\nzstd_level: 5\nproject: from-file\n")
    env = {"LOGPIPE_MAX_PAYLOAD_BYTES": "3000", "LOGPIPE_ZSTD_LEVEL": "7", "GOOGLE_CLOUD_PROJECT": "from-env",
           "LOGPIPE_BUCKET": "not-ours"}  # fmt: skip
    cfg = load_config(f, env, {"zstd_level": 9, "host": None})
    assert (cfg.port, cfg.max_payload_bytes, cfg.zstd_level, cfg.project) == (1111, 3000, 9, "from-env")
    assert cfg.host == "127.0.0.1"


def test_listen_and_emulator_variables() -> None:
    cfg = load_config(None, {"LOGPIPE_LISTEN": "127.0.0.1:7007", "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"})
    assert (cfg.host, cfg.port, cfg.pubsub_emulator_host) == ("127.0.0.1", 7007, "127.0.0.1:8085")
    assert cfg.resolved_spool_dir == Path(".logpipe/spool/frontend-7007")


@pytest.mark.parametrize(
    ("env", "overrides"),
    [({"LOGPIPE_PORT": "x"}, {}), ({}, {"no_such_field": 1}), ({"LOGPIPE_LISTEN": "nohostport"}, {}),
     ({}, {"zstd_level": 99}), ({}, {"zstd_level": -8}), ({}, {"gil_switch_interval_ms": 0}),
     ({}, {"envelope_target_bytes": 8 << 20, "max_payload_bytes": 2 << 20})],  # an envelope could exceed Pub/Sub's cap
)  # fmt: skip
def test_invalid_values_name_the_field(env: dict[str, str], overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(None, env, overrides)


def test_plaintext_only_on_loopback_unless_allowed() -> None:
    load_config(None, {}, {"host": "127.0.0.1"}).check_security()
    load_config(None, {}, {"host": "::1"}).check_security()
    with pytest.raises(ConfigError, match="allow-insecure-remote"):
        load_config(None, {}, {"host": "0.0.0.0"}).check_security()
    load_config(None, {}, {"host": "0.0.0.0", "allow_insecure_remote": True}).check_security()
    load_config(None, {}, {"host": "0.0.0.0", "tls_cert": "c.pem", "tls_key": "k.pem"}).check_security()
    with pytest.raises(ConfigError):
        load_config(None, {}, {"tls_cert": "c.pem"}).check_security()


def test_tokens_file_hashed_and_plain(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yaml"
    digest = hashlib.sha256(b"alpha").hexdigest()
    f.write_text(
        f"clients:\n  - {{id: a, token_sha256: {digest}, categories: [ads_click]}}\n"
        "  - {id: b, token: beta, categories: ['*']}\n"
    )
    auth = load_tokens(f)
    a = auth.authenticate([("authorization", "Bearer alpha")])
    assert a.client_id == "a" and a.allows("ads_click") and not a.allows("app_log")
    assert auth.authenticate([("authorization", "bearer beta")]).allows("anything")
    with pytest.raises(AuthError) as err:
        auth.authenticate([("authorization", "Bearer gamma")])
    assert "gamma" not in str(err.value)


@pytest.mark.parametrize(
    "text",
    ["clients: []", "clients: [{id: a}]", "clients: [{id: a, token_sha256: abc}]", "nope: 1",
     "clients: [{id: a, token: x}, {id: b, token: x}]"],
)  # fmt: skip
def test_bad_tokens_files_are_config_errors(tmp_path: Path, text: str) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError):
        load_tokens(f)


def test_malloc_setting_and_mallopt() -> None:
    import platform

    from service.frontend.run import keep_freed_memory

    assert load_config(None, {}).malloc_keep_mib == 256
    assert load_config(None, {"LOGPIPE_MALLOC_KEEP_MIB": "0"}).malloc_keep_mib == 0  # glibc's defaults
    with pytest.raises(ConfigError):
        load_config(None, {"LOGPIPE_MALLOC_KEEP_MIB": "-1"})
    if platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory(256 * 1024 * 1024)  # both mallopt settings accepted (32 MiB is glibc's maximum)


def test_a_check_across_fields_names_them_without_an_empty_location() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, {}, {"envelope_target_bytes": 8 << 20, "max_payload_bytes": 2 << 20})
    text = str(err.value)
    assert text.startswith("invalid front-end config: envelope_target_bytes (8388608) + the largest event")
    assert "max_payload_bytes" in text and "Value error" not in text

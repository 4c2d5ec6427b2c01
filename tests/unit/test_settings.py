import pytest

from shim.settings import (
    DEFAULT_KEAP_LIMITS,
    Settings,
    parse_duration,
    parse_keap_limits,
    parse_size,
)


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("30", 30),
        ("30s", 30),
        ("5m", 300),
        ("6h", 21600),
        ("30d", 2592000),
        ("250ms", 0.25),
        (" 2h ", 7200),
        ("1.5h", 5400),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "5 minutes", "-3", "3x"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("64M") == 64 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("100") == 100


def test_env_and_overrides(tmp_path: object) -> None:
    env = {
        "SHIM_INLINE_MARGIN": "5m",
        "SHIM_REFRESH_MARGIN": "6h",
        "SHIM_KEEPALIVE_AGE": "30d",
        "SHIM_DB": "/tmp/x.db",
        "SHIM_WORKERS": "3",
    }
    s = Settings.from_env(env, port=9999)
    assert (s.inline_margin, s.refresh_margin, s.keepalive_age) == (300, 21600, 2592000)
    assert s.workers == 3 and s.port == 9999 and s.key_file == "/tmp/x.db.key"
    assert Settings.from_env(s.to_env()) == s
    with pytest.raises(ValueError, match="SHIM_INLINE_MARGIN"):
        Settings.from_env({"SHIM_INLINE_MARGIN": "soon"})


def test_default_db_in_data_dir() -> None:
    s = Settings.from_env({"XDG_DATA_HOME": "/data"})
    assert s.db.endswith("keyshim.db")


def test_keap_limits_default_is_keaps_documented_limits() -> None:
    assert Settings().limits() == {"oauth": (25, 1500), "service_key": (10, 240)}
    assert parse_keap_limits(DEFAULT_KEAP_LIMITS) == Settings().limits()


@pytest.mark.parametrize(
    "text,limits",
    [
        ("off", {"oauth": (None, None), "service_key": (None, None)}),
        (" OFF ", {"oauth": (None, None), "service_key": (None, None)}),
        ("oauth=5/s,100/min", {"oauth": (5, 100), "service_key": (10, 240)}),
        ("service_key=2.5/sec", {"oauth": (25, 1500), "service_key": (2.5, None)}),
        ("oauth=off; service_key = 60/minute", {"oauth": (None, None), "service_key": (None, 60)}),
        ("oauth=1000000000/s,1000000000/min;", {"oauth": (1e9, 1e9), "service_key": (10, 240)}),
    ],
)
def test_keap_limits(text: str, limits: dict[str, tuple[float | None, float | None]]) -> None:
    assert parse_keap_limits(text) == limits
    assert Settings.from_env({"SHIM_KEAP_LIMITS": text}).limits() == limits


@pytest.mark.parametrize(
    "bad,why",
    [
        ("25/s,1500/min", "KIND=RATES"),
        ("pat=10/s", "KIND=RATES"),
        ("oauth=25", "not a rate"),
        ("oauth=25/h", "not a rate"),
        ("oauth=-1/s", "not a rate"),
        ("oauth=0/s", "above 0"),
        ("oauth=1/s,2/s", "two calls-a-second"),
        ("oauth=1/min,2/min", "two calls-a-minute"),
        ("oauth=", "not a rate"),
    ],
)
def test_bad_keap_limits_are_refused_by_name(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_keap_limits(bad)
    with pytest.raises(ValueError, match="SHIM_KEAP_LIMITS"):
        Settings.from_env({"SHIM_KEAP_LIMITS": bad})
    with pytest.raises(ValueError, match="SHIM_KEAP_LIMITS"):
        Settings(keap_limits=bad).limits()


def test_keap_limits_reach_workers() -> None:
    s = Settings.from_env({"SHIM_KEAP_LIMITS": "oauth=5/s,100/min"})
    assert Settings.from_env(s.to_env()).limits() == s.limits()


def test_shutdown_grace_outlasts_the_token_timeout() -> None:
    settings = Settings.from_env({})
    assert settings.shutdown_grace > settings.token_timeout
    assert Settings.from_env({"SHIM_SHUTDOWN_GRACE": "1m"}).shutdown_grace == 60.0
    for grace, timeout in (("20s", "20s"), ("5", "10")):
        with pytest.raises(
            ValueError, match=r"SHIM_SHUTDOWN_GRACE .* longer than SHIM_TOKEN_TIMEOUT"
        ):
            Settings.from_env({"SHIM_SHUTDOWN_GRACE": grace, "SHIM_TOKEN_TIMEOUT": timeout})
    with pytest.raises(ValueError, match="SHIM_SHUTDOWN_GRACE"):
        Settings.from_env({}, token_timeout=40.0)  # a flag counts as much as the environment

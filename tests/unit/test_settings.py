import pytest

from shim.settings import Settings, parse_duration, parse_size


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

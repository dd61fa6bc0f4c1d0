from pathlib import Path

import pytest

from popup_kit.config import ConfigError, load_config


def test_embedded_default_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POPUP_KIT_CONFIG", raising=False)
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(tmp_path))
    cfg = load_config()
    assert cfg.source == "embedded default"
    assert cfg.min_self_consent_age == 16
    assert cfg.db_path.parent == tmp_path
    assert cfg.kit_id == cfg.kit_id and cfg.kit_id.startswith("kit-")


def test_file_overrides_only_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "kit.toml"
    path.write_text('[screening]\nmin_self_consent_age = 18\n[booth]\nname = "Night market"\n')
    cfg = load_config(path)
    assert cfg.min_self_consent_age == 18
    assert cfg.booth_name == "Night market"
    assert cfg.languages == ("en", "es")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[screening]\nmin_self_consent_age = 'x'\n", "min_self_consent_age"),
        ("[printer]\nslip_format = 'a4'\n", "slip_format"),
        ("[thresholds]\nnight_pain_age = true\n", "night_pain_age"),
        ("[screening\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "kit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_repository_kit_toml_is_the_embedded_default() -> None:
    from popup_kit.config import default_config_text

    root = Path(__file__).resolve().parent.parent / "kit.toml"
    assert root.read_text("utf-8") == default_config_text()


def test_base_url_must_fit_a_small_qr(tmp_path: Path) -> None:
    from popup_kit.config import MAX_BASE_URL_LENGTH as CHECKED
    from printouts.payload import MAX_BASE_URL_LENGTH

    assert CHECKED == MAX_BASE_URL_LENGTH
    path = tmp_path / "kit.toml"
    path.write_text(f'[server]\nbase_url = "https://{"a" * 90}.org"\n')
    with pytest.raises(ConfigError, match="at most 91"):
        load_config(path)
    path.write_text('[server]\nbase_url = "ftp://triage.org"\n')
    with pytest.raises(ConfigError, match="http"):
        load_config(path)


def test_booth_name_and_event_may_be_given_per_language(tmp_path: Path) -> None:
    path = tmp_path / "kit.toml"
    path.write_text(
        '[booth]\nname = { en = "Back pain booth", es = "Puesto de espalda" }\n'
        'event = "Mercado nocturno"\n',
        "utf-8",
    )
    config = load_config(path)
    assert config.booth_name == "Back pain booth"
    assert config.booth_name_in("es") == "Puesto de espalda"
    assert config.booth_name_in("en") == "Back pain booth"
    assert config.event_in("es") == "Mercado nocturno"


def test_per_language_booth_name_needs_the_default_language(tmp_path: Path) -> None:
    path = tmp_path / "kit.toml"
    path.write_text('[booth]\nname = { es = "Puesto" }\n', "utf-8")
    with pytest.raises(ConfigError, match=r"\[booth\] name needs a value for the default"):
        load_config(path)
    path.write_text('[booth]\nname = { en = "Booth", fr = "Stand" }\n', "utf-8")
    with pytest.raises(ConfigError, match="fr"):
        load_config(path)


def test_the_shipped_server_address_is_known_as_a_placeholder(tmp_path: Path) -> None:
    assert load_config().server_is_placeholder
    path = tmp_path / "kit.toml"
    path.write_text('[server]\nbase_url = "https://triage.health.example"\n', "utf-8")
    assert not load_config(path).server_is_placeholder

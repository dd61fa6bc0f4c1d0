import os
import subprocess
import sys
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
        ("[booth]\nemergency_number = ''\n", "emergency_number"),
        ("[booth]\nevent = '" + "x" * 201 + "'\n", r"\[booth\] event must be at most 200"),
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
    with pytest.raises(ConfigError, match="at most 86"):
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[screening]\nmin_self_concent_age = 18\n",
            "[screening] min_self_concent_age is not a kit.toml key; did you mean "
            "min_self_consent_age?",
        ),
        ("[sync]\ninterval = 5\n", "[sync] interval is not a kit.toml key; did you mean"),
        ("[thresholds]\nnight_pain = 55\n", "did you mean night_pain_age?"),
        ("[screenig]\nlanguages = ['en']\n", "[screenig] is not a kit.toml section; did you mean"),
        ("[screening]\nmin_self_consent_age = '18'\n", "[screening] min_self_consent_age:"),
        ("[screening]\nmin_self_consent_age = true\n", "[screening] min_self_consent_age:"),
        ("[security]\nidle_lock_minutes = 1.5\n", "[security] idle_lock_minutes:"),
        ("[printer]\nname = 3\n", "[printer] name:"),
    ],
)
def test_unknown_keys_and_wrong_types_stop_the_kit_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "kit.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert expected in str(refused.value)
    assert str(path) in str(refused.value)


def test_the_nearest_key_is_suggested_for_the_misspelt_age_limit(tmp_path: Path) -> None:
    path = tmp_path / "kit.toml"
    path.write_text("[screening]\nmin_self_concent_age = 18\n", "utf-8")
    with pytest.raises(ConfigError, match=r"did you mean min_self_consent_age\?$"):
        load_config(path)


def test_every_field_of_every_section_has_a_doc_string() -> None:
    from popup_kit.config_schema import KitToml

    for section, field in KitToml.model_fields.items():
        assert field.description, section
        model = field.annotation
        assert isinstance(model, type)
        for name, inner in model.model_fields.items():
            assert inner.description and len(inner.description) > 10, f"[{section}] {name}"


def test_the_schema_defaults_are_the_shipped_kit_toml() -> None:
    import tomllib

    from popup_kit.config import default_config_text
    from popup_kit.config_schema import KitToml

    shipped = tomllib.loads(default_config_text())
    defaults = KitToml().model_dump(mode="json")
    defaults["thresholds"] = {k: v for k, v in defaults["thresholds"].items() if v is not None}
    assert shipped == defaults


def test_threshold_names_are_the_ruleset_names() -> None:
    import tomllib

    from forms.engine import DEFINITIONS
    from popup_kit.config_schema import Thresholds

    rules = tomllib.loads((DEFINITIONS / "rules.toml").read_text("utf-8"))
    assert set(Thresholds.model_fields) == set(rules["thresholds"])


def _load_in_fresh_process(config: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from popup_kit.config import load_config\n"
        "c = load_config(sys.argv[1])\n"
        "print(c.min_self_consent_age, 'pydantic' in sys.modules)\n"
    )
    env = {**os.environ, "POPUP_KIT_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-c", code, str(config)], env=env, capture_output=True, text=True
    )


def test_a_file_checked_once_loads_without_pydantic_and_an_edit_is_checked_again(
    tmp_path: Path,
) -> None:
    config, data = tmp_path / "kit.toml", tmp_path / "data"
    config.write_text("[screening]\nmin_self_consent_age = 18\n", "utf-8")
    assert _load_in_fresh_process(config, data).stdout.split() == ["18", "True"]
    assert _load_in_fresh_process(config, data).stdout.split() == ["18", "False"]
    config.write_text("[screening]\nmin_self_concent_age = 18\n", "utf-8")
    refused = _load_in_fresh_process(config, data)
    assert refused.returncode != 0 and "min_self_concent_age" in refused.stderr
    config.write_text("[screening]\nmin_self_consent_age = 17\n", "utf-8")
    assert _load_in_fresh_process(config, data).stdout.split() == ["17", "True"]


def test_the_kit_id_is_resolved_once_at_load_and_written_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import stat

    data = tmp_path / "data"
    monkeypatch.setenv("POPUP_KIT_DATA_DIR", str(data))
    config = load_config()
    path = data / "kit-id"
    assert path.read_text("ascii").strip() == config.kit_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    path.write_text("kit-changedlater\n", "ascii")
    assert config.kit_id != "kit-changedlater"
    assert load_config().kit_id == "kit-changedlater"

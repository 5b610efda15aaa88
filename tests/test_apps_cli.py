"""``falweb apps add/list/remove`` and the FALWEB_APPS setting: what is saved, and the
errors that name the entry and the reason."""

import json

import pytest

from falweb.cli import main
from falweb.local.apps.specs import SpecError
from falweb.local.apps.specs import parse_specs
from tests.apps_helpers import EXAMPLES


def test_add_list_remove(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FALWEB_INSTANCE_PATH", str(tmp_path))
    app = f"{EXAMPLES}/fal_text_to_image.py::TextToImage"
    assert main(["apps", "add", app, "--venv", str(tmp_path / "venv")]) == 0
    assert main(["apps", "add", app, "--id", "me/t2i"]) == 0
    saved = json.loads((tmp_path / "local" / "apps.json").read_text())
    assert [e["id"] for e in saved] == ["local/text-to-image", "me/t2i"]
    assert saved[0]["venv"] == str(tmp_path / "venv") and saved[1]["venv"] == ""
    capsys.readouterr()
    assert main(["apps", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].split("\t")[:2] == ["me/t2i", app]
    assert main(["apps", "remove", "me/t2i"]) == 0
    assert main(["apps", "remove", "me/t2i"]) == 1
    assert "no saved app with the id 'me/t2i'" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "message"), [
    (["examples/app.py"], "expected FILE::Class"),
    (["a.py::not-a-class"], "expected FILE::Class with a Python class name"),
    ([{"app": "a.py::A", "id": "no-slash"}], "must be owner/app"),
    ([{"app": "a.py::A", "colour": "red"}], "unknown keys ['colour']"),
    (["a.py::A", "b.py::A"], "two apps have the endpoint id 'local/a'"),
    ("[not json", "FALWEB_APPS: not valid JSON"),
])
def test_bad_entries_name_the_entry_and_the_reason(value, message):
    with pytest.raises(SpecError, match=None) as caught:
        parse_specs(value)
    assert message in str(caught.value)


def test_the_setting_takes_a_comma_separated_list_and_derives_ids():
    specs = parse_specs("x/my_app.py::MyGoodApp, y.py::ONNXModel")
    assert [s.id for s in specs] == ["local/my-good-app", "local/o-n-n-x-model"]


def test_requirements_are_read_from_the_class_without_importing_it(tmp_path):
    from falweb.local.apps.venvs import VenvError
    from falweb.local.apps.venvs import declared_requirements

    assert declared_requirements(EXAMPLES / "fal_text_to_image.py", "TextToImage") == ["pillow"]
    assert declared_requirements(EXAMPLES / "fal_streaming.py", "StreamingText") == []
    with pytest.raises(VenvError, match="has no class 'Nope'"):
        declared_requirements(EXAMPLES / "fal_streaming.py", "Nope")


def test_create_venv_refuses_a_native_app(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FALWEB_INSTANCE_PATH", str(tmp_path))
    assert main(["apps", "add", f"{EXAMPLES}/native_text_to_image.py::TextToImage",
                 "--create-venv"]) == 1
    assert "runs in falweb's own interpreter" in capsys.readouterr().err

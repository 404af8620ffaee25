"""Optional dependencies: an option that needs a package not installed is a one-line error naming the extra."""

from __future__ import annotations

import importlib.util

import pytest

from lit_clf.loading import check_load_options


@pytest.mark.parametrize(
    "missing, options, expected",
    [
        ("peft", {"load_in_4bit": False, "lora": {"r": 8}, "pretrained": True}, "lora: needs the peft package"),
        ("bitsandbytes", {"load_in_4bit": True, "lora": {"r": 8}, "pretrained": True}, "lit_clf[qlora]"),
    ],
)
def test_an_option_needing_a_missing_extra_names_it(missing, options, expected, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")) as error:
        check_load_options(**options)
    assert "\n" not in str(error.value)


def test_installed_extras_pass():
    check_load_options(load_in_4bit=False, lora={"r": 8}, pretrained=True)
    check_load_options(load_in_4bit=False, lora=None, pretrained=False)

"""autoresearch.toml: every setting modelled, defaults from the fields, comments kept, typos refused."""

from __future__ import annotations

from dataclasses import fields

import pytest

from autoresearch.config import Config, KeepRule
from autoresearch.research import keeprule
from autoresearch.errors import AutoresearchError

def test_every_setting_round_trips_and_the_file_explains_itself():
    config = Config(budget=12.5, editable=("a.py", "b.py"), direction="higher", harness_sha256="ab", allowance=7.0,
                    keep=KeepRule(baseline_runs=3, p_keep=0.97, max_runs=4))
    text = config.to_toml()
    assert Config.from_toml(text) == config
    assert "# seconds of training per experiment" in text and "[keep]" in text and "[metric]" in text

def test_defaults_come_from_the_fields_alone():
    assert Config.from_toml("") == Config()
    assert Config.from_toml("").dataset == Config().dataset == "pysource"
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    written = tomllib.loads(Config().to_toml())
    for f in fields(Config):  # every setting is written, at its place, with its default
        if f.name == "keep":
            assert written["keep"] == {k.name: k.default for k in fields(KeepRule)}
            continue
        table = written[f.metadata["table"]] if f.metadata.get("table") else written
        value = table[f.metadata.get("key") or f.name]
        assert (tuple(value) if isinstance(value, list) else value) == f.default

@pytest.mark.parametrize("text, message", [
    ("budgit = 1\n", "unknown setting 'budgit'"),
    ("[keep]\nzz = 2\n", "unknown setting [keep] 'zz'"),
    ("[keep]\np_keep = \"no\"\n", "keep.p_keep must be a number"),
    ("[keep]\np_keep = 0.5\n", "[keep] needs 0 < first_stop <= stop < p_keep < 1"),
    ("[keep]\nmax_runs = 1\n", "[keep] needs max_runs >= 2"),
    ("budget = \"soon\"\n", "budget must be a number"),
    ("editable = \"train.py\"\n", "editable must be a list of strings"),
    ("[metric]\ndirection = \"up\"\n", "direction must be 'lower' or 'higher'"),
    ("budget = \n", "is not valid TOML"),
])
def test_a_bad_setting_is_one_line_naming_it(text, message):
    with pytest.raises(AutoresearchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Config.from_toml(text)

def test_a_hand_edited_value_with_its_own_comment_reads_back():
    text = Config().to_toml().replace("budget = 60.0", "budget = 30.0 # shorter for a quick look")
    assert Config.from_toml(text).budget == 30.0

def test_settings_of_the_earlier_keep_rule_still_open_and_are_ignored():
    cfg = Config.from_toml("[keep]\nz = 2.5\nconfirm = true\nconfirm_all = false\nbaseline_runs = 3\n")
    assert cfg.keep.baseline_runs == 3 and cfg.keep.rule() == keeprule.Rule()

"""Tests of the fxpkcs11.cfg reader."""

from __future__ import annotations

import os
import pickle

import pytest

from fxpkcs11 import config as cfgmod
from fxpkcs11.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    HsmConfig,
    find_config_path,
    load_config,
    parse_config,
)

ENV = {"HOME": "/home/tester"}

# Section [7] of the integration guide, verbatim.
GUIDE_BLOCK = """\
<HSM>
# Which PKCS11 slot
<SLOT>          0          </SLOT>
<LABEL>         Futurex   </LABEL>

# HSM crypto operator user name
<CRYPTO-OPR>    [identity_name] </CRYPTO-OPR>
# Automatically login on session open
#<CRYPTO-OPR-PASS> [identity_password] </CRYPTO-OPR-PASS>

# Connection information
<ADDRESS>       10.0.8.30   </ADDRESS>
<PROD-PORT>    9100        </PROD-PORT>
<PROD-TLS-ENABLED> YES      </PROD-TLS-ENABLED>
<PROD-TLS-ANONYMOUS> NO    </PROD-TLS-ANONYMOUS>
# <PROD-TLS-CA> /home/user/tls/root.pem </PROD-TLS-CA>
# <PROD-TLS-CA> /home/user/tls/sub1.pem </PROD-TLS-CA>
# <PROD-TLS-CA> /home/user/tls/sub2.pem </PROD-TLS-CA>
<PROD-TLS-KEY> /home/user/tls/PKI.p12 </PROD-TLS-KEY>
<PROD-TLS-KEY-PASS> safest </PROD-TLS-KEY-PASS>

# YES = This is communicating through a Guardian
<FX-LOAD-BALANCE> NO      </FX-LOAD-BALANCE>
</HSM>
"""


def parse(text: str, environ: dict[str, str] | None = None) -> Config:
    return parse_config(text, "test.cfg", ENV if environ is None else environ)


def parse_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def block(*lines: str) -> str:
    return "\n".join(["<HSM>", *lines, "</HSM>"]) + "\n"


# --- the shipped default and the guide ------------------------------------------

def test_shipped_default_is_one_embedded_slot_0() -> None:
    assert os.path.isabs(DEFAULT_CONFIG)
    assert DEFAULT_CONFIG.endswith(os.path.join("config", "fxpkcs11.cfg"))
    config = load_config(DEFAULT_CONFIG, ENV)
    assert config.warnings == []
    assert config.log_mode == "ERROR"
    assert config.log_file is None
    [hsm] = config.hsms
    assert (hsm.slot, hsm.label, hsm.embedded) == (0, "Futurex", True)
    assert hsm.crypto_opr is None and hsm.crypto_opr_pass is None
    assert hsm.endpoints() == []
    assert config.hsm_for_slot(0) is hsm
    assert config.hsm_for_slot(1) is None


def test_guide_section_7_block() -> None:
    config = parse(GUIDE_BLOCK)
    assert config.warnings == []
    [hsm] = config.hsms
    assert hsm.slot == 0
    assert hsm.label == "Futurex"
    assert hsm.crypto_opr == "[identity_name]"
    assert hsm.crypto_opr_pass is None  # commented out
    assert hsm.addresses == ["10.0.8.30"]
    assert hsm.prod_port == 9100
    assert hsm.prod_enabled is True
    assert hsm.prod_tls_enabled is True
    assert hsm.prod_tls_anonymous is False
    assert hsm.prod_tls_ca == []
    assert hsm.prod_tls_cert is None
    assert hsm.prod_tls_key == "/home/user/tls/PKI.p12"
    assert hsm.prod_tls_key_pass == "safest"
    assert hsm.fx_load_balance is False
    assert hsm.embedded is False
    assert hsm.endpoints() == [("10.0.8.30", 9100)]
    assert hsm.line == 1


def test_passwords_are_kept_out_of_repr() -> None:
    hsm = parse(GUIDE_BLOCK.replace("#<CRYPTO-OPR-PASS>", "<CRYPTO-OPR-PASS>")).hsms[0]
    assert hsm.crypto_opr_pass == "[identity_password]"
    assert "safest" not in repr(hsm) and "identity_password" not in repr(hsm)


def test_every_tag_parses() -> None:
    config = parse(
        "<LOG-FILE> /tmp/fx.log </LOG-FILE>\n<LOG-MODE> debug </LOG-MODE>\n"
        + block(
            "<SLOT> 4 </SLOT>",
            "<LABEL> Slot Token 4 </LABEL>",
            "<CRYPTO-OPR> app </CRYPTO-OPR>",
            "<CRYPTO-OPR-PASS> p#ss w0rd </CRYPTO-OPR-PASS>",
            "<ADDRESS> hsm1 </ADDRESS>",
            "<PROD-PORT> 2001 </PROD-PORT>",
            "<PROD-ENABLED> no </PROD-ENABLED>",
            "<PROD-TLS-ENABLED> false </PROD-TLS-ENABLED>",
            "<PROD-TLS-ANONYMOUS> 1 </PROD-TLS-ANONYMOUS>",
            "<PROD-TLS-CA> /ca.pem </PROD-TLS-CA>",
            "<PROD-TLS-CERT> /cert.pem </PROD-TLS-CERT>",
            "<PROD-TLS-KEY> /key.pem </PROD-TLS-KEY>",
            "<PROD-TLS-KEY-PASS> kp </PROD-TLS-KEY-PASS>",
            "<FX-LOAD-BALANCE> yes </FX-LOAD-BALANCE>",
            "<KEYGROUP-NAME> group1 </KEYGROUP-NAME>",
            "<VHSM-STATE> /var/lib/fxvhsm </VHSM-STATE>",
            "<CONNECT-TIMEOUT> 1.5 </CONNECT-TIMEOUT>",
            "<REPLY-TIMEOUT> 60 </REPLY-TIMEOUT>",
        )
    )
    assert config.warnings == []
    assert (config.log_file, config.log_mode) == ("/tmp/fx.log", "DEBUG")
    assert config.hsms[0] == HsmConfig(
        slot=4, label="Slot Token 4", crypto_opr="app", crypto_opr_pass="p#ss w0rd",
        addresses=["hsm1"], prod_port=2001, prod_enabled=False, prod_tls_enabled=False,
        prod_tls_anonymous=True, prod_tls_ca=["/ca.pem"], prod_tls_cert="/cert.pem",
        prod_tls_key="/key.pem", prod_tls_key_pass="kp", fx_load_balance=True,
        keygroup_name="group1", vhsm_state="/var/lib/fxvhsm", connect_timeout=1.5,
        reply_timeout=60.0, line=3,
    )
    assert config.hsms[0].endpoints() == [("hsm1", 2001)]


# --- structure ------------------------------------------------------------------

def test_prod_tls_ca_is_repeatable_and_keeps_order() -> None:
    hsm = parse(block(
        "<PROD-TLS-CA> /tls/root.pem </PROD-TLS-CA>",
        "<PROD-TLS-CA> /tls/sub1.pem </PROD-TLS-CA>",
        "<PROD-TLS-CA> /tls/sub2.pem </PROD-TLS-CA>",
    )).hsms[0]
    assert hsm.prod_tls_ca == ["/tls/root.pem", "/tls/sub1.pem", "/tls/sub2.pem"]


def test_multiple_blocks_and_slots() -> None:
    config = parse(
        block("<LABEL> first </LABEL>")
        + "\n"
        + block("<SLOT> 7 </SLOT>", "<LABEL> second </LABEL>", "<ADDRESS> hsm2 </ADDRESS>")
        + block("<LABEL> third </LABEL>")
    )
    assert [(h.slot, h.label) for h in config.hsms] == [(0, "first"), (7, "second"), (2, "third")]
    assert [h.line for h in config.hsms] == [1, 5, 10]
    assert config.hsm_for_slot(7).label == "second"
    assert config.hsm_for_slot(0).embedded and not config.hsm_for_slot(7).embedded
    assert config.hsm_for_slot(1) is None


def test_top_level_tags_are_defaults_for_every_block() -> None:
    config = parse(
        "<CRYPTO-OPR> shared </CRYPTO-OPR>\n"
        "<ADDRESS> 10.0.0.1 </ADDRESS>\n"
        "<PROD-TLS-ANONYMOUS> YES </PROD-TLS-ANONYMOUS>\n"
        + block("<SLOT> 0 </SLOT>")
        + block("<SLOT> 1 </SLOT>", "<CRYPTO-OPR> own </CRYPTO-OPR>", "<ADDRESS> 10.0.0.2 </ADDRESS>")
    )
    first, second = config.hsms
    assert (first.crypto_opr, first.addresses, first.prod_tls_anonymous) == ("shared", ["10.0.0.1"], True)
    assert (second.crypto_opr, second.addresses, second.prod_tls_anonymous) == ("own", ["10.0.0.2"], True)
    first.addresses.append("x")  # blocks do not share the default list
    assert second.addresses == ["10.0.0.2"]


def test_top_level_defaults_may_follow_the_blocks() -> None:
    hsm = parse(block("<SLOT> 3 </SLOT>") + "<LABEL> late </LABEL>\n").hsms[0]
    assert (hsm.slot, hsm.label) == (3, "late")


def test_no_block_gives_one_embedded_slot_0() -> None:
    config = parse("# nothing but a comment\n<LOG-MODE> info </LOG-MODE>\n")
    [hsm] = config.hsms
    assert (hsm.slot, hsm.label, hsm.embedded, hsm.line) == (0, "Futurex", True, 0)
    assert config.log_mode == "INFO"
    assert parse("").hsms[0].slot == 0


def test_flat_file_without_block_uses_top_level_settings() -> None:
    [hsm] = parse("<SLOT> 5 </SLOT>\n<ADDRESS> hsm </ADDRESS>\n").hsms
    assert (hsm.slot, hsm.addresses) == (5, ["hsm"])


@pytest.mark.parametrize("wrapper", ["CONFIG", "FXPKCS11", "config"])
def test_optional_wrapper(wrapper: str) -> None:
    config = parse(f"<{wrapper}>\n<LOG-MODE> WARN </LOG-MODE>\n{GUIDE_BLOCK}</{wrapper}>  # end\n")
    assert config.warnings == []
    assert config.log_mode == "WARN"
    assert config.hsms[0].addresses == ["10.0.8.30"]


def test_global_tag_inside_block_applies_globally_with_a_warning() -> None:
    config = parse(block("<LOG-MODE> TRACE </LOG-MODE>"))
    assert config.log_mode == "TRACE"
    assert config.warnings == ["test.cfg:2: <LOG-MODE> is a global setting; it applies to every slot"]


# --- values ---------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("YES", True), ("yes", True), ("True", True), ("1", True),
    ("NO", False), ("no", False), ("FALSE", False), ("0", False),
])
def test_booleans(text: str, expected: bool) -> None:
    hsm = parse(block(f"<FX-LOAD-BALANCE> {text} </FX-LOAD-BALANCE>")).hsms[0]
    assert hsm.fx_load_balance is expected


@pytest.mark.parametrize("text, expected", [
    ("error", "ERROR"), ("Warn", "WARN"), ("INFO", "INFO"), ("debug", "DEBUG"),
    ("trace", "TRACE"), ("NONE", "NONE"), ("off", "NONE"),
])
def test_log_modes(text: str, expected: str) -> None:
    assert parse(f"<LOG-MODE> {text} </LOG-MODE>").log_mode == expected


def test_comments_padding_and_case() -> None:
    config = parse(
        "   # indented comment\n"
        "\t\n"
        "  <hsm>   # block comment\n"
        "#<CRYPTO-OPR-PASS> x </CRYPTO-OPR-PASS>\n"
        "   <Slot>\t  2 \t</SLOT>   # trailing comment </LABEL>\n"
        "<label>   Futurex # prod   </Label>\n"
        "< CRYPTO-OPR >op</ CRYPTO-OPR >\n"
        "<PROD-PORT></PROD-PORT>\n"
        "  </HSM>  # done\r\n"
    )
    assert config.warnings == []
    hsm = config.hsms[0]
    assert hsm.slot == 2
    assert hsm.label == "Futurex # prod"  # '#' between the tags belongs to the value
    assert hsm.crypto_opr == "op"
    assert hsm.crypto_opr_pass is None
    assert hsm.prod_port == 9100  # an empty value counts as absent


def test_label_of_32_bytes_is_accepted() -> None:
    assert parse(block(f"<LABEL> {'L' * 32} </LABEL>")).hsms[0].label == "L" * 32


def test_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeff<LOG-MODE> INFO </LOG-MODE>\n").log_mode == "INFO"


def test_unknown_tag_warns_and_is_ignored() -> None:
    config = parse(block("<SLOT> 1 </SLOT>", "<FOO> bar </FOO>") + "<Bar-Baz></Bar-Baz>\n")
    assert config.hsms[0].slot == 1
    assert config.warnings == [
        "test.cfg:3: unknown tag <FOO> ignored",
        "test.cfg:5: unknown tag <BAR-BAZ> ignored",
    ]


def test_unknown_section_is_skipped_with_a_warning() -> None:
    config = parse("<EXTRA>\n<WHATEVER> 1 </WHATEVER>\nnot a tag\n</EXTRA>\n" + block("<SLOT> 1 </SLOT>"))
    assert config.hsms[0].slot == 1
    assert config.warnings == ["test.cfg:1: unknown section <EXTRA> ignored"]


def test_vhsm_state_default_honours_xdg_data_home() -> None:
    text = block("<SLOT> 0 </SLOT>")
    assert parse(text, {"HOME": "/h"}).hsms[0].vhsm_state == "/h/.local/share/fxvhsm"
    assert parse(text, {"HOME": "/h", "XDG_DATA_HOME": ""}).hsms[0].vhsm_state == "/h/.local/share/fxvhsm"
    assert parse(text, {"HOME": "/h", "XDG_DATA_HOME": "/xdg"}).hsms[0].vhsm_state == "/xdg/fxvhsm"


def test_vhsm_state_expands_home_and_variables() -> None:
    env = {"HOME": "/h", "STATE": "/srv/state"}
    assert parse(block("<VHSM-STATE> ~/vhsm </VHSM-STATE>"), env).hsms[0].vhsm_state == "/h/vhsm"
    assert parse(block("<VHSM-STATE> $STATE/a </VHSM-STATE>"), env).hsms[0].vhsm_state == "/srv/state/a"
    assert parse(block("<VHSM-STATE> ${STATE}/b </VHSM-STATE>"), env).hsms[0].vhsm_state == "/srv/state/b"
    assert parse(block("<VHSM-STATE> $NOPE/c </VHSM-STATE>"), env).hsms[0].vhsm_state == "$NOPE/c"


# --- addresses and endpoints ----------------------------------------------------

def test_endpoints_with_ports_and_ipv6() -> None:
    hsm = parse(block(
        "<PROD-PORT> 9200 </PROD-PORT>",
        "<ADDRESS> 10.0.8.30 </ADDRESS>",
        "<ADDRESS> hsm.example:9101 </ADDRESS>",
        "<ADDRESS> [::1]:9100 </ADDRESS>",
        "<ADDRESS> [fe80::1] </ADDRESS>",
        "<ADDRESS> 2001:db8::7 </ADDRESS>",
    )).hsms[0]
    assert hsm.endpoints() == [
        ("10.0.8.30", 9200),
        ("hsm.example", 9101),
        ("::1", 9100),
        ("fe80::1", 9200),
        ("2001:db8::7", 9200),
    ]


def test_address_list_in_one_tag() -> None:
    hsm = parse(block("<ADDRESS> a:1, b  [::2]:3 ,c </ADDRESS>", "<ADDRESS> d </ADDRESS>")).hsms[0]
    assert hsm.addresses == ["a:1", "b", "[::2]:3", "c", "d"]
    assert hsm.endpoints() == [("a", 1), ("b", 9100), ("::2", 3), ("c", 9100), ("d", 9100)]


# --- errors ---------------------------------------------------------------------

ERROR_CASES = [
    # (name, text, line, tag, part of the problem)
    ("unclosed block", "<HSM>\n<SLOT> 0 </SLOT>\n", 1, "HSM", "unclosed"),
    ("stray close", "<SLOT> 0 </SLOT>\n</HSM>\n", 2, "HSM", "without an open"),
    ("nested block", "<HSM>\n<HSM>\n</HSM>\n</HSM>\n", 2, "HSM", "nested"),
    ("block value on one line", "<HSM> x </HSM>\n", 1, "HSM", "own"),
    ("mismatched close", block("<SLOT> 0 </LABEL>"), 2, "SLOT", "mismatched closing tag </LABEL>"),
    ("missing close", block("<SLOT> 0"), 2, "SLOT", "missing closing tag </SLOT>"),
    ("missing close, tag alone", block("<LABEL>"), 2, "LABEL", "missing closing tag"),
    ("text after close", block("<SLOT> 0 </SLOT> junk"), 2, "SLOT", "unexpected text"),
    ("close without open", block("</SLOT>"), 2, "SLOT", "without an opening"),
    ("not a tag", block("<SLOT> 0 </SLOT>", "SLOT = 0"), 3, None, "expected <TAG> value </TAG>"),
    ("non-integer slot", block("<SLOT> zero </SLOT>"), 2, "SLOT", "not a slot number"),
    ("negative slot", block("<SLOT> -1 </SLOT>"), 2, "SLOT", "not a slot number"),
    ("non-integer port", block("<PROD-PORT> 91OO </PROD-PORT>"), 2, "PROD-PORT", "not a port"),
    ("port out of range", block("<PROD-PORT> 65536 </PROD-PORT>"), 2, "PROD-PORT", "not a port"),
    ("port zero", block("<PROD-PORT> 0 </PROD-PORT>"), 2, "PROD-PORT", "not a port"),
    ("bad address port", block("<ADDRESS> hsm:http </ADDRESS>"), 2, "ADDRESS", "not a port"),
    ("bad ipv6 address", block("<ADDRESS> [::1:9100 </ADDRESS>"), 2, "ADDRESS", "missing ']'"),
    ("empty host", block("<ADDRESS> :9100 </ADDRESS>"), 2, "ADDRESS", "empty host"),
    ("duplicate slot", block("<SLOT> 1 </SLOT>") + block("<SLOT> 1 </SLOT>"), 5, "SLOT",
     "slot 1 is already used by the <HSM> block at line 1"),
    ("duplicate implicit slot", block("<SLOT> 1 </SLOT>") + block(), 4, "SLOT", "already used"),
    ("repeated tag", block("<LABEL> a </LABEL>", "<label> b </label>"), 3, "LABEL",
     "repeated <LABEL> (first given at line 2)"),
    ("repeated top-level tag", "<LOG-MODE> INFO </LOG-MODE>\n<LOG-MODE> INFO </LOG-MODE>\n", 2,
     "LOG-MODE", "repeated"),
    ("bad boolean", block("<PROD-TLS-ENABLED> maybe </PROD-TLS-ENABLED>"), 2, "PROD-TLS-ENABLED",
     "not a boolean"),
    ("bad log mode", "<LOG-MODE> LOUD </LOG-MODE>\n", 1, "LOG-MODE", "not a log mode"),
    ("bad timeout", block("<CONNECT-TIMEOUT> soon </CONNECT-TIMEOUT>"), 2, "CONNECT-TIMEOUT",
     "not a timeout"),
    ("zero timeout", block("<REPLY-TIMEOUT> 0 </REPLY-TIMEOUT>"), 2, "REPLY-TIMEOUT", "more than 0"),
    ("infinite timeout", block("<REPLY-TIMEOUT> inf </REPLY-TIMEOUT>"), 2, "REPLY-TIMEOUT", "not a timeout"),
    ("label too long", block(f"<LABEL> {'x' * 33} </LABEL>"), 2, "LABEL", "at most 32"),
    ("label too long in UTF-8", block(f"<LABEL> {'é' * 17} </LABEL>"), 2, "LABEL", "34 bytes"),
    ("unclosed wrapper", "<CONFIG>\n" + GUIDE_BLOCK, 1, "CONFIG", "unclosed"),
    ("stray wrapper close", GUIDE_BLOCK + "</FXPKCS11>\n", 25, "FXPKCS11", "without an opening"),
    ("wrapper close inside block", "<CONFIG>\n<HSM>\n</CONFIG>\n", 3, "CONFIG", "inside the <HSM> block"),
    ("wrapper inside block", "<HSM>\n<CONFIG>\n</CONFIG>\n</HSM>\n", 2, "CONFIG", "wrap the whole file"),
    ("unclosed unknown section", "<EXTRA>\n<FOO> 1 </FOO>\n", 1, "EXTRA", "never closed"),
]


@pytest.mark.parametrize("name, text, line, tag, problem", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_name_file_line_and_tag(name: str, text: str, line: int, tag: str | None, problem: str) -> None:
    error = parse_error(text)
    assert (error.path, error.line, error.tag) == ("test.cfg", line, tag)
    assert problem in error.problem
    message = str(error)
    assert message.startswith(f"test.cfg:{line}: ")
    if tag is not None:
        assert f"<{tag}>" in message
    assert message.endswith(error.problem)


def test_error_message_format() -> None:
    assert str(ConfigError("f.cfg", 3, "SLOT", "bad")) == "f.cfg:3: <SLOT>: bad"
    assert str(ConfigError("f.cfg", 3, None, "bad")) == "f.cfg:3: bad"
    assert str(ConfigError("f.cfg", None, None, "bad")) == "f.cfg: bad"
    assert str(ConfigError("f.cfg", None, "LABEL", "bad")) == "f.cfg: <LABEL>: bad"
    copy = pickle.loads(pickle.dumps(ConfigError("f.cfg", 3, "SLOT", "bad")))
    assert (copy.path, copy.line, copy.tag, copy.problem) == ("f.cfg", 3, "SLOT", "bad")


# --- finding and loading the file -----------------------------------------------

def test_path_lookup_order(tmp_path, monkeypatch) -> None:
    system = tmp_path / "etc-fxpkcs11.cfg"
    monkeypatch.setattr(cfgmod, "SYSTEM_CONFIG", str(system))
    # nothing: the shipped default
    assert find_config_path({}) == DEFAULT_CONFIG
    # the system file once it exists
    system.write_text(GUIDE_BLOCK)
    assert find_config_path({}) == str(system)
    # FXPKCS11_CFG wins, even when the file it names is missing
    assert find_config_path({"FXPKCS11_CFG": "/nowhere/fx.cfg"}) == "/nowhere/fx.cfg"
    # an empty FXPKCS11_CFG counts as unset
    assert find_config_path({"FXPKCS11_CFG": ""}) == str(system)


def test_system_path_is_injectable(tmp_path) -> None:
    missing = str(tmp_path / "missing.cfg")
    assert find_config_path({}, system_path=missing) == DEFAULT_CONFIG
    present = tmp_path / "present.cfg"
    present.write_text("")
    assert find_config_path({}, system_path=str(present)) == str(present)


def test_load_config_follows_fxpkcs11_cfg(tmp_path) -> None:
    path = tmp_path / "fx.cfg"
    path.write_text(GUIDE_BLOCK)
    config = load_config(environ={"FXPKCS11_CFG": str(path), "HOME": "/h"})
    assert config.path == str(path)
    assert config.hsms[0].addresses == ["10.0.8.30"]


def test_load_config_missing_file_named_by_environment(tmp_path) -> None:
    missing = str(tmp_path / "nope.cfg")
    with pytest.raises(ConfigError) as info:
        load_config(environ={"FXPKCS11_CFG": missing})
    error = info.value
    assert (error.path, error.line, error.tag) == (missing, None, None)
    assert error.problem.startswith("cannot read: ")
    assert "FXPKCS11_CFG" in str(error) and missing in str(error)


def test_load_config_errors_carry_the_file_path(tmp_path) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text("<HSM>\n<SLOT> x </SLOT>\n</HSM>\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), ENV)
    assert str(info.value).startswith(f"{path}:2: <SLOT>: ")


def test_load_config_unreadable_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path), ENV)  # a directory
    binary = tmp_path / "binary.cfg"
    binary.write_bytes(b"<LABEL> \xff </LABEL>\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(binary), ENV)


def test_warnings_name_the_loaded_file(tmp_path) -> None:
    path = tmp_path / "fxpkcs11.cfg"
    path.write_text("# x\n<FOO> 1 </FOO>\n")
    assert load_config(str(path), ENV).warnings == [f"{path}:2: unknown tag <FOO> ignored"]

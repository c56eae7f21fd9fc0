"""The admin layer: dual control, passwords, roles and ranges, the FTK, the audit log."""
from __future__ import annotations

import pytest

from fxpkcs11 import ck
from vhsm import factory
from vhsm.admin import AdminError, AdminSession
from vhsm.device import VirtualHSM
from vhsm.excrypt import Command, Tag

NEW1, NEW2 = "Admin1-Pass", "Admin2-Pass"


@pytest.fixture
def dev(tmp_path):
    d = VirtualHSM(str(tmp_path / "state"))
    yield d
    d.close()


def session(dev, *names, password: str = factory.DEFAULT_PASSWORD) -> AdminSession:
    s = AdminSession(dev)
    for n in names:
        s.login(n, password)
    return s


def dual(dev) -> AdminSession:
    return session(dev, "Admin1", "Admin2")


def ready(dev) -> AdminSession:
    """Both administrators logged in with changed passwords."""
    s = dual(dev)
    s.change_password("Admin1", factory.DEFAULT_PASSWORD, NEW1)
    s.change_password("Admin2", factory.DEFAULT_PASSWORD, NEW2)
    return s


def snapshot(dev) -> tuple:
    return (dev.store.list_roles(), sorted((i["name"], i["role"], i["password_hash"])
                                           for i in dev.store.list_identities()),
            dev.store.get_meta("ftk_kcv"), dev.store.count_keys())


def refused(rule: str, fn, *args, **kwargs) -> AdminError:
    with pytest.raises(AdminError) as info:
        fn(*args, **kwargs)
    assert info.value.rule == rule, str(info.value)
    return info.value


# ------------------------------------------------------------------ dual control

def test_one_admin_cannot_add_role_identity_or_ftk(dev):
    s = session(dev, "Admin1")
    before = snapshot(dev)
    for fn, args, kwargs in ((s.add_role, ("App",), {"application": True, "ranges": ["(0,9)"], "perms": []}),
                             (s.add_identity, ("crypto1", "Transaction Processing", "safest"), {}),
                             (s.generate_ftk, (), {}),
                             (s.modify_role, ("Anonymous",), {"clear_perms": True})):
        e = refused("dual control", fn, *args, **kwargs)
        assert "two administrators" in e.text and "Admin1" in e.text
    assert snapshot(dev) == before
    assert dev.ftk() is None


def test_two_admins_can(dev):
    s = ready(dev)
    s.add_role("App", application=True, ranges=["(0,9)"], perms=["Keys", "Excrypt:ECHO"])
    s.add_identity("crypto1", "App", "safest")
    out = s.generate_ftk()
    role = dev.store.get_role("App")
    assert role["key_ranges"] == [(0, 9)] and role["commands"] == ["ECHO"] and role["perms"] == ["Keys"]
    assert dev.store.get_identity("crypto1")["role"] == "App"
    assert dev.ftk() is not None and out.data["kcv"] == dev.ftk().kcv
    assert dev.store.get_meta("ftk_kcv") == dev.ftk().kcv


def test_same_admin_twice_is_not_dual_control(dev):
    s = session(dev, "Admin1")
    refused("login", s.login, "Admin1", factory.DEFAULT_PASSWORD)
    refused("dual control", s.add_role, "App", application=True, ranges=[], perms=[])


def test_non_admin_identity_does_not_count_for_dual_control(dev):
    s = ready(dev)
    s.add_role("App", application=True, ranges=["(0,9)"], perms=[])
    s.add_identity("crypto1", "App", "safest")
    s2 = AdminSession(dev)
    s2.login("Admin1", NEW1)
    s2.login("crypto1", "safest")
    refused("dual control", s2.add_role, "App2", application=True, ranges=[], perms=[])


def test_logout_drops_dual_control(dev):
    s = dual(dev)
    s.logout("Admin2")
    refused("dual control", s.add_role, "App", application=True, ranges=[], perms=[])
    refused("logout", s.logout, "Admin2")


# ------------------------------------------------------------------ passwords and FTK

def test_ftk_needs_default_passwords_changed(dev):
    s = dual(dev)
    e = refused("default passwords", s.generate_ftk)
    assert "Admin1" in e.text and "Admin2" in e.text
    s.change_password("Admin1", factory.DEFAULT_PASSWORD, NEW1)
    e = refused("default passwords", s.generate_ftk)
    assert "Admin2" in e.text and "Admin1" not in e.text
    assert dev.ftk() is None
    s.change_password("Admin2", factory.DEFAULT_PASSWORD, NEW2)
    s.generate_ftk()
    assert dev.ftk() is not None


def test_wrong_password_refused(dev):
    s = AdminSession(dev)
    refused("login", s.login, "Admin1", "wrong")
    refused("login", s.login, "Nobody", factory.DEFAULT_PASSWORD)
    assert s.logged_in == []


def test_change_password_flow(dev):
    s = AdminSession(dev)
    assert dev.store.get_identity("Admin1")["flags"]["default_password"] is True
    refused("password", s.change_password, "Admin1", "not-the-old", NEW1)
    refused("password", s.change_password, "Admin1", factory.DEFAULT_PASSWORD, "abc")  # too short
    refused("password", s.change_password, "Admin1", factory.DEFAULT_PASSWORD, "x" * 65)
    refused("password", s.change_password, "Admin1", factory.DEFAULT_PASSWORD, factory.DEFAULT_PASSWORD)
    assert dev.store.get_identity("Admin1")["flags"]["default_password"] is True
    s.change_password("Admin1", factory.DEFAULT_PASSWORD, NEW1)
    assert dev.store.get_identity("Admin1")["flags"]["default_password"] is False
    refused("login", AdminSession(dev).login, "Admin1", factory.DEFAULT_PASSWORD)
    assert "Admin1" in AdminSession(dev).login("Admin1", NEW1).text
    # the other administrator is untouched
    assert dev.store.get_identity("Admin2")["flags"]["default_password"] is True
    AdminSession(dev).login("Admin2", factory.DEFAULT_PASSWORD)


def test_login_notes_default_password(dev):
    assert "default password" in AdminSession(dev).login("Admin1", factory.DEFAULT_PASSWORD).text


def test_replacing_ftk_that_wraps_keys_needs_force(dev):
    s = ready(dev)
    first = s.generate_ftk().data["kcv"]
    # without stored keys a new FTK may replace the old one
    second = s.generate_ftk().data["kcv"]
    assert dev.ftk().kcv == second
    s.add_role("App", application=True, ranges=["(0,9)"], perms=["Keys"])
    s.modify_role("App", add_perms=["Excrypt:GPKL"])
    s.add_identity("crypto1", "App", "safest")
    conn = dev.connect()
    assert conn.execute(Command("LOGI", {Tag.USER: "crypto1", Tag.PASSWORD: "safest"})).ok
    r = conn.execute(Command("GPKL", {Tag.TEMPLATE: {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES,
                                                     ck.CKA_VALUE: b"\x01" * 16, ck.CKA_TOKEN: True},
                                      Tag.READ_WRITE: True, Tag.SESSION: 1}))
    assert r.ok, r.error_text
    e = refused("major key", s.generate_ftk)
    assert "--force" in e.text and second in e.text and "1 key" in e.text
    assert dev.ftk().kcv == second and dev.store.get_meta("ftk_kcv") == second
    third = s.generate_ftk(force=True).data["kcv"]
    assert dev.ftk().kcv == third and third not in (first, second)


def test_ftk_status(dev):
    s = ready(dev)
    assert s.ftk_status() == {"FTK": {"loaded": False, "kcv": None}}
    kcv = s.generate_ftk().data["kcv"]
    assert s.ftk_status() == {"FTK": {"loaded": True, "kcv": kcv}}


# ------------------------------------------------------------------ roles and ranges

@pytest.mark.parametrize("bad", ["(999,0)", "(0,99999999)", "abc", "(0,1000000)", "(-1,5)", "(1,2,3)", ""])
def test_bad_ranges_refused_on_add(dev, bad):
    s = dual(dev)
    before = snapshot(dev)
    e = refused("key range", s.add_role, "App", application=True, ranges=[bad], perms=["Keys"])
    assert e.text
    assert snapshot(dev) == before
    assert dev.store.get_role("App") is None


@pytest.mark.parametrize("bad", ["(999,0)", "(0,99999999)", "abc"])
def test_bad_ranges_refused_on_modify(dev, bad):
    s = dual(dev)
    s.add_role("App", application=True, ranges=["(0,9)"], perms=["Keys"])
    before = snapshot(dev)
    refused("key range", s.modify_role, "App", add_ranges=[bad], add_perms=["Excrypt:ECHO"])
    refused("key range", s.modify_role, "App", clear_key_ranges=True, add_ranges=["(20,29)", bad])
    assert snapshot(dev) == before


def test_largest_range_accepted(dev):
    s = dual(dev)
    s.add_role("Big", application=True, ranges=[f"(0,{factory.KEY_TABLE_SLOTS - 1})"], perms=[])
    assert dev.store.get_role("Big")["key_ranges"] == [(0, factory.KEY_TABLE_SLOTS - 1)]


def test_range_overlap_with_another_partition_refused(dev):
    s = dual(dev)
    s.add_role("A", application=True, ranges=["(0,999)"], perms=["Keys"])
    before = snapshot(dev)
    for rng in ("(999,1999)", "(500,600)", "(0,0)", "(0,5000)"):
        e = refused("key range", s.add_role, "B", application=True, ranges=[rng], perms=[])
        assert "'A'" in e.text and "(0,999)" in e.text
    assert snapshot(dev) == before
    s.add_role("B", application=True, ranges=["(1000,1999)"], perms=[])
    before = snapshot(dev)
    refused("key range", s.modify_role, "B", add_ranges=["(900,1000)"])
    assert snapshot(dev) == before
    # a partition may redefine its own ranges
    s.modify_role("A", clear_key_ranges=True, add_ranges=["(0,499)"])
    assert dev.store.get_role("A")["key_ranges"] == [(0, 499)]
    s.modify_role("B", add_ranges=["(500,999)"])
    assert dev.store.get_role("B")["key_ranges"] == [(1000, 1999), (500, 999)]


def test_del_key_range(dev):
    s = dual(dev)
    s.add_role("A", application=True, ranges=["(0,9)", "(20,29)"], perms=[])
    s.modify_role("A", del_ranges=["(0,9)"])
    assert dev.store.get_role("A")["key_ranges"] == [(20, 29)]


def test_anonymous_is_transaction_processing(dev):
    s = dual(dev)
    assert factory.canonical_role("Anonymous") == factory.TRANSACTION_PROCESSING
    assert s.get_role("Anonymous")["name"] == factory.TRANSACTION_PROCESSING
    assert s.get_role("anonymous")["name"] == factory.TRANSACTION_PROCESSING
    s.modify_role("Anonymous", clear_perms=True, clear_key_ranges=True)
    tp = dev.store.get_role(factory.TRANSACTION_PROCESSING)
    assert tp["perms"] == [] and tp["commands"] == [] and tp["key_ranges"] == []
    assert dev.store.get_role("Anonymous") is None  # no second role was made
    refused("role", s.add_role, "Anonymous", application=True, ranges=[], perms=[])
    refused("role", s.delete_role, "Anonymous")


def test_unknown_permission_or_command_refused(dev):
    s = dual(dev)
    s.add_role("App", application=True, ranges=["(0,9)"], perms=["Keys"])
    before = snapshot(dev)
    refused("permission", s.modify_role, "App", add_perms=["Excrypt:NOPE"])
    refused("permission", s.modify_role, "App", add_perms=["Excrypt:LOGI"])  # session control
    refused("permission", s.modify_role, "App", add_perms=["Keys:Everything"])
    refused("permission", s.add_role, "App2", application=True, ranges=[], perms=["Bogus"])
    assert snapshot(dev) == before


def test_administrator_role_cannot_be_modified_or_deleted(dev):
    s = dual(dev)
    refused("role", s.modify_role, factory.ADMINISTRATOR, add_perms=["Keys"])
    refused("role", s.delete_role, factory.ADMINISTRATOR)
    refused("identity", s.delete_identity, "Admin1")


def test_delete_role_with_identities_refused(dev):
    s = dual(dev)
    s.add_role("App", application=True, ranges=["(0,9)"], perms=[])
    s.add_identity("crypto1", "App", "safest")
    e = refused("role", s.delete_role, "App")
    assert "crypto1" in e.text
    s.delete_identity("crypto1")
    s.delete_role("App")
    assert dev.store.get_role("App") is None


# ------------------------------------------------------------------ --clear-perms

@pytest.fixture
def app(dev):
    s = dual(dev)
    s.add_role("App", application=True, ranges=["(0,9)"],
               perms=["Keys:Authorized", "Keys:Import PKI", "Excrypt:ECHO", "Excrypt:RAND"])
    return s


def perms_of(dev) -> tuple[list, list, list]:
    r = dev.store.get_role("App")
    return r["perms"], r["commands"], r["key_ranges"]


def test_clear_perms_alone_clears_everything(dev, app):
    app.modify_role("App", clear_perms=True)
    assert perms_of(dev) == ([], [], [(0, 9)])  # key ranges are not permissions


def test_clear_perms_with_command_adds_keeps_key_permissions(dev, app):
    app.modify_role("App", clear_perms=True, add_perms=["Excrypt:GPKM", "Excrypt:HASH"])
    assert perms_of(dev) == (["Keys:Authorized", "Keys:Import PKI"], ["GPKM", "HASH"], [(0, 9)])


def test_clear_perms_with_key_permission_adds_keeps_commands(dev, app):
    app.modify_role("App", clear_perms=True, add_perms=["Keys"])
    assert perms_of(dev) == (["Keys"], ["ECHO", "RAND"], [(0, 9)])


def test_clear_perms_with_both_families_replaces_both(dev, app):
    app.modify_role("App", clear_perms=True, add_perms=["Keys:No Usage Wrap", "Excrypt:TIME"])
    assert perms_of(dev) == (["Keys:No Usage Wrap"], ["TIME"], [(0, 9)])


def test_without_clear_perms_adds_and_deletes(dev, app):
    app.modify_role("App", add_perms=["Excrypt:GPKM", "Keys"], del_perms=["Excrypt:RAND", "Keys:Import PKI"])
    assert perms_of(dev) == (["Keys", "Keys:Authorized"], ["ECHO", "GPKM"], [(0, 9)])


def test_clear_key_ranges(dev, app):
    app.modify_role("App", clear_key_ranges=True)
    assert perms_of(dev)[2] == []
    assert perms_of(dev)[1] == ["ECHO", "RAND"]


def test_guide_hardening_of_transaction_processing(dev):
    s = dual(dev)
    s.modify_role("Anonymous", clear_perms=True, clear_key_ranges=True)
    s.modify_role("Anonymous", add_perms=["Keys"] + [f"Excrypt:{c}" for c in
                                                    ("ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR")])
    tp = dev.store.get_role(factory.TRANSACTION_PROCESSING)
    assert tp["perms"] == ["Keys"] and factory.ALL_SLOTS not in tp["perms"]
    assert sorted(tp["commands"]) == sorted(["ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR"])
    assert tp["key_ranges"] == []


# ------------------------------------------------------------------ audit

def test_every_action_and_refusal_is_audited(dev):
    rows = lambda: dev.store.audit_rows()  # noqa: E731
    seen = len(rows())

    def expect(command: str, result: str, *texts: str) -> None:
        nonlocal seen
        now = rows()
        assert len(now) == seen + 1, [r["command"] for r in now[seen:]]
        last = now[-1]
        assert last["command"] == command and last["result"] == result, last
        for t in texts:
            assert t in last["text"], last
        seen = len(now)

    s = AdminSession(dev, audit_source="test")
    with pytest.raises(AdminError):
        s.login("Admin1", "nope")
    expect("login user", "refused", "[test]", "Admin1")
    s.login("Admin1", factory.DEFAULT_PASSWORD)
    expect("login user", "ok", "Admin1")
    with pytest.raises(AdminError):
        s.add_role("App", application=True, ranges=["(0,9)"], perms=[])
    expect("role add", "refused", "dual control")
    assert rows()[-1]["identity"] == "Admin1" and rows()[-1]["role"] == factory.ADMINISTRATOR
    s.login("Admin2", factory.DEFAULT_PASSWORD)
    expect("login user", "ok")
    with pytest.raises(AdminError):
        s.generate_ftk()
    expect("majorkey random", "refused", "default passwords")
    s.change_password("Admin1", factory.DEFAULT_PASSWORD, NEW1)
    expect("user change-password", "ok")
    with pytest.raises(AdminError):
        s.change_password("Admin2", "wrong", NEW2)
    expect("user change-password", "refused")
    s.change_password("Admin2", factory.DEFAULT_PASSWORD, NEW2)
    expect("user change-password", "ok")
    s.generate_ftk()
    expect("majorkey random", "ok", dev.ftk().kcv)
    with pytest.raises(AdminError):
        s.add_role("App", application=True, ranges=["(999,0)"], perms=[])
    expect("role add", "refused", "key range")
    s.add_role("App", application=True, ranges=["(0,999)"], perms=["Keys"])
    expect("role add", "ok", "App")
    s.modify_role("App", add_perms=["Excrypt:ECHO"])
    expect("role modify", "ok")
    with pytest.raises(AdminError):
        s.modify_role("App", add_perms=["Excrypt:NOPE"])
    expect("role modify", "refused", "NOPE")
    s.add_identity("crypto1", "App", "safest")
    expect("identity add", "ok", "crypto1")
    with pytest.raises(AdminError):
        s.add_identity("crypto1", "App", "safest")
    expect("identity add", "refused", "already exists")
    s.record_network({"interface": "Ethernet1", "ip": "10.0.0.1"})
    expect("network interface modify", "ok")
    s.delete_identity("crypto1")
    expect("identity delete", "ok")
    s.delete_role("App")
    expect("role delete", "ok")
    s.logout()
    expect("logout user", "ok")
    # listing is not an action
    s.list_roles(), s.list_identities(), s.ftk_status()
    assert len(rows()) == seen

    ok, text = dev.store.verify_audit()
    assert ok, text
    assert all(r["time"] for r in rows())


def test_audit_is_shared_across_instances(dev):
    dual(dev)
    other = VirtualHSM(dev.state_dir)
    try:
        s = AdminSession(other)
        with pytest.raises(AdminError):
            s.login("Admin1", "bad")
        assert len(other.store.audit_rows()) == 3
        ok, text = other.store.verify_audit()
        assert ok, text
    finally:
        other.close()
    assert dev.store.verify_audit()[0]

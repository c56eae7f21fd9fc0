"""A network slot whose HSM is away stays listed: C_GetSlotInfo answers, with the token
reported absent, so a consumer that lists slots (python-pkcs11's get_slots) still works and
finds the other slots."""
from __future__ import annotations

import os

from integration_fixtures import run_child
from net_support import free_port, hsm_block, make_test_ca, write_net_config
from support import build_library, make_state, write_config


def test_unreachable_network_slot_is_listed_without_its_token(tmp_path):
    build_library()
    ca = make_test_ca(str(tmp_path / "pki"))
    cert, key = ca.issue("client")
    state = make_state(str(tmp_path / "state"))
    embedded = write_config(str(tmp_path / "embedded.cfg"), state.dir)
    with open(embedded) as f:
        embedded_block = f.read().split("</HSM>")[0].replace("<SLOT> 0 </SLOT>", "<SLOT> 1 </SLOT>") + "</HSM>"
    away = hsm_block(["127.0.0.1"], slot=0, prod_port=free_port(), ca=[ca.path], cert=cert, key=key,
                     connect_timeout=2)
    cfg = write_net_config(str(tmp_path / "fx.cfg"), [away, embedded_block])
    r = run_child(cfg, """
        lib = pkcs11.lib(LIB)
        slots = {s.slot_id: s for s in lib.get_slots()}
        present = sorted(s.slot_id for s in lib.get_slots(token_present=True))
        away = slots[0]
        try:
            away.get_token()
            token = "ok"
        except pkcs11.PKCS11Error as e:
            token = type(e).__name__
        out(ids=sorted(slots), away_flags=int(away.flags), here_flags=int(slots[1].flags),
            token=token, label=slots[1].get_token().label)
    """)
    TOKEN_PRESENT, REMOVABLE = 0x1, 0x2
    assert r["ids"] == [0, 1]
    assert not r["away_flags"] & TOKEN_PRESENT and r["away_flags"] & REMOVABLE, r
    assert r["here_flags"] & TOKEN_PRESENT, r
    assert r["token"] != "ok" and r["label"] == "Futurex", r
    assert os.path.exists(cfg + ".log")

"""`make demo`'s script, end to end: the guide's set-up, then pkcs11-tool generating, signing
and verifying inside the fresh vHSM."""
import os
import subprocess

from support import ROOT


def test_demo_runs_end_to_end(tmp_path):
    run = subprocess.run(["bash", os.path.join(ROOT, "examples", "demo.sh")], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "DEMO_DIR": str(tmp_path / "demo")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "Signature is valid" in out
    assert "Key pair generated" in out and "label:      demo-rsa" in out
    assert "FTK loaded" in out and "identity crypto1 added to role vSEC_CMS" in out

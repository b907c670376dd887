"""docs/configuration.md is generated from the binary's schema tables;
this keeps it true: regenerate with scripts/gen_config_doc.sh."""
import os

from conftest import ROOT, run_hscale


def test_configuration_reference_is_current():
    r = run_hscale("help", "config")
    assert r.returncode == 0
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    assert doc.endswith(r.stdout), "docs/configuration.md is stale: run scripts/gen_config_doc.sh"
    for key in ("gateway.listen", "store.pool.size", "HSCALE_GATEWAY_LISTEN"):
        assert key in doc

"""A small churn-and-loss run (issue 10's test list): every get_all lookup
succeeds while a third of the nodes are killed and 10 % of the datagrams
are lost. On simulated hosts (network namespaces, nftables loss) where
permitted, on loopback with loss injected in the transport otherwise."""

from __future__ import annotations

import pytest

from dhtquery.bench import churn
from dhtquery.testing import namespaces_permitted

#: 6 workers of 3 DhtNodes + 1 stock peer on 3 hosts; 2 workers killed
#: (6 of 18 DhtNodes); 2 s of get_all lookups per phase at 10/s (stock
#: clients left out: their 5 s request timeouts would make each phase long).
TINY = churn.Sizes(
    node_workers=5,
    client_workers=1,
    hosts=3,
    keys=20,
    rate=10.0,
    seconds=2.0,
    with_stock=False,
)


@pytest.mark.slow
def test_a_small_churn_and_loss_run_keeps_every_lookup_successful() -> None:
    result = churn.run_dht(TINY, namespaces=None, seed=3)
    phases = result["phases"]
    assert list(phases) == list(churn.PHASES)
    if namespaces_permitted() is None:
        assert result["setup"]["namespaced"], result["setup"]["hosts"]
    assert result["setup"]["killed"]["dhtquery_nodes"] >= 0.3 * 18
    for name, phase in phases.items():
        ours = phase["dhtquery"]
        assert ours["count"] >= 20, (name, ours)
        assert ours["success"] == 1.0, (name, ours["failures"], ours["examples"])

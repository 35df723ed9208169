"""50 concurrent ingests on one worker against a rate-limited gateway: no deadlock, limit respected."""

from __future__ import annotations

import threading
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from localcloud import Dataset
from localcloud.stack import orders_source
from shared import runtime
from shared.cli import local_engine as engine
from shared.ingest.orchestrators import INGEST_ORCHESTRATOR
from shared.ingest.requests import IngestRequest
from shared.ingest.start import prepare_ingest
from shared.landing.verify import read_records

from fixtures import App


def test_fifty_concurrent_ingests_share_one_rate_limit_and_all_complete(app: App, ledger: Any) -> None:
    gateway = app.stack.cloud.gateway
    gateway.add_dataset("/dev/load", Dataset(name="load", records_per_hour=600))
    gateway.set_rate_limit(100, burst=20)
    app.write_sources(
        orders=orders_source(gateway.url, path="/load", rate_limit={"requests_per_second": 100, "burst": 20})
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    windows = [(start + timedelta(hours=i), start + timedelta(hours=i + 1)) for i in range(50)]
    shared_engine = engine(app.state_dir)
    results: dict[int, str] = {}
    tracemalloc.start()

    def ingest(i: int) -> None:
        a, b = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in windows[i])
        request = IngestRequest.model_validate({"source": "orders", "window": {"from": a, "to": b}})
        instance_id, state = prepare_ingest(request, runtime.current())
        results[i] = shared_engine.run(INGEST_ORCHESTRATOR, instance_id, state.model_dump()).runtime_status

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not any(t.is_alive() for t in threads), "an ingest is stuck"
    assert Counter(results.values()) == {"Completed": 50}
    requests = gateway.requests
    assert gateway.count(status=429) / len(requests) < 0.02, (
        "the shared bucket kept the aggregate under the limit"
    )
    assert peak < 200 * 1024 * 1024
    landed: Counter[str] = Counter()
    for a, b in windows:
        prefix = f"dev/orders/{a.strftime('%Y%m%dT%H%M%SZ')}_{b.strftime('%Y%m%dT%H%M%SZ')}"
        landed.update(r["id"] for r in read_records(app.landing, prefix))
    ledger.record(
        "50 concurrent ingests, gateway limit 100 req/s",
        runs=50,
        expected=50 * 600,
        landed=len(landed),
        duplicated=sum(n - 1 for n in landed.values()),
        outcome=f"all completed, {gateway.count(status=429)} of {len(requests)} requests throttled",
    )
    assert len(landed) == 50 * 600 and max(landed.values()) == 1

"""The layout rules: which replaced generations a manifest keeps, which parts a finalize removes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.gateway.walk import CursorTrail
from shared.ingest import layout

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_a_replaced_generation_is_kept_for_the_grace_then_dropped() -> None:
    previous = {
        "generation": 3,
        "generationFolder": "gen-0003/",
        "parts": [{"name": "gen-0003/part-00000.jsonl.gz"}],
        "replaced": [
            {"generation": 1, "folder": "", "replacedAt": (NOW - timedelta(hours=25)).isoformat()},
            {"generation": 2, "folder": "gen-0002/", "replacedAt": (NOW - timedelta(hours=1)).isoformat()},
        ],
    }
    kept = layout.kept_generations(previous, 4, NOW, timedelta(hours=24))
    assert [(k["generation"], k["folder"]) for k in kept] == [(2, "gen-0002/"), (3, "gen-0003/")]
    assert kept[-1]["replacedAt"] == NOW.isoformat()
    # Finishing the generation the manifest already names replaces nothing.
    assert [k["generation"] for k in layout.kept_generations(previous, 3, NOW, timedelta(hours=24))] == [2]


def test_finalize_removes_strays_and_expired_generations_never_later_ones() -> None:
    prefix = "dev/orders/w"
    names = [
        f"{prefix}/part-00000.jsonl.gz",  # generation 1: expired
        f"{prefix}/gen-0002/part-00000.jsonl.gz",  # kept for readers
        f"{prefix}/gen-0003/part-00000.jsonl.gz",  # ours, listed
        f"{prefix}/gen-0003/part-00001.jsonl.gz",  # ours, a stray
        f"{prefix}/gen-0004/part-00000.jsonl.gz",  # a run still in flight
        f"{prefix}/_generations/0004.json",
    ]
    listed = {"gen-0003/part-00000.jsonl.gz"}
    removed = layout.unlisted_parts(names, prefix, listed, "gen-0003/", ["gen-0002/"])
    assert removed == [names[0], names[3]]
    only = layout.unlisted_parts(names, prefix, listed, "gen-0003/", [], only_strays=True)
    assert only == [names[3]]


def test_cursor_trail_catches_a_cycle_of_any_period_carried_across_walks() -> None:
    for period in (1, 2, 3, 7):
        trail, caught = CursorTrail(), None
        for page in range(1, 100):
            # A lead-in of 5 fresh cursors, then a cycle; each page is its own walk (part).
            cursor = f"t{page}" if page <= 5 else f"c{(page - 6) % period}"
            state = trail.to_json()
            trail = CursorTrail.from_json(state)
            earlier = trail.step(cursor, page)
            if earlier is not None:
                caught = (page, earlier)
                break
        assert caught is not None, period
        page, earlier = caught
        assert (page - earlier) % period == 0 and page <= 2 * (5 + period) + 2, (period, caught)

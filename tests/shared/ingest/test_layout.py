"""The layout rules: which replaced generations a manifest keeps, which parts a finalize removes,
which landed parts a run goes on from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.gateway.walk import CursorTrail
from shared.ingest import layout
from shared.ingest.payloads import Segment
from shared.landing.parts import Checkpoint, PartInfo

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


WINDOW = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T01:00:00Z"}


def landed_part(index: int, before: int | None, after: int) -> tuple[str, Checkpoint]:
    name = layout.part_name(index)
    info = PartInfo(
        name=name,
        records=100 * (after - (before or 0)),
        bytes=1,
        uncompressed_bytes=1,
        sha256="0" * 64,
        first_request_id=None,
        last_request_id=None,
        started_at="2024-01-01T00:00:00.000000Z",
        finished_at="2024-01-01T00:00:01.000000Z",
    )
    checkpoint = Checkpoint(
        window=WINDOW, next_cursor=f"after-{after}", pages_before=before, pages_after=after, part=info
    )
    return name, checkpoint


def test_a_run_goes_on_only_from_parts_that_each_begin_where_the_one_before_ended() -> None:
    # An activity's first attempt landed parts 0 and 1 cut after pages 3 and 6, then failed; its
    # retry, on pages that had grown, cut part 0 after page 2 and failed too. Part 1 is the first
    # attempt's: going on after it would skip page 3.
    landed = [landed_part(0, 0, 2), landed_part(1, 3, 6)]
    segment = Segment(index=0, window=WINDOW)
    resumed = layout.resume(landed, [segment], "")
    assert [p.name for p in resumed] == ["part-00000.jsonl.gz"]
    assert (segment.next_part, segment.pages, segment.cursor) == (1, 2, "after-2")
    # Parts that chain are all gone on from, and so are parts landed before pages_before was kept.
    chains = [landed_part(0, 0, 3), landed_part(1, 3, 6)], [landed_part(0, None, 3), landed_part(1, None, 6)]
    for chain in chains:
        segment = Segment(index=0, window=WINDOW)
        assert len(layout.resume(chain, [segment], "")) == 2
        assert (segment.next_part, segment.pages, segment.cursor) == (2, 6, "after-6")


def test_finalize_reads_back_every_part_the_run_committed_even_past_empty_pages() -> None:
    # Pages 4-5 held no records, so no part: part 1 began after page 5. The run committed both,
    # in order; finalize reads them unchained (a plan would fetch pages 4-5 again).
    landed = [landed_part(0, 0, 3), landed_part(1, 5, 8)]
    assert len(layout.resume(landed, [Segment(index=0, window=WINDOW)], "", chained=False)) == 2
    assert len(layout.resume(landed, [Segment(index=0, window=WINDOW)], "")) == 1

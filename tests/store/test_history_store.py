"""The history file: tiers, thinning by age and by size, reading a range in buckets."""

from __future__ import annotations

from pathlib import Path

from chargebrain.store.history import HistoryStore, tier_for

DAY = 86400
NOW = 1_700_000_100  # a multiple of 10, 60 and 900 s, as the steps are


def test_rows_are_read_back_in_buckets(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.write([(0, "E1", NOW - 60 + 10 * i, 100.0 * i, 1000.0, 2000.0, None)
                 for i in range(6)])
    store.write([(0, "grid", NOW - 60, 5.0, None, None, None)])
    (e1, grid, missing) = store.read(["E1", "grid", "nothing"], NOW - 60, NOW, 30, NOW)
    assert e1.t == [NOW - 60, NOW - 30]
    assert e1.power_w == [100.0, 400.0]  # means of 0,100,200 and 300,400,500
    assert e1.l1 == [1000.0, 1000.0] and e1.l3 == [None, None]
    assert grid.power_w == [5.0]
    assert missing.t == []
    store.close()


def test_the_tier_read_is_the_finest_that_still_holds_the_start() -> None:
    assert tier_for(NOW - DAY, NOW) == 0
    assert tier_for(NOW - 3 * DAY, NOW) == 1
    assert tier_for(NOW - 31 * DAY, NOW) == 2


def test_thinning_by_age_and_by_size(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.write([(0, "E1", NOW - 3 * DAY, 1.0, None, None, None),
                 (0, "E1", NOW - DAY, 2.0, None, None, None),
                 (1, "E1", NOW - 31 * DAY, 3.0, None, None, None),
                 (1, "E1", NOW - 29 * DAY, 4.0, None, None, None)])
    store.write([(2, f"S{n}", NOW - 400 * DAY + 900 * i, 1.0, 1.0, 1.0, 1.0)
                 for n in range(20) for i in range(2000)])
    assert store.thin(NOW, max_bytes=10**9) == 2  # one row of tier 0 and one of tier 1
    assert store.read(["E1"], NOW - 2 * DAY, NOW, 10, NOW)[0].power_w == [2.0]
    before = store.size_bytes()
    oldest = store.read(["S0"], NOW - 401 * DAY, NOW, 900, NOW)[0].t[0]
    assert store.thin(NOW, max_bytes=before // 2) > 0
    assert store.size_bytes() <= before // 2
    kept = store.read(["S0"], NOW - 401 * DAY, NOW, 900, NOW)[0].t
    assert kept and kept[0] > oldest and kept[-1] == NOW - 400 * DAY + 900 * 1999
    store.close()


def test_the_file_is_reopened_with_its_series(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    store.write([(0, "pv", NOW, 7.0, None, None, None)])
    store.close()
    again = HistoryStore(path)
    assert again.series_names() == ["pv"]
    assert again.read(["pv"], NOW - 10, NOW + 10, 10, NOW)[0].power_w == [7.0]
    again.close()


def test_a_damaged_file_is_put_aside(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    store = HistoryStore(path)
    store.write([(0, "pv", NOW, 7.0, None, None, None)])
    assert store.series_names() == ["pv"]
    assert (tmp_path / "h.sqlite.damaged").read_bytes().startswith(b"not a database")
    store.close()

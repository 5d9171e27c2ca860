"""Charging schedules by time of day (manager/schedules.py): which limit is in force,
and what is stored."""

from __future__ import annotations

from typing import Any

from chargebrain.manager.schedules import (
    SETTINGS_KEY,
    SITE,
    ChargeSchedules,
    Entry,
    Schedule,
)


class Settings:
    """A settings store in memory."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)
        self.writes = 0

    def get_setting(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.writes += 1


def test_the_lowest_limit_in_force_counts_and_limits_run_past_midnight() -> None:
    s = Schedule((Entry(st=480, dr=60, lm=10000), Entry(st=510, dr=60, lm=6000),
                  Entry(st=1380, dr=120, lm=0), Entry(st=600, dr=60, lm=1, dc=True)))
    assert s.limit_at(479) is None
    assert s.limit_at(480) == 10000
    assert s.limit_at(510) == 6000  # both: the lower
    assert s.limit_at(569) == 6000 and s.limit_at(570) is None
    assert s.limit_at(1380) == 0 and s.limit_at(1439) == 0
    assert s.limit_at(0) == 0 and s.limit_at(59) == 0 and s.limit_at(60) is None
    assert s.limit_at(620) is None  # a discharge limit is no charging limit


def test_schedules_are_stored_unless_temporary() -> None:
    store = Settings()
    plans = ChargeSchedules(store)
    plans.set(SITE, [Entry(0, 1440, 20000)])
    plans.set("E2", [Entry(480, 60, 6000)])
    assert store.values[SETTINGS_KEY] == {
        SITE: [{"dc": False, "st": 0, "dr": 1440, "lm": 20000}],
        "E2": [{"dc": False, "st": 480, "dr": 60, "lm": 6000}]}
    plans.set(SITE, [Entry(0, 1440, 1000)], temporary=True)
    plans.set("E2", [], temporary=True)  # no limits until the next start
    assert plans.limit(SITE, 700) == 1000 and plans.limit("E2", 500) is None
    schedule = plans.get(SITE)
    assert schedule is not None and not schedule.persisted
    # After a restart the stored ones are in force again.
    again = ChargeSchedules(store)
    assert again.limit(SITE, 700) == 20000 and again.limit("E2", 500) == 6000
    again.forget("E2")
    assert store.values[SETTINGS_KEY] == {SITE: [{"dc": False, "st": 0, "dr": 1440,
                                                  "lm": 20000}]}
    assert again.get("E2") is None
    again.set(SITE, [])
    assert store.values[SETTINGS_KEY] == {} and not again


def test_a_stored_schedule_that_cannot_be_used_is_left_out() -> None:
    store = Settings(**{SETTINGS_KEY: {SITE: [{"st": 0, "dr": 0, "lm": 5}],
                                       "E3": [{"st": 60, "dr": 30, "lm": 7000}]}})
    plans = ChargeSchedules(store)
    assert plans.get(SITE) is None
    assert plans.limit("E3", 70) == 7000

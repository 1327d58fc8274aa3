"""`Database.write_turn`: on a SQLite file, writers queue on a kernel lock before BEGIN
IMMEDIATE (the one-click POST uses it); elsewhere it does nothing."""

from __future__ import annotations

import threading

from mailprefs.db import Database


def test_a_second_writer_waits_for_the_first_and_follows_as_soon_as_it_is_done(tmp_path):
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    first, second = Database(url), Database(url)  # two open files: as two processes
    entered = threading.Event()

    def other() -> None:
        with second.write_turn():
            entered.set()

    with first.write_turn():
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3), "the second writer waits while the first holds its turn"
    assert entered.wait(10), "and takes its turn once the first is done"
    thread.join(10)
    assert (tmp_path / "turns.db-writelock").exists()
    first.dispose()
    second.dispose()


def test_no_turn_is_taken_without_a_database_file(tmp_path):
    memory = Database("sqlite://")
    with memory.write_turn(), memory.write_turn():  # nothing to wait for, even nested
        pass
    assert list(tmp_path.iterdir()) == []
    memory.dispose()

"""Shared helpers of the Streamlit AppTest suites."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60  # s per run: a cold torch import plus a page on a busy 2-core machine


def app() -> AppTest:
    """A fresh AppTest of the whole app (``app.py`` with its navigation)."""
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def assert_no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def open_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    """``page`` (e.g. ``"pages/tps.py"``) opened like a shared link with ``query``."""
    at = app().run()
    assert_no_exception(at)
    if query:
        at.query_params = dict(query)
    at.switch_page(page).run()
    assert_no_exception(at)
    return at


def record_downloads(monkeypatch) -> dict[str, bytes]:
    """Data of every file the pages hand to ``st.download_button``, by media file id (the URL's
    stem); AppTest's download-button element does not expose its data."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    seen: dict[str, bytes] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def recording(self, data, mimetype, kind, filename=None):
        file_id = load(self, data, mimetype, kind, filename)
        seen[file_id] = data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    from streamlit.runtime.media_file_manager import MediaFileManager

    add_deferred = MediaFileManager.add_deferred

    def recording_deferred(self, data_callable, *args, **kwargs):  # data made on a click: keep the maker
        file_id = add_deferred(self, data_callable, *args, **kwargs)
        seen[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording_deferred)
    return seen


def downloads(at: AppTest, seen: dict, label: str) -> list[bytes]:
    """Data of the download buttons labelled ``label`` (see :func:`record_downloads`); a deferred button's
    data (made only when clicked) is made here, as a click would."""
    out = []
    for b in at.get("download_button"):
        if b.label != label:
            continue
        if b.proto.deferred_file_id:
            out.append(seen[b.proto.deferred_file_id]())
        else:
            out.append(seen[b.proto.url.rsplit("/", 1)[1].split(".")[0]])
    return out

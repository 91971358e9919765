"""What the preview worker sends back is checked before the web process uses it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gateway.wire import Frame, WireError
from quarantine.pages import check_result


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def manifest(*sizes: list[int]) -> dict[str, object]:
    return {
        "documents": [
            {
                "part_id": "2",
                "filename": "a.pdf",
                "kind": "pdf",
                "page_count": len(sizes),
                "sizes": list(sizes),
                "text": None,
                "problem": "",
            }
        ]
    }


def test_a_well_formed_result_is_accepted() -> None:
    documents, pages = check_result(Frame(manifest([10, 20]), (png(10, 20),)))
    assert documents[0].sizes == ((10, 20),)
    assert pages[0][0].startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (Frame(manifest([10, 20]), (png(10, 21),)), "does not match its size"),
        (Frame(manifest([10, 20]), (b"GIF89a" + b"\x00" * 40,)), "not a PNG"),
        (Frame(manifest([10, 20]), ()), "fewer images"),
        (Frame(manifest([10, 20]), (png(10, 20), png(1, 1))), "more images"),
        (Frame(manifest([10, 99999]), (png(10, 20),)), "less than or equal"),
        (Frame({"documents": [{"kind": "exe"}]}), "documents.0"),
    ],
)
def test_a_forged_result_is_refused(frame: Frame, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        check_result(frame)

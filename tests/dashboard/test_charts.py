"""The SVG plots: well-formed, one mark per chunk or pattern, at the right place."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest

from patternflow.web.charts import HEIGHT, detections_chart, lag_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("high", [0.004, 0.9, 1, 7, 12.5, 99, 100, 101, 4_321, 2e6])
def test_ticks_are_round_evenly_spaced_and_cover_the_highest_value(high):
    ticks = nice_ticks(high)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0 and ticks[-1] >= high > ticks[-2]
    assert all(math.isclose(b - a, step) for a, b in itertools.pairwise(ticks))
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5, 10))
    assert 2 <= len(ticks) <= 7


def chunk(index: int, uploaded: float, lag: float) -> dict:
    return {"index": index, "uploaded_at": uploaded, "lag_seconds": lag}


def test_the_lag_chart_has_one_point_per_chunk_higher_for_a_longer_lag():
    chunks = [chunk(0, 100.0, 0.5), chunk(1, 101.0, 2.0), chunk(2, 102.0, 1.0)]
    svg = ET.fromstring(lag_chart(chunks))
    dots = svg.findall(f"{SVG}circle")
    assert [d.find(f"{SVG}title").text.split(":")[0] for d in dots] == ["chunk 0", "chunk 1", "chunk 2"]
    ys = [float(d.get("cy")) for d in dots]
    xs = [float(d.get("cx")) for d in dots]
    assert ys[1] < ys[2] < ys[0] < HEIGHT  # SVG's y grows downwards
    assert xs[0] < xs[1] < xs[2]
    assert math.isclose(xs[1] - xs[0], xs[2] - xs[1])  # x is the upload time


def test_the_detections_chart_has_bars_in_proportion_to_the_counts():
    svg = ET.fromstring(detections_chart({"PatId1": 10, "PatId2": 40, "PatId3": 0}))
    widths = {r.find(f"{SVG}title").text.split(":")[0]: float(r.get("width")) for r in svg.findall(f"{SVG}rect")}
    assert widths["PatId3"] == 0 and math.isclose(widths["PatId2"], 4 * widths["PatId1"])


def test_charts_without_data_say_so():
    assert "no chunk processed yet" in lag_chart([])
    ET.fromstring(detections_chart({"PatId1": 0, "PatId2": 0, "PatId3": 0}))

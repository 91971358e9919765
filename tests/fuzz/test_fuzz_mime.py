"""The MIME fuzzers in CI: a bounded coverage-guided run of each target, and every input they
ever found replayed as a regression.

``tests/fuzz/fuzz_mime.py`` (atheris) runs each target for ``FUZZ_RUNS`` executions (at most
``FUZZ_SECONDS``) from seeds made of the shared corpus and the ambiguous set; it must end
without a failing property. Each run
writes its executions and time to ``tests/artifacts/fuzz-TARGET.json``, and what it finds to
``tests/artifacts/fuzz-crashes/`` (minimise it, save it in ``tests/fuzz/regressions/``).
Longer runs: see that file's docstring (``-max_total_time=3600``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import mime_properties
from tests.fuzz.seeds import REGRESSIONS, write_seeds

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE.parent / "artifacts"
# A fixed number of executions from a fixed seed: the same inputs every run, so a red CI is a
# regression, not a lucky draw (as the property tests run derandomized). About 20-60 s each
# on two cores; MUGAIKA_FUZZ_RUNS=0 with MUGAIKA_FUZZ_SECONDS explores for as long as asked.
FUZZ_RUNS = int(os.environ.get("MUGAIKA_FUZZ_RUNS", "6000"))
FUZZ_SECONDS = int(os.environ.get("MUGAIKA_FUZZ_SECONDS", "150"))

REGRESSION_FILES = sorted(REGRESSIONS.glob("*.eml"))


@pytest.mark.parametrize("path", REGRESSION_FILES, ids=[p.stem for p in REGRESSION_FILES])
def test_what_the_fuzzer_found_stays_fixed(path):
    data = path.read_bytes()
    for target in mime_properties.TARGETS.values():
        target(data)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(mime_properties.TARGETS))
def test_bounded_fuzzing_finds_nothing(target, tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed (requirements-dev.lock)")
    seeds = tmp_path / "seeds"
    count = write_seeds(seeds)
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_mime.py"),
            target,
            f"-runs={FUZZ_RUNS or -1}",
            f"-max_total_time={FUZZ_SECONDS}",
            "-max_len=65536",
            "-rss_limit_mb=2048",
            "-timeout=30",  # one input taking longer is a finding (denial of service)
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(seeds),
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
    )
    done = re.findall(r"Done (\d+) runs in (\d+) second", run.stderr)
    coverage = re.findall(r"cov: (\d+)", run.stderr)
    crashes = [p.name for p in tmp_path.glob("crash-*")]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"fuzz-{target}.json").write_text(
        json.dumps(
            {
                "target": target,
                "seeds": count,
                "executions": int(done[-1][0]) if done else None,
                "seconds": int(done[-1][1]) if done else None,
                "coverage": int(coverage[-1]) if coverage else None,
                "crashes": crashes,
            }
        )
    )
    kept = ARTIFACTS / "fuzz-crashes"
    for crash in tmp_path.glob("crash-*"):
        kept.mkdir(exist_ok=True)
        (kept / f"{target}-{crash.name}.eml").write_bytes(crash.read_bytes())
    output = run.stdout + run.stderr  # atheris prints the exception on stdout
    failure = output.partition("=== Uncaught Python exception: ===")[2][:2500]
    assert run.returncode == 0, f"kept in {kept}: {failure or run.stderr[-2500:]}"
    assert crashes == []
    assert done, run.stderr[-2000:]

"""A plain ``pip install .`` (a wheel, not the editable install of development) works away from the
source tree: the package data (Elasticsearch templates, topic file, source registry) comes with it.

The venv is made with ``--system-site-packages`` so torch and the other dependencies are not downloaded
again; the test checks that the project itself is imported from the venv, not from the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.store_elastic import ElasticStore
from sednaya_monitor.wiring import elastic_config
from tests.store_fixtures import NoidaServer, elastic_settings, make_article

ROOT = Path(__file__).resolve().parent.parent
STEP_TIMEOUT_S = 300  # building a wheel and installing it on a loaded machine

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    assert done.returncode == 0, (
        f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.mark.timeout(900)
def test_wheel_installed_in_a_fresh_venv_searches_an_elasticsearch_store(
    noida_server: NoidaServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SEDNAYA_MONITOR_")}
    env.update({"HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("sednaya_monitor-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)], tmp_path, env)
    where = _run(
        [
            str(python),
            "-c",
            "import indexer.store_elastic as m, sednaya_monitor.settings as s; print(m.__file__); print(s.__file__)",
        ],
        tmp_path,
        env,
    ).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where

    settings = elastic_settings(noida_server.url, tmp_path / "writer").replace(es_prefix="wheel")
    store = ElasticStore(elastic_config(settings), refresh=True)
    try:
        store.ensure_ready()
        article = make_article(title="Crematorium at Sednaya prison", text="Reports of a crematorium at Sednaya.")
        assert store.write_articles([article]) == []
    finally:
        store.close()
    env["SEDNAYA_MONITOR_ES_PREFIX"] = "wheel"
    found = _run(
        [
            str(venv / "bin" / "sednaya-monitor"),
            "--data-dir",
            str(tmp_path / "reader"),
            "search",
            "crematorium",
            "--store",
            noida_server.url,
            "--json",
        ],
        tmp_path,
        env,
    )
    result = json.loads(found.stdout)
    assert [hit["id"] for hit in result["hits"]] == [article.id], found.stdout

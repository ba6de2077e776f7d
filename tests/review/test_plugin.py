"""The review app inside Airflow 3's api-server: the provider's ``airflow.plugins`` entry point
mounts it, and Airflow's auth manager guards it. The api-server FastAPI app is built in-process
(``airflow.api_fastapi.app.create_app``) with a TestClient, in a child interpreter with its own
``AIRFLOW_HOME`` (Airflow reads its configuration once per process)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.review.conftest import Quarantined

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
RUN_ID = "manual__2026-12-06T14:50:54.976483+00:00"

CHECK = r"""
import json, sys
from fastapi.testclient import TestClient
from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

app = create_app("core")
client = TestClient(app)
am = get_auth_manager()
admin = am.generate_jwt(SimpleAuthManagerUser(username="ada", role="admin"))
nobody = am.generate_jwt(SimpleAuthManagerUser(username="nemo", role=None))
out = {}
out["anonymous"] = client.get("/deepocr-review/").status_code
decide = "/deepocr-review/doc/" + "0" * 64 + "/decide"
out["anonymous_post"] = client.post(decide, data={"decision": "approve"}).status_code
out["bad_token"] = client.get("/deepocr-review/", headers={"Authorization": "Bearer not-a-jwt"}).status_code
out["not_allowed"] = client.get("/deepocr-review/", headers={"Authorization": f"Bearer {nobody}"}).status_code
r = client.get("/deepocr-review/", headers={"Authorization": f"Bearer {admin}"})
out["admin"] = r.status_code
out["items"] = r.text.count('class="item"')
client.cookies.set("_token", admin)  # the UI's session cookie works too
out["cookie"] = client.get("/deepocr-review/").status_code
# api-server workers are separate processes: a form served by one is posted to another
import re
from airflow_provider_deepocr.review.plugin import build_app
doc = re.search(r"doc/([0-9a-f]{64})", r.text).group(1)
page = client.get(f"/deepocr-review/doc/{doc}")
out["run_links"] = re.findall(r'<a class="run" href="([^"]+)">([^<]+)</a>', page.text)
out["queue_run_links"] = re.findall(r'<a class="run" href="([^"]+)">([^<]+)</a>', r.text)
csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
other = TestClient(build_app())
other.cookies.set("_token", admin)
posted = other.post(f"/doc/{doc}/decide", data={"decision": "reject", "csrf": csrf})
out["other_worker_post"] = posted.status_code
plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {admin}"}).json()["plugins"]
mine = [p for p in plugins if p["name"] == "deepocr_review"]
out["plugin"] = mine[0] if mine else None
print("RESULT " + json.dumps(out))
"""


def test_the_plugin_is_mounted_in_the_api_server_behind_the_auth_manager(
    quarantined: Quarantined, tmp_path: Path
) -> None:
    # the quarantining run as a DAG run of the hospital DAG, its id as Airflow writes it
    with sqlite3.connect(quarantined.db) as conn:
        for table in ("runs", "failures", "validation_results"):
            conn.execute(f"update deepocr_{table} set run_id = ?", (RUN_ID,))
        conn.execute("update deepocr_runs set dag_id = 'hospital_records'")
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ada:admin",
        "AIRFLOW__DEEPOCR__REVIEW_WAREHOUSE": quarantined.url,
        "AIRFLOW__DEEPOCR__REVIEW_WORK_DIR": str(quarantined.work),
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, timeout=300, check=True)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT ") :])
    assert out["anonymous"] == 401 and out["anonymous_post"] == 401
    assert out["bad_token"] == 403 and out["not_allowed"] == 403
    assert out["admin"] == 200 and out["items"] == 4 and out["cookie"] == 200
    # the real run id, linked to the DAG run's page in Airflow's UI
    link = ("/dags/hospital_records/runs/manual__2026-12-06T14:50:54.976483+00:00", RUN_ID)
    assert out["run_links"] == [list(link)] and out["queue_run_links"] == [list(link)] * 4
    assert out["other_worker_post"] == 200  # the form token holds across api-server workers
    plugin = out["plugin"]
    assert plugin is not None
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/deepocr-review"]
    assert [v["href"] for v in plugin["external_views"]] == ["deepocr-review/"]

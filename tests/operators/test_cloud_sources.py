"""The listing operator on gs:// and Azure sources with its work area in the same store (the
worker's environment pointing at the emulators), and its OpenLineage input named by the spec."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.sources import storage_for
from airflow_provider_deepocr.operators.deepocr import DeepOcrListDocumentsOperator


@pytest.fixture(params=["gcs", "azure"])
def bucket(request: pytest.FixtureRequest) -> dict[str, str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    if request.param == "gcs":
        request.getfixturevalue("gcs_env")
        storage: Any = storage_for(f"gs://{name}")
        storage.client.create_bucket(name)
        return {"base": f"gs://{name}", "namespace": f"gs://{name}"}
    azure = request.getfixturevalue("azure_env")
    storage = storage_for(f"az://{name}")
    storage.service.create_container(name)
    return {"base": f"az://{name}", "namespace": f"wasbs://{name}@{azure['account']}.dfs.core.windows.net"}


def test_listing_operator_on_the_store_writes_its_manifest_there(bucket: dict[str, str]) -> None:
    import pymupdf

    base = bucket["base"]
    storage = storage_for(base)
    for name in ("a.pdf", "sub/b.pdf"):
        doc = pymupdf.open()
        doc.new_page().insert_text((40, 60), f"document {name}")
        storage.write(f"{base}/in/{name}", doc.tobytes())
    op = DeepOcrListDocumentsOperator(
        task_id="list", source_uri=f"{base}/in/", work_uri=f"{base}/work", shard_pages=None
    )
    [manifest] = op.execute({"run_id": "manual__1"})
    assert manifest.startswith(f"{base}/work/runs/manual__1/")
    work = op._work()
    entries = work.read_jsonl(manifest)
    assert [e["uri"] for e in entries] == [f"{base}/in/a.pdf", f"{base}/in/sub/b.pdf"]
    assert all(e["version"] for e in entries)
    lineage = op.get_openlineage_facets_on_complete(None)
    [dataset] = lineage.inputs
    assert (dataset.namespace, dataset.name) == (bucket["namespace"], "in/")


def test_listing_operator_on_a_missing_bucket_fails_with_one_line(bucket: dict[str, str]) -> None:
    scheme = bucket["base"].split("://")[0]
    missing = f"{scheme}://t-{uuid.uuid4().hex[:12]}/in/"
    op = DeepOcrListDocumentsOperator(task_id="list", source_uri=missing, work_uri=f"{bucket['base']}/w")
    with pytest.raises(errors.StorageError) as ei:
        op.execute({"run_id": "manual"})
    assert ei.value.reason == errors.NO_SUCH_BUCKET and "\n" not in str(ei.value)
    assert str(ei.value).startswith(f"no_such_bucket: cannot list {missing} via ")

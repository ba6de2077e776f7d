"""The latency proxy: every request to moto through it is delayed, counted and answered whole."""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_deepocr.core.sources import S3Storage, make_s3_client
from airflow_provider_deepocr.testing.latency_proxy import LatencyProxy


def test_each_request_is_delayed_counted_and_forwarded_whole(s3_endpoint: str, s3_client: Any) -> None:
    s3_client.create_bucket(Bucket="slow")
    port = int(s3_endpoint.rsplit(":", 1)[1])
    with LatencyProxy(port, delay_ms=60) as proxy:
        st = S3Storage(client=make_s3_client(proxy.url))
        body = bytes(range(256)) * 4000  # 1 MB: a body in many TCP segments
        st.write("s3://slow/a.bin", body)
        t0 = time.perf_counter()
        for _ in range(3):
            assert st.read_range("s3://slow/a.bin", 1000, 10) == body[1000:1010]
        slow = (time.perf_counter() - t0) / 3
        assert st.read("s3://slow/a.bin") == body
        stats = proxy.stats()
        assert stats["requests"] == 5 and stats["response_bytes"] > len(body)
        assert slow >= 0.06  # every request waited the delay
        proxy.reset()
        proxy.set_delay(0)
        assert st.exists("s3://slow/a.bin") and not st.exists("s3://slow/b.bin")
        assert proxy.stats()["requests"] == 2 and proxy.stats()["delay_ms"] == 0

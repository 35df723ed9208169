"""LocalCloud wires the three stand-ins together and hands the app only endpoints, never keys."""

from __future__ import annotations

import httpx
import pytest

from localcloud import LocalCloud


def test_env_points_at_the_stand_ins_and_carries_no_aws_keys(cloud: LocalCloud) -> None:
    env = cloud.env()

    assert env == {
        "IDENTITY_ENDPOINT": f"{cloud.identity.url}/msi/token",
        "IDENTITY_HEADER": cloud.identity.identity_header,
        "AWS_ENDPOINT_URL_STS": cloud.sts.url,
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert cloud.gateway_url == cloud.gateway.url
    assert cloud.gateway.dataset("/dev/orders").pagination == "next_token"


def test_stop_stops_all_three() -> None:
    local_cloud = LocalCloud().start()
    urls = [local_cloud.identity.url, local_cloud.sts.url, local_cloud.gateway_url]

    local_cloud.stop()

    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=1)
    assert not any(server.running for server in (local_cloud.identity, local_cloud.sts, local_cloud.gateway))

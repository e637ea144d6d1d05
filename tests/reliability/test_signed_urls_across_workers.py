"""Accounts across processes: a session owned on one server answers only to its owner on the
other, and an image URL signed by one server loads from the other (one URL_SIGNING_KEY)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.images import jpeg_photo
from tests.reliability._servers import hera_servers, server_env
from tests.support.jwks import Issuer, auth_env, jwks_server
from tests.support.polling import entered_in_thread

pytestmark = pytest.mark.slow


async def test_a_url_signed_by_one_worker_loads_from_another_and_only_its_owner_sees_it(
    tmp_path: Path,
) -> None:
    with jwks_server() as jwks:
        env = server_env(
            HERA_DATA_DIR=str(tmp_path / "data"),
            **auth_env(jwks),
        )
        issuer = Issuer(jwks.keys[0])
        owner, other = issuer.bearer("owner-1"), issuer.bearer("someone-else")
        async with entered_in_thread(hera_servers(tmp_path / "run", env, count=2)) as servers:
            one, two = (httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers)
            async with one, two:
                sid = (await one.post("/api/sessions", headers=owner)).json()["session_id"]
                files = {"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
                upload = await one.post(
                    f"/api/sessions/{sid}/photos/user", files=files, headers=owner
                )
                assert upload.status_code == 200, upload.text
                url = upload.json()["image_url"]
                assert "sig=" in url and "exp=" in url

                served = await two.get(url)  # no token: the signature is the proof
                assert served.status_code == 200
                assert served.headers["content-type"] == "image/jpeg"
                tampered = url.replace("sig=", "sig=x")
                assert (await two.get(tampered)).status_code == 404
                assert (await two.get(url.split("?")[0])).status_code == 404  # unsigned

                assert (await two.get(f"/api/sessions/{sid}", headers=owner)).status_code == 200
                hidden = await two.get(f"/api/sessions/{sid}", headers=other)
                assert hidden.status_code == 404
                assert hidden.json()["code"] == "session_not_found"

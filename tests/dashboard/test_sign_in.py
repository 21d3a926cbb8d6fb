"""Streamlit's sign-in (``st.login``, OpenID Connect) in a real Chromium, against a real MedLens serving and a
real OpenID provider (oidc-provider-mock, on 127.0.0.1): where ``[auth]`` is configured, the pages show nothing
until a reader signs in, a review is signed by the name the provider vouches for with the account it belongs to,
and nobody can type a name instead."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from serving.client import MedLensClient
from tests.dashboard.helpers import pneumonia_images
from tests.dashboard.live import (
    RESULT_TIMEOUT_MS,
    free_port,
    idle,
    main_text,
    open_page,
    running_dashboard,
    upload_xray,
)

pytestmark = [pytest.mark.browser, pytest.mark.serve, pytest.mark.data]

oidc_provider_mock = pytest.importorskip("oidc_provider_mock", reason="the oidc-provider-mock package is not installed")

READER = {"sub": "ada.lovelace@example.org", "email": "ada.lovelace@example.org", "name": "Dr Ada Lovelace"}
NAME_FIELD = "Your name (for reviews)"
#: what a signed-in reader's reviews carry: the provider's display name with the account (dashboard.widgets)
SIGNED = f"{READER['name']} ({READER['email']})"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """An OpenID provider on 127.0.0.1 that knows one reader (its authorization form signs in whoever's
    ``sub`` is typed)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        claims = {k: v for k, v in READER.items() if k != "sub"}
        assert httpx.put(f"{url}/users/{quote(READER['sub'])}", json=claims).status_code == 204
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def signed_in_dashboard(
    dashboard_serving_url: str, provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The dashboard with ``[auth]`` in its secrets: Streamlit's sign-in at ``provider``."""
    port = free_port()
    secrets = tmp_path_factory.mktemp("sign-in") / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "medlens-test-cookie-secret-not-for-use"\n'
        'client_id = "medlens-dashboard"\n'
        'client_secret = "medlens-test-client-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    with running_dashboard(
        dashboard_serving_url, port=port, options=[f"--secrets.files={secrets}"], log_name="streamlit-sign-in.log"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def radiograph() -> Path:
    files = pneumonia_images(limit=8)
    if not files:
        pytest.skip("no chest X-rays under <data>/chest_xray/train/PNEUMONIA (set MEDLENS_DATA_DIR)")
    return files[-1]


def _sidebar(page: Any) -> str:
    return str(page.locator('[data-testid="stSidebar"]').inner_text())


def test_a_signed_in_reader_signs_reviews_with_the_providers_name(
    signed_in_dashboard: str, provider: str, browser: Any, radiograph: Path, dashboard_serving_url: str
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    try:
        # signed out: every page asks for the sign-in and shows nothing else (no upload, no case, no export), and
        # there is no name to type
        for path in ("/service", "/xray", "/worklist"):
            open_page(page, signed_in_dashboard + path, "Sign in to MedLens")
            page.get_by_role("button", name="Sign in to review").wait_for(timeout=RESULT_TIMEOUT_MS)
            assert "Sign in (sidebar) to use MedLens" in main_text(page)
            assert page.locator('[data-testid="stFileUploader"]').count() == 0
            assert page.get_by_label(NAME_FIELD).count() == 0, _sidebar(page)
        sign_in = page.get_by_role("button", name="Sign in to review")

        # the provider's authorization form, then back to the dashboard, signed in
        sign_in.click()
        page.wait_for_url(f"{provider}/**", timeout=RESULT_TIMEOUT_MS)
        page.get_by_placeholder("sub").fill(READER["sub"])
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{signed_in_dashboard}/**", timeout=RESULT_TIMEOUT_MS)

        # a review carries the provider's name, in serving's trail too
        open_page(page, signed_in_dashboard + "/xray", "Chest X-ray review")
        upload_xray(page, radiograph)
        page.get_by_text(f"Reviewing as {SIGNED} (signed in)").wait_for(timeout=RESULT_TIMEOUT_MS)
        assert page.get_by_label(NAME_FIELD).count() == 0
        save = page.get_by_role("button", name="Save review")
        save.wait_for(timeout=RESULT_TIMEOUT_MS)
        idle(page)
        page.get_by_text("agree", exact=True).click()
        save.click()
        page.locator('[data-testid="stTable"]', has_text=SIGNED).wait_for(timeout=RESULT_TIMEOUT_MS)
        case_id = hashlib.sha256(radiograph.read_bytes()).hexdigest()
        history = MedLensClient(dashboard_serving_url).case(case_id).history
        assert (history[-1].reviewer, history[-1].verdict) == (SIGNED, "agree")

        # the reader panel is on every page: signing out from one without a case ends the session
        open_page(page, signed_in_dashboard + "/performance", "Model performance")
        assert f"Reviewing as {SIGNED} (signed in)" in _sidebar(page)
        page.get_by_role("button", name="Sign out").click()
        # Streamlit sends the browser to its logout route, which drops the session's cookie and comes back
        page.get_by_text("(signed in)").wait_for(state="detached", timeout=RESULT_TIMEOUT_MS)
        open_page(page, signed_in_dashboard + "/xray", "Sign in to MedLens")
        page.get_by_role("button", name="Sign in to review").wait_for(timeout=RESULT_TIMEOUT_MS)
        assert "Sign in (sidebar) to use MedLens" in main_text(page)
        assert READER["name"] not in _sidebar(page)
        assert page.locator('[data-testid="stFileUploader"]').count() == 0
    finally:
        context.close()

"""/docs and /redoc work offline: every script, style sheet and icon comes from the gateway."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest


class _Assets(HTMLParser):
    """The URLs a browser fetches to render a page: scripts, style sheets, icons, fonts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))
        if tag == "redoc" and found.get("spec-url"):
            self.urls.append(str(found["spec-url"]))


def page_assets(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    # URLs the page's inline script hands to Swagger UI or ReDoc (the OpenAPI document).
    inline = re.findall(r"""(?:url|specUrl)['"]?\s*:\s*['"]([^'"]+)['"]""", html)
    return parser.urls + inline


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_documentation_pages_load_only_same_origin_assets(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assets = page_assets(response.text)
    assert len(assets) >= 2, response.text  # the bundle and the OpenAPI document at least
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from another origin"
        assert not url.startswith("//"), f"{page} loads {url} from another origin"
        fetched = await client.get(url)
        assert fetched.status_code == 200, url
        assert fetched.content, url
    assert "fonts.googleapis" not in response.text
    assert "cdn.jsdelivr" not in response.text


async def test_swagger_ui_needs_no_online_validator(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html
    script = (await client.get("/docs/assets/swagger-ui-bundle.js")).headers
    assert script["content-type"].startswith(("text/javascript", "application/javascript"))

"""The served OpenAPI 3.1 document: valid, and describing every API route."""

from __future__ import annotations

from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename  # noqa: F401  (import check)


def test_document_is_valid_openapi_3_1(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on an invalid document


def test_every_api_route_is_described(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    described = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    import re

    served = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == "/api/v1/openapi.json":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method))
    assert served and served == described


def test_topics_in_the_document_are_the_configured_ones(client):
    document = client.get("/api/v1/openapi.json").get_json()
    consent = document["components"]["schemas"]["ConsentIn"]["properties"]["topic"]
    assert consent["enum"] == ["newsletter", "offers"]  # consent is for marketing topics


def test_errors_are_documented_as_problem_json(client):
    document = client.get("/api/v1/openapi.json").get_json()
    create = document["paths"]["/api/v1/subscribers"]["post"]
    for status in ("400", "401", "403", "409", "413", "415", "422", "429", "500"):
        assert "application/problem+json" in create["responses"][status]["content"], status

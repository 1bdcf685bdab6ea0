import re

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_is_valid_and_lists_the_endpoints():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert "/api/v1/journeys/{reference}/events/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["PartnerApiKey"]["in"] == "header"


def test_the_docs_are_served_with_no_external_assets(client):
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    # No other host: no absolute or protocol-relative address, no CDN's name in one (a
    # random nonce or hash may spell "cdn" by chance).
    assert "https://" not in html and "http://" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?//""", html)
    assert not re.search(r"//[\w.-]*cdn", html.lower())
    assert client.get(reverse("api-schema")).status_code == 200


# Besides every POST: the PATCH and DELETE of a task or an appointment.
DETAILS = [
    "/api/v1/journeys/{reference}/tasks/{id}/",
    "/api/v1/journeys/{reference}/appointments/{id}/",
]
KEYED = {(path, method) for path in DETAILS for method in ("patch", "delete")}


def test_every_operation_documents_the_error_shape_and_writes_take_an_idempotency_key():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) == 29
    for path, method, operation in operations:
        for code in ("400", "401", "404", "405", "406", "409", "429"):
            content = operation["responses"][code]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (path, method)
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        keyed = method == "post" or (path, method) in KEYED
        expected = {"Idempotency-Key"} if keyed else set()
        if (path, method) == ("/api/v1/journeys/{reference}/events/", "post"):
            expected.add("Prefer")  # respond-async: queued, applied by a worker
        assert headers == expected, (path, method)


PAGED = {
    "/api/v1/journeys/": "PaginatedJourneyList",
    "/api/v1/journeys/{reference}/photos/": "PaginatedPhotoOutList",
    "/api/v1/journeys/{reference}/legs/{sequence}/checkpoints/": "PaginatedCheckpointList",
}
LISTED = {
    "/api/v1/journeys/{reference}/legs/": "LegOut",
    "/api/v1/journeys/{reference}/tasks/": "Task",
    "/api/v1/journeys/{reference}/appointments/": "Appointment",
}


def test_the_read_backs_and_their_pages_are_described():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths, components = schema["paths"], schema["components"]["schemas"]
    for path, name in PAGED.items():
        operation = paths[path]["get"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{name}"}, path
        page = components[name]
        assert set(page["properties"]) == {"next", "previous", "results"}
        assert page["properties"]["next"]["nullable"] is True
        assert page["required"] == ["next", "previous", "results"]
        query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert set(query) == {"cursor", "page_size"}, path
        assert query["page_size"]["schema"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": 500,
            "default": 100,
        }
    for path, name in LISTED.items():
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}, path
        assert not [p for p in paths[path]["get"].get("parameters", []) if p["in"] == "query"]
    leg = paths["/api/v1/journeys/{reference}/legs/{sequence}/"]["get"]
    assert leg["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LegOut"
    }
    for path, name in zip(DETAILS, ("Task", "Appointment"), strict=True):
        one = {"$ref": f"#/components/schemas/{name}"}
        for method in ("get", "patch"):
            ok = paths[path][method]["responses"]["200"]["content"]["application/json"]
            assert ok["schema"] == one, (path, method)
        assert set(paths[path]["delete"]["responses"]["204"]) == {"description"}  # no body


def test_a_patch_body_has_no_defaults_and_reads_back_nothing():
    """A PATCH sets what it sends: no field of its body is required or has a default
    (an arrival left out moves with the start; a duration left out stays), and what is
    only read back is marked so."""
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]
    for name in ("PatchedTask", "PatchedAppointmentUpdate"):
        body = components["schemas"][name]
        assert "required" not in body, name
        assert not [f for f, spec in body["properties"].items() if "default" in spec], name
        assert body["properties"]["id"]["readOnly"] is True


def test_the_schema_describes_uploads_keys_and_bodies_as_clients_send_them():
    """A generated client sent a URL for the photo (``format: uri``), the key had no
    bounds, and each body's description was our internal note on parsing."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    assert components["PhotoIn"]["properties"]["file"]["format"] == "binary"
    key = next(
        p
        for p in schema["paths"]["/api/v1/journeys/{reference}/events/"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    )
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)
    described = [c.get("description", "") for c in components.values()]
    assert not any("serializer" in d or "DRF" in d for d in described)

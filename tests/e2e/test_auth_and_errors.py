"""Auth as llama.cpp does it, CORS, and bad input: always a 4xx in llama.cpp's error shape."""

from __future__ import annotations

import base64

import pytest
import requests

INVALID_KEY = {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
BODY = {"prompt": "hi", "n_predict": 2}


def assert_llama_error(response: requests.Response, status: int, type_name: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "type"}
    assert error["code"] == status and error["type"] == type_name and error["message"]
    return error


def test_missing_token_is_401(stack):
    response = requests.post(stack.url("/completion"), json=BODY, timeout=10)
    assert response.status_code == 401
    assert response.json() == INVALID_KEY


def test_wrong_token_is_401(stack):
    response = requests.post(stack.url("/completion"), json=BODY, headers={"Authorization": "Bearer nope"})
    assert response.json() == INVALID_KEY


def test_token_of_another_length_is_401(stack):
    almost = stack.token + "x"
    response = requests.post(stack.url("/completion"), json=BODY, headers={"Authorization": f"Bearer {almost}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        lambda token: {"Authorization": f"Bearer {token}"},
        lambda token: {"Authorization": f"bearer {token}"},
        lambda token: {"Authorization": token},  # llama.cpp: the Bearer prefix is optional
        lambda token: {"X-Api-Key": token},
        lambda token: {"Authorization": "Basic " + base64.b64encode(f"unity:{token}".encode()).decode()},
    ],
    ids=["bearer", "bearer-lowercase", "bare", "x-api-key", "basic"],
)
def test_every_header_form_is_accepted(stack, headers):
    response = requests.post(stack.url("/completion"), json=BODY, headers=headers(stack.token), timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/health", "/v1/health", "/v1/models", "/api/tags", "/"])
def test_public_paths_need_no_token(stack, path):
    assert requests.get(stack.url(path), timeout=10).status_code == 200


def test_a_models_own_path_needs_a_token(stack):
    # llama.cpp makes the list public, not each model's path; neither does velesio.
    assert requests.get(stack.url("/v1/models/tiny"), timeout=10).status_code == 401
    assert requests.get(stack.url("/v1/models/tiny"), headers=stack.auth, timeout=10).status_code == 200


def test_cors_preflight_needs_no_token_and_allows_any_origin_without_credentials(stack):
    # CORS_ORIGINS unset: any page may call, with a token it sets itself, never with the
    # browser's credentials (an allowlist: tests/e2e/test_http_edge.py).
    response = requests.options(
        stack.url("/completion"),
        headers={"Origin": "https://game.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_cors_allows_the_origin_on_errors_too(stack):
    response = requests.post(stack.url("/completion"), json=BODY, headers={"Origin": "https://game.example"})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_unknown_route_is_404_file_not_found(stack):
    response = requests.get(stack.url("/no/such/route"), headers=stack.auth, timeout=10)
    assert assert_llama_error(response, 404, "not_found_error")["message"] == "File Not Found"


def test_wrong_method_is_405(stack):
    assert_llama_error(requests.get(stack.url("/completion"), headers=stack.auth), 405, "invalid_request_error")


def test_malformed_json_is_400(stack):
    response = requests.post(stack.url("/completion"), data=b'{"prompt": "hi",', headers=stack.auth)
    assert "not valid JSON" in assert_llama_error(response, 400, "invalid_request_error")["message"]


def test_empty_body_is_400(stack):
    assert_llama_error(requests.post(stack.url("/completion"), headers=stack.auth), 400, "invalid_request_error")


def test_body_that_is_not_an_object_is_400(stack):
    response = requests.post(stack.url("/completion"), json=["hi"], headers=stack.auth)
    assert "JSON object" in assert_llama_error(response, 400, "invalid_request_error")["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "n_predict": "8"}, "n_predict"),
        ({"prompt": "hi", "temperature": "hot"}, "temperature"),
        ({"prompt": "hi", "stream": "yes"}, "stream"),
        ({"prompt": "hi", "stop": "END"}, "stop"),
        ({"prompt": "hi", "top_p": 1.5}, "top_p"),
        ({"prompt": "hi", "n_predict": -5}, "n_predict"),
        ({"prompt": "hi", "mirostat": 3}, "mirostat"),
        ({"prompt": "hi", "json_schema": "{}"}, "json_schema"),
        ({"prompt": []}, "prompt"),
        ({"prompt": [-1, 2]}, "prompt"),
        ({"n_predict": 8}, "prompt"),
    ],
)
def test_wrong_types_and_out_of_range_values_are_400_naming_the_field(stack, body, field):
    error = assert_llama_error(requests.post(stack.url("/completion"), json=body, headers=stack.auth), 400,
                               "invalid_request_error")  # fmt: skip
    assert error["message"].startswith(field)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tokenize", {"content": 5}),
        ("/detokenize", {"tokens": ["a"]}),
        ("/detokenize", {"tokens": [-3]}),
        ("/apply-template", {"messages": []}),
        ("/apply-template", {"messages": [{"content": "no role"}]}),
        ("/embeddings", {}),
        ("/embeddings", {"content": {"a": 1}}),
    ],
)
def test_bad_input_on_every_endpoint_is_400(stack, path, body):
    assert_llama_error(requests.post(stack.url(path), json=body, headers=stack.auth), 400, "invalid_request_error")


def test_oversized_body_is_413(stack):
    huge = b'{"prompt": "' + b"a" * (17 * 1024 * 1024) + b'"}'
    response = requests.post(stack.url("/completion"), data=huge, headers=stack.auth, timeout=60)
    assert_llama_error(response, 413, "invalid_request_error")


def test_prompt_longer_than_the_context_is_llama_servers_400(stack):
    # llama-server's own answer to a client mistake, relayed with its status, never a 500.
    response = requests.post(stack.url("/completion"), json={"prompt": "hello " * 6000, "n_predict": 4},
                             headers=stack.auth, timeout=60)  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "exceed_context_size_error"


def test_tokens_never_reach_a_log(stack):
    wrong = "wrong-secret-token-value"
    requests.post(stack.url("/completion"), json=BODY, headers={"Authorization": f"Bearer {wrong}"})
    requests.post(stack.url("/completion"), json=BODY, headers={"X-Api-Key": wrong})
    requests.post(stack.url("/completion"), json=BODY, headers=stack.auth)
    for process in stack.processes:
        log = process.log()
        assert log, f"{process.name} wrote no log at all"
        assert stack.token not in log and wrong not in log, f"a token is in the {process.name} log"

"""The API client's cache is keyed by what produced the answer (the endpoint, the model the server serves) and
holds only real answers: malformed 200 responses are one-line errors naming the endpoint, never cached. Against
the loopback server of ``conftest.py``."""

from __future__ import annotations

import pytest

from lit_clf.api.cache import ResponseCache
from lit_clf.api.client import ApiError, ChatClient
from tests.api.conftest import ChatServer

MESSAGES = [[{"role": "user", "content": f"is this good {i}"}] for i in range(4)]


def client(server: ChatServer, cache_dir, model: str = "tiny") -> ChatClient:
    return ChatClient(model, base_url=server.url, api_key_env=None, max_retries=0, cache=ResponseCache(cache_dir))


def test_a_second_server_with_the_same_model_name_gets_its_own_requests(tmp_path):
    with ChatServer() as first, ChatServer() as second:
        second.script = {m[0]["content"]: "from the second" for m in MESSAGES}
        assert {c.text for c in client(first, tmp_path).complete_all(MESSAGES)} != {"from the second"}
        answers = client(second, tmp_path).complete_all(MESSAGES)
        assert [c.text for c in answers] == ["from the second"] * 4 and not any(c.cached for c in answers)
        assert len(second.requests) == 4


def test_answers_of_another_served_model_are_fetched_again(tmp_path, chat_server):
    chat_server.served_model = "model-a"  # a server that names its own model whatever the request says
    client(chat_server, tmp_path).complete_all(MESSAGES)
    chat_server.served_model = "model-b"  # restarted on the same port with another model
    chat_server.script = {m[0]["content"]: "b says" for m in MESSAGES}
    fresh = client(chat_server, tmp_path)
    # Until the server has named its model in an answer, entries are served as they are (a rerun that is all
    # cached sends nothing); once it has, model-a's entries are fetched again.
    assert fresh.complete(MESSAGES[0]).cached
    assert not fresh.complete([{"role": "user", "content": "a new question"}]).cached
    rest = fresh.complete_all(MESSAGES)
    assert [c.text for c in rest] == ["b says"] * 4 and not any(c.cached for c in rest)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (("application/json", b'{"id": "x", "object": "chat.completion", "model": "tiny", "choices": []}'),
         "answered without any choice"),
        (("application/json", b'{"id": "x", "object": "chat.completion", "choi'), "not a chat completion"),
        (("text/html", b"<html><body>502 Bad Gateway</body></html>"), "not a chat completion"),
    ],
    ids=["empty choices", "truncated JSON", "HTML page"],
)  # fmt: skip
def test_a_malformed_200_is_one_line_naming_the_endpoint_and_never_cached(tmp_path, chat_server, body, reason):
    chat_server.raw = [body]
    with pytest.raises(ApiError) as err:
        client(chat_server, tmp_path).complete(MESSAGES[0])
    message = str(err.value)
    assert message.startswith(f"{chat_server.url} (tiny): ") and reason in message and "\n" not in message
    answer = client(chat_server, tmp_path).complete(MESSAGES[0])  # the server is fixed: a real request, answered
    assert not answer.cached and answer.text and chat_server.attempts == 2

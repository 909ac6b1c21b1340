"""The HTTP/1.1 layer with raw sockets: keep-alive, pipelining, chunked bodies, 100-continue,
size limits, malformed requests, timeouts and graceful shutdown."""

from __future__ import annotations

import asyncio
import socket

import pytest

from serving.http import HttpServer, Request, Response

LIMIT = 1000


class EchoHandler:
    """Answers with the method, path and body; ``/slow`` waits 0.2 s first."""

    def __init__(self) -> None:
        self.begun: list[str] = []
        self.aborted: list[str] = []

    def max_body_bytes(self) -> int:
        return LIMIT

    def begin(self, request: Request):
        self.begun.append(request.path)
        return request.path

    def abort(self, token) -> None:
        self.aborted.append(token)

    def handle(self, request: Request):
        body = f"{request.method} {request.path} ".encode() + request.body
        if request.path == "/boom":
            raise RuntimeError("bug")
        if request.path.startswith("/slow"):

            async def later() -> Response:
                await asyncio.sleep(0.2)
                return Response(200, body)

            return later()
        return Response(200, body, [(b"x-test", b"1")])


async def _server(**options) -> tuple[HttpServer, int, EchoHandler]:
    handler = EchoHandler()
    server = HttpServer(handler, **options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await server.start(sock)
    return server, sock.getsockname()[1], handler


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await asyncio.wait_for(reader.readline(), 5)
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_keep_alive_and_pipelined_requests_are_answered_in_order():
    async def go():
        server, port, _ = await _server()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /c%20d HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = [await _read_response(reader) for _ in range(3)]
        writer.close()
        await server.shutdown(1)
        return answers

    answers = run(go())
    assert [a[2] for a in answers] == [b"GET /slow/1 ", b"POST /b abc", b"GET /c d "]
    assert answers[1][1]["x-test"] == "1" and "connection" not in answers[1][1]


def test_chunked_body_and_expect_100_continue():
    async def go():
        server, port, _ = await _server()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        chunked = await _read_response(reader)
        writer.write(
            b"POST /y HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"ok")
        final = await _read_response(reader)
        writer.close()
        await server.shutdown(1)
        return chunked, interim, final

    chunked, interim, final = run(go())
    assert chunked[2] == b"POST /x abcde"
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert final[2] == b"POST /y ok"


def test_a_body_over_the_limit_is_refused_before_it_is_read_and_the_connection_closed():
    async def go():
        server, port, handler = await _server()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        declared = await _read_response(reader)
        closed = await asyncio.wait_for(reader.read(), 5) == b""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (LIMIT + 1, b"z" * (LIMIT + 1)))
        streamed = await _read_response(reader)
        await server.shutdown(1)
        return declared, closed, streamed, handler

    declared, closed, streamed, handler = run(go())
    assert declared[0] == 413 and b"exceeds the limit of 1000 bytes" in declared[2]
    assert declared[1]["connection"] == "close" and closed
    assert streamed[0] == 413
    assert handler.aborted == ["/big"]  # the chunked one had begun


def test_malformed_requests_get_400_and_handler_bugs_get_500():
    async def go():
        server, port, _ = await _server(log=lambda request, exc: None)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"NOT A REQUEST\r\n\r\n")
        bad = await _read_response(reader)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        boom = await _read_response(reader)
        after = await _read_response(reader)
        await server.shutdown(1)
        return bad, boom, after

    bad, boom, after = run(go())
    assert bad[0] == 400 and b"malformed HTTP request" in bad[2]
    assert boom[0] == 500 and b"RuntimeError: bug" in boom[2]
    assert after[0] == 200


def test_http_1_0_closes_after_the_response():
    async def go():
        server, port, _ = await _server()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /old HTTP/1.0\r\n\r\n")
        answer = await _read_response(reader)
        eof = await asyncio.wait_for(reader.read(), 5)
        await server.shutdown(1)
        return answer, eof

    answer, eof = run(go())
    assert answer[2] == b"GET /old " and answer[1]["connection"] == "close" and eof == b""


@pytest.mark.parametrize("partial", [False, True], ids=["idle", "stalled request"])
def test_idle_and_stalled_connections_are_closed(partial):
    async def go():
        server, port, handler = await _server(idle_timeout_s=0.5, read_timeout_s=0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if partial:
            writer.write(b"POST /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        data = await asyncio.wait_for(reader.read(), 5)
        await server.shutdown(1)
        return data, handler

    data, handler = run(go())
    if partial:
        assert data.startswith(b"HTTP/1.1 408") and handler.aborted == ["/stalled"]
    else:
        assert data == b""


def test_shutdown_finishes_requests_in_flight_and_closes_idle_connections():
    async def go():
        server, port, _ = await _server()
        idle_reader, _idle_writer = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(server.shutdown(5))
        answer = await _read_response(reader)
        idle_eof = await asyncio.wait_for(idle_reader.read(), 5)
        finished = await closing
        refused = False
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            refused = True
        return answer, idle_eof, finished, refused

    answer, idle_eof, finished, refused = run(go())
    assert answer[0] == 200 and answer[1]["connection"] == "close"
    assert idle_eof == b"" and finished and refused

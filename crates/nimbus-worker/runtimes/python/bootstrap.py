"""Nimbus's Python runtime.

Implements Lambda's Python handler contract on top of the Runtime API
(2018-06-01): `_HANDLER` is `module.function` (module may be a dotted or
slash path below /var/task), handlers may be plain or `async def`, and
errors are reported as {"errorMessage", "errorType", "stackTrace"}.
In Text mode the root logger gets Lambda's handler and format
(`[LEVEL]\t<UTC time>\t<request id>\t<message>`, level left at Python's
WARNING unless AWS_LAMBDA_LOG_LEVEL says); with AWS_LAMBDA_LOG_FORMAT=JSON (the
function's LoggingConfig), records and error reports are JSON objects, as
Lambda's Python runtime writes them; print() output stays plain text.
Responses are marshalled as Lambda's runtime does: `Decimal` as a number,
non-ASCII characters as they are. `context.client_context` and
`context.identity` are objects with Lambda's attributes.
Runs unmodified on the host's python3; standard library only.
"""

import gc
import http.client
import importlib
import json
import os
import sys
import time

# asyncio, inspect and traceback cost ~70 ms of Init to import; they are
# imported only when a handler is async or an error is reported.

RUNTIME_API = os.environ["AWS_LAMBDA_RUNTIME_API"]
PREFIX = "/2018-06-01/runtime"
JSON_LOGS = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
# The invocation in progress, for the requestId of JSON log records.
current_request_id = None


def _utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _request_id_filter(record):
    record.aws_request_id = current_request_id or ""
    return True


def install_text_logging():
    """Root logger → Lambda's text format on stdout; its level stays Python's default
    (WARNING) unless AWS_LAMBDA_LOG_LEVEL sets one, as on Lambda."""
    import logging

    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_request_id_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        root.setLevel(_log_level(level))


def _log_level(name):
    """Lambda's level names as Python's: TRACE is below DEBUG, FATAL is CRITICAL."""
    import logging

    name = name.upper()
    return {"TRACE": 5, "FATAL": logging.CRITICAL}.get(name, logging.getLevelName(name))


def _marshal_default(o):
    import decimal

    if isinstance(o, decimal.Decimal):
        # A number, as Lambda's runtime writes it: integral values without a point.
        if o.is_finite() and o == o.to_integral_value():
            return int(o)
        return float(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def to_json(value):
    return json.dumps(value, default=_marshal_default, ensure_ascii=False).encode()


def _obj(cls, d):
    """An instance of `cls` with every slot set from the dict `d` (None when absent)."""
    if d is None:
        return None
    if not isinstance(d, dict):
        d = {}
    o = cls()
    for field in cls.__slots__:
        setattr(o, field, d.get(field))
    return o


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]


class ClientContext:
    __slots__ = ["custom", "env", "client"]


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]


def install_json_logging():
    """Root logger → JSON lines on stdout (level: AWS_LAMBDA_LOG_LEVEL, default INFO)."""
    import logging

    class JsonFormatter(logging.Formatter):
        def format(self, record):
            entry = {
                "timestamp": _utc(record.created),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
            }
            if current_request_id:
                entry["requestId"] = current_request_id
            if record.exc_info and record.exc_info[1] is not None:
                import traceback

                exc = record.exc_info[1]
                entry["errorType"] = type(exc).__name__
                entry["errorMessage"] = str(exc)
                entry["stackTrace"] = traceback.format_tb(exc.__traceback__)
            return json.dumps(entry, default=str)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_log_level(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO")))


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to this environment's Runtime API."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        self._conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port)
            try:
                self._conn.request(method, PREFIX + path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                return resp.status, resp.headers, resp.read()
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise

    def next(self):
        return self.request("GET", "/invocation/next")

    def respond(self, request_id, body):
        return self.request("POST", f"/invocation/{request_id}/response", body)

    def error(self, path, error):
        body = json.dumps(error).encode()
        headers = {"Lambda-Runtime-Function-Error-Type": error["errorType"],
                   "Content-Type": "application/json"}
        return self.request("POST", path, body, headers)


class LambdaContext:
    """The `context` argument, as in AWS's Python runtime."""

    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = _obj(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _obj(Client, self.client_context.client)
        self.identity = _obj(CognitoIdentity, {})
        if isinstance(identity, dict):
            self.identity.cognito_identity_id = identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


class HandlerError(Exception):
    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type


def error_body(exc, error_type=None):
    import traceback

    # Like Lambda, show the function's frames, not the runtime's own.
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("/var/runtime/")]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(frames),
    }


def log_error(body):
    if JSON_LOGS:
        entry = {"timestamp": _utc(time.time()), "log_level": "ERROR", "errorMessage": body["errorMessage"],
                 "errorType": body["errorType"], "requestId": body.get("requestId", ""),
                 "stackTrace": body.get("stackTrace", [])}
        sys.stdout.write(json.dumps(entry) + "\n")
        sys.stdout.flush()
        return
    sys.stderr.write(f"[ERROR] {body['errorType']}: {body['errorMessage']}\n")
    if body.get("stackTrace"):
        sys.stderr.write("Traceback (most recent call last):\n" + "".join(body["stackTrace"]))
    sys.stderr.flush()


def load_handler(spec):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise HandlerError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values to unpack")
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise HandlerError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}")
    except ImportError as exc:
        raise HandlerError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}")
    handler = getattr(module, function_name, None)
    if handler is None:
        raise HandlerError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


def main():
    global current_request_id
    # Everything loaded so far is the runtime's own and lives as long as the process:
    # frozen, the cyclic collector's full passes no longer walk it. One such pass over
    # these ~15,000 objects took ~1 ms, paid by whichever invocation it fell in
    # (docs/benchmarks.md, "Run-queue waits, the environments' CPU weight"). The
    # function's objects, loaded next, are collected as usual.
    gc.freeze()
    # Lambda's order: the function, then a layer's site-packages for this Python, then
    # the layer's top level.
    site = f"/opt/python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    sys.path[:0] = [os.environ.get("LAMBDA_TASK_ROOT", "/var/task"), site, "/opt/python"]
    if JSON_LOGS:
        install_json_logging()
    else:
        install_text_logging()
    client = RuntimeClient(RUNTIME_API)
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except HandlerError as exc:
        body = {"errorMessage": str(exc), "errorType": exc.error_type, "requestId": "", "stackTrace": []}
        log_error(body)
        client.error("/init/error", body)
        sys.exit(1)
    except Exception as exc:  # an exception raised by the module's top-level code
        body = error_body(exc)
        log_error(body)
        client.error("/init/error", body)
        sys.exit(1)

    while True:
        _, headers, event_bytes = client.next()
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        current_request_id = request_id
        trace_id = headers.get("Lambda-Runtime-Trace-Id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        client_context = headers.get("Lambda-Runtime-Client-Context")
        identity = headers.get("Lambda-Runtime-Cognito-Identity")
        context = LambdaContext(
            request_id,
            int(headers.get("Lambda-Runtime-Deadline-Ms", "0")),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            json.loads(client_context) if client_context else None,
            json.loads(identity) if identity else None,
        )
        try:
            event = json.loads(event_bytes) if event_bytes else None
            result = handler(event, context)
            if hasattr(result, "__await__"):
                import asyncio

                result = asyncio.run(_await(result))
        except Exception as exc:
            body = error_body(exc)
            body["requestId"] = request_id
            log_error(body)
            client.error(f"/invocation/{request_id}/error", body)
            continue
        try:
            payload = to_json(result)
        except (TypeError, ValueError) as exc:
            # As Lambda reports it: the runtime's own frames are nobody's business.
            body = {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError",
                    "requestId": request_id, "stackTrace": []}
            log_error(body)
            client.error(f"/invocation/{request_id}/error", body)
            continue
        client.respond(request_id, payload)


async def _await(awaitable):
    return await awaitable


if __name__ == "__main__":
    main()

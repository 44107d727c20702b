'use strict';
// Nimbus's Node.js runtime.
//
// Implements Lambda's Node.js handler contract on top of the Runtime API
// (2018-06-01): `_HANDLER` is `file.export` (file may contain slashes, below
// /var/task; .js, .cjs or .mjs), handlers may be async (return a promise) or
// take a callback, and errors are reported as Lambda's Node runtime reports
// them: {"errorType", "errorMessage", "trace"} (the stack's lines), and a thrown
// non-Error as its `typeof` ("string", "object", ...) with an empty trace.
// Node standard library only.

const http = require('http');
const path = require('path');
const fs = require('fs');
const { Writable, finished } = require('stream');
const { pathToFileURL } = require('url');
const util = require('util');

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const PREFIX = '/2018-06-01/runtime';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: PORT, method, path: PREFIX + p, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function errorBody(err, type) {
  if (util.types.isNativeError(err) || err instanceof Error) {
    return {
      errorType: type || err.name || 'Error',
      errorMessage: err.message,
      trace: typeof err.stack === 'string' ? err.stack.split('\n') : [],
    };
  }
  return { errorType: type || typeof err, errorMessage: String(err), trace: [] };
}

function postError(p, body) {
  const data = JSON.stringify(body);
  return request('POST', p, data, {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': body.errorType,
  });
}

let currentRequestId = undefined;
// The function's LoggingConfig: JSON records instead of tab-separated text lines.
const JSON_LOGS = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';

function writeRecord(level, message) {
  const rec = { timestamp: new Date().toISOString(), level, requestId: currentRequestId, message };
  fs.writeSync(1, JSON.stringify(rec) + '\n');
}

// Lambda's log format: timestamp, request id, level, message (or a JSON record).
for (const [name, level] of [['log', 'INFO'], ['info', 'INFO'], ['warn', 'WARN'], ['error', 'ERROR'], ['debug', 'DEBUG'], ['trace', 'TRACE']]) {
  console[name] = (...args) => {
    if (JSON_LOGS) {
      writeRecord(level, util.format(...args));
      return;
    }
    const line = `${new Date().toISOString()}\t${currentRequestId || 'undefined'}\t${level}\t${util.format(...args)}\n`;
    fs.writeSync(1, line.replace(/\n(?!$)/g, '\r'));
  };
}

// An error report: `Invoke Error \t{json}` in text, `"message": {errorType, …}` in JSON.
function logError(prefix, body) {
  if (JSON_LOGS) writeRecord('ERROR', body);
  else console.error(`${prefix}\t${JSON.stringify(body)}`);
}

async function loadHandler(spec) {
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) {
    throw Object.assign(new Error(`Bad handler ${spec}`), { lambdaType: 'Runtime.MalformedHandlerName' });
  }
  const file = spec.slice(0, dot);
  const exportName = spec.slice(dot + 1);
  const base = path.resolve(process.env.LAMBDA_TASK_ROOT || '/var/task', file);
  const candidate = ['.js', '.mjs', '.cjs'].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!candidate) {
    throw Object.assign(new Error(`Cannot find module '${file}'`), { lambdaType: 'Runtime.ImportModuleError' });
  }
  let mod;
  try {
    if (candidate.endsWith('.mjs')) {
      mod = await import(pathToFileURL(candidate).href);
    } else {
      try {
        mod = require(candidate);
      } catch (err) {
        if (err && err.code === 'ERR_REQUIRE_ESM') mod = await import(pathToFileURL(candidate).href);
        else throw err;
      }
    }
  } catch (err) {
    const type = err instanceof SyntaxError ? 'Runtime.UserCodeSyntaxError' : 'Runtime.ImportModuleError';
    throw Object.assign(err instanceof Error ? err : new Error(String(err)), { lambdaType: type });
  }
  const handler = mod[exportName] !== undefined ? mod[exportName] : mod.default && mod.default[exportName];
  if (typeof handler !== 'function') {
    throw Object.assign(new Error(`${file}.${exportName} is undefined or not exported`), {
      lambdaType: 'Runtime.HandlerNotFound',
    });
  }
  return handler;
}

function makeContext(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const cc = headers['lambda-runtime-client-context'];
  const id = headers['lambda-runtime-cognito-identity'];
  return {
    callbackWaitsForEmptyEventLoop: true,
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: cc ? JSON.parse(cc) : undefined,
    identity: id ? JSON.parse(id) : undefined,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

// Resolves once nothing but the runtime's own idle connection (unref'd by its agent)
// keeps the event loop alive: what Lambda waits for after a callback while
// `context.callbackWaitsForEmptyEventLoop` is true.
async function eventLoopEmpty() {
  for (;;) {
    // Asked from inside an immediate, which no longer counts itself; the pause between
    // looks is a ref'd timer, so the process cannot exit while it waits.
    const active = await new Promise((r) => setImmediate(() => r(process.getActiveResourcesInfo())));
    if (active.length === 0) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

function runHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (err, result) => {
      if (settled) return;
      settled = true;
      const finish = () => {
        if (err !== undefined && err !== null) reject(err);
        else resolve(result);
      };
      // As on Lambda: a callback's answer waits for the function's pending work
      // (timers, sockets) unless it cleared the flag; an async handler's does not.
      if (context.callbackWaitsForEmptyEventLoop) eventLoopEmpty().then(finish);
      else finish();
    };
    context.done = callback;
    context.succeed = (r) => callback(null, r);
    context.fail = (e) => callback(e || new Error('handled'));
    try {
      const ret = handler(event, context, callback);
      if (ret && typeof ret.then === 'function') {
        // An async handler's promise is the answer: Lambda does not wait for the loop.
        context.callbackWaitsForEmptyEventLoop = false;
        ret.then((r) => callback(null, r), (e) => callback(e === undefined ? new Error('undefined') : e));
      } else if (handler.length < 3) {
        callback(null, ret);
      }
    } catch (err) {
      callback(err);
    }
  });
}

// Response streaming, as Lambda's Node runtime offers it. `awslambda.streamifyResponse(fn)`
// marks `async (event, responseStream, context) => {}` as a streaming handler, whose answer
// is POSTed to /response while it is written (Lambda's streaming contract: header
// `Lambda-Runtime-Function-Response-Mode: streaming`, a chunked body), so callers of
// InvokeWithResponseStream and function URLs get the bytes as they are produced. Once the
// body has started an error can no longer be a status: it ends the body as trailers,
// `Lambda-Runtime-Function-Error-Type` and `Lambda-Runtime-Function-Error-Body` (the base64
// of the usual error JSON). `awslambda.HttpResponseStream.from` prefixes a function URL's
// body with its JSON prelude (statusCode, headers, cookies) and 8 NUL bytes.
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';
const TRAILER_ERROR_TYPE = 'Lambda-Runtime-Function-Error-Type';
const TRAILER_ERROR_BODY = 'Lambda-Runtime-Function-Error-Body';

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType('application/vnd.awslambda.http-integration-response');
    // JSON never contains a NUL byte, so 8 of them end the prelude unambiguously.
    const metadata = JSON.stringify(prelude || {});
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

// Defined before the handler's module loads, which may call it at its top level.
globalThis.awslambda = {
  streamifyResponse(handler, options) {
    handler[HANDLER_STREAMING] = STREAM_RESPONSE;
    if (options && options.highWaterMark) handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark, 10);
    return handler;
  },
  HttpResponseStream,
};

// The streamed response of the invocation under way, for the unhandled-rejection report.
let activeResponse = undefined;

// An invocation's `responseStream`: a Writable whose bytes go straight into the body of
// one chunked POST to /response, opened by the first write (or by end()).
function createResponseStream(requestId, highWaterMark) {
  let contentType = 'application/octet-stream';
  let req;
  let responded;
  let failing;
  let closed = false;
  const open = () => {
    if (req) return req;
    if (closed) throw new Error('The invocation is over: its response stream is closed');
    req = http.request({
      host: HOST,
      port: PORT,
      method: 'POST',
      path: `${PREFIX}/invocation/${requestId}/response`,
      agent,
      headers: {
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        'Transfer-Encoding': 'chunked',
        'Content-Type': contentType,
        Trailer: `${TRAILER_ERROR_TYPE}, ${TRAILER_ERROR_BODY}`,
      },
    });
    responded = new Promise((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    // Awaited by done() or fail(); never an unhandled rejection meanwhile.
    responded.catch(() => {});
    if (typeof stream._onBeforeFirstWrite === 'function') stream._onBeforeFirstWrite((c) => req.write(c));
    return req;
  };
  const stream = new Writable({
    highWaterMark,
    write(chunk, encoding, cb) {
      let r;
      try {
        r = open();
      } catch (err) {
        return cb(err);
      }
      if (r.write(chunk)) return cb();
      // Back-pressure: the next write waits until the request's buffer has drained.
      const settle = (err) => {
        r.off('drain', onDrain);
        r.off('close', onClose);
        cb(err);
      };
      const onDrain = () => settle();
      const onClose = () => settle(new Error('The response stream was closed by the Runtime API'));
      r.on('drain', onDrain);
      r.on('close', onClose);
    },
    final(cb) {
      let r;
      try {
        r = open();
      } catch (err) {
        return cb(err);
      }
      r.end();
      cb();
    },
  });
  // Errors reach the handler through write callbacks and pipeline(); one it does not
  // watch for must not crash the runtime.
  stream.on('error', () => {});
  stream.setContentType = (type) => {
    if (req) {
      throw Object.assign(new Error('Cannot set content-type, too late.'), { name: 'Runtime.InvalidStreamingOperation' });
    }
    contentType = type;
  };
  return {
    stream,
    // Resolves once the stream has ended and the Runtime API has answered the POST.
    async done() {
      await new Promise((resolve, reject) => finished(stream, (err) => (err ? reject(err) : resolve())));
      await responded;
    },
    // Ends the invocation with an error: in the trailers once the body has started (a
    // body already complete stays the answer), else through /error.
    fail(body) {
      if (!failing) {
        failing = (async () => {
          closed = true;
          if (!req) {
            await postError(`/invocation/${requestId}/error`, body);
            return;
          }
          if (!req.writableEnded) {
            req.addTrailers({
              [TRAILER_ERROR_TYPE]: body.errorType,
              [TRAILER_ERROR_BODY]: Buffer.from(JSON.stringify(body)).toString('base64'),
            });
            req.end();
          }
          await responded;
        })();
      }
      return failing;
    },
    close() {
      closed = true;
      stream.destroy();
    },
  };
}

// One invocation of a streaming handler: complete once the handler's promise has settled
// and its stream has ended (ended here if the handler returned without ending it).
async function invokeStreaming(handler, requestId, body, context) {
  const response = createResponseStream(requestId, handler[HANDLER_HIGHWATERMARK]);
  activeResponse = response;
  try {
    const event = body.length ? JSON.parse(body.toString('utf8')) : null;
    await new Promise((resolve) => resolve(handler(event, response.stream, context)));
    if (!response.stream.writableEnded) response.stream.end();
    await response.done();
  } catch (err) {
    const errBody = errorBody(err === undefined ? new Error('undefined') : err);
    logError('Invoke Error ', errBody);
    await response.fail(errBody);
  } finally {
    activeResponse = undefined;
    response.close();
  }
}

async function main() {
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || '');
  } catch (err) {
    const body = errorBody(err, err.lambdaType);
    console.error(`${body.errorType}: ${body.errorMessage}`);
    await postError('/init/error', body);
    process.exit(1);
  }
  process.on('unhandledRejection', async (reason) => {
    const body = errorBody(reason, 'Runtime.UnhandledPromiseRejection');
    logError('Unhandled Promise Rejection', body);
    if (activeResponse) await activeResponse.fail(body).catch(() => {});
    else if (currentRequestId) await postError(`/invocation/${currentRequestId}/error`, body);
    process.exit(128);
  });
  for (;;) {
    const next = await request('GET', '/invocation/next');
    const requestId = next.headers['lambda-runtime-aws-request-id'];
    currentRequestId = requestId;
    const trace = next.headers['lambda-runtime-trace-id'];
    if (trace) process.env._X_AMZN_TRACE_ID = trace;
    else delete process.env._X_AMZN_TRACE_ID;
    const context = makeContext(next.headers);
    if (handler[HANDLER_STREAMING] === STREAM_RESPONSE) {
      await invokeStreaming(handler, requestId, next.body, context);
      continue;
    }
    let result;
    try {
      const event = next.body.length ? JSON.parse(next.body.toString('utf8')) : null;
      result = await runHandler(handler, event, context);
    } catch (err) {
      const body = errorBody(err);
      logError('Invoke Error ', body);
      await postError(`/invocation/${requestId}/error`, body);
      continue;
    }
    let payload;
    try {
      payload = JSON.stringify(result === undefined ? null : result);
    } catch (err) {
      await postError(`/invocation/${requestId}/error`, errorBody(err, 'Runtime.MarshalError'));
      continue;
    }
    await request('POST', `/invocation/${requestId}/response`, payload, { 'Content-Type': 'application/json' });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

// The Vercel AI SDK's own chat transports (the `ai` package, pinned in package.json) against a
// running threadline server: what a React app with `useChat` does, without the browser.
// tests/web/test_aisdk_node.py starts the server and runs `node --test tests/node/` with
// THREADLINE_URL (the server), THREADLINE_SESSION and THREADLINE_TOKEN (a session of the
// `counter` agent of tests/web/apps.py: knowledge with citations; a tool that works, one that
// fails and one that needs approval, each called when the user's words name it).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  AbstractChat,
  DefaultChatTransport,
  WebSocketChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  readUIMessageStream,
} from 'ai';

const base = process.env.THREADLINE_URL;
const given = { id: process.env.THREADLINE_SESSION, token: process.env.THREADLINE_TOKEN };
assert.ok(
  base && given.id && given.token,
  'THREADLINE_URL, THREADLINE_SESSION and THREADLINE_TOKEN are needed (see tests/web/test_aisdk_node.py)',
);

async function newSession(agent) {
  const r = await fetch(`${base}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ agent }),
  });
  const body = await r.json();
  assert.equal(r.status, 201, JSON.stringify(body));
  return { id: body.session_id, token: body.token };
}

async function history(session) {
  const r = await fetch(`${base}/v1/sessions/${session.id}/messages`, {
    headers: { authorization: `Bearer ${session.token}` },
  });
  assert.equal(r.status, 200);
  return r.json();
}

const opened = [];
const TRANSPORTS = {
  // useChat({ transport: new DefaultChatTransport({ api, headers }) })
  http: (session) =>
    new DefaultChatTransport({
      api: `${base}/v1/sessions/${session.id}/ai-sdk`,
      headers: { authorization: `Bearer ${session.token}` },
    }),
  // useChat({ transport: new WebSocketChatTransport({ url, params }) })
  websocket: (session) => {
    const transport = new WebSocketChatTransport({
      url: `${base}/v1/sessions/${session.id}/ai-sdk/ws`,
      params: { token: session.token },
    });
    opened.push(transport);
    return transport;
  },
};
after(() => opened.forEach((transport) => transport.close()));

// The `counter` agent answers this with its `warehouse_stock` tool.
const STOCK = 'How many does the warehouse hold of TL-4480?';

let sent = 0;
const userMessage = (text) => ({
  id: `u${++sent}`,
  role: 'user',
  parts: [{ type: 'text', text }],
});

const send = (transport, messages, options = {}) =>
  transport.sendMessages({
    chatId: 'chat-1',
    messages,
    trigger: 'submit-message',
    messageId: undefined,
    ...options,
  });

// A stream read to its end: its chunks, and the message they build (as useChat builds it).
async function read(stream, message) {
  const chunks = [];
  const tapped = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  let last;
  for await (const built of readUIMessageStream({ stream: tapped, message, terminateOnError: true })) {
    last = built;
  }
  return { chunks, message: last };
}

// The answer's text: one text part per step, joined by a blank line.
const textOf = (message) =>
  message.parts
    .filter((p) => p.type === 'text')
    .map((p) => p.text)
    .join('\n\n');

for (const [name, transportFor] of Object.entries(TRANSPORTS)) {
  describe(`${name} transport`, () => {
    test('a message streams its sources, a tool step and the answer, with metadata', async () => {
      const session = name === 'http' ? given : await newSession('counter');
      const transport = transportFor(session);
      const stream = await send(transport, [userMessage(STOCK)]);
      const { chunks, message } = await read(stream);

      const kinds = message.parts.map((p) => p.type);
      const sources = kinds.filter((k) => k === 'source-document').length;
      assert.ok(sources > 0, `no sources in ${kinds}`);
      assert.deepEqual(kinds, [
        'step-start',
        ...Array(sources).fill('source-document'),
        'text',
        'tool-warehouse_stock',
        'step-start',
        'text',
      ]);
      const source = message.parts[1];
      assert.equal(source.sourceId, '1');
      assert.equal(source.mediaType, 'text/plain');
      assert.ok(source.title && source.filename.endsWith('.md'));
      const tool = message.parts.find((p) => p.type === 'tool-warehouse_stock');
      assert.equal(tool.state, 'output-available');
      assert.deepEqual(tool.input, { code: 'TL-4480' });
      assert.deepEqual(tool.output, { code: 'TL-4480', in_stock: 12 });

      const saved = (await history(session)).at(-1);
      assert.equal(saved.role, 'assistant');
      assert.equal(textOf(message), saved.content);
      assert.equal(message.id, message.metadata.turnId);
      assert.equal(message.metadata.model, 'demo:threadline-demo');
      assert.equal(message.metadata.cost, '0');
      assert.ok(message.metadata.usage.inputTokens > 0 && message.metadata.usage.outputTokens > 0);
      assert.equal(chunks.at(-1).type, 'finish');
      assert.equal(chunks.at(-1).finishReason, 'stop');
    });

    test('an answer cites a web page as a source-url part', async () => {
      const session = await newSession('counter');
      const question = userMessage('How do I register the purifier to extend the warranty?');
      const { message } = await read(await send(transportFor(session), [question]));
      const urls = message.parts.filter((p) => p.type === 'source-url');
      assert.deepEqual(
        urls.map((p) => p.url),
        ['https://tidewater.example/warranty-registration'],
      );
      assert.ok(textOf(message).includes('['), 'the answer cites by [n]');
    });

    test('regenerate asks the same question again for a new answer', async () => {
      const session = await newSession('echo');
      const transport = transportFor(session);
      const question = userMessage('Hello there');
      const first = await read(await send(transport, [question]));
      const again = await read(
        await send(transport, [question], {
          trigger: 'regenerate-message',
          messageId: first.message.id,
        }),
      );
      assert.notEqual(again.message.id, first.message.id);
      const saved = await history(session);
      assert.deepEqual(
        saved.map((m) => m.role),
        ['user', 'assistant', 'user', 'assistant'],
      );
      assert.equal(saved.at(-1).content, textOf(again.message));
    });

    test('a dropped stream resumes with reconnectToStream', async () => {
      const session = await newSession('drawl');
      const transport = transportFor(session);
      const dropped = new AbortController();
      const stream = await send(transport, [userMessage('Tell me about filters')], {
        abortSignal: dropped.signal,
      });
      const reader = stream.getReader();
      const seen = [];
      while (seen.filter((c) => c.type === 'text-delta').length < 3) {
        const { value, done } = await reader.read();
        assert.ok(!done, 'the answer ended before the drop');
        seen.push(value);
      }
      dropped.abort(); // the connection is gone mid-answer
      await reader.cancel().catch(() => {});

      const resumed = await transport.reconnectToStream({ chatId: 'chat-1' });
      assert.ok(resumed, 'no stream to resume');
      const { chunks, message } = await read(resumed);
      assert.deepEqual(chunks.slice(0, seen.length), seen); // the same message from its start
      assert.equal(chunks.at(-1).type, 'finish');
      assert.equal(textOf(message), (await history(session)).at(-1).content);
      assert.equal(await transport.reconnectToStream({ chatId: 'chat-1' }), null); // it is over
    });

    test('a tool that fails is a tool part with its error', async () => {
      const session = await newSession('counter');
      const { message } = await read(
        await send(transportFor(session), [userMessage('Ask the supplier about TL-4471')]),
      );
      const tool = message.parts.find((p) => p.type === 'tool-supplier_status');
      assert.equal(tool.state, 'output-error');
      assert.match(tool.errorText, /supplier does not answer/);
    });

    test('a bad token is refused', async () => {
      const session = await newSession('echo');
      const transport = transportFor({ ...session, token: 'nonsense' });
      await assert.rejects(
        async () => read(await send(transport, [userMessage('Hi')])),
        name === 'http' ? /session token is not valid/ : /code 4401/,
      );
    });
  });
}

// What useChat does, with the chat state React would hold: send, approve a tool call (the
// message goes on in a second request), resume.
class Chat extends AbstractChat {
  constructor(init) {
    const state = {
      status: 'ready',
      error: undefined,
      messages: init.messages ?? [],
      pushMessage(message) {
        this.messages = [...this.messages, message];
      },
      popMessage() {
        this.messages = this.messages.slice(0, -1);
      },
      replaceMessage(index, message) {
        this.messages = this.messages.map((m, i) => (i === index ? message : m));
      },
      snapshot: (thing) => structuredClone(thing),
    };
    super({ ...init, state });
  }
}

for (const [name, transportFor] of Object.entries(TRANSPORTS)) {
  test(`useChat's Chat over ${name}: a tool call that needs approval, approved`, async () => {
    const session = await newSession('counter');
    const finished = [];
    const chat = new Chat({
      id: 'chat-1',
      transport: transportFor(session),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
      onFinish: ({ message }) => finished.push(message),
    });
    await chat.sendMessage({ text: 'Please reserve TL-4471 for me' });
    assert.equal(chat.status, 'ready', String(chat.error));
    const asking = chat.messages.at(-1).parts.find((p) => p.type === 'tool-reserve_item');
    assert.equal(asking.state, 'approval-requested');
    assert.deepEqual(asking.input, { code: 'TL-4471' });

    await chat.addToolApprovalResponse({ id: asking.approval.id, approved: true });
    for (let waited = 0; finished.length < 2 && waited < 200; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(finished.length, 2, 'the approved call did not go on');
    const answer = chat.messages.at(-1);
    assert.equal(chat.messages.length, 2); // one user message, one answer
    const reserved = answer.parts.find((p) => p.type === 'tool-reserve_item');
    assert.equal(reserved.state, 'output-available');
    assert.deepEqual(reserved.output, { reserved: true, code: 'TL-4471' });
    assert.equal(answer.parts.at(-1).type, 'text');
    assert.equal(textOf(answer), (await history(session)).at(-1).content);
    assert.equal(answer.metadata.turnId, answer.id);
  });

  test(`useChat's Chat over ${name}: resumeStream picks up the active answer`, async () => {
    const session = await newSession('drawl');
    const question = userMessage('Tell me about the membrane');
    const dropped = new AbortController();
    const transport = transportFor(session);
    // The tab that sent the message is gone; a new one opens the chat and resumes.
    const stream = await send(transport, [question], { abortSignal: dropped.signal });
    const reader = stream.getReader();
    await reader.read();
    dropped.abort();
    await reader.cancel().catch(() => {});

    const chat = new Chat({ id: 'chat-1', transport, messages: [question] });
    await chat.resumeStream();
    assert.equal(chat.status, 'ready', String(chat.error));
    const answer = chat.messages.at(-1);
    assert.equal(answer.role, 'assistant');
    assert.equal(textOf(answer), (await history(session)).at(-1).content);
    assert.ok(answer.metadata.usage.totalTokens > 0);
  });
}

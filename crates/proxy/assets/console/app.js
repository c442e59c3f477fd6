// The console's only script: a produce socket, a consume socket, the records table, the rate
// chart and the Learn snippets. Everything a record holds is written with textContent, never
// as HTML.

const FORMATS = ["string", "json", "int", "short", "long", "double", "float", "bytearray", "avro"];
const NUMERIC = new Set(["int", "short", "long", "double", "float"]);
const MAX_ROWS = 500; // records kept in the table
const MAX_LOG = 200; // produce log rows kept
const MAX_PAUSED = 10000; // records held while paused

const $ = (id) => document.getElementById(id);
const rand = () => Math.random().toString(36).slice(2, 8);
const wsBase = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;

for (const select of document.querySelectorAll("select.format")) {
  for (const f of FORMATS) select.append(new Option(f, f));
  select.value = "string";
}
$("c-group").value = `console-${rand()}`;

/** Query string of a socket URL; the token (when set) as `access_token`. */
function socketUrl(path, params, token) {
  const q = new URLSearchParams(params);
  if (token) q.set("access_token", token);
  return `${wsBase()}${path}?${q}`;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function trim(tbody, max) {
  while (tbody.rows.length > max) tbody.deleteRow(tbody.rows.length - 1);
}

/** A typed value as the proxy expects it: numbers for numeric formats, parsed JSON for json. */
function typed(text, format) {
  if (NUMERIC.has(format) && /^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$/.test(text)) return Number(text);
  if (format === "json") {
    try { return JSON.parse(text); } catch { return text; }
  }
  return text; // anything else goes as typed: the proxy says when it does not fit the format
}

function show(v) {
  if (v === null || v === undefined) return "null";
  const inner = typeof v === "object" && "value" in v ? v.value : v;
  if (inner === null) return "null";
  return typeof inner === "string" ? inner : JSON.stringify(inner);
}

// ---- produce ---------------------------------------------------------------------------------

const produce = { socket: null, url: "", queue: [], pending: new Map(), seq: 0, clientId: `console-${rand()}` };

function produceParams() {
  return {
    clientId: produce.clientId,
    topic: $("p-topic").value.trim(),
    keyType: $("p-key-format").value,
    valType: $("p-value-format").value,
  };
}

function buildRecords() {
  const count = Math.max(1, Math.min(1000, Number($("p-count").value) || 1));
  const headers = $("p-headers").value.split(",").map((h) => h.trim()).filter(Boolean).map((h) => {
    const i = h.indexOf("=");
    return i < 0 ? { key: h, value: "" } : { key: h.slice(0, i).trim(), value: h.slice(i + 1).trim() };
  });
  const records = [];
  for (let i = 0; i < count; i++) {
    const r = {};
    if ($("p-key").value !== "") r.key = { value: typed($("p-key").value, $("p-key-format").value), format: $("p-key-format").value };
    r.value = { value: typed($("p-value").value, $("p-value-format").value), format: $("p-value-format").value };
    if (headers.length) r.headers = headers;
    r.messageId = `m${++produce.seq}`;
    records.push(r);
  }
  return records;
}

function produceSocket() {
  const url = socketUrl("/socket/in", produceParams(), $("token").value);
  if (produce.socket && produce.url === url && produce.socket.readyState <= WebSocket.OPEN) return produce.socket;
  if (produce.socket) produce.socket.close(1000);
  const ws = new WebSocket(url);
  produce.socket = ws;
  produce.url = url;
  $("produce-status").textContent = "Connecting…";
  ws.onopen = () => {
    $("produce-status").textContent = `Connected to ${produceParams().topic}.`;
    for (const text of produce.queue.splice(0)) ws.send(text);
  };
  ws.onmessage = (e) => answered(e.data);
  ws.onclose = (e) => {
    if (produce.socket !== ws) return;
    produce.socket = null;
    const why = e.code === 1006
      ? "the proxy refused the socket (does the topic exist? is the token valid?)"
      : `closed with ${e.code}${e.reason ? `: ${e.reason}` : ""}`;
    $("produce-status").textContent = `Producer socket ${why}.`;
    for (const [, row] of produce.pending) {
      row.cells[1].textContent = `No answer: ${why}`;
      row.classList.add("error");
    }
    produce.pending.clear();
    produce.queue.length = 0;
  };
  return ws;
}

function answered(data) {
  let frame;
  try { frame = JSON.parse(data); } catch { frame = null; }
  const answers = Array.isArray(frame) ? frame : [frame];
  for (const a of answers) {
    const id = a && (a.messageId ?? a.clientMessageId);
    const row = id != null ? produce.pending.get(id) : undefined;
    const target = row ?? addLogRow("(no messageId)");
    if (row) produce.pending.delete(id);
    const text = a && a.error
      ? `Error ${a.error.code}: ${a.error.message}`
      : a ? `partition ${a.partition}, offset ${a.offset}` : String(data);
    const prev = target.cells[1].textContent;
    target.cells[1].textContent = prev ? `${prev}; ${text}` : text;
    if (a && a.error) target.classList.add("error");
  }
}

function addLogRow(sent) {
  const tbody = $("produce-log").tBodies[0];
  const row = tbody.insertRow(0);
  cell(row, sent, "mono");
  cell(row, "", "mono");
  trim(tbody, MAX_LOG);
  return row;
}

$("produce-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const records = buildRecords();
  const text = JSON.stringify(records.length === 1 ? records[0] : records);
  const row = addLogRow(text);
  for (const r of records) produce.pending.set(r.messageId, row);
  const ws = produceSocket();
  if (ws.readyState === WebSocket.OPEN) ws.send(text);
  else produce.queue.push(text);
});

// ---- consume ---------------------------------------------------------------------------------

const consume = { socket: null, total: 0, paused: false, held: [], dropped: 0, autoCommit: true, perSecond: new Array(60).fill(0), current: 0 };

function consumeParams() {
  const p = {
    clientId: `console-${rand()}`,
    groupId: $("c-group").value.trim(),
    topic: $("c-topic").value.trim(),
    keyType: $("c-key-format").value,
    valType: $("c-value-format").value,
    offsetResetStrategy: $("c-reset").value,
    autoCommit: String($("c-auto-commit").checked),
  };
  if (Number($("c-batch").value) > 0) p.batchSize = String(Number($("c-batch").value));
  if (Number($("c-rate").value) > 0) p.rate = String(Number($("c-rate").value));
  return p;
}

function setSubscribed(on) {
  $("subscribe").disabled = on;
  $("unsubscribe").disabled = !on;
  $("pause").disabled = !on;
}

$("consume-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (consume.socket) consume.socket.close(1000);
  const params = consumeParams();
  consume.autoCommit = params.autoCommit === "true";
  const ws = new WebSocket(socketUrl("/socket/out", params, $("token").value));
  consume.socket = ws;
  setSubscribed(true);
  $("consume-status").textContent = "Connecting…";
  ws.onopen = () => { $("consume-status").textContent = `Subscribed to ${params.topic} as group ${params.groupId}.`; };
  ws.onmessage = (e) => {
    let frame;
    try { frame = JSON.parse(e.data); } catch { return; }
    for (const r of Array.isArray(frame) ? frame : [frame]) {
      if (r.error) {
        $("consume-status").textContent = `Error ${r.error.code}: ${r.error.message}`;
        continue;
      }
      consume.total++;
      consume.current++;
      if (!consume.paused) pending.push(r);
      else if (consume.held.length < MAX_PAUSED) consume.held.push(r);
      else consume.dropped++;
    }
    schedule();
  };
  ws.onclose = (e) => {
    if (consume.socket !== ws) return;
    consume.socket = null;
    setSubscribed(false);
    $("consume-status").textContent = e.code === 1006
      ? "The proxy refused the socket (does the topic exist? is the group in use? is the token valid?)."
      : `Consumer socket closed with ${e.code}${e.reason ? `: ${e.reason}` : ""}.`;
  };
});

$("unsubscribe").addEventListener("click", () => { if (consume.socket) consume.socket.close(1000); });

$("pause").addEventListener("click", () => {
  consume.paused = !consume.paused;
  $("pause").textContent = consume.paused ? "Resume" : "Pause";
  $("pause").setAttribute("aria-pressed", String(consume.paused));
  if (!consume.paused) {
    pending.push(...consume.held.splice(0));
    schedule();
  }
  counter();
});

// Rows are added once per animation frame, so thousands of records a second stay responsive.
const pending = [];
let scheduled = false;
function schedule() {
  if (!scheduled) { scheduled = true; requestAnimationFrame(render); }
  counter();
}

function render() {
  scheduled = false;
  const tbody = $("records").tBodies[0];
  const batch = pending.splice(0).slice(-MAX_ROWS);
  const fragment = document.createDocumentFragment();
  for (const r of batch.reverse()) {
    const row = document.createElement("tr");
    row.dataset.partition = r.partition;
    row.dataset.offset = r.offset;
    cell(row, String(r.partition));
    cell(row, String(r.offset));
    cell(row, r.timestamp != null ? new Date(r.timestamp).toISOString() : "");
    cell(row, r.key == null ? "" : show(r.key), "mono");
    cell(row, show(r.value), "mono value");
    cell(row, (r.headers || []).map((h) => `${h.key}=${h.value}`).join(", "), "mono");
    const commit = row.insertCell();
    if (!consume.autoCommit && r.wsProxyMessageId) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Commit";
      b.setAttribute("aria-label", `Commit partition ${r.partition} offset ${r.offset}`);
      b.addEventListener("click", () => {
        if (!consume.socket) return;
        consume.socket.send(JSON.stringify({ wsProxyMessageId: r.wsProxyMessageId }));
        b.textContent = "Commit sent";
        b.disabled = true;
      });
      commit.append(b);
    }
    fragment.append(row);
  }
  tbody.insertBefore(fragment, tbody.firstChild);
  trim(tbody, MAX_ROWS);
}

function counter() {
  let text = `${consume.total} records received`;
  if (consume.paused) text += `, paused (${consume.held.length} held${consume.dropped ? `, ${consume.dropped} not kept` : ""})`;
  $("record-count").textContent = text;
}

// ---- records/s chart -------------------------------------------------------------------------

function drawChart() {
  consume.perSecond.shift();
  consume.perSecond.push(consume.current);
  $("rate-now").textContent = `${consume.current} records/s`;
  consume.current = 0;
  const canvas = $("rate-chart");
  const g = canvas.getContext("2d");
  const style = getComputedStyle(document.body);
  const max = Math.max(1, ...consume.perSecond);
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = style.getPropertyValue("--chart").trim() || "#2563eb";
  const w = canvas.width / consume.perSecond.length;
  consume.perSecond.forEach((n, i) => {
    const h = (n / max) * (canvas.height - 14);
    g.fillRect(i * w, canvas.height - h, Math.max(1, w - 1), h);
  });
  g.fillStyle = style.color;
  g.font = "11px sans-serif";
  g.fillText(`max ${max}/s`, 4, 11);
}
setInterval(drawChart, 1000);
drawChart();

// ---- Learn -----------------------------------------------------------------------------------

function learn() {
  const token = $("token").value ? "YOUR_TOKEN" : "";
  const inUrl = socketUrl("/socket/in", { ...produceParams(), clientId: "my-producer" }, token);
  const { clientId: _ignored, ...consumeRest } = consumeParams();
  const outUrl = socketUrl("/socket/out", { clientId: "my-consumer", ...consumeRest }, token);
  const seq = produce.seq;
  const record = buildRecords()[0];
  produce.seq = seq; // these records are not sent: their numbers stay free
  record.messageId = "m1";
  const json = JSON.stringify(record);
  const manual = consumeRest.autoCommit === "false";
  $("learn-js").textContent = `// Produce one record and print the proxy's answer.
const producer = new WebSocket(${JSON.stringify(inUrl)});
producer.onopen = () => producer.send(JSON.stringify(${json}));
producer.onmessage = (e) => console.log(JSON.parse(e.data));

// Consume: one record (or, with batchSize, one array of records) per frame.
const consumer = new WebSocket(${JSON.stringify(outUrl)});
consumer.onmessage = (e) => {
  const record = JSON.parse(e.data);
  console.log(record.partition, record.offset, record.key, record.value);${manual ? `
  // autoCommit=false: commit this record (and older ones of its partition).
  consumer.send(JSON.stringify({ wsProxyMessageId: record.wsProxyMessageId }));` : ""}
};`;
  $("learn-py").textContent = `# pip install websockets
import asyncio, json
import websockets

async def main():
    async with websockets.connect(${JSON.stringify(inUrl)}) as producer:
        await producer.send(json.dumps(${json}))
        print(await producer.recv())
    async with websockets.connect(${JSON.stringify(outUrl)}) as consumer:
        async for frame in consumer:
            record = json.loads(frame)
            print(record)${manual ? `
            await consumer.send(json.dumps({"wsProxyMessageId": record["wsProxyMessageId"]}))` : ""}

asyncio.run(main())`;
  const quote = (s) => `'${s.replace(/'/g, "'\\''")}'`;
  $("learn-sh").textContent = `# produce one record
echo ${quote(json)} | websocat ${quote(inUrl)}
# consume (Ctrl-C to stop)
websocat ${quote(outUrl)}`;
}

for (const id of ["produce-form", "consume-form", "token"]) $(id).addEventListener("input", learn);
for (const id of ["produce-form", "consume-form"]) $(id).addEventListener("change", learn);
$("p-topic").addEventListener("input", () => { if (!$("c-topic").dataset.touched) $("c-topic").value = $("p-topic").value; });
$("c-topic").addEventListener("input", () => { $("c-topic").dataset.touched = "1"; });
learn();

for (const b of document.querySelectorAll("button.copy")) {
  b.addEventListener("click", async () => {
    const label = b.textContent;
    try {
      await navigator.clipboard.writeText($(b.dataset.copy).textContent);
      b.textContent = "Copied";
    } catch {
      b.textContent = "Select the text to copy";
    }
    setTimeout(() => { b.textContent = label; }, 1500);
  });
}

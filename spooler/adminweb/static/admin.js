// The admin status page: fetches /api/v1/status every few seconds and shows it. Read-only; every
// value from the spooler goes into the page as text (job and user names come from clients).
"use strict";

const REFRESH_MS = 5000;

function $(id) { return document.getElementById(id); }

function when(stamp) {
  if (!stamp) return "-";
  const date = new Date(stamp * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
         `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} B`;
}

function facts(id, pairs) {
  const list = $(id);
  list.replaceChildren();
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value === null || value === "" ? "-" : String(value);
    list.append(term, detail);
  }
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (className) td.className = className;
  row.append(td);
}

function jobs(tableId, emptyId, rows, finished) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  for (const job of rows) {
    const row = document.createElement("tr");
    cell(row, job.job_id, "num");
    cell(row, job.state, `state ${job.state}`);
    cell(row, job.user);
    cell(row, job.name);
    cell(row, finished ? (job.pages ?? "?") : job.queue, finished ? "num" : "");
    cell(row, `${job.route} (${job.mode})`);
    cell(row, when(finished ? job.completed_at : job.created_at));
    cell(row, job.message);
    body.append(row);
  }
  $(tableId).hidden = rows.length === 0;
  $(emptyId).hidden = rows.length !== 0;
}

function show(data) {
  const status = data.status, health = data.health, now = data.now;
  document.title = `${data.device_name}: ${health.status} — spooler status`;
  $("device").textContent = data.device_name;
  const badge = $("health");
  badge.textContent = health.status;
  badge.className = `badge ${health.status}`;
  const reasons = $("reasons");
  reasons.replaceChildren(...health.reasons.map((reason) => {
    const item = document.createElement("li");
    item.textContent = reason;
    return item;
  }));
  reasons.hidden = health.reasons.length === 0;

  $("mode").textContent = status.mode;
  $("card-mode").classList.toggle("offline", status.mode === "offline");
  const offline = status.offline;
  facts("mode-facts", [
    ["since", status.mode_since ? when(status.mode_since) : "-"],
    ["offline for", offline ? duration(now - offline.since) : undefined],
    ["printed offline", offline ? `${offline.printed_offline} job(s) since the outage began` : undefined],
  ]);

  const server = status.server;
  facts("server-facts", server ? [
    ["queue", server.uri], ["health", server.state], ["since", when(server.since)],
    ["failures in a row", server.failures_in_a_row], ["detail", server.detail],
  ] : [["server", "none configured (standalone)"]]);
  $("card-server").classList.toggle("bad", Boolean(server && server.state === "down"));

  const device = status.device;
  facts("device-facts", [
    ["uri", device.uri], ["health", device.state], ["since", when(device.since)],
    ["failures in a row", device.consecutive_failures], ["detail", device.detail],
    ["delivering", status.delivering === null ? "-" : `job ${status.delivering}`],
  ]);
  $("card-device").classList.toggle("bad", device.state === "unreachable");

  const queue = status.queue;
  facts("queue-facts", [
    ["waiting for the server", server ? status.waiting_for_server : undefined],
    ["waiting for the device", status.waiting_for_device], ["held", status.held],
    ["completed", queue.completed], ["canceled", queue.canceled], ["aborted", queue.aborted],
    ["spool disk", `${size(status.spool.free_bytes)} free` + (status.spool.accepting ? "" : " — REFUSING NEW JOBS")],
    ["listening", Object.entries(status.listeners).map(([name, address]) => `${name} ${address}`).join("\n")],
  ]);

  const accounting = status.accounting || {};
  facts("outbox-facts", [
    ["state", accounting.state], ["waiting", accounting.waiting], ["sent", accounting.sent],
    ["too old to send", accounting.expired], ["refused", accounting.rejected],
    ["last error", accounting.last_error || undefined],
  ]);

  const login = status.login;
  if (login) {
    const sharing = login.sharing;
    const peers = sharing ? sharing.peers.map((peer) =>
      `${peer.peer}: ${peer.at ? (peer.error ? `failed ${when(peer.at)}` : `ok ${when(peer.at)}`) : "no exchange yet"}`
    ).join("; ") : undefined;
    facts("login-facts", [
      ["users", `${login.users} (${login.by_state.ok} usable, ${login.by_state.expired} expired, ${login.by_state.revoked} revoked)`],
      ["expiring soon", `${login.expiring} (within ${duration(login.expiring_within)})`],
      ["last sync", login.last_sync ? `${when(login.last_sync.at)}: ${login.last_sync.users} user(s)` +
        (login.last_sync.truncated ? ` of ${login.last_sync.assigned} (TRUNCATED)` : "") : "never"],
      ["offline login", login.offline_enabled ? "on" : "off"],
      ["sharing peers", sharing ? (peers || "none") : "off"],
    ]);
  } else {
    facts("login-facts", [["login", "not running"]]);
  }

  jobs("waiting", "waiting-empty", data.waiting_jobs, false);
  jobs("finished", "finished-empty", data.finished_jobs, true);
  $("footer").textContent = `spooler ${status.daemon.version}, pid ${status.daemon.pid}, running since ` +
    `${when(status.daemon.started_at)}; state folder ${status.daemon.state_dir}`;
  $("updated").textContent = `updated ${when(now).slice(11)}`;
}

async function refresh() {
  try {
    const response = await fetch("api/v1/status", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`the spooler answered ${response.status}`);
    show(await response.json());
    $("error").hidden = true;
  } catch (error) {
    $("error").textContent = `Cannot read the status: ${error.message}. Retrying…`;
    $("error").hidden = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);

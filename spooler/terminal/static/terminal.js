// The device terminal page: log in (PIN keypad, card, password, and where the central server can check
// them card then PIN, card then password), list my held jobs, print or delete
// them (a private job asks for its key on a keypad), log out. Talks to /api/v1/ with the session
// cookie (HttpOnly: this script never sees it).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const MAX_PIN = 12;
  let method = "pin";
  let firstMethod = "pin";  // the first tab the central server can check: chosen at the start and after a logout
  let pin = "";
  let pairCard = "";  // the card read for a card+pin or card+password login, until its second factor is in
  let idleTimeout = 120;
  let idleTimer = null;
  let lockTimer = null;
  let busy = false;
  let keyJob = null;  // the private job whose key is being typed

  // -- talking to the spooler -------------------------------------------------------------------

  async function api(path, body) {
    const options = { method: body === undefined ? "GET" : "POST", credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch("api/v1/" + path, options);
    } catch (error) {
      return { ok: false, status: 0, data: { error: "The printer does not answer. Please try again.", code: "network" } };
    }
    let data = {};
    try { data = await response.json(); } catch (error) { data = { error: "Unexpected answer (" + response.status + ")." }; }
    return { ok: response.ok, status: response.status, data: data };
  }

  function show(screen) {
    $("login").hidden = screen !== "login";
    $("jobs").hidden = screen !== "jobs";
    $("key-screen").hidden = screen !== "key";
  }

  function say(element, text, kind) {
    const target = $(element);
    target.textContent = text || "";
    target.className = "message" + (kind ? " " + kind : "");
  }

  // -- login ------------------------------------------------------------------------------------

  function choose(next) {
    method = next;
    pairCard = "";
    document.querySelectorAll(".tab").forEach((tab) => tab.classList.toggle("active", tab.dataset.method === next));
    layout();
    say("login-message", "");
  }

  // Which entry shows: a combined login reads the card first, then the PIN keypad or the password.
  function layout() {
    const pair = method === "card+pin" || method === "card+password";
    const keypad = method === "pin" || (method === "card+pin" && pairCard !== "");
    $("pin-entry").hidden = !keypad;
    $("keypad").hidden = !keypad;
    $("pin-prompt").textContent = method === "pin" ? "Enter your PIN" : "Card read. Now enter your PIN";
    $("card-entry").hidden = method !== "card";
    $("password-entry").hidden = method !== "password";
    $("pair-entry").hidden = !pair || keypad;
    $("pair-card").hidden = pairCard !== "";
    $("pair-password").hidden = pairCard === "";
    $("pair-prompt").textContent = pairCard ? "Card read. Now enter your password" : "Hold your card to the reader";
    document.body.classList.toggle("pin-mode", keypad);
    if (method === "card") $("card").focus();
    if (method === "password") $("user").focus();
    if (pair && !pairCard) $("pair-card").focus();
    if (method === "card+password" && pairCard) $("pair-password").focus();
  }

  // Only the methods the central server can check get a tab (GET login); the first one is chosen.
  async function offerMethods() {
    const answer = await api("login");
    if (!answer.ok || !Array.isArray(answer.data.methods) || !answer.data.methods.length) return;
    const offered = answer.data.methods;
    const tabs = Array.from(document.querySelectorAll(".tab"));
    tabs.forEach((tab) => { tab.hidden = !offered.includes(tab.dataset.method); });
    const first = tabs.find((tab) => !tab.hidden);
    firstMethod = first ? first.dataset.method : "pin";
    if (!offered.includes(method)) choose(firstMethod);
  }

  function drawPin() {
    $("pin-display").textContent = "\u25CF".repeat(pin.length);
  }

  function key(value) {
    if (busy) return;
    if (value === "back") pin = pin.slice(0, -1);
    else if (value === "ok") {
      if (pin && method === "card+pin") submit({ method: method, card: pairCard, secret: pin });
      else if (pin) submit({ method: "pin", secret: pin });
      return;
    }
    else if (pin.length < MAX_PIN) pin += value;
    say("login-message", "");
    drawPin();
  }

  async function submit(body) {
    if (busy) return;
    busy = true;
    say("login-message", "Checking\u2026", "info");
    const answer = await api("login", body);
    busy = false;
    pin = "";
    drawPin();
    $("card").value = "";
    $("password").value = "";
    $("pair-card").value = "";
    $("pair-password").value = "";
    if (pairCard) { pairCard = ""; layout(); }
    if (answer.ok) {
      enter(answer.data);
      return;
    }
    const data = answer.data || {};
    if (data.code === "locked" && data.retry_after) {
      countdown(data.retry_after);
    } else {
      say("login-message", data.error || "Login failed.", "error");
    }
  }

  function countdown(seconds) {
    clearInterval(lockTimer);
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) {
        clearInterval(lockTimer);
        say("login-message", "You can try again now.", "info");
        return;
      }
      const text = left >= 60 ? Math.floor(left / 60) + " min " + (left % 60) + " s" : left + " s";
      say("login-message", "Too many failed attempts. Try again in " + text + ".", "error");
    };
    tick();
    lockTimer = setInterval(tick, 1000);
  }

  // -- my jobs ----------------------------------------------------------------------------------

  function enter(session) {
    clearInterval(lockTimer);
    idleTimeout = session.idle_timeout || idleTimeout;
    $("hello").textContent = "Hello, " + (session.full_name || session.user);
    const notice = $("notice");
    notice.hidden = !session.notice;
    notice.textContent = session.notice || "";
    say("jobs-message", "");
    show("jobs");
    touch();
    load();
  }

  function when(seconds) {
    const date = new Date(seconds * 1000);
    const today = new Date();
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (date.toDateString() === today.toDateString()) return time;
    return date.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
  }

  function describe(job) {
    const parts = [];
    parts.push(job.pages === null || job.pages === undefined ? "? pages" : job.pages + (job.pages === 1 ? " page" : " pages"));
    if (job.copies > 1) parts.push(job.copies + " copies");
    if (job.color === "color") parts.push("colour");
    else if (job.color === "mono") parts.push("black & white");
    else parts.push("colour unknown");
    parts.push(when(job.time));
    return parts.join(" \u00B7 ");
  }

  function button(text, kind, action) {
    const element = document.createElement("button");
    element.type = "button";
    element.className = kind;
    element.textContent = text;
    element.addEventListener("click", action);
    return element;
  }

  function render(jobs) {
    const list = $("job-list");
    list.replaceChildren();
    for (const job of jobs) {
      const item = document.createElement("li");
      item.className = "job";
      item.dataset.jobId = job.id;
      const info = document.createElement("div");
      info.className = "info";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = job.name;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = describe(job);
      if (job.private) {
        const lock = document.createElement("span");
        lock.className = "badge private";
        lock.textContent = "Private";
        lock.title = "needs its key";
        name.prepend(lock);
      }
      if (job.color === "color") {
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "C";
        badge.title = "colour";
        name.prepend(badge);
      }
      info.append(name, meta);
      const actions = document.createElement("div");
      actions.className = "actions";
      actions.append(
        button("Print", "primary", () => (job.private ? askKey(job) : act(job, "release"))),
        button("Delete", "danger", (event) => confirmDelete(event.currentTarget, job)),
      );
      item.append(info, actions);
      list.append(item);
    }
    $("no-jobs").hidden = jobs.length > 0;
    $("release-all").disabled = jobs.length === 0;
  }

  async function load() {
    const answer = await api("jobs");
    if (!answer.ok) return failed(answer);
    render(answer.data.jobs || []);
  }

  function failed(answer) {
    if (answer.status === 401) {
      leave(answer.data.error || "Your session has ended.");
      return;
    }
    say("jobs-message", (answer.data && answer.data.error) || "That did not work.", "error");
  }

  function confirmDelete(element, job) {
    if (element.dataset.armed) {
      act(job, "delete");
      return;
    }
    element.dataset.armed = "1";
    element.textContent = "Sure?";
    setTimeout(() => { delete element.dataset.armed; element.textContent = "Delete"; }, 4000);
  }

  async function act(job, action) {
    touch();
    const answer = await api("jobs/" + job.id + "/" + action, {});
    if (!answer.ok) { failed(answer); load(); return; }
    say("jobs-message", (action === "release" ? "Printing: " : "Deleted: ") + job.name, "ok");
    load();
  }

  async function releaseAll() {
    touch();
    const answer = await api("jobs");
    if (!answer.ok) return failed(answer);
    let printed = 0;
    let private_ = 0;
    for (const job of answer.data.jobs || []) {
      if (job.private) { private_ += 1; continue; }  // each needs its own key
      const result = await api("jobs/" + job.id + "/release", {});
      if (result.ok) printed += 1;
    }
    let text = printed === 1 ? "Printing 1 job." : "Printing " + printed + " jobs.";
    if (private_) text += " " + private_ + " private job" + (private_ === 1 ? " needs its" : "s need their") + " key: print " + (private_ === 1 ? "it" : "them") + " one by one.";
    say("jobs-message", text, "ok");
    load();
  }

  // -- the key of a private job -----------------------------------------------------------------

  function askKey(job) {
    keyJob = job;
    $("key-prompt").textContent = "\u201C" + job.name + "\u201D is private: enter its key";
    $("job-key").value = "";
    say("key-message", "");
    show("key");
    $("job-key").focus();
  }

  function keyPad(value) {
    const input = $("job-key");
    if (value === "back") input.value = input.value.slice(0, -1);
    else if (value === "ok") { sendKey(); return; }
    else if (input.value.length < 255) input.value += value;
    say("key-message", "");
  }

  async function sendKey() {
    const job = keyJob;
    const secret = $("job-key").value;
    if (!job || !secret || busy) return;
    busy = true;
    touch();
    say("key-message", "Checking\u2026", "info");
    const answer = await api("jobs/" + job.id + "/release", { key: secret });
    busy = false;
    $("job-key").value = "";
    if (answer.ok) {
      keyJob = null;
      show("jobs");
      say("jobs-message", "Printing: " + job.name, "ok");
      load();
      return;
    }
    if (answer.status === 401) { keyJob = null; failed(answer); return; }
    say("key-message", (answer.data && answer.data.error) || "That did not work.", "error");
  }

  function cancelKey() {
    keyJob = null;
    $("job-key").value = "";
    show("jobs");
    load();
  }

  async function logout() {
    await api("logout", {});
    leave("");
  }

  function leave(message) {
    clearTimeout(idleTimer);
    idleTimer = null;
    keyJob = null;
    $("job-key").value = "";
    $("job-list").replaceChildren();
    choose(firstMethod);
    show("login");
    say("login-message", message, message ? "info" : "");
  }

  // -- idle: the session ends on the server; the page goes back to the login screen too ---------

  function touch() {
    if ($("jobs").hidden && $("key-screen").hidden) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => { api("logout", {}); leave("You were logged out after a while without use."); },
                           idleTimeout * 1000);
  }

  function tickClock() {
    $("clock").textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // -- wiring -----------------------------------------------------------------------------------

  document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => choose(tab.dataset.method)));
  document.querySelectorAll("#keypad button").forEach((b) => b.addEventListener("click", () => key(b.dataset.key)));
  $("card-entry").addEventListener("submit", (event) => {
    event.preventDefault();
    const secret = $("card").value.trim();
    if (secret) submit({ method: "card", secret: secret });
  });
  $("pair-entry").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!pairCard) {
      pairCard = $("pair-card").value.trim();
      $("pair-card").value = "";
      if (pairCard) { say("login-message", ""); layout(); }
      return;
    }
    const secret = $("pair-password").value;
    if (secret) submit({ method: method, card: pairCard, secret: secret });
  });
  $("password-entry").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("user").value.trim();
    const secret = $("password").value;
    if (!user || !secret) { say("login-message", "Enter your user name and password.", "error"); return; }
    submit({ method: "password", user: user, secret: secret });
  });
  document.addEventListener("keydown", (event) => {
    if ($("keypad").hidden || $("login").hidden) return;
    if (/^[0-9]$/.test(event.key)) key(event.key);
    else if (event.key === "Backspace") key("back");
    else if (event.key === "Enter") key("ok");
  });
  ["click", "touchstart", "keydown"].forEach((name) => document.addEventListener(name, touch, { passive: true }));
  $("logout").addEventListener("click", logout);
  $("refresh").addEventListener("click", () => { touch(); load(); });
  $("release-all").addEventListener("click", releaseAll);
  $("key-keypad").replaceChildren(...Array.from($("keypad").children, (b) => b.cloneNode(true)));
  document.querySelectorAll("#key-keypad button").forEach((b) => b.addEventListener("click", () => keyPad(b.dataset.key)));
  $("key-entry").addEventListener("submit", (event) => { event.preventDefault(); sendKey(); });
  $("key-cancel").addEventListener("click", cancelKey);

  choose("pin");
  offerMethods();
  tickClock();
  setInterval(tickClock, 15000);
  api("session").then((answer) => { if (answer.ok) enter(answer.data); });
})();

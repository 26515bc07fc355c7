/* swarmget portal: the only script. An element with data-live="URL" follows that
   Server-Sent Events stream; every event carries {element id: html} rendered by the server.
   Only what changed is replaced: a part whose html is the same as last time is left alone,
   and in a part made of elements with ids (the downloads list) only the changed elements
   are, so an opened "details" toggle stays open and the rest of the page keeps still. While
   the user has text selected in a part, that part waits (the newest html is applied once
   the selection is gone). Forms with data-confirm ask first. */
"use strict";

(function () {
  const root = document.querySelector("[data-live]");
  const dot = document.getElementById("live");
  const last = new Map(); // element id -> the html last applied to it
  const waiting = new Map(); // part id -> html held back while a selection is in it
  const announcer = document.getElementById("announce");
  const show = (state) => {
    if (dot) dot.dataset.state = state;
  };
  // a download's state changed: say so in the live region (screen readers read it out)
  const announce = (name, before, after) => {
    if (announcer && before && after && before !== after) {
      announcer.textContent = `${name}: ${after}`;
    }
  };
  const badgeState = (el) => {
    const badge = el.querySelector(".badge[data-state]");
    return badge ? badge.dataset.state : "";
  };
  const selecting = (el) => {
    const sel = window.getSelection();
    return sel && !sel.isCollapsed && sel.rangeCount > 0 && el.contains(sel.anchorNode);
  };
  const patch = (el, html) => {
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    const fresh = Array.from(tpl.content.children);
    const ids = fresh.map((c) => c.id);
    const current = Array.from(el.children).map((c) => c.id);
    const keyed = fresh.length > 0 && ids.every((id) => id);
    if (!keyed || ids.join(" ") !== current.join(" ")) {
      const before = badgeState(el);
      el.replaceChildren(tpl.content);
      const title = document.querySelector("h1");
      announce(title ? title.firstChild.textContent.trim() : "", before, badgeState(el));
      fresh.forEach((c) => last.set(c.id, c.outerHTML));
      return;
    }
    fresh.forEach((c) => {
      const text = c.outerHTML;
      if (last.get(c.id) === text) return;
      last.set(c.id, text);
      const old = document.getElementById(c.id);
      announce(c.dataset.name || c.id, old.dataset.state, c.dataset.state);
      old.replaceWith(c);
    });
  };
  const put = (id, html) => {
    const el = document.getElementById(id);
    if (!el) return;
    if (selecting(el)) {
      waiting.set(id, html);
      return;
    }
    waiting.delete(id);
    if (last.get("part:" + id) === html) return;
    last.set("part:" + id, html);
    patch(el, html);
  };
  document.addEventListener("selectionchange", () => {
    for (const [id, html] of Array.from(waiting)) put(id, html);
  });
  if (root) {
    const apply = (event) => {
      const parts = JSON.parse(event.data);
      for (const [id, html] of Object.entries(parts)) put(id, html);
    };
    const source = new EventSource(root.dataset.live);
    source.addEventListener("update", (event) => {
      apply(event);
      show("on");
    });
    source.addEventListener("end", (event) => {
      apply(event);
      source.close();
      show("done");
    });
    source.addEventListener("error", () => {
      show(source.readyState === EventSource.CLOSED ? "off" : "connecting");
    });
  }
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();

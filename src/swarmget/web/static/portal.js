/* swarmget portal: the only script. An element with data-live="URL" follows that
   Server-Sent Events stream; every event carries {element id: html} rendered by the server,
   which is swapped in as is. Forms with data-confirm ask first. */
"use strict";

(function () {
  const root = document.querySelector("[data-live]");
  const dot = document.getElementById("live");
  const show = (state) => {
    if (dot) dot.dataset.state = state;
  };
  if (root) {
    const apply = (event) => {
      const parts = JSON.parse(event.data);
      for (const [id, html] of Object.entries(parts)) {
        const el = document.getElementById(id);
        if (el) el.innerHTML = html;
      }
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

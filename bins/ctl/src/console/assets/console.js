// agentry console: live regions and self-reloading pages. Every HTML
// fragment comes from the server, already escaped.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const state = document.querySelector("[data-live-state]");
  document.querySelectorAll("[data-sse]").forEach((el) => {
    const source = new EventSource(el.dataset.sse);
    const name = el.dataset.sseEvent || "message";
    source.addEventListener(name, (e) => {
      el.innerHTML = e.data;
      el.dataset.updates = String(Number(el.dataset.updates || "0") + 1);
      if (state) state.textContent = "live";
    });
    source.addEventListener("failed", (e) => {
      if (state) state.textContent = e.data;
    });
    source.onerror = () => {
      if (state) state.textContent = "reconnecting";
    };
  });
  document.querySelectorAll("[data-reload]").forEach((el) => {
    const timer = setTimeout(() => window.location.reload(), Number(el.dataset.reload));
    // Someone filling a form (a signal, a cancel reason) keeps the page.
    document.querySelectorAll("form").forEach((form) => {
      form.addEventListener("focusin", () => {
        clearTimeout(timer);
        document.body.dataset.reloadPaused = "1";
      });
    });
  });
});
